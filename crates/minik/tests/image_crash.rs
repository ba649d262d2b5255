//! `minik image pull` killed with SIGKILL in the middle of a download: the store shows nothing
//! half-made (no image listed, no incomplete layer, no blob that is not what its name says), the
//! next `Store::open` removes the dead process's work directory, and a new pull completes.
//!
//! The registry is docker-registry on loopback, reached as `docker.io` through a registries.yaml
//! mirror with `--disable-default-registry-endpoint`, behind a proxy that serves blobs slowly so
//! that the kill lands mid-download every time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use minik_image::{Digest, Store};
use minik_testkit::registry::{
    build_layered_layout, image_tools, push, Fault, Registry, TokenProxy,
};
use minik_testkit::{wait_for, Running, DEADLINE};

const MIB: usize = 1 << 20;
/// Two layers of 8 MiB: at the slow proxy's 800 kB/s each takes about 10 s to arrive.
const LAYERS: [usize; 2] = [8 * MIB, 8 * MIB];

/// `minik image pull IMAGE` over the node data dir `data`, its output into `log`.
fn pull(data: &Path, registries: &Path, image: &str, log: &Path) -> Running {
    let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let child = Command::new(env!("CARGO_BIN_EXE_minik"))
        .arg("image")
        .arg("--data-dir")
        .arg(data)
        .arg("--private-registry")
        .arg(registries)
        .arg("--disable-default-registry-endpoint")
        .args(["pull", image])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start minik image pull: {e}"));
    Running::guard(child)
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Whether the process has exited, and how.
fn exited(process: &mut Running) -> Option<ExitStatus> {
    process.child.try_wait().ok().flatten()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The blob files being downloaded in the work directory `work` (`tmp/PID-RAND`) and their sizes.
fn partial_blobs(work: &Path) -> Vec<(PathBuf, u64)> {
    entries(work)
        .into_iter()
        .map(|scratch| scratch.join("blob"))
        .filter_map(|blob| std::fs::metadata(&blob).ok().map(|m| (blob, m.len())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_mid_download_leaves_nothing_half_made() {
    if !image_tools() {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let build = tempfile::tempdir().expect("tempdir");
    let layout = build_layered_layout(build.path(), "big", &LAYERS, 42);
    push(&layout, "big", &registry.addr(), "library/big:1");
    let proxy = TokenProxy::passthrough(&registry.addr()).await;
    proxy.set_fault(Some(Fault::SlowBlobs));

    let node = tempfile::tempdir().expect("tempdir");
    let data = node.path().join("data");
    let registries = node.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  \"docker.io\":\n    endpoint: [\"http://{}\"]\n",
            proxy.addr()
        ),
    )
    .expect("write registries.yaml");
    let store_dir = data.join("image-store");
    let tmp = store_dir.join("tmp");

    // Kill the pull once a layer blob has started to arrive.
    let log = node.path().join("first.log");
    let mut first = pull(&data, &registries, "big:1", &log);
    let prefix = format!("{}-", first.pid());
    let work = wait_for("a partial layer blob in the pull's tmp/", DEADLINE, || {
        if let Some(status) = exited(&mut first) {
            panic!(
                "the pull ended before it was killed ({status}): {}",
                read_log(&log)
            );
        }
        let seen = match entries(&tmp)
            .into_iter()
            .find(|dir| file_name(dir).starts_with(&prefix))
        {
            None => Err("no work directory yet".to_string()),
            Some(work) => {
                let blobs = partial_blobs(&work);
                if blobs.iter().any(|(_, size)| *size > 0) {
                    Ok(work)
                } else {
                    Err(format!("blobs so far: {blobs:?}"))
                }
            }
        };
        async move { seen }
    })
    .await;
    first.kill9();

    // What the dead pull left: an unfinished download in its work directory, nothing else.
    let partial = partial_blobs(&work);
    let total: u64 = LAYERS.iter().map(|&s| s as u64).sum();
    assert!(
        partial
            .iter()
            .any(|(_, size)| *size > 0 && *size < LAYERS[0] as u64),
        "a layer was killed mid-download: {partial:?} (of {total} bytes)"
    );
    match std::fs::read(store_dir.join("images.json")) {
        Ok(bytes) => {
            let records: serde_json::Value =
                serde_json::from_slice(&bytes).expect("images.json is whole JSON");
            assert_eq!(
                records["images"],
                serde_json::json!([]),
                "no image is listed"
            );
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "images.json: {e}"),
    }
    for layer in entries(&store_dir.join("layers/sha256")) {
        assert!(
            layer.join("layer.json").is_file() && layer.join("rootfs").is_dir(),
            "incomplete layer {}",
            layer.display()
        );
    }
    for blob in entries(&store_dir.join("blobs/sha256")) {
        let bytes = std::fs::read(&blob).expect("read blob");
        assert_eq!(
            Digest::of(&bytes).hex(),
            file_name(&blob),
            "blob {} is not what its name says",
            blob.display()
        );
    }

    // The next open removes the dead process's work directory.
    {
        let store = Store::open(&store_dir).expect("open the store");
        assert!(!work.exists(), "{} is left", work.display());
        let own = format!("{}-", std::process::id());
        let left: Vec<String> = entries(&tmp).iter().map(|p| file_name(p)).collect();
        assert!(
            left.len() == 1 && left[0].starts_with(&own),
            "only this process's work directory: {left:?}"
        );
        assert_eq!(store.images().expect("images"), Vec::new());
    }

    // A new pull completes.
    proxy.set_fault(None);
    let log = node.path().join("second.log");
    let mut second = pull(&data, &registries, "big:1", &log);
    let status = wait_for("the second pull to finish", DEADLINE, || {
        let status = exited(&mut second);
        async move { status.ok_or("still pulling") }
    })
    .await;
    assert!(status.success(), "{status}: {}", read_log(&log));
    let store = Store::open(&store_dir).expect("open the store");
    let image = store
        .lookup(&"big:1".parse().expect("reference"))
        .expect("lookup")
        .unwrap_or_else(|| panic!("big:1 is not listed after the pull: {}", read_log(&log)));
    assert_eq!(image.names, ["docker.io/library/big:1"]);
    assert_eq!(image.layers.len(), LAYERS.len());
    for (i, layer) in image.layers.iter().enumerate() {
        let file = store.layer_rootfs(layer).join(format!("layers/{i}.bin"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size, LAYERS[i] as u64, "{}", file.display());
    }
}
