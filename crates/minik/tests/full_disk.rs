//! A full disk is a clean, visible, recoverable state (issue 23): writes are refused with 507
//! InsufficientStorage within a deadline (never a hang), `/readyz` fails while the store cannot
//! write, reads go on, the server takes writes again once space is freed (or says to restart
//! it), and a restart on the same data dir finds every acknowledged object. Each test mounts a
//! small tmpfs of its own for the data dir, which needs root: under `CI=true` a failed mount
//! fails the test; elsewhere the test is skipped with a note.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

/// A tmpfs mounted on a temp dir for one test, unmounted when dropped (even if the test
/// failed). Whatever runs on it must be stopped before it drops.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match mounted {
            Ok(out) if out.status.success() => return Some(Tmpfs { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        minik_testkit::cannot_run("root, to mount a tmpfs for the data dir", why);
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Something still holds it open: detach it, so that nothing stays mounted.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// A client of the server at `base` (trusting its CA) whose every request must be answered
/// within 20 s: a server that hangs on a full disk fails the test instead of stalling it.
fn client(base: &str) -> reqwest::Client {
    minik_testkit::client_builder(base)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn lease(name: &str, pad: usize) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "annotations": {"pad": "x".repeat(pad)}},
        "spec": {"holderIdentity": name}
    })
}

/// POSTs a lease: the HTTP code and the body.
async fn create(client: &reqwest::Client, base: &str, name: &str, pad: usize) -> (u16, Value) {
    let response = client
        .post(format!("{base}{LEASES}"))
        .json(&lease(name, pad))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {name} got no answer (a hang?): {e}"));
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

/// Creates leases four at a time until the server refuses one; every other answer must be 201.
/// Returns the names acknowledged and the first refusal (its code and Status).
async fn fill_until_refused(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    pad: usize,
) -> (Vec<String>, (u16, Value)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut acked = Vec::new();
    for round in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the disk never filled up: {} leases acknowledged",
            acked.len()
        );
        let names: Vec<String> = (0..4).map(|i| format!("{prefix}-{round}-{i}")).collect();
        let answers =
            futures::future::join_all(names.iter().map(|n| create(client, base, n, pad))).await;
        let mut refused = None;
        for (name, (code, body)) in names.into_iter().zip(answers) {
            match code {
                201 => acked.push(name),
                _ => refused = refused.or(Some((code, body))),
            }
        }
        if let Some(refused) = refused {
            return (acked, refused);
        }
    }
    unreachable!()
}

