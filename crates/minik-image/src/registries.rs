//! k3s's `registries.yaml`: mirrors for registries and the credentials and TLS settings of
//! each host, in the format of <https://docs.k3s.io/installation/private-registry>.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000", "https://mirror.example.com"]
//!   "*":
//!     endpoint: ["https://cache.example.com"]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: u, password: p}     # or auth: {auth: BASE64(u:p)}, or identity_token
//!     tls: {ca_file: /etc/ca.pem, insecure_skip_verify: true}
//! ```
//!
//! Unlike k3s, a field minik does not know is refused rather than ignored, and `rewrite` is
//! refused (it needs regular expressions minik does not carry).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::auth::{decode_basic_auth, Credential};
use crate::ImageError;

/// Docker Hub: its name in references and the host that serves it.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const DOCKER_HUB_ALIASES: [&str; 2] = ["registry-1.docker.io", "index.docker.io"];
/// The `mirrors` and `configs` entry for every registry without its own.
const WILDCARD: &str = "*";

/// A parsed `registries.yaml`. The default is empty: every registry at its default endpoint,
/// anonymous, with the system's CAs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistriesConfig {
    /// Registry name (or `*`) → its mirror endpoints, normalised, in order.
    mirrors: BTreeMap<String, Vec<Normalized>>,
    /// Host (or `*`) → its credential and TLS settings.
    configs: BTreeMap<String, HostConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Normalized {
    url: String,
    host: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct HostConfig {
    auth: Option<Credential>,
    tls: TlsConfig,
}

/// Where to pull a registry's images from, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port][/path prefix]`, without the `/v2` the API paths start with.
    pub url: String,
    /// `host[:port]`: the key its settings are found under in `configs`.
    pub host: String,
    pub auth: Option<Credential>,
    pub tls: TlsConfig,
}

/// TLS settings of a host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The CA that signs the registry's certificate, in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (with `key_file`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl RegistriesConfig {
    /// Parses a `registries.yaml`. `source_name` (its path) names it in errors, with the field
    /// path of what is wrong (`mirrors.docker.io.endpont: unknown field`).
    pub fn parse(yaml: &str, source_name: &str) -> Result<RegistriesConfig, ImageError> {
        let fail = |why: String| ImageError::Config {
            source_name: source_name.to_string(),
            why,
        };
        let root: Value =
            serde_yaml::from_str(yaml).map_err(|e| fail(format!("not valid YAML: {e}")))?;
        parse_root(root).map_err(fail)
    }

    /// Reads and parses the file at `path`; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<RegistriesConfig>, ImageError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    /// The endpoints to try for `registry` (a normalised reference's registry, `docker.io`
    /// for Docker Hub), in order: its mirrors (its own `mirrors` entry, else `"*"`'s), then
    /// the default endpoint (`https://registry-1.docker.io` for Docker Hub,
    /// `https://<registry>` otherwise). `use_default_endpoint: false` (k3s's
    /// `--disable-default-registry-endpoint`) leaves the default out, but only for a registry
    /// that has mirror endpoints: as in k3s, one without any still pulls from its default. A
    /// mirror that is the default endpoint is tried last, as the default. Each endpoint carries
    /// the `configs` entry of its host (else `"*"`'s); the default endpoint first looks under
    /// the registry's name.
    pub fn endpoints(&self, registry: &str, use_default_endpoint: bool) -> Vec<Endpoint> {
        let default = default_endpoint(registry);
        let mirrors = self
            .mirrors
            .get(registry)
            .or_else(|| self.mirrors.get(WILDCARD))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let with_default = use_default_endpoint || mirrors.is_empty();
        let mut out: Vec<Endpoint> = Vec::new();
        for mirror in mirrors {
            let is_default = mirror.url == default.url;
            if (with_default && is_default) || out.iter().any(|e| e.url == mirror.url) {
                continue;
            }
            let config = self.config_for(&[&mirror.host]);
            out.push(Endpoint {
                url: mirror.url.clone(),
                host: mirror.host.clone(),
                auth: config.auth,
                tls: config.tls,
            });
        }
        if with_default {
            let mut names = vec![registry];
            if registry == DOCKER_HUB {
                names.extend(DOCKER_HUB_ALIASES);
            } else {
                names.push(&default.host);
            }
            let config = self.config_for(&names);
            out.push(Endpoint {
                url: default.url,
                host: default.host,
                auth: config.auth,
                tls: config.tls,
            });
        }
        out
    }

    /// The first `configs` entry found under one of `names`, else `"*"`'s, else nothing.
    fn config_for(&self, names: &[&str]) -> HostConfig {
        names
            .iter()
            .find_map(|name| self.configs.get(*name))
            .or_else(|| self.configs.get(WILDCARD))
            .cloned()
            .unwrap_or_default()
    }
}

