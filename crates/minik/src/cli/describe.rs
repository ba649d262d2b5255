//! `describe`: one object in kubectl's layout — metadata, a summary of its spec and status,
//! conditions, and its recent events with their age and count.

use std::fmt::Write;
use std::process::ExitCode;

use minik_api::resources::ResourceInfo;
use minik_client::{Api, ListParams};
use serde_json::Value;

use super::printers::{
    arr, event_time, labels_string, n, node_roles, or_none, pod_summary, s, selector_of, string_map,
};
use super::tabwriter::align;
use super::{parse_targets, CliError, CliResult, Client, ClientFlags};
use minik_api::time::{age, parse, rfc1123};

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
        if objects.is_empty() && names.is_empty() {
            match client.ns_for(info) {
                Some(ns) => eprintln!("No resources found in {ns} namespace."),
                None => eprintln!("No resources found"),
            }
        }
        for object in objects {
            let events = events_of(&client, info, &object).await;
            let related = related_of(&client, info, &object).await;
            if !first {
                println!("\n");
            }
            first = false;
            let text = describe(info, &object, &related, &events, super::time::now());
            print!("{text}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `describe` shows beside an object: a Deployment's ReplicaSets, or the pods of a
/// ReplicaSet or ReplicationController (those it controls). None when they cannot be listed.
async fn related_of(client: &Client, info: &ResourceInfo, object: &Value) -> Vec<Value> {
    let kind = match info.kind {
        "Deployment" => "replicasets",
        "ReplicaSet" | "ReplicationController" => "pods",
        _ => return Vec::new(),
    };
    let Ok(related) = super::resource(kind) else {
        return Vec::new();
    };
    let uid = s(object, "/metadata/uid");
    client
        .api
        .list(related, client.ns_for(related), &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            arr(r, "/metadata/ownerReferences")
                .iter()
                .any(|o| s(o, "/uid") == uid && o.get("controller") == Some(&Value::Bool(true)))
        })
        .collect()
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
    items.sort_by_key(|e| parse(event_time(e)));
    items
}

/// The text of `describe` for one object, at `now`; `related` is what [`related_of`] found.
pub fn describe(
    info: &ResourceInfo,
    obj: &Value,
    related: &[Value],
    events: &[Value],
    now: i64,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "Name:\t{}", s(obj, "/metadata/name"));
    if info.namespaced {
        let _ = writeln!(w, "Namespace:\t{}", s(obj, "/metadata/namespace"));
    }
    match info.kind {
        "Pod" => pod(w, obj, now),
        "Deployment" => deployment(w, obj, related),
        "ReplicaSet" | "ReplicationController" => replica_set(w, obj, related),
        "Node" => node(w, obj),
        "Service" => service(w, obj),
        "ConfigMap" => config_map(w, obj),
        "Secret" => secret(w, obj),
        "PersistentVolume" => persistent_volume(w, obj, now),
        "PersistentVolumeClaim" => persistent_volume_claim(w, obj, now),
        "StorageClass" => storage_class(w, obj),
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

/// A ConfigMap's keys with their values, as kubectl shows them (binary values by size only).
fn config_map(w: &mut String, obj: &Value) {
    map_lines(w, "Labels", obj.pointer("/metadata/labels"));
    map_lines(w, "Annotations", obj.pointer("/metadata/annotations"));
    let _ = writeln!(w, "\nData\n====");
    for (key, value) in obj
        .pointer("/data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(w, "{key}:\n----\n{}\n", value.as_str().unwrap_or_default());
    }
    let _ = writeln!(w, "\nBinaryData\n====");
    for (key, value) in obj
        .pointer("/binaryData")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            w,
            "{key}:\t{} bytes",
            base64_len(value.as_str().unwrap_or_default())
        );
    }
}

/// A Secret's type and the size of each key, never the values (kubectl's describer).
fn secret(w: &mut String, obj: &Value) {
    map_lines(w, "Labels", obj.pointer("/metadata/labels"));
    map_lines(w, "Annotations", obj.pointer("/metadata/annotations"));
    let _ = writeln!(w, "\nType:\t{}", s(obj, "/type"));
    let _ = writeln!(w, "\nData\n====");
    for (key, value) in obj
        .pointer("/data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            w,
            "{key}:\t{} bytes",
            base64_len(value.as_str().unwrap_or_default())
        );
    }
}

