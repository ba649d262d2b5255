//! minik's scheduler: places pods that have no node on one, the way kube-scheduler's default
//! profile does, and explains every pod it cannot place.
//!
//! The decision is a pure function ([`schedule`]): a [`Snapshot`] of the nodes and of what is
//! already placed on them, and a pod's [`PodRequirements`], in; a [`Placement`] or a
//! [`FitError`] (whose message is kube-scheduler's `0/3 nodes are available: ...`) out. It runs
//! the filters (node ready and not cordoned, taints against tolerations, nodeSelector and
//! required node affinity, free host ports, cpu/memory/pod count) and then the scores (least
//! allocated, balanced allocation, spreading the pods of one controller, preferred node affinity,
//! `PreferNoSchedule` taints), breaking ties by turns. Pods with PersistentVolumeClaims go
//! through kube-scheduler's volume checks too (`volumes`): the pod-level ones first (a claim
//! missing, being deleted, lost, unbound under `Immediate` binding, bound to a volume that does
//! not exist), then per node a `ReadWriteOncePod` claim another pod uses, a bound volume's node
//! affinity and the node a `WaitForFirstConsumer` claim was given.
//!
//! [`run`] is the plumbing inside `minik server`: informers on pods, nodes, claims, volumes and
//! storage classes keep the snapshot current without relisting per pod, a queue with back-off
//! holds the pending pods (parking the ones that fit nowhere until a node, pod, claim, volume or
//! class changes), decisions are assumed at once so a burst does not over-commit a node, the
//! unbound `WaitForFirstConsumer` claims of a pod get its node in their
//! `volume.kubernetes.io/selected-node` annotation before the pod is bound, and bindings, status
//! conditions and events are written through the API.

mod decide;
mod filter;
mod pod;
mod queue;
mod resources;
mod run;
mod score;
mod snapshot;
mod state;
mod volumes;

pub use decide::{schedule, schedule_with, FitError, Placement};
pub use filter::Reason;
pub use pod::{HostPort, PodRequirements, Term};
pub use queue::Backoff;
pub use resources::Resources;
pub use run::{run, run_shared, Config};
pub use score::Weights;
pub use snapshot::{NodeFacts, NodeInfo, PlacedPod, Snapshot};
pub use state::DEFAULT_SCHEDULER_NAME;
pub use volumes::{
    pre_filter, ClaimFacts, ClaimToSelect, ClassFacts, PodVolumes, VolumeFacts, Volumes,
    NO_PROVISIONER, SELECTED_NODE_ANNOTATION,
};
