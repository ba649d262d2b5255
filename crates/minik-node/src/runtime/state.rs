//! What the process runtime keeps on disk about each container it started, so that an agent
//! killed with SIGKILL and started again finds its processes: one small JSON file per container
//! (written before the process starts, again once its pid is known, and once more when it
//! ended), with the process start time from `/proc/PID/stat` to tell our process from another
//! that got the same pid later.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Exit;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// `None` between writing the file and the process starting.
    pub pid: Option<i32>,
    /// The process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_ticks: Option<u64>,
    pub started_at_ns: u64,
    pub log_path: PathBuf,
    pub stdout_fifo: PathBuf,
    pub stderr_fifo: PathBuf,
    pub cgroup: Option<PathBuf>,
    /// `v1` or `v2`.
    pub cgroup_version: Option<String>,
    pub exit: Option<ExitState>,
    /// Its `stdin`, `stdinOnce` and `tty` (absent in files of agents before attach: none).
    #[serde(default)]
    pub stdio: super::Stdio,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitState {
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub status_unknown: bool,
    pub finished_at_ns: u64,
}

pub fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn from_nanos(n: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(n)
}

impl From<&Exit> for ExitState {
    fn from(e: &Exit) -> Self {
        ExitState {
            code: e.code,
            signal: e.signal,
            oom_killed: e.oom_killed,
            status_unknown: e.status_unknown,
            finished_at_ns: nanos(e.finished_at),
        }
    }
}

impl From<&ExitState> for Exit {
    fn from(e: &ExitState) -> Self {
        Exit {
            code: e.code,
            signal: e.signal,
            oom_killed: e.oom_killed,
            status_unknown: e.status_unknown,
            finished_at: from_nanos(e.finished_at_ns),
        }
    }
}

/// The file name for a container id (`uid/name/attempt` → `uid_name_attempt`).
pub fn file_stem(id: &str) -> String {
    id.replace('/', "_")
}

impl ContainerState {
    /// Writes the state atomically (a new file renamed over the old), so a crash leaves the old
    /// or the new state, never half of one.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(format!("{}.json", file_stem(&self.id)));
        let tmp = dir.join(format!("{}.json.tmp", file_stem(&self.id)));
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &path)
    }

    /// Every state file in `dir`; unreadable ones are logged and skipped.
    pub fn load_all(dir: &Path) -> Vec<ContainerState> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<ContainerState>(&b).map_err(|e| e.to_string())
                }) {
                Ok(state) => out.push(state),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable container state file")
                }
            }
        }
        out
    }
}

/// The start time of process `pid` in clock ticks since boot, if it exists (and is not a
/// zombie: a zombie has ended).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: parse after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is the state (field 3); the start time is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = ContainerState {
            id: "u/c/1".into(),
            pid: Some(42),
            start_ticks: Some(7),
            started_at_ns: 5,
            log_path: "/l/1.log".into(),
            exit: Some(ExitState {
                code: 137,
                signal: Some(9),
                oom_killed: true,
                status_unknown: false,
                finished_at_ns: 9,
            }),
            ..Default::default()
        };
        state.save(dir.path()).unwrap();
        std::fs::write(dir.path().join("junk.json"), "{").unwrap();
        assert_eq!(ContainerState::load_all(dir.path()), vec![state.clone()]);
        let exit: Exit = state.exit.as_ref().unwrap().into();
        assert!(exit.oom_killed);
        assert_eq!(ExitState::from(&exit), state.exit.unwrap());
    }

    #[test]
    fn start_ticks_of_this_process_and_of_none() {
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        assert_eq!(start_ticks(me), start_ticks(me));
        assert_eq!(start_ticks(i32::MAX), None);
    }
}
