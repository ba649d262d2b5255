//! Services end to end with the real binary: a server and two node agents (on 127.0.0.2 and
//! 127.0.0.3) running pods with the process runtime. The Kubernetes tutorial scenario — a
//! Deployment of 3 HTTP servers that answer with their pod name behind a Service — through the
//! ClusterIP, the NodePort of every node and the LoadBalancer port; a deleted pod, scaling to
//! 1, readiness gating, service environment variables, and port-forward.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// An HTTP server on `$POD_IP:$PORT` that answers `/` with its pod name and `/env` with the
/// service variable it was started with. On SIGTERM it keeps serving for a second before it
/// exits, the usual graceful termination, so that the proxies have learnt it is going.
const SERVER: &str = r#"
import http.server, os, signal, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/env":
            body = os.environ.get("WEB_SERVICE_HOST", "-")
        else:
            body = os.environ["POD_NAME"]
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
# Serve on for 3 s after SIGTERM, while the proxies learn that the pod is going (what a
# preStop delay does in Kubernetes), so that no request fails on a loaded machine.
signal.signal(signal.SIGTERM, lambda *a: threading.Timer(3.0, lambda: os._exit(0)).start())
http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H).serve_forever()
"#;

struct Cluster {
    client: reqwest::Client,
    base: String,
    marks: tempfile::TempDir,
    // Dropped in order: nodes before the server.
    nodes: Vec<support::Running>,
    // Regression: the agents die by SIGKILL, which leaves their pods running (to be adopted by
    // the next agent); one python pod per run outlived the tests. Dropped after the agents.
    _pods: minik_testkit::KillPodsOnDrop,
    _server: support::Running,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(&[("n1", "127.0.0.2"), ("n2", "127.0.0.3")], &[]).await
    }

    /// A server and a node agent per `(name, address)`, started with `extra` flags.
    async fn start_with(agents: &[(&str, &str)], extra: &[&str]) -> Cluster {
        let server_dir = tempfile::tempdir().unwrap();
        let server = support::MINIK.server(server_dir.path(), &[]);
        let mut dirs = vec![server_dir];
        let mut nodes = Vec::new();
        for (name, address) in agents {
            let dir = tempfile::tempdir().unwrap();
            let mut flags = vec!["--address", address];
            flags.extend_from_slice(extra);
            nodes.push(support::MINIK.node(&server.base, name, dir.path(), &flags));
            dirs.push(dir);
        }
        let cluster = Cluster {
            // A new connection per request, so that each one is balanced anew; it trusts the
            // cluster CA for the API (the Services it reaches serve plain HTTP).
            client: minik_testkit::client_builder(&server.base)
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: server.base.clone(),
            marks: tempfile::tempdir().unwrap(),
            nodes,
            _pods: minik_testkit::KillPodsOnDrop(
                dirs.iter().map(|d| d.path().to_owned()).collect(),
            ),
            _server: server,
            _dirs: dirs,
        };
        for (node, _) in agents {
            minik_testkit::wait_node_ready(&cluster.client, &cluster.base, node).await;
        }
        cluster
    }

    async fn get(&self, path: &str) -> Option<Value> {
        support::get_json(&self.client, &self.base, path).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, ct: &str, body: Value) -> Value {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let code = r.status();
        let v: Value = r.json().await.expect("json");
        assert!(code.is_success(), "{path}: {code} {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, "application/json", body)
            .await
    }

    /// The body of `GET http://addr/path`, or `None` if the request failed.
    async fn fetch(&self, addr: &str, path: &str) -> Option<String> {
        let r = self
            .client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.text().await.ok()
    }

    /// Names of the running, ready pods of the deployment.
    async fn ready_pods(&self) -> BTreeSet<String> {
        let Some(list) = self
            .get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
            .await
        else {
            return BTreeSet::new();
        };
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// (ready, not ready) pod names in the Endpoints of `web`.
    async fn endpoints(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let Some(ep) = self.get("/api/v1/namespaces/default/endpoints/web").await else {
            return Default::default();
        };
        let names = |key: &str| -> BTreeSet<String> {
            ep["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s[key].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a["targetRef"]["name"].as_str().map(str::to_owned))
                .collect()
        };
        (names("addresses"), names("notReadyAddresses"))
    }

    /// Who answered each of `n` requests to `addr`, or `None` if one failed.
    async fn try_answers(&self, addr: &str, n: usize) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.fetch(addr, "/").await?);
        }
        Some(out)
    }

    /// Waits until six requests in a row to `addr` are all answered, by exactly `pods` between
    /// them.
    async fn until_answered_by(&self, what: &str, addr: &str, pods: &BTreeSet<String>) {
        support::wait_for(what, support::DEADLINE, || async {
            (set(&self.try_answers(addr, 6).await?) == *pods).then_some(())
        })
        .await;
    }

    /// Who answered each of `n` requests to `addr`; every request must succeed.
    async fn answers(&self, addr: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..n {
            match self.fetch(addr, "/").await {
                Some(name) => out.push(name),
                None => panic!("request {i} to {addr} failed"),
            }
        }
        out
    }
}

