//! The cluster zone: every name the Kubernetes DNS schema gives Services, their endpoints and
//! pods, built once from the objects and then only read.
//!
//! Building is a pure function of the cluster domain, the Services and the Endpoints; answering
//! a question is a map look-up with no I/O. The names and their records follow the Kubernetes
//! DNS specification as CoreDNS's `kubernetes` plugin serves it (`pods insecure`, reverse zones
//! with fall-through); [`Zone`] lists the names.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};

use crate::error::DnsError;

/// The TTL of every record, in seconds: CoreDNS's default for the `kubernetes` plugin.
pub const TTL: u32 = 5;

/// How many CNAMEs inside the zone an answer follows before it gives up (a loop of
/// ExternalName Services pointing at each other must end).
const MAX_CNAME_HOPS: usize = 8;

/// The version of the Kubernetes DNS schema these records follow, served at `dns-version`.
const SCHEMA_VERSION: &str = "1.1.0";

/// A cluster domain such as `cluster.local`: a valid, lower-case, fully qualified DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDomain(Name);

impl ClusterDomain {
    /// Parses a cluster domain (`cluster.local`, with or without the final dot, any case).
    pub fn parse(domain: &str) -> Result<Self, DnsError> {
        let invalid = |reason: String| DnsError::InvalidDomain {
            domain: domain.to_string(),
            reason,
        };
        let lower = domain.to_ascii_lowercase();
        let trimmed = lower.strip_suffix('.').unwrap_or(&lower);
        if trimmed.is_empty() {
            return Err(invalid("it is empty".to_string()));
        }
        for label in trimmed.split('.') {
            if !is_dns_label(label) {
                return Err(invalid(format!(
                    "label {label:?} is not a DNS-1123 label (lower-case letters, digits and '-', \
                     at most 63 characters, starting and ending with a letter or digit)"
                )));
            }
        }
        let mut name = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?;
        name.set_fqdn(true);
        Ok(Self(name))
    }

    /// The domain as a fully qualified name.
    pub fn name(&self) -> &Name {
        &self.0
    }
}

impl Default for ClusterDomain {
    /// `cluster.local`, Kubernetes' default.
    fn default() -> Self {
        let labels: [&[u8]; 2] = [b"cluster", b"local"];
        // Two short literal labels always make a valid name.
        let name = Name::from_labels(labels).unwrap_or_else(|_| Name::root());
        Self(name)
    }
}

impl std::fmt::Display for ClusterDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_ascii();
        f.write_str(text.strip_suffix('.').unwrap_or(&text))
    }
}

/// The records of one name.
#[derive(Clone, Debug, Default)]
struct Node {
    /// A and AAAA, sorted, without duplicates.
    addresses: Vec<IpAddr>,
    /// The target of an ExternalName Service: the name is an alias and has no other data.
    cname: Option<Name>,
    /// SRV records, sorted by target and port, weights shared out.
    srv: Vec<SRV>,
    /// SOA, NS, TXT: the apex and the schema version.
    other: Vec<RData>,
}

impl Node {
    fn rdata_of(&self, query_type: RecordType) -> Vec<RData> {
        let mut out = Vec::new();
        let any = query_type == RecordType::ANY;
        if any || query_type == RecordType::A || query_type == RecordType::AAAA {
            for address in &self.addresses {
                match address {
                    IpAddr::V4(v4) if any || query_type == RecordType::A => {
                        out.push(RData::A(A(*v4)))
                    }
                    IpAddr::V6(v6) if any || query_type == RecordType::AAAA => {
                        out.push(RData::AAAA(AAAA(*v6)))
                    }
                    _ => {}
                }
            }
        }
        if any || query_type == RecordType::SRV {
            out.extend(self.srv.iter().cloned().map(RData::SRV));
        }
        out.extend(
            self.other
                .iter()
                .filter(|rdata| any || rdata.record_type() == query_type)
                .cloned(),
        );
        out
    }
}

/// What the zone says about one question.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    /// NOERROR (with or without answers), NXDOMAIN or SERVFAIL (the zone is not synced yet).
    pub rcode: ResponseCode,
    /// Whether the answer is the zone's own (authoritative). False for a zone not synced yet.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// A CNAME target outside the zone (an ExternalName) that the server may resolve upstream
    /// and append, as CoreDNS does through its own upstream.
    pub chase: Option<Name>,
}

