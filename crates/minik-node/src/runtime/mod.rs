//! The container runtime seen by the agent: a small trait (start, stop, state) with two
//! implementations, `process` (host processes) and `fake` (no processes, scriptable). All the
//! decisions — what to start, when to restart, what to report — live above it, in the agent's
//! `plan.rs` and `pod.rs`, and are shared by both.

mod cgroup;
mod fake;
mod process;
mod state;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use cgroup::MemoryCgroups;
pub use fake::{FakeRuntime, FakeScript};
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
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    /// The Kubernetes waiting reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::NotFound(_) | StartError::WorkingDir(_) => "CreateContainerError",
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
}
