//! The DNS server on real loopback sockets: answers over UDP and TCP, truncation, zone swaps,
//! and forwarding to a fake upstream that the test runs on 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_dns::{serve, ClusterDomain, SharedZone, Upstream, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How long a test waits for any one answer before it fails.
const DEADLINE: Duration = Duration::from_secs(10);

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

fn service(name: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: meta("default", name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.to_string()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn external(name: &str, target: &str) -> Service {
    Service {
        metadata: meta("default", name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".to_string()),
            external_name: Some(target.to_string()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn headless_with(name: &str, n: u32) -> (Service, Endpoints) {
    let service = service(name, "None");
    let endpoints = Endpoints {
        metadata: meta("default", name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(
                (0..n)
                    .map(|i| EndpointAddress {
                        ip: Ipv4Addr::from(0x0af4_0000 + i).to_string(),
                        ..EndpointAddress::default()
                    })
                    .collect(),
            ),
            ..EndpointSubset::default()
        }]),
    };
    (service, endpoints)
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid test name")
}

/// Aborts the tasks it holds when the test ends, passed or failed.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A DNS server on loopback; its addresses and the zone it serves.
struct TestServer {
    udp: SocketAddr,
    tcp: SocketAddr,
    zone: SharedZone,
    _tasks: Tasks,
}

async fn start(zone: Zone, upstream: Upstream) -> TestServer {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind TCP");
    let addresses = (
        udp.local_addr().expect("UDP address"),
        tcp.local_addr().expect("TCP address"),
    );
    let shared = SharedZone::new(zone);
    let serving = shared.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = serve(udp, tcp, serving, upstream).await {
            panic!("the DNS server failed: {error}");
        }
    });
    TestServer {
        udp: addresses.0,
        tcp: addresses.1,
        zone: shared,
        _tasks: Tasks(vec![task]),
    }
}

fn query(id: u16, question: &str, query_type: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name(question), query_type));
    if edns {
        let mut options = Edns::new();
        options.set_max_payload(4096);
        message.set_edns(options);
    }
    message.to_vec().expect("a query encodes")
}

async fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.send_to(packet, server).await.expect("send");
    let mut buffer = vec![0u8; 65535];
    let (n, from) = tokio::time::timeout(DEADLINE, socket.recv_from(&mut buffer))
        .await
        .expect("an answer before the deadline")
        .expect("receive");
    assert_eq!(from, server);
    buffer.truncate(n);
    buffer
}

async fn udp_ask(server: SocketAddr, question: &str, query_type: RecordType) -> Message {
    let bytes = udp_exchange(server, &query(0x4242, question, query_type, false)).await;
    let answer = Message::from_vec(&bytes).expect("the answer parses");
    assert_eq!(answer.metadata.id, 0x4242);
    answer
}

async fn tcp_ask(server: SocketAddr, question: &str, query_type: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let packet = query(0x4343, question, query_type, false);
    let exchange = async {
        stream
            .write_all(&(packet.len() as u16).to_be_bytes())
            .await?;
        stream.write_all(&packet).await?;
        let length = stream.read_u16().await?;
        let mut answer = vec![0u8; usize::from(length)];
        stream.read_exact(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let bytes = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("an answer before the deadline")
        .expect("TCP exchange");
    let answer = Message::from_vec(&bytes).expect("the answer parses");
    assert_eq!(answer.metadata.id, 0x4343);
    answer
}

fn addresses(answer: &Message) -> Vec<String> {
    let mut out: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            RData::CNAME(cname) => Some(format!("CNAME {}", cname.0)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// A fake upstream resolver on 127.0.0.1 (UDP and TCP on one port): every A question gets
/// 192.0.2.1. With `truncate_udp`, its UDP answers are empty with TC set, as a server's whose
/// answer is too large. With `silent`, it never answers.
struct FakeUpstream {
    address: SocketAddr,
    _tasks: Tasks,
}

async fn fake_upstream(truncate_udp: bool, silent: bool) -> FakeUpstream {
    // TCP on the UDP socket's port: retry when another process holds it.
    let (udp, tcp) = {
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind upstream UDP");
            let port = udp.local_addr().expect("address").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                bound = Some((udp, tcp));
                break;
            }
        }
        bound.expect("a port free for both UDP and TCP")
    };
    let address = udp.local_addr().expect("upstream address");
    let udp_task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 65535];
        while let Ok((n, peer)) = udp.recv_from(&mut buffer).await {
            if silent {
                continue;
            }
            if let Some(answer) = fake_answer(&buffer[..n], truncate_udp) {
                let _ = udp.send_to(&answer, peer).await;
            }
        }
    });
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let Ok(length) = stream.read_u16().await else {
                continue;
            };
            let mut packet = vec![0u8; usize::from(length)];
            if stream.read_exact(&mut packet).await.is_err() {
                continue;
            }
            if let Some(answer) = fake_answer(&packet, false) {
                let _ = stream.write_all(&(answer.len() as u16).to_be_bytes()).await;
                let _ = stream.write_all(&answer).await;
            }
        }
    });
    FakeUpstream {
        address,
        _tasks: Tasks(vec![udp_task, tcp_task]),
    }
}