/// The cluster zone: all names of the Kubernetes DNS schema for one set of Services and
/// Endpoints. Immutable; build a new one when the objects change and swap it in
/// ([`crate::SharedZone::store`]).
///
/// | name                                         | records                                   |
/// |----------------------------------------------|-------------------------------------------|
/// | `svc.ns.svc.<domain>`                        | A/AAAA: ClusterIPs, or a headless Service's ready endpoint addresses; CNAME for ExternalName; SRV for every port |
/// | `_port._proto.svc.ns.svc.<domain>`           | SRV for a named port                      |
/// | `endpoint.svc.ns.svc.<domain>`               | A/AAAA of one endpoint: its `hostname`, or its address with dashes |
/// | `a-b-c-d.ns.pod.<domain>`                    | A (AAAA for dashed IPv6), any namespace   |
/// | `d.c.b.a.in-addr.arpa`, `….ip6.arpa`         | PTR of ClusterIPs and headless endpoints  |
/// | `<domain>`                                   | SOA, NS `ns.dns.<domain>`                 |
/// | `ns.dns.<domain>`                            | A/AAAA of `kube-system/kube-dns`           |
/// | `dns-version.<domain>`                       | TXT `1.1.0` (the schema's version)        |
#[derive(Debug)]
pub struct Zone {
    domain: ClusterDomain,
    /// False for the placeholder served before the first list of the objects: names in the
    /// domain get SERVFAIL then, as CoreDNS answers before its caches have synced.
    synced: bool,
    nodes: HashMap<Key, Node>,
    /// PTR targets by address: ClusterIPs and headless Services' endpoints.
    reverse: HashMap<IpAddr, Vec<Name>>,
    soa: Record,
}

