//! The nftables mode of the Service proxy: instead of listening, the agent programs the
//! kernel to rewrite the destination of each new connection to a Service address (DNAT) to one
//! of its ready endpoints, as kube-proxy's nftables mode does (its chains, maps and rules are
//! the model here). The bytes then never go through a user-space process.
//!
//! Each agent owns one table, `ip minik-NODE`, rendered whole from the Services and Endpoints
//! (a pure function, [`render`]) and applied in one `nft -f -` transaction whenever the
//! rendering changes: the first time replacing whatever the table held, afterwards updating
//! the table the last transaction left, so that the clients remembered for session affinity
//! stay ([`Ruleset::updating`]). Several agents on one host keep tables of their own (the
//! first one's DNAT wins, they say the same). In the table:
//!
//! - `nat-prerouting` (connections from pods, whose packets arrive on the pod network's
//!   bridge, and from other hosts) and `nat-output` (the node's own processes), both at the
//!   DNAT priority (-100), look the destination up in `service-ips` (`address . protocol .
//!   port`: ClusterIPs, and LoadBalancer ports on the node address) and, for any local address,
//!   in `service-nodeports` (`protocol . port`);
//! - a ClusterIP goes to `svc-NS/NAME/PORT` (or `local-…` under `internalTrafficPolicy:
//!   Local`: this node's endpoints only, judged by the Endpoints' `nodeName`); a node port or
//!   LoadBalancer address goes to `ext-…`, which marks the connection for masquerade (so that
//!   if its endpoint is on another host the answers come back through this one) and goes on to
//!   `svc-…`, or under `externalTrafficPolicy: Local` keeps the client's address and goes to
//!   `local-…`, except for the node's own connections and, when the cluster CIDR is known, the
//!   pods' (as kube-proxy: they go to `svc-…`, as they would through an outside balancer);
//! - `svc-…` and `local-…` spread new connections over their endpoints in turn (`numgen inc`)
//!   or, under `sessionAffinity: ClientIP`, first send a client that an endpoint's set
//!   `affinity-…` remembers (for `timeoutSeconds` after its last new connection) back to it;
//! - each endpoint's chain `ep-…` marks for masquerade a connection whose client is the
//!   endpoint itself (hairpin: a pod reaching itself through its Service, whose answer must come
//!   back through the node to be un-translated), records the client in the affinity set, and
//!   DNATs;
//! - with the cluster CIDR known (the pod network is on), a connection to a ClusterIP from
//!   outside it (the node itself, another host) is marked for masquerade too, as kube-proxy's
//!   with a local traffic detector; pod-to-Service traffic keeps the pod's address;
//! - a Service address without endpoints is in `no-endpoint-ips` / `no-endpoint-nodeports`,
//!   which `filter-output` (before the DNAT) and `filter-input` and `filter-forward` (after the
//!   prerouting DNAT: only what was not translated) check for new connections: refused (a TCP
//!   reset, an ICMP port unreachable for the others) when the Service has no ready endpoint,
//!   dropped when a `Local` policy leaves none on this node.
//!
//! A local client's connection to a loopback ClusterIP (the process runtime's) has a loopback
//! source. When the DNAT sends it to an endpoint on another host, the kernel only lets it
//! leave with `net.ipv4.conf.all.route_localnet=1` ([`ensure_route_localnet`], as kube-proxy's
//! iptables mode does for its localhost node ports), and `nat-postrouting` masquerades it, so
//! that it leaves with the outgoing interface's address and the answers come back here (where
//! they are un-translated to the loopback client). `route_localnet` also lets other hosts send
//! to `127.0.0.0/8` addresses through this host's interfaces; `filter-prerouting` drops such
//! packets (kube-proxy's "block incoming localnet connections", CVE-2020-8558), so loopback
//! services stay local.
//!
//! Conntrack remembers each connection's translation, so open connections survive endpoint
//! changes and even the table's removal. Only IPv4 is programmed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use minik_api::cidr::Cidr;
use minik_net::nft::{run, NftFailure};

use super::table::{Frontend, Frontends, Kind, Protocol};

/// The bit of the packet mark that asks `nat-postrouting` to masquerade a connection.
pub(crate) const MASQUERADE_MARK: u32 = 0x4000;

/// The chain that refuses new connections to a Service port without ready endpoints.
const REJECT_CHAIN: &str = "reject-no-endpoints";

/// The chain that marks a connection for masquerade.
const MARK_CHAIN: &str = "mark-for-masquerade";

/// The table's maps, in the order they are written.
const MAPS: [&str; 4] = [
    "service-ips",
    "service-nodeports",
    "no-endpoint-ips",
    "no-endpoint-nodeports",
];

/// The loopback network.
const LOOPBACK: &str = "127.0.0.0/8";

/// The sysctl that lets packets with loopback addresses be routed through other interfaces
/// (every interface's own `route_localnet` is or-ed with this one).
pub(crate) const ROUTE_LOCALNET: &str = "net.ipv4.conf.all.route_localnet";

/// The table of the agent of node `node`.
pub(crate) fn table_name(node: &str) -> String {
    format!("minik-{node}")
}

/// The Service addresses nftables mode cannot program: those that are not IPv4.
pub(crate) fn unsupported(frontends: &Frontends) -> Vec<SocketAddr> {
    let skipped: BTreeSet<SocketAddr> = frontends
        .keys()
        .map(|(_, addr)| *addr)
        .filter(|a| !a.is_ipv4())
        .collect();
    skipped.into_iter().collect()
}

/// The whole content of one table, as [`render`] makes it, and what it is made of: what the
/// next transaction takes away to put its own content in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    table: String,
    /// `table ip TABLE { … }`: every map, set and chain.
    body: String,
    /// The chains of `body`.
    chains: Vec<String>,
    /// The affinity sets of `body`, with their timeouts in seconds.
    sets: BTreeMap<String, u32>,
}

impl Ruleset {
    /// The name of the table (family `ip`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `nft -f` transaction that replaces whatever the table holds (a stale one of an
    /// earlier run included) with this ruleset: `add` makes sure there is a table to delete,
    /// the deletion takes every chain, map and set with it, all in one transaction, so packets
    /// see the old rules or the new ones, never none.
    pub fn replacing(&self) -> String {
        let table = &self.table;
        format!(
            "add table ip {table}\ndelete table ip {table}\n{}",
            self.body
        )
    }

