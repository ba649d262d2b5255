//! Cluster IPs and node ports of Services, allocated by the API server as Kubernetes' service
//! registry does. ClusterIPs come from the service CIDR (`--service-cidr`): by default a
//! loopback range ([`loopback_service_cidr`], `127.96.0.0/16`) that every host can listen on;
//! a routable one (Kubernetes' `10.96.0.0/12`) when pods run in network namespaces of their
//! own. Node ports come from 30000–32767.
//!
//! There is no allocation table: what is taken is read from the stored Services each time, so
//! a restart can never hand out an address twice and a delete releases at once. Every write
//! that may allocate holds one lock from reading what is taken until its own write is stored,
//! so two concurrent creates cannot pick the same value. Free values are picked at random (as
//! Kubernetes does), which also keeps two clusters on one host from choosing the same ones.
//! A Service whose address lies outside the range (the range changed since) keeps it: updates
//! leave an address a Service holds alone, and `outside_range` finds them for a warning at start.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use minik_api::cidr::Cidr;
use minik_api::resources::ResourceInfo;
use minik_api::validation::NODE_PORT_RANGE;
use minik_api::{ApiError, FieldError, FieldPath};
use minik_store::Store;
use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

use crate::errors::store_error;

/// The service CIDR unless configured: `127.96.0.0/16`, loopback addresses that every node can
/// listen on without touching its network (the user-space proxy, nodes without root).
pub fn loopback_service_cidr() -> Cidr {
    Cidr::new(Ipv4Addr::new(127, 96, 0, 0), 16).expect("16 is a prefix length")
}

/// The prefix lengths a service CIDR may have: at most Kubernetes' `/12` (kube-apiserver
/// refuses larger ranges), at least `/28` (14 addresses: the `kubernetes` Service, the
/// `kube-dns` Service on the 10th, and a few more).
pub(crate) const SERVICE_CIDR_PREFIXES: RangeInclusive<u8> = 12..=28;

/// Checks a service CIDR's size: a prefix from /12 to /28 (`SERVICE_CIDR_PREFIXES`); the
/// error says what is allowed.
pub fn check_service_cidr(range: Cidr) -> Result<(), String> {
    if SERVICE_CIDR_PREFIXES.contains(&range.prefix()) {
        Ok(())
    } else {
        Err(format!(
            "the service CIDR {range} must have a prefix length from /{} ({} addresses) to /{} ({} addresses)",
            SERVICE_CIDR_PREFIXES.start(),
            1u64 << (32 - u32::from(*SERVICE_CIDR_PREFIXES.start())),
            SERVICE_CIDR_PREFIXES.end(),
            1u64 << (32 - u32::from(*SERVICE_CIDR_PREFIXES.end())),
        ))
    }
}

/// The `n`th host address of `range` (the first is the one after the network address:
/// `10.96.0.1` for `n = 1`), if the range has that many besides its broadcast address.
pub(crate) fn host_address(range: Cidr, n: u32) -> Option<Ipv4Addr> {
    let (first, last) = host_bounds(range)?;
    let address = first.checked_add(n.checked_sub(1)?)?;
    (address <= last).then(|| Ipv4Addr::from(address))
}

/// The first and last address handed out: the range without its network and broadcast
/// addresses; `None` for a range without host addresses (a /31 or /32).
fn host_bounds(range: Cidr) -> Option<(u32, u32)> {
    (range.prefix() <= 30).then(|| {
        (
            u32::from(range.network()) + 1,
            u32::from(range.broadcast()) - 1,
        )
    })
}

fn in_range(range: Cidr, ip: Ipv4Addr) -> bool {
    host_bounds(range).is_some_and(|(first, last)| (first..=last).contains(&u32::from(ip)))
}

/// The ClusterIPs of `service` (`spec.clusterIPs`, and `spec.clusterIP`) that are not host
/// addresses of `range`, as written; `None` (headless) is no address.
pub(crate) fn outside_range(service: &Value, range: Cidr) -> Vec<String> {
    let mut outside: Vec<String> = Vec::new();
    for ip in service
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(service.pointer("/spec/clusterIP"))
        .filter_map(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "None")
    {
        let inside = ip.parse::<Ipv4Addr>().is_ok_and(|ip| in_range(range, ip));
        if !inside && !outside.iter().any(|o| o == ip) {
            outside.push(ip.to_owned());
        }
    }
    outside
}

