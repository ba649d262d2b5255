//! `edit`: an object in `$KUBE_EDITOR`, `$EDITOR` or `vi`, as YAML (or JSON), sent back as a
//! strategic merge patch of what changed. A save the server refuses, or that does not parse,
//! re-opens the file with the reasons as comments at the top, as kubectl does; saving it
//! unchanged again gives up and keeps the file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use minik_api::request::PatchKind;
use minik_api::resources::ResourceInfo;
use minik_client::Api;
use serde_json::Value;

use super::printers;
use super::{fail, kind_slash_name, named_targets, CliResult, Client, ClientFlags};
use minik_api::patch::three_way_merge_patch;

#[derive(clap::Args, Debug)]
pub struct EditArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND NAME or KIND/NAME: the object to edit.
    #[arg(required = true)]
    targets: Vec<String>,
    /// The format to edit in: yaml or json.
    #[arg(short = 'o', long, default_value = "yaml", value_parser = ["yaml", "json"])]
    output: String,
}

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// Why the last save failed: a head line and its details, written into the file's header.
struct Reason {
    head: String,
    details: Vec<String>,
}

fn header(reasons: &[Reason]) -> String {
    let mut h = HEADER.to_owned();
    for r in reasons {
        let hash = |t: &str| t.replace('\n', "\n# ");
        if r.details.is_empty() {
            h.push_str(&format!("# {}\n", hash(&r.head)));
        } else {
            h.push_str(&format!("# {}:\n", hash(&r.head)));
        }
        for d in &r.details {
            h.push_str(&format!("# * {}\n", hash(d)));
        }
        h.push_str("#\n");
    }
    h
}

/// The file without its comment lines, to compare saves.
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The editor command: `$KUBE_EDITOR`, then `$EDITOR`, then `vi`.
fn editor() -> String {
    ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "vi".to_owned())
}

/// Runs the editor on `path` through the shell, so `EDITOR="code --wait"` works, and waits.
fn launch(path: &Path) -> CliResult {
    let editor = editor();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| fail!("cannot start the editor {editor:?}: {e}"))?;
    if !status.success() {
        return Err(fail!(
            "there was a problem with the editor {editor:?} ({status})"
        ));
    }
    Ok(())
}

/// A new file in the temp dir, only this user may read (objects can hold secrets).
fn temp_file(ext: &str) -> CliResult<PathBuf> {
    let dir = std::env::temp_dir();
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = dir.join(format!(
            "minik-edit-{}-{nanos}-{attempt}.{ext}",
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(fail!(
                    "cannot create a temporary file in {}: {e}",
                    dir.display()
                ))
            }
        }
    }
    Err(fail!("cannot create a temporary file in {}", dir.display()))
}

/// The causes in a server's `Invalid` message (`Kind "name" is invalid: a: x` or `[a: x, b: y]`).
fn causes(message: &str) -> Vec<String> {
    let Some((_, rest)) = message.split_once(" is invalid: ") else {
        return vec![message.to_owned()];
    };
    let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return vec![rest.to_owned()];
    };
    // Split at ", " only where a field path and ": " follow, so commas inside messages stay.
    let mut out: Vec<String> = Vec::new();
    for piece in inner.split(", ") {
        let starts_cause = piece.split_once(": ").is_some_and(|(field, _)| {
            !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._[]-/".contains(c))
        });
        match out.last_mut() {
            Some(last) if !starts_cause => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ => out.push(piece.to_owned()),
        }
    }
    out
}

fn render(value: &Value, json: bool) -> String {
    if json {
        printers::to_json(value)
    } else {
        printers::to_yaml(value)
    }
}

