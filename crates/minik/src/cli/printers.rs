//! What `get` prints: the table columns Kubernetes defines for each kind (computed by
//! `minik_api::printers`, the same code behind the API server's `Table` answers) laid out as
//! kubectl lays them out, and YAML, JSON and name output.

use minik_api::printers::Column;
use minik_api::resources::ResourceInfo;
use serde_json::Value;

pub(crate) use minik_api::printers::{
    arr, event_time, labels_string, n, node_roles, or_none, pod_summary, s, selector_of, string_map,
};

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

/// Whether a column prints: all of them with `-o wide`, else those of priority 0.
fn shown(column: &Column, opts: TableOptions) -> bool {
    opts.wide || column.priority == 0
}

/// The header cells of a kind's table: Kubernetes' column names upper-cased, as kubectl prints.
pub fn headers(info: &ResourceInfo, opts: TableOptions) -> Vec<String> {
    let mut h: Vec<String> = info
        .columns()
        .iter()
        .filter(|c| shown(c, opts))
        .map(|c| c.name.to_uppercase())
        .collect();
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
    let mut r: Vec<String> = info
        .columns()
        .iter()
        .zip(info.cells(obj, now))
        .filter(|(c, _)| shown(c, opts))
        .map(|(c, cell)| match cell {
            // kubectl prefixes the name column with the kind when several kinds print; a kind
            // whose only name column is a wide one (Event) keeps its cells.
            _ if opts.with_kind && c.format == "name" && c.priority == 0 => {
                super::kind_slash_name(info, s(obj, "/metadata/name"))
            }
            Value::String(text) => text,
            other => other.to_string(),
        })
        .collect();
    if opts.show_labels {
        r.push(or_none(&labels_string(obj.pointer("/metadata/labels"))));
    }
    if opts.with_namespace {
        r.insert(0, s(obj, "/metadata/namespace").to_owned());
    }
    r
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

pub use minik_api::yaml::to_yaml;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(plural: &str, group: &str) -> &'static ResourceInfo {
        minik_api::resources::by_plural(group, "v1", plural).unwrap()
    }

    #[test]
    fn tables_use_kubernetes_columns_as_kubectl_prints_them() {
        let deploy = info("deployments", "apps");
        let obj = json!({
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                         "creationTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchExpressions": [
                         {"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                     "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let narrow = TableOptions::default();
        assert_eq!(
            headers(deploy, narrow),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        );
        assert_eq!(
            row(deploy, &obj, narrow, 65),
            ["web", "2/3", "3", "2", "65s"]
        );
        let all = TableOptions {
            wide: true,
            show_labels: true,
            with_namespace: true,
            with_kind: true,
            no_headers: false,
        };
        assert_eq!(
            headers(deploy, all),
            [
                "NAMESPACE",
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
                "LABELS"
            ]
        );
        assert_eq!(
            row(deploy, &obj, all, 65),
            [
                "prod",
                "deployment.apps/web",
                "2/3",
                "3",
                "2",
                "65s",
                "c",
                "nginx",
                "tier in (a,b)",
                "app=web"
            ]
        );
        // An event's only name column is a wide one: no kind prefix, and MESSAGE sits after
        // SOURCE in the wide table.
        let events = info("events", "");
        let ev = json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Pulled",
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": "done",
            "lastTimestamp": "1970-01-01T00:00:05Z", "count": 2});
        let kinds = TableOptions {
            with_kind: true,
            ..narrow
        };
        assert_eq!(
            row(events, &ev, kinds, 65),
            ["60s", "Normal", "Pulled", "pod/web", "done"]
        );
        assert_eq!(
            headers(
                events,
                TableOptions {
                    wide: true,
                    ..narrow
                }
            )[4..],
            [
                "SUBOBJECT",
                "SOURCE",
                "MESSAGE",
                "FIRST SEEN",
                "COUNT",
                "NAME"
            ]
        );
    }
}
