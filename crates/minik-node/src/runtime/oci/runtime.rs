//! The `oci` runtime: each container is an isolated container made from its image's layers with
//! youki's `libcontainer`, by a monitor process of its own (`monitor.rs`).
//!
//! ```text
//! STATE/containers/STEM/state.json     the agent's record: monitor pid, container pid, log
//! STATE/containers/STEM/bundle/        config.json and rootfs/ (the overlay mount)
//! STATE/containers/STEM/upper, work    the container's writable layer
//! STATE/containers/STEM/etc/           hosts, hostname, resolv.conf bind-mounted into it
//! STATE/containers/STEM/exit.json      written by the monitor when the container ended
//! STATE/containers/STEM/stdout|stderr  the output pipes (as the process runtime's)
//! STATE/containers/STEM/stdin           the stdin pipe of a container with `stdin` (gone once
//!                                       a `stdinOnce` stdin is closed)
//! STATE/containers/STEM/control         the monitor's commands (resize, close-stdin)
//! STATE/sandboxes/POD_UID/             the pod's namespaces (sandbox.rs)
//! STATE/libcontainer/                  libcontainer's own state
//! ```
//!
//! The monitor outlives the agent: a restarted agent finds each container's monitor (adopted,
//! watched again) or its `exit.json` (the exit code is known, not lost).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::container::{Namespaces, OciContainer, PidNamespace, Resources, Security};
use super::monitor::{ExitRecord, MonitorArgs, Overlay};
use super::sandbox::Sandbox;
use super::spawner::Spawner;
use super::{bundle, rootfs, user};
use crate::logs::{LogLimits, LogWriter, Stream};
use crate::runtime::attach::{self, Attachable, Input, Tap};
use crate::runtime::process::{output_pipe, pump, wait_for_end, DRAIN_LIMIT};
use crate::runtime::state::{self, file_stem};
use crate::runtime::{
    ContainerSpec, Exit, ImageSpec, PodSandbox, Runtime, StartError, Started, State, Stdio,
};
use crate::BoxFuture;

/// The smallest memory limit a container is started with: below it the runtime's own start
/// does not fit (Docker refuses less than 6 MiB too).
const MIN_MEMORY_LIMIT: u64 = 6 << 20;

/// How long a container may take to be created and started.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Settings of the oci runtime.
#[derive(Clone, Debug)]
pub struct OciOptions {
    /// Where containers, sandboxes and libcontainer's state are kept.
    pub state_dir: PathBuf,
    pub logs: LogLimits,
    /// The `minik` binary, started again as the monitor and the sandbox helper.
    pub helper: PathBuf,
    /// The most processes one container may have (the kubelet's `--pod-max-pids`, which minik
    /// applies per container); `None`: no limit.
    pub pids_limit: Option<i64>,
}

/// What the agent records of a container, in `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    monitor_pid: i32,
    monitor_ticks: Option<u64>,
    container_pid: i32,
    started_at_ns: u64,
    log_path: PathBuf,
    stop_signal: Option<String>,
    /// Its `stdin`, `stdinOnce` and `tty` (none in records of agents before attach).
    #[serde(default)]
    stdio: Stdio,
}

struct Container {
    pid: i32,
    started_at: SystemTime,
    exit: watch::Receiver<Option<Exit>>,
    stop_signal: Signal,
    attach: Arc<Attachable>,
}

struct Inner {
    options: OciOptions,
    containers: Mutex<HashMap<String, Container>>,
    /// Forks the containers' monitors.
    spawner: Spawner,
}

/// The oci runtime. Cheap to clone.
#[derive(Clone)]
pub struct OciRuntime {
    inner: Arc<Inner>,
}

