//! `rollout status|history|undo|restart|pause|resume` for Deployments (and all but pause and
//! resume for DaemonSets and StatefulSets), with kubectl's messages. `status` follows the object with a watch and
//! prints a line each time its progress changes; `history` reads a Deployment's revisions from
//! the ReplicaSets it owns and a DaemonSet's from its ControllerRevisions; `undo` copies a
//! ReplicaSet's template (or a revision's) back into the object, as kubectl does.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use minik_api::request::PatchKind;
use minik_api::resources::ResourceInfo;
use minik_client::{Api, ListParams, WatchEventType};
use serde_json::{json, Map, Value};

use super::describe::pod_template;
use super::printers::{arr, n, s};
use super::tabwriter::align;
use super::time::{now, parse_duration};
use super::{exit, fail, kind_slash_name, named_targets, report, CliResult, Client, ClientFlags};
use minik_api::time::rfc3339_seconds;

use minik_api::wellknown::ANNOTATION_DEPLOYMENT_REVISION as REVISION;
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const HASH_LABEL: &str = "pod-template-hash";
use minik_api::wellknown::ANNOTATION_RESTARTED_AT as RESTARTED_AT;

/// Annotations a rollback keeps from the Deployment rather than taking from the ReplicaSet.
const NOT_ROLLED_BACK: &[&str] = &[
    minik_api::wellknown::ANNOTATION_LAST_APPLIED,
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RolloutCommand {
    /// Waits for a rollout to finish, printing its progress.
    Status(StatusArgs),
    /// Lists a deployment's revisions, or shows one with --revision.
    History(HistoryArgs),
    /// Rolls back to the previous revision, or to --to-revision.
    Undo(UndoArgs),
    /// Restarts every pod of a deployment with a rolling update.
    Restart(TargetArgs),
    /// Stops a deployment from rolling out changes to its template.
    Pause(TargetArgs),
    /// Lets a paused deployment roll out again.
    Resume(TargetArgs),
}

#[derive(clap::Args, Debug)]
struct TargetArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// deployment NAME, or deployment/NAME.
    #[arg(required = true)]
    targets: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// deployment NAME, or deployment/NAME.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Keeps watching until the rollout is done (--watch=false prints the status once).
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    watch: bool,
    /// How long to wait before giving up, e.g. 30s or 2m; 0 waits for ever.
    #[arg(long, default_value = "0")]
    timeout: String,
    /// Fails unless the deployment is at this revision.
    #[arg(long, default_value_t = 0)]
    revision: i64,
}

#[derive(clap::Args, Debug)]
struct HistoryArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// deployment NAME, or deployment/NAME.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Shows the pod template of this revision.
    #[arg(long, default_value_t = 0)]
    revision: i64,
}

#[derive(clap::Args, Debug)]
struct UndoArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// deployment NAME, or deployment/NAME.
    #[arg(required = true)]
    targets: Vec<String>,
    /// The revision to go back to; 0 means the one before the current.
    #[arg(long, default_value_t = 0)]
    to_revision: i64,
}

pub async fn run(args: RolloutArgs) -> CliResult<ExitCode> {
    match args.command {
        RolloutCommand::Status(a) => status(a).await,
        RolloutCommand::History(a) => history(a).await,
        RolloutCommand::Undo(a) => undo(a).await,
        RolloutCommand::Restart(a) => restart(a).await,
        RolloutCommand::Pause(a) => pause_or_resume(a, true).await,
        RolloutCommand::Resume(a) => pause_or_resume(a, false).await,
    }
}

/// The kinds `status`, `history`, `undo` and `restart` work on.
const ROLLOUT_KINDS: &[&str] = &["Deployment", "DaemonSet", "StatefulSet"];

/// The objects named, refusing kinds other than `kinds` with kubectl's words for `what`
/// (`status viewer`, `history viewer`, `rollbacker`, ...).
fn targets(
    words: &[String],
    what: &str,
    kinds: &[&str],
) -> CliResult<Vec<(&'static ResourceInfo, String)>> {
    let named = named_targets(words)?;
    if let Some((i, _)) = named.iter().find(|(i, _)| !kinds.contains(&i.kind)) {
        return Err(fail!("no {what} has been implemented for {:?}", i.kind));
    }
    if named.is_empty() {
        return Err(fail!("required resource not specified"));
    }
    Ok(named)
}

