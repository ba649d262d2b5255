//! The real kubectl's `--chunk-size` against `minik up`: kubectl lists in pages of that size,
//! following each page's continue token, and shows every object exactly once, in tables and in
//! `-o name` alike. The kubectl run is `$MINIK_KUBECTL` or `kubectl` on the PATH (as
//! `tests/kubectl.rs`); a missing kubectl fails the test rather than skipping it.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::MINIK;

fn kubectl_binary() -> String {
    std::env::var("MINIK_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// Runs kubectl with `home`'s kubeconfig; (stdout, stderr), after asserting it succeeded.
fn kubectl(home: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(kubectl_binary())
        .args(args)
        .env("KUBECONFIG", home.join(".minik/kubeconfig"))
        // kubectl's discovery cache goes to the test's own home.
        .env("HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (install kubectl, or set MINIK_KUBECTL; .ci/run does): {e}",
                kubectl_binary()
            )
        });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The GET requests of a list that kubectl logged at `-v=6` (its round-tripper lines, plain
/// `GET URL` in older kubectls, `verb="GET" url="URL"` in newer ones).
fn list_requests<'a>(stderr: &'a str, resource: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.contains(" GET ") || l.contains("verb=\"GET\""))
        .filter(|l| l.contains(&format!("/{resource}?")))
        .collect()
}

#[test]
fn kubectl_get_with_chunk_size_reads_every_page() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let _up = MINIK.up(home.path(), data.path(), 1, &[]);
    let manifests: String = (0..7)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chunk-{i}\ndata:\n  n: \"{i}\"\n---\n"
            )
        })
        .collect();
    std::fs::write(home.path().join("configmaps.yaml"), manifests).unwrap();
    kubectl(home.path(), &["apply", "-f", "configmaps.yaml"]);

    let (whole, _) = kubectl(
        home.path(),
        &["get", "configmaps", "--chunk-size=0", "-o", "name"],
    );
    let whole: Vec<&str> = whole.lines().collect();
    assert!(whole.len() >= 7, "{whole:?}");

    // `-o name` reads JSON lists; the default output reads Tables: both must page.
    let (named, stderr) = kubectl(
        home.path(),
        &["get", "configmaps", "--chunk-size=2", "-o", "name", "-v=6"],
    );
    assert_eq!(named.lines().collect::<Vec<_>>(), whole);
    let requests = list_requests(&stderr, "configmaps");
    assert_eq!(requests.len(), whole.len().div_ceil(2), "{stderr}");
    assert!(requests[0].contains("limit=2"), "{requests:#?}");
    assert!(
        requests[1..].iter().all(|r| r.contains("continue=")),
        "{requests:#?}"
    );

    let (table, stderr) = kubectl(
        home.path(),
        &["get", "configmaps", "--chunk-size=2", "-v=6"],
    );
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| !l.starts_with("NAME"))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    let bare: Vec<&str> = whole
        .iter()
        .map(|n| n.trim_start_matches("configmap/"))
        .collect();
    assert_eq!(rows, bare, "every object once, with one header:\n{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with("NAME")).count(), 1);
    assert_eq!(
        list_requests(&stderr, "configmaps").len(),
        whole.len().div_ceil(2)
    );
}
