//! The agent's image manager, as the kubelet's (`pkg/kubelet/images`): before a container starts
//! on a runtime that runs images, its image is made present as its `imagePullPolicy` says, with
//! the kubelet's events (`Pulling`, `Pulled`, `Failed`, `ErrImageNeverPull`, `InspectFailed`)
//! and waiting reasons (`ErrImagePull`, then `ImagePullBackOff` during the back-off;
//! `ErrImageNeverPull`, `InvalidImageName`). It also reports the node's images and collects
//! garbage by disk thresholds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::Container;
use minik_api::k8s_openapi::api::core::v1::Pod;
use minik_image::{
    DockerConfig, GcPolicy, ImageError, ImageRecord, ImageService, PullPolicy, Reference,
};
use serde_json::{json, Value};

use crate::events::Kind;
use crate::plan::Event;

/// The waiting reason of a container whose image pull failed.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// The waiting reason during the back-off after a failed pull.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";

/// How many images the Node's status lists, largest first (the kubelet's
/// `nodeStatusMaxImages`).
const NODE_STATUS_MAX_IMAGES: usize = 50;

/// A node's image manager.
pub struct ImageManager {
    service: Arc<ImageService>,
    gc: GcPolicy,
}

/// An image made present for a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub record: ImageRecord,
    /// The reference as the runtime reports it in `containerStatuses[].image`: normalised
    /// (`docker.io/library/nginx:1.14.2`), as the kubelet with containerd does.
    pub image: String,
    /// What the container status reports as `imageID`: the repo digest (`docker.io/library/
    /// busybox@sha256:...`) or, for an image imported without one, its id.
    pub image_id: String,
}

/// Why a container's image is not there: its waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullFailure {
    pub reason: &'static str,
    pub message: String,
}

/// The registry credentials of a pod: the docker configs of its `imagePullSecrets`
/// (`kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` Secrets), in order, from
/// what the agent fetched. A Secret that is missing, of another type or unreadable is left out
/// with a warning, as the kubelet goes on and tries the pull without it.
pub fn pull_secrets(pod: &Pod, sources: &crate::spec::Sources) -> (DockerConfig, Vec<Event>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut config = DockerConfig::default();
    let mut missing = Vec::new();
    let mut events = Vec::new();
    let names = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_deref())
        .unwrap_or_default();
    for name in names
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
    {
        let Some(secret) = sources.secret(name) else {
            missing.push(name.to_owned());
            continue;
        };
        let source = format!("secret {ns}/{name}");
        let data = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
        };
        let parsed = match secret.type_.as_deref() {
            Some("kubernetes.io/dockerconfigjson") => data(".dockerconfigjson")
                .map(|json| DockerConfig::from_dockerconfigjson(&json, &source)),
            Some("kubernetes.io/dockercfg") => {
                data(".dockercfg").map(|json| DockerConfig::from_dockercfg(&json, &source))
            }
            _ => None,
        };
        match parsed {
            Some(Ok(more)) => config.extend(more),
            Some(Err(e)) => events.push(Event {
                container: None,
                kind: Kind::Warning,
                reason: "FailedToRetrieveImagePullSecret",
                message: format!("Unable to read image pull secret {name:?}: {e}"),
            }),
            None => events.push(Event {
                container: None,
                kind: Kind::Warning,
                reason: "FailedToRetrieveImagePullSecret",
                message: format!(
                    "Image pull secret {name:?} is not of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg; it is not used"
                ),
            }),
        }
    }
    if !missing.is_empty() {
        events.push(Event {
            container: None,
            kind: Kind::Warning,
            reason: "FailedToRetrieveImagePullSecret",
            message: format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        });
    }
    (config, events)
}

impl ImageManager {
    pub fn new(service: Arc<ImageService>, gc: GcPolicy) -> ImageManager {
        ImageManager { service, gc }
    }

    pub fn service(&self) -> &ImageService {
        &self.service
    }

