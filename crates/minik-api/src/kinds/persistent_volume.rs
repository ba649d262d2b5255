//! PersistentVolumes (v1, cluster-scoped): pieces of storage a claim binds to. A new volume
//! starts `Pending` whatever status its client sends (the status is the controllers'). Defaults
//! and validation in [`crate::defaults::persistent_volume`] and
//! [`crate::validation::persistent_volume`]; this module also holds what tables and `describe`
//! print of volumes and claims (access modes, class).

use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, arr, col, name_cell, s, wide, Column, Table, AGE, NAME};
use crate::validation::BETA_STORAGE_CLASS_ANNOTATION;
use crate::{defaults, validation};

typed_rules!(
    PersistentVolume,
    defaults::persistent_volume,
    validation::persistent_volume,
    validation::persistent_volume_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const PERSISTENT_VOLUMES: &dyn Strategy = &Common(TABLE);

/// Access modes as kubectl abbreviates them, in its fixed order (`RWO,ROX,RWX,RWOP`), each
/// once; unknown modes are left out.
pub fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The class of a volume or claim: its beta annotation when it has one (which wins, as in
/// Kubernetes), else `spec.storageClassName`; empty for none.
pub fn storage_class(obj: &Value) -> &str {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(obj, "/spec/storageClassName"))
}

/// The phase as tables show it: `Terminating` once deletion started.
pub(crate) fn shown_phase(obj: &Value) -> &str {
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        s(obj, "/status/phase")
    }
}

/// A string field as tables show it, `<unset>` when absent.
pub(crate) fn or_unset(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("<unset>")
        .to_owned()
}

