//! Tests with real kernel objects. Each test makes its "hosts", "pods" and "internet" as
//! network namespaces of its own, so it never touches the machine's interfaces, routes or
//! rules, and sends packets only to addresses inside them. A [`Lab`] removes them even when
//! the test fails; a test that ends well also checks that the pod network left nothing behind.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::link::{host_veth_name, Netlink};
use crate::{netns, rules, Cidr, Config, Error, HostPort, Peer, PodNetwork, Protocol};

/// Whether the test can run: root and the nft command. Without them it says why and is
/// skipped, or fails when `CI=true`.
fn privileged() -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("root (network namespaces, links, nftables)")
    } else if rules::nft(&["--version"], "").is_err() {
        Some("the nft command (install nftables)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(what) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("this test needs {what}")
        }
        Some(what) => {
            eprintln!("skipped: this test needs {what}");
            false
        }
    }
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// The network namespaces of one test, in a temporary directory; removed on drop.
struct Lab {
    dir: tempfile::TempDir,
    namespaces: Vec<PathBuf>,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            dir: tempfile::tempdir().unwrap(),
            namespaces: Vec::new(),
        }
    }

    /// A new network namespace named `name`, loopback up.
    async fn netns(&mut self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        netns::create(&path).await.unwrap();
        self.namespaces.push(path.clone());
        path
    }

    /// A pod network on `host` for node `node`.
    fn config(&self, node: &str, pod_cidr: &str, egress: bool, host: &Path) -> Config {
        Config {
            node_name: node.into(),
            pod_cidr: cidr(pod_cidr),
            cluster_cidr: cidr("10.244.0.0/16"),
            service_cidr: cidr("10.96.0.0/12"),
            egress,
            mtu: crate::DEFAULT_MTU,
            ipam_dir: self.dir.path().join("ipam").join(node),
            host_netns: Some(host.to_path_buf()),
        }
    }

    /// Removes every namespace and checks that none is left.
    fn close(mut self) {
        for path in std::mem::take(&mut self.namespaces) {
            netns::remove(&path).unwrap();
            assert!(
                !netns::exists(&path),
                "{} is still a namespace",
                path.display()
            );
            assert!(!path.exists(), "{} is still there", path.display());
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for path in self.namespaces.iter().rev() {
            let _ = netns::remove(path);
        }
    }
}

/// Connects `a` (interface `name`, `a_ip/24`) and `b` (same name, `b_ip/24`) by a veth pair.
async fn wire(a: &Path, a_ip: Ipv4Addr, b: &Path, b_ip: Ipv4Addr, name: &str) {
    let a_side = Netlink::open(Some(a)).await.unwrap();
    a_side.veth_into(name, b, name).await.unwrap();
    a_side.add_address(name, a_ip, 24).await.unwrap();
    let b_side = Netlink::open(Some(b)).await.unwrap();
    b_side.set_up(name).await.unwrap();
    b_side.add_address(name, b_ip, 24).await.unwrap();
}

/// A TCP server in `netns` on `address` that answers each connection with the address the
/// connection came from, then closes it. It ends with the test's runtime.
fn serve(netns: &Path, address: (Ipv4Addr, u16)) {
    let listener = netns::run_in(Some(netns), move || TcpListener::bind(address))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream.write_all(peer.ip().to_string().as_bytes()).await;
        }
    });
}

/// Connects from `netns` to `address` within `timeout` and returns the source address the
/// server saw.
async fn source_seen_within(
    netns: &Path,
    address: (Ipv4Addr, u16),
    timeout: Duration,
) -> io::Result<IpAddr> {
    let address = SocketAddr::from(address);
    netns::run_in_async(Some(netns), move || {
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        answer
            .parse::<IpAddr>()
            .map_err(|_| io::Error::other(format!("the server answered {answer:?}")))
    })
    .await
    .map_err(io::Error::other)?
}

/// A TCP server in `netns` on `address` that reads each connection to its end and answers
/// with the number of bytes it got.
fn serve_count(netns: &Path, address: (Ipv4Addr, u16)) {
    let listener = netns::run_in(Some(netns), move || TcpListener::bind(address))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut sink = Vec::new();
            if stream.read_to_end(&mut sink).await.is_ok() {
                let _ = stream.write_all(sink.len().to_string().as_bytes()).await;
            }
        }
    });
}

