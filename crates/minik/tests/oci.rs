//! The `oci` runtime end to end: a server and one `minik node --runtime oci` whose images come
//! from a docker-registry on loopback that `registries.yaml` names as the `docker.io` mirror.
//! Each pod runs as an isolated container made from the busybox test image; the tests read
//! from inside the container through its log (its PID, hostname, user, namespaces, what it may
//! write) and from its status (exit codes, reasons, restarts), and check on the host that a
//! deleted pod leaves no process, mount, cgroup or file behind, also after the agent was killed
//! with SIGKILL and a new one adopted the container.
//!
//! These tests need root, overlayfs and the image tools; every container process, mount and
//! cgroup a test makes is removed when it ends, even if it fails ([`OciCleanup`]).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use minik_testkit::registry::{build_busybox_layout, image_tools, push, Registry};
use minik_testkit::{Http, OciCleanup};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// A server, an agent on the oci runtime and the registry it pulls from, in temp dirs. Dropping
/// it stops the agent with SIGTERM (it stops its containers), then [`OciCleanup`] removes what
/// is left (after a SIGKILL, or a runtime that failed to clean) before the dirs go.
struct Oci {
    http: Http,
    node: Option<support::Running>,
    _server: support::Running,
    cleanup: OciCleanup,
    registry: Registry,
    /// The digest the registry serves for `library/busybox:1.36`.
    digest: String,
    registries: PathBuf,
    node_dir: tempfile::TempDir,
    _server_dir: tempfile::TempDir,
    build: tempfile::TempDir,
}

impl Drop for Oci {
    fn drop(&mut self) {
        if let Some(node) = &mut self.node {
            node.terminate(Duration::from_secs(20));
        }
    }
}

impl std::ops::Deref for Oci {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Oci {
    /// Everything up, the busybox image pushed as `busybox:1.36`, node `n1` Ready; `None` when
    /// the host cannot run it.
    async fn start() -> Option<Oci> {
        if !minik_testkit::oci_host() || !image_tools() {
            return None;
        }
        let registry = Registry::start()?;
        let build = tempfile::tempdir().unwrap();
        let layout = build_busybox_layout(build.path(), "1.36", &[], &[], &["sh"], &[]);
        let digest = push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");
        let registries = minik_testkit::registry::docker_io_mirror(build.path(), &registry.addr());
        let server_dir = tempfile::tempdir().unwrap();
        let node_dir = tempfile::tempdir().unwrap();
        let cleanup = OciCleanup::new(node_dir.path());
        let server = support::MINIK.server(server_dir.path(), &[]);
        let mut oci = Oci {
            http: Http::new(&server.base),
            node: None,
            _server: server,
            cleanup,
            registry,
            digest,
            registries,
            node_dir,
            _server_dir: server_dir,
            build,
        };
        oci.start_node();
        minik_testkit::wait_node_ready(&oci.http.client, &oci.http.base, "n1").await;
        Some(oci)
    }

    /// Starts an agent on the oci runtime over the node's data dir.
    fn start_node(&mut self) {
        let registries = self.registries.to_str().unwrap().to_owned();
        self.node = Some(support::MINIK.node(
            &self.http.base,
            "n1",
            self.node_dir.path(),
            &[
                "--runtime",
                "oci",
                // Host processes too, for pods whose RuntimeClass names them.
                "--runtime-handlers",
                "process",
                "--pod-max-pids",
                "64",
                "--disable-default-registry-endpoint",
                "--private-registry",
                &registries,
            ],
        ));
    }

    /// Builds another busybox image with this Entrypoint and Cmd and pushes it as `name`
    /// (`library/bare:1`); answers its digest.
    /// Kills the agent with SIGKILL, runs `meanwhile` while none runs, and starts a new one;
    /// returns once the new agent heartbeats.
    async fn restart_node(&mut self, meanwhile: impl FnOnce()) {
        let before = self.heartbeat().await;
        if let Some(mut node) = self.node.take() {
            node.kill9();
        }
        meanwhile();
        self.start_node();
        support::wait_for(
            "a heartbeat from the new agent",
            support::DEADLINE,
            || async {
                let now = self.heartbeat().await;
                (now.is_some() && now != before).then_some(())
            },
        )
        .await;
    }

    fn push_busybox(&self, tag: &str, entrypoint: &[&str], cmd: &[&str], name: &str) -> String {
        let layout = build_busybox_layout(self.build.path(), tag, &[], entrypoint, cmd, &[]);
        push(&layout, tag, &self.registry.addr(), name)
    }

    /// Creates the pod; answers its uid (which the cleanup guard then also looks for).
    async fn create(&self, pod: &Value) -> String {
        let created = self.http.post(PODS, pod).await;
        assert_eq!(created.code, 201, "{}", created.body);
        let uid = created.body["metadata"]["uid"]
            .as_str()
            .expect("a uid")
            .to_owned();
        self.cleanup.track_pod(&uid);
        uid
    }

    async fn pod_until(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.http
            .wait_until(
                &format!("pod {name}: {what}"),
                &format!("{PODS}/{name}"),
                check,
            )
            .await
    }

    /// The container's log as the API serves it (empty if there is none yet).
    async fn log(&self, name: &str, container: &str) -> String {
        self.http
            .get_text(&format!("{PODS}/{name}/log?container={container}"))
            .await
            .unwrap_or_default()
    }

    /// Waits until the container's log holds `text`; answers the log.
    async fn log_with(&self, name: &str, container: &str, text: &str) -> String {
        support::wait_for(
            &format!("{text:?} in the log of {name}/{container}"),
            support::DEADLINE,
            || async {
                let log = self.log(name, container).await;
                if log.contains(text) {
                    Ok(log)
                } else {
                    let pod = self.http.get_json(&format!("{PODS}/{name}")).await;
                    let status = pod.map(|p| p["status"]["containerStatuses"].clone());
                    Err(format!("log {log:?}, statuses {status:?}"))
                }
            },
        )
        .await
    }

