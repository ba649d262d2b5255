//! The Kubernetes documentation's first examples, unchanged, on the `oci` runtime: the nginx Pod
//! (Concepts > Workloads > Pods) and the nginx Deployment (Concepts > Workloads > Deployments),
//! applied with `minik apply -f` to a server and one `minik node --runtime oci` whose images come
//! from a docker-registry on loopback that `registries.yaml` names as the `docker.io` mirror.
//! `nginx:1.14.2` there is a real nginx image the test builds from Debian's `nginx-light`
//! package as the official image is made ([`build_debian_nginx_layout`]).
//!
//! Each pod must serve "Welcome to nginx!" on port 80 of its own network namespace (a pod has
//! loopback only: the test enters the namespace to fetch the page), run nginx's master process
//! as PID 1 of its container, log its requests to its output, and leave nothing behind once
//! deleted.
//!
//! Needs root, overlayfs, the image tools and debootstrap (the image is built once, about a
//! minute and a half, and cached under the system temp dir for later runs).

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minik_testkit::registry::{build_debian_nginx_layout, push, Registry};
use minik_testkit::{Http, OciCleanup};
use serde_json::Value;

/// The Pod of the Kubernetes documentation (`pods/simple-pod.yaml`), as published.
const DOCS_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.14.2
    ports:
    - containerPort: 80
";

/// The Deployment of the Kubernetes documentation (`controllers/nginx-deployment.yaml`), as
/// published.
const DOCS_DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
";

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/nginx-deployment";
const REPLICA_SETS: &str = "/apis/apps/v1/namespaces/default/replicasets";

/// How long the pods may take to run: the first pull of the image (about 50 MB) and its unpack
/// come on top of the usual start.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// A server, an agent on the oci runtime and the registry serving `library/nginx`, in temp dirs.
/// Dropping it stops the agent with SIGTERM, then [`OciCleanup`] removes whatever is left
/// before the dirs go.
struct Cluster {
    http: Http,
    node: Option<support::Running>,
    _server: support::Running,
    cleanup: OciCleanup,
    _registry: Registry,
    /// The digest the registry serves for `library/nginx:1.14.2` (and `:latest`).
    digest: String,
    _node_dir: tempfile::TempDir,
    _server_dir: tempfile::TempDir,
    /// The client's `HOME`, the manifests and the registries file.
    home: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(node) = &mut self.node {
            node.terminate(Duration::from_secs(20));
        }
    }
}

impl Cluster {
    /// The image built and pushed as `library/nginx:1.14.2` and `:latest`, everything up, node
    /// `n1` Ready; `None` when the host cannot run it.
    async fn start() -> Option<Cluster> {
        if !minik_testkit::oci_host() {
            return None;
        }
        let registry = Registry::start()?;
        let home = tempfile::tempdir().unwrap();
        let began = Instant::now();
        let layout = build_debian_nginx_layout(home.path(), "nginx")?;
        eprintln!("the Debian nginx image is ready in {:?}", began.elapsed());
        let digest = push(&layout, "nginx", &registry.addr(), "library/nginx:1.14.2");
        let latest = push(&layout, "nginx", &registry.addr(), "library/nginx:latest");
        assert_eq!(digest, latest, "one image, two tags");
        let registries = minik_testkit::registry::docker_io_mirror(home.path(), &registry.addr());
        let server_dir = tempfile::tempdir().unwrap();
        let node_dir = tempfile::tempdir().unwrap();
        let cleanup = OciCleanup::new(node_dir.path());
        let server = support::MINIK.server(server_dir.path(), &[]);
        let node = support::MINIK.node(
            &server.base,
            "n1",
            node_dir.path(),
            &[
                "--runtime",
                "oci",
                "--disable-default-registry-endpoint",
                "--private-registry",
                registries.to_str().unwrap(),
            ],
        );
        let cluster = Cluster {
            http: Http::new(&server.base),
            node: Some(node),
            _server: server,
            cleanup,
            _registry: registry,
            digest,
            _node_dir: node_dir,
            _server_dir: server_dir,
            home,
        };
        minik_testkit::wait_node_ready(&cluster.http.client, &cluster.http.base, "n1").await;
        Some(cluster)
    }

