//! The node lifecycle decisions, pure: how healthy a node is, the status it gets when its agent
//! went silent, the taints it should carry, the state of its zone, and when each of its pods is
//! to be evicted. They follow Kubernetes' `NodeLifecycleController` and its taint-based
//! eviction.

use minik_api::k8s_openapi::api::coordination::v1::Lease;
use minik_api::k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use minik_api::podview::PodView;
use serde_json::{json, Value};

use minik_api::wellknown::tolerates;
pub(crate) use minik_api::wellknown::{TAINT_NOT_READY, TAINT_UNREACHABLE};
const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";

/// How a node is, as the controller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    /// Its agent reports Ready and keeps doing so.
    Ready,
    /// Its agent reports it is not ready (Ready=False).
    NotReady,
    /// Its agent stopped reporting (or Ready=Unknown).
    Unreachable,
}

impl Health {
    /// The taint key that marks this state, if any.
    fn taint_key(self) -> Option<&'static str> {
        match self {
            Health::Ready => None,
            Health::NotReady => Some(TAINT_NOT_READY),
            Health::Unreachable => Some(TAINT_UNREACHABLE),
        }
    }
}

/// The status of the node's Ready condition, if it has one.
pub(crate) fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// What the controller watches change to know a node's agent is alive: the Ready condition's
/// last heartbeat and the renew time of the node's Lease, as Kubernetes looks at both (agents
/// renew the Lease every heartbeat and report status only when it changes or every few
/// minutes).
pub(crate) fn heartbeat(node: &Node, lease: Option<&Lease>) -> Option<String> {
    let condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string());
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string());
    match (condition, renewed) {
        (None, None) => None,
        (c, r) => Some(format!(
            "{}|{}",
            c.unwrap_or_default(),
            r.unwrap_or_default()
        )),
    }
}

/// `silent`: no new heartbeat within the grace period.
pub(crate) fn health(node: &Node, silent: bool) -> Health {
    if silent {
        return Health::Unreachable;
    }
    match ready_status(node) {
        Some("True") => Health::Ready,
        Some("False") => Health::NotReady,
        _ => Health::Unreachable,
    }
}

/// The status patch that marks a silent node's conditions Unknown, as Kubernetes does when the
/// kubelet stops posting; `None` when they already are. Other conditions go Unknown too.
pub(crate) fn unknown_status_patch(node: &Node, now: Timestamp) -> Option<Value> {
    let now = Time(now);
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_ready = conditions.iter().any(|c| c.type_ == "Ready");
    if has_ready && conditions.iter().all(|c| c.status == "Unknown") {
        return None;
    }
    let mut out: Vec<Value> = Vec::new();
    for mut c in conditions {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(now.clone());
        }
        out.push(serde_json::to_value(c).unwrap_or(Value::Null));
    }
    if !has_ready {
        out.push(json!({
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
            "message": "Kubelet never posted node status.",
            "lastTransitionTime": now,
        }));
    }
    Some(json!({"status": {"conditions": out}}))
}

/// The state of one zone: Kubernetes' `ComputeZoneState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZoneState {
    Normal,
    /// More than two nodes and at least `threshold` of them are not ready.
    PartialDisruption,
    /// No node is ready.
    FullDisruption,
}

pub(crate) fn zone_state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    if not_ready > 0 && ready == 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The zone a node is in, from its region and zone labels (Kubernetes' `GetZoneKey`).
pub(crate) fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| {
        labels
            .and_then(|l| l.get(k))
            .map(String::as_str)
            .unwrap_or("")
    };
    let region = match get("topology.kubernetes.io/region") {
        "" => get("failure-domain.beta.kubernetes.io/region"),
        r => r,
    };
    let zone = match get("topology.kubernetes.io/zone") {
        "" => get("failure-domain.beta.kubernetes.io/zone"),
        z => z,
    };
    format!("{region}:\u{0}:{zone}")
}

/// The eviction rate of a zone in `state` (nodes per second), as Kubernetes' `setLimiterInZone`.
pub(crate) fn zone_rate(
    state: ZoneState,
    zone_size: usize,
    rate: f64,
    secondary_rate: f64,
    large_cluster: usize,
) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => rate,
        ZoneState::PartialDisruption if zone_size > large_cluster => secondary_rate,
        ZoneState::PartialDisruption => 0.0,
    }
}

