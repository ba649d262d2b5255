//! Memory limits through cgroups, v2 (`memory.max`, `memory.events`) or v1
//! (`memory.limit_in_bytes`, `memory.oom_control`): one cgroup per container, created under the
//! agent's own cgroup so that the host's limits on the agent still hold, removed with the
//! container. Where no cgroup can be written (no memory controller, no permission), containers
//! run without their limit and the agent says so (see `docs/process-runtime.md`).

use std::io;
use std::path::{Path, PathBuf};

/// Which cgroup hierarchy the memory controller is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "v1" => Some(Version::V1),
            "v2" => Some(Version::V2),
            _ => None,
        }
    }

    fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }
}

/// Where the agent creates the cgroups of its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryCgroups {
    pub version: Version,
    /// The agent's own cgroup (v1: in the memory hierarchy); containers' cgroups go under it.
    pub parent: PathBuf,
}

/// The cgroup of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub version: Version,
    pub path: PathBuf,
}

impl MemoryCgroups {
    /// Finds the agent's memory cgroup on this host and checks that cgroups can be created
    /// under it. `Err` says why memory limits cannot be enforced here.
    pub fn detect() -> Result<MemoryCgroups, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let v2_root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/unified")
        };
        Self::detect_at(&own, Path::new("/sys/fs/cgroup/memory"), &v2_root)
    }

    /// [`detect`](Self::detect) with the inputs given: the text of `/proc/self/cgroup` and the
    /// mount points of the v1 memory hierarchy and of the v2 hierarchy.
    pub fn detect_at(own: &str, v1_root: &Path, v2_root: &Path) -> Result<MemoryCgroups, String> {
        let mut reasons = Vec::new();
        for line in own.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let relative = path.trim_start_matches('/');
            if controllers.is_empty() {
                match v2(&v2_root.join(relative)) {
                    Ok(found) => return Ok(found),
                    Err(e) => reasons.push(format!("cgroup v2: {e}")),
                }
            } else if controllers.split(',').any(|c| c == "memory") {
                match v1(&v1_root.join(relative)) {
                    Ok(found) => return Ok(found),
                    Err(e) => reasons.push(format!("cgroup v1: {e}")),
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("this process is in no memory cgroup".into());
        }
        Err(reasons.join("; "))
    }

    /// Creates the cgroup `minik-{name}` with the memory limit `limit` bytes.
    pub fn create(&self, name: &str, limit: u64) -> io::Result<Cgroup> {
        let path = self.parent.join(format!("minik-{name}"));
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let cgroup = Cgroup {
            version: self.version,
            path,
        };
        if let Err(e) = std::fs::write(
            cgroup.path.join(self.version.limit_file()),
            limit.to_string(),
        ) {
            cgroup.remove();
            return Err(e);
        }
        // The limit is on memory, not memory + swap: where swap exists, keep the container
        // from using it so that the limit ends in an OOM kill as in Kubernetes (best effort).
        match self.version {
            Version::V2 => {
                let _ = std::fs::write(cgroup.path.join("memory.swap.max"), "0");
            }
            Version::V1 => {
                let _ = std::fs::write(
                    cgroup.path.join("memory.memsw.limit_in_bytes"),
                    limit.to_string(),
                );
            }
        }
        Ok(cgroup)
    }
}

fn v2(base: &Path) -> Result<MemoryCgroups, String> {
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).map_err(|e| {
        format!(
            "cannot read {}: {e}",
            base.join("cgroup.controllers").display()
        )
    })?;
    if !available.split_whitespace().any(|c| c == "memory") {
        return Err(format!(
            "the memory controller is not available in {}",
            base.display()
        ));
    }
    let subtree = base.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&subtree)
        .map(|s| s.split_whitespace().any(|c| c == "memory"))
        .unwrap_or(false);
    if !enabled {
        // A cgroup with processes cannot hand controllers to children (the "no internal
        // processes" rule): move the agent into a leaf of its own first.
        if std::fs::write(&subtree, "+memory").is_err() {
            let leaf = base.join("minik-agent");
            let _ = std::fs::create_dir(&leaf);
            std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
                .map_err(|e| format!("cannot move the agent into {}: {e}", leaf.display()))?;
            std::fs::write(&subtree, "+memory").map_err(|e| {
                format!(
                    "cannot enable the memory controller in {}: {e}",
                    subtree.display()
                )
            })?;
        }
    }
    check_writable(MemoryCgroups {
        version: Version::V2,
        parent: base.to_owned(),
    })
}

