//! What `get` prints: kubectl's table columns for each kind (with the STATUS of a pod computed
//! as kubectl computes it), and YAML, JSON and name output.

use std::collections::BTreeMap;

use minik_api::resources::ResourceInfo;
use serde_json::Value;

use super::time::{age, human_duration, parse_rfc3339};

pub(crate) fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(crate) fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

pub(crate) fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(crate) fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

/// `k=v,k2=v2` of a map of strings, sorted by key.
pub fn labels_string(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs.join(",")
}

/// How a table is asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableOptions {
    pub wide: bool,
    pub show_labels: bool,
    /// Adds a NAMESPACE column first (`-A`).
    pub with_namespace: bool,
    /// Prefixes names with their kind (`pod/web`), as kubectl does when several kinds print.
    pub with_kind: bool,
    /// Leaves the header out (watch output after the first table).
    pub no_headers: bool,
}

/// The header cells of a kind's table.
pub fn headers(info: &ResourceInfo, opts: TableOptions) -> Vec<String> {
    let mut h: Vec<&str> = match info.kind {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "ReplicaSet" | "ReplicationController" => {
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
        }
        "Service" => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        "Node" => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "Namespace" => vec!["NAME", "STATUS", "AGE"],
        "Endpoints" => vec!["NAME", "ENDPOINTS", "AGE"],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "ResourceQuota" => vec!["NAME", "AGE", "REQUEST", "LIMIT"],
        _ => vec!["NAME", "AGE"],
    };
    if opts.wide {
        h.extend_from_slice(match info.kind {
            "Pod" => &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"][..],
            "Deployment" | "ReplicaSet" | "ReplicationController" => {
                &["CONTAINERS", "IMAGES", "SELECTOR"][..]
            }
            "Service" => &["SELECTOR"][..],
            "Node" => &[
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ][..],
            "Event" => &[
                "SUBOBJECT",
                "SOURCE",
                "MESSAGE",
                "FIRST SEEN",
                "COUNT",
                "NAME",
            ][..],
            _ => &[][..],
        });
        if info.kind == "Event" {
            // kubectl's wide event table moves MESSAGE after SOURCE.
            h.retain(|c| *c != "MESSAGE");
            h.insert(h.len() - 3, "MESSAGE");
        }
    }
    let mut h: Vec<String> = h.into_iter().map(str::to_owned).collect();
    if opts.show_labels {
        h.push("LABELS".into());
    }
    if opts.with_namespace {
        h.insert(0, "NAMESPACE".into());
    }
    h
}

