//! DaemonSets end to end on process-runtime nodes: one pod per node, placed by the scheduler;
//! a node that joins gets its pod; a node tainted NoSchedule keeps the pod it has but gets no
//! new one; a node whose labels do not match the node selector gets none; a template change
//! rolls node by node until `rollout status` says it is done, and `rollout undo` brings the old
//! pods back.

mod support;

use std::collections::BTreeMap;

use minik_testkit::{blocking::wait_for, DEADLINE};
use serde_json::Value;
use support::client::Cluster;

/// A cluster with two process-runtime nodes, `n1` and `n2`.
fn two_nodes() -> Cluster {
    let mut c = Cluster::with_node("process");
    c.add_node("n2", &["--runtime", "process"]);
    c
}

/// A DaemonSet of `sleep` pods labelled `app=NAME`; `extra` is more of its pod spec.
fn daemon_set(name: &str, seconds: u32, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/change-cause: sleep-{seconds}}}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n{extra}      containers:\n      - name: c\n        image: busybox\n        command: [sh, -c, 'sleep {seconds}']\n"
    )
}

/// The running (not deleting) pods labelled `app=NAME`, as node → revision hash.
fn pods_by_node(c: &Cluster, app: &str) -> BTreeMap<String, String> {
    let list = c.json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| {
            (
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// Waits until the running pods of `app` are on exactly `nodes`, one each; answers their hashes.
fn wait_for_pods_on(c: &Cluster, app: &str, nodes: &[&str]) -> BTreeMap<String, String> {
    wait_for(&format!("pods of {app} on {nodes:?}"), DEADLINE, || {
        let list = c.json(&["get", "pods", "-l", &format!("app={app}")]);
        let all = list["items"].as_array().map_or(0, Vec::len);
        let running = pods_by_node(c, app);
        let on: Vec<&str> = running.keys().map(String::as_str).collect();
        if on == nodes && all == nodes.len() {
            Ok(running)
        } else {
            Err(format!("running on {on:?}, {all} pods in all"))
        }
    })
}

fn status(c: &Cluster, name: &str) -> Value {
    c.json(&["get", "ds", name])["status"].clone()
}

#[test]
fn daemon_pods_follow_the_nodes() {
    let mut c = two_nodes();
    c.apply("agent.yaml", &daemon_set("agent", 3600, ""));
    let pods = wait_for_pods_on(&c, "agent", &["n1", "n2"]);
    // Placed by the scheduler: a node affinity to its node, the daemon tolerations.
    let pod = &c.json(&["get", "pods", "-l", "app=agent"])["items"][0];
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0],
        node
    );
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );
    assert_eq!(
        pods.values()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1
    );
    wait_for("the status to count two ready pods", DEADLINE, || {
        let s = status(&c, "agent");
        if s["numberReady"] == 2 && s["desiredNumberScheduled"] == 2 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let table = c.ok(&["get", "ds", "agent"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ]
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..7],
        ["agent", "2", "2", "2", "2", "2", "<none>"],
        "{table}"
    );

    // A third node joins: it gets its pod.
    c.add_node("n3", &["--runtime", "process"]);
    wait_for_pods_on(&c, "agent", &["n1", "n2", "n3"]);

    // n3 is tainted NoSchedule: its pod stays, but once deleted none comes back.
    c.ok(&[
        "patch",
        "node",
        "n3",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"taints":[{"key":"dedicated","value":"db","effect":"NoSchedule"}]}}"#,
    ]);
    wait_for("n3 to stop counting", DEADLINE, || {
        let s = status(&c, "agent");
        if s["desiredNumberScheduled"] == 2 && s["numberMisscheduled"] == 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    assert_eq!(
        pods_by_node(&c, "agent").len(),
        3,
        "NoSchedule evicts nothing"
    );
    let list = c.json(&["get", "pods", "-l", "app=agent"]);
    let on_n3 = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["spec"]["nodeName"] == "n3")
        .and_then(|p| p["metadata"]["name"].as_str())
        .unwrap_or_default()
        .to_owned();
    c.ok(&["delete", "pod", &on_n3]);
    wait_for_pods_on(&c, "agent", &["n1", "n2"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        pods_by_node(&c, "agent").keys().collect::<Vec<_>>(),
        ["n1", "n2"],
        "no new pod on a tainted node"
    );

    // A node selector: only the node labelled to match gets a pod.
    c.ok(&["label", "node", "n1", "role=edge"]);
    c.ok(&["label", "node", "n2", "role=core"]);
    c.apply(
        "edge.yaml",
        &daemon_set("edge", 3600, "      nodeSelector: {role: edge}\n"),
    );
    wait_for_pods_on(&c, "edge", &["n1"]);
    // Relabelling n2 brings a pod there, and n1 losing its label takes its pod away.
    c.ok(&["label", "node", "n2", "role=edge", "--overwrite"]);
    wait_for_pods_on(&c, "edge", &["n1", "n2"]);
    c.ok(&["label", "node", "n1", "role-"]);
    wait_for_pods_on(&c, "edge", &["n2"]);
    let s = status(&c, "edge");
    assert_eq!(s["desiredNumberScheduled"], 1, "{s}");
}

#[test]
fn template_changes_roll_node_by_node_and_undo_goes_back() {
    let c = two_nodes();
    c.apply("agent.yaml", &daemon_set("agent", 3600, ""));
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout", "60s"]);
    assert!(
        out.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{out}"
    );
    let first = wait_for_pods_on(&c, "agent", &["n1", "n2"]);
    let first_hash = first.values().next().cloned().unwrap_or_default();

    // A new template rolls out one node at a time (maxUnavailable 1).
    c.apply("agent.yaml", &daemon_set("agent", 3601, ""));
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout", "60s"]);
    assert!(
        out.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{out}"
    );
    let second = wait_for_pods_on(&c, "agent", &["n1", "n2"]);
    let second_hash = second.values().next().cloned().unwrap_or_default();
    assert_ne!(first_hash, second_hash);
    assert!(second.values().all(|h| *h == second_hash), "{second:?}");
    let deletes = c.json(&["get", "events"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == "agent" && e["reason"] == "SuccessfulDelete")
        .count();
    assert_eq!(deletes, 2, "each old pod was deleted once");
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert_eq!(
        history,
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n1         sleep-3600\n2         sleep-3601\n\n"
    );
    let revisions = c.ok(&["get", "controllerrevisions"]);
    assert!(revisions.contains("daemonset.apps/agent"), "{revisions}");

    // Undo: the pods return to the first template's hash, whose revision is now the newest.
    assert_eq!(
        c.ok(&["rollout", "undo", "ds/agent"]),
        "daemonset.apps/agent rolled back\n"
    );
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout", "60s"]);
    assert!(
        out.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{out}"
    );
    let back = wait_for_pods_on(&c, "agent", &["n1", "n2"]);
    assert!(
        back.values().all(|h| *h == first_hash),
        "{back:?} vs {first_hash}"
    );
    let history = wait_for("the old revision renumbered", DEADLINE, || {
        let h = c.ok(&["rollout", "history", "ds/agent"]);
        if h.contains("\n3 ") {
            Ok(h)
        } else {
            Err(h)
        }
    });
    assert_eq!(
        history,
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n2         sleep-3601\n3         sleep-3600\n\n"
    );
    assert_eq!(
        c.ok(&["rollout", "restart", "ds/agent"]),
        "daemonset.apps/agent restarted\n"
    );
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout", "60s"]);
    assert!(out.ends_with("successfully rolled out\n"), "{out}");
    let restarted = wait_for_pods_on(&c, "agent", &["n1", "n2"]);
    assert!(restarted
        .values()
        .all(|h| *h != first_hash && *h != second_hash));
}
