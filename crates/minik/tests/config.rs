//! ConfigMaps and Secrets as pods use them, end to end on the process runtime: environment
//! variables from keys and whole objects, volumes whose files follow the object as it changes,
//! and a pod that waits — `CreateContainerConfigError`, or `ContainerCreating` after a
//! `FailedMount` event — for an object that does not exist yet, then starts when it appears.
//!
//! The process runtime binds volumes in a private mount namespace, which needs root: these
//! tests fail under `CI=true` without it. Mount paths are inside the test's temp dir.

mod support;

use minik_testkit::{blocking::wait_for, DEADLINE};
use serde_json::Value;
use support::client::Cluster;

/// A node agent stopped with SIGTERM when dropped, so that it stops its pods' processes.
struct Terminated(support::Running);

impl Drop for Terminated {
    fn drop(&mut self) {
        self.0.terminate(std::time::Duration::from_secs(20));
    }
}

/// A cluster with one process-runtime node, or `None` when not root (failing under CI).
fn cluster() -> Option<Cluster> {
    if !nix::unistd::geteuid().is_root() {
        minik_testkit::cannot_run(
            "root",
            "the process runtime mounts volumes in a private mount namespace",
        );
        return None;
    }
    Some(Cluster::with_node("process"))
}

/// The log of the pod's only container, once it holds `text`.
fn log_with(c: &Cluster, pod: &str, text: &str) -> String {
    wait_for(&format!("{text:?} in the log of {pod}"), DEADLINE, || {
        let out = c.minik(&["logs", pod]);
        if out.stdout.contains(text) {
            Ok(out.stdout)
        } else {
            let status = c.minik(&["get", "pod", pod, "-o", "json"]).stdout;
            Err(format!("log {:?}; pod {status}", out.stdout))
        }
    })
}

/// The pod's first container's waiting state (reason, message), once it has `reason`.
fn waiting(c: &Cluster, pod: &str, reason: &str) -> String {
    wait_for(
        &format!("pod {pod} waiting with {reason}"),
        DEADLINE,
        || {
            let p = c.json(&["get", "pod", pod]);
            let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
            if w["reason"] == reason {
                Ok(w["message"].as_str().unwrap_or_default().to_owned())
            } else {
                Err(p["status"].to_string())
            }
        },
    )
}

