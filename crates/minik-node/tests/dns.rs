//! The agent's cluster DNS server against an API server in process: Services and Endpoints
//! written through the API, questions asked over UDP and TCP on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use minik_api::k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_client::{Api, ApiExt, HttpApi, Informer, InformerConfig};
use minik_node::dns::{self, ClusterDns, DnsSettings, Upstream};
use minik_testkit::{wait_for, TestServer, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long one question may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// An API server, the informers an agent would have on it, and the DNS server fed by them.
struct Cluster {
    server: TestServer,
    _services: Informer<Service>,
    _endpoints: Informer<Endpoints>,
    dns: ClusterDns,
}

impl Cluster {
    async fn start() -> Cluster {
        let server = minik_testkit::start().await;
        let (services, endpoints) = informers(server.api.clone());
        let dns = dns::start(&services, &endpoints, settings("127.0.0.1:0"))
            .await
            .expect("the DNS server starts");
        Cluster {
            server,
            _services: services,
            _endpoints: endpoints,
            dns,
        }
    }

    fn address(&self) -> SocketAddr {
        self.dns.local_addrs()[0]
    }

    /// Asks until the answer has `rcode` (the zone follows the API a moment later).
    async fn wait_rcode(&self, name: &str, query_type: RecordType, rcode: ResponseCode) -> Message {
        let address = self.address();
        let what = format!("{rcode} for {name} {query_type}");
        wait_for(&what, DEADLINE, || async move {
            let answer = ask(address, name, query_type).await;
            if answer.metadata.response_code == rcode {
                Ok(answer)
            } else {
                Err(answer.metadata.response_code)
            }
        })
        .await
    }

    /// Asks until the A records of `name` are `expected` (sorted), within `deadline`.
    async fn wait_addresses(&self, name: &str, expected: &[&str], deadline: Duration) {
        let address = self.address();
        let expected: Vec<String> = expected.iter().map(|a| a.to_string()).collect();
        let what = format!("{name} to resolve to {expected:?}");
        wait_for(&what, deadline, || {
            let expected = expected.clone();
            async move {
                let answer = ask(address, name, RecordType::A).await;
                let got = addresses(&answer);
                if got == expected {
                    Ok(())
                } else {
                    Err((answer.metadata.response_code, got))
                }
            }
        })
        .await
    }
}

fn informers(api: Arc<dyn Api>) -> (Informer<Service>, Informer<Endpoints>) {
    (
        Informer::spawn(api.clone(), InformerConfig::default()),
        Informer::spawn(api, InformerConfig::default()),
    )
}

fn settings(listen: &str) -> DnsSettings {
    DnsSettings {
        domain: "cluster.local".to_string(),
        listen: vec![listen.parse().expect("an address")],
        upstream: Upstream::none(),
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("default".to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// A Service without a selector (its Endpoints are the test's), ClusterIP or headless, with
/// one port named `http`.
fn service(name: &str, headless: bool) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_string()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: 80,
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Endpoints with `ready` and `not_ready` addresses (each an IP, or an IP and a hostname) on
/// port 8080 named `http`.
fn endpoints(name: &str, ready: &[(&str, Option<&str>)], not_ready: &[&str]) -> Endpoints {
    let address = |ip: &str, hostname: Option<&str>| EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname.map(str::to_string),
        ..EndpointAddress::default()
    };
    Endpoints {
        metadata: meta(name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(ready.iter().map(|(ip, host)| address(ip, *host)).collect()),
            not_ready_addresses: (!not_ready.is_empty())
                .then(|| not_ready.iter().map(|ip| address(ip, None)).collect()),
            ports: Some(vec![EndpointPort {
                name: Some("http".to_string()),
                port: 8080,
                protocol: Some("TCP".to_string()),
                ..EndpointPort::default()
            }]),
        }]),
    }
}

fn query(id: u16, name: &str, query_type: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).expect("a valid name");
    message.add_query(Query::query(name, query_type));
    message.to_vec().expect("a query encodes")
}

/// The answer of the server at `server` over UDP.
async fn ask(server: SocketAddr, name: &str, query_type: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind a client");
    socket
        .send_to(&query(0x1234, name, query_type), server)
        .await
        .expect("send");
    let mut buffer = vec![0u8; 65535];
    let (n, from) = tokio::time::timeout(ANSWER_TIMEOUT, socket.recv_from(&mut buffer))
        .await
        .expect("an answer in time")
        .expect("receive");
    assert_eq!(from, server);
    let answer = Message::from_vec(&buffer[..n]).expect("the answer parses");
    assert_eq!(answer.metadata.id, 0x1234);
    answer
}

