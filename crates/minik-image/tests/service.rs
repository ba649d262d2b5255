//! The image service and its store against a real registry on loopback: docker-registry with
//! images built by umoci and pushed by skopeo, reached as `docker.io` through a registries.yaml
//! mirror with `use_default_endpoint = false`, so that nothing leaves 127.0.0.1. Pulls by tag, by
//! digest and through an index; the pull policies; one download per layer however many pulls
//! want it; shared layers, untagging, pins, garbage collection; archive imports; and what a bad
//! registry leaves behind (nothing).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use minik_image::{
    Digest, FsStats, GcPolicy, ImageConfig, ImageError, ImageRecord, ImageService, Platform,
    PullPolicy, Reference, RegistriesConfig, Removed, Store,
};
use minik_testkit::registry::{
    build_busybox_layout, build_layered_layout, build_multiplatform_layout, image_tools,
    platform_tag, push, save_docker_archive, save_oci_archive, Fault, Layout, Registry, TokenProxy,
};

/// A `registries.yaml` that sends `docker.io` to `endpoint` (`127.0.0.1:PORT`, plain HTTP).
fn docker_io_via(endpoint: &str) -> RegistriesConfig {
    let yaml = format!("mirrors:\n  \"docker.io\":\n    endpoint: [\"http://{endpoint}\"]\n");
    RegistriesConfig::parse(&yaml, "test registries.yaml").expect("registries.yaml")
}

/// An image service over a store at `root` that pulls `docker.io` images from `endpoint` only.
fn service_at(root: &Path, endpoint: &str) -> ImageService {
    let store = Store::open(root).expect("open the store");
    ImageService::new(store, docker_io_via(endpoint), false).expect("image service")
}

fn reference(s: &str) -> Reference {
    s.parse().expect("reference")
}

/// A registry, a directory to build images in and an empty store directory.
struct Env {
    registry: Registry,
    build: tempfile::TempDir,
    store: tempfile::TempDir,
}

impl Env {
    /// `None` when the image tools or docker-registry are missing (the test returns).
    fn start() -> Option<Env> {
        if !image_tools() {
            return None;
        }
        let registry = Registry::start()?;
        Some(Env {
            registry,
            build: tempfile::tempdir().expect("tempdir"),
            store: tempfile::tempdir().expect("tempdir"),
        })
    }

    /// A service pulling straight from the registry.
    fn service(&self) -> ImageService {
        service_at(self.store.path(), &self.registry.addr())
    }

    /// Pushes `tag` of `layout` as `name` (`library/busybox:1.36`); answers the digest.
    fn push(&self, layout: &Layout, tag: &str, name: &str) -> String {
        push(layout, tag, &self.registry.addr(), name)
    }

    /// The busybox image `tag`, with `/etc/motd` saying `motd`.
    fn busybox(&self, tag: &str, motd: &str) -> Layout {
        build_busybox_layout(
            self.build.path(),
            tag,
            &[("/etc/motd", motd.as_bytes())],
            &["/bin/sh", "-c"],
            &["echo hi"],
            &["GREETING=hello"],
        )
    }
}

/// The names in a directory of the store (`layers/sha256`, `blobs/sha256`, `tmp`), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn layer_dirs(store: &Store) -> Vec<String> {
    entries(&store.root().join("layers/sha256"))
}

/// What a failed pull or import must leave: no image, no layer, no blob, and nothing in this
/// process's work directory.
fn assert_nothing_stored(store: &Store) {
    assert_eq!(store.images().expect("images"), Vec::<ImageRecord>::new());
    assert_eq!(layer_dirs(store), Vec::<String>::new(), "layers");
    assert_eq!(
        entries(&store.root().join("blobs/sha256")),
        Vec::<String>::new(),
        "blobs"
    );
    let tmp = store.root().join("tmp");
    let work = entries(&tmp);
    assert_eq!(
        work.len(),
        1,
        "only this process's work directory: {work:?}"
    );
    assert!(
        work[0].starts_with(&format!("{}-", std::process::id())),
        "{work:?}"
    );
    assert_eq!(
        entries(&tmp.join(&work[0])),
        Vec::<String>::new(),
        "work left in {}",
        work[0]
    );
}

