//! A pod's sandbox: the namespaces its containers share (network, IPC, UTS), made by `minik
//! internal oci-sandbox` (a single-threaded process: `unshare` applies to the calling thread's
//! process, which must not be the agent) and kept by bind mounts of their nsfs files in the
//! sandbox directory, so that no process has to hold them (Kubernetes' pause container is not
//! needed for that). Containers join them by path; removing the sandbox unmounts them.
//!
//! A `hostNetwork` pod shares the host's network and UTS namespaces, as on Kubernetes: its
//! sandbox has an IPC namespace only. A pod with `shareProcessNamespace: true` also gets a PID
//! namespace, which lives only as long as a process in it: a small `pause` process (forked by
//! the helper, PID 1 of that namespace, reaping what is left to it) holds it, as Kubernetes'
//! pause container does; it is killed when the sandbox goes.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The namespaces of one pod's sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sandbox {
    pub dir: PathBuf,
    /// `None` for a host-network pod.
    pub net: Option<PathBuf>,
    pub ipc: PathBuf,
    /// `None` for a host-network pod (it has the host's hostname).
    pub uts: Option<PathBuf>,
    /// The pod's shared PID namespace (`shareProcessNamespace: true`), else `None`.
    pub pid: Option<PathBuf>,
}

impl Sandbox {
    /// The sandbox in `dir`, as `create` makes it.
    pub(crate) fn at(dir: &Path, host_network: bool, share_pid: bool) -> Sandbox {
        Sandbox {
            dir: dir.to_path_buf(),
            net: (!host_network).then(|| dir.join("net")),
            ipc: dir.join("ipc"),
            uts: (!host_network).then(|| dir.join("uts")),
            pid: share_pid.then(|| dir.join("pid")),
        }
    }

    /// Whether every namespace of the sandbox is in place.
    pub(crate) fn exists(&self) -> bool {
        [
            Some(&self.ipc),
            self.net.as_ref(),
            self.uts.as_ref(),
            self.pid.as_ref(),
        ]
        .into_iter()
        .flatten()
        .all(|p| is_nsfs(p))
    }

    /// The arguments of `minik internal oci-sandbox` that make it.
    pub(crate) fn helper_args(&self, hostname: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "internal".into(),
            "oci-sandbox".into(),
            self.dir.clone().into(),
            hostname.into(),
        ];
        if self.net.is_none() {
            args.push("host-network".into());
        }
        if self.pid.is_some() {
            args.push("share-pid".into());
        }
        args
    }

    /// Unmounts the namespaces and removes the directory.
    pub(crate) fn remove(&self) -> std::io::Result<()> {
        if let Some(pid) = std::fs::read_to_string(self.dir.join("pause.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for ns in ["net", "ipc", "uts", "pid"] {
            let path = self.dir.join(ns);
            if path.exists() {
                let _ = umount2(&path, MntFlags::MNT_DETACH);
            }
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Whether `path` is a mounted namespace file.
fn is_nsfs(path: &Path) -> bool {
    // nsfs' magic number.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false)
}

/// `minik internal oci-sandbox DIR HOSTNAME [host-network]`: makes the pod's namespaces and
/// pins them in DIR. Must run in a process of its own with a single thread.
pub fn main(args: &[String]) -> i32 {
    let (dir, hostname, flags) = match args {
        [dir, hostname, flags @ ..]
            if flags
                .iter()
                .all(|f| f == "host-network" || f == "share-pid") =>
        {
            (PathBuf::from(dir), hostname.clone(), flags)
        }
        _ => {
            eprintln!("usage: minik internal oci-sandbox DIR HOSTNAME [host-network] [share-pid]");
            return 2;
        }
    };
    let host_network = flags.iter().any(|f| f == "host-network");
    let share_pid = flags.iter().any(|f| f == "share-pid");
    match create(&dir, &hostname, host_network, share_pid) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot make the pod's namespaces in {}: {e}", dir.display());
            let _ = Sandbox::at(&dir, host_network, share_pid).remove();
            1
        }
    }
}

fn create(dir: &Path, hostname: &str, host_network: bool, share_pid: bool) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut flags = CloneFlags::CLONE_NEWIPC;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    if !host_network {
        nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname {hostname:?}: {e}"))?;
        loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
    }
    let sandbox = Sandbox::at(dir, host_network, share_pid);
    if let Some(target) = &sandbox.pid {
        let pause = start_pause()?;
        std::fs::write(dir.join("pause.pid"), pause.to_string())
            .map_err(|e| format!("recording the pause process: {e}"))?;
        std::fs::File::create(target).map_err(|e| format!("creating {}: {e}", target.display()))?;
        let source = PathBuf::from(format!("/proc/{pause}/ns/pid"));
        mount(
            Some(&source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "bind-mounting {} on {}: {e}",
                source.display(),
                target.display()
            )
        })?;
    }
    let pins = [
        Some(("ipc", &sandbox.ipc)),
        sandbox.net.as_ref().map(|p| ("net", p)),
        sandbox.uts.as_ref().map(|p| ("uts", p)),
    ];
    for (ns, target) in pins.into_iter().flatten() {
        std::fs::File::create(target).map_err(|e| format!("creating {}: {e}", target.display()))?;
        let source = PathBuf::from(format!("/proc/self/ns/{ns}"));
        mount(
            Some(&source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "bind-mounting {} on {}: {e}",
                source.display(),
                target.display()
            )
        })?;
    }
    Ok(())
}

/// Forks the pod's pause process into a new PID namespace (whose PID 1 it is) and answers its
/// pid. It reaps what is left to it and waits for SIGKILL.
fn start_pause() -> Result<i32, String> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    use nix::unistd::{fork, ForkResult};
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;
    // SAFETY: this helper process is single-threaded, so the child may run any code.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            extern "C" fn woken(_: nix::libc::c_int) {}
            let _ = nix::unistd::setsid();
            let on_child = SigAction::new(
                SigHandler::Handler(woken),
                SaFlags::SA_NOCLDSTOP,
                SigSet::empty(),
            );
            // SAFETY: the handler does nothing.
            let _ = unsafe { sigaction(Signal::SIGCHLD, &on_child) };
            for fd in 0..3 {
                // SAFETY: the pause process needs no standard descriptors.
                let _ = unsafe { nix::libc::close(fd) };
            }
            loop {
                match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(-1), None) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => {
                        nix::unistd::pause();
                    }
                }
            }
        }
    }
}

/// Brings the loopback interface of the current network namespace up (SIOCSIFFLAGS).
fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq whose name is "lo"; the socket is
    // closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let result = if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        result
    }
}
