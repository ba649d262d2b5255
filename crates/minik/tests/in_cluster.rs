//! An in-cluster client, end to end: a pod runs the official Kubernetes Python client's
//! `load_incluster_config()`, which finds the API server through the `kubernetes` Service
//! (`KUBERNETES_SERVICE_HOST`/`_PORT`, in every namespace), verifies it with the `ca.crt` of the
//! `kube-root-ca.crt` ConfigMap the root CA publisher keeps, and authenticates with the pod's
//! projected service account token: it lists pods, and is refused Secrets (the service account
//! policy, docs/service-accounts.md).
//!
//! The pod declares no volume: the ServiceAccount admission gives it the `kube-api-access-*`
//! projected volume at `/var/run/secrets/kubernetes.io/serviceaccount`, as Kubernetes does, and
//! a pod that says `automountServiceAccountToken: false` gets none. On the process runtime,
//! whose volumes need root: this test fails under `CI=true` without it, or without the Python
//! client (`.ci/run` installs it). The process runtime leaves the mount point on the host
//! (docs/process-runtime.md), so other tests' pods may be using it: it is not removed here.

mod support;

use minik_testkit::{blocking::wait_for, DEADLINE};
use support::client::Cluster;

/// The standard service account directory of pods.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The client. Its first request is retried for a while on a connection error (printed), as an
/// in-cluster client's reflector would: on a loaded machine the pod can start before the node's
/// proxy serves the `kubernetes` Service; TLS errors and refusals (401, 403) are not retried.
const CLIENT: &str = r#"
import time
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_incluster_config()
api = client.CoreV1Api()
for attempt in range(40):
    try:
        pods = api.list_namespaced_pod("apps").items
        break
    except (urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError) as e:
        if isinstance(getattr(e, "reason", None), urllib3.exceptions.SSLError):
            raise
        print("retrying:", e)
        time.sleep(0.5)
names = sorted(p.metadata.name for p in pods)
print("pods:", ",".join(names))
try:
    api.list_namespaced_secret("apps")
    print("secrets: allowed")
except ApiException as e:
    print("secrets:", e.status)
"#;

#[test]
fn a_pod_reaches_the_api_with_the_python_clients_in_cluster_config() {
    if !nix::unistd::geteuid().is_root() {
        minik_testkit::cannot_run("root", "the process runtime mounts volumes");
        return;
    }
    let python = std::env::var("MINIK_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = std::process::Command::new(&python)
        .args(["-c", "import kubernetes, sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(found) = found else {
        minik_testkit::cannot_run(
            "the Kubernetes Python client",
            "`pip install kubernetes` (.ci/run does it)",
        );
        return;
    };
    // The interpreter that has the client, by its full path (the pod's PATH is Kubernetes').
    let executable = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    let c = Cluster::with_node("process");
    let _unmounts = minik_testkit::Unmounts(c.home().to_path_buf());
    c.ok(&["create", "namespace", "apps"]);
    wait_for("kube-root-ca.crt in apps", DEADLINE, || {
        let out = c.minik(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "apps",
            "-o",
            "json",
        ]);
        let cm: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        match cm["data"]["ca.crt"].as_str() {
            Some(pem) if pem.contains("BEGIN CERTIFICATE") => Ok(()),
            _ => Err(format!("{}{}", out.stdout, out.stderr)),
        }
    });
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "in-cluster", "namespace": "apps"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client", "image": "python",
                "command": [executable, "-c", CLIENT],
            }],
        }
    });
    c.apply("in-cluster.json", &manifest.to_string());
    let log = finished(&c, "in-cluster");
    assert!(log.contains("pods: in-cluster"), "{log}");
    assert!(log.contains("secrets: 403"), "{log}");
    // What admission added, as Kubernetes adds it.
    let pod = c.json(&["get", "pod", "in-cluster", "-n", "apps"]);
    let volume = &pod["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("kube-api-access-"), "{volume}");
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"][0],
        serde_json::json!({"name": name, "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true})
    );

    // A pod that opts out sees no token (the mount point on the host is empty).
    let quiet = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "no-token", "namespace": "apps"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "check", "image": "busybox",
                "command": ["sh", "-c",
                    format!("test -e {SERVICE_ACCOUNT_DIR}/token && echo token: present || echo token: absent")],
            }],
        }
    });
    c.apply("no-token.json", &quiet.to_string());
    let log = finished(&c, "no-token");
    assert!(log.contains("token: absent"), "{log}");
    let pod = c.json(&["get", "pod", "no-token", "-n", "apps"]);
    assert!(pod["spec"].get("volumes").is_none(), "{}", pod["spec"]);

    // An agent that stops its pods (SIGTERM) leaves none of their tmpfs mounted.
    let mut c = c;
    let status = c.nodes[0].stop();
    assert!(status.success(), "{status}");
    let home = c.home().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&home)).collect();
    assert!(left.is_empty(), "{left:#?}");
    // Nor their API-backed volumes: the token is not left on the node's disk under the
    // unmounted tmpfs (the next agent writes the volume again before the containers start).
    let pods = c.home().join("node-n1").join("pods");
    let entries = std::fs::read_dir(&pods).expect("the agent keeps its pods' directories");
    let mut seen = 0;
    for pod in entries.flatten() {
        seen += 1;
        let projected = pod.path().join("volumes/kubernetes.io~projected");
        assert!(!projected.exists(), "{} is left", projected.display());
    }
    assert!(seen > 0, "no pod directory under {}", pods.display());
    // The variables the client used, as every pod in every namespace gets them.
    let env = c.json(&["get", "service", "kubernetes", "-n", "default"]);
    assert_eq!(env["spec"]["clusterIP"], "127.96.0.1");
    assert_eq!(env["spec"]["ports"][0]["port"], 443);
}

/// Waits until pod `name` of `apps` has finished; answers its log.
fn finished(c: &Cluster, name: &str) -> String {
    wait_for(&format!("pod {name} to finish"), DEADLINE, || {
        let pod = c.json(&["get", "pod", name, "-n", "apps"]);
        let phase = pod["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if phase == "Succeeded" || phase == "Failed" {
            Ok(c.minik(&["logs", name, "-n", "apps"]).stdout)
        } else {
            Err(pod["status"].to_string())
        }
    })
}