/// Sends `bytes` from `netns` to a [`serve_count`] server; returns what it counted.
async fn send_bytes(netns: &Path, address: (Ipv4Addr, u16), bytes: usize) -> io::Result<usize> {
    let address = SocketAddr::from(address);
    netns::run_in_async(Some(netns), move || {
        use std::io::Write;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(&vec![7u8; bytes])?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        answer
            .parse::<usize>()
            .map_err(|_| io::Error::other(format!("the server answered {answer:?}")))
    })
    .await
    .map_err(io::Error::other)?
}

async fn source_seen(netns: &Path, address: (Ipv4Addr, u16)) -> io::Result<IpAddr> {
    source_seen_within(netns, address, Duration::from_secs(5)).await
}

/// `nft list table` in `netns`.
fn list_table(netns: &Path, table: &str) -> String {
    let table = table.to_string();
    netns::run_in(Some(netns), move || {
        std::process::Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .unwrap()
    .unwrap()
}

/// What a pod network leaves behind in `host` once stopped: nothing (links other than
/// `expected_links`, routes of ours, its table, its allocations).
async fn assert_clean(host: &Path, table: &str, ipam_dir: &Path, expected_links: &[&str]) {
    let netlink = Netlink::open(Some(host)).await.unwrap();
    let links: BTreeSet<String> = netlink.links().await.unwrap().into_values().collect();
    let expected: BTreeSet<String> = ["lo"]
        .iter()
        .chain(expected_links)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(links, expected, "links left in {}", host.display());
    let ours: Vec<_> = netlink
        .routes(cidr("10.244.0.0/16"))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.ours)
        .collect();
    assert!(ours.is_empty(), "routes left: {ours:?}");
    assert!(
        !rules::exists(Some(host), table).await.unwrap(),
        "table {table} left"
    );
    let allocations = std::fs::read_dir(ipam_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(allocations, 0, "{} is not empty", ipam_dir.display());
}

/// Two pods on one bridge reach each other and their gateway by pod IP; two nodes on one host
/// (one namespace) reach each other's pods through their bridges, without routes.
#[tokio::test]
async fn pods_on_one_host_reach_each_other_and_the_gateway() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.netns("host").await;
    let config_1 = lab.config("node-1", "10.244.1.0/24", false, &host);
    let config_2 = lab.config("node-2", "10.244.2.0/24", false, &host);
    let (ipam_1, ipam_2) = (config_1.ipam_dir.clone(), config_2.ipam_dir.clone());
    let node_1 = PodNetwork::start(config_1.clone()).await.unwrap();
    // Starting again finds everything in place.
    let node_1 = {
        drop(node_1);
        PodNetwork::start(config_1).await.unwrap()
    };
    let node_2 = PodNetwork::start(config_2).await.unwrap();
    // Both nodes' address is the host's: no route is needed, none is made.
    let peers = [
        Peer {
            node_name: "node-1".into(),
            pod_cidr: cidr("10.244.1.0/24"),
            address: ip("127.0.0.1"),
        },
        Peer {
            node_name: "node-2".into(),
            pod_cidr: cidr("10.244.2.0/24"),
            address: ip("127.0.0.1"),
        },
    ];
    node_1.set_peers(&peers).await.unwrap();
    node_2.set_peers(&peers).await.unwrap();

    let (pod_1, pod_2, pod_3) = (
        lab.netns("pod-1").await,
        lab.netns("pod-2").await,
        lab.netns("pod-3").await,
    );
    let ip_1 = node_1.add_pod("uid-1", &pod_1).await.unwrap();
    let ip_2 = node_1.add_pod("uid-2", &pod_2).await.unwrap();
    let ip_3 = node_2.add_pod("uid-3", &pod_3).await.unwrap();
    assert_eq!(
        (ip_1, ip_2, ip_3),
        (ip("10.244.1.2"), ip("10.244.1.3"), ip("10.244.2.2"))
    );
    // Again for the same pod: the same address, a fresh veth pair.
    assert_eq!(node_1.add_pod("uid-1", &pod_1).await.unwrap(), ip_1);

    serve(&pod_2, (ip_2, 8080));
    assert_eq!(source_seen(&pod_1, (ip_2, 8080)).await.unwrap(), ip_1);
    serve(&pod_1, (ip_1, 8080));
    assert_eq!(source_seen(&pod_2, (ip_1, 8080)).await.unwrap(), ip_2);
    // Across the two nodes' bridges, by pod IP, no NAT.
    serve(&pod_3, (ip_3, 8080));
    assert_eq!(source_seen(&pod_1, (ip_3, 8080)).await.unwrap(), ip_1);
    assert_eq!(source_seen(&pod_3, (ip_1, 8080)).await.unwrap(), ip_3);
    // The gateway is the host.
    serve(&host, (node_1.gateway(), 9000));
    assert_eq!(
        source_seen(&pod_1, (node_1.gateway(), 9000)).await.unwrap(),
        ip_1
    );

    // A removed pod loses its veth pair and its address.
    node_1.remove_pod("uid-2").await.unwrap();
    let netlink = Netlink::open(Some(&host)).await.unwrap();
    assert!(netlink
        .link(&host_veth_name("uid-2"))
        .await
        .unwrap()
        .is_none());
    let pod_2_side = Netlink::open(Some(&pod_2)).await.unwrap();
    assert!(pod_2_side.link("eth0").await.unwrap().is_none());
    node_1.remove_pod("uid-2").await.unwrap();

    let (bridge_1, table_1) = (node_1.bridge().to_string(), node_1.table().to_string());
    let (bridge_2, table_2) = (node_2.bridge().to_string(), node_2.table().to_string());
    node_1.stop().await.unwrap();
    // Node 2 keeps its own.
    let pod_3_veth = host_veth_name("uid-3");
    assert_clean(&host, &table_1, &ipam_1, &[&bridge_2, &pod_3_veth]).await;
    assert!(rules::exists(Some(&host), &table_2).await.unwrap());
    assert_eq!(source_seen(&pod_3, (ip_3, 8080)).await.unwrap(), ip_3);
    node_2.stop().await.unwrap();
    assert_clean(&host, &table_2, &ipam_2, &[]).await;
    assert!(netlink.link(&bridge_1).await.unwrap().is_none());
    lab.close();
}

/// Egress off: a pod's packet to an address beyond the cluster is dropped (while the node's
/// own address answers). Egress on: it goes out masqueraded. "The internet" is a namespace of
/// the test, wired to the host.
#[tokio::test]
async fn egress_off_drops_and_egress_on_masquerades() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.netns("host").await;
    let internet = lab.netns("internet").await;
    let (uplink, outside) = (ip("203.0.113.254"), ip("203.0.113.1"));
    wire(&host, uplink, &internet, outside, "uplink").await;
    serve(&internet, (outside, 80));
    serve(&host, (uplink, 81));
    let pod = lab.netns("pod").await;

    let config = lab.config("node-1", "10.244.1.0/24", false, &host);
    let network = PodNetwork::start(config.clone()).await.unwrap();
    let pod_ip = network.add_pod("uid-1", &pod).await.unwrap();
    assert_eq!(source_seen(&pod, (uplink, 81)).await.unwrap(), pod_ip);
    let err = source_seen_within(&pod, (outside, 80), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let table = list_table(&host, network.table());
    let dropped = table
        .lines()
        .find(|l| l.contains("egress off"))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no drop counter in\n{table}"));
    assert!(dropped >= 1, "nothing dropped:\n{table}");
    // A client beyond the cluster reaches a pod through a hostPort: the pod's answers pass.
    serve(&pod, (pod_ip, 8080));
    network
        .set_host_ports(&[HostPort {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 30080,
            pod_ip,
            container_port: 8080,
        }])
        .await
        .unwrap();
    assert_eq!(
        source_seen(&internet, (uplink, 30080)).await.unwrap(),
        IpAddr::V4(outside)
    );
    assert!(network.bridged_traffic_filtered());
    network.stop().await.unwrap();
    assert_clean(&host, "minik-net-node-1", &config.ipam_dir, &["uplink"]).await;

    let network = PodNetwork::start(Config {
        egress: true,
        ..config.clone()
    })
    .await
    .unwrap();
    network.add_pod("uid-1", &pod).await.unwrap();
    assert_eq!(
        source_seen(&pod, (outside, 80)).await.unwrap(),
        IpAddr::V4(uplink)
    );
    network.stop().await.unwrap();
    assert_clean(&host, "minik-net-node-1", &config.ipam_dir, &["uplink"]).await;
    lab.close();
}

/// Two hosts wired together, each with a node: pods reach the other host's pods by pod IP,
/// without NAT, over host-gateway routes; a pod CIDR that cannot be routed is reported and the
/// others stay routed; a node that leaves takes its route with it.
#[tokio::test]
async fn pods_on_two_hosts_reach_each_other_without_nat() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let (host_a, host_b) = (lab.netns("host-a").await, lab.netns("host-b").await);
    let (address_a, address_b) = (ip("198.51.100.1"), ip("198.51.100.2"));
    wire(&host_a, address_a, &host_b, address_b, "wire").await;
    let config_a = lab.config("node-a", "10.244.1.0/24", false, &host_a);
    let config_b = lab.config("node-b", "10.244.2.0/24", false, &host_b);
    let node_a = PodNetwork::start(config_a.clone()).await.unwrap();
    let node_b = PodNetwork::start(config_b.clone()).await.unwrap();
    let peers = [
        Peer {
            node_name: "node-a".into(),
            pod_cidr: cidr("10.244.1.0/24"),
            address: address_a,
        },
        Peer {
            node_name: "node-b".into(),
            pod_cidr: cidr("10.244.2.0/24"),
            address: address_b,
        },
    ];
    node_a.set_peers(&peers).await.unwrap();
    node_b.set_peers(&peers).await.unwrap();
    // Again: nothing changes, nothing fails.
    node_a.set_peers(&peers).await.unwrap();

    let (pod_a, pod_b) = (lab.netns("pod-a").await, lab.netns("pod-b").await);
    let ip_a = node_a.add_pod("uid-a", &pod_a).await.unwrap();
    let ip_b = node_b.add_pod("uid-b", &pod_b).await.unwrap();
    serve(&pod_b, (ip_b, 8080));
    serve(&pod_a, (ip_a, 8080));
    assert_eq!(source_seen(&pod_a, (ip_b, 8080)).await.unwrap(), ip_a);
    assert_eq!(source_seen(&pod_b, (ip_a, 8080)).await.unwrap(), ip_b);
    // The pods' MTU is larger than the wire's: path MTU discovery makes large transfers fit.
    serve_count(&pod_b, (ip_b, 8081));
    let bytes = 4 << 20;
    assert_eq!(
        send_bytes(&pod_a, (ip_b, 8081), bytes).await.unwrap(),
        bytes
    );

    // Bad peers: one via an address no network of host A reaches, one overlapping node A's
    // pod CIDR. Each is named; node B stays routed.
    let mut bad = peers.to_vec();
    bad.push(Peer {
        node_name: "node-c".into(),
        pod_cidr: cidr("10.244.3.0/24"),
        address: ip("198.18.0.9"),
    });
    bad.push(Peer {
        node_name: "node-d".into(),
        pod_cidr: cidr("10.244.1.128/25"),
        address: ip("198.51.100.4"),
    });
    let err = node_a.set_peers(&bad).await.unwrap_err().to_string();
    assert!(
        err.contains("the pod CIDR 10.244.3.0/24 of node node-c cannot be routed via 198.18.0.9")
            && err.contains("unreachable"),
        "{err}"
    );
    assert!(
        err.contains("node node-d cannot be routed via 198.51.100.4: it overlaps this node's pod CIDR 10.244.1.0/24"),
        "{err}"
    );
    assert_eq!(source_seen(&pod_a, (ip_b, 8080)).await.unwrap(), ip_a);

    // Node B leaves: its route goes.
    node_a.set_peers(&peers[..1]).await.unwrap();
    let netlink_a = Netlink::open(Some(&host_a)).await.unwrap();
    assert!(netlink_a
        .routes(cidr("10.244.0.0/16"))
        .await
        .unwrap()
        .iter()
        .all(|r| !r.ours));
    assert!(
        source_seen_within(&pod_a, (ip_b, 8080), Duration::from_millis(300))
            .await
            .is_err()
    );

    node_a.stop().await.unwrap();
    node_b.stop().await.unwrap();
    assert_clean(&host_a, "minik-net-node-a", &config_a.ipam_dir, &["wire"]).await;
    assert_clean(&host_b, "minik-net-node-b", &config_b.ipam_dir, &["wire"]).await;
    lab.close();
}

