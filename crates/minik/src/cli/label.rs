//! `label` and `annotate`: `KEY=VALUE` sets, `KEY-` removes, and changing a value that is
//! already there needs `--overwrite`, as kubectl. The change is sent as a JSON merge patch of
//! just those keys, so changes others make meanwhile are kept; with `--resource-version` it
//! applies only to that version of the object (a Conflict otherwise).

use std::collections::BTreeMap;
use std::process::ExitCode;

use minik_api::request::PatchKind;
use minik_api::resources::ResourceInfo;
use minik_client::Api;
use serde_json::{json, Map, Value};

use super::{exit, fail, kind_slash_name, parse_targets, report, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct LabelArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND NAME... (or KIND/NAME...), then KEY=VALUE to set and KEY- to remove.
    #[arg(required = true)]
    args: Vec<String>,
    /// Allows changing a value that is already set.
    #[arg(long)]
    overwrite: bool,
    /// Acts on every object of KIND whose labels match this selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Acts on every object of KIND in the namespace.
    #[arg(long)]
    all: bool,
    /// Lists the current values instead of changing them.
    #[arg(long)]
    list: bool,
    /// Only changes the object if it is still at this resourceVersion.
    #[arg(long)]
    resource_version: Option<String>,
}

/// Labels or annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Labels,
    Annotations,
}

impl Which {
    fn field(self) -> &'static str {
        match self {
            Which::Labels => "labels",
            Which::Annotations => "annotations",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Which::Labels => "label",
            Which::Annotations => "annotation",
        }
    }
}

/// The validated changes: values to set and keys to remove.
#[derive(Debug, PartialEq)]
struct Changes {
    set: BTreeMap<String, String>,
    remove: Vec<String>,
}

/// Whether a word is a change rather than a target: targets never hold `=` and never end with
/// `-` (object names cannot).
fn is_change(word: &str) -> bool {
    word.contains('=') || word.ends_with('-')
}

