//! The node agent with the real process runtime, end to end: registration and heartbeat, a pod
//! that runs, logs, crashes and restarts with back-off, one that cannot start, graceful deletion
//! that stops the whole process group, and an agent stop that leaves no process behind.

mod support;

use serde_json::{json, Value};

fn pod(name: &str, script: &str, marker: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script, marker]}]
        }
    })
}

/// Fields drop in order: the node stops before the server it talks to.
struct Cluster {
    /// HTTP to the server (no timeout: logs are followed); the cluster derefs to it.
    http: minik_testkit::Http,
    node: support::Running,
    _server: support::Running,
    node_dir: tempfile::TempDir,
    _server_dir: tempfile::TempDir,
}

/// Stops the agent with SIGTERM, so it stops its pods' processes (SIGKILL, which the fields
/// get when dropped, would leave them running, as it should in production).
impl Drop for Cluster {
    fn drop(&mut self) {
        self.node.terminate(std::time::Duration::from_secs(20));
    }
}

impl std::ops::Deref for Cluster {
    type Target = minik_testkit::Http;
    fn deref(&self) -> &minik_testkit::Http {
        &self.http
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let server_dir = tempfile::tempdir().unwrap();
        let node_dir = tempfile::tempdir().unwrap();
        let server = support::MINIK.server(server_dir.path(), &[]);
        let node = support::MINIK.node(&server.base, "n1", node_dir.path(), &[]);
        let cluster = Cluster {
            http: minik_testkit::Http::without_timeout(&server.base),
            _server: server,
            node,
            node_dir,
            _server_dir: server_dir,
        };
        minik_testkit::wait_node_ready(&cluster.client, &cluster.base, "n1").await;
        cluster
    }

    async fn get(&self, path: &str) -> Option<Value> {
        self.http.get_json(path).await
    }

