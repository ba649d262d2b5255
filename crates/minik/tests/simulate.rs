//! `minik simulate` end to end: a pool of simulated nodes against a real server. The nodes
//! register and renew their Leases, the pods the scheduler binds to them are reported Running
//! and Ready with addresses of their own and go when deleted, SIGTERM ends the pool cleanly
//! (leaving the nodes, or removing them with `--delete-nodes-on-exit`), and flags that cannot
//! work are refused before anything is sent.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use minik_testkit::{line_after, lines_of, manifest, Http};
use serde_json::{json, Value};
use support::{wait_for, Running, DEADLINE, MINIK};

const SIMULATED: &str = "labelSelector=minik.io%2Fsimulated%3Dtrue";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

/// `minik simulate` against `server` with `flags`, a `HOME` of its own in `dir`; waits for the
/// line that says every node is registered.
fn simulate(server: &Running, dir: &Path, flags: &[&str]) -> Running {
    let mut command = MINIK.command();
    command
        .args(["simulate", "--server", &server.base])
        .args(flags)
        .env("HOME", dir)
        .env_remove("MINIK_SERVER")
        .env_remove("MINIK_TOKEN")
        .env_remove("MINIK_CERTIFICATE_AUTHORITY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(ca) = minik_testkit::ca_for(&server.base) {
        command.arg("--certificate-authority").arg(ca);
    }
    let mut child = command.spawn().expect("start minik simulate");
    let lines = lines_of(child.stdout.take().expect("stdout"));
    let running = Running::guard(child);
    line_after(&lines, "minik simulate: ", "minik simulate");
    running
}

/// Runs `command` (a simulator that is to give up) to its end, within [`DEADLINE`]: one that
/// went on instead is killed and fails the test. Answers how it exited and its stderr.
fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start minik simulate");
    let mut sim = Running::guard(child);
    let status = minik_testkit::blocking::wait_for("minik simulate to give up", DEADLINE, || {
        match sim.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            other => Err(other),
        }
    });
    let mut err = String::new();
    if let Some(mut stderr) = sim.child.stderr.take() {
        stderr.read_to_string(&mut err).unwrap();
    }
    (status, err)
}

