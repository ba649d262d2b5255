//! What minik's tests share, so that each rule of a test harness is written once: an API server
//! in process on `127.0.0.1:0` over a store in a temporary directory ([`TestServer`]), the real
//! `minik` binary under guards that kill it even when a test fails ([`Minik`], [`Running`]), HTTP
//! helpers that answer a status and JSON ([`Http`], [`Answer`]), an API that shows a test each
//! write and may refuse it ([`Intercepted`]), manifest builders
//! ([`manifest`]), one deadline policy for everything a test waits on ([`wait_for`],
//! [`DEADLINE`]), and the rule for tests that need root or a kernel feature ([`cannot_run`]).
//!
//! Dev-only: it is in the `[dev-dependencies]` of the crates whose tests use it, never in a
//! release build.

mod binary;
mod ci;
mod http;
mod intercept;
pub mod manifest;
mod oci;
mod pods;
pub mod registry;
mod server;
mod trust;
mod wait;

pub use binary::{line_after, lines_of, process_with, Minik, Running, Up};
pub use ci::{cannot_run, in_ci};
pub use http::{get_json, get_text, wait_node_ready, Answer, Http};
pub use intercept::{Intercepted, Write};
pub use oci::{oci_host, unmount_under, Leftovers, OciCleanup, Unmounts};
pub use pods::{kill_pods_recorded_in, KillPodsOnDrop};
pub use server::{ca_pem, open_store, serve, start, start_tls, start_with, TestServer, HISTORY};
pub use trust::{builder as client_builder, ca_for, client, remember_ca};
pub use wait::{blocking, read_until, wait_for, Outcome, DEADLINE, POLL};
