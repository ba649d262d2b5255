//! Cluster IP and node port allocation over real HTTP: concurrent creates never share a value,
//! requested values are honoured or refused with Kubernetes' wording and field path, deletes
//! release, updates keep what a Service holds, and a second server over the same store (a
//! restart) knows what is taken.

use std::collections::HashSet;
use std::sync::Arc;

use minik_api::request::WriteOptions;
use minik_api::resources;
use minik_client::Api;
use serde_json::{json, Value};

use minik_testkit::{start, Answer};

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn web(name: &str) -> Value {
    service(
        name,
        json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
    )
}

fn node_port(name: &str, port: Option<i64>) -> Value {
    let mut p = json!({"port": 80});
    if let Some(n) = port {
        p["nodePort"] = json!(n);
    }
    service(
        name,
        json!({"type": "NodePort", "selector": {"app": "web"}, "ports": [p]}),
    )
}

/// The single cause of a 422 answer: (field, message).
fn cause(answer: &Answer) -> (String, String) {
    assert_eq!(answer.code, 422, "{:?}", answer.body);
    let causes = answer.body["details"]["causes"].as_array().expect("causes");
    assert_eq!(causes.len(), 1, "{causes:?}");
    (
        causes[0]["field"].as_str().unwrap_or_default().to_owned(),
        causes[0]["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_share_an_ip_or_a_node_port() {
    let s = Arc::new(start().await);
    let creates = (0..40).map(|i| {
        let s = s.clone();
        tokio::spawn(async move { s.post(SERVICES, &node_port(&format!("s{i}"), None)).await })
    });
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for answer in futures::future::join_all(creates).await {
        let answer = answer.expect("task");
        assert_eq!(answer.code, 201, "{:?}", answer.body);
        let ip = answer.body["spec"]["clusterIP"]
            .as_str()
            .expect("clusterIP");
        assert_eq!(answer.body["spec"]["clusterIPs"], json!([ip]));
        let parsed: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
        assert_eq!(&parsed.octets()[..2], &[127, 96], "{ip}");
        assert!(ips.insert(ip.to_owned()), "{ip} given twice");
        let port = answer.body["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .expect("nodePort");
        assert!((30000..=32767).contains(&port), "{port}");
        assert!(ports.insert(port), "{port} given twice");
    }
}

#[tokio::test]
async fn requested_values_are_honoured_or_refused_and_deletes_release_them() {
    let s = start().await;
    let a = s.post(SERVICES, &node_port("a", Some(30080))).await;
    assert_eq!(a.code, 201, "{:?}", a.body);
    assert_eq!(a.body["spec"]["ports"][0]["nodePort"], 30080);
    let ip = a.body["spec"]["clusterIP"].as_str().unwrap().to_owned();

    let b = s.post(SERVICES, &node_port("b", Some(30080))).await;
    assert_eq!(
        cause(&b),
        (
            "spec.ports[0].nodePort".into(),
            "Invalid value: 30080: provided port is already allocated".into()
        )
    );
    assert!(b.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Service \"b\" is invalid: spec.ports[0].nodePort"));
    let out = s.post(SERVICES, &node_port("b", Some(40000))).await;
    assert_eq!(cause(&out).0, "spec.ports[0].nodePort");

    let mut same_ip = web("c");
    same_ip["spec"]["clusterIP"] = json!(ip);
    let c = s.post(SERVICES, &same_ip).await;
    assert_eq!(
        cause(&c),
        (
            "spec.clusterIPs[0]".into(),
            format!("Invalid value: \"{ip}\": failed to allocate IP {ip}: provided IP is already allocated")
        )
    );
    let mut outside = web("c");
    outside["spec"]["clusterIP"] = json!("10.0.0.1");
    let c = s.post(SERVICES, &outside).await;
    assert!(cause(&c)
        .1
        .contains("The range of valid IPs is 127.96.0.0/16"));
    // Nothing was written by the refusals.
    assert_eq!(s.get(&format!("{SERVICES}/b")).await.code, 404);
    assert_eq!(s.get(&format!("{SERVICES}/c")).await.code, 404);

    let mut chosen = web("d");
    chosen["spec"]["clusterIP"] = json!("127.96.200.7");
    let d = s.post(SERVICES, &chosen).await;
    assert_eq!(d.code, 201, "{:?}", d.body);
    assert_eq!(d.body["spec"]["clusterIPs"], json!(["127.96.200.7"]));

    let mut headless = web("h");
    headless["spec"]["clusterIP"] = json!("None");
    let h = s.post(SERVICES, &headless).await;
    assert_eq!(h.code, 201, "{:?}", h.body);
    assert_eq!(h.body["spec"]["clusterIP"], "None");

    assert_eq!(s.delete(&format!("{SERVICES}/a")).await.code, 200);
    let b = s.post(SERVICES, &node_port("b", Some(30080))).await;
    assert_eq!(
        b.code, 201,
        "the released node port is free again: {:?}",
        b.body
    );
    same_ip["metadata"]["name"] = json!("e");
    let e = s.post(SERVICES, &same_ip).await;
    assert_eq!(e.code, 201, "the released IP is free again: {:?}", e.body);
}

#[tokio::test]
async fn updates_keep_what_a_service_holds_and_allocate_what_it_newly_needs() {
    let s = start().await;
    let created = s.post(SERVICES, &web("web")).await;
    assert_eq!(created.code, 201);
    let ip = created.body["spec"]["clusterIP"].clone();
    s.post(SERVICES, &node_port("other", Some(31000))).await;

    // A replacement without clusterIP (kubectl replace of the original manifest) keeps it.
    let put = s.put(&format!("{SERVICES}/web"), &web("web")).await;
    assert_eq!(put.code, 200, "{:?}", put.body);
    assert_eq!(put.body["spec"]["clusterIP"], ip);

    // Becoming a NodePort service allocates a node port, keeps the IP.
    let patch = s
        .patch(
            &format!("{SERVICES}/web"),
            "application/merge-patch+json",
            &json!({"spec": {"type": "NodePort"}}),
        )
        .await;
    assert_eq!(patch.code, 200, "{:?}", patch.body);
    assert_eq!(patch.body["spec"]["clusterIP"], ip);
    let given = patch.body["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&given) && given != 31000);

    // Taking another service's node port is refused; the service is left as it was.
    let steal = s
        .patch(
            &format!("{SERVICES}/web"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"ports": [{"port": 80, "nodePort": 31000}]}}),
        )
        .await;
    assert_eq!(cause(&steal).0, "spec.ports[0].nodePort");
    let now = s.get(&format!("{SERVICES}/web")).await;
    assert_eq!(now.body["spec"]["ports"][0]["nodePort"], given);

    // A status write allocates nothing and is not refused for what the spec holds.
    let status = s
        .patch(
            &format!("{SERVICES}/web/status"),
            "application/merge-patch+json",
            &json!({"status": {"loadBalancer": {}}}),
        )
        .await;
    assert_eq!(status.code, 200, "{:?}", status.body);
}

#[tokio::test]
async fn a_restarted_server_knows_what_is_taken() {
    let s = start().await;
    let a = s.post(SERVICES, &node_port("a", Some(30500))).await;
    assert_eq!(a.code, 201);
    let ip = a.body["spec"]["clusterIP"].as_str().unwrap().to_owned();

    // A new registry over the same store has no memory of its own, as after a restart.
    let restarted = minik_apiserver::Registry::new(Arc::new(s.store.clone()));
    let info = resources::by_plural("", "v1", "services").unwrap();
    let mut again = node_port("b", Some(30500));
    let e = restarted
        .create(
            info,
            Some("default"),
            again.clone(),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("provided port is already allocated"),
        "{e}"
    );
    again["spec"]["ports"][0]["nodePort"] = json!(30501);
    again["spec"]["clusterIP"] = json!(ip);
    let e = restarted
        .create(info, Some("default"), again, WriteOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("provided IP is already allocated"),
        "{e}"
    );
    let fresh = Api::create(
        &restarted,
        info,
        Some("default"),
        node_port("c", None),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    assert_ne!(fresh["spec"]["clusterIP"], json!(ip));
    assert_ne!(fresh["spec"]["ports"][0]["nodePort"], json!(30500));
}
