//! Services on pod IPs, end to end with real kernel objects: "pods" are network namespaces
//! attached to a node's pod network (`minik_net::PodNetwork`) in a "host" namespace of the
//! test's own, and the Service proxy's nftables table (`proxy::nftables_ruleset`, what an agent
//! in nftables mode applies) is applied in that host. Every packet stays inside the test's
//! namespaces; removing them (a [`Lab`] does, even when the test fails) removes every link and
//! table the test made.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use minik_api::hostports::host_port_of;
use minik_api::k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use minik_api::podview::PodView;
use minik_net::{netns, Cidr, Config, PodNetwork};
use minik_node::proxy::{nftables_ruleset, ProxyOptions, Ruleset};
use serde_json::json;

/// The cluster CIDR of the tests' pod networks, and the node's pod CIDR within it.
const CLUSTER_CIDR: &str = "10.250.0.0/16";
const POD_CIDR: &str = "10.250.7.0/24";
/// The host's own address, on a dummy "uplink" with the default route: outside the cluster
/// CIDR, as a node's address is.
const UPLINK_ADDRESS: &str = "192.0.2.1";
/// The port the pods listen on, and the Services' port.
const POD_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
/// How long a connection that should open may take.
const CONNECT: Duration = Duration::from_secs(3);

/// Whether the test can run: root, and the nft and ip commands. Without them it says why and
/// is skipped, or fails under `CI=true`.
fn privileged() -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("root (network namespaces, links, nftables)")
    } else if minik_net::nft::run(&["--version"], None).is_err() {
        Some("the nft command (install nftables)")
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("the ip command (install iproute2)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(what) => cannot_run(what),
    }
}

/// Says the test cannot run for want of `what`: a failure under `CI=true`, else a skip.
fn cannot_run(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs {what}");
    }
    eprintln!("skipped: this test needs {what}");
    false
}

/// The network namespaces of one test, in a temporary directory: removed when dropped, and
/// with them every link, address, route and nftables table inside.
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        for path in self.namespaces.iter().rev() {
            let _ = netns::remove(path);
        }
    }
}

/// A host with node `node`'s pod network (egress off, as every test runs it) and an "uplink"
/// with the default route, so that the host's own connections to a ClusterIP have a route
/// and a source outside the cluster CIDR. `None` when the kernel does not filter bridged
/// traffic (br_netfilter), without which a pod's answer to another pod on the bridge is not
/// un-translated.
async fn host_with_pod_network(lab: &mut Lab, node: &str) -> Option<(PathBuf, PodNetwork)> {
    let host = lab.netns("host").await;
    // A veth pair whose other end stays in the host, unaddressed (no dummy module needed):
    // nothing answers at the gateway, and nothing sent there leaves the namespace.
    ip(
        &host,
        &[
            "link",
            "add",
            "uplink",
            "type",
            "veth",
            "peer",
            "name",
            "uplink-end",
        ],
    );
    ip(&host, &["link", "set", "uplink-end", "up"]);
    ip(
        &host,
        &[
            "addr",
            "add",
            &format!("{UPLINK_ADDRESS}/24"),
            "dev",
            "uplink",
        ],
    );
    ip(&host, &["link", "set", "uplink", "up"]);
    ip(&host, &["route", "add", "default", "via", "192.0.2.254"]);
    let network = PodNetwork::start(Config {
        node_name: node.into(),
        pod_cidr: cidr(POD_CIDR),
        cluster_cidr: cidr(CLUSTER_CIDR),
        service_cidr: cidr("10.96.0.0/12"),
        egress: false,
        mtu: minik_net::DEFAULT_MTU,
        ipam_dir: lab.dir.path().join("ipam"),
        host_netns: Some(host.clone()),
    })
    .await
    .unwrap();
    if !network.bridged_traffic_filtered() {
        cannot_run("br_netfilter (modprobe br_netfilter)");
        return None;
    }
    Some((host, network))
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

/// Runs `ip ARGS` in the network namespace `netns`; fails the test with ip's words.
fn ip(netns: &Path, args: &[&str]) {
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = netns::run_in(Some(netns), move || {
        Command::new("ip").args(&owned).output()
    })
    .unwrap()
    .expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies the transaction `text` in `netns`.
fn apply(netns: &Path, text: String) {
    netns::run_in(Some(netns), move || {
        minik_net::nft::run(&["-f", "-"], Some(&text))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A pod of the node, as its agent reports it: its own IP, the node's address as `hostIP`,
/// container port [`POD_PORT`] (with a stale host-port record, which its own IP makes moot).
fn pod(name: &str, pod_ip: Ipv4Addr) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"minik.io/host-ports": "{\"8080\":31000}"}},
        "spec": {"containers": [{"name": "c", "image": "x",
                                  "ports": [{"name": "tcp", "containerPort": POD_PORT}]}]},
        "status": {"podIP": pod_ip.to_string(), "hostIP": UPLINK_ADDRESS}
    }))
    .unwrap()
}

