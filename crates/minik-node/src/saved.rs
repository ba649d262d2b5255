//! What the agent keeps on disk about each pod, so that a restarted agent goes on where the
//! last one stopped: which instance of each container is current, how many times it was
//! restarted, how its last run ended, and the host ports the pod was given. One small JSON file
//! per pod, `pods/{namespace}_{name}_{uid}/pod.json` under the data directory, next to its logs;
//! written when it changes, removed with the pod. The processes themselves are the runtime's
//! business (`runtime/state.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pod::{ContainerRecord, PodRecord, Terminated};
use crate::runtime::{from_nanos, nanos, ExitState};
use crate::spec::PortBinding;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPod {
    /// `namespace/name`.
    pub key: String,
    pub uid: String,
    pub start_time_ns: u64,
    pub containers: BTreeMap<String, SavedContainer>,
    /// Per container (in spec order): (port name, containerPort, host port).
    pub ports: Vec<Vec<(Option<String>, i32, u16)>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedContainer {
    pub instance: Option<String>,
    pub attempts: u32,
    pub restart_count: i32,
    pub terminated: Option<SavedTerminated>,
    pub last_terminated: Option<SavedTerminated>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTerminated {
    pub exit: ExitState,
    pub started_at_ns: u64,
    pub container_id: String,
}

impl From<&Terminated> for SavedTerminated {
    fn from(t: &Terminated) -> Self {
        SavedTerminated {
            exit: ExitState::from(&t.exit),
            started_at_ns: nanos(t.started_at),
            container_id: t.container_id.clone(),
        }
    }
}

impl From<&SavedTerminated> for Terminated {
    fn from(t: &SavedTerminated) -> Self {
        Terminated {
            exit: (&t.exit).into(),
            started_at: from_nanos(t.started_at_ns),
            container_id: t.container_id.clone(),
        }
    }
}

impl SavedPod {
    pub fn of(key: &str, record: &PodRecord, ports: &[Vec<PortBinding>]) -> SavedPod {
        SavedPod {
            key: key.to_owned(),
            uid: record.uid.clone(),
            start_time_ns: nanos(record.start_time),
            containers: record
                .containers
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        SavedContainer {
                            instance: c.instance.clone(),
                            attempts: c.attempts,
                            restart_count: c.restart_count,
                            terminated: c.terminated.as_ref().map(Into::into),
                            last_terminated: c.last_terminated.as_ref().map(Into::into),
                            image_id: c.image_id.clone(),
                            image: c.image.clone(),
                        },
                    )
                })
                .collect(),
            ports: ports
                .iter()
                .map(|c| {
                    c.iter()
                        .map(|p| (p.name.clone(), p.container_port, p.host_port))
                        .collect()
                })
                .collect(),
        }
    }

    /// The record the agent works with. Back-off timers start afresh.
    pub fn record(&self) -> PodRecord {
        let mut record = PodRecord::new(&self.uid, from_nanos(self.start_time_ns));
        for (name, c) in &self.containers {
            record.containers.insert(
                name.clone(),
                ContainerRecord {
                    instance: c.instance.clone(),
                    attempts: c.attempts,
                    restart_count: c.restart_count,
                    terminated: c.terminated.as_ref().map(Into::into),
                    last_terminated: c.last_terminated.as_ref().map(Into::into),
                    image_id: c.image_id.clone(),
                    image: c.image.clone(),
                    ..Default::default()
                },
            );
        }
        record
    }

    pub fn port_bindings(&self) -> Vec<Vec<PortBinding>> {
        self.ports
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(name, container_port, host_port)| PortBinding {
                        name: name.clone(),
                        container_port: *container_port,
                        host_port: *host_port,
                    })
                    .collect()
            })
            .collect()
    }

    /// Writes the file atomically (a new file renamed over the old one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }

    /// Every `pods/*/pod.json` under `data_dir`; unreadable ones are logged and skipped.
    pub fn load_all(data_dir: &Path) -> Vec<SavedPod> {
        let Ok(entries) = std::fs::read_dir(data_dir.join("pods")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join("pod.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<SavedPod>(&bytes) {
                Ok(saved) => out.push(saved),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable pod state file")
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Exit;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_record_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut record = PodRecord::new("u1", t0);
        record.containers.insert(
            "c".into(),
            ContainerRecord {
                instance: Some("u1/c/3".into()),
                attempts: 3,
                restart_count: 2,
                last_terminated: Some(Terminated {
                    exit: Exit::code(3, None, t0 + Duration::from_secs(5)),
                    started_at: t0,
                    container_id: "minik://u1/c/2".into(),
                }),
                ..Default::default()
            },
        );
        let ports = vec![vec![PortBinding {
            name: Some("http".into()),
            container_port: 8000,
            host_port: 31000,
        }]];
        let saved = SavedPod::of("ns/p", &record, &ports);
        let path = dir.path().join("pods/ns_p_u1/pod.json");
        saved.save(&path).unwrap();
        let loaded = SavedPod::load_all(dir.path());
        assert_eq!(loaded, vec![saved]);
        let back = loaded[0].record();
        let c = &back.containers["c"];
        assert_eq!(
            (c.instance.as_deref(), c.attempts, c.restart_count),
            (Some("u1/c/3"), 3, 2)
        );
        assert_eq!(c.last_terminated, record.containers["c"].last_terminated);
        assert_eq!(back.start_time, t0);
        assert_eq!(loaded[0].port_bindings(), ports);
    }
}