async fn readyz(client: &reqwest::Client, base: &str) -> (u16, String) {
    let response = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("/readyz answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The names of the leases the server lists (which must answer 200).
async fn listed(client: &reqwest::Client, base: &str) -> BTreeSet<String> {
    let list = support::get_json(client, base, LEASES)
        .await
        .expect("listing leases answers 200");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| l["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that every acknowledged lease is there, whole.
async fn assert_all_there(client: &reqwest::Client, base: &str, acked: &[String]) {
    let names = listed(client, base).await;
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged leases were lost: {lost:?}");
    let one = support::get_json(client, base, &format!("{LEASES}/{}", acked[0]))
        .await
        .expect("an acknowledged lease reads back");
    assert_eq!(one["spec"]["holderIdentity"], acked[0].as_str());
}

/// Writes `path` until the filesystem refuses more: the disk is then full for everyone.
fn fill_disk(path: &Path) {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 << 10];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
}

fn refusal_says(refused: &(u16, Value), words: &str) {
    let (code, status) = refused;
    assert_eq!(
        *code, 507,
        "a full disk is 507 InsufficientStorage: {status}"
    );
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "InsufficientStorage", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{message:?} should say {words:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_short_of_the_reserve_get_507_reads_go_on_and_writes_resume_once_space_is_freed() {
    let Some(disk) = Tmpfs::mount("32m") else {
        return;
    };
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).unwrap();
    let data: PathBuf = disk.path().join("data");
    let args = ["--min-free-disk", "4Mi"];
    let server = support::MINIK.server(&data, &args);
    let c = client(&server.base);

    let (acked, refused) = fill_until_refused(&c, &server.base, "full", 16 << 10).await;
    assert!(acked.len() > 10, "only {} leases fit", acked.len());
    refusal_says(&refused, "must stay free");
    let again = create(&c, &server.base, "refused-again", 16 << 10).await;
    refusal_says(&again, "must stay free");
    let (code, why) = readyz(&c, &server.base).await;
    assert_eq!(code, 503, "not ready while the disk is full: {why}");
    assert!(why.contains("disk holding the store is full"), "{why}");
    // Reads go on, and a refused write left nothing behind.
    assert_all_there(&c, &server.base, &acked).await;
    assert!(
        support::get_json(&c, &server.base, &format!("{LEASES}/refused-again"))
            .await
            .is_none()
    );

    std::fs::remove_file(&filler).unwrap();
    support::wait_for(
        "/readyz to answer 200 once space is freed",
        support::DEADLINE,
        || async { (readyz(&c, &server.base).await.0 == 200).then_some(()) },
    )
    .await;
    writes_resume_and_survive_a_restart(&c, server, &data, &args, acked).await;
}

/// Once space is freed: a write is taken, and the server killed and started again on the same
/// data dir finds every acknowledged object, that one included.
async fn writes_resume_and_survive_a_restart(
    c: &reqwest::Client,
    mut server: support::Running,
    data: &Path,
    args: &[&str],
    mut acked: Vec<String>,
) {
    let (code, body) = create(c, &server.base, "after", 0).await;
    assert_eq!(code, 201, "writes resume once space is freed: {body}");
    acked.push("after".into());

    server.kill9();
    let server = support::MINIK.server(data, args);
    assert_all_there(c, &server.base, &acked).await;
}

/// Small objects: sled fails its log write and poisons itself; the store reopens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_kernel_refuses_get_507_never_hang_and_lose_nothing_acknowledged() {
    kernel_says_the_disk_is_full(2 << 10, 0).await;
}

/// Large objects: sled writes pages as blob files, and a blob that fails half-way leaves it
/// waiting forever in every flush (sled 0.34); the store gives the flush up instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_write_the_kernel_refuses_gets_507_and_never_hangs() {
    kernel_says_the_disk_is_full(24 << 10, 1 << 20).await;
}

/// Fills the disk under a server without a reserve but for `room` bytes, then writes objects
/// padded with `pad` bytes until the server refuses one.
async fn kernel_says_the_disk_is_full(pad: usize, room: u64) {
    let Some(disk) = Tmpfs::mount("32m") else {
        return;
    };
    let data: PathBuf = disk.path().join("data");
    // No reserve: the writes go on until the kernel answers ENOSPC.
    let args = ["--min-free-disk", "0"];
    let mut server = support::MINIK.server(&data, &args);
    let c = client(&server.base);
    let mut acked = Vec::new();
    for i in 0..40 {
        let name = format!("before-{i}");
        let (code, body) = create(&c, &server.base, &name, pad).await;
        assert_eq!(code, 201, "{body}");
        acked.push(name);
    }
    let filler = disk.path().join("filler");
    fill_disk(&filler);
    let filled = std::fs::metadata(&filler).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    file.set_len(filled.saturating_sub(room)).unwrap();
    drop(file);

    let (more, refused) = fill_until_refused(&c, &server.base, "full", pad).await;
    acked.extend(more);
    refusal_says(&refused, "filled up");
    let again = create(&c, &server.base, "refused-again", 0).await;
    assert_eq!(again.0, 507, "{}", again.1);
    let (code, why) = readyz(&c, &server.base).await;
    assert_eq!(code, 503, "not ready while the store cannot write: {why}");
    assert_all_there(&c, &server.base, &acked).await;

    std::fs::remove_file(&filler).unwrap();
    // The store opens itself again once there is room, or (when sled cannot let go of the
    // failed instance) says to restart the server: both are documented.
    let restart = support::wait_for(
        "the server to recover or to ask for a restart",
        support::DEADLINE,
        || async {
            match readyz(&c, &server.base).await {
                (200, _) => Some(false),
                (_, why) if why.contains("restart the server") => Some(true),
                _ => None,
            }
        },
    )
    .await;
    if restart {
        // It stops when asked to, although sled holds on to the failed database.
        server.stop();
        server = support::MINIK.server(&data, &args);
    }
    writes_resume_and_survive_a_restart(&c, server, &data, &args, acked).await;
}
