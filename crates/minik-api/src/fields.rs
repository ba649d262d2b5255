//! Field selectors (`?fieldSelector=spec.nodeName=node-1,status.phase!=Succeeded`): parsing with
//! Kubernetes' escapes, matching, and which fields each kind can be selected on, as Kubernetes'
//! `k8s.io/apimachinery/pkg/fields` and its per-kind field label conversion functions do.

use std::fmt;

use serde_json::Value;

/// How a field is compared with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One condition on one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

/// A conjunction of conditions on fields. The empty selector matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// Sorted by their printed text, as Kubernetes sorts the terms of a query.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `a=b`, `a==b` and `a!=b` terms separated by commas; empty terms are skipped, so
    /// the empty string selects everything. In a value, `\,`, `\=` and `\\` stand for `,`, `=`
    /// and `\`; any other backslash sequence, or a bare `,` or `=`, is an error. Spaces are part
    /// of names and values, as in Kubernetes.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for term in split_terms(s).into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw_value)) = split_term(term) else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                op,
                value: unescape_value(raw_value)?,
            });
        }
        // Kubernetes sorts the terms so that the printed form is canonical; sorting the
        // canonical text (not the raw one, where `==` and `=` differ) keeps that true for
        // every input.
        requirements.sort_by_cached_key(|r| r.to_string());
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The fields the selector looks at, in order, possibly repeated.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether an object matches, given a getter for its field values. The getter returns ""
    /// for an absent field, so `spec.nodeName=` selects pods not yet on a node.
    pub fn matches(&self, get: impl Fn(&str) -> String) -> bool {
        self.requirements.iter().all(|r| {
            let equal = get(&r.field) == r.value;
            match r.op {
                FieldOperator::Equals => equal,
                FieldOperator::NotEquals => !equal,
            }
        })
    }

    /// Whether an object of `kind`, in its JSON form, matches; see [`field_value`].
    pub fn matches_object(&self, kind: &str, obj: &Value) -> bool {
        self.matches(|field| field_value(kind, obj, field))
    }

    /// The value this selector requires `field` to equal, if it has such a requirement; lets a
    /// caller serve `metadata.name=x` or `spec.nodeName=n` from an index.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldRequirement {
    /// `field=value` or `field!=value`, with `\`, `,` and `=` in the value escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form, `a=b,c!=d`, requirements in the order kept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::selector::write_comma_separated(f, &self.requirements)
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Splits at commas that are not escaped with a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first operator, trying `!=` then `==` then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let operators = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (text, op) in operators {
            if let Some(value) = rest.strip_prefix(text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// Escapes `\`, `,` and `=` so a value can sit in a selector string.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_value`], with Kubernetes' errors for bad escapes and bare `,` or `=`.
pub fn unescape_value(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(other) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    ));
                }
                None => return Err("invalid field selector: invalid escape sequence: \\".into()),
            },
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {c}"
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];

const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

const NODE: &[&str] = &["metadata.name", "metadata.namespace", "spec.unschedulable"];

const EVENT: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const SECRET: &[&str] = &["metadata.name", "metadata.namespace", "type"];

const NAMESPACE: &[&str] = &["metadata.name", "metadata.namespace", "status.phase"];

const REPLICATED: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];

/// The fields a kind can be selected on (Kubernetes' field label conversion functions). Every
/// kind, including ones not listed here, has `metadata.name` and `metadata.namespace`.
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => POD,
        "Node" => NODE,
        "Event" => EVENT,
        "Namespace" => NAMESPACE,
        "Secret" => SECRET,
        "ReplicaSet" | "ReplicationController" => REPLICATED,
        _ => META,
    }
}

/// Refuses a selector on a field the kind does not support, with Kubernetes' message.
pub fn check_supported(kind: &str, sel: &FieldSelector) -> Result<(), String> {
    let supported = supported_fields(kind);
    match sel.fields().find(|f| !supported.contains(f)) {
        Some(field) => Err(format!("field label not supported: {field}")),
        None => Ok(()),
    }
}