    /// Waits until the pod's first container is waiting with `reason`; answers its message.
    async fn waiting(&self, name: &str, reason: &str) -> String {
        let pod = self
            .pod_until(name, &format!("waiting with {reason}"), |p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
            })
            .await;
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Deletes the pod (with its own grace period) and waits until it is gone from the API.
    async fn delete(&self, name: &str) {
        let deleted = self.http.delete(&format!("{PODS}/{name}")).await;
        assert!(deleted.is_success(), "{deleted:?}");
        support::wait_for(
            &format!("pod {name} to be gone"),
            support::DEADLINE,
            || async {
                let answer = self.http.get(&format!("{PODS}/{name}")).await;
                if answer.code == 404 {
                    Ok(())
                } else {
                    Err(answer.body["status"].clone())
                }
            },
        )
        .await;
    }

    /// The node's last heartbeat: its Lease's renew time.
    async fn heartbeat(&self) -> Option<String> {
        let lease = self
            .http
            .get_json("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            .await?;
        lease["spec"]["renewTime"].as_str().map(str::to_owned)
    }
}

/// A pod of one container `main` from `busybox:1.36` running `/bin/sh -c SCRIPT`.
fn pod(name: &str, script: &str, restart_policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main",
                "image": "busybox:1.36",
                "command": ["/bin/sh", "-c", script]
            }]
        }
    })
}