fn is_health_taint(t: &Taint) -> bool {
    (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
        && (t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE)
}

/// What the node's health asks of its NoExecute taint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoExecute {
    /// Add it if missing (the eviction rate allowed it).
    Add,
    /// Keep it if there, but do not add it (the zone's eviction rate is exhausted or zero).
    Keep,
    /// Remove it (the node is healthy, or the whole cluster is down, which looks like the
    /// control plane's problem rather than the nodes').
    Remove,
}

/// The node's taints with the not-ready/unreachable ones made to match `health`; `None` when
/// nothing changes. Taints already right keep their `timeAdded`.
pub(crate) fn desired_taints(
    current: &[Taint],
    health: Health,
    no_execute: NoExecute,
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let key = health.taint_key();
    let wanted = |t: &Taint| match key {
        None => false,
        Some(k) if t.key != k => false,
        Some(_) if t.effect == NO_SCHEDULE => true,
        Some(_) => no_execute != NoExecute::Remove,
    };
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !is_health_taint(t) || wanted(t))
        .cloned()
        .collect();
    if let Some(k) = key {
        let has = |taints: &[Taint], effect: &str| {
            taints.iter().any(|t| t.key == k && t.effect == effect)
        };
        let add = |effect: &str| Taint {
            key: k.to_owned(),
            effect: effect.to_owned(),
            value: None,
            time_added: Some(Time(now)),
        };
        if !has(&taints, NO_SCHEDULE) {
            let t = add(NO_SCHEDULE);
            taints.push(t);
        }
        if no_execute == NoExecute::Add && !has(&taints, NO_EXECUTE) {
            let t = add(NO_EXECUTE);
            taints.push(t);
        }
    }
    (taints != current).then_some(taints)
}

/// Whether the node carries a NoExecute taint for its health already.
pub(crate) fn has_no_execute(taints: &[Taint]) -> bool {
    taints
        .iter()
        .any(|t| is_health_taint(t) && t.effect == NO_EXECUTE)
}