/// The value of a selectable field of an object in its JSON form, rendered as Kubernetes
/// renders it for field selectors: "" when absent; booleans as `true`/`false`, with
/// `spec.hostNetwork` and `spec.unschedulable` `false` when absent; `status.replicas` as a
/// number, `0` when absent; an event's `source` is its `source.component`; a pod's
/// `status.podIP` falls back to the first of `status.podIPs`. Other dotted paths are read as
/// they are, so callers can also use this for fields outside [`supported_fields`].
pub fn field_value(kind: &str, obj: &Value, field: &str) -> String {
    match (kind, field) {
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => {
            let set = lookup(obj, field).and_then(Value::as_bool).unwrap_or(false);
            set.to_string()
        }
        ("ReplicaSet" | "ReplicationController", "status.replicas") => match lookup(obj, field) {
            Some(v) if !v.is_null() => render(v),
            _ => "0".to_owned(),
        },
        ("Event", "source") => lookup(obj, "source.component")
            .map(render)
            .unwrap_or_default(),
        ("Pod", "status.podIP") => {
            let ip = lookup(obj, field).map(render).unwrap_or_default();
            if !ip.is_empty() {
                return ip;
            }
            obj.pointer("/status/podIPs/0/ip")
                .map(render)
                .unwrap_or_default()
        }
        _ => lookup(obj, field).map(render).unwrap_or_default(),
    }
}

/// Follows a dotted path (`spec.nodeName`) through JSON objects.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, part| v.get(part))
}