/// Service `name` (ClusterIP `cluster_ip`, port [`SERVICE_PORT`] to the pods' `tcp`) with
/// `extra` in its spec, and its Endpoints: `pods` of node `node` at their IPs and the port
/// they are reached on.
fn service(
    name: &str,
    cluster_ip: &str,
    extra: serde_json::Value,
    node: &str,
    pods: &[&Pod],
) -> (Service, Endpoints) {
    let mut spec = json!({"clusterIP": cluster_ip, "ports": [
        {"name": "tcp", "port": SERVICE_PORT, "targetPort": "tcp", "protocol": "TCP"}
    ]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let service = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"}, "spec": spec
    }))
    .unwrap();
    let addresses: Vec<_> = pods
        .iter()
        .map(|p| json!({"ip": p.status.as_ref().unwrap().pod_ip, "nodeName": node}))
        .collect();
    let port = host_port_of(&PodView::from(pods[0]), i32::from(POD_PORT));
    let endpoints = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "subsets": [{"addresses": addresses, "ports": [{"name": "tcp", "port": port}]}]
    }))
    .unwrap();
    (service, endpoints)
}

/// The proxy's ruleset for `services` on node `node`, with the pod network's cluster CIDR.
fn ruleset(
    node: &str,
    services: &[&(Service, Endpoints)],
    local_dns: Option<SocketAddr>,
) -> Ruleset {
    let svcs: Vec<&Service> = services.iter().map(|(s, _)| s).collect();
    let eps: Vec<&Endpoints> = services.iter().map(|(_, e)| e).collect();
    let options = ProxyOptions {
        cluster_cidr: Some(cidr(CLUSTER_CIDR)),
        local_dns,
    };
    nftables_ruleset(node, UPLINK_ADDRESS.parse().unwrap(), &svcs, &eps, &options)
}

/// A TCP server on its own thread inside a network namespace: it answers each connection
/// with its name and the address the connection came from (a line), then echoes what it
/// gets. Stops when dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(netns: &Path, name: &'static str, address: SocketAddr) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (netns, stopping) = (netns.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let listener = enter(&netns)
                .and_then(|()| TcpListener::bind(address))
                .and_then(|l| l.set_nonblocking(true).map(|()| l));
            let listener = match listener {
                Ok(l) => {
                    let _ = bound_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let _ = answer(stream, name, peer);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        bound_rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("{name} cannot listen on {address}: {e}"));
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, name: &str, peer: SocketAddr) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "{name} {}", peer.ip())?;
    let mut buf = [0u8; 256];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Connects from `netns` to `address` within `timeout`; returns the name of the server that
/// answered and the client address it saw, once the echo came back.
async fn ask_within(
    netns: &Path,
    address: SocketAddr,
    timeout: Duration,
) -> io::Result<(String, IpAddr)> {
    let netns = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let asked = enter(&netns).and_then(|()| {
            let mut stream = TcpStream::connect_timeout(&address, timeout)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            stream.write_all(b"ping")?;
            let mut echo = [0u8; 4];
            reader.read_exact(&mut echo)?;
            if &echo != b"ping" {
                return Err(io::Error::other(format!("echoed {echo:?}")));
            }
            let (name, seen) = line
                .trim()
                .split_once(' ')
                .ok_or_else(|| io::Error::other(format!("answered {line:?}")))?;
            let seen = seen
                .parse::<IpAddr>()
                .map_err(|_| io::Error::other(format!("answered {line:?}")))?;
            Ok((name.to_owned(), seen))
        });
        let _ = tx.send(asked);
    });
    rx.await
        .map_err(|_| io::Error::other("the client thread died"))?
}

async fn ask(netns: &Path, address: SocketAddr) -> (String, IpAddr) {
    ask_within(netns, address, CONNECT)
        .await
        .unwrap_or_else(|e| panic!("from {}, {address}: {e}", netns.display()))
}

