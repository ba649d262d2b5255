//! The pod network end to end (issue 19): a server and two `minik node --runtime oci
//! --pod-network on` agents on this host, whose images come from a registry on loopback. Pods
//! get addresses of their nodes' pod CIDRs, reach each other across the nodes by pod IP, reach
//! a Service by its ClusterIP and by its DNS name, get the headless Service's and SRV answers
//! from the node-local cluster DNS, reach themselves through their own Service (hairpin), and
//! are reached on their hostPort; the node itself reaches a ClusterIP. Pod egress is off (the
//! harness gives every agent `--no-pod-egress`), and no packet goes anywhere but loopback and
//! the pods' own namespaces. Stopping the agents removes their bridges, tables and addresses.
//!
//! The nodes' names and the cluster's networks are this file's own (`pn-a`, `pn-b`,
//! 10.252.0.0/16, 10.97.0.0/16): the bridges and tables are named after the nodes, so no other
//! test may use them at the same time.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::podnet::{inside, network_leftovers, remove_network};

use minik_testkit::registry::{
    build_busybox_layout, docker_io_mirror, image_tools, push, Registry,
};
use minik_testkit::{Http, OciCleanup};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const NODES: [&str; 2] = ["pn-a", "pn-b"];
const CLUSTER_CIDR: &str = "10.252.0.0/16";
const SERVICE_CIDR: &str = "10.97.0.0/16";

/// One agent: its process, and what removes its containers and network if it cannot.
struct Agent {
    running: Option<support::Running>,
    cleanup: OciCleanup,
    dir: tempfile::TempDir,
}

/// The cluster. Dropping it stops the agents with SIGTERM (they remove their pods and pod
/// networks), then removes whatever one left (after a failure).
struct Cluster {
    http: Http,
    agents: Vec<Agent>,
    /// Each node's Ready condition (status, message) as it registered, seen by a watch opened
    /// before the agents started.
    registered: Registered,
    _server: support::Running,
    _registry: Registry,
    _dirs: [tempfile::TempDir; 2],
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            if let Some(mut running) = agent.running.take() {
                running.terminate(Duration::from_secs(20));
            }
            agent.cleanup.clean();
        }
        for node in NODES {
            remove_network(node);
        }
    }
}

impl Cluster {
    async fn start() -> Option<Cluster> {
        if !minik_testkit::oci_host() || !image_tools() {
            return None;
        }
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
        {
            minik_testkit::cannot_run("the nft command (the pod network's rules)", "not on PATH");
            return None;
        }
        for node in NODES {
            remove_network(node);
        }
        let registry = Registry::start()?;
        let build = tempfile::tempdir().unwrap();
        let layout = build_busybox_layout(build.path(), "1.36", &[], &[], &["sh"], &[]);
        push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");
        let registries = docker_io_mirror(build.path(), &registry.addr());
        let server_dir = tempfile::tempdir().unwrap();
        let server = support::MINIK.server(
            server_dir.path(),
            &[
                "--cluster-cidr",
                CLUSTER_CIDR,
                "--service-cidr",
                SERVICE_CIDR,
            ],
        );
        let http = Http::new(&server.base);
        let registered = watch_registrations(&server.base).await;
        let mut agents = Vec::new();
        for node in NODES {
            let dir = tempfile::tempdir().unwrap();
            let cleanup = OciCleanup::new(dir.path());
            let running = support::MINIK.node(
                &server.base,
                node,
                dir.path(),
                &[
                    "--runtime",
                    "oci",
                    "--pod-network",
                    "on",
                    "--disable-default-registry-endpoint",
                    "--private-registry",
                    registries.to_str().unwrap(),
                ],
            );
            agents.push(Agent {
                running: Some(running),
                cleanup,
                dir,
            });
        }
        let cluster = Cluster {
            http,
            agents,
            registered,
            _server: server,
            _registry: registry,
            _dirs: [build, server_dir],
        };
        for node in NODES {
            minik_testkit::wait_node_ready(&cluster.http.client, &cluster.http.base, node).await;
        }
        Some(cluster)
    }