fn config_of(store: &Store, record: &ImageRecord) -> ImageConfig {
    let bytes = store.blob(&record.id).expect("the config is stored");
    ImageConfig::parse(&bytes, &record.display_name()).expect("the config parses")
}

/// The platform other than the host's in a two-platform index.
fn other_platform(host: &Platform) -> (&'static str, Option<&'static str>) {
    if host.architecture == "arm64" {
        ("amd64", None)
    } else {
        ("arm64", Some("v8"))
    }
}

/// A layout where `multi` is an index of two busybox manifests (the host's and another
/// platform's) sharing their one layer; answers it and the platform tags (host's, other's).
fn two_platforms(dir: &Path) -> (Layout, String, String) {
    let host = Platform::host();
    let (other_arch, other_variant) = other_platform(&host);
    let layout = build_multiplatform_layout(
        dir,
        "multi",
        &[
            (other_arch, other_variant),
            (&host.architecture, host.variant.as_deref()),
        ],
    );
    let host_tag = platform_tag("multi", &host.architecture, host.variant.as_deref());
    let other_tag = platform_tag("multi", other_arch, other_variant);
    (layout, host_tag, other_tag)
}

#[tokio::test]
async fn pulls_by_tag_through_a_docker_io_mirror() {
    let Some(env) = Env::start() else {
        return;
    };
    let layout = env.busybox("1.36", "hello from minik\n");
    let pushed = env.push(&layout, "1.36", "library/busybox:1.36");
    let service = env.service();

    let outcome = service.pull("busybox:1.36", &[]).await.expect("pull");
    let image = &outcome.image;
    assert_eq!(image.names, ["docker.io/library/busybox:1.36"]);
    assert_eq!(
        image.repo_digests,
        [format!("docker.io/library/busybox@{pushed}")]
    );
    assert_eq!(image.manifest.to_string(), pushed);
    assert_eq!(image.layers.len(), 1);
    let stats = outcome.pulled.expect("a pull pulls");
    assert!(stats.downloaded > 0, "{stats:?}");
    assert_eq!(stats.layers_downloaded, 1);

    let store = service.store();
    let rootfs = store.layer_rootfs(&image.layers[0]);
    assert!(rootfs.join("bin/busybox").is_file(), "{}", rootfs.display());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).expect("motd"),
        "hello from minik\n"
    );
    let info = store.layer_info(&image.layers[0]).expect("layer info");
    assert_eq!(info.blob_size, stats.downloaded);
    assert_eq!(store.images().expect("images"), std::slice::from_ref(image));
    assert_eq!(
        store.lookup(&reference("busybox:1.36")).expect("lookup"),
        Some(image.clone())
    );
    assert_eq!(
        store.lookup(&reference("busybox:1.37")).expect("lookup"),
        None
    );
    assert_eq!(
        store.find(&image.id.hex()[..12]).expect("find by id"),
        *image
    );
    let config = config_of(store, image);
    assert_eq!(config.entrypoint, ["/bin/sh", "-c"]);
    assert!(config.env.iter().any(|e| e == "GREETING=hello"));
    assert_eq!(
        Digest::of(&store.blob(&image.manifest).expect("manifest")),
        image.manifest
    );
}

#[tokio::test]
async fn pulls_by_digest_then_by_tag_into_one_image() {
    let Some(env) = Env::start() else {
        return;
    };
    let layout = env.busybox("1.36", "by digest\n");
    let pushed = env.push(&layout, "1.36", "library/busybox:1.36");
    let service = env.service();
    let by_digest = format!("busybox@{pushed}");

    let outcome = service.pull(&by_digest, &[]).await.expect("pull by digest");
    assert_eq!(
        outcome.image.names,
        Vec::<String>::new(),
        "no tag was asked for"
    );
    assert_eq!(
        outcome.image.repo_digests,
        [format!("docker.io/library/busybox@{pushed}")]
    );
    let store = service.store();
    assert!(store
        .layer_rootfs(&outcome.image.layers[0])
        .join("bin/busybox")
        .is_file());
    assert_eq!(
        store.lookup(&reference(&by_digest)).expect("lookup"),
        Some(outcome.image.clone())
    );
    assert_eq!(
        store.lookup(&reference("busybox:1.36")).expect("lookup"),
        None
    );

    // The same image by tag: one record, which gains the name, and nothing downloaded again.
    let again = service
        .pull("busybox:1.36", &[])
        .await
        .expect("pull by tag");
    assert_eq!(again.image.id, outcome.image.id);
    assert_eq!(again.image.names, ["docker.io/library/busybox:1.36"]);
    assert_eq!(again.pulled.expect("pulled").layers_downloaded, 0);
    assert_eq!(store.images().expect("images").len(), 1);
}