/// A UDP echo server on its own thread inside a network namespace. Stops when dropped.
struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    fn start(netns: &Path, address: SocketAddr) -> UdpEcho {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (netns, stopping) = (netns.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let socket = enter(&netns)
                .and_then(|()| UdpSocket::bind(address))
                .and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_millis(20)))
                        .map(|()| s)
                });
            let socket = match socket {
                Ok(s) => {
                    let _ = bound_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 512];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        bound_rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot listen on udp {address}: {e}"));
        UdpEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends a datagram from `netns` to `address` and waits for its echo, which must come from
/// `address` (the translation undone).
fn udp_echo(netns: &Path, address: SocketAddr) -> io::Result<()> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        enter(&netns)?;
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        // A connected socket takes datagrams from that address only.
        socket.connect(address)?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = [0u8; 16];
        for _ in 0..3 {
            socket.send(b"query")?;
            if let Ok(n) = socket.recv(&mut buf) {
                if &buf[..n] == b"query" {
                    return Ok(());
                }
            }
        }
        Err(io::Error::other(format!("no echo from {address}")))
    })
    .join()
    .map_err(|_| io::Error::other("the client thread died"))?
}

/// A Service's ClusterIP reaches a pod from another pod (which keeps its address), from the
/// pod itself (hairpin: masqueraded, so the answer comes back through the node, which needs
/// the bridge port's hairpin mode), and from the node (masqueraded: its address is outside
/// the cluster CIDR). The kube-dns Service's port 53 goes to the node's local DNS address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_reach_pods_from_pods_themselves_and_the_node() {
    if !privileged() {
        return;
    }
    let node = format!("ps{}-a", std::process::id());
    let mut lab = Lab::new();
    let Some((host, network)) = host_with_pod_network(&mut lab, &node).await else {
        return;
    };
    let (server_ns, client_ns) = (lab.netns("server").await, lab.netns("client").await);
    let server_ip = network.add_pod("uid-server", &server_ns).await.unwrap();
    let client_ip = network.add_pod("uid-client", &client_ns).await.unwrap();
    let gateway = IpAddr::V4(network.gateway());
    let server = Server::start(
        &server_ns,
        "server",
        SocketAddr::new(server_ip.into(), POD_PORT),
    );

    let server_pod = pod("server", server_ip);
    let echo = service("echo", "10.96.7.7", json!({}), &node, &[&server_pod]);
    let dns: (Service, Endpoints) = (
        serde_json::from_value(json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
            ]}
        }))
        .unwrap(),
        serde_json::from_value(
            json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"}}),
        )
        .unwrap(),
    );
    let local_dns = SocketAddr::new(gateway, 5353);
    let rules = ruleset(&node, &[&echo, &dns], Some(local_dns));
    assert_eq!(rules.table(), format!("minik-{node}"));
    apply(&host, rules.replacing());

    let front = SocketAddr::from(([10, 96, 7, 7], SERVICE_PORT));
    // Pod to pod through the ClusterIP, without NAT of the source.
    assert_eq!(
        ask(&client_ns, front).await,
        ("server".to_owned(), IpAddr::V4(client_ip))
    );
    // The pod itself: masqueraded to the gateway.
    assert_eq!(ask(&server_ns, front).await, ("server".to_owned(), gateway));
    // The node: its own address is outside the cluster CIDR, masqueraded too.
    assert_eq!(ask(&host, front).await, ("server".to_owned(), gateway));

    // The hairpin needs the bridge to send a frame back out of the port it came in on (the
    // pod network turns hairpin mode on for every pod's port): without it, the pod does not
    // reach itself.
    let port = PodNetwork::host_veth_name("uid-server");
    ip(
        &host,
        &[
            "link",
            "set",
            "dev",
            &port,
            "type",
            "bridge_slave",
            "hairpin",
            "off",
        ],
    );
    assert!(
        ask_within(&server_ns, front, Duration::from_secs(2))
            .await
            .is_err(),
        "the pod reached itself without hairpin mode"
    );
    ip(
        &host,
        &[
            "link",
            "set",
            "dev",
            &port,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ],
    );
    assert_eq!(ask(&server_ns, front).await, ("server".to_owned(), gateway));

    // Cluster DNS: the kube-dns Service has no endpoints, and goes to the node's local DNS
    // address all the same.
    let _dns = UdpEcho::start(&host, local_dns);
    let dns_front = SocketAddr::from(([10, 96, 0, 10], 53));
    udp_echo(&client_ns, dns_front).unwrap();
    udp_echo(&host, dns_front).unwrap();

    // Without endpoints, the ClusterIP refuses at once.
    let gone = service("echo", "10.96.7.7", json!({}), &node, &[&server_pod]);
    let gone = (
        gone.0,
        serde_json::from_value(json!({"metadata": {"name": "echo", "namespace": "default"}}))
            .unwrap(),
    );
    apply(
        &host,
        ruleset(&node, &[&gone, &dns], Some(local_dns)).updating(&rules),
    );
    let refused = ask_within(&client_ns, front, CONNECT).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        io::ErrorKind::ConnectionRefused,
        "{refused}"
    );

    drop(server);
    network.stop().await.unwrap();
}

