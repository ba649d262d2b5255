//! The container runtime seen by the agent: a small trait (start, stop, state) with two
//! implementations, `process` (host processes) and `fake` (no processes, scriptable). All the
//! decisions — what to start, when to restart, what to report — live above it, in the agent's
//! `plan.rs` and `pod.rs`, and are shared by both.

pub(crate) mod attach;
mod cgroup;
mod fake;
mod handlers;
pub(crate) mod oci;
mod process;
mod state;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};

pub use cgroup::MemoryCgroups;
pub use fake::{FakeRuntime, FakeScript};
pub use handlers::{Handler, Runtimes};
pub use oci::{
    check_host as check_oci_host, exec_main as oci_exec_main, monitor_main as oci_monitor_main,
    sandbox_main as oci_sandbox_main, spawner_main as oci_spawner_main, OciOptions, OciRuntime,
};
pub use process::{resolve_program, ProcessOptions, ProcessRuntime};
pub(crate) use state::{from_nanos, nanos, ExitState};

use crate::BoxFuture;

/// Everything a runtime needs to start one container, resolved by the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    /// Unique per start: `{pod uid}/{container name}/{restart count}`.
    pub id: String,
    /// The executable: a path, or a name looked up on the node's PATH.
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    /// Where stdout and stderr go.
    pub log_path: PathBuf,
    /// `resources.limits.memory`, in bytes.
    pub memory_limit: Option<u64>,
    /// The declared `hostPort`s (address, port) the container needs free on the node.
    pub host_ports: Vec<(String, u16)>,
    /// What the fake runtime is to do with the container (`FakeScript::of` reads it from the
    /// pod); every other runtime ignores it.
    pub fake: FakeScript,
    /// The image the container runs from and its pod's sandbox, for runtimes that run images
    /// (`oci`); `None` for the process and fake runtimes. With an image, `program` and `args`
    /// are the whole command line (the image's Entrypoint/Cmd merged with the pod's) and
    /// `working_dir` is a path inside the container.
    pub image: Option<ImageSpec>,
    /// The runtime handler the pod's RuntimeClass names; `None`: the node's default.
    pub handler: Option<String>,
    /// The container's volume mounts: host paths bound at paths inside the container.
    pub mounts: Vec<crate::volumes::Mount>,
    /// Its standard input and terminal, as the pod asks for them.
    pub stdio: Stdio,
}

/// A container's `stdin`, `stdinOnce` and `tty`, as Kubernetes defines them: with `stdin` the
/// container reads a stdin that `kubectl attach -i` writes to and that never ends, unless
/// `stdin_once`: then it ends when the first attached client leaves. With `tty` the container's
/// stdin, stdout and stderr are one terminal (its output is all stdout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Stdio {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

impl Stdio {
    /// The container's fields.
    pub fn of(container: &minik_api::k8s_openapi::api::core::v1::Container) -> Stdio {
        let stdin = container.stdin.unwrap_or(false);
        Stdio {
            stdin,
            stdin_once: stdin && container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
        }
    }
}

/// A container's image and pod, as a runtime that runs images needs them.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    /// The unpacked layers, base first (overlayfs lower directories).
    pub layers: Vec<PathBuf>,
    /// The image's configuration: user, working directory, stop signal.
    pub config: minik_image::ImageConfig,
    pub pod: PodSandbox,
    pub security: SecuritySpec,
    /// `requests.cpu` and `limits.cpu` in millicores.
    pub cpu_request_millis: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
}

