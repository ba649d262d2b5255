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

use support::{eventually, start_up};

fn kubectl_binary() -> String {
    std::env::var("MINIK_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
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
    let up = start_up(home.path(), data.path(), 1, &[]);
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
    let version = k.ok(&["version", "-o", "json"]);
    assert!(version.contains("\"minor\": \"33\""), "{version}");

    // Discovery.
    let resources = k.ok(&["api-resources"]);
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
    let dry = k.ok(&["apply", "-f", "web.yaml", "--dry-run=server"]);
    assert_eq!(dry, "deployment.apps/web unchanged (server dry run)\n");

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
    let image = eventually("the rollback", 30, || async {
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
