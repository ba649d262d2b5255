//! RuntimeClasses (node.k8s.io/v1): defaults and validation, and the RuntimeClass admission of
//! pods (Kubernetes' `plugin/pkg/admission/runtimeclass`), which the API server carries out on
//! a pod's create with the class it read ([`Admission::RuntimeClass`](super::Admission)).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, name_cell, s, Column, Table, AGE, NAME};
use crate::quantity::Quantity;
use crate::{defaults, validation};

typed_rules!(
    RuntimeClass,
    defaults::runtime_class,
    validation::runtime_class,
    validation::runtime_class_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const RUNTIME_CLASSES: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        "Handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
    ),
    AGE,
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(s(obj, "/handler")),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

/// The RuntimeClass a pod names in `spec.runtimeClassName`, if it names one.
pub fn class_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
}

/// The RuntimeClass admission of a pod being created, after its defaults: with the class
/// named by [`class_name`] as stored (`None` when it does not exist; ignored when the pod
/// names none), the pod gets the class's `overhead.podFixed` as its `spec.overhead`, the
/// class's node selector merged into its own, and the class's tolerations it lacks. The error
/// is why the pod is refused, in Kubernetes' words (what follows `pods "NAME" is forbidden: `):
/// the class does not exist, the pod's overhead or node selector conflicts with it, or the pod
/// sets an overhead that no class defines.
///
/// A pod whose fields do not decode is left as it is (admission refuses such a pod before).
pub fn admit_pod(pod: &mut Value, class: Option<&Value>) -> Result<(), String> {
    let class = match class_name(pod) {
        None => None,
        Some(name) => match class {
            Some(class) => Some(class),
            None => return Err(format!("pod rejected: RuntimeClass {name:?} not found")),
        },
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let Some(mut overhead) = field::<BTreeMap<String, K8sQuantity>>(spec, "overhead") else {
        return Ok(());
    };
    let class_overhead = class
        .and_then(|c| c.get("overhead"))
        .filter(|o| !o.is_null())
        .map(|o| read::<BTreeMap<String, K8sQuantity>>(o.get("podFixed")).unwrap_or_default());

    // Kubernetes' setOverhead.
    if let Some(fixed) = &class_overhead {
        if !overhead.is_empty() && !same_resources(fixed, &overhead) {
            return Err(OVERHEAD_MISMATCH.into());
        }
        overhead.clone_from(fixed);
        put(spec, "overhead", &overhead);
    }

    // Kubernetes' setScheduling.
    if let Some(scheduling) = class
        .and_then(|c| c.get("scheduling"))
        .filter(|s| !s.is_null())
    {
        let (Some(selector), Some(tolerations)) = (
            field::<BTreeMap<String, String>>(spec, "nodeSelector"),
            field::<Vec<Toleration>>(spec, "tolerations"),
        ) else {
            return Ok(());
        };
        let class_selector =
            read::<BTreeMap<String, String>>(scheduling.get("nodeSelector")).unwrap_or_default();
        let class_tolerations =
            read::<Vec<Toleration>>(scheduling.get("tolerations")).unwrap_or_default();
        let selector = merge_node_selectors(selector, &class_selector)?;
        put(spec, "nodeSelector", &selector);
        put(
            spec,
            "tolerations",
            &merge_tolerations(tolerations, class_tolerations),
        );
    }

    // Kubernetes' validateOverhead, on the pod as admitted.
    if !overhead.is_empty() {
        match &class_overhead {
            Some(fixed) if same_resources(fixed, &overhead) => {}
            Some(_) => return Err(OVERHEAD_MISMATCH.into()),
            None => {
                return Err(
                    "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                        .into(),
                )
            }
        }
    }
    Ok(())
}

const OVERHEAD_MISMATCH: &str =
    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead";

/// A field of the pod's spec: empty when absent or null, `None` when it does not decode.
fn field<T: DeserializeOwned + Default>(spec: &Map<String, Value>, name: &str) -> Option<T> {
    read(spec.get(name))
}

fn read<T: DeserializeOwned + Default>(value: Option<&Value>) -> Option<T> {
    match value {
        None | Some(Value::Null) => Some(T::default()),
        Some(v) => serde_json::from_value(v.clone()).ok(),
    }
}

/// Sets a field of the spec, or removes it when `value` is empty (as Go leaves it out).
fn put<T: serde::Serialize>(spec: &mut Map<String, Value>, name: &str, value: &T) {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) if m.is_empty() => {
            spec.remove(name);
        }
        Ok(Value::Array(a)) if a.is_empty() => {
            spec.remove(name);
        }
        Ok(v) => {
            spec.insert(name.into(), v);
        }
        Err(_) => {}
    }
}