/// The pod a container belongs to, as its sandbox needs it (CRI's `PodSandboxConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSandbox {
    pub uid: String,
    /// The pod's hostname: its name, or `spec.hostname`.
    pub hostname: String,
    pub host_network: bool,
    /// `hostPID`, `hostIPC`: the host's PID or IPC namespace.
    pub host_pid: bool,
    pub host_ipc: bool,
    /// `shareProcessNamespace`: the pod's containers share one PID namespace.
    pub share_process_namespace: bool,
    /// The pod's own address on the pod network (its `/etc/hosts` names it), when it has one.
    pub pod_ip: Option<std::net::IpAddr>,
    /// The pod's `/etc/resolv.conf` as the agent made it for its `dnsPolicy`; `None`: the
    /// node's own.
    pub resolv_conf: Option<String>,
    /// `hostname.subdomain.namespace.svc.DOMAIN` when the pod has a `subdomain` and the node
    /// knows the cluster domain: `/etc/hosts` names it beside the hostname, as the kubelet's.
    pub fqdn: Option<String>,
}

/// A container's `securityContext` (merged with the pod's), as the runtime enforces it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecuritySpec {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub privileged: bool,
    pub read_only_root: bool,
    pub allow_privilege_escalation: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `seccompProfile.type: RuntimeDefault` (the container's, else the pod's).
    pub seccomp_default: bool,
}

/// Why a container could not be started: each becomes a waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("executable file not found in $PATH: {0:?}")]
    NotFound(String),
    #[error("working directory {0:?} does not exist")]
    WorkingDir(PathBuf),
    #[error("hostPort {port} is already in use on the node (address {address}): {error}")]
    PortInUse {
        address: String,
        port: u16,
        error: String,
    },
    /// The container's configuration cannot be honoured (a user the image lacks, runAsNonRoot
    /// with a root image, a bad capability).
    #[error("{0}")]
    Config(String),
    /// The runtime could not create the container.
    #[error("{0}")]
    Create(String),
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    /// The Kubernetes waiting reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::NotFound(_) | StartError::WorkingDir(_) | StartError::Create(_) => {
                "CreateContainerError"
            }
            StartError::Config(_) => "CreateContainerConfigError",
            StartError::PortInUse { .. } | StartError::Failed(_) => "RunContainerError",
        }
    }
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// The runtime saw the container end but cannot say how: it was adopted from an earlier
    /// run of the agent and so was not the agent's child, or it ended while no agent ran.
    /// Reported as Kubernetes does for a container it lost track of: `ContainerStatusUnknown`.
    pub status_unknown: bool,
    pub finished_at: SystemTime,
}

impl Exit {
    /// An exit with a known code.
    pub fn code(code: i32, signal: Option<i32>, finished_at: SystemTime) -> Exit {
        Exit {
            code,
            signal,
            oom_killed: false,
            status_unknown: false,
            finished_at,
        }
    }
}

/// What a successful start tells the agent, for its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Started {
    /// The executable that runs, resolved on the node (`Pulled` event).
    pub program: PathBuf,
    /// Set when the container asked for a memory limit that this node cannot enforce: why.
    pub limit_not_enforced: Option<String>,
}

/// What the runtime knows of a container it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running {
        started_at: SystemTime,
    },
    Exited {
        started_at: SystemTime,
        exit: Exit,
    },
    /// The runtime has no record of it (never started here, or lost).
    Unknown,
}

/// A command to run in a running container (`kubectl exec`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command line; the first word is looked up on the command's `PATH`.
    pub command: Vec<String>,
    /// The environment the agent gives the command: the container's, as it was started. The
    /// oci runtime sets these on top of the environment the container has in its bundle.
    pub env: Vec<(String, String)>,
    /// Where the command runs; the container's own working directory when `None`.
    pub working_dir: Option<PathBuf>,
    /// Run the command on a terminal: its stdin, stdout and stderr are one pseudo-terminal.
    pub tty: bool,
    /// Give the command a stdin to write to (else it reads `/dev/null`; with a tty the
    /// terminal is its stdin all the same, and nothing is written to it).
    pub stdin: bool,
}