fn v1(base: &Path) -> Result<MemoryCgroups, String> {
    if !base.join("memory.limit_in_bytes").exists() {
        return Err(format!("{} is not a memory cgroup", base.display()));
    }
    check_writable(MemoryCgroups {
        version: Version::V1,
        parent: base.to_owned(),
    })
}

/// Creates and removes a cgroup, to know now rather than at the first container.
fn check_writable(found: MemoryCgroups) -> Result<MemoryCgroups, String> {
    let probe = format!("probe-{}", std::process::id());
    let cgroup = found.create(&probe, u64::MAX / 2).map_err(|e| {
        format!(
            "cannot create a cgroup under {}: {e}",
            found.parent.display()
        )
    })?;
    cgroup.remove();
    Ok(found)
}

impl Cgroup {
    /// The file a process id is written to, to move that process into the cgroup.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// How many processes the kernel killed in this cgroup for lack of memory.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let text = std::fs::read_to_string(self.path.join(file)).unwrap_or_default();
        let counted = text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        });
        match (counted, self.version) {
            (Some(n), _) => n,
            // Kernels before 4.13 have no oom_kill counter in v1: the limit was hit.
            (None, Version::V1) => std::fs::read_to_string(self.path.join("memory.failcnt"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(0, |n| u64::from(n > 0)),
            (None, Version::V2) => 0,
        }
    }

    /// Removes the cgroup (it must have no process left); failures are logged.
    pub fn remove(&self) {
        match std::fs::remove_dir(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(cgroup = %self.path.display(), error = %e, "cannot remove a container's cgroup")
            }
        }
    }

    /// Whether processes are still in the cgroup.
    pub fn is_populated(&self) -> bool {
        std::fs::read_to_string(self.procs_file())
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v1_memory_hierarchy_is_found_from_proc_self_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("memory");
        touch(&v1.join("agent/slice/memory.limit_in_bytes"), "max");
        let own = "9:name=systemd:/\n4:memory:/agent/slice\n0::/\n";
        let found = MemoryCgroups::detect_at(own, &v1, &dir.path().join("unified")).unwrap();
        assert_eq!(found.version, Version::V1);
        assert_eq!(found.parent, v1.join("agent/slice"));
        let cgroup = found.create("u_c_1", 52_428_800).unwrap();
        assert_eq!(
            std::fs::read_to_string(cgroup.path.join("memory.limit_in_bytes")).unwrap(),
            "52428800"
        );
        // The kernel fills oom_control; a plain directory stands in for it here.
        touch(
            &cgroup.path.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert_eq!(cgroup.oom_kills(), 1);
    }

    #[test]
    fn v2_needs_the_memory_controller() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("unified");
        touch(&v2.join("svc/cgroup.controllers"), "cpu io pids\n");
        let own = "0::/svc\n";
        let err = MemoryCgroups::detect_at(own, &dir.path().join("memory"), &v2).unwrap_err();
        assert!(err.contains("memory controller is not available"), "{err}");

        touch(&v2.join("svc/cgroup.controllers"), "cpu memory pids\n");
        touch(&v2.join("svc/cgroup.subtree_control"), "memory\n");
        let found = MemoryCgroups::detect_at(own, &dir.path().join("memory"), &v2).unwrap();
        assert_eq!(found.version, Version::V2);
        let cgroup = found.create("x", 1024).unwrap();
        assert_eq!(
            std::fs::read_to_string(cgroup.path.join("memory.max")).unwrap(),
            "1024"
        );
        touch(
            &cgroup.path.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n",
        );
        assert_eq!(cgroup.oom_kills(), 2);
    }

    #[test]
    fn no_memory_cgroup_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = MemoryCgroups::detect_at("1:cpu:/\n", dir.path(), dir.path()).unwrap_err();
        assert_eq!(err, "this process is in no memory cgroup");
        let err = MemoryCgroups::detect_at("4:memory:/nope\n", dir.path(), dir.path()).unwrap_err();
        assert!(err.starts_with("cgroup v1:"), "{err}");
    }
}