/// How many bytes a base64 text decodes to, without decoding it.
fn base64_len(text: &str) -> usize {
    let text = text.trim_end_matches('=');
    text.len() * 3 / 4
}

fn map_lines(w: &mut String, title: &str, map: Option<&Value>) {
    let mut entries = string_map(map);
    entries.remove(minik_api::wellknown::ANNOTATION_LAST_APPLIED);
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
        let sep = if title.trim() == "Annotations" {
            ": "
        } else {
            "="
        };
        let _ = writeln!(w, "{label}\t{k}{sep}{v}");
    }
}

fn meta(w: &mut String, obj: &Value) {
    map_lines(w, "Labels", obj.pointer("/metadata/labels"));
    map_lines(w, "Annotations", obj.pointer("/metadata/annotations"));
    if let Some(t) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse)
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
        .and_then(parse)
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
            age(s(pod, "/metadata/deletionTimestamp"), now)
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
    controlled_by(w, pod);
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
            container(w, "  ", c, Some(&status));
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
    let _ = writeln!(w, "Node-Selectors:\t{}", or_none(&node_selector));
    list_lines(w, "Tolerations", &tolerations(pod));
}

/// A pod spec's tolerations as kubectl lists them: `key=value:Effect op=Exists for 300s`.
fn tolerations(obj: &Value) -> Vec<String> {
    arr(obj, "/spec/tolerations")
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
        .collect()
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
            .and_then(parse)
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

/// A container, with its state when `status` is given (a pod's) and without for templates;
/// `indent` goes before the name line.
fn container(w: &mut String, indent: &str, c: &Value, status: Option<&Value>) {
    let _ = writeln!(w, "{indent}{}:", s(c, "/name"));
    if let Some(status) = status.filter(|st| !s(st, "/containerID").is_empty()) {
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
    if let Some(status) = status {
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
    }
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

fn creation_timestamp(w: &mut String, obj: &Value) {
    if let Some(t) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse)
    {
        let _ = writeln!(w, "CreationTimestamp:\t{}", rfc1123(t));
    }
}

/// An int-or-percent field (`maxSurge`) as written, or kubectl's default.
fn int_or_percent(obj: &Value, pointer: &str, default: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(t)) => t.clone(),
        _ => default.to_owned(),
    }
}

/// `web-7d9c (3/3 replicas created)`, as kubectl lists a Deployment's ReplicaSets.
fn replica_sets_line(sets: &[&Value]) -> String {
    let names: Vec<String> = sets
        .iter()
        .map(|rs| {
            format!(
                "{} ({}/{} replicas created)",
                s(rs, "/metadata/name"),
                n(rs, "/status/replicas"),
                rs.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )
        })
        .collect();
    or_none(&names.join(", "))
}

/// A template without the `pod-template-hash` label, to find a Deployment's current ReplicaSet.
fn template_without_hash(obj: &Value) -> Value {
    let mut t = obj
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    t
}

/// kubectl's `DescribeDeployment`.
fn deployment(w: &mut String, obj: &Value, replica_sets: &[Value]) {
    creation_timestamp(w, obj);
    map_lines(w, "Labels", obj.pointer("/metadata/labels"));
    map_lines(w, "Annotations", obj.pointer("/metadata/annotations"));
    let _ = writeln!(w, "Selector:\t{}", or_none(&selector_of(obj)));
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let _ = writeln!(
        w,
        "Replicas:\t{desired} desired | {} updated | {} total | {} available | {} unavailable",
        n(obj, "/status/updatedReplicas"),
        n(obj, "/status/replicas"),
        n(obj, "/status/availableReplicas"),
        n(obj, "/status/unavailableReplicas"),
    );
    let strategy = match s(obj, "/spec/strategy/type") {
        "" => "RollingUpdate",
        t => t,
    };
    let _ = writeln!(w, "StrategyType:\t{strategy}");
    let _ = writeln!(w, "MinReadySeconds:\t{}", n(obj, "/spec/minReadySeconds"));
    if strategy == "RollingUpdate" {
        let _ = writeln!(
            w,
            "RollingUpdateStrategy:\t{} max unavailable, {} max surge",
            int_or_percent(obj, "/spec/strategy/rollingUpdate/maxUnavailable", "25%"),
            int_or_percent(obj, "/spec/strategy/rollingUpdate/maxSurge", "25%"),
        );
    }
    if let Some(template) = obj.pointer("/spec/template") {
        pod_template(w, template);
    }
    conditions_table(w, obj, &["Type", "Status", "Reason"]);
    let current = template_without_hash(obj);
    let (new, old): (Vec<&Value>, Vec<&Value>) = replica_sets
        .iter()
        .partition(|rs| template_without_hash(rs) == current);
    // kubectl lists the old ReplicaSets that still have replicas.
    let old: Vec<&Value> = old
        .into_iter()
        .filter(|rs| n(rs, "/spec/replicas") > 0)
        .collect();
    let _ = writeln!(w, "OldReplicaSets:\t{}", replica_sets_line(&old));
    let _ = writeln!(
        w,
        "NewReplicaSet:\t{}",
        replica_sets_line(&new[..new.len().min(1)])
    );
}

