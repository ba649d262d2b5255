//! The columns Kubernetes prints for each served kind (its server-side `Table` printers, which
//! kubectl shows for `get`), as pure functions of an object and `now`: column definitions with
//! their priority (1 = only with `-o wide`) and typed cells. The API server turns them into
//! `meta.k8s.io/v1` `Table` answers; a client may use them to print the same columns.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::time::{age, human_duration, parse_seconds};

/// The type of a column's cells, as `Table` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellType {
    String,
    Integer,
}

impl CellType {
    pub fn as_str(self) -> &'static str {
        match self {
            CellType::String => "string",
            CellType::Integer => "integer",
        }
    }
}

/// One column of a kind's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// As Kubernetes names it (`Cluster-IP`); kubectl prints it upper-cased.
    pub name: &'static str,
    pub cell: CellType,
    /// `name` for the column that holds the object's name, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: shown with `-o wide`.
    pub priority: u8,
}

pub(crate) const fn col(name: &'static str, description: &'static str) -> Column {
    Column {
        name,
        cell: CellType::String,
        format: "",
        description,
        priority: 0,
    }
}

pub(crate) const fn int(name: &'static str, description: &'static str) -> Column {
    Column {
        cell: CellType::Integer,
        ..col(name, description)
    }
}

pub(crate) const fn wide(c: Column) -> Column {
    Column { priority: 1, ..c }
}

pub(crate) const NAME: Column = Column {
    format: "name",
    ..col(
        "Name",
        "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    )
};
pub(crate) const AGE: Column = col(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

pub(crate) const WORKLOAD_WIDE: [Column; 3] = [
    wide(col(
        "Containers",
        "Names of each container in the template.",
    )),
    wide(col(
        "Images",
        "Images referenced by each container in the template.",
    )),
    wide(col(
        "Selector",
        "Label query over pods that should match the replicas count.",
    )),
];

/// A kind's table, as Kubernetes' printers define it: the columns, wide ones (priority 1)
/// included, and how the cells of an object's row are computed at `now` (seconds since the
/// epoch), one per column.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    pub columns: &'static [Column],
    pub cells: fn(&Value, i64) -> Vec<Value>,
}

impl Table {
    pub const fn new(columns: &'static [Column], cells: fn(&Value, i64) -> Vec<Value>) -> Table {
        Table { columns, cells }
    }
}

/// The table of a kind without printers of its own: its name and age.
pub(crate) const DEFAULT_TABLE: Table = Table::new(DEFAULT_COLUMNS, default_cells);

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

/// The cells of [`DEFAULT_COLUMNS`].
pub(crate) fn default_cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![name_cell(obj), age_cell(obj, now)]
}

/// The cell of the [`NAME`] column.
pub(crate) fn name_cell(obj: &Value) -> Value {
    json!(s(obj, "/metadata/name"))
}

/// The cell of the [`AGE`] column at `now` (seconds since the epoch).
pub(crate) fn age_cell(obj: &Value, now: i64) -> Value {
    json!(age(s(obj, "/metadata/creationTimestamp"), now))
}

/// The string at a JSON pointer; empty when absent or not a string.
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The integer at a JSON pointer; 0 when absent or not an integer.
pub fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

/// The array at a JSON pointer; empty when absent or not an array.
pub fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `s`, or `<none>` when it is empty, as Kubernetes prints an absent value.
pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_owned()
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

