//! The node agent killed with SIGKILL and started again over the same data directory, with the
//! real binaries: it adopts the processes it started (same pid, no duplicate, restart count
//! unchanged, logs going on), records one that died meanwhile as ended with an unknown status
//! and restarts it, and stops the pods deleted while it was down. `--leave-running` hands the
//! pods to the next agent on a clean stop.

mod support;

use serde_json::{json, Value};

/// Kills every process whose command line holds one of the markers when dropped, so that a
/// failing test leaves nothing behind (the agents that would stop them are killed with -9).
struct Reaper(Vec<String>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for marker in &self.0 {
            for pid in pids_with(marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The live (not zombie) processes whose command line contains `marker`.
fn pids_with(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let state = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .next()?
                .to_owned();
            (String::from_utf8_lossy(&cmdline).contains(marker) && state != "Z").then_some(pid)
        })
        .collect()
}

fn ticker(name: &str, marker: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "n1",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox", "command": [
                "sh", "-c", "echo started; while true; do echo tick; sleep 0.2; done", marker
            ]}]
        }
    })
}

struct Cluster {
    /// HTTP to the server (no timeout: logs are followed); the cluster derefs to it.
    http: minik_testkit::Http,
    node: Option<support::Running>,
    _server: support::Running,
    node_dir: tempfile::TempDir,
    _server_dir: tempfile::TempDir,
}

impl std::ops::Deref for Cluster {
    type Target = minik_testkit::Http;
    fn deref(&self) -> &minik_testkit::Http {
        &self.http
    }
}

impl Cluster {
    async fn start(node_flags: &[&str]) -> Cluster {
        let server_dir = tempfile::tempdir().unwrap();
        let node_dir = tempfile::tempdir().unwrap();
        let server = support::MINIK.server(server_dir.path(), &[]);
        let mut cluster = Cluster {
            http: minik_testkit::Http::without_timeout(&server.base),
            _server: server,
            node: None,
            node_dir,
            _server_dir: server_dir,
        };
        cluster.start_node(node_flags).await;
        cluster
    }

    /// Starts an agent over the cluster's node directory and waits for a heartbeat from it.
    async fn start_node(&mut self, flags: &[&str]) {
        let before = self.heartbeat().await;
        self.node = Some(support::MINIK.node(&self.base, "n1", self.node_dir.path(), flags));
        support::wait_for(
            "a heartbeat from the new agent",
            support::DEADLINE,
            || async {
                let now = self.heartbeat().await?;
                (Some(&now) != before.as_ref()).then_some(())
            },
        )
        .await;
    }

