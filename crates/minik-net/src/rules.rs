//! The pod network's nftables table, `ip minik-net-NODE`: what pods may reach beyond the
//! cluster, and the pods' hostPorts. Rendered as the text of one `nft -f -` transaction that
//! replaces the whole table (a pure function: the same settings give the same text), applied
//! from a thread inside the node's network namespace. In the table:
//!
//! - egress on: `postrouting` masquerades pod traffic (source in the node's pod CIDR) to any
//!   destination outside the cluster and service CIDRs, as every CNI does by default;
//! - egress off: `forward` drops any packet from the cluster CIDR to a destination outside the
//!   cluster CIDR, the service CIDR and the nodes' addresses, so no pod packet leaves the
//!   machine (and nothing is masqueraded). Only packets of connections a pod opened: the
//!   answers of a pod to a client beyond the cluster (through a hostPort or a node port) pass;
//! - hostPorts: `prerouting` (other hosts, pods) and `output` (the node itself) DNAT a
//!   connection to a local address and a hostPort to the pod's address and container port, as
//!   the CNI `portmap` plugin does. A pod reaching its own hostPort is masqueraded (hairpin),
//!   and so is a connection from the node's loopback (`127.0.0.1:hostPort`), which the bridge
//!   carries thanks to its `route_localnet`; `filter-prerouting` drops loopback addresses
//!   arriving from the bridge, so pods cannot use that to reach the node's loopback services.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cidr::Cidr;
use crate::Error;

/// The loopback network.
const LOOPBACK: &str = "127.0.0.0/8";

/// The protocol of a hostPort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// nftables' name of the protocol.
    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A pod's container port published on the node (`hostPort`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub protocol: Protocol,
    /// Only connections to this node address (`hostIP`); every local address when `None`.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// What the table is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rules<'a> {
    pub table: &'a str,
    pub bridge: &'a str,
    pub pod_cidr: Cidr,
    pub cluster_cidr: Cidr,
    pub service_cidr: Cidr,
    /// Addresses pods may reach beyond the two CIDRs when egress is off: the nodes'.
    pub node_addresses: &'a BTreeSet<Ipv4Addr>,
    pub egress: bool,
    pub host_ports: &'a BTreeSet<HostPort>,
}

/// The name of the table of node `node`'s pod network.
pub(crate) fn table_name(node: &str) -> String {
    format!("minik-net-{node}")
}

/// The whole table, as one `nft -f` transaction that replaces whatever it held.
pub(crate) fn render(rules: &Rules) -> String {
    let Rules {
        table,
        bridge,
        pod_cidr,
        cluster_cidr,
        service_cidr,
        node_addresses,
        egress,
        host_ports,
    } = rules;
    let mut out = String::new();
    // `add` then `delete` empties a table that may or may not be there, in one transaction.
    let _ = writeln!(out, "add table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");

    let _ = writeln!(out, "\tchain filter-prerouting {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook prerouting priority -150; policy accept;"
    );
    let _ = writeln!(out, "\t\tiifname \"{bridge}\" ip daddr {LOOPBACK} drop");
    let _ = writeln!(out, "\t\tiifname \"{bridge}\" ip saddr {LOOPBACK} drop");
    let _ = writeln!(out, "\t}}");

    let _ = writeln!(out, "\tchain forward {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook forward priority 0; policy accept;"
    );
    if !egress {
        // The set's elements must not overlap: node addresses inside the CIDRs add nothing.
        let mut allowed = vec![cluster_cidr.to_string(), service_cidr.to_string()];
        allowed.extend(
            node_addresses
                .iter()
                .filter(|a| {
                    !cluster_cidr.contains(**a) && !service_cidr.contains(**a) && !a.is_loopback()
                })
                .map(Ipv4Addr::to_string),
        );
        let _ = writeln!(
            out,
            "\t\tct direction original ip saddr {cluster_cidr} ip daddr != {{ {} }} counter drop \
             comment \"egress off\"",
            allowed.join(", ")
        );
    }
    let _ = writeln!(out, "\t}}");

    for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
        let _ = writeln!(out, "\tchain {chain} {{");
        let _ = writeln!(
            out,
            "\t\ttype nat hook {hook} priority -100; policy accept;"
        );
        if !host_ports.is_empty() {
            let _ = writeln!(out, "\t\tfib daddr type local jump hostports");
        }
        let _ = writeln!(out, "\t}}");
    }

    let _ = writeln!(out, "\tchain hostports {{");
    for port in host_ports.iter() {
        let _ = write!(out, "\t\t");
        if let Some(host_ip) = port.host_ip {
            let _ = write!(out, "ip daddr {host_ip} ");
        }
        let _ = writeln!(
            out,
            "{} dport {} dnat to {}:{}",
            port.protocol.nft(),
            port.host_port,
            port.pod_ip,
            port.container_port
        );
    }
    let _ = writeln!(out, "\t}}");

    let _ = writeln!(out, "\tchain postrouting {{");
    let _ = writeln!(
        out,
        "\t\ttype nat hook postrouting priority 100; policy accept;"
    );
    let hairpins: BTreeSet<Ipv4Addr> = host_ports.iter().map(|p| p.pod_ip).collect();
    for pod_ip in hairpins {
        let _ = writeln!(
            out,
            "\t\tip saddr {pod_ip} ip daddr {pod_ip} masquerade comment \"hairpin\""
        );
    }
    let _ = writeln!(
        out,
        "\t\tip saddr {LOOPBACK} oifname \"{bridge}\" masquerade comment \"hostPort from loopback\""
    );
    if *egress {
        let _ = writeln!(
            out,
            "\t\tip saddr {pod_cidr} ip daddr != {{ {cluster_cidr}, {service_cidr} }} masquerade \
             comment \"egress\""
        );
    }
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "}}");
    out
}

