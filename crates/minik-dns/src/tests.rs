//! Unit tests of the zone and the packet handler: every record kind, the negative answers,
//! bad packets, truncation; and property tests that no packet makes the handler panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use crate::handler::{handle, Outcome, Transport};
use crate::zone::{ClusterDomain, Zone, TTL};

// ---- objects -------------------------------------------------------------------------------

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// `(name, port, protocol)`
type Port<'a> = (Option<&'a str>, i32, &'a str);

fn service_ports(ports: &[Port]) -> Vec<ServicePort> {
    ports
        .iter()
        .map(|(name, port, protocol)| ServicePort {
            name: name.map(str::to_string),
            port: *port,
            protocol: Some(protocol.to_string()),
            ..ServicePort::default()
        })
        .collect()
}

fn cluster_ip_service(namespace: &str, name: &str, ips: &[&str], ports: &[Port]) -> Service {
    Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            cluster_ip: ips.first().map(|ip| ip.to_string()),
            cluster_ips: Some(ips.iter().map(|ip| ip.to_string()).collect()),
            ports: Some(service_ports(ports)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn headless_service(namespace: &str, name: &str, ports: &[Port]) -> Service {
    let mut service = cluster_ip_service(namespace, name, &["None"], ports);
    if let Some(spec) = service.spec.as_mut() {
        spec.cluster_ips = Some(vec!["None".to_string()]);
    }
    service
}

fn external_service(namespace: &str, name: &str, target: &str, ports: &[Port]) -> Service {
    Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".to_string()),
            external_name: Some(target.to_string()),
            ports: Some(service_ports(ports)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `ready` and `not_ready` are `(ip, hostname)`.
fn endpoints(
    namespace: &str,
    name: &str,
    ready: &[(&str, Option<&str>)],
    not_ready: &[(&str, Option<&str>)],
    ports: &[Port],
) -> Endpoints {
    let addresses = |list: &[(&str, Option<&str>)]| {
        list.iter()
            .map(|(ip, hostname)| EndpointAddress {
                ip: ip.to_string(),
                hostname: hostname.map(str::to_string),
                ..EndpointAddress::default()
            })
            .collect::<Vec<_>>()
    };
    Endpoints {
        metadata: meta(namespace, name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(addresses(ready)),
            not_ready_addresses: Some(addresses(not_ready)),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: name.map(str::to_string),
                        port: *port,
                        protocol: Some(protocol.to_string()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }]),
    }
}

/// A cluster with one of everything.
fn cluster() -> Zone {
    let mut publishing = headless_service("default", "eager", &[(Some("http"), 80, "TCP")]);
    if let Some(spec) = publishing.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    let services = vec![
        cluster_ip_service(
            "default",
            "web",
            &["10.96.0.10"],
            &[(Some("http"), 80, "TCP"), (None, 8080, "TCP")],
        ),
        cluster_ip_service(
            "default",
            "dual",
            &["10.96.0.11", "fd00:10:96::11"],
            &[(Some("dns"), 53, "UDP")],
        ),
        cluster_ip_service(
            "kube-system",
            "kube-dns",
            &["10.96.0.53"],
            &[(Some("dns"), 53, "UDP")],
        ),
        headless_service(
            "db",
            "redis",
            &[(Some("redis"), 6379, "TCP"), (Some("gossip"), 7000, "UDP")],
        ),
        headless_service("db", "empty", &[(Some("x"), 1, "TCP")]),
        publishing,
        external_service(
            "default",
            "search",
            "search.example.com",
            &[(Some("https"), 443, "TCP")],
        ),
        external_service("default", "alias", "web.default.svc.cluster.local", &[]),
        external_service("default", "by-ip", "192.0.2.1", &[]),
        external_service("default", "loop-a", "loop-b.default.svc.cluster.local", &[]),
        external_service("default", "loop-b", "loop-a.default.svc.cluster.local", &[]),
    ];
    let endpoints = vec![
        endpoints(
            "default",
            "web",
            &[("10.244.0.5", None)],
            &[],
            &[(Some("http"), 8000, "TCP")],
        ),
        endpoints(
            "db",
            "redis",
            &[
                ("10.244.1.2", Some("redis-0")),
                ("10.244.2.3", None),
                ("fd00:244::4", None),
            ],
            &[("10.244.3.4", Some("redis-2"))],
            &[(Some("redis"), 6379, "TCP"), (Some("gossip"), 7000, "UDP")],
        ),
        endpoints(
            "db",
            "empty",
            &[],
            &[("10.244.9.9", None)],
            &[(Some("x"), 1, "TCP")],
        ),
        endpoints(
            "default",
            "eager",
            &[("10.244.4.1", None)],
            &[("10.244.4.2", None)],
            &[(Some("http"), 80, "TCP")],
        ),
    ];
    Zone::build(&ClusterDomain::default(), &services, &endpoints)
}

// ---- asking --------------------------------------------------------------------------------

fn query_bytes(name: &str, query_type: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name_of(name), query_type));
    if edns {
        let mut options = Edns::new();
        options.set_max_payload(4096);
        message.set_edns(options);
    }
    message.to_vec().expect("a query encodes")
}

/// `name` as written: `Name::from_str` would lower-case it (IDNA).
fn name_of(name: &str) -> Name {
    Name::from_ascii(name).expect("a valid test name")
}

fn reply_of(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Reply(bytes) => Message::from_vec(&bytes).expect("the answer parses"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ask_on(zone: &Zone, name: &str, query_type: RecordType) -> Message {
    let answer = reply_of(handle(
        zone,
        &query_bytes(name, query_type, true),
        Transport::Udp,
        false,
    ));
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert!(answer.metadata.recursion_desired);
    assert_eq!(answer.queries.len(), 1);
    answer
}

fn ask(name: &str, query_type: RecordType) -> Message {
    ask_on(&cluster(), name, query_type)
}

/// The answer section as `owner type data` lines, sorted.
fn lines(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|record| format!("{} {} {}", record.name, record.record_type(), record.data))
        .collect();
    lines.sort();
    lines
}

fn assert_answers(name: &str, query_type: RecordType, expected: &[&str]) {
    let answer = ask(name, query_type);
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NoError,
        "{name} {query_type}"
    );
    assert!(answer.metadata.authoritative, "{name}: authoritative");
    let mut expected: Vec<String> = expected.iter().map(|line| line.to_string()).collect();
    expected.sort();
    assert_eq!(lines(&answer.answers), expected, "{name} {query_type}");
    for record in &answer.answers {
        assert_eq!(record.ttl, TTL);
        assert_eq!(record.dns_class, DNSClass::IN);
    }
}

fn assert_nxdomain(name: &str, query_type: RecordType) {
    let answer = ask(name, query_type);
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NXDomain,
        "{name} {query_type}"
    );
    assert!(answer.answers.is_empty(), "{name}: no answers");
    assert_soa_authority(&answer);
}

