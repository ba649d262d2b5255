//! The downward API: what a container may learn about its pod and itself, as the kubelet
//! gives it in environment variables (`fieldRef`, `resourceFieldRef`) and in `downwardAPI` and
//! `projected` volumes. Field paths, map rendering, resource values with their divisors and
//! the node's allocatable standing in for unset limits follow Kubernetes' `fieldpath`,
//! `podshelper.ConvertDownwardAPIFieldLabel` and `pkg/api/v1/resource` helpers, messages
//! included. Pure functions.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{
    Container, ObjectFieldSelector, Pod, ResourceFieldSelector,
};
use minik_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use minik_api::quantity::Quantity;

use crate::spec::Placement;

/// The node's allocatable resources as [`Quantity`] values, for [`crate::spec::Sources`]:
/// entries that do not parse are left out (the limits they would stand in for stay unset).
pub fn allocatable(status: &BTreeMap<String, K8sQuantity>) -> BTreeMap<String, Quantity> {
    status
        .iter()
        .filter_map(|(name, q)| Some((name.clone(), Quantity::try_from(q).ok()?)))
        .collect()
}

/// The value of an environment variable's `fieldRef`, as the kubelet resolves it: the path
/// goes through the API's list of pod field labels first (an `apiVersion` other than `v1` is
/// refused, `spec.host` is the old name of `spec.nodeName`), then the node-side fields
/// (`spec.nodeName`, `spec.serviceAccountName`, `status.hostIP(s)`, `status.podIP(s)`) are
/// answered from `placement`, and the rest from the pod's metadata ([`pod_field`]).
pub(crate) fn field_ref(
    pod: &Pod,
    placement: &Placement,
    selector: &ObjectFieldSelector,
) -> Result<String, String> {
    let version = selector.api_version.as_deref().unwrap_or_default();
    // The API server defaults the version to v1; an unset one means the same.
    if !version.is_empty() && version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    let label = selector.field_path.as_str();
    let path = match split_subscript(label) {
        Some((path, _)) => match path {
            "metadata.annotations" | "metadata.labels" => label,
            _ => return Err(format!("field label does not support subscript: {label}")),
        },
        None => match label {
            "metadata.annotations"
            | "metadata.labels"
            | "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.serviceAccountName"
            | "spec.schedulerName"
            | "status.phase"
            | "status.hostIP"
            | "status.hostIPs"
            | "status.podIP"
            | "status.podIPs" => label,
            "spec.host" => "spec.nodeName",
            _ => return Err(format!("field label not supported: {label}")),
        },
    };
    match path {
        "spec.nodeName" => Ok(placement.node_name.clone()),
        "spec.serviceAccountName" => Ok(pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default()),
        "status.hostIP" | "status.hostIPs" => Ok(placement.host_ip.clone()),
        "status.podIP" | "status.podIPs" => Ok(placement.pod_ip.clone()),
        _ => pod_field(pod, path),
    }
}

/// The value of a metadata field path, as Kubernetes' `fieldpath.ExtractFieldPathAsString`
/// gives it (the only paths a `downwardAPI` volume item may use): `metadata.name`,
/// `metadata.namespace`, `metadata.uid`, the whole `metadata.labels` or
/// `metadata.annotations` ([`render_map`]), or one key of them (`metadata.labels['app']`,
/// empty when the key is not set).
pub(crate) fn pod_field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((map, key)) = split_subscript(path) {
        let (errors, values) = match map {
            // Annotation keys are checked in lower case, as Kubernetes does.
            "metadata.annotations" => (
                qualified_name_errors(&key.to_lowercase()),
                meta.annotations.as_ref(),
            ),
            "metadata.labels" => (qualified_name_errors(key), meta.labels.as_ref()),
            _ => {
                return Err(format!(
                    "fieldPath {} does not support subscript",
                    go_quote(path)
                ))
            }
        };
        if !errors.is_empty() {
            return Err(format!(
                "invalid key subscript in {path}: {}",
                errors.join(";")
            ));
        }
        return Ok(values.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    match path {
        "metadata.annotations" => Ok(render_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(render_map(meta.labels.as_ref())),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// `path['key']` split into `path` and `key`, as Kubernetes' `SplitMaybeSubscriptedPath`.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    (!path.is_empty()).then_some((path, key))
}

/// A whole labels or annotations map as the downward API renders it: one `key="value"` line
/// per entry, sorted by key, values quoted as Go's `%q` does, no trailing newline.
pub(crate) fn render_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// `s` in double quotes with Go's `strconv.Quote` escapes: `\"`, `\\`, `\a \b \f \n \r \t \v`,
/// `\xNN` for other control bytes, and `\uNNNN` / `\UNNNNNNNN` for characters Go does not
/// print (spaces other than U+0020, format characters, private use). Unassigned code points,
/// which Go also escapes, are kept: telling them apart needs Unicode tables minik does not
/// carry.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !go_printable(c) => {
                let code = c as u32;
                if code < 0x10000 {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether Go's `unicode.IsPrint` holds, as far as it can be told without Unicode tables:
/// controls, spaces other than U+0020, format characters and private-use characters are not.
fn go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let code = c as u32;
    let format = matches!(
        code,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private = matches!(code, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    !format && !private
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
                                  must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
                                     alphanumeric characters, '-' or '.', and must start and \
                                     end with an alphanumeric character";

/// Kubernetes' `RegexError` text: the message, examples and the expression.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let examples: String = examples
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{}'{e}', ", if i > 0 { " or " } else { "" }))
        .collect();
    format!("{message} (e.g. {examples}regex used for validation is '{format}')")
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, without a regex engine.
fn is_qualified_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Whether `s` is a lowercase RFC 1123 subdomain's shape (length apart).
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                (first.is_ascii_lowercase() || first.is_ascii_digit())
                    && (last.is_ascii_lowercase() || last.is_ascii_digit())
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            }
            _ => false,
        }
    })
}

/// Kubernetes' `IsQualifiedName` messages for a label or annotation key (none when valid).
fn qualified_name_errors(value: &str) -> Vec<String> {
    let name_regex = || {
        regex_error(
            QUALIFIED_NAME_MSG,
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        )
    };
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                if prefix.len() > 253 {
                    errors.push("prefix part must be no more than 253 characters".to_owned());
                }
                if !is_dns1123_subdomain(prefix) {
                    errors.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_MSG,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                name_regex()
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_owned());
    }
    if !is_qualified_name_part(name) {
        errors.push(format!("name part {}", name_regex()));
    }
    errors
}