/// The `Controlled By:` line, for an object with a controller among its owners.
fn controlled_by(w: &mut String, obj: &Value) {
    if let Some(owner) = arr(obj, "/metadata/ownerReferences")
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
}

/// kubectl's `DescribeReplicaSet` (and `DescribeReplicationController`).
fn replica_set(w: &mut String, obj: &Value, pods: &[Value]) {
    let _ = writeln!(w, "Selector:\t{}", or_none(&selector_of(obj)));
    map_lines(w, "Labels", obj.pointer("/metadata/labels"));
    map_lines(w, "Annotations", obj.pointer("/metadata/annotations"));
    controlled_by(w, obj);
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let _ = writeln!(
        w,
        "Replicas:\t{} current / {desired} desired",
        n(obj, "/status/replicas")
    );
    let phase_count = |phase: &str| {
        pods.iter()
            .filter(|p| s(p, "/status/phase") == phase)
            .count()
    };
    let _ = writeln!(
        w,
        "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed",
        phase_count("Running"),
        phase_count("Pending"),
        phase_count("Succeeded"),
        phase_count("Failed"),
    );
    if let Some(template) = obj.pointer("/spec/template") {
        pod_template(w, template);
    }
    conditions_table(w, obj, &["Type", "Status", "Reason"]);
}

/// A pod template as kubectl's `DescribePodTemplate` shows it (in `describe` of workloads and
/// in `rollout history --revision`).
pub fn pod_template(w: &mut String, template: &Value) {
    let _ = writeln!(w, "Pod Template:");
    map_lines(w, "  Labels", template.pointer("/metadata/labels"));
    if template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| !a.is_empty())
    {
        map_lines(
            w,
            "  Annotations",
            template.pointer("/metadata/annotations"),
        );
    }
    let sa = s(template, "/spec/serviceAccountName");
    if !sa.is_empty() {
        let _ = writeln!(w, "  Service Account:\t{sa}");
    }
    for (title, key) in [
        ("Init Containers", "/spec/initContainers"),
        ("Containers", "/spec/containers"),
    ] {
        let containers = arr(template, key);
        if containers.is_empty() && title == "Init Containers" {
            continue;
        }
        let _ = writeln!(w, "  {title}:");
        for c in containers {
            container(w, "   ", c, None);
        }
    }
    let volumes: Vec<String> = arr(template, "/spec/volumes")
        .iter()
        .map(|v| s(v, "/name").to_owned())
        .collect();
    list_lines(w, "  Volumes", &volumes);
    map_lines(
        w,
        "  Node-Selectors",
        template.pointer("/spec/nodeSelector"),
    );
    list_lines(w, "  Tolerations", &tolerations(template));
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
        or_none(&labels_string(svc.pointer("/spec/selector")))
    );
    let _ = writeln!(w, "Type:\t{}", s(svc, "/spec/type"));
    let _ = writeln!(w, "IP:\t{}", or_none(s(svc, "/spec/clusterIP")));
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
            Some(first) if count > 1 => format!("{last} (x{count} over {})", age(first, now)),
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

/// Go's `%v` of a list of strings: `[a b]`.
fn go_list(items: &[Value]) -> String {
    let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
    format!("[{}]", items.join(" "))
}

/// `Status:` of a volume or claim: its phase, or how long it has been terminating.
fn storage_status_line(w: &mut String, obj: &Value, now: i64) {
    match obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    {
        Some(since) => {
            let _ = writeln!(w, "Status:\tTerminating (lasts {})", age(since, now));
        }
        None => {
            let _ = writeln!(w, "Status:\t{}", s(obj, "/status/phase"));
        }
    }
}

