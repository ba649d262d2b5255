//! The `oci` runtime: pods as isolated containers from their images (docs/runtimes.md).
//!
//! - `runtime.rs`: [`OciRuntime`], the `Runtime` the agent drives;
//! - `sandbox.rs`: a pod's shared namespaces (network, IPC, UTS), pinned by bind mounts;
//! - `rootfs.rs`: the overlayfs root of a container over its image's layers;
//! - `container.rs`, `bundle.rs`: a container described, then written as an OCI `config.json`;
//! - `user.rs`: who a container runs as, from the image's `/etc/passwd` and `securityContext`;
//! - `command.rs`: the image's Entrypoint/Cmd/Env merged with the pod's command/args/env;
//! - `monitor.rs`: the single-threaded process that creates the container with youki's
//!   `libcontainer` and stays its parent to record its exit.

pub(crate) mod bundle;
pub(crate) mod command;
pub(crate) mod container;
pub(crate) mod exec;
pub(crate) mod monitor;
pub(crate) mod rootfs;
mod runtime;
pub(crate) mod sandbox;
pub(crate) mod user;

pub use exec::main as exec_main;
pub use monitor::main as monitor_main;
pub use runtime::{check_host, OciOptions, OciRuntime};
pub use sandbox::main as sandbox_main;
