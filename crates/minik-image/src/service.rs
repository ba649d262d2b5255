//! The image service a node runs: pulls by Kubernetes' pull policies and imports archives into
//! the [`Store`]. A layer is downloaded and unpacked once however many pulls want it at the same
//! time (one lock per diff id in the process; across processes the store's rename decides), and
//! the layers of one image download in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::archive::read_archive;
use crate::client::{RegistryClient, Resolved};
use crate::manifest::{Descriptor, ImageConfig, Manifest, Platform};
use crate::store::{unix, LayerInfo};
use crate::unpack::{unpack_layer, UnpackLimits};
use crate::{Credential, Digest, ImageError, ImageRecord, Reference, RegistriesConfig, Store};

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The policy a container gets when it names none: `Always` for `:latest` or no tag,
    /// `IfNotPresent` otherwise (Kubernetes' defaulting).
    pub fn default_for(image: &str) -> PullPolicy {
        match crate::reference::default_pull_policy(image) {
            "Always" => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

impl FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<PullPolicy, String> {
        match s {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "unsupported pull policy {other:?}: expected Always, IfNotPresent or Never"
            )),
        }
    }
}

/// What `ensure` found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullOutcome {
    pub image: ImageRecord,
    /// `None` when the image was present and the policy did not ask the registry
    /// ("already present on machine").
    pub pulled: Option<PullStats>,
}

/// What a pull cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullStats {
    /// Bytes downloaded (0 when every layer was present).
    pub downloaded: u64,
    /// Layers downloaded and unpacked.
    pub layers_downloaded: usize,
    pub elapsed: Duration,
}

/// A node's image service.
pub struct ImageService {
    store: Arc<Store>,
    client: RegistryClient,
    platform: Platform,
    limits: UnpackLimits,
    layer_locks: Mutex<HashMap<Digest, Weak<tokio::sync::Mutex<()>>>>,
}

