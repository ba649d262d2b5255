//! A runtime without processes, like Kubernetes' hollow nodes: containers "run" until stopped,
//! or for as long as their [`FakeScript`] says, then "exit" with the code it says. It lets the
//! agent's logic be tested, and clusters of thousands of pods be simulated, on one machine.
//!
//! The runtime (and the fake probe checker, `probe::FakeChecker`) take their instructions as a
//! typed [`FakeScript`], carried by `ContainerSpec::fake` and `probe::Target::fake`; neither
//! reads annotations. The pod's annotations stay the wire format, read in one place,
//! [`FakeScript::of`], when the agent builds a container's spec: a fake node is usually another
//! process (`minik node --runtime fake`) and the pod object is the only thing a test can hand
//! it through the API, which is how kwok and Kubernetes' hollow nodes are scripted too.
//!
//! Annotations read (on the pod; a `.<container>` suffix narrows one to a container):
//! - `minik.io/fake-run-seconds`: run this long, then exit (fractions allowed);
//! - `minik.io/fake-exit-code`: the exit code when it exits (default 0);
//! - `minik.io/fake-start-error`: refuse to start, with this message;
//! - `minik.io/fake-probe-fail`: the probes whose checks fail (`startup`, `liveness`,
//!   `readiness`, comma-separated).
//!
//! A value the script cannot read makes the fake container refuse to start, with a message
//! naming the annotation; other runtimes ignore the script.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use super::{ContainerSpec, Exit, Runtime, StartError, Started, State};
use crate::probe::ProbeKind;
use crate::BoxFuture;

pub const RUN_SECONDS: &str = "minik.io/fake-run-seconds";
pub const EXIT_CODE: &str = "minik.io/fake-exit-code";
pub const START_ERROR: &str = "minik.io/fake-start-error";
pub const PROBE_FAIL: &str = "minik.io/fake-probe-fail";

/// What the fake runtime does with one container. The default runs until stopped and passes
/// every probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeScript {
    /// Run this long, then exit; `None` runs until stopped.
    pub run_for: Option<Duration>,
    /// The exit code when it exits by itself.
    pub exit_code: i32,
    /// Refuse to start, with this message.
    pub start_error: Option<String>,
    /// The probes whose checks fail.
    pub failing_probes: Vec<ProbeKind>,
}

impl FakeScript {
    /// The script of container `container` of `pod`, from the pod's annotations (see the
    /// module documentation). Never fails: a value it cannot read becomes a start error.
    pub fn of(pod: &Pod, container: &str) -> FakeScript {
        let annotations = pod.metadata.annotations.as_ref();
        let value = |key: &'static str| {
            let annotations = annotations?;
            annotations
                .get(&format!("{key}.{container}"))
                .or_else(|| annotations.get(key))
                .map(|v| (v.as_str(), key))
        };
        let mut script = FakeScript::default();
        let mut problems = Vec::new();
        if let Some((v, key)) = value(RUN_SECONDS) {
            match v
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            {
                Some(d) => script.run_for = Some(d),
                None => problems.push(format!(
                    "annotation {key}: {v:?} is not a duration in seconds"
                )),
            }
        }
        if let Some((v, key)) = value(EXIT_CODE) {
            match v.trim().parse::<i32>() {
                Ok(code) => script.exit_code = code,
                Err(_) => problems.push(format!("annotation {key}: {v:?} is not an exit code")),
            }
        }
        if let Some((v, key)) = value(PROBE_FAIL) {
            for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match [
                    ProbeKind::Startup,
                    ProbeKind::Liveness,
                    ProbeKind::Readiness,
                ]
                .into_iter()
                .find(|k| k.name().eq_ignore_ascii_case(name))
                {
                    Some(kind) => script.failing_probes.push(kind),
                    None => problems.push(format!(
                        "annotation {key}: {name:?} is not a probe (startup, liveness, readiness)"
                    )),
                }
            }
        }
        script.start_error = match value(START_ERROR) {
            Some((message, _)) => Some(message.to_owned()),
            None if !problems.is_empty() => Some(problems.join("; ")),
            None => None,
        };
        script
    }

    /// Whether the checks of probe `kind` fail.
    pub fn fails(&self, kind: ProbeKind) -> bool {
        self.failing_probes.contains(&kind)
    }
}

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

impl Runtime for FakeRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<Started, StartError> {
        let script = &spec.fake;
        if let Some(message) = &script.start_error {
            return Err(StartError::Failed(message.clone()));
        }
        self.lock().insert(
            spec.id.clone(),
            Fake {
                started: Instant::now(),
                started_at: SystemTime::now(),
                run_for: script.run_for,
                exit_code: script.exit_code,
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

    fn exec(&self, _id: &str, _request: &super::ExecRequest) -> Result<super::ExecProcess, String> {
        Err("the fake runtime runs no processes".into())
    }
}

#[cfg(test)]
impl ContainerSpec {
    /// A container for the fake runtime alone: `fake` is all it does.
    pub(crate) fn faked(id: impl Into<String>, fake: FakeScript) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            program: "x".into(),
            args: vec![],
            env: vec![],
            working_dir: None,
            log_path: "/dev/null".into(),
            memory_limit: None,
            host_ports: vec![],
            fake,
            image: None,
            handler: None,
            mounts: Vec::new(),
            stdio: Default::default(),
        }
    }
}

