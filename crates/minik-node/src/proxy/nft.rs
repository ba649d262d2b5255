//! The nftables mode of the Service proxy: instead of listening, the agent programs the
//! kernel to rewrite the destination of each new connection to a Service address (DNAT) to one
//! of its ready endpoints, as kube-proxy's nftables mode does. The bytes then never go through
//! a user-space process.
//!
//! Each agent owns one table, `ip minik-NODE`, and replaces it whole in one `nft -f -`
//! transaction whenever the rendered ruleset changes; several agents on one host keep tables
//! of their own (the first one's DNAT wins, they say the same). In the table:
//!
//! - `nat-output` (local clients: every client of a ClusterIP, which is a loopback address) and
//!   `nat-prerouting` (remote clients of node ports and LoadBalancer ports), both at the DNAT
//!   priority (-100), look the destination up in `service-ips` (`address . tcp . port`:
//!   ClusterIPs and LoadBalancer ports on the node address) and, for any local address, in
//!   `service-nodeports` (`tcp . port`), and go to the chain of the Service port;
//! - `svc-NS/NAME/PORT` spreads new connections over the ready endpoints in turn
//!   (`numgen inc mod N`); `ext-NS/NAME/PORT` first marks the connection, so that if its
//!   endpoint is on another host it is masqueraded (`nat-postrouting`) and the answers come
//!   back through this one;
//! - a Service port without ready endpoints is in `no-endpoint-ips` / `no-endpoint-nodeports`,
//!   which `filter-output` and `filter-prerouting` (before the DNAT) check for new
//!   connections: they are refused with a TCP reset.
//!
//! A local client's connection to a ClusterIP (or to `127.0.0.1:nodePort`) has a loopback
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
//! changes and even the table's removal. Only IPv4 is programmed (ClusterIPs are IPv4).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Once};

use super::table::{Frontend, Kind};

/// The bit of the packet mark that asks `nat-postrouting` to masquerade a connection that
/// came in through a node port or LoadBalancer port and leaves the host.
pub(crate) const MASQUERADE_MARK: u32 = 0x4000;

/// The chain that refuses new connections to a Service port without ready endpoints.
const REJECT_CHAIN: &str = "reject-no-endpoints";

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
pub(crate) fn unsupported(frontends: &BTreeMap<SocketAddr, Frontend>) -> Vec<SocketAddr> {
    frontends.keys().filter(|a| !a.is_ipv4()).copied().collect()
}