fn terminated(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]["state"]["terminated"]
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The value of the first line `KEY=...` of a log.
fn value<'a>(log: &'a str, key: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_isolated_from_the_host() {
    let Some(c) = Oci::start().await else {
        return;
    };
    // A file in the host's /tmp the container must not see.
    let host_file = tempfile::Builder::new()
        .prefix("minik-oci-hostfile-")
        .tempfile_in("/tmp")
        .unwrap();
    let host_name = host_file.path().file_name().unwrap().to_str().unwrap();
    // Kubernetes turns `$$` into `$`: `$$$$` is the shell's `$$`, `$$(...)` a substitution.
    let script = format!(
        "echo pid=$$$$; echo hostname=$$(hostname); \
         echo init=$$(/bin/busybox tr '\\0' ' ' < /proc/1/cmdline); \
         if ls /tmp/{host_name} >/dev/null 2>&1; then echo hostfile; else echo nohostfile; fi; \
         if ls /bin/busybox >/dev/null 2>&1; then echo imagefile; fi; \
         echo procs=$$(ls /proc | grep -c '^[0-9]'); \
         echo uid=$$(id -u); echo done"
    );
    c.create(&pod("iso", &script, "Never")).await;
    let done = c
        .pod_until("iso", "Succeeded", |p| p["status"]["phase"] == "Succeeded")
        .await;
    let end = terminated(&done);
    assert_eq!(end["exitCode"], 0, "{done}");
    assert_eq!(end["reason"], "Completed", "{done}");
    let status = &done["status"]["containerStatuses"][0];
    assert_eq!(
        status["imageID"],
        format!("docker.io/library/busybox@{}", c.digest),
        "{status}"
    );
    let log = c.log_with("iso", "main", "done").await;
    assert_eq!(value(&log, "pid"), Some("1"), "{log}");
    assert_eq!(value(&log, "hostname"), Some("iso"), "{log}");
    let init = value(&log, "init").unwrap_or_default();
    assert!(init.starts_with("/bin/sh -c echo pid="), "{log}");
    assert!(log.lines().any(|l| l == "nohostfile"), "{log}");
    assert!(log.lines().any(|l| l == "imagefile"), "{log}");
    // Its own PID namespace: the shell, `ls` and `grep` (and a subshell), not the host's.
    let procs: usize = value(&log, "procs")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=5).contains(&procs), "{log}");
    assert_eq!(value(&log, "uid"), Some("0"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_restarts_are_reported_as_the_kubelet_does() {
    let Some(c) = Oci::start().await else {
        return;
    };
    c.create(&pod("fail", "echo failing; exit 3", "Never"))
        .await;
    c.create(&pod("crash", "echo crashing; exit 1", "Always"))
        .await;

    let failed = c
        .pod_until("fail", "Failed", |p| p["status"]["phase"] == "Failed")
        .await;
    let end = terminated(&failed);
    assert_eq!(end["exitCode"], 3, "{failed}");
    assert_eq!(end["reason"], "Error", "{failed}");
    assert_eq!(
        failed["status"]["containerStatuses"][0]["restartCount"], 0,
        "{failed}"
    );
    c.log_with("fail", "main", "failing").await;

    let crashing = c
        .pod_until("crash", "CrashLoopBackOff after restarts", |p| {
            let status = &p["status"]["containerStatuses"][0];
            status["restartCount"].as_i64().unwrap_or(0) >= 2
                && status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    let last = &crashing["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{crashing}");
    assert_eq!(last["reason"], "Error", "{crashing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_context_is_applied() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let mut as_user = pod("uid", "echo uid=$$(id -u); echo done", "Never");
    as_user["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000});
    c.create(&as_user).await;

    let mut read_only = pod("ro", "touch /x; echo touch=$$?; echo done", "Never");
    read_only["spec"]["containers"][0]["securityContext"] = json!({"readOnlyRootFilesystem": true});
    c.create(&read_only).await;

    let mut non_root = pod("nonroot", "echo should-not-run", "Never");
    non_root["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    c.create(&non_root).await;

    // seccompProfile: a new user namespace is allowed unconfined, refused by RuntimeDefault
    // (the pod's profile; a container's own would win); Localhost profiles are not served.
    let unshare = "/bin/busybox unshare -U /bin/busybox true; echo unshare=$$?; echo done";
    c.create(&pod("unconfined", unshare, "Never")).await;
    let mut confined = pod("confined", unshare, "Never");
    confined["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    c.create(&confined).await;
    let mut localhost = pod("localhost", "echo should-not-run", "Never");
    localhost["spec"]["containers"][0]["securityContext"] =
        json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "my.json"}});
    c.create(&localhost).await;

    let log = c.log_with("uid", "main", "done").await;
    assert_eq!(value(&log, "uid"), Some("1000"), "{log}");

    let log = c.log_with("unconfined", "main", "done").await;
    assert_eq!(value(&log, "unshare"), Some("0"), "{log}");
    let log = c.log_with("confined", "main", "done").await;
    assert_ne!(value(&log, "unshare"), Some("0"), "{log}");
    assert!(log.contains("Operation not permitted"), "{log}");
    let message = c.waiting("localhost", "CreateContainerConfigError").await;
    assert!(
        message.contains("seccomp profile type \"Localhost\" is not supported"),
        "{message}"
    );

    let log = c.log_with("ro", "main", "done").await;
    assert_eq!(value(&log, "touch"), Some("1"), "{log}");
    assert!(log.contains("Read-only file system"), "{log}");

    let message = c.waiting("nonroot", "CreateContainerConfigError").await;
    assert!(
        message.starts_with("container has runAsNonRoot and image will run as root"),
        "{message}"
    );
    assert_eq!(c.log("nonroot", "main").await, "", "it never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let Some(c) = Oci::start().await else {
        return;
    };
    // `tail` keeps the whole line in memory: 200 MiB without a newline.
    let mut hog = pod(
        "hog",
        "echo start; /bin/busybox head -c 200m /dev/zero | /bin/busybox tail",
        "Never",
    );
    hog["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "32Mi"}});
    c.create(&hog).await;
    let ended = c
        .pod_until("hog", "Failed", |p| p["status"]["phase"] == "Failed")
        .await;
    let end = terminated(&ended);
    assert_eq!(end["reason"], "OOMKilled", "{ended}");
    assert_eq!(end["exitCode"], 137, "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_containers_of_a_pod_share_its_network_and_hostname() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let namespaces = "echo net=$$(/bin/busybox readlink /proc/self/ns/net); \
                      echo uts=$$(/bin/busybox readlink /proc/self/ns/uts); \
                      echo ipc=$$(/bin/busybox readlink /proc/self/ns/ipc); \
                      echo hostname=$$(hostname)";
    let server = format!(
        "{namespaces}; mkdir -p /tmp/www; echo hello-from-server > /tmp/www/index.html; \
         exec httpd -f -p 127.0.0.1:8080 -h /tmp/www"
    );
    let client = format!(
        "{namespaces}; until wget -qO- http://127.0.0.1:8080/; do sleep 0.1; done; echo done"
    );
    c.create(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pair"},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {"name": "server", "image": "busybox:1.36", "command": ["/bin/sh", "-c", server]},
                {"name": "client", "image": "busybox:1.36", "command": ["/bin/sh", "-c", client]}
            ]
        }
    }))
    .await;
    let done = c
        .pod_until("pair", "the client to end", |p| {
            p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == "client" && s["state"]["terminated"].is_object())
        })
        .await;
    let client_status = done["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "client")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        client_status["state"]["terminated"]["exitCode"], 0,
        "{done}"
    );
    let client_log = c.log_with("pair", "client", "done").await;
    assert!(
        client_log.lines().any(|l| l == "hello-from-server"),
        "{client_log}"
    );
    let server_log = c.log_with("pair", "server", "hostname=").await;
    for key in ["net", "uts", "ipc", "hostname"] {
        let (s, k) = (value(&server_log, key), value(&client_log, key));
        assert!(s.is_some() && s == k, "{key}: {server_log} / {client_log}");
    }
    assert_eq!(value(&client_log, "hostname"), Some("pair"));
    // Namespaces of their own, not the host's.
    for key in ["net", "uts", "ipc"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{key}")).unwrap();
        assert_ne!(
            value(&client_log, key),
            host.to_str(),
            "{key}: {client_log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_leaves_nothing_behind() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let uid = c
        .create(&pod(
            "doomed",
            "trap 'echo stopping; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
            "Always",
        ))
        .await;
    c.pod_until("doomed", "Running", |p| p["status"]["phase"] == "Running")
        .await;
    c.log_with("doomed", "main", "ready").await;
    assert_eq!(c.cleanup.pod_inits(&uid).len(), 1, "one container process");
    assert_eq!(c.cleanup.pod_helpers(&uid).len(), 1, "one monitor");
    assert!(
        !c.cleanup.leftovers().mounts.is_empty(),
        "its sandbox's namespaces are pinned"
    );
    // Its root is mounted in its monitor's mount namespace, not in the node's table.
    let dir = c.cleanup.data_dir().to_string_lossy().into_owned();
    let node_table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let overlays: Vec<&str> = node_table
        .lines()
        .filter(|l| l.contains(" - overlay ") && l.contains(&dir))
        .collect();
    assert!(overlays.is_empty(), "{overlays:?}");
    let monitor = c.cleanup.pod_helpers(&uid)[0];
    let monitor_table = std::fs::read_to_string(format!("/proc/{monitor}/mountinfo")).unwrap();
    assert!(
        monitor_table
            .lines()
            .any(|l| l.contains(" - overlay ") && l.contains(&dir)),
        "the monitor has the root: {monitor_table}"
    );

    c.delete("doomed").await;
    c.cleanup.wait_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_adopts_a_container_after_sigkill() {
    let Some(mut c) = Oci::start().await else {
        return;
    };
    let uid = c
        .create(&pod(
            "kept",
            "echo started; while true; do echo tick; sleep 0.2; done",
            "Always",
        ))
        .await;
    c.pod_until("kept", "Running", |p| p["status"]["phase"] == "Running")
        .await;
    c.log_with("kept", "main", "tick").await;
    let inits = c.cleanup.pod_inits(&uid);
    let monitors = c.cleanup.pod_helpers(&uid);
    assert_eq!(inits.len(), 1, "one container: {inits:?}");
    assert_eq!(monitors.len(), 1, "one monitor: {monitors:?}");

    let ticks = c.log("kept", "main").await.matches("tick").count();
    c.restart_node(|| {
        assert!(alive(inits[0]), "the container outlives its agent");
        assert!(alive(monitors[0]), "so does its monitor");
    })
    .await;
    // A pod the new agent starts: it syncs pods (and has opened the runtime, adopting).
    c.create(&pod(
        "probe",
        "echo probing; while true; do sleep 1; done",
        "Always",
    ))
    .await;
    c.pod_until("probe", "Running", |p| p["status"]["phase"] == "Running")
        .await;
    // The log goes on, through the new agent's pumps.
    support::wait_for(
        "more ticks after the restart",
        support::DEADLINE,
        || async {
            let now = c.log("kept", "main").await.matches("tick").count();
            (now > ticks + 2).then_some(())
        },
    )
    .await;
    let kept = c
        .http
        .get_json(&format!("{PODS}/kept"))
        .await
        .expect("pod kept");
    let status = &kept["status"]["containerStatuses"][0];
    assert_eq!(kept["status"]["phase"], "Running", "{kept}");
    assert!(status["state"]["running"].is_object(), "{kept}");
    assert_eq!(status["restartCount"], 0, "{kept}");
    assert_eq!(c.cleanup.pod_inits(&uid), inits, "the same one container");
    assert_eq!(c.cleanup.pod_helpers(&uid), monitors, "the same monitor");

    c.delete("kept").await;
    c.delete("probe").await;
    c.cleanup.wait_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_without_a_command_cannot_be_created() {
    let Some(c) = Oci::start().await else {
        return;
    };
    c.push_busybox("bare", &[], &[], "library/bare:1");
    c.create(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bare"},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "bare:1"}]
        }
    }))
    .await;
    let message = c.waiting("bare", "CreateContainerError").await;
    assert!(message.contains("no command specified"), "{message}");
}

/// A container that prints and ends at once: its output must be in its log, even when it ended
/// before the agent started reading its pipes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_of_a_container_that_ends_at_once_is_kept() {
    let Some(c) = Oci::start().await else {
        return;
    };
    const PODS_N: usize = 12;
    for i in 0..PODS_N {
        c.create(&pod(
            &format!("quick{i}"),
            &format!("echo hello-{i}"),
            "Never",
        ))
        .await;
    }
    let mut lost = Vec::new();
    for i in 0..PODS_N {
        let name = format!("quick{i}");
        c.pod_until(&name, "Succeeded", |p| p["status"]["phase"] == "Succeeded")
            .await;
        let log = c.log(&name, "main").await;
        if log != format!("hello-{i}\n") {
            lost.push((name, log));
        }
    }
    assert!(lost.is_empty(), "logs without the output: {lost:?}");
}

/// Probes run from inside the pod: an HTTP GET to the container's own port in the pod's network
/// namespace gates readiness, and an exec probe runs in the container (its files, not the
/// host's) and restarts it when it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_the_container_from_inside_its_pod() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let script = "mkdir -p /tmp/www; echo ok > /tmp/www/index.html; touch /tmp/alive; \
                  httpd -p 127.0.0.1:8080 -h /tmp/www; \
                  /bin/busybox sleep 3; rm /tmp/alive; exec /bin/busybox sleep 3600";
    c.create(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probed"},
        "spec": {
            "nodeName": "n1",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web", "image": "busybox:1.36",
                "command": ["/bin/sh", "-c", script],
                "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1}
            }]
        }
    }))
    .await;
    c.pod_until("probed", "the HTTP readiness probe to pass", |p| {
        p["status"]["containerStatuses"][0]["ready"] == true
    })
    .await;
    // /tmp/alive exists only in the container: the exec probe passed there, and fails once it
    // is removed, which restarts the container.
    c.pod_until("probed", "the exec liveness probe to restart it", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    c.delete("probed").await;
}

