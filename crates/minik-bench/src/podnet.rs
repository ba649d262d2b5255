//! `minik-bench podnet`: the pod network of issue 19, measured on the public APIs the agent
//! uses, each figure against a baseline measured in the same run. Needs root and `nft`.
//!
//! Everything lives in network namespaces the bench makes and removes (a [`Namespaces`] guard
//! unpins them even when a step fails, and every link, route, address and nftables table inside
//! goes with them): a "host" namespace holding two nodes' pod networks (two
//! [`PodNetwork`]s, pod CIDRs 10.244.1.0/24 and 10.244.2.0/24 of the cluster CIDR
//! 10.244.0.0/16, each node's address the host's loopback, as with `minik up --nodes 2`), one
//! pod on each node (`a` and `b`), the Service proxy's nftables table for one Service `web`
//! (ClusterIP 10.96.0.50, its endpoint pod `b`), rendered by
//! [`minik_node::proxy::nftables_ruleset`] and applied in the host, and the node's cluster DNS
//! ([`minik_dns::serve`], the zone of that Service, as the agent serves it) on node `a`'s bridge
//! address. No packet leaves these namespaces.
//!
//! 1. Pod to pod across the two nodes: TCP bulk transfer (1 GiB) from pod `a` to pod `b`
//!    against the same transfer over the host namespace's loopback (goal >= 0.8x), and 1-byte
//!    request/response round trips a→b and b→a against loopback.
//! 2. Through the ClusterIP against straight to pod `b`'s IP, from pod `a`: the same transfer
//!    (goal >= 0.9x), round trips, and a new connection with one exchange.
//! 3. DNS from pod `a` to the node's DNS server on its bridge address: A queries of
//!    `web.default.svc.cluster.local` from a few concurrent clients, against a UDP echo server
//!    at the same address (goals: p99 <= 1 ms, >= 20,000 queries/s).
//! 4. Pod network setup: [`PodNetwork::add_pod`] for a fresh namespace, over many pods, against
//!    making the namespace alone (goal p50 <= 10 ms).
//!
//! Figures and baselines alternate within each round (their order rotating), so a drift of the
//! shared machine falls on both; the medians over the rounds are reported.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use minik_api::k8s_openapi::api::core::v1::{Endpoints, Service};
use minik_dns::{ClusterDomain, SharedZone, Upstream, Zone};
use minik_net::{netns, Cidr, Config, Peer, PodNetwork};
use minik_node::proxy::{nftables_ruleset, ProxyOptions};
use serde_json::json;

use crate::machine::Machine;
use crate::report::{print_and_save, Row, Target, Unit};
use crate::stats::{ms, Summary};

const CLUSTER_CIDR: &str = "10.244.0.0/16";
const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The two nodes: name, pod CIDR, and the uid of the one pod the traffic runs between.
const NODE_A: (&str, &str, &str) = ("bench-a", "10.244.1.0/24", "bench-pod-a");
const NODE_B: (&str, &str, &str) = ("bench-b", "10.244.2.0/24", "bench-pod-b");
/// The Service in front of pod `b`.
const SERVICE: &str = "web";
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);
/// The servers' ports (in the pods and on the host's loopback) and the Service's port for
/// each: bulk transfer, 1-byte echo, one exchange per connection.
const BULK: (u16, u16) = (8080, 80);
const ECHO: (u16, u16) = (8081, 81);
const CONNECT: (u16, u16) = (8082, 82);
/// The DNS server's port on the bridge address, and its baseline's.
const DNS_PORT: u16 = 53;
const UDP_ECHO_PORT: u16 = 5353;
/// How long a client waits for a connection or an answer before the run fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a DNS client waits for an answer before counting the query lost.
const DNS_TIMEOUT: Duration = Duration::from_millis(200);

/// The goals of issue 19.
const GOAL_POD_TO_POD: f64 = 0.8;
const GOAL_CLUSTER_IP: f64 = 0.9;
const GOAL_DNS_P99_MS: f64 = 1.0;
const GOAL_DNS_RATE: f64 = 20_000.0;
const GOAL_SETUP_P50_MS: f64 = 10.0;

