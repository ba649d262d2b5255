//! `describe`: one object in kubectl's layout — metadata, a summary of its spec and status,
//! conditions, and its recent events with their age and count.

use std::fmt::Write;
use std::process::ExitCode;

use minik_api::resources::ResourceInfo;
use minik_client::{Api, ListParams};
use serde_json::Value;

use super::printers::{labels_string, node_roles, pod_summary, selector_string};
use super::tabwriter::align;
use super::time::{age, parse_rfc3339, rfc1123};
use super::{parse_targets, CliError, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND [NAME...] or KIND/NAME.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Label selector, when no name is given.
    #[arg(short = 'l', long)]
    selector: Option<String>,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

pub async fn run(args: DescribeArgs) -> CliResult<ExitCode> {
    let client = Client::new(&args.client)?;
    let targets = parse_targets(&args.targets)?;
    let mut failed = false;
    let mut first = true;
    for (info, names) in &targets.groups {
        let objects = if names.is_empty() {
            let params = ListParams {
                label_selector: args.selector.clone(),
                field_selector: None,
            };
            client
                .api
                .list(info, client.ns_for(info), &params)
                .await?
                .items
        } else {
            let mut objects = Vec::new();
            for name in names {
                match client.api.get(info, client.ns_for(info), name).await {
                    Ok(o) => objects.push(o),
                    Err(e) => {
                        eprintln!("{}", CliError::from(e));
                        failed = true;
                    }
                }
            }
            objects
        };
        for object in objects {
            let events = events_of(&client, info, &object).await;
            if !first {
                println!("\n");
            }
            first = false;
            print!("{}", describe(info, &object, &events, super::time::now()));
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The events about an object, oldest first; none when they cannot be listed (describe still
/// shows the object, as kubectl does).
async fn events_of(client: &Client, info: &ResourceInfo, object: &Value) -> Vec<Value> {
    let Ok(events) = super::resource("events") else {
        return Vec::new();
    };
    let name = s(object, "/metadata/name");
    let ns = s(object, "/metadata/namespace");
    let mut selector = format!(
        "involvedObject.name={name},involvedObject.kind={}",
        info.kind
    );
    if info.namespaced {
        selector.push_str(&format!(",involvedObject.namespace={ns}"));
    }
    let event_ns = if info.namespaced {
        Some(ns)
    } else {
        Some("default")
    };
    let mut items = client
        .api
        .list(events, event_ns, &ListParams::fields(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let uid = s(object, "/metadata/uid");
    items.retain(|e| {
        let event_uid = s(e, "/involvedObject/uid");
        event_uid.is_empty() || event_uid == uid
    });
    items.sort_by_key(|e| event_time(e).and_then(parse_rfc3339));
    items
}

fn event_time(ev: &Value) -> Option<&str> {
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

/// The text of `describe` for one object, at `now`.
pub fn describe(info: &ResourceInfo, obj: &Value, events: &[Value], now: i64) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "Name:\t{}", s(obj, "/metadata/name"));
    if info.namespaced {
        let _ = writeln!(w, "Namespace:\t{}", s(obj, "/metadata/namespace"));
    }
    match info.kind {
        "Pod" => pod(w, obj, now),
        "Deployment" | "ReplicaSet" | "ReplicationController" => workload(w, info, obj),
        "Node" => node(w, obj),
        "Service" => service(w, obj),
        _ => {
            meta(w, obj);
            if let Some(phase) = obj.pointer("/status/phase").and_then(Value::as_str) {
                let _ = writeln!(w, "Status:\t{phase}");
            }
        }
    }
    events_section(w, events, now);
    align(&out, 2)
}

fn map_lines(w: &mut String, title: &str, map: Option<&Value>) {
    let entries: Vec<(String, String)> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != super::apply::LAST_APPLIED)
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
        .unwrap_or_default();
    if entries.is_empty() {
        let _ = writeln!(w, "{title}:\t<none>");
        return;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        let label = if i == 0 {
            format!("{title}:")
        } else {
            String::new()
        };
        let sep = if title == "Annotations" { ": " } else { "=" };
        let _ = writeln!(w, "{label}\t{k}{sep}{v}");
    }
}

fn meta(w: &mut String, obj: &Value) {
    map_lines(w, "Labels", obj.pointer("/metadata/labels"));
    map_lines(w, "Annotations", obj.pointer("/metadata/annotations"));
    if let Some(t) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    {
        let _ = writeln!(w, "CreationTimestamp:\t{}", rfc1123(t));
    }
}

fn pod(w: &mut String, pod: &Value, now: i64) {
    let _ = writeln!(
        w,
        "Priority:\t{}",
        pod.pointer("/spec/priority")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    );
    let sa = match s(pod, "/spec/serviceAccountName") {
        "" => "default",
        sa => sa,
    };
    let _ = writeln!(w, "Service Account:\t{sa}");
    let node = s(pod, "/spec/nodeName");
    let node = match (node, s(pod, "/status/hostIP")) {
        ("", _) => "<none>".to_owned(),
        (n, "") => n.to_owned(),
        (n, ip) => format!("{n}/{ip}"),
    };
    let _ = writeln!(w, "Node:\t{node}");
    if let Some(t) = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    {
        let _ = writeln!(w, "Start Time:\t{}", rfc1123(t));
    }
    map_lines(w, "Labels", pod.pointer("/metadata/labels"));
    map_lines(w, "Annotations", pod.pointer("/metadata/annotations"));
    let summary = pod_summary(pod, now);
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        let _ = writeln!(
            w,
            "Status:\tTerminating (lasts {})",
            age(Some(s(pod, "/metadata/deletionTimestamp")), now)
        );
    } else {
        let phase = s(pod, "/status/phase");
        let _ = writeln!(
            w,
            "Status:\t{}",
            if phase.is_empty() {
                &summary.status
            } else {
                phase
            }
        );
    }
    for key in ["reason", "message"] {
        let v = s(pod, &format!("/status/{key}"));
        if !v.is_empty() {
            let mut k = key.to_owned();
            k[..1].make_ascii_uppercase();
            let _ = writeln!(w, "{k}:\t{v}");
        }
    }
    let _ = writeln!(w, "IP:\t{}", s(pod, "/status/podIP"));
    let ips = arr(pod, "/status/podIPs");
    if ips.is_empty() {
        let _ = writeln!(w, "IPs:\t<none>");
    } else {
        let _ = writeln!(w, "IPs:");
        for ip in ips {
            let _ = writeln!(w, "  IP:\t{}", s(ip, "/ip"));
        }
    }
    if let Some(owner) = arr(pod, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)))
    {
        let _ = writeln!(
            w,
            "Controlled By:\t{}/{}",
            s(owner, "/kind"),
            s(owner, "/name")
        );
    }
    for (title, spec_key, status_key) in [
        ("Init Containers", "initContainers", "initContainerStatuses"),
        ("Containers", "containers", "containerStatuses"),
    ] {
        let containers = arr(pod, &format!("/spec/{spec_key}"));
        if containers.is_empty() {
            continue;
        }
        let _ = writeln!(w, "{title}:");
        for c in containers {
            let name = s(c, "/name");
            let status = arr(pod, &format!("/status/{status_key}"))
                .iter()
                .find(|st| s(st, "/name") == name)
                .cloned()
                .unwrap_or(Value::Null);
            container(w, c, &status);
        }
    }
    let conditions = arr(pod, "/status/conditions");
    if !conditions.is_empty() {
        let _ = writeln!(w, "Conditions:");
        let _ = writeln!(w, "  Type\tStatus");
        for c in conditions {
            let _ = writeln!(w, "  {}\t{}", s(c, "/type"), s(c, "/status"));
        }
    }
    let node_selector = labels_string(pod.pointer("/spec/nodeSelector"));
    let _ = writeln!(w, "Node-Selectors:\t{}", or_none(node_selector));
    let tolerations: Vec<String> = arr(pod, "/spec/tolerations")
        .iter()
        .map(|t| {
            let mut text = s(t, "/key").to_owned();
            if !s(t, "/value").is_empty() {
                text.push_str(&format!("={}", s(t, "/value")));
            }
            if !s(t, "/effect").is_empty() {
                text.push_str(&format!(":{}", s(t, "/effect")));
            }
            if s(t, "/operator") == "Exists" && s(t, "/value").is_empty() {
                text.push_str(" op=Exists");
            }
            if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
                text.push_str(&format!(" for {secs}s"));
            }
            if text.is_empty() {
                "op=Exists".into()
            } else {
                text
            }
        })
        .collect();
    list_lines(w, "Tolerations", &tolerations);
}

fn list_lines(w: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(w, "{title}:\t<none>");
    }
    for (i, item) in items.iter().enumerate() {
        let label = if i == 0 {
            format!("{title}:")
        } else {
            String::new()
        };
        let _ = writeln!(w, "{label}\t{item}");
    }
}

