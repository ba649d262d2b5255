//! What `get` prints: the table columns Kubernetes defines for each kind (computed by
//! `minik_api::printers`, the same code behind the API server's `Table` answers) laid out as
//! kubectl lays them out, and YAML, JSON and name output.

use minik_api::printers::{cells, columns, Column};
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
    let mut h: Vec<String> = columns(info.kind)
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
    let mut r: Vec<String> = columns(info.kind)
        .iter()
        .zip(cells(info.kind, obj, now))
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
