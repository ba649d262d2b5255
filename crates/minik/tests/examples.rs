//! Every manifest in `examples/` applied with the real `minik` client to a real `minik up`
//! cluster (process runtime), and its outcome checked as the example's comment promises.

mod support;

use std::time::Duration;

use serde_json::Value;

use support::{wait_for, Up, DEADLINE};

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn cluster(home: &tempfile::TempDir, data: &tempfile::TempDir) -> Up {
    support::MINIK.up(home.path(), data.path(), 2, &[])
}

async fn get(up: &Up, path: &str) -> Option<Value> {
    support::get_json(&minik_testkit::client(&up.base), &up.base, path).await
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn running(pods: &[Value]) -> Vec<Value> {
    pods.iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .cloned()
        .collect()
}

fn names(pods: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn apply(up: &Up, file: &str) -> String {
    let (ok, stdout, stderr) = up.minik(&["apply", "-f", &example(file)]);
    assert!(ok, "minik apply -f {file} failed: {stderr}");
    stdout
}

/// Waits until exactly `count` pods matching `selector` in the default namespace run, and
/// returns them.
async fn wait_running(up: &Up, selector: &str, count: usize) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/default/pods?labelSelector={selector}");
    wait_for(
        &format!("{count} running pods {selector}"),
        Duration::from_secs(60),
        || async {
            let list = get(up, &path).await?;
            let pods = running(&items(&list));
            (pods.len() == count && items(&list).len() == count).then_some(pods)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_example_runs_and_says_hello_in_its_log() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(apply(&up, "pod.yaml"), "pod/hello created\n");
    wait_running(&up, "app=hello", 1).await;
    wait_for("the pod's greeting in its log", DEADLINE, || async {
        let (ok, stdout, _) = up.minik(&["logs", "hello"]);
        (ok && stdout == "hello from hello\n").then_some(())
    })
    .await;
    // Applying it again changes nothing.
    assert_eq!(apply(&up, "pod.yaml"), "pod/hello unchanged\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_example_keeps_three_pods_and_replaces_a_deleted_one() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "replicaset.yaml"),
        "replicaset.apps/frontend created\n"
    );
    let selector = "app=guestbook,tier=frontend";
    let pods = wait_running(&up, selector, 3).await;
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["name"], "frontend");
        assert_eq!(owner["controller"], true);
    }
    let before = names(&pods);
    let victim = before[0].clone();
    let (ok, stdout, stderr) = up.minik(&["delete", "pod", &victim]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("pod \"{victim}\" deleted\n"));
    let after = wait_for("a replacement pod", Duration::from_secs(60), || async {
        let pods = wait_running(&up, selector, 3).await;
        let after = names(&pods);
        (!after.contains(&victim)).then_some(after)
    })
    .await;
    assert_eq!(after.iter().filter(|n| before.contains(n)).count(), 2);
    let rs = get(&up, "/apis/apps/v1/namespaces/default/replicasets/frontend")
        .await
        .unwrap();
    assert_eq!(rs["spec"]["replicas"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicationcontroller_example_runs_three_and_scales() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "replicationcontroller.yaml"),
        "replicationcontroller/nginx created\n"
    );
    wait_running(&up, "app=nginx", 3).await;
    let (ok, stdout, stderr) = up.minik(&["scale", "rc", "nginx", "--replicas", "1"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "replicationcontroller/nginx scaled\n");
    wait_running(&up, "app=nginx", 1).await;
    wait_for("the RC's status to say 1 ready", DEADLINE, || async {
        let rc = get(
            &up,
            "/api/v1/namespaces/default/replicationcontrollers/nginx",
        )
        .await?;
        (rc["status"]["readyReplicas"] == 1 && rc["status"]["replicas"] == 1).then_some(())
    })
    .await;
}

/// The Deployment if every replica of its current generation is updated and available.
async fn rolled_out(up: &Up, path: &str) -> Option<Value> {
    let d = get(up, path).await?;
    let s = &d["status"];
    (s["observedGeneration"] == d["metadata"]["generation"]
        && s["updatedReplicas"] == 3
        && s["availableReplicas"] == 3
        && s["replicas"] == 3)
        .then_some(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_example_serves_its_pod_names_and_rolls_out_a_change() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "deployment.yaml"),
        "deployment.apps/web created\n"
    );
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    wait_for("3 available replicas", Duration::from_secs(60), || {
        rolled_out(&up, path)
    })
    .await;
    // The readiness probe passed, so each pod answers on its port with its own name.
    let pods = wait_running(&up, "app=web", 3).await;
    for pod in &pods {
        assert!(
            pod["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            "{pod}"
        );
    }
    // A template change rolls out: a second ReplicaSet with all three replicas, the first at 0.
    let (ok, _, stderr) = up.minik(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"example/rev":"2"}}}}}"#,
    ]);
    if !ok {
        // `minik patch` may not exist; the REST API does the same.
        assert!(stderr.contains("patch"), "{stderr}");
        let response = minik_testkit::client(&up.base)
            .patch(format!("{}{path}", up.base))
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"spec":{"template":{"metadata":{"annotations":{"example/rev":"2"}}}}}"#)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let rolled = wait_for("the rollout", Duration::from_secs(90), || async {
        let d = rolled_out(&up, path).await?;
        (d["metadata"]["generation"] == 2).then_some(d)
    })
    .await;
    assert_eq!(
        rolled["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let sets = get(
        &up,
        "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app=web",
    )
    .await
    .unwrap();
    let mut replicas: Vec<i64> = items(&sets)
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_i64().unwrap())
        .collect();
    replicas.sort();
    assert_eq!(replicas, [0, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_example_restarts_the_container_when_liveness_fails() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(apply(&up, "probes.yaml"), "pod/liveness-exec created\n");
    let path = "/api/v1/namespaces/default/pods/liveness-exec";
    wait_for("the pod to be Ready", DEADLINE, || async {
        let pod = get(&up, path).await?;
        pod["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    })
    .await;
    // The file goes after 10 s; the liveness probe (every 2 s, 3 failures) restarts it.
    let pod = wait_for(
        "a restart after the liveness probe failed",
        Duration::from_secs(60),
        || async {
            let pod = get(&up, path).await?;
            (pod["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1).then_some(pod)
        },
    )
    .await;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert!(last.is_object(), "{pod}");
    // The agent sends its events from a queue, so they may trail the status: wait for them.
    wait_for(
        "the Unhealthy (liveness) and Killing events",
        DEADLINE,
        || async {
            let events = get(
                &up,
                "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=liveness-exec",
            )
            .await?;
            let events = items(&events);
            let unhealthy = events.iter().any(|e| {
                e["reason"] == "Unhealthy"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Liveness probe failed"))
            });
            let killing = events.iter().any(|e| e["reason"] == "Killing");
            (unhealthy && killing).then_some(())
        },
    )
    .await;
}

/// GETs `http://addr/` with a fresh connection and returns the body.
async fn answer(addr: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client.get(format!("http://{addr}/")).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}

/// The pod names that answer `n` requests to `addr`, once all of them succeed.
async fn answered_by(addr: &str, n: usize) -> std::collections::BTreeSet<String> {
    wait_for(
        &format!("{n} answers from {addr}"),
        Duration::from_secs(60),
        || async {
            let mut names = std::collections::BTreeSet::new();
            for _ in 0..n {
                let body = answer(addr).await?;
                names.insert(body.trim().trim_start_matches("hello from ").to_owned());
            }
            Some(names)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_example_reaches_every_replica_through_each_type_of_service() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    apply(&up, "deployment.yaml");
    assert_eq!(
        apply(&up, "service.yaml"),
        "service/web created\nservice/web-nodeport created\nservice/web-lb created\n"
    );
    let pods = wait_running(&up, "app=web", 3).await;
    let all: std::collections::BTreeSet<String> = names(&pods).into_iter().collect();
    let svc = |name: &'static str| {
        let up = &up;
        async move {
            get(up, &format!("/api/v1/namespaces/default/services/{name}"))
                .await
                .unwrap()
        }
    };
    let web = svc("web").await;
    let cluster_ip = web["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(cluster_ip.starts_with("127.96."), "{web}");
    // 30 requests to the ClusterIP are answered by all three pods (once all are Ready).
    wait_for(
        "all 3 pods behind the ClusterIP",
        Duration::from_secs(60),
        || async { (answered_by(&format!("{cluster_ip}:8080"), 30).await == all).then_some(()) },
    )
    .await;
    let node_port = svc("web-nodeport").await["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    assert!((30000..=32767).contains(&node_port));
    // Each Service has Endpoints of its own, made on their own schedule: wait for this one's
    // too rather than assume it caught up with the ClusterIP's (a race seen in CI).
    wait_for(
        "all 3 pods behind the NodePort",
        Duration::from_secs(60),
        || async {
            (answered_by(&format!("127.0.0.1:{node_port}"), 30).await == all).then_some(())
        },
    )
    .await;
    let lb = wait_for("the LoadBalancer's ingress", DEADLINE, || async {
        let lb = svc("web-lb").await;
        lb["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    assert_eq!(lb, "127.0.0.1");
    wait_for(
        "all 3 pods behind the LoadBalancer",
        Duration::from_secs(60),
        || async { (answered_by(&format!("{lb}:8080"), 30).await == all).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_example_admits_the_pod_that_fits_and_refuses_one_more() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "quota.yaml"),
        "namespace/quota-mem-cpu-example created\nresourcequota/mem-cpu-demo created\npod/quota-mem-cpu-demo created\n"
    );
    let ns = "/api/v1/namespaces/quota-mem-cpu-example";
    wait_for("the quota's usage to count the pod", DEADLINE, || async {
        let quota = get(&up, &format!("{ns}/resourcequotas/mem-cpu-demo")).await?;
        let used = &quota["status"]["used"];
        (used["requests.memory"] == "600Mi" && used["requests.cpu"] == "400m").then_some(())
    })
    .await;
    // The documentation's second pod asks for 700Mi more memory: over the 1Gi of requests.
    let second = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: quota-mem-cpu-demo-2\n  namespace: quota-mem-cpu-example\nspec:\n  containers:\n  - name: quota-mem-cpu-demo-2-ctr\n    image: redis\n    command: [sleep, '3600']\n    resources:\n      limits: {memory: 1Gi, cpu: 800m}\n      requests: {memory: 700Mi, cpu: 400m}\n";
    let file = home.path().join("second.yaml");
    std::fs::write(&file, second).unwrap();
    let (ok, _, stderr) = up.minik(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(
        stderr,
        "Error from server (Forbidden): error when creating \"".to_owned()
            + file.to_str().unwrap()
            + "\": pods \"quota-mem-cpu-demo-2\" is forbidden: exceeded quota: mem-cpu-demo, requested: requests.memory=700Mi, used: requests.memory=600Mi, limited: requests.memory=1Gi\n"
    );
    let pod = get(&up, &format!("{ns}/pods/quota-mem-cpu-demo"))
        .await
        .unwrap();
    assert_eq!(pod["status"]["qosClass"], "Burstable");
}

/// Removes the empty mount points the process runtime made on the host for an example's
/// volumes (under /tmp/minik-example), when the guard goes.
struct MountPoints(&'static str);

impl Drop for MountPoints {
    fn drop(&mut self) {
        let dir = std::path::Path::new(self.0);
        let _ = std::fs::remove_dir(dir);
        let _ = dir.parent().map(std::fs::remove_dir);
    }
}

/// Volumes need an agent that runs as root (the process runtime binds them in a private mount
/// namespace).
fn root_for_volumes() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    minik_testkit::cannot_run("root", "the process runtime mounts volumes as root");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_example_reads_its_settings_and_follows_changes() {
    if !root_for_volumes() {
        return;
    }
    let _mounts = MountPoints("/tmp/minik-example/config");
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "configmap.yaml"),
        "configmap/app-settings created\nsecret/app-credentials created\npod/settings created\n"
    );
    wait_for("the settings in the pod's log", DEADLINE, || async {
        let (_, stdout, _) = up.minik(&["logs", "settings"]);
        (stdout.contains("log level debug, password of 6 characters")
            && stdout.contains("greeting: hello"))
        .then_some(())
    })
    .await;
    // The ConfigMap changes (applied again with other data); the file follows.
    let text = std::fs::read_to_string(example("configmap.yaml"))
        .unwrap()
        .replace("greeting: hello", "greeting: bonjour");
    let file = home.path().join("changed.yaml");
    std::fs::write(&file, text).unwrap();
    let (ok, _, err) = up.minik(&["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    wait_for("the new greeting in the pod's log", DEADLINE, || async {
        let (_, stdout, _) = up.minik(&["logs", "settings"]);
        stdout.contains("greeting: bonjour").then_some(())
    })
    .await;
    up.minik(&["delete", "pod", "settings", "--grace-period=0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_volume_example_counts_on_across_pods() {
    if !root_for_volumes() {
        return;
    }
    let _mounts = MountPoints("/tmp/minik-example/data");
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "persistent-volume.yaml"),
        "persistentvolumeclaim/counter-data created\npod/counter created\n"
    );
    for n in 1..=2 {
        wait_for(&format!("start number {n}"), DEADLINE, || async {
            let (_, stdout, _) = up.minik(&["logs", "counter"]);
            stdout.contains(&format!("start number {n}")).then_some(())
        })
        .await;
        let (ok, _, err) = up.minik(&["delete", "pod", "counter", "--grace-period=0"]);
        assert!(ok, "{err}");
        wait_for("the pod to be gone", DEADLINE, || async {
            let (ok, _, _) = up.minik(&["get", "pod", "counter"]);
            (!ok).then_some(())
        })
        .await;
        if n == 1 {
            apply(&up, "persistent-volume.yaml");
        }
    }
    let (ok, _, err) = up.minik(&["delete", "pvc", "counter-data"]);
    assert!(ok, "{err}");
    wait_for("the volume to go", DEADLINE, || async {
        let list = get(&up, "/api/v1/persistentvolumes").await?;
        items(&list).is_empty().then_some(())
    })
    .await;
}

/// The condition of type `kind` of an object is True.
fn condition(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_and_cronjob_examples_run_to_completion() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(apply(&up, "job.yaml"), "job.batch/pi created\n");
    wait_for("the pi job to complete", DEADLINE, || async {
        let job = get(&up, "/apis/batch/v1/namespaces/default/jobs/pi").await?;
        condition(&job, "Complete").then_some(())
    })
    .await;
    let pods = get(
        &up,
        "/api/v1/namespaces/default/pods?labelSelector=job-name=pi",
    )
    .await
    .unwrap();
    let pod = items(&pods).pop().expect("the job's pod is kept");
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let (ok, log, _) = up.minik(&["logs", &name]);
    assert!(ok && log.starts_with("3.14159"), "{log}");

    assert_eq!(apply(&up, "cronjob.yaml"), "cronjob.batch/hello created\n");
    let (ok, out, err) = up.minik(&["get", "cronjob", "hello"]);
    assert!(ok && out.contains("* * * * *"), "{out}{err}");
    // Run it now rather than wait for the minute.
    let (ok, out, err) = up.minik(&["create", "job", "hello-now", "--from=cronjob/hello"]);
    assert!(ok, "{err}");
    assert_eq!(out, "job.batch/hello-now created\n");
    wait_for(
        "the job made from the cronjob to complete",
        DEADLINE,
        || async {
            let job = get(&up, "/apis/batch/v1/namespaces/default/jobs/hello-now").await?;
            condition(&job, "Complete").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_example_runs_one_pod_on_every_node() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    let nodes = items(&get(&up, "/api/v1/nodes").await.unwrap()).len();
    assert!(nodes >= 2, "the examples cluster has several nodes");
    assert_eq!(
        apply(&up, "daemonset.yaml"),
        "daemonset.apps/node-agent created\n"
    );
    let pods = wait_running(&up, "app=node-agent", nodes).await;
    let mut on: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    on.sort();
    on.dedup();
    assert_eq!(on.len(), nodes, "one pod per node: {on:?}");
    let (ok, out, err) = up.minik(&["rollout", "status", "ds/node-agent", "--timeout", "30s"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_example_makes_its_pods_in_order_with_their_claims() {
    if !root_for_volumes() {
        return;
    }
    let _mounts = MountPoints("/tmp/minik-example/www");
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = cluster(&home, &data);
    assert_eq!(
        apply(&up, "statefulset.yaml"),
        "service/web created\nstatefulset.apps/web created\n"
    );
    let pods = wait_running(&up, "app=web", 2).await;
    assert_eq!(names(&pods), ["web-0", "web-1"]);
    wait_for("both claims bound", DEADLINE, || async {
        let claims = get(&up, "/api/v1/namespaces/default/persistentvolumeclaims").await?;
        let bound: Vec<String> = items(&claims)
            .iter()
            .filter(|c| c["status"]["phase"] == "Bound")
            .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        (bound.len() == 2).then_some(())
    })
    .await;
    let (ok, out, _) = up.minik(&["get", "pvc", "www-web-0", "www-web-1"]);
    assert!(ok && out.contains("Bound"), "{out}");
    for name in ["web-0", "web-1"] {
        up.minik(&["delete", "pod", name, "--grace-period=0"]);
    }
    let (ok, _, err) = up.minik(&["delete", "statefulset", "web"]);
    assert!(ok, "{err}");
}
