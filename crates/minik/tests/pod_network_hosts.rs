//! The pod network across hosts, and an exhausted pod CIDR (issue 19), end to end with the
//! real binary and the `oci` runtime.
//!
//! Two "hosts" are network namespaces of this test (`ph-host-a`, `ph-host-b`), each wired by a
//! veth pair to a bridge of the test in this namespace (`ph-lan`, 192.168.251.0/24: this
//! namespace .1, the hosts .2 and .3), so that the hosts share a layer-2 network with each
//! other and with this namespace (`crates/minik-net/src/tests.rs` wires its two hosts to each
//! other directly; here the server must be reached too). The server and the image registry
//! listen on 192.168.251.1, which the agents reach from inside their hosts; an agent runs inside
//! each host (`nsenter --net`: the mounts, cgroups and processes stay this machine's) with that
//! host's address and the cluster's K10 join token. The guestbook's shape then runs across
//! them: a frontend on one host finds `redis-leader` by name and reaches the backend on the
//! other host, by the Service and by pod IP, and the backend sees the frontend's own pod IP
//! (host-gateway routes, no NAT). No packet goes anywhere but loopback, the test's bridge and
//! the namespaces the test and its agents make; pod egress is off (the harness gives every
//! agent `--no-pod-egress`).
//!
//! The other test runs one agent in this namespace whose pod CIDR holds a single pod: the second
//! pod waits in `ContainerCreating`, without an address, with the kubelet's
//! `FailedCreatePodSandBox` event, until the first is gone.
//!
//! The nodes' names, namespaces, links and networks are this file's own (`ph-a`, `ph-b`,
//! `ph-c`; 10.253.0.0/16 and 10.98.0.0/16 inside the hosts, 10.254.0.0/16 and 10.112.0.0/16 —
//! apart from the 10.96.0.0/12 that `minik up` uses — in this namespace): bridges and tables
//! are named after the nodes. Everything is removed when a test ends, also when it fails.

mod support;

use support::podnet::{inside, log_with, network_leftovers, remove_network};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use minik_testkit::registry::{
    build_busybox_layout, docker_io_mirror, image_tools, push, Registry,
};
use minik_testkit::{Http, OciCleanup, Running};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const SERVICES: &str = "/api/v1/namespaces/default/services";

/// The bridge in this namespace that the hosts are wired to, and its address.
const LAN_BRIDGE: &str = "ph-lan";
const LAN_ADDRESS: &str = "192.168.251.1";
const LAN_PREFIX: u8 = 24;
/// Each host's interface on the LAN (inside its namespace).
const HOST_INTERFACE: &str = "lan";

/// A "host": its network namespace (`ip netns` name), the end of its veth pair in this
/// namespace, its address on the LAN, and the node its agent runs.
struct Host {
    netns: &'static str,
    root_end: &'static str,
    address: &'static str,
    node: &'static str,
}

const HOSTS: [Host; 2] = [
    Host {
        netns: "ph-host-a",
        root_end: "ph-lan-a",
        address: "192.168.251.2",
        node: "ph-a",
    },
    Host {
        netns: "ph-host-b",
        root_end: "ph-lan-b",
        address: "192.168.251.3",
        node: "ph-b",
    },
];
const HOSTS_CLUSTER_CIDR: &str = "10.253.0.0/16";
const HOSTS_SERVICE_CIDR: &str = "10.98.0.0/16";

/// The node of the exhaustion test, in this namespace, and its cluster's networks: a /30 per
/// node is a network address, the gateway, one pod and the broadcast address.
const SMALL_NODE: &str = "ph-c";
const SMALL_CLUSTER_CIDR: &str = "10.254.0.0/16";
const SMALL_SERVICE_CIDR: &str = "10.112.0.0/16";
const SMALL_MASK: &str = "30";

/// A CGI script of the test image: answers the address the request came from (busybox httpd
/// gives it as `REMOTE_ADDR`).
const PEER_CGI: &[u8] =
    b"#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n";

/// Runs `program args`; fails the test with its output if it fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `program args` for what it removes: whatever is not there is no error.
fn run_quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether `tool` runs; if not, says so through `cannot_run` (which fails under CI=true).
fn have(tool: &str, why: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !runs {
        minik_testkit::cannot_run(&format!("the {tool} command ({why})"), "not on PATH");
    }
    runs
}