impl Zone {
    /// The zone of `services` and `endpoints` under `domain`. Objects whose names cannot be
    /// DNS names (which the API's validation already prevents) are left out, never an error.
    pub fn build<'a>(
        domain: &ClusterDomain,
        services: impl IntoIterator<Item = &'a Service>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
    ) -> Zone {
        let mut builder = Builder::new(domain);
        let endpoints_by_service: HashMap<(&str, &str), &Endpoints> = endpoints
            .into_iter()
            .filter_map(|ep| {
                let namespace = ep.metadata.namespace.as_deref()?;
                let name = ep.metadata.name.as_deref()?;
                Some(((namespace, name), ep))
            })
            .collect();
        let mut serial: u64 = 0;
        for service in services {
            serial = serial.max(resource_version(&service.metadata));
            let (Some(namespace), Some(name)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let endpoints = endpoints_by_service.get(&(namespace, name)).copied();
            if let Some(ep) = endpoints {
                serial = serial.max(resource_version(&ep.metadata));
            }
            builder.add_service(namespace, name, service, endpoints);
        }
        // The SOA serial only has to change with the data (nothing transfers this zone): the
        // newest resourceVersion among the objects does, without a clock.
        builder.finish(true, serial as u32)
    }

    /// The placeholder zone before the objects have been listed: names in `domain` get
    /// SERVFAIL (clients retry) instead of NXDOMAIN (which they would believe and cache).
    pub fn unsynced(domain: &ClusterDomain) -> Zone {
        Builder::new(domain).finish(false, 0)
    }

    /// The cluster domain this zone serves.
    pub fn domain(&self) -> &ClusterDomain {
        &self.domain
    }

    /// Whether the zone was built from listed objects (false for [`Zone::unsynced`]).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// How many names the zone holds (empty non-terminals included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the zone holds no name at all (never: the apex is always there).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `name` is the cluster domain or under it.
    pub(crate) fn contains(&self, name: &Name) -> bool {
        name.is_fqdn() && self.domain.0.zone_of(name)
    }

    /// The zone's answer to `name`/`query_type`, or None when the name is not the zone's
    /// (outside the domain and not a reverse name the zone knows): the upstream's business.
    pub(crate) fn resolve(&self, name: &Name, query_type: RecordType) -> Option<Resolution> {
        if !self.contains(name) {
            return self.resolve_reverse(name, query_type);
        }
        if !self.synced {
            return Some(Resolution {
                rcode: ResponseCode::ServFail,
                ..Resolution::default()
            });
        }
        let mut resolution = Resolution {
            authoritative: true,
            ..Resolution::default()
        };
        let mut owner = name.clone();
        for _ in 0..MAX_CNAME_HOPS {
            let Some(node) = self.lookup(&owner) else {
                resolution.rcode = ResponseCode::NXDomain;
                resolution.authorities.push(self.soa.clone());
                return Some(resolution);
            };
            if let Some(target) = &node.cname {
                if query_type != RecordType::CNAME && query_type != RecordType::ANY {
                    resolution
                        .answers
                        .push(record(&owner, RData::CNAME(CNAME(target.clone()))));
                    if self.contains(target) {
                        owner = target.clone();
                        continue;
                    }
                    resolution.chase = Some(target.clone());
                    return Some(resolution);
                }
                resolution
                    .answers
                    .push(record(&owner, RData::CNAME(CNAME(target.clone()))));
                return Some(resolution);
            }
            let rdata = node.rdata_of(query_type);
            if rdata.is_empty() && resolution.answers.is_empty() {
                // NODATA: the name exists, not with this type.
                resolution.authorities.push(self.soa.clone());
                return Some(resolution);
            }
            for data in rdata {
                if let RData::SRV(srv) = &data {
                    self.add_target_addresses(&srv.target, &mut resolution.additionals);
                }
                if let RData::NS(ns) = &data {
                    self.add_target_addresses(&ns.0, &mut resolution.additionals);
                }
                resolution.answers.push(record(&owner, data));
            }
            return Some(resolution);
        }
        // A loop of in-zone CNAMEs: what was followed so far, as a resolver would see it.
        Some(resolution)
    }

    fn lookup(&self, name: &Name) -> Option<Cow<'_, Node>> {
        if let Some(node) = self.nodes.get(key_of(name).as_slice()) {
            return Some(Cow::Borrowed(node));
        }
        self.pod_node(name).map(Cow::Owned)
    }

    /// `a-b-c-d.ns.pod.<domain>` (and `ns.pod.<domain>`, an empty non-terminal): answered for
    /// any address-shaped name in any namespace, as CoreDNS's `pods insecure`. The zone does not
    /// watch Namespaces, so it cannot tell a namespace that does not exist.
    fn pod_node(&self, name: &Name) -> Option<Node> {
        let extra =
            usize::from(name.num_labels()).saturating_sub(usize::from(self.domain.0.num_labels()));
        let labels: Vec<&[u8]> = name.iter().take(extra).collect();
        match labels.as_slice() {
            [namespace, pod] if pod.eq_ignore_ascii_case(b"pod") && is_label_bytes(namespace) => {
                Some(Node::default())
            }
            [dashed, namespace, pod]
                if pod.eq_ignore_ascii_case(b"pod") && is_label_bytes(namespace) =>
            {
                let address = parse_dashed_ip(dashed)?;
                Some(Node {
                    addresses: vec![address],
                    ..Node::default()
                })
            }
            _ => None,
        }
    }

    fn add_target_addresses(&self, target: &Name, additionals: &mut Vec<Record>) {
        if let Some(node) = self.nodes.get(key_of(target).as_slice()) {
            for address in &node.addresses {
                additionals.push(record(target, address_rdata(*address)));
            }
        }
    }

    /// PTR answers for the reverse names of addresses the zone knows. Any other reverse name
    /// (or another type) falls through to the upstream, as the kubeadm Corefile's
    /// `fallthrough in-addr.arpa ip6.arpa` does.
    fn resolve_reverse(&self, name: &Name, query_type: RecordType) -> Option<Resolution> {
        if query_type != RecordType::PTR || !self.synced {
            return None;
        }
        let net = name.parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let targets = self.reverse.get(&net.addr())?;
        Some(Resolution {
            authoritative: true,
            answers: targets
                .iter()
                .map(|target| record(name, RData::PTR(PTR(target.clone()))))
                .collect(),
            ..Resolution::default()
        })
    }
}

