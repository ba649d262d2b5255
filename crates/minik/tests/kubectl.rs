//! The real kubectl against `minik up`, through the kubeconfig `minik up` writes: the verbs of
//! docs/kubernetes-compatibility.md, with the columns, messages and exit codes kubectl gives
//! against Kubernetes, and no warning on stderr. The kubectl run is `$MINIK_KUBECTL` or
//! `kubectl` on the PATH; `.ci/run` installs one when there is none. A missing kubectl fails
//! the test rather than skipping it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{wait_for, DEADLINE, MINIK};

fn kubectl_binary() -> String {
    std::env::var("MINIK_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

/// What keeps a `minik up` of a test alive: its process and its directories.
struct UpCluster {
    _up: support::Up,
    _home: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl against a new `minik up` of `nodes` nodes, through the kubeconfig it wrote.
    fn on_up(nodes: usize) -> (Kubectl, UpCluster) {
        let home = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let up = MINIK.up(home.path(), data.path(), nodes, &[]);
        let k = Kubectl {
            kubeconfig: home.path().join(".minik/kubeconfig"),
            dir: home.path().to_owned(),
        };
        (
            k,
            UpCluster {
                _up: up,
                _home: home,
                _data: data,
            },
        )
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_binary());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // kubectl's discovery cache goes to the test's own home.
            .env(
                "HOME",
                self.kubeconfig.parent().and_then(Path::parent).unwrap(),
            )
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl; (exit ok, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().unwrap_or_else(|e| {
            panic!(
                "cannot run {} (install kubectl, or set MINIK_KUBECTL; .ci/run does): {e}",
                kubectl_binary()
            )
        });
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl, which must succeed without a word on stderr; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        assert!(
            stderr.trim().is_empty(),
            "kubectl {args:?} wrote to stderr:\n{stderr}"
        );
        stdout
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }
}

/// The header row of a table, its cells split on runs of spaces.
fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, team: a}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:1.36
        command: ["sh", "-c", "echo hello from $POD_NAME; sleep 3600"]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_works_against_minik_up() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let up = MINIK.up(home.path(), data.path(), 1, &[]);
    let printed: Vec<String> =
        std::iter::from_fn(|| up.lines.recv_timeout(Duration::from_secs(1)).ok())
            .take_while(|l| !l.starts_with("try:"))
            .collect();
    let kubeconfig = home.path().join(".minik/kubeconfig");
    assert!(
        printed
            .iter()
            .any(|l| l == &format!("kubectl: export KUBECONFIG={}", kubeconfig.display())),
        "minik up did not print the export line: {printed:?}"
    );
    let k = Kubectl {
        kubeconfig,
        dir: home.path().to_owned(),
    };
    let (ok, version, stderr) = k.run(&["version", "-o", "json"]);
    assert!(ok, "{version}{stderr}");
    assert!(version.contains("\"minor\": \"33\""), "{version}");
    // kubectl warns when it is more than one minor version away from the server (1.33), as it
    // does against Kubernetes; otherwise it says nothing.
    let client: serde_json::Value = serde_json::from_str(&version).unwrap();
    let client_minor: i64 = client["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .unwrap();
    if (client_minor - 33).abs() > 1 {
        // (kubectl 1.20 does not warn yet.)
        assert!(
            stderr.is_empty()
                || stderr.contains("exceeds the supported minor version skew of +/-1"),
            "{stderr}"
        );
    } else {
        assert!(stderr.trim().is_empty(), "kubectl version wrote:\n{stderr}");
    }

    // Discovery.
    let resources = k.ok(&["api-resources"]);
    // kubectl 1.27+ asks for aggregated discovery and, served it, reads every group from /api
    // and /apis alone (older ones fetch /api/v1, /apis/apps/v1, ... one by one).
    if client_minor >= 27 {
        let cache = k.dir.join("fresh-discovery-cache");
        let (ok, _, log) = k.run(&[
            "api-resources",
            "-v=6",
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert!(ok, "{log}");
        let fetched: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("GET") && l.contains("200 OK"))
            .collect();
        assert!(
            fetched.iter().any(|l| l.contains("/apis?")),
            "no discovery request seen:\n{log}"
        );
        assert!(
            !fetched
                .iter()
                .any(|l| l.contains("/api/v1?") || l.contains("/apis/apps/v1?")),
            "kubectl fell back to per-group discovery:\n{log}"
        );
    }
    for line in ["pods  ", "deployments  ", "replicasets  ", "services  "] {
        assert!(resources.contains(line), "{line:?} missing:\n{resources}");
    }

    // apply: created, unchanged, configured with a removed field; validation on the server.
    k.write("web.yaml", DEPLOYMENT);
    assert_eq!(
        k.ok(&["apply", "-f", "web.yaml"]),
        "deployment.apps/web created\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", "web.yaml"]),
        "deployment.apps/web unchanged\n"
    );
    k.write(
        "web.yaml",
        &DEPLOYMENT
            .replace(", {name: B, value: \"2\"}", "")
            .replace(", team: a", ""),
    );
    assert_eq!(
        k.ok(&["apply", "-f", "web.yaml"]),
        "deployment.apps/web configured\n"
    );
    let env = k.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name} {.metadata.labels}",
    ]);
    assert_eq!(env, "A {\"app\":\"web\"}");
    k.write(
        "bad.yaml",
        &DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  replicaz: 3"),
    );
    let (ok, _, stderr) = k.run(&["apply", "-f", "bad.yaml"]);
    assert!(!ok);
    assert!(stderr.contains("replicaz"), "{stderr}");
    let (ok, dry, stderr) = k.run(&["apply", "-f", "web.yaml", "--dry-run=server"]);
    if client_minor >= 27 || ok {
        assert!(ok && stderr.is_empty(), "{stderr}");
        assert_eq!(dry, "deployment.apps/web unchanged (server dry run)\n");
    } else {
        // Older kubectl (checked: 1.20) looks for the dryRun parameter in /openapi/v2, which
        // minik serves without paths (docs/kubernetes-compatibility.md).
        assert!(stderr.contains("doesn't support dry-run"), "{stderr}");
    }

    // rollout status waits for the pods to run.
    let status = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    // get: the server's tables, wide, labels, json, jsonpath.
    let deploys = k.ok(&["get", "deployments"]);
    assert_eq!(
        header(&deploys),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(
        deploys
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("web    2/2     2            2"),
        "{deploys}"
    );
    let pods = k.ok(&["get", "pods", "-o", "wide", "-l", "app=web"]);
    assert_eq!(
        header(&pods),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(pods.lines().count(), 3, "{pods}");
    assert!(
        pods.lines()
            .skip(1)
            .all(|l| l.contains("1/1") && l.contains("Running")),
        "{pods}"
    );
    let nodes = k.ok(&["get", "nodes"]);
    assert_eq!(
        header(&nodes),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    assert!(nodes.contains(" Ready "), "{nodes}");
    let names = k.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]);
    let pod_names: Vec<&str> = names.split_whitespace().collect();
    assert_eq!(pod_names.len(), 2, "{names}");
    let json = k.ok(&["get", "deploy", "web", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(object["kind"], "Deployment");
    let all = k.ok(&["get", "all", "-A"]);
    assert!(all.contains("deployment.apps/web"), "{all}");
    assert!(all.contains("NAMESPACE"), "{all}");

    // logs, and logs -f which follows until killed.
    let logs = k.ok(&["logs", pod_names[0]]);
    assert_eq!(logs, format!("hello from {}\n", pod_names[0]));
    let mut follow = k
        .command(&["logs", "-f", pod_names[1]])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, format!("hello from {}\n", pod_names[1]));
    assert!(follow.try_wait().unwrap().is_none(), "logs -f ended");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // describe, label, scale, set image, rollout history and undo.
    let describe = k.ok(&["describe", "deployment", "web"]);
    assert!(
        describe.contains("Replicas:") && describe.contains("Events:"),
        "{describe}"
    );
    assert_eq!(
        k.ok(&["label", "deploy", "web", "tier=front"]),
        "deployment.apps/web labeled\n"
    );
    let labelled = k.ok(&["get", "deploy", "-l", "tier=front", "-o", "name"]);
    assert_eq!(labelled, "deployment.apps/web\n");
    assert_eq!(
        k.ok(&["scale", "deploy", "web", "--replicas=1"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        k.ok(&["set", "image", "deploy/web", "web=busybox:1.37"]),
        "deployment.apps/web image updated\n"
    );
    k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let history = k.ok(&["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("REVISION") && history.contains("\n2 "),
        "{history}"
    );
    assert_eq!(
        k.ok(&["rollout", "undo", "deploy/web"]),
        "deployment.apps/web rolled back\n"
    );
    let image = wait_for("the rollback", DEADLINE, || async {
        let image = k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]);
        (image == "busybox:1.36").then_some(image)
    })
    .await;
    assert_eq!(image, "busybox:1.36");

    // expose, and the service's table.
    assert_eq!(
        k.ok(&["expose", "deploy", "web", "--port=80", "--target-port=8080"]),
        "service/web exposed\n"
    );
    let services = k.ok(&["get", "svc", "web"]);
    assert_eq!(
        header(&services),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(
        services.contains("ClusterIP") && services.contains("80/TCP"),
        "{services}"
    );

    // get -w: the watch prints the table's rows as they change.
    let mut watch = k
        .command(&["get", "deploy", "-w", "--request-timeout=60s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    assert_eq!(
        header(&lines.next().unwrap().unwrap()),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(lines.next().unwrap().unwrap().starts_with("web "));
    k.ok(&["label", "deploy", "web", "watched=yes"]);
    assert!(lines.next().unwrap().unwrap().starts_with("web "));
    watch.kill().unwrap();
    watch.wait().unwrap();

    // cordon and uncordon.
    let node = k.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    assert_eq!(k.ok(&["cordon", &node]), format!("node/{node} cordoned\n"));
    assert!(k.ok(&["get", "nodes"]).contains("Ready,SchedulingDisabled"));
    assert_eq!(
        k.ok(&["uncordon", &node]),
        format!("node/{node} uncordoned\n")
    );

    // create -f and delete -f, -l.
    k.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, labels: {one: solo}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n",
    );
    assert_eq!(k.ok(&["create", "-f", "pod.yaml"]), "pod/solo created\n");
    let (ok, _, stderr) = k.run(&["create", "-f", "pod.yaml"]);
    assert!(!ok);
    assert_eq!(
        stderr,
        "Error from server (AlreadyExists): error when creating \"pod.yaml\": pods \"solo\" already exists\n"
    );
    assert_eq!(
        k.ok(&["delete", "pod", "-l", "one=solo"]),
        "pod \"solo\" deleted\n"
    );
    assert_eq!(
        k.ok(&["delete", "-f", "web.yaml"]),
        "deployment.apps \"web\" deleted\n"
    );
    let (ok, _, stderr) = k.run(&["get", "deploy", "web"]);
    assert!(!ok);
    assert_eq!(
        stderr,
        "Error from server (NotFound): deployments.apps \"web\" not found\n"
    );
}

const SPREAD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 2
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:1.36
        command: ["sleep", "3600"]
"#;

/// `kubectl drain` finds `pods/eviction` in discovery (its CheckEvictionSupport), evicts the
/// node's pods through it with no warning, and the deployment's pods come back on the other
/// node.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_drain_evicts_pods_to_the_other_node() {
    let (k, _cluster) = Kubectl::on_up(2);
    let nodes = wait_for("two ready nodes", Duration::from_secs(60), || async {
        let out = k.ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        let ready: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_suffix(" True"))
            .map(str::to_owned)
            .collect();
        (ready.len() == 2).then_some(ready)
    })
    .await;
    k.write("spread.yaml", SPREAD);
    k.ok(&["apply", "-f", "spread.yaml"]);
    k.ok(&["rollout", "status", "deploy/spread", "--timeout=60s"]);
    let placed = |k: &Kubectl| {
        k.ok(&[
            "get",
            "pods",
            "-l",
            "app=spread",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
    };
    let before = placed(&k);
    let drained = before
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no placed pod in {before:?}"))
        .to_owned();
    let other = nodes.iter().find(|n| **n != drained).unwrap().clone();
    let victims: Vec<String> = before
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(drained.as_str()))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();

    let out = k.ok(&[
        "drain",
        &drained,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    // kubectl 1.22+ evicts when /api/v1 lists pods/eviction with its group and version.
    // Before 1.22 it also wants the policy group in /apis, which minik does not serve, and
    // deletes instead; it then prints the node with the verb it last printed a pod with.
    let version: serde_json::Value =
        serde_json::from_str(&k.ok(&["version", "--client", "-o", "json"])).unwrap();
    let minor: u32 = version["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .unwrap_or_else(|| panic!("no client minor version in {version}"));
    let evicts = minor >= 22;
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("node/{drained} cordoned").as_str()),
        "{out}"
    );
    let last = if evicts { "drained" } else { "deleted" };
    assert_eq!(
        lines.last().copied(),
        Some(format!("node/{drained} {last}").as_str()),
        "{out}"
    );
    lines.sort();
    for pod in &victims {
        if evicts {
            // "evicting pod" is what kubectl prints only when it uses the eviction subresource.
            assert!(
                lines.contains(&format!("evicting pod default/{pod}").as_str()),
                "{out}"
            );
            assert!(
                lines.contains(&format!("pod/{pod} evicted").as_str()),
                "{out}"
            );
        } else {
            assert!(
                lines.contains(&format!("pod/{pod} deleted").as_str()),
                "{out}"
            );
        }
    }
    assert!(
        k.ok(&["get", "node", &drained])
            .contains("SchedulingDisabled"),
        "the drained node is not cordoned"
    );
    // The deployment's two pods run again, both on the other node.
    let after = wait_for(
        "the pods on the other node",
        Duration::from_secs(90),
        || async {
            let now = placed(&k);
            let rows: Vec<Vec<&str>> = now
                .lines()
                .map(|l| l.split_whitespace().collect())
                .collect();
            (rows.len() == 2
                && rows
                    .iter()
                    .all(|r| r.len() == 3 && r[1] == other && r[2] == "Running"))
            .then_some(now)
        },
    )
    .await;
    for pod in &victims {
        assert!(
            !after.contains(pod.as_str()),
            "{pod} survived the drain: {after}"
        );
    }
    assert_eq!(
        k.ok(&["uncordon", &drained]),
        format!("node/{drained} uncordoned\n")
    );
}

/// An HTTP server on two ports of the pod: `GET /` answers which port and pod, `GET /N` N bytes
/// of a pattern, `POST` echoes the body.
const FORWARDED: &str = r#"
import http.server, os, threading
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        p = self.path.strip("/")
        if p.isdigit():
            n = int(p)
            self.reply((bytes(range(251)) * (n // 251 + 1))[:n])
        else:
            self.reply((self.server.label + " " + os.environ["POD_NAME"]).encode())
    def do_POST(self):
        self.reply(self.rfile.read(int(self.headers["Content-Length"])))
    def log_message(self, *args):
        pass
def server(port, label):
    s = http.server.ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT_" + port])), H)
    s.label = label
    return s
# Both ports listen before the readiness probe (port 80) can pass.
ninety, eighty = server("90", "ninety"), server("80", "eighty")
threading.Thread(target=ninety.serve_forever, daemon=True).start()
eighty.serve_forever()
"#;

/// A running `kubectl port-forward`, killed when dropped (also when the test fails).
struct PortForward {
    child: std::process::Child,
    /// Remote port → the local port kubectl listens on.
    local: std::collections::HashMap<u16, u16>,
}

impl PortForward {
    /// Starts kubectl with `args` and waits (with a deadline) for a "Forwarding from
    /// 127.0.0.1:L -> R" line per remote port.
    fn start(k: &Kubectl, args: &[&str], env: &[(&str, &str)], remotes: usize) -> PortForward {
        let mut command = k.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl_binary()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut forward = PortForward {
            child,
            local: Default::default(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while forward.local.len() < remotes {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let stderr = forward.stop();
                    panic!("kubectl {args:?} did not report its ports in time: {stderr}");
                }
            };
            let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") else {
                continue;
            };
            let (local, remote) = rest.split_once(" -> ").unwrap();
            forward
                .local
                .insert(remote.parse().unwrap(), local.parse().unwrap());
        }
        forward
    }

    fn url(&self, remote: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.local[&remote])
    }

    /// Kills kubectl; what it wrote on stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `GET /N` answers.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Checks one port-forward: concurrent connections, a few MiB each way, on every remote port.
async fn exercise(forward: &PortForward, pod_prefix: &str, remotes: &[(u16, &str)]) {
    // A new connection per request, so that each is a forwarded connection of its own.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let answer = client
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(answer.status(), 200, "GET {url}");
            answer
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        }
    };
    for (remote, label) in remotes {
        let answers =
            futures::future::join_all((0..8).map(|_| get(forward.url(*remote, "/")))).await;
        for answer in answers {
            let text = String::from_utf8_lossy(&answer).into_owned();
            assert!(
                text.starts_with(&format!("{label} {pod_prefix}")),
                "port {remote}: {text:?}"
            );
        }
    }
    let (remote, _) = remotes[0];
    let size = 4 << 20;
    let (big, echoed) = tokio::join!(get(forward.url(remote, &format!("/{size}"))), async {
        let body = pattern(3 << 20);
        let answer = client
            .post(forward.url(remote, "/echo"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        (body, answer.bytes().await.unwrap())
    });
    assert!(
        big[..] == pattern(size)[..],
        "the 4 MiB download arrived changed"
    );
    assert!(
        echoed.0[..] == echoed.1[..],
        "the 3 MiB upload came back changed"
    );
}

/// `kubectl port-forward` to a pod, a deployment and a service (which kubectl resolves to a
/// pod and its container port), over the WebSocket tunnel of kubectl 1.30+ and over plain
/// SPDY; two ports at once; many connections; and nothing on kubectl's stderr.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_port_forward_reaches_pods() {
    let (k, _cluster) = Kubectl::on_up(1);
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fwd"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "fwd"}},
            "template": {
                "metadata": {"labels": {"app": "fwd"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": "python",
                        "command": ["python3", "-c", FORWARDED],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                        ],
                        "ports": [{"containerPort": 80}, {"containerPort": 90}],
                        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}
                    }]
                }
            }
        }
    });
    let service = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fwd"},
        "spec": {"selector": {"app": "fwd"}, "ports": [{"port": 8080, "targetPort": 80}]}
    });
    k.write("fwd.json", &deployment.to_string());
    k.write("fwd-svc.json", &service.to_string());
    k.ok(&["apply", "-f", "fwd.json", "-f", "fwd-svc.json"]);
    k.ok(&["rollout", "status", "deploy/fwd", "--timeout=60s"]);
    let pod = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=fwd",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);

    // A pod, two ports at once, kubectl's default protocol (WebSocket from 1.30 on).
    let mut forward = PortForward::start(
        &k,
        &["port-forward", &format!("pod/{pod}"), ":80", ":90"],
        &[],
        2,
    );
    exercise(&forward, &pod, &[(80, "eighty"), (90, "ninety")]).await;
    let stderr = forward.stop();
    assert!(
        stderr.trim().is_empty(),
        "kubectl port-forward pod wrote:\n{stderr}"
    );

    // A deployment over plain SPDY (what kubectl before 1.30 speaks).
    let mut forward = PortForward::start(
        &k,
        &["port-forward", "deploy/fwd", ":90"],
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
        1,
    );
    exercise(&forward, &pod, &[(90, "ninety")]).await;
    let stderr = forward.stop();
    assert!(
        stderr.trim().is_empty(),
        "kubectl port-forward deploy wrote:\n{stderr}"
    );

    // A service: kubectl turns its port 8080 into the pod's port 80 and says so.
    let mut forward = PortForward::start(&k, &["port-forward", "svc/fwd", ":8080"], &[], 1);
    exercise(&forward, &pod, &[(80, "eighty")]).await;
    let stderr = forward.stop();
    assert!(
        stderr.trim().is_empty(),
        "kubectl port-forward svc wrote:\n{stderr}"
    );
}

