//! Raw sled baselines, in-process and with the settings minik-store uses: what one durable
//! write costs (insert + flush), how much concurrent flushes share, and how fast a prefix scan
//! reads values back. They say how far the API figures are from what the disk and sled allow.
//!
//! This is the one place outside minik-store that opens sled, and only in its own scratch
//! directories; the server under test is measured over HTTP.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

/// How many operations ran, in how long, and each one's latency.
#[derive(Clone, Debug, Default)]
pub struct Throughput {
    pub ops: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Throughput {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Opens sled as minik-store does: high-throughput mode, 64 MiB cache, no background flush
/// timer (every write is flushed explicitly).
fn open(dir: &Path) -> anyhow::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .with_context(|| format!("cannot open sled in {}", dir.display()))
}

/// A value as minik-store lays it out: the revision (8 bytes, big endian), then the JSON.
fn stored_value(revision: u64, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + json.len());
    v.extend_from_slice(&revision.to_be_bytes());
    v.extend_from_slice(json);
    v
}

/// One thread: insert `value` under a new key and flush, `max_ops` times or until
/// `time_limit`.
pub fn insert_flush_sequential(
    dir: &Path,
    value: &[u8],
    max_ops: usize,
    time_limit: Duration,
) -> anyhow::Result<Throughput> {
    let db = open(dir)?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(max_ops);
    for i in 0..max_ops {
        if started.elapsed() >= time_limit {
            break;
        }
        let t = Instant::now();
        db.insert(
            format!("/registry/pods/default/seq-{i:08}"),
            stored_value(i as u64, value),
        )?;
        db.flush()?;
        latencies.push(t.elapsed());
    }
    Ok(Throughput {
        ops: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    })
}

/// `threads` threads, each inserting a new key and flushing, `max_ops` in all or until
/// `time_limit`. Concurrent flushes can share one fsync.
pub fn insert_flush_concurrent(
    dir: &Path,
    value: &[u8],
    threads: usize,
    max_ops: usize,
    time_limit: Duration,
) -> anyhow::Result<Throughput> {
    let db = open(dir)?;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let per_thread: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= max_ops || started.elapsed() >= time_limit {
                            return Ok(latencies);
                        }
                        let t = Instant::now();
                        db.insert(
                            format!("/registry/pods/default/par-{i:08}"),
                            stored_value(i as u64, value),
                        )?;
                        db.flush()?;
                        latencies.push(t.elapsed());
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a sled worker thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    for worker in per_thread {
        latencies.extend(worker?);
    }
    Ok(Throughput {
        ops: latencies.len(),
        elapsed,
        latencies,
    })
}

/// Stores `items` (JSON values, laid out as minik-store does) under one prefix, then scans the
/// prefix `runs` times, copying every value out as minik-store's list does. Returns each scan's
/// latency and the bytes one scan read.
pub fn scan_prefix(
    dir: &Path,
    items: &[Bytes],
    runs: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    const PREFIX: &str = "/registry/pods/bench-list/";
    let db = open(dir)?;
    let mut batch = sled::Batch::default();
    for (i, item) in items.iter().enumerate() {
        batch.insert(
            format!("{PREFIX}item-{i:08}").as_bytes(),
            stored_value(i as u64, item),
        );
    }
    db.apply_batch(batch)?;
    db.flush()?;
    let mut latencies = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let mut values = Vec::with_capacity(items.len());
        for kv in db.scan_prefix(PREFIX) {
            let (_, v) = kv?;
            values.push(Bytes::copy_from_slice(v.get(8..).unwrap_or_default()));
        }
        latencies.push(t.elapsed());
        anyhow::ensure!(
            values.len() == items.len(),
            "the scan read {} of {} values",
            values.len(),
            items.len()
        );
        bytes = std::hint::black_box(values).iter().map(Bytes::len).sum();
    }
    Ok((latencies, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_count_what_they_did() {
        let dir = tempfile::tempdir().unwrap();
        let seq =
            insert_flush_sequential(&dir.path().join("seq"), b"{}", 5, Duration::from_secs(10))
                .unwrap();
        assert_eq!((seq.ops, seq.latencies.len()), (5, 5));
        let par = insert_flush_concurrent(
            &dir.path().join("par"),
            b"{}",
            4,
            10,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(par.ops, 10);
        let items = vec![Bytes::from_static(b"{\"a\":1}"); 3];
        let (runs, bytes) = scan_prefix(&dir.path().join("scan"), &items, 2).unwrap();
        assert_eq!((runs.len(), bytes), (2, 21));
    }
}
