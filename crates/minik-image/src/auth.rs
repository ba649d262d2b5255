//! Registry credentials: what a `kubernetes.io/dockerconfigjson` (or the older
//! `kubernetes.io/dockercfg`) Secret holds and which of its entries apply to an image, matched
//! as the kubelet's credential keyring does; and the `WWW-Authenticate` challenge a registry
//! answers with.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use crate::ImageError;

/// A credential for a registry. `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// HTTP basic authentication, sent as is or exchanged for a bearer token.
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`docker login` with an identity provider), exchanged for a
    /// bearer token at the realm of the registry's challenge.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => {
                f.debug_tuple("IdentityToken").field(&"<redacted>").finish()
            }
        }
    }
}

/// Decodes an `auth` field: base64 of `username:password`.
pub(crate) fn decode_basic_auth(auth: &str) -> Result<Credential, String> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(auth.trim())
        .map_err(|e| format!("auth is not base64 of username:password: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "auth decodes to bytes that are not UTF-8".to_string())?;
    let (username, password) = text.split_once(':').ok_or_else(|| {
        "auth decodes to text without ':' (expected username:password)".to_string()
    })?;
    Ok(Credential::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// The registry credentials of a docker config: one Secret's worth.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// Sorted by key, as the JSON object is read.
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// The key as written, for messages.
    key: String,
    pattern: KeyPattern,
    credential: Credential,
}

/// A key without its scheme: a host (maybe with `*` and `?` globs in its dot-separated
/// labels), a port, and a path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyPattern {
    labels: Vec<String>,
    port: Option<String>,
    /// Empty, or `/`-separated segments without leading or trailing `/`.
    path: String,
}

/// One entry of `auths` as docker writes it. Other fields (`email`, `serveraddress`, …) are
/// ignored, as docker and the kubelet ignore them.
#[derive(serde::Deserialize)]
struct RawEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// Parses the `.dockerconfigjson` value of a `kubernetes.io/dockerconfigjson` Secret:
    /// `{"auths": {"KEY": ENTRY}}`. `source_name` (such as `secret default/regcred`) names it in
    /// errors.
    pub fn from_dockerconfigjson(
        json: &[u8],
        source_name: &str,
    ) -> Result<DockerConfig, ImageError> {
        #[derive(serde::Deserialize)]
        struct Root {
            #[serde(default)]
            auths: Option<BTreeMap<String, serde_json::Value>>,
        }
        let root: Root = serde_json::from_slice(json).map_err(|e| ImageError::Config {
            source_name: source_name.to_string(),
            why: format!("not a .dockerconfigjson ({{\"auths\": {{...}}}}): {e}"),
        })?;
        Self::from_entries(root.auths.unwrap_or_default(), "auths", source_name)
    }

    /// Parses the `.dockercfg` value of a `kubernetes.io/dockercfg` Secret: `{"KEY": ENTRY}`.
    pub fn from_dockercfg(json: &[u8], source_name: &str) -> Result<DockerConfig, ImageError> {
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|e| ImageError::Config {
                source_name: source_name.to_string(),
                why: format!("not a .dockercfg ({{\"REGISTRY\": {{...}}}}): {e}"),
            })?;
        Self::from_entries(map, "", source_name)
    }

    fn from_entries(
        map: BTreeMap<String, serde_json::Value>,
        prefix: &str,
        source_name: &str,
    ) -> Result<DockerConfig, ImageError> {
        let mut entries = Vec::new();
        for (key, value) in map {
            let at = if prefix.is_empty() {
                format!("{key:?}")
            } else {
                format!("{prefix}[{key:?}]")
            };
            let fail = |why: String| ImageError::Config {
                source_name: source_name.to_string(),
                why: format!("{at}: {why}"),
            };
            let raw: RawEntry = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
            let Some(credential) = credential_of(raw).map_err(fail)? else {
                continue;
            };
            let Some(pattern) = KeyPattern::parse(&key) else {
                tracing::warn!(source = source_name, key = %key, "registry key is not host[:port][/path]: ignored");
                continue;
            };
            entries.push(Entry {
                key,
                pattern,
                credential,
            });
        }
        Ok(DockerConfig { entries })
    }

    /// Adds the entries of another config after these (several `imagePullSecrets`).
    pub fn extend(&mut self, other: DockerConfig) {
        self.entries.extend(other.entries);
    }

    /// Whether there is no usable credential.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials to try for `registry/repository` (as [`crate::Reference`] normalises
    /// them), most specific key first: a key applies when its host matches (`*` globs within a
    /// label, the same number of labels), its port is the same, and its path is a prefix of the
    /// repository, segment by segment. `https://index.docker.io/v1/`, `index.docker.io`,
    /// `registry-1.docker.io` and `docker.io` all mean Docker Hub. Duplicates are dropped.
    pub fn credentials_for(&self, registry: &str, repository: &str) -> Vec<Credential> {
        let Some(target) = KeyPattern::parse(&format!("{registry}/{repository}")) else {
            return Vec::new();
        };
        let mut matched: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.pattern.matches(&target))
            .collect();
        // Exact hosts before globs, then the longest path; stable for ties.
        matched.sort_by_key(|e| {
            (
                e.pattern.labels.iter().any(|l| l.contains(['*', '?'])),
                std::cmp::Reverse(e.pattern.path.len()),
            )
        });
        let mut out: Vec<Credential> = Vec::new();
        for entry in matched {
            if !out.contains(&entry.credential) {
                out.push(entry.credential.clone());
            }
        }
        out
    }

    /// The keys of the usable entries, as written.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }
}

