//! ResourceQuota arithmetic, as Kubernetes' quota evaluators do it: what one object adds to a
//! namespace's usage (`count/deployments.apps` for every kind, and what its kind's strategy
//! adds: `pods` and `requests.cpu`, `services.nodeports`, ...), which quotas an object
//! concerns, whether a create fits, and the messages of a refusal. The API server's admission
//! and the quota status controller share it, so both count alike.
//!
//! No I/O: callers pass the objects (admitted, canonical JSON) and the time.

use std::collections::BTreeSet;

use serde_json::Value;

pub use crate::quantity::ResourceList;
use crate::quantity::{add_to, Quantity};
use crate::resources::{ResourceInfo, RESOURCES};

/// The `count/<resource>` name of a kind: `count/pods`, `count/deployments.apps`.
pub fn count_name(info: &ResourceInfo) -> String {
    format!("count/{}", info.qualified_plural())
}

fn one() -> Quantity {
    Quantity::from_value(1)
}

/// What an update from `old` to `new` adds to its namespace's usage at `now`: the resources
/// whose usage grows (a Service turning NodePort), by how much. Usage that shrinks is not
/// given back here; the quota status controller recounts it, as in Kubernetes.
pub fn update_delta(info: &ResourceInfo, old: &Value, new: &Value, now: i64) -> ResourceList {
    let before = usage(info, old, now);
    usage(info, new, now)
        .into_iter()
        .filter_map(|(name, after)| {
            let grown = match before.get(&name) {
                Some(was) => after.checked_sub(*was)?,
                None => after,
            };
            (grown > Quantity::default()).then_some((name, grown))
        })
        .collect()
}

/// What one object of `info`'s kind adds to its namespace's usage at `now`.
pub fn usage(info: &ResourceInfo, object: &Value, now: i64) -> ResourceList {
    let Some(mut usage) = info.strategy.quota_usage(object, now) else {
        return ResourceList::new();
    };
    usage.insert(count_name(info), one());
    if let Some(name) = info.strategy.quota_object_count() {
        usage.insert(name.to_owned(), one());
    }
    usage
}

/// Which kinds must be counted to know the usage of the resources a quota limits.
pub fn kinds_for<'a>(hard: impl IntoIterator<Item = &'a String>) -> Vec<&'static ResourceInfo> {
    let mut kinds: BTreeSet<usize> = BTreeSet::new();
    for name in hard {
        for (i, info) in RESOURCES.iter().enumerate() {
            let counted = *name == count_name(info)
                || info.strategy.quota_object_count() == Some(name.as_str())
                || info.strategy.quota_resource(name);
            if info.namespaced && counted {
                kinds.insert(i);
            }
        }
    }
    kinds.into_iter().map(|i| &RESOURCES[i]).collect()
}

/// Whether a quota with these `spec.scopes` covers the object: every scope must, by its
/// kind's strategy (pods know Terminating, NotTerminating, BestEffort and NotBestEffort);
/// objects of other kinds are covered only by quotas without scopes.
pub fn scopes_match(scopes: &[String], info: &ResourceInfo, object: &Value) -> bool {
    scopes
        .iter()
        .all(|scope| info.strategy.in_quota_scope(scope, object))
}

/// The sum of the usage of `objects`, for exactly the resources `hard` names (zero for those
/// nothing uses), as a quota's `status.used` shows it.
pub fn total_usage<'a>(
    hard: &ResourceList,
    scopes: &[String],
    objects: impl IntoIterator<Item = (&'a ResourceInfo, &'a Value)>,
    now: i64,
) -> ResourceList {
    let mut used: ResourceList = hard
        .keys()
        .map(|k| (k.clone(), Quantity::from_value(0)))
        .collect();
    for (info, object) in objects {
        if !scopes_match(scopes, info, object) {
            continue;
        }
        for (name, q) in usage(info, object, now) {
            if used.contains_key(&name) {
                add_to(&mut used, &name, q);
            }
        }
    }
    used
}

/// `a=1,b=2`: Kubernetes' `prettyPrint` of a resource list.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a quota refuses an object. The `Display` is Kubernetes' message, which the API server
/// puts after `pods "name" is forbidden: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The quota limits cpu or memory and some containers do not say how much they need.
    MustSpecify { quota: String, missing: String },
    /// The create would take usage over the limit.
    Exceeded {
        quota: String,
        requested: ResourceList,
        used: ResourceList,
        limited: ResourceList,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::MustSpecify { quota, missing } => {
                write!(f, "failed quota: {quota}: must specify {missing}")
            }
            Refusal::Exceeded {
                quota,
                requested,
                used,
                limited,
            } => write!(
                f,
                "exceeded quota: {quota}, requested: {}, used: {}, limited: {}",
                pretty(requested),
                pretty(used),
                pretty(limited)
            ),
        }
    }
}

