//! Field-level validation errors, shaped like Kubernetes' `field.Error` so that messages and
//! `Status.details.causes` read exactly as a Kubernetes user expects.

use std::fmt;

use serde_json::Value;

/// A path to a field inside an object, rendered as Kubernetes does:
/// `spec.containers[0].ports[1].containerPort`, `metadata.labels[app]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path that starts at the top-level field `name`.
    pub fn new(name: &str) -> Self {
        FieldPath(name.to_owned())
    }

    /// The field `name` below this one: `a` → `a.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return FieldPath::new(name);
        }
        FieldPath(format!("{}.{name}", self.0))
    }

    /// The element `i` of this list: `a` → `a[i]`.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The entry `key` of this map: `a` → `a[key]`.
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field. The variants and their wording follow Kubernetes'
/// `k8s.io/apimachinery/pkg/util/validation/field`.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldErrorKind {
    /// `Required value`, optionally followed by a detail.
    Required { detail: String },
    /// `Invalid value: "x": detail`.
    Invalid { value: Value, detail: String },
    /// `Unsupported value: "x": supported values: "a", "b"`.
    NotSupported {
        value: Value,
        supported: Vec<String>,
    },
    /// `Duplicate value: "x"`.
    Duplicate { value: Value },
    /// `Forbidden: detail`.
    Forbidden { detail: String },
    /// `Too long: may not be more than N bytes`.
    TooLong { value: Value, max: usize },
    /// `Invalid value: "x": detail` for a value of the wrong JSON type.
    TypeInvalid { value: Value, detail: String },
}

/// One problem with one field of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: FieldPath,
    pub kind: FieldErrorKind,
}

impl FieldError {
    pub fn required(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(
            field,
            FieldErrorKind::Required {
                detail: detail.into(),
            },
        )
    }

    pub fn invalid(field: &FieldPath, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(
            field,
            FieldErrorKind::Invalid {
                value: value.into(),
                detail: detail.into(),
            },
        )
    }

    pub fn not_supported(field: &FieldPath, value: impl Into<Value>, supported: &[&str]) -> Self {
        Self::new(
            field,
            FieldErrorKind::NotSupported {
                value: value.into(),
                supported: supported.iter().map(|s| s.to_string()).collect(),
            },
        )
    }

    pub fn duplicate(field: &FieldPath, value: impl Into<Value>) -> Self {
        Self::new(
            field,
            FieldErrorKind::Duplicate {
                value: value.into(),
            },
        )
    }

    pub fn forbidden(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(
            field,
            FieldErrorKind::Forbidden {
                detail: detail.into(),
            },
        )
    }

    pub fn too_long(field: &FieldPath, value: impl Into<Value>, max: usize) -> Self {
        Self::new(
            field,
            FieldErrorKind::TooLong {
                value: value.into(),
                max,
            },
        )
    }

    fn new(field: &FieldPath, kind: FieldErrorKind) -> Self {
        FieldError {
            field: field.clone(),
            kind,
        }
    }

    /// The machine-readable reason, as in `Status.details.causes[].reason`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required { .. } => "FieldValueRequired",
            FieldErrorKind::Invalid { .. } => "FieldValueInvalid",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::Duplicate { .. } => "FieldValueDuplicate",
            FieldErrorKind::Forbidden { .. } => "FieldValueForbidden",
            FieldErrorKind::TooLong { .. } => "FieldValueTooLong",
            FieldErrorKind::TypeInvalid { .. } => "FieldValueTypeInvalid",
        }
    }

    /// The message without the field path: `Required value`, `Invalid value: "x": why`.
    pub fn message(&self) -> String {
        match &self.kind {
            FieldErrorKind::Required { detail } if detail.is_empty() => "Required value".into(),
            FieldErrorKind::Required { detail } => format!("Required value: {detail}"),
            FieldErrorKind::Invalid { value, detail }
            | FieldErrorKind::TypeInvalid { value, detail } => {
                if detail.is_empty() {
                    format!("Invalid value: {}", render_value(value))
                } else {
                    format!("Invalid value: {}: {detail}", render_value(value))
                }
            }
            FieldErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    render_value(value),
                    list.join(", ")
                )
            }
            FieldErrorKind::Duplicate { value } => {
                format!("Duplicate value: {}", render_value(value))
            }
            FieldErrorKind::Forbidden { detail } => format!("Forbidden: {detail}"),
            FieldErrorKind::TooLong { max, .. } => {
                format!("Too long: may not be more than {max} bytes")
            }
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// Renders a value the way Kubernetes prints it in messages: strings quoted, the rest as JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Every problem found in one object; validation reports them all at once.
pub type ErrorList = Vec<FieldError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubernetes() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("ports");
        assert_eq!(p.as_str(), "spec.containers[0].ports");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("app")
                .as_str(),
            "metadata.labels[app]"
        );
    }

    #[test]
    fn messages_render_like_kubernetes() {
        let p = FieldPath::new("metadata").child("name");
        assert_eq!(
            FieldError::required(&p, "").to_string(),
            "metadata.name: Required value"
        );
        assert_eq!(
            FieldError::invalid(&p, "Foo", "must be lowercase").to_string(),
            "metadata.name: Invalid value: \"Foo\": must be lowercase"
        );
        assert_eq!(
            FieldError::invalid(&p, -1, "must be greater than or equal to 0").to_string(),
            "metadata.name: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::not_supported(&p, "Sometimes", &["Always", "Never"]).to_string(),
            "metadata.name: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\""
        );
    }
}