    /// Runs the `minik` client against the server; answers its stdout, failing the test if it
    /// fails.
    fn minik(&self, args: &[&str]) -> String {
        let out = support::MINIK
            .command()
            .args(args)
            .env("MINIK_SERVER", &self.http.base)
            .env(
                "MINIK_CERTIFICATE_AUTHORITY",
                minik_testkit::ca_for(&self.http.base).expect("the server's CA"),
            )
            .env_remove("MINIK_NAMESPACE")
            .env_remove("MINIK_TOKEN")
            .env("HOME", self.home.path())
            .env("RUST_LOG", "warn")
            .current_dir(self.home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run minik");
        assert!(
            out.status.success(),
            "minik {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `text` to `file` in the client's directory and answers its path.
    fn manifest(&self, file: &str, text: &str) -> String {
        let path = self.home.path().join(file);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The pods labelled `app=nginx`.
    async fn deployment_pods(&self) -> Vec<Value> {
        self.http
            .get_json(&format!("{PODS}?labelSelector=app%3Dnginx"))
            .await
            .and_then(|list| list["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The container's log as the API serves it (empty if there is none yet).
    async fn log(&self, pod: &str) -> String {
        self.http
            .get_text(&format!("{PODS}/{pod}/log?container=nginx"))
            .await
            .unwrap_or_default()
    }

    /// Checks a running nginx pod from the outside and from inside its network namespace.
    async fn check_serving(&self, pod: &Value) {
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.cleanup.track_pod(&uid);
        assert_eq!(pod["status"]["phase"], "Running", "{pod}");
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["name"], "nginx", "{pod}");
        assert!(status["state"]["running"].is_object(), "{pod}");
        assert_eq!(status["ready"], true, "{pod}");
        assert_eq!(status["restartCount"], 0, "{pod}");
        assert_eq!(
            status["imageID"],
            format!("docker.io/library/nginx@{}", self.digest),
            "{pod}"
        );

        // The welcome page, on port 80 of the pod's own loopback.
        let netns = self
            .cleanup
            .data_dir()
            .join("oci/sandboxes")
            .join(&uid)
            .join("net");
        let page = support::wait_for(
            &format!("the welcome page on 127.0.0.1:80 in pod {name}"),
            support::DEADLINE,
            || {
                let netns = netns.clone();
                async move {
                    tokio::task::spawn_blocking(move || get_in_netns(&netns, 80))
                        .await
                        .map_err(|e| e.to_string())?
                }
            },
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("\r\nServer: nginx/"), "{page}");
        assert!(page.contains("<h1>Welcome to nginx!</h1>"), "{page}");

        // nginx's master process is the container's PID 1, as `CMD ["nginx", "-g", "daemon
        // off;"]` makes it (no shell in between), with its workers beside it.
        let inits = self.cleanup.pod_inits(&uid);
        assert_eq!(inits.len(), 1, "one container in {name}: {inits:?}");
        let init = command_line(inits[0]);
        assert_eq!(init, "nginx: master process nginx -g daemon off;", "{name}");
        let workers = self
            .cleanup
            .pod_processes(&uid)
            .into_iter()
            .filter(|pid| command_line(*pid) == "nginx: worker process")
            .count();
        assert!(workers >= 1, "no nginx worker in {name}");

        // The request is in the pod's log: the access log is the container's stdout.
        let log = support::wait_for(
            &format!("the request in the log of {name}"),
            support::DEADLINE,
            || async {
                let log = self.log(&name).await;
                if log.contains("\"GET / HTTP/1.0\" 200 ") {
                    Ok(log)
                } else {
                    Err(log)
                }
            },
        )
        .await;
        for bad in ["[emerg]", "[alert]", "[crit]", "[error]"] {
            assert!(!log.contains(bad), "{name}: {log}");
        }
    }
}

/// `GET /` on `127.0.0.1:port` in the network namespace `netns`, from a thread that enters it
/// (setns changes only the calling thread, which then ends); answers the whole response.
fn get_in_netns(netns: &Path, port: u16) -> Result<String, String> {
    let netns: PathBuf = netns.to_owned();
    std::thread::spawn(move || {
        let namespace =
            std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
        nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {}: {e}", netns.display()))?;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .map_err(|e| format!("connect {address}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("read: {e}"))?;
        Ok(response)
    })
    .join()
    .map_err(|_| "the thread in the pod's namespace panicked".to_owned())?
}

/// The command line of `pid`, its arguments joined by spaces (empty if it is gone).
fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .split('\0')
                .filter(|arg| !arg.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_nginx_pod_and_deployment_serve_the_welcome_page() {
    let Some(c) = Cluster::start().await else {
        return;
    };
    let pod_file = c.manifest("simple-pod.yaml", DOCS_POD);
    let deployment_file = c.manifest("nginx-deployment.yaml", DOCS_DEPLOYMENT);
    assert_eq!(
        c.minik(&["apply", "-f", &pod_file]).trim(),
        "pod/nginx created"
    );
    assert_eq!(
        c.minik(&["apply", "-f", &deployment_file]).trim(),
        "deployment.apps/nginx-deployment created"
    );

    let pod = support::wait_for("pod nginx to run", START_DEADLINE, || async {
        let pod = c.http.get_json(&format!("{PODS}/nginx")).await;
        match pod {
            Some(p) if p["status"]["containerStatuses"][0]["ready"] == true => Ok(p),
            other => Err(other.map(|p| p["status"].clone())),
        }
    })
    .await;
    support::wait_for(
        "3 available replicas of nginx-deployment",
        START_DEADLINE,
        || async {
            let deployment = c.http.get_json(DEPLOYMENT).await;
            match deployment {
                Some(d)
                    if d["status"]["availableReplicas"] == 3
                        && d["status"]["updatedReplicas"] == 3 =>
                {
                    Ok(())
                }
                other => Err(other.map(|d| d["status"].clone())),
            }
        },
    )
    .await;
    let replicas = c.deployment_pods().await;
    assert_eq!(replicas.len(), 3, "{replicas:?}");

    c.check_serving(&pod).await;
    for replica in &replicas {
        c.check_serving(replica).await;
    }

    assert_eq!(
        c.minik(&["delete", "-f", &deployment_file]).trim(),
        "deployment.apps \"nginx-deployment\" deleted"
    );
    assert_eq!(
        c.minik(&["delete", "-f", &pod_file]).trim(),
        "pod \"nginx\" deleted"
    );
    // The ReplicaSet goes too (no replica made after the last one went), and so do the pods.
    support::wait_for(
        "every nginx object to be gone",
        support::DEADLINE,
        || async {
            let replica_sets = c
                .http
                .get_json(&format!("{REPLICA_SETS}?labelSelector=app%3Dnginx"))
                .await
                .and_then(|list| list["items"].as_array().map(Vec::len));
            let replicas = c.deployment_pods().await;
            let pod = c.http.get(&format!("{PODS}/nginx")).await;
            if replica_sets == Some(0) && replicas.is_empty() && pod.code == 404 {
                Ok(())
            } else {
                Err(format!(
                    "replica sets {replica_sets:?}, {} replicas, pod nginx: {}",
                    replicas.len(),
                    pod.code
                ))
            }
        },
    )
    .await;
    c.cleanup.wait_clean().await;
}
