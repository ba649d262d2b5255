//! The service CIDR over real HTTP: ClusterIPs come from the configured range (refusals in
//! Kubernetes' words name it), the `kubernetes` and `kube-dns` Services take its first and 10th
//! addresses (or another when a Service holds one), Services from an earlier range keep their
//! addresses, and `GET /minik/v1/network` answers every authenticated identity but the join
//! token.

use std::sync::Arc;

use minik_api::cidr::Cidr;
use minik_api::network::{ClusterNetwork, NETWORK_PATH};
use minik_api::request::WriteOptions;
use minik_apiserver::{master, ApiServer, Auth, AuthConfig, Config};
use minik_testkit::{open_store, serve, start_with, TestServer, HISTORY};
use reqwest::Method;
use serde_json::{json, Value};

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn routable() -> Config {
    Config {
        service_cidr: cidr("10.96.0.0/12"),
        cluster_cidr: Some(cidr("10.244.0.0/16")),
        ..Config::default()
    }
}

fn service(name: &str, cluster_ip: Option<&str>) -> Value {
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]},
    });
    if let Some(ip) = cluster_ip {
        service["spec"]["clusterIP"] = json!(ip);
    }
    service
}

fn services() -> &'static minik_api::resources::ResourceInfo {
    minik_api::resources::by_kind("v1", "Service").unwrap()
}

async fn create_in_process(server: &ApiServer, ns: &str, body: Value) -> Value {
    let made = server
        .registry
        .create(services(), Some(ns), body, WriteOptions::default())
        .await
        .expect("created");
    serde_json::from_slice(&made).unwrap()
}

#[tokio::test]
async fn cluster_ips_come_from_the_configured_range() {
    let server = start_with(routable(), HISTORY).await;
    let range = cidr("10.96.0.0/12");
    for i in 0..20 {
        let made = server
            .post(SERVICES, &service(&format!("web-{i}"), None))
            .await;
        assert_eq!(made.code, 201, "{}", made.body);
        let ip = made.body["spec"]["clusterIP"].as_str().unwrap();
        let ip: std::net::Ipv4Addr = ip.parse().unwrap();
        assert!(range.contains(ip) && ip != range.network() && ip != range.broadcast());
    }
    let refused = server
        .post(SERVICES, &service("loopback", Some("127.96.0.5")))
        .await;
    assert_eq!(refused.code, 422, "{}", refused.body);
    assert_eq!(
        refused.body["details"]["causes"][0]["message"],
        "Invalid value: \"127.96.0.5\": failed to allocate IP 127.96.0.5: the provided IP (127.96.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
    let asked = server
        .post(SERVICES, &service("asked", Some("10.100.1.2")))
        .await;
    assert_eq!(asked.code, 201, "{}", asked.body);
    assert_eq!(asked.body["spec"]["clusterIP"], "10.100.1.2");
}

#[tokio::test]
async fn the_kubernetes_and_kube_dns_services_take_the_first_and_tenth_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), HISTORY);
    let server = ApiServer::new(Arc::new(store.clone()), routable());
    server.registry.bootstrap().await.unwrap();
    let address = "127.0.0.1".parse().unwrap();
    assert_eq!(
        master::ensure(&server.registry, address, 6443)
            .await
            .unwrap(),
        "10.96.0.1"
    );
    assert_eq!(
        master::ensure_dns(&server.registry).await.unwrap(),
        "10.96.0.10"
    );
    let dns = server
        .registry
        .get(services(), Some("kube-system"), "kube-dns")
        .await
        .unwrap();
    let dns: Value = serde_json::from_slice(&dns.value).unwrap();
    assert_eq!(
        dns["metadata"]["labels"],
        json!({"k8s-app": "kube-dns", "kubernetes.io/name": "KubeDNS", "kubernetes.io/cluster-service": "true"})
    );
    assert_eq!(dns["spec"]["selector"], Value::Null);
    let ports: Vec<(String, i64, String, i64)> = dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_i64().unwrap(),
                p["protocol"].as_str().unwrap().to_owned(),
                p["targetPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), 53, "UDP".into(), 53),
            ("dns-tcp".into(), 53, "TCP".into(), 53)
        ]
    );
    // Again (the next start): the same Services, unchanged.
    assert_eq!(
        master::ensure_dns(&server.registry).await.unwrap(),
        "10.96.0.10"
    );
    assert_eq!(
        master::ensure(&server.registry, address, 6444)
            .await
            .unwrap(),
        "10.96.0.1"
    );
}

#[tokio::test]
async fn a_taken_address_gives_the_kept_services_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), HISTORY);
    let own = ApiServer::new(Arc::new(store.clone()), routable());
    own.registry.bootstrap().await.unwrap();
    create_in_process(&own, "default", service("first", Some("10.96.0.1"))).await;
    create_in_process(&own, "default", service("tenth", Some("10.96.0.10"))).await;
    let address = "127.0.0.1".parse().unwrap();
    let kubernetes = master::ensure(&own.registry, address, 6443).await.unwrap();
    let dns = master::ensure_dns(&own.registry).await.unwrap();
    for ip in [&kubernetes, &dns] {
        let parsed: std::net::Ipv4Addr = ip.parse().unwrap();
        assert!(cidr("10.96.0.0/12").contains(parsed), "{ip}");
    }
    assert_ne!(kubernetes, "10.96.0.1");
    assert_ne!(dns, "10.96.0.10");
    assert_ne!(kubernetes, dns);
}

