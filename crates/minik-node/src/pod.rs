//! The decisions the agent makes for one pod, shared by every runtime: which containers to
//! start now, when a crashed one may restart (Kubernetes' doubling back-off), and the pod status
//! that reports it all. Pure: the runtime's view and the time come in, a plan comes out.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodStatus,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use crate::runtime::{Exit, Runtime, State};

/// Restart back-off: the first restart is immediate, then `initial`, doubling up to `max`; a
/// container that ran for `reset` before it exited starts over.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset: Duration::from_secs(600),
        }
    }
}

/// How one run of a container ended, as the status reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    pub exit: Exit,
    pub started_at: SystemTime,
    pub container_id: String,
}

impl Terminated {
    fn reason(&self) -> &'static str {
        if self.exit.oom_killed {
            "OOMKilled"
        } else if self.exit.status_unknown {
            "ContainerStatusUnknown"
        } else if self.exit.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }

    fn to_state(&self) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: self.exit.code,
                signal: self.exit.signal,
                reason: Some(self.reason().into()),
                started_at: Some(time(self.started_at)),
                finished_at: Some(time(self.exit.finished_at)),
                container_id: Some(self.container_id.clone()),
                message: self.exit.status_unknown.then(|| {
                    "The container could not be located when the node agent restarted: it \
                     ended while the agent was not watching it, so its exit code is unknown"
                        .to_owned()
                }),
            }),
            ..Default::default()
        }
    }
}

/// What the agent remembers about one container between passes.
#[derive(Clone, Debug, Default)]
pub struct ContainerRecord {
    /// Runtime id of the current (or last) instance.
    pub instance: Option<String>,
    /// How many instances were started: names the next one.
    pub attempts: u32,
    pub restart_count: i32,
    /// The end of the current instance, once seen.
    pub terminated: Option<Terminated>,
    /// The end of the instance before the current one (`lastState`).
    pub last_terminated: Option<Terminated>,
    /// Why the container is not running, when it is waiting: (reason, message).
    pub waiting: Option<(String, String)>,
    /// The delay before the next restart; `None` means the next restart is immediate.
    pub backoff: Option<Duration>,
    /// No start before this.
    pub not_before: Option<Instant>,
    /// The delay that `not_before` came from, for the CrashLoopBackOff message.
    pub current_delay: Duration,
    /// When the current instance was started, by the agent's clock.
    pub started: Option<Instant>,
}

/// What the agent remembers about one pod.
#[derive(Clone, Debug)]
pub struct PodRecord {
    pub uid: String,
    pub start_time: SystemTime,
    pub containers: BTreeMap<String, ContainerRecord>,
}

impl PodRecord {
    pub fn new(uid: &str, start_time: SystemTime) -> Self {
        PodRecord {
            uid: uid.to_owned(),
            start_time,
            containers: BTreeMap::new(),
        }
    }
}

/// The outcome of one pass: containers to start now, and when to look again.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub start: Vec<String>,
    pub requeue_after: Option<Duration>,
}

