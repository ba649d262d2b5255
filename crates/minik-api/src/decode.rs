//! Strict decoding of manifests: JSON or YAML text, or a JSON value, into a typed object, with
//! every problem reported at the field path where it is, as `kubectl --validate=strict` and the
//! API server's `fieldValidation=Strict` do.
//!
//! The typed structs of k8s-openapi skip fields they do not know, so unknown fields are found by
//! decoding, encoding back, and reporting every input key that did not survive the round trip.
//! Fields that appear twice in one object are found while the text is parsed ([`parse_body`]).
//!
//! YAML text is checked by [`prescan`] before serde_yaml parses it, so that no text up to the
//! request limit costs more than a bounded time to refuse or accept.

pub mod prescan;

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// How strictly a write's body is decoded (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields fail the request. minik's default, as kubectl's `--validate=strict`.
    #[default]
    Strict,
    /// Unknown fields are dropped; Kubernetes would add a warning header.
    Warn,
    /// Unknown fields are dropped silently.
    Ignore,
}

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
    // Most objects decode: do it without tracking the path, which costs on every field, and
    // decode again with it only to say where a refused one went wrong.
    if let Ok(typed) = K::deserialize(value) {
        return Ok(typed);
    }
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

/// A request body parsed, and the fields that appeared more than once in one of its objects
/// (the last value is kept, as Kubernetes keeps it).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub value: Value,
    /// The first [`MAX_DUPLICATES_LISTED`] of them, each as a path in the order found:
    /// `metadata.name`, `spec.containers[0].image`.
    pub duplicate_fields: Vec<String>,
    /// How many there were in all.
    pub duplicates: usize,
}

/// How many duplicate fields a [`Document`] names; the others are only counted, so that a body
/// made of duplicates costs no more memory, and makes no longer a message, than this.
pub const MAX_DUPLICATES_LISTED: usize = 100;

/// Parses a request body or file as JSON, or as YAML when it is not JSON.
pub fn parse_document(text: &[u8]) -> Result<Value, DecodeError> {
    parse_body(text).map(|document| document.value)
}

/// [`parse_document`], also reporting duplicate fields, which Kubernetes refuses under
/// `fieldValidation=Strict` (`duplicate field "metadata.name"`) and warns about under `Warn`.
pub fn parse_body(text: &[u8]) -> Result<Document, DecodeError> {
    let state = State::default();
    let mut json = serde_json::Deserializer::from_slice(text);
    let parsed = serde::de::DeserializeSeed::deserialize(Node(&state), &mut json)
        .and_then(|value| json.end().map(|()| value));
    let value = match parsed {
        Ok(value) => value,
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
            let size = prescan::check(text)?;
            let text = prescan::yaml11_octals(text, &size);
            let state = State::for_yaml(size);
            let value = state.value(serde_yaml::Deserializer::from_str(&text))?;
            return Ok(state.document(value));
        }
    };
    Ok(state.document(value))
}

/// Splits YAML (or JSON) text into its documents, skipping empty ones.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, (usize, DecodeError)> {
    let size = prescan::check_depth(text)?;
    let text = prescan::yaml11_octals(text, &size);
    let mut docs = Vec::new();
    let state = State::for_yaml(size);
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = state.value(doc).map_err(|e| (i + 1, e))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// What decoding a text keeps track of: for YAML, how much it may decode to; for both, the
/// duplicate fields found.
///
/// The budget: the values (nodes, and the implicit nulls of keys without a value) and the
/// characters of strings and keys a YAML text may decode to, four times what [`prescan`] counted
/// in the text itself. Without aliases a text decodes to at most about twice that; aliases,
/// which replay an anchored node wherever they appear, can multiply it (a "billion laughs"), and
/// the budget refuses them quickly, before the time and memory are spent, as Kubernetes' YAML
/// decoder refuses excessive aliasing. Counting the text's nodes and scalars, not its length,
/// keeps a long comment from buying an alias bomb more room.
#[derive(Default)]
struct State {
    /// `None`: no limit (JSON, which has no aliases).
    budget: Option<Budget>,
    /// Each duplicate field's path, innermost segment first (ancestors are added as the
    /// decoding returns through them); the first [`MAX_DUPLICATES_LISTED`] only.
    duplicates: RefCell<Vec<Vec<Segment>>>,
    /// Every duplicate found.
    duplicates_seen: Cell<usize>,
}

