//! The node's image manager end to end: a server, an agent with `--pull-images` (the fake
//! runtime: no container runs, but every image is pulled for real) and a docker-registry on a
//! loopback port that `registries.yaml` names as the `docker.io` mirror. A manifest saying
//! `image: busybox:1.36` pulls `docker.io/library/busybox:1.36` from it; the pods show the
//! kubelet's events, waiting reasons and `imageID`, and the Node lists its images.

mod support;

use minik_testkit::registry::{
    build_busybox_layout, image_tools, push, save_docker_archive, Registry,
};
use serde_json::{json, Value};

fn pod(name: &str, image: &str, policy: Option<&str>) -> Value {
    let mut container = json!({"name": "main", "image": image});
    if let Some(policy) = policy {
        container["imagePullPolicy"] = json!(policy);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": [container]}
    })
}

/// The (reason, message) of the pod's events, oldest first.
async fn events(http: &minik_testkit::Http, pod: &str) -> Vec<(String, String)> {
    let list = http
        .get_json(&format!(
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name={pod}"
        ))
        .await
        .unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    (
                        e["reason"].as_str().unwrap_or_default().to_owned(),
                        e["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the pod has an event with `reason` whose message contains `text`.
async fn wait_event(http: &minik_testkit::Http, pod: &str, reason: &str, text: &str) -> String {
    support::wait_for(
        &format!("event {reason} ({text}) of pod {pod}"),
        support::DEADLINE,
        || async {
            let seen = events(http, pod).await;
            match seen.iter().find(|(r, m)| r == reason && m.contains(text)) {
                Some((_, message)) => Ok(message.clone()),
                None => Err(seen),
            }
        },
    )
    .await
}

/// Waits until the pod's first container is waiting with `reason`; answers its message.
async fn wait_waiting(http: &minik_testkit::Http, pod: &str, reason: &str) -> String {
    let pod = http
        .wait_until(
            &format!("pod {pod} waiting with {reason}"),
            &format!("/api/v1/namespaces/default/pods/{pod}"),
            |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason,
        )
        .await;
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn pods_pull_their_images_as_the_kubelet_does() {
    if !image_tools() {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let build = tempfile::tempdir().unwrap();
    let layout = build_busybox_layout(build.path(), "1.36", &[], &[], &["sh"], &[]);
    let pushed = push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");

    let server_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    // An air-gapped image, dropped where the agent imports archives from at start.
    std::fs::create_dir_all(node_dir.path().join("images")).unwrap();
    save_docker_archive(
        &layout,
        "1.36",
        &node_dir.path().join("images/airgap.tar"),
        "airgap/app:1",
    );
    let registries = minik_testkit::registry::docker_io_mirror(build.path(), &registry.addr());
    let server = support::MINIK.server(server_dir.path(), &[]);
    let _node = support::MINIK.node(
        &server.base,
        "n1",
        node_dir.path(),
        &[
            "--runtime",
            "fake",
            "--pull-images",
            "--disable-default-registry-endpoint",
            "--private-registry",
            registries.to_str().unwrap(),
        ],
    );
    let http = minik_testkit::Http::new(&server.base);
    minik_testkit::wait_node_ready(&http.client, &http.base, "n1").await;
    let pods = "/api/v1/namespaces/default/pods";

    // Pulled from the mirror: events, imageID, and the Node's list of images.
    assert!(http
        .post(pods, &pod("web", "busybox:1.36", None))
        .await
        .is_success());
    let running = http
        .wait_until("pod web running", &format!("{pods}/web"), |p| {
            p["status"]["phase"] == "Running"
        })
        .await;
    let status = &running["status"]["containerStatuses"][0];
    assert_eq!(
        status["imageID"],
        format!("docker.io/library/busybox@{pushed}"),
        "{status}"
    );
    // As the kubelet with containerd reports it: the normalised reference.
    assert_eq!(status["image"], "docker.io/library/busybox:1.36");
    wait_event(&http, "web", "Pulling", "Pulling image \"busybox:1.36\"").await;
    let pulled = wait_event(
        &http,
        "web",
        "Pulled",
        "Successfully pulled image \"busybox:1.36\"",
    )
    .await;
    assert!(pulled.contains("Image size: "), "{pulled}");
    http.wait_until("the node lists its images", "/api/v1/nodes/n1", |n| {
        n["status"]["images"].as_array().is_some_and(|images| {
            images.iter().any(|i| {
                i["names"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("docker.io/library/busybox:1.36"))
                    && i["sizeBytes"].as_u64().unwrap_or(0) > 0
            })
        })
    })
    .await;

    // IfNotPresent (a tag other than latest): the image is there already.
    assert!(http
        .post(pods, &pod("again", "busybox:1.36", None))
        .await
        .is_success());
    wait_event(
        &http,
        "again",
        "Pulled",
        "Container image \"busybox:1.36\" already present on machine",
    )
    .await;

    // Imported from DATA_DIR/images at start: present with pull policy Never.
    assert!(http
        .post(pods, &pod("airgapped", "airgap/app:1", Some("Never")))
        .await
        .is_success());
    http.wait_until("pod airgapped running", &format!("{pods}/airgapped"), |p| {
        p["status"]["phase"] == "Running"
    })
    .await;

    // Never, and not present.
    assert!(http
        .post(pods, &pod("never", "busybox:absent", Some("Never")))
        .await
        .is_success());
    let message = wait_waiting(&http, "never", "ErrImageNeverPull").await;
    assert_eq!(
        message,
        "Container image \"busybox:absent\" is not present with pull policy of Never"
    );
    wait_event(&http, "never", "ErrImageNeverPull", "busybox:absent").await;

    // Unknown tag: ErrImagePull with the registry's reason, then ImagePullBackOff.
    assert!(http
        .post(pods, &pod("missing", "busybox:9.99", None))
        .await
        .is_success());
    let failed = wait_event(
        &http,
        "missing",
        "Failed",
        "Failed to pull image \"busybox:9.99\"",
    )
    .await;
    assert!(failed.contains("manifest unknown"), "{failed}");
    let backoff = wait_waiting(&http, "missing", "ImagePullBackOff").await;
    assert!(
        backoff.starts_with("Back-off pulling image \"busybox:9.99\": ErrImagePull: ")
            && backoff.contains("manifest unknown"),
        "{backoff}"
    );
    wait_event(
        &http,
        "missing",
        "BackOff",
        "Back-off pulling image \"busybox:9.99\"",
    )
    .await;

    // A name that is no image reference.
    assert!(http
        .post(pods, &pod("bad", "Busy Box", None))
        .await
        .is_success());
    let invalid = wait_waiting(&http, "bad", "InvalidImageName").await;
    assert!(invalid.contains("Busy Box"), "{invalid}");

    // `minik image ls` reads the same store, beside the running agent.
    let out = support::MINIK
        .command()
        .args(["image", "ls", "--data-dir"])
        .arg(node_dir.path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("docker.io/library/busybox") && l.contains("1.36")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("docker.io/airgap/app") && l.contains(" 1 ")),
        "{table}"
    );
    // The images the pods run from are pinned: `minik image rm` refuses them.
    let ids = support::MINIK
        .command()
        .args(["image", "ls", "-q", "--data-dir"])
        .arg(node_dir.path())
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
    let id = ids.lines().next().expect("an image id");
    let rm = support::MINIK
        .command()
        .args(["image", "rm", "--data-dir"])
        .arg(node_dir.path())
        .arg(id)
        .output()
        .unwrap();
    assert!(!rm.status.success());
    let err = String::from_utf8_lossy(&rm.stderr);
    assert!(err.contains("is used by a container"), "{err}");
}

/// An unknown registry host is named in the error and nothing is stored. The pull runs in a
/// network namespace of its own (only a loopback that is down), so that the name lookup fails
/// on this machine and no packet leaves it.
#[test]
fn an_unknown_registry_host_is_named_and_nothing_is_stored() {
    if !nix::unistd::geteuid().is_root() {
        minik_testkit::cannot_run("root (unshare --net)", "not running as root");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--net", "--"])
        .arg(support::MINIK.command().get_program())
        .args(["image", "pull", "--data-dir"])
        .arg(data.path())
        .arg("registry.nosuch.invalid/team/app:1")
        .output()
        .expect("run unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "error: pulling registry.nosuch.invalid/team/app:1: registry.nosuch.invalid: "
        ) && err.contains("dns error"),
        "{err}"
    );
    let ls = support::MINIK
        .command()
        .args(["image", "ls", "-q", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(ls.status.success());
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "", "nothing stored");
}

/// A registry that wants a password: pods pull through the `kubernetes.io/dockerconfigjson`
/// Secrets they name in `imagePullSecrets`; without one (or before it exists) the pull fails
/// with the registry's refusal, and a missing Secret is named in a warning. The Secret is
/// followed: once it appears the next try pulls.
#[tokio::test]
async fn image_pull_secrets_authenticate_pulls() {
    if !image_tools() {
        return;
    }
    let Some(registry) = Registry::start_with_htpasswd("puller", "s3cret") else {
        return;
    };
    let build = tempfile::tempdir().unwrap();
    let layout = build_busybox_layout(build.path(), "1.36", &[], &[], &["sh"], &[]);
    minik_testkit::registry::push_with(
        &layout,
        "1.36",
        &registry.addr(),
        "library/busybox:1.36",
        minik_testkit::registry::Push {
            creds: Some(("puller", "s3cret")),
            docker_format: false,
        },
    );
    let server_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let registries = minik_testkit::registry::docker_io_mirror(build.path(), &registry.addr());
    let server = support::MINIK.server(server_dir.path(), &[]);
    let _node = support::MINIK.node(
        &server.base,
        "n1",
        node_dir.path(),
        &[
            "--runtime",
            "fake",
            "--pull-images",
            "--restart-backoff-max-ms",
            "2000",
            "--disable-default-registry-endpoint",
            "--private-registry",
            registries.to_str().unwrap(),
        ],
    );
    let http = minik_testkit::Http::new(&server.base);
    minik_testkit::wait_node_ready(&http.client, &http.base, "n1").await;
    let pods = "/api/v1/namespaces/default/pods";

    // No credentials: the registry's refusal is the pull's failure. `Always`, so that it keeps
    // asking the registry: with `IfNotPresent` it would use the image another pod pulls below
    // (as the kubelet does), and its later tries would say "already present".
    let created = http
        .post(pods, &pod("anonymous", "busybox:1.36", Some("Always")))
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let message = wait_waiting(&http, "anonymous", "ErrImagePull").await;
    assert!(
        message.contains("docker.io/library/busybox:1.36"),
        "{message}"
    );

    // A pod naming a Secret that does not exist yet: a warning names it.
    let mut with_secret = pod("private", "busybox:1.36", None);
    with_secret["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let created = http.post(pods, &with_secret).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let warning = wait_event(
        &http,
        "private",
        "FailedToRetrieveImagePullSecret",
        "regcred",
    )
    .await;
    assert_eq!(
        warning,
        "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed."
    );

    // The Secret kubectl's `create secret docker-registry` makes (Docker Hub's key).
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": r#"{"auths":{"https://index.docker.io/v1/":{"username":"puller","password":"s3cret"}}}"#}
    });
    let created = http
        .post("/api/v1/namespaces/default/secrets", &secret)
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let pulled = wait_event(&http, "private", "Pulled", "Successfully pulled image").await;
    assert!(pulled.contains("\"busybox:1.36\""), "{pulled}");
    let running = http
        .wait_until("pod private running", &format!("{pods}/private"), |p| {
            p["status"]["containerStatuses"][0]["imageID"]
                .as_str()
                .is_some_and(|id| id.starts_with("docker.io/library/busybox@sha256:"))
        })
        .await;
    assert_eq!(
        running["status"]["containerStatuses"][0]["image"],
        "docker.io/library/busybox:1.36"
    );
    // The pod without the Secret still cannot pull.
    let events = events(&http, "anonymous").await;
    assert!(!events.iter().any(|(r, _)| r == "Pulled"), "{events:?}");

    // A ServiceAccount's pull secrets go to its pods that name none (ServiceAccount admission);
    // `Always` asks the registry again, so the pull needs them.
    let account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder"},
        "imagePullSecrets": [{"name": "regcred"}]
    });
    let created = http
        .post("/api/v1/namespaces/default/serviceaccounts", &account)
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let mut by_account = pod("by-account", "busybox:1.36", Some("Always"));
    by_account["spec"]["serviceAccountName"] = json!("builder");
    let created = http.post(pods, &by_account).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(
        created.body["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );
    wait_event(&http, "by-account", "Pulled", "Successfully pulled image").await;
}