/// `sessionAffinity: ClientIP`: a client's connections keep going to one pod, also after the
/// table is updated for a change elsewhere; without affinity they go to each pod in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_a_client_on_its_pod_across_updates() {
    if !privileged() {
        return;
    }
    let node = format!("ps{}-b", std::process::id());
    let mut lab = Lab::new();
    let Some((host, network)) = host_with_pod_network(&mut lab, &node).await else {
        return;
    };
    let (one_ns, two_ns, client_ns) = (
        lab.netns("one").await,
        lab.netns("two").await,
        lab.netns("client").await,
    );
    let one_ip = network.add_pod("uid-one", &one_ns).await.unwrap();
    let two_ip = network.add_pod("uid-two", &two_ns).await.unwrap();
    network.add_pod("uid-client", &client_ns).await.unwrap();
    let server_one = Server::start(&one_ns, "one", SocketAddr::new(one_ip.into(), POD_PORT));
    let server_two = Server::start(&two_ns, "two", SocketAddr::new(two_ip.into(), POD_PORT));
    let (one, two) = (pod("one", one_ip), pod("two", two_ip));

    let sticky = service(
        "sticky",
        "10.96.7.8",
        json!({"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
        &node,
        &[&one, &two],
    );
    let plain = service("plain", "10.96.7.9", json!({}), &node, &[&one, &two]);
    let before = ruleset(&node, &[&sticky, &plain], None);
    apply(&host, before.replacing());

    let names = |answers: Vec<(String, IpAddr)>| -> Vec<String> {
        answers.into_iter().map(|(name, _)| name).collect()
    };
    let mut plain_answers = Vec::new();
    for _ in 0..4 {
        plain_answers.push(ask(&client_ns, SocketAddr::from(([10, 96, 7, 9], SERVICE_PORT))).await);
    }
    let plain_answers = names(plain_answers);
    assert!(
        plain_answers.contains(&"one".to_owned()) && plain_answers.contains(&"two".to_owned()),
        "{plain_answers:?}"
    );
    let sticky_front = SocketAddr::from(([10, 96, 7, 8], SERVICE_PORT));
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(ask(&client_ns, sticky_front).await);
    }
    let answers = names(answers);
    let chosen = answers[0].clone();
    assert!(answers.iter().all(|a| *a == chosen), "{answers:?}");

    // Another Service comes, and the sticky one's endpoints are listed the other way round:
    // the table is updated, its turn-taking starts afresh at the pod not chosen, and the
    // client stays on its pod all the same.
    let (first, second) = if chosen == "one" {
        (&two, &one)
    } else {
        (&one, &two)
    };
    let sticky = service(
        "sticky",
        "10.96.7.8",
        json!({"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
        &node,
        &[first, second],
    );
    let other = service("other", "10.96.7.10", json!({}), &node, &[&one]);
    let after = ruleset(&node, &[&sticky, &plain, &other], None);
    apply(&host, after.updating(&before));
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(ask(&client_ns, sticky_front).await);
    }
    let answers = names(answers);
    assert!(
        answers.iter().all(|a| *a == chosen),
        "{chosen} then {answers:?}"
    );
    assert_eq!(
        ask(
            &client_ns,
            SocketAddr::from(([10, 96, 7, 10], SERVICE_PORT))
        )
        .await
        .0,
        "one"
    );
    // Replacing the table instead forgets the client: it goes to the first in turn.
    apply(&host, after.replacing());
    let (moved, _) = ask(&client_ns, sticky_front).await;
    assert_ne!(moved, chosen);

    drop((server_one, server_two));
    network.stop().await.unwrap();
}