struct Budget {
    values_left: Cell<usize>,
    chars_left: Cell<usize>,
    values: usize,
    chars: usize,
}

impl State {
    /// Four times what the text holds, and a little more for small texts.
    fn for_yaml(size: prescan::Size) -> State {
        let values = size.nodes.saturating_mul(4).saturating_add(4096);
        let chars = size.scalar_bytes.saturating_mul(4).saturating_add(4096);
        State {
            budget: Some(Budget {
                values_left: Cell::new(values),
                chars_left: Cell::new(chars),
                values,
                chars,
            }),
            ..State::default()
        }
    }

    /// Spends one value, and `chars` characters.
    fn spend<E: serde::de::Error>(&self, chars: usize) -> Result<(), E> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let values = budget.values_left.get().checked_sub(1);
        let chars = budget.chars_left.get().checked_sub(chars);
        match (values, chars) {
            (Some(values), Some(chars)) => {
                budget.values_left.set(values);
                budget.chars_left.set(chars);
                Ok(())
            }
            _ => Err(E::custom(format!(
                "YAML aliases expand the document beyond {} values or {} characters (four times \
                 what it holds); refusing it",
                budget.values, budget.chars
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

    fn duplicates_found(&self) -> usize {
        self.duplicates.borrow().len()
    }

    /// Puts `segment` in front of the paths of the duplicates found since there were `since`.
    fn under(&self, since: usize, segment: impl Fn() -> Segment) {
        let mut duplicates = self.duplicates.borrow_mut();
        for path in duplicates.iter_mut().skip(since) {
            path.push(segment());
        }
    }

    /// Notes that `key` appeared twice in the object being decoded.
    fn duplicate(&self, key: &str) {
        self.duplicates_seen.set(self.duplicates_seen.get() + 1);
        let mut duplicates = self.duplicates.borrow_mut();
        if duplicates.len() < MAX_DUPLICATES_LISTED {
            duplicates.push(vec![Segment::Field(key.to_owned())]);
        }
    }

    /// `value` and the duplicate fields found decoding it.
    fn document(&self, value: Value) -> Document {
        let duplicate_fields = self
            .duplicates
            .borrow()
            .iter()
            .map(|reversed| Path(reversed.iter().rev().cloned().collect()).to_string())
            .collect();
        Document {
            value,
            duplicate_fields,
            duplicates: self.duplicates_seen.get(),
        }
    }
}

/// A [`Value`] decoded while spending from the [`State`]'s budget and noting duplicate fields.
struct Node<'a>(&'a State);

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
        self.0.spend(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.spend(0)?;
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
        self.0.spend(0)?;
        // As serde_json's own Value: no JSON number for NaN or infinity.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.spend(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.spend(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.spend(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(0)?;
        let mut items = Vec::new();
        loop {
            let before = self.0.duplicates_found();
            let Some(item) = seq.next_element_seed(Node(self.0))? else {
                break;
            };
            if self.0.duplicates_found() > before {
                let index = items.len();
                self.0.under(before, || Segment::Index(index));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(0)?;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.spend(key.len())?;
            let before = self.0.duplicates_found();
            let value = map.next_value_seed(Node(self.0))?;
            if self.0.duplicates_found() > before {
                self.0.under(before, || Segment::Field(key.clone()));
            }
            match object.entry(key) {
                serde_json::map::Entry::Occupied(mut field) => {
                    self.0.duplicate(field.key());
                    field.insert(value);
                }
                serde_json::map::Entry::Vacant(field) => {
                    field.insert(value);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[derive(Default)]
struct Path(Vec<Segment>);

#[derive(Clone)]
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
    #[test]
    fn yaml_1_1_octal_integers_read_as_kubernetes_reads_them() {
        let text = "mode: 0400\nneg: -017 # comment\nflow: [0644, 0755]\nquoted: \"0400\"\nkey: 0400x\nzero: 0\ndec: 0400.5\n0644: k\nnine: 0490\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(
            docs[0],
            serde_json::json!({"mode": 256, "neg": -15, "flow": [420, 493], "quoted": "0400",
                "key": "0400x", "zero": 0, "dec": 400.5, "0644": "k", "nine": "0490"})
        );
        assert_eq!(parse_body(text.as_bytes()).unwrap().value, docs[0]);
    }

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
        // The densest plain YAML stays well within the budget (in a file of manifests: a
        // request body may hold fewer nodes).
        let dense = format!("a: [{}]", vec!["a"; 100_000].join(","));
        parse_documents(&dense).unwrap();
        let dense: String = "-\n".repeat(100_000);
        parse_documents(&dense).unwrap();
        let dense: String = "---\n".repeat(100_000);
        parse_documents(&dense).unwrap();
        // Keys without values decode to nulls the text does not show.
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let dense = format!("x: {{{}}}", keys.join(","));
        assert_eq!(
            parse_document(dense.as_bytes()).unwrap()["x"]["k9999"],
            Value::Null
        );
    }

    #[test]
    fn duplicate_fields_are_found_by_path_and_the_last_value_kept() {
        let json = br#"{"metadata":{"name":"p1","name":"p2"},
            "spec":{"containers":[{"name":"c","image":"x","image":"y"}]}}"#;
        let yaml = b"metadata:\n  name: p1\n  name: p2\nspec:\n  containers:\n  - name: c\n    image: x\n    image: y\n";
        for text in [&json[..], &yaml[..]] {
            let document = parse_body(text).unwrap();
            assert_eq!(
                document.duplicate_fields,
                ["metadata.name", "spec.containers[0].image"],
                "{}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(document.value["metadata"]["name"], "p2");
            assert_eq!(document.value["spec"]["containers"][0]["image"], "y");
        }
        // Duplicates inside a duplicated field's values count too, in the order found.
        let nested = br#"{"a":{"x":1,"x":2},"a":{"y":1,"y":2},"b":[1,{"c":1,"c":2}]}"#;
        assert_eq!(
            parse_body(nested).unwrap().duplicate_fields,
            ["a.x", "a.y", "a", "b[1].c"]
        );
        assert_eq!(
            parse_body(b"[{\"a\":1,\"a\":1}]").unwrap().duplicate_fields,
            ["[0].a"]
        );
        assert!(parse_body(br#"{"a":{"b":1},"c":[{"b":2}]}"#)
            .unwrap()
            .duplicate_fields
            .is_empty());
        // A body of duplicates is counted, and only the first are named.
        let many = format!("{{{}}}", vec!["\"a\":{\"b\":1,\"b\":2}"; 10_000].join(","));
        let document = parse_body(many.as_bytes()).unwrap();
        assert_eq!(document.duplicates, 19_999);
        assert_eq!(document.duplicate_fields.len(), MAX_DUPLICATES_LISTED);
        assert_eq!(document.duplicate_fields[..3], ["a.b", "a.b", "a"]);
    }

    /// The shapes that cost serde_yaml quadratic time (nested flow collections: 160 KB took
    /// 27 s) and the other deep ones are refused by the pre-scan, before serde_yaml sees them.
    #[test]
    fn the_worst_yaml_shapes_are_refused_before_serde_yaml_parses_them() {
        let n = 20_000;
        let shapes = [
            format!("a: {}", "[".repeat(n)),
            format!("a: {}", "{".repeat(n)),
            format!("a: {}", "{a: ".repeat(n / 4)),
            format!("a: {}", "[{".repeat(n / 2)),
            format!("- {}", "- ".repeat(n / 2)),
            (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect(),
        ];
        for text in &shapes {
            let err = parse_document(text.as_bytes()).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "recursion limit exceeded: the document nests more than 128 collections"
                ),
                "{}: {err}",
                &text[..20]
            );
            let (doc, err) = parse_documents(text).unwrap_err();
            assert_eq!(doc, 1);
            assert!(
                err.to_string().contains("more than 128 collections"),
                "{err}"
            );
        }
        // Too many nodes in a request body; not in a file of manifests, nor as JSON.
        let many = format!(
            "a: 1\n---\na: [{}]\n",
            vec!["1"; prescan::MAX_NODES].join(",")
        );
        let err = parse_document(many.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("send it as JSON"), "{err}");
        assert_eq!(parse_documents(&many).unwrap().len(), 2);
        let json = format!("[{}]", vec!["1"; prescan::MAX_NODES].join(","));
        assert!(parse_document(json.as_bytes()).is_ok());
        // The deepest shapes in the second document of a file.
        let (doc, _) = parse_documents(&format!("a: 1\n---\n{}", shapes[0])).unwrap_err();
        assert_eq!(doc, 2);
    }
}
