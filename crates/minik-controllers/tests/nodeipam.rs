//! The node IPAM controller against a real API server: Nodes get distinct pod CIDRs from the
//! cluster CIDR, a Node created with one keeps it, an exhausted cluster CIDR gives the waiting
//! Node upstream's `CIDRNotAvailable` event, a deleted Node's range goes to the next Node, and a
//! pod CIDR outside the cluster CIDR is reported.

use std::sync::Arc;
use std::time::Duration;

use minik_api::cidr::Cidr;
use minik_api::k8s_openapi::api::core::v1::{Event, Node};
use minik_api::request::WriteOptions;
use minik_client::{resource_of, Api, ApiExt, ListParams};
use minik_testkit::{wait_for, DEADLINE};
use serde_json::{json, Value};

fn cidr(text: &str) -> Cidr {
    text.parse().expect("a CIDR")
}

async fn create_node(api: &Arc<dyn Api>, name: &str, pod_cidr: Option<&str>) {
    let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    if let Some(c) = pod_cidr {
        node["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    api.create(resource_of::<Node>(), None, node, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot create node {name}: {e}"));
}

async fn pod_cidr(api: &Arc<dyn Api>, name: &str) -> Option<String> {
    let node: Value = api.get(resource_of::<Node>(), None, name).await.ok()?;
    let one = node["spec"]["podCIDR"].as_str()?.to_owned();
    // Both fields are set, to the same range.
    (node["spec"]["podCIDRs"] == json!([one])).then_some(one)
}

async fn wait_pod_cidr(api: &Arc<dyn Api>, name: &str) -> String {
    wait_for(&format!("a pod CIDR on node {name}"), DEADLINE, || {
        pod_cidr(api, name)
    })
    .await
}

/// The (type, message) of the events with `reason` about Node `node`.
async fn events(api: &Arc<dyn Api>, node: &str, reason: &str) -> Vec<(String, String)> {
    let Ok((events, _)) = api
        .list_as::<Event>(Some("default"), &ListParams::default())
        .await
    else {
        return Vec::new();
    };
    events
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Node")
                && e.involved_object.name.as_deref() == Some(node)
                && e.reason.as_deref() == Some(reason)
        })
        .map(|e| (e.type_.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs_and_freed_ones_are_reused() {
    let mut server = minik_testkit::start().await;
    let config = minik_controllers::Config {
        resync: Duration::from_secs(5),
        // Four /24s.
        cluster_cidr: Some(cidr("10.244.0.0/22")),
        node_cidr_mask: 24,
        service_cidr: Some(cidr("10.96.0.0/12")),
        ..minik_controllers::Config::default()
    };
    config.check().expect("valid settings");
    server.spawn(minik_controllers::run(server.api.clone(), config));
    let api = server.api.clone();

    // One Node comes with its pod CIDR; three come without.
    create_node(&api, "fixed", Some("10.244.2.0/24")).await;
    for name in ["n1", "n2", "n3"] {
        create_node(&api, name, None).await;
    }
    let mut given = Vec::new();
    for name in ["n1", "n2", "n3"] {
        given.push(wait_pod_cidr(&api, name).await);
    }
    let mut sorted = given.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["10.244.0.0/24", "10.244.1.0/24", "10.244.3.0/24"],
        "three distinct /24s clear of the fixed node's"
    );
    assert_eq!(
        pod_cidr(&api, "fixed").await.as_deref(),
        Some("10.244.2.0/24")
    );

    // A pod CIDR outside the cluster CIDR is reported and kept.
    create_node(&api, "stray", Some("10.250.0.0/24")).await;
    let warning = wait_for("a warning about node stray", DEADLINE, || async {
        events(&api, "stray", "CIDRNotAvailable").await.pop()
    })
    .await;
    assert_eq!(
        warning,
        (
            "Warning".to_owned(),
            "Node stray's pod CIDR 10.250.0.0/24 is out of the range of cluster CIDR \
             10.244.0.0/22; the node IPAM leaves it as it is"
                .to_owned()
        )
    );
    assert_eq!(
        pod_cidr(&api, "stray").await.as_deref(),
        Some("10.250.0.0/24")
    );

    // The cluster CIDR is full: the next Node waits, with upstream's event.
    create_node(&api, "n4", None).await;
    let exhausted = wait_for("CIDRNotAvailable on node n4", DEADLINE, || async {
        events(&api, "n4", "CIDRNotAvailable").await.pop()
    })
    .await;
    assert_eq!(
        exhausted,
        (
            "Normal".to_owned(),
            "Node n4 status is now: CIDRNotAvailable".to_owned()
        )
    );
    assert_eq!(pod_cidr(&api, "n4").await, None);

    // n2 goes: its range is n4's.
    api.delete(resource_of::<Node>(), None, "n2", Default::default())
        .await
        .expect("delete node n2");
    assert_eq!(wait_pod_cidr(&api, "n4").await, given[1]);
    // Nobody else's changed.
    assert_eq!(pod_cidr(&api, "n1").await, Some(given[0].clone()));
    assert_eq!(pod_cidr(&api, "n3").await, Some(given[2].clone()));
}