/// A PersistentVolume as kubectl's describer shows it: class, phase, claim, policy, modes,
/// capacity, node affinity and source.
fn persistent_volume(w: &mut String, pv: &Value, now: i64) {
    use minik_api::kinds::persistent_volume::{access_modes, storage_class};
    map_lines(w, "Labels", pv.pointer("/metadata/labels"));
    map_lines(w, "Annotations", pv.pointer("/metadata/annotations"));
    let _ = writeln!(
        w,
        "Finalizers:\t{}",
        go_list(arr(pv, "/metadata/finalizers"))
    );
    let _ = writeln!(w, "StorageClass:\t{}", storage_class(pv));
    storage_status_line(w, pv, now);
    let claim = match pv.pointer("/spec/claimRef") {
        Some(c) if c.is_object() => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
        _ => String::new(),
    };
    let _ = writeln!(w, "Claim:\t{claim}");
    let _ = writeln!(
        w,
        "Reclaim Policy:\t{}",
        s(pv, "/spec/persistentVolumeReclaimPolicy")
    );
    let _ = writeln!(
        w,
        "Access Modes:\t{}",
        access_modes(arr(pv, "/spec/accessModes"))
    );
    if let Some(mode) = pv.pointer("/spec/volumeMode").and_then(Value::as_str) {
        let _ = writeln!(w, "VolumeMode:\t{mode}");
    }
    let capacity = match s(pv, "/spec/capacity/storage") {
        "" => "0",
        q => q,
    };
    let _ = writeln!(w, "Capacity:\t{capacity}");
    volume_node_affinity(w, pv.pointer("/spec/nodeAffinity/required"));
    let _ = writeln!(w, "Message:\t{}", s(pv, "/status/message"));
    let _ = writeln!(w, "Source:");
    volume_source(w, pv.get("spec").unwrap_or(&Value::Null));
}

/// `Node Affinity:` with each required term's expressions (`key in [a, b]`), as kubectl
/// prints a volume's node affinity.
fn volume_node_affinity(w: &mut String, required: Option<&Value>) {
    let Some(required) = required.filter(|r| r.is_object()) else {
        let _ = writeln!(w, "Node Affinity:\t<none>");
        return;
    };
    let _ = writeln!(w, "Node Affinity:\t");
    let terms = arr(required, "/nodeSelectorTerms");
    if terms.is_empty() {
        let _ = writeln!(w, "  Required Terms:\t<none>");
        return;
    }
    let _ = writeln!(w, "  Required Terms:\t");
    for (i, term) in terms.iter().enumerate() {
        let _ = write!(w, "    Term {i}:\t");
        let exprs = arr(term, "/matchExpressions");
        if exprs.is_empty() {
            let _ = writeln!(w, "<none>");
            continue;
        }
        for (j, e) in exprs.iter().enumerate() {
            if j > 0 {
                let _ = write!(w, "    \t");
            }
            let mut text = format!(
                "{} {}",
                s(e, "/key"),
                s(e, "/operator").to_ascii_lowercase()
            );
            let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
            if !values.is_empty() {
                let _ = write!(text, " [{}]", values.join(", "));
            }
            let _ = writeln!(w, "{text}");
        }
    }
}

