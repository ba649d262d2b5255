//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) of request bodies,
//! turned into the JSON object a JSON client would have sent, so that it goes through the same
//! admission as JSON.
//!
//! client-go's generated clients send built-in kinds as protobuf whenever the client's
//! configuration names no content type (kubectl 1.32+: `create deployment`, `create service`,
//! `create namespace`, ...); there is no fallback to JSON on `415`. The body is the magic
//! `k8s\0`, then a `runtime.Unknown` envelope: `typeMeta` (apiVersion, kind), `raw` (the object's
//! message), `contentEncoding`, `contentType`.
//!
//! Messages are decoded with the table in `schema.txt`. Go's protobuf encoding writes every
//! non-pointer field, zero or not, so a zero value of a non-pointer `omitempty` field is left out
//! of the JSON as Go's JSON encoding would; pointers are kept as sent (`replicas: 0`).

mod schema;
mod wire;

use serde_json::{Map, Value};

use crate::resources::FieldValidation;
use schema::{Field, Message, Schema, Special, Type};
use wire::{Reader, WireType};

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// Kubernetes' kinds never nest this deep; a deeper input is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// Why a protobuf body could not be turned into JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body is not in Kubernetes' protobuf encoding: it does not start with the magic number \"k8s\\x00\"")]
    NoMagic,
    /// Bytes that are not a valid encoding of the message they should be.
    #[error("the protobuf body is malformed at {path} (message {message}): {problem}")]
    Malformed {
        path: String,
        message: String,
        problem: String,
    },
    /// The envelope names a kind minik does not decode from protobuf.
    #[error("protobuf bodies of kind {kind:?} in {api_version:?} are not supported (send JSON)")]
    UnsupportedKind { api_version: String, kind: String },
    /// The envelope asks for something minik does not do (a compressed or nested encoding).
    #[error("the protobuf envelope is not supported: {0}")]
    Envelope(String),
    /// A field number the message does not have, with a non-zero value, refused under
    /// `fieldValidation=Strict`.
    #[error("unknown field number {number} in message {message} at {path}")]
    UnknownField {
        path: String,
        message: String,
        number: u32,
    },
    /// `schema.txt` is broken: a bug, caught by the unit tests.
    #[error("{0}")]
    Table(String),
}

/// The message for each kind accepted as protobuf. Options kinds are shared by all groups.
fn root_message(api_version: &str, kind: &str) -> Option<&'static str> {
    Some(match (api_version, kind) {
        (_, "DeleteOptions") => "meta.v1.DeleteOptions",
        ("v1", "Pod") => "core.v1.Pod",
        ("v1", "ReplicationController") => "core.v1.ReplicationController",
        ("v1", "Service") => "core.v1.Service",
        ("v1", "Endpoints") => "core.v1.Endpoints",
        ("v1", "Namespace") => "core.v1.Namespace",
        ("v1", "Node") => "core.v1.Node",
        ("v1", "Event") => "core.v1.Event",
        ("v1", "ResourceQuota") => "core.v1.ResourceQuota",
        ("v1", "Binding") => "core.v1.Binding",
        ("apps/v1", "Deployment") => "apps.v1.Deployment",
        ("apps/v1", "ReplicaSet") => "apps.v1.ReplicaSet",
        ("autoscaling/v1", "Scale") => "autoscaling.v1.Scale",
        _ => return None,
    })
}

