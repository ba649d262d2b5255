//! Reads image archives for `minik image import`: `oci-archive` (a tar of an OCI image layout:
//! `oci-layout`, `index.json`, `blobs/sha256/…`) and `docker-archive` (what `docker save`
//! writes: `manifest.json` with `Config`, `RepoTags` and `Layers`). Either may be gzip- or
//! zstd-compressed as a whole.
//!
//! The archive is untrusted. No path it names is ever used to write: a member is only a key to
//! find bytes in the tar (cleaned like a layer entry, and one whose `..` escapes is refused), and
//! every blob copied out is written into the scratch directory under its own digest, checked
//! while it is copied against the digest its name or descriptor gives.
//!
//! A plain archive is read in place: one pass lists the members and where their bytes are, then
//! only the members the images need are read, by seeking. A compressed archive is first
//! decompressed into the scratch directory (a stream cannot seek), and that copy removed after.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{
    self, Fetched, Platform, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD,
    OCI_MANIFEST,
};
use crate::unpack::{clean_path, decompress, sniff, sniff_file};
use crate::{Compression, Digest, ImageError, Verifier};

/// One image found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchivedImage {
    /// The names the archive gives the image, as written: docker `RepoTags` (`busybox:1.36`),
    /// or an OCI index entry's `io.containerd.image.name` or `org.opencontainers.image.ref.name`
    /// annotation when it is more than a bare tag. Empty when the archive names none.
    pub names: Vec<String>,
    /// The image manifest: the archive's own bytes for an OCI archive (OCI, or Docker schema 2
    /// if that is what the layout holds), an OCI manifest synthesised for a docker-archive.
    pub manifest: Vec<u8>,
    /// Where each blob the manifest names (config and layers) was extracted, in scratch.
    pub blobs: HashMap<Digest, PathBuf>,
}

/// Manifests, indexes and `manifest.json` larger than this are refused (registries cap
/// manifests at 4 MiB).
const MAX_JSON: u64 = 8 << 20;
/// Symbolic links between members followed at most this many times.
const MAX_LINKS: usize = 16;

const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads the images of the archive `file`, extracting their blobs into `scratch` (an existing
/// directory the caller owns and removes).
pub(crate) fn read_archive(file: &Path, scratch: &Path) -> Result<Vec<ArchivedImage>, ImageError> {
    let mut tar =
        File::open(file).map_err(ImageError::io(format!("opening {}", file.display())))?;
    let compression =
        sniff_file(&mut tar).map_err(ImageError::io(format!("reading {}", file.display())))?;
    let mut _plain = None;
    if compression != Compression::None {
        let path = scratch.join(".archive.tar");
        let copy = TempFile(path.clone());
        decompress_into(file, tar, compression, &path)?;
        tar = File::open(&path).map_err(ImageError::io(format!("opening {}", path.display())))?;
        _plain = Some(copy);
    }
    let mut reader = Reader {
        file,
        tar,
        members: HashMap::new(),
        scratch,
        extracted: HashMap::new(),
        temp_count: 0,
    };
    reader.index()?;
    if reader.members.contains_key(Path::new("index.json")) {
        reader.oci()
    } else if reader.members.contains_key(Path::new("manifest.json")) {
        reader.docker()
    } else {
        Err(reader.fail("not an image archive (no index.json or manifest.json)"))
    }
}

/// Removes a file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn decompress_into(
    file: &Path,
    compressed: File,
    compression: Compression,
    path: &Path,
) -> Result<(), ImageError> {
    let archive_error = |e: io::Error| ImageError::Archive {
        file: file.to_path_buf(),
        why: format!("decompressing the archive ({compression:?}): {e}"),
    };
    let mut stream = decompress(compression, compressed).map_err(archive_error)?;
    let mut out =
        File::create(path).map_err(ImageError::io(format!("creating {}", path.display())))?;
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(archive_error(e)),
        };
        io::Write::write_all(&mut out, &buf[..n])
            .map_err(ImageError::io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// A member of the archive: a file's bytes, or a link to another member.
enum Member {
    File { offset: u64, size: u64 },
    Link(PathBuf),
}

struct Reader<'a> {
    file: &'a Path,
    /// The plain tar.
    tar: File,
    members: HashMap<PathBuf, Member>,
    scratch: &'a Path,
    /// Blobs already extracted: digest → path in scratch.
    extracted: HashMap<Digest, PathBuf>,
    temp_count: u64,
}

