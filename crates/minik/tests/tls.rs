//! TLS on every hop (docs/tls.md), end to end with the real binaries: the cluster CA the server
//! makes, the join token's CA hash that a new node checks, client certificates, a plain-HTTP
//! request on the HTTPS port, bad TLS settings refused at start, and certificates renewed with
//! a short lifetime while clients and nodes keep working.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::{wait_for, DEADLINE, MINIK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `host:port` of a base URL.
fn authority(base: &str) -> String {
    base.split("://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

/// The certificate the TLS server at `address` presents, verified against `ca_pem`.
async fn served_certificate(address: &str, ca_pem: &str) -> Vec<u8> {
    use minik_tls::tokio_rustls::TlsConnector;
    let config = minik_tls::client_config(ca_pem, None).unwrap();
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = minik_tls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name.to_owned(), stream).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A reqwest client trusting `ca_pem` and presenting `identity` (certificate and key PEM).
fn client_with(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let config = minik_tls::client_config(ca_pem, identity).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// Runs `minik ARGS` (the node or server command) expecting it to exit non-zero within the
/// deadline; answers its stderr.
fn refused(args: &[&str]) -> String {
    let mut child = MINIK
        .command()
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status =
        minik_testkit::blocking::wait_for("the refused command to exit", DEADLINE, || match child
            .try_wait()
        {
            Ok(Some(status)) => Ok(status),
            other => Err(format!("{other:?}")),
        });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{args:?} succeeded: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_serves_https_with_its_own_ca_and_answers_plain_http_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = MINIK.server_with(&data, &[]);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let tls = data.join("tls");
    for key in ["ca.key", "server.key", "client-admin.key"] {
        assert_eq!(mode(&tls.join(key)), 0o600, "{key}");
    }
    let ca = read(&tls.join("ca.crt"));
    let admin = read(&data.join("auth/admin-token")).trim().to_owned();
    // The CA is public at /cacerts, and the join token carries its hash.
    let http = minik_testkit::client(&server.base);
    let served = http
        .get(format!("{}/cacerts", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), ca);
    let join = minik_tls::JoinToken::parse(&read(&data.join("auth/join-token"))).unwrap();
    assert_eq!(join.ca_hash, Some(minik_tls::fingerprint(&ca)));
    // Only a client that trusts the cluster CA gets through.
    let stranger = reqwest::Client::new()
        .get(format!("{}/version", server.base))
        .send()
        .await
        .unwrap_err();
    let cause = format!("{stranger:?}");
    assert!(cause.contains("UnknownIssuer"), "{cause}");
    let version = http
        .get(format!("{}/version", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    // Plain HTTP on the HTTPS port: Go's answer, and the connection closes.
    let mut plain = tokio::net::TcpStream::connect(authority(&server.base))
        .await
        .unwrap();
    plain
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, plain.read_to_string(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    assert_eq!(
        answer,
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );
    // The kubeconfig the server wrote carries the CA, and kubectl verifies with it.
    let kubeconfig = data.join("kubeconfig");
    assert_eq!(mode(&kubeconfig), 0o600);
    let text = read(&kubeconfig);
    assert!(text.contains("certificate-authority-data:"), "{text}");
    assert!(text.contains(&admin), "{text}");
    let kubectl = std::env::var("MINIK_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = tokio::process::Command::new(&kubectl)
        .args(["get", "namespaces", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {kubectl} (.ci/run installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("namespace/kube-system"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The minik client verifies with the CA it is given, and names the fix without it.
    let ok = MINIK
        .command()
        .args([
            "get",
            "namespaces",
            "--server",
            &server.base,
            "--token",
            &admin,
        ])
        .arg("--certificate-authority")
        .arg(tls.join("ca.crt"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let untrusting = MINIK
        .command()
        .args([
            "get",
            "namespaces",
            "--server",
            &server.base,
            "--token",
            &admin,
        ])
        .env("HOME", dir.path())
        .env_remove("MINIK_CERTIFICATE_AUTHORITY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&untrusting.stderr);
    assert!(
        !untrusting.status.success() && err.contains("--certificate-authority"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_checks_the_servers_ca_against_its_join_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = MINIK.server_with(&data, &[]);
    let other = MINIK.server_with(&dir.path().join("other"), &[]);
    let join = read(&data.join("auth/join-token")).trim().to_owned();
    let foreign = read(&dir.path().join("other/auth/join-token"))
        .trim()
        .to_owned();
    // Another cluster's token: refused before anything is sent, naming both hashes.
    let err = refused(&[
        "node",
        "--server",
        &server.base,
        "--token",
        &foreign,
        "--name",
        "n2",
        "--port",
        "0",
        "--data-dir",
        dir.path().join("n2").to_str().unwrap(),
    ]);
    let ours = minik_tls::fingerprint(&read(&data.join("tls/ca.crt")));
    let theirs = minik_tls::fingerprint(&read(&dir.path().join("other/tls/ca.crt")));
    assert!(
        err.contains(&ours) && err.contains(&theirs) && err.contains("does not match"),
        "{err}"
    );
    assert!(!dir.path().join("n2/credential.json").exists());
    // A token without the hash and no CA: the node says how to trust the server.
    let bare = minik_tls::JoinToken::parse(&join).unwrap().secret;
    let err = refused(&[
        "node",
        "--server",
        &server.base,
        "--token",
        &bare,
        "--name",
        "n3",
        "--port",
        "0",
        "--data-dir",
        dir.path().join("n3").to_str().unwrap(),
    ]);
    assert!(err.contains("--certificate-authority"), "{err}");
    // The cluster's own token: the node joins, keeps the CA, and becomes Ready.
    let n1 = dir.path().join("n1");
    let _agent = MINIK.node(&server.base, "n1", &n1, &["--token", &join]);
    let http = minik_testkit::client(&server.base);
    let admin = read(&data.join("auth/admin-token")).trim().to_owned();
    wait_for("node n1 to be Ready", DEADLINE, || async {
        let answer = http
            .get(format!("{}/api/v1/nodes/n1", server.base))
            .bearer_auth(&admin)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let node = answer.json::<Value>().await.map_err(|e| e.to_string())?;
        let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            Ok(())
        } else {
            Err(node.to_string())
        }
    })
    .await;
    assert_eq!(read(&n1.join("ca.crt")), read(&data.join("tls/ca.crt")));
    assert_eq!(mode(&n1.join("ca.crt")), 0o600);
    drop(other);
}

/// A client certificate for `user` in `group` from the CA in `tls` (its key read back from
/// the data dir, as an operator with the CA key would issue one), valid for `lifetime` from
/// `now`.
fn issue(
    tls: &Path,
    user: &str,
    group: Option<&str>,
    now: SystemTime,
    lifetime: Duration,
) -> minik_tls::Issued {
    let ca = minik_tls::Ca::load(&tls.join("ca.crt"), &tls.join("ca.key")).unwrap();
    ca.issue(
        &minik_tls::Leaf {
            common_name: user.into(),
            organization: group.map(str::to_owned),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: minik_tls::Usage::Client,
        },
        lifetime,
        now,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_authenticate_users_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = MINIK.server_with(&data, &[]);
    let tls = data.join("tls");
    let ca = read(&tls.join("ca.crt"));
    let pods = format!("{}/api/v1/namespaces/default/pods", server.base);
    // The administrator's certificate the server made: no token needed.
    let (cert, key) = (
        read(&tls.join("client-admin.crt")),
        read(&tls.join("client-admin.key")),
    );
    let admin = client_with(&ca, Some((&cert, &key)));
    let made = admin
        .post(&pods)
        .json(&json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "by-cert"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    // A user the CA named, in no privileged group: authenticated, and refused by name.
    let alice = issue(
        &tls,
        "alice",
        Some("developers"),
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    let alice = client_with(&ca, Some((&alice.cert_pem, &alice.key_pem)));
    let answer = alice.get(&pods).send().await.unwrap();
    assert_eq!(answer.status(), 403);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("User \"alice\""),
        "{body}"
    );
    assert_eq!(
        alice
            .get(format!("{}/version", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // An expired certificate and one of another CA fail the handshake; nothing is created.
    let long_ago = SystemTime::now() - Duration::from_secs(3 * 24 * 3600);
    let expired = issue(
        &tls,
        "admin",
        Some("system:masters"),
        long_ago,
        Duration::from_secs(24 * 3600),
    );
    let other = dir.path().join("other-ca");
    minik_tls::Ca::load_or_create(&other).unwrap();
    let foreign = issue(
        &other,
        "admin",
        Some("system:masters"),
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    for (what, certificate) in [("expired", expired), ("foreign", foreign)] {
        let client = client_with(&ca, Some((&certificate.cert_pem, &certificate.key_pem)));
        let sent = client
            .post(&pods)
            .json(&json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": what},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }))
            .send()
            .await;
        assert!(sent.is_err(), "{what}: {sent:?}");
    }
    let names: Vec<String> = admin
        .get(&pods)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["by-cert"]);
}

#[test]
fn bad_tls_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let missing = dir.path().join("missing.crt");
    let err = refused(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data("a"),
        "--tls-cert-file",
        missing.to_str().unwrap(),
        "--tls-private-key-file",
        missing.to_str().unwrap(),
    ]);
    assert!(
        err.contains("missing.crt") && err.contains("cannot read"),
        "{err}"
    );
    let err = refused(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data("b"),
        "--tls-cert-file",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("go together"), "{err}");
    let err = refused(&[
        "server",
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        &data("c"),
        "--plain-http",
    ]);
    assert!(
        err.contains("--plain-http serves only on a loopback"),
        "{err}"
    );
    // A CA certificate without its key is never replaced by a new CA.
    std::fs::create_dir_all(dir.path().join("d/tls")).unwrap();
    std::fs::write(dir.path().join("d/tls/ca.crt"), "kept").unwrap();
    let err = refused(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data("d"),
    ]);
    assert!(err.contains("ca.key") && err.contains("does not"), "{err}");
    assert_eq!(read(&dir.path().join("d/tls/ca.crt")), "kept");
    // Plain HTTP stays possible on loopback, when asked for.
    let plain = MINIK.server_with(&dir.path().join("e"), &["--plain-http"]);
    assert!(
        plain.base.starts_with("http://127.0.0.1:"),
        "{}",
        plain.base
    );
    assert!(!dir.path().join("e/tls").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_renew_while_clients_and_nodes_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    // 12 s certificates: renewed at 8 s (two thirds), long before they expire.
    let server = MINIK.server_with(&data, &["--tls-cert-lifetime", "12s"]);
    let ca = read(&data.join("tls/ca.crt"));
    let admin = read(&data.join("auth/admin-token")).trim().to_owned();
    let join = read(&data.join("auth/join-token")).trim().to_owned();
    let n1 = dir.path().join("n1");
    let _agent = MINIK.node(&server.base, "n1", &n1, &["--token", &join]);
    let http = client_with(&ca, None);
    let api = |path: &str| format!("{}{path}", server.base);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "sh",
            "command": ["sh", "-c", "echo renewed-and-reachable; sleep 3600"]}]}
    });
    let made = http
        .post(api("/api/v1/namespaces/default/pods"))
        .bearer_auth(&admin)
        .json(&pod)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let agent_address = |node: &Value| {
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .unwrap_or(0);
        (port > 0).then(|| format!("127.0.0.1:{port}"))
    };
    let node: Value = loop {
        let node: Value = http
            .get(api("/api/v1/nodes/n1"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if agent_address(&node).is_some() {
            break node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let agent = agent_address(&node).unwrap();
    let server_first = served_certificate(&authority(&server.base), &ca).await;
    let agent_first = served_certificate(&agent, &ca).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let server_now = served_certificate(&authority(&server.base), &ca).await;
        let agent_now = served_certificate(&agent, &ca).await;
        if server_now != server_first && agent_now != agent_first {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server's or the agent's certificate was not renewed within 40s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Past the first certificates' expiry too, clients and the node still work: the log comes
    // from the agent through the server, both on renewed certificates.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log_path = api("/api/v1/namespaces/default/pods/talker/log");
    let mut last = String::new();
    let found = loop {
        let answer = http
            .get(&log_path)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        last = answer.text().await.unwrap_or(last);
        if last.contains("renewed-and-reachable") {
            break true;
        }
        if tokio::time::Instant::now() > deadline + Duration::from_secs(20) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(found, "the pod's log never came through: {last}");
    let node: Value = http
        .get(api("/api/v1/nodes/n1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    assert!(ready, "{node}");
}
