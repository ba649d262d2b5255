//! YAML as kubectl prints it, for the CLI's `-o yaml` and the API server's
//! `Accept: application/yaml` answers alike.
//!
//! Written here rather than with serde_yaml's serializer because serde_yaml follows YAML 1.2
//! and leaves `yes`, `on`, `y` and the like unquoted, which YAML 1.1 readers (kubectl's among
//! them) take for booleans. Parsing stays on serde_yaml 0.9 (`decode`): it is deprecated
//! upstream but complete and unchanging, its libyaml core is what the pre-scan of `decode` is
//! checked against, and a maintained fork would buy nothing minik uses today.

use serde_json::Value;

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
        let back = crate::decode::parse_document(yaml.as_bytes()).expect("reads back");
        assert_eq!(back, v, "{yaml}");
        // Strings that YAML 1.1 readers (kubectl's among them) take for other types are quoted.
        for word in [
            "yes", "no", "on", "off", "y", "n", "true", "null", "~", "1.0", "0x10", "1e3", "012",
            "1_000", "1:30", ".inf", "-.NaN", "0b11",
        ] {
            let yaml = to_yaml(&json!({ "a": word }));
            assert_ne!(yaml, format!("a: {word}\n"), "{word}");
            let back = crate::decode::parse_document(yaml.as_bytes()).expect("reads back");
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
}
