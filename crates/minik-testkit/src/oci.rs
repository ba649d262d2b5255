//! What the `oci` runtime of a node agent leaves on the host, found from the agent's data dir,
//! and the guard that removes it when a test ends ([`OciCleanup`]).
//!
//! An agent stops its containers on SIGTERM, but one killed with SIGKILL leaves them running, by
//! design (the next agent adopts them). What belongs to one agent is told by its data dir, whose
//! path every piece names: the container monitors and sandbox helpers (`minik internal
//! oci-monitor|oci-sandbox ...`) have it on their command line (so does the monitors' spawner,
//! which counts only once its agent is gone); the containers' processes run in
//! a mount namespace of their own whose root is an overlay with its upper dir under it; the
//! overlay roots and the sandboxes' namespace pins are mounts under it; and the containers'
//! cgroups are named `POD_UID_CONTAINER_ATTEMPT` under `minik-oci` in the agent's cgroup, which
//! is the test's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::POLL;

/// How long [`OciCleanup`] waits for the processes it killed to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What one node agent's `oci` runtime has on the host at the time of asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// `minik internal oci-monitor` and `oci-sandbox` processes (and a sandbox's pause process)
    /// naming the data dir.
    pub helpers: Vec<i32>,
    /// Processes of its containers.
    pub containers: Vec<i32>,
    /// Mount points under the data dir.
    pub mounts: Vec<PathBuf>,
    /// Container cgroup directories (of every hierarchy) of the pods it knows or was told of.
    pub cgroups: Vec<PathBuf>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.helpers.is_empty()
            && self.containers.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
    }
}

/// Removes, when dropped, everything the `oci` runtime of the agent over `data_dir` left: kills
/// its monitors, sandbox helpers and container processes (SIGKILL), removes the containers'
/// cgroups and unmounts (lazily) every mount under the data dir. Declare it after the data
/// dir's `TempDir` and drop it after the agent is gone, so that it runs before the directory is
/// removed, also when the test fails.
pub struct OciCleanup {
    data_dir: PathBuf,
    pods: Mutex<BTreeSet<String>>,
}

impl OciCleanup {
    /// A guard for the agent whose `--data-dir` is `data_dir` (which must exist).
    pub fn new(data_dir: &Path) -> OciCleanup {
        OciCleanup {
            data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            pods: Mutex::default(),
        }
    }

    /// The data dir, as the runtime names it (canonical).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Also looks for the cgroups of pod `uid` (which the data dir may no longer name).
    pub fn track_pod(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_owned());
    }

    /// What is left now.
    pub fn leftovers(&self) -> Leftovers {
        let dir = self.data_dir.to_string_lossy().into_owned();
        Leftovers {
            helpers: helper_pids(&dir),
            containers: container_pids(&dir),
            mounts: mounts_under(&self.data_dir),
            cgroups: self.cgroups(),
        }
    }

    /// The live processes of pod `uid`'s containers (its cgroups name the uid).
    pub fn pod_processes(&self, uid: &str) -> Vec<i32> {
        let dir = self.data_dir.to_string_lossy().into_owned();
        container_pids(&dir)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| c.contains(&format!("/minik-oci/{uid}_")))
            })
            .collect()
    }

    /// The processes of pod `uid`'s containers that are PID 1 of their PID namespace: one per
    /// running container.
    pub fn pod_inits(&self, uid: &str) -> Vec<i32> {
        self.pod_processes(uid)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|ids| ids.split_whitespace().last())
                        == Some("1")
                })
            })
            .collect()
    }

    /// The monitor and sandbox helper processes whose command line names pod `uid`.
    pub fn pod_helpers(&self, uid: &str) -> Vec<i32> {
        let dir = self.data_dir.to_string_lossy().into_owned();
        helper_pids(&dir)
            .into_iter()
            .filter(|pid| cmdline(*pid).is_some_and(|c| c.contains(uid)))
            .collect()
    }

    /// Removes everything left now; answers what was found before.
    pub fn clean(&self) -> Leftovers {
        let found = self.leftovers();
        if found.is_empty() {
            return found;
        }
        let dir = self.data_dir.to_string_lossy().into_owned();
        // Cgroups seen on the processes, before they go.
        let mut cgroups = found.cgroups.clone();
        for pid in &found.containers {
            cgroups.extend(cgroups_of_process(*pid));
        }
        let until = Instant::now() + KILL_WAIT;
        loop {
            let pids: Vec<i32> = container_pids(&dir)
                .into_iter()
                .chain(helper_pids(&dir))
                .collect();
            if pids.is_empty() {
                break;
            }
            if Instant::now() >= until {
                eprintln!("OciCleanup: processes {pids:?} still run after SIGKILL");
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(POLL);
        }
        cgroups.extend(self.cgroups());
        remove_cgroups(cgroups);
        // The parent the agent made, as its runtime removes it on a clean stop; it stays if
        // another agent's containers are in it.
        for parent in cgroup_parents() {
            let _ = std::fs::remove_dir(parent);
        }
        unmount_under(&self.data_dir);
        found
    }

    /// The container cgroup directories of the pods the data dir names and those tracked.
    fn cgroups(&self) -> Vec<PathBuf> {
        let mut prefixes: BTreeSet<String> = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|uid| format!("{uid}_"))
            .collect();
        let oci = self.data_dir.join("oci");
        for (sub, suffix) in [("containers", ""), ("libcontainer", ""), ("sandboxes", "_")] {
            if let Ok(entries) = std::fs::read_dir(oci.join(sub)) {
                for entry in entries.flatten() {
                    prefixes.insert(format!("{}{suffix}", entry.file_name().to_string_lossy()));
                }
            }
        }
        let mut found = Vec::new();
        for parent in cgroup_parents() {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                    found.push(entry.path());
                }
            }
        }
        found
    }
}

