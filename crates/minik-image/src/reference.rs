//! Image references as Docker and Kubernetes spell them:
//! `[domain[:port]/]path[:tag][@digest]`, the grammar of docker's `distribution/reference`,
//! normalised the way Docker Hub names are (`nginx` → `docker.io/library/nginx:latest`).

use std::fmt;
use std::str::FromStr;

use crate::{Digest, ImageError};

/// The registry of names that have none: Docker Hub.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Other names Docker Hub goes by; they normalise to [`DEFAULT_REGISTRY`].
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];
/// The namespace of Docker Hub's official images (`nginx` is `library/nginx`).
const OFFICIAL_NAMESPACE: &str = "library/";
/// The longest `registry/repository`, as docker's reference package allows.
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;
/// The tag a reference with neither tag nor digest gets.
const DEFAULT_TAG: &str = "latest";

/// A normalised image reference: `registry/repository[:tag][@digest]`.
///
/// A reference always has a tag or a digest (or both): `nginx` gets the tag `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository inside the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form `docker` prints: `nginx:latest`, `user/app:1`; names outside Docker Hub
    /// stay whole.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }

    fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        let path = match self.repository.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(rest) if !rest.contains('/') => rest,
            _ => self.repository.as_str(),
        };
        // `docker.io/my.org/app` shortened to `my.org/app` would name the registry `my.org`.
        match path.split_once('/') {
            Some((first, _)) if looks_like_domain(first) => self.name(),
            _ => path.to_string(),
        }
    }

    /// What to ask the registry's manifests endpoint for: the digest when there is one (it
    /// wins over the tag), else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // Parsing never leaves both empty; be total anyway.
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The repo digest form, `docker.io/library/nginx@sha256:…`: this repository at `digest`,
    /// without tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// Whether the tag is `latest` or there is neither tag nor digest: what makes Kubernetes
    /// default `imagePullPolicy` to `Always`.
    pub fn is_latest_or_untagged(&self) -> bool {
        match &self.tag {
            Some(tag) => tag == DEFAULT_TAG,
            None => self.digest.is_none(),
        }
    }
}

/// The `imagePullPolicy` Kubernetes gives a container that sets none, from its `image` as
/// written: `Always` when the tag is `latest`, or when there is neither tag nor digest;
/// `IfNotPresent` otherwise, including when the image does not parse (as the API server does:
/// validation reports the bad name, defaulting does not).
pub fn default_pull_policy(image: &str) -> &'static str {
    match split(image) {
        Ok(parts) if parts.tag == Some(DEFAULT_TAG) => "Always",
        Ok(parts) if parts.tag.is_none() && parts.digest.is_none() => "Always",
        _ => "IfNotPresent",
    }
}

impl FromStr for Reference {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Reference, ImageError> {
        let invalid = |why: String| ImageError::InvalidReference {
            reference: s.to_string(),
            why,
        };
        let parts = split(s).map_err(invalid)?;
        let digest = match parts.digest {
            Some(d) => Some(d.parse::<Digest>().map_err(|e| match e {
                ImageError::InvalidDigest { why, .. } => invalid(format!("digest: {why}")),
                other => invalid(format!("digest: {other}")),
            })?),
            None => None,
        };
        let mut registry = parts.domain.unwrap_or(DEFAULT_REGISTRY).to_string();
        if DOCKER_HUB_ALIASES.contains(&registry.as_str()) {
            registry = DEFAULT_REGISTRY.to_string();
        }
        let repository = if registry == DEFAULT_REGISTRY && !parts.path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}{}", parts.path)
        } else {
            parts.path.to_string()
        };
        let name_len = registry.len() + 1 + repository.len();
        if name_len > NAME_MAX {
            return Err(invalid(format!(
                "the name {registry}/{repository} is {name_len} characters long, more than \
                 {NAME_MAX}"
            )));
        }
        let tag = match (parts.tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A reference cut into its parts as written, each checked against the grammar; the digest
/// only against the general `algorithm:hex` grammar.
#[derive(Debug)]
struct Parts<'a> {
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

fn split(s: &str) -> Result<Parts<'_>, String> {
    if s.is_empty() {
        return Err("the reference is empty".to_string());
    }
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(
            "a 64-character hexadecimal string is an image ID, not a repository name".to_string(),
        );
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            check_digest(digest)?;
            (rest, Some(digest))
        }
        None => (s, None),
    };
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            let tag = &rest[colon + 1..];
            check_tag(tag)?;
            (&rest[..colon], Some(tag))
        }
        _ => (rest, None),
    };
    if name.is_empty() {
        return Err("the repository name is empty".to_string());
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, remainder))
            if looks_like_domain(first) || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            check_domain(first)?;
            (Some(first), remainder)
        }
        _ => (None, name),
    };
    check_path(path)?;
    Ok(Parts {
        domain,
        path,
        tag,
        digest,
    })
}

