//! Validation of the configuration kinds: ConfigMaps, Secrets (with the rules of each `type`)
//! and ServiceAccounts, after Kubernetes' `ValidateConfigMap`, `ValidateSecret` and
//! `ValidateServiceAccount`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::ByteString;

use super::meta::{object_meta, object_meta_update};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;

/// The most bytes the data of one ConfigMap may hold (Kubernetes' `MaxConfigMapSize`).
pub const MAX_CONFIG_MAP_SIZE: usize = 1024 * 1024;
/// The most bytes the data of one Secret may hold (Kubernetes' `MaxSecretSize`).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// What Kubernetes answers when the data of an immutable object changes.
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

/// The annotation a `kubernetes.io/service-account-token` Secret names its account in.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// The Secret types Kubernetes gives rules, and the keys they require.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";
pub const SECRET_TYPE_SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const SECRET_TYPE_BASIC_AUTH: &str = "kubernetes.io/basic-auth";
pub const SECRET_TYPE_SSH_AUTH: &str = "kubernetes.io/ssh-auth";
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";

/// Validates a new ConfigMap.
pub fn config_map(cm: &ConfigMap) -> ErrorList {
    let mut errs = object_meta(
        &cm.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(config_map_data(cm));
    errs
}

/// Validates a replacement of a ConfigMap: an immutable one keeps its data and stays immutable.
pub fn config_map_update(new: &ConfigMap, old: &ConfigMap) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    immutable_kept(
        &mut errs,
        (new.immutable, old.immutable),
        &[
            ("data", new.data != old.data),
            ("binaryData", new.binary_data != old.binary_data),
        ],
    );
    errs.extend(config_map_data(new));
    errs
}

/// An object that was `immutable` stays so, and none of its `fields` (name, whether it
/// changed) changes.
fn immutable_kept(
    errs: &mut ErrorList,
    (new, old): (Option<bool>, Option<bool>),
    fields: &[(&str, bool)],
) {
    if old != Some(true) {
        return;
    }
    if new != Some(true) {
        errs.push(FieldError::forbidden(
            &FieldPath::new("immutable"),
            IMMUTABLE_SET,
        ));
    }
    for (field, changed) in fields {
        if *changed {
            errs.push(FieldError::forbidden(&FieldPath::new(field), IMMUTABLE_SET));
        }
    }
}

/// Keys valid and unique across `data` and `binaryData`, and at most 1 MiB in all.
fn config_map_data(cm: &ConfigMap) -> ErrorList {
    let mut errs = ErrorList::new();
    let data_path = FieldPath::new("data");
    let binary_path = FieldPath::new("binaryData");
    let mut total = 0usize;
    for (key, value) in cm.data.iter().flatten() {
        keys(&mut errs, key, &data_path);
        total += value.len();
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        keys(&mut errs, key, &binary_path);
        if cm.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            errs.push(FieldError::invalid(
                &binary_path.key(key),
                key.as_str(),
                "duplicate of key present in data",
            ));
        }
        total += value.0.len();
    }
    if total > MAX_CONFIG_MAP_SIZE {
        errs.push(FieldError::too_long(
            &FieldPath::new(""),
            "",
            MAX_CONFIG_MAP_SIZE,
        ));
    }
    errs
}

fn keys(errs: &mut ErrorList, key: &str, path: &FieldPath) {
    for m in names::config_map_key(key) {
        errs.push(FieldError::invalid(&path.key(key), key, m));
    }
}

/// Validates a new Secret, once `stringData` is merged into `data` (its defaults).
pub fn secret(s: &Secret) -> ErrorList {
    let mut errs = object_meta(
        &s.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(secret_data(s));
    errs
}

/// Validates a replacement of a Secret: its type never changes, and an immutable one keeps
/// its data and stays immutable.
pub fn secret_update(new: &Secret, old: &Secret) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    if new.type_ != old.type_ {
        errs.push(FieldError::invalid(
            &FieldPath::new("type"),
            new.type_.clone().unwrap_or_default(),
            "field is immutable",
        ));
    }
    immutable_kept(
        &mut errs,
        (new.immutable, old.immutable),
        &[("data", new.data != old.data)],
    );
    errs.extend(secret_data(new));
    errs
}