/// A name as the zone's map keys it: its labels from the leaf up, each as its length and its
/// lower-cased bytes (the wire format without the root's zero). One hash covers the whole
/// name, and a label holding a dot stays distinct from two labels.
type Key = Box<[u8]>;

/// The key of `name`.
fn key_of(name: &Name) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    for label in name.iter() {
        // Labels are at most 63 bytes: hickory refuses longer ones.
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key
}

/// The key of `label` under the name keyed `parent`; `label` is 1 to 63 bytes.
fn child_key(parent: &[u8], label: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + label.len() + parent.len());
    key.push(label.len() as u8);
    key.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    key.extend_from_slice(parent);
    key
}

/// The key of the parent of the name keyed `key`; None for the root.
fn parent_key(key: &[u8]) -> Option<&[u8]> {
    let length = usize::from(*key.first()?);
    key.get(1 + length..)
}

/// Collects names and records, then adds the empty non-terminals and shares out SRV weights.
struct Builder {
    domain: ClusterDomain,
    origin_key: Vec<u8>,
    svc: Name,
    svc_key: Vec<u8>,
    nodes: HashMap<Key, Node>,
    reverse: HashMap<IpAddr, Vec<Name>>,
    dns_name: Option<Name>,
}

impl Builder {
    fn new(domain: &ClusterDomain) -> Self {
        let origin = domain.0.clone();
        let origin_key = key_of(&origin);
        let svc = child(&origin, "svc").unwrap_or_else(|| origin.clone());
        let svc_key = child_key(&origin_key, "svc");
        let mut nodes = HashMap::new();
        nodes.insert(origin_key.clone().into_boxed_slice(), Node::default());
        Builder {
            domain: domain.clone(),
            origin_key,
            svc,
            svc_key,
            nodes,
            reverse: HashMap::new(),
            dns_name: child(&origin, "dns").and_then(|dns| child(&dns, "ns")),
        }
    }

    fn node(&mut self, key: Vec<u8>) -> &mut Node {
        self.nodes.entry(key.into_boxed_slice()).or_default()
    }

