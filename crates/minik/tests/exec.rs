//! `exec` end to end against `minik up` (one node, the process runtime): the real kubectl over
//! WebSocket (kubectl 1.30+'s first try) and over SPDY, `minik exec`, and the Python client's
//! `stream()`. Output, error output, stdin, exit codes and the errors kubectl prints; `attach`
//! and `kubectl run -i` to containers with `stdin`. The
//! kubectl run is `$MINIK_KUBECTL` or `kubectl` on the PATH (`.ci/run` installs one); a
//! missing kubectl fails the test rather than skipping it, as in tests/kubectl.rs.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use support::MINIK;

/// How long one command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

fn kubectl_binary() -> String {
    std::env::var("MINIK_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// What one command did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A `minik up` of one node, with a `HOME` of its own that holds the client config and the
/// kubeconfig it writes.
struct Cluster {
    _up: support::Up,
    home: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Cluster {
    /// The cluster with the pods `shell` (one container, `main`) and `two` (containers `a` and
    /// `b`), both Ready.
    async fn start() -> Cluster {
        let home = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let up = MINIK.up(home.path(), data.path(), 1, &[]);
        let cluster = Cluster {
            _up: up,
            home,
            _data: data,
        };
        let sleeper =
            |name: &str| json!({"name": name, "image": "busybox", "command": ["sleep", "3600"]});
        let pods = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [sleeper("main")]}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [sleeper("a"), sleeper("b")]}},
            ]
        });
        std::fs::write(cluster.home.path().join("pods.json"), pods.to_string()).unwrap();
        cluster.kubectl_ok(&["apply", "-f", "pods.json"]).await;
        cluster
            .kubectl_ok(&[
                "wait",
                "--for=condition=Ready",
                "pod/shell",
                "pod/two",
                "--timeout=60s",
            ])
            .await;
        cluster
    }

    fn kubeconfig(&self) -> PathBuf {
        self.home.path().join(".minik/kubeconfig")
    }

    /// Runs `program` with `args` in the cluster's home, `stdin` written to it (then closed).
    async fn run(
        &self,
        mut command: tokio::process::Command,
        what: &str,
        stdin: Option<&str>,
    ) -> Out {
        command
            .env("HOME", self.home.path())
            .env("KUBECONFIG", self.kubeconfig())
            .env_remove("MINIK_SERVER")
            .env_remove("MINIK_NAMESPACE")
            .env_remove("MINIK_TOKEN")
            .env("RUST_LOG", "warn")
            .current_dir(self.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.unwrap();
            // Dropping the pipe closes it: the command's stdin ends.
        }
        let out = tokio::time::timeout(COMMAND_DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within {COMMAND_DEADLINE:?}"))
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn kubectl_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
        let mut command = tokio::process::Command::new(kubectl_binary());
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let what = format!(
            "{} {args:?} (install kubectl, or set MINIK_KUBECTL; .ci/run does)",
            kubectl_binary()
        );
        self.run(command, &what, stdin).await
    }

    async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl_with(args, None, &[]).await;
        assert_eq!(out.code, 0, "kubectl {args:?}: {out:?}");
        out.stdout
    }

    /// A pod `name` whose container answers the lines of its stdin ([`ANSWER`]), made by
    /// `kubectl run --stdin --leave-stdin-open` (`stdin`, no `stdinOnce`), once it is Ready.
    async fn answering_pod(&self, name: &str) {
        let head = [
            "run",
            name,
            "--stdin",
            "--leave-stdin-open",
            "--attach=false",
        ];
        self.kubectl_ok(&[&head[..], &run_once(ANSWER)].concat())
            .await;
        let pod = format!("pod/{name}");
        self.kubectl_ok(&["wait", "--for=condition=Ready", &pod, "--timeout=60s"])
            .await;
    }

    async fn minik(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut command = tokio::process::Command::new(MINIK.bin);
        command.args(args);
        self.run(command, &format!("minik {args:?}"), stdin).await
    }
}

const SCRIPT: &str = "echo out; echo err >&2; exit 3";