/// Serializes the writes of Services that may allocate (see the module documentation).
pub(crate) struct Allocator {
    store: Arc<dyn Store>,
    /// The service CIDR ClusterIPs come from.
    range: Cidr,
    lock: Mutex<()>,
}

/// What other Services hold.
#[derive(Debug, Default)]
pub(crate) struct InUse {
    ips: HashSet<Ipv4Addr>,
    node_ports: HashSet<i32>,
}

/// An allocation under way: holds the lock until dropped, which must be after the write.
pub(crate) struct Allocation<'a> {
    in_use: InUse,
    range: Cidr,
    _guard: MutexGuard<'a, ()>,
}

impl Allocator {
    pub(crate) fn new(store: Arc<dyn Store>, range: Cidr) -> Self {
        Allocator {
            store,
            range,
            lock: Mutex::new(()),
        }
    }

    /// The service CIDR ClusterIPs come from.
    pub(crate) fn range(&self) -> Cidr {
        self.range
    }

    /// Takes the lock and reads what every stored object of `info` (the Services) but
    /// `ns/name` holds.
    pub(crate) async fn begin(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Result<Allocation<'_>, ApiError> {
        let guard = self.lock.lock().await;
        let listing = self
            .store
            .list(&info.prefix(None))
            .await
            .map_err(|e| store_error(info, "", e))?;
        let mut in_use = InUse::default();
        for item in listing.items {
            let Ok(service) = serde_json::from_slice::<Value>(&item.value) else {
                continue;
            };
            let same = name.is_some()
                && service.pointer("/metadata/name").and_then(Value::as_str) == name
                && service
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == ns;
            if !same {
                in_use.add(&service);
            }
        }
        Ok(Allocation {
            in_use,
            range: self.range,
            _guard: guard,
        })
    }
}

impl<'a> Allocation<'a> {
    /// Fills in and checks the cluster IP and node ports of an admitted Service (see
    /// [`assign`]); `old` is the stored version on an update.
    pub(crate) fn assign(&self, service: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        assign(service, old, &self.in_use, self.range, &mut random_u32)
    }
}

impl InUse {
    fn add(&mut self, service: &Value) {
        for ip in service
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(service.pointer("/spec/clusterIP"))
        {
            if let Some(ip) = ip.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                self.ips.insert(ip);
            }
        }
        for p in ports(service) {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                self.node_ports.insert(n as i32);
            }
        }
    }
}

fn ports(service: &Value) -> impl Iterator<Item = &Value> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn random_u32() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn invalid(service: &Value, errors: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: service
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into(),
        errors,
    }
}

/// Picks a value of `first..=last` that `taken` does not hold, starting at a random point.
fn pick(
    first: u32,
    last: u32,
    taken: impl Fn(u32) -> bool,
    random: &mut dyn FnMut() -> u32,
) -> Option<u32> {
    let size = last - first + 1;
    let start = random() % size;
    (0..size)
        .map(|i| first + (start + i) % size)
        .find(|v| !taken(*v))
}