/// kubectl's generators (`create deployment`, `create service`, `create namespace`) write through
/// client-go's typed clients, which send protobuf since kubectl 1.32 (docs/api.md).
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_create_generators_work_with_protobuf_bodies() {
    let (k, _cluster) = Kubectl::on_up(1);
    let create = [
        "create",
        "deployment",
        "pb",
        "--image=busybox:1.36",
        "--replicas=0",
        "--",
        "sleep",
        "3600",
    ];
    assert_eq!(k.ok(&create), "deployment.apps/pb created\n");
    let replicas = ["get", "deploy", "pb", "-o", "jsonpath={.spec.replicas}"];
    // replicas 0 is sent and kept, not defaulted to 1.
    assert_eq!(k.ok(&replicas), "0");
    assert_eq!(
        k.ok(&["create", "service", "clusterip", "pb", "--tcp=80:8080"]),
        "service/pb created\n"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "svc",
            "pb",
            "-o",
            "jsonpath={.spec.ports[0].targetPort} {.spec.selector.app}"
        ]),
        "8080 pb"
    );
    assert_eq!(
        k.ok(&["create", "namespace", "pb-team"]),
        "namespace/pb-team created\n"
    );
    k.ok(&["scale", "deployment", "pb", "--replicas=1"]);
    assert_eq!(k.ok(&replicas), "1");
    k.ok(&["set", "image", "deployment/pb", "busybox=busybox:1.37"]);
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "pb",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox:1.37"
    );
    k.ok(&["delete", "deployment", "pb"]);
    k.ok(&["delete", "service", "pb"]);
    k.ok(&["delete", "namespace", "pb-team"]);
}