#[tokio::test]
async fn an_index_with_two_platforms_gives_the_hosts_image() {
    let Some(env) = Env::start() else {
        return;
    };
    let (layout, host_tag, other_tag) = two_platforms(env.build.path());
    let pushed = env.push(&layout, "multi", "library/multi:1");
    let service = env.service();

    let image = service.pull("multi:1", &[]).await.expect("pull").image;
    assert_eq!(
        image.manifest.to_string(),
        layout.manifest_digest(&host_tag),
        "the host's manifest"
    );
    assert_eq!(
        image.repo_digests,
        [format!("docker.io/library/multi@{pushed}")],
        "the repo digest is the index's"
    );
    let host = Platform::host();
    let config = config_of(service.store(), &image);
    assert_eq!(config.architecture, host.architecture);
    let platform = match &host.variant {
        Some(v) => format!("linux/{}/{v}", host.architecture),
        None => format!("linux/{}", host.architecture),
    };
    assert_eq!(
        config.labels.get("org.minik.test.platform"),
        Some(&platform)
    );
    let other: Digest = layout.manifest_digest(&other_tag).parse().expect("digest");
    assert!(
        service.store().blob(&other).is_err(),
        "the other platform's manifest is not stored"
    );
    assert_eq!(
        service
            .store()
            .lookup(&reference(&format!("multi@{pushed}")))
            .expect("lookup"),
        Some(image)
    );
}

#[tokio::test]
async fn pull_policies() {
    let Some(env) = Env::start() else {
        return;
    };
    let old_layout = env.busybox("old", "old\n");
    env.push(&old_layout, "old", "library/busybox:1.36");
    let service = env.service();
    let name = "docker.io/library/busybox:1.36";

    let e = service
        .ensure("busybox:1.36", PullPolicy::Never, &[])
        .await
        .expect_err("Never and missing");
    assert!(matches!(e, ImageError::NeverPull { .. }), "{e}");
    assert_eq!(
        service.store().images().expect("images"),
        Vec::<ImageRecord>::new()
    );

    let first = service
        .ensure("busybox:1.36", PullPolicy::IfNotPresent, &[])
        .await
        .expect("IfNotPresent, missing");
    assert!(first.pulled.is_some());
    let second = service
        .ensure("busybox:1.36", PullPolicy::IfNotPresent, &[])
        .await
        .expect("IfNotPresent, present");
    assert_eq!(second.pulled, None, "already present on machine");
    assert_eq!(second.image, first.image);

    let never = service
        .ensure("busybox:1.36", PullPolicy::Never, &[])
        .await
        .expect("Never and present");
    assert_eq!(never.pulled, None);
    assert_eq!(never.image.id, first.image.id);

    // Always, the tag unmoved: the registry is asked, nothing is downloaded.
    let always = service
        .ensure("busybox:1.36", PullPolicy::Always, &[])
        .await
        .expect("Always, unmoved");
    let stats = always.pulled.expect("Always asks the registry");
    assert_eq!(stats.layers_downloaded, 0, "{stats:?}");
    assert_eq!(stats.downloaded, 0, "{stats:?}");
    assert_eq!(always.image.id, first.image.id);

    // The tag moves to another image: Always follows it, the old image keeps no name.
    let new_layout = env.busybox("new", "new\n");
    let moved = env.push(&new_layout, "new", "library/busybox:1.36");
    let always = service
        .ensure("busybox:1.36", PullPolicy::Always, &[])
        .await
        .expect("Always, moved");
    let stats = always.pulled.expect("pulled");
    assert_eq!(stats.layers_downloaded, 1, "{stats:?}");
    assert_ne!(always.image.id, first.image.id);
    assert_eq!(always.image.names, [name]);
    assert_eq!(
        always.image.repo_digests,
        [format!("docker.io/library/busybox@{moved}")]
    );
    let store = service.store();
    let images = store.images().expect("images");
    assert_eq!(images.len(), 2);
    let old = images
        .iter()
        .find(|r| r.id == first.image.id)
        .expect("the old image stays");
    assert_eq!(old.names, Vec::<String>::new());
    assert_eq!(old.repo_digests, first.image.repo_digests);
    assert_eq!(
        store.lookup(&reference("busybox:1.36")).expect("lookup"),
        Some(always.image.clone())
    );
    let rootfs = store.layer_rootfs(&always.image.layers[0]);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/motd")).expect("motd"),
        "new\n"
    );
    // IfNotPresent now finds the new image without asking.
    let present = service
        .ensure("busybox:1.36", PullPolicy::IfNotPresent, &[])
        .await
        .expect("present");
    assert_eq!(present.pulled, None);
    assert_eq!(present.image.id, always.image.id);
}