    /// Makes the container's image present as its pull policy says, authenticating with the
    /// entries of `pull_secrets` (the pod's `imagePullSecrets`) that match the image's registry
    /// and repository. Events go to `emit` as they happen (`Pulling` before a pull that may
    /// take minutes).
    pub(crate) async fn ensure(
        &self,
        container: &Container,
        pull_secrets: &DockerConfig,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Ready, PullFailure> {
        let name = container.name.as_str();
        let image = container.image.as_deref().unwrap_or_default();
        let event = |kind, reason, message: String| Event {
            container: Some(name.to_owned()),
            kind,
            reason,
            message,
        };
        if let Err(e) = image.parse::<Reference>() {
            let message = format!("Failed to apply default image tag {image:?}: {e}");
            emit(event(Kind::Warning, "InspectFailed", message.clone()));
            return Err(PullFailure {
                reason: "InvalidImageName",
                message,
            });
        }
        let policy = match container.image_pull_policy.as_deref() {
            Some(p) => p.parse().map_err(|e: String| PullFailure {
                reason: "CreateContainerConfigError",
                message: e,
            })?,
            None => PullPolicy::default_for(image),
        };
        let present = image
            .parse::<Reference>()
            .ok()
            .and_then(|r| self.service.store().lookup(&r).ok().flatten());
        if policy == PullPolicy::Always || (policy == PullPolicy::IfNotPresent && present.is_none())
        {
            emit(event(
                Kind::Normal,
                "Pulling",
                format!("Pulling image {image:?}"),
            ));
        }
        let credentials = image
            .parse::<Reference>()
            .map(|r| pull_secrets.credentials_for(r.registry(), r.repository()))
            .unwrap_or_default();
        match self.service.ensure(image, policy, &credentials).await {
            Ok(outcome) => {
                let message = match &outcome.pulled {
                    None => format!("Container image {image:?} already present on machine"),
                    Some(stats) => format!(
                        "Successfully pulled image {image:?} in {:?} ({:?} including waiting). Image size: {} bytes.",
                        stats.elapsed, stats.elapsed, outcome.image.size
                    ),
                };
                emit(event(Kind::Normal, "Pulled", message));
                let image_id = outcome
                    .image
                    .repo_digests
                    .first()
                    .cloned()
                    .unwrap_or_else(|| outcome.image.id.to_string());
                let image = image
                    .parse::<Reference>()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| image.to_owned());
                Ok(Ready {
                    record: outcome.image,
                    image_id,
                    image,
                })
            }
            Err(ImageError::NeverPull { .. }) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                emit(event(Kind::Warning, "ErrImageNeverPull", message.clone()));
                Err(PullFailure {
                    reason: "ErrImageNeverPull",
                    message,
                })
            }
            Err(e) => {
                emit(event(
                    Kind::Warning,
                    "Failed",
                    format!("Failed to pull image {image:?}: {e}"),
                ));
                Err(PullFailure {
                    reason: ERR_IMAGE_PULL,
                    message: e.to_string(),
                })
            }
        }
    }

    /// The images the Node's status lists: names (repo digests and tags) and size, largest
    /// first, at most [`NODE_STATUS_MAX_IMAGES`], as the kubelet reports them.
    pub fn node_images(&self) -> Value {
        let mut images = self.service.store().images().unwrap_or_default();
        images.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
        let list: Vec<Value> = images
            .iter()
            .take(NODE_STATUS_MAX_IMAGES)
            .map(|image| {
                let names: Vec<&String> = image.repo_digests.iter().chain(&image.names).collect();
                let names = if names.is_empty() {
                    vec![json!(image.id.to_string())]
                } else {
                    names.into_iter().map(|n| json!(n)).collect()
                };
                json!({"names": names, "sizeBytes": image.size})
            })
            .collect();
        Value::Array(list)
    }

    /// Notes that `container` runs from `image`, so that neither garbage collection nor `minik
    /// image rm` removes it meanwhile.
    pub fn pin(&self, container: &str, image: &ImageRecord) {
        if let Err(e) = self.service.store().pin(container, &image.id) {
            tracing::warn!(container, error = %e, "cannot pin the container's image");
        }
        if let Err(e) = self.service.store().touch(&image.id, SystemTime::now()) {
            tracing::warn!(container, error = %e, "cannot note the image's use");
        }
    }

    pub fn unpin(&self, container: &str) {
        self.service.store().unpin(container);
    }

    /// Removes the pins of containers the runtime no longer has (an agent killed between
    /// removing a container and unpinning it).
    pub fn unpin_all_but(&self, containers: &BTreeSet<String>) {
        for container in self.service.store().pins().into_keys() {
            if !containers.contains(&container) {
                self.unpin(&container);
            }
        }
    }

    /// One garbage collection pass; logs what it removed.
    pub fn collect_garbage(&self) {
        let store = self.service.store();
        let result = store
            .fs_stats()
            .and_then(|fs| store.collect_garbage(&self.gc, fs, SystemTime::now()));
        match result {
            Ok(report) if !report.removed.is_empty() => {
                let names: Vec<String> = report.removed.iter().map(|r| r.display_name()).collect();
                tracing::info!(removed = ?names, freed = report.freed, wanted = report.wanted, "image garbage collection");
                if report.freed < report.wanted {
                    tracing::warn!(
                        freed = report.freed,
                        wanted = report.wanted,
                        "image garbage collection could not free enough space"
                    );
                }
            }
            Ok(report) if report.wanted > 0 => {
                tracing::warn!(
                    wanted = report.wanted,
                    "the image disk is past its high threshold and no unused image can go"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
        }
    }
}

/// How often garbage collection runs (the kubelet's `ImageGCPeriod`).
pub const GC_PERIOD: Duration = Duration::from_secs(300);

/// The back-off message of a container whose pull failed, as the kubelet writes it.
pub fn back_off_message(image: &str, failure: &str) -> String {
    format!("Back-off pulling image {image:?}: {ERR_IMAGE_PULL}: {failure}")
}

impl ImageManager {
    /// The unpacked layers (base first) and the configuration of an image made present.
    pub(crate) fn layers_and_config(
        &self,
        ready: &Ready,
    ) -> Result<(Vec<std::path::PathBuf>, minik_image::ImageConfig), String> {
        let store = self.service.store();
        let layers = ready
            .record
            .layers
            .iter()
            .map(|l| store.layer_rootfs(l))
            .collect();
        let config = store
            .blob(&ready.record.id)
            .and_then(|bytes| minik_image::ImageConfig::parse(&bytes, &ready.record.display_name()))
            .map_err(|e| {
                format!(
                    "the configuration of image {}: {e}",
                    ready.record.display_name()
                )
            })?;
        Ok((layers, config))
    }
}

/// The sandbox of `pod` as a runtime makes it (CRI's `PodSandboxConfig`); its address, DNS and
/// fully qualified name are the agent's to fill in once it knows them.
pub(crate) fn pod_sandbox(
    pod: &minik_api::k8s_openapi::api::core::v1::Pod,
) -> crate::runtime::PodSandbox {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    crate::runtime::PodSandbox {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        hostname,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        host_pid: spec.and_then(|s| s.host_pid).unwrap_or(false),
        host_ipc: spec.and_then(|s| s.host_ipc).unwrap_or(false),
        share_process_namespace: spec
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false),
        pod_ip: None,
        resolv_conf: None,
        fqdn: None,
    }
}