fn assert_nodata(name: &str, query_type: RecordType) {
    let answer = ask(name, query_type);
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NoError,
        "{name} {query_type}"
    );
    assert!(
        answer.answers.is_empty(),
        "{name} {query_type}: {:?}",
        answer.answers
    );
    assert_soa_authority(&answer);
}

fn assert_soa_authority(answer: &Message) {
    assert!(answer.metadata.authoritative);
    assert_eq!(answer.authorities.len(), 1, "SOA in the authority section");
    let soa = &answer.authorities[0];
    assert_eq!(soa.name, name_of("cluster.local."));
    match &soa.data {
        RData::SOA(soa) => {
            assert_eq!(soa.mname, name_of("ns.dns.cluster.local."));
            assert_eq!(soa.rname, name_of("hostmaster.cluster.local."));
            assert_eq!(soa.minimum, TTL);
        }
        other => panic!("expected an SOA, got {other:?}"),
    }
}

// ---- records -------------------------------------------------------------------------------

#[test]
fn cluster_ip_service_has_an_a_record() {
    assert_answers(
        "web.default.svc.cluster.local.",
        RecordType::A,
        &["web.default.svc.cluster.local. A 10.96.0.10"],
    );
}

#[test]
fn names_are_case_insensitive_and_echoed_as_asked() {
    assert_answers(
        "WeB.DeFault.SVC.Cluster.Local.",
        RecordType::A,
        &["WeB.DeFault.SVC.Cluster.Local. A 10.96.0.10"],
    );
    assert_answers(
        "_HTTP._Tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        &["_HTTP._Tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."],
    );
}

