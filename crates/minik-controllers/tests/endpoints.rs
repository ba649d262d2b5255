//! The Endpoints and LoadBalancer controllers against a real API server: Endpoints follow pod
//! readiness and host ports, selector-less Services are left alone, deleted Services lose
//! their Endpoints, and LoadBalancers list the Ready nodes' addresses.

mod common;

use minik_api::k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_client::resource_of;
use serde_json::{json, Value};

use common::*;
use minik_testkit::{wait_for, DEADLINE};

async fn create<K: minik_api::k8s_openapi::Resource>(c: &Cluster, ns: Option<&str>, object: Value) {
    c.api
        .create(resource_of::<K>(), ns, object, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot create a {}: {e}", K::KIND));
}

/// Sets a pod's IP and readiness through its status, as its node would.
async fn set_status(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    c.api
        .patch(
            resource_of::<Pod>(),
            Some("default"),
            name,
            Patch {
                kind: PatchKind::Merge,
                body: json!({"status": {"phase": "Running", "podIP": ip, "hostIP": ip,
                    "conditions": [{"type": "Ready", "status": ready}]}}),
            },
            true,
            WriteOptions::default(),
        )
        .await
        .expect("status patch");
}

fn pod(name: &str, host_port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"},
                     "annotations": {"minik.io/host-ports": format!("{{\"8080\":{host_port}}}")}},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}
    })
}

/// (ready "ip:port" list, not-ready "ip:port" list) of the Endpoints `name`, once they exist.
async fn addresses(c: &Cluster, name: &str) -> Option<(Vec<String>, Vec<String>)> {
    let ep = c
        .api
        .get(resource_of::<Endpoints>(), Some("default"), name)
        .await
        .ok()?;
    let ep: Endpoints = serde_json::from_value(ep).ok()?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep.subsets.iter().flatten() {
        let port = s.ports.as_ref()?.first()?.port;
        for a in s.addresses.iter().flatten() {
            ready.push(format!("{}:{port}", a.ip));
        }
        for a in s.not_ready_addresses.iter().flatten() {
            not_ready.push(format!("{}:{port}", a.ip));
        }
    }
    ready.sort();
    not_ready.sort();
    Some((ready, not_ready))
}

async fn wait_addresses(c: &Cluster, name: &str, ready: &[&str], not_ready: &[&str]) {
    let want = (
        ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        not_ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    wait_for(
        &format!("endpoints {name} to be {want:?}"),
        DEADLINE,
        || async { (addresses(c, name).await.as_ref() == Some(&want)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_readiness_and_host_ports() {
    let c = start().await;
    create::<Service>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    )
    .await;
    wait_addresses(&c, "web", &[], &[]).await;
    create::<Pod>(&c, Some("default"), pod("a", 31000)).await;
    create::<Pod>(&c, Some("default"), pod("b", 31001)).await;
    set_status(&c, "a", "127.0.0.2", true).await;
    set_status(&c, "b", "127.0.0.3", false).await;
    wait_addresses(&c, "web", &["127.0.0.2:31000"], &["127.0.0.3:31001"]).await;
    set_status(&c, "b", "127.0.0.3", true).await;
    wait_addresses(&c, "web", &["127.0.0.2:31000", "127.0.0.3:31001"], &[]).await;
    set_status(&c, "a", "127.0.0.2", false).await;
    wait_addresses(&c, "web", &["127.0.0.3:31001"], &["127.0.0.2:31000"]).await;

    // A pod relabelled out of the selector leaves; a deleted one too.
    c.patch::<Pod>("b", json!({"metadata": {"labels": {"app": "other"}}}))
        .await;
    wait_addresses(&c, "web", &[], &["127.0.0.2:31000"]).await;
    c.delete::<Pod>("a", None).await;
    wait_addresses(&c, "web", &[], &[]).await;

    // The Service goes, its Endpoints go.
    c.delete::<Service>("web", None).await;
    wait_for("endpoints web to go", DEADLINE, || async {
        addresses(&c, "web").await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectorless_endpoints_are_the_users() {
    let c = start().await;
    create::<Service>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
               "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create::<Endpoints>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
               "subsets": [{"addresses": [{"ip": "127.0.0.9"}], "ports": [{"port": 9999}]}]}),
    )
    .await;
    // A selected-looking pod changes nothing; the user's Endpoints stay through a resync.
    create::<Pod>(&c, Some("default"), pod("a", 31000)).await;
    set_status(&c, "a", "127.0.0.2", true).await;
    create::<Service>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "marker"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await;
    wait_addresses(&c, "marker", &["127.0.0.2:31000"], &[]).await;
    assert_eq!(
        addresses(&c, "ext").await,
        Some((vec!["127.0.0.9:9999".to_owned()], vec![]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_list_ready_node_addresses() {
    let c = start().await;
    for (name, ip) in [("n1", "127.0.0.2"), ("n2", "127.0.0.3")] {
        create::<Node>(
            &c,
            None,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                   "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                              "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .await;
    }
    create::<Service>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 8080}]}}),
    )
    .await;
    let ingress = |c: &Cluster| {
        let api = c.api.clone();
        async move {
            let svc = api
                .get(resource_of::<Service>(), Some("default"), "lb")
                .await
                .ok()?;
            let ips: Vec<String> = svc["status"]["loadBalancer"]["ingress"]
                .as_array()?
                .iter()
                .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                .collect();
            Some(ips)
        }
    };
    wait_for("ingress of both nodes", DEADLINE, || async {
        (ingress(&c).await? == ["127.0.0.2", "127.0.0.3"]).then_some(())
    })
    .await;
    c.api
        .delete(resource_of::<Node>(), None, "n2", Default::default())
        .await
        .expect("delete node");
    wait_for("ingress of n1 alone", DEADLINE, || async {
        (ingress(&c).await? == ["127.0.0.2"]).then_some(())
    })
    .await;
    // No longer a LoadBalancer: no ingress.
    c.patch::<Service>(
        "lb",
        json!({"spec": {"type": "ClusterIP", "allocateLoadBalancerNodePorts": null,
                        "externalTrafficPolicy": null, "ports": [{"port": 8080, "nodePort": null}]}}),
    )
    .await;
    wait_for("no ingress", DEADLINE, || async {
        ingress(&c).await.is_none().then_some(())
    })
    .await;
}
