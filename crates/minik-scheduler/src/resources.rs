//! The cpu and memory a pod asks for, summed the way Kubernetes sums them (init containers,
//! sidecars, overhead), and a node's allocatable amounts.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use minik_api::podview::{ContainerView, PodSpecView};
use minik_api::quantity::Quantity;

/// What scoring assumes a container without a cpu request uses (Kubernetes'
/// `DefaultMilliCPURequest`), so that pods without requests still spread over nodes.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// What scoring assumes a container without a memory request uses (Kubernetes'
/// `DefaultMemoryRequest`, 200 MB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of cpu (in thousandths of a core) and memory (in bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    pub const ZERO: Resources = Resources {
        milli_cpu: 0,
        memory: 0,
    };

    pub fn new(milli_cpu: i64, memory: i64) -> Resources {
        Resources { milli_cpu, memory }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0
    }

    /// The sum; saturating, because the amounts come from users and a sum that overflows must
    /// still compare as "too much" rather than wrap around.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
        }
    }

    pub fn minus(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(other.milli_cpu),
            memory: self.memory.saturating_sub(other.memory),
        }
    }

    /// The larger of each amount.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
        }
    }
}

fn parse(q: &K8sQuantity) -> Option<Quantity> {
    // Admission rejects quantities that do not parse; one that slips through counts as absent.
    Quantity::try_from(q).ok()
}

/// The cpu and memory of a resource list (`requests`, `limits`, `allocatable`, `overhead`);
/// `None` for an amount the list does not name.
fn amounts(list: Option<&BTreeMap<String, K8sQuantity>>) -> (Option<i64>, Option<i64>) {
    let Some(list) = list else {
        return (None, None);
    };
    let cpu = list.get("cpu").and_then(parse).map(|q| q.millis());
    let memory = list.get("memory").and_then(parse).map(|q| q.value());
    (cpu, memory)
}

/// What one container asks for. `non_zero` fills in the scoring defaults for an amount the
/// container does not name (an amount named as zero stays zero, as in Kubernetes).
fn container_request(c: &ContainerView, non_zero: bool) -> Resources {
    let (cpu, memory) = amounts(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    if non_zero {
        Resources::new(
            cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            memory.unwrap_or(DEFAULT_MEMORY_REQUEST),
        )
    } else {
        Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0))
    }
}

/// The request of a pod as Kubernetes computes it (`resourcehelper.PodRequests`): the sum of
/// its containers and its sidecars (init containers with `restartPolicy: Always`, which keep
/// running), or the largest init container plus the sidecars started before it, whichever is
/// larger; plus the pod's `overhead`. Pods without requests ask for zero.
pub fn pod_requests(spec: &PodSpecView) -> Resources {
    requests(spec, false)
}

/// The request scoring uses: as [`pod_requests`], but a container that names no cpu or memory
/// request counts as 100m cpu and 200 MiB (Kubernetes' "non-zero" requests), so that pods
/// without requests do not all pile onto one node.
pub fn pod_non_zero_requests(spec: &PodSpecView) -> Resources {
    requests(spec, true)
}

fn requests(spec: &PodSpecView, non_zero: bool) -> Resources {
    let mut total = spec.containers.iter().fold(Resources::ZERO, |sum, c| {
        sum.plus(container_request(c, non_zero))
    });
    let mut sidecars = Resources::ZERO;
    let mut init_peak = Resources::ZERO;
    for c in spec.init_containers.iter().flatten() {
        let request = container_request(c, non_zero);
        let during = if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running next to the app containers and the later init containers.
            total = total.plus(request);
            sidecars = sidecars.plus(request);
            sidecars
        } else {
            request.plus(sidecars)
        };
        init_peak = init_peak.max(during);
    }
    let (cpu, memory) = amounts(spec.overhead.as_ref());
    total
        .max(init_peak)
        .plus(Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0)))
}

/// A node's allocatable cpu and memory, and how many pods it takes (`None`: it does not say,
/// and minik does not limit). Without `allocatable` the node's `capacity` counts, as Kubernetes
/// treats a node whose kubelet reports only capacity.
pub fn node_allocatable(
    allocatable: Option<&BTreeMap<String, K8sQuantity>>,
    capacity: Option<&BTreeMap<String, K8sQuantity>>,
) -> (Resources, Option<i64>) {
    let list = allocatable.or(capacity);
    let (cpu, memory) = amounts(list);
    let pods = list
        .and_then(|l| l.get("pods"))
        .and_then(parse)
        .map(|q| q.value());
    (Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0)), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpecView {
        serde_json::from_value(value).expect("a pod spec")
    }

    #[test]
    fn pod_requests_follow_kubernetes() {
        let cases = [
            (
                "no requests count as zero",
                json!({"containers": [{"name": "a"}]}),
                (0, 0),
                (100, DEFAULT_MEMORY_REQUEST),
            ),
            (
                "containers add up",
                json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
                ]}),
                (1250, 64 * 1024 * 1024 + 1024 * 1024 * 1024),
                (1250, 64 * 1024 * 1024 + 1024 * 1024 * 1024),
            ),
            (
                "only cpu named: memory defaults for scoring only",
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}]}),
                (500, 0),
                (500, DEFAULT_MEMORY_REQUEST),
            ),
            (
                "an explicit zero stays zero when scoring",
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "0", "memory": "0"}}}]}),
                (0, 0),
                (0, 0),
            ),
            (
                "the largest init container wins over a smaller sum",
                json!({
                    "initContainers": [
                        {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}},
                        {"name": "i2", "resources": {"requests": {"cpu": "100m", "memory": "3Gi"}}}
                    ],
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                        {"name": "b", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
                    ]
                }),
                (2000, 3 * 1024 * 1024 * 1024),
                (2000, 3 * 1024 * 1024 * 1024),
            ),
            (
                "sidecars add to the containers and to later init containers",
                json!({
                    "initContainers": [
                        {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                        {"name": "setup", "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}}
                    ],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "300m", "memory": "100Mi"}}}]
                }),
                (1200, 200 * 1024 * 1024),
                (1200, 200 * 1024 * 1024),
            ),
            (
                "overhead is added",
                json!({
                    "overhead": {"cpu": "50m", "memory": "1Mi"},
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}}]
                }),
                (150, 2 * 1024 * 1024),
                (150, 2 * 1024 * 1024),
            ),
        ];
        for (name, value, requests, non_zero) in cases {
            let spec = spec(value);
            assert_eq!(
                pod_requests(&spec),
                Resources::new(requests.0, requests.1),
                "{name}"
            );
            assert_eq!(
                pod_non_zero_requests(&spec),
                Resources::new(non_zero.0, non_zero.1),
                "{name} (non-zero)"
            );
        }
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let list = |v: serde_json::Value| -> BTreeMap<String, K8sQuantity> {
            serde_json::from_value(v).expect("a resource list")
        };
        let alloc = list(json!({"cpu": "3500m", "memory": "2Gi", "pods": "110"}));
        let cap = list(json!({"cpu": "4", "memory": "4Gi"}));
        assert_eq!(
            node_allocatable(Some(&alloc), Some(&cap)),
            (Resources::new(3500, 2 << 30), Some(110))
        );
        assert_eq!(
            node_allocatable(None, Some(&cap)),
            (Resources::new(4000, 4 << 30), None)
        );
        assert_eq!(node_allocatable(None, None), (Resources::ZERO, None));
    }
}