impl Drop for OciCleanup {
    fn drop(&mut self) {
        let found = self.clean();
        if !found.is_empty() {
            eprintln!(
                "OciCleanup: removed what the oci runtime left in {}: {found:?}",
                self.data_dir.display()
            );
        }
    }
}

/// The command line of `pid`, arguments joined by NULs, if it is alive (not a zombie).
fn cmdline(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Every pid in /proc but this process's.
fn pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|pid| *pid != me)
                .collect()
        })
        .unwrap_or_default()
}

/// Live `minik internal ...` processes naming `dir` (monitors, sandbox helpers and their pause
/// processes, which are forks of the helper), but the monitors' spawner while its agent runs:
/// it is part of the agent (it ends with it). One whose agent is gone (adopted by init) counts.
fn helper_pids(dir: &str) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|pid| {
            cmdline(*pid).is_some_and(|c| {
                c.contains("\0internal\0oci-")
                    && c.contains(dir)
                    && !(c.contains("\0internal\0oci-spawner\0") && parent_of(*pid) > 1)
            })
        })
        .collect()
}

/// The parent of `pid` (0 when unknown).
fn parent_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Live processes in a mount namespace other than this process's whose mounts name `dir`: the
/// containers' (their root is an overlay whose upper dir is under it).
fn container_pids(dir: &str) -> Vec<i32> {
    let Ok(own) = std::fs::read_link("/proc/self/ns/mnt") else {
        return Vec::new();
    };
    pids()
        .into_iter()
        .filter(|pid| {
            cmdline(*pid).is_some()
                && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns != own)
                && std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                    .is_ok_and(|m| m.contains(dir))
        })
        .collect()
}

/// Undoes the octal escapes (`\040`) of a path in /proc/self/mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' && digits.is_some_and(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
        {
            let value = digits
                .into_iter()
                .flatten()
                .fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points of this mount namespace under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.dedup();
    found
}

/// Lazily unmounts every mount under `dir`, stacked ones too.
pub fn unmount_under(dir: &Path) {
    for _round in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            let done = std::process::Command::new("umount")
                .arg("-l")
                .arg(&mount)
                .stdin(std::process::Stdio::null())
                .output();
            match done {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "OciCleanup: umount -l {}: {}",
                    mount.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("OciCleanup: cannot run umount: {e}"),
            }
        }
    }
}

