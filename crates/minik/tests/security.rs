//! SPEC §8 end to end, with the real binaries: a server that needs tokens, two nodes that join
//! with the join token and act with their own credentials, and the things each identity may
//! and may not do — every refusal a Status (401 or 403) that changes nothing.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::{wait_for, DEADLINE, MINIK};

/// A request: method, path and an optional (content type, body).
type Request<'a> = (Method, String, Option<(&'a str, &'a Value)>);

struct Call {
    http: reqwest::Client,
    base: String,
}

impl Call {
    /// `method base+path` with `token` (none: anonymous) and a JSON body; (code, body).
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &Value)>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let code = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(Method::GET, path, token, None).await
    }
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The secret of a join token, which must be `K10<hash of ca_pem>::SECRET`.
fn join_secret_of(token: &str, ca_pem: &str) -> String {
    let prefix = format!("K10{}::", minik_tls::fingerprint(ca_pem));
    token
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("the join token {token:?} does not start with {prefix:?}"))
        .to_owned()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A pod bound to `node` that prints its environment, then sleeps.
fn env_pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sec"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "env; echo env-done; exec sleep 300"]}]
        }
    })
}

fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_node_identities_and_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    // No --allow-anonymous-loopback: even loopback clients need a token.
    let server = MINIK.server_with(&data, &[]);
    let call = Call {
        http: minik_testkit::client_builder(&server.base)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base: server.base.clone(),
    };

    // Tokens were made on first start, private.
    let admin_file = data.join("auth/admin-token");
    let join_file = data.join("auth/join-token");
    assert_eq!(mode(&data.join("auth")), 0o700);
    assert_eq!(mode(&admin_file), 0o600);
    assert_eq!(mode(&join_file), 0o600);
    let admin = read_token(&admin_file);
    let join = read_token(&join_file);
    let admin = Some(admin.as_str());
    // The join token names the cluster CA's hash (k3s' `K10<hash>::SECRET`), so that a new
    // node can check the server; the server checks the secret, the bearer a joiner sends.
    let ca_pem = minik_testkit::ca_pem(&server.base);
    let join_secret = join_secret_of(&join, &ca_pem);

    // Probes are public; nothing else is.
    for path in ["/healthz", "/readyz", "/version"] {
        assert_eq!(call.get(path, None).await.0, 200, "{path}");
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "anon"},
        // Bound to a node that never comes, so that nothing else (the scheduler) writes it.
        "spec": {"nodeName": "nowhere",
                 "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}});
    let pods = "/api/v1/namespaces/default/pods";
    let (code, _) = call
        .send(Method::POST, pods, admin, Some(("application/json", &pod)))
        .await;
    assert_eq!(code, 201);
    let before = call.get(&format!("{pods}/anon"), admin).await.1;
    let labels = json!({"metadata": {"labels": {"x": "y"}}});
    let merge = ("application/merge-patch+json", &labels);
    let join_x = json!({"nodeName": "x"});
    let anonymous: Vec<Request> = vec![
        (Method::GET, "/api".into(), None),
        (Method::GET, "/apis/apps/v1".into(), None),
        (Method::GET, "/openapi/v2".into(), None),
        (Method::GET, pods.into(), None),
        (Method::GET, format!("{pods}?watch=1"), None),
        (Method::GET, format!("{pods}/anon"), None),
        (Method::GET, format!("{pods}/anon/log"), None),
        (Method::POST, pods.into(), Some(("application/json", &pod))),
        (
            Method::PUT,
            format!("{pods}/anon"),
            Some(("application/json", &before)),
        ),
        (Method::PATCH, format!("{pods}/anon"), Some(merge)),
        (Method::DELETE, format!("{pods}/anon"), None),
        (Method::DELETE, pods.into(), None),
        (
            Method::POST,
            "/minik/v1/join".into(),
            Some(("application/json", &join_x)),
        ),
        (Method::POST, "/minik/v1/tokens/admin".into(), None),
        (Method::GET, "/no/such/path".into(), None),
    ];
    for token in [None, Some("not-a-token"), Some("node.n1.0000")] {
        for (method, path, body) in &anonymous {
            let (code, status) = call.send(method.clone(), path, token, *body).await;
            assert_eq!(code, 401, "{method} {path} with {token:?}: {status}");
            assert_eq!(status["kind"], "Status", "{status}");
            assert_eq!(status["reason"], "Unauthorized", "{status}");
        }
    }
    let after = call.get(&format!("{pods}/anon"), admin).await.1;
    assert_eq!(
        rv(&before),
        rv(&after),
        "an unauthenticated request changed the pod"
    );
    assert_eq!(
        call.get(pods, admin).await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(!data.join("auth/nodes.json").exists(), "nobody joined");

    // The join token only joins.
    let (code, status) = call.get(pods, Some(&join_secret)).await;
    assert_eq!(code, 403, "{status}");

    // Two nodes join with the join token, given in their environment.
    let n1_dir = dir.path().join("n1");
    let n2_dir = dir.path().join("n2");
    let env = [("MINIK_TOKEN", join.as_str())];
    let mut agent1 = MINIK.node_with_env(&server.base, "n1", &n1_dir, &[], &env);
    let mut agent2 = MINIK.node_with_env(&server.base, "n2", &n2_dir, &[], &env);
    for node in ["n1", "n2"] {
        wait_for(&format!("node {node} Ready"), DEADLINE, || async {
            let (code, n) = call.get(&format!("/api/v1/nodes/{node}"), admin).await;
            (code == 200
                && n["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True"))
            .then_some(())
        })
        .await;
    }
    let credential = |dir: &Path| -> Value {
        let path = dir.join("credential.json");
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let n1_cred = credential(&n1_dir);
    let n2_cred = credential(&n2_dir);
    let n1_token = n1_cred["token"].as_str().unwrap().to_owned();
    assert!(n1_token.starts_with("node.n1."));
    let n1 = Some(n1_token.as_str());

    // A registered node cannot be taken over with the join token.
    let (code, status) = call
        .send(
            Method::POST,
            "/minik/v1/join",
            Some(&join_secret),
            Some(("application/json", &json!({"nodeName": "n2"}))),
        )
        .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(
        credential(&n2_dir),
        n2_cred,
        "the refused join changed nothing"
    );

    // One pod on each node; each prints its environment.
    for (name, node) in [("p1", "n1"), ("p2", "n2")] {
        let (code, status) = call
            .send(
                Method::POST,
                pods,
                admin,
                Some(("application/json", &env_pod(name, node))),
            )
            .await;
        assert_eq!(code, 201, "{status}");
    }
    for name in ["p1", "p2"] {
        wait_for(&format!("{name} Running and logged"), DEADLINE, || async {
            let (code, log) = call.get(&format!("{pods}/{name}/log"), admin).await;
            (code == 200 && log.as_str()?.contains("env-done")).then_some(())
        })
        .await;
    }
    // Pods do not inherit the agent's token (or anything of minik's).
    let (_, log) = call.get(&format!("{pods}/p1/log"), admin).await;
    let log = log.as_str().unwrap();
    assert!(
        !log.contains(&join_secret),
        "the pod saw the join token:\n{log}"
    );
    assert!(
        !log.contains("MINIK_"),
        "the pod saw minik's variables:\n{log}"
    );
    assert!(
        !log.contains(&n1_token),
        "the pod saw its node's credential"
    );

    // What a node may do.
    let (code, list) = call
        .get(&format!("{pods}?fieldSelector=spec.nodeName%3Dn1"), n1)
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(call.get(&format!("{pods}/p1"), n1).await.0, 200);
    let (code, log) = call.get(&format!("{pods}/p1/log"), n1).await;
    assert_eq!(code, 200, "{log}");
    assert_eq!(call.get("/api/v1/nodes/n2", n1).await.0, 200);
    assert_eq!(call.get("/api/v1/services", n1).await.0, 200);
    assert_eq!(call.get("/api/v1/endpoints", n1).await.0, 200);
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "n1-test-event", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": "n1"},
        "reason": "Test", "message": "from n1", "type": "Normal", "count": 1,
        "source": {"component": "kubelet", "host": "n1"}});
    let (code, status) = call
        .send(
            Method::POST,
            "/api/v1/namespaces/default/events",
            n1,
            Some(("application/json", &event)),
        )
        .await;
    assert_eq!(code, 201, "{status}");
    let own_status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "test"}]}});
    let (code, status) = call
        .send(
            Method::PATCH,
            "/api/v1/nodes/n1/status",
            n1,
            Some(("application/merge-patch+json", &own_status)),
        )
        .await;
    assert_eq!(code, 200, "{status}");

    // Its own heartbeat Lease, which its agent renews.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let renew = json!({"spec": {"renewTime": "2030-01-01T00:00:00.000000Z"}});
    let (code, status) = call
        .send(
            Method::PATCH,
            &format!("{leases}/n1"),
            n1,
            Some(("application/merge-patch+json", &renew)),
        )
        .await;
    assert_eq!(code, 200, "{status}");

    // What a node may not do: each 403, and nothing changed.
    let n2_lease = wait_for("n2's lease", DEADLINE, || async {
        let (code, lease) = call.get(&format!("{leases}/n2"), admin).await;
        (code == 200).then_some(lease)
    })
    .await;
    let lease_n2 = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n2", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "n1"}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let node_n2 = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"}});
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "evil"}});
    let label = json!({"metadata": {"labels": {"owned": "yes"}}});
    let phase = json!({"status": {"phase": "Failed"}});
    let host_ports_and_more = json!({"metadata": {"annotations": {"minik.io/host-ports": "{}"},
        "labels": {"x": "y"}}});
    let p3 = env_pod("p3", "n1");
    let join_n2 = json!({"nodeName": "n2"});
    let forbidden: Vec<Request> = vec![
        (Method::POST, pods.into(), Some(("application/json", &p3))),
        (
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments".into(),
            Some(("application/json", &deployment)),
        ),
        (
            Method::POST,
            "/api/v1/nodes".into(),
            Some(("application/json", &node_n2)),
        ),
        (
            Method::POST,
            "/api/v1/namespaces".into(),
            Some(("application/json", &namespace)),
        ),
        (Method::DELETE, "/api/v1/namespaces/default".into(), None),
        (
            Method::PATCH,
            "/api/v1/nodes/n2".into(),
            Some(("application/merge-patch+json", &label)),
        ),
        (
            Method::PATCH,
            "/api/v1/nodes/n2/status".into(),
            Some(("application/merge-patch+json", &own_status)),
        ),
        (Method::DELETE, "/api/v1/nodes/n1".into(), None),
        (
            Method::PATCH,
            format!("{pods}/p2/status"),
            Some(("application/merge-patch+json", &phase)),
        ),
        (
            Method::PATCH,
            format!("{pods}/p1"),
            Some(("application/merge-patch+json", &label)),
        ),
        (
            Method::PATCH,
            format!("{pods}/p1"),
            Some(("application/merge-patch+json", &host_ports_and_more)),
        ),
        (Method::DELETE, format!("{pods}/p1"), None),
        (Method::DELETE, format!("{pods}/p2"), None),
        (Method::DELETE, pods.into(), None),
        (Method::GET, pods.into(), None),
        (
            Method::GET,
            format!("{pods}?fieldSelector=spec.nodeName%3Dn2"),
            None,
        ),
        (Method::GET, format!("{pods}/p2"), None),
        (Method::GET, format!("{pods}/p2/log"), None),
        (Method::GET, "/apis/apps/v1/deployments".into(), None),
        // A watch by name would follow whatever pod gets that name next, anywhere.
        (Method::GET, format!("{pods}/p1?watch=1"), None),
        (
            Method::GET,
            format!("{pods}/not-yet-made?watch=1&resourceVersion=1"),
            None,
        ),
        (
            Method::PATCH,
            format!("{leases}/n2"),
            Some(("application/merge-patch+json", &renew)),
        ),
        (Method::DELETE, format!("{leases}/n2"), None),
        (
            Method::POST,
            leases.into(),
            Some(("application/json", &lease_n2)),
        ),
        (
            Method::GET,
            "/apis/coordination.k8s.io/v1/leases".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/events".into(),
            None,
        ),
        (Method::POST, "/minik/v1/tokens/join".into(), None),
        (
            Method::POST,
            "/minik/v1/join".into(),
            Some(("application/json", &join_n2)),
        ),
    ];
    for (method, path, body) in &forbidden {
        let (code, status) = call.send(method.clone(), path, n1, *body).await;
        assert_eq!(code, 403, "{method} {path} as n1: {status}");
        assert_eq!(status["reason"], "Forbidden", "{status}");
    }
    let (_, status) = call.get(&format!("{pods}/p2/log"), n1).await;
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:node:n1\" cannot get resource \"pods/log\""),
        "{status}"
    );
    // Their agents keep writing their own objects, so compare what n1 tried to change.
    let p2 = call.get(&format!("{pods}/p2"), admin).await.1;
    assert!(p2["metadata"].get("deletionTimestamp").is_none(), "{p2}");
    assert_eq!(p2["status"]["phase"], "Running", "{p2}");
    let n2 = call.get("/api/v1/nodes/n2", admin).await.1;
    assert!(n2["metadata"]["labels"].get("owned").is_none(), "{n2}");
    assert_ne!(n2["status"]["conditions"][0]["message"], "test", "{n2}");
    let lease_now = call.get(&format!("{leases}/n2"), admin).await.1;
    assert_ne!(lease_now["spec"]["renewTime"], renew["spec"]["renewTime"]);
    assert_eq!(
        lease_now["spec"]["holderIdentity"],
        n2_lease["spec"]["holderIdentity"]
    );
    // p1 may have moved on (its agent writes its status), but nobody labelled it.
    let p1 = call.get(&format!("{pods}/p1"), admin).await.1;
    assert!(p1["metadata"]["labels"].get("owned").is_none(), "{p1}");
    assert!(p1["metadata"]["labels"].get("x").is_none(), "{p1}");
    for path in [
        "/apis/apps/v1/namespaces/default/deployments/d",
        "/api/v1/namespaces/evil",
        "/api/v1/nodes/n3",
        "/api/v1/namespaces/default/pods/p3",
    ] {
        assert_eq!(call.get(path, admin).await.0, 404, "{path} was created");
    }
    assert_eq!(
        call.get("/api/v1/namespaces/default", admin).await.1["status"]["phase"],
        "Active"
    );

    // The agent's endpoint answers only the server: not anonymous, not a node's credential.
    // It serves HTTPS with a certificate of the cluster CA, so the same client verifies it.
    let n1_node = call.get("/api/v1/nodes/n1", admin).await.1;
    let port = n1_node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap();
    let agent = Call {
        http: call.http.clone(),
        base: format!("https://127.0.0.1:{port}"),
    };
    let logs = "/containerLogs/default/p1/main";
    assert_eq!(agent.get(logs, None).await.0, 401);
    assert_eq!(agent.get(logs, n1).await.0, 401);
    assert_eq!(agent.get(logs, admin).await.0, 401);
    let key = n1_cred["agentKey"].as_str().unwrap();
    assert_eq!(agent.get(logs, Some(key)).await.0, 200);

    // A graceful delete by the administrator: the node finishes it (deleting its own pod).
    let (code, _) = call
        .send(Method::DELETE, &format!("{pods}/p1"), admin, None)
        .await;
    assert_eq!(code, 200);
    wait_for(
        "p1 gone after its node finished the deletion",
        DEADLINE,
        || async { (call.get(&format!("{pods}/p1"), admin).await.0 == 404).then_some(()) },
    )
    .await;

    // Rotation: the old join token stops working at once, the new one joins.
    let ca = minik_testkit::ca_for(&server.base).expect("the server's CA");
    let minik = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_minik"));
        command
            .args(args)
            .args(["--server", &server.base])
            .env("HOME", dir.path())
            .env("MINIK_CERTIFICATE_AUTHORITY", &ca)
            .env_remove("MINIK_SERVER")
            .env_remove("MINIK_TOKEN");
        if let Some(token) = token {
            command.env("MINIK_TOKEN", token);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = minik(&["get", "pods"], None);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
    let (ok, out, err) = minik(&["get", "pods"], admin);
    assert!(ok && out.contains("p2"), "{out}{err}");
    let (ok, new_join, err) = minik(&["token", "rotate", "join"], admin);
    assert!(ok, "{err}");
    assert_eq!(new_join, read_token(&join_file));
    assert_eq!(mode(&join_file), 0o600);
    let new_join = join_secret_of(&new_join, &ca_pem);
    let fresh = json!({"nodeName": "n9"});
    let join_body = Some(("application/json", &fresh));
    assert_eq!(
        call.send(
            Method::POST,
            "/minik/v1/join",
            Some(&join_secret),
            join_body
        )
        .await
        .0,
        401
    );
    let (code, joined) = call
        .send(Method::POST, "/minik/v1/join", Some(&new_join), join_body)
        .await;
    assert_eq!(code, 201, "{joined}");
    // The agents that joined keep working with their own credentials.
    assert_eq!(call.get("/api/v1/nodes/n1", n1).await.0, 200);

    // Revoking a node's credential locks it out.
    let (ok, _, err) = minik(&["token", "revoke", "n1"], admin);
    assert!(ok, "{err}");
    assert_eq!(call.get("/api/v1/nodes/n1", n1).await.0, 401);
    let (ok, _, err) = minik(&["token", "revoke", "n1"], admin);
    assert!(!ok && err.contains("NotFound"), "{err}");
    // The host it was taken from may hold the join token: it cannot join as n1 again, nor
    // take a name that is registered; an administrator can.
    let join_n1 = json!({"nodeName": "n1"});
    for name_body in [&join_n1, &join_n2] {
        let (code, status) = call
            .send(
                Method::POST,
                "/minik/v1/join",
                Some(&new_join),
                Some(("application/json", name_body)),
            )
            .await;
        assert_eq!(code, 409, "{status}");
    }
    let (code, status) = call
        .send(
            Method::POST,
            "/minik/v1/join",
            admin,
            Some(("application/json", &join_n1)),
        )
        .await;
    assert_eq!(code, 201, "{status}");

    // Rotating the admin token: the old one is refused, the new one works, also from the
    // client's config file.
    let (ok, new_admin, err) = minik(&["token", "rotate", "admin"], admin);
    assert!(ok, "{err}");
    assert_eq!(call.get(pods, admin).await.0, 401);
    std::fs::create_dir_all(dir.path().join(".minik")).unwrap();
    std::fs::write(
        dir.path().join(".minik/config"),
        format!("token: {new_admin}\n"),
    )
    .unwrap();
    let (ok, out, err) = minik(&["get", "pods"], None);
    assert!(ok && out.contains("p2"), "{out}{err}");
    let (ok, _, err) = minik(&["get", "pods", "--token", "wrong"], None);
    assert!(!ok && err.contains("Unauthorized"), "{err}");

    // The agents stop their pods' processes on SIGTERM.
    agent1.terminate(Duration::from_secs(10));
    agent2.terminate(Duration::from_secs(10));
}