/// Decodes a protobuf request body into its JSON object, `apiVersion` and `kind` included.
/// Unknown field numbers with a value fail under `Strict` and are dropped otherwise; unknown
/// fields holding a zero value are always dropped (a newer client's unset fields).
pub fn decode(body: &[u8], validation: FieldValidation) -> Result<Value, ProtobufError> {
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(ProtobufError::NoMagic);
    };
    let unknown = Unknown::decode(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::Envelope(format!(
            "contentEncoding {:?} (only uncompressed bodies are read)",
            unknown.content_encoding
        )));
    }
    if !unknown.content_type.is_empty() && unknown.content_type != MEDIA_TYPE {
        return Err(ProtobufError::Envelope(format!(
            "contentType {:?} inside the envelope",
            unknown.content_type
        )));
    }
    let Some(root) = root_message(&unknown.api_version, &unknown.kind) else {
        return Err(ProtobufError::UnsupportedKind {
            api_version: unknown.api_version,
            kind: unknown.kind,
        });
    };
    let schema = schema::schema().map_err(ProtobufError::Table)?;
    let index = schema
        .message(root)
        .ok_or_else(|| ProtobufError::Table(format!("schema.txt has no message {root}")))?;
    let decoder = Decoder {
        schema,
        strict: validation == FieldValidation::Strict,
    };
    let mut object = Map::new();
    decoder.message(index, unknown.raw, &Path::Root, 0, &mut object)?;
    object.insert("apiVersion".into(), Value::String(unknown.api_version));
    object.insert("kind".into(), Value::String(unknown.kind));
    Ok(Value::Object(object))
}