/// A scalar as its selector text; null as ""; objects and arrays as compact JSON.
fn render(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn parses_to_canonical_form() {
        let cases = [
            ("", ""),
            (",", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("x=1,a=2", "a=2,x=1"),
            ("spec.nodeName=", "spec.nodeName="),
            ("a=b,,c=d,", "a=b,c=d"),
            (r"a=x\,y", r"a=x\,y"),
            (r"a=x\=y\\z", r"a=x\=y\\z"),
            ("a=b c", "a=b c"),
            ("a==c,a=b", "a=b,a=c"),
        ];
        for (input, canonical) in cases {
            let sel = parse(input);
            assert_eq!(sel.to_string(), canonical, "{input}");
            assert_eq!(parse(canonical), sel, "{input}");
        }
        let sel = parse(r"metadata.name=x\,y,status.phase!=Running");
        assert_eq!(
            sel.requirements,
            vec![
                FieldRequirement {
                    field: "metadata.name".into(),
                    op: FieldOperator::Equals,
                    value: "x,y".into()
                },
                FieldRequirement {
                    field: "status.phase".into(),
                    op: FieldOperator::NotEquals,
                    value: "Running".into()
                },
            ]
        );
        assert_eq!(
            sel.fields().collect::<Vec<_>>(),
            ["metadata.name", "status.phase"]
        );
        assert_eq!(sel.required_value("metadata.name"), Some("x,y"));
        assert_eq!(sel.required_value("status.phase"), None);
    }

    #[test]
    fn rejects_bad_selectors_like_kubernetes() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                r"a=b\n",
                r"invalid field selector: invalid escape sequence: \n",
            ),
            (
                r"a=b\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                "a=b!=c",
                "invalid field selector: unescaped character in value: =",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                FieldSelector::parse(input),
                Err(message.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn matches_objects_in_json_form() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}]}
        });
        let pending = json!({"metadata": {"name": "web-2", "namespace": "default"}, "spec": {}});
        let cases = [
            ("", true, true),
            ("spec.nodeName=node-1", true, false),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("status.phase!=Succeeded,status.phase!=Failed", true, true),
            (
                "metadata.name=web-1,metadata.namespace=default",
                true,
                false,
            ),
            ("spec.hostNetwork=false", true, true),
            ("status.podIP=10.0.0.7", true, false),
        ];
        for (input, on_running, on_pending) in cases {
            let sel = parse(input);
            assert_eq!(
                sel.matches_object("Pod", &pod),
                on_running,
                "{input} on running pod"
            );
            assert_eq!(
                sel.matches_object("Pod", &pending),
                on_pending,
                "{input} on pending pod"
            );
        }
    }

    #[test]
    fn renders_field_values_like_kubernetes() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert_eq!(field_value("Node", &node, "spec.unschedulable"), "true");
        assert_eq!(
            field_value("Node", &json!({}), "spec.unschedulable"),
            "false"
        );
        assert_eq!(field_value("Node", &node, "metadata.namespace"), "");

        let rs = json!({"status": {"replicas": 3}});
        assert_eq!(field_value("ReplicaSet", &rs, "status.replicas"), "3");
        assert_eq!(
            field_value("ReplicationController", &json!({}), "status.replicas"),
            "0"
        );

        let event = json!({
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "reason": "Scheduled",
            "source": {"component": "default-scheduler", "host": "h"},
            "type": "Normal"
        });
        assert_eq!(field_value("Event", &event, "source"), "default-scheduler");
        assert_eq!(field_value("Event", &event, "involvedObject.kind"), "Pod");
        assert_eq!(field_value("Event", &event, "involvedObject.uid"), "");
        let sel = parse("involvedObject.name=web-1,type=Normal,reason=Scheduled");
        assert!(sel.matches_object("Event", &event));

        let pod = json!({"spec": {"hostNetwork": true}, "status": {"podIP": "10.1.1.1"}});
        assert_eq!(field_value("Pod", &pod, "spec.hostNetwork"), "true");
        assert_eq!(field_value("Pod", &pod, "status.podIP"), "10.1.1.1");
    }

    #[test]
    fn knows_which_fields_each_kind_supports() {
        for kind in [
            "Pod",
            "Node",
            "Namespace",
            "ReplicaSet",
            "ReplicationController",
            "Deployment",
            "Service",
            "Endpoints",
            "Event",
            "ResourceQuota",
        ] {
            let fields = supported_fields(kind);
            assert!(
                fields.contains(&"metadata.name") && fields.contains(&"metadata.namespace"),
                "{kind}"
            );
        }
        assert!(supported_fields("Pod").contains(&"spec.nodeName"));
        assert!(supported_fields("Namespace").contains(&"status.phase"));
        assert_eq!(
            check_supported("Pod", &parse("spec.nodeName=a,status.phase=Running")),
            Ok(())
        );
        assert_eq!(
            check_supported("Deployment", &parse("metadata.name=a,spec.paused=true")),
            Err("field label not supported: spec.paused".to_string())
        );
        assert_eq!(
            check_supported("Service", &parse("status.replicas=1")),
            Err("field label not supported: status.replicas".to_string())
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = FieldSelector::parse(&s);
        }

        #[test]
        fn display_then_parse_is_identity(
            terms in proptest::collection::vec(r"([a-z.]{1,6}(=|==|!=)([a-z!]|\\[,=\\]){0,5})?", 0..5),
        ) {
            let s = terms.join(",");
            let sel = FieldSelector::parse(&s);
            proptest::prop_assert!(sel.is_ok(), "{}: {:?}", s, sel);
            let sel = sel.unwrap_or_default();
            let printed = sel.to_string();
            proptest::prop_assert_eq!(FieldSelector::parse(&printed), Ok(sel), "{}", printed);
        }

        #[test]
        fn escaped_values_round_trip(field in "[a-z][a-zA-Z.]{0,12}", value in "\\PC{0,12}") {
            let sel = FieldSelector {
                requirements: vec![FieldRequirement { field, op: FieldOperator::NotEquals, value }],
            };
            proptest::prop_assert_eq!(FieldSelector::parse(&sel.to_string()), Ok(sel));
        }
    }
}