/// `index.json` of an OCI image layout; the fields read here (each image's annotations).
#[derive(Deserialize)]
struct LayoutIndex {
    manifests: Vec<LayoutEntry>,
}

#[derive(Deserialize)]
struct LayoutEntry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// One image of a docker-archive `manifest.json`.
#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl Reader<'_> {
    fn fail(&self, why: impl Into<String>) -> ImageError {
        ImageError::Archive {
            file: self.file.to_path_buf(),
            why: why.into(),
        }
    }

    fn io_error(&self, doing: &str) -> impl FnOnce(io::Error) -> ImageError {
        let file = self.file.to_path_buf();
        let doing = doing.to_string();
        move |e| ImageError::Archive {
            file,
            why: format!("{doing}: {e}"),
        }
    }

    /// Lists the members: where each file's bytes are, what each link points to.
    fn index(&mut self) -> Result<(), ImageError> {
        let not_tar = |e: io::Error| format!("not an image archive: cannot read it as a tar ({e})");
        let mut archive = tar::Archive::new(&self.tar);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| ImageError::Archive {
                file: self.file.to_path_buf(),
                why: not_tar(e),
            })?;
        let mut members = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::Archive {
                file: self.file.to_path_buf(),
                why: not_tar(e),
            })?;
            let raw = entry.path_bytes();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let path = clean_path(&raw).map_err(|why| ImageError::Archive {
                file: self.file.to_path_buf(),
                why: format!("member {shown:?}: {why}"),
            })?;
            let link_target = |base: &Path| -> Result<PathBuf, ImageError> {
                let target = entry.link_name_bytes().unwrap_or_default();
                let joined = if target.starts_with(b"/") {
                    target.to_vec()
                } else {
                    let mut joined = base.as_os_str().as_encoded_bytes().to_vec();
                    joined.push(b'/');
                    joined.extend_from_slice(&target);
                    joined
                };
                clean_path(&joined).map_err(|why| ImageError::Archive {
                    file: self.file.to_path_buf(),
                    why: format!(
                        "member {shown:?} links to {:?}: {why}",
                        String::from_utf8_lossy(&target)
                    ),
                })
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => {
                    Member::Link(link_target(path.parent().unwrap_or(Path::new("")))?)
                }
                tar::EntryType::Link => Member::Link(link_target(Path::new(""))?),
                _ => continue,
            };
            members.insert(path, member);
        }
        self.members = members;
        Ok(())
    }

    /// Where the bytes of the member at `name` (a path the archive's JSON gives) are.
    fn locate(&self, name: &str) -> Result<(u64, u64), ImageError> {
        let mut path =
            clean_path(name.as_bytes()).map_err(|why| self.fail(format!("{name:?}: {why}")))?;
        for _ in 0..MAX_LINKS {
            match self.members.get(&path) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => path = target.clone(),
                None => return Err(self.fail(format!("{name:?} is not in the archive"))),
            }
        }
        Err(self.fail(format!("{name:?}: too many levels of links")))
    }

    fn open_member(&self, name: &str) -> Result<(io::Take<&File>, u64), ImageError> {
        let (offset, size) = self.locate(name)?;
        (&self.tar)
            .seek(SeekFrom::Start(offset))
            .map_err(self.io_error(&format!("reading {name:?}")))?;
        Ok(((&self.tar).take(size), size))
    }

    /// A JSON document of the archive, read into memory.
    fn read_json(&mut self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (mut member, size) = self.open_member(name)?;
        if size > MAX_JSON {
            return Err(self.fail(format!("{name:?} is {size} bytes: more than {MAX_JSON}")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(self.io_error(&format!("reading {name:?}")))?;
        if (bytes.len() as u64) < size {
            return Err(self.fail(format!("{name:?} is truncated")));
        }
        Ok(bytes)
    }

    /// A blob of an OCI layout read into memory, checked against its descriptor.
    fn read_blob(&mut self, digest: &Digest, size: u64) -> Result<Vec<u8>, ImageError> {
        let name = blob_path(digest);
        if size > MAX_JSON {
            return Err(self.fail(format!(
                "{name}: a manifest of {size} bytes: more than {MAX_JSON}"
            )));
        }
        let bytes = self.read_json(&name)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(self.mismatch(digest, &actual));
        }
        if bytes.len() as u64 != size {
            return Err(self.fail(format!(
                "blob {digest}: the descriptor says {size} bytes, the archive holds {}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn mismatch(&self, expected: &Digest, actual: &Digest) -> ImageError {
        self.fail(format!(
            "blob {expected}: the archive's content has digest {actual} (corrupt or altered)"
        ))
    }

    /// Copies the member `name` into scratch, checking it against `expected` (digest, and size
    /// when known) as it goes; without `expected` its digest is computed. Returns its digest,
    /// size and path in scratch.
    fn extract(
        &mut self,
        name: &str,
        expected: Option<(&Digest, Option<u64>)>,
    ) -> Result<(Digest, u64, PathBuf), ImageError> {
        if let Some((digest, size)) = expected {
            if let Some(path) = self.extracted.get(digest) {
                let on_disk = fs::metadata(path)
                    .map_err(ImageError::io(format!("inspecting {}", path.display())))?
                    .len();
                if size.is_none_or(|s| s == on_disk) {
                    return Ok((digest.clone(), on_disk, path.clone()));
                }
            }
        }
        self.temp_count += 1;
        let (mut member, size) = self.open_member(name)?;
        if let Some((digest, Some(want))) = expected {
            if want != size {
                return Err(self.fail(format!(
                    "blob {digest}: the descriptor says {want} bytes, the archive holds {size}"
                )));
            }
        }
        let temp = self.scratch.join(format!(".incoming-{}", self.temp_count));
        let guard = TempFile(temp.clone());
        let out =
            File::create(&temp).map_err(ImageError::io(format!("creating {}", temp.display())))?;
        let mut verifier = Verifier::new(out);
        let mut buf = vec![0; 64 << 10];
        loop {
            let n = match member.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(format!("reading {name:?}: {e}"))),
            };
            io::Write::write_all(&mut verifier, &buf[..n])
                .map_err(ImageError::io(format!("writing {}", temp.display())))?;
        }
        let (actual, written, out) = verifier.finish();
        if written != size {
            return Err(self.fail(format!("{name:?} is truncated: {written} of {size} bytes")));
        }
        if let Some((digest, _)) = expected {
            if digest != &actual {
                return Err(self.mismatch(digest, &actual));
            }
        }
        out.sync_all()
            .map_err(ImageError::io(format!("writing {}", temp.display())))?;
        drop(out);
        let path = self.scratch.join(actual.hex());
        fs::rename(&temp, &path).map_err(ImageError::io(format!("renaming {}", temp.display())))?;
        drop(guard);
        self.extracted.insert(actual.clone(), path.clone());
        Ok((actual, written, path))
    }

    fn oci(&mut self) -> Result<Vec<ArchivedImage>, ImageError> {
        let bytes = self.read_json("index.json")?;
        let index: LayoutIndex =
            serde_json::from_slice(&bytes).map_err(|e| self.fail(format!("index.json: {e}")))?;
        if index.manifests.is_empty() {
            return Err(self.fail("index.json lists no image"));
        }
        // Docker 25+ writes an OCI layout with a manifest.json beside it: its RepoTags name the
        // images by config digest.
        let mut docker_names: HashMap<Digest, Vec<String>> = HashMap::new();
        if self.members.contains_key(Path::new("manifest.json")) {
            let bytes = self.read_json("manifest.json")?;
            if let Ok(entries) = serde_json::from_slice::<Vec<DockerEntry>>(&bytes) {
                for entry in entries {
                    if let Some(digest) = digest_in_path(&entry.config) {
                        docker_names
                            .entry(digest)
                            .or_default()
                            .extend(entry.repo_tags.unwrap_or_default());
                    }
                }
            }
        }
        let label = self.file.display().to_string();
        let mut images = Vec::new();
        for entry in index.manifests {
            let mut names = Vec::new();
            if let Some(name) = entry.annotations.get(ANNOTATION_CONTAINERD_NAME) {
                names.push(name.clone());
            }
            if let Some(name) = entry.annotations.get(ANNOTATION_REF_NAME) {
                // A bare tag ("1.36", "latest") names no image; "busybox:1.36" does.
                if name.contains([':', '/', '@']) && !names.contains(name) {
                    names.push(name.clone());
                }
            }
            let (mut digest, mut size, mut media_type) =
                (entry.digest, entry.size, entry.media_type);
            let mut manifest = None;
            for _ in 0..3 {
                let bytes = self.read_blob(&digest, size)?;
                let media = Some(media_type.as_str()).filter(|m| !m.is_empty());
                match manifest::parse(&label, media, &bytes)? {
                    Fetched::Manifest(m) => {
                        manifest = Some((m, bytes));
                        break;
                    }
                    Fetched::Index(entries) => {
                        let chosen = manifest::choose(&label, &entries, &Platform::host())?;
                        digest = chosen.digest.clone();
                        size = chosen.size;
                        media_type = chosen.media_type.clone();
                    }
                }
            }
            let Some((m, bytes)) = manifest else {
                return Err(self.fail("indexes nested more than 3 deep"));
            };
            if let Some(tags) = docker_names.get(&m.config.digest) {
                for tag in tags {
                    if !names.contains(tag) {
                        names.push(tag.clone());
                    }
                }
            }
            let mut blobs = HashMap::new();
            for d in std::iter::once(&m.config).chain(&m.layers) {
                let (digest, _, path) =
                    self.extract(&blob_path(&d.digest), Some((&d.digest, Some(d.size))))?;
                blobs.insert(digest, path);
            }
            images.push(ArchivedImage {
                names,
                manifest: bytes,
                blobs,
            });
        }
        Ok(images)
    }

    fn docker(&mut self) -> Result<Vec<ArchivedImage>, ImageError> {
        let bytes = self.read_json("manifest.json")?;
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(&bytes).map_err(|e| self.fail(format!("manifest.json: {e}")))?;
        if entries.is_empty() {
            return Err(self.fail("manifest.json lists no image"));
        }
        let mut images = Vec::new();
        for entry in entries {
            let mut blobs = HashMap::new();
            let expected = digest_in_path(&entry.config);
            let (config_digest, config_size, path) =
                self.extract(&entry.config, expected.as_ref().map(|d| (d, None)))?;
            blobs.insert(config_digest.clone(), path);
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let expected = digest_in_path(layer);
                let (digest, size, path) =
                    self.extract(layer, expected.as_ref().map(|d| (d, None)))?;
                let media_type = match sniff_path(&path)? {
                    Compression::None => OCI_LAYER_TAR,
                    Compression::Gzip => OCI_LAYER_GZIP,
                    Compression::Zstd => OCI_LAYER_ZSTD,
                };
                layers.push(serde_json::json!({
                    "mediaType": media_type,
                    "digest": digest.to_string(),
                    "size": size,
                }));
                blobs.insert(digest, path);
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": config_digest.to_string(),
                    "size": config_size,
                },
                "layers": layers,
            });
            images.push(ArchivedImage {
                names: entry.repo_tags.unwrap_or_default(),
                manifest: serde_json::to_vec(&manifest)
                    .map_err(|e| self.fail(format!("writing the manifest: {e}")))?,
                blobs,
            });
        }
        Ok(images)
    }
}

