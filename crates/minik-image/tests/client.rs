//! The registry client against real registries on loopback: docker-registry with images built
//! by umoci and pushed by skopeo, behind htpasswd or a bearer-token proxy, and that proxy
//! misbehaving on purpose. `use_default_endpoint = false` and a mirror entry for every
//! registry name used, so that nothing leaves 127.0.0.1.

use std::path::Path;

use minik_image::{
    Credential, Descriptor, Digest, ImageConfig, ImageError, Platform, Reference, RegistriesConfig,
    RegistryClient, Resolved,
};
use minik_testkit::registry::{
    build_busybox_layout, build_multiplatform_layout, closed_port, image_tools, push_with, Fault,
    Layout, Push, Registry, TokenProxy,
};

/// A `registries.yaml` that sends `registry` to `endpoints` (`127.0.0.1:PORT`, plain HTTP) in
/// order, plus `extra` lines (configs).
fn config(registry: &str, endpoints: &[String], extra: &str) -> RegistriesConfig {
    let list: Vec<String> = endpoints
        .iter()
        .map(|e| format!("\"http://{e}\""))
        .collect();
    let yaml = format!(
        "mirrors:\n  \"{registry}\":\n    endpoint: [{}]\n{extra}",
        list.join(", ")
    );
    RegistriesConfig::parse(&yaml, "test registries.yaml").expect("registries.yaml")
}

/// A client that pulls `registry`'s images from `endpoints` only.
fn client_via(registry: &str, endpoints: &[String]) -> RegistryClient {
    RegistryClient::new(config(registry, endpoints, ""), false).expect("client")
}

fn reference(s: &str) -> Reference {
    s.parse().expect("reference")
}

fn basic(user: &str, pass: &str) -> Credential {
    Credential::Basic {
        username: user.to_string(),
        password: pass.to_string(),
    }
}

/// The busybox image the tests push, built in `dir`.
fn busybox(dir: &Path) -> Layout {
    build_busybox_layout(
        dir,
        "1.36",
        &[("/etc/motd", b"hello from minik\n")],
        &["/bin/sh", "-c"],
        &["echo hi"],
        &["GREETING=hello"],
    )
}

/// A registry on loopback with the busybox image pushed, and the directory it was built in
/// (where tests download blobs).
struct Pushed {
    registry: Registry,
    /// The digest the registry serves for the pushed name.
    digest: String,
    dir: tempfile::TempDir,
}