/// The cells of one object's row.
pub fn row(info: &ResourceInfo, obj: &Value, opts: TableOptions, now: i64) -> Vec<String> {
    let name = s(obj, "/metadata/name").to_owned();
    let name = if opts.with_kind {
        super::kind_slash_name(info, &name)
    } else {
        name
    };
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str);
    let age = age(created, now);
    let mut r: Vec<String> = match info.kind {
        "Pod" => {
            let p = pod_summary(obj, now);
            let mut r = vec![name, p.ready, p.status, p.restarts, age];
            if opts.wide {
                r.push(or_none(s(obj, "/status/podIP").into()));
                r.push(or_none(s(obj, "/spec/nodeName").into()));
                r.push(or_none(s(obj, "/status/nominatedNodeName").into()));
                r.push(readiness_gates(obj));
            }
            r
        }
        "Deployment" => {
            let mut r = vec![
                name,
                format!("{}/{}", n(obj, "/status/readyReplicas"), replicas(obj)),
                n(obj, "/status/updatedReplicas").to_string(),
                n(obj, "/status/availableReplicas").to_string(),
                age,
            ];
            if opts.wide {
                r.extend(workload_wide(obj));
            }
            r
        }
        "ReplicaSet" | "ReplicationController" => {
            let mut r = vec![
                name,
                replicas(obj).to_string(),
                n(obj, "/status/replicas").to_string(),
                n(obj, "/status/readyReplicas").to_string(),
                age,
            ];
            if opts.wide {
                r.extend(workload_wide(obj));
            }
            r
        }
        "Service" => {
            let mut r = vec![
                name,
                s(obj, "/spec/type").to_owned(),
                or_none(s(obj, "/spec/clusterIP").into()),
                service_external_ip(obj),
                or_none(service_ports(obj)),
                age,
            ];
            if opts.wide {
                r.push(or_none(labels_string(obj.pointer("/spec/selector"))));
            }
            r
        }
        "Node" => {
            let mut r = vec![
                name,
                node_status(obj),
                node_roles(obj),
                age,
                s(obj, "/status/nodeInfo/kubeletVersion").to_owned(),
            ];
            if opts.wide {
                r.push(or_none(node_address(obj, "InternalIP")));
                r.push(or_none(node_address(obj, "ExternalIP")));
                for f in ["osImage", "kernelVersion", "containerRuntimeVersion"] {
                    r.push(or_none(s(obj, &format!("/status/nodeInfo/{f}")).into()));
                }
            }
            r
        }
        "Namespace" => vec![name, s(obj, "/status/phase").to_owned(), age],
        "Endpoints" => vec![name, endpoints(obj), age],
        "Event" => event_row(obj, opts, now),
        "ResourceQuota" => {
            let (request, limit) = quota_columns(obj);
            vec![name, age, request, limit]
        }
        _ => vec![name, age],
    };
    if opts.show_labels {
        r.push(or_none(labels_string(obj.pointer("/metadata/labels"))));
    }
    if opts.with_namespace {
        r.insert(0, s(obj, "/metadata/namespace").to_owned());
    }
    r
}

fn replicas(obj: &Value) -> i64 {
    // An absent spec.replicas means 1, as the API defaults it.
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn workload_wide(obj: &Value) -> Vec<String> {
    let containers = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    let selector = match obj.pointer("/spec/selector/matchLabels") {
        Some(m) => selector_string(obj.pointer("/spec/selector"), m),
        // ReplicationControllers have a plain map as their selector.
        None => labels_string(obj.pointer("/spec/selector")),
    };
    vec![names.join(","), images.join(","), or_none(selector)]
}

/// A LabelSelector as kubectl prints it: `app=web,tier in (a,b)`.
pub fn selector_string(selector: Option<&Value>, match_labels: &Value) -> String {
    let mut parts = vec![labels_string(Some(match_labels))];
    for e in selector
        .map(|s| arr(s, "/matchExpressions"))
        .unwrap_or_default()
    {
        let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        let key = s(e, "/key");
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    parts.retain(|p| !p.is_empty());
    parts.join(",")
}

fn readiness_gates(obj: &Value) -> String {
    let gates = arr(obj, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = arr(obj, "/status/conditions");
    let ready = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .any(|c| s(c, "/type") == s(g, "/conditionType") && s(c, "/status") == "True")
        })
        .count();
    format!("{ready}/{}", gates.len())
}

/// READY, STATUS and RESTARTS of a pod, as kubectl's `printPod` computes them.
pub struct PodSummary {
    pub ready: String,
    pub status: String,
    pub restarts: String,
}

pub fn pod_summary(pod: &Value, now: i64) -> PodSummary {
    let total = arr(pod, "/spec/containers").len();
    let mut reason = s(pod, "/status/phase").to_owned();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_owned();
    }
    let mut restarts = 0;
    let mut last_restart: Option<i64> = None;
    let mut note_restart = |c: &Value, restarts: &mut i64| {
        *restarts += n(c, "/restartCount");
        if let Some(t) = c
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
        {
            last_restart = Some(last_restart.map_or(t, |l| l.max(t)));
        }
    };
    let init_statuses = arr(pod, "/status/initContainerStatuses");
    let n_init = arr(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        note_restart(c, &mut restarts);
        if let Some(t) = c.pointer("/state/terminated") {
            if n(t, "/exitCode") == 0 {
                continue;
            }
            reason = if !s(t, "/reason").is_empty() {
                format!("Init:{}", s(t, "/reason"))
            } else if n(t, "/signal") != 0 {
                format!("Init:Signal:{}", n(t, "/signal"))
            } else {
                format!("Init:ExitCode:{}", n(t, "/exitCode"))
            };
        } else if let Some(w) = c
            .pointer("/state/waiting")
            .filter(|w| !s(w, "/reason").is_empty() && s(w, "/reason") != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, "/reason"));
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        initializing = true;
        break;
    }
    let mut n_ready = 0;
    if !initializing {
        restarts = 0;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            note_restart(c, &mut restarts);
            let waiting = c.pointer("/state/waiting");
            let terminated = c.pointer("/state/terminated");
            if let Some(w) = waiting.filter(|w| !s(w, "/reason").is_empty()) {
                reason = s(w, "/reason").to_owned();
            } else if let Some(t) = terminated.filter(|t| !s(t, "/reason").is_empty()) {
                reason = s(t, "/reason").to_owned();
            } else if let Some(t) = terminated {
                reason = if n(t, "/signal") != 0 {
                    format!("Signal:{}", n(t, "/signal"))
                } else {
                    format!("ExitCode:{}", n(t, "/exitCode"))
                };
            } else if c.pointer("/ready") == Some(&Value::Bool(true))
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                n_ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let ready = arr(pod, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        reason = if s(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{n_ready}/{total}"),
        status: if reason.is_empty() {
            "Pending".into()
        } else {
            reason
        },
        restarts,
    }
}

fn service_external_ip(svc: &Value) -> String {
    let mut ips: Vec<String> = Vec::new();
    let kind = s(svc, "/spec/type");
    if kind == "LoadBalancer" {
        for i in arr(svc, "/status/loadBalancer/ingress") {
            let ip = if s(i, "/ip").is_empty() {
                s(i, "/hostname")
            } else {
                s(i, "/ip")
            };
            if !ip.is_empty() {
                ips.push(ip.to_owned());
            }
        }
    }
    ips.extend(
        arr(svc, "/spec/externalIPs")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned),
    );
    if kind == "ExternalName" {
        return s(svc, "/spec/externalName").to_owned();
    }
    if ips.is_empty() {
        if kind == "LoadBalancer" {
            "<pending>"
        } else {
            "<none>"
        }
        .into()
    } else {
        ips.join(",")
    }
}