/// The `Source:` section of a volume: kubectl's wording for the sources minik knows, and the
/// plain fields of any other.
fn volume_source(w: &mut String, spec: &Value) {
    let field = |v: &Value, key: &str| -> String {
        match v.get(key) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let read_only = |v: &Value| v.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
    if let Some(h) = spec.get("hostPath") {
        let kind = match h.get("type").and_then(Value::as_str) {
            Some(t) => t.to_owned(),
            None => "<none>".to_owned(),
        };
        let _ = writeln!(w, "    Type:\tHostPath (bare host directory volume)");
        let _ = writeln!(w, "    Path:\t{}", field(h, "path"));
        let _ = writeln!(w, "    HostPathType:\t{kind}");
    } else if let Some(l) = spec.get("local") {
        let _ = writeln!(
            w,
            "    Type:\tLocalVolume (a persistent volume backed by local storage on a node)"
        );
        let _ = writeln!(w, "    Path:\t{}", field(l, "path"));
    } else if let Some(nfs) = spec.get("nfs") {
        let _ = writeln!(
            w,
            "    Type:\tNFS (an NFS mount that lasts the lifetime of a pod)"
        );
        let _ = writeln!(w, "    Server:\t{}", field(nfs, "server"));
        let _ = writeln!(w, "    Path:\t{}", field(nfs, "path"));
        let _ = writeln!(w, "    ReadOnly:\t{}", read_only(nfs));
    } else if let Some(csi) = spec.get("csi") {
        let _ = writeln!(
            w,
            "    Type:\tCSI (a Container Storage Interface (CSI) volume source)"
        );
        let _ = writeln!(w, "    Driver:\t{}", field(csi, "driver"));
        let _ = writeln!(w, "    FSType:\t{}", field(csi, "fsType"));
        let _ = writeln!(w, "    VolumeHandle:\t{}", field(csi, "volumeHandle"));
        let _ = writeln!(w, "    ReadOnly:\t{}", read_only(csi));
        let attributes = string_map(csi.get("volumeAttributes"));
        if attributes.is_empty() {
            let _ = writeln!(w, "    VolumeAttributes:\t<none>");
        }
        for (i, (k, v)) in attributes.iter().enumerate() {
            let lead = if i == 0 {
                "    VolumeAttributes:"
            } else {
                "        "
            };
            let _ = writeln!(w, "{lead}\t{k}={v}");
        }
    } else {
        const NOT_SOURCE: &[&str] = &[
            "accessModes",
            "capacity",
            "claimRef",
            "mountOptions",
            "nodeAffinity",
            "persistentVolumeReclaimPolicy",
            "storageClassName",
            "volumeAttributesClassName",
            "volumeMode",
        ];
        let source = spec
            .as_object()
            .into_iter()
            .flatten()
            .find(|(k, _)| !NOT_SOURCE.contains(&k.as_str()));
        if let Some((kind, source)) = source {
            let _ = writeln!(w, "    Type:\t{kind}");
            for (k, v) in source.as_object().into_iter().flatten() {
                if !v.is_object() && !v.is_array() {
                    let mut title = k.clone();
                    title[..1].make_ascii_uppercase();
                    let _ = writeln!(w, "    {title}:\t{}", field(source, k));
                }
            }
        }
    }
}

/// A PersistentVolumeClaim as kubectl's describer shows it (without the pods using it): class,
/// phase, volume, and the bound volume's capacity and access modes.
fn persistent_volume_claim(w: &mut String, pvc: &Value, now: i64) {
    use minik_api::kinds::persistent_volume::{access_modes, storage_class};
    let _ = writeln!(w, "StorageClass:\t{}", storage_class(pvc));
    storage_status_line(w, pvc, now);
    let volume = s(pvc, "/spec/volumeName");
    let _ = writeln!(w, "Volume:\t{volume}");
    map_lines(w, "Labels", pvc.pointer("/metadata/labels"));
    map_lines(w, "Annotations", pvc.pointer("/metadata/annotations"));
    let _ = writeln!(
        w,
        "Finalizers:\t{}",
        go_list(arr(pvc, "/metadata/finalizers"))
    );
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = match s(pvc, "/status/capacity/storage") {
            "" => "0".to_owned(),
            q => q.to_owned(),
        };
        (capacity, access_modes(arr(pvc, "/status/accessModes")))
    };
    let _ = writeln!(w, "Capacity:\t{capacity}");
    let _ = writeln!(w, "Access Modes:\t{modes}");
    if let Some(mode) = pvc.pointer("/spec/volumeMode").and_then(Value::as_str) {
        let _ = writeln!(w, "VolumeMode:\t{mode}");
    }
    let conditions = arr(pvc, "/status/conditions");
    if !conditions.is_empty() {
        // Go's zero time, which kubectl prints for a time that is not set.
        const ZERO_TIME: &str = "Mon, 01 Jan 0001 00:00:00 +0000";
        let time = |c: &Value, key: &str| {
            c.get(key)
                .and_then(Value::as_str)
                .and_then(parse)
                .map_or_else(|| ZERO_TIME.to_owned(), rfc1123)
        };
        let _ = writeln!(w, "Conditions:");
        let _ = writeln!(
            w,
            "  Type\tStatus\tLastProbeTime\tLastTransitionTime\tReason\tMessage"
        );
        let _ = writeln!(
            w,
            "  ----\t------\t-----------------\t------------------\t------\t-------"
        );
        for c in conditions {
            let _ = writeln!(
                w,
                "  {} \t{} \t{} \t{} \t{} \t{}",
                s(c, "/type"),
                s(c, "/status"),
                time(c, "lastProbeTime"),
                time(c, "lastTransitionTime"),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
}

/// A StorageClass as kubectl's describer shows it: whether it is the default, its provisioner
/// and parameters, and how its volumes are made.
fn storage_class(w: &mut String, sc: &Value) {
    let default = if minik_api::kinds::storage_class::is_default(sc) {
        "Yes"
    } else {
        "No"
    };
    let _ = writeln!(w, "IsDefaultClass:\t{default}");
    let _ = writeln!(
        w,
        "Annotations:\t{}",
        or_none(&labels_string(sc.pointer("/metadata/annotations")))
    );
    let _ = writeln!(w, "Provisioner:\t{}", s(sc, "/provisioner"));
    let _ = writeln!(
        w,
        "Parameters:\t{}",
        or_none(&labels_string(sc.get("parameters")))
    );
    let expansion = match sc.get("allowVolumeExpansion").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let _ = writeln!(w, "AllowVolumeExpansion:\t{expansion}");
    let options = arr(sc, "/mountOptions");
    if options.is_empty() {
        let _ = writeln!(w, "MountOptions:\t<none>");
    } else {
        let _ = writeln!(w, "MountOptions:");
        for o in options {
            let _ = writeln!(w, "  {}", o.as_str().unwrap_or_default());
        }
    }
    if let Some(policy) = sc.get("reclaimPolicy").and_then(Value::as_str) {
        let _ = writeln!(w, "ReclaimPolicy:\t{policy}");
    }
    if let Some(mode) = sc.get("volumeBindingMode").and_then(Value::as_str) {
        let _ = writeln!(w, "VolumeBindingMode:\t{mode}");
    }
    if let Some(topologies) = sc.get("allowedTopologies").and_then(Value::as_array) {
        if topologies.is_empty() {
            let _ = writeln!(w, "AllowedTopologies:\t<none>");
        } else {
            let _ = writeln!(w, "AllowedTopologies:\t");
        }
        for (i, term) in topologies.iter().enumerate() {
            let _ = write!(w, "  Term {i}:\t");
            let exprs = arr(term, "/matchLabelExpressions");
            if exprs.is_empty() {
                let _ = writeln!(w, "<none>");
            }
            for (j, e) in exprs.iter().enumerate() {
                if j > 0 {
                    let _ = write!(w, "  \t");
                }
                let values: Vec<&str> =
                    arr(e, "/values").iter().filter_map(Value::as_str).collect();
                let _ = writeln!(w, "{} in [{}]", s(e, "/key"), values.join(", "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_described_by_size_only() {
        let info = minik_api::resources::by_user_name("secret").unwrap();
        let obj = json!({"metadata": {"name": "db", "namespace": "default"}, "type": "Opaque",
            "data": {"password": "aHVudGVyMg==", "user": "cm9vdA=="}});
        let text = describe(info, &obj, &[], &[], 0);
        assert!(text.contains("Type:") && text.contains("Opaque"), "{text}");
        assert!(text.contains("password:  7 bytes"), "{text}");
        assert!(text.contains("user:      4 bytes"), "{text}");
        assert!(
            !text.contains("aHVudGVyMg") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn config_maps_show_their_data() {
        let info = minik_api::resources::by_user_name("cm").unwrap();
        let obj = json!({"metadata": {"name": "game", "namespace": "default"},
            "data": {"lives": "3"}, "binaryData": {"logo": "AAEC"}});
        let text = describe(info, &obj, &[], &[], 0);
        assert!(text.contains("lives:\n----\n3\n"), "{text}");
        assert!(text.contains("logo:") && text.contains("3 bytes"), "{text}");
    }

    #[test]
    fn base64_lengths() {
        for (text, n) in [
            ("", 0),
            ("YQ==", 1),
            ("YWI=", 2),
            ("YWJj", 3),
            ("YWJjZA==", 4),
        ] {
            assert_eq!(base64_len(text), n, "{text}");
        }
    }
    #[test]
    fn persistent_volumes_read_like_kubectl() {
        let info = minik_api::resources::by_user_name("pv").unwrap();
        let obj = json!({"metadata": {"name": "pv1", "finalizers": ["kubernetes.io/pv-protection"]},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                     "volumeMode": "Filesystem", "claimRef": {"namespace": "default", "name": "data"},
                     "local": {"path": "/mnt/disk"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1", "n2"]},
                         {"key": "disk", "operator": "Exists"}]}]}}},
            "status": {"phase": "Bound"}});
        let text = describe(info, &obj, &[], &[], 0);
        let want = "\
Name:              pv1
Labels:            <none>
Annotations:       <none>
Finalizers:        [kubernetes.io/pv-protection]
StorageClass:      local
Status:            Bound
Claim:             default/data
Reclaim Policy:    Retain
Access Modes:      RWO
VolumeMode:        Filesystem
Capacity:          5Gi
Node Affinity:
  Required Terms:
    Term 0:        kubernetes.io/hostname in [n1, n2]
                   disk exists
Message:
Source:
    Type:  LocalVolume (a persistent volume backed by local storage on a node)
    Path:  /mnt/disk
Events:    <none>
";
        assert_eq!(text, want);

        let host = json!({"metadata": {"name": "pv2", "deletionTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"hostPath": {"path": "/srv", "type": ""}}});
        let text = describe(info, &host, &[], &[], 90);
        assert!(
            text.contains("Status:          Terminating (lasts 90s)"),
            "{text}"
        );
        assert!(text.contains("Node Affinity:   <none>"), "{text}");
        assert!(text.contains("Capacity:        0\n"), "{text}");
        assert!(
            text.contains("Type:          HostPath (bare host directory volume)"),
            "{text}"
        );
        assert!(text.contains("HostPathType:\n"), "{text}");
        let rbd = json!({"metadata": {"name": "pv3"}, "spec": {"rbd": {"image": "foo", "monitors": ["m"]}}});
        let text = describe(info, &rbd, &[], &[], 0);
        assert!(text.contains("Type:   rbd\n    Image:  foo\n"), "{text}");
    }

    #[test]
    fn persistent_volume_claims_read_like_kubectl() {
        let info = minik_api::resources::by_user_name("pvc").unwrap();
        let obj = json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "standard", "volumeMode": "Filesystem", "volumeName": "pv1"},
            "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                       "conditions": [{"type": "Resizing", "status": "True",
                                       "lastTransitionTime": "2023-11-14T22:13:20Z"}]}});
        let text = describe(info, &obj, &[], &[], 0);
        let want = "\
Name:          data
Namespace:     default
StorageClass:  standard
Status:        Bound
Volume:        pv1
Labels:        <none>
Annotations:   <none>
Finalizers:    []
Capacity:      5Gi
Access Modes:  RWO,ROX
VolumeMode:    Filesystem
Conditions:
  Type       Status  LastProbeTime                     LastTransitionTime                Reason  Message
  ----       ------  -----------------                 ------------------                ------  -------
  Resizing   True    Mon, 01 Jan 0001 00:00:00 +0000   Tue, 14 Nov 2023 22:13:20 +0000
Events:      <none>
";
        assert_eq!(text, want);
        let pending = json!({"metadata": {"name": "d", "namespace": "default"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        let text = describe(info, &pending, &[], &[], 0);
        assert!(
            text.contains("Capacity:      \n") || text.contains("Capacity:\n"),
            "{text}"
        );
        assert!(text.contains("Status:        Pending"), "{text}");
    }

    #[test]
    fn storage_classes_read_like_kubectl() {
        let info = minik_api::resources::by_user_name("sc").unwrap();
        let obj = json!({"metadata": {"name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "minik.io/hostpath", "parameters": {"b": "2", "a": "1"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["a", "b"]}]}]});
        let text = describe(info, &obj, &[], &[], 0);
        let want = "\
Name:                  standard
IsDefaultClass:        Yes
Annotations:           storageclass.kubernetes.io/is-default-class=true
Provisioner:           minik.io/hostpath
Parameters:            a=1,b=2
AllowVolumeExpansion:  <unset>
MountOptions:          <none>
ReclaimPolicy:         Delete
VolumeBindingMode:     WaitForFirstConsumer
AllowedTopologies:
  Term 0:              zone in [a, b]
Events:                <none>
";
        assert_eq!(text, want);
    }
}
