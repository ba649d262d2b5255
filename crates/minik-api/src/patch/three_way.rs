//! kubectl's client-side apply: the three-way strategic merge patch (`CreateThreeWayMergePatch`)
//! from the last applied manifest, the manifest being applied and the live object. It reads the
//! same `FIELD_RULES` as the server's merge, so a list the server merges by key is diffed by that
//! key here, and a list the server merges as a set is diffed as a set.

use serde_json::{json, Map, Value};

use super::{
    field_shape, list_strategy, struct_name, ListStrategy, DELETE_FROM_PRIMITIVE_LIST_PREFIX,
    PATCH_DIRECTIVE, SERVED_KINDS, SET_ELEMENT_ORDER_PREFIX,
};

/// What to send so that `current` takes every value of `modified` and loses what `original`
/// (the last applied manifest) had and `modified` no longer has. Fields only the live object has
/// (defaults, status, other writers' changes) are kept. An empty object means nothing to send.
///
/// `kind` selects the rows of the table; an unknown kind is diffed without a schema (maps by
/// key, every list replaced whole), as the server merges it.
pub fn three_way_merge_patch(
    kind: &str,
    original: Option<&Value>,
    modified: &Value,
    current: &Value,
) -> Value {
    let empty = Map::new();
    let root = SERVED_KINDS.iter().copied().find(|served| *served == kind);
    Value::Object(diff_map(
        original.and_then(Value::as_object),
        modified.as_object().unwrap_or(&empty),
        current.as_object().unwrap_or(&empty),
        root,
    ))
}

