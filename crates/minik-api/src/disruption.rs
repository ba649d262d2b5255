//! The arithmetic of PodDisruptionBudgets (policy/v1), shared by the disruption controller that
//! writes a budget's status and by the eviction subresource that spends it: which pods a budget
//! selects, how many it expects and wants healthy, how many may go now, and whether one
//! eviction may go. Kubernetes keeps the same rules in `pkg/controller/disruption` and
//! `pkg/registry/core/pod/storage/eviction.go`.
//!
//! Pure: time is passed in (`now`), and every time written is cut to whole seconds, as a
//! Kubernetes timestamp holds them, so that a status written and read back compares equal.

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::podview::PodView;
use crate::selector::Selector;
use crate::status::ApiError;

/// How long a pod the eviction subresource recorded in `status.disruptedPods` is expected to
/// take to be deleted; after that the controller forgets it (Kubernetes' `DeletionTimeout`).
pub const DELETION_TIMEOUT_SECONDS: i64 = 2 * 60;

/// The most pods `status.disruptedPods` may hold before evictions are refused (Kubernetes'
/// `MaxDisruptedPodSize`).
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// The condition type the controller keeps on every budget.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// The reason of a true [`DISRUPTION_ALLOWED`]: more pods are healthy than the budget needs.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// The reason of a false [`DISRUPTION_ALLOWED`]: no pod may go now.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// The reason of a false [`DISRUPTION_ALLOWED`] when the status could not be computed.
pub const SYNC_FAILED: &str = "SyncFailed";

/// The `Status.details.causes[].reason` of a refused eviction.
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// The message of the 429 answered to an eviction a budget refuses.
pub const EVICTION_REFUSED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// The message of the 500 answered to an eviction of a pod that several budgets select.
pub const MORE_THAN_ONE_BUDGET: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// `spec.unhealthyPodEvictionPolicy`: unhealthy pods may go only while the budget is met (the
/// behaviour when the field is absent).
pub const IF_HEALTHY_BUDGET: &str = "IfHealthyBudget";
/// `spec.unhealthyPodEvictionPolicy`: unhealthy pods may always go.
pub const ALWAYS_ALLOW: &str = "AlwaysAllow";

/// The supported values of `spec.unhealthyPodEvictionPolicy`, sorted.
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &[ALWAYS_ALLOW, IF_HEALTHY_BUDGET];

/// `now` cut to whole seconds.
fn whole_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// The value of an int-or-percent against `total` (Kubernetes' `GetScaledValueFromIntOrPercent`):
/// an integer as it is, a percentage of `total` rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_owned(),
                );
            };
            let percent: i64 = digits.parse().map_err(|_| {
                format!("invalid value for IntOrString: invalid value {s:?}: not a number")
            })?;
            let product = percent.saturating_mul(i64::from(total));
            let scaled = if round_up {
                product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(scaled).unwrap_or(if scaled < 0 { i32::MIN } else { i32::MAX }))
        }
    }
}

/// The pods a budget selects, as a selector (Kubernetes' `LabelSelectorAsSelector`): an absent
/// selector selects nothing, an empty one every pod of the namespace (policy/v1).
pub fn pod_selector(pdb: &PodDisruptionBudget) -> Result<Selector, String> {
    match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => Ok(Selector::nothing()),
        Some(sel) => Selector::from_label_selector(sel),
    }
}

/// Whether the budget covers the pod: same namespace and a selector that matches its labels. A
/// budget whose selector does not parse covers nothing.
pub fn selects(pdb: &PodDisruptionBudget, pod: &PodView) -> bool {
    if pdb.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let Ok(selector) = pod_selector(pdb) else {
        return false;
    };
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    selector.matches(pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS))
}

/// Kubernetes' `IsPodReady`: the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &PodView) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the caller found of a pod's managing controller when the budget needs its scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerScale {
    /// The pod has no controller reference.
    Unmanaged,
    /// The controller whose `spec.replicas` counts: a Deployment (for a pod of one of its
    /// ReplicaSets), a ReplicaSet, a ReplicationController or a StatefulSet.
    Found { uid: String, replicas: i32 },
    /// The pod names a controller that is not one of those, or that could not be found.
    Missing,
}