/// Checks a create of `object` (usage `delta`) against one quota: its name, `hard` limits and
/// current `used`. Returns the new `used` when the object concerns the quota and fits, `None`
/// when the quota does not concern the object, and the refusal otherwise.
pub fn admit(
    quota: &str,
    hard: &ResourceList,
    used: &ResourceList,
    info: &ResourceInfo,
    object: &Value,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, Refusal> {
    let interesting: Vec<&String> = delta.keys().filter(|k| hard.contains_key(*k)).collect();
    if !delta.is_empty() {
        if let Some(missing) = info.strategy.quota_unspecified(hard, object) {
            return Err(Refusal::MustSpecify {
                quota: quota.to_owned(),
                missing,
            });
        }
    }
    if interesting.is_empty() {
        return Ok(None);
    }
    let mut new_used = used.clone();
    let mut exceeded = Vec::new();
    for name in &interesting {
        let before = used
            .get(*name)
            .copied()
            .unwrap_or_else(|| Quantity::from_value(0));
        let after = before.checked_add(delta[*name]).unwrap_or(before);
        if after > hard[*name] {
            exceeded.push((*name).clone());
        }
        new_used.insert((*name).clone(), after);
    }
    if !exceeded.is_empty() {
        let mask = |list: &ResourceList| -> ResourceList {
            list.iter()
                .filter(|(k, _)| exceeded.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        let zero_filled: ResourceList = exceeded
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    used.get(k)
                        .copied()
                        .unwrap_or_else(|| Quantity::from_value(0)),
                )
            })
            .collect();
        return Err(Refusal::Exceeded {
            quota: quota.to_owned(),
            requested: mask(delta),
            used: zero_filled,
            limited: mask(hard),
        });
    }
    Ok(Some(new_used))
}