/// Builds busybox and pushes it as `name` (`library/busybox:1.36`) as `how` says, to a fresh
/// registry that wants `how.creds` when it has some. `None` when the tools are missing (the
/// test returns).
fn pushed_busybox(name: &str, how: Push) -> Option<Pushed> {
    if !image_tools() {
        return None;
    }
    let registry = match how.creds {
        Some((user, pass)) => Registry::start_with_htpasswd(user, pass)?,
        None => Registry::start()?,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = busybox(dir.path());
    let digest = push_with(&layout, "1.36", &registry.addr(), name, how);
    Some(Pushed {
        registry,
        digest,
        dir,
    })
}

/// Downloads every blob of `resolved` into `dir` and checks what arrived; answers the config.
async fn fetch_all(
    client: &RegistryClient,
    reference: &Reference,
    resolved: &Resolved,
    dir: &Path,
) -> ImageConfig {
    let bytes = client
        .fetch_config(&resolved.source, reference, &resolved.manifest.config)
        .await
        .expect("config");
    assert_eq!(Digest::of(&bytes), resolved.manifest.config.digest);
    let config = ImageConfig::parse(&bytes, &reference.to_string()).expect("config parses");
    config
        .check_layers(&resolved.manifest, &reference.to_string())
        .expect("one diff id per layer");
    for layer in &resolved.manifest.layers {
        let written = fetch_to(client, reference, resolved, layer, dir)
            .await
            .expect("layer");
        assert_eq!(written, layer.size);
        let on_disk = std::fs::read(dir.join(layer.digest.hex())).expect("read blob");
        assert_eq!(Digest::of(&on_disk), layer.digest);
    }
    config
}

async fn fetch_to(
    client: &RegistryClient,
    reference: &Reference,
    resolved: &Resolved,
    layer: &Descriptor,
    dir: &Path,
) -> Result<u64, ImageError> {
    let path = dir.join(layer.digest.hex());
    let mut file = tokio::fs::File::create(&path)
        .await
        .expect("create blob file");
    client
        .fetch_blob(&resolved.source, reference, layer, &mut file)
        .await
}

#[tokio::test]
async fn resolves_and_fetches_by_tag_and_by_digest() {
    let Some(Pushed {
        registry,
        digest: pushed,
        dir,
    }) = pushed_busybox("library/busybox:1.36", Push::default())
    else {
        return;
    };
    let client = client_via(&registry.addr(), &[registry.addr()]);
    let host = Platform::host();

    let by_tag = reference(&format!("{}/library/busybox:1.36", registry.addr()));
    let resolved = client.resolve(&by_tag, &host, &[]).await.expect("resolve");
    assert_eq!(resolved.digest.to_string(), pushed);
    assert_eq!(resolved.manifest_digest, resolved.digest);
    assert_eq!(
        Digest::of(&resolved.manifest_bytes),
        resolved.manifest_digest
    );
    assert_eq!(resolved.manifest.layers.len(), 1);
    assert_eq!(resolved.source.url(), format!("http://{}", registry.addr()));
    let config = fetch_all(&client, &by_tag, &resolved, dir.path()).await;
    assert_eq!(config.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(config.cmd, ["echo hi"]);
    assert!(
        config.env.iter().any(|e| e == "GREETING=hello"),
        "{:?}",
        config.env
    );

    let by_digest = reference(&format!("{}/library/busybox@{pushed}", registry.addr()));
    let again = client
        .resolve(&by_digest, &host, &[])
        .await
        .expect("by digest");
    assert_eq!(again.manifest_digest, resolved.manifest_digest);
    assert_eq!(again.manifest, resolved.manifest);

    // A digest the registry does not have.
    let other = reference(&format!(
        "{}/library/busybox@{}",
        registry.addr(),
        Digest::of(b"no such manifest")
    ));
    let e = client.resolve(&other, &host, &[]).await.unwrap_err();
    assert!(matches!(e, ImageError::ManifestUnknown { .. }), "{e}");
}

#[tokio::test]
async fn reads_docker_media_types() {
    let docker = Push {
        docker_format: true,
        ..Push::default()
    };
    let Some(Pushed {
        registry,
        digest: pushed,
        dir,
    }) = pushed_busybox("library/busybox:docker", docker)
    else {
        return;
    };
    let client = client_via(&registry.addr(), &[registry.addr()]);
    let image = reference(&format!("{}/library/busybox:docker", registry.addr()));
    let resolved = client
        .resolve(&image, &Platform::host(), &[])
        .await
        .expect("resolve");
    assert_eq!(resolved.digest.to_string(), pushed);
    assert_eq!(
        resolved.manifest.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let text = String::from_utf8_lossy(&resolved.manifest_bytes);
    assert!(
        text.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{text}"
    );
    fetch_all(&client, &image, &resolved, dir.path()).await;
}

/// The platform other than the host's in the two-platform index.
fn other_platform(host: &Platform) -> (&'static str, Option<&'static str>) {
    if host.architecture == "arm64" {
        ("amd64", None)
    } else {
        ("arm64", Some("v8"))
    }
}

#[tokio::test]
async fn an_index_with_two_platforms_gives_the_hosts() {
    if !image_tools() {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let host = Platform::host();
    let dir = tempfile::tempdir().unwrap();
    let (other_arch, other_variant) = other_platform(&host);
    let layout = build_multiplatform_layout(
        dir.path(),
        "multi",
        &[
            (other_arch, other_variant),
            (&host.architecture, host.variant.as_deref()),
        ],
    );
    let client = client_via(&registry.addr(), &[registry.addr()]);
    for (name, docker_format) in [("oci", false), ("docker", true)] {
        let how = Push {
            docker_format,
            ..Push::default()
        };
        let pushed = push_with(
            &layout,
            "multi",
            &registry.addr(),
            &format!("library/busybox:{name}"),
            how,
        );
        let image = reference(&format!("{}/library/busybox:{name}", registry.addr()));
        let resolved = client.resolve(&image, &host, &[]).await.expect("resolve");
        assert_eq!(
            resolved.digest.to_string(),
            pushed,
            "{name}: the repo digest is the index's"
        );
        assert_ne!(resolved.manifest_digest, resolved.digest);
        assert_eq!(
            Digest::of(&resolved.manifest_bytes),
            resolved.manifest_digest
        );
        let config = fetch_all(&client, &image, &resolved, dir.path()).await;
        assert_eq!(
            config.labels.get("org.minik.test.platform"),
            Some(&format!("linux/{}", host_name(&host))),
            "{name}"
        );
        assert_eq!(config.architecture, host.architecture);

        let nowhere = Platform {
            os: "linux".to_string(),
            architecture: "s390x-not-listed".to_string(),
            variant: None,
        };
        let e = client.resolve(&image, &nowhere, &[]).await.unwrap_err();
        assert!(matches!(e, ImageError::NoMatchingPlatform { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("linux/{other_arch}")),
            "{e}"
        );
    }
}

fn host_name(host: &Platform) -> String {
    match &host.variant {
        Some(v) => format!("{}/{v}", host.architecture),
        None => host.architecture.clone(),
    }
}

#[tokio::test]
async fn mirrors_are_tried_in_order() {
    let Some(Pushed { registry, dir, .. }) =
        pushed_busybox("library/busybox:1.36", Push::default())
    else {
        return;
    };
    let closed = closed_port();
    let client = client_via("registry.test", &[closed.clone(), registry.addr()]);
    let image = reference("registry.test/library/busybox:1.36");
    let resolved = client
        .resolve(&image, &Platform::host(), &[])
        .await
        .expect("the second mirror answers");
    assert_eq!(resolved.source.url(), format!("http://{}", registry.addr()));
    fetch_all(&client, &image, &resolved, dir.path()).await;

    // When every endpoint fails, each says why, in the order tried.
    let client = client_for_two("registry.test", &closed, &registry.addr());
    let missing = reference("registry.test/library/nothing:1");
    let e = client
        .resolve(&missing, &Platform::host(), &[])
        .await
        .unwrap_err();
    let ImageError::Attempts { attempts, .. } = &e else {
        panic!("expected every attempt, got {e}");
    };
    assert_eq!(attempts.len(), 2, "{e}");
    assert_eq!(attempts[0].0, format!("http://{closed}"));
    assert!(
        matches!(attempts[0].1, ImageError::Unreachable { .. }),
        "{e}"
    );
    assert!(
        matches!(attempts[1].1, ImageError::ManifestUnknown { .. }),
        "{e}"
    );
}

fn client_for_two(registry: &str, first: &str, second: &str) -> RegistryClient {
    client_via(registry, &[first.to_string(), second.to_string()])
}

#[tokio::test]
async fn an_unknown_image_is_manifest_unknown() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let client = client_via(&registry.addr(), &[registry.addr()]);
    let image = reference(&format!("{}/library/nothing-here:1", registry.addr()));
    let e = client
        .resolve(&image, &Platform::host(), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::ManifestUnknown { .. }), "{e}");
    assert!(e.to_string().contains("library/nothing-here:1"), "{e}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let closed = closed_port();
    let client = client_via(&closed, std::slice::from_ref(&closed));
    let image = reference(&format!("{closed}/library/busybox:1"));
    let e = client
        .resolve(&image, &Platform::host(), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&closed), "{e}");
}

#[tokio::test]
async fn htpasswd_wants_the_credentials() {
    let with_creds = Push {
        creds: Some(("minik", "s3cret")),
        ..Push::default()
    };
    let Some(Pushed { registry, dir, .. }) = pushed_busybox("private/busybox:1.36", with_creds)
    else {
        return;
    };
    let image = reference(&format!("{}/private/busybox:1.36", registry.addr()));
    let host = Platform::host();
    let client = client_via(&registry.addr(), &[registry.addr()]);

    let e = client.resolve(&image, &host, &[]).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains(&registry.addr()), "{e}");

    let e = client
        .resolve(&image, &host, &[basic("minik", "wrong")])
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");

    // Pull secrets are tried in turn: the wrong one, then the right one.
    let resolved = client
        .resolve(
            &image,
            &host,
            &[basic("minik", "wrong"), basic("minik", "s3cret")],
        )
        .await
        .expect("with credentials");
    fetch_all(&client, &image, &resolved, dir.path()).await;

    // The credentials of registries.yaml.
    let yaml_auth = format!(
        "configs:\n  \"{}\":\n    auth:\n      username: minik\n      password: s3cret\n",
        registry.addr()
    );
    let configured = RegistryClient::new(
        config(&registry.addr(), &[registry.addr()], &yaml_auth),
        false,
    )
    .expect("client");
    let resolved = configured
        .resolve(&image, &host, &[])
        .await
        .expect("with the configured credentials");
    fetch_all(&configured, &image, &resolved, dir.path()).await;
}

#[tokio::test]
async fn bearer_tokens_anonymous_and_with_credentials() {
    let Some(Pushed { registry, dir, .. }) =
        pushed_busybox("library/busybox:1.36", Push::default())
    else {
        return;
    };
    let host = Platform::host();

    let anonymous = TokenProxy::start(&registry.addr(), None).await;
    let client = client_via("registry.test", &[anonymous.addr()]);
    let image = reference("registry.test/library/busybox:1.36");
    let resolved = client
        .resolve(&image, &host, &[])
        .await
        .expect("anonymous token");
    fetch_all(&client, &image, &resolved, dir.path()).await;
    assert_eq!(
        anonymous.tokens_issued(),
        1,
        "one token for the manifest and the blobs: {:?}",
        anonymous.requests()
    );
    // The token is cached for the next pull too.
    client.resolve(&image, &host, &[]).await.expect("again");
    assert_eq!(anonymous.tokens_issued(), 1);
    // A cached token the server no longer knows is renewed.
    anonymous.revoke_tokens();
    let resolved = client.resolve(&image, &host, &[]).await.expect("renewed");
    fetch_all(&client, &image, &resolved, dir.path()).await;
    assert_eq!(anonymous.tokens_issued(), 2);

    let private = TokenProxy::start(&registry.addr(), Some(("minik", "s3cret"))).await;
    let client = client_via("registry.test", &[private.addr()]);
    let e = client.resolve(&image, &host, &[]).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains(&private.addr()), "{e}");
    let resolved = client
        .resolve(&image, &host, &[basic("minik", "s3cret")])
        .await
        .expect("token with credentials");
    fetch_all(&client, &image, &resolved, dir.path()).await;
    // A token got with a pull secret is not used for a pull without it.
    let e = client.resolve(&image, &host, &[]).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
}

/// A registry with busybox pushed, a passthrough proxy in front, a client through the proxy,
/// and the image resolved through it.
struct Faulty {
    _registry: Registry,
    proxy: TokenProxy,
    client: RegistryClient,
    image: Reference,
    resolved: Resolved,
    dir: tempfile::TempDir,
}

async fn faulty() -> Option<Faulty> {
    let Pushed { registry, dir, .. } = pushed_busybox("library/busybox:1.36", Push::default())?;
    let proxy = TokenProxy::passthrough(&registry.addr()).await;
    let client = client_via("registry.test", &[proxy.addr()]);
    let image = reference("registry.test/library/busybox:1.36");
    let resolved = client
        .resolve(&image, &Platform::host(), &[])
        .await
        .expect("resolve");
    Some(Faulty {
        _registry: registry,
        proxy,
        client,
        image,
        resolved,
        dir,
    })
}

impl Faulty {
    async fn fetch_layer(&self) -> Result<u64, ImageError> {
        fetch_to(
            &self.client,
            &self.image,
            &self.resolved,
            &self.resolved.manifest.layers[0],
            self.dir.path(),
        )
        .await
    }
}

#[tokio::test]
async fn a_tampered_blob_is_a_digest_mismatch() {
    let Some(f) = faulty().await else {
        return;
    };
    f.proxy.set_fault(Some(Fault::TamperBlobs));
    let e = f.fetch_layer().await.unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    let e = f
        .client
        .fetch_config(&f.resolved.source, &f.image, &f.resolved.manifest.config)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
}

#[tokio::test]
async fn a_truncated_blob_is_a_size_mismatch() {
    let Some(f) = faulty().await else {
        return;
    };
    f.proxy.set_fault(Some(Fault::TruncateBlobs));
    let e = f.fetch_layer().await.unwrap_err();
    let ImageError::SizeMismatch {
        expected, actual, ..
    } = e
    else {
        panic!("expected a size mismatch, got {e}");
    };
    assert_eq!(expected, f.resolved.manifest.layers[0].size);
    assert_eq!(actual, expected / 2);
}

#[tokio::test]
async fn redirects_to_storage_are_followed() {
    let Some(f) = faulty().await else {
        return;
    };
    f.proxy.set_fault(Some(Fault::RedirectBlobs));
    let written = f.fetch_layer().await.expect("redirected blob");
    assert_eq!(written, f.resolved.manifest.layers[0].size);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_told_apart() {
    let Some(f) = faulty().await else {
        return;
    };
    let host = Platform::host();
    f.proxy.set_fault(Some(Fault::Status(500)));
    let e = f.client.resolve(&f.image, &host, &[]).await.unwrap_err();
    assert!(matches!(e, ImageError::Registry { status: 500, .. }), "{e}");
    assert!(e.to_string().contains("injected fault 500"), "{e}");
    let e = f.fetch_layer().await.unwrap_err();
    assert!(matches!(e, ImageError::Registry { status: 500, .. }), "{e}");

    f.proxy.set_fault(Some(Fault::Status(429)));
    let e = f.client.resolve(&f.image, &host, &[]).await.unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooManyRequests {
                retry_after: Some(7),
                ..
            }
        ),
        "{e}"
    );

    f.proxy.set_fault(Some(Fault::Status(404)));
    let e = f.fetch_layer().await.unwrap_err();
    assert!(matches!(e, ImageError::BlobUnknown { .. }), "{e}");

    f.proxy.set_fault(None);
    f.client
        .resolve(&f.image, &host, &[])
        .await
        .expect("healthy again");
}
