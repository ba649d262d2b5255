//! What the agent remembers about each pod (its record: instances, restarts, back-off), the
//! pure updates of that record when a container is started or fails to start, and the pod
//! status that reports it all, as the kubelet computes it. The decisions themselves — what to
//! start, stop or wait for — are `plan.rs`'s. Pure: the runtime's view and the time come in.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use crate::plan::View;
use crate::runtime::{Exit, State};

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
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// The image the current (or last) instance runs from, as `imageID` reports it (the repo
    /// digest); `None` for runtimes that run no images.
    pub image_id: Option<String>,
    /// Its reference as `image` reports it (normalised); `None`: the spec's, as written.
    pub image: Option<String>,
}

/// What the agent remembers about one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRecord {
    pub uid: String,
    pub start_time: SystemTime,
    pub containers: BTreeMap<String, ContainerRecord>,
    /// The pod failed as a whole, why (reason, message): evicted, or past its
    /// `activeDeadlineSeconds`. Nothing of it starts again.
    pub failed: Option<(String, String)>,
}

impl PodRecord {
    pub fn new(uid: &str, start_time: SystemTime) -> Self {
        PodRecord {
            uid: uid.to_owned(),
            start_time,
            containers: BTreeMap::new(),
            failed: None,
        }
    }
}

pub(crate) fn restart_policy(pod: &Pod) -> &str {
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

/// Records that `name` cannot start until something it reads from the API appears (a
/// ConfigMap, a Secret, a key of one: `CreateContainerConfigError`, or a volume's source:
/// `ContainerCreating` after `FailedMount`): it waits with the reason and is tried again as soon
/// as it is looked at — when the object changes — or after the back-off, which grows as for a
/// failed start. Returns the back-off.
pub fn wait_for_config(
    record: &mut PodRecord,
    name: &str,
    reason: &str,
    message: &str,
    now: Instant,
    backoff: &Backoff,
) -> Duration {
    let delay = start_failed(record, name, reason, message, now, backoff);
    if let Some(c) = record.containers.get_mut(name) {
        c.not_before = None;
    }
    delay
}

pub(crate) fn container_id(instance: &str) -> String {
    format!("minik://{instance}")
}

pub(crate) fn render_duration(d: Duration) -> String {
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

/// The pod status the agent reports at `now`: phase, conditions and container statuses,
/// computed from the record and what the runtime and the probes say (`view`) as Kubernetes'
/// kubelet does.
pub fn status(
    pod: &Pod,
    record: &PodRecord,
    view: &View,
    now: SystemTime,
    host_ip: &str,
    pod_ip: Option<&str>,
) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let init_containers = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let record_of = |name: &str| record.containers.get(name).cloned().unwrap_or_default();
    // Init containers: done when each ran to success (a sidecar: runs); failed for good when
    // one failed and the pod restarts nothing.
    let mut init_statuses = Vec::new();
    let mut incomplete = Vec::new();
    let mut init_failed = false;
    for container in init_containers {
        let rec = record_of(&container.name);
        let (status, _) = container_status(container, &rec, view);
        let sidecar = crate::plan::is_sidecar(container);
        let done = if sidecar {
            status.started == Some(true)
        } else {
            crate::plan::completed(&rec)
        };
        if !done {
            incomplete.push(container.name.clone());
            let failed = status
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0);
            if failed && restart_policy(pod) == "Never" {
                init_failed = true;
            }
        }
        init_statuses.push(status);
    }
    let initialized = incomplete.is_empty();
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    let mut statuses = Vec::new();
    for container in containers {
        let rec = record_of(&container.name);
        let (status, class) = container_status(container, &rec, view);
        match class {
            Class::Running => running += 1,
            Class::Succeeded => {
                stopped += 1;
                succeeded += 1;
            }
            Class::Stopped => stopped += 1,
            Class::Pending => pending += 1,
        }
        statuses.push(status);
    }
    let policy = restart_policy(pod);
    // A pod failed as a whole (evicted, past its deadline) or by an init container that is
    // never retried.
    let phase = if record.failed.is_some() || init_failed {
        "Failed"
    } else if !initialized || pending > 0 {
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
        now,
        &[
            // The sandbox (with its network) is made: the kubelet's condition. A pod that is
            // to have an address of its own and has none yet is not ready to start.
            ("PodReadyToStartContainers", flag(pod_ip.is_some()), None),
            (
                "Initialized",
                flag(initialized),
                (!initialized).then_some("ContainersNotInitialized"),
            ),
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
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: Some(host_ip.into()),
        pod_ip: pod_ip.map(str::to_owned),
        host_ips: Some(vec![minik_api::k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.into(),
        }]),
        pod_ips: pod_ip
            .map(|ip| vec![minik_api::k8s_openapi::api::core::v1::PodIP { ip: ip.to_owned() }]),
        start_time: Some(time(record.start_time)),
        qos_class: previous.qos_class,
        reason: record.failed.as_ref().map(|(reason, _)| reason.clone()),
        message: record.failed.as_ref().map(|(_, message)| message.clone()),
        ..Default::default()
    }
}

