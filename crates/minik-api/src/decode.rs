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
            serde_yaml::from_str::<Value>(text).map_err(|e| DecodeError::Syntax(e.to_string()))
        }
    }
}

/// Splits YAML (or JSON) text into its documents, skipping empty ones.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, (usize, DecodeError)> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| (i + 1, DecodeError::Syntax(e.to_string())))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
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
}