#[derive(clap::Args, Debug)]
pub struct PodnetArgs {
    /// MiB per bulk transfer.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Rounds of every figure and its baseline (3 or more); medians over the rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// 1-byte round trips per latency measurement.
    #[arg(long, default_value_t = 10_000)]
    round_trips: usize,
    /// New connections per connection measurement.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Concurrent DNS clients (one UDP socket and thread each, one query in flight).
    #[arg(long, default_value_t = 4)]
    dns_clients: usize,
    /// Seconds of each DNS and echo phase.
    #[arg(long, default_value_t = 2.0)]
    dns_seconds: f64,
    /// Pods attached (fresh namespaces) for the setup figure.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: PodnetArgs) -> anyhow::Result<()> {
    ensure!(args.rounds >= 3, "--rounds must be 3 or more");
    ensure!(
        args.mib > 0 && args.round_trips > 0 && args.connections > 0 && args.dns_clients > 0,
        "--mib, --round-trips, --connections and --dns-clients must be positive"
    );
    ensure!(args.dns_seconds > 0.0, "--dns-seconds must be positive");
    ensure!(
        (50..=240).contains(&args.pods),
        "--pods must be from 50 to 240 (they share node a's /24)"
    );
    ensure!(
        nix::unistd::geteuid().is_root(),
        "minik-bench podnet needs root (network namespaces, links, nftables)"
    );
    minik_net::nft::run(&["--version"], None)
        .context("minik-bench podnet needs the nft command (install nftables)")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let namespaces = Namespaces::new()?;
    let machine = Machine::describe(namespaces.dir.path());
    println!("Pod network (issue 19): two nodes' pod networks in one host network namespace");
    for line in machine.lines() {
        println!("  {line}");
    }
    let lab = runtime.block_on(Lab::build(namespaces))?;
    println!(
        "  nodes: {} {} (pod {}), {} {} (pod {}); Service {SERVICE} {CLUSTER_IP}; br_netfilter in the host namespace: {}",
        NODE_A.0,
        NODE_A.1,
        lab.ip_a,
        NODE_B.0,
        NODE_B.1,
        lab.ip_b,
        if lab.node_a.bridged_traffic_filtered() {
            "yes"
        } else {
            "no"
        },
    );
    let measured = measure(&runtime, &lab, &args);
    let torn_down = runtime.block_on(lab.tear_down());
    let rows = measured?;
    torn_down?;
    println!(
        "  load average at the end (1, 5, 15 min): {}",
        load_average()
    );
    print_and_save("podnet", &rows, args.json.as_deref())
}

/// Network namespaces pinned in a temporary directory; dropping this unpins them all, and each
/// namespace ends (with its links, addresses, routes and nftables tables) once no socket or
/// thread of this process is left in it.
struct Namespaces {
    dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

impl Namespaces {
    fn new() -> anyhow::Result<Namespaces> {
        Ok(Namespaces {
            dir: tempfile::Builder::new()
                .prefix("minik-bench-podnet-")
                .tempdir()?,
            paths: Vec::new(),
        })
    }

    /// A new namespace `name`, loopback up.
    async fn create(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        netns::create(&path)
            .await
            .with_context(|| format!("cannot make network namespace {name}"))?;
        self.paths.push(path.clone());
        Ok(path)
    }

    /// Removes namespace `path` now (it was made by [`create`](Self::create)).
    fn remove(&mut self, path: &Path) -> anyhow::Result<()> {
        netns::remove(path)?;
        self.paths.retain(|p| p != path);
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for path in self.paths.iter().rev() {
            if let Err(e) = netns::remove(path) {
                eprintln!("cannot remove network namespace {}: {e}", path.display());
            }
        }
    }
}

/// The bench's host: two nodes, a pod on each, the proxy's table. Declared before
/// `namespaces`, so the networks go before their namespaces even when a step fails.
struct Lab {
    node_a: PodNetwork,
    node_b: PodNetwork,
    proxy_table: String,
    host: PathBuf,
    pod_a: PathBuf,
    pod_b: PathBuf,
    ip_a: Ipv4Addr,
    ip_b: Ipv4Addr,
    namespaces: Namespaces,
}

impl Lab {
    async fn build(mut namespaces: Namespaces) -> anyhow::Result<Lab> {
        let host = namespaces.create("host").await?;
        let node_a = start_node(&namespaces, &host, NODE_A).await?;
        let node_b = start_node(&namespaces, &host, NODE_B).await?;
        // Both nodes on this host: their address is the host's, so their bridges need no
        // route, as with `minik up --nodes 2`.
        let peers = [NODE_A, NODE_B].map(|(name, pod_cidr, _)| Peer {
            node_name: name.into(),
            pod_cidr: cidr(pod_cidr),
            address: Ipv4Addr::LOCALHOST,
        });
        node_a.set_peers(&peers).await?;
        node_b.set_peers(&peers).await?;
        let pod_a = namespaces.create("pod-a").await?;
        let ip_a = node_a.add_pod(NODE_A.2, &pod_a).await?;
        let pod_b = namespaces.create("pod-b").await?;
        let ip_b = node_b.add_pod(NODE_B.2, &pod_b).await?;

        let (service, endpoints) = web_service(ip_b);
        let ruleset = nftables_ruleset(
            NODE_A.0,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[&service],
            &[&endpoints],
            &ProxyOptions {
                cluster_cidr: Some(cidr(CLUSTER_CIDR)),
                local_dns: None,
            },
        );
        let proxy_table = ruleset.table().to_owned();
        nft_in(&host, ruleset.replacing()).context("applying the proxy's ruleset")?;
        Ok(Lab {
            node_a,
            node_b,
            proxy_table,
            host,
            pod_a,
            pod_b,
            ip_a,
            ip_b,
            namespaces,
        })
    }