/// Keys valid, at most 1 MiB in all, and what the Secret's type requires.
fn secret_data(s: &Secret) -> ErrorList {
    let mut errs = ErrorList::new();
    let data_path = FieldPath::new("data");
    let empty = BTreeMap::new();
    let data: &BTreeMap<String, ByteString> = s.data.as_ref().unwrap_or(&empty);
    let mut total = 0usize;
    for (key, value) in data {
        keys(&mut errs, key, &data_path);
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, "", MAX_SECRET_SIZE));
    }
    let has = |key: &str| data.contains_key(key);
    match s.type_.as_deref().unwrap_or(SECRET_TYPE_OPAQUE) {
        SECRET_TYPE_SERVICE_ACCOUNT_TOKEN => {
            let named = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_ANNOTATION))
                .is_some_and(|n| !n.is_empty());
            if !named {
                errs.push(FieldError::required(
                    &FieldPath::new("metadata")
                        .child("annotations")
                        .key(SERVICE_ACCOUNT_NAME_ANNOTATION),
                    "",
                ));
            }
        }
        SECRET_TYPE_DOCKERCFG => docker_json(&mut errs, data, ".dockercfg", &data_path),
        SECRET_TYPE_DOCKER_CONFIG_JSON => {
            docker_json(&mut errs, data, ".dockerconfigjson", &data_path)
        }
        // Username or password may be empty, but one of them must be there.
        SECRET_TYPE_BASIC_AUTH if !has("username") && !has("password") => {
            errs.push(FieldError::required(&data_path.key("username"), ""));
            errs.push(FieldError::required(&data_path.key("password"), ""));
        }
        SECRET_TYPE_SSH_AUTH if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            errs.push(FieldError::required(&data_path.key("ssh-privatekey"), ""));
        }
        SECRET_TYPE_TLS => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(FieldError::required(&data_path.key(key), ""));
                }
            }
        }
        "" => errs.push(FieldError::required(&FieldPath::new("type"), "")),
        _ => {}
    }
    errs
}

/// A docker config key must be present and hold JSON; its contents are never echoed.
fn docker_json(
    errs: &mut ErrorList,
    data: &BTreeMap<String, ByteString>,
    key: &str,
    path: &FieldPath,
) {
    match data.get(key) {
        None => errs.push(FieldError::required(&path.key(key), "")),
        Some(value) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&value.0) {
                errs.push(FieldError::invalid(
                    &path.key(key),
                    "<secret contents redacted>",
                    e.to_string(),
                ));
            }
        }
    }
}

/// Validates a new ServiceAccount.
pub fn service_account(sa: &ServiceAccount) -> ErrorList {
    let mut errs = object_meta(
        &sa.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(service_account_refs(sa));
    errs
}

/// Validates a replacement of a ServiceAccount.
pub fn service_account_update(new: &ServiceAccount, old: &ServiceAccount) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(service_account_refs(new));
    errs
}

