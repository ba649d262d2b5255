//! The node's image store: content-addressed, shared by every process on the node (the agent and
//! `minik image`), and never showing a half-made image, whatever is killed when.
//!
//! ```text
//! ROOT/lock                      flock: held while images.json changes or things are removed
//! ROOT/images.json               the image records (names → config digest → layers)
//! ROOT/blobs/sha256/HEX          verified manifests and configs (layer blobs go once unpacked)
//! ROOT/layers/sha256/DIFFID/     one unpacked layer: rootfs/ (an overlayfs lowerdir), layer.json
//! ROOT/pins/CONTAINER            the id of the image a container runs from: never removed while pinned
//! ROOT/tmp/PID-RAND/             work in progress of one process: downloads, unpacking, leases
//! ```
//!
//! Every file and directory is made in the process's own `tmp/` directory and renamed into place
//! once complete, and `images.json` is replaced by rename, so a crash leaves at worst a `tmp/`
//! directory, which the next `Store::open` removes when its process is gone. An image is listed
//! only once every layer it names is in place. A process crash (kill -9) loses nothing the page
//! cache holds; `images.json` and blobs are also fsynced, so a power loss cannot list an image
//! whose record was not written. Unpacked layers are not fsynced file by file (containerd does
//! not either): after a power loss, `minik image rm` and a new pull repair a damaged layer.
//!
//! Garbage collection and `rm` decide under the lock but delete after: they rename what goes into
//! their own `tmp/` and remove it there. A pull in progress protects the layers it is making or
//! reusing with a lease file in its `tmp/` directory, which garbage collection reads.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::{Digest, ImageError, Reference};

/// What the store knows of one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The digest of the image's config: the image id (`crictl images`' IMAGE ID).
    pub id: Digest,
    /// Normalised names with a tag: `docker.io/library/busybox:1.36`. Empty for an image whose
    /// names all moved to newer images (`<none>`).
    pub names: Vec<String>,
    /// Digest references: `docker.io/library/busybox@sha256:...` (the digest the registry gave
    /// for the tag: an index's or a manifest's), reported as a container's `imageID`.
    pub repo_digests: Vec<String>,
    /// The digest of the platform manifest.
    pub manifest: Digest,
    /// The layers' diff ids, base first.
    pub layers: Vec<Digest>,
    /// Bytes of the config and the compressed layers, as the registry serves them (what the
    /// kubelet reports as an image's size).
    pub size: u64,
    /// Unix seconds.
    pub pulled_at: u64,
    /// Unix seconds: when a container last started from it (or when it was pulled).
    pub last_used: u64,
}

impl ImageRecord {
    /// The name to show: the first tag, else the first repo digest, else the id.
    pub fn display_name(&self) -> String {
        self.names
            .first()
            .or(self.repo_digests.first())
            .cloned()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// What is known of an unpacked layer (`layer.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub diff_id: Digest,
    /// Bytes of file content unpacked.
    pub size: u64,
    /// The blob it came from and that blob's size.
    pub blob: Digest,
    pub blob_size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Records {
    images: Vec<ImageRecord>,
}

/// The capacity and free space of the filesystem holding the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    pub capacity: u64,
    pub available: u64,
}

/// The kubelet's image garbage collection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// Percent of the disk used at which collection starts (`--image-gc-high-threshold`, 85).
    pub high_percent: u8,
    /// Percent it collects down to (`--image-gc-low-threshold`, 80).
    pub low_percent: u8,
    /// Images younger than this (since last use) are kept (`--image-minimum-gc-age`, 2m).
    pub min_age_seconds: u64,
}

impl Default for GcPolicy {
    fn default() -> GcPolicy {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age_seconds: 120,
        }
    }
}

/// What `Store::remove` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// The image had other names: only this one went.
    Untagged(String),
    /// The image went.
    Deleted(ImageRecord),
}

/// What a garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The images removed, oldest first.
    pub removed: Vec<ImageRecord>,
    /// Bytes of layers (unpacked) and blobs freed.
    pub freed: u64,
    /// Bytes it wanted to free (0 when usage was under the high threshold).
    pub wanted: u64,
}

/// The image store of one node.
pub struct Store {
    root: PathBuf,
    /// This process's own work directory, `tmp/PID-RAND`, made at open.
    work: PathBuf,
}

