//! Pod volumes on the node, as the kubelet's volume manager lays them out: each volume of a pod
//! is set up under the pod's directory (`volumes/{plugin}/{name}`, the kubelet's
//! `kubernetes.io~empty-dir` names) before its containers start, the ones whose files come from
//! the API (ConfigMap, Secret, downward API, projected) are written with the kubelet's atomic
//! `..data` swap and updated in place while the pod runs, and each container gets its
//! `volumeMounts` as host paths to bind at its mount paths ([`mounts`]).
//!
//! `atomic.rs` writes payloads, `payload.rs` computes them (pure), `host.rs` is emptyDir
//! (directory or tmpfs), hostPath type checks and a teardown that never leaves the volume.
//!
//! Volume kinds served: `emptyDir`, `hostPath`, `configMap`, `secret`, `downwardAPI`,
//! `projected`. Every other kind is refused by name when the pod's containers would start
//! (`FailedMount`): a pod never runs without a volume it declares.

pub mod atomic;
pub mod host;
pub mod payload;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use minik_api::k8s_openapi::api::core::v1::{Container, Pod, Volume};
use minik_api::quantity::Quantity;

use crate::spec::Sources;

/// A volume of a pod that could not be set up: its name and why, in the kubelet's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

impl std::fmt::Display for VolumeError {
    /// The kubelet's `FailedMount` text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MountVolume.SetUp failed for volume {:?} : {}",
            self.volume, self.message
        )
    }
}

/// One bind mount of a container: a host path at a path inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    /// The absolute path inside the container (`mountPath`).
    pub destination: String,
    pub read_only: bool,
}

/// Where a pod's volumes live, by volume name, once set up.
pub type VolumeDirs = BTreeMap<String, VolumeDir>;

/// A volume set up on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeDir {
    pub path: PathBuf,
    /// Whether containers always see it read-only (the kinds whose files come from the API).
    pub read_only: bool,
}

/// The volumes directory of a pod, under its directory.
pub fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// What kind of volume `v` is, as the kubelet's plugin names it, and the name of the field.
fn plugin(v: &Volume) -> Result<(&'static str, &'static str), String> {
    Ok(if v.empty_dir.is_some() {
        ("kubernetes.io~empty-dir", "emptyDir")
    } else if v.host_path.is_some() {
        ("kubernetes.io~host-path", "hostPath")
    } else if v.config_map.is_some() {
        ("kubernetes.io~configmap", "configMap")
    } else if v.secret.is_some() {
        ("kubernetes.io~secret", "secret")
    } else if v.downward_api.is_some() {
        ("kubernetes.io~downward-api", "downwardAPI")
    } else if v.projected.is_some() {
        ("kubernetes.io~projected", "projected")
    } else if v.persistent_volume_claim.is_some() {
        ("kubernetes.io~pvc", "persistentVolumeClaim")
    } else {
        return Err(format!(
            "the {} volume type is not supported by minik (it serves emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim volumes)",
            declared_type(v)
        ));
    })
}