/// The credential of an entry, or none when it has no secret at all. The identity token wins,
/// then `auth` (as the kubelet: it overrides `username` and `password`), then the pair.
fn credential_of(raw: RawEntry) -> Result<Option<Credential>, String> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(token) = non_empty(raw.identitytoken) {
        return Ok(Some(Credential::IdentityToken(token)));
    }
    if let Some(auth) = non_empty(raw.auth) {
        return decode_basic_auth(&auth).map(Some);
    }
    match (non_empty(raw.username), raw.password.unwrap_or_default()) {
        (Some(username), password) => Ok(Some(Credential::Basic { username, password })),
        (None, password) if password.is_empty() => Ok(None),
        (None, _) => Err("password without username".to_string()),
    }
}

/// Docker Hub's other names, which keys and images may use for `docker.io`.
fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

impl KeyPattern {
    /// `[scheme://]host[:port][/path][/]`, where a leading `/v1/` or `/v2/` of the path is the
    /// API version, not a prefix.
    fn parse(key: &str) -> Option<KeyPattern> {
        let rest = key.split_once("://").map(|(_, rest)| rest).unwrap_or(key);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = ["/v1/", "/v2/"]
            .iter()
            .find_map(|v| path.strip_prefix(v))
            .or_else(|| ["/v1", "/v2"].iter().find(|v| path == **v).map(|_| ""))
            .unwrap_or(path);
        let path = path
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let (host, port) = split_host_port(authority)?;
        let host = host.to_ascii_lowercase();
        let host = if is_docker_hub(&host) {
            "docker.io".to_string()
        } else {
            host
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
            return None;
        }
        Some(KeyPattern {
            labels: host.split('.').map(str::to_string).collect(),
            port: port.map(str::to_string),
            path,
        })
    }

