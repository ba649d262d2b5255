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
mod relay;
pub(crate) mod rootfs;
mod runtime;
pub(crate) mod sandbox;
pub(crate) mod seccomp;
mod spawner;
pub(crate) mod user;

/// Shields a helper (the monitor, the exec helper) from the signals of the terminal or the agent
/// it was started from, which are not for it: SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE get a
/// handler that does nothing. Not SIG_IGN: an ignored signal stays ignored in every process the
/// helper starts, across exec — the container would ignore the SIGTERM that stops it, and a
/// shell in it could not even trap it — while a caught one is back to its default there.
pub(crate) fn shield_from_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn nothing(_: nix::libc::c_int) {}
    let action = SigAction::new(
        SigHandler::Handler(nothing),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
    ] {
        // SAFETY: the handler does nothing, which is async-signal-safe.
        let _ = unsafe { sigaction(s, &action) };
    }
}

pub use exec::main as exec_main;
pub use monitor::main as monitor_main;
pub use runtime::{check_host, OciOptions, OciRuntime};
pub use sandbox::main as sandbox_main;
pub use spawner::main as spawner_main;