/// Whether the first component of a name is a registry rather than a Docker Hub user: it has
/// a `.` or a `:`, or is `localhost`.
fn looks_like_domain(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

fn check_tag(tag: &str) -> Result<(), String> {
    let first = match tag.chars().next() {
        None => return Err("the tag after ':' is empty".to_string()),
        Some(c) => c,
    };
    if tag.len() > TAG_MAX {
        return Err(format!(
            "the tag is {} characters long, more than {TAG_MAX}",
            tag.len()
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!(
            "the tag {tag:?} must start with a letter, a digit or '_'"
        ));
    }
    if let Some(c) = tag
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "the tag {tag:?} has the character {c:?}: a tag is letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// `algorithm:hex` as distribution's grammar has it: algorithm components of letters and digits
/// (starting with a letter) separated by one of `+._-`, and at least 32 hex digits.
fn check_digest(digest: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("the digest {digest:?} {why}"));
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return bad("is not ALGORITHM:HEX");
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|component| {
            let mut chars = component.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric())
        });
    if !algorithm_ok {
        return bad("has an invalid algorithm");
    }
    if hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("must end in at least 32 hexadecimal digits");
    }
    Ok(())
}

/// `host[:port]`: a DNS name (labels of letters, digits and inner `-`) or a bracketed IPv6
/// address.
fn check_domain(domain: &str) -> Result<(), String> {
    let bad = |why: String| Err(format!("the registry {domain:?} {why}"));
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return bad("has a '[' without ']'".to_string());
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad("is not a valid IPv6 address in brackets".to_string());
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad("has characters after ']' that are not a port".to_string()),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return bad(format!(
                    "has the invalid host name component {label:?} (letters, digits and inner \
                     '-' only)"
                ));
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad(format!("has the invalid port {port:?}"));
        }
    }
    Ok(())
}

/// Path components separated by `/`, each lower-case letters and digits joined by one
/// separator: `.`, `_`, `__` or any number of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("the repository name {path:?} must be lowercase"));
    }
    for component in path.split('/') {
        check_path_component(path, component)?;
    }
    Ok(())
}

