//! Where the client connects, with which token, whom it trusts, and which namespace it works
//! in: flags, then the environment (`MINIK_SERVER`, `MINIK_TOKEN`, `MINIK_NAMESPACE`,
//! `MINIK_CERTIFICATE_AUTHORITY`), then `~/.minik/config`, then the defaults. Over HTTPS the
//! server is verified against the cluster CA (`certificate-authority`, a file, or
//! `certificate-authority-data`, base64 PEM as in a kubeconfig), and a client certificate
//! (`client-certificate` and `client-key` files) may stand in for the token.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// The server when nothing else names one (SPEC §1).
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:6443";

/// The flags every client verb takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientFlags {
    /// The minik API server (env MINIK_SERVER, then ~/.minik/config, default https://127.0.0.1:6443).
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// The namespace to work in (env MINIK_NAMESPACE, then ~/.minik/config, default `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// The bearer token (env MINIK_TOKEN, then `token:` in ~/.minik/config; none needed on
    /// loopback when the server allows anonymous clients there, as `minik up` does).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<minik_client::Secret>,
    /// The cluster CA to verify the server with, as kubectl's flag (env
    /// MINIK_CERTIFICATE_AUTHORITY, then `certificate-authority` or
    /// `certificate-authority-data` in ~/.minik/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
    /// A client certificate to authenticate with instead of a token (with --client-key).
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_certificate: Option<PathBuf>,
    /// The key of --client-certificate.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "client_certificate"
    )]
    pub client_key: Option<PathBuf>,
}

/// The resolved connection settings the verbs trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub namespace: String,
    /// Whether the namespace was asked for explicitly (flag or environment): then a manifest
    /// that names another namespace is refused, as kubectl does.
    pub namespace_explicit: bool,
    pub token: Option<minik_client::Secret>,
    /// Whom HTTPS trusts and what it presents.
    pub trust: minik_client::Trust,
}

/// What the config file holds; every key is optional.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileConfig {
    server: Option<String>,
    namespace: Option<String>,
    token: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    client_certificate: Option<String>,
    client_key: Option<String>,
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
            "{}: expected a map with server:, namespace: and token:",
            path.display()
        );
    }
    Ok(FileConfig {
        server: field("server")?,
        namespace: field("namespace")?,
        token: field("token")?,
        certificate_authority: field("certificate-authority")?,
        certificate_authority_data: field("certificate-authority-data")?,
        client_certificate: field("client-certificate")?,
        client_key: field("client-key")?,
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
        let environment = Environment {
            server: env("MINIK_SERVER"),
            namespace: env("MINIK_NAMESPACE"),
            token: env("MINIK_TOKEN"),
            certificate_authority: env("MINIK_CERTIFICATE_AUTHORITY"),
        };
        resolve(self, environment, file)
    }
}

/// The client's variables in the environment.
#[derive(Default)]
struct Environment {
    server: Option<String>,
    namespace: Option<String>,
    token: Option<String>,
    certificate_authority: Option<String>,
}

/// The text of a PEM file the client was pointed at, named in the error.
fn read_pem(path: &Path, what: &str, from: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {} ({from})", path.display()))
}