/// The value of a `resourceFieldRef` naming a container of the pod (as volumes must, and as
/// an environment variable may): the container is looked for among `containers`, then
/// `initContainers`. See [`container_resource`] for the value.
pub(crate) fn resource_field_ref(
    pod: &Pod,
    container_name: &str,
    selector: &ResourceFieldSelector,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .chain(
            spec.into_iter()
                .flat_map(|s| s.init_containers.iter().flatten()),
        )
        .find(|c| c.name == container_name)
        .ok_or_else(|| format!("container {container_name} not found"))?;
    container_resource(container, selector, node_allocatable)
}

/// The value of a `resourceFieldRef` for `container`, as Kubernetes computes it:
/// `limits.cpu` / `requests.cpu` in units of the divisor's thousandths, rounded up
/// (`ceil(milli(cpu) / milli(divisor))`); memory, ephemeral storage and huge pages in whole
/// units of the divisor, rounded up. The divisor defaults to `1` (also when zero). A CPU,
/// memory or ephemeral-storage limit that is unset or zero is the node's allocatable amount,
/// as the kubelet merges it (huge pages always have a limit); an unset request is `0`.
pub(crate) fn container_resource(
    container: &Container,
    selector: &ResourceFieldSelector,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let divisor = match &selector.divisor {
        Some(d) => Quantity::try_from(d)
            .map_err(|e| format!("invalid divisor {:?} of {}: {e}", d.0, selector.resource))?,
        None => Quantity::ZERO,
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_value(1)
    } else {
        divisor
    };
    let resource = selector.resource.as_str();
    let (kind, name) = if let Some(name) = resource.strip_prefix("limits.") {
        ("limits", name)
    } else if let Some(name) = resource.strip_prefix("requests.") {
        ("requests", name)
    } else {
        return Err(unsupported_resource(resource));
    };
    let cpu = name == "cpu";
    if !cpu && name != "memory" && name != "ephemeral-storage" && !name.starts_with("hugepages-") {
        return Err(unsupported_resource(resource));
    }
    let resources = container.resources.as_ref();
    let declared = if kind == "limits" {
        resources.and_then(|r| r.limits.as_ref())
    } else {
        resources.and_then(|r| r.requests.as_ref())
    };
    let declared = declared
        .and_then(|m| m.get(name))
        .map(|q| {
            Quantity::try_from(q)
                .map_err(|e| format!("invalid quantity {:?} for {resource}: {e}", q.0))
        })
        .transpose()?;
    let merges = kind == "limits" && matches!(name, "cpu" | "memory" | "ephemeral-storage");
    let amount = match declared {
        Some(q) if !(merges && q.is_zero()) => q,
        _ if merges => node_allocatable
            .get(name)
            .copied()
            .or(declared)
            .unwrap_or(Quantity::ZERO),
        _ => Quantity::ZERO,
    };
    let value = if cpu {
        div_ceil(i128::from(amount.millis()), i128::from(divisor.millis()))
    } else {
        div_ceil(i128::from(amount.value()), i128::from(divisor.value()))
    };
    value
        .map(|v| v.to_string())
        .ok_or_else(|| format!("invalid divisor of {resource}: it is zero"))
}

