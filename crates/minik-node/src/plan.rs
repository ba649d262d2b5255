//! The node agent's decisions for one pod, in one pure place. [`plan`] takes the pod as the API
//! has it, the agent's record of it, what the runtime and the probes say about its containers
//! (a [`View`], gathered by the agent just before) and the time, and says what to do: tear the
//! pod down, stop the containers whose probes gave up, or drive the pod — start the containers
//! that are due — and which events to send. The agent (`agent.rs`) gathers the view, applies the
//! plan, and then reports the status of what runs (`pod::status`, pure as well). No I/O, no
//! clock: everything here is tested with tables.
//!
//! The anchor is the kubelet's `computePodActions`. Each container of a pod is, at every pass,
//! in one [`Phase`] of its life: waiting for what it needs first, starting, running, exited; the
//! plan is what moves it on. What a container waits for is a [`Wait`]: the restart back-off,
//! or the init containers before it (`Wait::Init`: one at a time, in order, before the app
//! containers). Image pulls happen at a start (`images.rs`); volumes will be another `Wait`.
//!
//! Stopping comes first and ends the plan: a pass applies it, then plans again with a fresh
//! view. So the exit of a container stopped because its probe gave up is handled as any other
//! exit — by the restart policy and the back-off — in the same pass, and a pod replaced by a
//! new pod of the same name is torn down before the new one is looked at.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;

use crate::events::Kind;
use crate::images;
use crate::pod::{self, Backoff, ContainerRecord, PodRecord, Terminated};
use crate::probe::{ProbeKind, Verdict};
use crate::runtime::{Started, State};

/// How long the containers of a pod that left the API without a graceful deletion (or was
/// replaced by a new pod of the same name) get to stop.
const GONE_GRACE: Duration = Duration::from_secs(2);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// The waiting reason of a container in restart back-off after a crash.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// The time of a pass, read once by the agent: its monotonic clock (for back-off) and the wall
/// clock (what records and statuses show).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub wall: SystemTime,
}

/// What the runtime and the probes say about a pod's containers, gathered just before planning.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The runtime's state of each instance the record names; an instance missing here is
    /// [`State::Unknown`].
    pub states: HashMap<String, State>,
    /// What the probes of each running instance concluded; an instance missing here has no
    /// probes running (it was adopted from an earlier agent, or it ended).
    pub probes: HashMap<String, Verdict>,
    /// The instances the runtime has of the pod, when the agent has no record of it yet:
    /// started by an earlier agent that did not record them, they are adopted (their states
    /// are in `states`).
    pub found: Vec<String>,
    /// Why the agent evicts the pod, if it does (reason, message): an emptyDir volume over its
    /// `sizeLimit`.
    pub evict: Option<(String, String)>,
}

impl View {
    /// The runtime's state of `instance`.
    pub fn state(&self, instance: Option<&str>) -> State {
        instance
            .and_then(|i| self.states.get(i))
            .cloned()
            .unwrap_or(State::Unknown)
    }

    /// Whether `instance` passed its startup probe, and whether its readiness probe passes: a
    /// container without probes is both.
    pub fn probed(&self, instance: Option<&str>) -> (bool, bool) {
        instance
            .and_then(|i| self.probes.get(i))
            .map_or((true, true), |v| (v.started, v.ready))
    }
}

/// What one pass over a pod is to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Nothing runs or is to run for this pod.
    Idle,
    /// Stop every container the record names and forget the pod, its state and its logs.
    TearDown(TearDown),
    /// Stop these running instances, because a probe gave up on them; then plan again.
    Kill {
        kills: Vec<Kill>,
        events: Vec<Event>,
    },
    /// Drive the pod towards its spec.
    Run(Run),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TearDown {
    /// How long each container gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Events about the pod, sent before the containers stop.
    pub events: Vec<Event>,
    pub then: AfterTearDown,
}

/// What follows a tear-down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterTearDown {
    /// Plan again: the pod is gone from the API, or a new pod of the same name replaced it.
    PlanAgain,
    /// Remove the pod from the API (only this `uid`): it was being deleted, and nothing of it
    /// runs any more. The pass ends there.
    Delete {
        namespace: Option<String>,
        name: String,
        uid: Option<String>,
    },
}

/// A running instance to stop because one of its probes gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kill {
    pub container: String,
    pub instance: String,
    /// Which probe gave up (startup or liveness), and its last failure.
    pub probe: ProbeKind,
    pub message: String,
    pub grace: Duration,
}

/// The plan to drive a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The record with what the runtime said folded in (exits, back-off); the agent records
    /// in it the starts it makes.
    pub record: PodRecord,
    /// Each container of the pod, in its order, and its phase.
    pub containers: Vec<(String, Phase)>,
    /// Events to send (probe failures, back-off).
    pub events: Vec<Event>,
    /// Running instances to stop first (each with its grace period), because the pod failed.
    pub stops: Vec<(String, Duration)>,
    /// When to look again at the latest, for what is due later (a restart after back-off, the
    /// back-off's reset).
    pub requeue_after: Option<Duration>,
}

/// Makes `requeue` no later than `after`.
fn sooner(requeue: &mut Option<Duration>, after: Duration) {
    *requeue = Some(requeue.map_or(after, |d| d.min(after)));
}

/// Where a container is in its life, as a pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// It is to run, but not yet: it waits for what the [`Wait`] says.
    Waiting(Wait),
    /// It is to be started in this pass.
    Starting,
    /// Its current instance runs.
    Running,
    /// Its last run ended, and the restart policy does not restart it.
    Exited,
}

/// What a container waits for before its next start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The restart back-off, after a crash (`CrashLoopBackOff`) or a failed start (its reason):
    /// no start before `until`.
    BackOff { until: Instant },
    /// The init containers before it: they run one at a time, in order, each to success
    /// (sidecars, init containers with `restartPolicy: Always`, to running), before the next
    /// one and the app containers start (`PodInitializing`).
    Init,
    /// Nothing: the pod failed as a whole (evicted, past its deadline); it never starts.
    PodFailed,
}

/// The pod status message of a pod past its `activeDeadlineSeconds` (the kubelet's).
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// The waiting reason of the containers that wait for init containers.
pub const POD_INITIALIZING: &str = "PodInitializing";

/// Whether an init container is a sidecar (Kubernetes 1.29+: `restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// Whether a (non-sidecar) init container ran to success: it is not run again.
pub fn completed(c: &ContainerRecord) -> bool {
    c.not_before.is_none()
        && c.terminated
            .as_ref()
            .is_some_and(|t| t.exit.code == 0 && !t.exit.status_unknown)
}

