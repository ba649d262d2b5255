//! Tests that need root or a kernel feature (cgroups, a tmpfs mount): where it is missing such a
//! test says so and returns on a developer's machine, but under `CI=true` it fails, so that CI
//! never passes a test that did not run.

use std::fmt::Display;

/// Whether this is a CI run (`CI=true`), where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Called by a test that cannot run on this host, just before it returns: under `CI=true` it
/// fails the test, naming what is missing and why; elsewhere it leaves a note on stderr.
///
/// ```ignore
/// if let Err(why) = MemoryCgroups::detect() {
///     minik_testkit::cannot_run("memory cgroups", why);
///     return;
/// }
/// ```
pub fn cannot_run(needs: &str, why: impl Display) {
    cannot_run_in(in_ci(), needs, why)
}

fn cannot_run_in(ci: bool, needs: &str, why: impl Display) {
    let message = format!("this test needs {needs}, which this host does not give: {why}");
    if ci {
        panic!("{message} (CI=true: a test that cannot run fails)");
    }
    eprintln!("skipped: {message} (under CI=true this fails)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "this test needs root, which this host does not give: EPERM (CI=true"
    )]
    fn under_ci_a_test_that_cannot_run_fails() {
        cannot_run_in(true, "root", "EPERM");
    }

    #[test]
    fn elsewhere_it_leaves_a_note() {
        cannot_run_in(false, "root", "EPERM");
    }
}