impl Store {
    /// Opens (or makes) the store at `root`, and removes the work directories of processes that
    /// are gone.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        for dir in ["blobs/sha256", "layers/sha256", "pins", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path)
                .map_err(ImageError::io(format!("creating {}", path.display())))?;
        }
        let tmp = root.join("tmp");
        let entries =
            fs::read_dir(&tmp).map_err(ImageError::io(format!("reading {}", tmp.display())))?;
        for entry in entries.flatten() {
            if !owner_alive(&entry.path()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| ImageError::Io {
            context: "reading random bytes".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let work = tmp.join(format!("{}-{}", std::process::id(), hex::encode(random)));
        fs::create_dir(&work).map_err(ImageError::io(format!("creating {}", work.display())))?;
        live_work_dirs().insert(work.clone());
        Ok(Store {
            root: root.to_path_buf(),
            work,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every image, in the order they were first stored.
    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.read_records()?.images)
    }

    /// The image a reference names: by tag (`busybox:1.36`), by digest (`busybox@sha256:..`,
    /// matched against the repo digests and the manifest), or `None`.
    pub fn lookup(&self, reference: &Reference) -> Result<Option<ImageRecord>, ImageError> {
        let images = self.images()?;
        Ok(find_by_reference(&images, reference).cloned())
    }

    /// The image a user names on the command line: a reference, an id (`sha256:...`), or a
    /// prefix of an id of at least 4 hex digits that names one image.
    pub fn find(&self, query: &str) -> Result<ImageRecord, ImageError> {
        let images = self.images()?;
        find_by_query(&images, query)
            .cloned()
            .ok_or_else(|| ImageError::NotPresent {
                image: query.to_string(),
            })
    }

    /// Whether the layer with this diff id is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).join("layer.json").is_file()
    }

    /// The directory of an unpacked layer's files: what overlayfs stacks as a lowerdir.
    pub fn layer_rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("rootfs")
    }

    /// What is known of an unpacked layer.
    pub fn layer_info(&self, diff_id: &Digest) -> Result<LayerInfo, ImageError> {
        let path = self.layer_dir(diff_id).join("layer.json");
        let bytes =
            fs::read(&path).map_err(ImageError::io(format!("reading {}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Config {
            source_name: path.display().to_string(),
            why: e.to_string(),
        })
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// A stored manifest or config.
    pub fn blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(ImageError::io(format!("reading blob {digest}")))
    }

    /// A fresh directory in this process's work directory, removed when the guard drops.
    pub(crate) fn scratch(&self) -> Result<Scratch, ImageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| ImageError::Io {
            context: "reading random bytes".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let path = self.work.join(hex::encode(random));
        fs::create_dir(&path).map_err(ImageError::io(format!("creating {}", path.display())))?;
        Ok(Scratch { path })
    }

    /// Stores a small verified blob (a manifest, a config).
    pub(crate) fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        let actual = Digest::of(bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        let scratch = self.scratch()?;
        let staged = scratch.path.join("blob");
        write_synced(&staged, bytes)?;
        fs::rename(&staged, &path).map_err(ImageError::io(format!("storing blob {digest}")))
    }

    /// Puts an unpacked layer in place: `staged` is a directory holding `rootfs/`. When another
    /// pull (another process) put the same layer in place first, `staged` is dropped.
    pub(crate) fn commit_layer(&self, staged: &Path, info: &LayerInfo) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(info).expect("a layer's info serialises");
        write_synced(&staged.join("layer.json"), &json)?;
        let target = self.layer_dir(&info.diff_id);
        match fs::rename(staged, &target) {
            Ok(()) => Ok(()),
            // The target exists and is not empty: someone else unpacked it first.
            Err(_) if self.has_layer(&info.diff_id) => {
                let _ = fs::remove_dir_all(staged);
                Ok(())
            }
            Err(e) => Err(ImageError::Io {
                context: format!("storing layer {}", info.diff_id),
                source: e,
            }),
        }
    }

    /// Protects layers from garbage collection while a pull makes or reuses them; the lease
    /// ends when the guard drops (or its process dies).
    pub(crate) fn lease(&self, layers: &[Digest]) -> Result<Lease, ImageError> {
        let scratch = self.scratch()?;
        let text: String = layers.iter().map(|d| format!("{d}\n")).collect();
        let path = scratch.path.join("lease");
        fs::write(&path, text).map_err(ImageError::io(format!("writing {}", path.display())))?;
        Ok(Lease { _scratch: scratch })
    }

    /// Records an image once every layer is in place. Its names move to it from the images that
    /// held them; an image stored before under the same id gains the names and repo digests.
    pub(crate) fn add_image(&self, record: ImageRecord) -> Result<ImageRecord, ImageError> {
        for layer in &record.layers {
            if !self.has_layer(layer) {
                return Err(ImageError::Io {
                    context: format!("recording image {}", record.display_name()),
                    source: std::io::Error::other(format!("layer {layer} is not in the store")),
                });
            }
        }
        let _lock = self.lock()?;
        let mut records = self.read_records()?;
        for other in records.images.iter_mut() {
            if other.id != record.id {
                other.names.retain(|n| !record.names.contains(n));
            }
        }
        let stored = match records.images.iter_mut().find(|r| r.id == record.id) {
            Some(existing) => {
                for name in &record.names {
                    if !existing.names.contains(name) {
                        existing.names.push(name.clone());
                    }
                }
                for digest in &record.repo_digests {
                    if !existing.repo_digests.contains(digest) {
                        existing.repo_digests.push(digest.clone());
                    }
                }
                existing.last_used = existing.last_used.max(record.last_used);
                existing.pulled_at = record.pulled_at;
                existing.clone()
            }
            None => {
                records.images.push(record.clone());
                record
            }
        };
        self.write_records(&records)?;
        Ok(stored)
    }

    /// Notes that a container started from the image now (garbage collection removes the least
    /// recently used first).
    pub fn touch(&self, id: &Digest, now: SystemTime) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        let mut records = self.read_records()?;
        if let Some(record) = records.images.iter_mut().find(|r| &r.id == id) {
            record.last_used = unix(now);
            self.write_records(&records)?;
        }
        Ok(())
    }

    /// Notes that a container runs from an image: until `unpin`, neither `remove` nor garbage
    /// collection touches the image. A pin is a file, so it holds for every process using the
    /// store and survives a restart of the agent (which unpins what it no longer runs).
    pub fn pin(&self, container: &str, image: &Digest) -> Result<(), ImageError> {
        let path = self.pin_path(container);
        // Staged under a name of its own: several containers are pinned at once.
        let staged = self
            .work
            .join(format!("pin-{}", container.replace('/', "~")));
        write_synced(&staged, image.to_string().as_bytes())?;
        fs::rename(&staged, &path).map_err(ImageError::io(format!("writing {}", path.display())))
    }

    /// Ends a pin (the container is gone). Unknown pins are ignored.
    pub fn unpin(&self, container: &str) {
        let _ = fs::remove_file(self.pin_path(container));
    }

    /// Every pin: container → image id.
    pub fn pins(&self) -> BTreeMap<String, Digest> {
        let mut pins = BTreeMap::new();
        let Ok(entries) = fs::read_dir(self.root.join("pins")) else {
            return pins;
        };
        for entry in entries.flatten() {
            let container = entry.file_name().to_string_lossy().replace('~', "/");
            if let Some(image) = fs::read_to_string(entry.path())
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                pins.insert(container, image);
            }
        }
        pins
    }

    fn pin_path(&self, container: &str) -> PathBuf {
        // Container ids are `{pod uid}/{container}/{n}`; `~` is in neither a uid nor a name.
        self.root.join("pins").join(container.replace('/', "~"))
    }

    /// Removes an image as `docker rmi` does: given one of several names of an image, only that
    /// name goes (`Untagged`); given its id or its last name, the image goes, with the layers and
    /// blobs no other image uses (`Deleted`). Refused while a container is pinned to it.
    pub fn remove(&self, query: &str) -> Result<Removed, ImageError> {
        let trash = self.scratch()?;
        let removed = {
            let _lock = self.lock()?;
            let mut records = self.read_records()?;
            let record = find_by_query(&records.images, query)
                .cloned()
                .ok_or_else(|| ImageError::NotPresent {
                    image: query.to_string(),
                })?;
            let name = query
                .parse::<Reference>()
                .ok()
                .map(|r| r.to_string())
                .filter(|n| record.names.contains(n) && record.names.len() > 1);
            if let Some(name) = name {
                let image = records
                    .images
                    .iter_mut()
                    .find(|r| r.id == record.id)
                    .expect("the record was found in these records");
                image.names.retain(|n| n != &name);
                self.write_records(&records)?;
                return Ok(Removed::Untagged(name));
            }
            if let Some((container, _)) = self.pins().into_iter().find(|(_, id)| id == &record.id) {
                return Err(ImageError::InUse {
                    image: query.to_string(),
                    by: container,
                });
            }
            records.images.retain(|r| r.id != record.id);
            self.write_records(&records)?;
            self.trash_unreferenced(&records, std::slice::from_ref(&record), &trash.path)?;
            record
        };
        drop(trash);
        Ok(Removed::Deleted(removed))
    }

    /// The kubelet's image garbage collection: when the disk is used past the high threshold,
    /// removes unused images, least recently used first, until the usage would be under the low
    /// threshold. Pinned images and images used less than `min_age_seconds` ago stay.
    pub fn collect_garbage(
        &self,
        policy: &GcPolicy,
        fs: FsStats,
        now: SystemTime,
    ) -> Result<GcReport, ImageError> {
        let trash = self.scratch()?;
        let report = {
            let _lock = self.lock()?;
            let mut records = self.read_records()?;
            let sizes = self.layer_sizes(&records.images);
            let in_use: HashSet<Digest> = self.pins().into_values().collect();
            let plan = plan_gc(policy, &records.images, &sizes, &in_use, fs, unix(now));
            if plan.removed.is_empty() {
                return Ok(GcReport {
                    wanted: plan.wanted,
                    ..GcReport::default()
                });
            }
            let ids: HashSet<&Digest> = plan.removed.iter().map(|r| &r.id).collect();
            records.images.retain(|r| !ids.contains(&r.id));
            self.write_records(&records)?;
            let freed = self.trash_unreferenced(&records, &plan.removed, &trash.path)?;
            GcReport {
                removed: plan.removed,
                freed,
                wanted: plan.wanted,
            }
        };
        drop(trash);
        Ok(report)
    }

    /// The capacity and free space of the store's filesystem.
    pub fn fs_stats(&self) -> Result<FsStats, ImageError> {
        let stat = nix::sys::statvfs::statvfs(&self.root).map_err(|e| ImageError::Io {
            context: format!("statvfs {}", self.root.display()),
            source: e.into(),
        })?;
        let block = stat.fragment_size() as u64;
        Ok(FsStats {
            capacity: stat.blocks() as u64 * block,
            available: stat.blocks_available() as u64 * block,
        })
    }

    /// The unpacked size of every layer the images name.
    fn layer_sizes(&self, images: &[ImageRecord]) -> BTreeMap<Digest, u64> {
        let mut sizes = BTreeMap::new();
        for layer in images.iter().flat_map(|r| &r.layers) {
            if !sizes.contains_key(layer) {
                let size = self.layer_info(layer).map(|i| i.size).unwrap_or(0);
                sizes.insert(layer.clone(), size);
            }
        }
        sizes
    }

    /// Moves into `trash` the layers and blobs of `removed` that neither the remaining images
    /// nor a live lease use. Returns the bytes moved. Called under the lock.
    fn trash_unreferenced(
        &self,
        remaining: &Records,
        removed: &[ImageRecord],
        trash: &Path,
    ) -> Result<u64, ImageError> {
        let mut kept: HashSet<Digest> = self.leased_layers();
        for record in &remaining.images {
            kept.extend(record.layers.iter().cloned());
            kept.insert(record.id.clone());
            kept.insert(record.manifest.clone());
        }
        let mut freed = 0;
        let mut seen = HashSet::new();
        for record in removed {
            for layer in &record.layers {
                if kept.contains(layer) || !seen.insert(layer.clone()) {
                    continue;
                }
                freed += self.layer_info(layer).map(|i| i.size).unwrap_or(0);
                let _ = fs::rename(self.layer_dir(layer), trash.join(layer.hex()));
            }
            for blob in [&record.id, &record.manifest] {
                if kept.contains(blob) || !seen.insert(blob.clone()) {
                    continue;
                }
                let path = self.blob_path(blob);
                freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(path);
            }
        }
        Ok(freed)
    }

    /// The layers named by the leases of live processes.
    fn leased_layers(&self) -> HashSet<Digest> {
        let mut leased = HashSet::new();
        let Ok(workdirs) = fs::read_dir(self.root.join("tmp")) else {
            return leased;
        };
        for workdir in workdirs.flatten() {
            if !owner_alive(&workdir.path()) {
                continue;
            }
            let Ok(scratches) = fs::read_dir(workdir.path()) else {
                continue;
            };
            for scratch in scratches.flatten() {
                if let Ok(text) = fs::read_to_string(scratch.path().join("lease")) {
                    leased.extend(text.lines().filter_map(|l| l.parse().ok()));
                }
            }
        }
        leased
    }

    fn lock(&self) -> Result<File, ImageError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io(format!("opening {}", path.display())))?;
        file.lock_exclusive()
            .map_err(ImageError::io(format!("locking {}", path.display())))?;
        Ok(file)
    }

    fn read_records(&self) -> Result<Records, ImageError> {
        let path = self.root.join("images.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Config {
                source_name: path.display().to_string(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(ImageError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    /// Replaces images.json (under the lock): written and synced beside, then renamed.
    fn write_records(&self, records: &Records) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(records).expect("image records serialise");
        let staged = self.work.join("images.json");
        write_synced(&staged, &json)?;
        let path = self.root.join("images.json");
        fs::rename(&staged, &path)
            .map_err(ImageError::io(format!("replacing {}", path.display())))?;
        if let Ok(dir) = File::open(&self.root) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        live_work_dirs().remove(&self.work);
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// The work directories of the stores open in this process (`minik up` runs several agents,
/// each with its store, in one process: one's work directory is not another's leftover).
fn live_work_dirs() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A directory of work in progress, removed when dropped.
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Layers a pull is making or reusing; garbage collection leaves them while it lives.
pub(crate) struct Lease {
    _scratch: Scratch,
}

/// Whether the process that made the work directory `PID-RAND` still runs.
fn owner_alive(dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(pid) = name.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    if pid as u32 == std::process::id() {
        // Our own pid from an earlier life (pid reuse) or this process: only the work
        // directories of the stores this process has open are alive.
        return live_work_dirs().contains(dir);
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut file =
        File::create(path).map_err(ImageError::io(format!("creating {}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(ImageError::io(format!("writing {}", path.display())))
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn find_by_reference<'a>(
    images: &'a [ImageRecord],
    reference: &Reference,
) -> Option<&'a ImageRecord> {
    let wanted = reference.to_string();
    match reference.digest() {
        Some(digest) => {
            let by_digest = reference.with_digest(digest.clone()).to_string();
            images.iter().find(|r| {
                r.repo_digests.contains(&by_digest)
                    || (&r.manifest == digest
                        && r.repo_digests
                            .iter()
                            .chain(&r.names)
                            .any(|n| same_repository(n, reference)))
            })
        }
        None => images.iter().find(|r| r.names.contains(&wanted)),
    }
}

fn same_repository(name: &str, reference: &Reference) -> bool {
    name.parse::<Reference>()
        .map(|other| other.name() == reference.name())
        .unwrap_or(false)
}

fn find_by_query<'a>(images: &'a [ImageRecord], query: &str) -> Option<&'a ImageRecord> {
    if let Ok(digest) = query.parse::<Digest>() {
        if let Some(found) = images.iter().find(|r| r.id == digest) {
            return Some(found);
        }
    }
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matches = images.iter().filter(|r| r.id.hex().starts_with(hex));
        if let (Some(only), None) = (matches.next(), matches.next()) {
            return Some(only);
        }
    }
    let reference = query.parse::<Reference>().ok()?;
    find_by_reference(images, &reference)
}

/// What garbage collection would remove: a pure function of the records, the layer sizes and the
/// disk, so that the thresholds are tested without filling a disk.
struct GcPlan {
    removed: Vec<ImageRecord>,
    wanted: u64,
}

fn plan_gc(
    policy: &GcPolicy,
    images: &[ImageRecord],
    layer_sizes: &BTreeMap<Digest, u64>,
    in_use: &HashSet<Digest>,
    fs: FsStats,
    now: u64,
) -> GcPlan {
    let used = fs.capacity.saturating_sub(fs.available);
    let percent = |bytes: u64| (bytes as u128 * 100 / fs.capacity.max(1) as u128) as u64;
    if percent(used) < policy.high_percent as u64 {
        return GcPlan {
            removed: Vec::new(),
            wanted: 0,
        };
    }
    let target = fs.capacity as u128 * policy.low_percent as u128 / 100;
    let wanted = (used as u128).saturating_sub(target) as u64;
    let mut candidates: Vec<&ImageRecord> = images
        .iter()
        .filter(|r| {
            !in_use.contains(&r.id) && now.saturating_sub(r.last_used) >= policy.min_age_seconds
        })
        .collect();
    candidates.sort_by_key(|r| (r.last_used, r.pulled_at));
    // How many remaining images use each layer: a layer frees its bytes only with its last user.
    let mut users: BTreeMap<&Digest, usize> = BTreeMap::new();
    for layer in images.iter().flat_map(|r| &r.layers) {
        *users.entry(layer).or_default() += 1;
    }
    let mut freed = 0u64;
    let mut removed = Vec::new();
    for candidate in candidates {
        if freed >= wanted {
            break;
        }
        for layer in &candidate.layers {
            let count = users.get_mut(layer).expect("every layer is counted");
            *count -= 1;
            if *count == 0 {
                freed += layer_sizes.get(layer).copied().unwrap_or(0);
            }
        }
        removed.push(candidate.clone());
    }
    GcPlan { removed, wanted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn stores_open_in_one_process_keep_each_others_work() {
        // `minik up` runs an agent per node in one process, each opening the shared store.
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let stale = dir
            .path()
            .join("tmp")
            .join(format!("{}-dead", std::process::id()));
        std::fs::create_dir(&stale).unwrap();
        let second = Store::open(dir.path()).unwrap();
        assert!(first.work.is_dir() && second.work.is_dir());
        assert!(
            !stale.exists(),
            "a work directory of this pid that no store has is left over"
        );
        let first_work = first.work.clone();
        drop(first);
        assert!(!first_work.exists() && second.work.is_dir());
    }

    fn record(id: u8, layers: &[u8], last_used: u64) -> ImageRecord {
        ImageRecord {
            id: digest(id),
            names: vec![format!("docker.io/library/image{id}:latest")],
            repo_digests: vec![],
            manifest: digest(id + 100),
            layers: layers.iter().map(|l| digest(*l)).collect(),
            size: 0,
            pulled_at: last_used,
            last_used,
        }
    }

    fn sizes(layers: &[(u8, u64)]) -> BTreeMap<Digest, u64> {
        layers.iter().map(|(l, s)| (digest(*l), *s)).collect()
    }

    const GIB: u64 = 1 << 30;

    fn fs_used(percent: u64) -> FsStats {
        FsStats {
            capacity: 100 * GIB,
            available: (100 - percent) * GIB,
        }
    }

    #[test]
    fn nothing_is_collected_under_the_high_threshold() {
        let images = [record(1, &[1], 0)];
        let plan = plan_gc(
            &GcPolicy::default(),
            &images,
            &sizes(&[(1, 50 * GIB)]),
            &HashSet::new(),
            fs_used(84),
            10_000,
        );
        assert!(plan.removed.is_empty());
        assert_eq!(plan.wanted, 0);
    }

    #[test]
    fn past_the_high_threshold_the_least_recently_used_go_until_the_low_one() {
        // 90% used, low threshold 80%: 10 GiB to free. Image 3 (oldest) frees 4 GiB, image 1
        // frees 8 GiB: both go; image 2, the newest, stays.
        let images = [
            record(1, &[1], 2_000),
            record(2, &[2], 3_000),
            record(3, &[3], 1_000),
        ];
        let plan = plan_gc(
            &GcPolicy::default(),
            &images,
            &sizes(&[(1, 8 * GIB), (2, 8 * GIB), (3, 4 * GIB)]),
            &HashSet::new(),
            fs_used(90),
            10_000,
        );
        let ids: Vec<_> = plan.removed.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, vec![digest(3), digest(1)]);
        assert_eq!(plan.wanted, 10 * GIB);
    }

    #[test]
    fn images_in_use_and_young_images_stay() {
        let images = [
            record(1, &[1], 1_000),
            record(2, &[2], 9_990),
            record(3, &[3], 1_000),
        ];
        let in_use = HashSet::from([digest(1)]);
        let plan = plan_gc(
            &GcPolicy::default(),
            &images,
            &sizes(&[(1, 50 * GIB), (2, 50 * GIB), (3, 1)]),
            &in_use,
            fs_used(99),
            10_000,
        );
        let ids: Vec<_> = plan.removed.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            vec![digest(3)],
            "in use (1) and used 10 s ago (2) stay"
        );
    }

    #[test]
    fn a_shared_layer_frees_nothing_until_its_last_image_goes() {
        // Both images share the 9 GiB base layer: removing image 1 frees only its own 1 GiB, so
        // image 2 goes too.
        let images = [record(1, &[9, 1], 1_000), record(2, &[9, 2], 2_000)];
        let plan = plan_gc(
            &GcPolicy::default(),
            &images,
            &sizes(&[(9, 9 * GIB), (1, GIB), (2, GIB)]),
            &HashSet::new(),
            fs_used(86),
            10_000,
        );
        assert_eq!(plan.removed.len(), 2);
    }
}
