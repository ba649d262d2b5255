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