/// kubectl's protocols: WebSocket first (1.30+), and SPDY when WebSockets are turned off.
const PROTOCOLS: [(&str, &[(&str, &str)]); 2] = [
    ("websocket", &[]),
    ("spdy", &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")]),
];

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_runs_commands_over_websocket_and_spdy() {
    let c = Cluster::start().await;
    for (protocol, env) in PROTOCOLS {
        let out = c
            .kubectl_with(&["exec", "shell", "--", "sh", "-c", SCRIPT], None, env)
            .await;
        assert_eq!(out.stdout, "out\n", "{protocol}: {out:?}");
        assert_eq!(out.code, 3, "{protocol}: {out:?}");
        assert_eq!(
            out.stderr, "err\ncommand terminated with exit code 3\n",
            "{protocol}: {out:?}"
        );

        let out = c
            .kubectl_with(&["exec", "-i", "shell", "--", "cat"], Some("hello\n"), env)
            .await;
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (0, "hello\n", ""),
            "{protocol}: {out:?}"
        );

        // A container the pod does not have: kubectl asks the server, which refuses with its
        // words before switching protocols (kubectl falls back from WebSocket to SPDY, which
        // is refused the same).
        let out = c
            .kubectl_with(&["exec", "shell", "-c", "wrong", "--", "true"], None, env)
            .await;
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (
                1,
                "Error from server (BadRequest): container wrong is not valid for pod shell\n"
            ),
            "{protocol}: {out:?}"
        );
    }

    let out = c.kubectl_with(&["exec", "shell"], None, &[]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("you must specify at least one command for the container"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn minik_exec_and_the_python_client() {
    let c = Cluster::start().await;

    let out = c
        .minik(&["exec", "shell", "--", "sh", "-c", SCRIPT], None)
        .await;
    assert_eq!(out.stdout, "out\n", "{out:?}");
    assert_eq!(
        out.stderr, "err\ncommand terminated with exit code 3\n",
        "{out:?}"
    );
    assert_eq!(out.code, 3, "{out:?}");

    let out = c
        .minik(&["exec", "-i", "pod/shell", "--", "cat"], Some("hello\n"))
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "hello\n", ""),
        "{out:?}"
    );

    // Without -i the command's stdin is empty.
    let out = c
        .minik(&["exec", "shell", "--", "cat"], Some("ignored\n"))
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");

    let out = c
        .minik(
            &["exec", "two", "-c", "b", "--", "sh", "-c", "echo in b"],
            None,
        )
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "in b\n"), "{out:?}");

    for (args, message) in [
        (
            &["exec", "shell", "-c", "wrong", "--", "true"][..],
            "Error from server (BadRequest): container wrong is not valid for pod shell\n",
        ),
        (
            &["exec", "two", "--", "true"][..],
            "error: a container name must be specified for pod two, choose one of: [a b]\n",
        ),
        (
            &["exec", "shell"][..],
            "error: you must specify at least one command for the container\n",
        ),
        (
            &["exec", "nope", "--", "true"][..],
            "Error from server (NotFound): pods \"nope\" not found\n",
        ),
    ] {
        let out = c.minik(args, None).await;
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, message),
            "{args:?}: {out:?}"
        );
    }

    python_client_execs(&c).await;
}

/// The Python client's `stream(connect_get_namespaced_pod_exec, ...)`, over its WebSocket.
async fn python_client_execs(c: &Cluster) {
    let python = std::env::var("MINIK_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut probe = tokio::process::Command::new(&python);
    probe.args(["-c", "import kubernetes"]);
    let found = c.run(probe, &python, None).await;
    if found.code != 0 {
        minik_testkit::cannot_run(
            "the Python kubernetes client (pip install kubernetes; .ci/run does)",
            found.stderr.trim(),
        );
        return;
    }
    let script = r#"
import sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config()
api = client.CoreV1Api()
out = stream(api.connect_get_namespaced_pod_exec, "shell", "default",
             command=["sh", "-c", "echo from python"],
             stderr=False, stdin=False, stdout=True, tty=False)
sys.stdout.write(out)
"#;
    let mut command = tokio::process::Command::new(&python);
    command.args(["-c", script]);
    let out = c.run(command, "the Python client", None).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "from python\n"),
        "{out:?}"
    );
}

