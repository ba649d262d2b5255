//! What the kubelet writes into `configMap`, `secret`, `downwardAPI` and `projected` volumes:
//! a payload of files (relative path, bytes, mode), built as Kubernetes' volume plugins build
//! it (`MakePayload`, `CollectData`), with their messages. The paths are checked as
//! Kubernetes' atomic writer checks them, so that a payload never names a file outside its
//! volume. Pure functions: the agent fetches the objects and writes the files.

use std::collections::{BTreeMap, BTreeSet};

use minik_api::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, DownwardAPIVolumeSource, KeyToPath,
    Pod, ProjectedVolumeSource, Secret, SecretVolumeSource, Volume,
};
use minik_api::quantity::Quantity;

use crate::downward;
use crate::spec::{not_found, secret_bytes, Sources};

/// One file of a volume's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits, `0..=0o777`.
    pub mode: u32,
}

/// A volume's files by path relative to the volume, clean (no `.` or empty elements, no
/// trailing `/`) and checked by [`clean_path`].
pub type Payload = BTreeMap<String, FileProjection>;

/// The mode of a volume's files when the volume does not say (Kubernetes' `0644` for
/// configMap, secret, downwardAPI and projected volumes).
pub const DEFAULT_MODE: u32 = 0o644;

/// The longest path the atomic writer takes, in bytes.
const MAX_PATH_LENGTH: usize = 4096;
/// The longest path element the atomic writer takes, in bytes.
const MAX_FILE_NAME_LENGTH: usize = 255;

/// A `defaultMode` or item `mode` as permission bits. The API refuses modes outside
/// `0..=0o777`; should one reach the node, it is refused here rather than cut down.
fn mode(value: Option<i32>, default: u32) -> Result<u32, String> {
    match value {
        None => Ok(default),
        Some(m) => u32::try_from(m)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!(
                    "invalid mode {m}: must be a number between 0 and 0777 (octal), both inclusive"
                )
            }),
    }
}

/// Checks a payload path as Kubernetes' atomic writer does and returns it clean (as Go's
/// `filepath.Clean`): not empty, relative, at most 4096 bytes, no `..` element, no element
/// longer than 255 bytes, and not starting with `..` (the writer's own `..data` and
/// timestamped directories live there). Also refused, because they could not be written as
/// the file they name: a NUL byte, and a path that is the volume itself (`.`, `./`).
pub fn clean_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err(format!(
            "invalid path: must not be empty: {}",
            downward::go_quote(path)
        ));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    if path.contains('\0') {
        return Err(format!(
            "invalid path: must not contain a NUL byte: {}",
            downward::go_quote(path)
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} \
                 characters"
            ));
        }
    }
    let clean: Vec<&str> = items
        .into_iter()
        .filter(|item| !item.is_empty() && *item != ".")
        .collect();
    match clean.first() {
        None => Err(format!(
            "invalid path: must name a file in the volume: {path}"
        )),
        Some(first) if first.starts_with("..") => {
            Err(format!("invalid path: must not start with '..': {path}"))
        }
        Some(_) => Ok(clean.join("/")),
    }
}

/// The payload with every path checked and clean; the first bad path is the error. Paths
/// that are the same once clean: the last in order wins.
fn checked(raw: Vec<(String, FileProjection)>) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for (path, file) in raw {
        payload.insert(clean_path(&path)?, file);
    }
    Ok(payload)
}

/// Several errors as Kubernetes' `utilerrors.NewAggregate` prints them: one as itself,
/// several (duplicates dropped) as `[a, b]`.
fn aggregate(errors: Vec<String>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = errors
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    match unique.len() {
        0 => Ok(()),
        1 => Err(unique.into_iter().next().unwrap_or_default()),
        _ => Err(format!("[{}]", unique.join(", "))),
    }
}

