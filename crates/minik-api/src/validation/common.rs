//! Small checks shared by every kind's validation — port numbers, IPs, quantities, resource
//! names — each worded exactly as Kubernetes words it.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::quantity::Quantity;

pub(super) const NEGATIVE: &str = "must be greater than or equal to 0";
pub(super) const IMMUTABLE: &str = "field is immutable";
pub(super) const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
pub(super) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// The string in an optional string field, `""` when absent (Go has no difference).
pub(super) fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

/// A value as JSON for an error message; values that cannot be shown are shown as `null`.
pub(super) fn json<T: Serialize + ?Sized>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// One `Invalid` error for each message a syntax check returned.
pub(super) fn invalid_each(
    errs: &mut ErrorList,
    path: &FieldPath,
    value: &str,
    messages: Vec<String>,
) {
    errs.extend(
        messages
            .into_iter()
            .map(|m| FieldError::invalid(path, value, m)),
    );
}

pub(super) fn nonnegative(errs: &mut ErrorList, value: i64, path: &FieldPath) {
    if value < 0 {
        errs.push(FieldError::invalid(path, value, NEGATIVE));
    }
}

/// `NotSupported` unless `value` is one of `supported`; `Required` when it is empty.
pub(super) fn one_of(errs: &mut ErrorList, value: &str, path: &FieldPath, supported: &[&str]) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if !supported.contains(&value) {
        errs.push(FieldError::not_supported(path, value, supported));
    }
}

pub(super) fn port_in_range(port: i64) -> bool {
    (1..=65535).contains(&port)
}

pub(super) fn port_number(errs: &mut ErrorList, port: i32, path: &FieldPath) {
    if !port_in_range(port.into()) {
        errs.push(FieldError::invalid(path, port, PORT_RANGE));
    }
}

/// A port given as a number (1–65535) or as the name of a container port (an IANA service name).
pub(super) fn port_number_or_name(errs: &mut ErrorList, port: &IntOrString, path: &FieldPath) {
    match port {
        IntOrString::Int(n) => port_number(errs, *n, path),
        IntOrString::String(name) => invalid_each(errs, path, name, names::iana_svc_name(name)),
    }
}

pub(super) fn label_name(errs: &mut ErrorList, key: &str, path: &FieldPath) {
    invalid_each(errs, path, key, names::qualified_name(key));
}

pub(super) fn dns_label(errs: &mut ErrorList, value: &str, path: &FieldPath) {
    invalid_each(errs, path, value, names::dns1123_label(value));
}

pub(super) fn dns_subdomain(errs: &mut ErrorList, value: &str, path: &FieldPath) {
    invalid_each(errs, path, value, names::dns1123_subdomain(value));
}

pub(super) fn parse_ip(value: &str) -> Option<IpAddr> {
    value.parse().ok()
}

pub(super) fn ip_address(errs: &mut ErrorList, value: &str, path: &FieldPath) {
    if parse_ip(value).is_none() {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
}

/// A CIDR such as `10.9.8.0/24`.
pub(super) fn cidr(errs: &mut ErrorList, value: &str, path: &FieldPath) {
    let valid = value.split_once('/').is_some_and(|(ip, bits)| {
        let max = match parse_ip(ip) {
            Some(IpAddr::V4(_)) => 32,
            Some(IpAddr::V6(_)) => 128,
            None => return false,
        };
        bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
    });
    if !valid {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

/// Parses a quantity, or records why it does not parse.
pub(super) fn quantity(
    errs: &mut ErrorList,
    q: &K8sQuantity,
    path: &FieldPath,
) -> Option<Quantity> {
    match Quantity::try_from(q) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            errs.push(FieldError::invalid(path, q.0.as_str(), e.to_string()));
            None
        }
    }
}

/// A resource amount: it parses, it is not negative, and it is whole for countable resources.
pub(super) fn resource_quantity(
    errs: &mut ErrorList,
    resource: &str,
    q: &K8sQuantity,
    path: &FieldPath,
) -> Option<Quantity> {
    let parsed = quantity(errs, q, path)?;
    if parsed < Quantity::ZERO {
        errs.push(FieldError::invalid(path, parsed.to_string(), NEGATIVE));
    }
    if is_integer_resource(resource) && parsed.as_nanos() % 1_000_000_000 != 0 {
        errs.push(FieldError::invalid(
            path,
            parsed.to_string(),
            "must be an integer",
        ));
    }
    Some(parsed)
}

// Resource names, as Kubernetes' `pkg/apis/core/helper` classifies them.

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The standard resources that are amounts of compute or storage; the others are
/// `INTEGER_RESOURCES`.
const STANDARD_AMOUNT_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "storage",
    "requests.storage",
];