fn service_ports(svc: &Value) -> String {
    arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            match n(p, "/nodePort") {
                0 => format!("{}/{proto}", n(p, "/port")),
                node_port => format!("{}:{node_port}/{proto}", n(p, "/port")),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn node_status(node: &Value) -> String {
    let ready = arr(node, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
        .map(|c| match s(c, "/status") {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_owned();
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

pub fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_owned())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_owned)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    or_none(roles.join(","))
}

fn node_address(node: &Value, kind: &str) -> String {
    arr(node, "/status/addresses")
        .iter()
        .find(|a| s(a, "/type") == kind)
        .map(|a| s(a, "/address").to_owned())
        .unwrap_or_default()
}

fn endpoints(ep: &Value) -> String {
    let mut all = Vec::new();
    for subset in arr(ep, "/subsets") {
        for port in arr(subset, "/ports") {
            for addr in arr(subset, "/addresses") {
                all.push(format!("{}:{}", s(addr, "/ip"), n(port, "/port")));
            }
        }
        if arr(subset, "/ports").is_empty() {
            all.extend(
                arr(subset, "/addresses")
                    .iter()
                    .map(|a| s(a, "/ip").to_owned()),
            );
        }
    }
    // kubectl shows three and counts the rest.
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        more => format!("{} + {} more...", all[..3].join(","), more - 3),
    }
}

pub(crate) fn event_time(ev: &Value) -> Option<&str> {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| {
        ev.pointer(p)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    })
}

fn event_row(ev: &Value, opts: TableOptions, now: i64) -> Vec<String> {
    let kind = s(ev, "/involvedObject/kind").to_lowercase();
    let object = format!("{kind}/{}", s(ev, "/involvedObject/name"));
    let mut last_seen = age(event_time(ev), now);
    let count = n(ev, "/count");
    let first = ev
        .pointer("/firstTimestamp")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    if !opts.wide && count > 1 {
        if let Some(first) = first {
            last_seen = format!("{last_seen} (x{count} over {})", age(Some(first), now));
        }
    }
    let message = s(ev, "/message").trim().to_owned();
    let mut r = vec![
        last_seen,
        s(ev, "/type").to_owned(),
        s(ev, "/reason").to_owned(),
        object,
    ];
    if opts.wide {
        r.push(s(ev, "/involvedObject/fieldPath").to_owned());
        let host = s(ev, "/source/host");
        let source = s(ev, "/source/component");
        r.push(if host.is_empty() {
            source.to_owned()
        } else {
            format!("{source}, {host}")
        });
        r.push(message);
        r.push(age(first.or(event_time(ev)), now));
        r.push(count.max(1).to_string());
        r.push(s(ev, "/metadata/name").to_owned());
    } else {
        r.push(message);
    }
    r
}

fn quota_columns(q: &Value) -> (String, String) {
    let hard: BTreeMap<String, String> =
        string_map(q.pointer("/status/hard").or(q.pointer("/spec/hard")));
    let used = string_map(q.pointer("/status/used"));
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for (k, v) in &hard {
        let u = used.get(k).cloned().unwrap_or_else(|| "0".into());
        let cell = format!("{k}: {u}/{v}");
        if k.starts_with("limits.") {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    (request.join(", "), limit.join(", "))
}

pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Rows joined with tabs, for the tab writer.
pub fn table_text(header: Option<&[String]>, rows: &[Vec<String>]) -> String {
    let mut text = String::new();
    for r in header.into_iter().chain(rows.iter().map(Vec::as_slice)) {
        text.push_str(&r.join("\t"));
        text.push('\n');
    }
    text
}

// ---------------------------------------------------------------------------------------------
// YAML and JSON
// ---------------------------------------------------------------------------------------------

/// JSON as kubectl prints it: indented by four spaces. serde_json indents by two; JSON strings
/// cannot hold a raw newline, so every line's leading spaces are indentation and can be doubled.
pub fn to_json(value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut out = String::with_capacity(pretty.len() * 2);
    for line in pretty.lines() {
        let body = line.trim_start_matches(' ');
        out.push_str(&" ".repeat((line.len() - body.len()) * 2));
        out.push_str(body);
        out.push('\n');
    }
    out
}

/// YAML in the block style kubectl prints (keys sorted, sequences not indented under their key).
/// Written here rather than with serde_yaml because serde_yaml follows YAML 1.2 and leaves
/// `yes`, `on`, `y` and the like unquoted, which YAML 1.1 readers (kubectl's among them) take
/// for booleans; kubectl quotes them, and so does this.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => yaml_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_seq(a, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_string(k));
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                yaml_map(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                yaml_seq(items, indent, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    }
}

fn yaml_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                // The first key goes on the dash's line; the rest line up under it.
                let mut nested = String::new();
                yaml_map(inner, indent + 2, &mut nested);
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                yaml_seq(inner, indent + 2, &mut nested);
                out.push_str(&nested[indent + 2..]);
            }
            scalar => {
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Whether a YAML 1.1 reader takes `s` for a number: `0x1F`, `0o17`, `0b101`, `017`, `1_000`,
/// `1:30` (base 60), `.inf`, `.nan`.
fn yaml11_number(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let digits_in = |rest: &str, radix: u32| {
        !rest.is_empty() && rest.chars().all(|c| c == '_' || c.is_digit(radix))
    };
    if let Some(rest) = lower.strip_prefix("0x") {
        return digits_in(rest, 16);
    }
    if let Some(rest) = lower.strip_prefix("0o") {
        return digits_in(rest, 8);
    }
    if let Some(rest) = lower.strip_prefix("0b") {
        return digits_in(rest, 2);
    }
    matches!(lower.as_str(), ".inf" | ".nan")
        || (body.starts_with(|c: char| c.is_ascii_digit())
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || c == '_' || c == ':' || c == '.')
            && body.chars().filter(|c| *c == '.').count() <= 1)
}

/// A string as a plain YAML scalar when that reads back as the same string, else quoted.
fn yaml_string(s: &str) -> String {
    let needs_quotes = s.is_empty()
        || s.trim() != s
        || matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
        )
        || s.parse::<f64>().is_ok()
        || yaml11_number(s)
        || s.starts_with(|c: char| ",[]{}#&*!|>'\"%@`".contains(c))
        // `-`, `?` and `:` start a plain scalar only when a non-space follows (`-c` is fine).
        || matches!(s, "-" | "?" | ":")
        || s.starts_with("- ")
        || s.starts_with("? ")
        || s.starts_with(": ")
        || s.starts_with("---")
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control());
    if !needs_quotes {
        s.to_owned()
    } else if s.chars().any(|c| c.is_control()) {
        // JSON's escapes are valid in a double-quoted YAML scalar.
        Value::String(s.to_owned()).to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_reads_back_as_the_same_value() {
        let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "8080", "b": "x: y", "c": "line1\nline2", "d": ""}},
            "spec": {"containers": [{"name": "c", "args": ["-c", "true"], "ports": [{"containerPort": 80}]}], "empty": [], "none": {}},
            "list": [[1, 2], {"x": null}]});
        let yaml = to_yaml(&v);
        assert!(
            yaml.contains("  containers:\n  - args:\n    - -c\n"),
            "{yaml}"
        );
        let back = minik_api::decode::parse_document(yaml.as_bytes()).unwrap();
        assert_eq!(back, v, "{yaml}");
        // Strings that YAML 1.1 readers (kubectl's among them) take for other types are quoted.
        for word in [
            "yes", "no", "on", "off", "y", "n", "true", "null", "~", "1.0", "0x10", "1e3", "012",
            "1_000", "1:30", ".inf", "-.NaN", "0b11",
        ] {
            let yaml = to_yaml(&json!({ "a": word }));
            assert_ne!(yaml, format!("a: {word}\n"), "{word}");
            let back = minik_api::decode::parse_document(yaml.as_bytes()).unwrap();
            assert_eq!(back, json!({ "a": word }), "{yaml}");
        }
        // Versions, names and times stay plain.
        for plain in [
            "v1.2.3",
            "nginx:1.25",
            "web-1",
            "1.2.3",
            "2024-01-01T00:00:00Z",
        ] {
            assert_eq!(to_yaml(&json!({ "a": plain })), format!("a: {plain}\n"));
        }
    }

    #[test]
    fn pod_status_follows_kubectl() {
        let pod =
            |status: Value| json!({"spec": {"containers": [{"name": "c"}]}, "status": status});
        let cases = [
            (json!({"phase": "Pending"}), "0/1", "Pending"),
            (
                json!({"phase": "Pending", "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                "0/1",
                "ContainerCreating",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 0, "state": {"running": {}}}]}),
                "1/1",
                "Running",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                "0/1",
                "CrashLoopBackOff",
            ),
            (
                json!({"phase": "Succeeded", "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                "0/1",
                "Completed",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}),
                "0/1",
                "ExitCode:3",
            ),
        ];
        for (status, ready, want) in cases {
            let p = pod_summary(&pod(status.clone()), 0);
            assert_eq!(
                (p.ready.as_str(), p.status.as_str()),
                (ready, want),
                "{status}"
            );
        }
        let mut deleting = pod(json!({"phase": "Running"}));
        deleting["metadata"] = json!({"deletionTimestamp": "2024-01-01T00:00:00Z"});
        assert_eq!(pod_summary(&deleting, 0).status, "Terminating");
        let restarted = pod(
            json!({"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 3, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "1970-01-01T00:00:10Z"}}}]}),
        );
        assert_eq!(pod_summary(&restarted, 70).restarts, "3 (60s ago)");
    }

    #[test]
    fn services_show_ports_and_addresses() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "127.96.0.5", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(service_ports(&svc), "80:30080/TCP,53/UDP");
        assert_eq!(service_external_ip(&svc), "<none>");
        let lb = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(service_external_ip(&lb), "<pending>");
    }
}