    /// Removes what was made, in the agent's way (the pods, the proxy's table, the networks),
    /// then the namespaces.
    async fn tear_down(self) -> anyhow::Result<()> {
        let Lab {
            node_a,
            node_b,
            proxy_table,
            host,
            namespaces,
            ..
        } = self;
        let mut failures = Vec::new();
        for (node, uid) in [(&node_a, NODE_A.2), (&node_b, NODE_B.2)] {
            if let Err(e) = node.remove_pod(uid).await {
                failures.push(format!("removing pod {uid}: {e}"));
            }
        }
        let delete = format!("add table ip {proxy_table}\ndelete table ip {proxy_table}\n");
        if let Err(e) = nft_in(&host, delete) {
            failures.push(format!("deleting table {proxy_table}: {e:#}"));
        }
        for node in [node_a, node_b] {
            if let Err(e) = node.stop().await {
                failures.push(format!("stopping a pod network: {e}"));
            }
        }
        drop(namespaces);
        if !failures.is_empty() {
            bail!("tearing down: {}", failures.join("; "));
        }
        Ok(())
    }
}

async fn start_node(
    namespaces: &Namespaces,
    host: &Path,
    (name, pod_cidr, _): (&str, &str, &str),
) -> anyhow::Result<PodNetwork> {
    PodNetwork::start(Config {
        node_name: name.into(),
        pod_cidr: cidr(pod_cidr),
        cluster_cidr: cidr(CLUSTER_CIDR),
        service_cidr: cidr(SERVICE_CIDR),
        egress: false,
        mtu: minik_net::DEFAULT_MTU,
        ipam_dir: namespaces.dir.path().join(format!("ipam-{name}")),
        host_netns: Some(host.to_path_buf()),
    })
    .await
    .with_context(|| format!("starting node {name}'s pod network"))
}

fn cidr(text: &str) -> Cidr {
    text.parse().expect("the bench's CIDRs are valid")
}

/// Runs the `nft -f -` transaction `text` in namespace `netns`.
fn nft_in(netns: &Path, text: String) -> anyhow::Result<()> {
    netns::run_in(Some(netns), move || {
        minik_net::nft::run(&["-f", "-"], Some(&text))
    })??;
    Ok(())
}

/// Service `web` (default namespace, ClusterIP [`CLUSTER_IP`]) with the three ports, and its
/// Endpoints: pod `b`.
fn web_service(pod_ip: Ipv4Addr) -> (Service, Endpoints) {
    let ports = [("bulk", BULK), ("echo", ECHO), ("connect", CONNECT)];
    let service = serde_json::from_value(json!({
        "metadata": {"name": SERVICE, "namespace": "default", "resourceVersion": "1"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": CLUSTER_IP.to_string(),
            "clusterIPs": [CLUSTER_IP.to_string()],
            "ports": ports.iter().map(|(name, (target, port))| json!({
                "name": name, "port": port, "targetPort": target, "protocol": "TCP"
            })).collect::<Vec<_>>(),
        }
    }))
    .expect("a valid Service");
    let endpoints = serde_json::from_value(json!({
        "metadata": {"name": SERVICE, "namespace": "default", "resourceVersion": "2"},
        "subsets": [{
            "addresses": [{"ip": pod_ip.to_string(), "nodeName": NODE_B.0}],
            "ports": ports.iter().map(|(name, (target, _))| json!({
                "name": name, "port": target, "protocol": "TCP"
            })).collect::<Vec<_>>(),
        }]
    }))
    .expect("valid Endpoints");
    (service, endpoints)
}

/// The TCP listeners of the run, made once: in pod `b` (every kind), in pod `a` (echo, for
/// b→a) and on the host namespace's loopback (every kind, the baselines). Each measurement
/// accepts from a clone of one.
struct Listeners {
    bulk_b: TcpListener,
    echo_b: TcpListener,
    connect_b: TcpListener,
    echo_a: TcpListener,
    bulk_host: TcpListener,
    echo_host: TcpListener,
    connect_host: TcpListener,
}

fn listen(netns: &Path, address: SocketAddr) -> anyhow::Result<TcpListener> {
    netns::run_in(Some(netns), move || TcpListener::bind(address))?
        .with_context(|| format!("cannot listen on {address} in {}", netns.display()))
}

impl Listeners {
    fn open(lab: &Lab) -> anyhow::Result<Listeners> {
        let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Ok(Listeners {
            bulk_b: listen(&lab.pod_b, any(BULK.0))?,
            echo_b: listen(&lab.pod_b, any(ECHO.0))?,
            connect_b: listen(&lab.pod_b, any(CONNECT.0))?,
            echo_a: listen(&lab.pod_a, any(ECHO.0))?,
            bulk_host: listen(&lab.host, local(BULK.0))?,
            echo_host: listen(&lab.host, local(ECHO.0))?,
            connect_host: listen(&lab.host, local(CONNECT.0))?,
        })
    }
}

/// The three paths of TCP, from a client namespace to a listener.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Pod `a` to pod `b`'s IP.
    PodToPod,
    /// Pod `a` to the ClusterIP (DNAT to pod `b`).
    ClusterIp,
    /// The host namespace's loopback to itself.
    Loopback,
}