#[tokio::test]
async fn concurrent_pulls_download_each_layer_once() {
    let Some(env) = Env::start() else {
        return;
    };
    let layout = build_layered_layout(env.build.path(), "data", &[200_000, 300_000, 400_000], 3);
    env.push(&layout, "data", "library/data:1");
    let proxy = TokenProxy::passthrough(&env.registry.addr()).await;
    let service = service_at(env.store.path(), &proxy.addr());

    let pulls = (0..8).map(|_| service.ensure("data:1", PullPolicy::IfNotPresent, &[]));
    let outcomes = futures::future::join_all(pulls).await;
    let mut layers_downloaded = 0;
    let mut ids = Vec::new();
    for outcome in outcomes {
        let outcome = outcome.expect("pull");
        layers_downloaded += outcome.pulled.map_or(0, |s| s.layers_downloaded);
        ids.push(outcome.image.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one image: {ids:?}");
    assert_eq!(layers_downloaded, 3, "each layer downloaded by one pull");

    let requests = proxy.requests();
    let manifest = layout.manifest("data");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3);
    for layer in layers {
        let digest = layer["digest"].as_str().expect("digest");
        let get = format!("GET /v2/library/data/blobs/{digest}");
        let count = requests.iter().filter(|r| **r == get).count();
        assert_eq!(count, 1, "{get}: {requests:#?}");
    }
    let store = service.store();
    assert_eq!(layer_dirs(store).len(), 3);
    assert_eq!(store.images().expect("images").len(), 1);
    let image = &store.images().expect("images")[0];
    for (i, layer) in image.layers.iter().enumerate() {
        let file = store.layer_rootfs(layer).join(format!("layers/{i}.bin"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size, [200_000, 300_000, 400_000][i], "{}", file.display());
    }
}

#[tokio::test]
async fn shared_layers_names_and_pins() {
    let Some(env) = Env::start() else {
        return;
    };
    // Two images (two configs) with one layer in common.
    let (layout, host_tag, other_tag) = two_platforms(env.build.path());
    env.push(&layout, &host_tag, "library/one:1");
    env.push(&layout, &host_tag, "library/one:2");
    env.push(&layout, &other_tag, "library/two:1");
    let service = env.service();
    let store = service.store();

    let one = service.pull("one:1", &[]).await.expect("one:1").image;
    let one_again = service.pull("one:2", &[]).await.expect("one:2");
    assert_eq!(one_again.image.id, one.id);
    assert_eq!(
        one_again.image.names,
        ["docker.io/library/one:1", "docker.io/library/one:2"]
    );
    let two = service.pull("two:1", &[]).await.expect("two:1");
    assert_eq!(
        two.pulled.expect("pulled").layers_downloaded,
        0,
        "the shared layer is not downloaded again"
    );
    let two = two.image;
    assert_ne!(two.id, one.id);
    assert_eq!(two.layers, one.layers);
    let shared = one.layers[0].clone();
    assert_eq!(layer_dirs(store), [shared.hex().to_string()], "stored once");

    // One of two names: only the name goes.
    let removed = store.remove("one:2").expect("untag");
    assert_eq!(
        removed,
        Removed::Untagged("docker.io/library/one:2".to_string())
    );
    assert_eq!(store.lookup(&reference("one:2")).expect("lookup"), None);
    assert_eq!(
        store
            .lookup(&reference("one:1"))
            .expect("lookup")
            .map(|r| r.id),
        Some(one.id.clone())
    );

    // A pinned image stays.
    store.pin("pod-uid/main/0", &one.id).expect("pin");
    let e = store.remove("one:1").expect_err("pinned");
    assert!(matches!(e, ImageError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("pod-uid/main/0"), "{e}");
    assert!(store.lookup(&reference("one:1")).expect("lookup").is_some());
    store.unpin("pod-uid/main/0");

    // The last name: the image goes, the layer stays for two.
    let Removed::Deleted(deleted) = store.remove("one:1").expect("remove one") else {
        panic!("expected one:1 deleted");
    };
    assert_eq!(deleted.id, one.id);
    assert!(store.has_layer(&shared), "two still uses the layer");
    assert!(store.blob(&one.id).is_err(), "one's config went");
    assert!(store.blob(&two.id).is_ok(), "two's config stays");
    assert_eq!(store.images().expect("images"), std::slice::from_ref(&two));

    // The second user of the layer: the layer goes too.
    let Removed::Deleted(deleted) = store.remove("two:1").expect("remove two") else {
        panic!("expected two:1 deleted");
    };
    assert_eq!(deleted.id, two.id);
    assert!(!store.has_layer(&shared));
    assert_nothing_stored(store);
    let e = store.remove("two:1").expect_err("gone");
    assert!(matches!(e, ImageError::NotPresent { .. }), "{e}");
}

#[tokio::test]
async fn garbage_collection_removes_the_least_recently_used_unpinned_image() {
    let Some(env) = Env::start() else {
        return;
    };
    const SIZE: usize = 100_000;
    for (name, seed) in [("a", 10), ("b", 20), ("c", 30)] {
        let layout = build_layered_layout(env.build.path(), name, &[SIZE], seed);
        env.push(&layout, name, &format!("library/{name}:1"));
    }
    let service = env.service();
    let store = service.store();
    let mut images = Vec::new();
    for name in ["a", "b", "c"] {
        images.push(
            service
                .pull(&format!("{name}:1"), &[])
                .await
                .expect("pull")
                .image,
        );
    }
    let [a, b, c] = [&images[0], &images[1], &images[2]];
    let now = SystemTime::now();
    // Least recently used first: a (pinned), then b, then c.
    store
        .touch(&a.id, now - Duration::from_secs(3000))
        .expect("touch");
    store
        .touch(&b.id, now - Duration::from_secs(2000))
        .expect("touch");
    store
        .touch(&c.id, now - Duration::from_secs(1000))
        .expect("touch");
    store.pin("pod/a/0", &a.id).expect("pin");
    let policy = GcPolicy {
        high_percent: 85,
        low_percent: 80,
        min_age_seconds: 0,
    };

    // 84% used: under the high threshold, nothing goes.
    let under = FsStats {
        capacity: 1_000_000,
        available: 160_000,
    };
    let report = store.collect_garbage(&policy, under, now).expect("gc");
    assert_eq!(report.removed, Vec::<ImageRecord>::new());
    assert_eq!(report.wanted, 0);
    assert_eq!(store.images().expect("images").len(), 3);

    // 85% used: 50 kB to free; b's layer (100 kB) is enough.
    let over = FsStats {
        capacity: 1_000_000,
        available: 150_000,
    };
    let report = store.collect_garbage(&policy, over, now).expect("gc");
    let removed: Vec<_> = report.removed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        removed,
        std::slice::from_ref(&b.id),
        "the least recently used unpinned image"
    );
    assert_eq!(report.wanted, 50_000);
    assert!(report.freed >= SIZE as u64, "{report:?}");
    assert!(!store.has_layer(&b.layers[0]));
    assert!(store.blob(&b.id).is_err());
    assert!(store.has_layer(&a.layers[0]) && store.has_layer(&c.layers[0]));
    let left: Vec<_> = store
        .images()
        .expect("images")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [a.id.clone(), c.id.clone()]);

    // Once unpinned, a is the least recently used.
    store.unpin("pod/a/0");
    let report = store.collect_garbage(&policy, over, now).expect("gc");
    let removed: Vec<_> = report.removed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(removed, std::slice::from_ref(&a.id));
    assert_eq!(layer_dirs(store), [c.layers[0].hex().to_string()]);
}

/// An image service over a fresh store at `root` that knows no registry (imports only).
fn offline_at(root: &Path) -> ImageService {
    let store = Store::open(root).expect("open the store");
    ImageService::new(store, RegistriesConfig::default(), false).expect("image service")
}

/// Imports `file` into a fresh store and checks the image it holds is busybox named `name`.
async fn import_and_check(file: &Path, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = offline_at(dir.path());
    let imported = service.import(file).await.expect("import");
    assert_eq!(imported.len(), 1, "{imported:?}");
    let image = &imported[0];
    assert_eq!(image.names, [name]);
    let store = service.store();
    assert!(store
        .layer_rootfs(&image.layers[0])
        .join("bin/busybox")
        .is_file());
    let found = store
        .lookup(&reference(name))
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, image.id);
    assert_eq!(config_of(store, &found).cmd, ["echo hi"]);
    // Again: nothing new.
    service.import(file).await.expect("import again");
    assert_eq!(store.images().expect("images").len(), 1);
    assert_eq!(layer_dirs(store).len(), 1);
}