    /// The `nft -f` transaction that turns `previous`, which the table holds, into this
    /// ruleset, in one transaction as [`replacing`](Self::replacing) does, but keeping the
    /// affinity sets both have with the same timeout, and the clients they remember (as
    /// kube-proxy keeps them across its syncs): it flushes every rule, deletes `previous`'s
    /// maps and chains and the sets this one does not have the same, and adds the rest.
    pub fn updating(&self, previous: &Ruleset) -> String {
        if previous.table != self.table {
            return self.replacing();
        }
        let table = &self.table;
        let mut out = format!("add table ip {table}\nflush table ip {table}\n");
        for map in MAPS {
            let _ = writeln!(out, "delete map ip {table} {map}");
        }
        for chain in &previous.chains {
            let _ = writeln!(out, "delete chain ip {table} {chain}");
        }
        for (set, timeout) in &previous.sets {
            if self.sets.get(set) != Some(timeout) {
                let _ = writeln!(out, "delete set ip {table} {set}");
            }
        }
        out.push_str(&self.body);
        out
    }
}

/// One port of a Service, as the table sees it: the frontends of one Service port share its
/// endpoints and its settings.
struct ServicePort<'a> {
    protocol: Protocol,
    /// One of its frontends, for the endpoints and settings.
    settings: &'a Frontend,
    cluster_ips: Vec<(Ipv4Addr, u16)>,
    node_ports: Vec<u16>,
    load_balancers: Vec<(Ipv4Addr, u16)>,
}

/// An endpoint of a Service port, and the names of its chain and affinity set.
struct Endpoint {
    ip: Ipv4Addr,
    port: u16,
    local: bool,
    chain: String,
    affinity_set: String,
}