fn finished(fake: &Fake) -> bool {
    fake.run_for.is_some_and(|d| fake.started.elapsed() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "annotations": annotations}}))
            .unwrap()
    }

    fn spec(id: &str, fake: FakeScript) -> ContainerSpec {
        ContainerSpec::faked(id, fake)
    }

    #[test]
    fn the_script_is_read_from_the_pods_annotations() {
        let run_for = |secs: f64| Some(Duration::from_secs_f64(secs));
        let refused = |message: &str| FakeScript {
            start_error: Some(message.to_owned()),
            ..Default::default()
        };
        for (annotations, container, expected) in [
            (json!(null), "c", FakeScript::default()),
            (
                json!({RUN_SECONDS: "1.5", EXIT_CODE: "3", PROBE_FAIL: "Liveness, readiness"}),
                "c",
                FakeScript {
                    run_for: run_for(1.5),
                    exit_code: 3,
                    start_error: None,
                    failing_probes: vec![ProbeKind::Liveness, ProbeKind::Readiness],
                },
            ),
            // A `.<container>` suffix narrows an annotation to one container.
            (
                json!({RUN_SECONDS: "1", "minik.io/fake-run-seconds.web": "9"}),
                "web",
                FakeScript {
                    run_for: run_for(9.0),
                    ..Default::default()
                },
            ),
            (
                json!({RUN_SECONDS: "1", "minik.io/fake-run-seconds.web": "9"}),
                "db",
                FakeScript {
                    run_for: run_for(1.0),
                    ..Default::default()
                },
            ),
            (json!({START_ERROR: "no such image"}), "c", refused("no such image")),
            // What it cannot read, it refuses to start with, naming the annotation.
            (
                json!({RUN_SECONDS: "soon"}),
                "c",
                refused("annotation minik.io/fake-run-seconds: \"soon\" is not a duration in seconds"),
            ),
            (
                json!({RUN_SECONDS: "-1"}),
                "c",
                refused("annotation minik.io/fake-run-seconds: \"-1\" is not a duration in seconds"),
            ),
            (
                json!({EXIT_CODE: "3.5", PROBE_FAIL: "liveness,sometimes"}),
                "c",
                FakeScript {
                    failing_probes: vec![ProbeKind::Liveness],
                    ..refused("annotation minik.io/fake-exit-code: \"3.5\" is not an exit code; annotation minik.io/fake-probe-fail: \"sometimes\" is not a probe (startup, liveness, readiness)")
                },
            ),
        ] {
            assert_eq!(
                FakeScript::of(&pod(annotations.clone()), container),
                expected,
                "{annotations} for {container}"
            );
        }
    }

    /// `Duration::from_secs_f64` panics on values too large for a `Duration`: the agent started
    /// such a container with a panic.
    #[test]
    fn a_run_time_too_long_for_a_duration_is_refused_not_a_panic() {
        for huge in ["1e300", "inf", "NaN", "18446744073709551616"] {
            let script = FakeScript::of(&pod(json!({RUN_SECONDS: huge})), "c");
            assert_eq!(
                script.start_error,
                Some(format!(
                    "annotation minik.io/fake-run-seconds: {huge:?} is not a duration in seconds"
                )),
            );
            let rt = FakeRuntime::new();
            assert!(matches!(
                rt.start(&spec("u1/c/1", script)),
                Err(StartError::Failed(_))
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn containers_run_exit_and_stop_as_scripted() {
        let rt = FakeRuntime::new();
        let script = FakeScript {
            run_for: Some(Duration::from_secs(2)),
            exit_code: 4,
            ..Default::default()
        };
        rt.start(&spec("u1/short/1", script)).unwrap();
        rt.start(&spec("u1/long/1", FakeScript::default())).unwrap();
        assert!(matches!(rt.state("u1/short/1"), State::Running { .. }));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(rt.state("u1/short/1"), State::Exited { exit, .. } if exit.code == 4));
        assert!(matches!(rt.state("u1/long/1"), State::Running { .. }));
        rt.stop("u1/long/1", Duration::from_secs(30)).await;
        assert!(matches!(
            rt.state("u1/long/1"),
            State::Exited { exit, .. } if exit.code == 143 && exit.signal == Some(15)
        ));
        rt.remove("u1/long/1");
        assert_eq!(rt.state("u1/long/1"), State::Unknown);
        assert_eq!(rt.containers(), ["u1/short/1"]);
    }
}
