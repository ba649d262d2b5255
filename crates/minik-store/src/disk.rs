//! What the store needs from the disk under sled: how much room is left, the ballast it keeps
//! for the day the disk fills, and flushes that sled may never finish (sled 0.34 can wait
//! forever after a failed write), run where the writer can stop waiting for them.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a flush may take before it is nudged with a flush of its own (a slow disk only
/// gets a second, harmless flush).
const FLUSH_NUDGE_AFTER: Duration = Duration::from_millis(500);

/// How long a flush may take while the disk is full before it is given up as stuck.
const FLUSH_STUCK_ON_FULL_DISK: Duration = Duration::from_secs(1);

/// Less free space than this is a full disk, for a flush that does not end.
const FULL_DISK: u64 = 1 << 20;

/// How often a waiting writer looks at a flush that has not answered.
const FLUSH_POLL: Duration = Duration::from_millis(250);

/// The size of the ballast: room for sled to open again (it writes while it recovers, a
/// segment of 512 KiB at a time) and to serve reads that finish page splits, after the disk
/// filled up.
pub(crate) const BALLAST_BYTES: u64 = 8 << 20;

/// The ballast's file, in sled's directory (sled leaves files it does not know alone).
const BALLAST_FILE: &str = "minik-ballast";

/// The bytes an unprivileged process may still write on the filesystem holding `path`.
pub(crate) fn available_bytes(path: &Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

pub(crate) fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Whether the filesystem holding `path` is full, as far as a flush that does not end goes.
fn is_full(path: &Path) -> bool {
    available_bytes(path).is_ok_and(|free| free < FULL_DISK)
}

/// Makes the ballast file (allocated, not sparse) in `dir` if it is missing or short.
pub(crate) fn make_ballast(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(BALLAST_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let allocated = nix::fcntl::posix_fallocate(&file, 0, BALLAST_BYTES as i64);
    if let Err(errno) = allocated {
        // A short ballast would promise room that is not there.
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(errno.into());
    }
    Ok(())
}

/// Deletes the ballast in `dir`, giving its room to sled.
pub(crate) fn remove_ballast(dir: &Path) {
    match std::fs::remove_file(dir.join(BALLAST_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, "cannot delete the store's ballast"),
    }
}

/// What became of a flush.
pub(crate) enum Flushed {
    /// sled answered: the bytes written, or its error.
    Done(sled::Result<usize>),
    /// sled did not answer in time; the flush is given up (its thread may never return).
    Stuck,
}

/// A flush for the flush thread: the instance, and where to answer.
type FlushRequest = (sled::Db, std::sync::mpsc::Sender<sled::Result<usize>>);

/// Runs sled's flushes on a thread of its own, so that the writer can stop waiting for one.
#[derive(Default)]
pub(crate) struct Flusher {
    requests: Option<std::sync::mpsc::Sender<FlushRequest>>,
    /// The flush and nudge threads started, each holding the instance while it flushes: the
    /// store is closed only once they let go of it (sled's lock on the directory goes with the
    /// last handle, and a store opened again at once must not find it taken).
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Flushes `db`, waiting at most `patience` (less if the disk is full).
    pub(crate) fn flush(&mut self, path: &Path, db: &sled::Db, patience: Duration) -> Flushed {
        let started = Instant::now();
        let (reply, answer) = std::sync::mpsc::channel();
        let Some(requests) = self.requests() else {
            return Flushed::Done(db.flush());
        };
        if requests.send((db.clone(), reply)).is_err() {
            // The thread is gone; the next flush starts another.
            self.requests = None;
            return Flushed::Done(db.flush());
        }
        let mut nudged = false;
        loop {
            match answer.recv_timeout(FLUSH_POLL) {
                Ok(flushed) => return Flushed::Done(flushed),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    self.requests = None;
                    return Flushed::Done(Err(sled::Error::ReportableBug(
                        "the flush thread stopped".into(),
                    )));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            let waited = started.elapsed();
            if !nudged && waited >= FLUSH_NUDGE_AFTER {
                // sled can record a failed write without waking the flush waiting for it; a
                // second flush sees the error and wakes it (or waits for a slow disk too).
                nudged = true;
                let db = db.clone();
                let nudge = std::thread::Builder::new()
                    .name("minik-store-nudge".into())
                    .spawn(move || {
                        let _ = db.flush();
                    });
                if let Ok(nudge) = nudge {
                    self.keep(nudge);
                }
            }
            if (is_full(path) && waited >= FLUSH_STUCK_ON_FULL_DISK) || waited >= patience {
                // The thread may never come back: the next flush gets a new one.
                self.requests = None;
                return Flushed::Stuck;
            }
        }
    }

    /// Keeps `thread` to wait for at the end, forgetting those that finished.
    fn keep(&mut self, thread: std::thread::JoinHandle<()>) {
        self.threads.retain(|t| !t.is_finished());
        self.threads.push(thread);
    }

    /// Stops the flush thread and waits, at most `patience`, for every thread that may still
    /// hold the instance; one stuck on a full disk is left behind (with the instance it holds).
    pub(crate) fn finish(&mut self, patience: Duration) {
        self.requests = None;
        let deadline = Instant::now() + patience;
        for thread in std::mem::take(&mut self.threads) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("a flush of the store's last instance did not finish in time");
            }
        }
    }

    /// The flush thread's queue, starting the thread if there is none.
    fn requests(&mut self) -> Option<&std::sync::mpsc::Sender<FlushRequest>> {
        if self.requests.is_none() {
            let (requests, incoming) = std::sync::mpsc::channel::<FlushRequest>();
            let started = std::thread::Builder::new()
                .name("minik-store-flush".into())
                .spawn(move || {
                    for (db, reply) in incoming {
                        let flushed = db.flush();
                        // Let go of the instance before answering: the writer may close it.
                        drop(db);
                        let _ = reply.send(flushed);
                    }
                });
            match started {
                Ok(thread) => {
                    self.keep(thread);
                    self.requests = Some(requests);
                }
                Err(e) => tracing::warn!(error = %e, "cannot start the store's flush thread"),
            }
        }
        self.requests.as_ref()
    }
}

/// The error of a flush given up as stuck: on a full disk, that is what it waits on.
pub(crate) fn stuck_flush(path: &Path) -> sled::Error {
    if is_full(path) {
        sled::Error::Io(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "a flush did not finish on a full disk",
        ))
    } else {
        sled::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "a flush did not finish in time",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Regression: a nudge still flushing held the sled instance after the store closed, and
    /// opening the directory again at once failed on sled's lock. `finish` waits for every
    /// thread the flusher started (a slow one stands in for a nudge here).
    #[test]
    fn finish_waits_for_the_threads_that_may_hold_the_instance() {
        let mut flusher = Flusher::default();
        let done = Arc::new(AtomicBool::new(false));
        let slow = {
            let done = done.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                done.store(true, Ordering::SeqCst);
            })
        };
        flusher.keep(slow);
        flusher.finish(Duration::from_secs(30));
        assert!(
            done.load(Ordering::SeqCst),
            "finish returned before the thread ended"
        );
        assert!(flusher.threads.is_empty());
    }
}