fn check_path_component(path: &str, component: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if component.is_empty() {
        return Err(format!(
            "the repository name {path:?} has an empty component (a leading, trailing or \
             doubled '/')"
        ));
    }
    if let Some(c) = component
        .chars()
        .find(|&c| !(alnum(c) || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the repository name {path:?} has the character {c:?}: components are lower-case \
             letters, digits and separators '.', '_', '__', '-'"
        ));
    }
    if !component.starts_with(alnum) || !component.ends_with(alnum) {
        return Err(format!(
            "the repository component {component:?} must start and end with a letter or a digit"
        ));
    }
    for separator in component.split(alnum).filter(|s| !s.is_empty()) {
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "the repository component {component:?} has the separator {separator:?}: \
                 allowed are '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn why(s: &str) -> String {
        match s.parse::<Reference>() {
            Ok(r) => panic!("{s:?} should be refused, parsed as {r}"),
            Err(ImageError::InvalidReference { reference, why }) => {
                assert_eq!(reference, s);
                why
            }
            Err(other) => panic!("{s:?}: wrong error {other:?}"),
        }
    }

    /// Input, registry, repository, tag, whether there is a digest, familiar form.
    type Case = (
        String,
        &'static str,
        &'static str,
        Option<&'static str>,
        bool,
        String,
    );

    #[test]
    fn normalises_real_names() {
        let digest = format!("sha256:{HEX}");
        let cases: Vec<Case> = vec![
            (
                "nginx".into(),
                "docker.io",
                "library/nginx",
                Some("latest"),
                false,
                "nginx:latest".into(),
            ),
            (
                "nginx:1.25".into(),
                "docker.io",
                "library/nginx",
                Some("1.25"),
                false,
                "nginx:1.25".into(),
            ),
            (
                "user/app:1".into(),
                "docker.io",
                "user/app",
                Some("1"),
                false,
                "user/app:1".into(),
            ),
            (
                "docker.io/nginx".into(),
                "docker.io",
                "library/nginx",
                Some("latest"),
                false,
                "nginx:latest".into(),
            ),
            (
                "index.docker.io/library/nginx:1".into(),
                "docker.io",
                "library/nginx",
                Some("1"),
                false,
                "nginx:1".into(),
            ),
            (
                "registry-1.docker.io/user/app".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                false,
                "user/app:latest".into(),
            ),
            (
                "docker.io/library/a/b".into(),
                "docker.io",
                "library/a/b",
                Some("latest"),
                false,
                "library/a/b:latest".into(),
            ),
            (
                "gcr.io/google-samples/gb-frontend:v5".into(),
                "gcr.io",
                "google-samples/gb-frontend",
                Some("v5"),
                false,
                "gcr.io/google-samples/gb-frontend:v5".into(),
            ),
            (
                "localhost:5000/a/b".into(),
                "localhost:5000",
                "a/b",
                Some("latest"),
                false,
                "localhost:5000/a/b:latest".into(),
            ),
            (
                "localhost/app".into(),
                "localhost",
                "app",
                Some("latest"),
                false,
                "localhost/app:latest".into(),
            ),
            (
                "registry.k8s.io/pause:3.9".into(),
                "registry.k8s.io",
                "pause",
                Some("3.9"),
                false,
                "registry.k8s.io/pause:3.9".into(),
            ),
            (
                "quay.io/coreos/etcd:v3.5.0".into(),
                "quay.io",
                "coreos/etcd",
                Some("v3.5.0"),
                false,
                "quay.io/coreos/etcd:v3.5.0".into(),
            ),
            (
                "127.0.0.1:5000/x".into(),
                "127.0.0.1:5000",
                "x",
                Some("latest"),
                false,
                "127.0.0.1:5000/x:latest".into(),
            ),
            (
                "[::1]:5000/x:t".into(),
                "[::1]:5000",
                "x",
                Some("t"),
                false,
                "[::1]:5000/x:t".into(),
            ),
            (
                "Registry.Example.com/x".into(),
                "Registry.Example.com",
                "x",
                Some("latest"),
                false,
                "Registry.Example.com/x:latest".into(),
            ),
            (
                "a__b/c--d/e.f_g:_T-a.G".into(),
                "docker.io",
                "a__b/c--d/e.f_g",
                Some("_T-a.G"),
                false,
                "a__b/c--d/e.f_g:_T-a.G".into(),
            ),
            (
                "localhost:5000".into(),
                "docker.io",
                "library/localhost",
                Some("5000"),
                false,
                "localhost:5000".into(),
            ),
            (
                format!("busybox@{digest}"),
                "docker.io",
                "library/busybox",
                None,
                true,
                format!("busybox@{digest}"),
            ),
            (
                format!("nginx:1.25@{digest}"),
                "docker.io",
                "library/nginx",
                Some("1.25"),
                true,
                format!("nginx:1.25@{digest}"),
            ),
            (
                format!("ghcr.io/o/r@{digest}"),
                "ghcr.io",
                "o/r",
                None,
                true,
                format!("ghcr.io/o/r@{digest}"),
            ),
            // Shortened, these would name another registry: they stay whole.
            (
                "docker.io/my.org/app".into(),
                "docker.io",
                "my.org/app",
                Some("latest"),
                false,
                "docker.io/my.org/app:latest".into(),
            ),
            (
                "docker.io/localhost/app".into(),
                "docker.io",
                "localhost/app",
                Some("latest"),
                false,
                "docker.io/localhost/app:latest".into(),
            ),
        ];
        for (input, registry, repository, tag, has_digest, familiar) in cases {
            let r = parse(&input);
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().is_some(), has_digest, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(r.name(), format!("{registry}/{repository}"), "{input}");
            assert_eq!(parse(&r.to_string()), r, "{input}: {r}");
            assert_eq!(parse(&r.familiar()), r, "{input}: {}", r.familiar());
        }
    }

    #[test]
    fn display_is_the_full_normalised_form() {
        assert_eq!(parse("nginx").to_string(), "docker.io/library/nginx:latest");
        assert_eq!(parse("user/app:1").to_string(), "docker.io/user/app:1");
        assert_eq!(
            parse(&format!("nginx:1.25@sha256:{HEX}")).to_string(),
            format!("docker.io/library/nginx:1.25@sha256:{HEX}")
        );
    }

    #[test]
    fn refuses_bad_names_saying_why() {
        let long_tag = format!("nginx:{}", "a".repeat(129));
        let long_name = format!("example.com/{}", "a".repeat(250));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            (":tag".into(), "repository name is empty"),
            ("Nginx".into(), "lowercase"),
            ("user/App".into(), "lowercase"),
            ("nginx:".into(), "tag after ':' is empty"),
            ("nginx:-x".into(), "must start"),
            ("nginx:a+b".into(), "'+'"),
            (long_tag, "more than 128"),
            (long_name, "more than 255"),
            ("a//b".into(), "empty component"),
            ("a/".into(), "empty component"),
            ("/a".into(), "empty component"),
            ("example.com/".into(), "empty component"),
            ("a/-b".into(), "start and end"),
            ("a/b-".into(), "start and end"),
            ("a/b..c".into(), "separator \"..\""),
            ("a/b___c".into(), "separator \"___\""),
            ("a/b._c".into(), "separator"),
            ("a b".into(), "' '"),
            ("ex_ample.com/a".into(), "host name component"),
            ("example.com:/a".into(), "invalid port"),
            ("example.com:80a/a".into(), "invalid port"),
            ("[zz]:5000/a".into(), "IPv6"),
            ("nginx@".into(), "ALGORITHM:HEX"),
            ("nginx@sha256:abc".into(), "at least 32"),
            (format!("nginx@sha512:{HEX}"), "only sha256"),
            (format!("nginx@sha256:{}", HEX.to_uppercase()), "digest"),
            (format!("nginx@sha256:{HEX}@sha256:{HEX}"), "digest"),
            (HEX.into(), "image ID"),
        ];
        for (input, expected) in cases {
            let why = why(&input);
            assert!(
                why.contains(expected),
                "{input:?}: {why:?} should say {expected:?}"
            );
        }
    }

    #[test]
    fn tag_or_digest_prefers_the_digest() {
        assert_eq!(parse("nginx").tag_or_digest(), "latest");
        assert_eq!(parse("nginx:1.25").tag_or_digest(), "1.25");
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            parse(&format!("nginx:1.25@{digest}")).tag_or_digest(),
            digest
        );
    }

    #[test]
    fn with_digest_is_the_repo_digest_form() {
        let d = Digest::of(b"x");
        let r = parse("nginx:1.25").with_digest(d.clone());
        assert_eq!(r.to_string(), format!("docker.io/library/nginx@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.tag_or_digest(), d.to_string());
    }

    #[test]
    fn pull_policy_defaults_as_kubernetes() {
        let digest = format!("sha256:{HEX}");
        for (image, policy) in [
            ("nginx".to_string(), "Always"),
            ("nginx:latest".into(), "Always"),
            ("gcr.io/x/y".into(), "Always"),
            ("localhost:5000/a".into(), "Always"),
            ("nginx:1.25".into(), "IfNotPresent"),
            ("localhost:5000".into(), "IfNotPresent"),
            (format!("nginx@{digest}"), "IfNotPresent"),
            (format!("nginx:1.25@{digest}"), "IfNotPresent"),
            (format!("nginx:latest@{digest}"), "Always"),
            // Kubernetes reads any algorithm there; minik refuses to pull it, but defaults alike.
            (format!("nginx@sha512:{HEX}{HEX}"), "IfNotPresent"),
            (format!("nginx:latest@sha512:{HEX}{HEX}"), "Always"),
            ("Bad Name".into(), "IfNotPresent"),
            ("".into(), "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(&image), policy, "{image}");
        }
        assert!(parse("nginx").is_latest_or_untagged());
        assert!(parse("nginx:latest").is_latest_or_untagged());
        assert!(!parse("nginx:1").is_latest_or_untagged());
        assert!(!parse(&format!("nginx@{digest}")).is_latest_or_untagged());
        assert!(parse(&format!("nginx:latest@{digest}")).is_latest_or_untagged());
    }

    fn valid_reference() -> impl Strategy<Value = String> {
        let domain = prop_oneof![
            Just(None),
            Just(Some("localhost".to_string())),
            "[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?(\\.[a-zA-Z0-9]{1,4}){1,2}(:[0-9]{1,5})?"
                .prop_map(Some),
            "\\[[0-9a-f]{0,4}:[0-9a-f:]{0,6}\\](:[0-9]{1,4})?".prop_map(Some),
        ];
        let component = "[a-z0-9]{1,4}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,2}";
        let path = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
        let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
        let digest = prop::option::of("[0-9a-f]{64}");
        (domain, path, tag, digest).prop_map(|(domain, path, tag, digest)| {
            let first = path.split('/').next().unwrap_or_default();
            let domain = match domain {
                // Without a registry, a first component like `a.b` would be taken for one.
                None if path.contains('/') && looks_like_domain(first) => {
                    Some("docker.io".to_string())
                }
                domain => domain,
            };
            let mut s = domain.map(|d| format!("{d}/")).unwrap_or_default();
            s.push_str(&path);
            if let Some(tag) = tag {
                s.push(':');
                s.push_str(&tag);
            }
            if let Some(hex) = digest {
                s.push_str("@sha256:");
                s.push_str(&hex);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_what_parses_round_trips(s in "\\PC{0,80}") {
            if let Ok(r) = s.parse::<Reference>() {
                prop_assert_eq!(r.to_string().parse::<Reference>().ok(), Some(r.clone()));
                prop_assert_eq!(r.familiar().parse::<Reference>().ok(), Some(r));
            }
            let _ = default_pull_policy(&s);
        }

        #[test]
        fn reference_like_strings_never_panic(s in "[a-zA-Z0-9.:/@_\\-\\[\\]]{0,40}") {
            if let Ok(r) = s.parse::<Reference>() {
                prop_assert_eq!(r.to_string().parse::<Reference>().ok(), Some(r));
            }
        }

        #[test]
        fn valid_references_parse_and_round_trip(s in valid_reference()) {
            let r = s.parse::<Reference>();
            prop_assert!(r.is_ok(), "{:?}: {:?}", s, r);
            let r = r.unwrap();
            prop_assert_eq!(r.to_string().parse::<Reference>().ok(), Some(r.clone()));
            prop_assert_eq!(r.familiar().parse::<Reference>().ok(), Some(r));
        }
    }
}