/// `runtime.Unknown`, the envelope of every protobuf body.
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Unknown<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let malformed = |message: &str, problem: String| ProtobufError::Malformed {
            path: "the envelope".into(),
            message: message.into(),
            problem,
        };
        let mut out = Unknown {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let text = |b: &[u8], message: &str| {
            String::from_utf8(b.to_vec())
                .map_err(|_| malformed(message, "a string is not UTF-8".into()))
        };
        let mut reader = Reader::new(bytes);
        while !reader.at_end() {
            let (number, wire) = reader.tag().map_err(|e| malformed("runtime.Unknown", e))?;
            if wire != WireType::LengthDelimited {
                reader
                    .skip(wire)
                    .map_err(|e| malformed("runtime.Unknown", e))?;
                continue;
            }
            let value = reader
                .bytes()
                .map_err(|e| malformed("runtime.Unknown", e))?;
            match number {
                1 => {
                    let mut meta = Reader::new(value);
                    while !meta.at_end() {
                        let (n, w) = meta.tag().map_err(|e| malformed("runtime.TypeMeta", e))?;
                        if w != WireType::LengthDelimited {
                            meta.skip(w).map_err(|e| malformed("runtime.TypeMeta", e))?;
                            continue;
                        }
                        let v = meta.bytes().map_err(|e| malformed("runtime.TypeMeta", e))?;
                        match n {
                            1 => out.api_version = text(v, "runtime.TypeMeta")?,
                            2 => out.kind = text(v, "runtime.TypeMeta")?,
                            _ => {}
                        }
                    }
                }
                2 => out.raw = value,
                3 => out.content_encoding = text(value, "runtime.Unknown")?,
                4 => out.content_type = text(value, "runtime.Unknown")?,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Where in the object a value is, rendered only for errors: `spec.template.spec.containers[0]`.
enum Path<'p> {
    Root,
    Field(&'p Path<'p>, &'static str),
    Index(&'p Path<'p>, usize),
    Key(&'p Path<'p>, &'p str),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => "the object".into(),
            _ => {
                let mut out = String::new();
                self.write(&mut out);
                out
            }
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Field(parent, name) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.write(out);
                out.push_str(&format!("[{i}]"));
            }
            Path::Key(parent, key) => {
                parent.write(out);
                out.push_str(&format!("[{key:?}]"));
            }
        }
    }
}

struct Decoder {
    schema: &'static Schema,
    strict: bool,
}

impl Decoder {
    fn malformed(&self, path: &Path, message: &str, problem: String) -> ProtobufError {
        ProtobufError::Malformed {
            path: path.render(),
            message: message.into(),
            problem,
        }
    }

    /// Decodes the message `index` from `bytes` into `out` (the parent's object for an inline
    /// message).
    fn message(
        &self,
        index: usize,
        bytes: &[u8],
        path: &Path,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        let message = &self.schema.messages[index];
        if depth > MAX_DEPTH {
            return Err(self.malformed(path, message.name, "messages nest too deeply".into()));
        }
        let mut reader = Reader::new(bytes);
        while !reader.at_end() {
            let (number, wire) = reader
                .tag()
                .map_err(|e| self.malformed(path, message.name, e))?;
            let Some(field) = message.field(number) else {
                let zero = reader
                    .skip(wire)
                    .map_err(|e| self.malformed(path, message.name, e))?;
                // Go writes every non-pointer field, so a newer client sends the fields its
                // version added even when unset: only a value is worth refusing.
                if self.strict && !zero {
                    return Err(ProtobufError::UnknownField {
                        path: path.render(),
                        message: message.name.into(),
                        number,
                    });
                }
                continue;
            };
            self.field(message, field, wire, &mut reader, path, depth, out)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn field(
        &self,
        message: &Message,
        field: &Field,
        wire: WireType,
        reader: &mut Reader,
        path: &Path,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        let here = Path::Field(path, field.json);
        let bad = |problem: String| self.malformed(&here, message.name, problem);
        if field.inline {
            let Type::Message(inner) = field.ty else {
                return Err(bad("an inline field is not a message".into()));
            };
            expect_wire(wire, WireType::LengthDelimited, field).map_err(bad)?;
            let bytes = reader.bytes().map_err(bad)?;
            return self.message(inner, bytes, path, depth + 1, out);
        }
        if field.map {
            expect_wire(wire, WireType::LengthDelimited, field).map_err(bad)?;
            let entry = reader.bytes().map_err(bad)?;
            let (key, value) = self.map_entry(message, field, entry, &here, depth)?;
            let map = out
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(key, value);
            }
            return Ok(());
        }
        if field.repeated {
            let items = out
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = items else {
                return Err(bad("a repeated field is also a single value".into()));
            };
            // Numbers and booleans may come packed: one length-delimited run of values.
            if wire == WireType::LengthDelimited && packable(field.ty) {
                let packed = reader.bytes().map_err(bad)?;
                let mut run = Reader::new(packed);
                while !run.at_end() {
                    let item = Path::Index(&here, items.len());
                    let value = self.value(
                        message,
                        field,
                        scalar_wire(field.ty),
                        &mut run,
                        &item,
                        depth,
                    )?;
                    items.push(value.unwrap_or(Value::Null));
                }
                return Ok(());
            }
            let item = Path::Index(&here, items.len());
            let value = self.value(message, field, wire, reader, &item, depth)?;
            items.push(value.unwrap_or(Value::Null));
            return Ok(());
        }
        match self.value(message, field, wire, reader, &here, depth)? {
            Some(value) if !(field.omitempty && !field.pointer && is_zero(&value, field.ty)) => {
                out.insert(field.json.into(), value);
            }
            // The last occurrence of a field wins: a later zero clears an earlier value.
            _ => {
                out.remove(field.json);
            }
        }
        Ok(())
    }

    fn map_entry(
        &self,
        message: &Message,
        field: &Field,
        entry: &[u8],
        path: &Path,
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        let mut key = String::new();
        let mut value = None;
        let mut reader = Reader::new(entry);
        while !reader.at_end() {
            let (number, wire) = reader
                .tag()
                .map_err(|e| self.malformed(path, message.name, e))?;
            match number {
                1 => {
                    expect_wire(wire, WireType::LengthDelimited, field)
                        .map_err(|e| self.malformed(path, message.name, e))?;
                    let bytes = reader
                        .bytes()
                        .map_err(|e| self.malformed(path, message.name, e))?;
                    key = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        self.malformed(path, message.name, "a map key is not UTF-8".into())
                    })?;
                }
                2 => {
                    let at = Path::Key(path, &key);
                    value = self.value(message, field, wire, &mut reader, &at, depth)?;
                }
                _ => {
                    reader
                        .skip(wire)
                        .map_err(|e| self.malformed(path, message.name, e))?;
                }
            }
        }
        // A missing value is the zero value of its type.
        let value = match value {
            Some(v) => v,
            None => zero(field.ty),
        };
        Ok((key, value))
    }

    /// One value of `field`'s type. `None` for a value that JSON leaves out (a zero time).
    fn value(
        &self,
        message: &Message,
        field: &Field,
        wire: WireType,
        reader: &mut Reader,
        path: &Path,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        let bad = |problem: String| self.malformed(path, message.name, problem);
        let value = match field.ty {
            Type::String => {
                expect_wire(wire, WireType::LengthDelimited, field).map_err(bad)?;
                let bytes = reader.bytes().map_err(bad)?;
                let text =
                    std::str::from_utf8(bytes).map_err(|_| bad("a string is not UTF-8".into()))?;
                Value::String(text.to_owned())
            }
            Type::Bytes => {
                expect_wire(wire, WireType::LengthDelimited, field).map_err(bad)?;
                let bytes = reader.bytes().map_err(bad)?;
                serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec()))
                    .map_err(|e| bad(e.to_string()))?
            }
            Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 | Type::Bool => {
                expect_wire(wire, WireType::Varint, field).map_err(bad)?;
                let raw = reader.varint().map_err(bad)?;
                match field.ty {
                    // Negative int32s are sign-extended to ten bytes; the low 32 bits are the value.
                    Type::Int32 => Value::from(raw as i32),
                    Type::Int64 => Value::from(raw as i64),
                    Type::Uint32 => Value::from(raw as u32),
                    Type::Bool => Value::Bool(raw != 0),
                    _ => Value::from(raw),
                }
            }
            Type::Double => {
                expect_wire(wire, WireType::Fixed64, field).map_err(bad)?;
                let number = f64::from_bits(reader.fixed64().map_err(bad)?);
                finite(number).map_err(bad)?
            }
            Type::Float => {
                expect_wire(wire, WireType::Fixed32, field).map_err(bad)?;
                let number = f32::from_bits(reader.fixed32().map_err(bad)?);
                finite(f64::from(number)).map_err(bad)?
            }
            Type::Special(special) => {
                expect_wire(wire, WireType::LengthDelimited, field).map_err(bad)?;
                let bytes = reader.bytes().map_err(bad)?;
                return special_value(special, bytes, field).map_err(bad);
            }
            Type::Message(index) => {
                expect_wire(wire, WireType::LengthDelimited, field).map_err(bad)?;
                let bytes = reader.bytes().map_err(bad)?;
                let mut object = Map::new();
                self.message(index, bytes, path, depth + 1, &mut object)?;
                Value::Object(object)
            }
        };
        Ok(Some(value))
    }
}