/// kubectl's `DaemonSetStatusViewer`: a line to print and whether the rollout is done; an
/// error for a DaemonSet that does not roll (`OnDelete`).
pub fn daemon_set_status(ds: &Value) -> CliResult<(String, bool)> {
    let name = s(ds, "/metadata/name");
    let strategy = s(ds, "/spec/updateStrategy/type");
    if !strategy.is_empty() && strategy != "RollingUpdate" {
        return Err(fail!(
            "rollout status is only available for RollingUpdate strategy type"
        ));
    }
    if n(ds, "/metadata/generation") > n(ds, "/status/observedGeneration") {
        return Ok((
            "Waiting for daemon set spec update to be observed...".into(),
            false,
        ));
    }
    let desired = n(ds, "/status/desiredNumberScheduled");
    let updated = n(ds, "/status/updatedNumberScheduled");
    let available = n(ds, "/status/numberAvailable");
    if updated < desired {
        return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."), false));
    }
    if available < desired {
        return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."), false));
    }
    Ok((format!("daemon set {name:?} successfully rolled out"), true))
}

/// kubectl's `StatefulSetStatusViewer`: a line to print and whether the rollout is done; an
/// error for a StatefulSet that does not roll (`OnDelete`).
pub fn stateful_set_status(sts: &Value) -> CliResult<(String, bool)> {
    let strategy = s(sts, "/spec/updateStrategy/type");
    if !strategy.is_empty() && strategy != "RollingUpdate" {
        return Err(fail!(
            "rollout status is only available for RollingUpdate strategy type"
        ));
    }
    let observed = n(sts, "/status/observedGeneration");
    if observed == 0 || n(sts, "/metadata/generation") > observed {
        return Ok((
            "Waiting for statefulset spec update to be observed...".into(),
            false,
        ));
    }
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = n(sts, "/status/readyReplicas");
    if ready < replicas {
        return Ok((
            format!("Waiting for {} pods to be ready...", replicas - ready),
            false,
        ));
    }
    let updated = n(sts, "/status/updatedReplicas");
    if sts
        .pointer("/spec/updateStrategy/rollingUpdate")
        .is_some_and(|r| !r.is_null())
    {
        let partition = n(sts, "/spec/updateStrategy/rollingUpdate/partition");
        if updated < replicas - partition {
            return Ok((
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    replicas - partition
                ),
                false,
            ));
        }
        return Ok((
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
            true,
        ));
    }
    let update = s(sts, "/status/updateRevision");
    if update != s(sts, "/status/currentRevision") {
        return Ok((
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
            ),
            false,
        ));
    }
    Ok((
        format!(
            "statefulset rolling update complete {} pods at revision {}...",
            n(sts, "/status/currentReplicas"),
            s(sts, "/status/currentRevision")
        ),
        true,
    ))
}

/// The status line of any kind `rollout status` follows.
fn status_line(info: &ResourceInfo, obj: &Value, revision: i64) -> CliResult<(String, bool)> {
    match info.kind {
        "DaemonSet" => daemon_set_status(obj),
        "StatefulSet" => stateful_set_status(obj),
        _ => rollout_status(obj, revision),
    }
}

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