/// A loop that answers each line it reads, until the line `quit` or the end of its stdin.
const ANSWER: &str =
    "while read line; do echo \"got $line\"; [ \"$line\" = quit ] && break; done; echo bye";

/// The end of a `run` command line whose pod runs `script` once.
fn run_once(script: &str) -> [&str; 7] {
    [
        "--restart=Never",
        "--image=busybox",
        "--command",
        "--",
        "sh",
        "-c",
        script,
    ]
}

/// `kubectl run -i` and `kubectl attach -i`, over both of kubectl's protocols, and `minik
/// attach -i`: what the client writes reaches the container's own process (its stdin), its
/// output comes back, and the session ends with the container.
/// - `kubectl run -i` makes the pod with `stdin` and `stdinOnce` and attaches once it runs:
///   the end of the client's input is the end of the container's.
/// - A pod with `stdin` but not `stdinOnce` (`--leave-stdin-open`) keeps its stdin across
///   clients: the first one leaves, the second one makes the container quit.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_run_and_attach_reach_the_containers_stdin() {
    let c = Cluster::start().await;
    for (protocol, env) in PROTOCOLS {
        let name = format!("run-{protocol}");
        let out = c
            .kubectl_with(
                &[&["run", &name, "-i"][..], &run_once(ANSWER)].concat(),
                Some("hello\n"),
                env,
            )
            .await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "got hello\nbye\n"),
            "{protocol}: {out:?}"
        );
        let pod: Value =
            serde_json::from_str(&c.kubectl_ok(&["get", "pod", &name, "-o", "json"]).await)
                .unwrap();
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            (&container["stdin"], &container["stdinOnce"]),
            (&json!(true), &json!(true)),
            "{pod}"
        );

        let name = format!("attach-{protocol}");
        c.answering_pod(&name).await;
        // The first client's input ends; the container's does not (no stdinOnce). The client
        // waits for the container, so it is stopped once its line was answered.
        let mut first = tokio::process::Command::new(kubectl_binary());
        first
            .args(["attach", "-i", &name])
            .env("KUBECONFIG", c.kubeconfig())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut first = first.spawn().unwrap();
        let mut input = first.stdin.take().unwrap();
        input.write_all(b"one\n").await.unwrap();
        drop(input);
        let mut stdout = first.stdout.take().unwrap();
        let seen = minik_testkit::read_until(&mut stdout, "got one\n", COMMAND_DEADLINE).await;
        assert_eq!(seen, "got one\n", "{protocol}");
        first.kill().await.unwrap();
        let out = c
            .kubectl_with(&["attach", "-i", &name], Some("two\nquit\n"), env)
            .await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "got two\ngot quit\nbye\n"),
            "{protocol}: {out:?}"
        );
        let log = c.kubectl_ok(&["logs", &name]).await;
        assert_eq!(log, "got one\ngot two\ngot quit\nbye\n");
    }

    // minik's own attach, to a pod of its own.
    c.answering_pod("mine").await;
    let out = c
        .minik(&["attach", "-i", "mine"], Some("three\nquit\n"))
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "got three\ngot quit\nbye\n"),
        "{out:?}"
    );
    c.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/mine",
        "--timeout=60s",
    ])
    .await;
    let out = c.minik(&["attach", "mine"], None).await;
    assert_eq!(
        (out.code, out.stderr.trim()),
        (
            1,
            "error: cannot attach a container in a completed pod; current phase is Succeeded"
        ),
        "{out:?}"
    );

    // minik's `run -i --rm`: attached as soon as it runs, removed when it ended.
    let out = c
        .minik(
            &[&["run", "gone", "-i", "--rm"][..], &run_once(ANSWER)].concat(),
            Some("four\n"),
        )
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "got four\nbye\npod \"gone\" deleted\n"),
        "{out:?}"
    );
    let out = c.kubectl_with(&["get", "pod", "gone"], None, &[]).await;
    assert_ne!(out.code, 0, "{out:?}");
    // A pod that fails: its exit code is `run`'s, with kubectl's words.
    let out = c
        .minik(
            &[&["run", "fails", "-i"][..], &run_once("read x; exit 4")].concat(),
            Some("x\n"),
        )
        .await;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("pod default/fails terminated (Error)"),
        "{out:?}"
    );
}