fn expect_wire(got: WireType, want: WireType, field: &Field) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "field {} is sent as a {} value, but it is {} on the wire",
            field.number,
            got.name(),
            want.name()
        ))
    }
}

fn packable(ty: Type) -> bool {
    matches!(
        ty,
        Type::Int32
            | Type::Int64
            | Type::Uint32
            | Type::Uint64
            | Type::Bool
            | Type::Double
            | Type::Float
    )
}

fn scalar_wire(ty: Type) -> WireType {
    match ty {
        Type::Double => WireType::Fixed64,
        Type::Float => WireType::Fixed32,
        _ => WireType::Varint,
    }
}

fn finite(number: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(number)
        .map(Value::Number)
        .ok_or_else(|| format!("{number} has no JSON form"))
}

/// The zero value a Go field holds when nothing was sent for it.
fn zero(ty: Type) -> Value {
    match ty {
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 => Value::from(0),
        Type::Double | Type::Float => Value::from(0.0),
        Type::Bool => Value::Bool(false),
        Type::Special(Special::Quantity) => Value::String("0".into()),
        Type::Special(Special::IntOrString) => Value::from(0),
        Type::Special(Special::Time | Special::MicroTime | Special::FieldsV1) => Value::Null,
        Type::Message(_) => Value::Object(Map::new()),
    }
}