    fn add_service(
        &mut self,
        namespace: &str,
        name: &str,
        service: &Service,
        endpoints: Option<&Endpoints>,
    ) {
        if !is_dns_label(namespace) || !is_dns_label(name) {
            return;
        }
        let Some(service_name) = child(&self.svc, namespace).and_then(|ns| child(&ns, name)) else {
            return;
        };
        let namespace_key = child_key(&self.svc_key, namespace);
        let service_key = child_key(&namespace_key, name);
        // The namespace exists as soon as one Service lives in it.
        self.node(namespace_key);
        let Some(spec) = service.spec.as_ref() else {
            return;
        };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let mut service_node = Node::default();

        if spec.type_.as_deref() == Some("ExternalName") {
            // An ExternalName that is an IP address gets no record (CoreDNS: only host names
            // become CNAMEs).
            let Some(target) = spec.external_name.as_deref().and_then(external_target) else {
                return;
            };
            for port in ports {
                let (Some(port_name), Ok(port_number)) =
                    (port.name.as_deref(), u16::try_from(port.port))
                else {
                    continue;
                };
                if let Some(srv_key) = srv_key(&service_key, port_name, port.protocol.as_deref()) {
                    self.node(srv_key)
                        .srv
                        .push(SRV::new(0, 0, port_number, target.clone()));
                }
            }
            service_node.cname = Some(target);
            self.merge(service_key, service_node);
            return;
        }

        let headless = spec.cluster_ip.as_deref() == Some("None");
        let endpoint_addresses = endpoints
            .map(|ep| ready_addresses(ep, spec.publish_not_ready_addresses == Some(true)))
            .unwrap_or_default();

        // Endpoint names, `hostname.svc.ns.svc` or the dashed address, exist for every Service
        // with endpoints (CoreDNS answers them for ClusterIP Services too).
        let mut named_endpoints = Vec::with_capacity(endpoint_addresses.len());
        for (address, ip, subset_ports) in &endpoint_addresses {
            let label = match address.hostname.as_deref() {
                Some(hostname) if is_dns_label(hostname) => hostname.to_string(),
                _ => dashed_ip(*ip),
            };
            let Some(endpoint_name) = child(&service_name, &label) else {
                continue;
            };
            self.node(child_key(&service_key, &label))
                .addresses
                .push(*ip);
            named_endpoints.push((endpoint_name, *ip, *subset_ports));
        }

        if headless {
            if named_endpoints.is_empty() {
                // A headless Service without ready endpoints has no name: NXDOMAIN, as CoreDNS
                // and kube-dns answer (kubernetes/dns#234).
                return;
            }
            for (endpoint_name, ip, subset_ports) in named_endpoints {
                service_node.addresses.push(ip);
                for port in subset_ports {
                    let Ok(port_number) = u16::try_from(port.port) else {
                        continue;
                    };
                    let srv = SRV::new(0, 0, port_number, endpoint_name.clone());
                    if let Some(port_name) = port.name.as_deref() {
                        if let Some(srv_key) =
                            srv_key(&service_key, port_name, port.protocol.as_deref())
                        {
                            self.node(srv_key).srv.push(srv.clone());
                        }
                    }
                    service_node.srv.push(srv);
                }
                self.reverse.entry(ip).or_default().push(endpoint_name);
            }
            self.merge(service_key, service_node);
            return;
        }

        let cluster_ips = cluster_ips(spec);
        service_node.addresses.extend(cluster_ips.iter().copied());
        for ip in &cluster_ips {
            self.reverse
                .entry(*ip)
                .or_default()
                .push(service_name.clone());
        }
        if namespace == "kube-system" && name == "kube-dns" {
            if let Some(dns_name) = &self.dns_name {
                let dns_key = key_of(dns_name);
                self.node(dns_key)
                    .addresses
                    .extend(cluster_ips.iter().copied());
            }
        }
        for port in ports {
            let Ok(port_number) = u16::try_from(port.port) else {
                continue;
            };
            let srv = SRV::new(0, 0, port_number, service_name.clone());
            if let Some(port_name) = port.name.as_deref() {
                if let Some(srv_key) = srv_key(&service_key, port_name, port.protocol.as_deref()) {
                    self.node(srv_key).srv.push(srv.clone());
                }
            }
            service_node.srv.push(srv);
        }
        self.merge(service_key, service_node);
    }

    /// Adds `node`'s records to the name keyed `key`.
    fn merge(&mut self, key: Vec<u8>, node: Node) {
        let existing = self.node(key);
        existing.addresses.extend(node.addresses);
        existing.srv.extend(node.srv);
        existing.other.extend(node.other);
        if node.cname.is_some() {
            existing.cname = node.cname;
        }
    }

    fn finish(mut self, synced: bool, serial: u32) -> Zone {
        let origin = self.domain.0.clone();
        let origin_key = self.origin_key.clone();
        let mailbox = child(&origin, "hostmaster").unwrap_or_else(|| origin.clone());
        let ns_name = self.dns_name.clone().unwrap_or_else(|| origin.clone());
        // CoreDNS's SOA for the cluster zone: refresh 7200, retry 1800, expire 86400, and the
        // negative-caching TTL equal to the records' TTL.
        let soa = SOA::new(ns_name.clone(), mailbox, serial, 7200, 1800, 86400, TTL);
        let soa = record(&origin, RData::SOA(soa));
        {
            let apex = self.node(origin_key.clone());
            apex.other.push(soa.data.clone());
            apex.other.push(RData::NS(NS(ns_name.clone())));
        }
        self.node(key_of(&ns_name));
        self.node(child_key(&origin_key, "dns-version"))
            .other
            .push(RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])));
        self.node(child_key(&origin_key, "pod"));
        self.node(self.svc_key.clone());

        // Empty non-terminals: every ancestor of a name exists (NODATA, not NXDOMAIN).
        let mut ancestors: Vec<Key> = Vec::new();
        for key in self.nodes.keys() {
            let mut current: &[u8] = key;
            while let Some(parent) = parent_key(current) {
                if parent.len() <= origin_key.len() || self.nodes.contains_key(parent) {
                    break;
                }
                ancestors.push(parent.into());
                current = parent;
            }
        }
        for key in ancestors {
            self.nodes.entry(key).or_default();
        }

        for node in self.nodes.values_mut() {
            node.addresses.sort_unstable();
            node.addresses.dedup();
            if !node.srv.is_empty() {
                node.srv.sort_by(|a, b| {
                    (&a.target, a.port, a.priority).cmp(&(&b.target, b.port, b.priority))
                });
                node.srv.dedup();
                // One priority, so the weight is shared out evenly as CoreDNS does.
                let weight = u16::try_from((100 / node.srv.len()).max(1)).unwrap_or(1);
                for srv in &mut node.srv {
                    srv.weight = weight;
                }
            }
        }
        for targets in self.reverse.values_mut() {
            targets.sort();
            targets.dedup();
        }

        Zone {
            domain: self.domain,
            synced,
            nodes: self.nodes,
            reverse: self.reverse,
            soa,
        }
    }
}

