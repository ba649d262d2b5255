//! `patch`: changes fields of objects in place with a strategic merge patch (the default, as
//! kubectl), a JSON merge patch or a JSON patch, given as `-p TEXT` (JSON or YAML) or
//! `--patch-file FILE`; `--subresource status|scale` patches those instead. Prints
//! `KIND/NAME patched`, or `patched (no change)` when nothing changed, as kubectl.

use std::process::ExitCode;

use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_client::Api;
use serde_json::Value;

use super::printers;
use super::{exit, fail, kind_slash_name, parse_targets, report, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct PatchArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND NAME... or KIND/NAME...
    #[arg(required = true)]
    targets: Vec<String>,
    /// The patch, JSON or YAML.
    #[arg(short = 'p', long)]
    patch: Option<String>,
    /// A file holding the patch.
    #[arg(long)]
    patch_file: Option<std::path::PathBuf>,
    /// strategic, merge or json.
    #[arg(long = "type", default_value = "strategic")]
    patch_type: String,
    /// status or scale: patch that subresource.
    #[arg(long)]
    subresource: Option<String>,
    /// none or server: with server, the server answers what it would do and stores nothing.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "server")]
    dry_run: String,
    /// yaml, json or name: print the patched object.
    #[arg(short = 'o', long)]
    output: Option<String>,
}

/// The patch's kind from `--type`, with kubectl's refusal.
fn patch_kind(name: &str) -> CliResult<PatchKind> {
    match name {
        "strategic" => Ok(PatchKind::Strategic),
        "merge" => Ok(PatchKind::Merge),
        "json" => Ok(PatchKind::Json),
        other => Err(fail!(
            "--type must be one of [json merge strategic], not {other:?}"
        )),
    }
}

/// The patch's body: JSON, or YAML as kubectl also accepts; a JSON patch must be a list, the
/// others an object.
fn body(text: &str, kind: PatchKind) -> CliResult<Value> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => minik_api::decode::parse_document(text.as_bytes())
            .map_err(|e| fail!("unable to parse {text:?}: {e}"))?,
    };
    match (kind, &value) {
        (PatchKind::Json, Value::Array(_)) => Ok(value),
        (PatchKind::Json, _) => Err(fail!(
            "unable to parse {text:?}: a json patch must be a list of operations"
        )),
        (_, Value::Object(_)) => Ok(value),
        _ => Err(fail!(
            "unable to parse {text:?}: the patch must be an object"
        )),
    }
}

pub async fn run(args: PatchArgs) -> CliResult<ExitCode> {
    let kind = patch_kind(&args.patch_type)?;
    let text = match (&args.patch, &args.patch_file) {
        (Some(_), Some(_)) => return Err(fail!("--patch and --patch-file are mutually exclusive")),
        (Some(p), None) => p.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| fail!("unable to read patch file {}: {e}", file.display()))?,
        (None, None) => {
            return Err(fail!(
                "must specify --patch or --patch-file containing the contents of the patch"
            ))
        }
    };
    let patch = body(&text, kind)?;
    let status = match args.subresource.as_deref() {
        None => false,
        Some("status") => true,
        Some(other) => {
            return Err(fail!(
                "invalid subresource value: {other:?}. Must be one of [status] (minik patches scale through `minik scale`)"
            ))
        }
    };
    let dry_run = match args.dry_run.as_str() {
        "none" | "false" => false,
        "server" => true,
        "client" | "true" => {
            return Err(fail!(
                "--dry-run=client is not supported by minik patch: use --dry-run=server"
            ))
        }
        other => {
            return Err(fail!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            ))
        }
    };
    let client = Client::new(&args.client)?;
    let targets = parse_targets(&args.targets)?;
    let mut failed = false;
    for (info, names) in &targets.groups {
        if names.is_empty() {
            return Err(fail!(
                "resource(s) were provided, but no name was specified"
            ));
        }
        for name in names {
            let ns = client.ns_for(info);
            let before = match client.api.get(info, ns, name).await {
                Ok(o) => o,
                Err(e) => {
                    report(&mut failed, e.into());
                    continue;
                }
            };
            let result = client
                .api
                .patch(
                    info,
                    ns,
                    name,
                    Patch {
                        kind,
                        body: patch.clone(),
                    },
                    status,
                    WriteOptions {
                        dry_run,
                        ..Default::default()
                    },
                )
                .await;
            match result {
                Ok(after) => match args.output.as_deref() {
                    Some("yaml") => print!("{}", printers::to_yaml(&after)),
                    Some("json") => print!("{}", printers::to_json(&after)),
                    Some(_) => println!("{}", kind_slash_name(info, name)),
                    None => {
                        let unchanged = after == before;
                        let suffix = match (unchanged, dry_run) {
                            (true, _) => " (no change)",
                            (false, true) => " (server dry run)",
                            (false, false) => "",
                        };
                        println!("{} patched{suffix}", kind_slash_name(info, name));
                    }
                },
                Err(e) => report(&mut failed, e.into()),
            }
        }
    }
    exit(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches_read_as_kubectl_reads_them() {
        assert_eq!(
            body(r#"{"spec":{"replicas":3}}"#, PatchKind::Strategic).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        assert_eq!(
            body("spec:\n  replicas: 3\n", PatchKind::Merge).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        assert_eq!(
            body(
                r#"[{"op":"remove","path":"/metadata/labels/a"}]"#,
                PatchKind::Json
            )
            .unwrap(),
            json!([{"op": "remove", "path": "/metadata/labels/a"}])
        );
        assert!(body(r#"{"a":1}"#, PatchKind::Json).is_err());
        assert!(body("[1]", PatchKind::Merge).is_err());
        assert!(body("{not json: [", PatchKind::Merge).is_err());
        assert!(patch_kind("apply").is_err());
    }
}