/// Applies `ruleset` in the network namespace at `netns` (the agent's when `None`).
pub(crate) async fn apply(netns: Option<&Path>, ruleset: String) -> Result<(), Error> {
    crate::netns::run_in_async(netns, move || nft(&["-f", "-"], &ruleset)).await?
}

/// Deletes table `table` in the network namespace at `netns`; one that is not there is no error.
pub(crate) async fn remove(netns: Option<&Path>, table: &str) -> Result<(), Error> {
    // `add` first: deleting a table that is not there is an error, adding one that is is not.
    let ruleset = format!("add table ip {table}\ndelete table ip {table}\n");
    apply(netns, ruleset).await
}

/// Whether table `table` is in the network namespace at `netns`.
#[cfg(test)]
pub(crate) async fn exists(netns: Option<&Path>, table: &str) -> Result<bool, Error> {
    let table = table.to_string();
    crate::netns::run_in_async(netns, move || {
        Ok(nft(&["list", "table", "ip", &table], "").is_ok())
    })
    .await?
}

/// Runs `nft ARGS` with `input` on its stdin, for the pod network's own uses.
pub(crate) fn nft(args: &[&str], input: &str) -> Result<(), Error> {
    Ok(run(args, Some(input))?)
}

/// A failed `nft` command: the command line, and nft's own words (its stderr) or why it could
/// not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct NftFailure {
    pub command: String,
    pub message: String,
}

impl From<NftFailure> for Error {
    fn from(failure: NftFailure) -> Error {
        Error::Nft {
            command: failure.command,
            message: failure.message,
        }
    }
}

