//! PersistentVolumeClaims (v1): a namespace's requests for storage, bound to a volume. A new
//! claim starts `Pending` whatever status its client sends. Claims are charged against quotas
//! as Kubernetes' claim evaluator charges them: `persistentvolumeclaims`, `requests.storage`,
//! and both again per class (`<class>.storageclass.storage.k8s.io/requests.storage`). Defaults
//! and validation in [`crate::defaults::persistent_volume_claim`] and
//! [`crate::validation::persistent_volume_claim`].

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{json, Value};

use super::persistent_volume::{access_modes, or_unset, shown_phase, storage_class, storage_of};
use super::{typed_rules, Strategy};
use crate::printers::{age_cell, arr, col, name_cell, s, wide, Column, Table, AGE, NAME};
use crate::quantity::{Quantity, ResourceList};
use crate::{defaults, validation};

typed_rules!(
    PersistentVolumeClaim,
    defaults::persistent_volume_claim,
    validation::persistent_volume_claim,
    validation::persistent_volume_claim_update
);

#[derive(Debug)]
struct PersistentVolumeClaims;

pub(crate) const PERSISTENT_VOLUME_CLAIMS: &dyn Strategy = &PersistentVolumeClaims;

/// What a class's quota resources are named after: `gold` + this + `requests.storage`.
const STORAGE_CLASS_QUOTA_SUFFIX: &str = ".storageclass.storage.k8s.io/";

impl Strategy for PersistentVolumeClaims {
    fn table(&self) -> &Table {
        &TABLE
    }

    fn quota_object_count(&self) -> Option<&'static str> {
        Some("persistentvolumeclaims")
    }

    fn quota_usage(&self, pvc: &Value, _now: i64) -> Option<ResourceList> {
        let mut usage = ResourceList::new();
        let class = storage_class(pvc);
        if !class.is_empty() {
            usage.insert(
                format!("{class}{STORAGE_CLASS_QUOTA_SUFFIX}persistentvolumeclaims"),
                Quantity::from_value(1),
            );
        }
        if let Some(storage) = storage_usage(pvc) {
            usage.insert("requests.storage".to_owned(), storage);
            if !class.is_empty() {
                usage.insert(
                    format!("{class}{STORAGE_CLASS_QUOTA_SUFFIX}requests.storage"),
                    storage,
                );
            }
        }
        Some(usage)
    }

    fn quota_resource(&self, name: &str) -> bool {
        name == "requests.storage"
            || name
                .split_once(STORAGE_CLASS_QUOTA_SUFFIX)
                .is_some_and(|(class, resource)| {
                    !class.is_empty()
                        && matches!(resource, "requests.storage" | "persistentvolumeclaims")
                })
    }
}

/// The storage a claim is charged: its request, or what was allocated to it when that is
/// more, in whole bytes.
fn storage_usage(pvc: &Value) -> Option<Quantity> {
    let read = |pointer: &str| {
        pvc.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|q| Quantity::parse(q).ok())
    };
    let requested = read("/spec/resources/requests/storage")?;
    let charged = match read("/status/allocatedResources/storage") {
        Some(allocated) if allocated > requested => allocated,
        _ => requested,
    };
    Some(round_up_to_whole(charged))
}

