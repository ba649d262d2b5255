//! An in-cluster client, end to end: a pod runs the official Kubernetes Python client's
//! `load_incluster_config()`, which finds the API server through the `kubernetes` Service
//! (`KUBERNETES_SERVICE_HOST`/`_PORT`, in every namespace), verifies it with the `ca.crt` of the
//! `kube-root-ca.crt` ConfigMap the root CA publisher keeps, and authenticates with the pod's
//! projected service account token: it lists pods, and is refused Secrets (the service account
//! policy, docs/service-accounts.md).
//!
//! The pod mounts the standard `kube-api-access` projected volume itself (minik does not inject
//! it yet), on the process runtime, whose volumes need root: this test fails under `CI=true`
//! without it, or without the Python client (`.ci/run` installs it).

mod support;

use minik_testkit::{blocking::wait_for, DEADLINE};
use support::client::Cluster;

/// The standard service account directory of pods.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const CLIENT: &str = r#"
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_incluster_config()
api = client.CoreV1Api()
names = sorted(p.metadata.name for p in api.list_namespaced_pod("apps").items)
print("pods:", ",".join(names))
try:
    api.list_namespaced_secret("apps")
    print("secrets: allowed")
except ApiException as e:
    print("secrets:", e.status)
"#;

/// Removes the service account directory a test made on the host (the process runtime makes
/// a missing mount point on the host and leaves it there).
struct MadeDir(Option<std::path::PathBuf>);

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(top) = &self.0 {
            let _ = std::fs::remove_dir_all(top);
        }
    }
}

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
    let _made = MadeDir(
        (!std::path::Path::new("/var/run/secrets").exists())
            .then(|| std::path::PathBuf::from("/var/run/secrets")),
    );
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
                "volumeMounts": [{"name": "kube-api-access", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true}]
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}]
        }
    });
    c.apply("in-cluster.json", &manifest.to_string());
    let log = wait_for("the in-cluster client to finish", DEADLINE, || {
        let pod = c.json(&["get", "pod", "in-cluster", "-n", "apps"]);
        let phase = pod["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if phase == "Succeeded" || phase == "Failed" {
            Ok(c.minik(&["logs", "in-cluster", "-n", "apps"]).stdout)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert!(log.contains("pods: in-cluster"), "{log}");
    assert!(log.contains("secrets: 403"), "{log}");
    // The variables the client used, as every pod in every namespace gets them.
    let env = c.json(&["get", "service", "kubernetes", "-n", "default"]);
    assert_eq!(env["spec"]["clusterIP"], "127.96.0.1");
    assert_eq!(env["spec"]["ports"][0]["port"], 443);
}
