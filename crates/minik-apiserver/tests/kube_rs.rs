//! The Rust `kube` client (a dev-dependency, on the same k8s-openapi as minik) against the API
//! server: `Api::<Pod>` create, list with a label selector, and watch from a list's
//! resourceVersion; over HTTPS, from a kubeconfig that carries the cluster CA (no insecure
//! flag).

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Config};
use minik_api::k8s_openapi::api::core::v1::Pod;
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    }))
    .unwrap()
}

async fn client(base: &str) -> Client {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(minik_testkit::ca_pem(base));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: minik\n  cluster: {{server: '{base}', certificate-authority-data: '{ca}'}}\nusers:\n- name: minik\n  user: {{}}\ncontexts:\n- name: minik\n  context: {{cluster: minik, user: minik, namespace: default}}\ncurrent-context: minik\n"
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_rs_lists_and_watches_pods() {
    let server = minik_testkit::start_tls().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server.base).await);

    let created = pods
        .create(&PostParams::default(), &pod("one"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let listed = pods
        .list(&ListParams::default().labels("app=kube-rs"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["one"]);
    let from = listed.metadata.resource_version.clone().unwrap();

    // A change after the list, then a watch from the list's revision: it sees exactly that.
    pods.create(&PostParams::default(), &pod("two"))
        .await
        .unwrap();
    let mut events = pods
        .watch(
            &WatchParams::default().labels("app=kube-rs").timeout(10),
            &from,
        )
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("two")),
        other => panic!("expected ADDED two, got {other:?}"),
    }
    pods.delete("one", &Default::default()).await.unwrap();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(p)) => assert_eq!(p.metadata.name.as_deref(), Some("one")),
        other => panic!("expected DELETED one, got {other:?}"),
    }

    // Errors come back as the Status kube decodes.
    match pods.get("missing").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}
