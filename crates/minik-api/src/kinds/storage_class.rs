//! StorageClasses (storage.k8s.io/v1, cluster-scoped): the kinds of storage a cluster offers
//! and who provisions them. The one annotated as the default is shown as `NAME (default)`.
//! Defaults and validation in [`crate::defaults::storage_class`] and
//! [`crate::validation::storage_class`].

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, s, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    StorageClass,
    defaults::storage_class,
    validation::storage_class,
    validation::storage_class_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const STORAGE_CLASSES: &dyn Strategy = &Common(TABLE);

/// The annotation (`"true"`) that makes a class the default for claims that name none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta name of [`DEFAULT_CLASS_ANNOTATION`], still honoured.
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Whether a StorageClass (as JSON) is annotated as the default one.
pub fn is_default(class: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|key| {
            class
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(*key))
                .and_then(Value::as_str)
                == Some("true")
        })
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
    col("VolumeBindingMode", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
    col("AllowVolumeExpansion", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

/// The cells of an object's row, one per column (`AllowVolumeExpansion` is a boolean cell, as
/// Kubernetes sends it).
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let mut name = s(obj, "/metadata/name").to_owned();
    if is_default(obj) {
        name.push_str(" (default)");
    }
    let or = |pointer: &str, default: &'static str| match s(obj, pointer) {
        "" => default.to_owned(),
        value => value.to_owned(),
    };
    vec![
        json!(name),
        json!(s(obj, "/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(obj
            .get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorList;
    use crate::resources::{by_kind, by_user_name, FieldValidation, ResourceInfo};

    fn info() -> &'static ResourceInfo {
        by_kind("storage.k8s.io/v1", "StorageClass").expect("served")
    }

    fn class(fields: Value) -> Value {
        let mut sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                            "metadata": {"name": "standard"}, "provisioner": "minik.io/hostpath"});
        for (k, v) in fields.as_object().expect("object").clone() {
            sc[k] = v;
        }
        sc
    }

    fn typed(v: Value) -> StorageClass {
        let mut sc: StorageClass = serde_json::from_value(v).expect("test class");
        defaults::storage_class(&mut sc);
        sc
    }

    fn messages(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn create_errors(fields: Value) -> Vec<String> {
        messages(validation::storage_class(&typed(class(fields))))
    }

    #[test]
    fn a_class_is_served_and_defaulted_like_kubernetes() {
        assert_eq!(info().group, "storage.k8s.io");
        assert_eq!(info().api_version(), "storage.k8s.io/v1");
        assert!(!info().namespaced);
        assert!(info().subresources.is_empty());
        assert_eq!(by_user_name("sc").map(|r| r.kind), Some("StorageClass"));
        let admitted = info()
            .admit_create(&class(json!({})), FieldValidation::Strict)
            .expect("admitted");
        assert_eq!(admitted["reclaimPolicy"], "Delete");
        assert_eq!(admitted["volumeBindingMode"], "Immediate");
        let admitted = info()
            .admit_create(
                &class(
                    json!({"reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}),
                ),
                FieldValidation::Strict,
            )
            .expect("admitted");
        assert_eq!(admitted["reclaimPolicy"], "Retain");
        assert_eq!(admitted["volumeBindingMode"], "WaitForFirstConsumer");
        let mut nameless = class(json!({}));
        nameless
            .as_object_mut()
            .expect("object")
            .remove("provisioner");
        let err = info()
            .admit_create(&nameless, FieldValidation::Strict)
            .expect_err("refused");
        assert_eq!(err.code(), 422, "{err}");
        assert!(
            err.to_string().contains("provisioner: Required value"),
            "{err}"
        );
    }

    #[test]
    fn class_rules_and_messages() {
        assert!(create_errors(json!({"parameters": {"type": "ssd"}, "mountOptions": ["ro"],
            "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a", "b"]}]}]}))
        .is_empty());
        let many: serde_json::Map<String, Value> =
            (0..513).map(|i| (format!("k{i}"), json!("v"))).collect();
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("no provisioner", json!({"provisioner": ""}), vec!["provisioner: Required value"]),
            ("bad provisioner", json!({"provisioner": "a/b/c"}),
             vec!["provisioner: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
            ("too many parameters", json!({"parameters": many}),
             vec!["parameters: Too long: may not be more than 512 bytes"]),
            ("empty parameter key", json!({"parameters": {"": "x"}}),
             vec!["parameters: Invalid value: \"\": field can not be empty."]),
            ("parameters too large", json!({"parameters": {"big": "x".repeat(256 * 1024)}}),
             vec!["parameters: Too long: may not be more than 262144 bytes"]),
            ("reclaim policy", json!({"reclaimPolicy": "Recycle"}),
             vec!["reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\""]),
            ("binding mode", json!({"volumeBindingMode": "Later"}),
             vec!["volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\""]),
            ("topology without values", json!({"allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": []}]}]}),
             vec!["allowedTopologies[0].matchLabelExpressions[0].values: Required value"]),
            ("topology duplicates", json!({"allowedTopologies": [
                {"matchLabelExpressions": [{"key": "zone", "values": ["a", "a"]}, {"key": "zone", "values": ["b"]}]},
                {"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]},
                {"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}]}),
             vec!["allowedTopologies[0].matchLabelExpressions[0].values[1]: Duplicate value: \"a\"",
                  "allowedTopologies[0].matchLabelExpressions[1].key: Duplicate value: \"zone\"",
                  "allowedTopologies[1].matchLabelExpressions: Duplicate value: \"\"",
                  "allowedTopologies[2].matchLabelExpressions: Duplicate value: \"\""]),
        ];
        for (name, fields, want) in cases {
            assert_eq!(create_errors(fields), want, "{name}");
        }
        let mut unset: StorageClass = serde_json::from_value(class(json!({}))).expect("class");
        unset.volume_binding_mode = None;
        assert_eq!(
            messages(validation::storage_class(&unset)),
            ["volumeBindingMode: Required value"]
        );
    }

    #[test]
    fn a_class_keeps_what_it_provisions_with() {
        let old = typed(class(json!({"parameters": {"type": "ssd"}})));
        let update = |fields: Value| {
            let mut new = class(json!({"parameters": {"type": "ssd"}}));
            for (k, v) in fields.as_object().expect("object").clone() {
                new[k] = v;
            }
            messages(validation::storage_class_update(&typed(new), &old))
        };
        assert!(update(json!({"allowVolumeExpansion": true, "mountOptions": ["ro"]})).is_empty());
        assert_eq!(
            update(json!({"parameters": {"type": "hdd"}})),
            ["parameters: Forbidden: updates to parameters are forbidden."]
        );
        assert_eq!(
            update(json!({"provisioner": "example.com/nfs"})),
            ["provisioner: Forbidden: updates to provisioner are forbidden."]
        );
        assert_eq!(
            update(json!({"reclaimPolicy": "Retain"})),
            ["reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."]
        );
        assert_eq!(
            update(json!({"volumeBindingMode": "WaitForFirstConsumer"})),
            ["volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable"]
        );
    }

    #[test]
    fn rows_read_like_kubectl() {
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age"
            ]
        );
        let now = 1_700_000_000 + 86_400 * 3;
        let sc = json!({"metadata": {"name": "standard", "creationTimestamp": "2023-11-14T22:13:20Z",
                                     "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
                        "provisioner": "minik.io/hostpath", "reclaimPolicy": "Delete",
                        "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true});
        assert_eq!(
            info().cells(&sc, now),
            [
                json!("standard (default)"),
                json!("minik.io/hostpath"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(true),
                json!("3d")
            ]
        );
        let plain = json!({"metadata": {"name": "slow", "annotations": {BETA_DEFAULT_CLASS_ANNOTATION: "false"}},
                           "provisioner": "p"});
        let cells = info().cells(&plain, now);
        assert_eq!(
            cells[..5],
            [
                json!("slow"),
                json!("p"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
        assert!(is_default(
            &json!({"metadata": {"annotations": {BETA_DEFAULT_CLASS_ANNOTATION: "true"}}})
        ));
    }
}
