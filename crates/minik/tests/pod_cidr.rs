//! Node IPAM end to end: `minik server` gives each node a `spec.podCIDR` from `--cluster-cidr`
//! (a /24 each by default), distinct, and refuses settings that cannot work.

mod support;

use serde_json::Value;
use support::{wait_for, DEADLINE, MINIK};

#[tokio::test(flavor = "multi_thread")]
async fn nodes_get_distinct_pod_cidrs_from_the_cluster_cidr() {
    let dir = tempfile::tempdir().unwrap();
    let server = MINIK.server(
        &dir.path().join("server"),
        &["--cluster-cidr", "10.250.0.0/22"],
    );
    let _n1 = MINIK.node(
        &server.base,
        "n1",
        &dir.path().join("n1"),
        &["--runtime", "fake"],
    );
    let _n2 = MINIK.node(
        &server.base,
        "n2",
        &dir.path().join("n2"),
        &["--runtime", "fake"],
    );
    let http = minik_testkit::Http::new(&server.base);
    let cidrs = wait_for("both nodes to have a pod CIDR", DEADLINE, || async {
        let nodes = http.get_json("/api/v1/nodes").await.unwrap_or(Value::Null);
        let cidrs: Vec<String> = nodes["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if cidrs.len() == 2 {
            Ok(cidrs)
        } else {
            Err(nodes.to_string())
        }
    })
    .await;
    let mut sorted = cidrs.clone();
    sorted.sort();
    assert_eq!(sorted, ["10.250.0.0/24", "10.250.1.0/24"], "{cidrs:?}");
}

#[test]
fn cluster_cidr_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            vec!["--cluster-cidr", "10.244.0.1/16"],
            "--cluster-cidr \"10.244.0.1/16\"",
        ),
        (vec!["--node-cidr-mask-size", "8"], "--node-cidr-mask-size"),
    ] {
        let out = MINIK
            .command()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("s"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("s/store").exists());
    }
}