/// The messages of the warnings about `pod` with `reason`.
fn warnings(c: &Cluster, pod: &str, reason: &str) -> Vec<String> {
    let events = c.json(&["get", "events"]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn environment_from_config_maps_and_secrets() {
    let Some(c) = cluster() else { return };
    c.ok(&["create", "configmap", "app", "--from-literal=mode=fast"]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    c.apply(
        "pod.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: env}
spec:
  restartPolicy: Never
  containers:
  - name: c
    command: ["sh", "-c", "echo mode=$MODE pass=$PASS app_mode=$APP_mode limit=$LIMIT; sleep 3600"]
    resources: {limits: {memory: 64Mi}}
    envFrom:
    - {configMapRef: {name: app}, prefix: APP_}
    env:
    - {name: MODE, valueFrom: {configMapKeyRef: {name: app, key: mode}}}
    - {name: PASS, valueFrom: {secretKeyRef: {name: db, key: password}}}
    - {name: OPTIONAL, valueFrom: {configMapKeyRef: {name: absent, key: x, optional: true}}}
    - {name: LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
"#,
    );
    log_with(&c, "env", "mode=fast pass=hunter2 app_mode=fast limit=64");
}

#[test]
fn a_missing_key_waits_until_it_appears() {
    let Some(c) = cluster() else { return };
    c.apply(
        "pod.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: later}
spec:
  containers:
  - name: c
    command: ["sh", "-c", "echo level=$LEVEL; sleep 3600"]
    env:
    - {name: LEVEL, valueFrom: {configMapKeyRef: {name: settings, key: level}}}
"#,
    );
    let message = waiting(&c, "later", "CreateContainerConfigError");
    assert_eq!(message, "configmap \"settings\" not found");
    c.ok(&["create", "configmap", "settings", "--from-literal=other=1"]);
    let message = wait_for("the message to name the key", DEADLINE, || {
        let m = waiting(&c, "later", "CreateContainerConfigError");
        if m.contains("couldn't find key") {
            Ok(m)
        } else {
            Err(m)
        }
    });
    assert_eq!(
        message,
        "couldn't find key level in ConfigMap default/settings"
    );
    c.apply(
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: high}\n",
    );
    log_with(&c, "later", "level=high");
}

#[test]
fn config_map_and_secret_volumes_update_in_place() {
    let Some(c) = cluster() else { return };
    let mount = c.home().join("mnt/config");
    let secret_mount = c.home().join("mnt/secret");
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: vol}}
spec:
  containers:
  - name: c
    command: ["sh", "-c", "while true; do echo greeting=$(cat {m}/greeting) pass=$(cat {s}/pw); sleep 0.2; done"]
    volumeMounts:
    - {{name: config, mountPath: {m}}}
    - {{name: creds, mountPath: {s}}}
  volumes:
  - name: config
    configMap: {{name: app}}
  - name: creds
    secret:
      secretName: db
      items: [{{key: password, path: pw, mode: 0400}}]
"#,
        m = mount.display(),
        s = secret_mount.display(),
    );
    c.apply("pod.yaml", &pod);
    // The ConfigMap does not exist yet: the pod waits with a FailedMount warning.
    waiting(&c, "vol", "ContainerCreating");
    let failed = wait_for("a FailedMount warning", DEADLINE, || {
        let w = warnings(&c, "vol", "FailedMount");
        w.first().cloned().ok_or("none yet")
    });
    assert_eq!(
        failed,
        "MountVolume.SetUp failed for volume \"config\" : configmap \"app\" not found"
    );
    c.apply(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {greeting: hello}\n",
    );
    c.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    log_with(&c, "vol", "greeting=hello pass=hunter2");
    // The mount paths are bound in the container's own mount namespace only.
    assert!(
        std::fs::read_dir(&mount).map(|d| d.count()).unwrap_or(0) == 0,
        "the host's mount point stays empty"
    );
    c.apply(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {greeting: bonjour}\n",
    );
    log_with(&c, "vol", "greeting=bonjour pass=hunter2");
    // The volume's files on the node: the kubelet's layout, the Secret on a tmpfs, modes kept.
    let pods: Value = c.json(&["get", "pod", "vol"]);
    let uid = pods["metadata"]["uid"].as_str().unwrap().to_owned();
    let pod_dir = c
        .dir
        .path()
        .join("node-n1/pods")
        .join(format!("default_vol_{uid}"));
    let config_dir = pod_dir.join("volumes/kubernetes.io~configmap/config");
    let data = std::fs::read_link(config_dir.join("..data")).expect("..data is a link");
    assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
    let secret_dir = pod_dir.join("volumes/kubernetes.io~secret/creds");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(secret_dir.join("pw"))
        .expect("the secret file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o400);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(secret_dir.to_str().unwrap()) && l.contains(" tmpfs ")),
        "the secret volume is a tmpfs"
    );
    // Deleting the pod removes its volumes: no mount is left.
    c.ok(&["delete", "pod", "vol", "--grace-period=0"]);
    wait_for("the pod's directory to go", DEADLINE, || {
        if pod_dir.exists() {
            Err("still there")
        } else {
            Ok(())
        }
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(pod_dir.to_str().unwrap()), "{mounts}");
}

/// A pod's projected `serviceAccountToken` volume holds a token bound to the pod, with which
/// the pod reaches the API as its service account (read-only, no Secrets) — through a server
/// that needs tokens and a node that joined with the join token. The pod verifies the server
/// with the cluster CA, projected beside the token from a ConfigMap (as Kubernetes projects
/// `kube-root-ca.crt`).
#[test]
fn projected_service_account_tokens_identify_the_pod() {
    if !nix::unistd::geteuid().is_root() {
        minik_testkit::cannot_run("root", "the process runtime mounts volumes");
        return;
    }
    let Some(curl) = ["/usr/bin/curl", "/bin/curl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        minik_testkit::cannot_run("curl", "the pod reaches the API over HTTPS with curl");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _unmounts = minik_testkit::Unmounts(dir.path().to_path_buf());
    let data = dir.path().join("server");
    let server = support::MINIK.server_with(&data, &[]);
    let admin = std::fs::read_to_string(data.join("auth/admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let join = std::fs::read_to_string(data.join("auth/join-token"))
        .unwrap()
        .trim()
        .to_owned();
    let _node = Terminated(support::MINIK.node_with_env(
        &server.base,
        "n1",
        &dir.path().join("n1"),
        &["--runtime", "process"],
        &[("MINIK_TOKEN", join.as_str())],
    ));
    let ca = minik_testkit::ca_for(&server.base).expect("the server's CA");
    let minik = |args: &[&str]| {
        let out = support::MINIK
            .command()
            .args(args)
            .args(["--server", &server.base, "--token", &admin])
            .arg("--certificate-authority")
            .arg(&ca)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    wait_for("node n1 Ready", DEADLINE, || {
        match minik(&["get", "no", "n1"]) {
            (0, out, _) if out.contains(" Ready ") => Ok(()),
            other => Err(other),
        }
    });
    let mount = dir.path().join("sa");
    let script = format!(
        "T=$(cat {m}/token); \
         {curl} -sS --fail --cacert {m}/ca.crt -H \"Authorization: Bearer $T\" {base}/api/v1/namespaces/default/pods >/dev/null && echo pods=ok || echo pods=refused; \
         {curl} -sS --fail --cacert {m}/ca.crt -H \"Authorization: Bearer $T\" {base}/api/v1/namespaces/default/secrets >/dev/null 2>&1 && echo secrets=ok || echo secrets=refused; \
         echo done; sleep 3600",
        m = mount.display(),
        base = server.base,
    );
    let cluster_ca = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-ca"},
        "data": {"ca.crt": minik_testkit::ca_pem(&server.base)}
    });
    let file = dir.path().join("ca.json");
    std::fs::write(&file, cluster_ca.to_string()).unwrap();
    let (code, _, err) = minik(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "token", "mountPath": mount.to_str().unwrap()}]}],
            "volumes": [{"name": "token", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
                {"configMap": {"name": "cluster-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
            ]}}],
        }
    });
    let file = dir.path().join("pod.json");
    std::fs::write(&file, pod.to_string()).unwrap();
    let (code, _, err) = minik(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let log = wait_for("the client's answers", DEADLINE, || {
        let (_, log, err) = minik(&["logs", "client"]);
        if log.contains("done") {
            Ok(log)
        } else {
            Err(format!("{log}{err}"))
        }
    });
    assert!(log.contains("pods=ok"), "{log}");
    assert!(log.contains("secrets=refused"), "{log}");
}

