//! Where the client connects and which namespace it works in: flags, then the environment
//! (`MINIK_SERVER`, `MINIK_NAMESPACE`), then `~/.minik/config`, then the defaults.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// The server when nothing else names one (SPEC §1).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:6443";

/// The flags every client verb takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientFlags {
    /// The minik API server (env MINIK_SERVER, then ~/.minik/config, default http://127.0.0.1:6443).
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// The namespace to work in (env MINIK_NAMESPACE, then ~/.minik/config, default `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

/// The resolved connection settings the verbs trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub namespace: String,
    /// Whether the namespace was asked for explicitly (flag or environment): then a manifest
    /// that names another namespace is refused, as kubectl does.
    pub namespace_explicit: bool,
}

/// What the config file holds; both keys are optional.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileConfig {
    server: Option<String>,
    namespace: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".minik").join("config"))
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // A missing config file is the normal case before `minik up` has written one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let value = minik_api::decode::parse_document(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let field = |key: &str| -> anyhow::Result<Option<String>> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            Some(other) => anyhow::bail!(
                "{}: {key} must be a non-empty string, not {other}",
                path.display()
            ),
        }
    };
    if !value.is_object() {
        anyhow::bail!(
            "{}: expected a map with server: and namespace:",
            path.display()
        );
    }
    Ok(FileConfig {
        server: field("server")?,
        namespace: field("namespace")?,
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl ClientFlags {
    /// Resolves flags, environment, config file and defaults, in that order.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let file = match config_path() {
            Some(path) => read_config(&path)?,
            None => FileConfig::default(),
        };
        resolve(self, env("MINIK_SERVER"), env("MINIK_NAMESPACE"), file)
    }
}

fn resolve(
    flags: &ClientFlags,
    env_server: Option<String>,
    env_namespace: Option<String>,
    file: FileConfig,
) -> anyhow::Result<Settings> {
    let server = flags
        .server
        .clone()
        .or(env_server)
        .or(file.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let server = server.trim_end_matches('/').to_owned();
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        anyhow::bail!("the server address {server:?} must start with http:// or https://");
    }
    let namespace_explicit = flags.namespace.is_some() || env_namespace.is_some();
    let namespace = flags
        .namespace
        .clone()
        .or(env_namespace)
        .or(file.namespace)
        .unwrap_or_else(|| "default".to_owned());
    let problems = minik_api::names::dns1123_label(&namespace);
    if !problems.is_empty() {
        anyhow::bail!("invalid namespace {namespace:?}: {}", problems.join("; "));
    }
    Ok(Settings {
        server,
        namespace,
        namespace_explicit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_environment_over_file_over_defaults() {
        let file = || FileConfig {
            server: Some("http://file:1".into()),
            namespace: Some("filens".into()),
        };
        let none = ClientFlags::default();
        let s = resolve(&none, None, None, FileConfig::default()).unwrap();
        assert_eq!(s.server, DEFAULT_SERVER);
        assert_eq!(s.namespace, "default");
        assert!(!s.namespace_explicit);
        let s = resolve(&none, None, None, file()).unwrap();
        assert_eq!(
            (s.server.as_str(), s.namespace.as_str()),
            ("http://file:1", "filens")
        );
        let s = resolve(
            &none,
            Some("http://env:2".into()),
            Some("envns".into()),
            file(),
        )
        .unwrap();
        assert_eq!(
            (s.server.as_str(), s.namespace.as_str()),
            ("http://env:2", "envns")
        );
        let flags = ClientFlags {
            server: Some("http://flag:3/".into()),
            namespace: Some("flagns".into()),
        };
        let s = resolve(&flags, Some("http://env:2".into()), None, file()).unwrap();
        assert_eq!(
            (s.server.as_str(), s.namespace.as_str()),
            ("http://flag:3", "flagns")
        );
        assert!(s.namespace_explicit);
    }

    #[test]
    fn bad_values_are_refused() {
        let flags = ClientFlags {
            server: Some("localhost:6443".into()),
            namespace: None,
        };
        assert!(resolve(&flags, None, None, FileConfig::default()).is_err());
        let flags = ClientFlags {
            server: None,
            namespace: Some("Not_A_Name".into()),
        };
        assert!(resolve(&flags, None, None, FileConfig::default()).is_err());
    }
}