/// hostPorts: reached from the node (its addresses and loopback), from another pod, and by the
/// pod itself (hairpin); a hostIP limits them to one address; removing them closes them.
#[tokio::test]
async fn host_ports_reach_the_pod() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.netns("host").await;
    let config = lab.config("node-1", "10.244.1.0/24", false, &host);
    let network = PodNetwork::start(config.clone()).await.unwrap();
    let (pod, client) = (lab.netns("pod").await, lab.netns("client").await);
    let pod_ip = network.add_pod("uid-server", &pod).await.unwrap();
    let client_ip = network.add_pod("uid-client", &client).await.unwrap();
    serve(&pod, (pod_ip, 8080));
    let gateway = network.gateway();
    let port = |host_ip, host_port| HostPort {
        protocol: Protocol::Tcp,
        host_ip,
        host_port,
        pod_ip,
        container_port: 8080,
    };
    network
        .set_host_ports(&[port(None, 30080), port(Some(gateway), 30081)])
        .await
        .unwrap();

    let gateway_ip = IpAddr::V4(gateway);
    let loopback = ip("127.0.0.1");
    assert_eq!(
        source_seen(&host, (gateway, 30080)).await.unwrap(),
        gateway_ip
    );
    assert_eq!(
        source_seen(&host, (loopback, 30080)).await.unwrap(),
        gateway_ip
    );
    assert_eq!(
        source_seen(&client, (gateway, 30080)).await.unwrap(),
        client_ip
    );
    assert_eq!(
        source_seen(&pod, (gateway, 30080)).await.unwrap(),
        gateway_ip
    );
    assert_eq!(
        source_seen(&host, (gateway, 30081)).await.unwrap(),
        gateway_ip
    );
    let refused = source_seen(&host, (loopback, 30081)).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);

    let outside = network
        .set_host_ports(&[HostPort {
            pod_ip: ip("10.244.9.9"),
            ..port(None, 30082)
        }])
        .await
        .unwrap_err();
    assert_eq!(
        outside.to_string(),
        "hostPort 30082 goes to 10.244.9.9, which is not in this node's pod CIDR 10.244.1.0/24"
    );
    network.set_host_ports(&[]).await.unwrap();
    let closed = source_seen(&host, (gateway, 30080)).await.unwrap_err();
    assert_eq!(closed.kind(), io::ErrorKind::ConnectionRefused);

    network.stop().await.unwrap();
    assert_clean(&host, "minik-net-node-1", &config.ipam_dir, &[]).await;
    lab.close();
}