impl Plan {
    fn look_again_in(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// How the kubelet names a pod in messages: `name_namespace(uid)`.
pub fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// One pass over a pod that is not being deleted: folds what the runtime reports into the
/// record and plans the starts that are due.
pub fn reconcile(
    pod: &Pod,
    record: &mut PodRecord,
    runtime: &dyn Runtime,
    now: Instant,
    backoff: &Backoff,
) -> Plan {
    let mut plan = Plan::default();
    let policy = restart_policy(pod).to_owned();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for container in containers {
        let record = record.containers.entry(container.name.clone()).or_default();
        let state = record
            .instance
            .as_deref()
            .map_or(State::Unknown, |id| runtime.state(id));
        match state {
            State::Running { .. } => {
                record.waiting = None;
                let ran = record
                    .started
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                if ran >= backoff.reset {
                    record.backoff = None;
                } else if record.backoff.is_some() {
                    plan.look_again_in(backoff.reset - ran);
                }
            }
            State::Exited { started_at, exit } => {
                if record.terminated.is_none() {
                    let ran = record
                        .started
                        .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                    if ran >= backoff.reset {
                        record.backoff = None;
                    }
                    record.terminated = Some(Terminated {
                        exit: exit.clone(),
                        started_at,
                        container_id: container_id(record.instance.as_deref().unwrap_or_default()),
                    });
                    let restart = match policy.as_str() {
                        "Never" => false,
                        "OnFailure" => exit.code != 0,
                        _ => true,
                    };
                    if restart {
                        let delay = record.backoff.unwrap_or(Duration::ZERO);
                        record.not_before = Some(now + delay);
                        record.current_delay = delay;
                        record.backoff = Some(match record.backoff {
                            None => backoff.initial,
                            Some(d) => (d * 2).min(backoff.max),
                        });
                    } else {
                        record.not_before = None;
                    }
                }
                match record.not_before {
                    Some(at) if at <= now => plan.start.push(container.name.clone()),
                    Some(at) => {
                        let delay = at - now;
                        record.waiting = Some((
                            "CrashLoopBackOff".into(),
                            format!(
                                "back-off {} restarting failed container={} pod={}",
                                render_duration(record.current_delay),
                                container.name,
                                pod_ref(pod)
                            ),
                        ));
                        plan.look_again_in(delay);
                    }
                    None => {}
                }
            }
            State::Unknown => match record.not_before {
                Some(at) if at > now => plan.look_again_in(at - now),
                _ => plan.start.push(container.name.clone()),
            },
        }
    }
    plan
}

/// Takes into the record the instances the runtime has of this pod (ids `uid/name/attempt`)
/// that are newer than what the record knows: started by an earlier agent that died before it
/// recorded them. The newest becomes current, so nothing is started twice.
pub fn adopt_instances(record: &mut PodRecord, runtime_ids: &[String]) {
    for id in runtime_ids {
        let mut parts = id.split('/');
        let (Some(uid), Some(name), Some(attempt), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(attempt) = attempt.parse::<u32>() else {
            continue;
        };
        if uid != record.uid {
            continue;
        }
        let c = record.containers.entry(name.to_owned()).or_default();
        if attempt <= c.attempts {
            continue;
        }
        if let Some(ended) = c.terminated.take() {
            c.last_terminated = Some(ended);
            c.restart_count += 1;
        } else if c.instance.is_some() {
            // The recorded instance ended unseen and was replaced.
            c.restart_count += 1;
        }
        c.attempts = attempt;
        c.instance = Some(id.clone());
        c.waiting = None;
    }
}

/// Records that a start of `name` is being attempted; returns the new instance's id.
pub fn begin_start(record: &mut PodRecord, name: &str, now: Instant) -> String {
    let uid = record.uid.clone();
    let c = record.containers.entry(name.to_owned()).or_default();
    if let Some(ended) = c.terminated.take() {
        c.last_terminated = Some(ended);
        c.restart_count += 1;
    }
    c.attempts += 1;
    let id = format!("{uid}/{name}/{}", c.attempts);
    c.instance = Some(id.clone());
    c.not_before = None;
    c.waiting = None;
    c.started = Some(now);
    id
}

/// Records that starting `name` failed: it waits with the reason, and tries again after the
/// back-off, like a crash.
pub fn start_failed(
    record: &mut PodRecord,
    name: &str,
    reason: &str,
    message: &str,
    now: Instant,
    backoff: &Backoff,
) -> Duration {
    let c = record.containers.entry(name.to_owned()).or_default();
    c.instance = None;
    let delay = c.backoff.unwrap_or(backoff.initial);
    c.backoff = Some((delay * 2).min(backoff.max));
    c.not_before = Some(now + delay);
    c.current_delay = delay;
    c.waiting = Some((reason.to_owned(), message.to_owned()));
    delay
}

fn container_id(instance: &str) -> String {
    format!("minik://{instance}")
}

fn render_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m0s", secs / 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}s", secs.max(1))
    }
}