/// An event about the pod, or one of its containers, for the agent to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The container it is about; `None` for the pod itself.
    pub container: Option<String>,
    pub kind: Kind,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    pub(crate) fn about(
        container: &str,
        kind: Kind,
        reason: &'static str,
        message: String,
    ) -> Event {
        Event {
            container: Some(container.to_owned()),
            kind,
            reason,
            message,
        }
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// One plan for a pass over the pod stored under one key: `pod` is what the API has under it
/// (if anything), `record` what the agent keeps about what it ran for it (if anything).
pub fn plan(
    pod: Option<&Pod>,
    record: Option<&PodRecord>,
    view: &View,
    now: Now,
    backoff: &Backoff,
) -> Plan {
    let pod_uid = pod.and_then(|p| p.metadata.uid.as_deref());
    if record.is_some_and(|r| Some(r.uid.as_str()) != pod_uid) {
        // Gone from the API, or replaced by a new pod of the same name: stop what ran. There is
        // no object of the old pod to report events about.
        return Plan::TearDown(TearDown {
            grace: GONE_GRACE,
            events: Vec::new(),
            then: AfterTearDown::PlanAgain,
        });
    }
    let Some(pod) = pod else {
        return Plan::Idle;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Plan::TearDown(deletion(pod, record, view));
    }
    let mut events = probe_failures(record, view);
    let kills = kills(pod, record, view);
    if !kills.is_empty() {
        events.extend(kills.iter().map(|k| killing(pod, k)));
        return Plan::Kill { kills, events };
    }
    let mut record = match record {
        Some(r) => r.clone(),
        None => {
            let mut record = PodRecord::new(pod_uid.unwrap_or_default(), now.wall);
            pod::adopt_instances(&mut record, &view.found);
            record
        }
    };
    if record.failed.is_none() {
        if let Some((reason, message)) = failure(pod, &record, view, now.wall) {
            events.push(Event {
                container: None,
                kind: Kind::Warning,
                reason: if reason == "Evicted" {
                    "Evicted"
                } else {
                    "DeadlineExceeded"
                },
                message: message.clone(),
            });
            record.failed = Some((reason, message));
        }
    }
    drive(pod, record, view, now, backoff, events)
}

/// Why the pod fails as a whole now, if it does: the agent evicts it (`view.evict`), it ran
/// past its `activeDeadlineSeconds`, or its stored status says an earlier agent failed it so
/// (a restarted agent must not start it again).
fn failure(
    pod: &Pod,
    record: &PodRecord,
    view: &View,
    now: std::time::SystemTime,
) -> Option<(String, String)> {
    if let Some(evict) = &view.evict {
        return Some(evict.clone());
    }
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
        let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
        if reason == "Evicted" || reason == "DeadlineExceeded" {
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            return Some((reason, message));
        }
    }
    let deadline = deadline(pod, record)?;
    (now >= deadline).then(|| ("DeadlineExceeded".to_owned(), DEADLINE_MESSAGE.to_owned()))
}

/// When the pod's `activeDeadlineSeconds` run out, counted from its start on the node.
fn deadline(pod: &Pod, record: &PodRecord) -> Option<std::time::SystemTime> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    Some(record.start_time + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// A pod being deleted: its containers get its deletion grace period, and its running ones
/// are reported stopping.
fn deletion(pod: &Pod, record: Option<&PodRecord>, view: &View) -> TearDown {
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0) as u64;
    let events = record
        .into_iter()
        .flat_map(|r| &r.containers)
        .filter(|(_, c)| matches!(view.state(c.instance.as_deref()), State::Running { .. }))
        .map(|(name, _)| {
            Event::about(
                name,
                Kind::Normal,
                "Killing",
                format!("Stopping container {name}"),
            )
        })
        .collect();
    TearDown {
        grace: Duration::from_secs(grace),
        events,
        then: AfterTearDown::Delete {
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
        },
    }
}

/// An `Unhealthy` event for every probe failure not reported yet.
fn probe_failures(record: Option<&PodRecord>, view: &View) -> Vec<Event> {
    let Some(record) = record else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for (name, c) in &record.containers {
        let Some(verdict) = c.instance.as_ref().and_then(|i| view.probes.get(i)) else {
            continue;
        };
        for (kind, message) in &verdict.unreported {
            events.push(Event::about(
                name,
                Kind::Warning,
                "Unhealthy",
                format!("{} probe failed: {message}", kind.name()),
            ));
        }
    }
    events
}

/// The running instances whose startup or liveness probe gave up: they are stopped, and their
/// exit handled as any other (the kubelet's `ContainersToKill`).
fn kills(pod: &Pod, record: Option<&PodRecord>, view: &View) -> Vec<Kill> {
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0) as u64;
    record
        .into_iter()
        .flat_map(|r| &r.containers)
        .filter_map(|(name, c)| {
            let instance = c.instance.as_deref()?;
            let (probe, message) = view.probes.get(instance)?.restart.clone()?;
            matches!(view.state(Some(instance)), State::Running { .. }).then(|| Kill {
                container: name.clone(),
                instance: instance.to_owned(),
                probe,
                message,
                grace: Duration::from_secs(grace),
            })
        })
        .collect()
}

fn killing(pod: &Pod, kill: &Kill) -> Event {
    let name = &kill.container;
    let probe = kill.probe.name().to_ascii_lowercase();
    let mut message = format!("Container {name} failed {probe} probe");
    if restart_policy(pod) != "Never" {
        message.push_str(", will be restarted");
    }
    Event::about(name, Kind::Normal, "Killing", message)
}