/// Why this host cannot run the oci runtime, by name of what it lacks.
pub fn check_host() -> Result<(), String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (the oci runtime mounts, makes namespaces and cgroups)".to_string());
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        missing.push("overlayfs (modprobe overlay)".to_string());
    }
    if !Path::new("/proc/self/ns/pid").exists() || !Path::new("/proc/self/ns/net").exists() {
        missing.push("namespaces (a kernel with pid, net, ipc, uts and mount namespaces)".into());
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        missing.push("cgroups mounted at /sys/fs/cgroup".to_string());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the oci runtime needs {}", missing.join(", ")))
    }
}

impl OciRuntime {
    /// Opens the runtime over `options.state_dir` and adopts the containers recorded there.
    /// Must run inside Tokio.
    pub fn open(mut options: OciOptions) -> std::io::Result<OciRuntime> {
        for dir in ["containers", "sandboxes", "libcontainer"] {
            std::fs::create_dir_all(options.state_dir.join(dir))?;
        }
        // Bundles and mounts name absolute paths: the monitor and libcontainer resolve a
        // relative one against other directories.
        options.state_dir = std::fs::canonicalize(&options.state_dir)?;
        let runtime = OciRuntime {
            inner: Arc::new(Inner {
                spawner: Spawner::new(&options.helper, &options.state_dir),
                options,
                containers: Mutex::default(),
            }),
        };
        let dir = runtime.containers_dir();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path().join("state.json");
            let Ok(bytes) = std::fs::read(&path) else {
                // A container whose start never got as far as its record: nothing runs.
                runtime.clean_dir(&entry.path());
                continue;
            };
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(record) => runtime.adopt(record),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable container record")
                }
            }
        }
        Ok(runtime)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.inner
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn containers_dir(&self) -> PathBuf {
        self.inner.options.state_dir.join("containers")
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(file_stem(id))
    }

    fn sandbox_dir(&self, pod_uid: &str) -> PathBuf {
        self.inner.options.state_dir.join("sandboxes").join(pod_uid)
    }

    /// Takes back a container an earlier agent started.
    fn adopt(&self, record: Record) {
        let dir = self.container_dir(&record.id);
        let started_at = state::from_nanos(record.started_at_ns);
        let stop_signal = stop_signal(record.stop_signal.as_deref());
        let attach = attachable(&dir, record.stdio);
        let (tx, rx) = watch::channel(None);
        if let Some(exit) = read_exit(&dir) {
            tx.send_replace(Some(exit));
        } else if state::start_ticks(record.monitor_pid).is_some()
            && state::start_ticks(record.monitor_pid) == record.monitor_ticks
        {
            tracing::info!(container = %record.id, pid = record.container_pid, "adopted a running container");
            let pumps = self.pumps(&dir, &record.log_path, &attach.tap);
            let (pid, ticks) = (record.monitor_pid, record.monitor_ticks);
            tokio::spawn(async move {
                wait_for_end(pid, ticks).await;
                let _ = tokio::time::timeout(DRAIN_LIMIT, futures::future::join_all(pumps)).await;
                tx.send_replace(Some(read_exit(&dir).unwrap_or_else(lost_exit)));
            });
        } else {
            // The monitor is gone without a word: the container cannot be watched; it goes.
            let _ = kill(Pid::from_raw(record.container_pid), Signal::SIGKILL);
            tx.send_replace(Some(lost_exit()));
        }
        self.lock().insert(
            record.id.clone(),
            Container {
                pid: record.container_pid,
                started_at,
                exit: rx,
                stop_signal,
                attach,
            },
        );
    }

    /// Drains a container's output pipes into its log again (after an agent restart).
    fn pumps(&self, dir: &Path, log_path: &Path, tap: &Tap) -> Vec<tokio::task::JoinHandle<()>> {
        let Ok(writer) = LogWriter::open(log_path, self.inner.options.logs) else {
            return Vec::new();
        };
        let writer = Arc::new(Mutex::new(writer));
        [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)]
            .into_iter()
            .filter_map(|(name, stream)| {
                let rx = tokio::net::unix::pipe::OpenOptions::new()
                    .open_receiver(dir.join(name))
                    .ok()?;
                Some(tokio::spawn(pump(rx, stream, writer.clone(), tap.clone())))
            })
            .collect()
    }

    /// Makes the pod's sandbox unless it exists; answers it and whether it was made now.
    fn sandbox(&self, pod: &PodSandbox) -> Result<(Sandbox, bool), String> {
        let sandbox = Sandbox::at(
            &self.sandbox_dir(&pod.uid),
            pod.host_network,
            pod.share_process_namespace && !pod.host_pid,
        );
        if sandbox.exists() {
            return Ok((sandbox, false));
        }
        let _ = sandbox.remove();
        let out = std::process::Command::new(&self.inner.options.helper)
            .args(sandbox.helper_args(&pod.hostname))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot start the sandbox helper: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot make the pod sandbox: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((sandbox, true))
    }

    /// Removes a container's directory: its root is unmounted first.
    fn clean_dir(&self, dir: &Path) {
        let root = dir.join("bundle/rootfs");
        if rootfs::is_mounted(&root) {
            rootfs::unmount(&root);
        }
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a container's files");
            }
        }
        let oci_id = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(oci_id) = oci_id {
            let _ = std::fs::remove_dir_all(
                self.inner
                    .options
                    .state_dir
                    .join("libcontainer")
                    .join(oci_id),
            );
        }
    }

    /// Everything but the monitor: the bundle of the container, ready to be created.
    fn prepare(
        &self,
        spec: &ContainerSpec,
        image: &ImageSpec,
        dir: &Path,
    ) -> Result<(), StartError> {
        let (sandbox, _) = self.sandbox(&image.pod).map_err(StartError::Failed)?;
        let bundle_dir = dir.join("bundle");
        let root = bundle_dir.join("rootfs");
        for d in [
            &root,
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("etc"),
        ] {
            std::fs::create_dir_all(d)
                .map_err(|e| failed(&format!("creating {}", d.display()), e))?;
        }
        rootfs::mount_overlay(&image.layers, &dir.join("upper"), &dir.join("work"), &root)
            .map_err(StartError::Failed)?;
        let sec = &image.security;
        let who = user::resolve(
            image.config.user.as_deref(),
            sec.run_as_user,
            sec.run_as_group,
            sec.run_as_non_root,
            &root,
        )
        .map_err(|e| match e.reason() {
            "CreateContainerConfigError" => StartError::Config(e.to_string()),
            _ => StartError::Create(e.to_string()),
        })?;
        let cwd = spec
            .working_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .or_else(|| image.config.working_dir.clone())
            .unwrap_or_else(|| "/".into());
        if !cwd.starts_with('/') {
            return Err(StartError::Config(format!(
                "the working directory {cwd:?} is not an absolute path"
            )));
        }
        if let Some(problem) = user::working_dir_problem(&root, &cwd) {
            return Err(StartError::Create(problem));
        }
        if let Some(limit) = spec.memory_limit.filter(|l| *l < MIN_MEMORY_LIMIT) {
            return Err(StartError::Create(format!(
                "the memory limit of {limit} bytes is below the {} MiB a container needs to start (as Docker's minimum)",
                MIN_MEMORY_LIMIT >> 20
            )));
        }
        let mut binds = etc_files(&dir.join("etc"), image)?;
        // The pod's volumes, after the agent's files: a volume mounted at `/etc/hosts` wins.
        binds.extend(
            spec.mounts
                .iter()
                .map(|m| (m.source.clone(), m.destination.clone(), m.read_only)),
        );
        let oci_id = file_stem(&spec.id);
        let container = OciContainer {
            id: spec.id.clone(),
            args: std::iter::once(spec.program.clone())
                .chain(spec.args.iter().cloned())
                .collect(),
            env: spec.env.clone(),
            cwd,
            user: who,
            hostname: image.pod.hostname.clone(),
            rootfs: root.clone(),
            namespaces: Namespaces {
                network: sandbox.net.clone(),
                ipc: if image.pod.host_ipc {
                    PathBuf::from("/proc/self/ns/ipc")
                } else {
                    sandbox.ipc.clone()
                },
                uts: sandbox
                    .uts
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/proc/self/ns/uts")),
                pid: match (&sandbox.pid, image.pod.host_pid) {
                    (_, true) => PidNamespace::Host,
                    (Some(pid), false) => PidNamespace::Pod(pid.clone()),
                    (None, false) => PidNamespace::Own,
                },
            },
            cgroup_path: format!("{}/{oci_id}", cgroup_parent()),
            resources: Resources {
                memory_limit: spec.memory_limit.map(|m| m as i64),
                cpu_shares: image.cpu_request_millis.map(shares_of),
                cpu_quota: image.cpu_limit_millis.map(|m| ((m as i64) * 100, 100_000)),
                pids_limit: self.inner.options.pids_limit,
            },
            security: Security {
                privileged: sec.privileged,
                read_only_root: sec.read_only_root,
                no_new_privileges: !sec.allow_privilege_escalation,
                cap_add: sec.cap_add.clone(),
                cap_drop: sec.cap_drop.clone(),
                seccomp_default: sec.seccomp_default,
            },
            binds,
            terminal: spec.stdio.tty,
            nofile: nofile_limit(),
        };
        let config = bundle::spec(&container).map_err(StartError::Config)?;
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| failed("writing the container's config.json", e))?;
        std::fs::write(bundle_dir.join("config.json"), json)
            .map_err(|e| failed("writing the container's config.json", e))?;
        // The root was mounted here to read the image's users and directories; the monitor
        // mounts it again in a mount namespace of its own, out of the node's mount table.
        rootfs::unmount(&root);
        Ok(())
    }

    /// Starts the monitor and waits for it to say how the start went.
    fn launch(&self, spec: &ContainerSpec, dir: &Path) -> Result<Launched, StartError> {
        // The agent's read ends stay open from here on: output a container writes before the
        // agent starts draining it (one that ends at once) waits in the pipe.
        let (out_rx, out_w) =
            output_pipe(&dir.join("stdout")).map_err(|e| failed("creating the output pipe", e))?;
        let (err_rx, err_w) =
            output_pipe(&dir.join("stderr")).map_err(|e| failed("creating the output pipe", e))?;
        let stdio = spec.stdio;
        if stdio.stdin {
            attach::make_pipe(&dir.join("stdin"))
                .map_err(|e| failed("creating the stdin pipe", e))?;
        }
        if stdio.tty || stdio.stdin_once {
            attach::make_pipe(&dir.join("control"))
                .map_err(|e| failed("creating the monitor's control pipe", e))?;
        }
        let (status_r, status_w) = nix::unistd::pipe().map_err(|e| failed("creating a pipe", e))?;
        let oci_id = file_stem(&spec.id);
        let args = MonitorArgs {
            root: self.inner.options.state_dir.join("libcontainer"),
            id: oci_id.clone(),
            bundle: dir.join("bundle"),
            exit_file: dir.join("exit.json"),
            memory_cgroup: memory_cgroup_dir(&format!("{}/{oci_id}", cgroup_parent())),
            stdio,
            overlay: spec.image.as_ref().map(|image| Overlay {
                lowers: image.layers.clone(),
                upper: dir.join("upper"),
                work: dir.join("work"),
            }),
        };
        use std::os::fd::AsFd;
        let (monitor, monitor_ticks) = self
            .inner
            .spawner
            .spawn(
                &args.to_strings(),
                [out_w.as_fd(), err_w.as_fd(), status_w.as_fd()],
            )
            .map_err(|e| StartError::Failed(format!("cannot start the container monitor: {e}")))?;
        // The monitor has its own copies: its end of the status pipe is the only writer left.
        drop((out_w, err_w, status_w));
        let line = read_status(status_r)?;
        match line.split_once(' ') {
            Some(("ok", pid)) => pid
                .trim()
                .parse()
                .map(|pid| Launched {
                    monitor,
                    monitor_ticks,
                    pid,
                    output: [(out_rx, Stream::Stdout), (err_rx, Stream::Stderr)],
                })
                .map_err(|_| StartError::Failed(format!("the monitor said {line:?}"))),
            Some(("error", message)) => Err(StartError::Create(message.trim().to_owned())),
            _ => Err(StartError::Failed(format!(
                "the container monitor ended before it started the container ({line:?})"
            ))),
        }
    }
}