/// The name of the source field a volume sets (`nfs`, `persistentVolumeClaim`, ...).
fn declared_type(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|m| m.keys().find(|k| k.as_str() != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Sets up every volume of `pod` under `pod_dir` (idempotent: what exists is kept) and writes
/// the files of the API-backed ones from `sources`, updating them when they changed. `root`
/// says whether the agent may mount: Secret and projected volumes then live on a tmpfs, so
/// secrets never reach the node's disk, as with the kubelet. Returns every volume's directory,
/// or the first volume that could not be set up (in the pod's order) and why.
pub fn set_up(
    pod_dir: &Path,
    pod: &Pod,
    sources: &Sources,
    root: bool,
) -> Result<VolumeDirs, VolumeError> {
    let mut dirs = VolumeDirs::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in volumes {
        let error = |message: String| VolumeError {
            volume: v.name.clone(),
            message,
        };
        let (plugin, _) = plugin(v).map_err(error)?;
        let dir = volumes_dir(pod_dir).join(plugin).join(&v.name);
        let (path, read_only) = if let Some(source) = &v.empty_dir {
            let medium = match source.medium.as_deref().unwrap_or_default() {
                "" => host::Medium::Disk,
                "Memory" => host::Medium::Memory,
                other => {
                    return Err(error(format!(
                        "emptyDir medium {other:?} is not supported (\"\" or \"Memory\")"
                    )))
                }
            };
            if medium == host::Medium::Memory && !root {
                return Err(error(
                    "an emptyDir with medium Memory needs a tmpfs, which only an agent running as root can mount".into(),
                ));
            }
            let limit = match &source.size_limit {
                Some(q) => Some(bytes(q).map_err(error)?),
                None => None,
            };
            host::empty_dir(&dir, medium, limit).map_err(error)?;
            (dir, false)
        } else if let Some(source) = &v.host_path {
            let path = PathBuf::from(&source.path);
            host_path(&path, source.type_.as_deref()).map_err(error)?;
            (path, false)
        } else if let Some(source) = &v.persistent_volume_claim {
            let pv = match sources.claims.get(&source.claim_name) {
                Some(Ok(pv)) => pv,
                Some(Err(why)) => return Err(error(why.clone())),
                None => {
                    return Err(error(format!(
                        "persistentvolumeclaim {:?} not found",
                        source.claim_name
                    )))
                }
            };
            (
                persistent_volume_path(pv).map_err(error)?,
                source.read_only == Some(true),
            )
        } else {
            let payload = match payload::volume_payload(v, pod, sources) {
                Some(Ok(payload)) => payload,
                Some(Err(message)) => return Err(error(message)),
                None => return Err(error(format!("volume {:?} has no files", v.name))),
            };
            let in_memory = root && (v.secret.is_some() || v.projected.is_some());
            let medium = if in_memory {
                host::Medium::Memory
            } else {
                host::Medium::Disk
            };
            host::empty_dir(&dir, medium, None).map_err(error)?;
            let writer = atomic::AtomicWriter::new(&dir).map_err(error)?;
            writer.write(&payload, None).map_err(error)?;
            (dir, true)
        };
        dirs.insert(v.name.clone(), VolumeDir { path, read_only });
    }
    Ok(dirs)
}

/// Writes again the files of the pod's API-backed volumes (ConfigMap, Secret, downward API,
/// projected) that are set up, from `sources`: what changed is swapped in, what did not is left
/// alone. The other volumes do not change while the pod runs and are not looked at.
pub fn refresh(pod_dir: &Path, pod: &Pod, sources: &Sources) -> Result<(), VolumeError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in volumes {
        let Some(payload) = payload::volume_payload(v, pod, sources) else {
            continue;
        };
        let error = |message: String| VolumeError {
            volume: v.name.clone(),
            message,
        };
        let (plugin, _) = plugin(v).map_err(error)?;
        let dir = volumes_dir(pod_dir).join(plugin).join(&v.name);
        if !dir.is_dir() {
            continue;
        }
        let payload = payload.map_err(error)?;
        atomic::AtomicWriter::new(&dir)
            .and_then(|w| w.write(&payload, None))
            .map_err(error)?;
    }
    Ok(())
}

/// Where a PersistentVolume's files are on this node: a `hostPath` volume's path (checked as
/// its `type` says; the local-path provisioner's are `DirectoryOrCreate`) or a `local`
/// volume's, which must exist. Other volume sources need drivers minik does not have.
fn persistent_volume_path(
    pv: &minik_api::k8s_openapi::api::core::v1::PersistentVolume,
) -> Result<PathBuf, String> {
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    let spec = pv.spec.as_ref();
    if let Some(source) = spec.and_then(|s| s.host_path.as_ref()) {
        let path = PathBuf::from(&source.path);
        host_path(&path, source.type_.as_deref())?;
        return Ok(path);
    }
    if let Some(source) = spec.and_then(|s| s.local.as_ref()) {
        let path = PathBuf::from(&source.path);
        if std::fs::metadata(&path).is_err() {
            return Err(format!(
                "local volume {name:?}: path {:?} does not exist",
                source.path
            ));
        }
        return Ok(path);
    }
    Err(format!(
        "persistentvolume {name:?} is neither a hostPath nor a local volume, which are the ones minik mounts"
    ))
}

/// A hostPath checked as its `type` says. Without a type Kubernetes checks nothing, and a path
/// that does not exist is made a directory (0755) when the container is created, as containerd
/// and Docker do: a bind mount needs a source.
fn host_path(path: &Path, type_: Option<&str>) -> Result<(), String> {
    host::host_path_check(path, type_)?;
    if type_.unwrap_or_default().is_empty() && std::fs::symlink_metadata(path).is_err() {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot create hostPath {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Removes every volume of the pod whose directory is `pod_dir` from the node: tmpfs
/// unmounted, files removed, never following a link out of a volume or entering another
/// mount (a hostPath lives elsewhere and is never touched).
pub fn tear_down(pod_dir: &Path) -> Result<(), String> {
    host::teardown(&volumes_dir(pod_dir))
}

/// The volume kinds whose files come from the API (rewritten from it whenever set up).
const API_BACKED: &[&str] = &[
    "kubernetes.io~configmap",
    "kubernetes.io~secret",
    "kubernetes.io~downward-api",
    "kubernetes.io~projected",
];

/// What an agent that stops its pods without deleting them leaves of their volumes: nothing
/// mounted (the tmpfs of Secret, projected and memory emptyDir volumes are unmounted), no
/// API-backed volume at all (the next agent writes them again from the API before their
/// containers start, on a tmpfs again: their files, secrets among them, never fall through to
/// the node's disk), and the files of disk volumes kept.
pub fn release(pod_dir: &Path) -> Result<(), String> {
    let dir = volumes_dir(pod_dir);
    host::unmount_under(&dir)?;
    for plugin in API_BACKED {
        host::teardown(&dir.join(plugin))?;
    }
    Ok(())
}

/// A quantity in bytes (`sizeLimit`).
fn bytes(
    q: &minik_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<u64, String> {
    let parsed = Quantity::try_from(q).map_err(|e| format!("sizeLimit {:?}: {e}", q.0))?;
    Ok(parsed.value().max(0) as u64)
}

/// The mounts of `container`: each `volumeMount` as the host path of its volume (or of the
/// `subPath` in it, `subPathExpr` expanded against `env`) at its `mountPath`, read-only when
/// it asks or when the volume is one whose files come from the API. A `subPath` that does not
/// exist is made a directory, as the kubelet does; one that leaves its volume (`..`, or a
/// link pointing out of it) is refused. Mount propagation other than `None` is refused.
pub fn mounts(
    container: &Container,
    dirs: &VolumeDirs,
    env: &[(String, String)],
) -> Result<Vec<Mount>, String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = dirs.get(&m.name) else {
            return Err(format!(
                "volumeMount {:?}: the pod has no volume of that name",
                m.name
            ));
        };
        match m.mount_propagation.as_deref() {
            None | Some("None") => {}
            Some(other) => {
                return Err(format!(
                    "volumeMount {:?}: mountPropagation {other} is not supported by minik",
                    m.name
                ))
            }
        }
        let sub_path = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(e)) if !e.is_empty() => crate::spec::expand(e, &vars),
            _ => String::new(),
        };
        let source = if sub_path.is_empty() {
            volume.path.clone()
        } else {
            sub_path_source(&volume.path, &sub_path)
                .map_err(|e| format!("volumeMount {:?}: subPath {sub_path:?}: {e}", m.name))?
        };
        mounts.push(Mount {
            source,
            destination: m.mount_path.clone(),
            read_only: volume.read_only || m.read_only == Some(true),
        });
    }
    Ok(mounts)
}

/// The host path of `sub_path` inside the volume at `root`, made a directory when missing.
fn sub_path_source(root: &Path, sub_path: &str) -> Result<PathBuf, String> {
    let relative = Path::new(sub_path);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("must be a relative path without '..'".into());
    }
    let path = root.join(relative);
    if std::fs::symlink_metadata(&path).is_err() {
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot create it: {e}"))?;
    }
    // Links inside the volume may point anywhere: what they resolve to must stay inside it.
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("cannot resolve the volume: {e}"))?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot resolve it: {e}"))?;
    if !real.starts_with(&real_root) {
        return Err("it resolves to a path outside the volume".into());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1",
            "labels": {"app": "web"}}, "spec": spec}),
        )
        .unwrap()
    }

    fn container(mounts: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "volumeMounts": mounts})).unwrap()
    }

    #[test]
    fn disk_volumes_are_set_up_and_mounted() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        std::fs::create_dir(&host).unwrap();
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "hostPath": {"path": host.to_str().unwrap(), "type": "Directory"}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        ]}));
        let dirs = set_up(tmp.path(), &p, &Sources::default(), false).unwrap();
        let scratch = &dirs["scratch"];
        assert!(scratch
            .path
            .ends_with("volumes/kubernetes.io~empty-dir/scratch"));
        assert!(scratch.path.is_dir() && !scratch.read_only);
        assert_eq!(dirs["data"].path, host);
        let info = &dirs["info"];
        assert!(info.read_only);
        assert_eq!(
            std::fs::read_to_string(info.path.join("labels")).unwrap(),
            "app=\"web\""
        );
        // Idempotent.
        assert_eq!(
            set_up(tmp.path(), &p, &Sources::default(), false).unwrap(),
            dirs
        );

        let c = container(json!([
            {"name": "scratch", "mountPath": "/cache"},
            {"name": "data", "mountPath": "/data", "readOnly": true, "subPath": "logs"},
            {"name": "info", "mountPath": "/etc/podinfo"},
            {"name": "scratch", "mountPath": "/per-pod", "subPathExpr": "$(POD)"},
        ]));
        let env = vec![("POD".to_owned(), "p".to_owned())];
        let m = mounts(&c, &dirs, &env).unwrap();
        assert_eq!(m[0].destination, "/cache");
        assert!(!m[0].read_only);
        assert_eq!(m[1].source, host.join("logs").canonicalize().unwrap());
        assert!(m[1].read_only, "readOnly is honoured");
        assert!(host.join("logs").is_dir(), "a missing subPath is made");
        assert!(m[2].read_only, "API volumes are read-only");
        assert!(m[3].source.ends_with("scratch/p"));

        tear_down(tmp.path()).unwrap();
        assert!(!volumes_dir(tmp.path()).exists());
        assert!(host.join("logs").is_dir(), "a hostPath is never touched");
    }

    #[test]
    fn failures_name_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "config", "configMap": {"name": "special-config"}},
        ]}));
        let err = set_up(tmp.path(), &p, &Sources::default(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"special-config\" not found"
        );
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "nfs", "nfs": {"server": "example.com", "path": "/"}},
        ]}));
        let err = set_up(tmp.path(), &p, &Sources::default(), false).unwrap_err();
        assert!(
            err.message
                .starts_with("the nfs volume type is not supported by minik"),
            "{err}"
        );
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "h", "hostPath": {"path": "/nonexistent/minik-test", "type": "Directory"}},
        ]}));
        let err = set_up(tmp.path(), &p, &Sources::default(), false).unwrap_err();
        assert_eq!(err.volume, "h");
    }

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("vol");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        let dirs = VolumeDirs::from([(
            "v".to_owned(),
            VolumeDir {
                path: root.clone(),
                read_only: false,
            },
        )]);
        for (sub, want) in [
            ("../x", "must be a relative path without '..'"),
            ("/abs", "must be a relative path without '..'"),
            ("out", "it resolves to a path outside the volume"),
        ] {
            let c = container(json!([{"name": "v", "mountPath": "/m", "subPath": sub}]));
            let err = mounts(&c, &dirs, &[]).unwrap_err();
            assert!(err.ends_with(want), "{sub}: {err}");
        }
        let c = container(json!([{"name": "missing", "mountPath": "/m"}]));
        assert!(mounts(&c, &dirs, &[]).is_err());
        let c = container(
            json!([{"name": "v", "mountPath": "/m", "mountPropagation": "Bidirectional"}]),
        );
        assert!(mounts(&c, &dirs, &[])
            .unwrap_err()
            .contains("mountPropagation Bidirectional"));
    }
}