#[test]
fn dual_stack_service_has_a_and_aaaa() {
    assert_answers(
        "dual.default.svc.cluster.local.",
        RecordType::A,
        &["dual.default.svc.cluster.local. A 10.96.0.11"],
    );
    assert_answers(
        "dual.default.svc.cluster.local.",
        RecordType::AAAA,
        &["dual.default.svc.cluster.local. AAAA fd00:10:96::11"],
    );
}

#[test]
fn service_of_one_family_has_nodata_for_the_other() {
    assert_nodata("web.default.svc.cluster.local.", RecordType::AAAA);
    assert_nodata("web.default.svc.cluster.local.", RecordType::MX);
    assert_nodata("web.default.svc.cluster.local.", RecordType::CNAME);
}

#[test]
fn headless_service_has_every_ready_address() {
    assert_answers(
        "redis.db.svc.cluster.local.",
        RecordType::A,
        &[
            "redis.db.svc.cluster.local. A 10.244.1.2",
            "redis.db.svc.cluster.local. A 10.244.2.3",
        ],
    );
    assert_answers(
        "redis.db.svc.cluster.local.",
        RecordType::AAAA,
        &["redis.db.svc.cluster.local. AAAA fd00:244::4"],
    );
}

#[test]
fn headless_service_publishing_not_ready_addresses_has_them_too() {
    assert_answers(
        "eager.default.svc.cluster.local.",
        RecordType::A,
        &[
            "eager.default.svc.cluster.local. A 10.244.4.1",
            "eager.default.svc.cluster.local. A 10.244.4.2",
        ],
    );
}

#[test]
fn headless_endpoint_with_hostname_has_its_own_name() {
    assert_answers(
        "redis-0.redis.db.svc.cluster.local.",
        RecordType::A,
        &["redis-0.redis.db.svc.cluster.local. A 10.244.1.2"],
    );
    // Not ready: no name.
    assert_nxdomain("redis-2.redis.db.svc.cluster.local.", RecordType::A);
}

#[test]
fn headless_endpoint_without_hostname_is_named_by_its_dashed_address() {
    assert_answers(
        "10-244-2-3.redis.db.svc.cluster.local.",
        RecordType::A,
        &["10-244-2-3.redis.db.svc.cluster.local. A 10.244.2.3"],
    );
    assert_answers(
        "fd00-244--4.redis.db.svc.cluster.local.",
        RecordType::AAAA,
        &["fd00-244--4.redis.db.svc.cluster.local. AAAA fd00:244::4"],
    );
}

#[test]
fn headless_service_without_ready_endpoints_does_not_exist() {
    assert_nxdomain("empty.db.svc.cluster.local.", RecordType::A);
    assert_nxdomain("_x._tcp.empty.db.svc.cluster.local.", RecordType::SRV);
}

#[test]
fn cluster_ip_service_endpoints_have_names_too() {
    assert_answers(
        "10-244-0-5.web.default.svc.cluster.local.",
        RecordType::A,
        &["10-244-0-5.web.default.svc.cluster.local. A 10.244.0.5"],
    );
}

