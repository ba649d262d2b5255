//! The container runtime seen by the agent: a small trait (start, stop, state) with two
//! implementations, `process` (host processes) and `fake` (no processes, scriptable). All the
//! decisions — what to start, when to restart, what to report — live above it, in the agent,
//! and are shared by both.

mod fake;
mod process;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use fake::FakeRuntime;
pub use process::{resolve_program, ProcessRuntime};

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
    /// Annotations of the pod, for runtimes that take instructions from them (the fake one).
    pub annotations: Vec<(String, String)>,
}

/// Why a container could not be started: each becomes a waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("executable file not found in $PATH: {0:?}")]
    NotFound(String),
    #[error("working directory {0:?} does not exist")]
    WorkingDir(PathBuf),
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    /// The Kubernetes waiting reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::NotFound(_) | StartError::WorkingDir(_) => "CreateContainerError",
            StartError::Failed(_) => "RunContainerError",
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
    pub finished_at: SystemTime,
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
    fn start(&self, spec: &ContainerSpec) -> Result<(), StartError>;

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