fn round_up_to_whole(q: Quantity) -> Quantity {
    const NANOS_PER_UNIT: i128 = 1_000_000_000;
    let nanos = q.as_nanos();
    let rem = nanos.rem_euclid(NANOS_PER_UNIT);
    if rem == 0 {
        return q;
    }
    match nanos
        .checked_sub(rem)
        .and_then(|n| n.checked_add(NANOS_PER_UNIT))
    {
        Some(n) => Quantity::from_nanos(n).with_format(q.format()),
        None => q,
    }
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", "capacity represents the actual resources of the underlying volume."),
    col("Access Modes", "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
    col("StorageClass", "StorageClass of the pvc"),
    col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    AGE,
    wide(col("VolumeMode", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.")),
];

/// The cells of an object's row, one per column. Capacity and access modes are the bound
/// volume's, shown once the claim names one.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let volume = s(obj, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            storage_of(obj, "/status/capacity"),
            access_modes(arr(obj, "/status/accessModes")),
        )
    };
    vec![
        name_cell(obj),
        json!(shown_phase(obj)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(obj)),
        json!(or_unset(obj, "/spec/volumeAttributesClassName")),
        age_cell(obj, now),
        json!(or_unset(obj, "/spec/volumeMode")),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorList;
    use crate::resources::{by_kind, FieldValidation, ResourceInfo};
    use crate::validation::BETA_STORAGE_CLASS_ANNOTATION;

    fn info() -> &'static ResourceInfo {
        by_kind("v1", "PersistentVolumeClaim").expect("served")
    }

    fn claim(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data", "namespace": "default"}, "spec": spec})
    }

    fn spec() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}})
    }

    fn typed(v: Value) -> PersistentVolumeClaim {
        let mut pvc: PersistentVolumeClaim = serde_json::from_value(v).expect("test claim");
        defaults::persistent_volume_claim(&mut pvc);
        pvc
    }

    fn messages(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn create_errors(spec: Value) -> Vec<String> {
        messages(validation::persistent_volume_claim(&typed(claim(spec))))
    }

    fn update_errors(old: Value, new: Value) -> Vec<String> {
        messages(validation::persistent_volume_claim_update(
            &typed(new),
            &typed(old),
        ))
    }

    #[test]
    fn a_new_claim_is_defaulted_and_pending_whatever_status_it_sends() {
        let mut sent = claim(spec());
        sent["spec"]["resources"]["requests"]["storage"] = json!("0.5Gi");
        let admitted = info()
            .admit_create(&sent, FieldValidation::Strict)
            .expect("admitted");
        assert_eq!(admitted["spec"]["volumeMode"], "Filesystem");
        assert_eq!(
            admitted["spec"]["resources"]["requests"]["storage"],
            "512Mi"
        );
        assert_eq!(admitted["status"], json!({"phase": "Pending"}));
        assert!(info().has_subresource("status"));
        assert!(info().namespaced);
        assert!(!PERSISTENT_VOLUME_CLAIMS.keeps_status_on_create());
        let mut block = spec();
        block["volumeMode"] = json!("Block");
        let admitted = info()
            .admit_create(&claim(block), FieldValidation::Strict)
            .expect("admitted");
        assert_eq!(admitted["spec"]["volumeMode"], "Block");
    }

    #[test]
    fn claim_rules_and_messages() {
        assert!(create_errors(spec()).is_empty());
        let mut with_selector = spec();
        with_selector["selector"] = json!({"matchLabels": {"release": "stable"}});
        with_selector["storageClassName"] = json!("");
        assert!(create_errors(with_selector).is_empty());

        let with = |patch: Value| {
            let mut s = spec();
            for (k, v) in patch.as_object().expect("object").clone() {
                s[k] = v;
            }
            s
        };
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("no access modes", with(json!({"accessModes": []})),
             vec!["spec.accessModes: Required value: at least 1 access mode is required"]),
            ("unknown access mode", with(json!({"accessModes": ["ReadMostly"]})),
             vec!["spec.accessModes: Unsupported value: \"ReadMostly\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""]),
            ("RWOP with others", with(json!({"accessModes": ["ReadWriteMany", "ReadWriteOncePod"]})),
             vec!["spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]),
            ("no storage request", with(json!({"resources": {"requests": {}}})),
             vec!["spec.resources[storage]: Required value"]),
            ("zero storage", with(json!({"resources": {"requests": {"storage": "0"}}})),
             vec!["spec.resources[storage]: Invalid value: \"0\": must be greater than zero"]),
            ("volume mode", with(json!({"volumeMode": "Raw"})),
             vec!["spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""]),
            ("class name", with(json!({"storageClassName": "a_b"})),
             vec!["spec.storageClassName: Invalid value: \"a_b\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
            ("selector", with(json!({"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}})),
             vec!["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]),
            ("data source", with(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}})),
             vec!["spec.dataSource: Forbidden: minik does not populate volumes from a data source (it neither clones volumes nor restores snapshots): create the claim without one"]),
            ("data source ref", with(json!({"dataSourceRef": {"kind": "VolumeSnapshot", "apiGroup": "snapshot.storage.k8s.io", "name": "snap"}})),
             vec!["spec.dataSourceRef: Forbidden: minik does not populate volumes from a data source (it neither clones volumes nor restores snapshots): create the claim without one"]),
        ];
        for (name, spec, want) in cases {
            assert_eq!(create_errors(spec), want, "{name}");
        }
        let mut no_ns = claim(spec());
        no_ns["metadata"] = json!({"name": "data"});
        assert_eq!(
            messages(validation::persistent_volume_claim(&typed(no_ns))),
            ["metadata.namespace: Required value"]
        );
    }

    #[test]
    fn a_claim_is_immutable_but_for_binding_and_growing() {
        let immutable = "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
        // Binding: volumeName may be set once.
        let mut bound = claim(spec());
        bound["spec"]["volumeName"] = json!("pv1");
        assert!(update_errors(claim(spec()), bound.clone()).is_empty());
        let mut rebound = bound.clone();
        rebound["spec"]["volumeName"] = json!("pv2");
        let errs = update_errors(bound.clone(), rebound);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(immutable), "{errs:?}");
        assert!(
            errs[0].ends_with("\n  spec.volumeName: \"pv1\" -> \"pv2\""),
            "{errs:?}"
        );

        // Other fields never change.
        let mut modes = claim(spec());
        modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let errs = update_errors(claim(spec()), modes);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(immutable), "{errs:?}");
        let mut mode = claim(spec());
        mode["spec"]["volumeMode"] = json!("Block");
        let errs = update_errors(claim(spec()), mode);
        assert!(
            errs.contains(&"volumeMode: Invalid value: \"Block\": field is immutable".to_owned()),
            "{errs:?}"
        );

        // The storage request: only a bound claim's, and only upwards.
        let grow = |from: &Value, size: &str| {
            let mut c = from.clone();
            c["spec"]["resources"]["requests"]["storage"] = json!(size);
            c
        };
        let errs = update_errors(claim(spec()), grow(&claim(spec()), "2Gi"));
        assert!(
            errs.len() == 1 && errs[0].starts_with(immutable),
            "{errs:?}"
        );
        bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
        assert!(update_errors(bound.clone(), grow(&bound, "2Gi")).is_empty());
        assert_eq!(
            update_errors(bound.clone(), grow(&bound, "512Mi")),
            ["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
        );
    }

    #[test]
    fn a_class_may_be_set_where_there_was_none() {
        let mut classed = claim(spec());
        classed["spec"]["storageClassName"] = json!("standard");
        assert!(update_errors(claim(spec()), classed.clone()).is_empty());
        let mut other = classed.clone();
        other["spec"]["storageClassName"] = json!("fast");
        assert_eq!(update_errors(classed, other).len(), 1);

        // From the beta annotation to the field, with the same class.
        let mut annotated = claim(spec());
        annotated["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS_ANNOTATION: "gold"});
        let mut upgraded = annotated.clone();
        upgraded["spec"]["storageClassName"] = json!("gold");
        assert!(update_errors(annotated.clone(), upgraded).is_empty());
        let mut mismatched = annotated.clone();
        mismatched["spec"]["storageClassName"] = json!("silver");
        assert_eq!(update_errors(annotated.clone(), mismatched).len(), 1);
        let mut relabelled = annotated.clone();
        relabelled["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS_ANNOTATION: "silver"});
        assert_eq!(
            update_errors(annotated, relabelled),
            ["metadata.annotations.volume.beta.kubernetes.io/storage-class: Invalid value: \"silver\": field is immutable"]
        );
    }

    #[test]
    fn status_capacity_must_not_be_negative() {
        let old = claim(spec());
        let mut new = claim(spec());
        new["status"] = json!({"phase": "Bound", "capacity": {"storage": "-1"}});
        assert_eq!(
            update_errors(old, new),
            ["status.capacity[storage]: Invalid value: -1: must be a valid resource quantity"]
        );
    }

    #[test]
    fn claims_are_charged_to_quotas_per_class() {
        let mut c = claim(spec());
        c["spec"]["storageClassName"] = json!("gold");
        c["spec"]["resources"]["requests"]["storage"] = json!("1500m");
        let usage = crate::quota::usage(info(), &c, 0);
        let show: Vec<(String, String)> = usage
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        assert_eq!(
            show,
            [
                ("count/persistentvolumeclaims".to_owned(), "1".to_owned()),
                (
                    "gold.storageclass.storage.k8s.io/persistentvolumeclaims".to_owned(),
                    "1".to_owned()
                ),
                (
                    "gold.storageclass.storage.k8s.io/requests.storage".to_owned(),
                    "2".to_owned()
                ),
                ("persistentvolumeclaims".to_owned(), "1".to_owned()),
                ("requests.storage".to_owned(), "2".to_owned()),
            ]
        );
        c["status"] = json!({"allocatedResources": {"storage": "3Gi"}});
        let usage = PERSISTENT_VOLUME_CLAIMS
            .quota_usage(&c, 0)
            .expect("counted");
        assert_eq!(usage["requests.storage"].to_string(), "3Gi");
        for (name, counted) in [
            ("requests.storage", true),
            ("gold.storageclass.storage.k8s.io/requests.storage", true),
            (
                "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
                true,
            ),
            (".storageclass.storage.k8s.io/requests.storage", false),
            ("requests.cpu", false),
        ] {
            assert_eq!(
                PERSISTENT_VOLUME_CLAIMS.quota_resource(name),
                counted,
                "{name}"
            );
        }
    }

    #[test]
    fn rows_read_like_kubectl() {
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        let now = 1_700_000_000 + 4 * 3600;
        let pending = json!({"metadata": {"name": "data", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "standard", "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}});
        assert_eq!(
            info().cells(&pending, now),
            [
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("standard"),
                json!("<unset>"),
                json!("4h"),
                json!("Filesystem")
            ]
        );
        let mut bound = pending;
        bound["spec"]["volumeName"] = json!("pv1");
        bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"]});
        let cells = info().cells(&bound, now);
        assert_eq!(
            cells[1..5],
            [json!("Bound"), json!("pv1"), json!("5Gi"), json!("RWO,RWX")]
        );
        assert_eq!(info().cells(&json!({}), now).len(), COLUMNS.len());
    }
}
