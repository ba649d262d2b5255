//! What the numbers were measured on: CPUs, memory, kernel, the filesystem of the scratch
//! directory, the git commit; and a process's memory from `/proc`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

/// The machine and source tree a run measured.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpus: usize,
    pub model: String,
    pub mem_total_bytes: u64,
    pub kernel: String,
    /// The filesystem type holding the scratch directory (fsync cost depends on it).
    pub scratch_fs: String,
    pub commit: String,
    /// `/proc/loadavg` when the run started: how busy the shared machine already was.
    pub load_average: String,
}

impl Machine {
    pub fn describe(scratch: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model,
            mem_total_bytes: kib_field(&meminfo, "MemTotal:").unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            scratch_fs: filesystem_of(scratch).unwrap_or_else(|| "unknown".into()),
            commit: git_commit(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "machine: {} CPUs ({}), {:.1} GiB RAM, Linux {}",
                self.cpus,
                self.model,
                self.mem_total_bytes as f64 / (1u64 << 30) as f64,
                self.kernel
            ),
            format!("scratch filesystem: {}", self.scratch_fs),
            format!(
                "load average at start (1, 5, 15 min): {}",
                self.load_average
            ),
            format!("commit: {}", self.commit),
        ]
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpus": self.cpus,
            "model": self.model,
            "mem_total_bytes": self.mem_total_bytes,
            "kernel": self.kernel,
            "scratch_fs": self.scratch_fs,
            "commit": self.commit,
            "load_average": self.load_average,
        })
    }
}

/// A `Name:   123 kB` line of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
    let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The type of the filesystem `path` is on: the longest mount point in `/proc/mounts` that
/// contains it.
fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (device, mount, fs) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), format!("{fs} ({device} on {mount})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// The commit of the working directory's git tree, marked when files differ from it. Only
/// read-only git commands are run.
fn git_commit() -> String {
    // The tree the binary was built from (`target/release/minik-bench` lives in it), wherever
    // the run was started.
    let tree = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| ".".into());
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&tree)
            .args(args)
            .output()
            .ok()
    };
    let Some(head) = run(&["rev-parse", "HEAD"]).filter(|o| o.status.success()) else {
        return "unknown (not run inside a git tree)".into();
    };
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    // `diff-index` compares without refreshing (writing) the index.
    let modified =
        run(&["diff-index", "--quiet", "HEAD", "--", ":/"]).is_some_and(|o| !o.status.success());
    let untracked = run(&["ls-files", "--others", "--exclude-standard", "--", ":/"])
        .is_some_and(|o| !o.stdout.is_empty());
    match (modified, untracked) {
        (false, false) => head,
        _ => format!("{head} + uncommitted changes"),
    }
}

/// The resident memory of a process.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_bytes: u64,
    /// VmHWM: the most it was ever resident.
    pub peak_bytes: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid` from `/proc/PID/status`.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name| kib_field(&status, name).with_context(|| format!("{path} has no {name}"));
    Ok(Memory {
        rss_bytes: field("VmRSS:")?,
        peak_bytes: field("VmHWM:")?,
    })
}

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every architecture minik targets.
const TICKS_PER_SECOND: u64 = 100;

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// The CPU time every CPU of the machine has spent busy (not idle, not waiting for I/O) so far,
/// from the `cpu` line of `/proc/stat`.
pub fn machine_busy() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    anyhow::ensure!(ticks.len() >= 8, "/proc/stat's cpu line is too short");
    // user nice system idle iowait irq softirq steal: everything but idle and iowait. Guest
    // time is already counted in user.
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7];
    Ok(ticks_to_duration(busy))
}

/// The CPU time (user + system, every thread) `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces; count from after it.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path} has no field {}", i + 3))
    };
    Ok(ticks_to_duration(ticks(11)? + ticks(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_in_bytes() {
        let text = "Name:\tminik\nVmHWM:\t   2048 kB\nVmRSS:\t    1000 kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), Some(1_024_000));
        assert_eq!(kib_field(text, "VmHWM:"), Some(2_097_152));
        assert_eq!(kib_field(text, "VmSwap:"), None);
    }

    #[test]
    fn own_cpu_time_grows() {
        let before = cpu_time_of(std::process::id()).unwrap();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time_of(std::process::id()).unwrap() >= before + Duration::from_millis(20));
        assert!(machine_busy().unwrap() > Duration::ZERO);
    }

    #[test]
    fn own_memory_is_readable() {
        let m = memory_of(std::process::id()).unwrap();
        assert!(m.rss_bytes > 0 && m.peak_bytes >= m.rss_bytes);
    }
}