#[tokio::test]
async fn imports_docker_and_oci_archives() {
    if !image_tools() {
        return;
    }
    let build = tempfile::tempdir().expect("tempdir");
    let layout = build_busybox_layout(
        build.path(),
        "1.36",
        &[],
        &["/bin/sh", "-c"],
        &["echo hi"],
        &[],
    );
    let docker = build.path().join("docker.tar");
    save_docker_archive(&layout, "1.36", &docker, "busybox:docker");
    import_and_check(&docker, "docker.io/library/busybox:docker").await;
    let oci = build.path().join("oci.tar");
    save_oci_archive(&layout, "1.36", &oci, "busybox:oci");
    import_and_check(&oci, "docker.io/library/busybox:oci").await;

    // Not an archive: an error that names the file, and nothing stored.
    let garbage: PathBuf = build.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tarball at all\n".repeat(100)).expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    let service = offline_at(dir.path());
    let e = service.import(&garbage).await.expect_err("garbage");
    assert!(
        e.to_string().contains(&garbage.display().to_string()),
        "{e}"
    );
    assert_nothing_stored(service.store());
}

#[tokio::test]
async fn an_unknown_image_is_manifest_unknown() {
    let Some(env) = Env::start() else {
        return;
    };
    let service = env.service();
    let e = service
        .pull("nothing-here:1", &[])
        .await
        .expect_err("unknown");
    let unknown = |e: &ImageError| matches!(e, ImageError::ManifestUnknown { .. });
    let ok = match &e {
        ImageError::Attempts { attempts, .. } => attempts.iter().any(|(_, e)| unknown(e)),
        other => unknown(other),
    };
    assert!(ok, "{e}");
    assert!(e.to_string().contains("library/nothing-here:1"), "{e}");
    assert_nothing_stored(service.store());
}

#[tokio::test]
async fn bad_blobs_leave_nothing_and_a_later_pull_works() {
    let Some(env) = Env::start() else {
        return;
    };
    let layout = env.busybox("1.36", "bad blobs\n");
    env.push(&layout, "1.36", "library/busybox:1.36");
    let proxy = TokenProxy::passthrough(&env.registry.addr()).await;
    let service = service_at(env.store.path(), &proxy.addr());

    proxy.set_fault(Some(Fault::TamperBlobs));
    let e = service
        .pull("busybox:1.36", &[])
        .await
        .expect_err("tampered");
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert_nothing_stored(service.store());

    proxy.set_fault(Some(Fault::TruncateBlobs));
    let e = service
        .pull("busybox:1.36", &[])
        .await
        .expect_err("truncated");
    assert!(matches!(e, ImageError::SizeMismatch { .. }), "{e}");
    assert_nothing_stored(service.store());

    proxy.set_fault(None);
    let image = service
        .pull("busybox:1.36", &[])
        .await
        .expect("healthy")
        .image;
    assert!(service
        .store()
        .layer_rootfs(&image.layers[0])
        .join("bin/busybox")
        .is_file());
    assert_eq!(service.store().images().expect("images"), [image]);
}