    fn matches(&self, target: &KeyPattern) -> bool {
        self.port == target.port
            && self.labels.len() == target.labels.len()
            && self
                .labels
                .iter()
                .zip(&target.labels)
                .all(|(glob, label)| glob_match(glob.as_bytes(), label.as_bytes()))
            && (self.path.is_empty()
                || target.path == self.path
                || target
                    .path
                    .strip_prefix(&self.path)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// `host[:port]`, the host of an IPv6 address in brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Some((host, None)),
            _ => after.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

/// `*` (any run of characters) and `?` (one character) within one host label. Linear
/// backtracking to the last `*`, so a key full of stars costs no more than the label's length
/// times the key's.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

/// An authentication scheme a registry may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer,
}

/// A `WWW-Authenticate` challenge: for `Bearer`, where to get a token (`realm`) and for what
/// (`service`, `scope`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    pub realm: Option<String>,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Parses a `WWW-Authenticate` header value. Of several challenges, the `Bearer` one is
/// preferred, then `Basic`; other schemes are ignored. Schemes and parameter names are
/// case-insensitive; values are tokens or quoted strings (with `\` escapes and commas inside).
pub fn parse_www_authenticate(header: &str) -> Option<Challenge> {
    let challenges = parse_challenges(header);
    let pick = |scheme: Scheme| {
        challenges
            .iter()
            .find(|(s, _)| *s == Some(scheme))
            .map(|(_, params)| Challenge {
                scheme,
                realm: params.get("realm").cloned(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
    };
    pick(Scheme::Bearer).or_else(|| pick(Scheme::Basic))
}

type RawChallenge = (Option<Scheme>, BTreeMap<String, String>);

fn parse_challenges(header: &str) -> Vec<RawChallenge> {
    let mut cursor = Cursor {
        chars: header.chars().collect(),
        at: 0,
    };
    let mut out = Vec::new();
    loop {
        cursor.skip(|c| c.is_whitespace() || c == ',');
        if cursor.done() {
            return out;
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            // Not a token where a scheme should be: skip the character.
            cursor.at += 1;
            continue;
        }
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Scheme::Basic),
            "bearer" => Some(Scheme::Bearer),
            _ => None,
        };
        let mut params = BTreeMap::new();
        loop {
            cursor.skip(|c| c.is_whitespace() || c == ',');
            let start = cursor.at;
            let name = cursor.token();
            if name.is_empty() {
                // A quoted string or junk where a parameter should be.
                if cursor.done() {
                    break;
                }
                cursor.at += 1;
                continue;
            }
            cursor.skip(char::is_whitespace);
            if cursor.peek() != Some('=') {
                // The next challenge's scheme.
                cursor.at = start;
                break;
            }
            cursor.at += 1;
            cursor.skip(char::is_whitespace);
            let value = if cursor.peek() == Some('"') {
                cursor.at += 1;
                cursor.quoted()
            } else {
                cursor.until(|c| c == ',' || c.is_whitespace())
            };
            params.entry(name.to_ascii_lowercase()).or_insert(value);
        }
        out.push((scheme, params));
    }
}

struct Cursor {
    chars: Vec<char>,
    at: usize,
}

impl Cursor {
    fn done(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.at += 1;
        }
    }

    fn until(&mut self, stop: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| !stop(c)) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// An RFC 7230 token.
    fn token(&mut self) -> String {
        self.until(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
    }

    /// The rest of a quoted string whose opening quote is consumed; unterminated, the rest of
    /// the header.
    fn quoted(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                '"' => break,
                '\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.at += 1;
                    }
                }
                c => out.push(c),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(u: &str, p: &str) -> Credential {
        Credential::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!(
            "{:?} {:?}",
            basic("alice", "hunter2"),
            Credential::IdentityToken("tok3n".into())
        );
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
        let config = DockerConfig::from_dockerconfigjson(
            br#"{"auths":{"r.io":{"username":"u","password":"hunter2"}}}"#,
            "s",
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn reads_the_three_entry_forms() {
        let json = format!(
            r#"{{"auths": {{
                "a.io": {{"auth": "{}", "email": "x@y"}},
                "b.io": {{"username": "bob", "password": "pw"}},
                "c.io": {{"identitytoken": "refresh"}},
                "d.io": {{"auth": "{}", "username": "ignored", "password": "ignored"}},
                "e.io": {{}}
            }}}}"#,
            b64("alice:p:w"),
            b64("dave:pw")
        );
        let c = DockerConfig::from_dockerconfigjson(json.as_bytes(), "secret ns/s").unwrap();
        assert_eq!(c.credentials_for("a.io", "x"), vec![basic("alice", "p:w")]);
        assert_eq!(c.credentials_for("b.io", "x"), vec![basic("bob", "pw")]);
        assert_eq!(
            c.credentials_for("c.io", "x"),
            vec![Credential::IdentityToken("refresh".into())]
        );
        assert_eq!(c.credentials_for("d.io", "x"), vec![basic("dave", "pw")]);
        assert_eq!(c.credentials_for("e.io", "x"), vec![]);
        assert_eq!(c.keys().count(), 4);

        let old = format!(
            r#"{{"https://index.docker.io/v1/": {{"auth": "{}"}}}}"#,
            b64("u:p")
        );
        let c = DockerConfig::from_dockercfg(old.as_bytes(), "secret ns/old").unwrap();
        assert_eq!(
            c.credentials_for("docker.io", "library/nginx"),
            vec![basic("u", "p")]
        );
    }

