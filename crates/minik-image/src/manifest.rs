//! What registries serve, parsed into what a pull needs: OCI image manifests and indexes, Docker
//! v2 schema 2 manifests and manifest lists (Docker schema 1 is refused), the platform to pick
//! from an index, and the image configuration a runtime reads (entrypoint, env, diff ids...).
//!
//! Own serde types rather than `oci-spec`'s: the same four documents arrive with OCI or Docker
//! media types, and a pull only reads a few fields of each; unknown fields are ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Digest, ImageError};

/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (Docker's image index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header of a manifest request: every manifest type minik reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// An OCI image configuration.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// OCI layers: an uncompressed tar, gzip, zstd.
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A pointer to a blob or a manifest: its media type, digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// How a layer blob is compressed, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression of a layer of media type `media_type`; `None` for a media type that is
    /// not a layer minik unpacks (the manifest parser refuses those already).
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER_TAR => Some(Compression::None),
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(Compression::Gzip),
            OCI_LAYER_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// An image manifest: the configuration blob and the layers, bottom first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    /// Parses an image manifest (OCI or Docker schema 2) of `image`; an index is refused.
    pub fn parse(bytes: &[u8], image: &str) -> Result<Manifest, ImageError> {
        match parse(image, None, bytes)? {
            Fetched::Manifest(manifest) => Ok(manifest),
            Fetched::Index(_) => Err(ImageError::BadManifest {
                image: image.to_string(),
                why: "an image index where an image manifest was expected".to_string(),
            }),
        }
    }
}

/// An operating system and CPU architecture, as indexes list them (`linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this host: `linux` and the architecture the binary was built for, named
    /// as Go names it (`amd64`, `arm64`, `arm` with variant `v7`...).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform as containerd compares them: lower case, and the default variant of an
    /// architecture made explicit-free (`arm64/v8` is `arm64`, `arm` is `arm/v7`).
    fn normalized(&self) -> (String, String, String) {
        let os = self.os.to_ascii_lowercase();
        let mut architecture = self.architecture.to_ascii_lowercase();
        let mut variant = self
            .variant
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match architecture.as_str() {
            "x86_64" | "x86-64" => architecture = "amd64".to_string(),
            "aarch64" => architecture = "arm64".to_string(),
            "i386" => architecture = "386".to_string(),
            "armhf" => {
                architecture = "arm".to_string();
                variant = "v7".to_string();
            }
            "armel" => {
                architecture = "arm".to_string();
                variant = "v6".to_string();
            }
            _ => {}
        }
        match architecture.as_str() {
            "amd64" if variant == "v1" => variant.clear(),
            "arm64" if variant == "8" || variant == "v8" => variant.clear(),
            "arm" => match variant.as_str() {
                "" | "7" => variant = "v7".to_string(),
                "5" | "6" | "8" => variant = format!("v{variant}"),
                _ => {}
            },
            _ => {}
        }
        (os, architecture, variant)
    }

    /// Whether an index entry for `other` runs here: same OS, architecture and variant once
    /// both are normalised (containerd's default matcher without its fallbacks).
    pub fn matches(&self, other: &Platform) -> bool {
        self.normalized() == other.normalized()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// One manifest an index lists, and the platform it is for (absent on entries such as
/// attestations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformEntry {
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
}

/// A manifest document as fetched: an image manifest, or an index of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    Manifest(Manifest),
    Index(Vec<PlatformEntry>),
}

/// The fields of the four documents a pull reads; every one optional here and checked below,
/// so that each refusal says what is wrong.
#[derive(Deserialize)]
struct RawDocument {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<RawEntry>>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(flatten)]
    descriptor: Descriptor,
    platform: Option<Platform>,
}

