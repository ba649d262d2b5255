//! Property tests: no input makes manifest parsing or admission panic. Inputs are realistic
//! manifests of every served kind with random subtrees replaced by arbitrary JSON, plus raw
//! bytes for the document parser, and YAML nested around the pre-scan's depth limit, which must
//! refuse only what serde_yaml refuses too.

use minik_api::decode::{self, prescan};
use minik_api::resources::{FieldValidation, RESOURCES};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9 ._/:=-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("500m"),
            Just("1Gi"),
            Just("25%"),
            Just("$patch"),
            Just("Always"),
            Just("TCP"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn templates() -> Vec<Value> {
    let pod_spec = json!({
        "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "echo $(A)"],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}},
                         "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}]}}}
    });
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec});
    vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": pod_spec}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r", "namespace": "default"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc", "namespace": "default"},
               "spec": {"replicas": 1, "selector": {"app": "web"}, "template": template}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
               "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "s", "namespace": "default"},
               "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 8080}]}]}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
               "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
               "status": {"capacity": {"cpu": "2", "memory": "4Gi"}}}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "type": "Normal"}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "default"},
               "spec": {"hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"}}}),
    ]
}

/// Replaces the subtree reached by following `path` (indices taken modulo the fan-out) with
/// `replacement`.
fn mutate(value: &mut Value, path: &[usize], replacement: Value) {
    let Some((first, rest)) = path.split_first() else {
        *value = replacement;
        return;
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(first % map.len())
                .cloned()
                .expect("index in range");
            if let Some(child) = map.get_mut(&key) {
                mutate(child, rest, replacement);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let n = items.len();
            mutate(&mut items[first % n], rest, replacement);
        }
        _ => *value = replacement,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn admission_never_panics(
        which in 0usize..10,
        mutations in prop::collection::vec((prop::collection::vec(any::<usize>(), 0..7), arbitrary_json()), 0..4),
    ) {
        let templates = templates();
        let original = templates[which % templates.len()].clone();
        let mut object = original.clone();
        for (path, replacement) in mutations {
            mutate(&mut object, &path, replacement);
        }
        for info in RESOURCES {
            for fv in [FieldValidation::Strict, FieldValidation::Ignore] {
                let _ = info.admit_create(&object, fv);
                let _ = info.admit_update(&object, &original, fv);
                let _ = info.admit_update(&original, &object, fv);
            }
        }
    }

    #[test]
    fn document_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::parse_document(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = decode::parse_documents(text);
        }
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[a-z:\\- \\n\\[\\]{}'\"0-9&*!|>#%@`,]{0,200}") {
        let _ = decode::parse_document(text.as_bytes());
        let _ = decode::parse_documents(&text);
        let _ = prescan::check(&text);
    }

    #[test]
    fn the_pre_scan_refuses_only_what_serde_yaml_refuses(text in nested_yaml()) {
        if let Err(e) = prescan::check(&text) {
            prop_assert!(serde_yaml_refuses(&text), "{e}: serde_yaml accepts {text:?}");
        }
        let _ = decode::parse_documents(&text);
    }
}

/// Whether serde_yaml fails on one of the documents of `text`.
fn serde_yaml_refuses(text: &str) -> bool {
    serde_yaml::Deserializer::from_str(text).any(|document| Value::deserialize(document).is_err())
}

/// YAML nested 110 to 140 deep (serde_yaml's limit is 128), in flow or block style or both,
/// mostly valid, sometimes left open, with scalars, comments and other documents around.
fn nested_yaml() -> impl Strategy<Value = String> {
    let opener = prop::sample::select(vec![
        ("[", "]"),
        ("{a: ", "}"),
        ("[{a: ", "}]"),
        ("[a, ", "]"),
        ("{? ", "}"),
        ("['[{', ", "]"),
        ("[\"]}\", ", "]"),
        ("[ # [[\n", "]"),
    ]);
    let filler = prop::sample::select(vec![
        "",
        "",
        "",
        "x: 1\n",
        "y: '[{'\n",
        "z: \"]}\"\n",
        "# [[\n",
        "w: |\n  [[\n",
        "---\n",
        "...\n",
        "]",
        "&a ",
        "*a\n",
    ]);
    (
        0usize..3,
        opener,
        110usize..140,
        prop::collection::vec(filler.clone(), 0..3),
        prop::collection::vec(filler, 0..3),
        prop_oneof![3 => Just(None), 1 => (0usize..140).prop_map(Some)],
    )
        .prop_map(|(style, (open, close), depth, head, tail, closed)| {
            let (nest, flow) = match style {
                0 => (format!("a: {}1", open.repeat(depth)), depth),
                1 => {
                    let block: String = (0..depth)
                        .map(|i| format!("{}a:\n", " ".repeat(i)))
                        .collect();
                    (format!("{block}{}1", " ".repeat(depth)), 0)
                }
                _ => {
                    let block: String = (0..depth / 2)
                        .map(|i| format!("{}- b:\n", "  ".repeat(i)))
                        .collect();
                    let indent = "  ".repeat(depth / 2 + 1);
                    (
                        format!("{block}{indent}{}1", open.repeat(depth / 2)),
                        depth / 2,
                    )
                }
            };
            let closers = close.repeat(closed.unwrap_or(flow));
            format!("{}{nest}{closers}\n{}", head.concat(), tail.concat())
        })
}

#[test]
fn every_template_is_admitted_unchanged() {
    for template in templates() {
        let info = minik_api::resources::by_kind(
            template["apiVersion"].as_str().unwrap(),
            template["kind"].as_str().unwrap(),
        )
        .unwrap();
        if let Err(e) = info.admit_create(&template, FieldValidation::Strict) {
            panic!("{}: {e}", info.kind);
        }
    }
}