/// The path `ip netns` pins namespace `name` at.
fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// `command` run inside the network namespace `netns` (`ip netns` name): `nsenter --net`, which
/// changes nothing else (the mounts, cgroups and processes stay this machine's, as the agent's
/// cleanup expects) and execs the program in its own process.
fn in_netns(netns: &str, command: &Command) -> Command {
    let mut wrapped = Command::new("nsenter");
    wrapped
        .arg(format!("--net={}", netns_path(netns).display()))
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// The test's LAN: the bridge in this namespace, the two host namespaces and their veth pairs.
/// Made by [`Lan::make`]; removed on drop (a host namespace takes its veth pair, and whatever
/// an agent left inside it, with it).
struct Lan;

impl Lan {
    fn make() -> Lan {
        Lan::remove();
        let lan = Lan;
        let lan_address = format!("{LAN_ADDRESS}/{LAN_PREFIX}");
        run("ip", &["link", "add", LAN_BRIDGE, "type", "bridge"]);
        run("ip", &["addr", "add", &lan_address, "dev", LAN_BRIDGE]);
        run("ip", &["link", "set", LAN_BRIDGE, "up"]);
        for host in &HOSTS {
            let address = format!("{}/{LAN_PREFIX}", host.address);
            run("ip", &["netns", "add", host.netns]);
            run(
                "ip",
                &[
                    "link",
                    "add",
                    host.root_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    HOST_INTERFACE,
                    "netns",
                    host.netns,
                ],
            );
            run(
                "ip",
                &["link", "set", host.root_end, "master", LAN_BRIDGE, "up"],
            );
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", host.netns];
                all.extend_from_slice(args);
                run("ip", &all);
            };
            inside(&["link", "set", "lo", "up"]);
            inside(&["addr", "add", &address, "dev", HOST_INTERFACE]);
            inside(&["link", "set", HOST_INTERFACE, "up"]);
        }
        lan
    }

    /// Removes the namespaces and links, whichever are there.
    fn remove() {
        for host in &HOSTS {
            run_quietly("ip", &["netns", "delete", host.netns]);
            run_quietly("ip", &["link", "delete", host.root_end]);
        }
        run_quietly("ip", &["link", "delete", LAN_BRIDGE]);
    }

    /// What of the LAN is still there: namespaces, links.
    fn leftovers() -> Vec<String> {
        let mut left = Vec::new();
        let namespaces = run("ip", &["netns", "list"]);
        for host in &HOSTS {
            if namespaces
                .lines()
                .any(|l| l.split_whitespace().next() == Some(host.netns))
                || netns_path(host.netns).exists()
            {
                left.push(format!("namespace {}", host.netns));
            }
        }
        for link in [LAN_BRIDGE, HOSTS[0].root_end, HOSTS[1].root_end] {
            if Path::new("/sys/class/net").join(link).exists() {
                left.push(format!("link {link}"));
            }
        }
        left
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        Lan::remove();
    }
}

/// What the pod network left inside `host`: links besides loopback and the LAN's, nftables
/// tables (the namespace is the test's: any is a leftover), routes into the cluster CIDR.
fn host_leftovers(host: &Host) -> Vec<String> {
    let mut left = Vec::new();
    let links = run("ip", &["-n", host.netns, "-o", "link", "show"]);
    for line in links.lines() {
        // `3: lan@if4: <...`
        let name = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or_default())
            .unwrap_or_default();
        if !["lo", HOST_INTERFACE].contains(&name) {
            left.push(format!("link {name}"));
        }
    }
    let tables = run(
        "nsenter",
        &[
            &format!("--net={}", netns_path(host.netns).display()),
            "--",
            "nft",
            "list",
            "tables",
        ],
    );
    left.extend(tables.lines().map(str::to_owned));
    let routes = run(
        "ip",
        &[
            "-n",
            host.netns,
            "-4",
            "route",
            "show",
            "root",
            HOSTS_CLUSTER_CIDR,
        ],
    );
    left.extend(routes.lines().map(|r| format!("route {r}")));
    left
}

/// Whether the tools these tests need are here; if not, says which (failing under CI=true).
fn can_run() -> bool {
    minik_testkit::oci_host()
        && image_tools()
        && have("nft", "the pod network's rules")
        && have("ip", "the test's hosts and links")
        && have("nsenter", "agents inside the test's hosts")
}