const PATHS: [Way; 3] = [Way::PodToPod, Way::ClusterIp, Way::Loopback];

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::PodToPod => "pod a -> pod b IP",
            Way::ClusterIp => "pod a -> ClusterIP",
            Way::Loopback => "host loopback",
        }
    }
}

/// What one round measured.
#[derive(Default)]
struct Round {
    /// Gbit/s, by path.
    bulk: [f64; 3],
    /// Round trips by path, and b→a last.
    round_trips: [Option<Summary>; 4],
    connections: [Option<Summary>; 3],
}

/// DNS (or echo) load of one phase.
struct DnsLoad {
    rate: f64,
    summary: Summary,
    lost: usize,
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    lab: &Lab,
    args: &PodnetArgs,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    // 4. Pod network setup, first: pods start before they talk.
    let setup = runtime.block_on(pod_setup(lab, args.pods))?;
    let (create, attach, detach) = (
        Summary::of(&setup.create).context("no samples")?,
        Summary::of(&setup.attach).context("no samples")?,
        Summary::of(&setup.detach).context("no samples")?,
    );
    println!(
        "\nPod network setup, {} fresh namespaces on node a:\n  make the namespace (baseline): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n  PodNetwork::add_pod:           p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n  PodNetwork::remove_pod:        p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        args.pods,
        ms(create.p50),
        ms(create.p99),
        ms(create.max),
        ms(attach.p50),
        ms(attach.p99),
        ms(attach.max),
        ms(detach.p50),
        ms(detach.p99),
        ms(detach.max),
    );