    /// The code and Status message of a failing GET.
    async fn get_status(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (
            code,
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    async fn create(&self, pod: &Value) {
        let created = self.http.post("/api/v1/namespaces/default/pods", pod).await;
        assert_eq!(created.code, 201, "{}", created.body);
    }

    async fn pod_until(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        self.http.wait_until(what, &path, check).await
    }

    /// The pod `name` once its first container has restarted `times` times or more.
    async fn restarted(&self, name: &str, what: &str, times: i64) -> Value {
        self.pod_until(name, what, |p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= times
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_capacity_labels_and_heartbeats() {
    let c = Cluster::start().await;
    let node = c.get("/api/v1/nodes/n1").await.unwrap();
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert!(node["status"]["capacity"]["cpu"].is_string());
    assert!(node["status"]["allocatable"]["memory"]
        .as_str()
        .unwrap()
        .ends_with("Ki"));
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");
    assert_eq!(node["status"]["conditions"][0]["status"], "True");
    // The heartbeat is the node's Lease, renewed every period (as the kubelet's); the status is
    // written when it changes.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
    let first = support::wait_for("the node's lease", support::DEADLINE, || async {
        let lease = c.get(lease_path).await?;
        assert_eq!(lease["spec"]["holderIdentity"], "n1");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        Some(lease["spec"]["renewTime"].as_str()?.to_owned())
    })
    .await;
    let renewed = |after: String| {
        let c = &c;
        async move {
            support::wait_for("a renewed lease", support::DEADLINE, || async {
                let lease = c.get(lease_path).await?;
                let now = lease["spec"]["renewTime"].as_str()?.to_owned();
                (now != after).then_some(now)
            })
            .await
        }
    };
    let second = renewed(first).await;
    // Between renewals the status is not written again while it says the same.
    let heartbeat = |node: Value| node["status"]["conditions"][0]["lastHeartbeatTime"].clone();
    let before = heartbeat(c.get("/api/v1/nodes/n1").await.unwrap());
    let third = renewed(second).await;
    renewed(third).await;
    let after = heartbeat(c.get("/api/v1/nodes/n1").await.unwrap());
    assert_eq!(
        before, after,
        "the Ready condition was written again unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_logs_and_stops_gracefully_with_its_process_group() {
    let c = Cluster::start().await;
    let marker = format!("marker-{}", std::process::id());
    c.create(&pod(
        "web",
        "echo hello from $POD_NAME on $NODE_NAME; sleep 300 & wait",
        &marker,
        "Always",
    ))
    .await;
    let running = c
        .pod_until("web", "web to run", |p| {
            p["status"]["phase"] == "Running"
                && p["status"]["containerStatuses"][0]["ready"] == true
        })
        .await;
    assert_eq!(running["status"]["podIP"], "127.0.0.1");
    let ready = running["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert!(support::process_with(&marker));
    let log = support::wait_for("the log line", support::DEADLINE, || async {
        let mut found = None;
        for entry in walk(c.node_dir.path()) {
            if entry.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&entry).unwrap_or_default();
                if !text.is_empty() {
                    found = Some(text);
                }
            }
        }
        found
    })
    .await;
    // On disk, in the kubelet's CRI format: timestamp, stream, full-line tag, the line.
    let (stamp, rest) = log.split_once(' ').unwrap();
    assert_eq!(rest, "stdout F hello from web on n1\n");
    assert!(stamp.ends_with('Z') && stamp.len() == 30, "{stamp}");
    let stamped = c
        .client
        .get(format!(
            "{}/api/v1/namespaces/default/pods/web/log?timestamps=true",
            c.base
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(stamped, format!("{stamp} hello from web on n1\n"));
    let through_api = c
        .client
        .get(format!("{}/api/v1/namespaces/default/pods/web/log", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(through_api.status().as_u16(), 200);
    assert_eq!(through_api.text().await.unwrap(), "hello from web on n1\n");
    let bad = c
        .get_status("/api/v1/namespaces/default/pods/web/log?container=nope")
        .await;
    assert_eq!(
        bad,
        (400, "container nope is not valid for pod web".to_string())
    );

    let response = c
        .client
        .delete(format!("{}/api/v1/namespaces/default/pods/web", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    support::wait_for(
        "the pod to be removed by its node",
        support::DEADLINE,
        || async {
            c.get("/api/v1/namespaces/default/pods/web")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    support::wait_for("the processes to be gone", support::DEADLINE, || async {
        (!support::process_with(&marker)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_pod_restarts_with_back_off_and_a_broken_one_says_why() {
    let c = Cluster::start().await;
    c.create(&pod(
        "crash",
        "echo crashing; exit 3",
        "crash-marker",
        "Always",
    ))
    .await;
    let crashed = c.restarted("crash", "restarts", 2).await;
    let status = &crashed["status"]["containerStatuses"][0];
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    let previous = c
        .client
        .get(format!(
            "{}/api/v1/namespaces/default/pods/crash/log?previous=true",
            c.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(previous.text().await.unwrap(), "crashing\n");
    c.pod_until("crash", "CrashLoopBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;

    let mut missing = pod("missing", "", "", "Always");
    missing["spec"]["containers"][0]["command"] = json!(["no-such-program-xyz"]);
    c.create(&missing).await;
    let waiting = c
        .pod_until("missing", "a waiting reason", |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CreateContainerError"
        })
        .await;
    assert_eq!(waiting["status"]["phase"], "Pending");
    assert_eq!(
        waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "executable file not found in $PATH: \"no-such-program-xyz\""
    );

    let mut completes = pod("job", "exit 0", "job-marker", "Never");
    completes["metadata"]["name"] = json!("job");
    c.create(&completes).await;
    let done = c
        .pod_until("job", "success", |p| p["status"]["phase"] == "Succeeded")
        .await;
    assert_eq!(
        done["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_agent_stops_its_pods() {
    let mut c = Cluster::start().await;
    let marker = format!("agent-stop-{}", std::process::id());
    c.create(&pod("long", "sleep 300 & wait", &marker, "Always"))
        .await;
    c.pod_until("long", "long to run", |p| p["status"]["phase"] == "Running")
        .await;
    assert!(support::process_with(&marker));
    let status = c.node.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        !support::process_with(&marker),
        "a pod process outlived its agent"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_gate_readiness_and_restart_a_hung_process() {
    let c = Cluster::start().await;
    // Serves HTTP on the port minik gives it; ready once the server answers.
    let web = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "n1", "containers": [{
            "name": "web", "image": "python:3",
            "command": ["sh", "-c", "echo port=$PORT; exec python3 -m http.server $PORT --bind 127.0.0.1"],
            "ports": [{"name": "http", "containerPort": 8000}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
        }]}
    });
    c.create(&web).await;
    let ready = c
        .pod_until("web", "web to be ready", |p| {
            p["status"]["containerStatuses"][0]["ready"] == true
        })
        .await;
    assert_eq!(ready["status"]["phase"], "Running");
    let log = support::wait_for("the port in the log", support::DEADLINE, || async {
        let text = c
            .client
            .get(format!("{}/api/v1/namespaces/default/pods/web/log", c.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.starts_with("port=").then_some(text)
    })
    .await;
    let port: u16 = log
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("port=")
        .parse()
        .unwrap();
    let answer = c
        .client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);

    // Running but never ready: its readiness endpoint answers 404.
    let mut not_ready = web.clone();
    not_ready["metadata"]["name"] = json!("not-ready");
    not_ready["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = json!("/missing");
    c.create(&not_ready).await;
    let p = c
        .pod_until("not-ready", "not-ready to run", |p| {
            p["status"]["phase"] == "Running"
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);

    // Hung: nothing answers on its port, so the liveness probe fails and it is restarted.
    let hung = hung_pod("hung", "hung", 2);
    c.create(&hung).await;
    let restarted = c.restarted("hung", "a liveness restart", 1).await;
    let last = &restarted["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 143, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_and_tail_through_the_api() {
    let c = Cluster::start().await;
    let script = "for i in 1 2 3; do echo line $i; done; while true; do echo tick; sleep 0.2; done";
    c.create(&pod("talker", script, "talker-marker", "Always"))
        .await;
    c.pod_until("talker", "talker to run", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    // No node has this label, so the scheduler leaves the pod unbound.
    let unbound = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unbound"},
                         "spec": {"nodeSelector": {"minik.test/none": "x"},
                                  "containers": [{"name": "c", "image": "busybox"}]}});
    c.create(&unbound).await;
    assert_eq!(
        c.get_status("/api/v1/namespaces/default/pods/unbound/log")
            .await,
        (400, "pod unbound does not have a host assigned".to_string())
    );
    let tail = support::wait_for("three lines", support::DEADLINE, || async {
        let text = c
            .client
            .get(format!(
                "{}/api/v1/namespaces/default/pods/talker/log?tailLines=2",
                c.base
            ))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (text.lines().count() == 2).then_some(text)
    })
    .await;
    assert_eq!(tail.lines().count(), 2);
    // Following: more arrives after the first chunk, on the same connection.
    let mut follow = c
        .client
        .get(format!(
            "{}/api/v1/namespaces/default/pods/talker/log?follow=true",
            c.base
        ))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while seen.matches("tick").count() < 3 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), follow.chunk())
            .await
            .expect("more log within 10s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.starts_with("line 1\nline 2\nline 3\n"), "{seen}");
}

impl Cluster {
    /// The events about pod `name`, as (reason, message, type, fieldPath, source host).
    async fn events_of(&self, name: &str) -> Vec<(String, String, String, String, String)> {
        let list = self
            .get("/api/v1/namespaces/default/events")
            .await
            .unwrap_or(Value::Null);
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|e| e["involvedObject"]["name"] == name)
                    .map(|e| {
                        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                        (
                            s(&e["reason"]),
                            s(&e["message"]),
                            s(&e["type"]),
                            s(&e["involvedObject"]["fieldPath"]),
                            s(&e["source"]["host"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for an event about `pod` with `reason` whose message passes `check`.
    async fn event(
        &self,
        pod: &str,
        reason: &str,
        check: impl Fn(&str) -> bool,
    ) -> (String, String, String, String, String) {
        support::wait_for(
            &format!("a {reason} event about {pod}"),
            support::DEADLINE,
            || async {
                self.events_of(pod)
                    .await
                    .into_iter()
                    .find(|e| e.0 == reason && check(&e.1))
            },
        )
        .await
    }

    async fn waiting(&self, name: &str, reason: &str) -> String {
        let pod = self
            .pod_until(name, &format!("{name} to wait with {reason}"), |p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
            })
            .await;
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_records_kubelet_events() {
    let c = Cluster::start().await;
    c.create(&pod(
        "evented",
        "sleep 300 & wait",
        "evented-marker",
        "Always",
    ))
    .await;
    c.pod_until("evented", "evented to run", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    let pulled = c.event("evented", "Pulled", |_| true).await;
    assert!(
        pulled.1.contains("\"sh\" resolved to /") && pulled.1.contains("\"busybox\""),
        "{pulled:?}"
    );
    assert_eq!(
        (pulled.2.as_str(), pulled.3.as_str(), pulled.4.as_str()),
        ("Normal", "spec.containers{main}", "n1")
    );
    c.event("evented", "Created", |m| m == "Created container: main")
        .await;
    c.event("evented", "Started", |m| m == "Started container main")
        .await;

    c.create(&pod("crashes", "exit 1", "crashes-marker", "Always"))
        .await;
    let backoff = c
        .event("crashes", "BackOff", |m| {
            m.starts_with("Back-off restarting failed container main in pod crashes_default(")
        })
        .await;
    assert_eq!(backoff.2, "Warning");

    let hung = hung_pod("unhealthy", "main", 1);
    c.create(&hung).await;
    let unhealthy = c
        .event("unhealthy", "Unhealthy", |m| {
            m.starts_with("Liveness probe failed: ")
        })
        .await;
    assert_eq!(unhealthy.2, "Warning");
    c.event("unhealthy", "Killing", |m| {
        m == "Container main failed liveness probe, will be restarted"
    })
    .await;

    let response = c
        .client
        .delete(format!("{}/api/v1/namespaces/default/pods/evented", c.base))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    c.event("evented", "Killing", |m| m == "Stopping container main")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_waits_with_a_reason_an_event_and_back_off() {
    let c = Cluster::start().await;

    let mut no_dir = pod("no-dir", "true", "", "Always");
    no_dir["spec"]["containers"][0]["workingDir"] = json!("/no/such/dir-xyz");
    c.create(&no_dir).await;
    let message = c.waiting("no-dir", "CreateContainerError").await;
    assert_eq!(
        message,
        "working directory \"/no/such/dir-xyz\" does not exist"
    );
    let failed = c
        .event("no-dir", "Failed", |m| m.contains("/no/such/dir-xyz"))
        .await;
    assert_eq!(
        (failed.1.as_str(), failed.2.as_str()),
        (
            "Error: working directory \"/no/such/dir-xyz\" does not exist",
            "Warning"
        )
    );

    let mut missing = pod("no-program", "", "", "Always");
    missing["spec"]["containers"][0]["command"] = json!(["no-such-program-xyz"]);
    c.create(&missing).await;
    c.event("no-program", "Failed", |m| {
        m == "Error: executable file not found in $PATH: \"no-such-program-xyz\""
    })
    .await;

    // Someone else holds the host port.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut wants_port = pod("port-held", "sleep 300", "port-held-marker", "Always");
    wants_port["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 8080, "hostPort": port}]);
    c.create(&wants_port).await;
    let message = c.waiting("port-held", "RunContainerError").await;
    assert!(
        message.starts_with(&format!(
            "hostPort {port} is already in use on the node (address 127.0.0.1): "
        )),
        "{message}"
    );
    c.event("port-held", "Failed", |m| {
        m.contains(&format!("hostPort {port}"))
    })
    .await;
    assert!(!support::process_with("port-held-marker"));
    // Freed, it starts on the next try (back-off is short in tests).
    drop(held);
    c.pod_until("port-held", "port-held to run once the port is free", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    })
    .await;

    // A probe on a port the container does not declare.
    let mut bad_probe = pod("bad-probe", "sleep 300", "bad-probe-marker", "Always");
    bad_probe["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/", "port": "nope"}});
    c.create(&bad_probe).await;
    let message = c.waiting("bad-probe", "CreateContainerConfigError").await;
    assert_eq!(
        message,
        "readinessProbe of container main: port name \"nope\" is not a port of the container"
    );

    // The agent is alive and well through all of it.
    let node = c.get("/api/v1/nodes/n1").await.unwrap();
    assert!(node["status"]["conditions"][0]["status"] == "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_oom_killed_where_cgroups_allow() {
    if let Err(why) = minik_node::runtime::MemoryCgroups::detect() {
        minik_testkit::cannot_run("memory cgroups the agent can write", why);
        return;
    }
    let c = Cluster::start().await;
    let hog = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
        "spec": {"nodeName": "n1", "restartPolicy": "Never", "containers": [{
            "name": "hog", "image": "python:3",
            "command": ["python3", "-c", "a = []\nwhile True: a.append(bytearray(1 << 20))"],
            "resources": {"limits": {"memory": "50Mi"}}
        }]}
    });
    c.create(&hog).await;
    let done = c
        .pod_until("hog", "the hog to be killed", |p| {
            p["status"]["phase"] == "Failed"
        })
        .await;
    let terminated = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137);
}

/// A pod on n1 whose one container `container` sleeps while its liveness probe knocks on a
/// port nothing listens on, so that it fails after two periods of a second.
fn hung_pod(name: &str, container: &str, grace_seconds: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": grace_seconds, "containers": [{
            "name": container, "image": "busybox", "command": ["sleep", "300"],
            "ports": [{"containerPort": 8080}],
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
        }]}
    })
}

/// Init containers run one at a time, in order, each to success, before the app container;
/// their statuses, the Initialized condition and `logs -c INIT` are as Kubernetes'. One that
/// fails under restartPolicy Never fails the pod, and its app container never starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_app() {
    let c = Cluster::start().await;
    let order = c.node_dir.path().join("order.txt");
    let step = |name: &str, script: String| json!({"name": name, "image": "busybox", "command": ["sh", "-c", script]});
    let file = order.display().to_string();
    c.create(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ordered"},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Never",
            "initContainers": [
                step("first", format!("echo first >> {file}; echo first ran")),
                step("second", format!("test -s {file} && echo second >> {file}")),
            ],
            "containers": [step("app", format!("echo app >> {file}"))],
        }
    }))
    .await;
    let done = c
        .pod_until("ordered", "the pod to succeed", |p| {
            p["status"]["phase"] == "Succeeded"
        })
        .await;
    assert_eq!(
        std::fs::read_to_string(&order).unwrap(),
        "first\nsecond\napp\n"
    );
    let inits = done["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    for init in inits {
        assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    }
    let initialized = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(initialized["status"], "True");
    let log = c
        .http
        .get_text("/api/v1/namespaces/default/pods/ordered/log?container=first")
        .await;
    assert_eq!(log.as_deref(), Some("first ran\n"));
    // A failing init container under restartPolicy Never: the pod fails, the app never runs.
    c.create(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "broken"},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Never",
            "initContainers": [step("setup", "exit 3".into())],
            "containers": [step("app", format!("echo broken-app >> {file}"))],
        }
    }))
    .await;
    let failed = c
        .pod_until("broken", "the pod to fail", |p| {
            p["status"]["phase"] == "Failed"
        })
        .await;
    assert_eq!(
        failed["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    // kubectl's STATUS column, as the server's table prints it.
    let table = c
        .client
        .get(format!("{}/api/v1/namespaces/default/pods/broken", c.base))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(table["rows"][0]["cells"][2], "Init:Error", "{table}");
    assert!(!std::fs::read_to_string(&order)
        .unwrap()
        .contains("broken-app"));
}
