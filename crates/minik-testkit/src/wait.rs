//! The one deadline policy: a test polls a condition until it holds, and fails after a deadline
//! ([`DEADLINE`] unless the call says otherwise) with a message that names what it waited for
//! and what it saw last. Tests never sleep for a fixed time and never assert on timing.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How long a condition may take before the test fails, unless the call gives its own.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is checked again.
pub const POLL: Duration = Duration::from_millis(25);

/// What one check of a condition answers: done with a value, or not yet with what it saw.
pub trait Outcome {
    type Value;
    /// `Ok(value)` when the condition holds, else what was observed, for the timeout message.
    fn into_outcome(self) -> Result<Self::Value, String>;
}

/// `None` is "not yet", with nothing more to say about what was seen.
impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "None (the check saw nothing to report)".to_owned())
    }
}

/// `Err(seen)` is "not yet", and `seen` is what the timeout message shows.
impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;
    fn into_outcome(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Reads `reader` (a process's output, an attached session's stream) until what it gave
/// contains `want`; answers all it read. Fails the test when the stream ends first or after
/// `deadline`, showing what it read.
pub async fn read_until<R>(reader: &mut R, want: &str, deadline: Duration) -> String
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
{
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains(want) {
            let n = reader.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        true
    };
    let found = tokio::time::timeout(deadline, read).await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    match found {
        Ok(true) => text,
        Ok(false) => panic!("the stream ended before {want:?}; it gave {text:?}"),
        Err(_) => timed_out(&format!("{want:?} in a stream"), deadline, &text),
    }
}

fn timed_out(what: &str, deadline: Duration, last: &str) -> ! {
    panic!("timed out after {deadline:?} waiting for {what}; last observed: {last}")
}

/// Polls `check` every [`POLL`] until it answers a value; fails the test after `deadline`,
/// naming `what` and the last thing `check` observed. The clock is tokio's, so a test with paused
/// time waits in virtual time.
pub async fn wait_for<O, F, Fut>(what: &str, deadline: Duration, mut check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let last = match check().await.into_outcome() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= until {
            timed_out(what, deadline, &last);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The same policy for tests that run outside an async runtime (the CLI's).
pub mod blocking {
    use std::time::{Duration, Instant};

    use super::{timed_out, Outcome, POLL};

    /// Polls `check` every [`POLL`] until it answers a value; fails the test after `deadline`,
    /// naming `what` and the last thing `check` observed.
    pub fn wait_for<O: Outcome>(
        what: &str,
        deadline: Duration,
        mut check: impl FnMut() -> O,
    ) -> O::Value {
        let until = Instant::now() + deadline;
        loop {
            let last = match check().into_outcome() {
                Ok(value) => return value,
                Err(seen) => seen,
            };
            if Instant::now() >= until {
                timed_out(what, deadline, &last);
            }
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_holds_gives_its_value() {
        let mut n = 0;
        let got = wait_for("n to reach 3", DEADLINE, || {
            n += 1;
            let now = n;
            async move { (now >= 3).then_some(now) }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 2s waiting for the moon; last observed: \"seen 2\"")]
    async fn a_timeout_names_what_was_awaited_and_the_last_observation() {
        let mut n = 0;
        wait_for("the moon", Duration::from_secs(2), || {
            n += 1;
            let seen = format!("seen {}", n.min(2));
            async move { Err::<(), _>(seen) }
        })
        .await;
    }

    #[test]
    #[should_panic(expected = "waiting for nothing; last observed: None")]
    fn the_blocking_policy_fails_the_same_way() {
        blocking::wait_for("nothing", Duration::from_millis(60), || None::<()>);
    }
}