/// The whole ruleset of table `ip TABLE` for `frontends`, as one `nft -f` transaction that
/// replaces whatever the table held (a stale one of an earlier run included). A pure function:
/// the same frontends give the same text, so comparing texts tells whether to apply.
pub(crate) fn render(table: &str, frontends: &BTreeMap<SocketAddr, Frontend>) -> String {
    // Service port (namespace/name/port) -> its endpoints; the frontends of one Service port
    // share them.
    let mut targets: BTreeMap<String, Vec<(Ipv4Addr, u16)>> = BTreeMap::new();
    let mut service_ips = Vec::new();
    let mut service_nodeports = Vec::new();
    let mut no_endpoint_ips = Vec::new();
    let mut no_endpoint_nodeports = Vec::new();
    // The Service ports with node port or LoadBalancer frontends (they need an `ext-` chain).
    let mut external = BTreeSet::new();
    for (addr, frontend) in frontends {
        let SocketAddr::V4(addr) = addr else {
            continue;
        };
        let id = format!("{}/{}", frontend.service, frontend.port);
        let backends: Vec<(Ipv4Addr, u16)> = frontend
            .backends
            .iter()
            .filter_map(|b| match b.ip() {
                IpAddr::V4(ip) => Some((ip, b.port())),
                IpAddr::V6(_) => None,
            })
            .collect();
        let reachable = !backends.is_empty();
        targets.entry(id.clone()).or_insert(backends);
        let verdict = match frontend.kind {
            Kind::ClusterIp => format!("goto svc-{id}"),
            Kind::NodePort | Kind::LoadBalancer => {
                external.insert(id.clone());
                format!("goto ext-{id}")
            }
        };
        let (ip, port) = (addr.ip(), addr.port());
        match (frontend.kind, reachable) {
            (Kind::NodePort, true) => service_nodeports.push(format!("tcp . {port} : {verdict}")),
            (Kind::NodePort, false) => {
                no_endpoint_nodeports.push(format!("tcp . {port} : goto {REJECT_CHAIN}"))
            }
            (_, true) => service_ips.push(format!("{ip} . tcp . {port} : {verdict}")),
            (_, false) => {
                no_endpoint_ips.push(format!("{ip} . tcp . {port} : goto {REJECT_CHAIN}"))
            }
        }
    }

    let mut out = String::new();
    // `add` makes sure there is a table to delete; the deletion takes every chain and map of
    // an earlier ruleset with it; all in one transaction, so packets see the old rules or the
    // new ones, never none.
    let _ = writeln!(out, "add table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    let address_port = "ipv4_addr . inet_proto . inet_service";
    let port = "inet_proto . inet_service";
    map(&mut out, "service-ips", address_port, &service_ips);
    map(&mut out, "service-nodeports", port, &service_nodeports);
    map(&mut out, "no-endpoint-ips", address_port, &no_endpoint_ips);
    map(
        &mut out,
        "no-endpoint-nodeports",
        port,
        &no_endpoint_nodeports,
    );
    // With route_localnet on, the kernel would route packets from other hosts to loopback
    // addresses (before any translation: no connection of ours arrives that way).
    let foreign_loopback = format!("iifname != \"lo\" ip daddr {LOOPBACK} drop");
    chain(
        &mut out,
        "filter-prerouting",
        Some("type filter hook prerouting priority -110; policy accept;"),
        &[&foreign_loopback, "ct state new jump endpoints-check"],
    );
    chain(
        &mut out,
        "filter-output",
        Some("type filter hook output priority -110; policy accept;"),
        &["ct state new jump endpoints-check"],
    );
    chain(
        &mut out,
        "endpoints-check",
        None,
        &[
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-ips",
            "fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports",
        ],
    );
    chain(&mut out, REJECT_CHAIN, None, &["reject with tcp reset"]);
    chain(
        &mut out,
        "nat-prerouting",
        Some("type nat hook prerouting priority -100; policy accept;"),
        &["jump services"],
    );
    chain(
        &mut out,
        "nat-output",
        Some("type nat hook output priority -100; policy accept;"),
        &["jump services"],
    );
    chain(
        &mut out,
        "nat-postrouting",
        Some("type nat hook postrouting priority 100; policy accept;"),
        &[
            &format!(
                "meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} oifname != \"lo\" masquerade"
            ),
            // A local client of a Service address (a loopback source) sent to another host.
            &format!("ct status dnat ip saddr {LOOPBACK} oifname != \"lo\" masquerade"),
        ],
    );
    chain(
        &mut out,
        "services",
        None,
        &[
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "fib daddr type local meta l4proto . th dport vmap @service-nodeports",
        ],
    );
    for (id, backends) in &targets {
        if backends.is_empty() {
            continue;
        }
        if external.contains(id) {
            chain(
                &mut out,
                &format!("ext-{id}"),
                None,
                &[
                    &format!("meta mark set meta mark | {MASQUERADE_MARK:#x}"),
                    &format!("goto svc-{id}"),
                ],
            );
        }
        let dnat = match backends.as_slice() {
            [(ip, port)] => format!("meta l4proto tcp dnat to {ip}:{port}"),
            many => {
                let elements: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(i, (ip, port))| format!("{i} : {ip} . {port}"))
                    .collect();
                format!(
                    "meta l4proto tcp dnat ip addr . port to numgen inc mod {} map {{ {} }}",
                    many.len(),
                    elements.join(", ")
                )
            }
        };
        chain(&mut out, &format!("svc-{id}"), None, &[&dnat]);
    }
    out.push_str("}\n");
    out
}

fn map(out: &mut String, name: &str, key: &str, elements: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{");
    let _ = writeln!(out, "\t\ttype {key} : verdict");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(out, "\t}}");
}

fn chain(out: &mut String, name: &str, base: Option<&str>, rules: &[&str]) {
    let _ = writeln!(out, "\tchain {name} {{");
    if let Some(base) = base {
        let _ = writeln!(out, "\t\t{base}");
    }
    for rule in rules {
        let _ = writeln!(out, "\t\t{rule}");
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

/// A failed `nft` command.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub(crate) struct NftError {
    pub command: String,
    pub message: String,
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

    /// Applies `ruleset` in one transaction (`nft -f -`). Blocks while nft runs.
    pub(crate) fn apply(&self, ruleset: &str) -> Result<(), NftError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        run(&["-f", "-"], Some(ruleset))
    }

    /// Deletes the table; one that is not there is no error. Blocks while nft runs.
    pub(crate) fn delete(&self) -> Result<(), NftError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match run(&["delete", "table", "ip", &self.table], None) {
            Err(e) if e.message.contains("No such file or directory") => Ok(()),
            other => other,
        }
    }
}