/// A container the monitor started: the monitor's pid, the container's, and the agent's ends
/// of its output pipes.
struct Launched {
    monitor: i32,
    /// The monitor's start time: with the pid, it names that process and no later one.
    monitor_ticks: Option<u64>,
    pid: i32,
    output: [(tokio::net::unix::pipe::Receiver, Stream); 2],
}

/// Reads the monitor's one status line, with a deadline.
fn read_status(fd: std::os::fd::OwnedFd) -> Result<String, StartError> {
    let file = std::fs::File::from(fd);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(file).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(START_LIMIT)
        .map(|l| l.trim_end().to_owned())
        .map_err(|_| {
            StartError::Failed(format!(
                "the container did not start within {START_LIMIT:?}"
            ))
        })
}

/// The exit the monitor recorded in `dir`.
fn read_exit(dir: &Path) -> Option<Exit> {
    let bytes = std::fs::read(dir.join("exit.json")).ok()?;
    let record: ExitRecord = serde_json::from_slice(&bytes).ok()?;
    Some(Exit {
        code: record.code,
        signal: record.signal,
        oom_killed: record.oom_killed,
        status_unknown: false,
        finished_at: state::from_nanos(record.finished_at_ns),
    })
}

/// How a container whose monitor vanished is reported: as Kubernetes reports a container it
/// lost (`ContainerStatusUnknown`).
fn lost_exit() -> Exit {
    Exit {
        code: 137,
        signal: None,
        oom_killed: false,
        status_unknown: true,
        finished_at: SystemTime::now(),
    }
}