/// The storage a resource list holds, `0` when it holds none (Go's zero quantity).
pub(crate) fn storage_of(obj: &Value, pointer: &str) -> String {
    match obj
        .pointer(pointer)
        .and_then(|list| list.get("storage"))
        .and_then(Value::as_str)
    {
        Some(q) => q.to_owned(),
        None => "0".to_owned(),
    }
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
    col("Access Modes", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
    col("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
    col("Status", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
    col("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
    col("StorageClass", "StorageClass of the pv"),
    col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    col("Reason", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide(col("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.")),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let claim = match obj.pointer("/spec/claimRef") {
        Some(claim) if claim.is_object() => {
            format!("{}/{}", s(claim, "/namespace"), s(claim, "/name"))
        }
        _ => String::new(),
    };
    vec![
        name_cell(obj),
        json!(storage_of(obj, "/spec/capacity")),
        json!(access_modes(arr(obj, "/spec/accessModes"))),
        json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
        json!(shown_phase(obj)),
        json!(claim),
        json!(storage_class(obj)),
        json!(or_unset(obj, "/spec/volumeAttributesClassName")),
        json!(s(obj, "/status/reason")),
        age_cell(obj, now),
        json!(or_unset(obj, "/spec/volumeMode")),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorList;
    use crate::resources::{by_kind, FieldValidation};

    fn messages(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn pv(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"}, "spec": spec})
    }

    fn host_path_spec() -> Value {
        json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/srv/data"}})
    }

    /// Defaults, then validates, a volume given as JSON.
    fn create_errors(spec: Value) -> Vec<String> {
        let mut v: PersistentVolume = serde_json::from_value(pv(spec)).expect("test volume");
        defaults::persistent_volume(&mut v);
        messages(validation::persistent_volume(&v))
    }

    fn update_errors(old: Value, new: Value) -> Vec<String> {
        let mut old: PersistentVolume = serde_json::from_value(pv(old)).expect("old volume");
        let mut new: PersistentVolume = serde_json::from_value(pv(new)).expect("new volume");
        defaults::persistent_volume(&mut old);
        defaults::persistent_volume(&mut new);
        messages(validation::persistent_volume_update(&new, &old))
    }

    fn info() -> &'static crate::resources::ResourceInfo {
        by_kind("v1", "PersistentVolume").expect("served")
    }

    #[test]
    fn a_new_volume_is_defaulted_and_pending_whatever_status_it_sends() {
        let admitted = info()
            .admit_create(&pv(host_path_spec()), FieldValidation::Strict)
            .expect("admitted");
        assert_eq!(admitted["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(admitted["spec"]["volumeMode"], "Filesystem");
        assert_eq!(
            admitted["spec"]["hostPath"],
            json!({"path": "/srv/data", "type": ""})
        );
        assert_eq!(admitted["status"], json!({"phase": "Pending"}));
        assert!(info().has_subresource("status"));
        assert!(!info().namespaced);
        assert!(!PERSISTENT_VOLUMES.keeps_status_on_create());

        let mut spec = host_path_spec();
        spec["persistentVolumeReclaimPolicy"] = json!("Delete");
        spec["volumeMode"] = json!("Block");
        spec["capacity"] = json!({"storage": "1.5Gi"});
        spec["volumeAttributesClassName"] = json!("gold");
        let admitted = info()
            .admit_create(&pv(spec), FieldValidation::Strict)
            .expect("admitted");
        assert_eq!(admitted["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(admitted["spec"]["volumeMode"], "Block");
        assert_eq!(admitted["spec"]["capacity"]["storage"], "1536Mi");
        assert!(admitted["spec"].get("volumeAttributesClassName").is_none());
    }

    #[test]
    fn a_valid_volume_passes() {
        assert!(create_errors(host_path_spec()).is_empty());
        let local = json!({"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"],
            "storageClassName": "local-storage", "local": {"path": "/mnt/disks/ssd1"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}});
        assert!(create_errors(local).is_empty());
        // Sources minik does not mount are still valid objects.
        let nfs = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadOnlyMany"],
            "nfs": {"server": "nfs.example.com", "path": "/exports"}});
        assert!(create_errors(nfs).is_empty());
        let csi = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}});
        assert!(create_errors(csi).is_empty());
        let rbd = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "rbd": {"monitors": ["10.0.0.1:6789"], "image": "foo"}});
        assert!(create_errors(rbd).is_empty());
    }

    #[test]
    fn volume_rules_and_messages() {
        let with = |patch: Value| {
            let mut spec = host_path_spec();
            for (k, v) in patch.as_object().expect("object").clone() {
                if v.is_null() {
                    spec.as_object_mut().expect("object").remove(&k);
                } else {
                    spec[k] = v;
                }
            }
            spec
        };
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("no source", with(json!({"hostPath": null})),
             vec!["spec: Required value: must specify a volume type"]),
            ("two sources", with(json!({"nfs": {"server": "s", "path": "/p"}})),
             vec!["spec.nfs: Forbidden: may not specify more than 1 volume type"]),
            ("no capacity", with(json!({"capacity": null})),
             vec!["spec.capacity: Required value", "spec.capacity: Unsupported value: null: supported values: \"storage\""]),
            ("capacity of another resource", with(json!({"capacity": {"storage": "1Gi", "cpu": "1"}})),
             vec!["spec.capacity: Unsupported value: {\"cpu\":\"1\",\"storage\":\"1Gi\"}: supported values: \"storage\""]),
            ("zero capacity", with(json!({"capacity": {"storage": "0"}})),
             vec!["spec.capacity[storage]: Invalid value: \"0\": must be greater than zero"]),
            ("negative capacity", with(json!({"capacity": {"storage": "-1Ki"}})),
             vec!["spec.capacity[storage]: Invalid value: -1024: must be a valid resource quantity",
                  "spec.capacity[storage]: Invalid value: \"-1Ki\": must be greater than zero"]),
            ("no access modes", with(json!({"accessModes": null})),
             vec!["spec.accessModes: Required value"]),
            ("unknown access mode", with(json!({"accessModes": ["ReadWriteSometimes"]})),
             vec!["spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""]),
            ("RWOP with others", with(json!({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]})),
             vec!["spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]),
            ("reclaim policy", with(json!({"persistentVolumeReclaimPolicy": "Shred"})),
             vec!["spec.persistentVolumeReclaimPolicy: Unsupported value: \"Shred\": supported values: \"Delete\", \"Recycle\", \"Retain\""]),
            ("recycling /", with(json!({"persistentVolumeReclaimPolicy": "Recycle", "hostPath": {"path": "/tmp/.."}})),
             vec!["spec.hostPath.path: Invalid value: \"/tmp/..\": must not contain '..'",
                  "spec.persistentVolumeReclaimPolicy: Forbidden: may not be 'recycle' for a hostPath mount of '/'"]),
            ("hostPath type", with(json!({"hostPath": {"path": "/a", "type": "Dir"}})),
             vec!["spec.hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\""]),
            ("hostPath without a path", with(json!({"hostPath": {"path": ""}})),
             vec!["spec.hostPath.path: Required value"]),
            ("local without node affinity", with(json!({"hostPath": null, "local": {"path": "/mnt/a"}})),
             vec!["spec.nodeAffinity: Required value: Local volume requires node affinity"]),
            ("node affinity without required", with(json!({"nodeAffinity": {}})),
             vec!["spec.nodeAffinity.required: Required value: must specify required node constraints"]),
            ("node affinity without terms", with(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": []}}})),
             vec!["spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term"]),
            ("node affinity operator", with(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}]}}})),
             vec!["spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"]),
            ("volume mode", with(json!({"volumeMode": "Raw"})),
             vec!["spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""]),
            ("class name", with(json!({"storageClassName": "Fast_SSD"})),
             vec!["spec.storageClassName: Invalid value: \"Fast_SSD\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
            ("nfs needs an absolute path", with(json!({"hostPath": null, "nfs": {"server": "", "path": "exports"}})),
             vec!["spec.nfs.server: Required value", "spec.nfs.path: Invalid value: \"exports\": must be an absolute path"]),
            ("csi needs a handle", with(json!({"hostPath": null, "csi": {"driver": "Bad_Driver", "volumeHandle": "",
                "nodePublishSecretRef": {"name": "s"}}})),
             vec!["spec.csi.driver: Invalid value: \"Bad_Driver\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                  "spec.csi.volumeHandle: Required value",
                  "spec.csi.nodePublishSecretRef.namespace: Required value"]),
        ];
        for (name, spec, want) in cases {
            assert_eq!(create_errors(spec), want, "{name}");
        }
        let mut annotated: PersistentVolume =
            serde_json::from_value(pv(host_path_spec())).expect("volume");
        annotated.metadata.annotations = Some(
            [(
                validation::MOUNT_OPTIONS_ANNOTATION.to_owned(),
                "ro".to_owned(),
            )]
            .into(),
        );
        defaults::persistent_volume(&mut annotated);
        assert_eq!(
            messages(validation::persistent_volume(&annotated)),
            ["metadata.annotations.volume.beta.kubernetes.io/mount-options: Forbidden: may not specify mount options for this volume type"]
        );
        let mut namespaced: PersistentVolume =
            serde_json::from_value(pv(host_path_spec())).expect("volume");
        namespaced.metadata.namespace = Some("default".into());
        assert_eq!(
            messages(validation::persistent_volume(&namespaced)),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn a_volume_keeps_its_source_and_mode() {
        let old = host_path_spec();
        let mut new = host_path_spec();
        new["hostPath"]["path"] = json!("/srv/other");
        let errs = update_errors(old.clone(), new);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0],
            "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation\n  spec.hostPath.path: \"/srv/data\" -> \"/srv/other\""
        );

        let mut new = host_path_spec();
        new["volumeMode"] = json!("Block");
        assert_eq!(
            update_errors(old.clone(), new),
            ["volumeMode: Invalid value: \"Block\": field is immutable"]
        );

        // What may change: capacity, access modes, reclaim policy, class, claimRef.
        let mut new = host_path_spec();
        new["capacity"] = json!({"storage": "2Gi"});
        new["accessModes"] = json!(["ReadWriteMany"]);
        new["persistentVolumeReclaimPolicy"] = json!("Delete");
        new["storageClassName"] = json!("manual");
        new["claimRef"] = json!({"namespace": "default", "name": "data"});
        assert!(update_errors(old, new).is_empty());

        // A CSI volume may gain a controllerExpandSecretRef, nothing else.
        let csi = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "d.example.com", "volumeHandle": "v"}});
        let mut expanded = csi.clone();
        expanded["csi"]["controllerExpandSecretRef"] =
            json!({"name": "s", "namespace": "kube-system"});
        assert!(update_errors(csi.clone(), expanded.clone()).is_empty());
        assert_eq!(update_errors(expanded, csi).len(), 1);
    }

    #[test]
    fn node_affinity_may_be_set_once_or_moved_to_ga_labels() {
        let affinity = |key: &str, value: &str| {
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": key, "operator": "In", "values": [value]}]}]}})
        };
        let old = host_path_spec();
        let mut set = host_path_spec();
        set["nodeAffinity"] = affinity("kubernetes.io/hostname", "n1");
        assert!(update_errors(old.clone(), set.clone()).is_empty());

        let mut moved = host_path_spec();
        moved["nodeAffinity"] = affinity("kubernetes.io/hostname", "n2");
        let errs = update_errors(set.clone(), moved);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("nodeAffinity: Invalid value: {\"required\":")
                && errs[0]
                    .ends_with(": field is immutable, except for updating from beta label to GA"),
            "{errs:?}"
        );
        assert_eq!(update_errors(set, old).len(), 1);

        let mut beta = host_path_spec();
        beta["nodeAffinity"] = affinity("failure-domain.beta.kubernetes.io/zone", "z1");
        let mut ga = host_path_spec();
        ga["nodeAffinity"] = affinity("topology.kubernetes.io/zone", "z1");
        assert!(update_errors(beta.clone(), ga.clone()).is_empty());
        assert_eq!(update_errors(ga, beta).len(), 1, "GA back to beta");
    }

    #[test]
    fn rows_read_like_kubectl() {
        let obj = json!({
            "metadata": {"name": "pv1", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadOnlyMany"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "slow",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}
        });
        let now = 1_700_000_000 + 180;
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "VolumeMode"
            ]
        );
        assert_eq!(COLUMNS.iter().filter(|c| c.priority == 1).count(), 1);
        assert_eq!(
            info().cells(&obj, now),
            [
                json!("pv1"),
                json!("5Gi"),
                json!("RWO,ROX,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("slow"),
                json!("<unset>"),
                json!(""),
                json!("3m"),
                json!("Filesystem")
            ]
        );
        let bare = json!({"metadata": {"name": "x", "deletionTimestamp": "2023-11-14T22:10:20Z",
            "annotations": {BETA_STORAGE_CLASS_ANNOTATION: "old"}}, "spec": {"storageClassName": "new"}});
        let cells = info().cells(&bare, now);
        assert_eq!(cells[1], "0");
        assert_eq!(cells[4], "Terminating");
        assert_eq!(cells[5], "");
        assert_eq!(cells[6], "old");
        assert_eq!(cells[10], "<unset>");
        assert_eq!(info().cells(&json!({}), now).len(), COLUMNS.len());
        assert_eq!(
            access_modes(&[json!("ReadWriteOncePod"), json!("Sometimes")]),
            "RWOP"
        );
    }

    /// Replaces the subtree reached by following `path` (indices taken modulo the fan-out).
    fn mutate(value: &mut Value, path: &[usize], replacement: Value) {
        let Some((first, rest)) = path.split_first() else {
            *value = replacement;
            return;
        };
        match value {
            Value::Object(map) if !map.is_empty() => {
                let n = map.len();
                if let Some(child) = map.values_mut().nth(first % n) {
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

    fn storage_templates() -> Vec<Value> {
        let affinity = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "failure-domain.beta.kubernetes.io/zone", "operator": "In", "values": ["a"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}});
        vec![
            pv(
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                      "local": {"path": "/mnt/a"}, "nodeAffinity": affinity,
                      "claimRef": {"namespace": "default", "name": "data"}}),
            ),
            pv(
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                      "csi": {"driver": "d.example.com", "volumeHandle": "v",
                              "nodePublishSecretRef": {"name": "s", "namespace": "ns"}}}),
            ),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data", "namespace": "default",
                                "annotations": {BETA_STORAGE_CLASS_ANNOTATION: "gold"}},
                   "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1",
                            "resources": {"requests": {"storage": "1Gi"}},
                            "selector": {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}},
                   "status": {"phase": "Bound", "capacity": {"storage": "1Gi"},
                              "allocatedResources": {"storage": "2Gi"}}}),
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc"},
                   "provisioner": "example.com/p", "parameters": {"a": "b"},
                   "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}]}),
        ]
    }

    fn leaf() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-zA-Z0-9 ./:=-]{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("-1Gi"),
                Just("0"),
                Just("1e300"),
                Just("9999999999999999999999999999Ei"),
                Just("/.."),
                Just("ReadWriteOncePod"),
                Just("Block"),
                Just(""),
            ]
            .prop_map(|s| Value::String(s.into())),
            Just(json!({})),
            Just(json!([])),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn storage_admission_never_panics(
            which in 0usize..4,
            mutations in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<usize>(), 0..6), leaf()),
                0..4,
            ),
        ) {
            let original = storage_templates()[which].clone();
            let mut object = original.clone();
            for (path, replacement) in mutations {
                mutate(&mut object, &path, replacement);
            }
            let kinds = ["PersistentVolume", "PersistentVolumeClaim", "StorageClass"];
            for info in crate::resources::RESOURCES.iter().filter(|r| kinds.contains(&r.kind)) {
                for fv in [FieldValidation::Strict, FieldValidation::Ignore] {
                    let _ = info.admit_create(&object, fv);
                    let _ = info.admit_update(&object, &original, fv);
                    let _ = info.admit_update(&original, &object, fv);
                }
                let _ = info.cells(&object, 0);
                let _ = crate::quota::usage(info, &object, 0);
            }
        }
    }

    #[test]
    fn the_storage_templates_are_admitted() {
        for template in storage_templates() {
            let kind = template["kind"].as_str().unwrap_or_default().to_owned();
            let api_version = template["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let info = by_kind(&api_version, &kind).expect("served");
            let admitted = info.admit_create(&template, FieldValidation::Strict);
            assert!(admitted.is_ok(), "{kind}: {admitted:?}");
        }
    }
}
