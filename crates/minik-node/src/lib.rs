//! minik's node agent: registers its Node, keeps it alive with heartbeats, and drives the pods
//! bound to it to their spec through a [`runtime::Runtime`].

mod agent;
pub mod endpoint;
mod events;
pub mod logs;
pub mod pod;
pub mod probe;
pub mod proxy;
pub mod runtime;
mod saved;
pub mod spec;

use std::future::Future;
use std::pin::Pin;

pub use agent::{run, AgentConfig};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns transparent huge pages off for this process. The agent runs on every node for as long
/// as the node does, so its resident memory counts: with huge pages the allocator's arenas are
/// backed by 2 MiB pages, which doubles the idle agent's memory (about 10 MiB more) for no
/// measurable speed. For `minik node` only: it applies to the whole process.
pub fn without_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
}