fn fake_answer(packet: &[u8], truncated: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.queries = request.queries.clone();
    if truncated {
        response.metadata.truncation = true;
    } else {
        for question in &request.queries {
            if question.query_type() == RecordType::A {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
            }
        }
    }
    response.to_vec().ok()
}

fn zone(services: &[Service], endpoints: &[Endpoints]) -> Zone {
    Zone::build(&ClusterDomain::default(), services, endpoints)
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let server = start(zone(&[service("web", "10.96.0.10")], &[]), Upstream::none()).await;
    for answer in [
        udp_ask(server.udp, "web.default.svc.cluster.local.", RecordType::A).await,
        tcp_ask(server.tcp, "web.default.svc.cluster.local.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(addresses(&answer), ["10.96.0.10"]);
    }
    let srv = udp_ask(
        server.udp,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(srv.answers.len(), 1);
    assert_eq!(srv.additionals.len(), 1);
    let missing = tcp_ask(server.tcp, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities.len(), 1);
}

#[tokio::test]
async fn tcp_connection_carries_several_queries() {
    let server = start(zone(&[service("web", "10.96.0.10")], &[]), Upstream::none()).await;
    let mut stream = TcpStream::connect(server.tcp).await.expect("connect");
    for id in 1..=3u16 {
        let packet = query(id, "web.default.svc.cluster.local.", RecordType::A, false);
        let exchange = async {
            stream
                .write_all(&(packet.len() as u16).to_be_bytes())
                .await?;
            stream.write_all(&packet).await?;
            let length = stream.read_u16().await?;
            let mut answer = vec![0u8; usize::from(length)];
            stream.read_exact(&mut answer).await?;
            std::io::Result::Ok(answer)
        };
        let bytes = tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("in time")
            .expect("exchange");
        let answer = Message::from_vec(&bytes).expect("parses");
        assert_eq!(answer.metadata.id, id);
        assert_eq!(addresses(&answer), ["10.96.0.10"]);
    }
}

#[tokio::test]
async fn swapped_zone_answers_at_once() {
    let server = start(zone(&[service("web", "10.96.0.10")], &[]), Upstream::none()).await;
    assert_eq!(
        addresses(&udp_ask(server.udp, "web.default.svc.cluster.local.", RecordType::A).await),
        ["10.96.0.10"]
    );
    server
        .zone
        .store(zone(&[service("web", "10.96.0.20")], &[]));
    assert_eq!(
        addresses(&udp_ask(server.udp, "web.default.svc.cluster.local.", RecordType::A).await),
        ["10.96.0.20"]
    );
}

#[tokio::test]
async fn large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let (service, endpoints) = headless_with("big", 100);
    let server = start(zone(&[service], &[endpoints]), Upstream::none()).await;
    let over_udp = udp_ask(server.udp, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(over_udp.metadata.truncation);
    assert!(over_udp.answers.is_empty());
    let bytes = udp_exchange(
        server.udp,
        &query(7, "big.default.svc.cluster.local.", RecordType::A, true),
    )
    .await;
    let with_edns = Message::from_vec(&bytes).expect("parses");
    assert!(!with_edns.metadata.truncation);
    assert_eq!(with_edns.answers.len(), 100);
    let over_tcp = tcp_ask(server.tcp, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(over_tcp.answers.len(), 100);
}

#[tokio::test]
async fn other_names_are_refused_without_upstream() {
    let server = start(zone(&[], &[]), Upstream::none()).await;
    let answer = udp_ask(server.udp, "example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn other_names_are_forwarded_upstream() {
    let upstream = fake_upstream(false, false).await;
    let server = start(
        zone(&[service("web", "10.96.0.10")], &[]),
        Upstream::new(vec![upstream.address], Duration::from_secs(2)),
    )
    .await;
    for answer in [
        udp_ask(server.udp, "example.com.", RecordType::A).await,
        tcp_ask(server.tcp, "example.com.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.recursion_available);
        assert_eq!(addresses(&answer), ["192.0.2.1"]);
    }
    // The zone's own names are still the zone's.
    let own = udp_ask(server.udp, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&own), ["10.96.0.10"]);
}

#[tokio::test]
async fn silent_upstream_gives_servfail_and_the_next_server_is_tried() {
    let silent = fake_upstream(false, true).await;
    let only_silent = start(
        zone(&[], &[]),
        Upstream::new(vec![silent.address], Duration::from_millis(200)),
    )
    .await;
    let answer = udp_ask(only_silent.udp, "example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);

    let working = fake_upstream(false, false).await;
    let both = start(
        zone(&[], &[]),
        Upstream::new(
            vec![silent.address, working.address],
            Duration::from_millis(200),
        ),
    )
    .await;
    for _ in 0..2 {
        let answer = udp_ask(both.udp, "example.com.", RecordType::A).await;
        assert_eq!(addresses(&answer), ["192.0.2.1"]);
    }
}

#[tokio::test]
async fn truncated_upstream_answer_is_asked_again_over_tcp_for_tcp_clients() {
    let upstream = fake_upstream(true, false).await;
    let server = start(
        zone(&[], &[]),
        Upstream::new(vec![upstream.address], Duration::from_secs(2)),
    )
    .await;
    let over_udp = udp_ask(server.udp, "example.com.", RecordType::A).await;
    assert!(over_udp.metadata.truncation);
    let over_tcp = tcp_ask(server.tcp, "example.com.", RecordType::A).await;
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(addresses(&over_tcp), ["192.0.2.1"]);
}

#[tokio::test]
async fn external_name_is_resolved_through_the_upstream() {
    let upstream = fake_upstream(false, false).await;
    let server = start(
        zone(&[external("search", "search.example.com")], &[]),
        Upstream::new(vec![upstream.address], Duration::from_secs(2)),
    )
    .await;
    let answer = udp_ask(
        server.udp,
        "search.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(
        addresses(&answer),
        ["192.0.2.1", "CNAME search.example.com."]
    );
}

#[tokio::test]
async fn malformed_packets_do_not_stop_the_server() {
    let server = start(zone(&[service("web", "10.96.0.10")], &[]), Upstream::none()).await;
    let mut garbage = query(
        0x0909,
        "web.default.svc.cluster.local.",
        RecordType::A,
        false,
    );
    garbage.truncate(17);
    let answer = Message::from_vec(&udp_exchange(server.udp, &garbage).await).expect("parses");
    assert_eq!(answer.metadata.id, 0x0909);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    // A short packet and a response get no answer; the server goes on.
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(&[1, 2, 3], server.udp).await.expect("send");
    let mut response = query(1, "web.default.svc.cluster.local.", RecordType::A, false);
    response[2] |= 0x80;
    socket.send_to(&response, server.udp).await.expect("send");
    // A TCP client that sends half a frame and hangs up.
    let mut stream = TcpStream::connect(server.tcp).await.expect("connect");
    stream.write_all(&[0, 200, 1, 2]).await.expect("write");
    drop(stream);
    let answer = udp_ask(server.udp, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.96.0.10"]);
    let answer = tcp_ask(server.tcp, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&answer), ["10.96.0.10"]);
}