/// Splits `KIND NAME... KEY=VALUE... KEY-...` into targets and changes, checking keys and
/// label values.
fn split(args: &[String], which: Which) -> CliResult<(Vec<String>, Changes)> {
    let first_change = args.iter().position(|w| is_change(w)).unwrap_or(args.len());
    let (targets, specs) = args.split_at(first_change);
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for spec in specs {
        if let Some((key, value)) = spec.split_once('=') {
            if which == Which::Labels && value.contains('=') {
                return Err(fail!("invalid label spec: {spec}"));
            }
            check_key(key, spec, which)?;
            if which == Which::Labels {
                let problems = minik_api::names::label_value(value);
                if !problems.is_empty() {
                    return Err(fail!(
                        "invalid label value: {spec:?}: {}",
                        problems.join(";")
                    ));
                }
            }
            set.insert(key.to_owned(), value.to_owned());
        } else if let Some(key) = spec.strip_suffix('-') {
            check_key(key, spec, which)?;
            remove.push(key.to_owned());
        } else {
            return Err(fail!("unknown {} spec: {spec}", which.noun()));
        }
    }
    if remove.iter().any(|k| set.contains_key(k)) {
        return Err(match which {
            Which::Labels => fail!("can not both modify and remove a label in the same command"),
            Which::Annotations => fail!(
                "can not both modify and remove the following annotation(s) in the same command: {}",
                remove
                    .iter()
                    .filter(|k| set.contains_key(*k))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok((targets.to_vec(), Changes { set, remove }))
}

fn check_key(key: &str, spec: &str, which: Which) -> CliResult {
    let problems = minik_api::names::qualified_name(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(fail!(
            "invalid {} spec: {spec}: {}",
            which.noun(),
            problems.join("; ")
        ))
    }
}

/// The merge patch for one object and what kubectl says about it (`labeled`, `not labeled`,
/// ...), or the refusal when a value would change without `--overwrite`.
fn plan(
    current: &Map<String, Value>,
    changes: &Changes,
    which: Which,
    overwrite: bool,
) -> CliResult<(Map<String, Value>, &'static str)> {
    if !overwrite {
        let clashes: Vec<String> = changes
            .set
            .iter()
            .filter(|(k, v)| {
                // The change-cause annotation may always be overwritten (kubectl).
                !(which == Which::Annotations && *k == "kubernetes.io/change-cause")
                    && current
                        .get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|c| c != *v)
            })
            .map(|(k, _)| {
                format!(
                    "'{k}' already has a value ({})",
                    current.get(k).and_then(Value::as_str).unwrap_or_default()
                )
            })
            .collect();
        if !clashes.is_empty() {
            return Err(match which {
                Which::Labels => {
                    let each: Vec<String> = clashes
                        .iter()
                        .map(|c| format!("{c}, and --overwrite is false"))
                        .collect();
                    // Several problems read as Go's aggregated error: `[a, b]`.
                    if each.len() == 1 {
                        fail!("{}", each[0])
                    } else {
                        fail!("[{}]", each.join(", "))
                    }
                }
                Which::Annotations => fail!(
                    "--overwrite is false but found the following declared annotation(s): {}",
                    clashes.join("; ")
                ),
            });
        }
    }
    let mut patch = Map::new();
    for (k, v) in &changes.set {
        if current.get(k).and_then(Value::as_str) != Some(v.as_str()) {
            patch.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let added = !patch.is_empty();
    let mut removed = false;
    for k in &changes.remove {
        if current.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
            removed = true;
        }
    }
    let message = match which {
        Which::Annotations => "annotated",
        Which::Labels => match (added, removed) {
            (true, true) => "modified",
            (true, false) => "labeled",
            (false, true) => "unlabeled",
            (false, false) => "not labeled",
        },
    };
    Ok((patch, message))
}

pub async fn run(args: LabelArgs, which: Which) -> CliResult<ExitCode> {
    let (target_words, changes) = split(&args.args, which)?;
    if target_words.is_empty() {
        return Err(fail!(
            "one or more resources must be specified as <resource> <name> or <resource>/<name>"
        ));
    }
    if !args.list && changes.set.is_empty() && changes.remove.is_empty() {
        return Err(fail!("at least one {} update is required", which.noun()));
    }
    if args.all && args.selector.is_some() {
        return Err(fail!("cannot set --all and --selector at the same time"));
    }
    let client = Client::new(&args.client)?;
    let targets = parse_targets(&target_words)?;
    let mut objects: Vec<(&'static ResourceInfo, Value)> = Vec::new();
    let mut failed = false;
    for (info, names) in &targets.groups {
        if names.is_empty() {
            let ns = client.ns_for(info);
            let items = client
                .list_selected(info, ns, &args.selector, args.all)
                .await?;
            objects.extend(items.into_iter().map(|o| (*info, o)));
        } else {
            for name in names {
                match client.api.get(info, client.ns_for(info), name).await {
                    Ok(o) => objects.push((info, o)),
                    Err(e) => report(&mut failed, e.into()),
                }
            }
        }
    }
    if args.resource_version.is_some() && objects.len() > 1 {
        return Err(fail!(
            "--resource-version may only be used with a single resource"
        ));
    }
    for (info, object) in objects {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let current = object
            .pointer(&format!("/metadata/{}", which.field()))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if args.list {
            println!(
                "Listing {} for {}.{}/{name}:",
                which.field(),
                info.kind,
                info.group
            );
            for (k, v) in &current {
                println!(" {k}={}", v.as_str().unwrap_or_default());
            }
            continue;
        }
        if which == Which::Labels {
            for k in &changes.remove {
                if !current.contains_key(k) {
                    println!("label {k:?} not found.");
                }
            }
        }
        let outcome = match plan(&current, &changes, which, args.overwrite) {
            Ok((patch, message)) if patch.is_empty() => Ok(message),
            Ok((patch, message)) => {
                let mut body = json!({"metadata": {which.field(): patch}});
                if let Some(rv) = &args.resource_version {
                    body["metadata"]["resourceVersion"] = json!(rv);
                }
                client
                    .patch_object(info, &name, PatchKind::Merge, body)
                    .await
                    .map(|_| message)
                    .map_err(Into::into)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(message) => println!("{} {message}", kind_slash_name(info, &name)),
            Err(e) => report(&mut failed, e),
        }
    }
    exit(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_split_into_targets_and_changes() {
        let (targets, changes) = split(
            &words("pods web db app=web tier- example.com/x-"),
            Which::Labels,
        )
        .unwrap();
        assert_eq!(targets, ["pods", "web", "db"]);
        assert_eq!(changes.set, BTreeMap::from([("app".into(), "web".into())]));
        assert_eq!(changes.remove, ["tier", "example.com/x"]);
        let (targets, _) = split(&words("deploy/web a=b"), Which::Labels).unwrap();
        assert_eq!(targets, ["deploy/web"]);
        assert!(split(&words("po web a=b=c"), Which::Labels).is_err());
        assert!(split(&words("po web a=b=c"), Which::Annotations).is_ok());
        assert!(split(&words("po web a=b a-"), Which::Labels).is_err());
        assert!(split(&words("po web bad_key!=x"), Which::Labels).is_err());
        assert!(split(&words("po web a=not/valid"), Which::Labels).is_err());
        assert!(split(&words("po web a=not/valid"), Which::Annotations).is_ok());
    }

    #[test]
    fn changing_a_value_needs_overwrite() {
        let current: Map<String, Value> =
            serde_json::from_value(json!({"app": "web", "tier": "front"})).unwrap();
        let changes = |set: &[(&str, &str)], remove: &[&str]| Changes {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        };
        let err = plan(
            &current,
            &changes(&[("app", "db")], &[]),
            Which::Labels,
            false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "error: 'app' already has a value (web), and --overwrite is false"
        );
        let err = plan(
            &current,
            &changes(&[("app", "db")], &[]),
            Which::Annotations,
            false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "error: --overwrite is false but found the following declared annotation(s): 'app' already has a value (web)");
        let (patch, msg) = plan(
            &current,
            &changes(&[("app", "db")], &["tier"]),
            Which::Labels,
            true,
        )
        .unwrap();
        assert_eq!(Value::Object(patch), json!({"app": "db", "tier": null}));
        assert_eq!(msg, "modified");
        let (patch, msg) = plan(
            &current,
            &changes(&[("app", "web")], &["gone"]),
            Which::Labels,
            false,
        )
        .unwrap();
        assert!(patch.is_empty());
        assert_eq!(msg, "not labeled");
        let (_, msg) = plan(&current, &changes(&[], &["tier"]), Which::Labels, false).unwrap();
        assert_eq!(msg, "unlabeled");
    }
}