fn default_endpoint(registry: &str) -> Normalized {
    let host = if registry == DOCKER_HUB {
        DOCKER_HUB_HOST.to_string()
    } else {
        registry.to_ascii_lowercase()
    };
    Normalized {
        url: format!("https://{host}"),
        host,
    }
}

fn parse_root(root: Value) -> Result<RegistriesConfig, String> {
    let mut config = RegistriesConfig::default();
    let root = match root {
        // An empty file, or one of comments only.
        Value::Null => return Ok(config),
        other => mapping(other, "the top level")?,
    };
    for (key, value) in root {
        let key = key_string(key, "")?;
        match key.as_str() {
            "mirrors" => {
                for (name, mirror) in optional_mapping(value, "mirrors")? {
                    let name = key_string(name, "mirrors")?;
                    let endpoints = parse_mirror(mirror, &format!("mirrors.{name}"))?;
                    config.mirrors.insert(name, endpoints);
                }
            }
            "configs" => {
                for (host, host_config) in optional_mapping(value, "configs")? {
                    let host = key_string(host, "configs")?;
                    let parsed = parse_host_config(host_config, &format!("configs.{host}"))?;
                    config.configs.insert(host, parsed);
                }
            }
            other => return Err(unknown(other, "", &["mirrors", "configs"])),
        }
    }
    Ok(config)
}

fn parse_mirror(value: Value, at: &str) -> Result<Vec<Normalized>, String> {
    let mut endpoints = Vec::new();
    for (key, value) in optional_mapping(value, at)? {
        let key = key_string(key, at)?;
        match key.as_str() {
            "endpoint" => {
                let path = format!("{at}.endpoint");
                let list = match value {
                    Value::Null => Vec::new(),
                    Value::Sequence(list) => list,
                    other => {
                        return Err(format!(
                            "{path}: expected a list of URLs, got {}",
                            kind(&other)
                        ))
                    }
                };
                for (i, item) in list.into_iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    let Value::String(url) = item else {
                        return Err(format!("{item_path}: expected a URL, got {}", kind(&item)));
                    };
                    let normalized = normalize_endpoint(&url)
                        .map_err(|why| format!("{item_path}: {url:?}: {why}"))?;
                    endpoints.push(normalized);
                }
            }
            "rewrite" => {
                let has_rules = match &value {
                    Value::Null => false,
                    Value::Mapping(m) => !m.is_empty(),
                    _ => true,
                };
                if has_rules {
                    return Err(format!(
                        "{at}.rewrite: rewrites are not supported by minik (they need regular \
                         expressions); push the images under the mirror's own names instead"
                    ));
                }
            }
            other => return Err(unknown(other, at, &["endpoint", "rewrite"])),
        }
    }
    Ok(endpoints)
}

fn parse_host_config(value: Value, at: &str) -> Result<HostConfig, String> {
    let mut config = HostConfig::default();
    for (key, value) in optional_mapping(value, at)? {
        let key = key_string(key, at)?;
        match key.as_str() {
            "auth" => config.auth = parse_auth(value, &format!("{at}.auth"))?,
            "tls" => config.tls = parse_tls(value, &format!("{at}.tls"))?,
            other => return Err(unknown(other, at, &["auth", "tls"])),
        }
    }
    Ok(config)
}