/// `blobs/sha256/<hex>`, where an OCI layout keeps a blob.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The digest a docker-archive path names: `blobs/sha256/<hex>` or `<hex>.json` (a config);
/// `None` for a path that names none (`<id>/layer.tar`).
fn digest_in_path(path: &str) -> Option<Digest> {
    let cleaned = clean_path(path.as_bytes()).ok()?;
    let cleaned = cleaned.to_str()?;
    let hex = match cleaned.strip_prefix("blobs/sha256/") {
        Some(hex) => hex,
        None => cleaned.strip_suffix(".json").filter(|h| !h.contains('/'))?,
    };
    format!("sha256:{hex}").parse().ok()
}

fn sniff_path(path: &Path) -> Result<Compression, ImageError> {
    let mut head = [0u8; 4];
    let mut file =
        File::open(path).map_err(ImageError::io(format!("opening {}", path.display())))?;
    let n = file
        .read(&mut head)
        .map_err(ImageError::io(format!("reading {}", path.display())))?;
    Ok(sniff(&head[..n]))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use serde_json::json;

    use super::*;
    use crate::Manifest;

    enum M {
        File(&'static str, Vec<u8>),
        Owned(String, Vec<u8>),
        Symlink(&'static str, &'static str),
    }

    fn tar_of(members: Vec<M>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for m in members {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            let (name, data, link) = match &m {
                M::File(name, data) => (name.to_string(), data.clone(), None),
                M::Owned(name, data) => (name.clone(), data.clone(), None),
                M::Symlink(name, target) => (name.to_string(), Vec::new(), Some(*target)),
            };
            // Raw names: the tar crate's setters refuse `..`, which some tests need.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                h.set_entry_type(tar::EntryType::Symlink);
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn layer(content: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("file").unwrap();
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        h.set_cksum();
        b.append(&h, content.as_bytes()).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn config(arch: &str, layers: &[&[u8]]) -> Vec<u8> {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": Digest::of(bytes).to_string(), "size": bytes.len()})
    }

    fn blob(bytes: &[u8]) -> M {
        M::Owned(blob_path(&Digest::of(bytes)), bytes.to_vec())
    }

    /// An OCI image (manifest, config, one gzip layer): its blobs and manifest.
    fn oci_image(arch: &str, content: &str) -> (Vec<M>, Vec<u8>) {
        let tar = layer(content);
        let gz = gzip(&tar);
        let config = config(arch, &[&tar]);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER_GZIP, &gz)],
        }))
        .unwrap();
        (vec![blob(&config), blob(&gz), blob(&manifest)], manifest)
    }

    fn oci_archive(ref_name: &str) -> (Vec<u8>, Vec<u8>) {
        let (mut members, manifest) = oci_image("amd64", "hello");
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["annotations"] = json!({ANNOTATION_REF_NAME: ref_name});
        members.push(M::File(
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        members.push(M::File(
            "index.json",
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d]})).unwrap(),
        ));
        (tar_of(members), manifest)
    }

    fn read(bytes: &[u8]) -> (tempfile::TempDir, Result<Vec<ArchivedImage>, ImageError>) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("image.tar");
        fs::write(&file, bytes).unwrap();
        let scratch = tmp.path().join("scratch");
        fs::create_dir(&scratch).unwrap();
        let r = read_archive(&file, &scratch);
        (tmp, r)
    }

    fn archive_error(r: Result<Vec<ArchivedImage>, ImageError>) -> String {
        match r {
            Err(e @ ImageError::Archive { .. }) => e.to_string(),
            other => panic!("expected an archive error, got {other:?}"),
        }
    }

    fn check_blobs(image: &ArchivedImage) {
        let m = Manifest::parse(&image.manifest, "test").unwrap();
        assert_eq!(image.blobs.len(), 1 + m.layers.len());
        for d in std::iter::once(&m.config).chain(&m.layers) {
            let bytes = fs::read(&image.blobs[&d.digest]).unwrap();
            assert_eq!(Digest::of(&bytes), d.digest);
            assert_eq!(bytes.len() as u64, d.size);
        }
    }

    #[test]
    fn reads_an_oci_archive() {
        let (bytes, manifest) = oci_archive("busybox:1.36");
        let (tmp, r) = read(&bytes);
        let images = r.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["busybox:1.36"]);
        assert_eq!(images[0].manifest, manifest);
        check_blobs(&images[0]);
        // Nothing but the blobs in scratch.
        assert_eq!(fs::read_dir(tmp.path().join("scratch")).unwrap().count(), 2);

        let (bytes, _) = oci_archive("1.36");
        let (_tmp, r) = read(&bytes);
        assert!(r.unwrap()[0].names.is_empty());
    }

    #[test]
    fn a_nested_index_gives_this_machines_image_only() {
        let host = Platform::host();
        let (mut members, host_manifest) = oci_image(&host.architecture, "host");
        let (other_members, other_manifest) = oci_image("s390x-other", "other");
        members.extend(other_members);
        let mut host_d = descriptor(OCI_MANIFEST, &host_manifest);
        host_d["platform"] =
            json!({"os": "linux", "architecture": host.architecture, "variant": host.variant});
        let mut other_d = descriptor(OCI_MANIFEST, &other_manifest);
        other_d["platform"] = json!({"os": "linux", "architecture": "s390x-other"});
        let nested = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": [other_d, host_d],
        }))
        .unwrap();
        members.push(blob(&nested));
        let mut d = descriptor(manifest::OCI_INDEX, &nested);
        d["annotations"] = json!({ANNOTATION_CONTAINERD_NAME: "docker.io/library/multi:1"});
        members.push(M::File(
            "index.json",
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d]})).unwrap(),
        ));
        let (tmp, r) = read(&tar_of(members));
        let images = r.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["docker.io/library/multi:1"]);
        assert_eq!(images[0].manifest, host_manifest);
        check_blobs(&images[0]);
        // The other platform's blobs were not extracted.
        assert_eq!(fs::read_dir(tmp.path().join("scratch")).unwrap().count(), 2);

        // An index with no entry for this machine.
        let (mut members, other_manifest) = oci_image("s390x-other", "other");
        let mut other_d = descriptor(OCI_MANIFEST, &other_manifest);
        other_d["platform"] = json!({"os": "linux", "architecture": "s390x-other"});
        let nested = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [other_d]}),
        )
        .unwrap();
        members.push(blob(&nested));
        members.push(M::File(
            "index.json",
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [descriptor(manifest::OCI_INDEX, &nested)]})).unwrap(),
        ));
        let (_tmp, r) = read(&tar_of(members));
        let e = r.unwrap_err();
        assert!(matches!(e, ImageError::NoMatchingPlatform { .. }), "{e}");
    }

    /// A docker-archive as `docker save` wrote it before Docker 25: `<id>/layer.tar`, the config
    /// as `<hex>.json`, a layer shared by two images as a symlink.
    fn docker_archive() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let base = layer("base");
        let top = gzip(&layer("top"));
        let config1 = config("amd64", &[&base]);
        let config2 = config("amd64", &[&base, &layer("top")]);
        let c1 = format!("{}.json", Digest::of(&config1).hex());
        let c2 = format!("{}.json", Digest::of(&config2).hex());
        let manifest = serde_json::to_vec(&json!([
            {"Config": c1, "RepoTags": ["busybox:1.36"], "Layers": ["aaa/layer.tar"]},
            {"Config": c2, "RepoTags": null, "Layers": ["bbb/layer.tar", "ccc/layer.tar"]},
        ]))
        .unwrap();
        let members = vec![
            M::File("aaa/layer.tar", base.clone()),
            M::File("aaa/VERSION", b"1.0".to_vec()),
            M::Symlink("bbb/layer.tar", "../aaa/layer.tar"),
            M::File("ccc/layer.tar", top.clone()),
            M::Owned(c1, config1),
            M::Owned(c2, config2),
            M::File("manifest.json", manifest),
        ];
        (tar_of(members), base, top)
    }

    #[test]
    fn reads_a_docker_archive_and_synthesises_oci_manifests() {
        let (bytes, base, top) = docker_archive();
        let (_tmp, r) = read(&bytes);
        let images = r.unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].names, ["busybox:1.36"]);
        assert!(images[1].names.is_empty());
        for image in &images {
            check_blobs(image);
            let v: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
            assert_eq!(v["mediaType"], OCI_MANIFEST);
            assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
        }
        let v: serde_json::Value = serde_json::from_slice(&images[1].manifest).unwrap();
        assert_eq!(v["layers"][0], descriptor(OCI_LAYER_TAR, &base));
        assert_eq!(v["layers"][1], descriptor(OCI_LAYER_GZIP, &top));
    }

    #[test]
    fn reads_compressed_archives_and_leaves_only_blobs_in_scratch() {
        let (oci, _) = oci_archive("busybox:1.36");
        let (docker, ..) = docker_archive();
        for (bytes, count) in [
            (gzip(&oci), 1),
            (gzip(&docker), 2),
            (zstd::encode_all(&oci[..], 3).unwrap(), 1),
        ] {
            let (tmp, r) = read(&bytes);
            let images = r.unwrap();
            assert_eq!(images.len(), count);
            images.iter().for_each(check_blobs);
            let left: Vec<_> = fs::read_dir(tmp.path().join("scratch"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(left.iter().all(|n| n.len() == 64), "{left:?}");
        }
    }

    #[test]
    fn what_is_not_an_image_archive_is_refused() {
        let (_tmp, r) = read(b"this is not a tar at all, just some words......");
        let e = archive_error(r);
        assert!(e.contains("not an image archive"), "{e}");
        let (_tmp, r) = read(b"");
        assert!(archive_error(r).contains("no index.json or manifest.json"));
        let (_tmp, r) = read(&tar_of(vec![M::File("etc/passwd", b"root".to_vec())]));
        let e = archive_error(r);
        assert!(
            e.contains("not an image archive (no index.json or manifest.json)"),
            "{e}"
        );
        let (_tmp, r) = read(&gzip(b"garbage"));
        assert!(archive_error(r).contains("not an image archive"));
        let (bytes, _) = oci_archive("x:1");
        let (_tmp, r) = read(&gzip(&bytes)[..100]);
        assert!(archive_error(r).contains("decompressing"));
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        // An OCI layer whose bytes were altered.
        let (mut members, manifest) = oci_image("amd64", "hello");
        let M::Owned(name, data) = &members[1] else {
            unreachable!()
        };
        let wrong = gzip(&layer("HELLO"));
        assert_eq!(wrong.len(), data.len());
        let layer_digest = name.rsplit('/').next().unwrap().to_string();
        members[1] = M::Owned(name.clone(), wrong);
        members.push(M::File(
            "index.json",
            serde_json::to_vec(
                &json!({"schemaVersion": 2, "manifests": [descriptor(OCI_MANIFEST, &manifest)]}),
            )
            .unwrap(),
        ));
        let (tmp, r) = read(&tar_of(members));
        let e = archive_error(r);
        assert!(
            e.contains(&format!("blob sha256:{layer_digest}")) && e.contains("corrupt"),
            "{e}"
        );
        assert!(!tmp.path().join("scratch").join(&layer_digest).exists());

        // A docker config stored under a name that is not its digest.
        let config1 = config("amd64", &[]);
        let name = format!("{}.json", Digest::of(b"something else").hex());
        let manifest =
            serde_json::to_vec(&json!([{"Config": name, "RepoTags": ["a:1"], "Layers": []}]))
                .unwrap();
        let (_tmp, r) = read(&tar_of(vec![
            M::Owned(name, config1),
            M::File("manifest.json", manifest),
        ]));
        let e = archive_error(r);
        assert!(
            e.contains(&format!("blob {}", Digest::of(b"something else"))),
            "{e}"
        );
    }

    #[test]
    fn paths_escaping_the_archive_are_refused() {
        let manifest = serde_json::to_vec(
            &json!([{"Config": "c.json", "RepoTags": [], "Layers": ["../../etc/passwd"]}]),
        )
        .unwrap();
        let (_tmp, r) = read(&tar_of(vec![
            M::File("c.json", b"{}".to_vec()),
            M::File("manifest.json", manifest.clone()),
        ]));
        let e = archive_error(r);
        assert!(
            e.contains("../../etc/passwd") && e.contains("escapes"),
            "{e}"
        );

        let (_tmp, r) = read(&tar_of(vec![
            M::File("../evil", b"x".to_vec()),
            M::File("manifest.json", manifest),
        ]));
        let e = archive_error(r);
        assert!(e.contains("../evil") && e.contains("escapes"), "{e}");

        let manifest = serde_json::to_vec(
            &json!([{"Config": "c.json", "RepoTags": [], "Layers": ["l/layer.tar"]}]),
        )
        .unwrap();
        let (_tmp, r) = read(&tar_of(vec![
            M::File("c.json", b"{}".to_vec()),
            M::Symlink("l/layer.tar", "../../../etc/passwd"),
            M::File("manifest.json", manifest),
        ]));
        let e = archive_error(r);
        assert!(e.contains("escapes"), "{e}");
    }

    #[test]
    fn skopeo_written_archives_are_read() {
        let Ok(out) = std::process::Command::new("skopeo")
            .arg("--version")
            .output()
        else {
            if std::env::var_os("CI").is_some_and(|v| v == "true") {
                panic!("cannot run under CI: skopeo is not installed");
            }
            eprintln!("skipped: skopeo is not installed");
            return;
        };
        assert!(out.status.success());
        // An OCI layout on disk, from the in-test image.
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        let (members, manifest) = oci_image("amd64", "hello from skopeo");
        for m in members {
            let M::Owned(name, data) = m else {
                unreachable!()
            };
            let path = layout.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        }
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["annotations"] = json!({ANNOTATION_REF_NAME: "src"});
        fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d]})).unwrap(),
        )
        .unwrap();
        let m = Manifest::parse(&manifest, "test").unwrap();
        // skopeo writes RepoTags fully qualified, the OCI ref.name as given.
        for (dest, name, expected) in [
            (
                "docker-archive",
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
            ),
            ("oci-archive", "busybox:1.36", "busybox:1.36"),
        ] {
            let file = tmp.path().join(format!("{dest}.tar"));
            let out = std::process::Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--quiet"])
                .arg(format!("oci:{}:src", layout.display()))
                .arg(format!("{dest}:{}:{name}", file.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let scratch = tmp.path().join(format!("scratch-{dest}"));
            fs::create_dir(&scratch).unwrap();
            let images = read_archive(&file, &scratch).unwrap();
            assert_eq!(images.len(), 1, "{dest}");
            assert_eq!(images[0].names, [expected], "{dest}");
            check_blobs(&images[0]);
            // The same config either way (skopeo may decompress the layer for docker-archive).
            assert!(images[0].blobs.contains_key(&m.config.digest), "{dest}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 96, ..Default::default() })]

        /// Fuzzing: whatever bytes a file holds, reading it as an archive answers, never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = read(&bytes);
        }

        /// Fuzzing: valid archives of both formats with bytes flipped here and there answer
        /// (an image or an error), never panic.
        #[test]
        fn mutated_archives_never_panic(
            docker in proptest::prelude::any::<bool>(),
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..12),
        ) {
            let mut bytes = if docker { docker_archive().0 } else { oci_archive("busybox:1.36").0 };
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            let _ = read(&bytes);
        }
    }
}