fn diff_map(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: &Map<String, Value>,
    owner: Option<&'static str>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, m) in modified {
        let shape = field_shape(owner, key);
        let o = original.and_then(|o| o.get(key));
        match (m, current.get(key)) {
            (Value::Object(m), Some(Value::Object(c))) => {
                let sub = diff_map(o.and_then(Value::as_object), m, c, struct_name(shape));
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(m), Some(Value::Array(c))) => {
                let o = o.and_then(Value::as_array).map(Vec::as_slice);
                diff_list(&mut patch, key, o, m, c, list_strategy(shape));
            }
            (m, c) if Some(m) != c => {
                patch.insert(key.clone(), m.clone());
            }
            _ => {}
        }
    }
    // What the last apply set and this one does not is deleted, if it is still there.
    if let Some(original) = original {
        for key in original.keys() {
            if !modified.contains_key(key) && current.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

/// Adds to `patch` what list `key` needs, by the strategy the server merges it with.
fn diff_list(
    patch: &mut Map<String, Value>,
    key: &str,
    original: Option<&[Value]>,
    modified: &[Value],
    current: &[Value],
    strategy: ListStrategy,
) {
    match strategy {
        ListStrategy::MergeByKey {
            key: merge_key,
            element,
        } if keyed(modified, merge_key)
            && keyed(current, merge_key)
            && original.is_none_or(|o| keyed(o, merge_key)) =>
        {
            if let Some((items, order)) =
                diff_keyed_list(original, modified, current, merge_key, element)
            {
                patch.insert(key.to_owned(), Value::Array(items));
                patch.insert(
                    format!("{SET_ELEMENT_ORDER_PREFIX}{key}"),
                    Value::Array(order),
                );
            }
        }
        ListStrategy::MergeSet if scalars(modified) && scalars(current) => {
            let added: Vec<Value> = modified
                .iter()
                .filter(|m| !current.contains(m))
                .cloned()
                .collect();
            let deleted: Vec<Value> = original
                .unwrap_or_default()
                .iter()
                .filter(|o| !modified.contains(o) && current.contains(o))
                .cloned()
                .collect();
            let live_order: Vec<&Value> = current.iter().filter(|c| modified.contains(c)).collect();
            let reordered = live_order.len() != modified.len()
                || live_order.iter().zip(modified).any(|(c, m)| *c != m);
            if !added.is_empty() {
                patch.insert(key.to_owned(), Value::Array(added));
            }
            if !deleted.is_empty() {
                patch.insert(
                    format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}{key}"),
                    Value::Array(deleted),
                );
            }
            if reordered {
                patch.insert(
                    format!("{SET_ELEMENT_ORDER_PREFIX}{key}"),
                    Value::Array(modified.to_vec()),
                );
            }
        }
        // Replaced whole: by the table, or because the elements do not fit its merge rule
        // (which the server's merge then also replaces).
        _ => {
            if modified != current {
                patch.insert(key.to_owned(), Value::Array(modified.to_vec()));
            }
        }
    }
}

/// Whether every element is a map with a scalar under `key`.
fn keyed(list: &[Value], key: &str) -> bool {
    list.iter().all(|e| {
        e.get(key)
            .is_some_and(|k| !k.is_object() && !k.is_array() && !k.is_null())
    })
}

fn scalars(list: &[Value]) -> bool {
    list.iter().all(|e| !e.is_object() && !e.is_array())
}

/// The patch of a list merged on `key`: changed and new elements, deletions of elements the
/// last apply had, and the order of the manifest; `None` when nothing differs.
fn diff_keyed_list(
    original: Option<&[Value]>,
    modified: &[Value],
    current: &[Value],
    key: &str,
    element: &'static str,
) -> Option<(Vec<Value>, Vec<Value>)> {
    let find = |list: &[Value], k: &Value| list.iter().find(|e| e.get(key) == Some(k)).cloned();
    let mut items = Vec::new();
    for m in modified {
        let k = &m[key];
        match (m.as_object(), find(current, k)) {
            (Some(mm), Some(Value::Object(c))) => {
                let o = original.and_then(|o| find(o, k));
                let mut sub =
                    diff_map(o.as_ref().and_then(Value::as_object), mm, &c, Some(element));
                if !sub.is_empty() {
                    sub.insert(key.to_owned(), k.clone());
                    items.push(Value::Object(sub));
                }
            }
            _ => items.push(m.clone()),
        }
    }
    for o in original.unwrap_or_default() {
        let k = &o[key];
        if find(modified, k).is_none() && find(current, k).is_some() {
            items.push(json!({key: k, PATCH_DIRECTIVE: "delete"}));
        }
    }
    let wanted: Vec<&Value> = modified.iter().map(|e| &e[key]).collect();
    let live_order: Vec<&Value> = current
        .iter()
        .map(|e| &e[key])
        .filter(|k| wanted.contains(k))
        .collect();
    if items.is_empty() && wanted == live_order {
        return None;
    }
    let order = wanted.into_iter().map(|k| json!({key: k})).collect();
    Some((items, order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::strategic_merge_patch;

    /// Applies `modified` over `current` (last applied `original`) as the server would: the
    /// three-way patch, then the server's strategic merge.
    fn apply(kind: &str, original: &Value, modified: &Value, current: &Value) -> Value {
        let patch = three_way_merge_patch(kind, Some(original), modified, current);
        strategic_merge_patch(kind, current, &patch).expect("the server takes the patch")
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn removed_merge_list_elements_are_removed_on_the_server() {
        // Each case: the last applied spec (also live, plus a server default) and the new one.
        let cases = [
            (
                "a topology spread constraint",
                json!({"topologySpreadConstraints": [
                    {"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"},
                    {"topologyKey": "host", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}]}),
                json!({"topologySpreadConstraints": [
                    {"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]}),
                "/spec/topologySpreadConstraints",
            ),
            (
                "a toleration",
                json!({"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}),
                json!({"tolerations": [{"key": "a", "operator": "Exists"}]}),
                "/spec/tolerations",
            ),
            (
                "a container port",
                json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}, {"containerPort": 81}]}]}),
                json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}),
                "/spec/containers/0/ports",
            ),
        ];
        for (what, before, after, pointer) in cases {
            let original = pod(before.clone());
            let modified = pod(after.clone());
            let mut current = original.clone();
            current["spec"]["restartPolicy"] = json!("Always");
            let result = apply("Pod", &original, &modified, &current);
            assert_eq!(
                result.pointer(pointer),
                modified.pointer(pointer),
                "{what}: {result}"
            );
            assert_eq!(
                result["spec"]["restartPolicy"], "Always",
                "{what}: a default is kept"
            );
        }
    }

    #[test]
    fn finalizers_are_diffed_as_a_set() {
        let original = json!({"metadata": {"name": "p", "finalizers": ["a/x", "b/y"]}});
        let modified = json!({"metadata": {"name": "p", "finalizers": ["b/y", "c/z"]}});
        // Another writer added its own finalizer: the apply keeps it.
        let current = json!({"metadata": {"name": "p", "finalizers": ["a/x", "b/y", "other/w"]}});
        let patch = three_way_merge_patch("Pod", Some(&original), &modified, &current);
        assert_eq!(
            patch,
            json!({"metadata": {
                "finalizers": ["c/z"],
                "$deleteFromPrimitiveList/finalizers": ["a/x"],
                "$setElementOrder/finalizers": ["b/y", "c/z"],
            }})
        );
        let result = strategic_merge_patch("Pod", &current, &patch).expect("merges");
        let finalizers = result["metadata"]["finalizers"].as_array().expect("a list");
        assert!(!finalizers.contains(&json!("a/x")), "{result}");
        assert!(finalizers.contains(&json!("c/z")), "{result}");
        assert!(finalizers.contains(&json!("other/w")), "{result}");
    }

    #[test]
    fn an_unchanged_manifest_sends_nothing() {
        let manifest = pod(json!({
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}],
        }));
        let mut live = manifest.clone();
        live["metadata"]["finalizers"] = json!(["x/y"]);
        live["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        live["status"] = json!({"phase": "Running"});
        assert_eq!(
            three_way_merge_patch("Pod", Some(&manifest), &manifest, &live),
            json!({})
        );
    }

    #[test]
    fn service_ports_merge_on_port() {
        let svc = |ports: Value| json!({"kind": "Service", "spec": {"ports": ports}});
        let original = svc(json!([{"port": 80, "targetPort": 8080}, {"port": 443}]));
        let modified = svc(json!([{"port": 80, "targetPort": 9090}]));
        let result = apply("Service", &original, &modified, &original);
        assert_eq!(
            result["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}])
        );
    }

    #[test]
    fn removed_fields_and_elements_are_deleted_and_changes_sent() {
        let original = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}, {"name": "b", "image": "1"}]}});
        let modified = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "2"}]}});
        let current = json!({"metadata": {"labels": {"app": "web", "tier": "x", "other": "kept"}}, "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}], "imagePullPolicy": "IfNotPresent"}, {"name": "b", "image": "1"}]}});
        let patch = three_way_merge_patch("Pod", Some(&original), &modified, &current);
        assert_eq!(
            patch,
            json!({
                "metadata": {"labels": {"tier": null}},
                "spec": {
                    "containers": [{"name": "a", "image": "2", "env": null}, {"name": "b", "$patch": "delete"}],
                    "$setElementOrder/containers": [{"name": "a"}],
                }
            })
        );
        let applied = strategic_merge_patch("Pod", &current, &patch).expect("merges");
        assert_eq!(
            applied["spec"]["containers"],
            json!([{"name": "a", "image": "2", "imagePullPolicy": "IfNotPresent"}])
        );
        assert_eq!(
            applied["metadata"]["labels"],
            json!({"app": "web", "other": "kept"})
        );
    }
}