fn state_lines(w: &mut String, title: &str, state: &Value) {
    let Some((kind, detail)) = state.as_object().and_then(|m| m.iter().next()) else {
        return;
    };
    let when = |key: &str| {
        detail
            .get(key)
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .map(rfc1123)
    };
    match kind.as_str() {
        "running" => {
            let _ = writeln!(w, "    {title}:\tRunning");
            if let Some(t) = when("startedAt") {
                let _ = writeln!(w, "      Started:\t{t}");
            }
        }
        "waiting" => {
            let _ = writeln!(w, "    {title}:\tWaiting");
            if !s(detail, "/reason").is_empty() {
                let _ = writeln!(w, "      Reason:\t{}", s(detail, "/reason"));
            }
            if !s(detail, "/message").is_empty() {
                let _ = writeln!(w, "      Message:\t{}", s(detail, "/message"));
            }
        }
        "terminated" => {
            let _ = writeln!(w, "    {title}:\tTerminated");
            if !s(detail, "/reason").is_empty() {
                let _ = writeln!(w, "      Reason:\t{}", s(detail, "/reason"));
            }
            if !s(detail, "/message").is_empty() {
                let _ = writeln!(w, "      Message:\t{}", s(detail, "/message"));
            }
            let _ = writeln!(
                w,
                "      Exit Code:\t{}",
                detail.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            );
            if let Some(t) = when("startedAt") {
                let _ = writeln!(w, "      Started:\t{t}");
            }
            if let Some(t) = when("finishedAt") {
                let _ = writeln!(w, "      Finished:\t{t}");
            }
        }
        _ => {}
    }
}

