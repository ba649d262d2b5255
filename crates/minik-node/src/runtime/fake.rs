//! A runtime without processes, like Kubernetes' hollow nodes: containers "run" until stopped,
//! or for as long as the pod's annotations say, then "exit" with the code they say. It lets the
//! agent's logic be tested, and clusters of thousands of pods be simulated, on one machine.
//!
//! Annotations read (on the pod; a `.<container>` suffix narrows one to a container):
//! - `minik.io/fake-run-seconds`: run this long, then exit (fractions allowed);
//! - `minik.io/fake-exit-code`: the exit code when it exits (default 0);
//! - `minik.io/fake-start-error`: refuse to start, with this message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{ContainerSpec, Exit, Runtime, StartError, Started, State};
use crate::BoxFuture;

pub const RUN_SECONDS: &str = "minik.io/fake-run-seconds";
pub const EXIT_CODE: &str = "minik.io/fake-exit-code";
pub const START_ERROR: &str = "minik.io/fake-start-error";

struct Fake {
    started: Instant,
    started_at: SystemTime,
    run_for: Option<Duration>,
    exit_code: i32,
    stopped: Option<Exit>,
}

/// The fake runtime. Cheap to clone; clones share their containers.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    containers: Arc<Mutex<HashMap<String, Fake>>>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Fake>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The value of `key` for this container: `key.<container>` first, then `key`.
fn annotation<'a>(spec: &'a ContainerSpec, key: &str) -> Option<&'a str> {
    let container = spec.id.split('/').nth(1).unwrap_or_default();
    let specific = format!("{key}.{container}");
    let find = |k: &str| {
        spec.annotations
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    };
    find(&specific).or_else(|| find(key))
}

impl Runtime for FakeRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<Started, StartError> {
        if let Some(message) = annotation(spec, START_ERROR) {
            return Err(StartError::Failed(message.to_owned()));
        }
        let run_for = annotation(spec, RUN_SECONDS)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let exit_code = annotation(spec, EXIT_CODE)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.lock().insert(
            spec.id.clone(),
            Fake {
                started: Instant::now(),
                started_at: SystemTime::now(),
                run_for,
                exit_code,
                stopped: None,
            },
        );
        Ok(Started {
            program: spec.program.clone().into(),
            limit_not_enforced: None,
        })
    }

    fn stop(&self, id: &str, _grace: Duration) -> BoxFuture<'_, ()> {
        let id = id.to_owned();
        Box::pin(async move {
            if let Some(fake) = self.lock().get_mut(&id) {
                if fake.stopped.is_none() && !finished(fake) {
                    // A fake container honours SIGTERM at once, as a well-behaved process does.
                    fake.stopped = Some(Exit::code(143, Some(15), SystemTime::now()));
                }
            }
        })
    }

    fn state(&self, id: &str) -> State {
        match self.lock().get(id) {
            None => State::Unknown,
            Some(fake) => {
                if let Some(exit) = &fake.stopped {
                    return State::Exited {
                        started_at: fake.started_at,
                        exit: exit.clone(),
                    };
                }
                match fake.run_for {
                    Some(run_for) if finished(fake) => State::Exited {
                        started_at: fake.started_at,
                        exit: Exit::code(fake.exit_code, None, fake.started_at + run_for),
                    },
                    _ => State::Running {
                        started_at: fake.started_at,
                    },
                }
            }
        }
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn containers(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

fn finished(fake: &Fake) -> bool {
    fake.run_for.is_some_and(|d| fake.started.elapsed() >= d)
}