fn set(names: &[String]) -> BTreeSet<String> {
    names.iter().cloned().collect()
}

/// Starts `minik port-forward` and returns it with the local address it listens on.
fn port_forward(base: &str, target: &str, remote: &str) -> (support::Running, String) {
    let ca = minik_testkit::ca_for(base).expect("the server's CA");
    let mut child = support::MINIK
        .command()
        .args(["port-forward", "--server", base, target, remote])
        .arg("--certificate-authority")
        .arg(ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minik port-forward");
    let lines = minik_testkit::lines_of(child.stdout.take().expect("stdout"));
    let mut running = support::Running::guard(child);
    running.base = base.to_owned();
    let line = minik_testkit::line_after(&lines, "Forwarding from ", "minik port-forward");
    let (local, to) = line.split_once(" -> ").expect("LOCAL -> REMOTE");
    assert_eq!(to, remote.rsplit(':').next().unwrap());
    (running, local.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_scenario_through_every_kind_of_service_address() {
    let c = Cluster::start().await;
    let (cluster_ip, node_port) = web_service(&c, "LoadBalancer").await;
    let pods = deploy_web(&c).await;

    // 30 requests to the ClusterIP are answered by all 3 pods.
    let front = format!("{cluster_ip}:8080");
    c.until_answered_by("the proxies to know all 3 pods", &front, &pods)
        .await;
    assert_eq!(set(&c.answers(&front, 30).await), pods);
    // The NodePort of every node, and the LoadBalancer port on every node's address.
    for node in ["127.0.0.2", "127.0.0.3"] {
        assert_eq!(
            set(&c.answers(&format!("{node}:{node_port}"), 30).await),
            pods,
            "NodePort on {node}"
        );
        assert_eq!(
            set(&c.answers(&format!("{node}:8080"), 30).await),
            pods,
            "LoadBalancer port on {node}"
        );
    }
    let ingress = support::wait_for("the LoadBalancer ingress", support::DEADLINE, || async {
        let s = c.get("/api/v1/namespaces/default/services/web").await?;
        let ips: Vec<String> = s["status"]["loadBalancer"]["ingress"]
            .as_array()?
            .iter()
            .filter_map(|i| i["ip"].as_str().map(str::to_owned))
            .collect();
        (ips.len() == 2).then_some(ips)
    })
    .await;
    assert_eq!(ingress, ["127.0.0.2", "127.0.0.3"]);
    // Pods started after the Service see its variables.
    assert_eq!(
        c.fetch(&front, "/env").await.as_deref(),
        Some(cluster_ip.as_str())
    );

    // Readiness gating: a pod that is not ready gets no traffic, and gets it back when ready.
    let gated = pods.iter().next().unwrap().clone();
    let mark = c.marks.path().join(format!("not-ready-{gated}"));
    std::fs::write(&mark, b"").unwrap();
    support::wait_for(
        "the gated pod to be a not-ready address",
        support::DEADLINE,
        || async {
            let (_, not_ready) = c.endpoints().await;
            not_ready.contains(&gated).then_some(())
        },
    )
    .await;
    support::wait_for(
        "the proxies to stop sending to the gated pod",
        support::DEADLINE,
        || async { (!c.answers(&front, 6).await.contains(&gated)).then_some(()) },
    )
    .await;
    let answered = c.answers(&front, 30).await;
    assert!(
        !answered.contains(&gated),
        "{gated} answered while not ready"
    );
    assert_eq!(set(&answered).len(), 2);
    std::fs::remove_file(&mark).unwrap();
    support::wait_for(
        "the gated pod to get traffic again",
        support::DEADLINE,
        || async { c.answers(&front, 6).await.contains(&gated).then_some(()) },
    )
    .await;

    // Port-forward through the server, to a pod and to the Service.
    let (_forward, local) = port_forward(&c.base, &format!("pod/{gated}"), ":8080");
    assert_eq!(c.fetch(&local, "/").await.as_deref(), Some(gated.as_str()));
    assert_eq!(c.fetch(&local, "/").await.as_deref(), Some(gated.as_str()));
    let (_forward_svc, local_svc) = port_forward(&c.base, "svc/web", "0:8080");
    let via_service = c
        .fetch(&local_svc, "/")
        .await
        .expect("an answer through svc/web");
    assert!(pods.contains(&via_service), "{via_service}");

    // Delete one pod: every request keeps succeeding while its replacement comes up.
    let victim = pods.iter().last().unwrap().clone();
    let client = c.client.clone();
    let base = c.base.clone();
    let delete = tokio::spawn(async move {
        client
            .delete(format!("{base}/api/v1/namespaces/default/pods/{victim}"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        c.answers(&front, 5).await;
        let ready = c.ready_pods().await;
        if ready.len() == 3 && ready != pods {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replacement pod became ready"
        );
    }
    assert_eq!(delete.await.unwrap().unwrap(), 200);

    // Scale to 1: all requests go to the one left.
    scale_to_one(&c, &front, &format!("127.0.0.3:{node_port}")).await;

    // Deleting the Service stops the proxies listening.
    delete_service(&c, &front).await;
}

/// The nftables tables of this host (`nft list tables`); fails the test if nft cannot run: the
/// nftables mode needs it (CI installs it).
fn nft_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft runs (the nftables mode needs it: apt-get install nftables)");
    assert!(
        out.status.success(),
        "nft list tables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the named nftables tables when dropped, so that a failing test leaves no rules
/// behind; a table the agent deleted already is no error.
struct Tables(Vec<String>);

impl Drop for Tables {
    fn drop(&mut self) {
        for table in &self.0 {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", table])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether a TCP socket listens on `addr` (from /proc/net/tcp, whatever process holds it).
fn listening_on(addr: std::net::SocketAddrV4) -> bool {
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
}

/// The ClusterIP and NodePort part of the tutorial scenario with agents in nftables mode: the
/// kernel translates the connections and nothing listens on the Service addresses. Each agent
/// keeps a table of its own, which goes when the agent stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_scenario_through_nftables_agents() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    nft_tables();
    // Names of this run only, so that concurrent runs do not share tables.
    let names = [
        format!("nft{}-1", std::process::id()),
        format!("nft{}-2", std::process::id()),
    ];
    let tables: Vec<String> = names.iter().map(|n| format!("minik-{n}")).collect();
    let _cleanup = Tables(tables.clone());
    let mut c = Cluster::start_with(
        &[(&names[0], "127.0.0.4"), (&names[1], "127.0.0.5")],
        &["--proxy-mode", "nftables"],
    )
    .await;
    support::wait_for("both agents' tables", support::DEADLINE, || async {
        let listed = nft_tables();
        tables
            .iter()
            .all(|t| listed.contains(&format!("table ip {t}\n")))
            .then_some(())
    })
    .await;

    let (cluster_ip, node_port) = web_service(&c, "NodePort").await;
    let cluster_ip: std::net::Ipv4Addr = cluster_ip.parse().unwrap();
    let front = format!("{cluster_ip}:8080");

    // No endpoints yet: the connection is refused at once (a TCP reset), not left hanging,
    // although a socket (this test's) listens on the address: the table refuses it.
    let decoy = tokio::net::TcpListener::bind(&front).await.unwrap();
    support::wait_for(
        "the ClusterIP to refuse while there are no endpoints",
        support::DEADLINE,
        || async {
            let refused = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(&front),
            )
            .await
            .ok()?
            .err()?;
            (refused.kind() == std::io::ErrorKind::ConnectionRefused).then_some(())
        },
    )
    .await;

    let pods = deploy_web(&c).await;

    // The ClusterIP spreads connections over all 3 pods.
    c.until_answered_by("the tables to know all 3 pods", &front, &pods)
        .await;
    // The kernel sent them all to the pods, none to the socket on the address; without it,
    // nothing listens there.
    assert_eq!(set(&c.answers(&front, 30).await), pods);
    drop(decoy);
    assert!(
        !listening_on(std::net::SocketAddrV4::new(cluster_ip, 8080)),
        "something listens on {front} in nftables mode"
    );
    // The NodePort on every node's address, and on any local address (as kube-proxy).
    for node in ["127.0.0.4", "127.0.0.5", "127.0.0.1"] {
        assert_eq!(
            set(&c.answers(&format!("{node}:{node_port}"), 30).await),
            pods,
            "NodePort on {node}"
        );
    }
    assert_eq!(
        c.fetch(&front, "/env").await.as_deref(),
        Some(cluster_ip.to_string().as_str())
    );

    // A connection opened before an endpoint change carries on after it (conntrack keeps
    // its translation while the table is replaced).
    let mut open = tokio::net::TcpStream::connect(&front).await.unwrap();
    let gated = pods.iter().next().unwrap().clone();
    let mark = c.marks.path().join(format!("not-ready-{gated}"));
    std::fs::write(&mark, b"").unwrap();
    support::wait_for(
        "the tables to stop sending to the gated pod",
        support::DEADLINE,
        || async { (!c.answers(&front, 6).await.contains(&gated)).then_some(()) },
    )
    .await;
    let answered = c.answers(&front, 30).await;
    assert!(
        !answered.contains(&gated),
        "{gated} answered while not ready"
    );
    open.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    open.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(pods.iter().any(|p| reply.ends_with(p.as_str())), "{reply}");
    std::fs::remove_file(&mark).unwrap();

    // Scale to 1: every connection goes to the one left, through the ClusterIP and the
    // NodePort.
    scale_to_one(&c, &front, &format!("127.0.0.5:{node_port}")).await;

    // Deleting the Service takes its translation away.
    delete_service(&c, &front).await;

    // Stopped agents delete their tables.
    for node in &mut c.nodes {
        node.terminate(Duration::from_secs(30));
    }
    let listed = nft_tables();
    for table in &tables {
        assert!(
            !listed.contains(&format!("table ip {table}\n")),
            "{table} is still there after its agent stopped:\n{listed}"
        );
    }
}

/// Runs `ip ARGS`; fails the test with ip's words if it fails (the test needs iproute2 and
/// root, as CI has).
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (this test needs iproute2: apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a TCP connection to `addr` opens within 3 s, made from network namespace `ns`.
fn connects_from(ns: &str, addr: &str) -> bool {
    let (host, port) = addr.rsplit_once(':').unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c"])
        .arg("import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)")
        .args([host, port])
        .stderr(Stdio::null())
        .status()
        .expect("run python3 in the namespace")
        .success()
}

/// Another "host": a network namespace joined to this one by a veth pair, `host` on this
/// side and `peer` inside. Dropping it stops the agent inside (SIGTERM, so that it stops its
/// pods), kills whatever still runs in the namespace, and deletes the veth pair and the
/// namespace, so that a failing test leaves nothing behind.
struct OtherHost {
    ns: String,
    veth: String,
    host: String,
    peer: String,
    agent: Option<support::Running>,
}

impl OtherHost {
    /// Namespace and link names and a /30 of 10.234.0.0/16 that are this run's own.
    fn create() -> OtherHost {
        let pid = std::process::id();
        let slot = pid % 16384;
        let (a, b) = (slot / 64, (slot % 64) * 4);
        let other = OtherHost {
            ns: format!("minik-test-{pid}"),
            veth: format!("mkh{pid}"),
            host: format!("10.234.{a}.{}", b + 1),
            peer: format!("10.234.{a}.{}", b + 2),
            agent: None,
        };
        let inside = format!("mkn{pid}");
        ip(&["netns", "add", &other.ns]);
        ip(&[
            "link",
            "add",
            &other.veth,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
            "netns",
            &other.ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", other.host),
            "dev",
            &other.veth,
        ]);
        ip(&["link", "set", &other.veth, "up"]);
        let addr = format!("{}/30", other.peer);
        ip(&["-n", &other.ns, "addr", "add", &addr, "dev", &inside]);
        ip(&["-n", &other.ns, "link", "set", &inside, "up"]);
        ip(&["-n", &other.ns, "link", "set", "lo", "up"]);
        other
    }

    /// Stops the agent inside: SIGTERM, which stops its pods' processes.
    fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.terminate(Duration::from_secs(15));
        }
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        self.stop_agent();
        // Anything left in the namespace is this test's (a pod the agent did not stop).
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        for args in [
            vec!["link", "del", self.veth.as_str()],
            vec!["netns", "del", self.ns.as_str()],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The file of the sysctl the nftables agent sets so that loopback-sourced connections may
/// leave the host.
const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// Puts `net.ipv4.conf.all.route_localnet` back to the value it had when made, when dropped
/// (an agent sets it and, on purpose, never resets it).
struct RestoreRouteLocalnet(String);

impl RestoreRouteLocalnet {
    fn save() -> RestoreRouteLocalnet {
        RestoreRouteLocalnet(std::fs::read_to_string(ROUTE_LOCALNET).expect(ROUTE_LOCALNET))
    }
}

impl Drop for RestoreRouteLocalnet {
    fn drop(&mut self) {
        if std::fs::read_to_string(ROUTE_LOCALNET).ok().as_ref() != Some(&self.0) {
            let _ = std::fs::write(ROUTE_LOCALNET, &self.0);
        }
    }
}

/// Starts `minik server` on every interface (`0.0.0.0:0`), so that an agent in another
/// network namespace reaches it; loopback clients need no token. Returns it with its port.
fn start_server_on_all_interfaces(data_dir: &std::path::Path) -> (support::Running, u16) {
    let mut running =
        support::MINIK.server_on("0.0.0.0:0", data_dir, &["--allow-anonymous-loopback"]);
    let port: u16 = running
        .base
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {:?}", running.base));
    // Its certificate names every address of this host, loopback included.
    running.base = format!("https://127.0.0.1:{port}");
    minik_testkit::remember_ca(&running.base, &data_dir.join("tls").join("ca.crt"));
    (running, port)
}

/// nftables mode with the endpoints on another host: the server and an nftables agent run in
/// this network namespace, the pods' agent in a second one (another host, joined by a veth
/// pair). A client here reaches the pods through the ClusterIP and `127.0.0.1:nodePort`: the
/// agent turned on `route_localnet` and its table masquerades the loopback-sourced
/// connections that leave the host. Packets from the other host to this one's loopback
/// addresses, which `route_localnet` would let in, are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_cluster_ips_reach_endpoints_on_another_host() {
    nft_tables();
    // Dropped last: the values and tables as they were, once every process is gone.
    let _route_localnet = RestoreRouteLocalnet::save();
    let here = format!("nftx{}-h", std::process::id());
    let there = format!("nftx{}-o", std::process::id());
    let _tables = Tables(vec![format!("minik-{here}"), format!("minik-{there}")]);
    let mut other = OtherHost::create();

    let server_dir = tempfile::tempdir().unwrap();
    let (server, port) = start_server_on_all_interfaces(server_dir.path());
    let join = std::fs::read_to_string(server_dir.path().join("auth/join-token"))
        .expect("the server's join token");
    let here_dir = tempfile::tempdir().unwrap();
    let here_agent = support::MINIK.node(
        &server.base,
        &here,
        here_dir.path(),
        &["--address", "127.0.0.7", "--proxy-mode", "nftables"],
    );
    // The other host's agent reaches the server over the veth pair, with the join token
    // (it is not a loopback client); its pods listen on its address there.
    let there_dir = tempfile::tempdir().unwrap();
    let agent = Command::new("ip")
        .args(["netns", "exec", &other.ns, support::MINIK.bin, "node"])
        .args(["--server", &format!("https://{}:{port}", other.host)])
        .args(["--name", &there, "--address", &other.peer, "--data-dir"])
        .arg(there_dir.path())
        .args([
            "--heartbeat-seconds",
            "1",
            "--sync-seconds",
            "1",
            "--port",
            "0",
        ])
        .env("MINIK_TOKEN", join.trim())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minik node in the other namespace");
    other.agent = Some(support::Running::guard(agent));

    let c = Cluster {
        client: minik_testkit::client_builder(&server.base)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        base: server.base.clone(),
        marks: tempfile::tempdir().unwrap(),
        nodes: vec![here_agent],
        _pods: minik_testkit::KillPodsOnDrop(vec![
            here_dir.path().to_owned(),
            there_dir.path().to_owned(),
        ]),
        _server: server,
        _dirs: vec![server_dir, here_dir, there_dir],
    };
    for node in [&here, &there] {
        minik_testkit::wait_node_ready(&c.client, &c.base, node).await;
    }
    // The nftables agent turned route_localnet on (it may have been on already).
    support::wait_for("route_localnet to be 1", support::DEADLINE, || async {
        let value = std::fs::read_to_string(ROUTE_LOCALNET).ok()?;
        (value.trim() == "1").then_some(())
    })
    .await;

    let (cluster_ip, node_port) = web_service(&c, "NodePort").await;
    // Both pods on the other host.
    c.post(
        "/apis/apps/v1/namespaces/default/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                            "nodeName": there, "terminationGracePeriodSeconds": 5,
                            "containers": [{"name": "web", "image": "python:3",
                                "command": ["python3", "-c", SERVER],
                                "ports": [{"name": "http", "containerPort": 8080}]}]}}}}),
    )
    .await;
    let pods = support::wait_for(
        "2 ready pods in the Endpoints",
        Duration::from_secs(60),
        || async {
            let ready = c.ready_pods().await;
            (ready.len() == 2 && c.endpoints().await == (ready.clone(), BTreeSet::new()))
                .then_some(ready)
        },
    )
    .await;
    let ep = c
        .get("/api/v1/namespaces/default/endpoints/web")
        .await
        .unwrap();
    assert!(
        ep["subsets"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["addresses"].as_array().unwrap())
            .all(|a| a["ip"] == other.peer.as_str()),
        "the endpoints are on the other host: {ep}"
    );

    // The ClusterIP, the node port on 127.0.0.1 and on the agent's address: every request
    // is answered, by both pods.
    let front = format!("{cluster_ip}:8080");
    c.until_answered_by("the table to send to both pods", &front, &pods)
        .await;
    for addr in [
        front.clone(),
        format!("127.0.0.1:{node_port}"),
        format!("127.0.0.7:{node_port}"),
    ] {
        assert_eq!(set(&c.answers(&addr, 20).await), pods, "through {addr}");
    }

    // route_localnet lets packets to loopback addresses in from other hosts too; the table
    // drops them. The other host, without loopback addresses of its own and with
    // 127.0.0.0/8 routed to this host, reaches a socket here on the veth address (the path
    // works) but not on 127.0.0.1.
    other.stop_agent();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    assert!(
        connects_from(&other.ns, &format!("{}:{open}", other.host)),
        "the other host cannot reach {}:{open}",
        other.host
    );
    // Without its loopback address, the namespace has no local 127.0.0.0/8 routes either.
    ip(&["-n", &other.ns, "addr", "flush", "dev", "lo"]);
    ip(&[
        "-n",
        &other.ns,
        "route",
        "add",
        "127.0.0.0/8",
        "via",
        &other.host,
    ]);
    // (/proc/sys/net is the namespace's own.)
    let status = Command::new("ip")
        .args(["netns", "exec", &other.ns, "sh", "-c"])
        .arg(format!("echo 1 > {ROUTE_LOCALNET}"))
        .status()
        .expect("sh");
    assert!(status.success(), "route_localnet in the other namespace");
    assert!(
        !connects_from(&other.ns, &format!("127.0.0.1:{open}")),
        "the other host reached 127.0.0.1:{open} of this one"
    );
}

/// Scales the `web` Deployment to 1 and waits until every connection through `front` and
/// through `node_front` reaches the pod left. While the proxies learn of the change, a request
/// can still reach a pod that is shutting down and fail; once they have, none does.
/// Creates the Service `web` of `kind` (port 8080 to the pods' port `http`); answers its
/// ClusterIP and NodePort.
async fn web_service(c: &Cluster, kind: &str) -> (String, i64) {
    let svc = c
        .post(
            "/api/v1/namespaces/default/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"type": kind, "selector": {"app": "web"},
                            "ports": [{"port": 8080, "targetPort": "http"}]}}),
        )
        .await;
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    (cluster_ip, node_port)
}

/// Deletes the Service `web` and waits until its ClusterIP `front` no longer answers.
async fn delete_service(c: &Cluster, front: &str) {
    let r = c
        .client
        .delete(format!("{}/api/v1/namespaces/default/services/web", c.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    support::wait_for(
        "the ClusterIP to stop answering",
        support::DEADLINE,
        || async { c.fetch(front, "/").await.is_none().then_some(()) },
    )
    .await;
}

async fn scale_to_one(c: &Cluster, front: &str, node_front: &str) {
    c.send(
        reqwest::Method::PATCH,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "application/merge-patch+json",
        json!({"spec": {"replicas": 1}}),
    )
    .await;
    let last = support::wait_for(
        "one pod left in the Endpoints",
        Duration::from_secs(60),
        || async {
            let (ready, not_ready) = c.endpoints().await;
            (ready.len() == 1 && not_ready.is_empty()).then(|| ready.into_iter().next().unwrap())
        },
    )
    .await;
    support::wait_for(
        "the proxies to send to the last pod only",
        support::DEADLINE,
        || async {
            c.try_answers(front, 6)
                .await?
                .iter()
                .all(|n| *n == last)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        set(&c.answers(front, 30).await),
        BTreeSet::from([last.clone()])
    );
    assert_eq!(
        set(&c.answers(node_front, 30).await),
        BTreeSet::from([last])
    );
}

/// Creates the `web` Deployment of the tutorial (3 replicas of the app that answers with its
/// pod's name, ready unless its mark file exists) and waits until all 3 are ready endpoints;
/// their names.
async fn deploy_web(c: &Cluster) -> BTreeSet<String> {
    let probe = format!("test ! -e {}/not-ready-$POD_NAME", c.marks.path().display());
    c.post(
        "/apis/apps/v1/namespaces/default/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                            "terminationGracePeriodSeconds": 5,
                            "containers": [{"name": "web", "image": "python:3",
                                "command": ["python3", "-c", SERVER],
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "readinessProbe": {"exec": {"command": ["sh", "-c", probe]},
                                                   "periodSeconds": 1}}]}}}}),
    )
    .await;
    support::wait_for(
        "3 ready pods in the Endpoints",
        Duration::from_secs(60),
        || async {
            let ready = c.ready_pods().await;
            (ready.len() == 3 && c.endpoints().await == (ready.clone(), BTreeSet::new()))
                .then_some(ready)
        },
    )
    .await
}
