//! Pulls over HTTPS with rustls: a docker-registry serving TLS on loopback with a certificate
//! from a CA made for the test. The CA given in registries.yaml (`configs.HOST.tls.ca_file`) is
//! trusted; without it the certificate is refused, naming the registry; with
//! `insecure_skip_verify` it is not checked.

use minik_image::{ImageError, ImageService, RegistriesConfig, Store};
use minik_testkit::registry::{build_busybox_layout, image_tools, push, Registry};

fn service(store: &std::path::Path, yaml: &str) -> ImageService {
    let config = RegistriesConfig::parse(yaml, "test registries.yaml").expect("registries.yaml");
    ImageService::new(Store::open(store).expect("store"), config, false).expect("service")
}

#[tokio::test]
async fn https_registries_are_verified_against_the_configured_ca() {
    if !image_tools() {
        return;
    }
    let Some(registry) = Registry::start_tls() else {
        return;
    };
    let build = tempfile::tempdir().unwrap();
    let layout = build_busybox_layout(build.path(), "1.36", &[], &[], &["sh"], &[]);
    push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");
    let addr = registry.addr();
    let mirror = format!("mirrors:\n  docker.io:\n    endpoint: [\"https://{addr}\"]\n");

    // The CA in registries.yaml: verified, pulled.
    let ca = registry
        .ca_file()
        .expect("a TLS registry has a CA")
        .display();
    let store = tempfile::tempdir().unwrap();
    let trusted = service(
        store.path(),
        &format!("{mirror}configs:\n  \"{addr}\":\n    tls:\n      ca_file: {ca}\n"),
    );
    let outcome = trusted
        .pull("busybox:1.36", &[])
        .await
        .expect("pull over HTTPS");
    assert_eq!(outcome.image.names, ["docker.io/library/busybox:1.36"]);

    // No CA: the certificate is refused and the error says so, naming the registry.
    let store = tempfile::tempdir().unwrap();
    let untrusted = service(store.path(), &mirror);
    let e = untrusted.pull("busybox:1.36", &[]).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, ImageError::Unreachable { .. })
            && text.contains(&addr)
            && text.contains("certificate"),
        "{e:?}: {text}"
    );
    assert!(untrusted.store().images().unwrap().is_empty());

    // insecure_skip_verify: not checked.
    let store = tempfile::tempdir().unwrap();
    let insecure = service(
        store.path(),
        &format!("{mirror}configs:\n  \"{addr}\":\n    tls:\n      insecure_skip_verify: true\n"),
    );
    insecure
        .pull("busybox:1.36", &[])
        .await
        .expect("pull without verification");

    // Plain HTTP to a TLS-only registry: an error, not a hang.
    let store = tempfile::tempdir().unwrap();
    let plain = service(
        store.path(),
        &format!("mirrors:\n  docker.io:\n    endpoint: [\"http://{addr}\"]\n"),
    );
    let e = plain.pull("busybox:1.36", &[]).await.unwrap_err();
    assert!(e.to_string().contains(&addr), "{e}");
}