/// Pushes the test image (busybox with [`PEER_CGI`] at `/www/cgi-bin/peer`) to `registry` as
/// `busybox:1.36`; answers the registries file that sends docker.io to it.
fn push_image(registry: &Registry, build: &Path) -> PathBuf {
    let layout = build_busybox_layout(
        build,
        "1.36",
        &[("/www/cgi-bin/peer", PEER_CGI)],
        &[],
        &["sh"],
        &[],
    );
    push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");
    docker_io_mirror(build, &registry.addr())
}

/// The agent flags of both tests: the oci runtime, the pod network, images from the test's
/// registry only.
fn oci_flags(registries: &Path) -> Vec<String> {
    [
        "--runtime",
        "oci",
        "--pod-network",
        "on",
        "--disable-default-registry-endpoint",
        "--private-registry",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([registries.to_string_lossy().into_owned()])
    .collect()
}

/// One agent: its node, its process, and what removes its containers if it cannot.
struct Agent {
    node: &'static str,
    running: Option<Running>,
    cleanup: OciCleanup,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Stops the agent with SIGTERM (it removes its pods and its pod network), SIGKILL after
    /// 20 s; then removes what its containers left, if anything.
    fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.terminate(Duration::from_secs(20));
        }
        self.cleanup.clean();
    }
}

/// A pod of one busybox container running `script` on `node`.
fn pod(name: &str, node: &str, labels: Value, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox:1.36",
                "command": ["/bin/sh", "-c", script],
            }],
        }
    })
}

/// Creates `object` at `path`; answers it. A pod's uid goes to the cleanup of its node's agent.
async fn create(http: &Http, agents: &[Agent], path: &str, object: Value) -> Value {
    let created = http.post(path, &object).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let body = &created.body;
    if let Some(uid) = body["metadata"]["uid"].as_str() {
        for agent in agents.iter().filter(|a| body["spec"]["nodeName"] == a.node) {
            agent.cleanup.track_pod(uid);
        }
    }
    created.body
}

/// Waits until pod `name` runs with an address; answers it.
async fn running(http: &Http, name: &str) -> Value {
    http.wait_until(
        &format!("pod {name} to run with an address"),
        &format!("{PODS}/{name}"),
        |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string(),
    )
    .await
}

/// The value of `key=` on a line of `log`.
fn value_of<'a>(log: &'a str, key: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The IPv4 address [`PEER_CGI`] answered: busybox httpd listens on IPv6 too and names an IPv4
/// peer `[::ffff:a.b.c.d]`.
fn peer(answer: &str) -> String {
    let answer = answer.trim().trim_start_matches('[').trim_end_matches(']');
    answer.trim_start_matches("::ffff:").to_owned()
}

/// Waits until node `name` has its pod CIDR (the server's node IPAM gives it once the Node is
/// registered, which may be after it is Ready); answers the Node.
async fn with_pod_cidr(http: &Http, name: &str) -> Value {
    http.wait_until(
        &format!("node {name} to have a pod CIDR"),
        &format!("/api/v1/nodes/{name}"),
        |n| n["spec"]["podCIDR"].is_string(),
    )
    .await
}

/// An HTTP client of the server at `base` that trusts its CA and sends the administrator's
/// token: the server listens on the LAN, where no client is let in without one.
fn admin_http(base: &str, admin_token: &str) -> Http {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {admin_token}")).unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    let client = minik_testkit::client_builder(base)
        .default_headers(headers)
        .timeout(support::DEADLINE)
        .build()
        .unwrap();
    Http {
        base: base.to_owned(),
        client,
    }
}

/// The cluster of two hosts. Dropping it stops the agents with SIGTERM, removes whatever their
/// containers left, then the server, the registry and the LAN with everything in the hosts.
struct TwoHosts {
    http: Http,
    agents: Vec<Agent>,
    _server: Running,
    _registry: Registry,
    _dirs: [tempfile::TempDir; 2],
    // Last: the agents are gone before their hosts are.
    _lan: Lan,
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.stop();
        }
    }
}