fn unsupported_resource(resource: &str) -> String {
    format!("unsupported container resource : {resource}")
}

/// `a / b` rounded towards positive infinity; `None` when `b` is zero.
fn div_ceil(a: i128, b: i128) -> Option<i128> {
    if b == 0 {
        return None;
    }
    let q = a / b;
    let up = a % b != 0 && ((a > 0) == (b > 0));
    Some(if up { q + 1 } else { q })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\"\n\u{a0}ok", "example.com/owner": "me"}
            },
            "spec": {
                "serviceAccountName": "robot",
                "initContainers": [{"name": "setup", "resources": {"limits": {"cpu": "250m"}}}],
                "containers": [
                    {"name": "app", "resources": {
                        "limits": {"cpu": "1500m", "memory": "64Mi", "hugepages-2Mi": "4Mi"},
                        "requests": {"cpu": "1m", "memory": "3000001", "ephemeral-storage": "1Gi"}
                    }},
                    {"name": "bare"},
                    {"name": "zero", "resources": {"limits": {"cpu": "0", "memory": "0"}}}
                ]
            }
        }))
        .unwrap()
    }

    fn selector(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: None,
            divisor: divisor.map(|d| K8sQuantity(d.to_owned())),
            resource: resource.to_owned(),
        }
    }

    fn value(container: &str, resource: &str, divisor: Option<&str>) -> Result<String, String> {
        let allocatable: BTreeMap<String, Quantity> = [
            ("cpu".to_owned(), Quantity::parse("4").unwrap()),
            ("memory".to_owned(), Quantity::parse("8Gi").unwrap()),
            (
                "ephemeral-storage".to_owned(),
                Quantity::parse("100Gi").unwrap(),
            ),
        ]
        .into();
        resource_field_ref(
            &pod(),
            container,
            &selector(resource, divisor),
            &allocatable,
        )
    }

    #[test]
    fn resources_with_divisors_round_up() {
        for (container, resource, divisor, expected) in [
            ("app", "limits.cpu", None, "2"),
            ("app", "limits.cpu", Some("1"), "2"),
            ("app", "limits.cpu", Some("1m"), "1500"),
            ("app", "limits.cpu", Some("0"), "2"),
            ("app", "requests.cpu", None, "1"),
            ("app", "requests.cpu", Some("1m"), "1"),
            ("app", "limits.memory", None, "67108864"),
            ("app", "limits.memory", Some("1Mi"), "64"),
            ("app", "limits.memory", Some("1Gi"), "1"),
            ("app", "requests.memory", Some("1M"), "4"),
            ("app", "requests.memory", Some("1Mi"), "3"),
            ("app", "requests.ephemeral-storage", Some("1Mi"), "1024"),
            ("app", "limits.hugepages-2Mi", Some("1Mi"), "4"),
            ("app", "requests.hugepages-2Mi", None, "0"),
            ("setup", "limits.cpu", Some("1m"), "250"),
        ] {
            assert_eq!(
                value(container, resource, divisor).as_deref(),
                Ok(expected),
                "{container} {resource} {divisor:?}"
            );
        }
    }

    #[test]
    fn unset_limits_are_the_nodes_allocatable() {
        assert_eq!(value("bare", "limits.cpu", None).as_deref(), Ok("4"));
        assert_eq!(
            value("bare", "limits.cpu", Some("1m")).as_deref(),
            Ok("4000")
        );
        assert_eq!(
            value("bare", "limits.memory", Some("1Gi")).as_deref(),
            Ok("8")
        );
        assert_eq!(
            value("bare", "limits.ephemeral-storage", Some("1Gi")).as_deref(),
            Ok("100")
        );
        // A zero limit is unset too; requests are not merged.
        assert_eq!(value("zero", "limits.cpu", None).as_deref(), Ok("4"));
        assert_eq!(
            value("zero", "limits.memory", Some("1Mi")).as_deref(),
            Ok("8192")
        );
        assert_eq!(value("bare", "requests.cpu", None).as_deref(), Ok("0"));
        // Nothing known about the node: 0.
        let bare = &pod().spec.unwrap().containers[1];
        let sel = selector("limits.memory", None);
        assert_eq!(
            container_resource(bare, &sel, &BTreeMap::new()).as_deref(),
            Ok("0")
        );
    }

    #[test]
    fn resource_errors_are_kubernetes_messages() {
        assert_eq!(
            value("ghost", "limits.cpu", None),
            Err("container ghost not found".to_owned())
        );
        assert_eq!(
            value("app", "limits.gpu", None),
            Err("unsupported container resource : limits.gpu".to_owned())
        );
        assert_eq!(
            value("app", "cpu", None),
            Err("unsupported container resource : cpu".to_owned())
        );
        assert!(value("app", "limits.cpu", Some("lots"))
            .unwrap_err()
            .starts_with("invalid divisor"));
    }

    #[test]
    fn allocatable_parses_what_it_can() {
        let status: BTreeMap<String, K8sQuantity> = [
            ("cpu".to_owned(), K8sQuantity("2".into())),
            ("memory".to_owned(), K8sQuantity("not a quantity".into())),
        ]
        .into();
        let parsed = allocatable(&status);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed["cpu"], Quantity::from_value(2));
    }

    fn placement() -> Placement {
        Placement {
            node_name: "n1".into(),
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.1.0.5".into(),
            ..Placement::default()
        }
    }

    fn field(path: &str) -> Result<String, String> {
        let selector = ObjectFieldSelector {
            api_version: Some("v1".into()),
            field_path: path.into(),
        };
        field_ref(&pod(), &placement(), &selector)
    }

    #[test]
    fn env_field_refs() {
        for (path, expected) in [
            ("metadata.name", "web-1"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['example.com/owner']", "me"),
            ("metadata.labels", "app=\"web\"\ntier=\"front\""),
            ("spec.nodeName", "n1"),
            ("spec.host", "n1"),
            ("spec.serviceAccountName", "robot"),
            ("status.hostIP", "10.0.0.1"),
            ("status.hostIPs", "10.0.0.1"),
            ("status.podIP", "10.1.0.5"),
            ("status.podIPs", "10.1.0.5"),
        ] {
            assert_eq!(field(path).as_deref(), Ok(expected), "{path}");
        }
        for (path, error) in [
            (
                "spec.containers",
                "field label not supported: spec.containers",
            ),
            (
                "metadata.name['x']",
                "field label does not support subscript: metadata.name['x']",
            ),
            ("status.phase", "unsupported fieldPath: status.phase"),
        ] {
            assert_eq!(field(path), Err(error.to_owned()), "{path}");
        }
        let err = field("metadata.labels['-bad-']").unwrap_err();
        assert!(
            err.starts_with(
                "invalid key subscript in metadata.labels['-bad-']: name part must consist of"
            ),
            "{err}"
        );
        let old = ObjectFieldSelector {
            api_version: Some("v2".into()),
            field_path: "metadata.name".into(),
        };
        assert_eq!(
            field_ref(&pod(), &placement(), &old),
            Err("unsupported pod version: v2".to_owned())
        );
        let unset = ObjectFieldSelector {
            api_version: None,
            field_path: "metadata.name".into(),
        };
        assert_eq!(
            field_ref(&pod(), &placement(), &unset).as_deref(),
            Ok("web-1")
        );
    }

    #[test]
    fn volume_fields_are_metadata_only() {
        let pod = pod();
        assert_eq!(
            pod_field(&pod, "metadata.annotations").as_deref(),
            Ok("example.com/owner=\"me\"\nnote=\"say \\\"hi\\\"\\n\\u00a0ok\"")
        );
        assert_eq!(
            pod_field(&pod, "spec.nodeName"),
            Err("unsupported fieldPath: spec.nodeName".to_owned())
        );
        assert_eq!(
            pod_field(&pod, "spec.x['y']"),
            Err("fieldPath \"spec.x['y']\" does not support subscript".to_owned())
        );
        assert_eq!(render_map(None), "");
    }

    #[test]
    fn quoting_follows_go() {
        for (input, expected) in [
            ("plain", "\"plain\""),
            ("tab\there", "\"tab\\there\""),
            ("bell\u{7}", "\"bell\\a\""),
            ("nul\0", "\"nul\\x00\""),
            ("del\u{7f}", "\"del\\x7f\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("café ✓", "\"café ✓\""),
            ("zero\u{200b}width", "\"zero\\u200bwidth\""),
            ("private\u{F0000}", "\"private\\U000f0000\""),
        ] {
            assert_eq!(go_quote(input), expected, "{input:?}");
        }
    }

    #[test]
    fn qualified_names() {
        assert!(qualified_name_errors("app").is_empty());
        assert!(qualified_name_errors("example.com/app.v1").is_empty());
        assert_eq!(
            qualified_name_errors("/app"),
            vec!["prefix part must be non-empty".to_owned()]
        );
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert_eq!(qualified_name_errors(&"a".repeat(64)).len(), 1);
        assert_eq!(
            qualified_name_errors("Example.com/x"),
            vec![format!(
                "prefix part {}",
                regex_error(
                    DNS1123_SUBDOMAIN_MSG,
                    DNS1123_SUBDOMAIN_FMT,
                    &["example.com"]
                )
            )]
        );
    }
}