/// The files of a ConfigMap, as Kubernetes' `configmap.MakePayload`: without `items`, every
/// `data` and `binaryData` key; with them, each listed key (looked for in `data`, then
/// `binaryData`) at its path and mode. A missing object or key is an error unless `optional`.
fn config_map_files(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    config_map: Option<&ConfigMap>,
    default_mode: u32,
) -> Result<Vec<(String, FileProjection)>, String> {
    if config_map.is_none() && !optional {
        return Err(not_found("configmap", name));
    }
    let data = config_map.and_then(|c| c.data.as_ref());
    let binary = config_map.and_then(|c| c.binary_data.as_ref());
    let mut files = Vec::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data.into_iter().flatten() {
                let file = FileProjection {
                    data: value.clone().into_bytes(),
                    mode: default_mode,
                };
                files.push((key.clone(), file));
            }
            for (key, value) in binary.into_iter().flatten() {
                let file = FileProjection {
                    data: value.0.clone(),
                    mode: default_mode,
                };
                files.push((key.clone(), file));
            }
        }
        Some(items) => {
            for item in items {
                let bytes = match data.and_then(|d| d.get(&item.key)) {
                    Some(text) => text.clone().into_bytes(),
                    None => match binary.and_then(|b| b.get(&item.key)) {
                        Some(bytes) => bytes.0.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "configmap references non-existent config key: {}",
                                item.key
                            ))
                        }
                    },
                };
                let file = FileProjection {
                    data: bytes,
                    mode: mode(item.mode, default_mode)?,
                };
                files.push((item.path.clone(), file));
            }
        }
    }
    Ok(files)
}

/// The files of a Secret, as Kubernetes' `secret.MakePayload` (see [`config_map_files`]);
/// the values are the Secret's bytes as they are.
fn secret_files(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    secret: Option<&Secret>,
    default_mode: u32,
) -> Result<Vec<(String, FileProjection)>, String> {
    if secret.is_none() && !optional {
        return Err(not_found("secret", name));
    }
    let data = secret.map(secret_bytes).unwrap_or_default();
    let mut files = Vec::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                let file = FileProjection {
                    data: value,
                    mode: default_mode,
                };
                files.push((key, file));
            }
        }
        Some(items) => {
            for item in items {
                // The same key may be listed twice, at two paths.
                let Some(bytes) = data.get(&item.key).cloned() else {
                    if optional {
                        continue;
                    }
                    return Err(format!("references non-existent secret key: {}", item.key));
                };
                let file = FileProjection {
                    data: bytes,
                    mode: mode(item.mode, default_mode)?,
                };
                files.push((item.path.clone(), file));
            }
        }
    }
    Ok(files)
}

/// The files of downward API items, as Kubernetes' `downwardapi.CollectData`: `fieldRef`
/// takes the pod's metadata ([`downward::pod_field`]), `resourceFieldRef` a named container's
/// resources with the node's allocatable for unset limits; an item with neither is an empty
/// file. Every item is tried and the errors are reported together.
fn downward_files(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
    default_mode: u32,
) -> Result<Vec<(String, FileProjection)>, String> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            downward::pod_field(pod, &field.field_path)
        } else if let Some(selector) = &item.resource_field_ref {
            let container = selector.container_name.as_deref().unwrap_or_default();
            downward::resource_field_ref(pod, container, selector, node_allocatable)
        } else {
            Ok(String::new())
        };
        let file = value.and_then(|v| {
            Ok(FileProjection {
                data: v.into_bytes(),
                mode: mode(item.mode, default_mode)?,
            })
        });
        match file {
            Ok(file) => files.push((item.path.clone(), file)),
            Err(e) => errors.push(e),
        }
    }
    aggregate(errors)?;
    Ok(files)
}

/// The payload of a `configMap` volume for `config_map` (`None`: it does not exist). Errors:
/// `configmap "NAME" not found` and `configmap references non-existent config key: KEY`
/// (neither when the volume is `optional`: a missing ConfigMap is then an empty volume), a
/// bad mode, or a bad path ([`clean_path`]).
pub fn config_map_payload(
    source: &ConfigMapVolumeSource,
    config_map: Option<&ConfigMap>,
) -> Result<Payload, String> {
    let default_mode = mode(source.default_mode, DEFAULT_MODE)?;
    checked(config_map_files(
        &source.name,
        source.items.as_deref(),
        source.optional == Some(true),
        config_map,
        default_mode,
    )?)
}