/// `username` + `password`, `auth` (base64 of `username:password`) or `identity_token`;
/// when several are set, the pair wins, then the identity token, then `auth`, as containerd
/// reads them.
fn parse_auth(value: Value, at: &str) -> Result<Option<Credential>, String> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in optional_mapping(value, at)? {
        let key = key_string(key, at)?;
        const KNOWN: [&str; 4] = ["username", "password", "auth", "identity_token"];
        if !KNOWN.contains(&key.as_str()) {
            return Err(unknown(&key, at, &KNOWN));
        }
        if let Some(s) = optional_string(value, &format!("{at}.{key}"))? {
            fields.insert(key, s);
        }
    }
    let mut take = |name: &str| fields.remove(name).filter(|s| !s.is_empty());
    let (username, password) = (take("username"), take("password"));
    let (identity_token, auth) = (take("identity_token"), take("auth"));
    if let Some(username) = username {
        return Ok(Some(Credential::Basic {
            username,
            password: password.unwrap_or_default(),
        }));
    }
    if password.is_some() {
        return Err(format!("{at}.password: set without {at}.username"));
    }
    if let Some(token) = identity_token {
        return Ok(Some(Credential::IdentityToken(token)));
    }
    match auth {
        Some(auth) => decode_basic_auth(&auth)
            .map(Some)
            .map_err(|why| format!("{at}.auth: {why}")),
        None => Ok(None),
    }
}

fn parse_tls(value: Value, at: &str) -> Result<TlsConfig, String> {
    let mut tls = TlsConfig::default();
    for (key, value) in optional_mapping(value, at)? {
        let key = key_string(key, at)?;
        let path = format!("{at}.{key}");
        let file = |value: Value| {
            optional_string(value, &path).map(|s| s.filter(|s| !s.is_empty()).map(PathBuf::from))
        };
        match key.as_str() {
            "ca_file" => tls.ca_file = file(value)?,
            "cert_file" => tls.cert_file = file(value)?,
            "key_file" => tls.key_file = file(value)?,
            "insecure_skip_verify" => {
                tls.insecure_skip_verify = match value {
                    Value::Null => false,
                    Value::Bool(b) => b,
                    other => {
                        return Err(format!(
                            "{path}: expected true or false, got {}",
                            kind(&other)
                        ))
                    }
                }
            }
            other => {
                return Err(unknown(
                    other,
                    at,
                    &["ca_file", "cert_file", "key_file", "insecure_skip_verify"],
                ))
            }
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => Err(format!("{at}.cert_file: set without {at}.key_file")),
        (None, Some(_)) => Err(format!("{at}.key_file: set without {at}.cert_file")),
        _ => Ok(tls),
    }
}

/// An endpoint as k3s reads it: `https://` when there is no scheme; a path of `/v2` (or none)
/// is the registry's root, another path a prefix.
fn normalize_endpoint(raw: &str) -> Result<Normalized, String> {
    if raw.is_empty() {
        return Err("empty endpoint".to_string());
    }
    if let Some(c) = raw.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the character {c:?} has no place in an endpoint URL"
        ));
    }
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_string(), raw),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("the scheme {scheme:?} is not http or https"));
    }
    if rest.contains(['?', '#']) {
        return Err("an endpoint has no query or fragment".to_string());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("credentials go in configs.<host>.auth, not in the URL".to_string());
    }
    let host = normalize_authority(authority)?;
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err("the path has '.' or '..' segments".to_string());
    }
    if segments.last() == Some(&"v2") {
        segments.pop();
    }
    let mut url = format!("{scheme}://{host}");
    for segment in segments {
        url.push('/');
        url.push_str(segment);
    }
    Ok(Normalized { url, host })
}

/// `host[:port]`, lower-cased: a DNS name or IPv4 address, or an IPv6 address in brackets.
fn normalize_authority(authority: &str) -> Result<String, String> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (address, after) = v6
            .split_once(']')
            .ok_or_else(|| "'[' without ']' in the host".to_string())?;
        if address.is_empty()
            || !address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("{address:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| "characters after ']' that are not a port".to_string())?,
            ),
        };
        (None, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority.as_str()), None),
        }
    };
    if let Some(host) = host {
        let valid = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            return Err(if host.is_empty() {
                "no host".to_string()
            } else {
                format!("{host:?} is not a host name")
            });
        }
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) || !port.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("{port:?} is not a port (1 to 65535)"));
        }
    }
    Ok(authority)
}

fn mapping(value: Value, at: &str) -> Result<Mapping, String> {
    match value {
        Value::Mapping(m) => Ok(m),
        other => Err(format!("{at}: expected a mapping, got {}", kind(&other))),
    }
}