/// What a Deployment's status says about its rollout: a line to print and whether it is done;
/// an error when its progress deadline passed (kubectl's `DeploymentStatusViewer`).
pub fn rollout_status(d: &Value, revision: i64) -> CliResult<(String, bool)> {
    let name = s(d, "/metadata/name");
    if revision > 0 {
        let current: i64 = s(d, &format!("/metadata/annotations/{}", escape(REVISION)))
            .parse()
            .map_err(|_| fail!("cannot get the revision of deployment {name:?}"))?;
        if current != revision {
            return Err(fail!(
                "desired revision ({revision}) is different from the running revision ({current})"
            ));
        }
    }
    if n(d, "/metadata/generation") > n(d, "/status/observedGeneration") {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let timed_out = arr(d, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Progressing" && s(c, "/reason") == "ProgressDeadlineExceeded");
    if timed_out {
        return Err(fail!("deployment {name:?} exceeded its progress deadline"));
    }
    let updated = n(d, "/status/updatedReplicas");
    let total = n(d, "/status/replicas");
    let available = n(d, "/status/availableReplicas");
    if let Some(want) = d.pointer("/spec/replicas").and_then(Value::as_i64) {
        if updated < want {
            return Ok((format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."), false));
        }
    }
    if total > updated {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", total - updated), false));
    }
    if available < updated {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."), false));
    }
    Ok((format!("deployment {name:?} successfully rolled out"), true))
}

/// A JSON pointer segment for a key with `/` in it.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

async fn status(args: StatusArgs) -> CliResult<ExitCode> {
    let timeout = parse_duration(&args.timeout).map_err(|e| fail!("invalid --timeout: {e}"))?;
    if args.revision < 0 {
        return Err(fail!(
            "revision must be a positive integer: {}",
            args.revision
        ));
    }
    let named = targets(&args.targets, "status viewer", ROLLOUT_KINDS)?;
    let client = Client::new(&args.client)?;
    for (info, name) in named {
        let wait = follow_status(&client, info, &name, &args);
        if timeout.is_zero() {
            wait.await?;
        } else {
            tokio::time::timeout(timeout, wait)
                .await
                .map_err(|_| fail!("timed out waiting for the condition"))??;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the rollout's progress until it is done (or once, without --watch).
async fn follow_status(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    args: &StatusArgs,
) -> CliResult {
    let ns = client.ns_for(info);
    let mut last_line = String::new();
    let mut show = |d: &Value| -> CliResult<bool> {
        let (line, done) = status_line(info, d, args.revision)?;
        // kubectl prints a line per change of the Deployment; repeating an unchanged line says
        // nothing, so only changes are printed.
        if line != last_line {
            println!("{line}");
            last_line = line;
        }
        Ok(done || !args.watch)
    };
    loop {
        let d = client.api.get(info, ns, name).await?;
        if show(&d)? {
            return Ok(());
        }
        let from = s(&d, "/metadata/resourceVersion").to_owned();
        let params = ListParams::fields(format!("metadata.name={name}"));
        let mut stream = client.api.watch(info, ns, &params, Some(&from)).await?;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                // The watch ended early (410 Gone, a broken stream): read the object again.
                Err(_) => break,
            };
            match event.kind {
                WatchEventType::Bookmark => {}
                WatchEventType::Deleted => return Err(fail!("object has been deleted")),
                WatchEventType::Added | WatchEventType::Modified => {
                    if show(&event.object)? {
                        return Ok(());
                    }
                }
            }
        }
        // Pause briefly so a server that keeps closing watches is not hammered.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// history and undo
// ---------------------------------------------------------------------------------------------

fn revision_of(obj: &Value) -> Option<i64> {
    obj.pointer(&format!("/metadata/annotations/{}", escape(REVISION)))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// The Deployment and the ReplicaSets it controls, with their revisions, oldest first.
async fn revisions(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
) -> CliResult<(Value, Vec<(i64, Value)>)> {
    let ns = client.ns_for(info);
    let d = client.api.get(info, ns, name).await?;
    let uid = s(&d, "/metadata/uid");
    let rs_info = super::resource("replicasets")?;
    let list = client.api.list(rs_info, ns, &ListParams::default()).await?;
    let mut out: Vec<(i64, Value)> = list
        .items
        .into_iter()
        .filter(|rs| {
            arr(rs, "/metadata/ownerReferences")
                .iter()
                .any(|o| s(o, "/uid") == uid && o.get("controller") == Some(&Value::Bool(true)))
        })
        .filter_map(|rs| revision_of(&rs).map(|r| (r, rs)))
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok((d, out))
}

async fn history(args: HistoryArgs) -> CliResult<ExitCode> {
    if args.revision < 0 {
        return Err(fail!(
            "revision must be a positive integer: {}",
            args.revision
        ));
    }
    let named = targets(&args.targets, "history viewer", ROLLOUT_KINDS)?;
    let client = Client::new(&args.client)?;
    for_each(named, async |info, name| match info.kind {
        "DaemonSet" | "StatefulSet" => {
            revision_history_text(&client, info, name, args.revision).await
        }
        _ => history_text(&client, info, name, args.revision).await,
    })
    .await
}

/// Runs `one` on each object named, printing what it returns, and goes on after a failure as
/// kubectl does; the exit status says whether any failed.
async fn for_each(
    named: Vec<(&'static ResourceInfo, String)>,
    one: impl AsyncFn(&'static ResourceInfo, &str) -> CliResult<String>,
) -> CliResult<ExitCode> {
    let mut failed = false;
    for (info, name) in named {
        match one(info, &name).await {
            Ok(text) => print!("{text}"),
            Err(e) => report(&mut failed, e),
        }
    }
    exit(failed)
}

async fn history_text(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    revision: i64,
) -> CliResult<String> {
    let (_, revisions) = revisions(client, info, name).await?;
    let title = kind_slash_name(info, name);
    if revision > 0 {
        let (_, rs) = revisions
            .iter()
            .find(|(r, _)| *r == revision)
            .ok_or_else(|| fail!("unable to find the specified revision"))?;
        let mut template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        // kubectl shows the ReplicaSet's change-cause with the template it ran.
        if let Some(cause) = rs
            .pointer(&format!("/metadata/annotations/{}", escape(CHANGE_CAUSE)))
            .cloned()
        {
            template["metadata"]["annotations"][CHANGE_CAUSE] = cause;
        }
        let mut text = String::new();
        pod_template(&mut text, &template);
        return Ok(format!(
            "{title} with revision #{revision}\n{}\n",
            align(&text, 2)
        ));
    }
    if revisions.is_empty() {
        return Ok(format!("{title} \nNo rollout history found.\n"));
    }
    let mut table = String::from("REVISION\tCHANGE-CAUSE\n");
    for (r, rs) in &revisions {
        let cause = s(
            rs,
            &format!("/metadata/annotations/{}", escape(CHANGE_CAUSE)),
        );
        let cause = if cause.is_empty() { "<none>" } else { cause };
        table.push_str(&format!("{r}\t{cause}\n"));
    }
    // kubectl prints the name, a space, then the table and an empty line.
    Ok(format!("{title} \n{}\n", align(&table, 2)))
}

/// A template without the `pod-template-hash` label, for comparing and restoring.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    t
}

async fn undo(args: UndoArgs) -> CliResult<ExitCode> {
    if args.to_revision < 0 {
        return Err(fail!(
            "unable to find specified revision {} in history",
            args.to_revision
        ));
    }
    let named = targets(&args.targets, "rollbacker", ROLLOUT_KINDS)?;
    let client = Client::new(&args.client)?;
    for_each(named, async |info, name| {
        let outcome = match info.kind {
            "DaemonSet" | "StatefulSet" => {
                undo_revision(&client, info, name, args.to_revision).await?
            }
            _ => undo_one(&client, info, name, args.to_revision).await?,
        };
        Ok(format!("{} {outcome}\n", kind_slash_name(info, name)))
    })
    .await
}

/// The ReplicaSet to roll back to: the one at `to`, or the newest before the current one.
fn rollback_target(d: &Value, revisions: &[(i64, Value)], to: i64) -> CliResult<(i64, Value)> {
    if to > 0 {
        return revisions
            .iter()
            .find(|(r, _)| *r == to)
            .cloned()
            .ok_or_else(|| fail!("unable to find specified revision {to} in history"));
    }
    // `revisions` is sorted: the last is the current one, the one before it the previous.
    match revisions {
        [.., previous, _] => Ok(previous.clone()),
        _ => Err(fail!(
            "no rollout history found for deployment {:?}",
            s(d, "/metadata/name")
        )),
    }
}

/// The JSON patch that restores `rs`'s template into `d`, with the ReplicaSet's annotations
/// (its change-cause among them) and the Deployment's own bookkeeping annotations.
fn rollback_patch(d: &Value, rs: &Value) -> Value {
    let mut annotations = Map::new();
    let current = d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for key in NOT_ROLLED_BACK {
        if let Some(v) = current.and_then(|a| a.get(*key)) {
            annotations.insert((*key).to_owned(), v.clone());
        }
    }
    if let Some(rs_annotations) = rs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in rs_annotations {
            if !NOT_ROLLED_BACK.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    let template = without_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null));
    json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        // `add` replaces an existing member and also works when there is none yet.
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
    ])
}

async fn undo_one(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    to: i64,
) -> CliResult<String> {
    let (d, revisions) = revisions(client, info, name).await?;
    let (revision, rs) = rollback_target(&d, &revisions, to)?;
    if d.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        return Err(fail!(
            "you cannot rollback a paused deployment; resume it first with 'minik rollout resume' and try again"
        ));
    }
    let current = without_hash(d.pointer("/spec/template").unwrap_or(&Value::Null));
    let target = without_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null));
    if current == target {
        return Ok(format!(
            "skipped rollback (current template already matches revision {revision})"
        ));
    }
    client
        .patch_object(info, name, PatchKind::Json, rollback_patch(&d, &rs))
        .await
        .map_err(|e| fail!("failed restoring revision {revision}: {e}"))?;
    Ok("rolled back".into())
}

// ---------------------------------------------------------------------------------------------
// history and undo of ControllerRevisions (DaemonSets)
// ---------------------------------------------------------------------------------------------

/// The object and the ControllerRevisions it controls, oldest first.
async fn controller_revisions(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
) -> CliResult<(Value, Vec<Value>)> {
    let ns = client.ns_for(info);
    let obj = client.api.get(info, ns, name).await?;
    let uid = s(&obj, "/metadata/uid");
    let cr_info = super::resource("controllerrevisions")?;
    let list = client.api.list(cr_info, ns, &ListParams::default()).await?;
    let mut out: Vec<Value> = list
        .items
        .into_iter()
        .filter(|r| {
            arr(r, "/metadata/ownerReferences")
                .iter()
                .any(|o| s(o, "/uid") == uid && o.get("controller") == Some(&Value::Bool(true)))
        })
        .collect();
    out.sort_by_key(|r| n(r, "/revision"));
    Ok((obj, out))
}

/// The pod template a revision restores: its patch's `spec.template`, without the directive.
fn revision_template(revision: &Value) -> Value {
    let mut template = revision
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(t) = template.as_object_mut() {
        t.remove("$patch");
    }
    template
}

/// kubectl's `DaemonSetHistoryViewer`: the revisions and their change-causes, or the template
/// of one.
async fn revision_history_text(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    revision: i64,
) -> CliResult<String> {
    let (_, revisions) = controller_revisions(client, info, name).await?;
    let title = kind_slash_name(info, name);
    let cause_of = |r: &Value| {
        s(
            r,
            &format!("/metadata/annotations/{}", escape(CHANGE_CAUSE)),
        )
        .to_owned()
    };
    if revision > 0 {
        let r = revisions
            .iter()
            .find(|r| n(r, "/revision") == revision)
            .ok_or_else(|| fail!("unable to find the specified revision"))?;
        let mut template = revision_template(r);
        let cause = cause_of(r);
        if !cause.is_empty() {
            template["metadata"]["annotations"][CHANGE_CAUSE] = json!(cause);
        }
        let mut text = String::new();
        pod_template(&mut text, &template);
        return Ok(format!(
            "{title} with revision #{revision}\n{}\n",
            align(&text, 2)
        ));
    }
    if revisions.is_empty() {
        return Ok(format!("{title} \nNo rollout history found.\n"));
    }
    let mut table = String::from("REVISION\tCHANGE-CAUSE\n");
    for r in &revisions {
        let cause = cause_of(r);
        let cause = if cause.is_empty() { "<none>" } else { &cause };
        table.push_str(&format!("{}\t{cause}\n", n(r, "/revision")));
    }
    Ok(format!("{title} \n{}\n", align(&table, 2)))
}

/// The revision to roll back to (kubectl's `findHistory`): the one numbered `to`, or the one
/// before the newest.
fn revision_target(revisions: &[Value], to: i64) -> CliResult<&Value> {
    if to > 0 {
        return revisions
            .iter()
            .find(|r| n(r, "/revision") == to)
            .ok_or_else(|| fail!("unable to find specified revision {to} in history"));
    }
    match revisions {
        [.., previous, _] => Ok(previous),
        _ => Err(fail!("no last revision to roll back to")),
    }
}

/// kubectl's `DaemonSetRollbacker`: the object's template becomes the revision's again.
async fn undo_revision(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    to: i64,
) -> CliResult<String> {
    let (obj, revisions) = controller_revisions(client, info, name).await?;
    let target = revision_target(&revisions, to)?;
    let number = n(target, "/revision");
    let template = revision_template(target);
    if obj.pointer("/spec/template") == Some(&template) {
        return Ok(format!(
            "skipped rollback (current template already matches revision {number})"
        ));
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    client
        .patch_object(info, name, PatchKind::Json, patch)
        .await
        .map_err(|e| fail!("failed restoring revision {number}: {e}"))?;
    Ok("rolled back".into())
}

// ---------------------------------------------------------------------------------------------
// restart, pause, resume
// ---------------------------------------------------------------------------------------------

async fn restart(args: TargetArgs) -> CliResult<ExitCode> {
    let named = targets(&args.targets, "restarter", ROLLOUT_KINDS)?;
    let client = Client::new(&args.client)?;
    for_each(named, async |info, name| {
        let d = client.api.get(info, client.ns_for(info), name).await?;
        if d.pointer("/spec/paused") == Some(&Value::Bool(true)) {
            return Err(fail!(
                "{} {name:?} can't restart paused deployment (run rollout resume first)",
                info.qualified_plural()
            ));
        }
        let at = rfc3339_seconds(now());
        let pointer = format!(
            "/spec/template/metadata/annotations/{}",
            escape(RESTARTED_AT)
        );
        if d.pointer(&pointer).and_then(Value::as_str) == Some(at.as_str()) {
            return Err(fail!("failed to create patch for {name}: if restart has already been triggered within the past second, please wait before attempting to trigger another"));
        }
        let body = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}});
        client
            .patch_object(info, name, PatchKind::Strategic, body)
            .await?;
        Ok(format!("{} restarted\n", kind_slash_name(info, name)))
    })
    .await
}

async fn pause_or_resume(args: TargetArgs, pause: bool) -> CliResult<ExitCode> {
    let what = if pause { "pauser" } else { "resumer" };
    let named = targets(&args.targets, what, &["Deployment"])?;
    let client = Client::new(&args.client)?;
    for_each(named, async |info, name| {
        let d = client.api.get(info, client.ns_for(info), name).await?;
        let paused = d.pointer("/spec/paused") == Some(&Value::Bool(true));
        if paused == pause {
            let state = if pause {
                "is already paused"
            } else {
                "is not paused"
            };
            return Err(fail!("{} {name:?} {state}", info.qualified_plural()));
        }
        client
            .patch_object(
                info,
                name,
                PatchKind::Strategic,
                json!({"spec": {"paused": pause}}),
            )
            .await?;
        let done = if pause { "paused" } else { "resumed" };
        Ok(format!("{} {done}\n", kind_slash_name(info, name)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2, "annotations": {REVISION: "2"}}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn status_lines_follow_kubectl() {
        let cases = [
            (json!({"observedGeneration": 1}), "Waiting for deployment spec update to be observed...", false),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}), "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...", false),
            (json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3}), "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...", false),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}), "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...", false),
            (json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}), "deployment \"web\" successfully rolled out", true),
        ];
        for (status, line, done) in cases {
            let got = rollout_status(&deployment(status.clone()), 0).unwrap();
            assert_eq!((got.0.as_str(), got.1), (line, done), "{status}");
        }
        let stuck = deployment(
            json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        let err = rollout_status(&stuck, 0).unwrap_err().to_string();
        assert_eq!(
            err,
            "error: deployment \"web\" exceeded its progress deadline"
        );
        let err = rollout_status(&deployment(json!({})), 3)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "error: desired revision (3) is different from the running revision (2)"
        );
    }

    #[test]
    fn stateful_set_status_lines_follow_kubectl() {
        let sts = |spec: Value, status: Value| json!({"metadata": {"name": "web", "generation": 2}, "spec": spec, "status": status});
        let rolling = json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
        let (line, done) =
            stateful_set_status(&sts(rolling.clone(), json!({"observedGeneration": 1}))).unwrap();
        assert_eq!(
            (line.as_str(), done),
            (
                "Waiting for statefulset spec update to be observed...",
                false
            )
        );
        let (line, _) = stateful_set_status(&sts(
            rolling.clone(),
            json!({"observedGeneration": 2, "readyReplicas": 1}),
        ))
        .unwrap();
        assert_eq!(line, "Waiting for 2 pods to be ready...");
        let (line, done) = stateful_set_status(&sts(
            rolling.clone(),
            json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1}),
        ))
        .unwrap();
        assert_eq!((line.as_str(), done), ("Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...", false));
        let (line, done) = stateful_set_status(&sts(
            rolling,
            json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2}),
        ))
        .unwrap();
        assert_eq!(
            (line.as_str(), done),
            (
                "partitioned roll out complete: 2 new pods have been updated...",
                true
            )
        );
        let on_delete = json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}});
        assert!(stateful_set_status(&sts(on_delete, json!({}))).is_err());
    }

    #[test]
    fn daemon_set_status_lines_follow_kubectl() {
        let ds = |status: Value| json!({"metadata": {"name": "agent", "generation": 2}, "spec": {"updateStrategy": {"type": "RollingUpdate"}}, "status": status});
        let cases = [
            (json!({"observedGeneration": 1}), "Waiting for daemon set spec update to be observed...", false),
            (json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 1}), "Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...", false),
            (json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 1}), "Waiting for daemon set \"agent\" rollout to finish: 1 of 3 updated pods are available...", false),
            (json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}), "daemon set \"agent\" successfully rolled out", true),
        ];
        for (status, line, done) in cases {
            let got = daemon_set_status(&ds(status.clone())).unwrap();
            assert_eq!((got.0.as_str(), got.1), (line, done), "{status}");
        }
        let on_delete = json!({"metadata": {"name": "agent"}, "spec": {"updateStrategy": {"type": "OnDelete"}}});
        assert_eq!(
            daemon_set_status(&on_delete).unwrap_err().to_string(),
            "error: rollout status is only available for RollingUpdate strategy type"
        );
    }

    #[test]
    fn daemon_set_rollbacks_find_the_revision_and_its_template() {
        let revision = |number: i64, image: &str| {
            json!({"revision": number, "data": {"spec": {"template": {
            "$patch": "replace", "spec": {"containers": [{"name": "c", "image": image}]}}}}})
        };
        let revisions = vec![revision(1, "v1"), revision(2, "v2"), revision(3, "v3")];
        assert_eq!(n(revision_target(&revisions, 0).unwrap(), "/revision"), 2);
        assert_eq!(n(revision_target(&revisions, 1).unwrap(), "/revision"), 1);
        assert_eq!(
            revision_target(&revisions, 9).unwrap_err().to_string(),
            "error: unable to find specified revision 9 in history"
        );
        assert_eq!(
            revision_target(&revisions[..1], 0).unwrap_err().to_string(),
            "error: no last revision to roll back to"
        );
        assert_eq!(
            revision_template(&revisions[0]),
            json!({"spec": {"containers": [{"name": "c", "image": "v1"}]}})
        );
    }

    #[test]
    fn rollback_restores_the_template_and_the_replica_sets_annotations() {
        let d = json!({"metadata": {"annotations": {REVISION: "2", "kubernetes.io/change-cause": "v2", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v2"}]}}}});
        let rs1 = json!({"metadata": {"annotations": {REVISION: "1", "kubernetes.io/change-cause": "v1"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}}});
        let rs2 = json!({"metadata": {"annotations": {REVISION: "2"}}, "spec": {"template": d["spec"]["template"].clone()}});
        let revisions = vec![(1, rs1.clone()), (2, rs2)];
        let (r, target) = rollback_target(&d, &revisions, 0).unwrap();
        assert_eq!(r, 1);
        assert_eq!(
            rollback_patch(&d, &target),
            json!([
                {"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}},
                {"op": "add", "path": "/metadata/annotations", "value": {REVISION: "2", "kubernetes.io/change-cause": "v1", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            ])
        );
        assert!(rollback_target(&d, &revisions, 7).is_err());
        assert!(rollback_target(&d, &revisions[1..], 0).is_err());
    }
}