/// What a container counts as in the pod's phase.
enum Class {
    Running,
    Succeeded,
    Stopped,
    Pending,
}

/// One container's status from its record and what the runtime and probes say of it.
fn container_status(
    container: &Container,
    rec: &ContainerRecord,
    view: &View,
) -> (ContainerStatus, Class) {
    let runtime_state = view.state(rec.instance.as_deref());
    let last_state = rec.last_terminated.as_ref().map(Terminated::to_state);
    let (state, last_state, is_running) = match (&rec.waiting, &runtime_state) {
        (Some((reason, message)), _) => {
            let waiting = ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
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
        (None, State::Unknown) => match &rec.terminated {
            // An init container that completed, whose instance the runtime forgot.
            Some(t) => (t.to_state(), last_state, false),
            None => (
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
        },
    };
    let class = if is_running {
        Class::Running
    } else if let Some(t) = &state.terminated {
        if t.exit_code == 0 {
            Class::Succeeded
        } else {
            Class::Stopped
        }
    } else if last_state.is_some() {
        // Waiting to restart after a run: counts as stopped, not pending.
        Class::Stopped
    } else {
        Class::Pending
    };
    let (started, ready) = view.probed(rec.instance.as_deref());
    let is_ready = is_running && started && ready;
    let status = ContainerStatus {
        name: container.name.clone(),
        image: rec
            .image
            .clone()
            .or_else(|| container.image.clone())
            .unwrap_or_default(),
        image_id: rec.image_id.clone().unwrap_or_default(),
        container_id: rec.instance.as_deref().map(container_id),
        ready: is_ready,
        started: Some(is_running && started),
        restart_count: rec.restart_count,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    };
    (status, class)
}

/// Sets the conditions, keeping `lastTransitionTime` of those whose status did not change.
fn merge_conditions(
    previous: &[PodCondition],
    now: SystemTime,
    wanted: &[(&str, &str, Option<&str>)],
    statuses: &[ContainerStatus],
) -> Vec<PodCondition> {
    let now = time(now);
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
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn wall(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn pod(policy: &str, containers: &[&str]) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    /// A container running since `wall(100)`.
    pub(crate) fn running() -> State {
        State::Running {
            started_at: wall(100),
        }
    }

    /// A container that ran from `wall(100)` to `wall(105)` and exited with `code`.
    pub(crate) fn exited(code: i32) -> State {
        State::Exited {
            started_at: wall(100),
            exit: Exit::code(code, None, wall(105)),
        }
    }

    /// A record whose containers each ran one instance, `None` meaning not started yet, and
    /// the view in which each instance is in the state given; an exit is recorded as the
    /// plan records it.
    fn recorded(containers: &[(&str, Option<State>)]) -> (PodRecord, View) {
        let mut record = PodRecord::new("u1", wall(50));
        let mut view = View::default();
        for (name, state) in containers {
            let c = record.containers.entry((*name).to_owned()).or_default();
            let Some(state) = state else { continue };
            let instance = format!("u1/{name}/1");
            c.instance = Some(instance.clone());
            c.attempts = 1;
            if let State::Exited { started_at, exit } = state {
                c.terminated = Some(Terminated {
                    exit: exit.clone(),
                    started_at: *started_at,
                    container_id: container_id(&instance),
                });
            }
            view.states.insert(instance, state.clone());
        }
        (record, view)
    }

    fn condition(status: &PodStatus, kind: &str) -> PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
            .clone()
    }

    #[test]
    fn the_phase_follows_the_containers_and_the_restart_policy() {
        for (policy, containers, phase) in [
            ("Always", vec![("a", None)], "Pending"),
            (
                "Always",
                vec![("a", Some(running())), ("b", None)],
                "Pending",
            ),
            ("Always", vec![("a", Some(running()))], "Running"),
            (
                "Never",
                vec![("a", Some(running())), ("b", Some(exited(1)))],
                "Running",
            ),
            ("Always", vec![("a", Some(exited(0)))], "Running"),
            (
                "Never",
                vec![("a", Some(exited(0))), ("b", Some(exited(0)))],
                "Succeeded",
            ),
            (
                "Never",
                vec![("a", Some(exited(0))), ("b", Some(exited(1)))],
                "Failed",
            ),
            ("OnFailure", vec![("a", Some(exited(0)))], "Succeeded"),
            (
                "OnFailure",
                vec![("a", Some(exited(0))), ("b", Some(exited(2)))],
                "Running",
            ),
        ] {
            let names: Vec<&str> = containers.iter().map(|(n, _)| *n).collect();
            let (record, view) = recorded(&containers);
            let status = status(
                &pod(policy, &names),
                &record,
                &view,
                wall(200),
                "10.0.0.1",
                Some("10.0.0.1"),
            );
            assert_eq!(
                status.phase.as_deref(),
                Some(phase),
                "{policy} {containers:?}"
            );
        }
    }

    #[test]
    fn init_containers_are_reported_and_hold_the_pod_pending() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}],
                "containers": [{"name": "app", "image": "busybox"}],
            }
        }))
        .unwrap();
        let report = |containers: &[(&str, Option<State>)]| {
            let (mut record, view) = recorded(containers);
            if let Some(app) = record.containers.get_mut("app") {
                if app.instance.is_none() {
                    app.waiting = Some(("PodInitializing".into(), String::new()));
                }
            }
            status(
                &pod,
                &record,
                &view,
                wall(200),
                "10.0.0.1",
                Some("10.0.0.1"),
            )
        };
        // `one` completed, `two` runs: Pending, not initialized, the app waits.
        let s = report(&[
            ("one", Some(exited(0))),
            ("two", Some(running())),
            ("app", None),
        ]);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let initialized = condition(&s, "Initialized");
        assert_eq!(
            (initialized.status.as_str(), initialized.reason.as_deref()),
            ("False", Some("ContainersNotInitialized"))
        );
        let inits = s.init_container_statuses.as_ref().unwrap();
        assert_eq!(inits.len(), 2);
        let done = inits[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(
            (done.exit_code, done.reason.as_deref()),
            (0, Some("Completed"))
        );
        assert!(inits[1].state.as_ref().unwrap().running.is_some());
        let app = s.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap();
        assert_eq!(
            app.waiting.unwrap().reason.as_deref(),
            Some("PodInitializing")
        );
        // `two` failed and the pod never restarts: Failed.
        let s = report(&[
            ("one", Some(exited(0))),
            ("two", Some(exited(1))),
            ("app", None),
        ]);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        // Both completed and the app runs: Running, initialized.
        let s = report(&[
            ("one", Some(exited(0))),
            ("two", Some(exited(0))),
            ("app", Some(running())),
        ]);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&s, "Initialized").status, "True");
    }

    #[test]
    fn readiness_gates_the_ready_conditions() {
        let pod = pod("Always", &["c"]);
        let (record, mut view) = recorded(&[("c", Some(running()))]);
        view.probes.insert(
            "u1/c/1".into(),
            crate::probe::Verdict {
                started: true,
                ready: false,
                ..Default::default()
            },
        );
        let not_ready = status(
            &pod,
            &record,
            &view,
            wall(200),
            "10.0.0.1",
            Some("10.0.0.1"),
        );
        assert_eq!(condition(&not_ready, "Ready").status, "False");
        assert_eq!(
            condition(&not_ready, "ContainersReady").message.as_deref(),
            Some("containers with unready status: [c]")
        );
        assert_eq!(not_ready.phase.as_deref(), Some("Running"));
        view.probes.clear();
        let ready = status(
            &pod,
            &record,
            &view,
            wall(200),
            "10.0.0.1",
            Some("10.0.0.1"),
        );
        assert_eq!(condition(&ready, "Ready").status, "True");
        assert_eq!(condition(&ready, "ContainersReady").status, "True");
        assert_eq!(ready.host_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            condition(&ready, "PodReadyToStartContainers").status,
            "True"
        );
        let s = &ready.container_statuses.unwrap()[0];
        assert_eq!(
            (s.ready, s.started, s.container_id.as_deref()),
            (true, Some(true), Some("minik://u1/c/1"))
        );
        // A pod still waiting for its place on the pod network has no address, and its
        // sandbox is not ready: never the node's address in its stead.
        let waiting = status(&pod, &record, &view, wall(200), "10.0.0.1", None);
        assert_eq!((&waiting.pod_ip, &waiting.pod_ips), (&None, &None));
        assert_eq!(
            condition(&waiting, "PodReadyToStartContainers").status,
            "False"
        );
    }

    #[test]
    fn a_condition_changes_at_now_and_keeps_its_time_otherwise() {
        let mut pod = pod("Always", &["c"]);
        let (record, view) = recorded(&[("c", Some(running()))]);
        let first = status(&pod, &record, &view, wall(200), "h", Some("h"));
        let ready = condition(&first, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time, Some(time(wall(200))));
        assert_eq!(first.start_time, Some(time(wall(50))));

        pod.status = Some(first);
        let same = status(&pod, &record, &view, wall(300), "h", Some("h"));
        assert_eq!(
            condition(&same, "Ready").last_transition_time,
            Some(time(wall(200))),
            "unchanged, so it keeps its time"
        );

        let (record, view) = recorded(&[("c", Some(exited(1)))]);
        let changed = status(&pod, &record, &view, wall(400), "h", Some("h"));
        let ready = condition(&changed, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Some(time(wall(400))));
        assert_eq!(
            condition(&changed, "PodScheduled").last_transition_time,
            Some(time(wall(200)))
        );
    }
}