impl ImageService {
    /// A service over `store`, pulling through `registries` (mirrors first; the registry itself
    /// last unless `use_default_endpoint` is false).
    pub fn new(
        store: Store,
        registries: RegistriesConfig,
        use_default_endpoint: bool,
    ) -> Result<ImageService, ImageError> {
        Ok(ImageService {
            store: Arc::new(store),
            client: RegistryClient::new(registries, use_default_endpoint)?,
            platform: Platform::host(),
            limits: UnpackLimits::default(),
            layer_locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes sure the image is on the node as `policy` asks: `Never` only looks, `IfNotPresent`
    /// pulls when it is missing, `Always` asks the registry what the tag is now and pulls only
    /// the layers the node lacks.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &[Credential],
    ) -> Result<PullOutcome, ImageError> {
        let reference: Reference = image.parse()?;
        let present = self.store.lookup(&reference)?;
        match (policy, present) {
            (PullPolicy::Never, Some(image)) | (PullPolicy::IfNotPresent, Some(image)) => {
                Ok(PullOutcome {
                    image,
                    pulled: None,
                })
            }
            (PullPolicy::Never, None) => Err(ImageError::NeverPull {
                image: image.to_string(),
            }),
            _ => self.pull_reference(&reference, credentials).await,
        }
    }

    /// Pulls an image (`minik image pull`): resolves its tag or digest, then downloads what the
    /// store lacks.
    pub async fn pull(
        &self,
        image: &str,
        credentials: &[Credential],
    ) -> Result<PullOutcome, ImageError> {
        let reference: Reference = image.parse()?;
        self.pull_reference(&reference, credentials).await
    }

    async fn pull_reference(
        &self,
        reference: &Reference,
        credentials: &[Credential],
    ) -> Result<PullOutcome, ImageError> {
        let started = Instant::now();
        let resolved = self
            .client
            .resolve(reference, &self.platform, credentials)
            .await?;
        let config_bytes = self
            .client
            .fetch_config(&resolved.source, reference, &resolved.manifest.config)
            .await?;
        let config = ImageConfig::parse(&config_bytes, &reference.to_string())?;
        config.check_layers(&resolved.manifest, &reference.to_string())?;
        let _lease = self.store.lease(&config.diff_ids)?;
        let downloads =
            resolved
                .manifest
                .layers
                .iter()
                .zip(&config.diff_ids)
                .map(|(descriptor, diff_id)| {
                    self.ensure_layer(&resolved, reference, descriptor, diff_id)
                });
        let downloaded: Vec<u64> = futures::future::try_join_all(downloads).await?;
        self.store
            .put_blob(&resolved.manifest_digest, &resolved.manifest_bytes)?;
        self.store
            .put_blob(&resolved.manifest.config.digest, &config_bytes)?;
        let mut names = Vec::new();
        if reference.digest().is_none() {
            names.push(reference.to_string());
        }
        let record = new_record(
            names,
            vec![reference.with_digest(resolved.digest.clone()).to_string()],
            &resolved.manifest_digest,
            &resolved.manifest,
            &config,
            SystemTime::now(),
        );
        let image = self.store.add_image(record)?;
        Ok(PullOutcome {
            image,
            pulled: Some(PullStats {
                downloaded: downloaded.iter().sum(),
                layers_downloaded: downloaded.iter().filter(|&&b| b > 0).count(),
                elapsed: started.elapsed(),
            }),
        })
    }

    /// Downloads and unpacks one layer unless the store has it; returns the bytes downloaded.
    async fn ensure_layer(
        &self,
        resolved: &Resolved,
        reference: &Reference,
        descriptor: &Descriptor,
        diff_id: &Digest,
    ) -> Result<u64, ImageError> {
        if self.store.has_layer(diff_id) {
            return Ok(0);
        }
        let lock = self.layer_lock(diff_id);
        let _guard = lock.lock().await;
        if self.store.has_layer(diff_id) {
            return Ok(0);
        }
        let scratch = self.store.scratch()?;
        let blob = scratch.path.join("blob");
        let mut file = tokio::fs::File::create(&blob)
            .await
            .map_err(ImageError::io(format!("creating {}", blob.display())))?;
        let downloaded = self
            .client
            .fetch_blob(&resolved.source, reference, descriptor, &mut file)
            .await?;
        drop(file);
        self.unpack_and_commit(
            &blob,
            &scratch.path,
            &descriptor.digest,
            descriptor.size,
            diff_id,
        )
        .await?;
        Ok(downloaded)
    }

    /// Unpacks a verified layer blob in `work` and puts it in the store, checking that what it
    /// holds is the diff id the image's config names.
    async fn unpack_and_commit(
        &self,
        blob: &Path,
        work: &Path,
        blob_digest: &Digest,
        blob_size: u64,
        diff_id: &Digest,
    ) -> Result<(), ImageError> {
        let staged = work.join("layer");
        let rootfs = staged.join("rootfs");
        std::fs::create_dir_all(&rootfs)
            .map_err(ImageError::io(format!("creating {}", rootfs.display())))?;
        let limits = self.limits.clone();
        let name = blob_digest.to_string();
        let blob = blob.to_path_buf();
        let unpacked =
            tokio::task::spawn_blocking(move || unpack_layer(&blob, &name, &rootfs, &limits))
                .await
                .map_err(|e| ImageError::Io {
                    context: format!("unpacking layer {blob_digest}"),
                    source: std::io::Error::other(e.to_string()),
                })??;
        if &unpacked.diff_id != diff_id {
            return Err(ImageError::DigestMismatch {
                expected: diff_id.clone(),
                actual: unpacked.diff_id,
            });
        }
        self.store.commit_layer(
            &staged,
            &LayerInfo {
                diff_id: diff_id.clone(),
                size: unpacked.size,
                blob: blob_digest.clone(),
                blob_size,
            },
        )
    }

    fn layer_lock(&self, diff_id: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.layer_locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = locks.get(diff_id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, lock| lock.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(diff_id.clone(), Arc::downgrade(&lock));
        lock
    }

    /// Imports the images of an `oci-archive` or `docker-archive` tarball (`minik image import`,
    /// `docker save`). Returns the images of the archive with the names it gave them, in its
    /// order (the store may hold more names for the same image).
    pub async fn import(&self, file: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let scratch = self.store.scratch()?;
        let extracted = scratch.path.join("archive");
        std::fs::create_dir(&extracted)
            .map_err(ImageError::io(format!("creating {}", extracted.display())))?;
        let archive = file.to_path_buf();
        let into = extracted.clone();
        let images = tokio::task::spawn_blocking(move || read_archive(&archive, &into))
            .await
            .map_err(|e| ImageError::Io {
                context: format!("reading {}", file.display()),
                source: std::io::Error::other(e.to_string()),
            })??;
        let source = file.display().to_string();
        let mut stored = Vec::new();
        for archived in images {
            let manifest = Manifest::parse(&archived.manifest, &source)?;
            let blob_path = |digest: &Digest| -> Result<PathBuf, ImageError> {
                archived
                    .blobs
                    .get(digest)
                    .cloned()
                    .ok_or_else(|| ImageError::Archive {
                        file: file.to_path_buf(),
                        why: format!("blob {digest} named by the manifest is not in the archive"),
                    })
            };
            let config_bytes = std::fs::read(blob_path(&manifest.config.digest)?)
                .map_err(ImageError::io(format!("reading the config of {source}")))?;
            let config = ImageConfig::parse(&config_bytes, &source)?;
            config.check_layers(&manifest, &source)?;
            let _lease = self.store.lease(&config.diff_ids)?;
            for (descriptor, diff_id) in manifest.layers.iter().zip(&config.diff_ids) {
                if self.store.has_layer(diff_id) {
                    continue;
                }
                let lock = self.layer_lock(diff_id);
                let _guard = lock.lock().await;
                if self.store.has_layer(diff_id) {
                    continue;
                }
                let work = self.store.scratch()?;
                self.unpack_and_commit(
                    &blob_path(&descriptor.digest)?,
                    &work.path,
                    &descriptor.digest,
                    descriptor.size,
                    diff_id,
                )
                .await?;
            }
            let manifest_digest = Digest::of(&archived.manifest);
            self.store.put_blob(&manifest_digest, &archived.manifest)?;
            self.store
                .put_blob(&manifest.config.digest, &config_bytes)?;
            let names = archived
                .names
                .iter()
                .map(|name| name.parse::<Reference>().map(|r| r.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let record = new_record(
                names,
                Vec::new(),
                &manifest_digest,
                &manifest,
                &config,
                SystemTime::now(),
            );
            self.store.add_image(record.clone())?;
            stored.push(record);
        }
        Ok(stored)
    }

    /// Imports every `*.tar` (and `.tar.gz`) in `dir`, as the agent does at start with
    /// `DATA_DIR/images/`. A file that fails is reported and the others go on.
    pub async fn import_dir(
        &self,
        dir: &Path,
    ) -> Vec<(PathBuf, Result<Vec<ImageRecord>, ImageError>)> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    p.is_file()
                        && (name.ends_with(".tar")
                            || name.ends_with(".tar.gz")
                            || name.ends_with(".tgz"))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        let mut results = Vec::new();
        for file in files {
            let result = self.import(&file).await;
            results.push((file, result));
        }
        results
    }
}

fn new_record(
    names: Vec<String>,
    repo_digests: Vec<String>,
    manifest_digest: &Digest,
    manifest: &Manifest,
    config: &ImageConfig,
    now: SystemTime,
) -> ImageRecord {
    ImageRecord {
        id: manifest.config.digest.clone(),
        names,
        repo_digests,
        manifest: manifest_digest.clone(),
        layers: config.diff_ids.clone(),
        size: manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
        pulled_at: unix(now),
        last_used: unix(now),
    }
}
