//! PodDisruptionBudgets end to end on the process runtime: the disruption controller keeps a
//! budget's status, and `minik drain` evicts through `pods/eviction`, retrying every 5 s what
//! the budget refuses, as kubectl drain does, until its `--timeout`.
//!
//! The process runtime mounts the pods' volumes in a private mount namespace, which needs
//! root: the test fails under `CI=true` without it.

mod support;

use minik_testkit::{blocking::wait_for, DEADLINE};
use serde_json::Value;
use support::client::Cluster;

const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

const WEB: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        command: [sleep, '3600']
";

fn budget(min_available: i32) -> String {
    format!(
        "\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: {min_available}
  selector:
    matchLabels: {{app: web}}
"
    )
}

/// The pods of the Deployment: (name, node, deleting, ready).
fn pods(c: &Cluster) -> Vec<(String, String, bool, bool)> {
    let list = c.json(&["get", "pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                !p["metadata"]["deletionTimestamp"].is_null(),
                ready,
            )
        })
        .collect()
}

/// Waits until the budget's status is computed for its generation with these counts.
fn budget_status(c: &Cluster, healthy: i64, desired: i64, allowed: i64) -> Value {
    wait_for(
        &format!("the budget at {healthy} healthy, {desired} desired, {allowed} allowed"),
        DEADLINE,
        || {
            let pdb = c.json(&["get", "pdb", "web"]);
            let s = &pdb["status"];
            let current = s["observedGeneration"] == pdb["metadata"]["generation"]
                && s["currentHealthy"] == healthy
                && s["desiredHealthy"] == desired
                && s["disruptionsAllowed"] == allowed;
            if current {
                Ok(s.clone())
            } else {
                Err(pdb.to_string())
            }
        },
    )
}

#[test]
fn drain_honours_the_disruption_budget() {
    if !nix::unistd::geteuid().is_root() {
        minik_testkit::cannot_run(
            "root",
            "the process runtime mounts volumes in a private mount namespace",
        );
        return;
    }
    let c = Cluster::with_node("process");
    c.apply("web.yaml", WEB);
    c.apply("pdb.yaml", &budget(2));
    let originals = wait_for("two ready pods on n1", DEADLINE, || {
        let p = pods(&c);
        if p.len() == 2
            && p.iter()
                .all(|(_, node, deleting, ready)| node == "n1" && !deleting && *ready)
        {
            Ok(p.into_iter().map(|(name, ..)| name).collect::<Vec<_>>())
        } else {
            Err(format!("{p:?}"))
        }
    });
    let status = budget_status(&c, 2, 2, 0);
    assert_eq!(status["expectedPods"], 2, "{status:#}");
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
    let table = c.ok(&["get", "pdb"]);
    let mut lines = table.lines();
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ])
    );
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>()),
        Some(vec!["web", "2", "N/A", "0"])
    );

    // minAvailable 2 of 2: every eviction is refused, retried, and the drain times out.
    let out = c.minik(&["drain", "n1", "--timeout", "5s"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    for name in &originals {
        let line = format!(
            "error when evicting pods/{name:?} -n \"default\" (will retry after 5s): {REFUSED}"
        );
        assert!(out.stderr.contains(&line), "{line} not in {}", out.stderr);
        assert!(
            out.stdout.contains(&format!("evicting pod default/{name}")),
            "{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains(" evicted"), "{}", out.stdout);
    assert!(
        out.stderr
            .ends_with("error: drain did not complete within 5s\n"),
        "{}",
        out.stderr
    );
    let now = pods(&c);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now
        .iter()
        .all(|(name, _, deleting, _)| originals.contains(name) && !deleting));

    // minAvailable 1: one eviction goes through; its replacement cannot be scheduled on the
    // cordoned node, so the other is refused until the drain times out.
    c.apply("pdb.yaml", &budget(1));
    budget_status(&c, 2, 1, 1);
    let out = c.minik(&["drain", "n1", "--timeout", "5s"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.lines().next(), Some("node/n1 already cordoned"));
    let refused: Vec<&String> = originals
        .iter()
        .filter(|name| {
            out.stderr.contains(&format!(
                "error when evicting pods/{name:?} -n \"default\" (will retry after 5s): {REFUSED}"
            ))
        })
        .collect();
    assert_eq!(refused.len(), 1, "{}", out.stderr);
    let kept = refused[0].clone();
    let evicted = originals
        .iter()
        .find(|n| **n != kept)
        .cloned()
        .unwrap_or_default();
    assert!(
        out.stderr
            .ends_with("error: drain did not complete within 5s\n"),
        "{}",
        out.stderr
    );
    wait_for(
        "the evicted pod gone and its replacement pending",
        DEADLINE,
        || {
            let now = pods(&c);
            let kept_stays = now
                .iter()
                .any(|(name, node, deleting, _)| *name == kept && node == "n1" && !deleting);
            let evicted_gone = !now.iter().any(|(name, ..)| *name == evicted);
            let pending = now
                .iter()
                .filter(|(name, node, ..)| !originals.contains(name) && node.is_empty())
                .count();
            if kept_stays && evicted_gone && pending == 1 && now.len() == 2 {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    );
    // The budget is spent: one healthy pod, which it needs.
    budget_status(&c, 1, 1, 0);
}