    async fn create(&self, path: &str, object: Value) -> Value {
        let created = self.http.post(path, &object).await;
        assert_eq!(created.code, 201, "{}", created.body);
        if let Some(uid) = created.body["metadata"]["uid"].as_str() {
            for agent in &self.agents {
                agent.cleanup.track_pod(uid);
            }
        }
        created.body
    }

    /// Waits until pod `name` runs with an address; answers it.
    async fn running(&self, name: &str) -> Value {
        self.http
            .wait_until(
                &format!("pod {name} to run with an address"),
                &format!("{PODS}/{name}"),
                |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string(),
            )
            .await
    }

    /// Waits until the log of `name`/`container` holds `text`; answers the log.
    async fn log_with(&self, name: &str, container: &str, text: &str) -> String {
        support::podnet::log_with(&self.http, name, Some(container), text).await
    }

    async fn delete_pod(&self, name: &str) {
        let deleted = self.http.delete(&format!("{PODS}/{name}")).await;
        assert!(deleted.is_success(), "{deleted:?}");
        support::wait_for(
            &format!("pod {name} to be gone"),
            support::DEADLINE,
            || async {
                let answer = self.http.get(&format!("{PODS}/{name}")).await;
                if answer.code == 404 {
                    Ok(())
                } else {
                    Err(answer.body["status"].clone())
                }
            },
        )
        .await;
    }
}

type Registered = std::sync::Arc<std::sync::Mutex<BTreeMap<String, (String, String)>>>;

/// Opens a watch of the Nodes (answered before this returns) and notes, for each node, the
/// Ready condition of the first version of it the watch sees.
async fn watch_registrations(base: &str) -> Registered {
    let registered = Registered::default();
    let http = Http::without_timeout(base);
    let mut response = http
        .client
        .get(http.url("/api/v1/nodes?watch=true"))
        .send()
        .await
        .expect("watch nodes");
    assert!(response.status().is_success(), "{}", response.status());
    let sink = registered.clone();
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let node = &event["object"];
                let Some(name) = node["metadata"]["name"].as_str() else {
                    continue;
                };
                let ready = node["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| {
                        (
                            c["status"].as_str().unwrap_or_default().to_owned(),
                            c["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .unwrap_or_default();
                if let Ok(mut seen) = sink.lock() {
                    seen.entry(name.to_owned()).or_insert(ready);
                }
            }
        }
    });
    registered
}

/// A pod of busybox containers `(name, script)` on `node`.
fn pod(name: &str, node: &str, labels: Value, containers: &[(&str, &str)], ports: Value) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .enumerate()
        .map(|(i, (container, script))| {
            let mut c = json!({
                "name": container,
                "image": "busybox:1.36",
                "command": ["/bin/sh", "-c", script],
            });
            if i == 0 {
                c["ports"] = ports.clone();
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
        }
    })
}