/// How many pods a budget expects and how many of them it wants healthy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub expected_pods: i32,
    pub desired_healthy: i32,
    /// Pods without a controller, which a percentage or `maxUnavailable` cannot count (the
    /// controller warns about them, as Kubernetes' `UnmanagedPods` event does).
    pub unmanaged: Vec<String>,
}

/// Kubernetes' `getExpectedPodCount`. An integer `minAvailable` expects the selected pods and
/// wants that many healthy; a percentage `minAvailable` and `maxUnavailable` expect the sum of
/// the scales of the pods' controllers (asked of `owner_of`), and round their share up.
/// Errors read as Kubernetes' (`found no controllers for pod "web-1"`).
pub fn expected(
    spec: &PodDisruptionBudgetSpec,
    pods: &[&PodView],
    mut owner_of: impl FnMut(&PodView) -> OwnerScale,
) -> Result<Expected, String> {
    let mut scale = || -> Result<(i32, Vec<String>), String> {
        let mut controllers: BTreeMap<String, i32> = BTreeMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match owner_of(pod) {
                OwnerScale::Unmanaged => unmanaged.push(name),
                OwnerScale::Found { uid, replicas } => {
                    controllers.entry(uid).or_insert(replicas);
                }
                OwnerScale::Missing => {
                    return Err(format!("found no controllers for pod {name:?}"))
                }
            }
        }
        let total = controllers
            .values()
            .fold(0i32, |sum, n| sum.saturating_add(*n));
        Ok((total, unmanaged))
    };
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected_pods, unmanaged) = scale()?;
        let max = scaled_value(max_unavailable, expected_pods, true)?;
        return Ok(Expected {
            expected_pods,
            desired_healthy: expected_pods.saturating_sub(max).max(0),
            unmanaged,
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Expected {
            expected_pods: i32::try_from(pods.len()).unwrap_or(i32::MAX),
            desired_healthy: *n,
            unmanaged: Vec::new(),
        }),
        Some(percent @ IntOrString::String(_)) => {
            let (expected_pods, unmanaged) = scale()?;
            Ok(Expected {
                expected_pods,
                desired_healthy: scaled_value(percent, expected_pods, true)?,
                unmanaged,
            })
        }
        None => Ok(Expected::default()),
    }
}

/// The entries of `status.disruptedPods` still worth keeping, and what else the controller
/// learns from them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Disrupted {
    /// Pods that were evicted less than [`DELETION_TIMEOUT_SECONDS`] ago and are not yet being
    /// deleted.
    pub pods: BTreeMap<String, Time>,
    /// When the earliest of those times out: look at the budget again then.
    pub recheck_at: Option<Timestamp>,
    /// Pods that were evicted but still are not being deleted after the timeout (Kubernetes
    /// records `NotDeleted` events for them).
    pub overdue: Vec<String>,
}

/// Kubernetes' `buildDisruptedPodMap`: keeps the recorded evictions of selected pods that are
/// not yet being deleted and not yet timed out. Gone pods and deleting pods are forgotten.
pub fn disrupted_pods(
    pods: &[&PodView],
    recorded: Option<&BTreeMap<String, Time>>,
    now: Timestamp,
) -> Disrupted {
    let mut out = Disrupted::default();
    let Some(recorded) = recorded else {
        return out;
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(at) = recorded.get(name) else {
            continue;
        };
        let expected_deletion =
            at.0.checked_add(SignedDuration::from_secs(DELETION_TIMEOUT_SECONDS))
                .unwrap_or(Timestamp::MAX);
        if expected_deletion < now {
            out.overdue.push(name.to_owned());
        } else {
            if out.recheck_at.is_none_or(|r| expected_deletion < r) {
                out.recheck_at = Some(expected_deletion);
            }
            out.pods.insert(name.to_owned(), at.clone());
        }
    }
    out
}

