//! Strict decoding of manifests: JSON or YAML text, or a JSON value, into a typed object, with
//! every problem reported at the field path where it is, as `kubectl --validate=strict` and the
//! API server's `fieldValidation=Strict` do.
//!
//! The typed structs of k8s-openapi skip fields they do not know, so unknown fields are found by
//! decoding, encoding back, and reporting every input key that did not survive the round trip.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why a document could not be decoded into its kind.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON or YAML at all.
    #[error("{0}")]
    Syntax(String),
    /// A field of the wrong type or value: `spec.containers: invalid type: map, expected a sequence`.
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    /// Fields the kind does not have, each as a path: `spec.containers[0].imagee`.
    #[error("{}", render_unknown(.0))]
    UnknownFields(Vec<String>),
}

fn render_unknown(paths: &[String]) -> String {
    let quoted: Vec<String> = paths
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    quoted.join(", ")
}

/// Decodes `value` into `K`, refusing unknown fields.
pub fn from_value_strict<K: DeserializeOwned + Serialize>(value: &Value) -> Result<K, DecodeError> {
    let typed = from_value_lenient::<K>(value)?;
    let round_trip =
        serde_json::to_value(&typed).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    let mut unknown = Vec::new();
    find_unknown(value, &round_trip, &mut Path::default(), &mut unknown);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(DecodeError::UnknownFields(unknown))
    }
}

/// Decodes `value` into `K`, dropping unknown fields (`fieldValidation=Ignore`).
pub fn from_value_lenient<K: DeserializeOwned>(value: &Value) -> Result<K, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            DecodeError::Syntax(message)
        } else {
            DecodeError::Field { path, message }
        }
    })
}

/// Parses a request body or file as JSON, or as YAML when it is not JSON.
pub fn parse_document(text: &[u8]) -> Result<Value, DecodeError> {
    match serde_json::from_slice::<Value>(text) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let looks_like_json = text
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{' || *b == b'[');
            if looks_like_json {
                return Err(DecodeError::Syntax(json_err.to_string()));
            }
            let text = std::str::from_utf8(text)
                .map_err(|e| DecodeError::Syntax(format!("not UTF-8: {e}")))?;
            let budget = Budget::for_text(text);
            budget.value(serde_yaml::Deserializer::from_str(text))
        }
    }
}

/// Splits YAML (or JSON) text into its documents, skipping empty ones.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, (usize, DecodeError)> {
    let mut docs = Vec::new();
    let budget = Budget::for_text(text);
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = budget.value(doc).map_err(|e| (i + 1, e))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// How much a YAML text may decode to: a node counts one, a string or key its length too. Plain
/// YAML decodes to less than twice its own length by that count, so only aliases, which replay an
/// anchored node wherever they appear, can go beyond; the budget refuses a document whose aliases
/// multiply it (a "billion laughs"), quickly and before the memory is spent, as Kubernetes'
/// YAML decoder refuses excessive aliasing. serde_yaml's own recursion limit (128 levels) bounds
/// the depth.
struct Budget {
    left: std::cell::Cell<usize>,
    limit: usize,
}

impl Budget {
    /// Four times the text's length, and a little more for small texts.
    fn for_text(text: &str) -> Budget {
        let limit = text.len().saturating_mul(4).saturating_add(4096);
        Budget {
            left: std::cell::Cell::new(limit),
            limit,
        }
    }

    fn spend<E: serde::de::Error>(&self, amount: usize) -> Result<(), E> {
        match self.left.get().checked_sub(amount) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "YAML aliases expand the document beyond {} values and characters (four times \
                 its size); refusing it",
                self.limit
            ))),
        }
    }

    /// Decodes one document into a JSON value within the budget.
    fn value<'de, D: serde::Deserializer<'de>>(&self, document: D) -> Result<Value, DecodeError>
    where
        D::Error: fmt::Display,
    {
        serde::de::DeserializeSeed::deserialize(Node(self), document)
            .map_err(|e| DecodeError::Syntax(e.to_string()))
    }
}

/// A [`Value`] decoded while spending from a [`Budget`].
struct Node<'a>(&'a Budget);