/// Reads a JSON resource list (`spec.hard`, `status.used`); entries that do not parse are left
/// out (validation refuses them on write).
pub fn read_list(value: Option<&Value>) -> ResourceList {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let q = Quantity::parse(v.as_str()?).ok()?;
                    Some((k.clone(), q))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A resource list as JSON, quantities in canonical form.
pub fn write_list(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_plural;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        by_plural("", "v1", "pods").unwrap()
    }

    fn list(items: &[(&str, &str)]) -> ResourceList {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
            .collect()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    fn compute_quota() -> ResourceList {
        list(&[
            ("requests.cpu", "1"),
            ("requests.memory", "1Gi"),
            ("limits.cpu", "2"),
            ("limits.memory", "2Gi"),
        ])
    }

    #[test]
    fn pod_usage_sums_containers_and_takes_the_largest_init_container() {
        let p = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]
        }});
        let u = usage(pods(), &p, 0);
        assert_eq!(u["pods"], Quantity::from_value(1));
        assert_eq!(u["count/pods"], Quantity::from_value(1));
        assert_eq!(u["requests.cpu"], Quantity::from_value(2));
        assert_eq!(u["cpu"], Quantity::from_value(2));
        assert_eq!(u["requests.memory"], Quantity::parse("64Mi").unwrap());
        assert_eq!(u["limits.cpu"], Quantity::from_millis(500));
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn finished_and_expired_pods_do_not_count() {
        let done = json!({"status": {"phase": "Succeeded"}});
        assert!(usage(pods(), &done, 0).is_empty());
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:30Z"}});
        let t = crate::time::parse_seconds("2024-01-01T00:00:00Z").unwrap();
        assert!(
            !usage(pods(), &deleting, t).is_empty(),
            "within its grace period"
        );
        assert!(usage(pods(), &deleting, t + 31).is_empty(), "past it");
    }

    #[test]
    fn service_and_count_usage() {
        let svcs = by_plural("", "v1", "services").unwrap();
        let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        let u = usage(svcs, &np, 0);
        assert_eq!(u["services"], Quantity::from_value(1));
        assert_eq!(u["services.nodeports"], Quantity::from_value(2));
        assert_eq!(u["count/services"], Quantity::from_value(1));
        let deploys = by_plural("apps", "v1", "deployments").unwrap();
        let u = usage(deploys, &json!({}), 0);
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/deployments.apps"]);
        let kinds: Vec<&str> = kinds_for(&[
            "pods".to_string(),
            "count/deployments.apps".to_string(),
            "services.nodeports".to_string(),
        ])
        .iter()
        .map(|i| i.kind)
        .collect();
        assert_eq!(kinds, vec!["Pod", "Service", "Deployment"]);
        let counted: Vec<&str> = kinds_for(&[
            "resourcequotas".to_string(),
            "replicationcontrollers".to_string(),
            "services".to_string(),
            "requests.cpu".to_string(),
        ])
        .iter()
        .map(|i| i.kind)
        .collect();
        assert_eq!(
            counted,
            vec!["Pod", "ReplicationController", "Service", "ResourceQuota"]
        );
        let rcs = by_plural("", "v1", "replicationcontrollers").unwrap();
        let u = usage(rcs, &json!({}), 0);
        assert_eq!(
            u.keys().collect::<Vec<_>>(),
            vec!["count/replicationcontrollers", "replicationcontrollers"]
        );
    }

    #[test]
    fn the_kubernetes_exceeded_message() {
        let hard = compute_quota();
        let used = list(&[
            ("requests.cpu", "1"),
            ("requests.memory", "512Mi"),
            ("limits.cpu", "1"),
            ("limits.memory", "1Gi"),
        ]);
        let p = pod(json!([{"name": "nginx", "resources": {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"}}}]));
        let delta = usage(pods(), &p, 0);
        let err = admit("compute-quota", &hard, &used, pods(), &p, &delta).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exceeded quota: compute-quota, requested: requests.cpu=500m, used: requests.cpu=1, limited: requests.cpu=1"
        );
    }

    #[test]
    fn several_exceeded_resources_are_listed_in_order() {
        let hard = list(&[("pods", "1"), ("requests.memory", "1Gi")]);
        let used = list(&[("pods", "1"), ("requests.memory", "1Gi")]);
        let p = pod(json!([{"name": "c", "resources": {"requests": {"memory": "1Mi"}}}]));
        let delta = usage(pods(), &p, 0);
        let err = admit("q", &hard, &used, pods(), &p, &delta).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exceeded quota: q, requested: pods=1,requests.memory=1Mi, used: pods=1,requests.memory=1Gi, limited: pods=1,requests.memory=1Gi"
        );
    }

    #[test]
    fn missing_requests_and_limits_are_named_per_resource() {
        let hard = compute_quota();
        let p = pod(json!([
            {"name": "nginx", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
            {"name": "sidecar", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}, "limits": {"memory": "1Mi"}}}
        ]));
        let delta = usage(pods(), &p, 0);
        let err = admit(
            "compute-quota",
            &hard,
            &ResourceList::new(),
            pods(),
            &p,
            &delta,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed quota: compute-quota: must specify limits.cpu for: nginx,sidecar; limits.memory for: nginx"
        );
    }

    #[test]
    fn fitting_creates_add_to_used_and_unrelated_quotas_are_skipped() {
        let hard = list(&[("pods", "2"), ("services", "1")]);
        let used = list(&[("pods", "1"), ("services", "1")]);
        let p = pod(json!([{"name": "c"}]));
        let delta = usage(pods(), &p, 0);
        let new = admit("q", &hard, &used, pods(), &p, &delta)
            .unwrap()
            .unwrap();
        assert_eq!(new["pods"], Quantity::from_value(2));
        assert_eq!(new["services"], Quantity::from_value(1), "untouched");
        let only_services = list(&[("services", "5")]);
        assert_eq!(
            admit(
                "q",
                &only_services,
                &ResourceList::new(),
                pods(),
                &p,
                &delta
            ),
            Ok(None)
        );
        // A full quota on something else does not block a pod.
        let deploys = by_plural("apps", "v1", "deployments").unwrap();
        let d = json!({});
        let ddelta = usage(deploys, &d, 0);
        assert_eq!(admit("q", &hard, &used, deploys, &d, &ddelta), Ok(None));
    }

    #[test]
    fn total_usage_covers_exactly_the_hard_resources() {
        let hard = list(&[("pods", "10"), ("requests.cpu", "4"), ("configmaps", "3")]);
        let a = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1500m"}}}]));
        let b = pod(json!([{"name": "b", "resources": {"requests": {"cpu": "0.5"}}}]));
        let used = total_usage(&hard, &[], [(pods(), &a), (pods(), &b)], 0);
        assert_eq!(pretty(&used), "configmaps=0,pods=2,requests.cpu=2");
        let best_effort = json!({"status": {"qosClass": "BestEffort"}});
        let scoped = total_usage(
            &hard,
            &["BestEffort".to_string()],
            [(pods(), &a), (pods(), &best_effort)],
            0,
        );
        assert_eq!(scoped["pods"], Quantity::from_value(1));
    }

    #[test]
    fn lists_read_and_write_canonically() {
        let l = read_list(Some(&json!({"memory": "1024Mi", "cpu": "0.5", "bad": "x"})));
        assert_eq!(write_list(&l), json!({"memory": "1Gi", "cpu": "500m"}));
    }
}