/// One node, two runtimes: a pod whose RuntimeClass names `process` runs as a host process (the
/// host's hostname), the others in containers (their pod's); a handler the node lacks leaves
/// the pod ContainerCreating with an event that says what the node offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_class_picks_the_runtime() {
    let Some(c) = Oci::start().await else {
        return;
    };
    for (name, handler) in [("host", "process"), ("sandboxed", "runsc")] {
        let created = c
            .http
            .post(
                "/apis/node.k8s.io/v1/runtimeclasses",
                &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler}),
            )
            .await;
        assert!(created.is_success(), "{}", created.body);
    }
    let mut on_host = pod("on-host", "hostname", "Never");
    on_host["spec"]["runtimeClassName"] = json!("host");
    on_host["spec"]["containers"][0]["command"] = json!(["sh", "-c", "hostname"]);
    c.create(&on_host).await;
    c.create(&pod("boxed", "hostname", "Never")).await;
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        c.log_with("on-host", "main", host_name.trim()).await.trim(),
        host_name.trim()
    );
    assert_eq!(c.log_with("boxed", "main", "boxed").await.trim(), "boxed");
    let node = c.http.get_json("/api/v1/nodes/n1").await.unwrap();
    let handlers: Vec<&str> = node["status"]["runtimeHandlers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(handlers, ["oci", "process"]);

    let mut unsupported = pod("unsupported", "true", "Never");
    unsupported["spec"]["runtimeClassName"] = json!("sandboxed");
    c.create(&unsupported).await;
    c.waiting("unsupported", "ContainerCreating").await;
    let events = support::wait_for("a FailedCreatePodSandBox event", support::DEADLINE, || async {
        let list = c
            .http
            .get_json("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=unsupported")
            .await?;
        list["items"].as_array()?.iter().find_map(|e| {
            (e["reason"] == "FailedCreatePodSandBox").then(|| e["message"].as_str().unwrap_or_default().to_owned())
        })
    })
    .await;
    assert_eq!(
        events,
        "Failed to create pod sandbox: no runtime for \"runsc\" is configured on this node (it offers: oci, process)"
    );
}

