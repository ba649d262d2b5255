//! Pod processes left behind by a node agent killed with SIGKILL. An agent keeps its pods
//! running when it dies, by design, so that it adopts them when it starts again; a test that
//! ends by killing its agents must then kill their pods itself, from what the process runtime
//! records in the agent's data dir (one JSON file per container with its pid and the start time
//! that tells that process from a later one with the same pid).

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Kills (SIGKILL, with their process groups) the live processes the process runtime recorded
/// under `dir`, a node agent's data dir; answers how many. Call it once the agent is gone.
pub fn kill_pods_recorded_in(dir: &Path) -> usize {
    let mut killed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                killed += usize::from(kill_recorded(&path));
            }
        }
    }
    killed
}

/// Kills, when dropped, the pods recorded under each of its node agents' data dirs: declared
/// before the agents' guards, it runs after them, also when the test fails.
pub struct KillPodsOnDrop(pub Vec<std::path::PathBuf>);

impl Drop for KillPodsOnDrop {
    fn drop(&mut self) {
        for dir in &self.0 {
            kill_pods_recorded_in(dir);
        }
    }
}

/// Kills the process recorded in the container file `path` if it is still that process.
fn kill_recorded(path: &Path) -> bool {
    let Some(record) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return false;
    };
    let (Some(pid), Some(ticks)) = (
        record.get("pid").and_then(Value::as_i64),
        record.get("start_ticks").and_then(Value::as_u64),
    ) else {
        return false;
    };
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 1 || start_ticks(pid) != Some(ticks) {
        return false;
    }
    // Each container runs in a process group of its own, led by the recorded process.
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    true
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_recorded_live_process_is_killed_and_a_stale_record_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ticks = start_ticks(pid).expect("a live process has a start time");
        let containers = dir.path().join("containers");
        std::fs::create_dir(&containers).unwrap();
        // A record of the same pid with another start time is another process: left alone.
        std::fs::write(
            containers.join("stale.json"),
            serde_json::json!({"pid": pid, "start_ticks": ticks + 1}).to_string(),
        )
        .unwrap();
        assert_eq!(kill_pods_recorded_in(dir.path()), 0);
        std::fs::write(
            containers.join("live.json"),
            serde_json::json!({"pid": pid, "start_ticks": ticks}).to_string(),
        )
        .unwrap();
        assert_eq!(kill_pods_recorded_in(dir.path()), 1);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }
}
