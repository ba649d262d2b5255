//! minik's node agent: registers its Node, keeps it alive with heartbeats, and drives the pods
//! bound to it to their spec through a [`runtime::Runtime`].

mod agent;
pub mod certs;
mod configs;
pub mod dns;
pub mod downward;
pub mod endpoint;
mod events;
pub mod exec;
pub mod images;
pub mod join;
pub mod logs;
mod netns;
pub mod network;
mod plan;
pub mod pod;
pub mod probe;
pub mod proxy;
pub mod resolv;
pub mod runtime;
mod saved;
pub mod spec;
pub mod storage;
mod tokens;
pub mod volumes;

use std::future::Future;
use std::pin::Pin;

pub use agent::{run, AgentConfig, EndpointTls};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns transparent huge pages off for this process. The agent runs on every node for as long
/// as the node does, so its resident memory counts: with huge pages the allocator's arenas are
/// backed by 2 MiB pages, which doubles the idle agent's memory (about 10 MiB more) for no
/// measurable speed. The allocator has touched its first arenas before `main`, and pages that
/// are huge already stay so; the setting survives `exec`, so the process starts itself again
/// (same pid, arguments, environment and descriptors) to have it from the first allocation.
/// For `minik node` only: it applies to the whole process. Returns when the setting is in
/// place (or cannot be had; then the agent just uses more memory).
pub fn without_huge_pages() {
    use nix::sys::prctl;
    use std::os::unix::process::CommandExt;
    if prctl::get_thp_disable().unwrap_or(true) {
        return;
    }
    if let Err(e) = prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
        return;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let e = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .exec();
    tracing::debug!(error = %e, "cannot start again without transparent huge pages");
}
