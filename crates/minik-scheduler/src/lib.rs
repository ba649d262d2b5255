//! minik's scheduler: places pods that have no node on one, the way kube-scheduler's default
//! profile does, and explains every pod it cannot place.
//!
//! The decision is a pure function ([`schedule`]): a [`Snapshot`] of the nodes and of what is
//! already placed on them, and a pod's [`PodRequirements`], in; a [`Placement`] or a
//! [`FitError`] (whose message is kube-scheduler's `0/3 nodes are available: ...`) out. It runs
//! the filters (node ready and not cordoned, taints against tolerations, nodeSelector and
//! required node affinity, free host ports, cpu/memory/pod count) and then the scores (least
//! allocated, balanced allocation, spreading the pods of one controller, preferred node affinity,
//! `PreferNoSchedule` taints), breaking ties by turns.
//!
//! [`run`] is the plumbing inside `minik server`: informers on pods and nodes keep the snapshot
//! current without relisting per pod, a queue with back-off holds the pending pods (parking the
//! ones that fit nowhere until a node or pod changes), decisions are assumed at once so a burst
//! does not over-commit a node, and bindings, status conditions and events are written through
//! the API.

mod decide;
mod filter;
mod pod;
mod queue;
mod resources;
mod run;
mod score;
mod snapshot;
mod state;

pub use decide::{schedule, schedule_with, FitError, Placement};
pub use filter::Reason;
pub use pod::{HostPort, PodRequirements};
pub use queue::Backoff;
pub use resources::Resources;
pub use run::{run, Config};
pub use score::Weights;
pub use snapshot::{NodeFacts, NodeInfo, PlacedPod, Snapshot};
pub use state::DEFAULT_SCHEDULER_NAME;