/// Runs `nft ARGS`, with `input` on its stdin (nothing when `None`), in the calling thread's
/// network namespace, and waits for it. Its stderr is the error. The one nft runner of the pod
/// network and of the node's Service proxy.
pub fn run(args: &[&str], input: Option<&str>) -> Result<(), NftFailure> {
    let command = format!("nft {}", args.join(" "));
    let fail = |message: String| NftFailure {
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
                "cannot run nft: {e} (install nftables, which has it)"
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

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn rules<'a>(
        egress: bool,
        node_addresses: &'a BTreeSet<Ipv4Addr>,
        host_ports: &'a BTreeSet<HostPort>,
    ) -> Rules<'a> {
        Rules {
            table: "minik-net-node-1",
            bridge: "minik1a2b3c4d",
            pod_cidr: cidr("10.244.1.0/24"),
            cluster_cidr: cidr("10.244.0.0/16"),
            service_cidr: cidr("10.96.0.0/12"),
            node_addresses,
            egress,
            host_ports,
        }
    }

    fn host_ports() -> BTreeSet<HostPort> {
        [
            HostPort {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                pod_ip: ip("10.244.1.5"),
                container_port: 80,
            },
            HostPort {
                protocol: Protocol::Udp,
                host_ip: Some(ip("192.168.0.2")),
                host_port: 5353,
                pod_ip: ip("10.244.1.6"),
                container_port: 53,
            },
        ]
        .into()
    }

    #[test]
    fn egress_off_with_host_ports() {
        let addresses: BTreeSet<Ipv4Addr> = [
            ip("127.0.0.1"),
            ip("192.168.0.2"),
            ip("192.168.0.3"),
            ip("10.244.1.1"),
        ]
        .into();
        let ports = host_ports();
        let text = render(&rules(false, &addresses, &ports));
        let expected = "\
add table ip minik-net-node-1
delete table ip minik-net-node-1
table ip minik-net-node-1 {
\tchain filter-prerouting {
\t\ttype filter hook prerouting priority -150; policy accept;
\t\tiifname \"minik1a2b3c4d\" ip daddr 127.0.0.0/8 drop
\t\tiifname \"minik1a2b3c4d\" ip saddr 127.0.0.0/8 drop
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tct direction original ip saddr 10.244.0.0/16 ip daddr != { 10.244.0.0/16, 10.96.0.0/12, 192.168.0.2, 192.168.0.3 } counter drop comment \"egress off\"
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tfib daddr type local jump hostports
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump hostports
\t}
\tchain hostports {
\t\ttcp dport 8080 dnat to 10.244.1.5:80
\t\tip daddr 192.168.0.2 udp dport 5353 dnat to 10.244.1.6:53
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tip saddr 10.244.1.5 ip daddr 10.244.1.5 masquerade comment \"hairpin\"
\t\tip saddr 10.244.1.6 ip daddr 10.244.1.6 masquerade comment \"hairpin\"
\t\tip saddr 127.0.0.0/8 oifname \"minik1a2b3c4d\" masquerade comment \"hostPort from loopback\"
\t}
}
";
        assert_eq!(text, expected);
    }

    #[test]
    fn egress_on_without_host_ports() {
        let (addresses, ports) = (BTreeSet::new(), BTreeSet::new());
        let text = render(&rules(true, &addresses, &ports));
        assert!(!text.contains("drop comment \"egress off\""));
        assert!(!text.contains("jump hostports"));
        assert!(text.contains(
            "\t\tip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16, 10.96.0.0/12 } masquerade \
             comment \"egress\"\n"
        ));
        // Pure: the same settings give the same text.
        assert_eq!(text, render(&rules(true, &addresses, &ports)));
    }

    /// nft itself checks the rendered tables (`nft -c`: nothing changes in the kernel).
    #[test]
    fn nft_accepts_the_rendered_tables() {
        if which_nft().is_none() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the nft command is missing (install nftables)");
            }
            eprintln!("skipped: no nft command");
            return;
        }
        let addresses: BTreeSet<Ipv4Addr> = [ip("192.168.0.2")].into();
        let ports = host_ports();
        let empty = BTreeSet::new();
        for egress in [false, true] {
            for ports in [&ports, &empty] {
                let text = render(&rules(egress, &addresses, ports));
                if let Err(e) = nft(&["-c", "-f", "-"], &text) {
                    // Checking needs CAP_NET_ADMIN; only a refused ruleset is a failure.
                    let message = e.to_string();
                    if message.contains("Operation not permitted") {
                        eprintln!("skipped: nft -c needs CAP_NET_ADMIN");
                        return;
                    }
                    panic!("nft refused\n{text}\n{message}");
                }
            }
        }
        let err = nft(&["-c", "-f", "-"], "table ip x { chain y { bogus } }").unwrap_err();
        assert!(
            err.to_string().starts_with("`nft -c -f -` failed: "),
            "{err}"
        );
    }

    fn which_nft() -> Option<std::path::PathBuf> {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nft"))
                .find(|p| p.is_file())
        })
    }
}