impl<'de> serde::de::DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Value::from(v))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(v), _) => self.visit_i64(v),
            (_, Ok(v)) => self.visit_u64(v),
            _ => Err(E::custom(format!("number {v} is out of range"))),
        }
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("number {v} is out of range"))),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.spend(1)?;
        // As serde_json's own Value: no JSON number for NaN or infinity.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.spend(1 + v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.spend(1 + v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(1)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Node(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(1)?;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.spend(1 + key.len())?;
            let value = map.next_value_seed(Node(self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[derive(Default)]
struct Path(Vec<Segment>);

enum Segment {
    Field(String),
    Index(usize),
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Walks `input` beside its round trip through the typed struct and records every key the typed
/// struct dropped. Nulls are skipped: an explicit null is how YAML says "absent".
fn find_unknown(input: &Value, typed: &Value, path: &mut Path, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(input), Value::Object(typed)) => {
            for (key, value) in input {
                if value.is_null() {
                    continue;
                }
                path.0.push(Segment::Field(key.clone()));
                match typed.get(key) {
                    Some(t) => find_unknown(value, t, path, out),
                    None => out.push(path.to_string()),
                }
                path.0.pop();
            }
        }
        (Value::Array(input), Value::Array(typed)) => {
            for (i, (value, t)) in input.iter().zip(typed).enumerate() {
                path.0.push(Segment::Index(i));
                find_unknown(value, t, path, out);
                path.0.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_by_path() {
        let v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labelz": {}},
            "spec": {"containers": [{"name": "c", "image": "x"}, {"name": "d", "imagee": "y"}]}
        });
        let err = from_value_strict::<Pod>(&v).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownFields(vec![
                "metadata.labelz".into(),
                "spec.containers[1].imagee".into()
            ])
        );
        assert_eq!(
            err.to_string(),
            "unknown field \"metadata.labelz\", unknown field \"spec.containers[1].imagee\""
        );
    }

    #[test]
    fn type_errors_are_named_by_path() {
        let v = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"selector": {}, "template": {"spec": {"containers": {"name": "c"}}}}
        });
        let err = from_value_strict::<Deployment>(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers: invalid type: map, expected a sequence"
        );
    }

    #[test]
    fn nulls_and_known_fields_pass() {
        let v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "creationTimestamp": null, "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}],
                      "resources": {"limits": {"cpu": "500m"}}}]},
            "status": {}
        });
        let pod: Pod = from_value_strict(&v).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("a"));
    }

    #[test]
    fn documents_split_and_yaml_parses() {
        let docs = parse_documents("a: 1\n---\n---\nb: [1, 2]\n").unwrap();
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": [1, 2]})]);
        let err = parse_documents("a: 1\n---\nb: [1\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert_eq!(parse_document(b"{\"a\": 1}").unwrap(), json!({"a": 1}));
        assert_eq!(parse_document(b"a: 1").unwrap(), json!({"a": 1}));
        assert!(parse_document(b"{\"a\": ").is_err());
    }

    /// Ten levels of nine aliases each: 9^10 strings if expanded.
    fn billion_laughs() -> String {
        let mut bomb = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
            ));
        }
        bomb
    }

    /// One anchor of 20,000 items aliased 20,000 times: few alias jumps (so within serde_yaml's
    /// own repetition limit), 400 million values if expanded.
    fn quadratic_bomb() -> String {
        let items = vec!["1"; 20_000].join(",");
        let aliases = vec!["*a"; 20_000].join(",");
        format!("a: &a [{items}]\nb: [{aliases}]\n")
    }

    #[test]
    fn deep_nesting_is_refused_in_json_and_yaml() {
        let json = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let flow = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        let block: String = (0..200)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect();
        for text in [json, flow, block] {
            let err = parse_document(text.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains("recursion limit exceeded"),
                "{err}"
            );
            assert!(parse_documents(&text).is_err());
        }
        // 100 levels is deep but allowed.
        let ok = format!("a: {}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_document(ok.as_bytes()).is_ok());
    }

    #[test]
    fn alias_bombs_are_refused() {
        for bomb in [billion_laughs(), quadratic_bomb()] {
            let err = parse_document(bomb.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("YAML aliases expand"), "{err}");
            let (doc, err) = parse_documents(&bomb).unwrap_err();
            assert_eq!(doc, 1);
            assert!(err.to_string().contains("YAML aliases expand"), "{err}");
        }
    }

    #[test]
    fn modest_aliases_and_plain_documents_decode_as_before() {
        let text = "base: &base {image: nginx, ports: [80, 443]}\nweb: *base\napi: *base\n";
        let v = parse_document(text.as_bytes()).unwrap();
        assert_eq!(v["api"], json!({"image": "nginx", "ports": [80, 443]}));
        let text = "a: 1\nb: -2\nc: 1.5\nd: ~\ne: [true, \"x\"]\nf: {}\ng: .nan\n18446744073709551615: big\n";
        assert_eq!(
            parse_document(text.as_bytes()).unwrap(),
            serde_yaml::from_str::<Value>(text).unwrap()
        );
        // The densest plain YAML stays well within the budget.
        let dense = format!("a: [{}]", vec!["a"; 100_000].join(","));
        parse_document(dense.as_bytes()).unwrap();
        let dense: String = "-\n".repeat(100_000);
        parse_document(dense.as_bytes()).unwrap();
    }
}