/// The answer of the server at `server` over TCP.
async fn ask_tcp(server: SocketAddr, name: &str, query_type: RecordType) -> Message {
    let packet = query(0x4321, name, query_type);
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream
            .write_all(&(packet.len() as u16).to_be_bytes())
            .await?;
        stream.write_all(&packet).await?;
        let length = stream.read_u16().await?;
        let mut answer = vec![0u8; usize::from(length)];
        stream.read_exact(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let bytes = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .expect("an answer in time")
        .expect("the TCP exchange");
    let answer = Message::from_vec(&bytes).expect("the answer parses");
    assert_eq!(answer.metadata.id, 0x4321);
    answer
}

/// What `pick` makes of each record of an answer, sorted.
fn records(answer: &Message, pick: impl Fn(&RData) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| pick(&r.data))
        .collect();
    out.sort();
    out
}

/// The A and AAAA records of an answer, sorted.
fn addresses(answer: &Message) -> Vec<String> {
    records(answer, |data| match data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
        _ => None,
    })
}

/// The SRV records of an answer as `port target`, sorted.
fn services_of(answer: &Message) -> Vec<String> {
    records(answer, |data| match data {
        RData::SRV(srv) => Some(format!("{} {}", srv.port, srv.target)),
        _ => None,
    })
}

