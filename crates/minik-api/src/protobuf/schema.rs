//! The message table: for every message reachable from the kinds minik accepts in protobuf, its
//! fields by number with their JSON names, types and how Go's JSON encoding treats them.
//! `schema.txt` is written by `generate.py` from Kubernetes' `generated.proto` files and Go
//! struct tags; it is parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// `meta.v1.Time`: seconds and nanos, as RFC 3339 with whole seconds.
    Time,
    /// `meta.v1.MicroTime`: as RFC 3339 with microseconds.
    MicroTime,
    /// `meta.v1.FieldsV1`: raw JSON bytes, embedded as JSON.
    FieldsV1,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Bytes,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Bool,
    Double,
    Float,
    Special(Special),
    /// A message of the table, by its index in `Schema::messages`.
    Message(usize),
}

#[derive(Debug)]
pub(crate) struct Field {
    pub number: u32,
    /// The JSON name; empty for an embedded (`,inline`) struct, whose fields join the parent's.
    pub json: &'static str,
    pub ty: Type,
    pub repeated: bool,
    /// `map<string, ty>`: entries are messages with the key in field 1 and the value in field 2.
    pub map: bool,
    /// The Go field is a pointer: present on the wire exactly when set, zero values included.
    pub pointer: bool,
    /// `omitempty`: Go's JSON leaves the zero value out, so a non-pointer zero means "not set".
    pub omitempty: bool,
    pub inline: bool,
}

#[derive(Debug)]
pub(crate) struct Message {
    pub name: &'static str,
    /// Sorted by number.
    pub fields: Vec<Field>,
}

impl Message {
    pub(crate) fn field(&self, number: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .map(|i| &self.fields[i])
    }
}

#[derive(Debug)]
pub(crate) struct Schema {
    pub messages: Vec<Message>,
    by_name: HashMap<&'static str, usize>,
}

impl Schema {
    pub(crate) fn message(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}

const TABLE: &str = include_str!("schema.txt");

/// The parsed table, or why `schema.txt` is broken (a bug that the unit tests catch).
pub(crate) fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| parse(TABLE))
        .as_ref()
        .map_err(Clone::clone)
}

fn special(name: &str) -> Option<Special> {
    Some(match name {
        "meta.v1.Time" => Special::Time,
        "meta.v1.MicroTime" => Special::MicroTime,
        "meta.v1.FieldsV1" => Special::FieldsV1,
        "resource.Quantity" => Special::Quantity,
        "intstr.IntOrString" => Special::IntOrString,
        _ => return None,
    })
}

fn parse(text: &'static str) -> Result<Schema, String> {
    // First pass: message names, so fields can refer to messages defined later.
    let mut by_name = HashMap::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("message ") {
            let index = by_name.len();
            if by_name.insert(name.trim(), index).is_some() {
                return Err(format!("schema.txt: message {name} is defined twice"));
            }
        }
    }
    let mut messages: Vec<Message> = Vec::with_capacity(by_name.len());
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("schema.txt line {}: {why}: {line:?}", n + 1);
        let line_trimmed = line.trim();
        if line_trimmed.is_empty() || line_trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("message ") {
            messages.push(Message {
                name: name.trim(),
                fields: Vec::new(),
            });
            continue;
        }
        let Some(message) = messages.last_mut() else {
            return Err(bad("a field before any message"));
        };
        let mut words = line_trimmed.split_whitespace();
        let (Some(number), Some(json), Some(ty)) = (words.next(), words.next(), words.next())
        else {
            return Err(bad("expected NUMBER JSON-NAME TYPE"));
        };
        let number: u32 = number.parse().map_err(|_| bad("bad field number"))?;
        let ty = match ty {
            "string" => Type::String,
            "bytes" => Type::Bytes,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "uint32" => Type::Uint32,
            "uint64" => Type::Uint64,
            "bool" => Type::Bool,
            "double" => Type::Double,
            "float" => Type::Float,
            name => match (special(name), by_name.get(name)) {
                (Some(s), _) => Type::Special(s),
                (None, Some(&index)) => Type::Message(index),
                (None, None) => return Err(bad("unknown message type")),
            },
        };
        let mut field = Field {
            number,
            json: if json == "-" { "" } else { json },
            ty,
            repeated: false,
            map: false,
            pointer: false,
            omitempty: false,
            inline: false,
        };
        for flag in words {
            match flag {
                "repeated" => field.repeated = true,
                "map" => field.map = true,
                "pointer" => field.pointer = true,
                "omitempty" => field.omitempty = true,
                "inline" => field.inline = true,
                _ => return Err(bad("unknown flag")),
            }
        }
        if field.inline != field.json.is_empty()
            || (field.inline && !matches!(ty, Type::Message(_)))
        {
            return Err(bad(
                "only message fields are inline, and they have no JSON name",
            ));
        }
        if field.fields_conflict() {
            return Err(bad("a field is at most one of repeated, map and inline"));
        }
        if message.fields.last().is_some_and(|f| f.number >= number) {
            return Err(bad("field numbers must increase"));
        }
        message.fields.push(field);
    }
    Ok(Schema { messages, by_name })
}

impl Field {
    fn fields_conflict(&self) -> bool {
        u8::from(self.repeated) + u8::from(self.map) + u8::from(self.inline) > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_knows_the_served_kinds() {
        let schema = schema().unwrap();
        for kind in [
            "core.v1.Pod",
            "core.v1.Service",
            "core.v1.Binding",
            "apps.v1.Deployment",
            "autoscaling.v1.Scale",
            "meta.v1.DeleteOptions",
        ] {
            assert!(schema.message(kind).is_some(), "{kind}");
        }
        let spec = &schema.messages[schema.message("apps.v1.DeploymentSpec").unwrap()];
        let replicas = spec.field(1).unwrap();
        assert_eq!(
            (replicas.json, replicas.ty, replicas.pointer),
            ("replicas", Type::Int32, true)
        );
        let volume = &schema.messages[schema.message("core.v1.Volume").unwrap()];
        assert!(volume.field(2).unwrap().inline);
    }

    #[test]
    fn broken_tables_are_refused_with_the_line() {
        let err = parse("message a\n  1 x b.C\n").unwrap_err();
        assert!(err.contains("line 2: unknown message type"), "{err}");
        let err = parse("message a\n  2 x string\n  1 y string\n").unwrap_err();
        assert!(err.contains("increase"), "{err}");
        let err = parse("  1 x string\n").unwrap_err();
        assert!(err.contains("before any message"), "{err}");
    }
}