    // 1 and 2. TCP.
    let listeners = Listeners::open(lab)?;
    let target = |path: Way, (pod_port, service_port): (u16, u16)| match path {
        Way::PodToPod => SocketAddr::from((lab.ip_b, pod_port)),
        Way::ClusterIp => SocketAddr::from((CLUSTER_IP, service_port)),
        Way::Loopback => SocketAddr::from((Ipv4Addr::LOCALHOST, pod_port)),
    };
    let client = |path: Way| match path {
        Way::Loopback => &lab.host,
        _ => &lab.pod_a,
    };
    let bytes = args.mib << 20;
    println!(
        "\nTCP, {} rounds (each: {} MiB bulk, {} 1-byte round trips, {} connections per path; order rotating):",
        args.rounds, args.mib, args.round_trips, args.connections
    );
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let mut round = Round::default();
        for k in 0..3 {
            let i = (r + k) % 3;
            let path = PATHS[i];
            let listener = if path == Way::Loopback {
                &listeners.bulk_host
            } else {
                &listeners.bulk_b
            };
            let took = bulk(listener, client(path), target(path, BULK), bytes)
                .with_context(|| format!("bulk transfer, {}", path.name()))?;
            round.bulk[i] = gbits(bytes, took);
        }
        for k in 0..4 {
            let i = (r + k) % 4;
            let (listener, from, to) = match i {
                3 => (
                    &listeners.echo_a,
                    &lab.pod_b,
                    SocketAddr::from((lab.ip_a, ECHO.0)),
                ),
                _ => {
                    let path = PATHS[i];
                    let listener = if path == Way::Loopback {
                        &listeners.echo_host
                    } else {
                        &listeners.echo_b
                    };
                    (listener, client(path), target(path, ECHO))
                }
            };
            let samples = round_trips(listener, from, to, args.round_trips)
                .with_context(|| format!("round trips to {to}"))?;
            round.round_trips[i] = Summary::of(&samples);
        }
        for k in 0..3 {
            let i = (r + k) % 3;
            let path = PATHS[i];
            let listener = if path == Way::Loopback {
                &listeners.connect_host
            } else {
                &listeners.connect_b
            };
            let samples = connections(
                listener,
                client(path),
                target(path, CONNECT),
                args.connections,
            )
            .with_context(|| format!("connections, {}", path.name()))?;
            round.connections[i] = Summary::of(&samples);
        }
        let us = |s: &Option<Summary>, f: fn(&Summary) -> Duration| {
            s.as_ref().map_or(0.0, |s| micros(f(s)))
        };
        println!(
            "  round {}: Gbit/s pod->pod {:.2}, ClusterIP {:.2}, loopback {:.2} | round trip p50/p99 us: pod a->b {:.1}/{:.1}, b->a {:.1}/{:.1}, ClusterIP {:.1}/{:.1}, loopback {:.1}/{:.1} | new connection p50 us: pod {:.1}, ClusterIP {:.1}, loopback {:.1}",
            r + 1,
            round.bulk[0],
            round.bulk[1],
            round.bulk[2],
            us(&round.round_trips[0], |s| s.p50),
            us(&round.round_trips[0], |s| s.p99),
            us(&round.round_trips[3], |s| s.p50),
            us(&round.round_trips[3], |s| s.p99),
            us(&round.round_trips[1], |s| s.p50),
            us(&round.round_trips[1], |s| s.p99),
            us(&round.round_trips[2], |s| s.p50),
            us(&round.round_trips[2], |s| s.p99),
            us(&round.connections[0], |s| s.p50),
            us(&round.connections[1], |s| s.p50),
            us(&round.connections[2], |s| s.p50),
        );
        rounds.push(round);
    }
    drop(listeners);
    let bulk_of = |i: usize| median(rounds.iter().map(|r| r.bulk[i]));
    let trip_of = |i: usize, f: fn(&Summary) -> Duration| {
        median(
            rounds
                .iter()
                .filter_map(|r| r.round_trips[i].as_ref().map(|s| micros(f(s)))),
        )
    };
    let connect_of = |i: usize, f: fn(&Summary) -> Duration| {
        median(
            rounds
                .iter()
                .filter_map(|r| r.connections[i].as_ref().map(|s| micros(f(s)))),
        )
    };
    let (pod, service, loopback) = (bulk_of(0), bulk_of(1), bulk_of(2));
    let per_round = |a: usize, b: usize| {
        rounds
            .iter()
            .map(|r| format!("{:.2}", r.bulk[a] / r.bulk[b]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  throughput ratios per round: pod->pod / loopback {}; ClusterIP / pod IP {}",
        per_round(0, 2),
        per_round(1, 0)
    );
    let mib = args.mib;
    rows.push(
        Row::new(
            format!(
                "TCP {mib} MiB pod a -> pod b across two nodes (Gbit/s; goal >= {GOAL_POD_TO_POD}x loopback)"
            ),
            pod,
            Unit::Count,
        )
        .baseline("loopback in the host namespace", loopback)
        .target(Target::AtLeast(loopback * GOAL_POD_TO_POD)),
    );
    for (what, i, f) in [
        ("p50", 0, (|s: &Summary| s.p50) as fn(&Summary) -> Duration),
        ("p99", 0, |s: &Summary| s.p99),
        ("p50", 3, |s: &Summary| s.p50),
        ("p99", 3, |s: &Summary| s.p99),
    ] {
        let direction = if i == 0 { "a -> b" } else { "b -> a" };
        rows.push(
            Row::new(
                format!("1-byte round trip pod {direction} {what} (us)"),
                trip_of(i, f),
                Unit::Count,
            )
            .baseline("loopback", trip_of(2, f)),
        );
    }
    rows.push(
        Row::new(
            format!(
                "TCP {mib} MiB pod a -> ClusterIP -> pod b (Gbit/s; goal >= {GOAL_CLUSTER_IP}x pod IP)"
            ),
            service,
            Unit::Count,
        )
        .baseline("straight to the pod IP", pod)
        .target(Target::AtLeast(pod * GOAL_CLUSTER_IP)),
    );
    for (what, f) in [
        ("p50", (|s: &Summary| s.p50) as fn(&Summary) -> Duration),
        ("p99", |s: &Summary| s.p99),
    ] {
        rows.push(
            Row::new(
                format!("1-byte round trip via ClusterIP {what} (us)"),
                trip_of(1, f),
                Unit::Count,
            )
            .baseline("pod IP", trip_of(0, f)),
        );
    }
    for (what, f) in [
        ("p50", (|s: &Summary| s.p50) as fn(&Summary) -> Duration),
        ("p99", |s: &Summary| s.p99),
    ] {
        rows.push(
            Row::new(
                format!("new connection + 1-byte exchange via ClusterIP {what} (us)"),
                connect_of(1, f),
                Unit::Count,
            )
            .baseline("pod IP", connect_of(0, f)),
        );
    }
    rows.push(
        Row::new(
            "new connection + 1-byte exchange, pod IP p50 (us)",
            connect_of(0, |s| s.p50),
            Unit::Count,
        )
        .baseline("loopback", connect_of(2, |s| s.p50)),
    );

    // 3. DNS.
    let gateway = lab.node_a.gateway();
    let servers = DnsServers::start(runtime, &lab.host, gateway, lab.ip_b)?;
    let name = format!("{SERVICE}.default.svc.cluster.local");
    let dns_at = SocketAddr::from((gateway, DNS_PORT));
    let echo_at = SocketAddr::from((gateway, UDP_ECHO_PORT));
    check_answer(&lab.pod_a, dns_at, &name)?;
    println!(
        "\nDNS from pod a to {dns_at} (A {name}), {} clients, {} rounds of {:.1} s each against a UDP echo at {echo_at}:",
        args.dns_clients, args.rounds, args.dns_seconds
    );
    let phase = Duration::from_secs_f64(args.dns_seconds);
    // Warm-up of both.
    dns_load(&lab.pod_a, dns_at, &name, args.dns_clients, phase / 4, true)?;
    dns_load(
        &lab.pod_a,
        echo_at,
        &name,
        args.dns_clients,
        phase / 4,
        false,
    )?;
    let mut dns_rounds = Vec::new();
    for r in 0..args.rounds {
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut pair: [Option<DnsLoad>; 2] = [None, None];
        for is_dns in order {
            let at = if is_dns { dns_at } else { echo_at };
            let load = dns_load(&lab.pod_a, at, &name, args.dns_clients, phase, is_dns)?;
            pair[usize::from(!is_dns)] = Some(load);
        }
        let [Some(dns), Some(echo)] = pair else {
            unreachable!("both phases ran");
        };
        println!(
            "  round {}: DNS {:.0}/s p50 {:.1} us p99 {:.1} us ({} lost) | echo {:.0}/s p50 {:.1} us p99 {:.1} us ({} lost)",
            r + 1,
            dns.rate,
            micros(dns.summary.p50),
            micros(dns.summary.p99),
            dns.lost,
            echo.rate,
            micros(echo.summary.p50),
            micros(echo.summary.p99),
            echo.lost,
        );
        dns_rounds.push((dns, echo));
    }
    drop(servers);
    let of = |dns: bool, f: fn(&DnsLoad) -> f64| {
        median(
            dns_rounds
                .iter()
                .map(|(d, e)| if dns { f(d) } else { f(e) }),
        )
    };
    let clients = args.dns_clients;
    rows.push(
        Row::new(
            format!("DNS A queries/s from a pod, {clients} clients (goal >= 20,000/s)"),
            of(true, |l| l.rate),
            Unit::PerSec,
        )
        .baseline("UDP echo, same address", of(false, |l| l.rate))
        .target(Target::AtLeast(GOAL_DNS_RATE)),
    );
    rows.push(
        Row::new(
            "DNS query latency p50",
            of(true, |l| ms(l.summary.p50)),
            Unit::Millis,
        )
        .baseline("UDP echo", of(false, |l| ms(l.summary.p50))),
    );
    rows.push(
        Row::new(
            "DNS query latency p99 (goal <= 1 ms)",
            of(true, |l| ms(l.summary.p99)),
            Unit::Millis,
        )
        .baseline("UDP echo", of(false, |l| ms(l.summary.p99)))
        .target(Target::AtMost(GOAL_DNS_P99_MS)),
    );
    let lost: usize = dns_rounds.iter().map(|(d, _)| d.lost).sum();
    rows.push(Row::new(
        "DNS queries lost (no answer in 200 ms), all rounds",
        lost as f64,
        Unit::Count,
    ));

    rows.push(
        Row::new(
            format!(
                "pod network setup, PodNetwork::add_pod p50, {} pods (goal <= 10 ms)",
                args.pods
            ),
            ms(attach.p50),
            Unit::Millis,
        )
        .baseline("making the netns alone", ms(create.p50))
        .target(Target::AtMost(GOAL_SETUP_P50_MS)),
    );
    rows.push(
        Row::new(
            "pod network setup, PodNetwork::add_pod p99",
            ms(attach.p99),
            Unit::Millis,
        )
        .baseline("making the netns alone", ms(create.p99)),
    );
    rows.push(
        Row::new(
            "pod network teardown, PodNetwork::remove_pod p50",
            ms(detach.p50),
            Unit::Millis,
        )
        .baseline("add_pod", ms(attach.p50)),
    );
    Ok(rows)
}

/// The samples of the setup figure.
struct Setup {
    create: Vec<Duration>,
    attach: Vec<Duration>,
    detach: Vec<Duration>,
}

/// Makes `pods` namespaces one after the other, each followed by its `add_pod` on node a;
/// then removes them (`remove_pod`, then the namespace).
async fn pod_setup(lab: &Lab, pods: usize) -> anyhow::Result<Setup> {
    // Its own guard: the namespaces go even when a step fails.
    let mut namespaces = Namespaces::new()?;
    let mut setup = Setup {
        create: Vec::with_capacity(pods),
        attach: Vec::with_capacity(pods),
        detach: Vec::with_capacity(pods),
    };
    let mut made = Vec::with_capacity(pods);
    for i in 0..pods {
        let started = Instant::now();
        let path = namespaces.create(&format!("pod-{i}")).await?;
        setup.create.push(started.elapsed());
        let uid = format!("bench-setup-{i}");
        let started = Instant::now();
        let attached = lab.node_a.add_pod(&uid, &path).await;
        setup.attach.push(started.elapsed());
        attached.with_context(|| format!("attaching pod {i}"))?;
        made.push((uid, path));
    }
    for (uid, path) in made {
        let started = Instant::now();
        lab.node_a.remove_pod(&uid).await?;
        setup.detach.push(started.elapsed());
        namespaces.remove(&path)?;
    }
    Ok(setup)
}

/// Sends `bytes` from a client in `client_ns` to `target`, served by `listener` (which reads
/// to the end and answers one byte); the time from connect to that answer.
fn bulk(
    listener: &TcpListener,
    client_ns: &Path,
    target: SocketAddr,
    bytes: usize,
) -> anyhow::Result<Duration> {
    let listener = listener.try_clone()?;
    let server = std::thread::spawn(move || -> io::Result<usize> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut buffer = vec![0u8; 256 << 10];
        let mut received = 0;
        loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            received += n;
        }
        stream.write_all(b"k")?;
        Ok(received)
    });
    let took = netns::run_in(Some(client_ns), move || -> io::Result<Duration> {
        let buffer = vec![7u8; 256 << 10];
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buffer.len());
            stream.write_all(&buffer[..n])?;
            left -= n;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 1];
        stream.read_exact(&mut ack)?;
        Ok(started.elapsed())
    })??;
    // After a client failure the server may still wait in accept: the run stops with that
    // failure and the thread goes with the process.
    let received = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    ensure!(
        received == bytes,
        "the server got {received} of {bytes} bytes"
    );
    Ok(took)
}

