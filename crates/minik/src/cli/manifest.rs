//! Reading manifests for `apply`, `create` and `delete -f`: files, directories (with `-R`, their
//! subdirectories) and stdin; YAML or JSON with several documents each; `List` kinds expanded.
//! Every document is checked (known kind, strict decode with field paths) before anything is
//! sent, so a bad manifest changes nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use minik_api::decode::{self, DecodeError};
use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::k8s_openapi::api::core::v1::{
    Endpoints, Event, Namespace, Node, Pod, ReplicationController, ResourceQuota, Service,
};
use minik_api::resources::{self, ResourceInfo};
use serde_json::Value;

use super::{fail, CliResult};

/// One object from a manifest, with where it came from for messages.
#[derive(Debug)]
pub struct Manifest {
    /// `examples/web.yaml` or `STDIN`.
    pub source: String,
    pub info: &'static ResourceInfo,
    pub name: String,
    /// The namespace it goes to (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// The object as written, with `metadata.namespace` filled in.
    pub object: Value,
}

/// The `-f`/`-R` flags shared by apply, create and delete.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FileFlags {
    /// A manifest file, a directory of them, or `-` for stdin; may be repeated.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<String>,
    /// Reads the directories given with -f and all their subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// The manifest files a list of `-f` arguments names, in order.
fn expand(files: &[String], recursive: bool) -> CliResult<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            out.push("-".to_owned());
            continue;
        }
        let path = Path::new(f);
        let meta = std::fs::metadata(path).map_err(|_| fail!("the path \"{f}\" does not exist"))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, recursive, &mut found)
                .map_err(|e| fail!("cannot read the directory {f}: {e}"))?;
            found.sort();
            out.extend(found.into_iter().map(|p| p.display().to_string()));
        } else {
            out.push(f.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, out)?;
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads and checks every object the flags name; the first problem fails all of them.
pub fn read(flags: &FileFlags, settings: &super::config::Settings) -> CliResult<Vec<Manifest>> {
    if flags.files.is_empty() {
        return Err(fail!(
            "must specify -f FILE: a manifest, a directory of them, or - for stdin"
        ));
    }
    let mut manifests = Vec::new();
    for file in expand(&flags.files, flags.recursive)? {
        let (source, text) = if file == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| fail!("cannot read stdin: {e}"))?;
            ("STDIN".to_owned(), text)
        } else {
            let text =
                std::fs::read_to_string(&file).map_err(|e| fail!("cannot read {file}: {e}"))?;
            (file.clone(), text)
        };
        let documents = decode::parse_documents(&text)
            .map_err(|(doc, e)| fail!("{source}: document {doc}: {e}"))?;
        for (i, doc) in documents.into_iter().enumerate() {
            let document = i + 1;
            let at = |e: String| fail!("{source}: document {document}: {e}");
            for object in flatten_lists(doc).map_err(at)? {
                manifests.push(check(&source, document, object, settings)?);
            }
        }
    }
    if manifests.is_empty() {
        return Err(fail!("no objects passed to apply"));
    }
    Ok(manifests)
}

/// The objects of a document: itself, or the items of a `List` (nested lists too).
fn flatten_lists(doc: Value) -> Result<Vec<Value>, String> {
    let is_list = doc
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && doc.get("items").is_some()));
    if !is_list {
        return Ok(vec![doc]);
    }
    let Some(Value::Array(items)) = doc.get("items").cloned() else {
        return Err("a List must have items".into());
    };
    let mut out = Vec::new();
    for item in items {
        out.extend(flatten_lists(item)?);
    }
    Ok(out)
}

fn check(
    source: &str,
    document: usize,
    mut object: Value,
    settings: &super::config::Settings,
) -> CliResult<Manifest> {
    let at = |e: String| fail!("{source}: document {document}: {e}");
    if !object.is_object() {
        return Err(at(
            "a manifest must be a map with apiVersion, kind and metadata".into(),
        ));
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut missing = Vec::new();
    if api_version.is_empty() {
        missing.push("apiVersion not set");
    }
    if kind.is_empty() {
        missing.push("kind not set");
    }
    if !missing.is_empty() {
        return Err(at(format!(
            "error validating data: [{}]",
            missing.join(", ")
        )));
    }
    let info = resources::by_kind(api_version, kind).map_err(at)?;
    strict_decode(info, &object).map_err(|e| at(e.to_string()))?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        return Err(at("metadata.name: Required value: name is required".into()));
    }
    let namespace = if info.namespaced {
        let ns = match object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) if !ns.is_empty() => {
                if settings.namespace_explicit && ns != settings.namespace {
                    return Err(at(format!(
                        "the namespace from the provided object \"{ns}\" does not match the namespace \"{}\". You must pass '--namespace={ns}' to perform this operation.",
                        settings.namespace
                    )));
                }
                ns.to_owned()
            }
            _ => settings.namespace.clone(),
        };
        object["metadata"]["namespace"] = Value::String(ns.clone());
        Some(ns)
    } else {
        None
    };
    Ok(Manifest {
        source: source.to_owned(),
        info,
        name,
        namespace,
        object,
    })
}

/// Decodes into the kind's type, refusing unknown fields, so the error names the field path.
pub(crate) fn strict_decode(info: &ResourceInfo, object: &Value) -> Result<(), DecodeError> {
    match info.kind {
        "Pod" => decode::from_value_strict::<Pod>(object).map(drop),
        "Deployment" => decode::from_value_strict::<Deployment>(object).map(drop),
        "ReplicaSet" => decode::from_value_strict::<ReplicaSet>(object).map(drop),
        "ReplicationController" => {
            decode::from_value_strict::<ReplicationController>(object).map(drop)
        }
        "Service" => decode::from_value_strict::<Service>(object).map(drop),
        "Endpoints" => decode::from_value_strict::<Endpoints>(object).map(drop),
        "Namespace" => decode::from_value_strict::<Namespace>(object).map(drop),
        "Node" => decode::from_value_strict::<Node>(object).map(drop),
        "Event" => decode::from_value_strict::<Event>(object).map(drop),
        "ResourceQuota" => decode::from_value_strict::<ResourceQuota>(object).map(drop),
        // A kind served but not listed here is left to the server's own strict decoding.
        _ => Ok(()),
    }
}