impl TwoHosts {
    async fn start() -> Option<TwoHosts> {
        if !can_run() {
            return None;
        }
        let lan = Lan::make();
        let registry = Registry::start_on(LAN_ADDRESS.parse().unwrap())?;
        let build = tempfile::tempdir().unwrap();
        let registries = push_image(&registry, build.path());
        let server_dir = tempfile::tempdir().unwrap();
        let server = support::MINIK.server_on(
            &format!("{LAN_ADDRESS}:0"),
            server_dir.path(),
            &[
                "--cluster-cidr",
                HOSTS_CLUSTER_CIDR,
                "--service-cidr",
                HOSTS_SERVICE_CIDR,
            ],
        );
        assert!(
            server.base.starts_with(&format!("https://{LAN_ADDRESS}:")),
            "{}",
            server.base
        );
        let read = |file: &str| {
            std::fs::read_to_string(server_dir.path().join("auth").join(file))
                .unwrap_or_else(|e| panic!("the server's auth/{file}: {e}"))
                .trim()
                .to_owned()
        };
        let (join, admin) = (read("join-token"), read("admin-token"));
        assert!(join.starts_with("K10"), "{join}");
        let http = admin_http(&server.base, &admin);
        let mut agents = Vec::new();
        for host in &HOSTS {
            let dir = tempfile::tempdir().unwrap();
            let cleanup = OciCleanup::new(dir.path());
            let mut extra = vec![
                "--token".to_owned(),
                join.clone(),
                "--address".to_owned(),
                host.address.to_owned(),
            ];
            extra.extend(oci_flags(&registries));
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let command =
                support::MINIK.node_command(&server.base, host.node, dir.path(), &extra, &[]);
            let child = in_netns(host.netns, &command)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start minik node in its host");
            agents.push(Agent {
                node: host.node,
                running: Some(Running::agent(child, &server.base, dir.path())),
                cleanup,
                _dir: dir,
            });
        }
        let hosts = TwoHosts {
            http,
            agents,
            _server: server,
            _registry: registry,
            _dirs: [build, server_dir],
            _lan: lan,
        };
        for host in &HOSTS {
            minik_testkit::wait_node_ready(&hosts.http.client, &hosts.http.base, host.node).await;
        }
        Some(hosts)
    }

    async fn create(&self, path: &str, object: Value) -> Value {
        create(&self.http, &self.agents, path, object).await
    }
}