/// The plan to drive a pod that is not being deleted: folds what the runtime says into the
/// record, and moves each container through its phases.
fn drive(
    pod: &Pod,
    mut record: PodRecord,
    view: &View,
    now: Now,
    backoff: &Backoff,
    mut events: Vec<Event>,
) -> Plan {
    let failed = record.failed.is_some();
    let policy = if failed {
        "Never".to_owned()
    } else {
        restart_policy(pod).to_owned()
    };
    let spec = pod.spec.as_ref();
    let grace = Duration::from_secs(
        spec.and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS)
            .max(0) as u64,
    );
    let mut stops = Vec::new();
    let init_containers = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let mut phases = Vec::with_capacity(init_containers.len() + containers.len());
    let mut requeue_after = None;
    // A pod with a deadline is looked at when it runs out.
    if let (false, Some(at)) = (failed, deadline(pod, &record)) {
        sooner(
            &mut requeue_after,
            at.duration_since(now.wall).unwrap_or(Duration::ZERO),
        );
    }
    // Init containers first, one at a time: each must complete (a sidecar: run) before the
    // next starts; the app containers wait for all of them.
    let mut initialized = true;
    let init = init_containers.iter().map(|c| (c, true));
    for (container, is_init) in init.chain(containers.iter().map(|c| (c, false))) {
        let c = record.containers.entry(container.name.clone()).or_default();
        if !initialized {
            if c.instance.is_none() && c.terminated.is_none() {
                c.waiting = Some((POD_INITIALIZING.into(), String::new()));
            }
            phases.push((container.name.clone(), Phase::Waiting(Wait::Init)));
            continue;
        }
        if c.waiting
            .as_ref()
            .is_some_and(|(r, _)| r == POD_INITIALIZING)
        {
            c.waiting = None;
        }
        let sidecar = is_init && is_sidecar(container);
        if is_init && !sidecar && completed(c) {
            phases.push((container.name.clone(), Phase::Exited));
            continue;
        }
        // An init container is restarted on failure unless the pod never restarts anything; a
        // sidecar always.
        let container_policy = match (is_init, sidecar, policy.as_str()) {
            (true, true, _) => "Always",
            (true, false, "Never") => "Never",
            (true, false, _) => "OnFailure",
            (false, _, p) => p,
        };
        let was_backing_off = is_crash_loop(c);
        let was_pulling_back_off = is_pull_back_off(c);
        let state = view.state(c.instance.as_deref());
        let phase = advance(
            pod,
            container_policy,
            container,
            c,
            state,
            now.instant,
            backoff,
        );
        // A failed pod runs nothing: what runs is stopped, what was to start never does.
        let phase = match (failed, phase) {
            (true, Phase::Running) => {
                if let Some(instance) = &c.instance {
                    stops.push((instance.clone(), grace));
                }
                Phase::Waiting(Wait::PodFailed)
            }
            (true, Phase::Starting | Phase::Waiting(Wait::BackOff { .. })) => {
                Phase::Waiting(Wait::PodFailed)
            }
            (_, phase) => phase,
        };
        if is_init {
            initialized = match &phase {
                Phase::Running => sidecar,
                Phase::Exited => completed(c),
                Phase::Starting | Phase::Waiting(_) => false,
            };
        }
        match &phase {
            Phase::Waiting(Wait::BackOff { until }) => sooner(
                &mut requeue_after,
                until.saturating_duration_since(now.instant),
            ),
            Phase::Running => {
                // A back-off is forgotten once the container ran for `reset`: look then.
                if c.backoff.is_some() {
                    let ran = c
                        .started
                        .map_or(Duration::ZERO, |s| now.instant.saturating_duration_since(s));
                    sooner(&mut requeue_after, backoff.reset.saturating_sub(ran));
                }
            }
            Phase::Starting
            | Phase::Exited
            | Phase::Waiting(Wait::Init)
            | Phase::Waiting(Wait::PodFailed) => {}
        }
        if is_pull_back_off(c) && !was_pulling_back_off {
            let image = container.image.as_deref().unwrap_or_default();
            events.push(Event::about(
                &container.name,
                Kind::Normal,
                "BackOff",
                format!("Back-off pulling image {image:?}"),
            ));
        }
        if is_crash_loop(c) && !was_backing_off {
            events.push(Event::about(
                &container.name,
                Kind::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}",
                    container.name,
                    pod::pod_ref(pod)
                ),
            ));
        }
        phases.push((container.name.clone(), phase));
    }
    Plan::Run(Run {
        record,
        containers: phases,
        events,
        stops,
        requeue_after,
    })
}

fn is_pull_back_off(c: &ContainerRecord) -> bool {
    c.waiting
        .as_ref()
        .is_some_and(|(reason, _)| reason == images::IMAGE_PULL_BACK_OFF)
}

fn is_crash_loop(c: &ContainerRecord) -> bool {
    c.waiting
        .as_ref()
        .is_some_and(|(reason, _)| reason == CRASH_LOOP_BACK_OFF)
}

/// One container's next phase, from its record and the runtime's state of its instance;
/// records an exit the first time it is seen, and the back-off it brings.
fn advance(
    pod: &Pod,
    policy: &str,
    container: &Container,
    c: &mut ContainerRecord,
    state: State,
    now: Instant,
    backoff: &Backoff,
) -> Phase {
    let ran = |c: &ContainerRecord| {
        c.started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    };
    match state {
        State::Running { .. } => {
            c.waiting = None;
            if ran(c) >= backoff.reset {
                c.backoff = None;
            }
            Phase::Running
        }
        State::Exited { started_at, exit } => {
            if c.terminated.is_none() {
                if ran(c) >= backoff.reset {
                    c.backoff = None;
                }
                let restart = match policy {
                    "Never" => false,
                    "OnFailure" => exit.code != 0,
                    _ => true,
                };
                c.terminated = Some(Terminated {
                    exit,
                    started_at,
                    container_id: pod::container_id(c.instance.as_deref().unwrap_or_default()),
                });
                if restart {
                    // The first restart is immediate; each further one waits twice as long.
                    let delay = c.backoff.unwrap_or(Duration::ZERO);
                    c.not_before = Some(now + delay);
                    c.current_delay = delay;
                    c.backoff = Some(match c.backoff {
                        None => backoff.initial,
                        Some(d) => (d * 2).min(backoff.max),
                    });
                } else {
                    c.not_before = None;
                }
            }
            match c.not_before {
                Some(at) if at <= now => Phase::Starting,
                Some(until) => {
                    c.waiting = Some((
                        CRASH_LOOP_BACK_OFF.into(),
                        format!(
                            "back-off {} restarting failed container={} pod={}",
                            pod::render_duration(c.current_delay),
                            container.name,
                            pod::pod_ref(pod)
                        ),
                    ));
                    Phase::Waiting(Wait::BackOff { until })
                }
                None => Phase::Exited,
            }
        }
        // Never started, lost, or its start failed (then it waits with that reason; a failed
        // pull waits as `ImagePullBackOff`, as the kubelet reports it).
        State::Unknown => match c.not_before {
            Some(until) if until > now => {
                if let Some((reason, message)) = &mut c.waiting {
                    if reason == images::ERR_IMAGE_PULL {
                        let image = container.image.as_deref().unwrap_or_default();
                        *message = images::back_off_message(image, message);
                        *reason = images::IMAGE_PULL_BACK_OFF.to_owned();
                    }
                }
                Phase::Waiting(Wait::BackOff { until })
            }
            _ => Phase::Starting,
        },
    }
}