/// `count` 1-byte request/answer round trips from `client_ns` to `target` (after 200 not
/// timed), served by `listener`, which echoes; the time of each.
fn round_trips(
    listener: &TcpListener,
    client_ns: &Path,
    target: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let listener = listener.try_clone()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let times = netns::run_in(Some(client_ns), move || -> io::Result<Vec<Duration>> {
        let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut byte = [1u8; 1];
        let mut times = Vec::with_capacity(count);
        for i in 0..count + 200 {
            let started = Instant::now();
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            if i >= 200 {
                times.push(started.elapsed());
            }
        }
        Ok(times)
    })??;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    Ok(times)
}

/// `count` new connections from `client_ns` to `target`, one after the other, each with one
/// byte there and back (the server answers, then closes); the time of each, from connect to
/// the answer.
fn connections(
    listener: &TcpListener,
    client_ns: &Path,
    target: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let listener = listener.try_clone()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        for _ in 0..count {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte)?;
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let times = netns::run_in(Some(client_ns), move || -> io::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            let mut byte = [1u8; 1];
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            times.push(started.elapsed());
        }
        Ok(times)
    })??;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    Ok(times)
}

/// The node's cluster DNS server and its baseline, a UDP echo server, both on the bridge
/// address of node a in the host namespace, on the bench's runtime (as the agent runs its
/// server). Dropping this stops both; their sockets close as the runtime drops the tasks.
struct DnsServers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DnsServers {
    fn start(
        runtime: &tokio::runtime::Runtime,
        host: &Path,
        gateway: Ipv4Addr,
        pod_ip: Ipv4Addr,
    ) -> anyhow::Result<DnsServers> {
        let dns_at = SocketAddr::from((gateway, DNS_PORT));
        let echo_at = SocketAddr::from((gateway, UDP_ECHO_PORT));
        let (udp, tcp, echo) = netns::run_in(
            Some(host),
            move || -> io::Result<(UdpSocket, TcpListener, UdpSocket)> {
                let udp = UdpSocket::bind(dns_at)?;
                let tcp = TcpListener::bind(dns_at)?;
                let echo = UdpSocket::bind(echo_at)?;
                for socket in [&udp, &echo] {
                    socket.set_nonblocking(true)?;
                }
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp, echo))
            },
        )?
        .context("cannot bind the DNS and echo sockets on the bridge address")?;
        let (service, endpoints) = web_service(pod_ip);
        let zone = Zone::build(&ClusterDomain::default(), [&service], [&endpoints]);
        let _entered = runtime.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let echo = tokio::net::UdpSocket::from_std(echo)?;
        let dns = runtime.spawn(async move {
            if let Err(e) =
                minik_dns::serve(udp, tcp, SharedZone::new(zone), Upstream::none()).await
            {
                eprintln!("the DNS server stopped: {e}");
            }
        });
        let echo = runtime.spawn(udp_echo(echo));
        Ok(DnsServers {
            tasks: vec![dns, echo],
        })
    }
}