/// A mapping, or nothing (`docker.io:` with no value is an empty entry, as in k3s).
fn optional_mapping(value: Value, at: &str) -> Result<Mapping, String> {
    match value {
        Value::Null => Ok(Mapping::new()),
        other => mapping(other, at),
    }
}

fn optional_string(value: Value, at: &str) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        // YAML reads `password: 1234` as a number; it is still the text written.
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(format!("{at}: expected a string, got {}", kind(&other))),
    }
}

fn key_string(key: Value, at: &str) -> Result<String, String> {
    match key {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "{}: a key must be a string, got {}",
            if at.is_empty() { "the top level" } else { at },
            kind(&other)
        )),
    }
}

fn unknown(field: &str, at: &str, known: &[&str]) -> String {
    let path = if at.is_empty() {
        field.to_string()
    } else {
        format!("{at}.{field}")
    };
    format!(
        "{path}: unknown field (expected one of: {})",
        known.join(", ")
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(yaml: &str) -> RegistriesConfig {
        RegistriesConfig::parse(yaml, "registries.yaml")
            .unwrap_or_else(|e| panic!("{yaml}\nshould parse: {e}"))
    }

    fn urls(endpoints: &[Endpoint]) -> Vec<&str> {
        endpoints.iter().map(|e| e.url.as_str()).collect()
    }

    fn basic(u: &str, p: &str) -> Option<Credential> {
        Some(Credential::Basic {
            username: u.to_string(),
            password: p.to_string(),
        })
    }

    #[test]
    fn empty_config_uses_default_endpoints() {
        for config in [
            RegistriesConfig::default(),
            parse(""),
            parse("# nothing\n"),
            parse("mirrors:\nconfigs:\n"),
        ] {
            let hub = config.endpoints("docker.io", true);
            assert_eq!(urls(&hub), ["https://registry-1.docker.io"]);
            assert_eq!(hub[0].host, "registry-1.docker.io");
            assert_eq!(hub[0].auth, None);
            assert_eq!(hub[0].tls, TlsConfig::default());
            assert_eq!(
                urls(&config.endpoints("localhost:5000", true)),
                ["https://localhost:5000"]
            );
            // Nothing configured: the default stays even when disabled.
            assert_eq!(urls(&config.endpoints("gcr.io", false)), ["https://gcr.io"]);
        }
    }

    #[test]
    fn mirrors_then_default_with_configs_by_host() {
        let config = parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/v2"
      - "mirror.example.com/prefix/"
      - "https://MIRROR.example.com"
      - "https://registry-1.docker.io/v2"
  "*":
    endpoint: ["https://cache.example.com:8443"]
  quay.io:
configs:
  "127.0.0.1:5000":
    auth: {username: u, password: p}
    tls: {insecure_skip_verify: true}
  mirror.example.com:
    auth:
      auth: dXNlcjpwYXNz
    tls:
      ca_file: /etc/ca.pem
      cert_file: /etc/c.pem
      key_file: /etc/k.pem
  docker.io:
    auth: {identity_token: tok}
  "*":
    tls: {ca_file: /etc/wild.pem}
"#,
        );
        let hub = config.endpoints("docker.io", true);
        assert_eq!(
            urls(&hub),
            [
                "http://127.0.0.1:5000",
                "https://mirror.example.com",
                "https://mirror.example.com/prefix",
                "https://registry-1.docker.io",
            ]
        );
        assert_eq!(hub[0].host, "127.0.0.1:5000");
        assert_eq!(hub[0].auth, basic("u", "p"));
        assert!(hub[0].tls.insecure_skip_verify);
        assert_eq!(hub[1].auth, basic("user", "pass"));
        assert_eq!(
            hub[1].tls.ca_file.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert_eq!(
            hub[1].tls.cert_file.as_deref(),
            Some(Path::new("/etc/c.pem"))
        );
        assert_eq!(
            hub[1].tls.key_file.as_deref(),
            Some(Path::new("/etc/k.pem"))
        );
        assert_eq!(hub[2].host, "mirror.example.com");
        // The default endpoint of docker.io takes the config written for docker.io.
        assert_eq!(hub[3].auth, Some(Credential::IdentityToken("tok".into())));

        // Disabled default: the mirror that is the default stays, as a mirror, in place.
        assert_eq!(
            urls(&config.endpoints("docker.io", false)),
            [
                "http://127.0.0.1:5000",
                "https://mirror.example.com",
                "https://mirror.example.com/prefix",
                "https://registry-1.docker.io",
            ]
        );

        // Other registries use "*", whose host falls back to the "*" config.
        let gcr = config.endpoints("gcr.io", true);
        assert_eq!(
            urls(&gcr),
            ["https://cache.example.com:8443", "https://gcr.io"]
        );
        assert_eq!(
            gcr[0].tls.ca_file.as_deref(),
            Some(Path::new("/etc/wild.pem"))
        );
        assert_eq!(
            gcr[1].tls.ca_file.as_deref(),
            Some(Path::new("/etc/wild.pem"))
        );
        assert_eq!(
            urls(&config.endpoints("gcr.io", false)),
            ["https://cache.example.com:8443"]
        );

        // An entry without endpoints hides "*" and keeps the default.
        assert_eq!(
            urls(&config.endpoints("quay.io", false)),
            ["https://quay.io"]
        );
    }

    #[test]
    fn default_endpoint_configs_by_registry_name() {
        let config = parse(
            r#"
configs:
  "registry.example.com:5000":
    auth: {username: a, password: b}
  index.docker.io:
    auth: {username: hub, password: h}
"#,
        );
        let e = config.endpoints("registry.example.com:5000", true);
        assert_eq!(urls(&e), ["https://registry.example.com:5000"]);
        assert_eq!(e[0].auth, basic("a", "b"));
        assert_eq!(
            config.endpoints("docker.io", true)[0].auth,
            basic("hub", "h")
        );
        assert_eq!(config.endpoints("other.io", true)[0].auth, None);
    }

    #[test]
    fn an_empty_config_entry_overrides_the_wildcard() {
        let config = parse(
            r#"
configs:
  "docker.io":
  "*":
    tls:
      insecure_skip_verify: true
"#,
        );
        assert!(
            !config.endpoints("docker.io", true)[0]
                .tls
                .insecure_skip_verify
        );
        assert!(config.endpoints("gcr.io", true)[0].tls.insecure_skip_verify);
    }

    #[test]
    fn refuses_what_it_does_not_know_naming_the_field() {
        for (yaml, expected) in [
            ("mirror: {}", "registries.yaml: mirror: unknown field (expected one of: mirrors, configs)"),
            ("mirrors:\n  docker.io:\n    endpont: [x]", "mirrors.docker.io.endpont: unknown field"),
            ("configs:\n  r.io:\n    tls:\n      ca: /x", "configs.r.io.tls.ca: unknown field"),
            ("configs:\n  r.io:\n    auth:\n      token: t", "configs.r.io.auth.token: unknown field"),
            ("configs:\n  r.io:\n    auths: {}", "configs.r.io.auths: unknown field"),
            ("auths: {}", "auths: unknown field"),
            (
                "mirrors:\n  docker.io:\n    endpoint: [x.io]\n    rewrite:\n      \"^a/(.*)\": \"b/$1\"",
                "mirrors.docker.io.rewrite: rewrites are not supported by minik",
            ),
            ("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]", "mirrors.docker.io.endpoint[0]: \"ftp://x\": the scheme \"ftp\" is not http or https"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"unix:///run/x.sock\"]", "is not http or https"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://\"]", "no host"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://a b\"]", "has no place"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://u:p@x.io\"]", "configs.<host>.auth"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://x.io:99999\"]", "not a port"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://x.io?a=b\"]", "no query"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://x_y.io\"]", "not a host name"),
            ("mirrors:\n  docker.io:\n    endpoint: [\"https://x.io/../y\"]", "'..'"),
            ("mirrors:\n  docker.io:\n    endpoint: \"https://x.io\"", "endpoint: expected a list"),
            ("mirrors:\n  docker.io:\n    endpoint: [[a]]", "endpoint[0]: expected a URL"),
            ("mirrors: [a]", "mirrors: expected a mapping"),
            ("- a", "the top level: expected a mapping"),
            ("configs:\n  r.io:\n    tls: {insecure_skip_verify: yes please}", "insecure_skip_verify: expected true or false"),
            ("configs:\n  r.io:\n    tls: {cert_file: /c}", "cert_file: set without configs.r.io.tls.key_file"),
            ("configs:\n  r.io:\n    tls: {key_file: /k}", "key_file: set without"),
            ("configs:\n  r.io:\n    auth: {password: p}", "configs.r.io.auth.password: set without"),
            ("configs:\n  r.io:\n    auth: {auth: \"!!\"}", "configs.r.io.auth.auth: auth is not base64"),
            ("configs:\n  r.io:\n    auth: {username: [u]}", "configs.r.io.auth.username: expected a string"),
            ("mirrors: {a: 1", "not valid YAML"),
        ] {
            let e = RegistriesConfig::parse(yaml, "registries.yaml").unwrap_err().to_string();
            assert!(e.contains(expected), "{yaml}\n{e}\nshould contain {expected}");
            assert!(e.starts_with("registries.yaml: "), "{e}");
        }
    }

    #[test]
    fn an_empty_rewrite_is_harmless() {
        let config = parse("mirrors:\n  docker.io:\n    endpoint: [x.io]\n    rewrite: {}\n");
        assert_eq!(
            urls(&config.endpoints("docker.io", true)),
            ["https://x.io", "https://registry-1.docker.io"]
        );
    }

    #[test]
    fn auth_precedence_and_numbers() {
        let config = parse(
            "configs:\n  a.io:\n    auth: {username: u, password: 1234, identity_token: t}\n  b.io:\n    auth: {identity_token: t, auth: dXNlcjpwYXNz}\n  c.io:\n    auth: {}\n",
        );
        assert_eq!(config.endpoints("a.io", true)[0].auth, basic("u", "1234"));
        assert_eq!(
            config.endpoints("b.io", true)[0].auth,
            Some(Credential::IdentityToken("t".into()))
        );
        assert_eq!(config.endpoints("c.io", true)[0].auth, None);
    }

    #[test]
    fn endpoints_normalise() {
        for (raw, url, host) in [
            ("x.io", "https://x.io", "x.io"),
            ("HTTP://X.io:80/", "http://x.io:80", "x.io:80"),
            ("https://x.io/v2/", "https://x.io", "x.io"),
            ("https://x.io//a//v2", "https://x.io/a", "x.io"),
            ("https://x.io/v2/a", "https://x.io/v2/a", "x.io"),
            ("http://[::1]:5000", "http://[::1]:5000", "[::1]:5000"),
            (
                "http://10.0.0.1:5000",
                "http://10.0.0.1:5000",
                "10.0.0.1:5000",
            ),
        ] {
            let n = normalize_endpoint(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!((n.url.as_str(), n.host.as_str()), (url, host), "{raw}");
        }
    }

    #[test]
    fn load_reads_a_file_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        assert_eq!(RegistriesConfig::load(&path).unwrap(), None);
        std::fs::write(
            &path,
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n",
        )
        .unwrap();
        let config = RegistriesConfig::load(&path).unwrap().unwrap();
        assert_eq!(
            urls(&config.endpoints("docker.io", false)),
            ["http://127.0.0.1:5000"]
        );
        std::fs::write(&path, "mirrors: 3\n").unwrap();
        let e = RegistriesConfig::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        // A directory is not a file: an I/O error, not None.
        assert!(RegistriesConfig::load(dir.path()).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            if let Ok(config) = RegistriesConfig::parse(&s, "p") {
                let _ = config.endpoints("docker.io", false);
            }
        }

        #[test]
        fn yaml_like_input_never_panics(
            registry in "[a-z*.:]{1,8}",
            endpoint in "[a-zA-Z0-9:/\\[\\]._@?-]{0,24}",
            field in "(endpoint|rewrite|auth|tls|username|ca_file|x)",
            value in "[a-zA-Z0-9:/ =\"\\[\\]{}-]{0,16}",
        ) {
            let yaml = format!(
                "mirrors:\n  \"{registry}\":\n    endpoint: [\"{endpoint}\"]\n    {field}: {value}\nconfigs:\n  \"{registry}\":\n    {field}: {value}\n"
            );
            if let Ok(config) = RegistriesConfig::parse(&yaml, "p") {
                for e in config.endpoints(&registry, false) {
                    prop_assert!(e.url.starts_with("http://") || e.url.starts_with("https://"));
                }
            }
        }
    }
}
