//! The scheduler against a real API server with Node objects (no agents): what it binds where,
//! what it tells about pods that fit nowhere, and how it reacts when the cluster changes.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{cpu, start, start_server, test_config};
use minik_testkit::{wait_for, DEADLINE};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_exhausted_then_freed() {
    let c = start().await;
    c.node("n1", "1", "1Gi", json!({})).await;
    c.pod("a", cpu("600m")).await;
    assert_eq!(c.wait_bound("a").await, "n1");
    c.pod("b", cpu("600m")).await;
    c.wait_unschedulable("b", "0/1 nodes are available: 1 Insufficient cpu.")
        .await;
    c.delete_pod("a").await;
    assert_eq!(c.wait_bound("b").await, "n1");
    let pod = c.get_pod("b").await;
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(scheduled["status"], "True", "{pod}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_does_not_over_commit_a_node() {
    // Decisions run ahead of the watch; assumed pods must count at once.
    let c = start().await;
    c.node("n1", "1", "1Gi", json!({})).await;
    c.node("n2", "1", "1Gi", json!({})).await;
    for i in 0..6 {
        c.pod(&format!("p{i}"), cpu("400m")).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    let mut pending = Vec::new();
    for i in 0..6 {
        let name = format!("p{i}");
        let pod = wait_for(
            &format!("{name} to be bound or unschedulable"),
            DEADLINE,
            || async {
                let pod = c.get_pod(&name).await;
                let decided = pod["spec"]["nodeName"].is_string()
                    || pod["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"));
                decided.then_some(pod)
            },
        )
        .await;
        match pod["spec"]["nodeName"].as_str() {
            Some(node) => *per_node.entry(node.to_owned()).or_default() += 1,
            None => pending.push(name),
        }
    }
    assert_eq!(per_node.get("n1"), Some(&2), "{per_node:?}");
    assert_eq!(per_node.get("n2"), Some(&2), "{per_node:?}");
    assert_eq!(pending.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_nodes_get_no_pods_until_uncordoned() {
    let c = start().await;
    c.node("n1", "4", "4Gi", json!({"spec": {"unschedulable": true}}))
        .await;
    c.pod("web", json!({})).await;
    c.wait_unschedulable(
        "web",
        "0/1 nodes are available: 1 node(s) were unschedulable.",
    )
    .await;
    c.merge_patch("/api/v1/nodes/n1", json!({"spec": {"unschedulable": null}}))
        .await;
    assert_eq!(c.wait_bound("web").await, "n1");
    // Cordoned again: a second node takes the next pod even though n1 is emptier.
    c.merge_patch("/api/v1/nodes/n1", json!({"spec": {"unschedulable": true}}))
        .await;
    c.node("n2", "1", "1Gi", json!({})).await;
    // Wait until the scheduler has seen both changes: a pod with a selector for n2 binds.
    c.pod(
        "probe",
        json!({"nodeSelector": {"kubernetes.io/hostname": "n2"}}),
    )
    .await;
    c.wait_bound("probe").await;
    c.pod("api", json!({})).await;
    assert_eq!(c.wait_bound("api").await, "n2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_keep_away_pods_without_tolerations() {
    let c = start().await;
    c.node(
        "db-1",
        "8",
        "8Gi",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.node("small", "1", "1Gi", json!({})).await;
    c.node("small-2", "1", "1Gi", json!({})).await;
    c.pod("web", cpu("2")).await;
    c.wait_unschedulable(
        "web",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu.",
    )
    .await;
    let mut tolerant = cpu("2");
    tolerant["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
    c.pod("postgres", tolerant).await;
    assert_eq!(c.wait_bound("postgres").await, "db-1");
    // The taint the node lifecycle controller puts on an unreachable node keeps pods away
    // (pods tolerate only its NoExecute twin, for a while); an empty key with Exists tolerates
    // everything.
    c.node(
        "gone",
        "8",
        "8Gi",
        json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
        ]}}),
    )
    .await;
    c.pod(
        "other",
        json!({"nodeSelector": {"kubernetes.io/hostname": "gone"}}),
    )
    .await;
    c.wait_unschedulable(
        "other",
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 node(s) didn't match Pod's node affinity/selector.",
    )
    .await;
    c.pod(
        "anything",
        json!({"nodeSelector": {"kubernetes.io/hostname": "gone"}, "tolerations": [{"operator": "Exists"}]}),
    )
    .await;
    assert_eq!(c.wait_bound("anything").await, "gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_affinity_pick_labelled_nodes() {
    let c = start().await;
    c.node(
        "n1",
        "4",
        "4Gi",
        json!({"metadata": {"labels": {"zone": "a"}}}),
    )
    .await;
    c.node(
        "n2",
        "4",
        "4Gi",
        json!({"metadata": {"labels": {"zone": "b", "gen": "5"}}}),
    )
    .await;
    c.pod("in-b", json!({"nodeSelector": {"zone": "b"}})).await;
    assert_eq!(c.wait_bound("in-b").await, "n2");
    c.pod(
        "newer",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}
        ]}}}}),
    )
    .await;
    assert_eq!(c.wait_bound("newer").await, "n2");
    c.pod("in-c", json!({"nodeSelector": {"zone": "c"}})).await;
    c.wait_unschedulable(
        "in-c",
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
    )
    .await;
    // A node that matches appears: the pod gets it promptly.
    c.node(
        "n3",
        "4",
        "4Gi",
        json!({"metadata": {"labels": {"zone": "c"}}}),
    )
    .await;
    assert_eq!(c.wait_bound("in-c").await, "n3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_keep_two_pods_apart() {
    let c = start().await;
    c.node("n1", "4", "4Gi", json!({})).await;
    c.node("n2", "4", "4Gi", json!({})).await;
    let with_port = json!({"containers": [{"name": "main", "image": "nginx:1.25", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    c.pod("a", with_port.clone()).await;
    c.pod("b", with_port.clone()).await;
    let a = c.wait_bound("a").await;
    let b = c.wait_bound("b").await;
    assert_ne!(a, b);
    c.pod("c", with_port.clone()).await;
    c.wait_unschedulable(
        "c",
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
    )
    .await;
    // Another protocol on the same port is free.
    c.pod(
        "udp",
        json!({"containers": [{"name": "main", "image": "nginx:1.25", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}),
    )
    .await;
    c.wait_bound("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_owner_spread_over_three_nodes() {
    let c = start().await;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "4", "8Gi", json!({})).await;
    }
    let owner = json!({"ownerReferences": [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9",
        "uid": "3f1c0d5e-0000-4000-8000-000000000001", "controller": true
    }]});
    let mut nodes = BTreeSet::new();
    for i in 0..3 {
        let name = format!("web-7d4b9-{i}");
        c.pod_with_meta(&name, owner.clone(), cpu("100m")).await;
    }
    for i in 0..3 {
        nodes.insert(c.wait_bound(&format!("web-7d4b9-{i}")).await);
    }
    assert_eq!(nodes.len(), 3, "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_gets_the_condition_and_one_event() {
    let c = start().await;
    c.node("n1", "1", "1Gi", json!({})).await;
    c.node(
        "n2",
        "1",
        "1Gi",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.pod("big", cpu("2")).await;
    let message =
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: db}.";
    let pod = c.wait_unschedulable("big", message).await;
    assert_eq!(pod["status"]["phase"], "Pending");
    // Changes that leave the message as it is make the scheduler try again a few times.
    for zone in ["a", "b", "c"] {
        c.merge_patch(
            "/api/v1/nodes/n1",
            json!({"metadata": {"labels": {"zone": zone}}}),
        )
        .await;
    }
    let events = wait_for("the event's count to go up", DEADLINE, || async {
        let events = c.events_of("big").await;
        let counted = events
            .iter()
            .any(|e| e["count"].as_i64().is_some_and(|n| n >= 2));
        counted.then_some(events)
    })
    .await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "FailedScheduling")
        .collect();
    assert_eq!(failed.len(), 1, "one event, not one per retry: {events:?}");
    let event = failed[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["message"], message);
    assert_eq!(event["involvedObject"]["kind"], "Pod");
    assert_eq!(event["involvedObject"]["name"], "big");
    assert_eq!(event["involvedObject"]["namespace"], "default");
    assert_eq!(event["involvedObject"]["uid"], pod["metadata"]["uid"]);
    assert_eq!(event["source"]["component"], "default-scheduler");
    assert_eq!(event["reportingComponent"], "default-scheduler");
    assert!(event["lastTimestamp"].is_string() && event["firstTimestamp"].is_string());
    // The condition is written once, not on every retry: its transition time stays put.
    let again = c.get_pod("big").await;
    let condition = |p: &serde_json::Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        condition(&again)["lastTransitionTime"],
        condition(&pod)["lastTransitionTime"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_bind_records_a_scheduled_event() {
    let c = start().await;
    c.node("n2", "4", "4Gi", json!({})).await;
    c.pod("web-x", json!({})).await;
    assert_eq!(c.wait_bound("web-x").await, "n2");
    let event = wait_for("the Scheduled event", DEADLINE, || async {
        c.events_of("web-x")
            .await
            .into_iter()
            .find(|e| e["reason"] == "Scheduled")
    })
    .await;
    assert_eq!(event["type"], "Normal");
    assert_eq!(
        event["message"],
        "Successfully assigned default/web-x to n2"
    );
    assert_eq!(event["source"]["component"], "default-scheduler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_for_another_scheduler_are_left_pending() {
    let c = start().await;
    c.node("n1", "4", "4Gi", json!({})).await;
    c.pod("custom", json!({"schedulerName": "my-scheduler"}))
        .await;
    c.pod("default", json!({})).await;
    c.wait_bound("default").await;
    let custom = c.get_pod("custom").await;
    assert!(custom["spec"]["nodeName"].is_null(), "{custom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_nodes_get_no_pods() {
    let c = start().await;
    c.node(
        "n1",
        "4",
        "4Gi",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}}),
    )
    .await;
    c.pod("web", json!({})).await;
    c.wait_unschedulable("web", "0/1 nodes are available: 1 node(s) were not ready.")
        .await;
    c.merge_patch(
        "/api/v1/nodes/n1/status",
        json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}),
    )
    .await;
    assert_eq!(c.wait_bound("web").await, "n1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_never_bind_a_pod_twice() {
    // The binding is a compare-and-swap: whichever scheduler loses gets 409 and drops the pod.
    let mut c = start_server().await;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "64", "64Gi", json!({})).await;
    }
    c.start_scheduler(test_config());
    c.start_scheduler(test_config());
    let names: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    for name in &names {
        c.pod(name, json!({})).await;
    }
    for name in &names {
        c.wait_bound(name).await;
    }
    // Every pod has exactly one Scheduled event: the loser of a race reports nothing.
    for name in &names {
        let scheduled = wait_for(
            &format!("the Scheduled event of {name}"),
            DEADLINE,
            || async {
                let n = c
                    .events_of(name)
                    .await
                    .iter()
                    .filter(|e| e["reason"] == "Scheduled")
                    .count();
                (n > 0).then_some(n)
            },
        )
        .await;
        assert_eq!(scheduled, 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_works_over_http_and_waits_for_the_server() {
    let mut c = start_server().await;
    c.start_scheduler_over_http(test_config());
    c.node("n1", "2", "2Gi", json!({})).await;
    c.pod("a", cpu("1")).await;
    assert_eq!(c.wait_bound("a").await, "n1");
}
