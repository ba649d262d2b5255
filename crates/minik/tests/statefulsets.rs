//! StatefulSets end to end: the `web` set of Kubernetes' documentation (a headless Service
//! and a set with a `www` claim template) on the process runtime, scaled 0 → 3 one pod at a
//! time in ordinal order, each with its claim bound to a local-path volume, scaled down to 1 in
//! reverse order with the claims kept, and a deleted `web-0` made again with the same claim and
//! data. Also what the API refuses of a StatefulSet, with Kubernetes' messages.
//!
//! The process runtime binds volumes in a private mount namespace, which needs root: the
//! end-to-end scaling test fails under `CI=true` without it. Mount paths are inside the test's
//! temp dir; process pods have no hostname of their own, so they read `$HOSTNAME`, which minik
//! sets to the pod's hostname (its name).

mod support;

use std::collections::BTreeMap;

use minik_testkit::{blocking::wait_for, DEADLINE};
use serde_json::Value;
use support::client::Cluster;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  ports:
  - {port: 80, name: web}
  clusterIP: None
  selector: {app: nginx}
";

/// The `web` set with `replicas` pods whose container appends its hostname to `www/log`.
fn web(replicas: u32, mount: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels: {{app: nginx}}
  serviceName: nginx
  replicas: {replicas}
  template:
    metadata:
      labels: {{app: nginx}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        command: ["sh", "-c", "echo $HOSTNAME >> {mount}/log; sleep 3600"]
        volumeMounts:
        - {{name: www, mountPath: {mount}}}
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {{storage: 16Mi}}
"#
    )
}

/// The set's pods by name, as one listing shows them.
fn pods(c: &Cluster) -> BTreeMap<String, Value> {
    let list = c.json(&["get", "pods", "-l", "app=nginx"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                p.clone(),
            )
        })
        .collect()
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
        && pod["metadata"]["deletionTimestamp"].is_null()
}

/// Polls the pods until `done`, checking `invariant` on every listing seen on the way.
fn watch_until(
    c: &Cluster,
    what: &str,
    invariant: impl Fn(&BTreeMap<String, Value>) -> Result<(), String>,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    wait_for(what, DEADLINE, || {
        let seen = pods(c);
        if let Err(broken) = invariant(&seen) {
            panic!("{what}: {broken}; pods: {seen:?}");
        }
        if done(&seen) {
            Ok(seen)
        } else {
            Err(format!("{:?}", seen.keys().collect::<Vec<_>>()))
        }
    })
}

/// The directory of the volume bound to the claim, once it is bound.
fn claim_dir(c: &Cluster, claim: &str) -> (String, std::path::PathBuf) {
    let pvc = wait_for(&format!("claim {claim} bound"), DEADLINE, || {
        let pvc = c.json(&["get", "pvc", claim]);
        if pvc["status"]["phase"] == "Bound" {
            Ok(pvc)
        } else {
            Err(pvc["status"].to_string())
        }
    });
    let uid = pvc["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let pv = c.json(&[
        "get",
        "pv",
        pvc["spec"]["volumeName"].as_str().unwrap_or(""),
    ]);
    let dir = pv["spec"]["hostPath"]["path"].as_str().unwrap_or("").into();
    (uid, dir)
}