/// Kubernetes' `countHealthyPods`: ready pods that are neither being deleted nor recently
/// evicted.
pub fn current_healthy(
    pods: &[&PodView],
    disrupted: &BTreeMap<String, Time>,
    now: Timestamp,
) -> i32 {
    let count = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            !disrupted.get(name).is_some_and(|at| {
                at.0.checked_add(SignedDuration::from_secs(DELETION_TIMEOUT_SECONDS))
                    .is_ok_and(|end| end > now)
            })
        })
        .filter(|pod| is_pod_ready(pod))
        .count();
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// Sets the condition of `type_` as Kubernetes' `meta.SetStatusCondition` does: its transition
/// time moves to `now` only when its status changes (or it is new).
fn set_condition(
    conditions: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let now = Time(whole_seconds(now));
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(c) => {
            if c.status != status {
                c.status = status.to_owned();
                c.last_transition_time = now;
            }
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: DISRUPTION_ALLOWED.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation,
            last_transition_time: now,
        }),
    }
}

/// Kubernetes' `UpdateDisruptionAllowedCondition`: `DisruptionAllowed` true with
/// `SufficientPods` when disruptions are allowed, else false with `InsufficientPods`.
pub fn update_disruption_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: Timestamp) {
    let generation = status.observed_generation;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if status.disruptions_allowed > 0 {
        set_condition(conditions, "True", SUFFICIENT_PODS, "", generation, now);
    } else {
        set_condition(conditions, "False", INSUFFICIENT_PODS, "", generation, now);
    }
}

/// The status the controller writes (Kubernetes' `updatePdbStatus`): disruptions are allowed
/// only when pods are expected, as many as there are healthy pods beyond the desired ones.
pub fn status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    expected: &Expected,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut allowed = current_healthy.saturating_sub(expected.desired_healthy);
    if expected.expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: expected.desired_healthy,
        expected_pods: expected.expected_pods,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    update_disruption_allowed_condition(&mut status, now);
    status
}

/// Whether the budget's stored status already says what `new` says (Kubernetes' check before
/// writing: the counts, the disrupted pods, the observed generation and an up-to-date
/// condition), so that nothing needs writing.
pub fn up_to_date(pdb: &PodDisruptionBudget, new: &PodDisruptionBudgetStatus) -> bool {
    let Some(old) = pdb.status.as_ref() else {
        return false;
    };
    let empty = BTreeMap::new();
    let same_counts = old.current_healthy == new.current_healthy
        && old.desired_healthy == new.desired_healthy
        && old.expected_pods == new.expected_pods
        && old.disruptions_allowed == new.disruptions_allowed
        && old.disrupted_pods.as_ref().unwrap_or(&empty)
            == new.disrupted_pods.as_ref().unwrap_or(&empty)
        && old.observed_generation == pdb.metadata.generation;
    let condition = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED);
    let condition_ok = condition.is_some_and(|c| {
        if old.disruptions_allowed > 0 {
            c.status == "True" && c.reason == SUFFICIENT_PODS
        } else {
            c.status == "False" && c.reason == INSUFFICIENT_PODS
        }
    });
    same_counts && condition_ok
}

/// The status written when the controller cannot compute one (Kubernetes' `failSafe`): no
/// disruption allowed, and `DisruptionAllowed` false with `SyncFailed` and the error.
pub fn failed_status(
    pdb: &PodDisruptionBudget,
    message: &str,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        "False",
        SYNC_FAILED,
        message,
        generation,
        now,
    );
    status
}

/// Kubernetes' `canIgnorePDB`: a pod that is finished, pending or already being deleted may be
/// evicted whatever its budgets say (it disrupts nothing more).
pub fn can_ignore_budget(pod: &PodView) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    matches!(phase, "Succeeded" | "Failed" | "Pending" | "")
        || pod.metadata.deletion_timestamp.is_some()
}

/// Whether an unhealthy (not ready) pod may be evicted without spending the budget, as
/// `spec.unhealthyPodEvictionPolicy` says: `AlwaysAllow` always; `IfHealthyBudget` (the
/// default) only while the budget is met. A ready pod never may.
pub fn unhealthy_may_go(pdb: &PodDisruptionBudget, pod: &PodView) -> bool {
    if is_pod_ready(pod) {
        return false;
    }
    let policy = pdb
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    if policy == Some(ALWAYS_ALLOW) {
        return true;
    }
    let status = pdb.status.clone().unwrap_or_default();
    status.current_healthy >= status.desired_healthy && status.desired_healthy > 0
}

/// Why a budget refuses an eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 429: no disruption is allowed now, or the budget's status is not yet computed for its
    /// spec. `cause` is the message of the `DisruptionBudget` cause.
    TooManyRequests { cause: String },
    /// 403: the budget's status cannot be trusted.
    Forbidden(String),
}