/// The guestbook's shape across two hosts: the frontend on host B finds `redis-leader` by name
/// and reaches the backend on host A through it and by pod IP; the backend sees the frontend's
/// own pod IP both ways, and a pod on A reaches the frontend by pod IP with its own address
/// seen. Stopping the agents leaves nothing in the hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guestbook_shape_works_across_two_hosts() {
    let _turn = TURN.lock().await;
    let Some(mut c) = TwoHosts::start().await else {
        return;
    };
    // Each node advertises its host's address and has a pod CIDR of its own.
    let mut pod_cidrs = Vec::new();
    for host in &HOSTS {
        let node = with_pod_cidr(&c.http, host.node).await;
        let internal: Vec<&str> = node["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "InternalIP")
            .filter_map(|a| a["address"].as_str())
            .collect();
        assert_eq!(internal, [host.address], "{node}");
        let cidr = node["spec"]["podCIDR"].as_str().unwrap().to_owned();
        assert!(
            inside(cidr.split('/').next().unwrap(), HOSTS_CLUSTER_CIDR),
            "{cidr}"
        );
        pod_cidrs.push(cidr);
    }
    assert_ne!(pod_cidrs[0], pod_cidrs[1]);
    // Host-gateway: each host routes the other's pod CIDR via the other's address.
    for (i, host) in HOSTS.iter().enumerate() {
        let other = &HOSTS[1 - i];
        let expected = format!(
            "{} via {} dev {HOST_INTERFACE}",
            pod_cidrs[1 - i],
            other.address
        );
        support::wait_for(
            &format!("{} to route {expected}", host.netns),
            support::DEADLINE,
            || async {
                let routes = run(
                    "ip",
                    &[
                        "-n",
                        host.netns,
                        "-4",
                        "route",
                        "show",
                        "root",
                        HOSTS_CLUSTER_CIDR,
                    ],
                );
                if routes.contains(&expected) {
                    Ok(())
                } else {
                    Err(routes)
                }
            },
        )
        .await;
    }

    // The backend on host A, behind `redis-leader` (the guestbook's port, httpd behind it).
    let service = c
        .create(
            SERVICES,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "redis-leader"},
                "spec": {"selector": {"app": "redis-leader"},
                         "ports": [{"port": 6379, "targetPort": 8080}]}
            }),
        )
        .await;
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(inside(&cluster_ip, HOSTS_SERVICE_CIDR), "{cluster_ip}");
    let serve_leader = "echo i-am-the-leader > /www/index.html; exec httpd -f -p 8080 -h /www";
    c.create(
        PODS,
        pod(
            "redis-leader",
            HOSTS[0].node,
            json!({"app": "redis-leader"}),
            serve_leader,
        ),
    )
    .await;
    let leader = running(&c.http, "redis-leader").await;
    let leader_ip = leader["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(inside(&leader_ip, &pod_cidrs[0]), "{leader}");
    assert_eq!(leader["status"]["hostIP"], HOSTS[0].address, "{leader}");

    // The frontend on host B: by name (the cluster DNS of its node, the Service's ClusterIP),
    // then by pod IP; then it serves too.
    let frontend_script = format!(
        "until wget -qO- http://redis-leader:6379/ > /tmp/a; do sleep 0.2; done; \
         echo found=$(cat /tmp/a); \
         until wget -qO- http://redis-leader:6379/cgi-bin/peer > /tmp/b; do sleep 0.2; done; \
         echo by-name-seen=$(cat /tmp/b); \
         until wget -qO- http://{leader_ip}:8080/cgi-bin/peer > /tmp/c; do sleep 0.2; done; \
         echo by-pod-ip-seen=$(cat /tmp/c); \
         echo done; exec httpd -f -p 8080 -h /www"
    );
    c.create(
        PODS,
        pod(
            "frontend",
            HOSTS[1].node,
            json!({"app": "frontend"}),
            &frontend_script,
        ),
    )
    .await;
    let frontend = running(&c.http, "frontend").await;
    let frontend_ip = frontend["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(inside(&frontend_ip, &pod_cidrs[1]), "{frontend}");
    assert_eq!(frontend["status"]["hostIP"], HOSTS[1].address, "{frontend}");
    let log = log_with(&c.http, "frontend", None, "done").await;
    assert_eq!(value_of(&log, "found"), Some("i-am-the-leader"), "{log}");
    // No NAT: the backend sees the frontend's own pod IP, through the Service and directly.
    for key in ["by-name-seen", "by-pod-ip-seen"] {
        let seen = value_of(&log, key).unwrap_or_else(|| panic!("no {key} in {log}"));
        assert_eq!(peer(seen), frontend_ip, "{key}: {log}");
    }

    // And the other way: a pod on host A reaches the frontend by pod IP, seen as itself.
    let caller_script = format!(
        "until wget -qO- http://{frontend_ip}:8080/cgi-bin/peer > /tmp/a; do sleep 0.2; done; \
         echo seen=$(cat /tmp/a); echo done; exec sleep 3600"
    );
    c.create(
        PODS,
        pod(
            "caller",
            HOSTS[0].node,
            json!({"app": "caller"}),
            &caller_script,
        ),
    )
    .await;
    let caller_ip = running(&c.http, "caller").await["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = log_with(&c.http, "caller", None, "done").await;
    let seen = value_of(&log, "seen").unwrap_or_else(|| panic!("no seen= in {log}"));
    assert_eq!(peer(seen), caller_ip, "{log}");

    // Stopping the agents leaves nothing in their hosts: no bridge, veth, table or route.
    for host in &HOSTS {
        assert!(
            !host_leftovers(host).is_empty(),
            "{} has no pod network",
            host.netns
        );
    }
    for agent in &mut c.agents {
        agent.stop();
    }
    for host in &HOSTS {
        assert_eq!(host_leftovers(host), Vec::<String>::new(), "{}", host.netns);
    }
    // And the test's own LAN goes with the cluster.
    drop(c);
    assert_eq!(Lan::leftovers(), Vec::<String>::new());
}

/// The cluster of the exhaustion test: one agent in this namespace. Dropping it stops the
/// agent with SIGTERM and removes whatever it left.
struct SmallNode {
    http: Http,
    agent: Agent,
    _server: Running,
    _registry: Registry,
    _dirs: [tempfile::TempDir; 2],
}

impl Drop for SmallNode {
    fn drop(&mut self) {
        self.agent.stop();
        remove_network(SMALL_NODE);
    }
}

/// A node whose pod CIDR holds one pod: the second pod waits in `ContainerCreating`, with a
/// `FailedCreatePodSandBox` event that names the exhausted pod CIDR, until the first is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pod_cidr_is_reported_as_the_kubelet_does() {
    let _turn = TURN.lock().await;
    if !can_run() {
        return;
    }
    remove_network(SMALL_NODE);
    let Some(registry) = Registry::start() else {
        return;
    };
    let build = tempfile::tempdir().unwrap();
    let registries = push_image(&registry, build.path());
    let server_dir = tempfile::tempdir().unwrap();
    let server = support::MINIK.server(
        server_dir.path(),
        &[
            "--cluster-cidr",
            SMALL_CLUSTER_CIDR,
            "--service-cidr",
            SMALL_SERVICE_CIDR,
            "--node-cidr-mask-size",
            SMALL_MASK,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let cleanup = OciCleanup::new(dir.path());
    let flags = oci_flags(&registries);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let running_agent = support::MINIK.node(&server.base, SMALL_NODE, dir.path(), &flags);
    let mut c = SmallNode {
        http: Http::new(&server.base),
        agent: Agent {
            node: SMALL_NODE,
            running: Some(running_agent),
            cleanup,
            _dir: dir,
        },
        _server: server,
        _registry: registry,
        _dirs: [build, server_dir],
    };
    minik_testkit::wait_node_ready(&c.http.client, &c.http.base, SMALL_NODE).await;
    let node = with_pod_cidr(&c.http, SMALL_NODE).await;
    assert_eq!(node["spec"]["podCIDR"], "10.254.0.0/30", "{node}");
    let agents = std::slice::from_ref(&c.agent);

    create(
        &c.http,
        agents,
        PODS,
        pod("first", SMALL_NODE, json!({}), "exec sleep 3600"),
    )
    .await;
    let first = running(&c.http, "first").await;
    assert_eq!(first["status"]["podIP"], "10.254.0.2", "{first}");

    create(
        &c.http,
        agents,
        PODS,
        pod("second", SMALL_NODE, json!({}), "exec sleep 3600"),
    )
    .await;
    let message = support::wait_for(
        "a FailedCreatePodSandBox event of pod second",
        support::DEADLINE,
        || async {
            let events = c
                .http
                .get_json(
                    "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=second",
                )
                .await;
            let found = events.as_ref().and_then(|list| {
                list["items"].as_array()?.iter().find_map(|e| {
                    (e["reason"] == "FailedCreatePodSandBox" && e["type"] == "Warning")
                        .then(|| e["message"].as_str().unwrap_or_default().to_owned())
                })
            });
            found.ok_or(events)
        },
    )
    .await;
    assert_eq!(
        message,
        "Failed to create pod sandbox: plugin type=\"minik-net\" failed (add): \
         no IP addresses available in pod CIDR 10.254.0.0/30: all 1 are in use"
    );
    let second = c
        .http
        .wait_until(
            "pod second to wait in ContainerCreating",
            &format!("{PODS}/second"),
            |p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "ContainerCreating"
            },
        )
        .await;
    assert_eq!(second["status"]["phase"], "Pending", "{second}");
    let waiting = second["status"].clone();

    // The first pod goes: its address is free, and the second pod gets it.
    let deleted = c.http.delete(&format!("{PODS}/first")).await;
    assert!(deleted.is_success(), "{deleted:?}");
    let second = running(&c.http, "second").await;
    assert_eq!(second["status"]["podIP"], "10.254.0.2", "{second}");

    // Stopping the agent leaves no bridge, table or route.
    assert!(!network_leftovers(SMALL_NODE, SMALL_CLUSTER_CIDR).is_empty());
    c.agent.stop();
    assert_eq!(
        network_leftovers(SMALL_NODE, SMALL_CLUSTER_CIDR),
        Vec::<String>::new()
    );

    // While it waited for its sandbox, the pod had no address and was not ready to start
    // containers, as the kubelet reports such a pod: an address (the node's, say) would be
    // published in its Services' Endpoints and DNS. Checked last, so that the rest runs first.
    assert!(
        waiting["podIP"].is_null() && waiting["podIPs"].is_null(),
        "a pod without a place on the pod network has an address: {waiting}"
    );
    let ready_to_start = waiting["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodReadyToStartContainers"))
        .map(|c| c["status"].clone());
    assert_eq!(
        ready_to_start,
        Some(json!("False")),
        "a pod whose sandbox failed is ready to start containers: {waiting}"
    );
}

/// One test at a time: each runs a server, agents and containers, and their deadlines assume
/// the machine is not shared with the other.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