#[tokio::test]
async fn a_cluster_ip_service_resolves_to_its_cluster_ip_over_udp_and_tcp() {
    let cluster = Cluster::start().await;
    let created = cluster
        .server
        .api
        .create_as(&service("web", false))
        .await
        .expect("create the Service");
    let cluster_ip = created
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("a ClusterIP");
    cluster
        .wait_addresses(
            "web.default.svc.cluster.local.",
            &[cluster_ip.as_str()],
            DEADLINE,
        )
        .await;

    let answer = ask_tcp(
        cluster.address(),
        "WEB.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer), [cluster_ip]);
}

#[tokio::test]
async fn a_named_port_has_an_srv_record() {
    let cluster = Cluster::start().await;
    let api = &cluster.server.api;
    api.create_as(&service("web", false))
        .await
        .expect("create the Service");
    let answer = cluster
        .wait_rcode(
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
        )
        .await;
    assert_eq!(services_of(&answer), ["80 web.default.svc.cluster.local."]);

    // A headless Service's SRV records name each endpoint, on the endpoints' port.
    api.create_as(&service("db", true))
        .await
        .expect("create the Service");
    api.create_as(&endpoints(
        "db",
        &[("10.244.1.5", Some("db-0")), ("10.244.2.7", None)],
        &[],
    ))
    .await
    .expect("create the Endpoints");
    let answer = cluster
        .wait_rcode(
            "_http._tcp.db.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
        )
        .await;
    assert_eq!(
        services_of(&answer),
        [
            "8080 10-244-2-7.db.default.svc.cluster.local.",
            "8080 db-0.db.default.svc.cluster.local.",
        ]
    );
}

#[tokio::test]
async fn a_headless_service_answers_every_ready_address() {
    let cluster = Cluster::start().await;
    let api = &cluster.server.api;
    api.create_as(&service("db", true))
        .await
        .expect("create the Service");
    api.create_as(&endpoints(
        "db",
        &[
            ("10.244.1.5", None),
            ("10.244.2.7", None),
            ("10.244.3.9", None),
        ],
        &["10.244.4.4"],
    ))
    .await
    .expect("create the Endpoints");
    cluster
        .wait_addresses(
            "db.default.svc.cluster.local.",
            &["10.244.1.5", "10.244.2.7", "10.244.3.9"],
            DEADLINE,
        )
        .await;
}

#[tokio::test]
async fn an_endpoint_with_a_hostname_has_its_own_name() {
    let cluster = Cluster::start().await;
    let api = &cluster.server.api;
    api.create_as(&service("db", true))
        .await
        .expect("create the Service");
    api.create_as(&endpoints(
        "db",
        &[("10.244.1.5", Some("db-0")), ("10.244.2.7", Some("db-1"))],
        &[],
    ))
    .await
    .expect("create the Endpoints");
    cluster
        .wait_addresses(
            "db-0.db.default.svc.cluster.local.",
            &["10.244.1.5"],
            DEADLINE,
        )
        .await;
    cluster
        .wait_addresses(
            "db-1.db.default.svc.cluster.local.",
            &["10.244.2.7"],
            DEADLINE,
        )
        .await;
}

#[tokio::test]
async fn a_name_that_does_not_exist_is_nxdomain() {
    let cluster = Cluster::start().await;
    cluster
        .server
        .api
        .create_as(&service("web", false))
        .await
        .expect("create the Service");
    // Once the Service answers, the zone is built from the listed objects.
    cluster
        .wait_rcode(
            "web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
        )
        .await;
    for name in [
        "missing.default.svc.cluster.local.",
        "web.elsewhere.svc.cluster.local.",
        "db-0.web.default.svc.cluster.local.",
    ] {
        let answer = ask(cluster.address(), name, RecordType::A).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert!(answer.answers.is_empty(), "{name}");
    }
    // Without an upstream, names outside the cluster domain are refused, never forwarded.
    let answer = ask(cluster.address(), "example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn answers_follow_an_endpoints_change_within_a_second() {
    let cluster = Cluster::start().await;
    let api = &cluster.server.api;
    api.create_as(&service("db", true))
        .await
        .expect("create the Service");
    let created = api
        .create_as(&endpoints("db", &[("10.244.1.5", None)], &[]))
        .await
        .expect("create the Endpoints");
    cluster
        .wait_addresses("db.default.svc.cluster.local.", &["10.244.1.5"], DEADLINE)
        .await;

    let mut changed = endpoints("db", &[("10.244.1.5", None), ("10.244.2.7", None)], &[]);
    changed.metadata.resource_version = created.metadata.resource_version.clone();
    let changed = api
        .replace_as(&changed, false)
        .await
        .expect("update the Endpoints");
    cluster
        .wait_addresses(
            "db.default.svc.cluster.local.",
            &["10.244.1.5", "10.244.2.7"],
            Duration::from_secs(1),
        )
        .await;

    // The last ready endpoint going makes the headless name go too.
    let mut emptied = endpoints("db", &[], &["10.244.1.5"]);
    emptied.metadata.resource_version = changed.metadata.resource_version.clone();
    api.replace_as(&emptied, false)
        .await
        .expect("update the Endpoints");
    let address = cluster.address();
    wait_for("db to be NXDOMAIN", Duration::from_secs(1), || async move {
        let answer = ask(address, "db.default.svc.cluster.local.", RecordType::A).await;
        match answer.metadata.response_code {
            ResponseCode::NXDomain => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

#[tokio::test]
async fn names_in_the_domain_get_servfail_until_the_informers_have_listed() {
    // An API that accepts connections and never answers: the informers never sync.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", silent.local_addr().expect("address"));
    let api: Arc<dyn Api> = Arc::new(HttpApi::new(&base).expect("an HTTP API"));
    let (services, endpoints) = informers(api);
    let dns = dns::start(&services, &endpoints, settings("127.0.0.1:0"))
        .await
        .expect("the DNS server starts");
    let answer = ask(
        dns.local_addrs()[0],
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn an_address_in_use_is_refused_naming_it() {
    let server = minik_testkit::start().await;
    let (services, endpoints) = informers(server.api.clone());
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = taken.local_addr().expect("address");
    let error = dns::start(&services, &endpoints, settings(&address.to_string()))
        .await
        .err()
        .expect("the address is taken");
    assert!(
        error.starts_with(&format!("cannot listen for DNS on UDP {address}: ")),
        "{error}"
    );
    assert!(error.contains("may already listen there"), "{error}");

    let error = dns::start(
        &services,
        &endpoints,
        DnsSettings {
            domain: "cluster..local".to_string(),
            ..settings("127.0.0.1:0")
        },
    )
    .await
    .err()
    .expect("the domain is not a DNS name");
    assert!(error.contains("cluster..local"), "{error}");
}

#[tokio::test]
async fn stopping_closes_the_sockets() {
    let cluster = Cluster::start().await;
    let address = cluster.address();
    // Served: the name is in the domain, the zone synced (NXDOMAIN) or not yet (SERVFAIL).
    let answer = ask(address, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_ne!(answer.metadata.response_code, ResponseCode::Refused);
    let Cluster { dns, .. } = cluster;
    dns.stop().await;
    wait_for("the DNS port to be free again", DEADLINE, || async move {
        let udp = UdpSocket::bind(address).await.map_err(|e| e.to_string())?;
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((udp, tcp))
    })
    .await;
}