fn stop_signal(name: Option<&str>) -> Signal {
    name.and_then(|n| {
        let n = n.trim().to_ascii_uppercase();
        let n = if n.starts_with("SIG") {
            n
        } else {
            format!("SIG{n}")
        };
        n.parse::<Signal>().ok()
    })
    .unwrap_or(Signal::SIGTERM)
}

/// The open-file limit containers get: containerd's, capped by the node's own hard limit.
fn nofile_limit() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(bundle::NOFILE);
    hard.min(bundle::NOFILE)
}

/// CPU shares from a request in millicores, as the kubelet converts them (min 2).
fn shares_of(millis: u64) -> u64 {
    (millis * 1024 / 1000).max(2)
}

/// Where the containers' cgroups go, relative to each hierarchy's root: under the agent's own
/// cgroup (of the memory controller on v1), so the host's limits on the agent still hold.
fn cgroup_parent() -> String {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = own
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            Some((controllers, path))
        })
        .find(|(c, _)| c.split(',').any(|c| c == "memory"))
        .or_else(|| {
            own.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| ("", p)))
        })
        .map(|(_, p)| p.trim_end_matches('/').to_owned())
        .unwrap_or_default();
    format!("{path}/minik-oci")
}

/// The memory cgroup directory of a cgroup path (v1's memory hierarchy, or v2).
fn memory_cgroup_dir(path: &str) -> Option<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    let rel = path.trim_start_matches('/');
    if v1.is_dir() {
        Some(v1.join(rel))
    } else {
        Some(Path::new("/sys/fs/cgroup").join(rel))
    }
}