/// The events of a successful start: Pulled (unless the image manager pulled the image and
/// said so already), Created, Started, and a warning when the memory limit cannot be enforced.
/// `program` is the command as the container gives it.
pub fn started(
    container: &Container,
    program: &str,
    info: &Started,
    image_pulled: bool,
) -> Vec<Event> {
    let name = container.name.as_str();
    let image = container.image.as_deref().unwrap_or_default();
    let mut events = Vec::new();
    if !image_pulled {
        events.push(Event::about(
            name,
            Kind::Normal,
            "Pulled",
            format!(
                "Container image {image:?} is not pulled by minik's process runtime: {program:?} resolved to {} on the node",
                info.program.display()
            ),
        ));
    }
    if let Some(why) = &info.limit_not_enforced {
        events.push(Event::about(
            name,
            Kind::Warning,
            "MemoryLimitNotEnforced",
            format!(
                "resources.limits.memory of container {name} is not enforced on this node: {why}"
            ),
        ));
    }
    events.push(Event::about(
        name,
        Kind::Normal,
        "Created",
        format!("Created container: {name}"),
    ));
    events.push(Event::about(
        name,
        Kind::Normal,
        "Started",
        format!("Started container {name}"),
    ));
    events
}

/// The event of a start that failed.
pub fn start_failed(container: &str, message: &str) -> Event {
    Event::about(
        container,
        Kind::Warning,
        "Failed",
        format!("Error: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::tests::{exited, running, wall};
    use crate::runtime::{ContainerSpec, Exit, FakeRuntime, FakeScript, Runtime};
    use serde_json::{json, Value};

    const SECOND: Duration = Duration::from_secs(1);

    /// Pod `ns/p` (uid `u1`) with the given restart policy and containers; `extra` is merged
    /// into its JSON (metadata, spec fields).
    fn pod_of(policy: &str, containers: &[&str], extra: Value) -> Pod {
        let mut pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>(),
            }
        });
        for (section, fields) in extra.as_object().into_iter().flatten() {
            for (k, v) in fields.as_object().into_iter().flatten() {
                pod[section][k] = v.clone();
            }
        }
        serde_json::from_value(pod).unwrap()
    }

    fn pod(policy: &str) -> Pod {
        pod_of(policy, &["c"], json!({}))
    }

    fn at(instant: Instant) -> Now {
        Now {
            instant,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    /// A record of pod `u1` whose containers each run (or ran) their first instance, started
    /// at `started`; and the view in which each is in the state given.
    fn recorded(containers: &[(&str, State)], started: Instant) -> (PodRecord, View) {
        let mut record = PodRecord::new("u1", wall(50));
        let mut view = View::default();
        for (name, state) in containers {
            let instance = format!("u1/{name}/1");
            record.containers.insert(
                (*name).to_owned(),
                ContainerRecord {
                    instance: Some(instance.clone()),
                    attempts: 1,
                    started: Some(started),
                    ..Default::default()
                },
            );
            view.states.insert(instance, state.clone());
        }
        (record, view)
    }

    #[test]
    fn a_pod_past_its_deadline_fails_and_stops() {
        // Started at wall(50) with 30 s: due at wall(80).
        let p = pod_of(
            "Always",
            &["c"],
            json!({"spec": {"activeDeadlineSeconds": 30, "terminationGracePeriodSeconds": 5}}),
        );
        let (record, view) = recorded(&[("c", running())], Instant::now());
        let early = Now {
            instant: Instant::now(),
            wall: wall(70),
        };
        let r = run(plan(
            Some(&p),
            Some(&record),
            &view,
            early,
            &Backoff::default(),
        ));
        assert!(r.record.failed.is_none());
        assert!(r.stops.is_empty());
        assert_eq!(
            r.requeue_after,
            Some(Duration::from_secs(10)),
            "looked at when due"
        );
        let late = Now {
            instant: Instant::now(),
            wall: wall(81),
        };
        let r = run(plan(
            Some(&p),
            Some(&record),
            &view,
            late,
            &Backoff::default(),
        ));
        assert_eq!(
            r.record.failed,
            Some(("DeadlineExceeded".into(), DEADLINE_MESSAGE.into()))
        );
        assert_eq!(r.stops, vec![("u1/c/1".to_owned(), Duration::from_secs(5))]);
        assert_eq!(phase(&r, "c"), Phase::Waiting(Wait::PodFailed));
        assert!(r
            .events
            .iter()
            .any(|e| e.reason == "DeadlineExceeded" && e.container.is_none()));
        // Once it stopped, it stays stopped though its policy is Always; the status says why.
        let (mut record, mut view) = (r.record, view);
        view.states.insert("u1/c/1".into(), exited(143));
        let r = run(plan(
            Some(&p),
            Some(&record),
            &view,
            late,
            &Backoff::default(),
        ));
        assert!(starts(&r).is_empty() && r.stops.is_empty());
        assert!(r.events.is_empty(), "the failure is announced once");
        record = r.record;
        let status = pod::status(&p, &record, &view, wall(82), "10.0.0.1", Some("10.0.0.1"));
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(status.message.as_deref(), Some(DEADLINE_MESSAGE));
    }

    #[test]
    fn evicted_pods_never_start_again() {
        let p = pod("Always");
        let (record, mut view) = recorded(&[("c", running())], Instant::now());
        view.evict = Some((
            "Evicted".into(),
            "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". ".into(),
        ));
        let r = run(plan(
            Some(&p),
            Some(&record),
            &view,
            at(Instant::now()),
            &Backoff::default(),
        ));
        assert_eq!(r.stops.len(), 1);
        assert!(r.events.iter().any(|e| e.reason == "Evicted"));
        // An agent restarted later (no record of the failure) reads it from the stored status.
        let mut failed = p.clone();
        failed.status = Some(
            serde_json::from_value(json!({"phase": "Failed", "reason": "Evicted", "message": "m"}))
                .unwrap(),
        );
        let fresh = View::default();
        let r = run(plan(
            Some(&failed),
            None,
            &fresh,
            at(Instant::now()),
            &Backoff::default(),
        ));
        assert!(starts(&r).is_empty(), "{:?}", r.containers);
        assert_eq!(r.record.failed, Some(("Evicted".into(), "m".into())));
    }

    fn run(plan: Plan) -> Run {
        match plan {
            Plan::Run(run) => run,
            other => panic!("expected a plan to run the pod, got {other:?}"),
        }
    }

    fn phase(run: &Run, name: &str) -> Phase {
        run.containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap()
    }

    fn starts(run: &Run) -> Vec<&str> {
        run.containers
            .iter()
            .filter(|(_, p)| *p == Phase::Starting)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn verdict(restart: Option<ProbeKind>, unreported: &[(ProbeKind, &str)]) -> Verdict {
        Verdict {
            started: true,
            ready: restart.is_none(),
            restart: restart.map(|k| (k, "connection refused".to_owned())),
            last_failure: None,
            unreported: unreported
                .iter()
                .map(|(k, m)| (*k, (*m).to_owned()))
                .collect(),
        }
    }

    /// A pod with init containers `inits` (`side` a sidecar) before app container `app`.
    fn pod_with_inits(policy: &str, inits: &[&str]) -> Pod {
        let inits: Vec<Value> = inits
            .iter()
            .map(|name| {
                let mut c = json!({"name": name, "image": "busybox"});
                if name.starts_with("side") {
                    c["restartPolicy"] = json!("Always");
                }
                c
            })
            .collect();
        pod_of(policy, &["app"], json!({"spec": {"initContainers": inits}}))
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order_before_the_app() {
        let now = Instant::now();
        let pod = pod_with_inits("Always", &["one", "two"]);
        // Nothing ran yet: only the first init container starts; the rest wait.
        let first = run(plan(
            Some(&pod),
            None,
            &View::default(),
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(starts(&first), ["one"]);
        assert_eq!(phase(&first, "two"), Phase::Waiting(Wait::Init));
        assert_eq!(phase(&first, "app"), Phase::Waiting(Wait::Init));
        assert_eq!(
            first.record.containers["app"].waiting,
            Some((POD_INITIALIZING.to_owned(), String::new()))
        );
        // `one` runs: still nothing else.
        let (record, view) = recorded(&[("one", running())], now);
        let r = run(plan(
            Some(&pod),
            Some(&record),
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(phase(&r, "one"), Phase::Running);
        assert!(starts(&r).is_empty());
        // `one` succeeded: `two` starts, the app still waits.
        let (record, view) = recorded(&[("one", exited(0))], now);
        let r = run(plan(
            Some(&pod),
            Some(&record),
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(phase(&r, "one"), Phase::Exited);
        assert_eq!(starts(&r), ["two"]);
        assert_eq!(phase(&r, "app"), Phase::Waiting(Wait::Init));
        // Both succeeded: the app starts, and its PodInitializing wait is over.
        let (mut record, view) = recorded(&[("one", exited(0)), ("two", exited(0))], now);
        record.containers.insert(
            "app".into(),
            ContainerRecord {
                waiting: Some((POD_INITIALIZING.into(), String::new())),
                ..Default::default()
            },
        );
        let r = run(plan(
            Some(&pod),
            Some(&record),
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(starts(&r), ["app"]);
        assert_eq!(r.record.containers["app"].waiting, None);
        // Once done, an init container is not run again, even when the runtime forgot it.
        let (mut record, _) = recorded(&[("one", exited(0)), ("two", exited(0))], now);
        for c in record.containers.values_mut() {
            c.terminated = Some(Terminated {
                exit: Exit::code(0, None, wall(60)),
                started_at: wall(55),
                container_id: "minik://gone".into(),
            });
        }
        let r = run(plan(
            Some(&pod),
            Some(&record),
            &View::default(),
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(starts(&r), ["app"]);
    }

    #[test]
    fn a_failed_init_container_is_restarted_unless_the_pod_never_restarts() {
        let now = Instant::now();
        for (policy, expected) in [
            ("Always", Phase::Starting),
            ("OnFailure", Phase::Starting),
            ("Never", Phase::Exited),
        ] {
            let pod = pod_with_inits(policy, &["one"]);
            let (record, view) = recorded(&[("one", exited(1))], now - 5 * SECOND);
            let r = run(plan(
                Some(&pod),
                Some(&record),
                &view,
                at(now),
                &Backoff::default(),
            ));
            assert_eq!(phase(&r, "one"), expected, "{policy}");
            assert_eq!(phase(&r, "app"), Phase::Waiting(Wait::Init), "{policy}");
        }
    }

    #[test]
    fn a_sidecar_starts_before_the_app_and_keeps_running() {
        let now = Instant::now();
        let pod = pod_with_inits("Never", &["side", "one"]);
        let r = run(plan(
            Some(&pod),
            None,
            &View::default(),
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(starts(&r), ["side"]);
        // The sidecar runs: the next init container starts.
        let (record, view) = recorded(&[("side", running())], now);
        let r = run(plan(
            Some(&pod),
            Some(&record),
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(starts(&r), ["one"]);
        // The sidecar exits, even under restartPolicy Never: it is restarted.
        let (record, view) = recorded(&[("side", exited(0)), ("one", exited(0))], now - 5 * SECOND);
        let r = run(plan(
            Some(&pod),
            Some(&record),
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(phase(&r, "side"), Phase::Starting);
        assert_eq!(phase(&r, "app"), Phase::Waiting(Wait::Init));
    }

    #[test]
    fn restart_policies_decide_what_follows_an_exit() {
        let now = Instant::now();
        for (policy, code, expected) in [
            ("Never", 0, Phase::Exited),
            ("Never", 1, Phase::Exited),
            ("OnFailure", 0, Phase::Exited),
            ("OnFailure", 1, Phase::Starting),
            ("Always", 0, Phase::Starting),
            ("Always", 1, Phase::Starting),
        ] {
            let (record, view) = recorded(&[("c", exited(code))], now - 5 * SECOND);
            let plan = plan(
                Some(&pod(policy)),
                Some(&record),
                &view,
                at(now),
                &Backoff::default(),
            );
            let run = run(plan);
            assert_eq!(phase(&run, "c"), expected, "{policy}, exit {code}");
            let c = &run.record.containers["c"];
            let ended = c.terminated.as_ref().expect("the exit is recorded");
            assert_eq!(
                (ended.exit.code, ended.container_id.as_str()),
                (code, "minik://u1/c/1"),
                "{policy}, exit {code}"
            );
            assert_eq!(run.requeue_after, None, "{policy}, exit {code}");
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_and_resets_after_a_long_run() {
        let backoff = Backoff::default(); // 10s, doubling to 5m; reset after 10m of running.
        let now = Instant::now();
        // (back-off before the exit, how long the run lasted) -> (wait before the restart,
        // back-off after it, the message's rendering of the wait)
        for (before, ran, wait, after, rendered) in [
            (None, 1, 0, 10, ""),
            (Some(10), 1, 10, 20, "10s"),
            (Some(160), 30, 160, 300, "2m40s"),
            (Some(300), 1, 300, 300, "5m0s"),
            (Some(300), 600, 0, 10, ""),
        ] {
            let case = format!("back-off {before:?}s, ran {ran}s");
            let (mut record, view) = recorded(&[("c", exited(1))], now - Duration::from_secs(ran));
            record.containers.get_mut("c").unwrap().backoff = before.map(Duration::from_secs);
            let run = run(plan(
                Some(&pod("Always")),
                Some(&record),
                &view,
                at(now),
                &backoff,
            ));
            let c = &run.record.containers["c"];
            assert_eq!(c.backoff, Some(Duration::from_secs(after)), "{case}");
            if wait == 0 {
                assert_eq!(phase(&run, "c"), Phase::Starting, "{case}");
                assert_eq!(run.requeue_after, None, "{case}");
                assert_eq!(c.waiting, None, "{case}");
                continue;
            }
            let until = now + Duration::from_secs(wait);
            assert_eq!(
                phase(&run, "c"),
                Phase::Waiting(Wait::BackOff { until }),
                "{case}"
            );
            assert_eq!(run.requeue_after, Some(Duration::from_secs(wait)), "{case}");
            assert_eq!(
                c.waiting,
                Some((
                    CRASH_LOOP_BACK_OFF.to_owned(),
                    format!("back-off {rendered} restarting failed container=c pod=p_ns(u1)")
                )),
                "{case}"
            );
            // Once the wait is over, it starts.
            let later = run_plan_at(&run.record, &view, until);
            assert_eq!(starts(&later), ["c"], "{case}");
        }
    }

    fn run_plan_at(record: &PodRecord, view: &View, now: Instant) -> Run {
        run(plan(
            Some(&pod("Always")),
            Some(record),
            view,
            at(now),
            &Backoff::default(),
        ))
    }

    #[test]
    fn a_running_container_after_back_off_is_looked_at_when_the_back_off_resets() {
        let now = Instant::now();
        let (mut record, view) = recorded(&[("c", running())], now - 100 * SECOND);
        record.containers.get_mut("c").unwrap().backoff = Some(20 * SECOND);
        let run = run_plan_at(&record, &view, now);
        assert_eq!(phase(&run, "c"), Phase::Running);
        assert_eq!(run.requeue_after, Some(500 * SECOND));
        assert_eq!(run.record.containers["c"].backoff, Some(20 * SECOND));
        let run = run_plan_at(&record, &view, now + 500 * SECOND);
        assert_eq!(run.requeue_after, None);
        assert_eq!(run.record.containers["c"].backoff, None, "forgotten");
    }

    #[test]
    fn a_container_that_failed_to_start_waits_with_its_reason_then_starts() {
        let now = Instant::now();
        let mut record = PodRecord::new("u1", wall(50));
        pod::begin_start(&mut record, "c", now);
        let delay = pod::start_failed(
            &mut record,
            "c",
            "RunContainerError",
            "no",
            now,
            &Backoff::default(),
        );
        assert_eq!(delay, 10 * SECOND);
        let view = View::default();
        let waiting = run_plan_at(&record, &view, now + SECOND);
        assert_eq!(
            phase(&waiting, "c"),
            Phase::Waiting(Wait::BackOff {
                until: now + 10 * SECOND
            })
        );
        assert_eq!(waiting.requeue_after, Some(9 * SECOND));
        assert_eq!(
            waiting.record.containers["c"].waiting,
            Some(("RunContainerError".to_owned(), "no".to_owned()))
        );
        assert!(
            waiting.events.is_empty(),
            "not a crash loop: {:?}",
            waiting.events
        );
        assert_eq!(
            starts(&run_plan_at(&record, &view, now + 10 * SECOND)),
            ["c"]
        );
    }

    #[test]
    fn each_container_is_in_its_phase() {
        let now = Instant::now();
        let pod = pod_of("OnFailure", &["new", "runs", "done", "crashed"], json!({}));
        let (mut record, view) = recorded(
            &[
                ("runs", running()),
                ("done", exited(0)),
                ("crashed", exited(1)),
            ],
            now - 5 * SECOND,
        );
        record.containers.get_mut("crashed").unwrap().backoff = Some(40 * SECOND);
        let run = run(plan(
            Some(&pod),
            Some(&record),
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(
            run.containers,
            [
                ("new".to_owned(), Phase::Starting),
                ("runs".to_owned(), Phase::Running),
                ("done".to_owned(), Phase::Exited),
                (
                    "crashed".to_owned(),
                    Phase::Waiting(Wait::BackOff {
                        until: now + 40 * SECOND
                    })
                ),
            ]
        );
        assert_eq!(run.requeue_after, Some(40 * SECOND));
    }

    #[test]
    fn a_probe_that_gives_up_kills_by_its_kind_and_then_the_exit_is_handled() {
        let now = Instant::now();
        let failures = [(ProbeKind::Liveness, "dial tcp: refused")];
        // (restart asked by, policy, state) -> the Killing message, if any
        for (kind, policy, state, killing) in [
            (
                ProbeKind::Liveness,
                "Always",
                running(),
                Some("Container c failed liveness probe, will be restarted"),
            ),
            (
                ProbeKind::Startup,
                "OnFailure",
                running(),
                Some("Container c failed startup probe, will be restarted"),
            ),
            (
                ProbeKind::Liveness,
                "Never",
                running(),
                Some("Container c failed liveness probe"),
            ),
            // Already ended: its exit is handled as any other.
            (ProbeKind::Liveness, "Always", exited(137), None),
        ] {
            let case = format!("{kind:?}, {policy}, {state:?}");
            let (record, mut view) = recorded(&[("c", state)], now - 5 * SECOND);
            view.probes
                .insert("u1/c/1".into(), verdict(Some(kind), &failures));
            let pod = pod_of(
                policy,
                &["c"],
                json!({"spec": {"terminationGracePeriodSeconds": 7}}),
            );
            let planned = plan(
                Some(&pod),
                Some(&record),
                &view,
                at(now),
                &Backoff::default(),
            );
            let unhealthy = Event::about(
                "c",
                Kind::Warning,
                "Unhealthy",
                "Liveness probe failed: dial tcp: refused".into(),
            );
            match (planned, killing) {
                (Plan::Kill { kills, events }, Some(killing)) => {
                    assert_eq!(
                        kills,
                        [Kill {
                            container: "c".into(),
                            instance: "u1/c/1".into(),
                            probe: kind,
                            message: "connection refused".into(),
                            grace: 7 * SECOND,
                        }],
                        "{case}"
                    );
                    assert_eq!(
                        events,
                        [
                            unhealthy,
                            Event::about("c", Kind::Normal, "Killing", killing.into())
                        ],
                        "{case}"
                    );
                }
                (Plan::Run(run), None) => {
                    assert_eq!(run.events, [unhealthy], "{case}");
                    assert_eq!(starts(&run), ["c"], "{case}");
                }
                (other, _) => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn readiness_failures_are_reported_and_kill_nothing() {
        let now = Instant::now();
        let (record, mut view) = recorded(&[("c", running())], now);
        view.probes.insert(
            "u1/c/1".into(),
            verdict(
                None,
                &[(
                    ProbeKind::Readiness,
                    "HTTP probe failed with statuscode: 503",
                )],
            ),
        );
        let run = run_plan_at(&record, &view, now);
        assert_eq!(phase(&run, "c"), Phase::Running);
        assert_eq!(
            run.events,
            [Event::about(
                "c",
                Kind::Warning,
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503".into()
            )]
        );
    }

    #[test]
    fn a_deleted_pod_is_torn_down_and_a_gone_one_forgotten() {
        let now = Instant::now();
        let deleting = |grace: Option<i64>| {
            let mut meta = json!({"deletionTimestamp": "2024-01-01T00:00:00Z"});
            if let Some(g) = grace {
                meta["deletionGracePeriodSeconds"] = json!(g);
            }
            pod_of("Always", &["a", "b"], json!({ "metadata": meta }))
        };
        let delete = AfterTearDown::Delete {
            namespace: Some("ns".into()),
            name: "p".into(),
            uid: Some("u1".into()),
        };
        let (record, view) = recorded(&[("a", running()), ("b", exited(0))], now);
        let stopping = vec![Event::about(
            "a",
            Kind::Normal,
            "Killing",
            "Stopping container a".into(),
        )];
        let replaced = pod_of("Always", &["a"], json!({"metadata": {"uid": "u2"}}));
        // (pod, record) -> plan
        let cases: Vec<(&str, Option<Pod>, Option<&PodRecord>, Plan)> = vec![
            (
                "deleted with a grace period",
                Some(deleting(Some(5))),
                Some(&record),
                Plan::TearDown(TearDown {
                    grace: 5 * SECOND,
                    events: stopping.clone(),
                    then: delete.clone(),
                }),
            ),
            (
                "deleted, default grace period",
                Some(deleting(None)),
                Some(&record),
                Plan::TearDown(TearDown {
                    grace: 30 * SECOND,
                    events: stopping,
                    then: delete.clone(),
                }),
            ),
            (
                "deleted before anything ran",
                Some(deleting(Some(0))),
                None,
                Plan::TearDown(TearDown {
                    grace: Duration::ZERO,
                    events: vec![],
                    then: delete,
                }),
            ),
            (
                "gone from the API",
                None,
                Some(&record),
                Plan::TearDown(TearDown {
                    grace: GONE_GRACE,
                    events: vec![],
                    then: AfterTearDown::PlanAgain,
                }),
            ),
            (
                "replaced by a pod of the same name",
                Some(replaced),
                Some(&record),
                Plan::TearDown(TearDown {
                    grace: GONE_GRACE,
                    events: vec![],
                    then: AfterTearDown::PlanAgain,
                }),
            ),
            ("never known", None, None, Plan::Idle),
        ];
        for (case, pod, record, expected) in cases {
            let got = plan(pod.as_ref(), record, &view, at(now), &Backoff::default());
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn entering_crash_loop_back_off_is_one_event() {
        let now = Instant::now();
        let (mut record, view) = recorded(&[("c", exited(2))], now - SECOND);
        record.containers.get_mut("c").unwrap().backoff = Some(10 * SECOND);
        let first = run_plan_at(&record, &view, now);
        assert_eq!(
            first.events,
            [Event::about(
                "c",
                Kind::Warning,
                "BackOff",
                "Back-off restarting failed container c in pod p_ns(u1)".into()
            )]
        );
        let second = run_plan_at(&first.record, &view, now + SECOND);
        assert!(second.events.is_empty(), "{:?}", second.events);
        assert_eq!(second.record, first.record, "the same wait");
    }

    #[test]
    fn a_pod_without_a_record_adopts_what_an_earlier_agent_started() {
        let now = Instant::now();
        let mut view = View {
            found: vec!["u1/c/3".into(), "u1/c/2".into()],
            ..Default::default()
        };
        view.states.insert("u1/c/3".into(), running());
        view.states.insert("u1/c/2".into(), exited(1));
        let run = run(plan(
            Some(&pod("Always")),
            None,
            &view,
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(phase(&run, "c"), Phase::Running, "nothing is started twice");
        let c = &run.record.containers["c"];
        assert_eq!((c.instance.as_deref(), c.attempts), (Some("u1/c/3"), 3));
        assert_eq!(
            (run.record.uid.as_str(), run.record.start_time),
            ("u1", at(now).wall)
        );
        let fresh = self::run(plan(
            Some(&pod("Always")),
            None,
            &View::default(),
            at(now),
            &Backoff::default(),
        ));
        assert_eq!(starts(&fresh), ["c"]);
    }

    #[test]
    fn a_start_is_reported_as_the_kubelet_does() {
        let container: Container =
            serde_json::from_value(json!({"name": "web", "image": "nginx:1"})).unwrap();
        let info = Started {
            program: "/usr/bin/sleep".into(),
            limit_not_enforced: Some("no cgroup".into()),
        };
        let reported: Vec<(Kind, &str, String)> = started(&container, "sleep", &info, false)
            .into_iter()
            .map(|e| (e.kind, e.reason, e.message))
            .collect();
        assert_eq!(
            reported,
            [
                (Kind::Normal, "Pulled", "Container image \"nginx:1\" is not pulled by minik's process runtime: \"sleep\" resolved to /usr/bin/sleep on the node".to_owned()),
                (Kind::Warning, "MemoryLimitNotEnforced", "resources.limits.memory of container web is not enforced on this node: no cgroup".to_owned()),
                (Kind::Normal, "Created", "Created container: web".to_owned()),
                (Kind::Normal, "Started", "Started container web".to_owned()),
            ]
        );
        assert_eq!(
            start_failed("web", "working directory \"/x\" does not exist"),
            Event::about(
                "web",
                Kind::Warning,
                "Failed",
                "Error: working directory \"/x\" does not exist".into()
            )
        );
    }

    // The plan with the fake runtime below it, pass after pass, as the agent runs it.

    /// The view the agent gathers, from the fake runtime.
    fn view_of(record: &PodRecord, rt: &FakeRuntime) -> View {
        let mut view = View::default();
        for instance in record
            .containers
            .values()
            .filter_map(|c| c.instance.as_ref())
        {
            view.states.insert(instance.clone(), rt.state(instance));
        }
        view
    }

    /// One pass the way the agent makes it: plan, then start what is due. Returns the plan.
    fn pass(pod: &Pod, record: &mut PodRecord, rt: &FakeRuntime, backoff: &Backoff) -> Run {
        let now = at(Instant::now());
        let planned = run(plan(
            Some(pod),
            Some(record),
            &view_of(record, rt),
            now,
            backoff,
        ));
        *record = planned.record.clone();
        for name in starts(&planned) {
            let id = pod::begin_start(record, name, now.instant);
            let spec = ContainerSpec::faked(id, FakeScript::of(pod, name));
            if let Err(e) = rt.start(&spec) {
                pod::start_failed(
                    record,
                    name,
                    e.reason(),
                    &e.to_string(),
                    now.instant,
                    backoff,
                );
            }
        }
        planned
    }

    fn container_status(
        pod: &Pod,
        record: &PodRecord,
        rt: &FakeRuntime,
    ) -> (
        String,
        minik_api::k8s_openapi::api::core::v1::ContainerStatus,
    ) {
        let status = pod::status(
            pod,
            record,
            &view_of(record, rt),
            SystemTime::now(),
            "127.0.0.1",
            Some("127.0.0.1"),
        );
        (
            status.phase.unwrap(),
            status.container_statuses.unwrap().remove(0),
        )
    }

    fn scripted(policy: &str, annotations: Value) -> Pod {
        pod_of(
            policy,
            &["c"],
            json!({"metadata": {"annotations": annotations}}),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashing_container_restarts_with_doubling_back_off() {
        let backoff = Backoff::default();
        let rt = FakeRuntime::new();
        let pod = scripted(
            "Always",
            json!({"minik.io/fake-run-seconds": "1", "minik.io/fake-exit-code": "2"}),
        );
        let mut record = PodRecord::new("u1", SystemTime::now());
        assert_eq!(starts(&pass(&pod, &mut record, &rt, &backoff)), ["c"]);
        let (phase, s) = container_status(&pod, &record, &rt);
        assert_eq!(
            (phase.as_str(), s.ready, s.restart_count),
            ("Running", true, 0)
        );

        // Each run lasts 1s; restarts come after 0s, 10s, 20s, 40s, ... capped at 5m.
        let mut expected_restart_count = 0;
        for delay in [0u64, 10, 20, 40, 80, 160, 300, 300] {
            tokio::time::advance(SECOND).await;
            let planned = pass(&pod, &mut record, &rt, &backoff);
            if delay > 0 {
                assert!(starts(&planned).is_empty());
                assert_eq!(planned.requeue_after, Some(Duration::from_secs(delay)));
                let (phase, s) = container_status(&pod, &record, &rt);
                assert_eq!(phase, "Running");
                let waiting = s.state.unwrap().waiting.unwrap();
                assert_eq!(waiting.reason.as_deref(), Some(CRASH_LOOP_BACK_OFF));
                let message = waiting.message.unwrap();
                assert!(
                    message.starts_with(&format!(
                        "back-off {} restarting failed container=c pod=p_ns(u1)",
                        pod::render_duration(Duration::from_secs(delay))
                    )),
                    "{message}"
                );
                assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 2);
                tokio::time::advance(Duration::from_secs(delay)).await;
                assert_eq!(starts(&pass(&pod, &mut record, &rt, &backoff)), ["c"]);
            } else {
                assert_eq!(starts(&planned), ["c"], "the first restart is immediate");
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
            initial: 10 * SECOND,
            max: 300 * SECOND,
            reset: 60 * SECOND,
        };
        let rt = FakeRuntime::new();
        let pod = scripted(
            "Always",
            json!({"minik.io/fake-run-seconds": "100", "minik.io/fake-exit-code": "1"}),
        );
        let mut record = PodRecord::new("u1", SystemTime::now());
        pass(&pod, &mut record, &rt, &backoff);
        for _ in 0..3 {
            tokio::time::advance(100 * SECOND).await;
            assert_eq!(
                starts(&pass(&pod, &mut record, &rt, &backoff)),
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
            let pod = scripted(
                policy,
                json!({"minik.io/fake-run-seconds": "1", "minik.io/fake-exit-code": code}),
            );
            let mut record = PodRecord::new("u1", SystemTime::now());
            pass(&pod, &mut record, &rt, &backoff);
            tokio::time::advance(2 * SECOND).await;
            let planned = pass(&pod, &mut record, &rt, &backoff);
            assert_eq!(
                !starts(&planned).is_empty(),
                restarts,
                "{policy} exit {code}"
            );
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
        let pod = scripted(
            "Always",
            json!({"minik.io/fake-start-error": "executable file not found in $PATH: \"nope\""}),
        );
        let mut record = PodRecord::new("u1", SystemTime::now());
        pass(&pod, &mut record, &rt, &backoff);
        let (phase, s) = container_status(&pod, &record, &rt);
        assert_eq!(phase, "Pending");
        assert_eq!(
            s.state.unwrap().waiting.unwrap().reason.as_deref(),
            Some("RunContainerError")
        );
        let planned = pass(&pod, &mut record, &rt, &backoff);
        assert!(starts(&planned).is_empty());
        assert_eq!(planned.requeue_after, Some(10 * SECOND));
        tokio::time::advance(10 * SECOND).await;
        assert_eq!(starts(&pass(&pod, &mut record, &rt, &backoff)), ["c"]);
    }
}
