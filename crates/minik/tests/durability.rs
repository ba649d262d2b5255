//! Every write that got a 2xx survives `kill -9` of the server in the middle of a write storm;
//! nothing is half-applied; resourceVersions keep increasing after the restart.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

fn pod(name: &str, writer: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"writer": writer.to_string()}},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                                  "env": [{"name": "PAD", "value": "x".repeat(512)}]}]}
    })
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = support::MINIK.server(dir.path(), &[]);
    let base = server.base.clone();
    let client = minik_testkit::client_builder(&base)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // name -> (resourceVersion, labels) of every acknowledged write, the last one per name.
    let acked: Arc<Mutex<BTreeMap<String, (u64, Value)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..16 {
        let (client, base, acked, stop) =
            (client.clone(), base.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let pods = format!("{base}/api/v1/namespaces/default/pods");
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("w{w}-{i}");
                let Ok(response) = client.post(&pods).json(&pod(&name, w)).send().await else {
                    break;
                };
                if response.status().as_u16() != 201 {
                    break;
                }
                let Ok(created) = response.json::<Value>().await else {
                    break;
                };
                acked.lock().unwrap().insert(
                    name.clone(),
                    (rv(&created), created["metadata"]["labels"].clone()),
                );
                // Every third pod is also changed, so updates are in the storm too.
                if i % 3 == 0 {
                    let patch = json!({"metadata": {"labels": {"step": i.to_string()}}});
                    let Ok(response) = client
                        .patch(format!("{pods}/{name}"))
                        .header("content-type", "application/merge-patch+json")
                        .body(patch.to_string())
                        .send()
                        .await
                    else {
                        break;
                    };
                    if response.status().as_u16() != 200 {
                        break;
                    }
                    let Ok(patched) = response.json::<Value>().await else {
                        break;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .insert(name, (rv(&patched), patched["metadata"]["labels"].clone()));
                }
            }
        }));
    }

    // Let the storm run until a good number of writes are acknowledged, then SIGKILL the server
    // while the writers are still sending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 600 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write storm did not get going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let max_acked_rv = acked.values().map(|(rv, _)| *rv).max().unwrap();

    let server = support::MINIK.server(dir.path(), &[]);
    let list = minik_testkit::get_json(&client, &server.base, "/api/v1/namespaces/default/pods")
        .await
        .expect("list the pods after the restart");
    let stored: BTreeMap<String, Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p.clone(),
            )
        })
        .collect();
    for (name, (acked_rv, labels)) in &acked {
        let pod = stored
            .get(name)
            .unwrap_or_else(|| panic!("acknowledged pod {name} was lost"));
        assert!(
            rv(pod) >= *acked_rv,
            "{name}: stored revision older than the acknowledged one"
        );
        if rv(pod) == *acked_rv {
            assert_eq!(
                &pod["metadata"]["labels"], labels,
                "{name}: acknowledged content differs"
            );
        }
    }
    // Whatever is stored, acknowledged or not, is whole: it decodes and carries its identity.
    for (name, pod) in &stored {
        assert!(pod["metadata"]["uid"].is_string(), "{name} is half-written");
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0]["value"]
                .as_str()
                .map(str::len),
            Some(512)
        );
    }
    assert!(rv(&list) >= max_acked_rv);

    let created: Value = client
        .post(format!("{}/api/v1/namespaces/default/pods", server.base))
        .json(&pod("after-restart", 0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        rv(&created) > rv(&list),
        "resourceVersions keep increasing after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_even_with_watches_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = support::MINIK.server(dir.path(), &[]);
    let client = minik_testkit::client(&server.base);
    let mut watch = client
        .get(format!("{}/api/v1/pods?watch=true", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status().as_u16(), 200);
    // It stops by itself, with a watch open.
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    // The watch ended cleanly rather than hanging.
    while let Ok(Some(_)) = watch.chunk().await {}
}