/// Kubernetes' semantic equality of resource lists: the same names, and amounts that are equal
/// however they are written (`1` and `1000m`).
fn same_resources(a: &BTreeMap<String, K8sQuantity>, b: &BTreeMap<String, K8sQuantity>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(name, qa)| {
            b.get(name).is_some_and(
                |qb| match (Quantity::try_from(qa), Quantity::try_from(qb)) {
                    (Ok(x), Ok(y)) => x == y,
                    _ => qa.0 == qb.0,
                },
            )
        })
}

/// The pod's node selector with the class's added; a key the pod selects with another value is
/// a conflict (the first in key order is named).
fn merge_node_selectors(
    mut pod: BTreeMap<String, String>,
    class: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    for (key, value) in class {
        match pod.get(key) {
            Some(pod_value) if pod_value != value => {
                return Err(format!(
                    "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {value}; pod.spec.nodeSelector[{key}] = {pod_value}"
                ))
            }
            _ => {
                pod.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(pod)
}

/// A toleration as Go compares it: absent and empty strings are the same.
#[derive(Clone, Copy, PartialEq)]
struct Tol<'a> {
    key: &'a str,
    operator: &'a str,
    value: &'a str,
    effect: &'a str,
    seconds: Option<i64>,
}

impl<'a> Tol<'a> {
    fn of(t: &'a Toleration) -> Self {
        let s = |o: &'a Option<String>| o.as_deref().unwrap_or("");
        Tol {
            key: s(&t.key),
            operator: s(&t.operator),
            value: s(&t.value),
            effect: s(&t.effect),
            seconds: t.toleration_seconds,
        }
    }

    /// Whether `self` tolerates everything `t` does (Kubernetes' `isSuperset`).
    fn covers(self, t: Tol<'_>) -> bool {
        if self == t {
            return true;
        }
        let matches_all_keys = self.key.is_empty() && self.operator == "Exists";
        if t.key != self.key && !matches_all_keys {
            return false;
        }
        if t.effect != self.effect && !self.effect.is_empty() {
            return false;
        }
        if self.effect == "NoExecute" {
            if let Some(limit) = self.seconds {
                if t.seconds.is_none_or(|s| s > limit) {
                    return false;
                }
            }
        }
        match self.operator {
            "Equal" | "" => t.operator == "Equal" && t.value == self.value,
            "Exists" => true,
            _ => false,
        }
    }
}

/// The pod's tolerations and the class's in one list, keeping of two tolerations where one
/// tolerates everything the other does only the wider one, and of equal ones the first
/// (Kubernetes' `MergeTolerations`).
fn merge_tolerations(pod: Vec<Toleration>, class: Vec<Toleration>) -> Vec<Toleration> {
    let all: Vec<Toleration> = pod.into_iter().chain(class).collect();
    let mut kept: Vec<usize> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        let t = Tol::of(t);
        if kept.iter().any(|&k| Tol::of(&all[k]).covers(t)) {
            continue;
        }
        let wider_later = all[i + 1..]
            .iter()
            .map(Tol::of)
            .any(|later| later != t && later.covers(t));
        if !wider_later {
            kept.push(i);
        }
    }
    kept.into_iter().map(|i| all[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn pods_without_a_class_pass_unless_they_set_an_overhead() {
        let mut p = pod(json!({"containers": []}));
        let before = p.clone();
        assert_eq!(admit_pod(&mut p, None), Ok(()));
        assert_eq!(p, before);
        let mut p = pod(json!({"overhead": {"cpu": "1"}}));
        assert_eq!(
            admit_pod(&mut p, None),
            Err("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead".into())
        );
    }

    #[test]
    fn a_missing_class_refuses_the_pod() {
        let mut p = pod(json!({"runtimeClassName": "gvisor"}));
        assert_eq!(
            admit_pod(&mut p, None),
            Err("pod rejected: RuntimeClass \"gvisor\" not found".into())
        );
    }

    #[test]
    fn the_overhead_is_set_and_must_match() {
        let class = json!({"handler": "runsc", "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}}});
        let mut p = pod(json!({"runtimeClassName": "gvisor"}));
        admit_pod(&mut p, Some(&class)).unwrap();
        assert_eq!(
            p["spec"]["overhead"],
            json!({"cpu": "250m", "memory": "64Mi"})
        );
        // The same amounts written otherwise are the same overhead.
        let mut p = pod(
            json!({"runtimeClassName": "gvisor", "overhead": {"cpu": "0.25", "memory": "64Mi"}}),
        );
        admit_pod(&mut p, Some(&class)).unwrap();
        assert_eq!(p["spec"]["overhead"]["cpu"], "250m");
        let mut p = pod(json!({"runtimeClassName": "gvisor", "overhead": {"cpu": "1"}}));
        assert_eq!(
            admit_pod(&mut p, Some(&class)),
            Err(OVERHEAD_MISMATCH.into())
        );
        // A class without an overhead does not admit a pod that sets one.
        let plain = json!({"handler": "runc"});
        let mut p = pod(json!({"runtimeClassName": "runc", "overhead": {"cpu": "1"}}));
        assert!(admit_pod(&mut p, Some(&plain))
            .unwrap_err()
            .contains("without corresponding RuntimeClass"));
    }

    #[test]
    fn node_selectors_merge_and_conflicts_are_refused() {
        let class = json!({"handler": "runsc", "scheduling": {"nodeSelector": {"sandbox": "gvisor", "zone": "a"}}});
        let mut p = pod(json!({"runtimeClassName": "gvisor", "nodeSelector": {"disk": "ssd"}}));
        admit_pod(&mut p, Some(&class)).unwrap();
        assert_eq!(
            p["spec"]["nodeSelector"],
            json!({"disk": "ssd", "sandbox": "gvisor", "zone": "a"})
        );
        assert!(p["spec"].get("tolerations").is_none());
        let mut p = pod(json!({"runtimeClassName": "gvisor", "nodeSelector": {"zone": "a"}}));
        admit_pod(&mut p, Some(&class)).unwrap();
        let mut p = pod(json!({"runtimeClassName": "gvisor", "nodeSelector": {"zone": "b"}}));
        assert_eq!(
            admit_pod(&mut p, Some(&class)),
            Err("conflict: runtimeClass.scheduling.nodeSelector[zone] = a; pod.spec.nodeSelector[zone] = b".into())
        );
    }

    #[test]
    fn tolerations_are_appended_without_redundant_ones() {
        let class = json!({"handler": "runsc", "scheduling": {"tolerations": [
            {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "db"},
        ]}});
        let mut p = pod(json!({"runtimeClassName": "gvisor", "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "db"},
            {"key": "sandbox", "operator": "Equal", "value": "x", "effect": "NoSchedule"},
        ]}));
        admit_pod(&mut p, Some(&class)).unwrap();
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "dedicated", "operator": "Equal", "value": "db"},
                {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"},
            ])
        );
    }

    #[test]
    fn toleration_supersets_follow_kubernetes() {
        let t = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let all = t(json!({"operator": "Exists"}));
        let exec_60 = t(
            json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}),
        );
        let exec_30 = t(
            json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}),
        );
        let exec_forever = t(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}));
        let equal_empty_op = t(json!({"key": "k", "value": "v"}));
        let equal = t(json!({"key": "k", "operator": "Equal", "value": "v"}));
        assert!(Tol::of(&all).covers(Tol::of(&exec_60)));
        assert!(Tol::of(&exec_60).covers(Tol::of(&exec_30)));
        assert!(!Tol::of(&exec_30).covers(Tol::of(&exec_60)));
        assert!(!Tol::of(&exec_60).covers(Tol::of(&exec_forever)));
        assert!(Tol::of(&exec_forever).covers(Tol::of(&exec_60)));
        assert!(Tol::of(&equal_empty_op).covers(Tol::of(&equal)));
        assert!(!Tol::of(&equal).covers(Tol::of(&equal_empty_op)));
        assert_eq!(
            merge_tolerations(vec![exec_30.clone(), exec_30.clone()], vec![all.clone()]),
            vec![all]
        );
        assert_eq!(
            merge_tolerations(vec![exec_30.clone()], vec![exec_30.clone()]),
            vec![exec_30]
        );
    }

    #[test]
    fn undecodable_fields_are_left_for_validation() {
        let class = json!({"handler": "runsc", "scheduling": {"nodeSelector": {"a": "b"}}});
        let mut p = pod(json!({"runtimeClassName": "gvisor", "nodeSelector": ["x"]}));
        let before = p.clone();
        assert_eq!(admit_pod(&mut p, Some(&class)), Ok(()));
        assert_eq!(p, before);
    }
}