    fn kill9_node(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.kill9();
        }
    }

    /// The node's last heartbeat: its Lease's renew time (microseconds), which its agent
    /// renews every period.
    async fn heartbeat(&self) -> Option<String> {
        let lease = self
            .get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            .await?;
        lease["spec"]["renewTime"].as_str().map(str::to_owned)
    }

    async fn get(&self, path: &str) -> Option<Value> {
        self.http.get_json(path).await
    }

    async fn text(&self, path: &str) -> Option<String> {
        self.http.get_text(path).await
    }

    async fn create(&self, pod: &Value) {
        let created = self.http.post("/api/v1/namespaces/default/pods", pod).await;
        assert_eq!(created.code, 201, "{}", created.body);
    }

    async fn delete(&self, name: &str, query: &str) {
        let response = self
            .client
            .delete(format!(
                "{}/api/v1/namespaces/default/pods/{name}{query}",
                self.base
            ))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    async fn pod_until(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        self.http.wait_until(what, &path, check).await
    }

    /// Waits for the pod to run, with exactly one process for its container; returns its pid.
    async fn running_pid(&self, name: &str, marker: &str) -> i32 {
        self.pod_until(name, "the pod to run", |p| {
            p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
        support::wait_for("the container's process", support::DEADLINE, || async {
            match pids_with(marker).as_slice() {
                [pid] => Some(*pid),
                _ => None,
            }
        })
        .await
    }

    /// Waits until the pod's log, read through the API, has more ticks than `after`.
    async fn log_grows(&self, name: &str, after: usize) -> usize {
        support::wait_for("more log through the API", support::DEADLINE, || async {
            let log = self
                .text(&format!("/api/v1/namespaces/default/pods/{name}/log"))
                .await?;
            let ticks = log.matches("tick").count();
            (ticks > after).then_some(ticks)
        })
        .await
    }
}

fn restart_count(pod: &Value) -> i64 {
    pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_adopts_its_pods_and_stops_those_deleted_meanwhile() {
    let id = std::process::id();
    let (m1, m2, m3) = (
        format!("adopt-keep-{id}"),
        format!("adopt-graceful-{id}"),
        format!("adopt-forced-{id}"),
    );
    let _reaper = Reaper(vec![m1.clone(), m2.clone(), m3.clone()]);
    let mut c = Cluster::start(&[]).await;
    c.create(&ticker("keep", &m1)).await;
    let pid = c.running_pid("keep", &m1).await;
    let ticks = c.log_grows("keep", 0).await;

    // The agent dies; its container does not.
    c.kill9_node();
    assert_eq!(pids_with(&m1), [pid], "the container outlived its agent");

    c.start_node(&[]).await;
    // The new agent serves the container's log (it knows the pod again), and the log goes on:
    // what was written while no agent ran included.
    c.log_grows("keep", ticks).await;
    // Let it pass over the pod more than once (sync and heartbeat every second).
    let beat = c.heartbeat().await;
    support::wait_for("two more heartbeats", support::DEADLINE, || async {
        let now = c.heartbeat().await;
        (now != beat).then_some(())
    })
    .await;
    let beat = c.heartbeat().await;
    support::wait_for("one more heartbeat", support::DEADLINE, || async {
        (c.heartbeat().await != beat).then_some(())
    })
    .await;
    assert_eq!(pids_with(&m1), [pid], "adopted, not started again");
    let pod = c.get("/api/v1/namespaces/default/pods/keep").await.unwrap();
    assert_eq!(restart_count(&pod), 0, "{pod}");
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(pod["status"]["containerStatuses"][0]["state"]["running"].is_object());

    // Two more pods; the agent dies again and both are deleted meanwhile, one gracefully (the
    // object waits for the agent) and one forced (the object is gone at once).
    c.create(&ticker("graceful", &m2)).await;
    c.create(&ticker("forced", &m3)).await;
    c.running_pid("graceful", &m2).await;
    c.running_pid("forced", &m3).await;
    c.kill9_node();
    c.delete("graceful", "").await;
    c.delete("forced", "?gracePeriodSeconds=0").await;
    assert!(c
        .get("/api/v1/namespaces/default/pods/forced")
        .await
        .is_none());
    assert_eq!(pids_with(&m2).len(), 1);
    assert_eq!(pids_with(&m3).len(), 1);

    c.start_node(&[]).await;
    support::wait_for(
        "the deleted pods' processes to stop",
        support::DEADLINE,
        || async { (pids_with(&m2).is_empty() && pids_with(&m3).is_empty()).then_some(()) },
    )
    .await;
    support::wait_for(
        "the graceful deletion to finish",
        support::DEADLINE,
        || async {
            c.get("/api/v1/namespaces/default/pods/graceful")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert_eq!(pids_with(&m1), [pid], "the pod that stays keeps running");
    let state_files = std::fs::read_dir(c.node_dir.path().join("containers"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(state_files, 1, "only the running container's state is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_died_while_the_agent_was_down_is_restarted_and_reported() {
    let marker = format!("adopt-died-{}", std::process::id());
    let _reaper = Reaper(vec![marker.clone()]);
    let mut c = Cluster::start(&[]).await;
    c.create(&ticker("dies", &marker)).await;
    let pid = c.running_pid("dies", &marker).await;
    c.kill9_node();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    support::wait_for("the container to die", support::DEADLINE, || async {
        pids_with(&marker).is_empty().then_some(())
    })
    .await;

    c.start_node(&[]).await;
    let pod = c
        .pod_until("dies", "a restart after the unseen death", |p| {
            restart_count(p) == 1
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["reason"], "ContainerStatusUnknown", "{last}");
    assert_eq!(last["exitCode"], 137);
    let now = pids_with(&marker);
    assert_eq!(now.len(), 1, "one new process: {now:?}");
    assert_ne!(now[0], pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_running_hands_the_pods_to_the_next_agent() {
    let marker = format!("adopt-upgrade-{}", std::process::id());
    let _reaper = Reaper(vec![marker.clone()]);
    let mut c = Cluster::start(&["--leave-running"]).await;
    c.create(&ticker("upgrade", &marker)).await;
    let pid = c.running_pid("upgrade", &marker).await;
    let mut node = c.node.take().unwrap();
    let status = node.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(pids_with(&marker), [pid], "left running");

    // The next agent (stopping its pods on exit, the default) takes it over.
    c.start_node(&[]).await;
    let ticks = c.log_grows("upgrade", 0).await;
    c.log_grows("upgrade", ticks).await;
    assert_eq!(pids_with(&marker), [pid]);
    let pod = c
        .get("/api/v1/namespaces/default/pods/upgrade")
        .await
        .unwrap();
    assert_eq!(restart_count(&pod), 0);

    let mut node = c.node.take().unwrap();
    assert!(node.stop().success());
    assert!(pids_with(&marker).is_empty(), "stopped by default");
}