/// The local-path provisioner end to end on two nodes: a claim without a class gets the
/// default `local-path` class and waits for its first pod; the scheduler picks the pod's node,
/// a volume is made there and bound; a later pod of the claim goes to the same node and sees
/// the data; deleting the claim deletes the volume (reclaim policy Delete) and its directory.
#[test]
fn local_path_claims_keep_data_on_their_node() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n2", &["--runtime", "process"]);
    let classes = c.ok(&["get", "storageclass"]);
    assert!(
        classes.contains("local-path (default)") && classes.contains("rancher.io/local-path"),
        "{classes}"
    );
    c.apply(
        "claim.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 64Mi}}\n",
    );
    let claim = wait_for("the claim to get the default class", DEADLINE, || {
        let pvc = c.json(&["get", "pvc", "data"]);
        if pvc["spec"]["storageClassName"] == "local-path" {
            Ok(pvc)
        } else {
            Err(pvc.to_string())
        }
    });
    assert_eq!(claim["status"]["phase"], "Pending");
    let mount = c.home().join("mnt/data");
    let pod = |name: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    command: [\"sh\", \"-c\", {script:?}]\n    volumeMounts: [{{name: data, mountPath: {m}}}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data}}\n",
            m = mount.display()
        )
    };
    c.apply(
        "writer.yaml",
        &pod(
            "writer",
            &format!(
                "echo kept > {}/file; echo written; sleep 3600",
                mount.display()
            ),
        ),
    );
    log_with(&c, "writer", "written");
    let writer = c.json(&["get", "pod", "writer"]);
    let node = writer["spec"]["nodeName"].as_str().unwrap().to_owned();
    let claim = c.json(&["get", "pvc", "data"]);
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    let pv_name = claim["spec"]["volumeName"].as_str().unwrap().to_owned();
    let pv = c.json(&["get", "pv", &pv_name]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"][0],
        node.as_str()
    );
    let dir = std::path::PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
    assert!(
        dir.starts_with(c.dir.path().join(format!("node-{node}"))),
        "{dir:?} is on node {node}'s data dir"
    );
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "kept\n");
    c.ok(&["delete", "pod", "writer", "--grace-period=0"]);
    c.apply(
        "reader.yaml",
        &pod(
            "reader",
            &format!("echo read=$(cat {}/file); sleep 3600", mount.display()),
        ),
    );
    log_with(&c, "reader", "read=kept");
    let reader = c.json(&["get", "pod", "reader"]);
    assert_eq!(
        reader["spec"]["nodeName"],
        node.as_str(),
        "the volume's node"
    );
    // The claim goes: its volume and the volume's directory go too.
    c.ok(&["delete", "pod", "reader", "--grace-period=0"]);
    c.ok(&["delete", "pvc", "data"]);
    wait_for("the volume to be deleted", DEADLINE, || {
        let out = c.minik(&["get", "pv", &pv_name]);
        if out.code != 0 && out.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(out.stdout)
        }
    });
    assert!(!dir.exists(), "{dir:?} removed");
}