/// Whether a decoded value is its type's zero value, which `omitempty` leaves out in Go's JSON
/// (and which Kubernetes' defaulting reads as "not set" for the structs it does not leave out).
fn is_zero(value: &Value, ty: Type) -> bool {
    match ty {
        Type::String | Type::Bytes => value.as_str() == Some(""),
        Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 => {
            value.as_i64() == Some(0) || value.as_u64() == Some(0)
        }
        Type::Double | Type::Float => value.as_f64() == Some(0.0),
        Type::Bool => value == &Value::Bool(false),
        Type::Special(Special::IntOrString) => value == &Value::from(0),
        // Go's JSON writes structs even when empty: `spec: {}`.
        Type::Special(_) | Type::Message(_) => false,
    }
}

/// The JSON form of the messages that Kubernetes encodes in JSON by hand.
fn special_value(special: Special, bytes: &[u8], field: &Field) -> Result<Option<Value>, String> {
    let mut reader = Reader::new(bytes);
    let (mut seconds, mut nanos, mut int_val, mut kind) = (0i64, 0i32, 0i32, 0i64);
    let mut text: Option<&[u8]> = None;
    while !reader.at_end() {
        let (number, wire) = reader.tag()?;
        match (special, number, wire) {
            (Special::Time | Special::MicroTime, 1, WireType::Varint) => {
                seconds = reader.varint()? as i64
            }
            (Special::Time | Special::MicroTime, 2, WireType::Varint) => {
                nanos = reader.varint()? as i32
            }
            (Special::IntOrString, 1, WireType::Varint) => kind = reader.varint()? as i64,
            (Special::IntOrString, 2, WireType::Varint) => int_val = reader.varint()? as i32,
            (Special::IntOrString, 3, WireType::LengthDelimited)
            | (Special::Quantity, 1, WireType::LengthDelimited)
            | (Special::FieldsV1, 1, WireType::LengthDelimited) => text = Some(reader.bytes()?),
            (_, number, wire) => {
                return Err(format!(
                    "field {} ({special:?}) has no {} field {number}",
                    field.number,
                    wire.name()
                ))
            }
        }
    }
    let text_str = || -> Result<&str, String> {
        std::str::from_utf8(text.unwrap_or_default()).map_err(|_| "a string is not UTF-8".into())
    };
    Ok(match special {
        Special::Time | Special::MicroTime => {
            if seconds == 0 && nanos == 0 {
                // Go's zero time, which its JSON encoding writes as null.
                return Ok(None);
            }
            let micros = (special == Special::MicroTime).then_some(nanos / 1000);
            Some(Value::String(rfc3339(seconds, nanos, micros)?))
        }
        Special::Quantity => {
            let q = text_str()?;
            Some(Value::String(if q.is_empty() { "0" } else { q }.to_owned()))
        }
        Special::IntOrString => match kind {
            0 => Some(Value::from(int_val)),
            1 => Some(Value::String(text_str()?.to_owned())),
            other => {
                return Err(format!(
                    "IntOrString type {other} is neither 0 (int) nor 1 (string)"
                ))
            }
        },
        Special::FieldsV1 => {
            let raw = text.unwrap_or(b"{}");
            Some(serde_json::from_slice(raw).map_err(|e| format!("fieldsV1 is not JSON: {e}"))?)
        }
    })
}

/// `2006-01-02T15:04:05Z`, or with `.000000` microseconds, in UTC as Go's `metav1.Time` and
/// `MicroTime` write it; years outside 0..=9999 have no such form.
fn rfc3339(seconds: i64, nanos: i32, micros: Option<i32>) -> Result<String, String> {
    let out_of_range = || format!("the time {seconds}s {nanos}ns is out of range");
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(out_of_range());
    }
    // Go's `Time.MarshalJSON` refuses years outside 0..=9999.
    let t = crate::time::utc_civil(seconds)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(out_of_range)?;
    let fraction = micros.map(|u| format!(".{u:06}")).unwrap_or_default();
    Ok(format!("{}{fraction}Z", t.strftime("%Y-%m-%dT%H:%M:%S")))
}

#[cfg(test)]
mod tests;