/// Resources counted in whole objects: a quota of `pods: 1.5` makes no sense.
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// Kubernetes' `IsStandardResourceName`.
fn is_standard_resource(name: &str) -> bool {
    STANDARD_AMOUNT_RESOURCES.contains(&name) || INTEGER_RESOURCES.contains(&name)
}

pub(super) fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_quota_hugepages(name: &str) -> bool {
    ["hugepages-", "requests.hugepages-", "limits.hugepages-"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Names without a domain, or in `kubernetes.io/`, belong to Kubernetes itself.
pub(super) fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// A resource advertised by a device plugin or an operator: `example.com/gpu`.
pub(super) fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && names::qualified_name(&format!("requests.{name}")).is_empty()
}

/// Whether requests may be below limits (false for hugepages and extended resources).
pub(super) fn is_overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_hugepages(name)
}

fn is_integer_resource(name: &str) -> bool {
    INTEGER_RESOURCES.contains(&name) || is_extended(name)
}

/// The checks every resource name passes: a qualified name, and either standard or qualified
/// with a domain.
fn resource_name(errs: &mut ErrorList, name: &str, path: &FieldPath) {
    let before = errs.len();
    label_name(errs, name, path);
    let known = is_standard_resource(name) || is_quota_hugepages(name);
    if errs.len() == before {
        invalid_unless(
            errs,
            name.contains('/') || known,
            path,
            name,
            "must be a standard resource type or fully qualified",
        );
    }
}

/// A resource a container may request or be limited in.
pub(super) fn container_resource_name(errs: &mut ErrorList, name: &str, path: &FieldPath) {
    resource_name(errs, name, path);
    if !name.contains('/') {
        let known = STANDARD_CONTAINER_RESOURCES.contains(&name) || is_hugepages(name);
        invalid_unless(
            errs,
            known,
            path,
            name,
            "must be a standard resource for containers",
        );
    } else {
        let ok = is_native(name) || is_extended(name);
        invalid_unless(
            errs,
            ok,
            path,
            name,
            "doesn't follow extended resource name standard",
        );
    }
}

/// A resource a quota may limit: the standard ones, `count/<resource>.<group>`, and any other
/// name with a domain.
pub(super) fn quota_resource_name(errs: &mut ErrorList, name: &str, path: &FieldPath) {
    resource_name(errs, name, path);
    // Kubernetes' standard quota resources are the standard resources but `storage`.
    let standard = is_standard_resource(name) && name != "storage";
    let known = standard || is_quota_hugepages(name);
    let ok = name.contains('/') || known;
    invalid_unless(
        errs,
        ok,
        path,
        name,
        "must be a standard resource for quota",
    );
}

/// `Invalid` with `message` for the resource `name` unless `ok`.
fn invalid_unless(errs: &mut ErrorList, ok: bool, path: &FieldPath, name: &str, message: &str) {
    if !ok {
        errs.push(FieldError::invalid(path, name, message));
    }
}

/// Go's `%#v` of a string slice, which some Kubernetes messages embed.
pub(super) fn go_string_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}
