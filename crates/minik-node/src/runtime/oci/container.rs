//! What the `oci` runtime needs to know to make one container, resolved by the agent and the
//! runtime: the input of `bundle::spec`, which turns it into an OCI runtime `config.json`.

use std::path::PathBuf;

/// One container, ready to be written as an OCI bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciContainer {
    /// The runtime id (`{pod uid}/{container}/{attempt}`); the OCI id is derived from it.
    pub id: String,
    /// The full argv: the image's Entrypoint/Cmd merged with the pod's command/args.
    pub args: Vec<String>,
    /// The environment, in order: the image's, then the standard and the pod's variables.
    pub env: Vec<(String, String)>,
    /// The working directory inside the container (absolute).
    pub cwd: String,
    pub user: User,
    /// The pod's hostname (the pod's name, or `spec.hostname`).
    pub hostname: String,
    /// The container's root: the mounted overlay.
    pub rootfs: PathBuf,
    pub namespaces: Namespaces,
    /// The cgroup, as a path relative to the cgroup roots (`/minik/NODE/POD_UID/CONTAINER`).
    pub cgroup_path: String,
    pub resources: Resources,
    pub security: Security,
    /// Files bind-mounted into the container: (host path, container path, read-only). The agent
    /// writes `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` as the kubelet does.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// The process runs on a terminal (`tty: true`): libcontainer makes it one inside the
    /// container and hands the master to the monitor.
    pub terminal: bool,
    /// `RLIMIT_NOFILE` (soft and hard): containerd's 1048576, or less where the node's own hard
    /// limit is lower (raising it would need CAP_SYS_RESOURCE, which the node may not have).
    pub nofile: u64,
}

/// Who the process runs as, resolved against the image's `/etc/passwd` and `/etc/group`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The namespaces the container joins or gets. `None` for network means the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaces {
    /// The pod's network namespace (a bind-mounted nsfs file), or `None`: the host's.
    pub network: Option<PathBuf>,
    /// The pod's IPC namespace.
    pub ipc: PathBuf,
    /// The pod's UTS namespace.
    pub uts: PathBuf,
    pub pid: PidNamespace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PidNamespace {
    /// A PID namespace of its own: the container's process is PID 1 (Kubernetes' default).
    Own,
    /// The pod's shared PID namespace (`shareProcessNamespace: true`).
    Pod(PathBuf),
    /// The host's (`hostPID: true`).
    Host,
}

/// cgroup limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `limits.memory`, bytes.
    pub memory_limit: Option<i64>,
    /// From `requests.cpu`, as the kubelet converts millicores to shares (min 2).
    pub cpu_shares: Option<u64>,
    /// From `limits.cpu`: (quota, period) in microseconds, period 100000.
    pub cpu_quota: Option<(i64, u64)>,
    /// The most processes the container may have.
    pub pids_limit: Option<i64>,
}

/// The parts of `securityContext` the runtime enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    pub privileged: bool,
    pub read_only_root: bool,
    /// `allowPrivilegeEscalation: false` (and the default unless privileged: Kubernetes leaves
    /// it true, so the default here is false = no_new_privs off).
    pub no_new_privileges: bool,
    /// Capabilities added to and dropped from the default set (names as Kubernetes writes
    /// them, without `CAP_`; `ALL` allowed in drop).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `seccompProfile: RuntimeDefault` (of the container, else of its pod): minik's default
    /// profile ([`super::seccomp`]); otherwise none (`Unconfined`).
    pub seccomp_default: bool,
}