/// A LabelSelector as Kubernetes prints it: `app=web,tier in (a,b)`.
pub fn selector_string(selector: Option<&Value>) -> String {
    let mut parts = vec![labels_string(selector.and_then(|s| s.get("matchLabels")))];
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

pub(crate) fn replicas(obj: &Value) -> i64 {
    // An absent spec.replicas means 1, as the API defaults it.
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

pub(crate) fn workload_wide(obj: &Value) -> Vec<Value> {
    let containers = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    vec![
        json!(names.join(",")),
        json!(images.join(",")),
        json!(or_none(&selector_of(obj))),
    ]
}

/// The `spec.selector` of a workload or Service as a selector string: a LabelSelector
/// (`matchLabels`/`matchExpressions`), or the plain map ReplicationControllers and Services have.
pub fn selector_of(obj: &Value) -> String {
    let selector = obj.pointer("/spec/selector");
    if selector
        .is_some_and(|s| s.get("matchLabels").is_some() || s.get("matchExpressions").is_some())
    {
        selector_string(selector)
    } else {
        labels_string(selector)
    }
}

pub(crate) fn readiness_gates(obj: &Value) -> String {
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

/// READY, STATUS and RESTARTS of a pod, as Kubernetes' pod printer computes them.
#[derive(Clone, Debug, PartialEq, Eq)]
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
            .and_then(parse_seconds)
        {
            last_restart = Some(last_restart.map_or(t, |l| l.max(t)));
        }
    };
    let n_init = arr(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (i, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
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
            let terminated = c.pointer("/state/terminated");
            if let Some(w) = c
                .pointer("/state/waiting")
                .filter(|w| !s(w, "/reason").is_empty())
            {
                reason = s(w, "/reason").to_owned();
            } else if let Some(t) = terminated.filter(|t| !s(t, "/reason").is_empty()) {
                reason = s(t, "/reason").to_owned();
            } else if let Some(t) = terminated {
                reason = if n(t, "/signal") != 0 {
                    format!("Signal:{}", n(t, "/signal"))
                } else {
                    format!("ExitCode:{}", n(t, "/exitCode"))
                };
            } else if c.get("ready") == Some(&Value::Bool(true))
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

pub(crate) fn service_external_ip(svc: &Value) -> String {
    let kind = s(svc, "/spec/type");
    if kind == "ExternalName" {
        return s(svc, "/spec/externalName").to_owned();
    }
    let mut ips: Vec<String> = Vec::new();
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
    match (ips.is_empty(), kind) {
        (true, "LoadBalancer") => "<pending>".into(),
        (true, _) => "<none>".into(),
        (false, _) => ips.join(","),
    }
}

pub(crate) fn service_ports(svc: &Value) -> String {
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

pub(crate) fn node_status(node: &Value) -> String {
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

/// The ROLES of a node: its `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels.
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
    or_none(&roles.join(","))
}

pub(crate) fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    arr(node, "/status/addresses")
        .iter()
        .find(|a| s(a, "/type") == kind)
        .map(|a| s(a, "/address"))
        .unwrap_or_default()
}

pub(crate) fn endpoints(ep: &Value) -> String {
    let mut all = Vec::new();
    for subset in arr(ep, "/subsets") {
        let (ports, addresses) = (arr(subset, "/ports"), arr(subset, "/addresses"));
        if ports.is_empty() {
            // Headless services may have no ports: the addresses alone.
            all.extend(addresses.iter().map(|a| s(a, "/ip").to_owned()));
        }
        // Port by port, each with every address, as Kubernetes' `formatEndpoints` lists them.
        for port in ports {
            for addr in addresses {
                all.push(format!("{}:{}", s(addr, "/ip"), n(port, "/port")));
            }
        }
    }
    // Kubernetes shows three and counts the rest.
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        more => format!("{} + {} more...", all[..3].join(","), more - 3),
    }
}

/// When an event last happened: `lastTimestamp`, else `eventTime`, else its creation.
pub fn event_time(ev: &Value) -> &str {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| s(ev, p))
    .find(|t| !t.is_empty())
    .unwrap_or_default()
}

pub(crate) fn event_cells(ev: &Value, now: i64) -> Vec<Value> {
    let object = format!(
        "{}/{}",
        s(ev, "/involvedObject/kind").to_lowercase(),
        s(ev, "/involvedObject/name")
    );
    let count = n(ev, "/count");
    let first = match s(ev, "/firstTimestamp") {
        "" => event_time(ev),
        first => first,
    };
    // Kubernetes' event printer shows only when it last happened here; the `(xN over M)` form
    // is `kubectl describe`'s and `kubectl events`'.
    let last_seen = age(event_time(ev), now);
    let host = s(ev, "/source/host");
    let component = s(ev, "/source/component");
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last_seen),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(object),
        json!(s(ev, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(ev, "/message").trim()),
        json!(age(first, now)),
        json!(count.max(1)),
        json!(s(ev, "/metadata/name")),
    ]
}

pub(crate) fn quota_cells(q: &Value) -> (String, String) {
    let hard = string_map(q.pointer("/status/hard").or(q.pointer("/spec/hard")));
    let used = string_map(q.pointer("/status/used"));
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for (k, v) in &hard {
        let u = used.get(k).map(String::as_str).unwrap_or("0");
        let cell = format!("{k}: {u}/{v}");
        if k.starts_with("limits.") {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    (request.join(", "), limit.join(", "))
}

/// A JSON map as sorted key/value strings (values that are not strings in their JSON form).
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn row(kind: &str, obj: Value) -> Vec<Value> {
        info(kind).cells(&obj, NOW)
    }

    fn info(kind: &str) -> &'static crate::resources::ResourceInfo {
        crate::resources::RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("a served kind")
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "ReplicationController",
            "Service",
            "Node",
            "Namespace",
            "Endpoints",
            "Event",
            "ResourceQuota",
            "Lease",
            "RuntimeClass",
        ] {
            assert_eq!(
                info(kind).cells(&json!({}), NOW).len(),
                info(kind).columns().len(),
                "{kind}"
            );
        }
        assert_eq!(default_cells(&json!({}), NOW).len(), DEFAULT_COLUMNS.len());
    }

    #[test]
    fn column_names_are_kubernetes_names() {
        let names = |kind| -> Vec<&str> {
            info(kind)
                .columns()
                .iter()
                .filter(|c| c.priority == 0)
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(names("Pod"), ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(
            names("Deployment"),
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(
            names("Service"),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age"
            ]
        );
        assert_eq!(names("Node"), ["Name", "Status", "Roles", "Age", "Version"]);
        assert_eq!(names("RuntimeClass"), ["Name", "Handler", "Age"]);
        let wide_pod: Vec<&str> = info("Pod")
            .columns()
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            wide_pod,
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
    }

    #[test]
    fn pod_rows_read_like_kubectl() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2023-11-14T22:10:20Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": "2023-11-14T22:12:20Z"}}},
                {"name": "b", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        assert_eq!(
            row("Pod", pod),
            vec![
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("2 (60s ago)"),
                json!("3m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
        let terminating = json!({
            "metadata": {"name": "x", "deletionTimestamp": "2023-11-14T22:13:00Z"},
            "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}
        });
        assert_eq!(row("Pod", terminating)[2], json!("Terminating"));
        assert_eq!(
            row("Pod", json!({"spec": {"containers": [{}]}}))[2],
            json!("Pending")
        );
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
        let restarted = pod(
            json!({"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 3, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "1970-01-01T00:00:10Z"}}}]}),
        );
        assert_eq!(pod_summary(&restarted, 70).restarts, "3 (60s ago)");
        let mut lost = pod(json!({"phase": "Running", "reason": "NodeLost"}));
        lost["metadata"] = json!({"deletionTimestamp": "2024-01-01T00:00:00Z"});
        assert_eq!(pod_summary(&lost, 0).status, "Unknown");
    }

    #[test]
    fn workload_selectors_become_label_selectors() {
        let deploy = json!({"spec": {"selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}}});
        assert_eq!(selector_of(&deploy), "app=web,tier in (a,b)");
        let only_expressions = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["x"]},
            {"key": "canary", "operator": "DoesNotExist"}]}}});
        assert_eq!(selector_of(&only_expressions), "tier notin (x),!canary");
        let svc = json!({"spec": {"selector": {"app": "web", "x": "y"}}});
        assert_eq!(selector_of(&svc), "app=web,x=y");
        assert_eq!(selector_of(&json!({"spec": {}})), "");
    }

    #[test]
    fn workload_service_and_node_rows() {
        let deploy = json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            row("Deployment", deploy),
            vec![
                json!("d"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("<unknown>"),
                json!("c"),
                json!("nginx"),
                json!("app=d")
            ]
        );
        let rc = json!({"metadata": {"name": "r"}, "spec": {"selector": {"app": "r"}}});
        assert_eq!(row("ReplicationController", rc)[7], json!("app=r"));
        let svc = json!({
            "metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.7", "selector": {"app": "s"},
                     "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}
        });
        let node_port =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert_eq!(row("Service", node_port)[3], json!("<none>"));
        assert_eq!(
            row("Service", svc)[1..5],
            [
                json!("LoadBalancer"),
                json!("127.96.0.7"),
                json!("<pending>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        let node = json!({
            "metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0-minik"},
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}
        });
        assert_eq!(
            row("Node", node)[..6],
            [
                json!("n"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane"),
                json!("<unknown>"),
                json!("v1.33.0-minik"),
                json!("127.0.0.1")
            ]
        );
    }

    #[test]
    fn endpoints_events_and_quotas() {
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{
            "addresses": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}, {"ip": "3.3.3.3"}, {"ip": "4.4.4.4"}],
            "ports": [{"port": 80}]}]});
        assert_eq!(
            row("Endpoints", ep)[1],
            json!("1.1.1.1:80,2.2.2.2:80,3.3.3.3:80 + 1 more...")
        );
        // Port-major, as Kubernetes lists them; a subset without ports lists bare addresses.
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "9.9.9.9"}]}]});
        assert_eq!(
            row("Endpoints", ep)[1],
            json!("1.1.1.1:80,2.2.2.2:80,1.1.1.1:443 + 2 more...")
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "9.9.9.9"}]}]});
        assert_eq!(row("Endpoints", headless)[1], json!("9.9.9.9"));
        let ev = json!({
            "metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "count": 3,
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": " back-off \n",
            "firstTimestamp": "2023-11-14T22:03:20Z", "lastTimestamp": "2023-11-14T22:13:00Z",
            "source": {"component": "kubelet", "host": "n1"}
        });
        assert_eq!(
            row("Event", ev),
            vec![
                json!("20s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!(""),
                json!("kubelet, n1"),
                json!("back-off"),
                json!("10m"),
                json!(3),
                json!("web.1")
            ]
        );
        let quota = json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "10", "limits.cpu": "2"}},
            "status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "1"}}});
        assert_eq!(
            row("ResourceQuota", quota)[2..],
            [json!("pods: 1/10"), json!("limits.cpu: 0/2")]
        );
    }
}