/// The Secrets a ServiceAccount names are named validly.
fn service_account_refs(sa: &ServiceAccount) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, r) in sa.image_pull_secrets.iter().flatten().enumerate() {
        let path = FieldPath::new("imagePullSecrets").index(i).child("name");
        if r.name.is_empty() {
            errs.push(FieldError::required(&path, ""));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(v: serde_json::Value) -> ConfigMap {
        serde_json::from_value(v).unwrap()
    }

    fn secret_of(v: serde_json::Value) -> Secret {
        let mut s: Secret = serde_json::from_value(v).unwrap();
        crate::defaults::secret(&mut s);
        s
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn config_map_keys_and_sizes() {
        let ok = cm(json!({"metadata": {"name": "c", "namespace": "d"},
            "data": {"game.properties": "x", "ui_KEY-1": "y"}, "binaryData": {"b": "AAE="}}));
        assert!(
            config_map(&ok).is_empty(),
            "{:?}",
            messages(&config_map(&ok))
        );
        let bad = cm(json!({"metadata": {"name": "c", "namespace": "d"},
            "data": {"a/b": "x", "..x": "y", "dup": "1"}, "binaryData": {"dup": "AA=="}}));
        let m = messages(&config_map(&bad));
        assert!(
            m.iter().any(|m| m
                .starts_with("data[a/b]: Invalid value: \"a/b\": a valid config key must consist")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m == "data[..x]: Invalid value: \"..x\": must not start with '..'"),
            "{m:?}"
        );
        assert!(
            m.iter().any(|m| m
                == "binaryData[dup]: Invalid value: \"dup\": duplicate of key present in data"),
            "{m:?}"
        );
        let big = cm(json!({"metadata": {"name": "c", "namespace": "d"},
            "data": {"a": "x".repeat(MAX_CONFIG_MAP_SIZE), "b": "y"}}));
        let m = messages(&config_map(&big));
        assert!(
            m.iter()
                .any(|m| m.contains("Too long: may not be more than 1048576 bytes")),
            "{m:?}"
        );
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let old = cm(
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": true}),
        );
        let same = old.clone();
        assert!(config_map_update(&same, &old).is_empty());
        let changed = cm(
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "2"}, "immutable": true}),
        );
        assert_eq!(
            messages(&config_map_update(&changed, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let unset = cm(
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": false}),
        );
        assert_eq!(
            messages(&config_map_update(&unset, &old)),
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        // A mutable one may become immutable.
        let mutable = cm(json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}}));
        assert!(config_map_update(&old, &mutable).is_empty());
    }

    #[test]
    fn secrets_follow_their_type() {
        let meta = json!({"name": "s", "namespace": "d"});
        let ok = secret_of(json!({"metadata": meta, "stringData": {"password": "hunter2"}}));
        assert!(secret(&ok).is_empty());
        assert_eq!(ok.type_.as_deref(), Some("Opaque"));
        let cases = [
            (
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
                vec!["data[tls.key]: Required value"],
            ),
            (
                json!({"type": "kubernetes.io/basic-auth"}),
                vec![
                    "data[username]: Required value",
                    "data[password]: Required value",
                ],
            ),
            (
                json!({"type": "kubernetes.io/basic-auth", "stringData": {"password": ""}}),
                vec![],
            ),
            (
                json!({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": ""}}),
                vec!["data[ssh-privatekey]: Required value"],
            ),
            (
                json!({"type": "kubernetes.io/dockerconfigjson"}),
                vec!["data[.dockerconfigjson]: Required value"],
            ),
            (
                json!({"type": "kubernetes.io/service-account-token"}),
                vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"],
            ),
            (
                json!({"type": "example.com/anything", "data": {"x": ""}}),
                vec![],
            ),
        ];
        for (body, want) in cases {
            let mut v = body.clone();
            v["metadata"] = meta.clone();
            assert_eq!(messages(&secret(&secret_of(v))), want, "{body}");
        }
        let not_json = secret_of(
            json!({"metadata": meta, "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{not json"}}),
        );
        let m = messages(&secret(&not_json));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with(
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "
            ),
            "{m:?}"
        );
        assert!(
            !m[0].contains("not json"),
            "contents are never echoed: {m:?}"
        );
    }

    #[test]
    fn secret_types_and_immutable_data_do_not_change() {
        let old = secret_of(
            json!({"metadata": {"name": "s", "namespace": "d"}, "stringData": {"a": "1"}, "immutable": true}),
        );
        let mut new = old.clone();
        new.type_ = Some("kubernetes.io/tls".into());
        new.data = Some(BTreeMap::from([(
            "a".to_owned(),
            ByteString(b"2".to_vec()),
        )]));
        let m = messages(&secret_update(&new, &old));
        assert!(
            m.contains(
                &"type: Invalid value: \"kubernetes.io/tls\": field is immutable".to_owned()
            ),
            "{m:?}"
        );
        assert!(
            m.contains(&"data: Forbidden: field is immutable when `immutable` is set".to_owned()),
            "{m:?}"
        );
    }

    #[test]
    fn oversized_secrets_are_refused() {
        let big = secret_of(json!({"metadata": {"name": "s", "namespace": "d"},
            "stringData": {"a": "x".repeat(MAX_SECRET_SIZE + 1)}}));
        assert_eq!(
            messages(&secret(&big)),
            vec!["data: Too long: may not be more than 1048576 bytes"]
        );
    }
}

#[cfg(test)]
mod admission_tests {
    use serde_json::json;

    #[test]
    fn secret_data_that_is_not_base64_is_refused_without_echoing_it() {
        let info = crate::resources::by_kind("v1", "Secret").unwrap();
        let body = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "d"}, "data": {"password": "hunter2!!"}});
        let err = info
            .admit_create(&body, crate::resources::FieldValidation::Strict)
            .unwrap_err();
        assert_eq!(err.code(), 400, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("Secret in version \"v1\" cannot be handled as a Secret"),
            "{text}"
        );
        assert!(
            text.contains("data.password") || text.contains("password"),
            "names the field: {text}"
        );
        assert!(!text.contains("hunter2"), "never echoes the value: {text}");
    }
}