/// An agent killed with -9 leaves addresses and veths; the next one reclaims those of pods that
/// are gone. A full pod CIDR is reported with its name, and the failed pod leaves nothing. A pod
/// CIDR that overlaps a host route is refused before anything is made.
#[tokio::test]
async fn reclaim_exhaustion_and_refused_networks() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.netns("host").await;
    let config = lab.config("node-1", "10.244.1.0/29", false, &host);
    let network = PodNetwork::start(config.clone()).await.unwrap();
    let (pod_1, pod_2) = (lab.netns("pod-1").await, lab.netns("pod-2").await);
    let ip_1 = network.add_pod("uid-1", &pod_1).await.unwrap();
    let ip_2 = network.add_pod("uid-2", &pod_2).await.unwrap();
    // The crash: nothing is removed.
    drop(network);

    let network = PodNetwork::start(config.clone()).await.unwrap();
    let live: BTreeSet<String> = ["uid-1".to_string()].into();
    assert_eq!(network.pod_ip("uid-1").await.unwrap(), Some(ip_1));
    assert_eq!(network.reclaim(&live).await.unwrap(), vec![ip_2]);
    assert_eq!(network.pod_ip("uid-2").await.unwrap(), None);
    let netlink = Netlink::open(Some(&host)).await.unwrap();
    assert!(netlink
        .link(&host_veth_name("uid-2"))
        .await
        .unwrap()
        .is_none());
    serve(&host, (network.gateway(), 9000));
    assert_eq!(
        source_seen(&pod_1, (network.gateway(), 9000))
            .await
            .unwrap(),
        ip_1
    );

    // A /29 has 5 pod addresses: uid-1 holds one, four more fit, the sixth pod does not.
    for i in 0..4 {
        let pod = lab.netns(&format!("more-{i}")).await;
        network
            .add_pod(&format!("uid-more-{i}"), &pod)
            .await
            .unwrap();
    }
    let full = lab.netns("full").await;
    let err = network.add_pod("uid-full", &full).await.unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }));
    assert_eq!(
        err.to_string(),
        "no IP addresses available in pod CIDR 10.244.1.0/29: all 5 are in use"
    );
    assert!(netlink
        .link(&host_veth_name("uid-full"))
        .await
        .unwrap()
        .is_none());
    network.stop().await.unwrap();
    assert_clean(&host, "minik-net-node-1", &config.ipam_dir, &[]).await;

    // A host route over the pod CIDR: refused, nothing made.
    let lan = lab.netns("lan").await;
    wire(
        &host,
        ip("203.0.113.254"),
        &lan,
        ip("203.0.113.1"),
        "uplink",
    )
    .await;
    netlink
        .add_route(cidr("10.0.0.0/8"), ip("203.0.113.1"))
        .await
        .unwrap();
    let err = PodNetwork::start(lab.config("node-2", "10.244.2.0/24", false, &host))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "pod CIDR 10.244.2.0/24 overlaps the host's route to 10.0.0.0/8 dev uplink"
    );
    assert_clean(&host, "minik-net-node-2", &config.ipam_dir, &["uplink"]).await;
    lab.close();
}