/// The payload of a `secret` volume for `secret` (`None`: it does not exist). Errors:
/// `secret "NAME" not found` and `references non-existent secret key: KEY` (neither when the
/// volume is `optional`), a bad mode, or a bad path ([`clean_path`]).
pub fn secret_payload(
    source: &SecretVolumeSource,
    secret: Option<&Secret>,
) -> Result<Payload, String> {
    let default_mode = mode(source.default_mode, DEFAULT_MODE)?;
    checked(secret_files(
        source.secret_name.as_deref().unwrap_or_default(),
        source.items.as_deref(),
        source.optional == Some(true),
        secret,
        default_mode,
    )?)
}

/// The payload of a `downwardAPI` volume: each item's `fieldRef` (`metadata.name`,
/// `metadata.namespace`, `metadata.uid`, `metadata.labels`, `metadata.annotations`, one key
/// of the last two) or `resourceFieldRef` (its `containerName` is required), at its path and
/// mode. `node_allocatable` stands in for unset CPU, memory and ephemeral-storage limits.
pub fn downward_api_payload(
    source: &DownwardAPIVolumeSource,
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let default_mode = mode(source.default_mode, DEFAULT_MODE)?;
    checked(downward_files(
        source.items.as_deref().unwrap_or_default(),
        pod,
        node_allocatable,
        default_mode,
    )?)
}

/// The payload of a `projected` volume: its `configMap`, `secret` and `downwardAPI` sources
/// in order, with the volume's `defaultMode`, merged (a later source's file wins at the same
/// path). Every source is tried and the errors are reported together, as Kubernetes does.
/// `serviceAccountToken` sources are the tokens the agent requested ([`crate::tokens`]);
/// `clusterTrustBundle` sources are errors: this node does not serve them.
pub fn projected_payload(
    source: &ProjectedVolumeSource,
    pod: &Pod,
    sources: &Sources,
) -> Result<Payload, String> {
    let default_mode = mode(source.default_mode, DEFAULT_MODE)?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for projection in source.sources.iter().flatten() {
        let result = if let Some(secret) = &projection.secret {
            secret_files(
                &secret.name,
                secret.items.as_deref(),
                secret.optional == Some(true),
                sources.secret(&secret.name),
                default_mode,
            )
        } else if let Some(config_map) = &projection.config_map {
            config_map_files(
                &config_map.name,
                config_map.items.as_deref(),
                config_map.optional == Some(true),
                sources.config_map(&config_map.name),
                default_mode,
            )
        } else if let Some(downward_api) = &projection.downward_api {
            downward_files(
                downward_api.items.as_deref().unwrap_or_default(),
                pod,
                &sources.node_allocatable,
                default_mode,
            )
        } else if let Some(token) = &projection.service_account_token {
            match sources.tokens.get(&crate::tokens::key_of(token)) {
                Some(Ok(value)) => clean_path(&token.path).map(|path| {
                    vec![(
                        path,
                        FileProjection {
                            data: value.clone().into_bytes(),
                            mode: default_mode,
                        },
                    )]
                }),
                Some(Err(why)) => Err(why.clone()),
                None => Err("failed to fetch token: it was not requested".to_owned()),
            }
        } else if projection.cluster_trust_bundle.is_some() {
            Err(unsupported("clusterTrustBundle"))
        } else {
            Ok(Vec::new())
        };
        match result {
            Ok(more) => files.extend(more),
            Err(e) => errors.push(e),
        }
    }
    aggregate(errors)?;
    checked(files)
}

fn unsupported(kind: &str) -> String {
    format!("projected volume source {kind} is not supported by this node yet")
}