#[tokio::test]
async fn services_of_an_earlier_range_keep_their_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), HISTORY);
    // First started with the loopback range: the two kept Services and one of the user's.
    let before = ApiServer::new(Arc::new(store.clone()), Config::default());
    before.registry.bootstrap().await.unwrap();
    let address = "127.0.0.1".parse().unwrap();
    assert_eq!(
        master::ensure(&before.registry, address, 6443)
            .await
            .unwrap(),
        "127.96.0.1"
    );
    assert_eq!(
        master::ensure_dns(&before.registry).await.unwrap(),
        "127.96.0.10"
    );
    let web = create_in_process(&before, "default", service("web", None)).await;
    let web_ip = web["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(web_ip.starts_with("127.96."), "{web_ip}");
    assert!(master::services_outside_range(&before.registry)
        .await
        .unwrap()
        .is_empty());

    // Then with a routable range over the same store.
    let after = ApiServer::new(Arc::new(store.clone()), routable());
    let mut outside = master::services_outside_range(&after.registry)
        .await
        .unwrap();
    outside.sort();
    assert_eq!(
        outside,
        [
            "default/kubernetes (127.96.0.1)".to_owned(),
            format!("default/web ({web_ip})"),
            "kube-system/kube-dns (127.96.0.10)".to_owned(),
        ]
    );
    assert_eq!(
        master::ensure(&after.registry, address, 6443)
            .await
            .unwrap(),
        "127.96.0.1"
    );
    assert_eq!(
        master::ensure_dns(&after.registry).await.unwrap(),
        "127.96.0.10"
    );
    // An update of a kept Service keeps its address.
    let mut changed = web.clone();
    changed["metadata"]["labels"] = json!({"tier": "front"});
    let updated = after
        .registry
        .update(
            services(),
            Some("default"),
            "web",
            changed,
            minik_apiserver::Scope::Main,
            WriteOptions::default(),
        )
        .await
        .unwrap();
    let updated: Value = serde_json::from_slice(&updated).unwrap();
    assert_eq!(updated["spec"]["clusterIP"], web_ip.as_str());
    // New Services come from the new range.
    let api = create_in_process(&after, "default", service("api", None)).await;
    let ip: std::net::Ipv4Addr = api["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!(cidr("10.96.0.0/12").contains(ip), "{ip}");
}

/// A server with tokens: the admin's, node n1's credential and the join token.
struct Secured {
    s: TestServer,
    admin: String,
    node: String,
    join: String,
}

async fn secured(config: Config) -> Secured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path(), HISTORY);
    let auth = Auth::open(AuthConfig {
        dir: dir.path().join("auth"),
        admin_file: None,
        anonymous_loopback: false,
        ca_fingerprint: None,
    })
    .expect("auth");
    let read = |file: &str| {
        std::fs::read_to_string(dir.path().join("auth").join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (admin, join) = (read("admin-token"), read("join-token"));
    let node = auth.join("n1", |_| async { Ok(()) }).await.unwrap().token;
    let server = ApiServer::secured(Arc::new(store.clone()), config, auth);
    Secured {
        s: serve(server, store, dir).await,
        admin,
        node,
        join,
    }
}

impl Secured {
    async fn network(&self, method: Method, token: Option<&str>) -> (u16, Value) {
        let mut request = self.s.client.request(method, self.s.url(NETWORK_PATH));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        let code = response.status().as_u16();
        (code, response.json::<Value>().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_network_is_published_to_every_authenticated_identity_but_joiners() {
    let cluster = secured(routable()).await;
    // Before the kube-dns Service exists, there is no cluster DNS address.
    let (code, body) = cluster.network(Method::GET, Some(&cluster.admin)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["clusterDNS"], Value::Null);
    // The kube-dns Service, made by hand with another address, is what is published.
    let dns = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.96.0.53", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
    });
    let made = cluster
        .s
        .client
        .post(cluster.s.url("/api/v1/namespaces/kube-system/services"))
        .bearer_auth(&cluster.admin)
        .json(&dns)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    for token in [&cluster.admin, &cluster.node] {
        let (code, body) = cluster.network(Method::GET, Some(token)).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            body,
            json!({
                "clusterCIDR": "10.244.0.0/16",
                "nodeCIDRMaskSize": 24,
                "serviceCIDR": "10.96.0.0/12",
                "clusterDNS": "10.96.0.53",
                "clusterDomain": "cluster.local",
            })
        );
        let typed: ClusterNetwork = serde_json::from_value(body).unwrap();
        assert_eq!(typed.service_cidr, cidr("10.96.0.0/12"));
    }
    let (code, body) = cluster.network(Method::GET, Some(&cluster.join)).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "forbidden: User \"system:bootstrap:minik\" cannot get path \"/minik/v1/network\""
    );
    let (code, body) = cluster.network(Method::GET, None).await;
    assert_eq!(code, 401, "{body}");
    // Reading only.
    let (code, body) = cluster.network(Method::POST, Some(&cluster.node)).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = cluster.network(Method::POST, Some(&cluster.admin)).await;
    assert_eq!(code, 405, "{body}");
}

#[tokio::test]
async fn a_server_without_node_ipam_publishes_no_cluster_cidr() {
    let server = start_with(Config::default(), HISTORY).await;
    let answer = server.get(NETWORK_PATH).await;
    assert_eq!(answer.code, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "clusterCIDR": null,
            "nodeCIDRMaskSize": 24,
            "serviceCIDR": "127.96.0.0/16",
            "clusterDNS": null,
            "clusterDomain": "cluster.local",
        })
    );
}