/// The container's cgroup directory (v1) in `controller`: the one under the node's
/// `minik-oci` parent whose name holds the pod's uid.
fn cgroup_dir(controller: &str, uid: &str) -> Option<std::path::PathBuf> {
    fn find(dir: &Path, uid: &str, depth: usize) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(uid) && dir.ends_with("minik-oci") {
                return Some(path);
            }
            if depth > 0 {
                if let Some(found) = find(&path, uid, depth - 1) {
                    return Some(found);
                }
            }
        }
        None
    }
    find(&Path::new("/sys/fs/cgroup").join(controller), uid, 6)
}

/// CPU requests become shares, CPU limits a CFS quota, and --pod-max-pids a pids limit, in the
/// container's own cgroups, as the kubelet sets them (cgroup v1 here: where the host has only
/// v2 the test says it cannot run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_pids_limits_reach_the_containers_cgroups() {
    let Some(c) = Oci::start().await else {
        return;
    };
    if !Path::new("/sys/fs/cgroup/cpu").is_dir() || !Path::new("/sys/fs/cgroup/pids").is_dir() {
        minik_testkit::cannot_run("cgroup v1 cpu and pids hierarchies", "not mounted");
        return;
    }
    let mut limited = pod("limited", "exec /bin/busybox sleep 3600", "Never");
    limited["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m"}});
    let uid = c.create(&limited).await;
    c.pod_until("limited", "it to run", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    let read = |controller: &str, file: &str| {
        cgroup_dir(controller, &uid)
            .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|v| v.trim().to_owned())
    };
    // The kubelet's conversions: 250m -> 256 shares; 500m -> 50000us per 100000us.
    assert_eq!(read("cpu", "cpu.shares").as_deref(), Some("256"));
    assert_eq!(read("cpu", "cpu.cfs_quota_us").as_deref(), Some("50000"));
    assert_eq!(read("cpu", "cpu.cfs_period_us").as_deref(), Some("100000"));
    assert_eq!(read("pids", "pids.max").as_deref(), Some("64"));
    c.delete("limited").await;
}

/// `minik port-forward` to a pod in a network namespace of its own reaches the container's
/// port there (through the API server and the agent, which connects from inside the
/// namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_a_container_in_its_pod_network_namespace() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let script = "mkdir -p /tmp/www; echo forwarded-page > /tmp/www/index.html; \
                  exec httpd -f -p 127.0.0.1:8080 -h /tmp/www";
    c.create(&pod("web", script, "Never")).await;
    c.pod_until("web", "it to run", |p| p["status"]["phase"] == "Running")
        .await;
    let mut forward = std::process::Command::new(support::MINIK.command().get_program())
        .args(["port-forward", "--server", &c.http.base, "pod/web", ":8080"])
        .env(
            "MINIK_CERTIFICATE_AUTHORITY",
            minik_testkit::ca_for(&c.http.base).expect("the server's CA"),
        )
        .env("HOME", c.node_dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = minik_testkit::lines_of(forward.stdout.take().unwrap());
    let guard = minik_testkit::Running::guard(forward);
    let local = minik_testkit::line_after(&lines, "Forwarding from ", "minik port-forward");
    let local = local.split(" -> ").next().unwrap().to_owned();
    let page = support::wait_for(
        "the page through the forward",
        support::DEADLINE,
        || async {
            let answer = reqwest::get(format!("http://{local}/index.html"))
                .await
                .ok()?;
            let text = answer.text().await.ok()?;
            text.contains("forwarded-page").then_some(text)
        },
    )
    .await;
    assert_eq!(page.trim(), "forwarded-page");
    drop(guard);
    c.delete("web").await;
}