#[test]
fn web_scales_in_order_and_keeps_each_pods_claim() {
    if !nix::unistd::geteuid().is_root() {
        minik_testkit::cannot_run(
            "root",
            "the process runtime mounts volumes in a private mount namespace",
        );
        return;
    }
    let c = Cluster::with_node("process");
    let mount = c.home().join("mnt/www");
    let mount = mount.display().to_string();
    c.apply("service.yaml", SERVICE);
    c.apply("web.yaml", &web(0, &mount));
    let table = c.ok(&["get", "sts"]);
    assert!(table.starts_with("NAME   READY   AGE"), "{table}");
    assert!(table.contains("web    0/0"), "{table}");

    // 0 → 3: each pod is Running and Ready before the next exists.
    c.ok(&["scale", "sts", "web", "--replicas=3"]);
    let in_order = |seen: &BTreeMap<String, Value>| {
        for n in 1..3 {
            if seen.contains_key(&format!("web-{n}")) {
                let before = seen.get(&format!("web-{}", n - 1));
                if !before.is_some_and(running_and_ready) {
                    return Err(format!("web-{n} exists while web-{} is not ready", n - 1));
                }
            }
        }
        Ok(())
    };
    let up = watch_until(&c, "three ready pods", in_order, |seen| {
        seen.len() == 3 && seen.values().all(running_and_ready)
    });
    for n in 0..3 {
        let pod = &up[&format!("web-{n}")];
        assert_eq!(pod["spec"]["hostname"], format!("web-{n}"));
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            format!("web-{n}")
        );
        assert_eq!(
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            n.to_string()
        );
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            format!("www-web-{n}")
        );
        let (_, dir) = claim_dir(&c, &format!("www-web-{n}"));
        let log = wait_for("the pod's log line", DEADLINE, || {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            if log.is_empty() {
                Err(format!("{dir:?} empty"))
            } else {
                Ok(log)
            }
        });
        assert_eq!(log, format!("web-{n}\n"));
    }
    let sts = wait_for("the status to count 3 ready", DEADLINE, || {
        let sts = c.json(&["get", "sts", "web"]);
        if sts["status"]["readyReplicas"] == 3 {
            Ok(sts)
        } else {
            Err(sts["status"].to_string())
        }
    });
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    assert_eq!(sts["status"]["updatedReplicas"], 3);
    let events = c.ok(&["get", "events"]);
    for line in [
        "create Claim www-web-0 Pod web-0 in StatefulSet web success",
        "create Pod web-0 in StatefulSet web successful",
        "create Pod web-2 in StatefulSet web successful",
    ] {
        assert!(events.contains(line), "{line:?} in {events}");
    }

    // 3 → 1: web-2 goes before web-1, and the claims stay.
    let (web0_claim, web0_dir) = claim_dir(&c, "www-web-0");
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    let reverse = |seen: &BTreeMap<String, Value>| {
        if !seen.contains_key("web-1") && seen.contains_key("web-2") {
            return Err("web-1 went before web-2".to_owned());
        }
        if !seen.contains_key("web-0") {
            return Err("web-0 went".to_owned());
        }
        Ok(())
    };
    watch_until(&c, "one pod left", reverse, |seen| seen.len() == 1);
    let claims = c.ok(&["get", "pvc"]);
    for claim in ["www-web-0", "www-web-1", "www-web-2"] {
        assert!(claims.contains(claim), "{claim} kept: {claims}");
    }

    // web-0 deleted: made again with the same claim and its data.
    let old_uid = up["web-0"]["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    c.ok(&["delete", "pod", "web-0"]);
    let again = wait_for("web-0 made again", DEADLINE, || {
        let seen = pods(&c);
        match seen.get("web-0") {
            Some(p) if p["metadata"]["uid"] != old_uid.as_str() && running_and_ready(p) => {
                Ok(p.clone())
            }
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        again["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "www-web-0"
    );
    let (uid, dir) = claim_dir(&c, "www-web-0");
    assert_eq!(
        (uid, &dir),
        (web0_claim, &web0_dir),
        "the same claim and volume"
    );
    wait_for("the second log line", DEADLINE, || {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        if log == "web-0\nweb-0\n" {
            Ok(())
        } else {
            Err(log)
        }
    });
}

#[test]
fn the_api_refuses_what_kubernetes_refuses() {
    let c = Cluster::new();
    let file = c.write(
        "bad.yaml",
        &web(1, "/data").replace("labels: {app: nginx}", "labels: {app: other}"),
    );
    let out = c.minik(&["apply", "-f", &file]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"
        ),
        "{}",
        out.stderr
    );
    c.apply("web.yaml", &web(1, "/data"));
    let sts = c.json(&["get", "sts", "web"]);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        0
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    let out = c.minik(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"serviceName":"other"}}"#,
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"),
        "{}",
        out.stderr
    );
    // The scale subresource: `scale` writes replicas, the selector is the set's.
    c.ok(&["scale", "sts", "web", "--replicas=4"]);
    assert_eq!(c.json(&["get", "sts", "web"])["spec"]["replicas"], 4);
}