/// Unmounts everything under a directory when dropped: what a node agent stopped with SIGKILL
/// left mounted (tmpfs volumes of Secrets and projected tokens). Declare it after the temp dir
/// and before the processes, so that it runs after they are killed and before the dir goes.
pub struct Unmounts(pub PathBuf);

impl Drop for Unmounts {
    fn drop(&mut self) {
        unmount_under(&self.0);
    }
}

/// The cgroup-relative path the runtime puts containers under (`runtime.rs`' `cgroup_parent`):
/// `minik-oci` in the memory controller's cgroup of this process (the agent's, which it
/// inherits), or in its v2 cgroup.
fn cgroup_parent() -> String {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1 = own.lines().find_map(|l| {
        let mut fields = l.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    });
    let path = v1
        .or_else(|| {
            own.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .unwrap_or_default();
    format!("{}/minik-oci", path.trim_end_matches('/'))
}

/// The `minik-oci` directories of every cgroup hierarchy (v1's controllers, and v2's root).
fn cgroup_parents() -> Vec<PathBuf> {
    let rel = cgroup_parent();
    let rel = rel.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(rel)];
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        for h in hierarchies.flatten() {
            if h.path().is_dir() {
                dirs.push(h.path().join(rel));
            }
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// The cgroup directories (of every hierarchy) `pid` is in, when they are containers' cgroups.
fn cgroups_of_process(pid: i32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !path.contains("/minik-oci/") {
            continue;
        }
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            dirs.push(root.join(rel));
            continue;
        }
        for controller in controllers.split(',') {
            let name = controller.trim_start_matches("name=");
            dirs.push(root.join(name).join(rel));
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// Removes cgroup directories, their child cgroups first; retries while they are busy.
fn remove_cgroups(dirs: Vec<PathBuf>) {
    let mut all: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        collect_tree(&dir, &mut all);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    all.dedup();
    let until = Instant::now() + KILL_WAIT;
    loop {
        all.retain(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        });
        if all.is_empty() {
            return;
        }
        if Instant::now() >= until {
            eprintln!("OciCleanup: cannot remove the cgroups {all:?}");
            return;
        }
        std::thread::sleep(POLL);
    }
}

fn collect_tree(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_tree(&entry.path(), out);
            }
        }
    }
}

impl OciCleanup {
    /// Waits (up to [`crate::DEADLINE`]) until nothing of the node's containers is left on the
    /// host: no helper or container process, mount or cgroup ([`OciCleanup::leftovers`]), and
    /// the node's `oci/containers` and `oci/sandboxes` empty.
    pub async fn wait_clean(&self) {
        let oci = self.data_dir().join("oci");
        let entries = |dir: PathBuf| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        crate::wait_for(
            "nothing left of the node's containers",
            crate::DEADLINE,
            || async {
                let left = self.leftovers();
                let files = [
                    entries(oci.join("containers")),
                    entries(oci.join("sandboxes")),
                ];
                if left.is_empty() && files.iter().all(Vec::is_empty) {
                    Ok(())
                } else {
                    Err(format!("{left:?}, files {files:?}"))
                }
            },
        )
        .await;
    }
}

/// Whether this host can run the oci runtime (root, overlayfs, namespaces, cgroups); if not,
/// says so through [`crate::cannot_run`] (which fails under CI=true).
pub fn oci_host() -> bool {
    if !nix::unistd::geteuid().is_root() {
        crate::cannot_run("root (the oci runtime)", "not running as root");
        return false;
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        crate::cannot_run("overlayfs (the oci runtime)", "not in /proc/filesystems");
        return false;
    }
    if !Path::new("/proc/self/ns/pid").exists() || !Path::new("/sys/fs/cgroup").is_dir() {
        crate::cannot_run(
            "namespaces and cgroups (the oci runtime)",
            "no /proc/self/ns/pid or /sys/fs/cgroup",
        );
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }

    #[test]
    fn nothing_is_left_of_a_data_dir_no_agent_used() {
        let dir = tempfile::tempdir().unwrap();
        let guard = OciCleanup::new(dir.path());
        guard.track_pod("no-such-pod");
        assert_eq!(guard.leftovers(), Leftovers::default());
        assert!(guard.clean().is_empty());
    }
}
