//! The heap a cached pod costs: decodes one pod's JSON 10,000 times as a k8s-openapi `Pod` and
//! as a `PodView`, each behind an `Arc` as an informer holds it, and prints the bytes allocated
//! per pod by each (a counting global allocator; requested sizes, before the allocator's own
//! rounding). docs/benchmarks.md, "Pods cached as views".
//!
//! `cargo run --release -p minik-api --example podheap -- pod.json` (a pod as the server
//! returns it, e.g. `minik get pod NAME -o json`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use minik_api::k8s_openapi::api::core::v1::Pod;
use minik_api::podview::PodView;
use serde::de::DeserializeOwned;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const COPIES: isize = 10_000;

/// Bytes allocated per decoded copy of `json` as a `K`, with all copies alive.
fn per_copy<K: DeserializeOwned>(json: &[u8]) -> Result<isize, serde_json::Error> {
    let before = LIVE.load(Ordering::Relaxed);
    let copies = (0..COPIES)
        .map(|_| serde_json::from_slice::<K>(json).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let after = LIVE.load(Ordering::Relaxed);
    drop(copies);
    Ok((after - before) / COPIES)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: podheap POD.json")?;
    let json = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let pod = per_copy::<Pod>(&json).map_err(|e| format!("{path}: not a pod: {e}"))?;
    let view = per_copy::<PodView>(&json).map_err(|e| format!("{path}: not a pod: {e}"))?;
    println!("pod JSON: {} bytes", json.len());
    println!("Pod (baseline): {pod} bytes a pod");
    println!(
        "PodView: {view} bytes a pod ({:.2}x the Pod)",
        view as f64 / pod as f64
    );
    Ok(())
}