/// Parses a manifest document fetched for `image`. Its type comes from its `mediaType` field,
/// else from the `Content-Type` it was served with, else from its shape.
pub(crate) fn parse(
    image: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Fetched, ImageError> {
    let bad = |why: String| ImageError::BadManifest {
        image: image.to_string(),
        why,
    };
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media_type = raw.media_type.as_deref().or(content_type);

    if raw.schema_version == Some(1)
        || matches!(media_type, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED))
    {
        return Err(bad(
            "Docker image manifest schema 1 is deprecated and not supported; \
             push the image again with a current client (schema 2 or OCI)"
                .to_string(),
        ));
    }
    if let Some(version) = raw.schema_version.filter(|v| *v != 2) {
        return Err(bad(format!("unsupported schemaVersion {version}")));
    }
    let is_index = match media_type {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(bad(format!("unsupported media type {other:?}"))),
        None => raw.manifests.is_some(),
    };

    if is_index {
        let entries = raw
            .manifests
            .ok_or_else(|| bad("an index without \"manifests\"".to_string()))?;
        return Ok(Fetched::Index(
            entries
                .into_iter()
                .map(|e| PlatformEntry {
                    descriptor: e.descriptor,
                    platform: e.platform,
                })
                .collect(),
        ));
    }

    let config = raw
        .config
        .ok_or_else(|| bad("a manifest without \"config\"".to_string()))?;
    if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
        return Err(bad(format!(
            "not a container image: config media type {:?} (an artifact?)",
            config.media_type
        )));
    }
    let layers = raw
        .layers
        .ok_or_else(|| bad("a manifest without \"layers\"".to_string()))?;
    for layer in &layers {
        check_layer(layer).map_err(|why| bad(format!("layer {}: {why}", layer.digest)))?;
    }
    Ok(Fetched::Manifest(Manifest { config, layers }))
}

fn check_layer(layer: &Descriptor) -> Result<(), String> {
    if Compression::of_layer(&layer.media_type).is_some() {
        return Ok(());
    }
    let t = layer.media_type.as_str();
    if t.contains("foreign") || t.contains("nondistributable") {
        Err(format!(
            "{t:?} is a foreign (non-distributable) layer, which registries do not serve \
             (a Windows base layer?); it is not supported"
        ))
    } else {
        Err(format!("unsupported layer media type {t:?}"))
    }
}

/// Picks from an index the manifest for `platform`: the first entry whose platform matches it.
pub(crate) fn choose<'a>(
    image: &str,
    entries: &'a [PlatformEntry],
    platform: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .map(|e| &e.descriptor)
        .ok_or_else(|| {
            let available: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref().map(Platform::to_string))
                .collect();
            ImageError::NoMatchingPlatform {
                image: image.to_string(),
                platform: platform.to_string(),
                available: if available.is_empty() {
                    "no platforms".to_string()
                } else {
                    available.join(", ")
                },
            }
        })
}

/// What a runtime reads from an image's configuration blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as the image says.
    pub user: Option<String>,
    /// `80/tcp`, `53/udp`...
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// The digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct RawConfigBlob {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    config: Option<RawRuntimeConfig>,
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "ExposedPorts")]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "StopSignal")]
    stop_signal: Option<String>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(rename = "type")]
    kind: Option<String>,
    diff_ids: Option<Vec<Digest>>,
}