/// The payload of a pod volume that has one (`configMap`, `secret`, `downwardAPI`,
/// `projected`), from what the agent fetched; `None` for other kinds of volume.
pub fn volume_payload(
    volume: &Volume,
    pod: &Pod,
    sources: &Sources,
) -> Option<Result<Payload, String>> {
    if let Some(source) = &volume.config_map {
        Some(config_map_payload(source, sources.config_map(&source.name)))
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.as_deref().unwrap_or_default();
        Some(secret_payload(source, sources.secret(name)))
    } else if let Some(source) = &volume.downward_api {
        Some(downward_api_payload(source, pod, &sources.node_allocatable))
    } else {
        volume
            .projected
            .as_ref()
            .map(|source| projected_payload(source, pod, sources))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn config_map() -> ConfigMap {
        from(json!({
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"app.conf": "port=80\n", "mode": "fast"},
            // "\x00\xff\x10" in base64.
            "binaryData": {"blob.bin": "AP8Q"}
        }))
    }

    fn secret() -> Secret {
        from(json!({
            "metadata": {"name": "creds", "namespace": "shop"},
            // "hunter2" and the non-UTF-8 bytes ff fe.
            "data": {"password": "aHVudGVyMg==", "raw": "//4="}
        }))
    }

    fn file(data: &[u8], mode: u32) -> FileProjection {
        FileProjection {
            data: data.to_vec(),
            mode,
        }
    }

    #[test]
    fn config_map_without_items_has_every_key() {
        let source: ConfigMapVolumeSource = from(json!({"name": "settings"}));
        let payload = config_map_payload(&source, Some(&config_map())).unwrap();
        let expected: Payload = [
            ("app.conf".to_owned(), file(b"port=80\n", 0o644)),
            ("blob.bin".to_owned(), file(&[0, 0xff, 0x10], 0o644)),
            ("mode".to_owned(), file(b"fast", 0o644)),
        ]
        .into();
        assert_eq!(payload, expected);
        let source: ConfigMapVolumeSource = from(json!({"name": "settings", "defaultMode": 0o400}));
        let payload = config_map_payload(&source, Some(&config_map())).unwrap();
        assert!(payload.values().all(|f| f.mode == 0o400));
    }

    #[test]
    fn config_map_items_choose_keys_paths_and_modes() {
        let source: ConfigMapVolumeSource = from(json!({
            "name": "settings", "defaultMode": 0o440,
            "items": [
                {"key": "app.conf", "path": "conf/./app.conf", "mode": 0o600},
                {"key": "blob.bin", "path": "data/blob"},
                {"key": "mode", "path": "again/mode"},
                {"key": "mode", "path": "mode"}
            ]
        }));
        let payload = config_map_payload(&source, Some(&config_map())).unwrap();
        let expected: Payload = [
            ("conf/app.conf".to_owned(), file(b"port=80\n", 0o600)),
            ("data/blob".to_owned(), file(&[0, 0xff, 0x10], 0o440)),
            ("again/mode".to_owned(), file(b"fast", 0o440)),
            ("mode".to_owned(), file(b"fast", 0o440)),
        ]
        .into();
        assert_eq!(payload, expected);
    }

    #[test]
    fn missing_config_maps_and_keys() {
        let source: ConfigMapVolumeSource = from(json!({"name": "gone"}));
        assert_eq!(
            config_map_payload(&source, None),
            Err("configmap \"gone\" not found".to_owned())
        );
        let optional: ConfigMapVolumeSource = from(json!({"name": "gone", "optional": true}));
        assert_eq!(config_map_payload(&optional, None), Ok(Payload::new()));
        let items = json!([{"key": "nope", "path": "x"}, {"key": "mode", "path": "m"}]);
        let source: ConfigMapVolumeSource = from(json!({"name": "settings", "items": items}));
        assert_eq!(
            config_map_payload(&source, Some(&config_map())),
            Err("configmap references non-existent config key: nope".to_owned())
        );
        let source: ConfigMapVolumeSource =
            from(json!({"name": "settings", "items": items, "optional": true}));
        let payload = config_map_payload(&source, Some(&config_map())).unwrap();
        assert_eq!(payload.keys().collect::<Vec<_>>(), ["m"]);
        // Optional and missing with items: empty.
        assert_eq!(config_map_payload(&source, None), Ok(Payload::new()));
    }

    #[test]
    fn secrets_keep_their_bytes() {
        let source: SecretVolumeSource = from(json!({"secretName": "creds"}));
        let payload = secret_payload(&source, Some(&secret())).unwrap();
        assert_eq!(payload["password"], file(b"hunter2", 0o644));
        assert_eq!(payload["raw"], file(&[0xff, 0xfe], 0o644));
        let source: SecretVolumeSource = from(json!({
            "secretName": "creds", "defaultMode": 0o400,
            "items": [{"key": "password", "path": "db/password"}, {"key": "raw", "path": "raw", "mode": 0o640}]
        }));
        let payload = secret_payload(&source, Some(&secret())).unwrap();
        let expected: Payload = [
            ("db/password".to_owned(), file(b"hunter2", 0o400)),
            ("raw".to_owned(), file(&[0xff, 0xfe], 0o640)),
        ]
        .into();
        assert_eq!(payload, expected);
        // stringData, should it reach the node, is folded in as the API server does.
        let mut unfolded = secret();
        unfolded.string_data = Some([("token".to_owned(), "abc".to_owned())].into());
        let source: SecretVolumeSource = from(json!({"secretName": "creds"}));
        let payload = secret_payload(&source, Some(&unfolded)).unwrap();
        assert_eq!(payload["token"], file(b"abc", 0o644));
    }

    #[test]
    fn missing_secrets_and_keys() {
        let source: SecretVolumeSource = from(json!({"secretName": "gone"}));
        assert_eq!(
            secret_payload(&source, None),
            Err("secret \"gone\" not found".to_owned())
        );
        let optional: SecretVolumeSource = from(json!({"secretName": "gone", "optional": true}));
        assert_eq!(secret_payload(&optional, None), Ok(Payload::new()));
        let items = json!([{"key": "nope", "path": "x"}]);
        let source: SecretVolumeSource = from(json!({"secretName": "creds", "items": items}));
        assert_eq!(
            secret_payload(&source, Some(&secret())),
            Err("references non-existent secret key: nope".to_owned())
        );
        let source: SecretVolumeSource =
            from(json!({"secretName": "creds", "items": items, "optional": true}));
        assert_eq!(secret_payload(&source, Some(&secret())), Ok(Payload::new()));
    }

    #[test]
    fn modes_out_of_range_are_refused() {
        let source: SecretVolumeSource =
            from(json!({"secretName": "creds", "defaultMode": 0o4755}));
        assert!(secret_payload(&source, Some(&secret()))
            .unwrap_err()
            .starts_with("invalid mode 2541:"));
        let source: ConfigMapVolumeSource = from(json!({
            "name": "settings", "items": [{"key": "mode", "path": "m", "mode": -1}]
        }));
        assert!(config_map_payload(&source, Some(&config_map())).is_err());
    }

    #[test]
    fn paths_never_leave_the_volume() {
        for (path, error) in [
            ("", "invalid path: must not be empty: \"\""),
            (
                "/etc/passwd",
                "invalid path: must be relative path: /etc/passwd",
            ),
            ("../x", "invalid path: must not contain '..': ../x"),
            (
                "a/../../x",
                "invalid path: must not contain '..': a/../../x",
            ),
            ("a/..", "invalid path: must not contain '..': a/.."),
            ("..data", "invalid path: must not start with '..': ..data"),
            (
                "./..data/x",
                "invalid path: must not start with '..': ./..data/x",
            ),
            (".", "invalid path: must name a file in the volume: ."),
            ("./", "invalid path: must name a file in the volume: ./"),
            (
                "a\0b",
                "invalid path: must not contain a NUL byte: \"a\\x00b\"",
            ),
        ] {
            assert_eq!(clean_path(path), Err(error.to_owned()), "{path:?}");
        }
        assert!(clean_path(&"a".repeat(256)).unwrap_err().contains("255"));
        assert!(clean_path(&"a/".repeat(2049)).unwrap_err().contains("4096"));
        for (path, clean) in [
            ("a", "a"),
            ("a/b", "a/b"),
            ("./a//b/", "a/b"),
            ("a/..b", "a/..b"),
            (".hidden", ".hidden"),
        ] {
            assert_eq!(clean_path(path).as_deref(), Ok(clean), "{path:?}");
        }
        let source: ConfigMapVolumeSource = from(json!({
            "name": "settings", "items": [{"key": "mode", "path": "../../etc/cron.d/x"}]
        }));
        assert_eq!(
            config_map_payload(&source, Some(&config_map())),
            Err("invalid path: must not contain '..': ../../etc/cron.d/x".to_owned())
        );
    }

    fn pod() -> Pod {
        from(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [
                {"name": "app", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}
            ]}
        }))
    }

    fn allocatable() -> BTreeMap<String, Quantity> {
        [("cpu".to_owned(), Quantity::parse("2").unwrap())].into()
    }

    #[test]
    fn downward_api_volumes() {
        let source: DownwardAPIVolumeSource = from(json!({"defaultMode": 0o444, "items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o400},
            {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
            {"path": "cpu/limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
            {"path": "cpu/request", "resourceFieldRef": {"containerName": "app", "resource": "requests.cpu", "divisor": "1m"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
        ]}));
        let payload = downward_api_payload(&source, &pod(), &allocatable()).unwrap();
        let expected: Payload = [
            ("name".to_owned(), file(b"web-1", 0o444)),
            (
                "labels".to_owned(),
                file(b"app=\"web\"\ntier=\"front\"", 0o400),
            ),
            ("app".to_owned(), file(b"web", 0o444)),
            ("cpu/limit".to_owned(), file(b"2000", 0o444)),
            ("cpu/request".to_owned(), file(b"250", 0o444)),
            ("mem".to_owned(), file(b"64", 0o444)),
        ]
        .into();
        assert_eq!(payload, expected);
        let source: DownwardAPIVolumeSource = from(json!({"items": [
            {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
            {"path": "x", "resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}},
            {"path": "ok", "fieldRef": {"fieldPath": "metadata.uid"}}
        ]}));
        assert_eq!(
            downward_api_payload(&source, &pod(), &allocatable()),
            Err("[unsupported fieldPath: spec.nodeName, container ghost not found]".to_owned())
        );
    }

    fn sources() -> Sources {
        Sources {
            config_maps: [
                ("settings".to_owned(), Some(config_map())),
                ("gone".to_owned(), None),
            ]
            .into(),
            secrets: [("creds".to_owned(), Some(secret()))].into(),
            claims: BTreeMap::new(),
            tokens: BTreeMap::new(),
            node_allocatable: allocatable(),
        }
    }

    #[test]
    fn projected_volumes_merge_their_sources() {
        let source: ProjectedVolumeSource = from(json!({"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "settings", "items": [{"key": "mode", "path": "shared"}, {"key": "app.conf", "path": "app.conf"}]}},
            {"secret": {"name": "creds", "items": [{"key": "password", "path": "shared", "mode": 0o400}]}},
            {"downwardAPI": {"items": [{"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"configMap": {"name": "gone", "optional": true}},
            {"secret": {"name": "never-fetched", "optional": true}}
        ]}));
        let payload = projected_payload(&source, &pod(), &sources()).unwrap();
        let expected: Payload = [
            ("app.conf".to_owned(), file(b"port=80\n", 0o440)),
            ("shared".to_owned(), file(b"hunter2", 0o400)),
            ("meta/name".to_owned(), file(b"web-1", 0o440)),
        ]
        .into();
        assert_eq!(payload, expected);
        // Without a defaultMode: 0644.
        let source: ProjectedVolumeSource =
            from(json!({"sources": [{"secret": {"name": "creds"}}]}));
        let payload = projected_payload(&source, &pod(), &sources()).unwrap();
        assert!(payload.values().all(|f| f.mode == 0o644));
    }

    #[test]
    fn projected_errors_are_aggregated() {
        let source: ProjectedVolumeSource = from(json!({"sources": [
            {"configMap": {"name": "gone"}},
            {"secret": {"name": "never-fetched"}},
            {"configMap": {"name": "gone"}}
        ]}));
        assert_eq!(
            projected_payload(&source, &pod(), &sources()),
            Err("[configmap \"gone\" not found, secret \"never-fetched\" not found]".to_owned())
        );
        let source: ProjectedVolumeSource = from(json!({"sources": [
            {"serviceAccountToken": {"path": "token"}}
        ]}));
        assert_eq!(
            projected_payload(&source, &pod(), &sources()),
            Err("failed to fetch token: it was not requested".to_owned())
        );
        // With the token the agent requested: a file at the source's path.
        let mut with_token = sources();
        with_token.tokens.insert(
            ("".to_owned(), crate::tokens::DEFAULT_EXPIRATION_SECONDS),
            Ok("eyJ.token".to_owned()),
        );
        let payload = projected_payload(&source, &pod(), &with_token).unwrap();
        assert_eq!(payload["token"].data, b"eyJ.token");
        with_token.tokens.insert(
            ("".to_owned(), crate::tokens::DEFAULT_EXPIRATION_SECONDS),
            Err("failed to fetch token: forbidden".to_owned()),
        );
        assert_eq!(
            projected_payload(&source, &pod(), &with_token),
            Err("failed to fetch token: forbidden".to_owned())
        );
        let source: ProjectedVolumeSource = from(json!({"sources": [
            {"clusterTrustBundle": {"path": "ca.pem", "name": "b"}}
        ]}));
        assert_eq!(
            projected_payload(&source, &pod(), &sources()),
            Err(
                "projected volume source clusterTrustBundle is not supported by this node yet"
                    .to_owned()
            )
        );
        let source: ProjectedVolumeSource = from(json!({"sources": [
            {"configMap": {"name": "settings", "items": [{"key": "mode", "path": "/abs"}]}}
        ]}));
        assert_eq!(
            projected_payload(&source, &pod(), &sources()),
            Err("invalid path: must be relative path: /abs".to_owned())
        );
    }

    #[test]
    fn volumes_pick_their_payload() {
        let volume = |v: serde_json::Value| -> Volume { from(v) };
        let pod = pod();
        let sources = sources();
        let cm = volume(json!({"name": "v", "configMap": {"name": "settings"}}));
        assert_eq!(
            volume_payload(&cm, &pod, &sources).unwrap().unwrap().len(),
            3
        );
        let secret = volume(json!({"name": "v", "secret": {"secretName": "creds"}}));
        assert_eq!(
            volume_payload(&secret, &pod, &sources)
                .unwrap()
                .unwrap()
                .len(),
            2
        );
        let missing = volume(json!({"name": "v", "secret": {"secretName": "other"}}));
        assert_eq!(
            volume_payload(&missing, &pod, &sources).unwrap(),
            Err("secret \"other\" not found".to_owned())
        );
        let downward = volume(json!({"name": "v", "downwardAPI": {"items": [
            {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}
        ]}}));
        assert_eq!(
            volume_payload(&downward, &pod, &sources).unwrap().unwrap()["ns"],
            file(b"shop", 0o644)
        );
        let projected = volume(json!({"name": "v", "projected": {"sources": []}}));
        assert_eq!(
            volume_payload(&projected, &pod, &sources),
            Some(Ok(Payload::new()))
        );
        let empty_dir = volume(json!({"name": "v", "emptyDir": {}}));
        assert_eq!(volume_payload(&empty_dir, &pod, &sources), None);
    }
}
