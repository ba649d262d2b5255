//! Secrets encrypted at rest: what reaches the disk (read with sled directly, after the store is
//! closed), what the store answers, and what opening the store with another configuration does
//! (rotation, turning encryption off, a missing key, tampered or moved values).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use minik_store::{Encryption, EventType, SledStore, Store, StoreConfig, StoreError};
use serde_json::{json, Value};

const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

const SECRET: &str = "/registry/secrets/default/db-password";
const CONFIGMAP: &str = "/registry/configmaps/default/settings";
/// What the Secret holds; it must never be on disk in the clear.
const PASSWORD: &str = "correct-horse-battery-staple";

/// A configuration for Secrets with these providers: `("aesgcm", [(name, secret)])` or
/// `("identity", [])`.
fn encryption(providers: &[(&str, &[(&str, &str)])]) -> Arc<Encryption> {
    let mut text = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n",
    );
    for (kind, keys) in providers {
        if *kind == "identity" {
            text.push_str("      - identity: {}\n");
            continue;
        }
        text.push_str("      - aesgcm:\n          keys:\n");
        for (name, secret) in *keys {
            text.push_str(&format!(
                "            - name: {name}\n              secret: {secret}\n"
            ));
        }
    }
    Arc::new(Encryption::from_yaml(&text).expect("valid configuration"))
}

fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("db")
}

fn try_open(
    dir: &tempfile::TempDir,
    enc: Option<Arc<Encryption>>,
) -> Result<SledStore, StoreError> {
    let mut config = StoreConfig::new(store_path(dir));
    config.encryption = enc;
    config.min_free_bytes = 0;
    // sled lets go of its directory's lock shortly after the last handle to it is dropped
    // (its threads hold it a little longer): wait for that, not for anything else.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match SledStore::open(config.clone()) {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

fn open(dir: &tempfile::TempDir, enc: Option<Arc<Encryption>>) -> SledStore {
    try_open(dir, enc).expect("open store")
}

/// sled itself on the store's directory, waiting for the last instance to let go of its lock.
fn raw_db(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open sled at {}: {e}", path.display()),
        }
    }
}

/// The bytes sled holds for `key` (revision, then what the store wrote).
fn raw(dir: &tempfile::TempDir, key: &str) -> Vec<u8> {
    let db = raw_db(&store_path(dir));
    let value = db.get(key).expect("sled get").expect("key on disk");
    value.to_vec()
}

/// Changes what sled holds for `key`.
fn rewrite_raw(dir: &tempfile::TempDir, key: &str, value: Vec<u8>) {
    let db = raw_db(&store_path(dir));
    db.insert(key, value).expect("sled insert");
    db.flush().expect("sled flush");
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-password", "namespace": "default"},
        "stringData": {"password": PASSWORD},
    })
}

fn configmap() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"},
        "data": {"mode": "plain-for-everyone"},
    })
}

fn revision_of(raw: &[u8]) -> u64 {
    u64::from_be_bytes(raw[..8].try_into().unwrap())
}

#[tokio::test]
async fn secrets_are_encrypted_on_disk_and_plain_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    let mut watch = store.watch("/registry/", 0).unwrap();
    let written = store.create(SECRET, secret()).await.unwrap();
    store.create(CONFIGMAP, configmap()).await.unwrap();
    assert!(contains(&written.value, PASSWORD));

    // get, list and watch hand out plaintext.
    let got = store.get(SECRET).await.unwrap().unwrap();
    assert_eq!(got, written);
    let listed = store.list("/registry/secrets/").await.unwrap();
    assert_eq!(listed.items, vec![written.clone()]);
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!((event.kind, event.key.as_str()), (EventType::Added, SECRET));
    assert_eq!(event.object, written.value);
    let updated = store
        .update(SECRET, secret(), Some(written.revision))
        .await
        .unwrap();
    assert!(contains(&updated.value, PASSWORD));
    store.close().await;

    let secret_raw = raw(&dir, SECRET);
    assert_eq!(revision_of(&secret_raw), updated.revision);
    assert!(
        secret_raw[8..].starts_with(b"k8s:enc:aesgcm:v1:key1:"),
        "{:?}",
        String::from_utf8_lossy(&secret_raw)
    );
    assert!(!contains(&secret_raw, PASSWORD));
    assert!(!contains(&secret_raw, "db-password"));
    let configmap_raw = raw(&dir, CONFIGMAP);
    assert!(
        configmap_raw[8..].starts_with(b"{"),
        "a ConfigMap stays plaintext"
    );
    assert!(contains(&configmap_raw, "plain-for-everyone"));

    // Reopened with the same configuration: nothing to re-write, everything reads.
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    assert_eq!(store.get(SECRET).await.unwrap().unwrap(), updated);
    store.close().await;
    assert_eq!(raw(&dir, SECRET), secret_raw, "not re-written");
}

