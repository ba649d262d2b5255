//! `minik up` end to end: nodes Ready, the client config written, pods run; SIGTERM stops
//! every pod process; `minik up` again on the same data dir brings the workloads back.

mod support;

use std::time::Duration;

use serde_json::{json, Value};

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_pods_stops_them_all_and_brings_them_back() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut up = support::MINIK.up(home.path(), data.path(), 2, &[]);
    let base = up.base.clone();
    assert!(up.base.starts_with("https://127.0.0.1:"), "{}", up.base);
    // The client trusts the cluster CA `minik up` made, and only it.
    let client = minik_testkit::client(&base);

    let nodes = get(&client, format!("{base}/api/v1/nodes")).await.unwrap();
    let names: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["node-1", "node-2"]);
    // The client config holds the admin token, so it is private; the nodes joined with the
    // join token and act with their own credentials.
    let config_path = home.path().join(".minik/config");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let admin = std::fs::read_to_string(data.path().join("auth/admin-token")).unwrap();
    assert_eq!(
        config,
        format!(
            "server: {base}\nnamespace: default\ntoken: {}\ncertificate-authority: \"{}\"\n",
            admin.trim(),
            data.path().join("tls/ca.crt").display()
        )
    );
    // kubectl's kubeconfig carries the CA itself.
    let kubeconfig = std::fs::read_to_string(home.path().join(".minik/kubeconfig")).unwrap();
    let ca_data = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(minik_testkit::ca_pem(&base))
    };
    assert!(
        kubeconfig.contains(&format!("certificate-authority-data: {ca_data}\n")),
        "{kubeconfig}"
    );
    use std::os::unix::fs::PermissionsExt;
    for private in [config_path, home.path().join(".minik/kubeconfig")] {
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", private.display());
    }
    for node in ["node-1", "node-2"] {
        let credential = data.path().join("nodes").join(node).join("credential.json");
        let credential: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&credential).unwrap()).unwrap();
        let token = credential["token"].as_str().unwrap();
        assert!(token.starts_with(&format!("node.{node}.")), "{token}");
    }

    let marker = format!("up-marker-{}", std::process::id());
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "c", "image": "busybox",
                 "command": ["sh", "-c", "sleep 300 & wait", &marker]}]}
    });
    let created = client
        .post(format!("{base}/api/v1/namespaces/default/pods"))
        .json(&pod)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let url = format!("{base}/api/v1/namespaces/default/pods/sleeper");
    support::wait_for("the pod to run", support::DEADLINE, || async {
        let p = get(&client, url.clone()).await?;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .await;
    assert!(support::process_with(&marker));

    let status = up.running.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        !support::process_with(&marker),
        "a pod process outlived minik up"
    );

    // Same data dir: the pod is still in the store and runs again.
    let up = support::MINIK.up(home.path(), data.path(), 2, &[]);
    let base = up.base.clone();
    let url = format!("{base}/api/v1/namespaces/default/pods/sleeper");
    support::wait_for("the pod to run again", support::DEADLINE, || async {
        let p = get(&client, url.clone()).await?;
        (p["status"]["phase"] == "Running" && support::process_with(&marker)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_applies_the_manifests_it_is_given() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let manifest = home.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: from-file\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '300']\n",
    )
    .unwrap();
    let up = support::MINIK.up(
        home.path(),
        data.path(),
        2,
        &["-f", manifest.to_str().unwrap()],
    );
    let (base, lines) = (up.base.clone(), &up.lines);
    let applied = lines
        .recv_timeout(Duration::from_secs(30))
        .into_iter()
        .chain(lines.iter())
        .find(|l| l.starts_with("pod/"));
    assert_eq!(applied.as_deref(), Some("pod/from-file created"));
    let client = minik_testkit::client(&base);
    let url = format!("{base}/api/v1/namespaces/default/pods/from-file");
    support::wait_for("the applied pod to run", support::DEADLINE, || async {
        let p = get(&client, url.clone()).await?;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .await;
}