#[test]
fn srv_of_a_named_port_targets_the_service() {
    let answer = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        lines(&answer.answers),
        ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(
        lines(&answer.additionals),
        ["web.default.svc.cluster.local. A 10.96.0.10"]
    );
    assert_answers(
        "_dns._udp.dual.default.svc.cluster.local.",
        RecordType::SRV,
        &["_dns._udp.dual.default.svc.cluster.local. SRV 0 100 53 dual.default.svc.cluster.local."],
    );
    // The protocol is part of the name.
    assert_nxdomain("_http._udp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_nxdomain("_nope._tcp.web.default.svc.cluster.local.", RecordType::SRV);
}

#[test]
fn srv_of_a_headless_named_port_targets_each_endpoint() {
    let answer = ask("_redis._tcp.redis.db.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        lines(&answer.answers),
        [
            "_redis._tcp.redis.db.svc.cluster.local. SRV 0 33 6379 10-244-2-3.redis.db.svc.cluster.local.",
            "_redis._tcp.redis.db.svc.cluster.local. SRV 0 33 6379 fd00-244--4.redis.db.svc.cluster.local.",
            "_redis._tcp.redis.db.svc.cluster.local. SRV 0 33 6379 redis-0.redis.db.svc.cluster.local.",
        ]
    );
    assert_eq!(
        lines(&answer.additionals),
        [
            "10-244-2-3.redis.db.svc.cluster.local. A 10.244.2.3",
            "fd00-244--4.redis.db.svc.cluster.local. AAAA fd00:244::4",
            "redis-0.redis.db.svc.cluster.local. A 10.244.1.2",
        ]
    );
    assert_answers(
        "_gossip._udp.redis.db.svc.cluster.local.",
        RecordType::SRV,
        &[
            "_gossip._udp.redis.db.svc.cluster.local. SRV 0 33 7000 10-244-2-3.redis.db.svc.cluster.local.",
            "_gossip._udp.redis.db.svc.cluster.local. SRV 0 33 7000 fd00-244--4.redis.db.svc.cluster.local.",
            "_gossip._udp.redis.db.svc.cluster.local. SRV 0 33 7000 redis-0.redis.db.svc.cluster.local.",
        ],
    );
}

#[test]
fn srv_of_the_service_name_lists_every_port() {
    assert_answers(
        "web.default.svc.cluster.local.",
        RecordType::SRV,
        &[
            "web.default.svc.cluster.local. SRV 0 50 80 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. SRV 0 50 8080 web.default.svc.cluster.local.",
        ],
    );
}

#[test]
fn pod_names_answer_their_address() {
    assert_answers(
        "10-244-1-5.default.pod.cluster.local.",
        RecordType::A,
        &["10-244-1-5.default.pod.cluster.local. A 10.244.1.5"],
    );
    assert_answers(
        "fd00-244--5.anywhere.pod.cluster.local.",
        RecordType::AAAA,
        &["fd00-244--5.anywhere.pod.cluster.local. AAAA fd00:244::5"],
    );
    assert_nodata("10-244-1-5.default.pod.cluster.local.", RecordType::AAAA);
    assert_nodata("default.pod.cluster.local.", RecordType::A);
    assert_nxdomain("10-244-1.default.pod.cluster.local.", RecordType::A);
    assert_nxdomain("not-an-ip.default.pod.cluster.local.", RecordType::A);
    assert_nxdomain("10-244-1-300.default.pod.cluster.local.", RecordType::A);
    assert_nxdomain("a.10-244-1-5.default.pod.cluster.local.", RecordType::A);
}

#[test]
fn external_name_service_is_a_cname() {
    assert_answers(
        "search.default.svc.cluster.local.",
        RecordType::A,
        &["search.default.svc.cluster.local. CNAME search.example.com."],
    );
    assert_answers(
        "search.default.svc.cluster.local.",
        RecordType::CNAME,
        &["search.default.svc.cluster.local. CNAME search.example.com."],
    );
    assert_answers(
        "_https._tcp.search.default.svc.cluster.local.",
        RecordType::SRV,
        &["_https._tcp.search.default.svc.cluster.local. SRV 0 100 443 search.example.com."],
    );
    // An address is no host name: CoreDNS makes no record of it.
    assert_nxdomain("by-ip.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn cname_into_the_zone_is_followed() {
    assert_answers(
        "alias.default.svc.cluster.local.",
        RecordType::A,
        &[
            "alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. A 10.96.0.10",
        ],
    );
}

#[test]
fn cname_loop_ends() {
    let answer = ask("loop-a.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(!answer.answers.is_empty());
    assert!(answer.answers.len() <= 8);
}

#[test]
fn cname_target_outside_the_zone_is_chased_only_with_an_upstream() {
    let zone = cluster();
    let packet = query_bytes("search.default.svc.cluster.local.", RecordType::A, false);
    match handle(&zone, &packet, Transport::Udp, true) {
        Outcome::Chase(chase) => {
            assert_eq!(chase.target, name_of("search.example.com."));
            assert_eq!(chase.query_type, RecordType::A);
            let with = Record::from_rdata(
                name_of("search.example.com."),
                60,
                RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 7))),
            );
            let answer = Message::from_vec(&crate::handler::finish_chase(chase, vec![with]))
                .expect("parses");
            assert_eq!(
                lines(&answer.answers),
                [
                    "search.default.svc.cluster.local. CNAME search.example.com.",
                    "search.example.com. A 192.0.2.7",
                ]
            );
            assert!(answer.metadata.recursion_available);
        }
        other => panic!("expected a chase, got {other:?}"),
    }
}