fn container(w: &mut String, c: &Value, status: &Value) {
    let _ = writeln!(w, "  {}:", s(c, "/name"));
    if !s(status, "/containerID").is_empty() {
        let _ = writeln!(w, "    Container ID:\t{}", s(status, "/containerID"));
    }
    let _ = writeln!(w, "    Image:\t{}", s(c, "/image"));
    let ports: Vec<String> = arr(c, "/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            format!(
                "{}/{proto}",
                p.get("containerPort").and_then(Value::as_i64).unwrap_or(0)
            )
        })
        .collect();
    if !ports.is_empty() {
        let _ = writeln!(w, "    Port:\t{}", ports.join(", "));
    }
    let command: Vec<&str> = arr(c, "/command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !command.is_empty() {
        let _ = writeln!(w, "    Command:");
        for part in command {
            let _ = writeln!(w, "      {part}");
        }
    }
    let args: Vec<&str> = arr(c, "/args").iter().filter_map(Value::as_str).collect();
    if !args.is_empty() {
        let _ = writeln!(w, "    Args:");
        for part in args {
            let _ = writeln!(w, "      {part}");
        }
    }
    if let Some(state) = status.get("state") {
        state_lines(w, "State", state);
    } else {
        let _ = writeln!(w, "    State:\tWaiting");
    }
    if let Some(last) = status
        .get("lastState")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        state_lines(w, "Last State", last);
    }
    let ready = if status.get("ready") == Some(&Value::Bool(true)) {
        "True"
    } else {
        "False"
    };
    let _ = writeln!(w, "    Ready:\t{ready}");
    let _ = writeln!(
        w,
        "    Restart Count:\t{}",
        status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    );
    let env: Vec<String> = arr(c, "/env")
        .iter()
        .map(|e| match e.get("valueFrom") {
            Some(from) => format!(
                "{}:\t({})",
                s(e, "/name"),
                from.get("fieldRef")
                    .map(|f| format!("{}:{}", s(f, "/apiVersion"), s(f, "/fieldPath")))
                    .unwrap_or_else(|| "from a source".into())
            ),
            None => format!("{}:\t{}", s(e, "/name"), s(e, "/value")),
        })
        .collect();
    if env.is_empty() {
        let _ = writeln!(w, "    Environment:\t<none>");
    } else {
        let _ = writeln!(w, "    Environment:");
        for e in env {
            let _ = writeln!(w, "      {e}");
        }
    }
}

fn workload(w: &mut String, info: &ResourceInfo, obj: &Value) {
    let selector = match obj.pointer("/spec/selector/matchLabels") {
        Some(m) => selector_string(obj.pointer("/spec/selector"), m),
        None => labels_string(obj.pointer("/spec/selector")),
    };
    let _ = writeln!(w, "Selector:\t{}", or_none(selector));
    meta(w, obj);
    let n = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if info.kind == "Deployment" {
        let total = n("/status/replicas");
        let _ = writeln!(
            w,
            "Replicas:\t{desired} desired | {} updated | {total} total | {} available | {} unavailable",
            n("/status/updatedReplicas"),
            n("/status/availableReplicas"),
            n("/status/unavailableReplicas"),
        );
        let strategy = match s(obj, "/spec/strategy/type") {
            "" => "RollingUpdate",
            t => t,
        };
        let _ = writeln!(w, "StrategyType:\t{strategy}");
        let _ = writeln!(w, "MinReadySeconds:\t{}", n("/spec/minReadySeconds"));
    } else {
        let _ = writeln!(
            w,
            "Replicas:\t{} current / {desired} desired",
            n("/status/replicas")
        );
    }
    let _ = writeln!(w, "Pod Template:");
    map_lines(w, "  Labels", obj.pointer("/spec/template/metadata/labels"));
    let _ = writeln!(w, "  Containers:");
    for c in arr(obj, "/spec/template/spec/containers") {
        let _ = writeln!(w, "   {}:", s(c, "/name"));
        let _ = writeln!(w, "    Image:\t{}", s(c, "/image"));
    }
    conditions_table(w, obj, &["Type", "Status", "Reason"]);
}