/// `minik exec -it` gets a terminal of the container's own `/dev/pts` (libcontainer opens it
/// after joining the container's mount namespace): `tty` finds its name there. `script` gives
/// `minik exec` a terminal for stdin, as a user's shell would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_tty_gets_a_terminal_of_the_container() {
    let Some(c) = Oci::start().await else {
        return;
    };
    if !Path::new("/usr/bin/script").exists() {
        minik_testkit::cannot_run("script (bsdutils)", "it gives `minik exec -it` a terminal");
        return;
    }
    c.create(&pod("term", "exec /bin/busybox sleep 3600", "Never"))
        .await;
    c.pod_until("term", "it to run", |p| p["status"]["phase"] == "Running")
        .await;
    let minik = support::MINIK.command().get_program().to_owned();
    let inner = format!(
        "{} exec -it --server {} term -- /bin/busybox tty",
        Path::new(&minik).display(),
        c.http.base
    );
    let run = tokio::process::Command::new("/usr/bin/script")
        .args(["-qec", &inner, "/dev/null"])
        .env(
            "MINIK_CERTIFICATE_AUTHORITY",
            minik_testkit::ca_for(&c.http.base).expect("the server's CA"),
        )
        .env("HOME", c.node_dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("minik exec -it ended")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("not a tty"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(out.status.success(), "{:?}: {text:?}", out.status);
    c.delete("term").await;
}

/// `minik attach ARGS` against the test's server, its stdin, stdout and stderr pipes.
fn attach(c: &Oci, args: &[&str]) -> tokio::process::Child {
    let minik = support::MINIK.command().get_program().to_owned();
    tokio::process::Command::new(minik)
        .args(["attach", "--server", &c.http.base])
        .args(args)
        .env(
            "MINIK_CERTIFICATE_AUTHORITY",
            minik_testkit::ca_for(&c.http.base).expect("the server's CA"),
        )
        .env("HOME", c.node_dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("minik attach runs")
}

/// `attach` to an oci container's own process: what a client writes reaches the container's
/// stdin and its answers come back. The stdin (`stdin: true`, not `stdinOnce`) outlives its
/// clients and its agent, since the container's monitor holds it: after a SIGKILL of the
/// agent, a client of the new agent makes the container quit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_writes_to_the_containers_stdin_across_agent_restarts() {
    use tokio::io::AsyncWriteExt;
    let Some(mut c) = Oci::start().await else {
        return;
    };
    let mut talk = pod(
        "talk",
        "while read line; do echo \"got $line\"; [ \"$line\" = quit ] && exit 0; done; exit 9",
        "Never",
    );
    talk["spec"]["containers"][0]["stdin"] = json!(true);
    c.create(&talk).await;
    c.pod_until("talk", "it to run", |p| p["status"]["phase"] == "Running")
        .await;
    let mut first = attach(&c, &["-i", "talk"]);
    first
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\n")
        .await
        .unwrap();
    minik_testkit::read_until(first.stdout.as_mut().unwrap(), "got one", support::DEADLINE).await;
    // The client's stdin ended and the client goes: the container's stdin stays open.
    first.kill().await.unwrap();

    c.restart_node(|| {}).await;
    // Until the new agent has adopted the container, attach is refused; then it works.
    let out = support::wait_for(
        "an attach through the new agent",
        support::DEADLINE,
        || async {
            let mut second = attach(&c, &["-i", "talk"]);
            let mut stdin = second.stdin.take().unwrap();
            stdin.write_all(b"two\nquit\n").await.unwrap();
            drop(stdin);
            let out = tokio::time::timeout(Duration::from_secs(60), second.wait_with_output())
                .await
                .expect("the attach ended with the container")
                .unwrap();
            if out.status.success() {
                Ok(out)
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got two\ngot quit\n");
    let done = c
        .pod_until("talk", "it to end", |p| terminated(p).is_object())
        .await;
    assert_eq!(terminated(&done)["exitCode"], 0, "{done}");
    let log = c.log("talk", "main").await;
    assert_eq!(log, "got one\ngot two\ngot quit\n");
    c.delete("talk").await;
    c.cleanup.wait_clean().await;
}

/// A container with a terminal and `stdinOnce` (what `kubectl run -it` makes): the client's
/// input goes to the terminal the container's monitor holds, the output comes back as a
/// terminal's (echo, `\r\n`), and when the client's input ends the terminal hangs up, as
/// containerd closes a console: the container ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_terminal_with_stdin_once() {
    use tokio::io::AsyncWriteExt;
    let Some(c) = Oci::start().await else {
        return;
    };
    let mut term = pod(
        "term",
        "read line; echo \"got $line\"; /bin/busybox tty; read more; echo \"never $more\"",
        "Never",
    );
    let container = &mut term["spec"]["containers"][0];
    container["stdin"] = json!(true);
    container["stdinOnce"] = json!(true);
    container["tty"] = json!(true);
    c.create(&term).await;
    c.pod_until("term", "it to run", |p| p["status"]["phase"] == "Running")
        .await;
    // No -t: the client's stdin is no terminal. The container's is: the session is one.
    let mut client = attach(&c, &["-i", "term"]);
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    let seen = minik_testkit::read_until(
        client.stdout.as_mut().unwrap(),
        "/dev/pts/",
        support::DEADLINE,
    )
    .await;
    assert!(seen.contains("got hello\r\n"), "{seen:?}");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), client.wait_with_output())
        .await
        .expect("the attach ended with the container")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let done = c
        .pod_until("term", "it to end", |p| terminated(p).is_object())
        .await;
    let log = c.log("term", "main").await;
    assert!(log.contains("got hello"), "{log:?}");
    assert!(
        !log.contains("never"),
        "the terminal did not hang up: {log:?} {done}"
    );
    c.delete("term").await;
    c.cleanup.wait_clean().await;
}

/// Bad input the runtime finds: a working directory that cannot be made (a file is in the way)
/// and a memory limit below what a container needs; each a waiting reason with a message that
/// says why, and nothing left on the host. (A user the image lacks: user.rs's tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_runtime_refuses_waits_with_a_reason() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let mut blocked = pod("blocked", "true", "Never");
    blocked["spec"]["containers"][0]["workingDir"] = json!("/etc/passwd/sub");
    c.create(&blocked).await;
    let mut tiny = pod("tiny", "true", "Never");
    tiny["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1Ki"}});
    c.create(&tiny).await;
    let message = c.waiting("blocked", "CreateContainerError").await;
    assert!(message.contains("/etc/passwd/sub"), "{message}");
    let message = c.waiting("tiny", "CreateContainerError").await;
    assert!(message.contains("memory"), "{message}");
    for name in ["blocked", "tiny"] {
        c.delete(name).await;
    }
    c.cleanup.wait_clean().await;
}