/// Whom HTTPS trusts: the flag's CA file, the environment's, the config file's (a file, or
/// inline base64 data); and the client certificate of the flags, else of the config file.
fn trust(
    flags: &ClientFlags,
    env_ca: Option<String>,
    file: &FileConfig,
) -> anyhow::Result<minik_client::Trust> {
    let ca_pem = match (
        &flags.certificate_authority,
        env_ca,
        &file.certificate_authority,
        &file.certificate_authority_data,
    ) {
        (Some(path), _, _, _) => Some(read_pem(path, "CA certificate", "--certificate-authority")?),
        (None, Some(path), _, _) => Some(read_pem(
            Path::new(&path),
            "CA certificate",
            "MINIK_CERTIFICATE_AUTHORITY",
        )?),
        (None, None, Some(path), _) => Some(read_pem(
            Path::new(path),
            "CA certificate",
            "certificate-authority in ~/.minik/config",
        )?),
        (None, None, None, Some(data)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "certificate-authority-data in ~/.minik/config is not base64: {e}"
                    )
                })?;
            Some(String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!("certificate-authority-data in ~/.minik/config is not a PEM text")
            })?)
        }
        (None, None, None, None) => None,
    };
    let client_certificate = match (&flags.client_certificate, &flags.client_key) {
        (Some(cert), Some(key)) => Some((
            read_pem(cert, "client certificate", "--client-certificate")?,
            read_pem(key, "client key", "--client-key")?,
        )),
        _ => match (&file.client_certificate, &file.client_key) {
            (Some(cert), Some(key)) => Some((
                read_pem(
                    Path::new(cert),
                    "client certificate",
                    "client-certificate in ~/.minik/config",
                )?,
                read_pem(
                    Path::new(key),
                    "client key",
                    "client-key in ~/.minik/config",
                )?,
            )),
            (None, None) => None,
            _ => anyhow::bail!("~/.minik/config: client-certificate and client-key go together"),
        },
    };
    Ok(minik_client::Trust {
        ca_pem,
        client_certificate,
    })
}

fn resolve(flags: &ClientFlags, env: Environment, file: FileConfig) -> anyhow::Result<Settings> {
    let Environment {
        server: env_server,
        namespace: env_namespace,
        token: env_token,
        certificate_authority: env_ca,
    } = env;
    let trust = trust(flags, env_ca, &file)?;
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
    let token = flags
        .token
        .clone()
        .or(env_token.map(minik_client::Secret::new))
        .or(file.token.map(minik_client::Secret::new))
        .filter(|t| !t.expose().is_empty());
    Ok(Settings {
        server,
        namespace,
        namespace_explicit,
        token,
        trust,
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
            token: Some("filetoken".into()),
            ..FileConfig::default()
        };
        let env =
            |server: Option<&str>, namespace: Option<&str>, token: Option<&str>| Environment {
                server: server.map(str::to_owned),
                namespace: namespace.map(str::to_owned),
                token: token.map(str::to_owned),
                certificate_authority: None,
            };
        let none = ClientFlags::default();
        let s = resolve(&none, Environment::default(), FileConfig::default()).unwrap();
        assert_eq!(s.server, DEFAULT_SERVER);
        assert_eq!(s.namespace, "default");
        assert_eq!(s.token, None);
        assert!(!s.namespace_explicit);
        let s = resolve(&none, Environment::default(), file()).unwrap();
        assert_eq!(s.token.as_ref().map(|t| t.expose()), Some("filetoken"));
        assert_eq!(
            (s.server.as_str(), s.namespace.as_str()),
            ("http://file:1", "filens")
        );
        let s = resolve(
            &none,
            env(Some("http://env:2"), Some("envns"), Some("envtoken")),
            file(),
        )
        .unwrap();
        assert_eq!(s.token.as_ref().map(|t| t.expose()), Some("envtoken"));
        assert_eq!(
            (s.server.as_str(), s.namespace.as_str()),
            ("http://env:2", "envns")
        );
        let flags = ClientFlags {
            server: Some("http://flag:3/".into()),
            namespace: Some("flagns".into()),
            token: Some(minik_client::Secret::new("flagtoken")),
            ..ClientFlags::default()
        };
        let s = resolve(
            &flags,
            env(Some("http://env:2"), None, Some("envtoken")),
            file(),
        )
        .unwrap();
        assert_eq!(s.token.as_ref().map(|t| t.expose()), Some("flagtoken"));
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
            ..ClientFlags::default()
        };
        assert!(resolve(&flags, Environment::default(), FileConfig::default()).is_err());
        let flags = ClientFlags {
            namespace: Some("Not_A_Name".into()),
            ..ClientFlags::default()
        };
        assert!(resolve(&flags, Environment::default(), FileConfig::default()).is_err());
    }
}