/// Writes `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the container, as the kubelet
/// does, and answers them as bind mounts.
fn etc_files(dir: &Path, image: &ImageSpec) -> Result<Vec<(PathBuf, String, bool)>, StartError> {
    let hostname = &image.pod.hostname;
    let hosts = if image.pod.host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        hosts_file(&image.pod)
    };
    let resolv = match &image.pod.resolv_conf {
        Some(text) => text.clone(),
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let files = [
        ("hosts", hosts, "/etc/hosts"),
        (
            "hostname",
            if image.pod.host_network {
                node_hostname
            } else {
                format!("{hostname}\n")
            },
            "/etc/hostname",
        ),
        ("resolv.conf", resolv, "/etc/resolv.conf"),
    ];
    let mut binds = Vec::new();
    for (name, text, target) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| failed(&format!("writing {}", path.display()), e))?;
        binds.push((path, target.to_owned(), false));
    }
    Ok(binds)
}

/// The `/etc/hosts` of a pod with a network namespace of its own, as the kubelet writes it:
/// localhost, then the pod's address with its names (`127.0.1.1` until it has one).
fn hosts_file(pod: &PodSandbox) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let address = pod
        .pod_ip
        .map_or_else(|| "127.0.1.1".to_owned(), |ip| ip.to_string());
    match &pod.fqdn {
        Some(fqdn) => text.push_str(&format!("{address}\t{fqdn}\t{}\n", pod.hostname)),
        None => text.push_str(&format!("{address}\t{}\n", pod.hostname)),
    }
    text
}