#[test]
fn ptr_of_cluster_ips_and_headless_endpoints() {
    assert_answers(
        "10.0.96.10.in-addr.arpa.",
        RecordType::PTR,
        &["10.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."],
    );
    assert_answers(
        "2.1.244.10.in-addr.arpa.",
        RecordType::PTR,
        &["2.1.244.10.in-addr.arpa. PTR redis-0.redis.db.svc.cluster.local."],
    );
    let v6: Name = IpAddr::V6(Ipv6Addr::from_str("fd00:10:96::11").expect("address")).into();
    assert_answers(
        &v6.to_string(),
        RecordType::PTR,
        &[&format!("{v6} PTR dual.default.svc.cluster.local.")],
    );
    // An address the zone does not know falls through to the upstream: none here.
    let unknown = ask("9.9.9.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(unknown.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn empty_non_terminals_have_nodata() {
    for name in [
        "svc.cluster.local.",
        "pod.cluster.local.",
        "default.svc.cluster.local.",
        "db.svc.cluster.local.",
        "_tcp.web.default.svc.cluster.local.",
        "dns.cluster.local.",
    ] {
        assert_nodata(name, RecordType::A);
    }
    assert_nxdomain("nowhere.svc.cluster.local.", RecordType::A);
    assert_nxdomain("nope.default.svc.cluster.local.", RecordType::A);
    assert_nxdomain("nope.default.svc.cluster.local.", RecordType::SRV);
    assert_nxdomain("other.cluster.local.", RecordType::A);
    assert_nxdomain("a.b.c.web.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn apex_has_soa_and_ns() {
    let soa = ask("cluster.local.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    let ns = ask("cluster.local.", RecordType::NS);
    assert_eq!(
        lines(&ns.answers),
        ["cluster.local. NS ns.dns.cluster.local."]
    );
    assert_eq!(
        lines(&ns.additionals),
        ["ns.dns.cluster.local. A 10.96.0.53"]
    );
    assert_answers(
        "ns.dns.cluster.local.",
        RecordType::A,
        &["ns.dns.cluster.local. A 10.96.0.53"],
    );
    assert_answers(
        "dns-version.cluster.local.",
        RecordType::TXT,
        &["dns-version.cluster.local. TXT 1.1.0"],
    );
    let any = ask("web.default.svc.cluster.local.", RecordType::ANY);
    assert_eq!(any.answers.len(), 3, "A and two SRV: {:?}", any.answers);
}

#[test]
fn other_names_are_refused_without_upstream() {
    let answer = ask("example.com.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert!(!answer.metadata.recursion_available);
    assert!(!answer.metadata.authoritative);
    let packet = query_bytes("example.com.", RecordType::A, false);
    match handle(&cluster(), &packet, Transport::Udp, true) {
        Outcome::Forward(forward) => {
            assert_eq!(forward.id, 0x1234);
            assert_eq!(forward.query.name(), &name_of("example.com."));
            assert_eq!(forward.limit, 512);
        }
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn unsynced_zone_fails_names_in_the_domain() {
    let zone = Zone::unsynced(&ClusterDomain::default());
    assert!(!zone.is_synced());
    let answer = ask_on(&zone, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    let answer = ask_on(&zone, "example.com.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn zone_transfers_and_other_classes_are_refused() {
    let answer = ask("cluster.local.", RecordType::AXFR);
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    let mut query = Query::query(name_of("web.default.svc.cluster.local."), RecordType::A);
    query.set_query_class(DNSClass::CH);
    message.add_query(query);
    let packet = message.to_vec().expect("encodes");
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn other_cluster_domain() {
    let domain = ClusterDomain::parse("Corp.Internal.").expect("valid");
    assert_eq!(domain.to_string(), "corp.internal");
    let zone = Zone::build(
        &domain,
        &[cluster_ip_service("a", "b", &["10.0.0.1"], &[])],
        &[],
    );
    let answer = ask_on(&zone, "b.a.svc.corp.internal.", RecordType::A);
    assert_eq!(
        lines(&answer.answers),
        ["b.a.svc.corp.internal. A 10.0.0.1"]
    );
    let answer = ask_on(&zone, "b.a.svc.cluster.local.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn bad_cluster_domains_are_refused_with_the_reason() {
    for bad in [
        "",
        ".",
        "a..b",
        "-a.b",
        "a_b.local",
        &"x".repeat(64),
        "UPPER CASE",
    ] {
        let error = ClusterDomain::parse(bad).expect_err(bad);
        assert!(
            error.to_string().contains("invalid cluster domain"),
            "{error}"
        );
    }
}

#[test]
fn objects_that_cannot_be_names_are_left_out() {
    let services = [
        cluster_ip_service("default", "Bad_Name", &["10.96.0.1"], &[]),
        cluster_ip_service("default", &"x".repeat(64), &["10.96.0.2"], &[]),
        cluster_ip_service(
            "default",
            "no-ip",
            &["not-an-ip"],
            &[(Some("p"), 99999, "TCP")],
        ),
        Service::default(),
    ];
    let eps = [endpoints(
        "default",
        "no-ip",
        &[
            ("garbage", Some("BAD HOST")),
            ("10.1.1.1", Some("Bad_Host")),
        ],
        &[],
        &[(Some("p"), -1, "TCP")],
    )];
    let zone = Zone::build(&ClusterDomain::default(), &services, &eps);
    assert_nodata_on(&zone, "no-ip.default.svc.cluster.local.");
    let answer = ask_on(
        &zone,
        "10-1-1-1.no-ip.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(answer.answers.len(), 1);
}

fn assert_nodata_on(zone: &Zone, name: &str) {
    let answer = ask_on(zone, name, RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
}

// ---- packets -------------------------------------------------------------------------------

#[test]
fn short_packets_and_responses_are_dropped() {
    let zone = cluster();
    assert!(matches!(
        handle(&zone, &[], Transport::Udp, false),
        Outcome::Drop
    ));
    assert!(matches!(
        handle(&zone, &[0; 11], Transport::Udp, false),
        Outcome::Drop
    ));
    let mut response = query_bytes("web.default.svc.cluster.local.", RecordType::A, false);
    response[2] |= 0x80;
    assert!(matches!(
        handle(&zone, &response, Transport::Udp, false),
        Outcome::Drop
    ));
}

#[test]
fn unparsable_query_gets_formerr_with_its_id() {
    let mut packet = query_bytes("web.default.svc.cluster.local.", RecordType::A, false);
    packet.truncate(20);
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    assert!(answer.metadata.recursion_desired);
}

#[test]
fn query_without_exactly_one_question_gets_formerr() {
    let mut message = Message::new(9, MessageType::Query, OpCode::Query);
    let packet = message.to_vec().expect("encodes");
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    message.add_query(Query::query(name_of("a.cluster.local."), RecordType::A));
    message.add_query(Query::query(name_of("b.cluster.local."), RecordType::A));
    let packet = message.to_vec().expect("encodes");
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn other_opcodes_are_not_implemented() {
    let mut message = Message::new(9, MessageType::Query, OpCode::Update);
    message.add_query(Query::query(name_of("cluster.local."), RecordType::SOA));
    let packet = message.to_vec().expect("encodes");
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn unknown_edns_version_gets_badvers() {
    let mut message = Message::new(9, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name_of("cluster.local."), RecordType::SOA));
    let mut edns = Edns::new();
    edns.set_version(1);
    message.set_edns(edns);
    let packet = message.to_vec().expect("encodes");
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    // BADVERS and BADSIG share the code 16; hickory reads it back as BADSIG.
    assert_eq!(u16::from(answer.metadata.response_code), 16);
    assert_eq!(answer.edns.as_ref().map(Edns::version), Some(0));
}

#[test]
fn edns_query_gets_an_opt_record() {
    let answer = ask("web.default.svc.cluster.local.", RecordType::A);
    let edns = answer.edns.expect("OPT in the answer");
    assert_eq!(edns.max_payload(), crate::handler::SERVER_UDP_PAYLOAD);
    let packet = query_bytes("web.default.svc.cluster.local.", RecordType::A, false);
    let answer = reply_of(handle(&cluster(), &packet, Transport::Udp, false));
    assert!(answer.edns.is_none());
}

/// A headless Service with `n` ready endpoints.
fn big_zone(n: u32) -> Zone {
    let ready: Vec<(String, Option<&str>)> = (0..n)
        .map(|i| (Ipv4Addr::from(0x0af4_0000 + i).to_string(), None))
        .collect();
    let ready: Vec<(&str, Option<&str>)> = ready.iter().map(|(ip, h)| (ip.as_str(), *h)).collect();
    Zone::build(
        &ClusterDomain::default(),
        &[headless_service(
            "default",
            "big",
            &[(Some("http"), 80, "TCP")],
        )],
        &[endpoints(
            "default",
            "big",
            &ready,
            &[],
            &[(Some("http"), 80, "TCP")],
        )],
    )
}

#[test]
fn udp_answer_too_large_is_truncated() {
    let zone = big_zone(100);
    let name = "big.default.svc.cluster.local.";
    // No EDNS: 512 bytes; 100 A records do not fit.
    let packet = query_bytes(name, RecordType::A, false);
    let Outcome::Reply(bytes) = handle(&zone, &packet, Transport::Udp, false) else {
        panic!("expected a reply");
    };
    assert!(bytes.len() <= 512);
    let answer = Message::from_vec(&bytes).expect("parses");
    assert!(answer.metadata.truncation);
    assert!(answer.answers.is_empty());
    assert_eq!(answer.queries.len(), 1);
    // EDNS 4096: they fit.
    let answer = reply_of(handle(
        &zone,
        &query_bytes(name, RecordType::A, true),
        Transport::Udp,
        false,
    ));
    assert!(!answer.metadata.truncation);
    assert_eq!(answer.answers.len(), 100);
    // TCP: everything.
    let answer = reply_of(handle(&zone, &packet, Transport::Tcp, false));
    assert!(!answer.metadata.truncation);
    assert_eq!(answer.answers.len(), 100);
}

#[test]
fn tcp_answer_larger_than_64k_is_truncated() {
    let zone = big_zone(5000);
    let packet = query_bytes("big.default.svc.cluster.local.", RecordType::A, false);
    let Outcome::Reply(bytes) = handle(&zone, &packet, Transport::Tcp, false) else {
        panic!("expected a reply");
    };
    assert!(bytes.len() <= usize::from(u16::MAX));
    let answer = Message::from_vec(&bytes).expect("parses");
    // 5,000 A records compress to 16 bytes each: 80 kB.
    assert!(answer.metadata.truncation);
}

#[test]
fn relay_restores_the_client_id_and_truncates() {
    let zone = big_zone(100);
    let packet = query_bytes("big.default.svc.cluster.local.", RecordType::A, false);
    let Outcome::Reply(mut upstream_answer) = handle(&zone, &packet, Transport::Tcp, false) else {
        panic!("expected a reply");
    };
    upstream_answer[..2].copy_from_slice(&0xbeefu16.to_be_bytes());
    let forward = crate::handler::Forward {
        query: Query::query(name_of("big.default.svc.cluster.local."), RecordType::A),
        id: 0x1234,
        limit: 512,
    };
    let relayed = crate::handler::relay(upstream_answer, &forward).expect("relayed");
    assert!(relayed.len() <= 512);
    let answer = Message::from_vec(&relayed).expect("parses");
    assert_eq!(answer.metadata.id, 0x1234);
    assert!(answer.metadata.truncation);
    assert!(crate::handler::relay(vec![1, 2, 3], &forward).is_none());
}

#[test]
fn rebuilt_zone_answers_the_new_endpoints() {
    let domain = ClusterDomain::default();
    let service = headless_service("default", "h", &[]);
    let before = Zone::build(
        &domain,
        [&service],
        [&endpoints("default", "h", &[("10.0.0.1", None)], &[], &[])],
    );
    let after = Zone::build(
        &domain,
        [&service],
        [&endpoints("default", "h", &[("10.0.0.2", None)], &[], &[])],
    );
    let shared = crate::SharedZone::new(before);
    let name = "h.default.svc.cluster.local.";
    assert_eq!(
        lines(&ask_on(&shared.load(), name, RecordType::A).answers),
        ["h.default.svc.cluster.local. A 10.0.0.1"]
    );
    shared.store(after);
    assert_eq!(
        lines(&ask_on(&shared.load(), name, RecordType::A).answers),
        ["h.default.svc.cluster.local. A 10.0.0.2"]
    );
}

#[test]
fn resolv_conf_nameservers() {
    let servers = crate::Upstream::parse_resolv_conf(
        "# comment\nnameserver 127.0.0.53\nsearch x\nnameserver ::1\nnameserver bogus\noptions ndots:5\n",
    );
    assert_eq!(
        servers,
        [
            "127.0.0.53:53".parse().expect("addr"),
            "[::1]:53".parse().expect("addr")
        ]
    );
}

// ---- properties ----------------------------------------------------------------------------

/// Whatever the handler says back must be a message that parses, for the same ID.
fn check_outcome(packet: &[u8], outcome: Outcome) -> Result<(), TestCaseError> {
    match outcome {
        Outcome::Reply(bytes) => {
            prop_assert!(bytes.len() >= 12);
            let answer = Message::from_vec(&bytes);
            prop_assert!(answer.is_ok(), "answer does not parse: {:?}", answer.err());
            let answer = answer.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&bytes[..2], &packet[..2]);
            prop_assert_eq!(answer.metadata.message_type, MessageType::Response);
        }
        Outcome::Drop => prop_assert!(packet.len() < 12 || packet[2] & 0x80 != 0),
        Outcome::Forward(forward) => prop_assert_eq!(&forward.id.to_be_bytes()[..], &packet[..2]),
        Outcome::Chase(chase) => {
            let bytes = crate::handler::finish_chase(chase, Vec::new());
            prop_assert!(Message::from_vec(&bytes).is_ok());
        }
    }
    Ok(())
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_string()),
        Just("default".to_string()),
        Just("svc".to_string()),
        Just("pod".to_string()),
        Just("redis".to_string()),
        Just("db".to_string()),
        Just("_http".to_string()),
        Just("_tcp".to_string()),
        Just("redis-0".to_string()),
        Just("10-244-1-5".to_string()),
        Just("fd00--1".to_string()),
        "[a-zA-Z0-9-]{1,20}",
    ]
}

fn record_type() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::SRV),
        Just(RecordType::PTR),
        Just(RecordType::CNAME),
        Just(RecordType::SOA),
        Just(RecordType::NS),
        Just(RecordType::TXT),
        Just(RecordType::ANY),
        Just(RecordType::AXFR),
        any::<u16>().prop_map(RecordType::from),
    ]
}

fn valid_query() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(label(), 0..6),
        prop_oneof![
            Just("cluster.local."),
            Just("in-addr.arpa."),
            Just("example.com.")
        ],
        record_type(),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(labels, suffix, query_type, edns, id)| {
            let text = if labels.is_empty() {
                suffix.to_string()
            } else {
                format!("{}.{suffix}", labels.join("."))
            };
            let name = Name::from_ascii(&text).unwrap_or_else(|_| Name::root());
            let mut message = Message::new(id, MessageType::Query, OpCode::Query);
            message.add_query(Query::query(name, query_type));
            if edns {
                let mut options = Edns::new();
                options.set_max_payload(1232);
                message.set_edns(options);
            }
            message.to_vec().unwrap_or_default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
        let zone = cluster();
        for transport in [Transport::Udp, Transport::Tcp] {
            for forwarding in [false, true] {
                check_outcome(&packet, handle(&zone, &packet, transport, forwarding))?;
            }
        }
    }

    #[test]
    fn valid_queries_get_answers_that_parse(packet in valid_query()) {
        let zone = cluster();
        prop_assume!(packet.len() >= 12);
        let outcome = handle(&zone, &packet, Transport::Udp, false);
        match &outcome {
            Outcome::Reply(bytes) => {
                let answer = Message::from_vec(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(matches!(
                    answer.metadata.response_code,
                    ResponseCode::NoError | ResponseCode::NXDomain | ResponseCode::Refused
                ), "rcode {:?}", answer.metadata.response_code);
                prop_assert!(bytes.len() <= 1232);
            }
            other => prop_assert!(false, "expected a reply, got {:?}", other),
        }
        check_outcome(&packet, outcome)?;
    }

    #[test]
    fn mutated_queries_never_panic(
        packet in valid_query(),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let zone = cluster();
        let mut packet = packet;
        for (at, value) in mutations {
            if !packet.is_empty() {
                let at = at % packet.len();
                packet[at] = value;
            }
        }
        if cut % 4 == 0 && !packet.is_empty() {
            packet.truncate(cut % packet.len());
        }
        packet.extend(extra);
        for transport in [Transport::Udp, Transport::Tcp] {
            check_outcome(&packet, handle(&zone, &packet, transport, true))?;
        }
    }
}