    #[test]
    fn errors_name_the_source_and_the_key() {
        for (json, expected) in [
            ("not json", "secret ns/s: not a .dockerconfigjson"),
            (r#"{"auths": []}"#, "secret ns/s: not a .dockerconfigjson"),
            (
                r#"{"auths": {"r.io": {"auth": "!!!"}}}"#,
                "auths[\"r.io\"]: auth is not base64",
            ),
            (
                &format!(
                    r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
                    b64("nocolon")
                ),
                "without ':'",
            ),
            (
                r#"{"auths": {"r.io": {"password": "p"}}}"#,
                "password without username",
            ),
            (
                r#"{"auths": {"r.io": {"username": 3}}}"#,
                "auths[\"r.io\"]: invalid type",
            ),
        ] {
            let e = DockerConfig::from_dockerconfigjson(json.as_bytes(), "secret ns/s")
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{json}: {e}");
            assert!(e.starts_with("secret ns/s: "), "{e}");
        }
        let e = DockerConfig::from_dockercfg(b"[]", "secret ns/old").unwrap_err();
        assert!(
            e.to_string().starts_with("secret ns/old: not a .dockercfg"),
            "{e}"
        );
    }

    #[test]
    fn matches_keys_as_the_kubelet() {
        let entries = [
            ("https://index.docker.io/v1/", "hub"),
            ("quay.io", "quay"),
            ("quay.io/coreos", "coreos"),
            ("https://quay.io/v2/coreos/etcd", "etcd"),
            ("*.example.com", "wild"),
            ("registry.example.com", "exact"),
            ("registry.example.com:5000", "port"),
            ("http://localhost:5000/team", "local"),
            ("[::1]:5000", "v6"),
            ("r?.example.org", "q"),
        ];
        let json = format!(
            r#"{{"auths": {{{}}}}}"#,
            entries
                .iter()
                .map(|(k, u)| format!(r#""{k}": {{"auth": "{}"}}"#, b64(&format!("{u}:pw"))))
                .collect::<Vec<_>>()
                .join(",")
        );
        let c = DockerConfig::from_dockerconfigjson(json.as_bytes(), "s").unwrap();
        let users = |registry: &str, repository: &str| {
            c.credentials_for(registry, repository)
                .into_iter()
                .map(|cred| match cred {
                    Credential::Basic { username, .. } => username,
                    Credential::IdentityToken(t) => t,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(users("docker.io", "library/nginx"), ["hub"]);
        assert_eq!(users("quay.io", "coreos/etcd"), ["etcd", "coreos", "quay"]);
        assert_eq!(users("quay.io", "coreos/etcd-operator"), ["coreos", "quay"]);
        assert_eq!(users("quay.io", "coreosx/app"), ["quay"]);
        assert_eq!(users("registry.example.com", "a"), ["exact", "wild"]);
        assert_eq!(users("other.example.com", "a"), ["wild"]);
        // `*` stays within one label.
        assert!(users("a.b.example.com", "a").is_empty());
        assert!(users("example.com", "a").is_empty());
        assert_eq!(users("registry.example.com:5000", "a"), ["port"]);
        assert_eq!(users("localhost:5000", "team/app"), ["local"]);
        assert!(users("localhost:5000", "other/app").is_empty());
        assert!(users("localhost", "team/app").is_empty());
        assert_eq!(users("[::1]:5000", "x"), ["v6"]);
        assert_eq!(users("r1.example.org", "x"), ["q"]);
        assert!(users("r12.example.org", "x").is_empty());
        assert!(users("gcr.io", "x").is_empty());
    }

    #[test]
    fn globs() {
        for (glob, text, expected) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbb", false),
            ("*b*", "abc", true),
            ("?", "", false),
            ("a?c", "abc", true),
            ("**a**b", "xaxb", true),
            ("abc", "abd", false),
        ] {
            assert_eq!(
                glob_match(glob.as_bytes(), text.as_bytes()),
                expected,
                "{glob} {text}"
            );
        }
        let stars = "*".repeat(60) + "b";
        assert!(!glob_match(stars.as_bytes(), "a".repeat(63).as_bytes()));
    }

    #[test]
    fn docker_hub_keys_match_each_other_and_duplicates_go() {
        let json = format!(
            r#"{{"auths": {{"docker.io": {{"auth": "{0}"}}, "index.docker.io": {{"auth": "{0}"}},
                "registry-1.docker.io/library": {{"auth": "{1}"}}}}}}"#,
            b64("u:p"),
            b64("lib:p")
        );
        let c = DockerConfig::from_dockerconfigjson(json.as_bytes(), "s").unwrap();
        assert_eq!(
            c.credentials_for("docker.io", "library/nginx"),
            vec![basic("lib", "p"), basic("u", "p")]
        );
        assert_eq!(
            c.credentials_for("docker.io", "user/app"),
            vec![basic("u", "p")]
        );
    }

    #[test]
    fn extend_appends_another_secret() {
        let mut a = DockerConfig::from_dockerconfigjson(
            br#"{"auths":{"r.io":{"username":"a","password":"1"}}}"#,
            "a",
        )
        .unwrap();
        let b = DockerConfig::from_dockerconfigjson(
            br#"{"auths":{"r.io":{"username":"b","password":"2"}}}"#,
            "b",
        )
        .unwrap();
        a.extend(b);
        assert_eq!(
            a.credentials_for("r.io", "x"),
            vec![basic("a", "1"), basic("b", "2")]
        );
        assert!(!a.is_empty());
        assert!(DockerConfig::default().is_empty());
    }

    #[test]
    fn parses_challenges() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm.as_deref(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/nginx:pull"));

        let c = parse_www_authenticate(
            r#"bEARER  Realm = "https://r/t" , scope="repository:a/b:pull,push repository:c:pull", service=reg"#,
        )
        .unwrap();
        assert_eq!(c.realm.as_deref(), Some("https://r/t"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:a/b:pull,push repository:c:pull")
        );
        assert_eq!(c.service.as_deref(), Some("reg"));

        let c = parse_www_authenticate(r#"Basic realm="Registry \"x\"""#).unwrap();
        assert_eq!(c.scheme, Scheme::Basic);
        assert_eq!(c.realm.as_deref(), Some("Registry \"x\""));
        assert_eq!(parse_www_authenticate("basic").unwrap().realm, None);

        // Several challenges: Bearer preferred; unknown schemes ignored.
        let c =
            parse_www_authenticate(r#"Negotiate, Basic realm="b", Bearer realm="t",service="s""#)
                .unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm.as_deref(), Some("t"));
        assert_eq!(c.service.as_deref(), Some("s"));

        assert_eq!(parse_www_authenticate(""), None);
        assert_eq!(parse_www_authenticate("Negotiate abc=="), None);
        let c = parse_www_authenticate(r#"Bearer realm="unterminated"#).unwrap();
        assert_eq!(c.realm.as_deref(), Some("unterminated"));
    }

    proptest! {
        #[test]
        fn challenge_parsing_never_panics(s in "\\PC{0,100}") {
            let _ = parse_www_authenticate(&s);
        }

        #[test]
        fn challenge_like_headers_never_panic(s in "[A-Za-z=\", \\\\]{0,60}") {
            let _ = parse_www_authenticate(&s);
        }

        #[test]
        fn config_parsing_never_panics(s in "\\PC{0,100}", registry in "\\PC{0,20}", repo in "\\PC{0,20}") {
            if let Ok(c) = DockerConfig::from_dockerconfigjson(s.as_bytes(), "p") {
                let _ = c.credentials_for(&registry, &repo);
            }
            let _ = DockerConfig::from_dockercfg(s.as_bytes(), "p");
        }

        #[test]
        fn keys_never_panic(key in "\\PC{0,30}", registry in "\\PC{0,20}", repo in "\\PC{0,20}") {
            let json = serde_json::json!({"auths": {key: {"username": "u", "password": "p"}}});
            let c = DockerConfig::from_dockerconfigjson(json.to_string().as_bytes(), "p").unwrap();
            let _ = c.credentials_for(&registry, &repo);
        }
    }
}