impl Refusal {
    /// The answer to the eviction: a 429 with [`EVICTION_REFUSED`] and the `DisruptionBudget`
    /// cause naming the budget, as Kubernetes answers.
    pub fn into_error(self, budget: &str) -> ApiError {
        match self {
            Refusal::TooManyRequests { cause } => ApiError::TooManyRequestsBecause {
                message: EVICTION_REFUSED.into(),
                cause_reason: "DisruptionBudget".into(),
                cause_message: cause,
            },
            Refusal::Forbidden(why) => ApiError::Forbidden(format!(
                "poddisruptionbudgets.policy {budget:?} is forbidden: {why}"
            )),
        }
    }
}

/// Kubernetes' `checkAndDecrement`: whether the budget lets one pod go now and, if so, its
/// status after the eviction: one disruption fewer (the condition turns false at zero) and the
/// pod recorded in `disruptedPods` at `now`.
pub fn check_and_decrement(
    pdb: &PodDisruptionBudget,
    pod_name: &str,
    now: Timestamp,
) -> Result<PodDisruptionBudgetStatus, Refusal> {
    let name = pdb.metadata.name.as_deref().unwrap_or_default();
    let mut status = pdb.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(Refusal::TooManyRequests {
            cause: format!("The disruption budget {name} is still being processed by the server."),
        });
    }
    if status.disruptions_allowed < 0 {
        return Err(Refusal::Forbidden(
            "pdb disruptions allowed is negative".into(),
        ));
    }
    if status.disrupted_pods.as_ref().map_or(0, BTreeMap::len) > MAX_DISRUPTED_PODS {
        return Err(Refusal::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(Refusal::TooManyRequests {
            cause: format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            ),
        });
    }
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        update_disruption_allowed_condition(&mut status, now);
    }
    status
        .disrupted_pods
        .get_or_insert_with(BTreeMap::new)
        .insert(pod_name.to_owned(), Time(whole_seconds(now)));
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podview::PodStatusView;
    use k8s_openapi::api::core::v1::PodCondition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn pod(name: &str, ready: bool) -> PodView {
        PodView {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            },
            status: Some(PodStatusView {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_scale_and_round_as_kubernetes() {
        assert_eq!(scaled_value(&pct("50%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&pct("50%"), 3, false), Ok(1));
        assert_eq!(scaled_value(&pct("34%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&pct("100%"), 7, true), Ok(7));
        assert_eq!(scaled_value(&pct("0%"), 7, true), Ok(0));
        assert_eq!(scaled_value(&IntOrString::Int(4), 2, true), Ok(4));
        assert!(scaled_value(&pct("half"), 3, true).is_err());
        assert!(scaled_value(&pct("x%"), 3, true).is_err());
    }

    #[test]
    fn selection_needs_the_namespace_and_a_selector() {
        let web = pod("a", true);
        let mut b = budget(Some(IntOrString::Int(1)), None);
        assert!(selects(&b, &web));
        let mut other_ns = web.clone();
        other_ns.metadata.namespace = Some("kube-system".into());
        assert!(!selects(&b, &other_ns));
        // policy/v1: an empty selector selects every pod, an absent one none.
        b.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        assert!(selects(&b, &web));
        b.spec.as_mut().unwrap().selector = None;
        assert!(!selects(&b, &web));
    }

    #[test]
    fn integer_min_available_expects_the_selected_pods() {
        let (a, b, c) = (pod("a", true), pod("b", true), pod("c", false));
        let pods = [&a, &b, &c];
        let spec = budget(Some(IntOrString::Int(2)), None).spec.unwrap();
        // No controller needed: the pods themselves are counted.
        let e = expected(&spec, &pods, |_| OwnerScale::Missing).unwrap();
        assert_eq!((e.expected_pods, e.desired_healthy), (3, 2));
        let healthy = current_healthy(&pods, &BTreeMap::new(), at(0));
        assert_eq!(healthy, 2);
        let s = status(&budget(None, None), healthy, &e, BTreeMap::new(), at(0));
        assert_eq!(s.disruptions_allowed, 0);
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
    }

    #[test]
    fn percentages_use_the_controllers_scale_and_round_up() {
        let (a, b) = (pod("a", true), pod("b", true));
        let pods = [&a, &b];
        let owner = |_: &PodView| OwnerScale::Found {
            uid: "d1".into(),
            replicas: 5,
        };
        // minAvailable 50% of 5 replicas: 2.5, rounded up to 3.
        let spec = budget(Some(pct("50%")), None).spec.unwrap();
        let e = expected(&spec, &pods, owner).unwrap();
        assert_eq!((e.expected_pods, e.desired_healthy), (5, 3));
        // maxUnavailable 30% of 5: 1.5 rounded up to 2, so 3 wanted healthy.
        let spec = budget(None, Some(pct("30%"))).spec.unwrap();
        let e = expected(&spec, &pods, owner).unwrap();
        assert_eq!((e.expected_pods, e.desired_healthy), (5, 3));
        // maxUnavailable as an integer also needs the scale.
        let spec = budget(None, Some(IntOrString::Int(1))).spec.unwrap();
        let e = expected(&spec, &pods, owner).unwrap();
        assert_eq!((e.expected_pods, e.desired_healthy), (5, 4));
        // More unavailable than expected: nobody is needed.
        let spec = budget(None, Some(IntOrString::Int(9))).spec.unwrap();
        assert_eq!(expected(&spec, &pods, owner).unwrap().desired_healthy, 0);
        // Two pods of two controllers add their scales.
        let e = expected(
            &budget(Some(pct("100%")), None).spec.unwrap(),
            &pods,
            |p: &PodView| OwnerScale::Found {
                uid: p.metadata.name.clone().unwrap(),
                replicas: 2,
            },
        )
        .unwrap();
        assert_eq!((e.expected_pods, e.desired_healthy), (4, 4));
    }

    #[test]
    fn pods_without_a_known_controller_are_reported() {
        let (a, b) = (pod("a", true), pod("b", true));
        let spec = budget(Some(pct("50%")), None).spec.unwrap();
        let e = expected(&spec, &[&a, &b], |p: &PodView| {
            if p.metadata.name.as_deref() == Some("a") {
                OwnerScale::Unmanaged
            } else {
                OwnerScale::Found {
                    uid: "rs".into(),
                    replicas: 1,
                }
            }
        })
        .unwrap();
        assert_eq!(e.unmanaged, vec!["a"]);
        assert_eq!((e.expected_pods, e.desired_healthy), (1, 1));
        let err = expected(&spec, &[&a], |_| OwnerScale::Missing).unwrap_err();
        assert_eq!(err, "found no controllers for pod \"a\"");
    }

    #[test]
    fn disruptions_allowed_are_healthy_pods_beyond_the_desired_ones() {
        let pods: Vec<PodView> = (0..4).map(|i| pod(&format!("p{i}"), true)).collect();
        let refs: Vec<&PodView> = pods.iter().collect();
        let e = Expected {
            expected_pods: 4,
            desired_healthy: 2,
            unmanaged: vec![],
        };
        let b = budget(Some(IntOrString::Int(2)), None);
        let s = status(
            &b,
            current_healthy(&refs, &BTreeMap::new(), at(0)),
            &e,
            BTreeMap::new(),
            at(0),
        );
        assert_eq!((s.current_healthy, s.disruptions_allowed), (4, 2));
        assert_eq!(s.observed_generation, Some(1));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        // No pod expected: nothing may go, whatever is healthy.
        let none = Expected {
            expected_pods: 0,
            desired_healthy: 0,
            unmanaged: vec![],
        };
        assert_eq!(
            status(&b, 3, &none, BTreeMap::new(), at(0)).disruptions_allowed,
            0
        );
    }

    #[test]
    fn recorded_evictions_are_kept_for_two_minutes() {
        let (a, b, mut c) = (pod("a", true), pod("b", true), pod("c", true));
        c.metadata.deletion_timestamp = Some(Time(at(0)));
        let recorded: BTreeMap<String, Time> = [
            ("a".to_owned(), Time(at(0))),
            ("b".to_owned(), Time(at(-200))),
            ("c".to_owned(), Time(at(0))),
            ("gone".to_owned(), Time(at(0))),
        ]
        .into();
        let pods = [&a, &b, &c];
        let d = disrupted_pods(&pods, Some(&recorded), at(10));
        // a is kept; b timed out; c is being deleted; gone is gone.
        assert_eq!(d.pods.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(d.overdue, vec!["b"]);
        assert_eq!(d.recheck_at, Some(at(DELETION_TIMEOUT_SECONDS)));
        // a does not count as healthy while it is expected to go; c is being deleted.
        assert_eq!(current_healthy(&pods, &d.pods, at(10)), 1);
        assert_eq!(current_healthy(&pods, &d.pods, at(500)), 2);
    }

    #[test]
    fn an_up_to_date_status_is_not_rewritten() {
        let mut b = budget(Some(IntOrString::Int(1)), None);
        let e = Expected {
            expected_pods: 2,
            desired_healthy: 1,
            unmanaged: vec![],
        };
        let s = status(&b, 2, &e, BTreeMap::new(), at(0));
        assert!(!up_to_date(&b, &s));
        b.status = Some(s.clone());
        assert!(up_to_date(&b, &status(&b, 2, &e, BTreeMap::new(), at(60))));
        // The transition time stays while the status stays.
        let again = status(&b, 2, &e, BTreeMap::new(), at(60));
        assert_eq!(again.conditions, s.conditions);
        // A new generation is not yet observed.
        b.metadata.generation = Some(2);
        assert!(!up_to_date(&b, &s));
        let failed = failed_status(&b, "boom", at(5));
        let c = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                failed.disruptions_allowed,
                c.status.as_str(),
                c.reason.as_str(),
                c.message.as_str()
            ),
            (0, "False", SYNC_FAILED, "boom")
        );
        assert_eq!(c.last_transition_time, Time(at(5)));
    }

    #[test]
    fn evictions_spend_the_budget_or_are_refused() {
        let mut b = budget(Some(IntOrString::Int(1)), None);
        b.status = Some(status(
            &b,
            2,
            &Expected {
                expected_pods: 2,
                desired_healthy: 1,
                unmanaged: vec![],
            },
            BTreeMap::new(),
            at(0),
        ));
        let after = check_and_decrement(&b, "p0", at(3)).unwrap();
        assert_eq!(after.disruptions_allowed, 0);
        assert_eq!(
            after.disrupted_pods.as_ref().unwrap().get("p0"),
            Some(&Time(at(3)))
        );
        assert_eq!(
            after.conditions.as_ref().unwrap()[0].reason,
            INSUFFICIENT_PODS
        );
        b.status = Some(after);
        assert_eq!(
            check_and_decrement(&b, "p1", at(4)),
            Err(Refusal::TooManyRequests {
                cause: "The disruption budget web needs 1 healthy pods and has 2 currently".into()
            })
        );
        let refused = check_and_decrement(&b, "p1", at(4))
            .unwrap_err()
            .into_error("web");
        assert_eq!(
            (refused.code(), refused.to_string().as_str()),
            (429, EVICTION_REFUSED)
        );
        // A spec not yet seen by the controller.
        b.metadata.generation = Some(2);
        assert_eq!(
            check_and_decrement(&b, "p1", at(4)),
            Err(Refusal::TooManyRequests {
                cause: "The disruption budget web is still being processed by the server.".into()
            })
        );
        b.metadata.generation = Some(1);
        b.status.as_mut().unwrap().disruptions_allowed = -1;
        assert!(matches!(
            check_and_decrement(&b, "p1", at(4)),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn unhealthy_pods_go_as_the_policy_says() {
        let mut b = budget(Some(IntOrString::Int(1)), None);
        let sick = pod("sick", false);
        let well = pod("well", true);
        b.status = Some(PodDisruptionBudgetStatus {
            current_healthy: 1,
            desired_healthy: 1,
            ..Default::default()
        });
        assert!(unhealthy_may_go(&b, &sick));
        assert!(!unhealthy_may_go(&b, &well));
        b.status.as_mut().unwrap().current_healthy = 0;
        assert!(!unhealthy_may_go(&b, &sick));
        b.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some(ALWAYS_ALLOW.into());
        assert!(unhealthy_may_go(&b, &sick));
        // Finished, pending and deleting pods ignore their budgets.
        let mut pending = sick.clone();
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(can_ignore_budget(&pending));
        assert!(!can_ignore_budget(&well));
    }
}