/// Runs `minik server` with `args` on an ephemeral loopback port and expects it to refuse to
/// start: (stderr) once it exited, or a panic if it is still running after 20s.
fn server_refuses(data: &Path, args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_minik"))
        .arg("server")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the server exited successfully");
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_server_never_runs_without_private_tokens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    // A token file others can read: refused, naming the file and the fix.
    std::fs::create_dir_all(data.join("auth")).unwrap();
    let admin = data.join("auth/admin-token");
    std::fs::write(&admin, "shared-with-everyone\n").unwrap();
    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = server_refuses(&data, &[]);
    assert!(
        err.contains("admin-token") && err.contains("chmod 600"),
        "{err}"
    );
    // An empty token file: refused, rather than a server anyone can use.
    let token_file = dir.path().join("empty-token");
    std::fs::write(&token_file, "").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = server_refuses(
        &dir.path().join("other"),
        &["--token-file", token_file.to_str().unwrap()],
    );
    assert!(
        err.contains("empty-token") && err.contains("empty"),
        "{err}"
    );
    // Nothing was served meanwhile, and no store was made for the refused start.
    assert!(!dir.path().join("other/store").exists());
}

/// A one-request HTTPS server on loopback that answers every connection with `answer`,
/// serving `cert` (one the cluster CA issued, as a node's agent serves); its address.
fn canned_https(
    answer: String,
    cert: std::sync::Arc<minik_tls::rustls::sign::CertifiedKey>,
) -> std::net::SocketAddr {
    let config = minik_tls::server_config(minik_tls::ServingCert::new(cert), None).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            // A client that stalls holds up the next ones only this long.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(connection) = minik_tls::rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = minik_tls::rustls::StreamOwned::new(connection, stream);
            let mut buf = [0u8; 4096];
            let _ = tls.read(&mut buf);
            let _ = tls.write_all(answer.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

/// The serving certificate (for 127.0.0.1) that node `node` gets from the server with its own
/// `token`, as its agent does.
async fn node_serving_certificate(
    call: &Call,
    node: &str,
    token: &str,
) -> std::sync::Arc<minik_tls::rustls::sign::CertifiedKey> {
    let (csr, key) = minik_tls::certificate_request(&format!("system:node:{node}")).unwrap();
    let request = json!({"certificateSigningRequest": csr, "addresses": ["127.0.0.1"]});
    let (code, answer) = call
        .send(
            Method::POST,
            &format!("/minik/v1/nodes/{node}/serving-certificate"),
            Some(token),
            Some(("application/json", &request)),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    minik_tls::certified_key(answer["certificate"].as_str().unwrap(), &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_does_not_follow_a_node_agents_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let server = MINIK.server_with(&dir.path().join("server"), &["--allow-anonymous-loopback"]);
    let call = Call {
        http: minik_testkit::client(&server.base),
        base: server.base.clone(),
    };
    // A node (it joined properly) whose "agent" redirects the server's log request elsewhere.
    let (code, joined) = call
        .send(
            Method::POST,
            "/minik/v1/join",
            None,
            Some(("application/json", &json!({"nodeName": "evil"}))),
        )
        .await;
    assert_eq!(code, 201, "{joined}");
    let evil = joined["token"].as_str().unwrap().to_owned();
    // Its "agent" serves HTTPS with the certificate the server issued to the node, so the
    // server's handshake succeeds and only the redirect is left to refuse; the place it
    // points to would answer as well.
    let cert = node_serving_certificate(&call, "evil", &evil).await;
    let secret = canned_https(
        "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nSECRET-ANSWER".into(),
        cert.clone(),
    );
    let agent = canned_https(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: https://{secret}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        cert,
    );
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "evil"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port()}}}});
    let (code, status) = call
        .send(
            Method::POST,
            "/api/v1/nodes",
            Some(&evil),
            Some(("application/json", &node)),
        )
        .await;
    assert_eq!(code, 201, "{status}");
    let pod = env_pod("victim", "evil");
    let (code, status) = call
        .send(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            None,
            Some(("application/json", &pod)),
        )
        .await;
    assert_eq!(code, 201, "{status}");
    let (code, answer) = call
        .get("/api/v1/namespaces/default/pods/victim/log", None)
        .await;
    assert_ne!(code, 200, "{answer}");
    // The server reached the agent over HTTPS (its certificate is the cluster CA's) and
    // refused its redirect.
    assert!(answer.to_string().contains("answered 302"), "{answer}");
    assert!(
        !answer.to_string().contains("SECRET-ANSWER"),
        "the server followed the agent's redirect: {answer}"
    );
}