/// The address on the line after `Name:\tNAME` in busybox nslookup's output.
fn addresses(output: &str) -> Vec<String> {
    output
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_services_and_names_across_two_nodes() {
    let _turn = TURN.lock().await;
    let Some(c) = Cluster::start().await else {
        return;
    };
    // Each node has a pod CIDR of its own from the cluster CIDR.
    let mut pod_cidrs = Vec::new();
    for node in NODES {
        let got = c
            .http
            .get_json(&format!("/api/v1/nodes/{node}"))
            .await
            .unwrap();
        let cidr = got["spec"]["podCIDR"].as_str().unwrap().to_owned();
        assert!(
            inside(cidr.split('/').next().unwrap(), CLUSTER_CIDR),
            "{cidr}"
        );
        pod_cidrs.push(cidr);
    }
    assert_ne!(pod_cidrs[0], pod_cidrs[1]);

    let web_service = c
        .create(
            SERVICES,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }),
        )
        .await;
    let cluster_ip = web_service["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(inside(&cluster_ip, SERVICE_CIDR), "{cluster_ip}");
    c.create(
        SERVICES,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web-headless"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 8080}]}
        }),
    )
    .await;

    // The server: httpd on the pod's own address, with a hostPort; a second container reaches
    // the pod itself through its own Service (hairpin).
    let host_port = free_port();
    let serve = "mkdir -p /www; echo hello-from-$(hostname) > /www/index.html; \
                 exec httpd -f -p 8080 -h /www";
    let hairpin = "until wget -qO- http://$WEB_SERVICE_HOST:80/ > /tmp/h; do sleep 0.2; done; \
                   echo hairpin=$(cat /tmp/h); exec sleep 3600";
    c.create(
        PODS,
        pod(
            "web",
            NODES[0],
            json!({"app": "web"}),
            &[("serve", serve), ("self", hairpin)],
            json!([{"containerPort": 8080, "hostPort": host_port}]),
        ),
    )
    .await;
    let web = c.running("web").await;
    let web_ip = web["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(
        inside(&web_ip, &pod_cidrs[0]),
        "{web_ip} not in {}",
        pod_cidrs[0]
    );
    assert_ne!(web["status"]["hostIP"], web["status"]["podIP"]);

    // A StatefulSet's pod is named under its headless Service (`db-0.db.default.svc...`).
    c.create(
        SERVICES,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                     "ports": [{"name": "db", "port": 5432}]}
        }),
    )
    .await;
    c.create(
        "/apis/apps/v1/namespaces/default/statefulsets",
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db", "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": NODES[0]},
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "db", "image": "busybox:1.36",
                                        "command": ["/bin/sh", "-c", "exec sleep 3600"]}]
                    }
                }
            }
        }),
    )
    .await;
    let db_ip = c.running("db-0").await["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();

    // The client, on the other node.
    let client = format!(
        "cat /etc/resolv.conf | sed 's/^/resolv: /'; \
         until wget -qO- http://{web_ip}:8080/ > /tmp/a; do sleep 0.2; done; echo by-pod-ip=$(cat /tmp/a); \
         until wget -qO- http://$WEB_SERVICE_HOST:80/ > /tmp/b; do sleep 0.2; done; echo by-cluster-ip=$(cat /tmp/b); \
         until nslookup web.default.svc.cluster.local > /tmp/c 2>&1; do sleep 0.2; done; sed 's/^/ns-web: /' /tmp/c; \
         until nslookup web-headless.default.svc.cluster.local > /tmp/d 2>&1; do sleep 0.2; done; sed 's/^/ns-headless: /' /tmp/d; \
         until nslookup -type=srv _http._tcp.web-headless.default.svc.cluster.local > /tmp/e 2>&1; do sleep 0.2; done; sed 's/^/ns-srv: /' /tmp/e; \
         nslookup nothing-here.default.svc.cluster.local > /tmp/f 2>&1; sed 's/^/ns-missing: /' /tmp/f; \
         until nslookup db-0.db.default.svc.cluster.local > /tmp/s 2>&1; do sleep 0.2; done; sed 's/^/ns-sts: /' /tmp/s; \
         until wget -qO- http://web/ > /tmp/g; do sleep 0.2; done; echo by-name=$(cat /tmp/g); \
         echo done; exec sleep 3600"
    );
    c.create(
        PODS,
        pod(
            "client",
            NODES[1],
            json!({"app": "client"}),
            &[("main", &client)],
            json!([]),
        ),
    )
    .await;
    let client_pod = c.running("client").await;
    let client_ip = client_pod["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(inside(&client_ip, &pod_cidrs[1]), "{client_ip}");
    let log = c.log_with("client", "main", "done").await;
    let expected = "hello-from-web";
    for key in ["by-pod-ip", "by-cluster-ip", "by-name"] {
        assert!(log.contains(&format!("{key}={expected}")), "{key}: {log}");
    }
    // resolv.conf as the kubelet writes it for ClusterFirst.
    let resolv: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("resolv: "))
        .collect();
    let dns_ip = c
        .http
        .get_json("/api/v1/namespaces/kube-system/services/kube-dns")
        .await
        .unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        resolv.contains(&format!("nameserver {dns_ip}").as_str()),
        "{resolv:?}"
    );
    assert!(
        resolv.contains(&"search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv:?}"
    );
    assert!(resolv.contains(&"options ndots:5"), "{resolv:?}");
    // The names: the Service's ClusterIP, the headless Service's pod, SRV for its named port.
    let lines = |prefix: &str| -> String {
        log.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(addresses(&lines("ns-web: ")).contains(&cluster_ip), "{log}");
    assert!(
        addresses(&lines("ns-headless: ")).contains(&web_ip),
        "{log}"
    );
    let srv = lines("ns-srv: ");
    assert!(
        srv.contains("8080") && srv.contains("web-headless.default.svc.cluster.local"),
        "{srv}"
    );
    assert!(lines("ns-missing: ").contains("NXDOMAIN"), "{log}");
    assert!(addresses(&lines("ns-sts: ")).contains(&db_ip), "{log}");

    // Hairpin: the web pod reached itself through its own Service.
    c.log_with("web", "self", &format!("hairpin={expected}"))
        .await;

    // The node reaches the ClusterIP and the hostPort.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for url in [
        format!("http://{cluster_ip}/"),
        format!("http://127.0.0.1:{host_port}/"),
        format!("http://{web_ip}:8080/"),
    ] {
        let body = support::wait_for(
            &format!("GET {url} from the node"),
            support::DEADLINE,
            || async {
                match http.get(&url).send().await {
                    Ok(r) => r.text().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        assert_eq!(body.trim(), expected, "{url}");
    }

    // Egress is off: the node's table drops what pods send beyond the cluster.
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip", &minik_net::table_name(NODES[1])])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("drop"), "{table}");
    assert!(
        !table.contains("masquerade") || !table.contains("egress on"),
        "{table}"
    );

    // Deleting the pods releases their addresses and veths.
    c.delete_pod("client").await;
    c.delete_pod("web").await;
    let deleted = c
        .http
        .delete("/apis/apps/v1/namespaces/default/statefulsets/db")
        .await;
    assert!(deleted.is_success(), "{deleted:?}");
    support::wait_for("pod db-0 to be gone", support::DEADLINE, || async {
        let answer = c.http.get(&format!("{PODS}/db-0")).await;
        if answer.code == 404 {
            Ok(())
        } else {
            Err(answer.body["status"]["phase"].clone())
        }
    })
    .await;
    for agent in &c.agents {
        let ipam = agent.dir.path().join("network/ipam");
        support::wait_for(
            "the addresses to be released",
            support::DEADLINE,
            || async {
                let held: Vec<String> = std::fs::read_dir(&ipam)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                            .collect()
                    })
                    .unwrap_or_default();
                if held.is_empty() {
                    Ok(())
                } else {
                    Err(held)
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_agents_leaves_no_network_behind() {
    let _turn = TURN.lock().await;
    let Some(mut c) = Cluster::start().await else {
        return;
    };
    // A node with a pod network registers NotReady until the network is built (then Ready:
    // Cluster::start waited for that), so that nothing is scheduled onto it before.
    let registered = c.registered.lock().unwrap().clone();
    for node in NODES {
        let (status, message) = registered.get(node).cloned().unwrap_or_default();
        assert_eq!(status, "False", "{node}: {registered:?}");
        assert!(
            message.contains("NetworkPluginNotReady"),
            "{node}: {message}"
        );
    }
    c.create(
        PODS,
        pod(
            "lone",
            NODES[0],
            json!({"app": "lone"}),
            &[("main", "exec sleep 3600")],
            json!([]),
        ),
    )
    .await;
    c.running("lone").await;
    for node in NODES {
        assert!(
            !network_leftovers(node, CLUSTER_CIDR).is_empty(),
            "{node} has no pod network"
        );
    }
    for agent in &mut c.agents {
        let mut running = agent.running.take().unwrap();
        running.terminate(Duration::from_secs(20));
    }
    for node in NODES {
        assert_eq!(
            network_leftovers(node, CLUSTER_CIDR),
            Vec::<String>::new(),
            "{node}"
        );
    }
    // No route into the cluster CIDR is left either.
    let routes = std::process::Command::new("ip")
        .args(["-4", "route", "show", "root", CLUSTER_CIDR])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.trim().is_empty(), "{routes}");
}

/// The two tests share node names (and so bridges and tables): one runs at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `minik up --runtime oci --nodes 2`: the pod network is on by default, Services get
/// ClusterIPs of Kubernetes' range, and a pod on one node reaches a pod on the other by its
/// Service's name (the guestbook's shape: a frontend finding `redis-leader` by DNS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minik_up_with_the_oci_runtime_has_the_pod_network() {
    let _turn = TURN.lock().await;
    if !minik_testkit::oci_host() || !image_tools() {
        return;
    }
    let up_nodes = ["node-1", "node-2"];
    let leftovers_of = |nodes: &[&str]| -> Vec<String> {
        nodes
            .iter()
            .flat_map(|n| network_leftovers(n, "10.244.0.0/16"))
            .collect()
    };
    for node in up_nodes {
        remove_network(node);
    }
    let registry = Registry::start().unwrap();
    let build = tempfile::tempdir().unwrap();
    let layout = build_busybox_layout(build.path(), "1.36", &[], &[], &["sh"], &[]);
    push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");
    let registries = docker_io_mirror(build.path(), &registry.addr());
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cleanups: Vec<OciCleanup> = up_nodes
        .iter()
        .map(|n| OciCleanup::new(&data.path().join("nodes").join(n)))
        .collect();
    struct Removal([&'static str; 2]);
    impl Drop for Removal {
        fn drop(&mut self) {
            for node in self.0 {
                remove_network(node);
            }
        }
    }
    let _removal = Removal(up_nodes);
    let up = support::MINIK.up(
        home.path(),
        data.path(),
        2,
        &[
            "--runtime",
            "oci",
            "--pod-network",
            "auto",
            "--no-config",
            "--disable-default-registry-endpoint",
            "--private-registry",
            registries.to_str().unwrap(),
        ],
    );
    let http = Http::new(&up.base);
    let leader = http
        .post(
            SERVICES,
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "redis-leader"},
                "spec": {"selector": {"app": "leader"}, "ports": [{"port": 6379, "targetPort": 8080}]}
            }),
        )
        .await;
    assert_eq!(leader.code, 201, "{}", leader.body);
    let cluster_ip = leader.body["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(inside(&cluster_ip, "10.96.0.0/12"), "{cluster_ip}");
    let serve =
        "mkdir -p /www; echo i-am-the-leader > /www/index.html; exec httpd -f -p 8080 -h /www";
    let frontend = "until wget -qO- http://redis-leader:6379/ > /tmp/a; do sleep 0.2; done; \
                    echo found=$(cat /tmp/a); exec sleep 3600";
    for (name, node, labels, script) in [
        ("leader", up_nodes[0], json!({"app": "leader"}), serve),
        (
            "frontend",
            up_nodes[1],
            json!({"app": "frontend"}),
            frontend,
        ),
    ] {
        let created = http
            .post(
                PODS,
                &pod(name, node, labels, &[("main", script)], json!([])),
            )
            .await;
        assert_eq!(created.code, 201, "{}", created.body);
        for c in &cleanups {
            c.track_pod(created.body["metadata"]["uid"].as_str().unwrap());
        }
    }
    support::wait_for(
        "the frontend to reach redis-leader by name",
        support::DEADLINE,
        || async {
            let log = http
                .get_text(&format!("{PODS}/frontend/log"))
                .await
                .unwrap_or_default();
            if log.contains("found=i-am-the-leader") {
                Ok(())
            } else {
                let endpoints = http
                    .get_json("/api/v1/namespaces/default/endpoints/redis-leader")
                    .await;
                let leader = http.get_json(&format!("{PODS}/leader")).await;
                let last = log.lines().last().unwrap_or_default().to_owned();
                Err(format!(
                    "last {last:?}; endpoints {endpoints:?}; leader status {:?}",
                    leader.map(|l| l["status"].clone())
                ))
            }
        },
    )
    .await;
    let pods: Vec<Value> = default_pods(&http).await;
    for p in &pods {
        let ip = p["status"]["podIP"].as_str().unwrap_or_default();
        assert!(inside(ip, "10.244.0.0/16"), "{p}");
    }
    // Stopping `minik up` removes both nodes' networks.
    drop(up);
    assert_eq!(leftovers_of(&up_nodes), Vec::<String>::new());
}

/// The pods of the default namespace.
async fn default_pods(http: &Http) -> Vec<Value> {
    http.get_json(PODS).await.unwrap()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