/// `t` to the second, as a `metav1.Time` holds it.
fn time(t: SystemTime) -> Time {
    Time(minik_api::time::from_unix_seconds(
        minik_api::time::from_system(t).as_second(),
    ))
}

/// The pod status the agent reports: phase, conditions and container statuses, computed from
/// the record and the runtime as Kubernetes' kubelet does. `probed` says, per container name,
/// whether its startup probe passed and whether its readiness probe passes (a running
/// container without probes is both).
pub fn status(
    pod: &Pod,
    record: &PodRecord,
    runtime: &dyn Runtime,
    host_ip: &str,
    pod_ip: &str,
    probed: &dyn Fn(&str) -> (bool, bool),
) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    let mut statuses = Vec::new();
    for container in containers {
        let rec = record
            .containers
            .get(&container.name)
            .cloned()
            .unwrap_or_default();
        let runtime_state = rec
            .instance
            .as_deref()
            .map_or(State::Unknown, |id| runtime.state(id));
        let last_state = rec.last_terminated.as_ref().map(Terminated::to_state);
        let (state, last_state, is_running) = match (&rec.waiting, &runtime_state) {
            (Some((reason, message)), _) => {
                let waiting = ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.clone()),
                        message: Some(message.clone()),
                    }),
                    ..Default::default()
                };
                // While it waits to restart, the run that just ended is the last state.
                let last = rec
                    .terminated
                    .as_ref()
                    .map(Terminated::to_state)
                    .or(last_state);
                (waiting, last, false)
            }
            (None, State::Running { started_at }) => (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(time(*started_at)),
                    }),
                    ..Default::default()
                },
                last_state,
                true,
            ),
            (None, State::Exited { .. }) => match &rec.terminated {
                Some(t) => (t.to_state(), last_state, false),
                None => (ContainerState::default(), last_state, false),
            },
            (None, State::Unknown) => (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..Default::default()
                },
                last_state,
                false,
            ),
        };
        if is_running {
            running += 1;
        } else if state.terminated.is_some() {
            stopped += 1;
            if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
                succeeded += 1;
            }
        } else if last_state.is_some() {
            // Waiting to restart after a run: counts as stopped, not pending.
            stopped += 1;
        } else {
            pending += 1;
        }
        let (started, ready) = probed(&container.name);
        let is_ready = is_running && started && ready;
        statuses.push(ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: rec.instance.as_deref().map(container_id),
            ready: is_ready,
            started: Some(is_running && started),
            restart_count: rec.restart_count,
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        });
    }
    let policy = restart_policy(pod);
    let phase = if pending > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let flag = |b: bool| if b { "True" } else { "False" };
    let conditions = merge_conditions(
        previous.conditions.as_deref().unwrap_or_default(),
        &[
            ("PodReadyToStartContainers", "True", None),
            ("Initialized", "True", None),
            (
                "Ready",
                flag(all_ready),
                (!all_ready).then_some("ContainersNotReady"),
            ),
            (
                "ContainersReady",
                flag(all_ready),
                (!all_ready).then_some("ContainersNotReady"),
            ),
            ("PodScheduled", "True", None),
        ],
        &statuses,
    );
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        host_ip: Some(host_ip.into()),
        pod_ip: Some(pod_ip.into()),
        host_ips: Some(vec![minik_api::k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.into(),
        }]),
        pod_ips: Some(vec![minik_api::k8s_openapi::api::core::v1::PodIP {
            ip: pod_ip.into(),
        }]),
        start_time: Some(time(record.start_time)),
        qos_class: previous.qos_class,
        ..Default::default()
    }
}

