//! `apply`, `create` and `delete`: writing manifests to the cluster. `apply` is kubectl's
//! client-side apply: it keeps the applied manifest in the `last-applied-configuration`
//! annotation and sends a three-way strategic merge patch (last applied vs file vs live), so a
//! field removed from the file is removed from the object and an unchanged file sends nothing.

use std::process::ExitCode;

use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};
use minik_client::{Api, ListParams};
use serde_json::{json, Map, Value};

use super::manifest::{self, FileFlags, Manifest};
use super::{
    exit, fail, kind_slash_name, parse_targets, qualified_singular, report, CliError, CliResult,
    Client, ClientFlags,
};

/// The annotation kubectl keeps the last applied manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
    let patch = three_way_patch(original.as_ref(), &modified, &live);
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

/// The merge key of a list field, from the `patchMergeKey` tags of `k8s.io/api`, for the lists
/// of the kinds minik serves. `ports` is a container's (`containerPort`) or a Service's
/// (`port`); the elements tell which.
fn merge_key(field: &str, elements: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "ports" if elements.iter().any(|e| e.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

/// kubectl's `CreateThreeWayMergePatch`: what to send so that `current` takes every value of
/// `modified`, and loses what `original` (the last applied manifest) had and `modified` no
/// longer has. Fields only the live object has (defaults, status, others' changes) are kept.
pub fn three_way_patch(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let empty = Map::new();
    let modified = modified.as_object().unwrap_or(&empty);
    let current = current.as_object().unwrap_or(&empty);
    Value::Object(diff_map(
        original.and_then(Value::as_object),
        modified,
        current,
    ))
}

fn diff_map(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, m) in modified {
        let o = original.and_then(|o| o.get(key));
        match (m, current.get(key)) {
            (Value::Object(m), Some(Value::Object(c))) => {
                let sub = diff_map(o.and_then(Value::as_object), m, c);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(m), Some(Value::Array(c))) => {
                let o = o.and_then(Value::as_array).map(Vec::as_slice);
                match merge_key(key, m)
                    .filter(|k| keyed(m, k) && keyed(c, k) && o.is_none_or(|o| keyed(o, k)))
                {
                    Some(merge_key) => {
                        if let Some((items, order)) = diff_keyed_list(o, m, c, merge_key) {
                            patch.insert(key.clone(), Value::Array(items));
                            patch.insert(format!("$setElementOrder/{key}"), Value::Array(order));
                        }
                    }
                    None if m != c => {
                        patch.insert(key.clone(), Value::Array(m.clone()));
                    }
                    None => {}
                }
            }
            (m, c) if Some(m) != c => {
                patch.insert(key.clone(), m.clone());
            }
            _ => {}
        }
    }
    // What the last apply set and this one does not is deleted, if it is still there.
    if let Some(original) = original {
        for key in original.keys() {
            if !modified.contains_key(key) && current.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

/// Whether every element is a map with a scalar under `key`.
fn keyed(list: &[Value], key: &str) -> bool {
    list.iter().all(|e| {
        e.get(key)
            .is_some_and(|k| !k.is_object() && !k.is_array() && !k.is_null())
    })
}

/// The patch of a list merged on `key`: changed and new elements, deletions of elements the
/// last apply had, and the order of the manifest; `None` when nothing differs.
fn diff_keyed_list(
    original: Option<&[Value]>,
    modified: &[Value],
    current: &[Value],
    key: &str,
) -> Option<(Vec<Value>, Vec<Value>)> {
    let find = |list: &[Value], k: &Value| list.iter().find(|e| e.get(key) == Some(k)).cloned();
    let mut items = Vec::new();
    for m in modified {
        let k = &m[key];
        match (m.as_object(), find(current, k)) {
            (Some(mm), Some(Value::Object(c))) => {
                let o = original.and_then(|o| find(o, k));
                let mut sub = diff_map(o.as_ref().and_then(Value::as_object), mm, &c);
                if !sub.is_empty() {
                    sub.insert(key.to_owned(), k.clone());
                    items.push(Value::Object(sub));
                }
            }
            _ => items.push(m.clone()),
        }
    }
    for o in original.unwrap_or_default() {
        let k = &o[key];
        if find(modified, k).is_none() && find(current, k).is_some() {
            items.push(json!({key: k, "$patch": "delete"}));
        }
    }
    let wanted: Vec<&Value> = modified.iter().map(|e| &e[key]).collect();
    let live_order: Vec<&Value> = current
        .iter()
        .map(|e| &e[key])
        .filter(|k| wanted.contains(k))
        .collect();
    if items.is_empty() && wanted == live_order {
        return None;
    }
    let order = wanted.into_iter().map(|k| json!({key: k})).collect();
    Some((items, order))
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
                if args.selector.is_none() && !args.all {
                    return Err(fail!(
                        "resource(s) were provided, but no name was specified"
                    ));
                }
                let params = ListParams {
                    label_selector: args.selector.clone(),
                    field_selector: None,
                };
                let list = client.api.list(info, ns, &params).await?;
                for item in list.items {
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
            three_way_patch(Some(&original), &with_annotation(&file), &live),
            json!({})
        );
    }

    #[test]
    fn removed_fields_and_elements_are_deleted_and_changes_sent() {
        let original = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}, {"name": "b", "image": "1"}]}});
        let modified = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "2"}]}});
        let current = json!({"metadata": {"labels": {"app": "web", "tier": "x", "other": "kept"}}, "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}], "imagePullPolicy": "IfNotPresent"}, {"name": "b", "image": "1"}]}});
        let patch = three_way_patch(Some(&original), &modified, &current);
        assert_eq!(
            patch,
            json!({
                "metadata": {"labels": {"tier": null}},
                "spec": {
                    "containers": [{"name": "a", "image": "2", "env": null}, {"name": "b", "$patch": "delete"}],
                    "$setElementOrder/containers": [{"name": "a"}],
                }
            })
        );
        let applied = minik_api::patch::strategic_merge_patch("Pod", &current, &patch).unwrap();
        assert_eq!(
            applied["spec"]["containers"],
            json!([{"name": "a", "image": "2", "imagePullPolicy": "IfNotPresent"}])
        );
        assert_eq!(
            applied["metadata"]["labels"],
            json!({"app": "web", "other": "kept"})
        );
    }
}