/// The table `ip TABLE` for `frontends`. `cluster_cidr` is the cluster CIDR when pods have
/// addresses of their own (see the module's comment). A pure function: the same frontends give
/// the same ruleset, so comparing rulesets tells whether to apply.
pub(crate) fn render(table: &str, frontends: &Frontends, cluster_cidr: Option<Cidr>) -> Ruleset {
    let mut ports: BTreeMap<String, ServicePort> = BTreeMap::new();
    for ((protocol, addr), frontend) in frontends {
        let SocketAddr::V4(addr) = addr else {
            continue;
        };
        let id = format!("{}/{}", frontend.service, frontend.port);
        let port = ports.entry(id).or_insert_with(|| ServicePort {
            protocol: *protocol,
            settings: frontend,
            cluster_ips: Vec::new(),
            node_ports: Vec::new(),
            load_balancers: Vec::new(),
        });
        match frontend.kind {
            Kind::ClusterIp => port.cluster_ips.push((*addr.ip(), addr.port())),
            Kind::NodePort => port.node_ports.push(addr.port()),
            Kind::LoadBalancer => port.load_balancers.push((*addr.ip(), addr.port())),
        }
    }

    let mut service_ips = Vec::new();
    let mut service_nodeports = Vec::new();
    let mut no_endpoint_ips = Vec::new();
    let mut no_endpoint_nodeports = Vec::new();
    let mut sets = BTreeMap::new();
    let mut service_chains: Vec<(String, Vec<String>)> = Vec::new();
    for (id, port) in &ports {
        let proto = port.protocol.nft();
        let settings = port.settings;
        let endpoints = endpoints_of(id, settings);
        let local: Vec<&Endpoint> = endpoints.iter().filter(|e| e.local).collect();
        let all: Vec<&Endpoint> = endpoints.iter().collect();
        let has_endpoints = !all.is_empty();
        let external = !port.node_ports.is_empty() || !port.load_balancers.is_empty();
        let has_internal = if settings.internal_local {
            !local.is_empty()
        } else {
            has_endpoints
        };
        let has_external = if settings.external_local {
            !local.is_empty()
        } else {
            has_endpoints
        };
        // kube-proxy's UsesClusterEndpoints: an external address needs the cluster chain for
        // the traffic it short-circuits even under a Local policy.
        let uses_cluster = has_endpoints && (!settings.internal_local || external);
        let uses_local =
            !local.is_empty() && (settings.internal_local || (external && settings.external_local));
        let uses_external = has_endpoints && external;
        let svc_chain = format!("svc-{id}");
        let local_chain = format!("local-{id}");
        let ext_chain = format!("ext-{id}");
        let internal_chain = if settings.internal_local {
            &local_chain
        } else {
            &svc_chain
        };
        let external_chain = if settings.external_local {
            &local_chain
        } else {
            &svc_chain
        };
        // What the filter chains do with a new connection no DNAT took: refuse it when the
        // Service has no endpoint at all, drop it when its policy leaves none here.
        let refusal = |reachable: bool| {
            if !has_endpoints {
                Some(format!("goto {REJECT_CHAIN}"))
            } else if !reachable {
                Some("drop".to_owned())
            } else {
                None
            }
        };

        for (ip, number) in &port.cluster_ips {
            let key = format!("{ip} . {proto} . {number}");
            if has_internal {
                service_ips.push(format!("{key} : goto {internal_chain}"));
            }
            if let Some(verdict) = refusal(has_internal) {
                no_endpoint_ips.push(format!("{key} : {verdict}"));
            }
        }
        for (ip, number) in &port.load_balancers {
            let key = format!("{ip} . {proto} . {number}");
            if has_endpoints {
                service_ips.push(format!("{key} : goto {ext_chain}"));
            }
            if let Some(verdict) = refusal(has_external) {
                no_endpoint_ips.push(format!("{key} : {verdict}"));
            }
        }
        for number in &port.node_ports {
            let key = format!("{proto} . {number}");
            if has_endpoints {
                service_nodeports.push(format!("{key} : goto {ext_chain}"));
            }
            if let Some(verdict) = refusal(has_external) {
                no_endpoint_nodeports.push(format!("{key} : {verdict}"));
            }
        }

        if uses_external {
            let mut rules = Vec::new();
            if !settings.external_local {
                rules.push(format!("jump {MARK_CHAIN}"));
            } else {
                if let Some(cidr) = cluster_cidr {
                    rules.push(format!(
                        "ip saddr {cidr} goto {svc_chain} comment \"short-circuit pod traffic\""
                    ));
                }
                rules.push(format!(
                    "fib saddr type local jump {MARK_CHAIN} comment \"masquerade local traffic\""
                ));
                rules.push(format!(
                    "fib saddr type local goto {svc_chain} comment \"short-circuit local traffic\""
                ));
            }
            if has_external {
                rules.push(format!("goto {external_chain}"));
            }
            service_chains.push((ext_chain.clone(), rules));
        }
        // Connections to the ClusterIP from outside the cluster CIDR are masqueraded, in the
        // chain the ClusterIP goes to.
        let masquerade_outsiders = |chain: &str| -> Vec<String> {
            match cluster_cidr {
                Some(cidr) if chain == internal_chain.as_str() => port
                    .cluster_ips
                    .iter()
                    .map(|(ip, number)| {
                        format!(
                            "ip daddr {ip} {proto} dport {number} ip saddr != {cidr} jump \
                             {MARK_CHAIN}"
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        if uses_cluster {
            let mut rules = masquerade_outsiders(&svc_chain);
            rules.extend(dispatch(&all, settings.affinity.is_some()));
            service_chains.push((svc_chain.clone(), rules));
        }
        if uses_local {
            let mut rules = masquerade_outsiders(&local_chain);
            rules.extend(dispatch(&local, settings.affinity.is_some()));
            service_chains.push((local_chain.clone(), rules));
        }
        let used = if uses_cluster {
            all
        } else if uses_local {
            local
        } else {
            Vec::new()
        };
        for endpoint in used {
            let Endpoint {
                ip, port: number, ..
            } = endpoint;
            let mut rules = vec![format!("ip saddr {ip} jump {MARK_CHAIN}")];
            if let Some(timeout) = settings.affinity {
                sets.insert(endpoint.affinity_set.clone(), timeout);
                rules.push(format!("update @{} {{ ip saddr }}", endpoint.affinity_set));
            }
            rules.push(format!("meta l4proto {proto} dnat to {ip}:{number}"));
            service_chains.push((endpoint.chain.clone(), rules));
        }
    }

    let mut body = String::new();
    let _ = writeln!(body, "table ip {table} {{");
    let address_port = "ipv4_addr . inet_proto . inet_service";
    let port = "inet_proto . inet_service";
    for (name, key, elements) in [
        (MAPS[0], address_port, &service_ips),
        (MAPS[1], port, &service_nodeports),
        (MAPS[2], address_port, &no_endpoint_ips),
        (MAPS[3], port, &no_endpoint_nodeports),
    ] {
        map(&mut body, name, key, elements);
    }
    for (name, timeout) in &sets {
        let _ = writeln!(body, "\tset {name} {{");
        let _ = writeln!(body, "\t\ttype ipv4_addr");
        let _ = writeln!(body, "\t\tflags dynamic,timeout");
        let _ = writeln!(body, "\t\ttimeout {timeout}s");
        let _ = writeln!(body, "\t}}");
    }
    let mut chains = Vec::new();
    let mut chain = |name: &str, base: Option<&str>, rules: &[String]| {
        let _ = writeln!(body, "\tchain {name} {{");
        if let Some(base) = base {
            let _ = writeln!(body, "\t\t{base}");
        }
        for rule in rules {
            let _ = writeln!(body, "\t\t{rule}");
        }
        let _ = writeln!(body, "\t}}");
        chains.push(name.to_owned());
    };
    let check = "ct state new jump endpoints-check".to_owned();
    // With route_localnet on, the kernel would route packets from other hosts to loopback
    // addresses (before any translation: no connection of ours arrives that way).
    chain(
        "filter-prerouting",
        Some("type filter hook prerouting priority -110; policy accept;"),
        &[format!("iifname != \"lo\" ip daddr {LOOPBACK} drop")],
    );
    // Input and forward see what the prerouting DNAT left: connections it did not translate.
    for hook in ["input", "forward", "output"] {
        chain(
            &format!("filter-{hook}"),
            Some(&format!(
                "type filter hook {hook} priority -110; policy accept;"
            )),
            std::slice::from_ref(&check),
        );
    }
    chain(
        "endpoints-check",
        None,
        &[
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-ips".to_owned(),
            "fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports".to_owned(),
        ],
    );
    chain(
        REJECT_CHAIN,
        None,
        &[
            "meta l4proto tcp reject with tcp reset".to_owned(),
            "reject".to_owned(),
        ],
    );
    for hook in ["prerouting", "output"] {
        chain(
            &format!("nat-{hook}"),
            Some(&format!(
                "type nat hook {hook} priority -100; policy accept;"
            )),
            &["jump services".to_owned()],
        );
    }
    chain(
        "nat-postrouting",
        Some("type nat hook postrouting priority 100; policy accept;"),
        &[
            format!(
                "meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} oifname != \"lo\" masquerade"
            ),
            // A local client of a Service address (a loopback source) sent to another host.
            format!("ct status dnat ip saddr {LOOPBACK} oifname != \"lo\" masquerade"),
        ],
    );
    chain(
        MARK_CHAIN,
        None,
        &[format!("meta mark set meta mark | {MASQUERADE_MARK:#x}")],
    );
    chain(
        "services",
        None,
        &[
            "ip daddr . meta l4proto . th dport vmap @service-ips".to_owned(),
            "fib daddr type local meta l4proto . th dport vmap @service-nodeports".to_owned(),
        ],
    );
    for (name, rules) in &service_chains {
        chain(name, None, rules);
    }
    body.push_str("}\n");
    Ruleset {
        table: table.to_owned(),
        body,
        chains,
        sets,
    }
}

/// The IPv4 endpoints of the Service port `id`, each once, in the order of its frontend.
fn endpoints_of(id: &str, frontend: &Frontend) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    frontend
        .backends
        .iter()
        .filter_map(|b| match b.addr.ip() {
            IpAddr::V4(ip) if seen.insert((ip, b.addr.port())) => Some(Endpoint {
                ip,
                port: b.addr.port(),
                local: b.local,
                chain: format!("ep-{id}__{ip}/{}", b.addr.port()),
                affinity_set: format!("affinity-{id}__{ip}/{}", b.addr.port()),
            }),
            _ => None,
        })
        .collect()
}

/// The rules that send a new connection to one of `endpoints`: first to the endpoint that
/// remembers its client under `affinity`, else to the next in turn.
fn dispatch(endpoints: &[&Endpoint], affinity: bool) -> Vec<String> {
    let mut rules = Vec::new();
    if affinity {
        for e in endpoints {
            rules.push(format!("ip saddr @{} goto {}", e.affinity_set, e.chain));
        }
    }
    match endpoints {
        [] => {}
        [one] => rules.push(format!("goto {}", one.chain)),
        many => {
            let elements: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{i} : goto {}", e.chain))
                .collect();
            rules.push(format!(
                "numgen inc mod {} vmap {{ {} }}",
                many.len(),
                elements.join(", ")
            ));
        }
    }
    rules
}

fn map(out: &mut String, name: &str, key: &str, elements: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{");
    let _ = writeln!(out, "\t\ttype {key} : verdict");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

/// What [`enable`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enabled {
    /// The setting was 1 already; nothing was written.
    Already,
    /// The setting was this value, and is 1 now.
    Changed(String),
}

/// The file under `/proc/sys` of the sysctl `name` (`net.ipv4.conf.all.route_localnet`).
fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// Sets the sysctl file `path` to 1 unless it is 1 already.
pub(crate) fn enable(path: &Path) -> Result<Enabled, String> {
    let current = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let current = current.trim();
    if current == "1" {
        return Ok(Enabled::Already);
    }
    std::fs::write(path, "1\n").map_err(|e| {
        format!(
            "cannot write 1 to {} (it is {current}): {e}",
            path.display()
        )
    })?;
    Ok(Enabled::Changed(current.to_owned()))
}

/// Makes sure [`ROUTE_LOCALNET`] is 1 in the agent's network namespace, once per process,
/// and logs a change or a failure (once: the agents of `minik up` share the process). Without
/// it the kernel drops a local client's connection to a Service address (its source is
/// loopback) that the DNAT sends to another host; endpoints on this host still work. The
/// agent never sets it back: other programs may rely on it by then, and open connections
/// would stall.
pub(crate) fn ensure_route_localnet() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match enable(&sysctl_path(ROUTE_LOCALNET)) {
        Ok(Enabled::Already) => tracing::debug!(sysctl = ROUTE_LOCALNET, "already 1"),
        Ok(Enabled::Changed(previous)) => tracing::info!(
            sysctl = ROUTE_LOCALNET,
            %previous,
            "set {ROUTE_LOCALNET}=1, so that local clients of Service addresses reach endpoints \
             on other hosts; it stays 1 when the agent stops"
        ),
        Err(error) => tracing::warn!(
            sysctl = ROUTE_LOCALNET,
            %error,
            "cannot set {ROUTE_LOCALNET}=1: local clients of ClusterIPs and of 127.0.0.1 node \
             ports reach only the endpoints on this host (set it with `sysctl -w \
             {ROUTE_LOCALNET}=1`)"
        ),
    });
}

/// The agent's table in the kernel, through the `nft` command. Its lock orders every command:
/// a deletion waits for an update under way, so a stopped agent leaves no table behind.
pub(crate) struct Nft {
    table: String,
    lock: Mutex<()>,
}

impl Nft {
    pub(crate) fn new(table: String) -> Arc<Nft> {
        Arc::new(Nft {
            table,
            lock: Mutex::new(()),
        })
    }

    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// Applies the transaction `text` (`nft -f -`). Blocks while nft runs.
    pub(crate) fn apply(&self, text: &str) -> Result<(), NftFailure> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        run(&["-f", "-"], Some(text))
    }

    /// Deletes the table; one that is not there is no error. Blocks while nft runs.
    pub(crate) fn delete(&self) -> Result<(), NftFailure> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match run(&["delete", "table", "ip", &self.table], None) {
            Err(e) if e.message.contains("No such file or directory") => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::{self, Backend};
    use super::*;

    /// A frontend of `service`'s port `port` to `backends` (none on this node).
    fn frontend(service: &str, port: &str, kind: Kind, backends: &[&str]) -> Frontend {
        Frontend {
            service: service.into(),
            port: port.into(),
            kind,
            backends: backends
                .iter()
                .map(|b| Backend {
                    addr: b.parse().unwrap(),
                    local: false,
                })
                .collect(),
            affinity: None,
            internal_local: false,
            external_local: false,
        }
    }

    /// `frontend` with the backends in `here` on this node.
    fn with_local(mut frontend: Frontend, here: &[&str]) -> Frontend {
        for b in &mut frontend.backends {
            b.local = here.contains(&b.addr.to_string().as_str());
        }
        frontend
    }

    /// Frontends by address: `udp/ADDRESS` for UDP, a bare address for TCP.
    fn table(entries: &[(&str, Frontend)]) -> Frontends {
        entries
            .iter()
            .map(|(a, f)| {
                let key = match a.strip_prefix("udp/") {
                    Some(a) => (Protocol::Udp, a.parse().unwrap()),
                    None => (Protocol::Tcp, a.parse().unwrap()),
                };
                (key, f.clone())
            })
            .collect()
    }

    /// The Service default/web's port `http` as ClusterIP 127.96.0.5:8080, NodePort
    /// 127.0.0.9:30080 and LoadBalancer 127.0.0.9:8080, to `ready`.
    fn web(ready: &[&str]) -> Frontends {
        table(&[
            (
                "127.96.0.5:8080",
                frontend("default/web", "http", Kind::ClusterIp, ready),
            ),
            (
                "127.0.0.9:30080",
                frontend("default/web", "http", Kind::NodePort, ready),
            ),
            (
                "127.0.0.9:8080",
                frontend("default/web", "http", Kind::LoadBalancer, ready),
            ),
        ])
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    /// The text of the table (what both transactions end with).
    fn body(frontends: &Frontends, cluster_cidr: Option<Cidr>) -> String {
        render("minik-n1", frontends, cluster_cidr).body
    }

    /// The chain `name` of `text`, as written.
    fn chain_of(text: &str, name: &str) -> String {
        let start = text
            .find(&format!("\tchain {name} {{\n"))
            .unwrap_or_else(|| panic!("no chain {name} in\n{text}"));
        let end = start + text[start..].find("\t}\n").unwrap() + 3;
        text[start..end].to_owned()
    }

    /// The elements of map `name` of `text`.
    fn elements_of(text: &str, name: &str) -> String {
        let start = text.find(&format!("\tmap {name} {{\n")).unwrap();
        let map = &text[start..start + text[start..].find("\t}\n").unwrap()];
        map.lines()
            .find_map(|l| l.trim().strip_prefix("elements = "))
            .unwrap_or_default()
            .to_owned()
    }

    /// The maps with no elements, and the chains that every ruleset has.
    const SKELETON: &str = "\tchain filter-prerouting {
\t\ttype filter hook prerouting priority -110; policy accept;
\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 drop
\t}
\tchain filter-input {
\t\ttype filter hook input priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}
\tchain filter-forward {
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}
\tchain filter-output {
\t\ttype filter hook output priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}
\tchain endpoints-check {
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-ips
\t\tfib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
\t}
\tchain reject-no-endpoints {
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}
\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}
\tchain nat-postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tmeta mark & 0x4000 == 0x4000 oifname != \"lo\" masquerade
\t\tct status dnat ip saddr 127.0.0.0/8 oifname != \"lo\" masquerade
\t}
\tchain mark-for-masquerade {
\t\tmeta mark set meta mark | 0x4000
\t}
\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local meta l4proto . th dport vmap @service-nodeports
\t}
";

    #[test]
    fn no_services_give_an_empty_table_that_replaces_a_stale_one() {
        let expected = format!(
            "add table ip minik-n1
delete table ip minik-n1
table ip minik-n1 {{
\tmap service-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t}}
\tmap service-nodeports {{
\t\ttype inet_proto . inet_service : verdict
\t}}
\tmap no-endpoint-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t}}
\tmap no-endpoint-nodeports {{
\t\ttype inet_proto . inet_service : verdict
\t}}
{SKELETON}}}
"
        );
        let ruleset = render(&table_name("n1"), &BTreeMap::new(), None);
        assert_eq!(ruleset.table(), "minik-n1");
        assert_eq!(ruleset.replacing(), expected);
    }

    #[test]
    fn cluster_ips_node_ports_and_load_balancers_go_to_their_endpoints_in_turn() {
        let ready = ["127.0.0.2:31000", "127.0.0.3:31000", "127.0.0.5:31005"];
        let mut frontends = web(&ready);
        frontends.extend(table(&[(
            "127.96.0.6:9000",
            frontend(
                "default/plain",
                "9000",
                Kind::ClusterIp,
                &["127.0.0.2:32000"],
            ),
        )]));
        let expected = format!(
            "table ip minik-n1 {{
\tmap service-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = {{ 127.96.0.6 . tcp . 9000 : goto svc-default/plain/9000, 127.96.0.5 . tcp . 8080 : goto svc-default/web/http, 127.0.0.9 . tcp . 8080 : goto ext-default/web/http }}
\t}}
\tmap service-nodeports {{
\t\ttype inet_proto . inet_service : verdict
\t\telements = {{ tcp . 30080 : goto ext-default/web/http }}
\t}}
\tmap no-endpoint-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t}}
\tmap no-endpoint-nodeports {{
\t\ttype inet_proto . inet_service : verdict
\t}}
{SKELETON}\tchain svc-default/plain/9000 {{
\t\tgoto ep-default/plain/9000__127.0.0.2/32000
\t}}
\tchain ep-default/plain/9000__127.0.0.2/32000 {{
\t\tip saddr 127.0.0.2 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 127.0.0.2:32000
\t}}
\tchain ext-default/web/http {{
\t\tjump mark-for-masquerade
\t\tgoto svc-default/web/http
\t}}
\tchain svc-default/web/http {{
\t\tnumgen inc mod 3 vmap {{ 0 : goto ep-default/web/http__127.0.0.2/31000, 1 : goto ep-default/web/http__127.0.0.3/31000, 2 : goto ep-default/web/http__127.0.0.5/31005 }}
\t}}
\tchain ep-default/web/http__127.0.0.2/31000 {{
\t\tip saddr 127.0.0.2 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 127.0.0.2:31000
\t}}
\tchain ep-default/web/http__127.0.0.3/31000 {{
\t\tip saddr 127.0.0.3 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 127.0.0.3:31000
\t}}
\tchain ep-default/web/http__127.0.0.5/31005 {{
\t\tip saddr 127.0.0.5 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 127.0.0.5:31005
\t}}
}}
"
        );
        assert_eq!(body(&frontends, None), expected);
    }

    #[test]
    fn service_ports_without_ready_endpoints_are_rejected() {
        let frontends = table(&[
            (
                "127.96.0.7:80",
                frontend("shop/cart", "80", Kind::ClusterIp, &[]),
            ),
            (
                "127.0.0.9:31234",
                frontend("shop/cart", "80", Kind::NodePort, &[]),
            ),
            (
                "127.0.0.9:80",
                frontend("shop/cart", "80", Kind::LoadBalancer, &[]),
            ),
            (
                "udp/127.96.0.8:53",
                frontend("shop/dns", "53", Kind::ClusterIp, &[]),
            ),
        ]);
        let text = body(&frontends, None);
        assert_eq!(
            elements_of(&text, "no-endpoint-ips"),
            "{ 127.96.0.7 . tcp . 80 : goto reject-no-endpoints, 127.0.0.9 . tcp . 80 : goto \
             reject-no-endpoints, 127.96.0.8 . udp . 53 : goto reject-no-endpoints }"
        );
        assert_eq!(
            elements_of(&text, "no-endpoint-nodeports"),
            "{ tcp . 31234 : goto reject-no-endpoints }"
        );
        // Nothing is translated, and no chain is left for the Services.
        assert_eq!(elements_of(&text, "service-ips"), "");
        assert_eq!(elements_of(&text, "service-nodeports"), "");
        assert!(!text.contains("cart"), "{text}");
        assert!(text.ends_with(&format!("{SKELETON}}}\n")), "{text}");
    }

    #[test]
    fn ipv6_addresses_are_left_out_and_reported() {
        let frontends = table(&[
            (
                "[::1]:30080",
                frontend("default/web", "80", Kind::NodePort, &["[::1]:31000"]),
            ),
            (
                "127.96.0.5:80",
                frontend(
                    "default/web",
                    "80",
                    Kind::ClusterIp,
                    &["[::1]:31000", "127.0.0.2:31000"],
                ),
            ),
        ]);
        assert_eq!(
            unsupported(&frontends),
            vec!["[::1]:30080".parse::<SocketAddr>().unwrap()]
        );
        let text = body(&frontends, None);
        assert!(!text.contains("::1"), "{text}");
        assert!(!text.contains("30080"), "{text}");
        assert_eq!(
            chain_of(&text, "svc-default/web/80"),
            "\tchain svc-default/web/80 {\n\t\tgoto ep-default/web/80__127.0.0.2/31000\n\t}\n"
        );
    }

    /// Pods on the pod network: a ClusterIP's connections from outside the cluster CIDR are
    /// masqueraded, those of pods keep their address, and a pod reaching itself is
    /// masqueraded (hairpin).
    #[test]
    fn cluster_ips_of_pods_masquerade_outsiders_and_hairpins() {
        let ready = ["10.244.1.5:8080", "10.244.2.7:8080"];
        let frontends = table(&[
            (
                "10.96.0.5:80",
                frontend("default/web", "http", Kind::ClusterIp, &ready),
            ),
            (
                "udp/10.96.0.5:53",
                frontend("default/web", "dns", Kind::ClusterIp, &["10.244.1.5:5353"]),
            ),
        ]);
        let text = body(&frontends, Some(cidr("10.244.0.0/16")));
        assert_eq!(
            elements_of(&text, "service-ips"),
            "{ 10.96.0.5 . udp . 53 : goto svc-default/web/dns, 10.96.0.5 . tcp . 80 : goto \
             svc-default/web/http }"
        );
        assert_eq!(
            chain_of(&text, "svc-default/web/http"),
            "\tchain svc-default/web/http {
\t\tip daddr 10.96.0.5 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tnumgen inc mod 2 vmap { 0 : goto ep-default/web/http__10.244.1.5/8080, 1 : goto ep-default/web/http__10.244.2.7/8080 }
\t}
"
        );
        assert_eq!(
            chain_of(&text, "ep-default/web/http__10.244.2.7/8080"),
            "\tchain ep-default/web/http__10.244.2.7/8080 {
\t\tip saddr 10.244.2.7 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 10.244.2.7:8080
\t}
"
        );
        assert_eq!(
            chain_of(&text, "svc-default/web/dns"),
            "\tchain svc-default/web/dns {
\t\tip daddr 10.96.0.5 udp dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tgoto ep-default/web/dns__10.244.1.5/5353
\t}
"
        );
        assert!(
            text.contains("\t\tmeta l4proto udp dnat to 10.244.1.5:5353\n"),
            "{text}"
        );
        // Both hooks translate: pods' packets arrive through prerouting, the node's own
        // through output.
        for hook in ["prerouting", "output"] {
            assert!(
                chain_of(&text, &format!("nat-{hook}")).contains("jump services"),
                "{text}"
            );
        }
        // Without the cluster CIDR, nothing but the hairpins is masqueraded.
        let text = body(&frontends, None);
        assert!(!text.contains("ip saddr != "), "{text}");
        assert!(
            text.contains("\t\tip saddr 10.244.1.5 jump mark-for-masquerade\n"),
            "{text}"
        );
    }

    #[test]
    fn client_ip_affinity_remembers_each_endpoints_clients() {
        let mut sticky = frontend(
            "default/web",
            "http",
            Kind::ClusterIp,
            &["10.244.1.5:8080", "10.244.2.7:8080"],
        );
        sticky.affinity = Some(60);
        let frontends = table(&[("10.96.0.5:80", sticky)]);
        let ruleset = render("minik-n1", &frontends, None);
        let text = &ruleset.body;
        for ep in ["10.244.1.5/8080", "10.244.2.7/8080"] {
            assert!(
                text.contains(&format!(
                    "\tset affinity-default/web/http__{ep} {{
\t\ttype ipv4_addr
\t\tflags dynamic,timeout
\t\ttimeout 60s
\t}}
"
                )),
                "{text}"
            );
        }
        assert_eq!(
            chain_of(text, "svc-default/web/http"),
            "\tchain svc-default/web/http {
\t\tip saddr @affinity-default/web/http__10.244.1.5/8080 goto ep-default/web/http__10.244.1.5/8080
\t\tip saddr @affinity-default/web/http__10.244.2.7/8080 goto ep-default/web/http__10.244.2.7/8080
\t\tnumgen inc mod 2 vmap { 0 : goto ep-default/web/http__10.244.1.5/8080, 1 : goto ep-default/web/http__10.244.2.7/8080 }
\t}
"
        );
        assert_eq!(
            chain_of(text, "ep-default/web/http__10.244.1.5/8080"),
            "\tchain ep-default/web/http__10.244.1.5/8080 {
\t\tip saddr 10.244.1.5 jump mark-for-masquerade
\t\tupdate @affinity-default/web/http__10.244.1.5/8080 { ip saddr }
\t\tmeta l4proto tcp dnat to 10.244.1.5:8080
\t}
"
        );
        assert_eq!(
            ruleset.sets,
            BTreeMap::from([
                ("affinity-default/web/http__10.244.1.5/8080".to_owned(), 60),
                ("affinity-default/web/http__10.244.2.7/8080".to_owned(), 60),
            ])
        );
        // The sets come before the chains that use them.
        assert!(text.find("\tset ").unwrap() < text.find("\tchain ").unwrap());
    }

    /// The Service default/web as NodePort 10.0.0.1:30080 and ClusterIP 10.96.0.5:80 to an
    /// endpoint here (10.244.1.5) and one elsewhere, or only the one elsewhere.
    fn node_port_service(here: bool, internal_local: bool, external_local: bool) -> Frontends {
        let ready = if here {
            vec!["10.244.1.5:8080", "10.244.2.7:8080"]
        } else {
            vec!["10.244.2.7:8080"]
        };
        let make = |kind| {
            let mut f = with_local(
                frontend("default/web", "http", kind, &ready),
                &["10.244.1.5:8080"],
            );
            f.internal_local = internal_local;
            f.external_local = external_local;
            f
        };
        table(&[
            ("10.96.0.5:80", make(Kind::ClusterIp)),
            ("10.0.0.1:30080", make(Kind::NodePort)),
        ])
    }

    #[test]
    fn external_traffic_policy_local_keeps_to_this_nodes_endpoints() {
        let text = body(
            &node_port_service(true, false, true),
            Some(cidr("10.244.0.0/16")),
        );
        // Outsiders go to the local endpoints without masquerade; pods and the node itself
        // to every endpoint.
        assert_eq!(
            chain_of(&text, "ext-default/web/http"),
            "\tchain ext-default/web/http {
\t\tip saddr 10.244.0.0/16 goto svc-default/web/http comment \"short-circuit pod traffic\"
\t\tfib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"
\t\tfib saddr type local goto svc-default/web/http comment \"short-circuit local traffic\"
\t\tgoto local-default/web/http
\t}
"
        );
        assert_eq!(
            chain_of(&text, "local-default/web/http"),
            "\tchain local-default/web/http {
\t\tgoto ep-default/web/http__10.244.1.5/8080
\t}
"
        );
        // The ClusterIP goes on to every endpoint.
        assert!(
            chain_of(&text, "svc-default/web/http").contains("numgen inc mod 2"),
            "{text}"
        );
        assert_eq!(elements_of(&text, "no-endpoint-nodeports"), "");

        // No endpoint here: outsiders' connections to the node port are dropped; the node's
        // own and the pods' still reach the endpoints elsewhere.
        let text = body(
            &node_port_service(false, false, true),
            Some(cidr("10.244.0.0/16")),
        );
        assert_eq!(
            elements_of(&text, "service-nodeports"),
            "{ tcp . 30080 : goto ext-default/web/http }"
        );
        assert_eq!(
            elements_of(&text, "no-endpoint-nodeports"),
            "{ tcp . 30080 : drop }"
        );
        let ext = chain_of(&text, "ext-default/web/http");
        assert!(!ext.contains("local-"), "{ext}");
        assert!(!text.contains("chain local-"), "{text}");
        assert_eq!(
            elements_of(&text, "service-ips"),
            "{ 10.96.0.5 . tcp . 80 : goto svc-default/web/http }"
        );

        // Without the cluster CIDR there is no telling pods apart.
        let text = body(&node_port_service(true, false, true), None);
        assert!(!text.contains("short-circuit pod traffic"), "{text}");
        assert!(text.contains("short-circuit local traffic"), "{text}");
    }

    #[test]
    fn internal_traffic_policy_local_keeps_cluster_ips_to_this_nodes_endpoints() {
        let text = body(
            &node_port_service(true, true, false),
            Some(cidr("10.244.0.0/16")),
        );
        assert_eq!(
            elements_of(&text, "service-ips"),
            "{ 10.96.0.5 . tcp . 80 : goto local-default/web/http }"
        );
        assert_eq!(
            chain_of(&text, "local-default/web/http"),
            "\tchain local-default/web/http {
\t\tip daddr 10.96.0.5 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tgoto ep-default/web/http__10.244.1.5/8080
\t}
"
        );
        // The node port keeps its Cluster policy: every endpoint.
        assert_eq!(
            chain_of(&text, "ext-default/web/http"),
            "\tchain ext-default/web/http {
\t\tjump mark-for-masquerade
\t\tgoto svc-default/web/http
\t}
"
        );
        assert!(!chain_of(&text, "svc-default/web/http").contains("ip daddr"));

        // No endpoint here: the ClusterIP drops new connections, the node port still works.
        let text = body(
            &node_port_service(false, true, false),
            Some(cidr("10.244.0.0/16")),
        );
        assert_eq!(
            elements_of(&text, "no-endpoint-ips"),
            "{ 10.96.0.5 . tcp . 80 : drop }"
        );
        assert_eq!(elements_of(&text, "service-ips"), "");
        assert_eq!(
            elements_of(&text, "service-nodeports"),
            "{ tcp . 30080 : goto ext-default/web/http }"
        );

        // A ClusterIP-only Service with Local policy and no endpoint here: no chain at all.
        let mut only = node_port_service(false, true, false);
        only.retain(|_, f| f.kind == Kind::ClusterIp);
        let text = body(&only, None);
        assert!(!text.contains("chain svc-"), "{text}");
        assert!(!text.contains("chain ep-"), "{text}");
    }

    #[test]
    fn the_cluster_dns_service_goes_to_the_local_dns_address() {
        let dns: minik_api::k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
                ]}
            }))
            .unwrap();
        let none = |_: &str| None;
        let frontends = table::frontends(
            &[&dns],
            &none,
            "n1",
            "10.0.0.1".parse().unwrap(),
            Some("10.244.1.1:53".parse().unwrap()),
        );
        let text = body(&frontends, Some(cidr("10.244.0.0/16")));
        assert_eq!(
            elements_of(&text, "service-ips"),
            "{ 10.96.0.10 . udp . 53 : goto svc-kube-system/kube-dns/dns, 10.96.0.10 . tcp . 53 \
             : goto svc-kube-system/kube-dns/dns-tcp }"
        );
        for (port, protocol) in [("dns", "udp"), ("dns-tcp", "tcp")] {
            assert!(
                chain_of(
                    &text,
                    &format!("ep-kube-system/kube-dns/{port}__10.244.1.1/53")
                )
                .contains(&format!("meta l4proto {protocol} dnat to 10.244.1.1:53")),
                "{text}"
            );
        }
        assert_eq!(elements_of(&text, "no-endpoint-ips"), "");
        // Without it, no Endpoints: refused.
        let frontends = table::frontends(&[&dns], &none, "n1", "10.0.0.1".parse().unwrap(), None);
        let text = body(&frontends, None);
        assert_eq!(elements_of(&text, "service-ips"), "");
        assert!(
            elements_of(&text, "no-endpoint-ips").contains("10.96.0.10 . udp . 53 : goto reject"),
            "{text}"
        );
    }

    #[test]
    fn an_update_keeps_the_affinity_sets_that_stay_the_same() {
        let sticky = |backends: &[&str], timeout| {
            let mut f = frontend("default/web", "http", Kind::ClusterIp, backends);
            f.affinity = Some(timeout);
            table(&[("10.96.0.5:80", f)])
        };
        let before = render(
            "minik-n1",
            &sticky(&["10.244.1.5:80", "10.244.1.6:80"], 60),
            None,
        );
        let after = render(
            "minik-n1",
            &sticky(&["10.244.1.5:80", "10.244.1.7:80"], 60),
            None,
        );
        let text = after.updating(&before);
        let preamble = "add table ip minik-n1
flush table ip minik-n1
delete map ip minik-n1 service-ips
delete map ip minik-n1 service-nodeports
delete map ip minik-n1 no-endpoint-ips
delete map ip minik-n1 no-endpoint-nodeports
delete chain ip minik-n1 filter-prerouting
";
        assert!(text.starts_with(preamble), "{text}");
        assert!(text.ends_with(&after.body), "{text}");
        let deleted: Vec<&str> = text.lines().filter(|l| l.starts_with("delete ")).collect();
        // Every chain before (the skeleton's 12, then the Service's and its 2 endpoints').
        assert_eq!(deleted.len(), 4 + before.chains.len() + 1, "{text}");
        assert!(deleted.contains(&"delete chain ip minik-n1 ep-default/web/http__10.244.1.6/80"));
        // The set of the endpoint that went; the one that stays keeps its clients.
        assert_eq!(
            deleted.last(),
            Some(&"delete set ip minik-n1 affinity-default/web/http__10.244.1.6/80")
        );

        // A new timeout makes new sets.
        let longer = render(
            "minik-n1",
            &sticky(&["10.244.1.5:80", "10.244.1.7:80"], 90),
            None,
        );
        let text = longer.updating(&after);
        for ep in ["10.244.1.5/80", "10.244.1.7/80"] {
            assert!(
                text.contains(&format!(
                    "delete set ip minik-n1 affinity-default/web/http__{ep}\n"
                )),
                "{text}"
            );
        }
        // Another table's ruleset is replaced.
        let other = render("minik-n2", &BTreeMap::new(), None);
        assert_eq!(longer.updating(&other), longer.replacing());
    }

    /// Every kind of ruleset, for nft to check.
    fn every_kind() -> Vec<Frontends> {
        let ready = ["127.0.0.2:31000", "127.0.0.3:31000"];
        let mut frontends = web(&ready);
        frontends.extend(table(&[
            (
                "127.96.0.6:9000",
                frontend("default/one", "9000", Kind::ClusterIp, &["127.0.0.2:1"]),
            ),
            (
                "127.96.0.7:80",
                frontend("shop/cart", "80", Kind::ClusterIp, &[]),
            ),
            (
                "127.0.0.9:31234",
                frontend("shop/cart", "80", Kind::NodePort, &[]),
            ),
            (
                "udp/127.96.0.8:53",
                frontend("shop/dns", "dns", Kind::ClusterIp, &["127.0.0.2:5353"]),
            ),
            (
                "udp/127.96.0.8:54",
                frontend("shop/dns", "dns2", Kind::ClusterIp, &[]),
            ),
        ]));
        let mut sticky = frontend(
            "shop/sticky",
            "http",
            Kind::ClusterIp,
            &["10.244.1.5:8080", "10.244.2.7:8080"],
        );
        sticky.affinity = Some(10800);
        frontends.extend(table(&[("10.96.0.9:80", sticky)]));
        vec![
            BTreeMap::new(),
            frontends,
            node_port_service(true, false, true),
            node_port_service(false, false, true),
            node_port_service(true, true, false),
            node_port_service(false, true, false),
            node_port_service(true, true, true),
        ]
    }

    /// nft itself checks the rendered rulesets (`nft -c`: nothing is changed in the kernel),
    /// and a ruleset it refuses gives an error naming the command and quoting nft.
    #[test]
    fn nft_accepts_the_rulesets_and_its_refusals_are_quoted() {
        let name = format!("minik-unit-{}", std::process::id());
        for frontends in every_kind() {
            for cidr in [None, Some(cidr("10.244.0.0/16"))] {
                let ruleset = render(&name, &frontends, cidr).replacing();
                if let Err(e) = run(&["-c", "-f", "-"], Some(&ruleset)) {
                    panic!("{e}\n{ruleset}");
                }
            }
        }
        let err = run(
            &["-c", "-f", "-"],
            Some("table ip x { chain y { bogus } }\n"),
        )
        .expect_err("nft refuses a bogus rule");
        assert_eq!(err.command, "nft -c -f -");
        assert!(err.message.contains("bogus"), "{err}");
        assert!(
            err.to_string().starts_with("`nft -c -f -` failed: "),
            "{err}"
        );
    }

    #[test]
    fn enable_sets_a_sysctl_to_one_and_reports_what_it_was() {
        assert_eq!(
            sysctl_path(ROUTE_LOCALNET),
            Path::new("/proc/sys/net/ipv4/conf/all/route_localnet")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("route_localnet");
        std::fs::write(&file, "0\n").unwrap();
        assert_eq!(enable(&file), Ok(Enabled::Changed("0".into())));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n");
        assert_eq!(enable(&file), Ok(Enabled::Already));
        let missing = dir.path().join("missing");
        let err = enable(&missing).expect_err("no such sysctl");
        assert!(
            err.starts_with(&format!("cannot read {}: ", missing.display())),
            "{err}"
        );
        // A setting that cannot be written (here: a directory where the file should be).
        let err = enable(dir.path()).expect_err("not a file");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn the_same_frontends_render_the_same_ruleset() {
        let a = table(&[(
            "127.96.0.5:80",
            frontend("default/web", "80", Kind::ClusterIp, &["127.0.0.2:1"]),
        )]);
        let mut b = a.clone();
        assert_eq!(render("minik-n1", &a, None), render("minik-n1", &b, None));
        b.values_mut().for_each(|f| {
            f.backends.push(Backend {
                addr: "127.0.0.3:1".parse().unwrap(),
                local: false,
            })
        });
        assert_ne!(render("minik-n1", &a, None), render("minik-n1", &b, None));
        assert_ne!(render("minik-n1", &a, None), render("minik-n2", &a, None));
        assert_ne!(
            render("minik-n1", &a, None),
            render("minik-n1", &a, Some(cidr("10.244.0.0/16")))
        );
    }
}
