//! The node's side of persistent volumes: which volume a pod's claim is bound to (read when its
//! containers are about to start), and the local-path volumes on this node — their directories
//! live under `DATA_DIR/storage` (the Node says so in its `minik.io/local-path-root`
//! annotation, for the server's provisioner) and are removed by the agent when their volume is
//! deleted, after which it lets the volume go (its `minik.io/local-path` finalizer).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use minik_client::{resource_of, Api, Change, Informer, InformerConfig, ListParams};
use serde_json::json;

/// The annotation of the Node saying where its local-path volumes go.
pub const LOCAL_PATH_ROOT: &str = "minik.io/local-path-root";
/// The label of a local-path volume: its node.
pub const LOCAL_PATH_NODE: &str = "minik.io/local-path-node";
/// The finalizer a local-path volume keeps until its directory is removed.
pub const LOCAL_PATH_FINALIZER: &str = "minik.io/local-path";

/// Where this node keeps its local-path volumes: `DATA_DIR/storage`, absolute.
pub fn root(data_dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    dir.join("storage")
}

/// The volume claim `ns/name` is bound to, or why there is none, in the kubelet's words.
pub async fn bound_volume(api: &dyn Api, ns: &str, name: &str) -> Result<PersistentVolume, String> {
    let claim = api
        .get(resource_of::<PersistentVolumeClaim>(), Some(ns), name)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => format!("persistentvolumeclaim {name:?} not found"),
            e => format!("cannot read persistentvolumeclaim {ns}/{name}: {e}"),
        })?;
    let claim: PersistentVolumeClaim = serde_json::from_value(claim)
        .map_err(|e| format!("persistentvolumeclaim {name:?}: {e}"))?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume) = volume.filter(|_| phase == Some("Bound")) else {
        return Err(format!("PVC {ns}/{name} is not bound"));
    };
    let pv = api
        .get(resource_of::<PersistentVolume>(), None, &volume)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => format!("persistentvolume {volume:?} not found"),
            e => format!("cannot read persistentvolume {volume:?}: {e}"),
        })?;
    serde_json::from_value(pv).map_err(|e| format!("persistentvolume {volume:?}: {e}"))
}

/// Follows the local-path volumes of node `node` and, for each one being deleted, removes its
/// directory (only one under `root`: a volume pointing elsewhere is not this node's to remove)
/// and then its finalizer. Runs until aborted.
pub async fn clean_local_paths(api: Arc<dyn Api>, node: String, root: PathBuf) {
    let informer = Informer::<PersistentVolume>::spawn(
        api.clone(),
        InformerConfig {
            params: ListParams {
                label_selector: Some(format!("{LOCAL_PATH_NODE}={node}")),
                ..ListParams::default()
            },
            resync: Duration::from_secs(60),
            ..InformerConfig::default()
        },
    );
    let cache = informer.cache();
    let mut changes = informer.subscribe();
    cache.wait_synced().await;
    loop {
        for pv in cache.list() {
            if let Err(e) = release(api.as_ref(), &pv, &root).await {
                tracing::warn!(volume = ?pv.metadata.name, error = %e, "cannot remove a local-path volume yet");
            }
        }
        match changes.next().await {
            Some(Change::Applied(_) | Change::Deleted(_) | Change::Resync) => {}
            None => return,
        }
    }
}

/// Removes a deleted local-path volume's directory, then its finalizer.
async fn release(api: &dyn Api, pv: &PersistentVolume, root: &Path) -> Result<(), String> {
    let held = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == LOCAL_PATH_FINALIZER);
    if pv.metadata.deletion_timestamp.is_none() || !held {
        return Ok(());
    }
    let name = pv.metadata.name.clone().unwrap_or_default();
    if let Some(path) = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| PathBuf::from(&h.path))
    {
        match directory_to_remove(&path, root) {
            Some(dir) => match crate::volumes::host::teardown(&dir) {
                Ok(()) => {
                    tracing::info!(volume = %name, dir = %dir.display(), "removed a local-path volume's directory")
                }
                Err(e) => return Err(e),
            },
            None => {
                tracing::warn!(volume = %name, path = %path.display(), "a local-path volume outside this node's storage directory: its files are left")
            }
        }
    }
    let rest: Vec<String> = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != LOCAL_PATH_FINALIZER)
        .cloned()
        .collect();
    let patch = Patch {
        kind: PatchKind::Merge,
        body: json!({"metadata": {"finalizers": rest, "resourceVersion": pv.metadata.resource_version}}),
    };
    match api
        .patch(
            resource_of::<PersistentVolume>(),
            None,
            &name,
            patch,
            false,
            WriteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// `path` when it is a directory directly under `root` (what the provisioner makes), else
/// `None`: nothing else is ever removed.
fn directory_to_remove(path: &Path, root: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    let name = path.file_name()?.to_str()?;
    (parent == root && name.starts_with("pvc-") && !name.contains('/')).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_provisioned_directories_are_removed() {
        let root = Path::new("/var/lib/minik/storage");
        assert_eq!(
            directory_to_remove(Path::new("/var/lib/minik/storage/pvc-1_db_data"), root),
            Some(PathBuf::from("/var/lib/minik/storage/pvc-1_db_data"))
        );
        for other in [
            "/var/lib/minik/storage",
            "/var/lib/minik/storage/other",
            "/var/lib/minik/storage/pvc-1/deeper",
            "/etc/pvc-1",
            "/var/lib/minik/storage/../pvc-1",
        ] {
            assert_eq!(directory_to_remove(Path::new(other), root), None, "{other}");
        }
    }
}
