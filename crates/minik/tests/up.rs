//! `minik up` end to end: nodes Ready, the client config written, pods run; SIGTERM stops
//! every pod process; `minik up` again on the same data dir brings the workloads back.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// Starts `minik up` and waits for the line that says it is up; returns it and the address.
fn start_up(home: &std::path::Path, data: &std::path::Path) -> (support::Running, String) {
    start_up_with(home, data, &[]).0
}

/// Like `start_up`, with extra arguments; also returns the rest of stdout, line by line.
fn start_up_with(
    home: &std::path::Path,
    data: &std::path::Path,
    extra: &[&str],
) -> ((support::Running, String), mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minik"))
        .args([
            "up",
            "--nodes",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .env("HOME", home)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minik up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut running = support::Running {
        child,
        base: String::new(),
    };
    let line = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("minik is up at ") => break line,
            Ok(_) => continue,
            Err(_) => panic!("minik up did not come up within 30s"),
        }
    };
    let base = line
        .trim_start_matches("minik is up at ")
        .split(':')
        .take(3)
        .collect::<Vec<_>>()
        .join(":");
    running.base = base.clone();
    ((running, base), rx)
}

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_pods_stops_them_all_and_brings_them_back() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (mut up, base) = start_up(home.path(), data.path());
    assert!(up.base.starts_with("http://127.0.0.1:"), "{}", up.base);

    let nodes = get(&client, format!("{base}/api/v1/nodes")).await.unwrap();
    let names: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["node-1", "node-2"]);
    let config = std::fs::read_to_string(home.path().join(".minik/config")).unwrap();
    assert_eq!(config, format!("server: {base}\nnamespace: default\n"));

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
    support::eventually("the pod to run", 30, || async {
        let p = get(&client, url.clone()).await?;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .await;
    assert!(support::process_with(&marker));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !support::process_with(&marker),
        "a pod process outlived minik up"
    );

    // Same data dir: the pod is still in the store and runs again.
    let (_up, base) = start_up(home.path(), data.path());
    let url = format!("{base}/api/v1/namespaces/default/pods/sleeper");
    support::eventually("the pod to run again", 30, || async {
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
    let ((_up, base), lines) = start_up_with(
        home.path(),
        data.path(),
        &["-f", manifest.to_str().unwrap()],
    );
    let applied = lines
        .recv_timeout(Duration::from_secs(30))
        .into_iter()
        .chain(lines.iter())
        .find(|l| l.starts_with("pod/"));
    assert_eq!(applied.as_deref(), Some("pod/from-file created"));
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/namespaces/default/pods/from-file");
    support::eventually("the applied pod to run", 30, || async {
        let p = get(&client, url.clone()).await?;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .await;
}
