//! The allocator's settings, made before anything else runs.
//!
//! mimalloc keeps memory that was freed for a while before it gives it back to the system (its
//! "purge delay"): a second, in mimalloc 3. Such memory is only given back when the allocator
//! runs again after the delay, so a server that has just filled its caches holds on to what it
//! used on the way. With 10,000 pods, that was 160-170 MB of RSS instead of 146 MB
//! (docs/benchmarks.md, "Giving memory back at once"). The CPU cost measured nothing.
//!
//! minik makes the delay 0: memory is given back as soon as a page of it is free.
//! `MIMALLOC_PURGE_DELAY` in the environment still decides, for operators who trade memory
//! for speed the other way (docs/operations.md).

use libmimalloc_sys::{mi_option_get, mi_option_set_default, mi_option_t};

/// `mi_option_purge_delay`: its place in `mi_option_e` in mimalloc 3's `mimalloc.h`, which the
/// Rust bindings do not name. The test below checks it against `MIMALLOC_PURGE_DELAY`.
const PURGE_DELAY: mi_option_t = 15;

/// minik's purge delay in milliseconds, where the environment sets none.
pub const DEFAULT_PURGE_DELAY_MS: i64 = 0;

/// Sets minik's defaults; an option set in the environment (`MIMALLOC_*`) keeps its value.
pub fn configure() {
    // SAFETY: mimalloc's options are plain integers in a static table; setting a default is a
    // store that mimalloc reads on its next purge.
    unsafe { mi_option_set_default(PURGE_DELAY, DEFAULT_PURGE_DELAY_MS as _) };
}

/// The purge delay in force, in milliseconds.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: a read of mimalloc's option table.
    unsafe { mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "MINIK_TEST_PURGE_DELAY_CHILD";

    /// Run in a child process with `MIMALLOC_PURGE_DELAY` set: prints what the option at
    /// [`PURGE_DELAY`] holds after [`configure`].
    #[test]
    fn child_reports_the_purge_delay() {
        if std::env::var_os(CHILD).is_some() {
            configure();
            println!("purge_delay={}", purge_delay_ms());
        }
    }

    fn child_purge_delay(env: Option<&str>) -> i64 {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "allocator::tests::child_reports_the_purge_delay"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env_remove("MIMALLOC_PURGE_DELAY");
        if let Some(value) = env {
            command.env("MIMALLOC_PURGE_DELAY", value);
        }
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        // The harness prints the test's name first, on the same line.
        let value = stdout
            .split("purge_delay=")
            .nth(1)
            .unwrap_or_else(|| panic!("the child printed no purge delay: {stdout}"));
        let digits: String = value
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        digits.parse().unwrap()
    }

    /// The option minik sets is the one `MIMALLOC_PURGE_DELAY` sets, and the environment wins.
    #[test]
    fn the_default_is_minik_s_and_the_environment_overrides_it() {
        assert_eq!(child_purge_delay(None), DEFAULT_PURGE_DELAY_MS);
        assert_eq!(child_purge_delay(Some("4321")), 4321);
    }
}