/// Fills in the cluster IP and node ports a Service needs and checks the ones it asks for.
///
/// - A Service of type ClusterIP, NodePort or LoadBalancer without a cluster IP gets a free one
///   of `range` (the service CIDR); `None` (headless) gets none; a requested one must be in the
///   range and free, or the write is refused at `spec.clusterIPs[0]`.
/// - A NodePort Service, or a LoadBalancer one that does not turn node ports off, gets a free
///   node port for each port without one; a requested one must be free, or the write is refused
///   at `spec.ports[i].nodePort`.
///
/// What the stored version `old` already holds stays its own.
pub(crate) fn assign(
    service: &mut Value,
    old: Option<&Value>,
    in_use: &InUse,
    range: Cidr,
    random: &mut dyn FnMut() -> u32,
) -> Result<(), ApiError> {
    let type_ = service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    let mut errors = Vec::new();
    if matches!(type_.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        let requested = service
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let path = FieldPath::new("spec").child("clusterIPs").index(0);
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str);
        if requested.is_empty() {
            let ip = host_bounds(range)
                .and_then(|(first, last)| {
                    pick(
                        first,
                        last,
                        |v| in_use.ips.contains(&Ipv4Addr::from(v)),
                        random,
                    )
                })
                .map(Ipv4Addr::from)
                .ok_or_else(|| {
                    ApiError::Internal("failed to allocate a serviceIP: range is full".into())
                })?;
            service["spec"]["clusterIP"] = json!(ip.to_string());
            service["spec"]["clusterIPs"] = json!([ip.to_string()]);
        } else if requested != "None" && old_ip != Some(requested.as_str()) {
            match requested.parse::<Ipv4Addr>() {
                Ok(ip) if !in_range(range, ip) => errors.push(FieldError::invalid(
                    &path,
                    requested.as_str(),
                    format!(
                        "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {range}"
                    ),
                )),
                Ok(ip) if in_use.ips.contains(&ip) => errors.push(FieldError::invalid(
                    &path,
                    requested.as_str(),
                    format!("failed to allocate IP {requested}: provided IP is already allocated"),
                )),
                Ok(_) => {}
                // Validation accepts IPv6 addresses; minik's range is IPv4 only.
                Err(_) => errors.push(FieldError::invalid(
                    &path,
                    requested.as_str(),
                    format!(
                        "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {range}"
                    ),
                )),
            }
        }
    }

    let wants_node_ports = type_ == "NodePort"
        || (type_ == "LoadBalancer"
            && service.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false)));
    if wants_node_ports {
        let old_ports: HashSet<i32> = old
            .map(|o| {
                ports(o)
                    .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                    .map(|n| n as i32)
                    .collect()
            })
            .unwrap_or_default();
        let mut mine: HashSet<i32> = HashSet::new();
        let count = ports(service).count();
        for i in 0..count {
            let requested = service["spec"]["ports"][i]
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0)
                .map(|n| n as i32);
            let path = FieldPath::new("spec")
                .child("ports")
                .index(i)
                .child("nodePort");
            match requested {
                Some(n) if !NODE_PORT_RANGE.contains(&n) => errors.push(FieldError::invalid(
                    &path,
                    n,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                )),
                Some(n) if in_use.node_ports.contains(&n) && !old_ports.contains(&n) => errors
                    .push(FieldError::invalid(
                        &path,
                        n,
                        "provided port is already allocated",
                    )),
                Some(n) => {
                    mine.insert(n);
                }
                None => {}
            }
        }
        for i in 0..count {
            let unset = service["spec"]["ports"][i]
                .get("nodePort")
                .and_then(Value::as_i64)
                .is_none_or(|n| n == 0);
            if !unset {
                continue;
            }
            let first = *NODE_PORT_RANGE.start() as u32;
            let last = *NODE_PORT_RANGE.end() as u32;
            let n = pick(
                first,
                last,
                |v| in_use.node_ports.contains(&(v as i32)) || mine.contains(&(v as i32)),
                random,
            )
            .ok_or_else(|| {
                ApiError::Internal("failed to allocate a nodePort: range is full".into())
            })? as i32;
            mine.insert(n);
            service["spec"]["ports"][i]["nodePort"] = json!(n);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(service, errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn loopback() -> Cidr {
        loopback_service_cidr()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn counter() -> impl FnMut() -> u32 {
        let mut n = 0;
        move || {
            n += 1;
            n - 1
        }
    }

    fn messages(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Invalid { errors, .. } => errors.iter().map(|e| e.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn cluster_ips_are_allocated_from_the_loopback_range_and_never_twice() {
        let mut in_use = InUse::default();
        let mut random = || 0;
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let mut svc = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
            assign(&mut svc, None, &in_use, loopback(), &mut random).unwrap();
            let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert_eq!(svc["spec"]["clusterIPs"], json!([ip.to_string()]));
            assert!(in_range(loopback(), ip), "{ip}");
            assert!(seen.insert(ip), "{ip} handed out twice");
            in_use.add(&svc);
        }
        assert!(seen.contains(&Ipv4Addr::new(127, 96, 0, 1)));
        assert!(!seen.contains(&Ipv4Addr::new(127, 96, 0, 0)));
    }

    #[test]
    fn headless_services_get_no_ip_and_external_names_nothing() {
        let in_use = InUse::default();
        let mut svc =
            service(json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}));
        assign(&mut svc, None, &in_use, loopback(), &mut counter()).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "None");
        let mut svc = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        assign(&mut svc, None, &in_use, loopback(), &mut counter()).unwrap();
        assert_eq!(svc["spec"].get("clusterIP"), None);
    }

    #[test]
    fn requested_ips_are_honoured_or_refused_with_kubernetes_wording() {
        let mut in_use = InUse::default();
        in_use.add(&service(
            json!({"clusterIP": "127.96.0.10", "clusterIPs": ["127.96.0.10"]}),
        ));
        let mut svc = service(json!({"type": "ClusterIP", "clusterIP": "127.96.3.3"}));
        assign(&mut svc, None, &in_use, loopback(), &mut counter()).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "127.96.3.3");

        let mut taken = service(json!({"type": "ClusterIP", "clusterIP": "127.96.0.10"}));
        let e = assign(&mut taken, None, &in_use, loopback(), &mut counter()).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            messages(e),
            ["spec.clusterIPs[0]: Invalid value: \"127.96.0.10\": failed to allocate IP 127.96.0.10: provided IP is already allocated"]
        );
        for outside in ["10.96.0.1", "127.96.0.0", "127.96.255.255", "fd00::1"] {
            let mut svc = service(json!({"type": "ClusterIP", "clusterIP": outside}));
            let e = assign(&mut svc, None, &in_use, loopback(), &mut counter()).unwrap_err();
            assert_eq!(
                messages(e),
                [format!("spec.clusterIPs[0]: Invalid value: \"{outside}\": failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid range. The range of valid IPs is 127.96.0.0/16")]
            );
        }
        // An update keeps the service's own address.
        let old = service(json!({"clusterIP": "127.96.0.10"}));
        assign(&mut taken, Some(&old), &in_use, loopback(), &mut counter()).unwrap();
    }

    #[test]
    fn node_ports_are_allocated_honoured_or_refused() {
        let mut in_use = InUse::default();
        in_use.add(&service(
            json!({"ports": [{"port": 80, "nodePort": 30080}]}),
        ));
        let mut svc = service(
            json!({"type": "NodePort", "clusterIP": "127.96.0.2", "ports": [
                {"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 31000}, {"name": "c", "port": 82}
            ]}),
        );
        // The random source keeps pointing at 30080 and 30000: both must be skipped.
        let mut random = || 80;
        assign(&mut svc, None, &in_use, loopback(), &mut random).unwrap();
        let given: Vec<i64> = ports(&svc)
            .map(|p| p["nodePort"].as_i64().unwrap())
            .collect();
        assert_eq!(given, [30081, 31000, 30082]);

        let mut clash = service(
            json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30080}]}),
        );
        let e = assign(&mut clash, None, &in_use, loopback(), &mut counter()).unwrap_err();
        assert_eq!(
            messages(e),
            ["spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"]
        );
        let mut outside =
            service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}));
        let e = assign(&mut outside, None, &in_use, loopback(), &mut counter()).unwrap_err();
        assert_eq!(
            messages(e),
            ["spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"]
        );
        // Its own node port stays its own on update.
        let old = service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        let mut same = old.clone();
        assign(&mut same, Some(&old), &in_use, loopback(), &mut counter()).unwrap();

        // LoadBalancers get node ports unless they turn them off; ClusterIP services none.
        let mut lb = service(json!({"type": "LoadBalancer", "ports": [{"port": 80}]}));
        assign(&mut lb, None, &in_use, loopback(), &mut counter()).unwrap();
        assert!(lb["spec"]["ports"][0]["nodePort"].as_i64().is_some());
        let mut lb = service(
            json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}),
        );
        assign(&mut lb, None, &in_use, loopback(), &mut counter()).unwrap();
        assert_eq!(lb["spec"]["ports"][0].get("nodePort"), None);
        let mut plain = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        assign(&mut plain, None, &in_use, loopback(), &mut counter()).unwrap();
        assert_eq!(plain["spec"]["ports"][0].get("nodePort"), None);
    }

    #[test]
    fn a_full_range_is_an_internal_error() {
        let mut in_use = InUse::default();
        for n in NODE_PORT_RANGE {
            in_use.node_ports.insert(n);
        }
        let mut svc = service(
            json!({"type": "NodePort", "clusterIP": "127.96.0.2", "ports": [{"port": 80}]}),
        );
        let e = assign(&mut svc, None, &in_use, loopback(), &mut counter()).unwrap_err();
        assert_eq!(e.code(), 500);
        assert!(e.to_string().contains("range is full"), "{e}");
    }

    #[test]
    fn cluster_ips_come_from_the_configured_range_with_its_wording() {
        let range = cidr("10.96.0.0/12");
        let mut in_use = InUse::default();
        in_use.add(&service(
            json!({"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"]}),
        ));
        // Always starting at the first: the taken 10.96.0.1 is skipped.
        let mut first = || 0;
        let mut svc = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        assign(&mut svc, None, &in_use, range, &mut first).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.2");
        // The last random value lands on the last host address, never the broadcast one.
        let mut last = || u32::MAX;
        let mut svc = service(json!({"type": "ClusterIP"}));
        assign(&mut svc, None, &in_use, range, &mut last).unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(in_range(range, ip), "{ip}");

        let mut requested = service(json!({"type": "ClusterIP", "clusterIP": "10.96.0.10"}));
        assign(&mut requested, None, &in_use, range, &mut counter()).unwrap();
        assert_eq!(requested["spec"]["clusterIP"], "10.96.0.10");
        for outside in ["127.96.0.1", "10.95.255.254", "10.96.0.0", "10.111.255.255"] {
            let mut svc = service(json!({"type": "ClusterIP", "clusterIP": outside}));
            let e = assign(&mut svc, None, &in_use, range, &mut counter()).unwrap_err();
            assert_eq!(
                messages(e),
                [format!("spec.clusterIPs[0]: Invalid value: \"{outside}\": failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid range. The range of valid IPs is 10.96.0.0/12")]
            );
        }
        for inside in ["10.96.0.11", "10.111.255.254"] {
            let mut svc = service(json!({"type": "ClusterIP", "clusterIP": inside}));
            assign(&mut svc, None, &in_use, range, &mut counter()).unwrap();
        }
    }

    #[test]
    fn a_service_keeps_an_address_from_an_older_range() {
        let range = cidr("10.96.0.0/12");
        let old = service(
            json!({"type": "ClusterIP", "clusterIP": "127.96.0.7", "clusterIPs": ["127.96.0.7"]}),
        );
        let mut updated = old.clone();
        updated["metadata"]["labels"] = json!({"changed": "yes"});
        assign(
            &mut updated,
            Some(&old),
            &InUse::default(),
            range,
            &mut counter(),
        )
        .unwrap();
        assert_eq!(updated["spec"]["clusterIP"], "127.96.0.7");
        assert_eq!(outside_range(&updated, range), ["127.96.0.7"]);
        assert!(outside_range(&updated, loopback()).is_empty());
        let headless = service(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
        assert!(outside_range(&headless, range).is_empty());
        let external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert!(outside_range(&external, range).is_empty());
        let v6 = service(json!({"clusterIP": "fd00::1", "clusterIPs": ["fd00::1"]}));
        assert_eq!(outside_range(&v6, range), ["fd00::1"]);
    }

    #[test]
    fn the_first_and_tenth_addresses_of_a_range() {
        for (range, first, tenth) in [
            ("10.96.0.0/12", "10.96.0.1", "10.96.0.10"),
            ("127.96.0.0/16", "127.96.0.1", "127.96.0.10"),
            ("192.168.7.16/28", "192.168.7.17", "192.168.7.26"),
        ] {
            let range = cidr(range);
            assert_eq!(host_address(range, 1), Some(first.parse().unwrap()));
            assert_eq!(host_address(range, 10), Some(tenth.parse().unwrap()));
        }
        assert_eq!(loopback_service_cidr(), cidr("127.96.0.0/16"));
        // A /28 has 14 host addresses; there is no 15th, nor a 0th.
        let small = cidr("192.168.7.16/28");
        assert_eq!(
            host_address(small, 14),
            Some(Ipv4Addr::new(192, 168, 7, 30))
        );
        assert_eq!(host_address(small, 15), None);
        assert_eq!(host_address(small, 0), None);
        assert_eq!(host_address(cidr("10.0.0.0/31"), 1), None);
    }

    #[test]
    fn service_cidrs_from_a_12_to_a_28_are_accepted() {
        for ok in ["10.96.0.0/12", "127.96.0.0/16", "10.0.0.0/28"] {
            assert_eq!(check_service_cidr(cidr(ok)), Ok(()), "{ok}");
        }
        assert_eq!(
            check_service_cidr(cidr("10.0.0.0/8")).unwrap_err(),
            "the service CIDR 10.0.0.0/8 must have a prefix length from /12 (1048576 addresses) to /28 (16 addresses)"
        );
        assert!(check_service_cidr(cidr("10.0.0.0/29")).is_err());
    }

    #[test]
    fn a_range_without_host_addresses_is_full() {
        let mut svc = service(json!({"type": "ClusterIP"}));
        let e = assign(
            &mut svc,
            None,
            &InUse::default(),
            cidr("10.0.0.0/31"),
            &mut counter(),
        )
        .unwrap_err();
        assert_eq!(e.code(), 500);
        let mut svc = service(json!({"type": "ClusterIP", "clusterIP": "10.0.0.1"}));
        assert!(assign(
            &mut svc,
            None,
            &InUse::default(),
            cidr("10.0.0.0/31"),
            &mut counter()
        )
        .is_err());
    }
}