fn failed(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Failed(format!("{what}: {e}"))
}

impl Runtime for OciRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<Started, StartError> {
        let image = spec.image.as_ref().ok_or_else(|| {
            StartError::Failed(
                "the oci runtime runs containers from images; this one has none".into(),
            )
        })?;
        let dir = self.container_dir(&spec.id);
        self.clean_dir(&dir);
        let result = blocking(|| {
            self.prepare(spec, image, &dir)?;
            let writer = LogWriter::open(&spec.log_path, self.inner.options.logs).map_err(|e| {
                failed(
                    &format!("cannot open the log file {}", spec.log_path.display()),
                    e,
                )
            })?;
            let launched = self.launch(spec, &dir)?;
            Ok((launched, writer))
        });
        let (
            Launched {
                monitor: monitor_pid,
                monitor_ticks,
                pid,
                output,
            },
            writer,
        ) = match result {
            Ok(r) => r,
            Err(e) => {
                self.clean_dir(&dir);
                return Err(e);
            }
        };
        let record = Record {
            id: spec.id.clone(),
            monitor_pid,
            monitor_ticks,
            container_pid: pid,
            started_at_ns: state::nanos(SystemTime::now()),
            log_path: spec.log_path.clone(),
            stop_signal: image.config.stop_signal.clone(),
            stdio: spec.stdio,
        };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(e) = write_atomically(&dir.join("state.json"), &json) {
            tracing::warn!(container = %spec.id, error = %e, "cannot record a container");
        }
        let writer = Arc::new(Mutex::new(writer));
        let attach = attachable(&dir, spec.stdio);
        let pumps: Vec<_> = output
            .into_iter()
            .map(|(rx, stream)| tokio::spawn(pump(rx, stream, writer.clone(), attach.tap.clone())))
            .collect();
        let (tx, rx) = watch::channel(None);
        let watched = dir.clone();
        tokio::spawn(async move {
            // Without a start time the monitor was gone before the spawner looked.
            if monitor_ticks.is_some() {
                wait_for_end(monitor_pid, monitor_ticks).await;
            }
            let _ = tokio::time::timeout(DRAIN_LIMIT, futures::future::join_all(pumps)).await;
            tx.send_replace(Some(read_exit(&watched).unwrap_or_else(lost_exit)));
        });
        self.lock().insert(
            spec.id.clone(),
            Container {
                pid,
                started_at: SystemTime::now(),
                exit: rx,
                stop_signal: stop_signal(image.config.stop_signal.as_deref()),
                attach,
            },
        );
        Ok(Started {
            program: PathBuf::from(&spec.program),
            limit_not_enforced: None,
        })
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, ()> {
        let target = self
            .lock()
            .get(id)
            .map(|c| (c.pid, c.stop_signal, c.exit.clone()));
        Box::pin(async move {
            let Some((pid, signal, mut exit)) = target else {
                return;
            };
            if exit.borrow().is_some() {
                return;
            }
            let pid = Pid::from_raw(pid);
            let _ = kill(pid, signal);
            if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
                .await
                .is_err()
            {
                // The container's PID 1: killing it ends its whole PID namespace.
                let _ = kill(pid, Signal::SIGKILL);
                let _ = exit.wait_for(Option::is_some).await;
            }
        })
    }