/// The PID and IPC namespaces follow the pod's spec: `hostIPC` gives the host's IPC namespace
/// (the PID one stays the container's own), and `shareProcessNamespace` one PID namespace per
/// pod (held by a pause process), in which a container sees its neighbour's processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_and_ipc_namespaces_follow_the_pod_spec() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let ns = "echo pid=$$(/bin/busybox readlink /proc/self/ns/pid); \
              echo ipc=$$(/bin/busybox readlink /proc/self/ns/ipc); echo done";
    let mut host = pod("host-ns", ns, "Never");
    host["spec"]["hostIPC"] = json!(true);
    c.create(&host).await;
    let log = c.log_with("host-ns", "main", "done").await;
    let own = |key: &str| std::fs::read_link(format!("/proc/self/ns/{key}")).unwrap();
    assert_eq!(value(&log, "ipc"), own("ipc").to_str(), "{log}");
    assert_ne!(value(&log, "pid"), own("pid").to_str(), "{log}");

    // hostPID: the host's PID namespace (its processes visible, this test's among them), and
    // what the container leaves running when its process ends goes with it.
    let script = format!(
        "/bin/busybox sleep 3600 & echo pid=$$(/bin/busybox readlink /proc/self/ns/pid); \
         test -d /proc/{} && echo sees-the-host; echo done",
        std::process::id()
    );
    let mut host_pid = pod("host-pid", &script, "Never");
    host_pid["spec"]["hostPID"] = json!(true);
    c.create(&host_pid).await;
    let log = c.log_with("host-pid", "main", "done").await;
    assert_eq!(value(&log, "pid"), own("pid").to_str(), "{log}");
    assert!(log.contains("sees-the-host"), "{log}");
    c.pod_until("host-pid", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })
    .await;
    c.delete("host-pid").await;

    let shared = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shared"},
        "spec": {
            "nodeName": "n1",
            "shareProcessNamespace": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "sleeper", "image": "busybox:1.36",
                 "command": ["/bin/busybox", "sleep", "3600"]},
                {"name": "looker", "image": "busybox:1.36",
                 "command": ["/bin/sh", "-c",
                    "until /bin/busybox ps | /bin/busybox grep -q '[s]leep 3600'; do /bin/busybox sleep 0.2; done; \
                     echo seen; echo pid=$$(/bin/busybox readlink /proc/self/ns/pid); exec /bin/busybox sleep 3600"]}
            ]
        }
    });
    c.create(&shared).await;
    let log = c.log_with("shared", "looker", "seen").await;
    let own = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        value(&log, "pid"),
        own.to_str(),
        "a namespace of the pod's own: {log}"
    );
    c.delete("shared").await;
    c.delete("host-ns").await;
    c.cleanup.wait_clean().await;
}

/// The docs' "shared volume" pattern and the API-backed volumes, inside containers: two
/// containers see each other's files in an emptyDir, a ConfigMap (whole and one key by
/// `subPath`) and a Secret appear at their mount paths read-only, and a `medium: Memory`
/// emptyDir is a tmpfs of its `sizeLimit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_mounted_at_their_paths() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"},
        "data": {"index.html": "hello from a configmap", "other": "x"}});
    let made = c.post("/api/v1/namespaces/default/configmaps", &cm).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "stringData": {"token": "t0k3n"}});
    let made = c.post("/api/v1/namespaces/default/secrets", &secret).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let reader = "until [ -f /data/msg ]; do sleep 0.1; done; echo msg=$$(cat /data/msg); \
        echo page=$$(cat /etc/web/index.html); echo one=$$(cat /srv/index.html); \
        echo token=$$(cat /etc/creds/token); \
        if /bin/busybox touch /etc/creds/new 2>/dev/null; then echo creds=rw; else echo creds=ro; fi; \
        echo cache=$$(/bin/busybox grep ' /cache ' /proc/mounts | /bin/busybox cut -d' ' -f3,4); \
        echo done; sleep 3600";
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "writer", "image": "busybox:1.36",
                 "command": ["sh", "-c", "echo shared > /pod-data/msg; sleep 3600"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/pod-data"}]},
                {"name": "reader", "image": "busybox:1.36", "command": ["sh", "-c", reader],
                 "volumeMounts": [
                    {"name": "shared", "mountPath": "/data"},
                    {"name": "web", "mountPath": "/etc/web"},
                    {"name": "web", "mountPath": "/srv/index.html", "subPath": "index.html"},
                    {"name": "creds", "mountPath": "/etc/creds"},
                    {"name": "cache", "mountPath": "/cache"},
                 ]},
            ],
            "volumes": [
                {"name": "shared", "emptyDir": {}},
                {"name": "web", "configMap": {"name": "web"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}},
            ],
        }
    });
    c.create(&pod).await;
    let log = c.log_with("vols", "reader", "done").await;
    assert_eq!(value(&log, "msg"), Some("shared"), "{log}");
    assert_eq!(value(&log, "page"), Some("hello from a configmap"), "{log}");
    assert_eq!(value(&log, "one"), Some("hello from a configmap"), "{log}");
    assert_eq!(value(&log, "token"), Some("t0k3n"), "{log}");
    assert_eq!(value(&log, "creds"), Some("ro"), "{log}");
    let cache = value(&log, "cache").unwrap_or_default();
    assert!(cache.starts_with("tmpfs rw"), "{log}");
    assert!(cache.contains("size=4096k"), "{log}");
    c.delete("vols").await;
}