/// The command's stdout or stderr.
pub type ExecReader = Pin<Box<dyn AsyncRead + Send>>;
/// The command's stdin.
pub type ExecWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// What can be done to a running exec besides feeding it input.
pub trait ExecControl: Send + Sync {
    /// Sets the terminal's size (with a tty; without, an error).
    fn resize(&self, width: u16, height: u16) -> Result<(), String>;
    /// Kills the command (SIGKILL to its process group); nothing once it has ended.
    fn kill(&self);
}

/// A command started in a container.
pub struct ExecProcess {
    /// Its stdin, when asked for. Shutting it down closes the command's stdin (with a tty,
    /// the terminal stays open: the end of input is what the terminal sends, `^D`).
    pub stdin: Option<ExecWriter>,
    /// Its stdout; with a tty, the terminal (all output).
    pub stdout: Option<ExecReader>,
    /// Its stderr; `None` with a tty.
    pub stderr: Option<ExecReader>,
    pub control: Arc<dyn ExecControl>,
    /// Resolves to the command's exit code (128 + the signal when a signal ended it), or to
    /// why its end could not be known.
    pub exit: crate::BoxFuture<'static, Result<i32, String>>,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

/// A container runtime.
pub trait Runtime: Send + Sync + 'static {
    /// Starts a container; returns once it runs (or failed to).
    fn start(&self, spec: &ContainerSpec) -> Result<Started, StartError>;

    /// Stops a container: SIGTERM (or the runtime's equivalent), then SIGKILL after `grace`.
    /// Resolves once it is gone.
    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, ()>;

    /// What the runtime knows of a container now.
    fn state(&self, id: &str) -> State;

    /// Forgets an exited container (after its pod is gone).
    fn remove(&self, id: &str);

    /// The ids of every container the runtime knows, including ones started by an earlier run
    /// of the agent.
    fn containers(&self) -> Vec<String>;

    /// Removes what the runtime keeps for a pod beyond its containers (CRI's
    /// `RemovePodSandbox`: the oci runtime's pod namespaces), once every container of the pod
    /// is removed. Runtimes without sandboxes have nothing to do.
    fn remove_pod_sandbox(&self, _pod_uid: &str) {}

    /// Whether pods of this runtime get network namespaces of their own (then the agent
    /// connects them to the pod network through [`run_pod_sandbox`](Self::run_pod_sandbox)).
    fn pod_network_namespaces(&self) -> bool {
        false
    }

    /// Makes the pod's sandbox unless it is there (CRI's `RunPodSandbox`) and answers the
    /// network namespace it pinned, for a pod with one of its own (so that the agent connects
    /// it to the pod network before any container starts), and whether it was made just now
    /// (a new namespace has no interface yet). Runtimes without sandboxes, and host-network
    /// pods, answer `None`.
    fn run_pod_sandbox(&self, _pod: &PodSandbox) -> Result<Option<(PathBuf, bool)>, String> {
        Ok(None)
    }

    /// The network namespace container `id` runs in, when it is not the host's (the oci
    /// runtime's pod sandboxes): probes connect from inside it.
    fn network_namespace(&self, _id: &str) -> Option<PathBuf> {
        None
    }

    /// Starts a command in the running container `id` (`kubectl exec`); returns once it runs,
    /// or why it cannot (the message is the user's: `exec: "x": executable file not found in
    /// $PATH`). Must be called inside Tokio; it may block for a moment (call it off the async
    /// workers).
    fn exec(&self, _id: &str, _request: &ExecRequest) -> Result<ExecProcess, String> {
        Err("exec is not supported by this runtime".into())
    }

    /// Attaches to the running container `id`'s own process (`kubectl attach`): its output
    /// from now on, and, when `stdin` asks and the container was started with a stdin, a
    /// writer to that stdin. The session's end leaves the container running; with
    /// `stdinOnce`, it closes the container's stdin for good. Must be called inside Tokio.
    fn attach(&self, _id: &str, _stdin: bool) -> Result<ExecProcess, String> {
        Err("attach is not supported by this runtime".into())
    }
}
