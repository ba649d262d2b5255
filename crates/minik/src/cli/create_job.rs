//! `create job NAME --image IMAGE [-- COMMAND [ARG...]]` and `create job NAME
//! --from=cronjob/NAME`, as kubectl's `create job`: a Job of one container named like the Job
//! whose pods never restart, or a Job made by hand from a CronJob's job template (annotated
//! `cronjob.kubernetes.io/instantiate: manual` and owned by the CronJob).

use minik_client::Api;
use serde_json::{json, Map, Value};

use super::create_config::PrintFlags;
use super::{fail, CliResult, Client, ClientFlags};

/// `create job NAME --image IMAGE [-- COMMAND...]` or `create job NAME --from=cronjob/NAME`.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    name: String,
    /// The image of the Job's container.
    #[arg(long)]
    image: Option<String>,
    /// The CronJob to make the Job from (`cronjob/NAME`).
    #[arg(long)]
    from: Option<String>,
    /// The container's command and arguments, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
    #[command(flatten)]
    pub print: PrintFlags,
}

/// Where a Job made by `create job` comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Source<'a> {
    /// A container running this image.
    Image(&'a str),
    /// The job template of this CronJob.
    CronJob(&'a str),
}

/// Which source the flags name, with kubectl's complaints when they name none, both, or a
/// command with `--from`.
pub(crate) fn source<'a>(
    image: Option<&'a str>,
    from: Option<&'a str>,
    command: &[String],
) -> Result<Source<'a>, String> {
    let image = image.filter(|i| !i.is_empty());
    let from = from.filter(|f| !f.is_empty());
    match (image, from) {
        (Some(_), Some(_)) | (None, None) => {
            Err("either --image or --from must be specified".into())
        }
        (Some(image), None) => Ok(Source::Image(image)),
        (None, Some(_)) if !command.is_empty() => Err("cannot specify --from and command".into()),
        (None, Some(from)) => {
            let (kind, name) = from
                .split_once('/')
                .ok_or_else(|| format!("from must be of the form cronjob/NAME, not {from:?}"))?;
            match kind.to_ascii_lowercase().as_str() {
                "cronjob" | "cronjobs" | "cj" | "cronjob.batch" | "cronjobs.batch"
                    if !name.is_empty() =>
                {
                    Ok(Source::CronJob(name))
                }
                "cronjob" | "cronjobs" | "cj" | "cronjob.batch" | "cronjobs.batch" => Err(format!(
                    "from must be of the form cronjob/NAME, not {from:?}"
                )),
                _ => Err(format!(
                    "unknown object type {kind}: --from takes a cronjob"
                )),
            }
        }
    }
}

/// The Job `create job NAME --image IMAGE [-- COMMAND...]` makes: one container named like
/// the Job, running `image` with `command` (when given), whose pods never restart.
pub(crate) fn job_from_flags(name: &str, image: &str, command: &[String]) -> Result<Value, String> {
    if name.is_empty() {
        return Err("NAME is required".into());
    }
    if image.is_empty() {
        return Err("--image must not be empty".into());
    }
    let mut container = json!({"name": name, "image": image, "resources": {}});
    if !command.is_empty() {
        container["command"] = json!(command);
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {},
                "spec": {"containers": [container], "restartPolicy": "Never"},
            },
        },
        "status": {},
    }))
}

/// The Job `create job NAME --from=cronjob/CRONJOB` makes of `cron_job` (as the API returned
/// it): its job template's spec, labels and annotations, annotated as made by hand, and owned
/// (as its controller, without blocking the CronJob's deletion) by the CronJob.
pub(crate) fn job_from_cron_job(cron_job: &Value, name: &str) -> Value {
    let template = cron_job
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut annotations = Map::new();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), json!("manual"));
    if let Some(theirs) = template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in theirs {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let mut metadata = json!({
        "name": name,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": cron_job.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "uid": cron_job.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            "controller": true,
        }],
    });
    if let Some(labels) = template.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": {},
    })
}

/// The Job `create job` describes; reads the CronJob named by `--from` from the cluster.
pub(crate) async fn job(client: &ClientFlags, args: &JobArgs) -> CliResult<Value> {
    match source(args.image.as_deref(), args.from.as_deref(), &args.command)
        .map_err(|e| fail!("{e}"))?
    {
        Source::Image(image) => {
            job_from_flags(&args.name, image, &args.command).map_err(|e| fail!("{e}"))
        }
        Source::CronJob(cron_job) => {
            let client = Client::new(client)?;
            let info = super::resource("cronjobs")?;
            let object = client.api.get(info, client.ns_for(info), cron_job).await?;
            Ok(job_from_cron_job(&object, &args.name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_job_from_an_image_and_a_command() {
        let job = job_from_flags("pi", "perl:5.34", &words(&["perl", "-e", "print 1"])).unwrap();
        assert_eq!(
            job,
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
                "spec": {"template": {"metadata": {}, "spec": {
                    "containers": [{"name": "pi", "image": "perl:5.34", "resources": {},
                        "command": ["perl", "-e", "print 1"]}],
                    "restartPolicy": "Never"}}},
                "status": {},
            })
        );
        let bare = job_from_flags("pi", "perl", &[]).unwrap();
        assert_eq!(
            bare.pointer("/spec/template/spec/containers/0/command"),
            None
        );
        assert!(job_from_flags("pi", "", &[]).is_err());
    }

    #[test]
    fn flags_name_exactly_one_source() {
        assert_eq!(
            source(Some("busybox"), None, &[]),
            Ok(Source::Image("busybox"))
        );
        assert_eq!(
            source(None, Some("cronjob/nightly"), &[]),
            Ok(Source::CronJob("nightly"))
        );
        assert_eq!(
            source(None, Some("cj/nightly"), &[]),
            Ok(Source::CronJob("nightly"))
        );
        let either = Err("either --image or --from must be specified".to_owned());
        assert_eq!(source(None, None, &[]), either);
        assert_eq!(source(Some("a"), Some("cronjob/b"), &[]), either);
        assert_eq!(
            source(None, Some("cronjob/b"), &words(&["date"])),
            Err("cannot specify --from and command".to_owned())
        );
        assert!(source(None, Some("deployment/web"), &[]).is_err());
        assert!(source(None, Some("nightly"), &[]).is_err());
    }

    #[test]
    fn a_job_from_a_cron_job_is_marked_manual_and_owned() {
        let cron_job = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "default", "uid": "cj-uid"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}
        });
        let job = job_from_cron_job(&cron_job, "nightly-manual");
        assert_eq!(
            job,
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {
                    "name": "nightly-manual",
                    "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "note": "x"},
                    "labels": {"team": "a"},
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                        "name": "nightly", "uid": "cj-uid", "controller": true}],
                },
                "spec": {"backoffLimit": 2, "template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": "busybox"}]}}},
                "status": {},
            })
        );
    }
}