/// Sets the conditions, keeping `lastTransitionTime` of those whose status did not change.
fn merge_conditions(
    previous: &[PodCondition],
    wanted: &[(&str, &str, Option<&str>)],
    statuses: &[ContainerStatus],
) -> Vec<PodCondition> {
    let now = time(SystemTime::now());
    wanted
        .iter()
        .map(|(kind, status, reason)| {
            let old = previous.iter().find(|c| c.type_ == *kind);
            let message = reason.map(|_| {
                let not_ready: Vec<&str> = statuses
                    .iter()
                    .filter(|s| !s.ready)
                    .map(|s| s.name.as_str())
                    .collect();
                format!("containers with unready status: [{}]", not_ready.join(" "))
            });
            PodCondition {
                type_: (*kind).into(),
                status: (*status).into(),
                reason: reason.map(str::to_owned),
                message,
                last_transition_time: match old {
                    Some(o) if o.status == *status => o.last_transition_time.clone(),
                    _ => Some(now.clone()),
                },
                last_probe_time: None,
                observed_generation: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerSpec, FakeRuntime};
    use serde_json::json;

    fn pod(policy: &str, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": annotations},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    /// Runs one pass the way the agent does: plan, then start what is due.
    fn pass(pod: &Pod, record: &mut PodRecord, rt: &FakeRuntime, backoff: &Backoff) -> Plan {
        let now = Instant::now();
        let plan = reconcile(pod, record, rt, now, backoff);
        for name in &plan.start {
            let id = begin_start(record, name, now);
            let annotations = pod
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let spec = ContainerSpec {
                id,
                program: "x".into(),
                args: vec![],
                env: vec![],
                working_dir: None,
                log_path: "/dev/null".into(),
                memory_limit: None,
                host_ports: vec![],
                annotations,
            };
            if let Err(e) = rt.start(&spec) {
                start_failed(record, name, e.reason(), &e.to_string(), now, backoff);
            }
        }
        plan
    }

    fn container_status(
        pod: &Pod,
        record: &PodRecord,
        rt: &FakeRuntime,
    ) -> (String, ContainerStatus) {
        let status = status(pod, record, rt, "127.0.0.1", "127.0.0.1", &|_| (true, true));
        (
            status.phase.unwrap(),
            status.container_statuses.unwrap().remove(0),
        )
    }

    fn waiting_reason(s: &ContainerStatus) -> Option<String> {
        s.state.as_ref()?.waiting.as_ref()?.reason.clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashing_container_restarts_with_doubling_back_off() {
        let backoff = Backoff::default();
        let rt = FakeRuntime::new();
        let pod = pod(
            "Always",
            json!({"minik.io/fake-run-seconds": "1", "minik.io/fake-exit-code": "2"}),
        );
        let mut record = PodRecord::new("u1", SystemTime::now());
        assert_eq!(pass(&pod, &mut record, &rt, &backoff).start, ["c"]);
        let (phase, s) = container_status(&pod, &record, &rt);
        assert_eq!(
            (phase.as_str(), s.ready, s.restart_count),
            ("Running", true, 0)
        );

        // Each run lasts 1s; restarts come after 0s, 10s, 20s, 40s, ... capped at 5m.
        let mut expected_restart_count = 0;
        for delay in [0u64, 10, 20, 40, 80, 160, 300, 300] {
            tokio::time::advance(Duration::from_secs(1)).await;
            let plan = pass(&pod, &mut record, &rt, &backoff);
            if delay > 0 {
                assert!(plan.start.is_empty());
                assert_eq!(plan.requeue_after, Some(Duration::from_secs(delay)));
                let (phase, s) = container_status(&pod, &record, &rt);
                assert_eq!(phase, "Running");
                assert_eq!(waiting_reason(&s).as_deref(), Some("CrashLoopBackOff"));
                let message = s.state.unwrap().waiting.unwrap().message.unwrap();
                assert!(
                    message.starts_with(&format!(
                        "back-off {} restarting failed container=c pod=p_ns(u1)",
                        render_duration(Duration::from_secs(delay))
                    )),
                    "{message}"
                );
                assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 2);
                tokio::time::advance(Duration::from_secs(delay)).await;
                assert_eq!(pass(&pod, &mut record, &rt, &backoff).start, ["c"]);
            } else {
                assert_eq!(plan.start, ["c"], "the first restart is immediate");
            }
            expected_restart_count += 1;
            let (_, s) = container_status(&pod, &record, &rt);
            assert_eq!(s.restart_count, expected_restart_count);
            assert!(s.state.unwrap().running.is_some());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_resets_after_a_long_run() {
        let backoff = Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset: Duration::from_secs(60),
        };
        let rt = FakeRuntime::new();
        let pod = pod(
            "Always",
            json!({"minik.io/fake-run-seconds": "100", "minik.io/fake-exit-code": "1"}),
        );
        let mut record = PodRecord::new("u1", SystemTime::now());
        pass(&pod, &mut record, &rt, &backoff);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(100)).await;
            assert_eq!(
                pass(&pod, &mut record, &rt, &backoff).start,
                ["c"],
                "restarted at once after a long run"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn restart_policies_decide_the_phase() {
        let backoff = Backoff::default();
        for (policy, code, restarts, phase) in [
            ("Never", "0", false, "Succeeded"),
            ("Never", "1", false, "Failed"),
            ("OnFailure", "0", false, "Succeeded"),
            ("OnFailure", "1", true, "Running"),
            ("Always", "0", true, "Running"),
        ] {
            let rt = FakeRuntime::new();
            let pod = pod(
                policy,
                json!({"minik.io/fake-run-seconds": "1", "minik.io/fake-exit-code": code}),
            );
            let mut record = PodRecord::new("u1", SystemTime::now());
            pass(&pod, &mut record, &rt, &backoff);
            tokio::time::advance(Duration::from_secs(2)).await;
            let plan = pass(&pod, &mut record, &rt, &backoff);
            assert_eq!(!plan.start.is_empty(), restarts, "{policy} exit {code}");
            if !restarts {
                let (got, s) = container_status(&pod, &record, &rt);
                assert_eq!(got, phase, "{policy} exit {code}");
                let terminated = s.state.unwrap().terminated.unwrap();
                assert_eq!(
                    terminated.reason.as_deref(),
                    Some(if code == "0" { "Completed" } else { "Error" })
                );
                assert!(!s.ready);
            } else {
                assert_eq!(container_status(&pod, &record, &rt).0, phase);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_that_cannot_start_waits_with_the_reason_and_retries() {
        let backoff = Backoff::default();
        let rt = FakeRuntime::new();
        let pod = pod(
            "Always",
            json!({"minik.io/fake-start-error": "executable file not found in $PATH: \"nope\""}),
        );
        let mut record = PodRecord::new("u1", SystemTime::now());
        pass(&pod, &mut record, &rt, &backoff);
        let (phase, s) = container_status(&pod, &record, &rt);
        assert_eq!(phase, "Pending");
        assert_eq!(waiting_reason(&s).as_deref(), Some("RunContainerError"));
        let plan = pass(&pod, &mut record, &rt, &backoff);
        assert!(plan.start.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(pass(&pod, &mut record, &rt, &backoff).start, ["c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_gates_the_ready_conditions() {
        let rt = FakeRuntime::new();
        let pod = pod("Always", json!({}));
        let mut record = PodRecord::new("u1", SystemTime::now());
        pass(&pod, &mut record, &rt, &Backoff::default());
        let not_ready = status(&pod, &record, &rt, "10.0.0.1", "10.0.0.1", &|_| {
            (true, false)
        });
        let cond = |s: &PodStatus, t: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(cond(&not_ready, "Ready"), "False");
        assert_eq!(not_ready.phase.as_deref(), Some("Running"));
        let ready = status(&pod, &record, &rt, "10.0.0.1", "10.0.0.1", &|_| {
            (true, true)
        });
        assert_eq!(cond(&ready, "Ready"), "True");
        assert_eq!(cond(&ready, "ContainersReady"), "True");
        assert_eq!(ready.host_ip.as_deref(), Some("10.0.0.1"));
    }
}