fn items(list: Option<Value>) -> Vec<Value> {
    list.and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The renew times of the Leases of the nodes named `sim-*`, by node.
async fn renewals(http: &Http) -> BTreeMap<String, String> {
    items(http.get_json(LEASES).await)
        .iter()
        .filter(|l| name(l).starts_with("sim-"))
        .map(|l| {
            let renewed = l["spec"]["renewTime"].as_str().unwrap_or_default();
            (name(l), renewed.to_owned())
        })
        .collect()
}

/// The resident memory of process `pid`, as `/proc` says it (`VmRSS: 12345 kB`).
fn rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_simulated_nodes_run_a_deployment_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = MINIK.server(&dir.path().join("server"), &[]);
    let http = Http::new(&server.base);
    let mut sim = simulate(&server, dir.path(), &["--nodes", "50", "--heartbeat", "1s"]);

    // 50 Nodes, Ready, each with a Lease that is renewed.
    wait_for("50 simulated nodes to be Ready", DEADLINE, || async {
        let nodes = items(http.get_json(&format!("/api/v1/nodes?{SIMULATED}")).await);
        let ready = nodes.iter().filter(|n| manifest::is_ready(n)).count();
        if nodes.len() == 50 && ready == 50 {
            Ok(())
        } else {
            Err(format!("{} nodes, {ready} Ready", nodes.len()))
        }
    })
    .await;
    let first = wait_for("50 Leases", DEADLINE, || async {
        let leases = renewals(&http).await;
        if leases.len() == 50 {
            Ok(leases)
        } else {
            Err(leases.len())
        }
    })
    .await;
    wait_for("every Lease to be renewed", DEADLINE, || async {
        let now = renewals(&http).await;
        let stale: Vec<&String> = first
            .iter()
            .filter(|(node, renewed)| now.get(*node) == Some(*renewed))
            .map(|(node, _)| node)
            .collect();
        if stale.is_empty() && now.len() == 50 {
            Ok(())
        } else {
            Err(stale.into_iter().cloned().collect::<Vec<_>>())
        }
    })
    .await;

    // 100 replicas: all Running and Ready on simulated nodes, each with an address of its own.
    let created = http
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            &manifest::deployment("web", 100, "nginx:1.25"),
        )
        .await;
    assert!(created.is_success(), "{created:?}");
    let pods = wait_for("100 pods Running and Ready", DEADLINE, || async {
        let pods = items(
            http.get_json("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
                .await,
        );
        let running = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && manifest::is_ready(p))
            .count();
        if pods.len() == 100 && running == 100 {
            Ok(pods)
        } else {
            Err(format!("{} pods, {running} Running and Ready", pods.len()))
        }
    })
    .await;
    let mut addresses = HashSet::new();
    for pod in &pods {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(node.starts_with("sim-"), "{pod}");
        assert!(
            ip.starts_with("10.200."),
            "the default --pod-ip-cidr: {pod}"
        );
        assert!(
            pod["status"]["hostIP"]
                .as_str()
                .is_some_and(|h| h.starts_with("10.199.")),
            "the node's address from --node-ip-cidr: {pod}"
        );
        assert!(addresses.insert(ip.to_owned()), "{ip} given twice");
        let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
        assert!(statuses[0]["state"]["running"].is_object(), "{pod}");
    }
    let placed: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert!(placed.len() > 1, "the scheduler spreads them: {placed:?}");
    wait_for(
        "the Deployment to count 100 available",
        DEADLINE,
        || async {
            let d = http
                .get_json("/apis/apps/v1/namespaces/default/deployments/web")
                .await
                .unwrap_or(Value::Null);
            (d["status"]["availableReplicas"] == 100).then_some(())
        },
    )
    .await;
    eprintln!(
        "minik simulate with 50 nodes and 100 pods: VmRSS {}",
        rss(sim.pid())
    );

    // Nothing runs: a log is refused, naming why.
    let log = http
        .get(&format!(
            "/api/v1/namespaces/default/pods/{}/log",
            name(&pods[0])
        ))
        .await;
    assert_eq!(log.code, 503, "{:?}", log.body);
    assert!(
        log.body.to_string().contains("reports no agent endpoint"),
        "{:?}",
        log.body
    );

    // A simulated Node deleted by someone is registered again, as a kubelet would.
    let deleted = http.delete("/api/v1/nodes/sim-7").await;
    assert!(deleted.is_success(), "{deleted:?}");
    let uid = deleted.body["metadata"]["uid"].clone();
    wait_for("sim-7 to be registered again", DEADLINE, || async {
        let node = http
            .get_json("/api/v1/nodes/sim-7")
            .await
            .unwrap_or(Value::Null);
        (node["metadata"]["uid"].is_string()
            && node["metadata"]["uid"] != uid
            && manifest::is_ready(&node))
        .then_some(())
    })
    .await;

    // Scaled to 0: the pods are marked for deletion, and the simulated kubelet confirms it.
    let scaled = http
        .merge_patch(
            "/apis/apps/v1/namespaces/default/deployments/web",
            &json!({"spec": {"replicas": 0}}),
        )
        .await;
    assert!(scaled.is_success(), "{scaled:?}");
    wait_for("the pods to be gone", DEADLINE, || async {
        let pods = items(
            http.get_json("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
                .await,
        );
        pods.is_empty().then_some(()).ok_or(pods.len())
    })
    .await;

    // SIGTERM ends it cleanly; the nodes stay (their Leases expire in their own time).
    let status = sim.stop();
    assert!(status.success(), "minik simulate exited with {status}");
    let nodes = items(http.get_json(&format!("/api/v1/nodes?{SIMULATED}")).await);
    assert_eq!(nodes.len(), 50, "the nodes stay by default");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_nodes_on_exit_removes_the_nodes_their_leases_and_their_pods() {
    let dir = tempfile::tempdir().unwrap();
    let server = MINIK.server(&dir.path().join("server"), &[]);
    let http = Http::new(&server.base);
    let mut sim = simulate(
        &server,
        dir.path(),
        &["--nodes", "3", "--delete-nodes-on-exit"],
    );
    let mut pod = manifest::pod("bound");
    pod["spec"]["nodeName"] = json!("sim-1");
    let created = http.post("/api/v1/namespaces/default/pods", &pod).await;
    assert!(created.is_success(), "{created:?}");
    wait_for("the pod on sim-1 to run", DEADLINE, || async {
        let pod = http
            .get_json("/api/v1/namespaces/default/pods/bound")
            .await
            .unwrap_or(Value::Null);
        (pod["status"]["phase"] == "Running" && manifest::is_ready(&pod)).then_some(())
    })
    .await;

    let status = sim.stop();
    assert!(status.success(), "minik simulate exited with {status}");
    let nodes = items(http.get_json(&format!("/api/v1/nodes?{SIMULATED}")).await);
    assert!(nodes.is_empty(), "{nodes:?}");
    assert!(renewals(&http).await.is_empty(), "the Leases go too");
    let gone = http.get("/api/v1/namespaces/default/pods/bound").await;
    assert_eq!(gone.code, 404, "{:?}", gone.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_credential_it_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    // No anonymous clients, and the simulator is given no token.
    let server = MINIK.server_with(&dir.path().join("server"), &[]);
    let mut command = MINIK.command();
    command
        .args(["simulate", "--server", &server.base, "--nodes", "2"])
        .env("HOME", dir.path())
        .env_remove("MINIK_SERVER")
        .env_remove("MINIK_TOKEN")
        .env("RUST_LOG", "error");
    if let Some(ca) = minik_testkit::ca_for(&server.base) {
        command.arg("--certificate-authority").arg(ca);
    }
    let (status, err) = run_to_exit(command);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("minik simulate needs an admin credential"),
        "{err}"
    );
}

#[test]
fn flags_that_cannot_work_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    // Each check of the flags is unit-tested (`simulate::tests`); here, that a refusal of
    // either kind (clap's, or the validated settings') reaches the user of the binary.
    let cases: &[(&[&str], &str)] = &[
        (&["--nodes", "0"], "error: --nodes must be at least 1"),
        (&["--nodes", "lots"], "--nodes"),
        (&["--heartbeat", "often"], "--heartbeat"),
        (&["--pod-ip-cidr", "10.200.0.1/16"], "--pod-ip-cidr"),
        (&["--memory=-1Gi"], "--memory \"-1Gi\" must be above zero"),
        (
            &["--taints", "a=b:Sometimes"],
            "--taints: \"a=b:Sometimes\"",
        ),
        (
            &["--nodes", "300", "--node-ip-cidr", "10.1.0.0/24"],
            "--node-ip-cidr 10.1.0.0/24 has 253 addresses for nodes, fewer than --nodes 300",
        ),
    ];
    for (flags, expected) in cases {
        // Refused before any request: the server named does not exist.
        let mut command = MINIK.command();
        command
            .args(["simulate", "--server", "https://127.0.0.1:1"])
            .args(*flags)
            .env("HOME", dir.path());
        let (status, err) = run_to_exit(command);
        assert!(
            !status.success() && err.contains(expected),
            "{flags:?}: exit {status}, {err}"
        );
        assert!(!err.contains("cannot reach"), "{flags:?}: {err}");
    }
}