/// The addresses of `endpoints` a name should carry: the ready ones, and the not-ready ones
/// too when the Service publishes them. With the ports of the subset each address is in.
fn ready_addresses(
    endpoints: &Endpoints,
    publish_not_ready: bool,
) -> Vec<(
    &EndpointAddress,
    IpAddr,
    &[k8s_openapi::api::core::v1::EndpointPort],
)> {
    let mut out = Vec::new();
    for subset in endpoints.subsets.as_deref().unwrap_or_default() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let ready = subset.addresses.as_deref().unwrap_or_default().iter();
        let not_ready = subset
            .not_ready_addresses
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|_| publish_not_ready);
        for address in ready.chain(not_ready) {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                out.push((address, ip, ports));
            }
        }
    }
    out
}

/// A Service's ClusterIPs (`spec.clusterIPs`, else `spec.clusterIP`), without `None` and
/// anything that is not an address.
fn cluster_ips(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<IpAddr> {
    let listed = spec.cluster_ips.as_deref().unwrap_or_default();
    let ips: Vec<IpAddr> = listed.iter().filter_map(|ip| ip.parse().ok()).collect();
    if !ips.is_empty() {
        return ips;
    }
    spec.cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .into_iter()
        .collect()
}

/// The key of `_port._proto.<service>`, the SRV owner of a named port (protocol TCP when
/// unset); None when the port or protocol cannot be a label.
fn srv_key(service_key: &[u8], port_name: &str, protocol: Option<&str>) -> Option<Vec<u8>> {
    let protocol = protocol.unwrap_or("TCP");
    let fits =
        |label: &str| !label.is_empty() && label.len() < 63 && is_label_bytes(label.as_bytes());
    if !fits(port_name) || !fits(protocol) {
        return None;
    }
    let with_protocol = child_key(service_key, &format!("_{protocol}"));
    Some(child_key(&with_protocol, &format!("_{port_name}")))
}

/// The target of an ExternalName Service as a fully qualified name; None for an address or a
/// name that cannot be one.
fn external_target(external_name: &str) -> Option<Name> {
    let trimmed = external_name.strip_suffix('.').unwrap_or(external_name);
    if trimmed.is_empty() || trimmed.parse::<IpAddr>().is_ok() {
        return None;
    }
    let mut name = Name::from_ascii(trimmed).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// An address with its separators turned into dashes, as endpoint and pod names spell it:
/// `10-244-0-5`, `fd00--1`.
pub(crate) fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The address a dashed pod label spells; IPv4 when it has exactly three single dashes, else
/// IPv6 (as CoreDNS reads it).
fn parse_dashed_ip(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    let dashes = text.bytes().filter(|b| *b == b'-').count();
    if dashes == 3 && !text.contains("--") {
        return text
            .replace('-', ".")
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4);
    }
    text.replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

fn address_rdata(address: IpAddr) -> RData {
    match address {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

fn record(owner: &Name, rdata: RData) -> Record {
    Record::from_rdata(owner.clone(), TTL, rdata)
}

fn child(parent: &Name, label: &str) -> Option<Name> {
    parent.prepend_label(label.as_bytes()).ok()
}

fn resource_version(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace, Service name or hostname.
fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A label of a query that may name a namespace or a protocol (any case).
fn is_label_bytes(label: &[u8]) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}