    fn state(&self, id: &str) -> State {
        match self.lock().get(id) {
            None => State::Unknown,
            Some(c) => match c.exit.borrow().clone() {
                Some(exit) => State::Exited {
                    started_at: c.started_at,
                    exit,
                },
                None => State::Running {
                    started_at: c.started_at,
                },
            },
        }
    }

    fn remove(&self, id: &str) {
        let removed = self.lock().remove(id);
        if let Some(c) = removed {
            if c.exit.borrow().is_none() {
                let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
            }
        }
        self.clean_dir(&self.container_dir(id));
    }

    fn containers(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn network_namespace(&self, id: &str) -> Option<PathBuf> {
        let pod_uid = id.split('/').next()?;
        let net = self.sandbox_dir(pod_uid).join("net");
        net.exists().then_some(net)
    }

    fn pod_network_namespaces(&self) -> bool {
        true
    }

    fn run_pod_sandbox(&self, pod: &PodSandbox) -> Result<Option<(PathBuf, bool)>, String> {
        let (sandbox, made) = blocking(|| self.sandbox(pod))?;
        Ok(sandbox.net.map(|net| (net, made)))
    }

    fn remove_pod_sandbox(&self, pod_uid: &str) {
        let dir = self.sandbox_dir(pod_uid);
        if let Err(e) = Sandbox::at(&dir, false, true).remove() {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pod sandbox");
        }
    }

    fn exec(
        &self,
        id: &str,
        request: &crate::runtime::ExecRequest,
    ) -> Result<crate::runtime::ExecProcess, String> {
        if !matches!(self.state(id), State::Running { .. }) {
            return Err("the container is not running".into());
        }
        let options = &self.inner.options;
        super::exec::start(&options.helper, &options.state_dir, id, request)
    }

    fn attach(&self, id: &str, stdin: bool) -> Result<crate::runtime::ExecProcess, String> {
        let (attach, exit) = match self.lock().get(id) {
            Some(c) if c.exit.borrow().is_none() => (c.attach.clone(), c.exit.clone()),
            _ => return Err("the container is not running".into()),
        };
        attach.attach(exit, stdin)
    }
}

/// What attach sessions need of a container in `dir`: its monitor holds its stdin and
/// terminal, whichever agent started it.
fn attachable(dir: &Path, stdio: Stdio) -> Arc<Attachable> {
    if !stdio.stdin && !stdio.tty {
        return Attachable::output_only(stdio);
    }
    Arc::new(Attachable {
        tap: attach::tap(),
        stdio,
        input: Input::Monitor {
            dir: dir.to_owned(),
        },
    })
}

impl Drop for Inner {
    /// Removes the parent cgroup of the containers once the runtime goes (it is empty then, or
    /// the removal fails and it stays for the next agent).
    fn drop(&mut self) {
        let parent = cgroup_parent();
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut dirs: Vec<PathBuf> = hierarchies
            .flatten()
            .map(|h| h.path().join(parent.trim_start_matches('/')))
            .collect();
        dirs.push(Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/')));
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs `f`, which blocks for a moment (mounts, a helper process, the monitor's answer), without
/// stalling the other tasks of a multi-threaded Tokio runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