fn conditions_table(w: &mut String, obj: &Value, columns: &[&str]) {
    let conditions = arr(obj, "/status/conditions");
    if conditions.is_empty() {
        return;
    }
    let _ = writeln!(w, "Conditions:");
    let _ = writeln!(w, "  {}", columns.join("\t"));
    let dashes: Vec<String> = columns.iter().map(|c| "-".repeat(c.len())).collect();
    let _ = writeln!(w, "  {}", dashes.join("\t"));
    for c in conditions {
        let cells: Vec<&str> = columns
            .iter()
            .map(|col| {
                let mut key = col.replace(' ', "");
                key[..1].make_ascii_lowercase();
                c.get(&key).and_then(Value::as_str).unwrap_or_default()
            })
            .collect();
        let _ = writeln!(w, "  {}", cells.join("\t"));
    }
}

fn node(w: &mut String, node: &Value) {
    let _ = writeln!(w, "Roles:\t{}", node_roles(node));
    meta(w, node);
    let taints: Vec<String> = arr(node, "/spec/taints")
        .iter()
        .map(|t| {
            let value = if s(t, "/value").is_empty() {
                String::new()
            } else {
                format!("={}", s(t, "/value"))
            };
            format!("{}{value}:{}", s(t, "/key"), s(t, "/effect"))
        })
        .collect();
    list_lines(w, "Taints", &taints);
    let unschedulable = node.pointer("/spec/unschedulable") == Some(&Value::Bool(true));
    let _ = writeln!(w, "Unschedulable:\t{unschedulable}");
    conditions_table(w, node, &["Type", "Status", "Reason", "Message"]);
    let _ = writeln!(w, "Addresses:");
    for a in arr(node, "/status/addresses") {
        let _ = writeln!(w, "  {}:\t{}", s(a, "/type"), s(a, "/address"));
    }
    for (title, key) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        if let Some(m) = node
            .pointer(&format!("/status/{key}"))
            .and_then(Value::as_object)
        {
            let _ = writeln!(w, "{title}:");
            for (k, v) in m {
                let _ = writeln!(w, "  {k}:\t{}", v.as_str().unwrap_or_default());
            }
        }
    }
}

fn service(w: &mut String, svc: &Value) {
    meta(w, svc);
    let _ = writeln!(
        w,
        "Selector:\t{}",
        or_none(labels_string(svc.pointer("/spec/selector")))
    );
    let _ = writeln!(w, "Type:\t{}", s(svc, "/spec/type"));
    let _ = writeln!(w, "IP:\t{}", or_none(s(svc, "/spec/clusterIP").to_owned()));
    for p in arr(svc, "/spec/ports") {
        let name = if s(p, "/name").is_empty() {
            "<unset>"
        } else {
            s(p, "/name")
        };
        let proto = if s(p, "/protocol").is_empty() {
            "TCP"
        } else {
            s(p, "/protocol")
        };
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        let _ = writeln!(w, "Port:\t{name}\t{port}/{proto}");
        let target = match p.get("targetPort") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(t)) => t.clone(),
            _ => port.to_string(),
        };
        let _ = writeln!(w, "TargetPort:\t{target}/{proto}");
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
            let _ = writeln!(w, "NodePort:\t{name}\t{np}/{proto}");
        }
    }
}

fn events_section(w: &mut String, events: &[Value], now: i64) {
    if events.is_empty() {
        let _ = writeln!(w, "Events:\t<none>");
        return;
    }
    let _ = writeln!(w, "Events:");
    let _ = writeln!(w, "  Type\tReason\tAge\tFrom\tMessage");
    let _ = writeln!(w, "  ----\t------\t----\t----\t-------");
    for e in events {
        let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
        let last = age(event_time(e), now);
        let first = e
            .get("firstTimestamp")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        let when = match first {
            Some(first) if count > 1 => format!("{last} (x{count} over {})", age(Some(first), now)),
            _ => last,
        };
        let source = s(e, "/source/component");
        let source = if source.is_empty() {
            s(e, "/reportingComponent")
        } else {
            source
        };
        let _ = writeln!(
            w,
            "  {}\t{}\t{when}\t{source}\t{}",
            s(e, "/type"),
            s(e, "/reason"),
            s(e, "/message").trim()
        );
    }
}