/// The Kubernetes documentation's "Run a Single-Instance Stateful Application" (MySQL): its
/// `mysql-pv.yaml` (a `manual` hostPath PersistentVolume and the claim that binds to it — the
/// path moved into the test's directory) and its `mysql-deployment.yaml` unchanged but for a
/// ConfigMap of server settings mounted at `/etc/mysql/conf.d`. `mysql:9` is an image the test
/// builds: busybox whose entrypoint does what the example relies on — refuses to start without
/// `MYSQL_ROOT_PASSWORD`, keeps its data in `/var/lib/mysql`, reads `conf.d` and listens on
/// 3306. The data outlives the pod: the Deployment's next pod finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_mysql_example_keeps_its_data_on_its_volume() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let entrypoint: &[u8] = b"#!/bin/sh\n\
        [ -n \"$MYSQL_ROOT_PASSWORD\" ] || { echo 'error: database is uninitialized and password option is not specified'; exit 1; }\n\
        boots=$(cat /var/lib/mysql/boots 2>/dev/null || echo 0); boots=$((boots + 1)); echo $boots > /var/lib/mysql/boots\n\
        echo \"boot $boots, settings: $(cat /etc/mysql/conf.d/*.cnf | tr '\\n' ' ')\"\n\
        echo 'ready for connections. port: 3306'\n\
        trap 'exit 0' TERM\n\
        nc -ll -p 3306 -e echo mysql & wait\n";
    let layout = build_busybox_layout(
        c.build.path(),
        "9",
        &[("/usr/local/bin/docker-entrypoint.sh", entrypoint)],
        &["docker-entrypoint.sh"],
        &["mysqld"],
        &["PATH=/usr/local/bin:/bin"],
    );
    push(&layout, "9", &c.registry.addr(), "library/mysql:9");
    let data = c.build.path().join("mnt-data");
    let docs = format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: mysql-pv-volume
  labels:
    type: local
spec:
  storageClassName: manual
  capacity:
    storage: 20Gi
  accessModes:
    - ReadWriteOnce
  hostPath:
    path: "{data}"
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: mysql-pv-claim
spec:
  storageClassName: manual
  accessModes:
    - ReadWriteOnce
  resources:
    requests:
      storage: 20Gi
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: mysql-config
data:
  server.cnf: "[mysqld] max_connections=50"
---
apiVersion: v1
kind: Service
metadata:
  name: mysql
spec:
  ports:
  - port: 3306
  selector:
    app: mysql
  clusterIP: None
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mysql
spec:
  selector:
    matchLabels:
      app: mysql
  strategy:
    type: Recreate
  template:
    metadata:
      labels:
        app: mysql
    spec:
      containers:
      - image: mysql:9
        name: mysql
        env:
          # Use secret in real usage
        - name: MYSQL_ROOT_PASSWORD
          value: password
        ports:
        - containerPort: 3306
          name: mysql
        volumeMounts:
        - name: mysql-persistent-storage
          mountPath: /var/lib/mysql
        - name: config
          mountPath: /etc/mysql/conf.d
      volumes:
      - name: mysql-persistent-storage
        persistentVolumeClaim:
          claimName: mysql-pv-claim
      - name: config
        configMap:
          name: mysql-config
"#,
        data = data.display()
    );
    let manifest = c.build.path().join("mysql.yaml");
    std::fs::write(&manifest, docs).unwrap();
    let out = support::MINIK
        .command()
        .args(["apply", "-f"])
        .arg(&manifest)
        .args(["--server", &c.http.base])
        .env(
            "MINIK_CERTIFICATE_AUTHORITY",
            minik_testkit::ca_for(&c.http.base).expect("the server's CA"),
        )
        .env("HOME", c.build.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods = "/api/v1/namespaces/default/pods?labelSelector=app=mysql";
    let running = |boot: &'static str| {
        let c = &c;
        async move {
            support::wait_for(
                &format!("a mysql pod at {boot}"),
                support::DEADLINE,
                || async {
                    let list = c.http.get_json(pods).await.ok_or("no list")?;
                    let mut logs = Vec::new();
                    for pod in list["items"].as_array().into_iter().flatten() {
                        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                        if pod["metadata"]["deletionTimestamp"].is_null() {
                            c.cleanup
                                .track_pod(pod["metadata"]["uid"].as_str().unwrap_or_default());
                            let log = c.log(name, "mysql").await;
                            if log.contains(boot) {
                                return Ok((name.to_owned(), log));
                            }
                            let previous = c
                                .http
                                .get_text(&format!(
                                    "/api/v1/namespaces/default/pods/{name}/log?previous=true"
                                ))
                                .await
                                .unwrap_or_default();
                            logs.push(format!("{name}: {log:?}, previous: {previous:?}"));
                        }
                    }
                    Err(format!("{logs:?}"))
                },
            )
            .await
        }
    };
    let (first, log) = running("boot 1,").await;
    assert!(
        log.contains("settings: [mysqld] max_connections=50"),
        "{log}"
    );
    assert!(log.contains("ready for connections"), "{log}");
    let claim = c
        .http
        .get_json("/api/v1/namespaces/default/persistentvolumeclaims/mysql-pv-claim")
        .await
        .unwrap();
    assert_eq!(claim["status"]["phase"], "Bound");
    assert_eq!(claim["spec"]["volumeName"], "mysql-pv-volume");
    assert_eq!(std::fs::read_to_string(data.join("boots")).unwrap(), "1\n");
    // The pod goes; the Deployment's next one boots on the same data.
    c.delete(&first).await;
    let (_, log) = running("boot 2,").await;
    assert!(log.contains("ready for connections"), "{log}");
    let deleted = c
        .http
        .delete("/apis/apps/v1/namespaces/default/deployments/mysql")
        .await;
    assert!(deleted.is_success());
}

/// Deleting a pod sends its container's stop signal (SIGTERM, or the image's `StopSignal`)
/// to the container's first process, which may handle it and end at once: the pod does not
/// wait out its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_signal_reaches_the_container() {
    let Some(c) = Oci::start().await else {
        return;
    };
    let mut p = pod(
        "graceful",
        "trap 'echo stopping; exit 0' TERM; echo started; sleep 1000 & wait",
        "Always",
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(25);
    c.create(&p).await;
    c.log_with("graceful", "main", "started").await;
    let asked = std::time::Instant::now();
    c.delete("graceful").await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the pod took {took:?} to go: its process did not get SIGTERM"
    );
}
