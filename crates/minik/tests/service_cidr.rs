//! The service CIDR end to end: `minik server --service-cidr 10.96.0.0/12` puts the
//! `kubernetes` Service on 10.96.0.1 (which its serving certificate names) and `kube-dns` on
//! 10.96.0.10, gives new Services addresses of the range and publishes the network at
//! `/minik/v1/network`; the default server keeps loopback ClusterIPs (127.96.0.0/16); settings
//! that cannot work are refused before anything is made.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use minik_api::cidr::Cidr;
use serde_json::{json, Value};
use support::{wait_for, DEADLINE, MINIK};

/// A Service once it exists (the server makes its own in the background).
async fn service(http: &minik_testkit::Http, ns: &str, name: &str) -> Value {
    let path = format!("/api/v1/namespaces/{ns}/services/{name}");
    wait_for(&format!("the {ns}/{name} Service"), DEADLINE, || async {
        let answer = http.get(&path).await;
        if answer.code == 200 {
            Ok(answer.body)
        } else {
            Err(answer.body.to_string())
        }
    })
    .await
}

/// Whether the server at `base` presents a certificate (of the CA in `data`) that names `ip`:
/// the handshake is made over loopback, asking for `ip` as the server's name.
async fn certificate_names(base: &str, data: &Path, ip: IpAddr) -> bool {
    use minik_tls::rustls::pki_types::ServerName;
    use minik_tls::tokio_rustls::TlsConnector;
    let ca = std::fs::read_to_string(data.join("tls/ca.crt")).unwrap();
    let config = minik_tls::client_config(&ca, None).unwrap();
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let authority = base.trim_start_matches("https://").trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    connector
        .connect(ServerName::from(ip), stream)
        .await
        .is_ok()
}

/// Checks a server's two kept Services, a new Service's address and the published network
/// against `range`.
async fn check_cluster(base: &str, data: &Path, range: &str, kubernetes: &str, dns: &str) {
    let http = minik_testkit::Http::new(base);
    let kept = service(&http, "default", "kubernetes").await;
    assert_eq!(kept["spec"]["clusterIP"], kubernetes, "{kept}");
    let kube_dns = service(&http, "kube-system", "kube-dns").await;
    assert_eq!(kube_dns["spec"]["clusterIP"], dns, "{kube_dns}");
    assert_eq!(kube_dns["spec"]["selector"], Value::Null, "{kube_dns}");
    assert_eq!(kube_dns["metadata"]["labels"]["k8s-app"], "kube-dns");
    let ports: Vec<Value> = kube_dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["name"], p["port"], p["protocol"], p["targetPort"]]))
        .collect();
    assert_eq!(
        ports,
        [
            json!(["dns", 53, "UDP", 53]),
            json!(["dns-tcp", 53, "TCP", 53])
        ]
    );

    let made = http
        .post(
            "/api/v1/namespaces/default/services",
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        )
        .await;
    assert_eq!(made.code, 201, "{}", made.body);
    let ip: Ipv4Addr = made.body["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let cidr: Cidr = range.parse().unwrap();
    assert!(cidr.contains(ip), "{ip} is not in {range}");

    let network = http.get("/minik/v1/network").await;
    assert_eq!(network.code, 200, "{}", network.body);
    assert_eq!(
        network.body,
        json!({
            "clusterCIDR": "10.244.0.0/16",
            "nodeCIDRMaskSize": 24,
            "serviceCIDR": range,
            "clusterDNS": dns,
            "clusterDomain": "cluster.local",
        })
    );

    let named: IpAddr = kubernetes.parse().unwrap();
    assert!(
        certificate_names(base, data, named).await,
        "the serving certificate does not name {named}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_routable_service_cidr_gives_kubernetes_the_first_address_and_kube_dns_the_tenth() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = MINIK.server(&data, &["--service-cidr", "10.96.0.0/12"]);
    check_cluster(
        &server.base,
        &data,
        "10.96.0.0/12",
        "10.96.0.1",
        "10.96.0.10",
    )
    .await;
    // The loopback range's first address is no name of this server.
    let loopback = IpAddr::V4(Ipv4Addr::new(127, 96, 0, 1));
    assert!(!certificate_names(&server.base, &data, loopback).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_server_keeps_loopback_cluster_ips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = MINIK.server(&data, &[]);
    check_cluster(
        &server.base,
        &data,
        "127.96.0.0/16",
        "127.96.0.1",
        "127.96.0.10",
    )
    .await;
    let routable = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
    assert!(!certificate_names(&server.base, &data, routable).await);
}

#[test]
fn service_cidr_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            vec!["--service-cidr", "10.96.0.1/12"],
            "--service-cidr \"10.96.0.1/12\": \"10.96.0.1/12\" has host bits set",
        ),
        (
            vec!["--service-cidr", "services"],
            "--service-cidr \"services\": \"services\" is not an IPv4 CIDR",
        ),
        (
            vec!["--service-cidr", "fd00::/108"],
            "--service-cidr \"fd00::/108\": minik's Services are IPv4 only",
        ),
        (
            vec!["--service-cidr", "10.0.0.0/8"],
            "--service-cidr 10.0.0.0/8: the service CIDR 10.0.0.0/8 must have a prefix length from /12",
        ),
        (
            vec!["--service-cidr", "10.96.0.0/29"],
            "--service-cidr 10.96.0.0/29: the service CIDR 10.96.0.0/29 must have a prefix length",
        ),
        (
            vec!["--service-cidr", "10.240.0.0/12"],
            "--service-cidr and --cluster-cidr must not overlap: cluster CIDR 10.244.0.0/16 overlaps the service CIDR 10.240.0.0/12",
        ),
        (
            vec![
                "--service-cidr",
                "10.96.0.0/12",
                "--cluster-cidr",
                "10.96.128.0/17",
            ],
            "--service-cidr and --cluster-cidr must not overlap",
        ),
    ] {
        let out = MINIK
            .command()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("s"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("s/store").exists());
    }
}