/// The kubelet's pod-level failures: a pod whose disk emptyDir passes its `sizeLimit` is
/// evicted, and a pod past its `activeDeadlineSeconds` fails; either way its containers are
/// stopped and never started again, and the pod says why.
#[test]
fn pods_fail_as_a_whole_when_evicted_or_past_their_deadline() {
    let Some(c) = cluster() else { return };
    let mount = c.home().join("mnt/cache");
    c.apply(
        "evicted.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    command: ["sh", "-c", "head -c 2097152 /dev/zero > {m}/fill; echo filled; sleep 3600"]
    volumeMounts: [{{name: cache, mountPath: {m}}}]
  volumes:
  - name: cache
    emptyDir: {{sizeLimit: 1Mi}}
"#,
            m = mount.display()
        ),
    );
    c.apply(
        "deadline.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec:\n  activeDeadlineSeconds: 2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    command: [\"sleep\", \"3600\"]\n",
    );
    let failed = |name: &str| {
        wait_for(&format!("pod {name} to fail"), DEADLINE, || {
            let p = c.json(&["get", "pod", name]);
            let stopped = p["status"]["containerStatuses"][0]["state"]["terminated"].is_object();
            if p["status"]["phase"] == "Failed" && stopped {
                Ok(p)
            } else {
                Err(p["status"].to_string())
            }
        })
    };
    let hog = failed("hog");
    assert_eq!(hog["status"]["reason"], "Evicted");
    assert_eq!(
        hog["status"]["message"],
        "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". "
    );
    assert!(warnings(&c, "hog", "Evicted").len() == 1);
    let late = failed("late");
    assert_eq!(late["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        late["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    assert_eq!(late["status"]["containerStatuses"][0]["restartCount"], 0);
}