#[tokio::test]
async fn rotation_re_encrypts_at_open_keeping_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    let written = store.create(SECRET, secret()).await.unwrap();
    store.create(CONFIGMAP, configmap()).await.unwrap();
    let revision = store.revision();
    store.close().await;
    let configmap_before = raw(&dir, CONFIGMAP);

    // The new key first, the old one kept: everything is re-encrypted with the new one.
    let both = encryption(&[("aesgcm", &[("key2", KEY2), ("key1", KEY1)])]);
    let store = open(&dir, Some(both));
    assert_eq!(store.revision(), revision, "a storage change, not a write");
    assert!(
        store.watch("/registry/", revision).is_ok(),
        "and no events: the window starts at the same revision"
    );
    assert_eq!(store.get(SECRET).await.unwrap().unwrap(), written);
    store.close().await;
    let secret_raw = raw(&dir, SECRET);
    assert!(secret_raw[8..].starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    assert_eq!(revision_of(&secret_raw), written.revision);
    assert_eq!(
        raw(&dir, CONFIGMAP),
        configmap_before,
        "uncovered keys untouched"
    );

    // The old key removed: still readable.
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key2", KEY2)])])));
    let got = store.get(SECRET).await.unwrap().unwrap();
    assert_eq!(got, written);
    assert_eq!(store.list("/registry/").await.unwrap().revision, revision);
    store.close().await;
}

#[tokio::test]
async fn a_configuration_without_the_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    store.create(SECRET, secret()).await.unwrap();
    store.close().await;

    let e = match try_open(&dir, Some(encryption(&[("aesgcm", &[("key2", KEY2)])]))) {
        Ok(_) => panic!("opened with a configuration lacking the key of the stored values"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(SECRET) && e.contains("\"key1\""), "{e}");
    // Nothing was changed: the right configuration still reads it.
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    assert!(store.get(SECRET).await.unwrap().is_some());
    store.close().await;

    // Without any configuration the store opens, and reading the Secret says why it cannot.
    let store = open(&dir, None);
    let e = store.get(SECRET).await.unwrap_err().to_string();
    assert!(e.contains(SECRET) && e.contains("key1"), "{e}");
    let e = store
        .list("/registry/secrets/")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(SECRET), "{e}");
    store.close().await;
}

#[tokio::test]
async fn identity_first_turns_encryption_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    let written = store.create(SECRET, secret()).await.unwrap();
    store.close().await;

    let off = encryption(&[("identity", &[]), ("aesgcm", &[("key1", KEY1)])]);
    let store = open(&dir, Some(off.clone()));
    assert_eq!(store.get(SECRET).await.unwrap().unwrap(), written);
    let other = "/registry/secrets/default/new";
    store.create(other, secret()).await.unwrap();
    store.close().await;
    for key in [SECRET, other] {
        let bytes = raw(&dir, key);
        assert!(bytes[8..].starts_with(b"{"), "{key} is plaintext again");
        assert!(contains(&bytes, PASSWORD));
    }
    assert_eq!(revision_of(&raw(&dir, SECRET)), written.revision);

    // Then the configuration can go.
    let store = open(&dir, None);
    assert_eq!(store.get(SECRET).await.unwrap().unwrap(), written);
    store.close().await;
}

