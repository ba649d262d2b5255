//! `apply`, `create` and `delete`: writing manifests to the cluster. `apply` is kubectl's
//! client-side apply: it keeps the applied manifest in the `last-applied-configuration`
//! annotation and sends a three-way strategic merge patch (last applied vs file vs live), so a
//! field removed from the file is removed from the object and an unchanged file sends nothing.

use std::process::ExitCode;

use minik_api::patch::three_way_merge_patch;
use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};
use minik_client::Api;
use serde_json::{json, Map, Value};

use super::manifest::{self, FileFlags, Manifest};
use super::{
    exit, fail, kind_slash_name, parse_targets, qualified_singular, report, CliError, CliResult,
    Client, ClientFlags,
};

use minik_api::wellknown::ANNOTATION_LAST_APPLIED as LAST_APPLIED;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    files: FileFlags,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    files: FileFlags,
    /// Or an object made from flags: `create namespace NAME`, `create deployment NAME --image I`.
    #[command(subcommand)]
    what: Option<super::run::CreateWhat>,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    files: FileFlags,
    /// KIND NAME..., KIND/NAME..., or KIND with -l or --all.
    targets: Vec<String>,
    /// Deletes the objects of KIND whose labels match this selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Deletes every object of KIND in the namespace.
    #[arg(long)]
    all: bool,
    /// Across all namespaces (with -l or --all).
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Seconds the pod gets to stop; -1 uses the pod's own value, 0 stops at once.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// background, foreground or orphan: what happens to the objects this one owns.
    #[arg(long, default_value = "background")]
    cascade: String,
    /// Ignores objects that are not found.
    #[arg(long)]
    ignore_not_found: bool,
}

/// How `delete` was asked to delete, validated.
struct DeleteSettings {
    options: DeleteOptions,
    ignore_not_found: bool,
}

impl DeleteArgs {
    fn settings(&self) -> CliResult<DeleteSettings> {
        let propagation = match self.cascade.as_str() {
            "background" | "true" => Propagation::Background,
            "foreground" => Propagation::Foreground,
            "orphan" | "false" => Propagation::Orphan,
            other => {
                return Err(fail!(
                    "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
                ))
            }
        };
        if self.grace_period < -1 {
            return Err(fail!("--grace-period must be -1 or more"));
        }
        let by_file = !self.files.files.is_empty();
        if by_file && !self.targets.is_empty() {
            return Err(fail!(
                "resources cannot be named both with -f and as arguments"
            ));
        }
        if !by_file && self.targets.is_empty() {
            return Err(fail!(
                "You must provide one or more resources by argument or filename."
            ));
        }
        Ok(DeleteSettings {
            options: DeleteOptions {
                grace_period_seconds: (self.grace_period >= 0).then_some(self.grace_period),
                propagation: Some(propagation),
                ..Default::default()
            },
            ignore_not_found: self.ignore_not_found,
        })
    }
}

pub async fn apply(args: ApplyArgs) -> CliResult<ExitCode> {
    let client = Client::new(&args.client)?;
    let manifests = manifest::read(&args.files, &client.settings)?;
    let mut failed = false;
    for m in &manifests {
        match apply_one(&client, m).await {
            Ok(outcome) => println!("{} {outcome}", kind_slash_name(m.info, &m.name)),
            Err(e) => report(&mut failed, e),
        }
    }
    exit(failed)
}

/// The manifest as it is recorded in the annotation: as written, minus the annotation itself.
fn last_applied_of(object: &Value) -> Value {
    let mut recorded = object.clone();
    if let Some(annotations) = recorded
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            if let Some(meta) = recorded.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("annotations");
            }
        }
    }
    recorded
}

/// The object to send: the manifest with the annotation recording it.
fn with_annotation(object: &Value) -> Value {
    let recorded = last_applied_of(object);
    let mut modified = object.clone();
    let meta = modified
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    if let Some(Value::Object(meta)) = meta {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[LAST_APPLIED] = Value::String(recorded.to_string() + "\n");
    }
    modified
}