/// What a runtime that runs images needs of a container beyond its command line: its layers
/// and image configuration, its pod's sandbox, its security context (the container's over the
/// pod's, as Kubernetes merges them) and its CPU requests and limits.
/// Whether a container runs with the default seccomp profile: its `seccompProfile` (or its
/// pod's) says `RuntimeDefault`; `Unconfined` or none, not. `Localhost` profiles (files on the
/// node) are not served: the container waits with `CreateContainerConfigError` saying so.
fn runtime_default_seccomp(
    profile: Option<&minik_api::k8s_openapi::api::core::v1::SeccompProfile>,
) -> Result<bool, String> {
    match profile.map(|p| p.type_.as_str()) {
        None | Some("Unconfined") => Ok(false),
        Some("RuntimeDefault") => Ok(true),
        Some(other) => Err(format!(
            "seccomp profile type {other:?} is not supported by minik (RuntimeDefault and Unconfined are)"
        )),
    }
}

pub(crate) fn image_spec(
    pod: &minik_api::k8s_openapi::api::core::v1::Pod,
    container: &Container,
    layers: Vec<std::path::PathBuf>,
    config: minik_image::ImageConfig,
) -> Result<crate::runtime::ImageSpec, String> {
    use crate::runtime::{ImageSpec, SecuritySpec};
    let spec = pod.spec.as_ref();
    let pod_security = spec.and_then(|s| s.security_context.as_ref());
    let security = container.security_context.as_ref();
    let capabilities = security.and_then(|s| s.capabilities.as_ref());
    let cpu = |which: &str| -> Result<Option<u64>, String> {
        let resources = container.resources.as_ref();
        let quantity = match which {
            "requests" => resources.and_then(|r| r.requests.as_ref()),
            _ => resources.and_then(|r| r.limits.as_ref()),
        }
        .and_then(|m| m.get("cpu"));
        quantity
            .map(|q| {
                minik_api::quantity::Quantity::parse(&q.0)
                    .map(|q| q.millis().max(0) as u64)
                    .map_err(|e| format!("resources.{which}.cpu {:?}: {e}", q.0))
            })
            .transpose()
    };
    Ok(ImageSpec {
        layers,
        config,
        pod: pod_sandbox(pod),
        security: SecuritySpec {
            run_as_user: security
                .and_then(|s| s.run_as_user)
                .or(pod_security.and_then(|s| s.run_as_user)),
            run_as_group: security
                .and_then(|s| s.run_as_group)
                .or(pod_security.and_then(|s| s.run_as_group)),
            run_as_non_root: security
                .and_then(|s| s.run_as_non_root)
                .or(pod_security.and_then(|s| s.run_as_non_root)),
            privileged: security.and_then(|s| s.privileged).unwrap_or(false),
            read_only_root: security
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            allow_privilege_escalation: security
                .and_then(|s| s.allow_privilege_escalation)
                .unwrap_or(true),
            cap_add: capabilities.and_then(|c| c.add.clone()).unwrap_or_default(),
            cap_drop: capabilities
                .and_then(|c| c.drop.clone())
                .unwrap_or_default(),
            seccomp_default: runtime_default_seccomp(
                security
                    .and_then(|s| s.seccomp_profile.as_ref())
                    .or(pod_security.and_then(|s| s.seccomp_profile.as_ref())),
            )?,
        },
        cpu_request_millis: cpu("requests")?,
        cpu_limit_millis: cpu("limits")?,
    })
}