pub async fn run(args: EditArgs) -> CliResult<ExitCode> {
    let targets = named_targets(&args.targets)?;
    let [(info, name)] = targets.as_slice() else {
        return Err(fail!(
            "minik edit takes one object (KIND NAME or KIND/NAME); edit others one at a time"
        ));
    };
    let client = Client::new(&args.client)?;
    let original = client.api.get(info, client.ns_for(info), name).await?;
    let json = args.output == "json";
    let original_text = render(&original, json);
    let path = temp_file(if json { "json" } else { "yaml" })?;
    let outcome = edit_loop(&client, info, name, &original, &original_text, &path).await;
    if outcome.is_err() && path.exists() {
        // The changes did not reach the server: keep them for the user.
        eprintln!(
            "A copy of your changes has been stored to {:?}",
            path.display().to_string()
        );
    } else {
        let _ = std::fs::remove_file(&path);
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn edit_loop(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    original: &Value,
    original_text: &str,
    path: &Path,
) -> CliResult {
    let resource = info.qualified_plural();
    let mut reasons: Vec<Reason> = Vec::new();
    // The body of the file to open: the object, or after a failed save the user's version.
    let mut body = original_text.to_owned();
    let mut previous: Option<String> = None;
    loop {
        std::fs::write(path, format!("{}{body}", header(&reasons)))
            .map_err(|e| fail!("cannot write {}: {e}", path.display()))?;
        launch(path)?;
        let edited = std::fs::read_to_string(path)
            .map_err(|e| fail!("cannot read {}: {e}", path.display()))?;
        let stripped = strip_comments(&edited);
        if let Some(prev) = &previous {
            if strip_comments(prev) == stripped {
                return Err(fail!("Edit cancelled, no valid changes were saved."));
            }
        }
        if strip_comments(original_text) == stripped {
            eprintln!("Edit cancelled, no changes made.");
            return Ok(());
        }
        if stripped.trim().is_empty() {
            eprintln!("Edit cancelled, saved file was empty.");
            return Ok(());
        }
        previous = Some(edited.clone());
        body = format!("{}\n", stripped.trim_end());
        reasons.clear();
        let object = match minik_api::decode::parse_document(stripped.as_bytes()) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                reasons.push(Reason {
                    head: "The edited file had a syntax error: expected a map".into(),
                    details: Vec::new(),
                });
                continue;
            }
            Err(e) => {
                reasons.push(Reason {
                    head: format!("The edited file had a syntax error: {e}"),
                    details: Vec::new(),
                });
                continue;
            }
        };
        for pointer in ["/apiVersion", "/kind", "/metadata/name"] {
            if object.pointer(pointer) != original.pointer(pointer) {
                return Err(fail!(
                    "At least one of apiVersion, kind and name was changed"
                ));
            }
        }
        if let Err(e) = super::manifest::strict_decode(info, &object) {
            eprintln!("error: {resource} {name:?} is invalid");
            reasons.push(Reason {
                head: format!("{resource} {name:?} was not valid"),
                details: vec![e.to_string()],
            });
            continue;
        }
        let patch = three_way_merge_patch(info.kind, Some(original), &object, original);
        if patch.as_object().is_none_or(serde_json::Map::is_empty) {
            println!("{} skipped", kind_slash_name(info, name));
            return Ok(());
        }
        let result = client
            .patch_object(info, name, PatchKind::Strategic, patch)
            .await;
        match result {
            Ok(_) => {
                println!("{} edited", kind_slash_name(info, name));
                return Ok(());
            }
            Err(e) if e.reason() == "Invalid" => {
                eprintln!("error: {resource} {name:?} is invalid");
                reasons.push(Reason {
                    head: format!("{resource} {name:?} was not valid"),
                    details: causes(&e.to_string()),
                });
            }
            Err(e) if e.is_not_found() => {
                return Err(fail!(
                    "{resource} {name:?} could not be found on the server"
                ))
            }
            Err(e) => return Err(fail!("{resource} {name:?} could not be patched: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_lists_why_the_last_save_failed() {
        let h = header(&[Reason {
            head: "deployments.apps \"web\" was not valid".into(),
            details: vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0".into(),
            ],
        }]);
        assert!(h.starts_with(HEADER));
        assert!(h.ends_with("# deployments.apps \"web\" was not valid:\n# * spec.replicas: Invalid value: -1: must be greater than or equal to 0\n#\n"), "{h}");
        assert_eq!(
            strip_comments(&format!("{h}a: 1\n  # x\nb: 2\n")),
            "a: 1\nb: 2"
        );
    }

    #[test]
    fn causes_come_from_the_invalid_message() {
        assert_eq!(
            causes("Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            causes("Pod \"p\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"A\": a, b or c]"),
            ["spec.containers[0].image: Required value", "metadata.name: Invalid value: \"A\": a, b or c"]
        );
    }
}
