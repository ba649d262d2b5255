//! The official Kubernetes Python client (`pip install kubernetes`) against the API server:
//! `tests/compat/python_client.py` creates, lists, watches, patches and deletes pods,
//! deployments and services and resumes a watch from a resourceVersion, over HTTPS, verifying
//! the server with the CA in its kubeconfig (`certificate-authority-data`, no insecure flag).
//! `.ci/run` installs the client when it is missing; without it this test fails, it does not
//! skip.

use std::process::Stdio;

/// A kubeconfig with one context for the server at `base`, trusting `ca_pem`.
pub fn kubeconfig(base: &str, ca_pem: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: minik\n  cluster: {{server: '{base}', certificate-authority-data: '{ca}'}}\nusers:\n- name: minik\n  user: {{}}\ncontexts:\n- name: minik\n  context: {{cluster: minik, user: minik, namespace: default}}\ncurrent-context: minik\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_creates_lists_watches_patches_and_deletes() {
    let server = minik_testkit::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubeconfig");
    std::fs::write(
        &config,
        kubeconfig(&server.base, &minik_testkit::ca_pem(&server.base)),
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/python_client.py");
    let python = std::env::var("MINIK_PYTHON").unwrap_or_else(|_| "python3".into());
    let child = tokio::process::Command::new(&python)
        .arg(script)
        .env("KUBECONFIG", &config)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the Python client finished within 120s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed (is `pip install kubernetes` done? .ci/run does it):\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout, "python client: ok\n");
}