/// Runs `nft ARGS` with `input` on its stdin; its stderr is the error.
fn run(args: &[&str], input: Option<&str>) -> Result<(), NftError> {
    let command = format!("nft {}", args.join(" "));
    let fail = |message: String| NftError {
        command: command.clone(),
        message,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run nft: {e} (the nftables mode needs the nft command: install \
                 nftables, or use --proxy-mode userspace)"
            ))
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // nft reads the whole input before it answers; a write error shows in its exit.
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for nft: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(fail(if stderr.is_empty() {
        format!("nft exited with {}", output.status)
    } else {
        stderr
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend(service: &str, port: &str, kind: Kind, backends: &[&str]) -> Frontend {
        Frontend {
            service: service.into(),
            port: port.into(),
            kind,
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        }
    }

    /// The Service default/web's port `http` as ClusterIP 127.96.0.5:8080, NodePort
    /// 127.0.0.9:30080 and LoadBalancer 127.0.0.9:8080, to `ready`.
    fn web(ready: &[&str]) -> BTreeMap<SocketAddr, Frontend> {
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

    fn table(entries: &[(&str, Frontend)]) -> BTreeMap<SocketAddr, Frontend> {
        entries
            .iter()
            .map(|(a, f)| (a.parse().unwrap(), f.clone()))
            .collect()
    }

    /// The chains and maps that every ruleset has, between the maps and the Service chains.
    const SKELETON: &str = "\tchain filter-prerouting {
\t\ttype filter hook prerouting priority -110; policy accept;
\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 drop
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
\t\treject with tcp reset
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
        assert_eq!(render(&table_name("n1"), &BTreeMap::new()), expected);
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
            "add table ip minik-n1
delete table ip minik-n1
table ip minik-n1 {{
\tmap service-ips {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = {{ 127.0.0.9 . tcp . 8080 : goto ext-default/web/http, 127.96.0.5 . tcp . 8080 : goto svc-default/web/http, 127.96.0.6 . tcp . 9000 : goto svc-default/plain/9000 }}
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
\t\tmeta l4proto tcp dnat to 127.0.0.2:32000
\t}}
\tchain ext-default/web/http {{
\t\tmeta mark set meta mark | 0x4000
\t\tgoto svc-default/web/http
\t}}
\tchain svc-default/web/http {{
\t\tmeta l4proto tcp dnat ip addr . port to numgen inc mod 3 map {{ 0 : 127.0.0.2 . 31000, 1 : 127.0.0.3 . 31000, 2 : 127.0.0.5 . 31005 }}
\t}}
}}
"
        );
        assert_eq!(render("minik-n1", &frontends), expected);
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
        ]);
        let text = render("minik-n1", &frontends);
        assert!(text.contains(
            "\tmap no-endpoint-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 127.0.0.9 . tcp . 80 : goto reject-no-endpoints, 127.96.0.7 . tcp . 80 : goto reject-no-endpoints }
\t}
\tmap no-endpoint-nodeports {
\t\ttype inet_proto . inet_service : verdict
\t\telements = { tcp . 31234 : goto reject-no-endpoints }
\t}
"
        ), "{text}");
        // Nothing is translated, and no chain is left for the Service.
        assert!(!text.contains("elements = { 127.96"), "{text}");
        assert!(!text.contains("cart {"), "{text}");
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
        let text = render("minik-n1", &frontends);
        assert!(!text.contains("::1"), "{text}");
        assert!(!text.contains("30080"), "{text}");
        assert!(
            text.contains("\t\tmeta l4proto tcp dnat to 127.0.0.2:31000\n"),
            "{text}"
        );
    }

    /// nft itself checks the rendered rulesets (`nft -c`: nothing is changed in the kernel),
    /// and a ruleset it refuses gives an error naming the command and quoting nft.
    #[test]
    fn nft_accepts_the_rulesets_and_its_refusals_are_quoted() {
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
        ]));
        let name = format!("minik-unit-{}", std::process::id());
        for ruleset in [render(&name, &BTreeMap::new()), render(&name, &frontends)] {
            if let Err(e) = run(&["-c", "-f", "-"], Some(&ruleset)) {
                panic!("{e}\n{ruleset}");
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
    fn the_same_frontends_render_the_same_text() {
        let a = table(&[(
            "127.96.0.5:80",
            frontend("default/web", "80", Kind::ClusterIp, &["127.0.0.2:1"]),
        )]);
        let mut b = a.clone();
        assert_eq!(render("minik-n1", &a), render("minik-n1", &b));
        b.values_mut()
            .for_each(|f| f.backends.push("127.0.0.3:1".parse().unwrap()));
        assert_ne!(render("minik-n1", &a), render("minik-n1", &b));
        assert_ne!(render("minik-n1", &a), render("minik-n2", &a));
    }
}