impl ImageConfig {
    /// Parses the configuration blob of `image`.
    pub fn parse(bytes: &[u8], image: &str) -> Result<ImageConfig, ImageError> {
        let bad = |why: String| ImageError::BadManifest {
            image: image.to_string(),
            why,
        };
        let raw: RawConfigBlob =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("image configuration: {e}")))?;
        let rootfs = raw
            .rootfs
            .ok_or_else(|| bad("image configuration without \"rootfs\"".to_string()))?;
        if let Some(kind) = rootfs.kind.filter(|k| k != "layers") {
            return Err(bad(format!(
                "image configuration: rootfs type {kind:?}, expected \"layers\""
            )));
        }
        let diff_ids = rootfs.diff_ids.unwrap_or_default();
        let c = raw.config.unwrap_or(RawRuntimeConfig {
            user: None,
            exposed_ports: None,
            env: None,
            entrypoint: None,
            cmd: None,
            working_dir: None,
            labels: None,
            stop_signal: None,
        });
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(ImageConfig {
            os: raw.os.unwrap_or_default(),
            architecture: raw.architecture.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
            exposed_ports: c
                .exposed_ports
                .map(|p| p.into_keys().collect())
                .unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            stop_signal: non_empty(c.stop_signal),
            diff_ids,
        })
    }

    /// Checks that the configuration lists one diff id per layer of the manifest of `image`.
    pub fn check_layers(&self, manifest: &Manifest, image: &str) -> Result<(), ImageError> {
        if self.diff_ids.len() == manifest.layers.len() {
            return Ok(());
        }
        Err(ImageError::BadManifest {
            image: image.to_string(),
            why: format!(
                "the manifest lists {} layers but the configuration {} diff ids",
                manifest.layers.len(),
                self.diff_ids.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn manifest_json(media_type: &str, config_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}",
               "config":{{"mediaType":"{config_type}","digest":"{D1}","size":7}},
               "layers":[{{"mediaType":"{layer_type}","digest":"{D2}","size":1234,
                           "annotations":{{"a":"b"}}}}]}}"#
        )
    }

    fn manifest(bytes: &str) -> Manifest {
        match parse("img", None, bytes.as_bytes()).unwrap() {
            Fetched::Manifest(m) => m,
            other => panic!("expected a manifest, got {other:?}"),
        }
    }

    fn index(bytes: &str) -> Vec<PlatformEntry> {
        match parse("img", None, bytes.as_bytes()).unwrap() {
            Fetched::Index(i) => i,
            other => panic!("expected an index, got {other:?}"),
        }
    }

    #[test]
    fn parses_oci_and_docker_manifests() {
        let m = manifest(&manifest_json(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP));
        assert_eq!(m.config.digest.to_string(), D1);
        assert_eq!(m.config.size, 7);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].size, 1234);
        assert_eq!(m.layers[0].media_type, OCI_LAYER_GZIP);

        let m = manifest(&manifest_json(
            DOCKER_MANIFEST,
            DOCKER_CONFIG,
            DOCKER_LAYER_GZIP,
        ));
        assert_eq!(m.layers[0].digest.to_string(), D2);
        for layer in [OCI_LAYER_TAR, OCI_LAYER_ZSTD] {
            manifest(&manifest_json(OCI_MANIFEST, OCI_CONFIG, layer));
        }
    }

    #[test]
    fn the_media_type_may_come_from_the_content_type_or_the_shape() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":7}},"layers":[]}}"#
        );
        let fetched = parse(
            "img",
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            body.as_bytes(),
        )
        .unwrap();
        assert!(matches!(fetched, Fetched::Manifest(_)));
        assert!(matches!(
            parse("img", Some("application/json"), body.as_bytes()).unwrap(),
            Fetched::Manifest(_)
        ));
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":3}}]}}"#
        );
        assert!(matches!(
            parse("img", None, body.as_bytes()).unwrap(),
            Fetched::Index(_)
        ));
        let e = parse("img", Some(OCI_MANIFEST), body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("without \"config\""), "{e}");
    }

    #[test]
    fn parses_indexes_and_manifest_lists() {
        for media_type in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
            let entries = index(&format!(
                r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[
                  {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,
                    "platform":{{"os":"linux","architecture":"amd64"}}}},
                  {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":11,
                    "platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
                  {{"mediaType":"{OCI_MANIFEST}","digest":"{D3}","size":12}}]}}"#
            ));
            assert_eq!(entries.len(), 3);
            assert_eq!(
                entries[1].platform.as_ref().unwrap().to_string(),
                "linux/arm64/v8"
            );
            assert_eq!(entries[2].platform, None);
        }
    }

    #[test]
    fn manifest_parse_wants_a_manifest() {
        let m = Manifest::parse(
            manifest_json(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP).as_bytes(),
            "img",
        )
        .unwrap();
        assert_eq!(m.layers.len(), 1);
        let list = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        let e = Manifest::parse(list.as_bytes(), "img").unwrap_err();
        assert!(e.to_string().contains("an image index"), "{e}");
    }

    #[test]
    fn refuses_schema_1_clearly() {
        let e = parse(
            "docker.io/library/old:1",
            None,
            br#"{"schemaVersion":1,"name":"library/old","fsLayers":[]}"#,
        )
        .unwrap_err();
        let message = e.to_string();
        assert!(matches!(e, ImageError::BadManifest { .. }));
        assert!(message.contains("docker.io/library/old:1"), "{message}");
        assert!(message.contains("schema 1"), "{message}");
        let e = parse("img", Some(DOCKER_SCHEMA1_SIGNED), b"{}").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
    }

    #[test]
    fn refuses_foreign_and_unknown_layers_and_artifacts() {
        let e = parse(
            "img",
            None,
            manifest_json(
                DOCKER_MANIFEST,
                DOCKER_CONFIG,
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("foreign"), "{e}");
        let e = parse(
            "img",
            None,
            manifest_json(
                OCI_MANIFEST,
                OCI_CONFIG,
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("non-distributable"), "{e}");
        let e = parse(
            "img",
            None,
            manifest_json(OCI_MANIFEST, OCI_CONFIG, "application/x-whatever").as_bytes(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unsupported layer media type"),
            "{e}"
        );
        let e = parse(
            "img",
            None,
            manifest_json(
                OCI_MANIFEST,
                "application/vnd.cncf.helm.config.v1+json",
                OCI_LAYER_TAR,
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a container image"), "{e}");
    }

    #[test]
    fn bad_json_names_the_image() {
        for bad in [&b""[..], b"{", b"[]", b"null", b"{\"config\":3}"] {
            let e = parse("registry.example/app:v1", None, bad).unwrap_err();
            assert!(matches!(e, ImageError::BadManifest { .. }), "{e}");
            assert!(e.to_string().contains("registry.example/app:v1"), "{e}");
        }
        let bad_digest =
            manifest_json(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_TAR).replace(D2, "md5:00");
        let e = parse("img", None, bad_digest.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
    }

    fn entry(digest: &str, os: &str, arch: &str, variant: Option<&str>) -> PlatformEntry {
        PlatformEntry {
            descriptor: Descriptor {
                media_type: OCI_MANIFEST.to_string(),
                digest: digest.parse().unwrap(),
                size: 1,
            },
            platform: Some(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn chooses_the_exact_platform_with_containerds_variant_rules() {
        let entries = vec![
            entry(D1, "linux", "amd64", None),
            entry(D2, "linux", "arm64", Some("v8")),
            entry(D3, "linux", "arm", Some("v7")),
        ];
        let pick = |p: Platform| choose("img", &entries, &p).map(|d| d.digest.to_string());
        assert_eq!(pick(platform("amd64", None)).unwrap(), D1);
        assert_eq!(pick(platform("arm64", None)).unwrap(), D2);
        assert_eq!(pick(platform("arm64", Some("v8"))).unwrap(), D2);
        assert_eq!(pick(platform("arm", None)).unwrap(), D3);
        assert_eq!(pick(platform("arm", Some("7"))).unwrap(), D3);
        let e = pick(platform("arm", Some("v6"))).unwrap_err();
        assert!(matches!(e, ImageError::NoMatchingPlatform { .. }));
        let message = e.to_string();
        assert!(message.contains("linux/arm/v6"), "{message}");
        assert!(
            message.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"),
            "{message}"
        );
        let e = pick(platform("s390x", None)).unwrap_err();
        assert!(e.to_string().contains("linux/s390x"), "{e}");

        let windows = vec![
            entry(D1, "windows", "amd64", None),
            entry(D2, "linux", "amd64", None),
        ];
        assert_eq!(
            choose("img", &windows, &platform("amd64", None))
                .unwrap()
                .digest
                .to_string(),
            D2
        );
        // arm64 without a variant in the index is v8 too.
        let bare = vec![entry(D2, "linux", "arm64", None)];
        assert!(choose("img", &bare, &platform("arm64", Some("v8"))).is_ok());
        let e = choose("img", &[], &platform("amd64", None)).unwrap_err();
        assert!(e.to_string().contains("no platforms"), "{e}");
    }

    #[test]
    fn the_host_platform_is_linux_and_named_as_go_names_it() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.is_empty());
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
        assert!(host.matches(&host));
    }

    fn config_json(diff_ids: &[&str]) -> String {
        format!(
            r#"{{"architecture":"amd64","os":"linux",
               "config":{{"User":"1000:1000","ExposedPorts":{{"80/tcp":{{}},"53/udp":{{}}}},
                          "Env":["PATH=/bin","A=b"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],
                          "WorkingDir":"/srv","Labels":{{"k":"v"}},"StopSignal":"SIGQUIT"}},
               "rootfs":{{"type":"layers","diff_ids":{}}},
               "history":[{{"created_by":"x"}}]}}"#,
            serde_json::to_string(diff_ids).unwrap()
        )
    }

    #[test]
    fn parses_the_image_configuration() {
        let c = ImageConfig::parse(config_json(&[D1, D2]).as_bytes(), "img").unwrap();
        assert_eq!(c.os, "linux");
        assert_eq!(c.architecture, "amd64");
        assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(c.cmd, ["echo hi"]);
        assert_eq!(c.env, ["PATH=/bin", "A=b"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.diff_ids.len(), 2);
        assert_eq!(c.diff_ids[1].to_string(), D2);

        // Docker writes nulls for what is unset.
        let minimal = br#"{"os":"linux","architecture":"arm64","config":{"Env":null,"Cmd":null,"Entrypoint":null,"Labels":null,"WorkingDir":""},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::parse(minimal, "img").unwrap();
        assert!(c.cmd.is_empty() && c.entrypoint.is_empty() && c.env.is_empty());
        assert_eq!(c.working_dir, None);
        let c =
            ImageConfig::parse(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#, "img").unwrap();
        assert_eq!(c, ImageConfig::default());
    }

    #[test]
    fn the_configuration_lists_one_diff_id_per_layer() {
        let c = ImageConfig::parse(config_json(&[D1]).as_bytes(), "app:1").unwrap();
        let manifest = |layers: usize| Manifest {
            config: Descriptor {
                media_type: OCI_CONFIG.to_string(),
                digest: D1.parse().unwrap(),
                size: 1,
            },
            layers: vec![
                Descriptor {
                    media_type: OCI_LAYER_GZIP.to_string(),
                    digest: D2.parse().unwrap(),
                    size: 1,
                };
                layers
            ],
        };
        c.check_layers(&manifest(1), "app:1").unwrap();
        let e = c.check_layers(&manifest(2), "app:1").unwrap_err();
        assert!(matches!(e, ImageError::BadManifest { .. }));
        let message = e.to_string();
        assert!(
            message.contains("app:1") && message.contains("2 layers"),
            "{message}"
        );
        for bad in [
            &br#"{"os":"linux"}"#[..],
            br#"{"rootfs":{"type":"other","diff_ids":[]}}"#,
            br#"{"rootfs":{"diff_ids":["sha256:00"]}}"#,
            b"not json",
        ] {
            let e = ImageConfig::parse(bad, "app:1").unwrap_err();
            assert!(e.to_string().contains("app:1"), "{e}");
        }
    }

    #[test]
    fn layer_compression_follows_the_media_type() {
        assert_eq!(
            Compression::of_layer(OCI_LAYER_TAR),
            Some(Compression::None)
        );
        assert_eq!(
            Compression::of_layer(OCI_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_layer(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_layer(OCI_LAYER_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::of_layer(DOCKER_CONFIG), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            content_type in proptest::option::of("[a-z./+;= -]{0,60}"),
        ) {
            let _ = parse("img", content_type.as_deref(), &bytes);
            let _ = ImageConfig::parse(&bytes, "img");
        }

        #[test]
        fn never_panics_on_arbitrary_json_like_documents(
            doc in "\\{(\"(schemaVersion|mediaType|config|layers|manifests|digest|size|platform|rootfs|diff_ids)\":(1|2|\"[a-z:0-9./+]{0,20}\"|\\[\\]|\\{\\}|null),?){0,6}\\}",
        ) {
            let _ = parse("img", None, doc.as_bytes());
            let _ = ImageConfig::parse(doc.as_bytes(), "img");
        }
    }
}