fn in_file(error: minik_api::ApiError, doing: &'static str, m: &Manifest) -> CliError {
    CliError::InFile {
        error: Box::new(error),
        doing,
        source: m.source.clone(),
    }
}

async fn apply_one(client: &Client, m: &Manifest) -> CliResult<&'static str> {
    let ns = m.namespace.as_deref();
    let modified = with_annotation(&m.object);
    let live = match client.api.get(m.info, ns, &m.name).await {
        Ok(live) => live,
        Err(e) if e.is_not_found() => {
            client
                .api
                .create(m.info, ns, modified, WriteOptions::default())
                .await
                .map_err(|e| in_file(e, "creating", m))?;
            return Ok("created");
        }
        Err(e) => return Err(in_file(e, "retrieving current configuration of", m)),
    };
    let original: Option<Value> = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok());
    let patch = three_way_merge_patch(m.info.kind, original.as_ref(), &modified, &live);
    if patch.as_object().is_none_or(Map::is_empty) {
        return Ok("unchanged");
    }
    client
        .api
        .patch(
            m.info,
            ns,
            &m.name,
            Patch {
                kind: PatchKind::Strategic,
                body: patch,
            },
            false,
            WriteOptions::default(),
        )
        .await
        .map_err(|e| in_file(e, "patching", m))?;
    Ok("configured")
}

pub async fn create(args: CreateArgs) -> CliResult<ExitCode> {
    if let Some(what) = args.what {
        if !args.files.files.is_empty() {
            return Err(fail!(
                "objects cannot be named both with -f and as a kind and name"
            ));
        }
        return super::run::create_from_flags(&args.client, what).await;
    }
    let client = Client::new(&args.client)?;
    let manifests = manifest::read(&args.files, &client.settings)?;
    let mut failed = false;
    for m in &manifests {
        let result = client
            .api
            .create(
                m.info,
                m.namespace.as_deref(),
                m.object.clone(),
                WriteOptions::default(),
            )
            .await;
        match result {
            Ok(_) => println!("{} created", kind_slash_name(m.info, &m.name)),
            Err(e) => report(&mut failed, in_file(e, "creating", m)),
        }
    }
    exit(failed)
}

pub async fn delete(args: DeleteArgs) -> CliResult<ExitCode> {
    let settings = args.settings()?;
    let client = Client::new(&args.client)?;
    // (kind, namespace, name) of every object to delete, resolved before the first deletion.
    let mut doomed = Vec::new();
    if !args.files.files.is_empty() {
        for m in manifest::read(&args.files, &client.settings)? {
            doomed.push((m.info, m.namespace, m.name));
        }
    } else {
        let targets = parse_targets(&args.targets)?;
        for (info, names) in targets.groups {
            let ns = if args.all_namespaces {
                None
            } else {
                client.ns_for(info)
            };
            if names.is_empty() {
                let items = client
                    .list_selected(info, ns, &args.selector, args.all)
                    .await?;
                for item in items {
                    let name = item
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let ns = item
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    doomed.push((info, ns, name));
                }
            } else {
                if args.selector.is_some() {
                    return Err(fail!(
                        "name cannot be provided when a selector is specified"
                    ));
                }
                for name in names {
                    doomed.push((info, ns.map(str::to_owned), name));
                }
            }
        }
        if doomed.is_empty() {
            eprintln!("No resources found");
        }
    }
    let mut failed = false;
    for (info, ns, name) in doomed {
        match client
            .api
            .delete(info, ns.as_deref(), &name, settings.options.clone())
            .await
        {
            Ok(_) => println!("{} \"{name}\" deleted", qualified_singular(info)),
            Err(e) if e.is_not_found() && settings.ignore_not_found => {}
            Err(e) => report(&mut failed, e.into()),
        }
    }
    exit(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_manifest_gives_an_empty_patch() {
        let file = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let mut live = with_annotation(&file);
        live["metadata"]["uid"] = json!("u");
        live["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        live["status"] = json!({"phase": "Running"});
        let original = last_applied_of(&file);
        assert_eq!(
            three_way_merge_patch("Pod", Some(&original), &with_annotation(&file), &live),
            json!({})
        );
    }
}