impl Drop for DnsServers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP server that sends every datagram back, with as many receive loops as the DNS server.
async fn udp_echo(socket: tokio::net::UdpSocket) {
    let socket = Arc::new(socket);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let socket = Arc::clone(&socket);
        tasks.spawn(async move {
            let mut buffer = vec![0u8; 65535];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer).await {
                let _ = socket.send_to(&buffer[..n], peer).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A DNS query for the A records of `name` (recursion desired, no EDNS), with id `id`.
fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(name.len() + 18);
    packet.extend_from_slice(&id.to_be_bytes());
    // RD; one question, no other records.
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    // QTYPE A, QCLASS IN.
    packet.extend_from_slice(&[0, 1, 0, 1]);
    packet
}

/// Whether `answer` is a NOERROR response to query `id` with at least one answer record.
fn answered(answer: &[u8], id: u16) -> bool {
    answer.len() >= 12
        && answer[..2] == id.to_be_bytes()
        && answer[2] & 0x80 != 0
        && answer[3] & 0x0f == 0
        && u16::from_be_bytes([answer[6], answer[7]]) >= 1
}

/// Asks the DNS server once from `client_ns` and checks that it answers the ClusterIP.
fn check_answer(client_ns: &Path, server: SocketAddr, name: &str) -> anyhow::Result<()> {
    let query = a_query(0x4242, name);
    let answer = netns::run_in(Some(client_ns), move || -> io::Result<Vec<u8>> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.connect(server)?;
        socket.send(&query)?;
        let mut buffer = vec![0u8; 4096];
        let n = socket.recv(&mut buffer)?;
        buffer.truncate(n);
        Ok(buffer)
    })?
    .with_context(|| format!("no answer from the DNS server at {server}"))?;
    let octets = CLUSTER_IP.octets();
    ensure!(
        answered(&answer, 0x4242) && answer.windows(4).any(|w| w == octets),
        "the DNS server did not answer {name} with {CLUSTER_IP}: {answer:02x?}"
    );
    Ok(())
}

/// `clients` UDP clients in `client_ns`, each with one query for `name` in flight at a time,
/// asking `server` for `duration`. With `dns`, every answer must be a NOERROR answer; the
/// echo's must be the query back.
fn dns_load(
    client_ns: &Path,
    server: SocketAddr,
    name: &str,
    clients: usize,
    duration: Duration,
    dns: bool,
) -> anyhow::Result<DnsLoad> {
    let sockets = netns::run_in(Some(client_ns), move || -> io::Result<Vec<UdpSocket>> {
        (0..clients)
            .map(|_| {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                socket.connect(server)?;
                socket.set_read_timeout(Some(DNS_TIMEOUT))?;
                Ok(socket)
            })
            .collect()
    })??;
    let template = Arc::new(a_query(0, name));
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(client, socket)| {
            let (template, start) = (Arc::clone(&template), Arc::clone(&start));
            std::thread::spawn(
                move || -> io::Result<(Vec<Duration>, usize, usize, Instant)> {
                    let mut query = template.to_vec();
                    let mut buffer = vec![0u8; 4096];
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let (mut lost, mut wrong) = (0usize, 0usize);
                    let mut id = (client as u16).wrapping_mul(4099);
                    start.wait();
                    let deadline = Instant::now() + duration;
                    while Instant::now() < deadline {
                        id = id.wrapping_add(1);
                        query[..2].copy_from_slice(&id.to_be_bytes());
                        let sent = Instant::now();
                        socket.send(&query)?;
                        loop {
                            match socket.recv(&mut buffer) {
                                Ok(n) if n >= 2 && buffer[..2] == id.to_be_bytes() => {
                                    let good = if dns {
                                        answered(&buffer[..n], id)
                                    } else {
                                        buffer[..n] == query[..]
                                    };
                                    if good {
                                        latencies.push(sent.elapsed());
                                    } else {
                                        wrong += 1;
                                    }
                                    break;
                                }
                                // A late answer to a query counted as lost.
                                Ok(_) => continue,
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                    ) =>
                                {
                                    lost += 1;
                                    break;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Ok((latencies, lost, wrong, Instant::now()))
                },
            )
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let (mut latencies, mut lost, mut wrong) = (Vec::new(), 0, 0);
    let mut ended = started;
    for thread in threads {
        let (l, n_lost, n_wrong, end) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a DNS client thread panicked"))??;
        latencies.extend(l);
        lost += n_lost;
        wrong += n_wrong;
        ended = ended.max(end);
    }
    ensure!(
        wrong == 0,
        "{wrong} answers from {server} were not what was asked for"
    );
    let summary = Summary::of(&latencies).context("no query was answered")?;
    Ok(DnsLoad {
        rate: latencies.len() as f64 / (ended - started).as_secs_f64(),
        summary,
        lost,
    })
}

fn gbits(bytes: usize, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e9
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The median of some values (the upper one of an even count); 0 when there are none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_a_dns_question() {
        let packet = a_query(0x1234, "web.default.svc.cluster.local");
        assert_eq!(&packet[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&packet[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&packet[12..16], b"\x03web");
        assert_eq!(&packet[packet.len() - 5..], &[0, 0, 1, 0, 1]);
        let mut answer = packet.clone();
        answer[2] |= 0x80;
        assert!(!answered(&answer, 0x1234), "no answer record");
        answer[7] = 1;
        assert!(answered(&answer, 0x1234));
        assert!(!answered(&answer, 0x1235));
        answer[3] = 3;
        assert!(!answered(&answer, 0x1234), "NXDOMAIN");
    }

    #[test]
    fn the_service_and_endpoints_are_what_the_proxy_and_dns_read() {
        let (service, endpoints) = web_service(Ipv4Addr::new(10, 244, 2, 2));
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.50"));
        assert_eq!(spec.ports.unwrap().len(), 3);
        let subsets = endpoints.subsets.unwrap();
        assert_eq!(
            subsets[0].addresses.as_ref().unwrap()[0].ip,
            "10.244.2.2".to_string()
        );
    }
}