/// When a pod on a node with these taints is to be evicted: never when it tolerates every
/// NoExecute taint for ever; otherwise when the first taint's toleration runs out. A taint no
/// toleration matches gives the default eviction timeout; a matching toleration's
/// `tolerationSeconds` wins (Kubernetes' taint manager, `getMinTolerationTime`).
pub(crate) fn eviction_time(
    pod: &PodView,
    taints: &[Taint],
    default_timeout: SignedDuration,
) -> Option<Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let Some(added) = taint.time_added.as_ref().map(|t| t.0) else {
            continue;
        };
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let allowed = if matching.is_empty() {
            Some(default_timeout)
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .map(|s| SignedDuration::from_secs(s.max(0)))
        };
        if let Some(allowed) = allowed {
            let at = added.checked_add(allowed).unwrap_or(Timestamp::MAX);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_lease_is_a_heartbeat_without_a_status_write() {
        let n = node("True");
        let lease = |renew: &str| -> Lease {
            serde_json::from_value(json!({
                "metadata": {"name": "n1", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "n1", "renewTime": renew}
            }))
            .unwrap()
        };
        let without = heartbeat(&n, None);
        let first = heartbeat(&n, Some(&lease("2024-01-01T00:00:10.000000Z")));
        let second = heartbeat(&n, Some(&lease("2024-01-01T00:00:20.000000Z")));
        assert!(without.is_some());
        assert_ne!(without, first);
        assert_ne!(first, second, "a renewal alone counts");
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
        assert_eq!(heartbeat(&bare, None), None);
        assert!(heartbeat(&bare, Some(&lease("2024-01-01T00:00:10.000000Z"))).is_some());
    }

    fn node(ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                {"type": "MemoryPressure", "status": "False"}
            ]}
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn taint(key: &str, effect: &str, added: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: Some(Time(at(added))),
        }
    }

    #[test]
    fn health_follows_the_reported_condition_and_silence() {
        assert_eq!(health(&node("True"), false), Health::Ready);
        assert_eq!(health(&node("True"), true), Health::Unreachable);
        assert_eq!(health(&node("False"), false), Health::NotReady);
        assert_eq!(health(&node("Unknown"), false), Health::Unreachable);
    }

    #[test]
    fn a_silent_node_gets_kubernetes_unknown_condition() {
        let now = at("2024-01-01T00:01:00Z");
        let patch = unknown_status_patch(&node("True"), now).unwrap();
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert_eq!(ready["lastTransitionTime"], "2024-01-01T00:01:00Z");
        assert_eq!(ready["lastHeartbeatTime"], "2024-01-01T00:00:00Z", "kept");
        assert_eq!(patch["status"]["conditions"][1]["status"], "Unknown");
        // Once Unknown, nothing more to write.
        let unknown: Node =
            serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": patch["status"]}))
                .unwrap();
        assert_eq!(unknown_status_patch(&unknown, now), None);
    }

    #[test]
    fn zone_states_follow_the_disruption_rule() {
        assert_eq!(zone_state(1, 1, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(0, 1, 0.55), ZoneState::FullDisruption);
        assert_eq!(
            zone_state(2, 2, 0.55),
            ZoneState::Normal,
            "two are never partial"
        );
        assert_eq!(zone_state(2, 3, 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3, 0.55), ZoneState::Normal, "50% < 55%");
        assert_eq!(zone_rate(ZoneState::Normal, 10, 0.1, 0.01, 50), 0.1);
        assert_eq!(
            zone_rate(ZoneState::PartialDisruption, 10, 0.1, 0.01, 50),
            0.0
        );
        assert_eq!(
            zone_rate(ZoneState::PartialDisruption, 100, 0.1, 0.01, 50),
            0.01
        );
    }

    #[test]
    fn taints_follow_health() {
        let now = at("2024-01-01T00:01:00Z");
        let admin = taint("dedicated", "NoSchedule", "2023-01-01T00:00:00Z");
        let got = desired_taints(
            std::slice::from_ref(&admin),
            Health::Unreachable,
            NoExecute::Add,
            now,
        )
        .unwrap();
        let keys: Vec<(&str, &str)> = got
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute")
            ]
        );
        assert_eq!(got[2].time_added, Some(Time(now)));
        // Already right: nothing to do, and time added is kept.
        assert_eq!(
            desired_taints(
                &got,
                Health::Unreachable,
                NoExecute::Add,
                at("2024-01-01T00:09:00Z")
            ),
            None
        );
        // The rate limiter said no: only NoSchedule for now.
        let limited = desired_taints(&[], Health::Unreachable, NoExecute::Keep, now).unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].effect, "NoSchedule");
        // Not ready instead of unreachable swaps the key.
        let swapped = desired_taints(&got, Health::NotReady, NoExecute::Add, now).unwrap();
        assert!(swapped.iter().all(|t| t.key != TAINT_UNREACHABLE));
        assert!(swapped
            .iter()
            .any(|t| t.key == TAINT_NOT_READY && t.effect == "NoExecute"));
        // Back to ready: only the administrator's taint stays.
        assert_eq!(
            desired_taints(&got, Health::Ready, NoExecute::Remove, now),
            Some(vec![admin])
        );
        // Whole cluster down: no NoExecute.
        let calm = desired_taints(&got, Health::Unreachable, NoExecute::Remove, now).unwrap();
        assert!(!has_no_execute(&calm));
    }

    #[test]
    fn eviction_time_honours_toleration_seconds() {
        let taints = vec![
            taint(TAINT_UNREACHABLE, "NoSchedule", "2024-01-01T00:00:00Z"),
            taint(TAINT_UNREACHABLE, "NoExecute", "2024-01-01T00:00:00Z"),
        ];
        let timeout = SignedDuration::from_secs(300);
        let pod = |tolerations: Value| -> PodView {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
        };
        assert_eq!(
            eviction_time(&pod(json!([])), &taints, timeout),
            Some(at("2024-01-01T00:05:00Z")),
            "no toleration: the default timeout"
        );
        let t = pod(
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]),
        );
        assert_eq!(
            eviction_time(&t, &taints, timeout),
            Some(at("2024-01-01T00:00:30Z"))
        );
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &taints, timeout), None);
        let other_key = pod(
            json!([{"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]),
        );
        assert_eq!(
            eviction_time(&other_key, &taints, timeout),
            Some(at("2024-01-01T00:05:00Z"))
        );
        let zero =
            pod(json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "tolerationSeconds": -5}]));
        assert_eq!(
            eviction_time(&zero, &taints, timeout),
            Some(at("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            eviction_time(&pod(json!([])), &taints[..1], timeout),
            None,
            "NoSchedule evicts nothing"
        );
    }
}