#[tokio::test]
async fn plaintext_written_before_encryption_is_encrypted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, None);
    let written = store.create(SECRET, secret()).await.unwrap();
    store.close().await;
    assert!(contains(&raw(&dir, SECRET), PASSWORD));

    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    assert_eq!(store.get(SECRET).await.unwrap().unwrap(), written);
    store.close().await;
    let bytes = raw(&dir, SECRET);
    assert!(bytes[8..].starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    assert!(!contains(&bytes, PASSWORD));
    assert_eq!(revision_of(&bytes), written.revision);
}

#[tokio::test]
async fn a_tampered_value_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let enc = encryption(&[("aesgcm", &[("key1", KEY1)])]);
    let store = open(&dir, Some(enc.clone()));
    store.create(SECRET, secret()).await.unwrap();
    let other = "/registry/secrets/default/other";
    let kept = store.create(other, secret()).await.unwrap();
    store.close().await;

    let mut bytes = raw(&dir, SECRET);
    let last = bytes.len() - 20;
    bytes[last] ^= 0x40;
    rewrite_raw(&dir, SECRET, bytes);

    let store = open(&dir, Some(enc));
    let e = store.get(SECRET).await.unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    let e = e.to_string();
    assert!(e.contains(SECRET) && e.contains("key1"), "{e}");
    let e = store
        .list("/registry/secrets/")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(SECRET), "{e}");
    let e = store
        .update(SECRET, secret(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(SECRET), "{e}");
    // The rest of the store works.
    assert_eq!(store.get(other).await.unwrap().unwrap(), kept);
    store.create(CONFIGMAP, configmap()).await.unwrap();
    store.close().await;

    // A rotation leaves the value that does not decrypt as it is, and does the rest.
    let rotated = encryption(&[("aesgcm", &[("key2", KEY2), ("key1", KEY1)])]);
    let store = open(&dir, Some(rotated));
    assert_eq!(store.get(other).await.unwrap().unwrap(), kept);
    let e = store.get(SECRET).await.unwrap_err().to_string();
    assert!(e.contains(SECRET) && e.contains("key1"), "{e}");
    store.close().await;
    assert!(raw(&dir, other)[8..].starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    assert!(raw(&dir, SECRET)[8..].starts_with(b"k8s:enc:aesgcm:v1:key1:"));
}

#[tokio::test]
async fn a_value_moved_to_another_key_does_not_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let enc = encryption(&[("aesgcm", &[("key1", KEY1)])]);
    let store = open(&dir, Some(enc.clone()));
    store.create(SECRET, secret()).await.unwrap();
    store.close().await;

    let moved = "/registry/secrets/kube-system/stolen";
    rewrite_raw(&dir, moved, raw(&dir, SECRET));
    let store = open(&dir, Some(enc));
    let e = store.get(moved).await.unwrap_err().to_string();
    assert!(e.contains(moved) && e.contains("key1"), "{e}");
    assert!(store.get(SECRET).await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn rotating_back_and_forth_keeps_every_value() {
    // A rotation rolled back (the old key first again) re-encrypts everything back.
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Some(encryption(&[("aesgcm", &[("key1", KEY1)])])));
    let mut written = Vec::new();
    for i in 0..50 {
        let key = format!("/registry/secrets/default/s{i}");
        written.push(store.create(&key, secret()).await.unwrap());
    }
    store.close().await;
    let store = open(
        &dir,
        Some(encryption(&[("aesgcm", &[("key2", KEY2), ("key1", KEY1)])])),
    );
    store.close().await;
    let store = open(
        &dir,
        Some(encryption(&[("aesgcm", &[("key1", KEY1), ("key2", KEY2)])])),
    );
    let listed = store.list("/registry/secrets/").await.unwrap();
    let mut expected = written.clone();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed.items, expected);
    store.close().await;
    for stored in &written {
        let bytes = raw(&dir, &stored.key);
        assert!(bytes[8..].starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert_eq!(revision_of(&bytes), stored.revision);
    }
}
