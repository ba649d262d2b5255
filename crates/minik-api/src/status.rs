//! The one error type of the API, and its rendering as a Kubernetes `Status` object.
//! Every failure a client can see goes through [`ApiError::to_status`], so codes, reasons and
//! messages are the same whichever part of minik produced them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use crate::error::FieldError;

/// Names the object an error is about: `pods "web"` in messages, `details` in the Status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// API group, empty for the core group.
    pub group: String,
    /// The resource's plural name (`pods`), as Kubernetes puts it in `details.kind` for these errors.
    pub resource: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(group: &str, resource: &str, name: &str) -> Self {
        ObjectRef {
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
        }
    }

    /// `pods "web"` or `deployments.apps "web"`.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{} {:?}", self.resource, self.name)
        } else {
            format!("{}.{} {:?}", self.resource, self.group, self.name)
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{} not found", .0.qualified())]
    NotFound(ObjectRef),
    /// A path or resource that does not exist at all (no object name to report).
    #[error("{0}")]
    NoSuchPath(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{} already exists", .0.qualified())]
    AlreadyExists(ObjectRef),
    #[error("Operation cannot be fulfilled on {}: {detail}", .target.qualified())]
    Conflict { target: ObjectRef, detail: String },
    /// A watch or list from a resourceVersion older than the kept history.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{kind} {name:?} is invalid: {}", render_causes(.errors))]
    Invalid {
        /// The object's kind, `Pod`.
        kind: String,
        group: String,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    TooManyRequests(String),
    /// 429 with the cause of the refusal in `details.causes` (an eviction that a disruption
    /// budget refuses: reason `DisruptionBudget`).
    #[error("{message}")]
    TooManyRequestsBecause {
        message: String,
        cause_reason: String,
        cause_message: String,
    },
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// The disk holding the store is full: the write changed nothing and is refused until
    /// space is freed (507; Kubernetes itself passes etcd's "database space exceeded" on as a
    /// 500, which clients cannot tell from a bug).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A client could not reach the server, or the server stopped answering mid-way (connection
    /// refused, a timeout, a broken stream): no server said anything. Made only by clients
    /// (`minik_client::HttpApi`), never answered by the API server, so callers can tell a
    /// transport failure from an answer without reading messages.
    #[error("{0}")]
    Unreachable(String),
    /// An error a remote server answered that has no variant of its own here (for example a
    /// 422 whose causes are kept only as the message). Keeps the server's words verbatim.
    #[error("{message}")]
    Other {
        code: u16,
        reason: String,
        message: String,
    },
}

fn render_causes(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let all: Vec<String> = many.iter().map(|e| e.to_string()).collect();
            format!("[{}]", all.join(", "))
        }
    }
}

/// The message Kubernetes gives for a write that carried a stale resourceVersion.
pub const CONFLICT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

impl ApiError {
    pub fn conflict(target: ObjectRef) -> Self {
        ApiError::Conflict {
            target,
            detail: CONFLICT_MODIFIED.into(),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) | ApiError::NoSuchPath(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::AlreadyExists(_) | ApiError::Conflict { .. } => 409,
            ApiError::Gone(_) => 410,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Invalid { .. } => 422,
            ApiError::TooManyRequests(_) | ApiError::TooManyRequestsBecause { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) | ApiError::Unreachable(_) => 503,
            ApiError::Timeout(_) => 504,
            ApiError::InsufficientStorage(_) => 507,
            ApiError::Other { code, .. } => *code,
        }
    }

    /// The `Status.reason`, a `StatusReason` of Kubernetes.
    pub fn reason(&self) -> &str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) | ApiError::NoSuchPath(_) => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::TooManyRequests(_) | ApiError::TooManyRequestsBecause { .. } => {
                "TooManyRequests"
            }
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) => "Timeout",
            ApiError::InsufficientStorage(_) => "InsufficientStorage",
            // No server answered: there is no Status reason.
            ApiError::Unreachable(_) => "",
            ApiError::Other { reason, .. } => reason,
        }
    }

    /// The server was not reached or stopped answering (see [`ApiError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable(_))
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == 404
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason() == "AlreadyExists"
    }

    /// A stale resourceVersion (or another precondition) made the write fail: read and retry.
    pub fn is_conflict(&self) -> bool {
        self.reason() == "Conflict"
    }

    /// A watch or list from a revision older than the kept history: list again.
    pub fn is_gone(&self) -> bool {
        self.code() == 410
    }

    /// Rebuilds the error a server answered with this `Status` and HTTP code: the client side of
    /// [`ApiError::to_status`]. Messages are kept verbatim.
    pub fn from_status(code: u16, status: &Status) -> ApiError {
        let message = status.message.clone().unwrap_or_default();
        let reason = status.reason.clone().unwrap_or_default();
        let code = status
            .code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(code);
        let target = status.details.as_ref().map(|d| ObjectRef {
            group: d.group.clone().unwrap_or_default(),
            resource: d.kind.clone().unwrap_or_default(),
            name: d.name.clone().unwrap_or_default(),
        });
        match (code, reason.as_str(), target) {
            (404, "NotFound", Some(t)) if !t.name.is_empty() => ApiError::NotFound(t),
            (409, "AlreadyExists", Some(t)) if !t.name.is_empty() => ApiError::AlreadyExists(t),
            (409, "Conflict", Some(t)) => {
                let prefix = format!("Operation cannot be fulfilled on {}: ", t.qualified());
                let detail = message.strip_prefix(&prefix).unwrap_or(&message).to_owned();
                ApiError::Conflict { target: t, detail }
            }
            (400, "BadRequest", _) => ApiError::BadRequest(message),
            (401, _, _) => ApiError::Unauthorized(message),
            (403, _, _) => ApiError::Forbidden(message),
            (404, _, _) => ApiError::NoSuchPath(message),
            (405, _, _) => ApiError::MethodNotAllowed(message),
            (406, _, _) => ApiError::NotAcceptable(message),
            (410, _, _) => ApiError::Gone(message),
            (413, _, _) => ApiError::RequestEntityTooLarge(message),
            (415, _, _) => ApiError::UnsupportedMediaType(message),
            (429, _, _) => match status
                .details
                .as_ref()
                .and_then(|d| d.causes.as_ref())
                .and_then(|c| c.first())
            {
                Some(cause) => ApiError::TooManyRequestsBecause {
                    message,
                    cause_reason: cause.reason.clone().unwrap_or_default(),
                    cause_message: cause.message.clone().unwrap_or_default(),
                },
                None => ApiError::TooManyRequests(message),
            },
            (500, _, _) => ApiError::Internal(message),
            (503, _, _) => ApiError::ServiceUnavailable(message),
            (504, _, _) => ApiError::Timeout(message),
            (507, _, _) => ApiError::InsufficientStorage(message),
            (code, _, _) => ApiError::Other {
                code,
                reason,
                message,
            },
        }
    }

    /// Whether the error is the server's fault (worth logging as an error) rather than the
    /// client's (answered, not logged).
    pub fn is_server_error(&self) -> bool {
        self.code() >= 500
    }

    /// The Kubernetes `Status` object for this error.
    pub fn to_status(&self) -> Status {
        let details = match self {
            ApiError::NotFound(r)
            | ApiError::AlreadyExists(r)
            | ApiError::Conflict { target: r, .. } => Some(StatusDetails {
                name: Some(r.name.clone()),
                group: (!r.group.is_empty()).then(|| r.group.clone()),
                kind: Some(r.resource.clone()),
                ..Default::default()
            }),
            ApiError::Invalid {
                kind,
                group,
                name,
                errors,
            } => Some(StatusDetails {
                name: Some(name.clone()),
                group: (!group.is_empty()).then(|| group.clone()),
                kind: Some(kind.clone()),
                causes: Some(
                    errors
                        .iter()
                        .map(|e| StatusCause {
                            field: Some(e.field.to_string()),
                            message: Some(e.message()),
                            reason: Some(e.reason().into()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ApiError::TooManyRequestsBecause {
                cause_reason,
                cause_message,
                ..
            } => Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    field: None,
                    message: Some(cause_message.clone()),
                    reason: Some(cause_reason.clone()),
                }]),
                ..Default::default()
            }),
            _ => None,
        };
        Status {
            status: Some("Failure".into()),
            message: Some(self.to_string()),
            reason: Some(self.reason().into()),
            code: Some(self.code().into()),
            details,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldPath;

    #[test]
    fn not_found_reads_like_kubernetes() {
        let e = ApiError::NotFound(ObjectRef::new("", "pods", "web"));
        assert_eq!(e.to_string(), "pods \"web\" not found");
        assert_eq!(e.code(), 404);
        let e = ApiError::AlreadyExists(ObjectRef::new("apps", "deployments", "web"));
        assert_eq!(e.to_string(), "deployments.apps \"web\" already exists");
        let s = e.to_status();
        assert_eq!(s.reason.as_deref(), Some("AlreadyExists"));
        assert_eq!(s.details.unwrap().group.as_deref(), Some("apps"));
    }

    #[test]
    fn statuses_round_trip_through_the_client_side() {
        let errors = [
            ApiError::NotFound(ObjectRef::new("", "pods", "web")),
            ApiError::AlreadyExists(ObjectRef::new("apps", "deployments", "web")),
            ApiError::conflict(ObjectRef::new("", "pods", "web")),
            ApiError::BadRequest("bad".into()),
            ApiError::Gone("too old resource version: 1 (5)".into()),
            ApiError::Forbidden("no".into()),
            ApiError::InsufficientStorage("the disk holding the store is full".into()),
        ];
        for e in errors {
            let back = ApiError::from_status(e.code(), &e.to_status());
            assert_eq!(back, e);
        }
        let invalid = ApiError::Invalid {
            kind: "Pod".into(),
            group: String::new(),
            name: "web".into(),
            errors: vec![FieldError::required(&FieldPath::new("spec"), "")],
        };
        let back = ApiError::from_status(422, &invalid.to_status());
        assert_eq!(
            (back.code(), back.reason(), back.to_string()),
            (422, "Invalid", invalid.to_string())
        );
    }

    #[test]
    fn invalid_lists_every_cause() {
        let p = FieldPath::new("spec").child("containers").index(0);
        let e = ApiError::Invalid {
            kind: "Pod".into(),
            group: String::new(),
            name: "web".into(),
            errors: vec![
                FieldError::required(&p.child("name"), ""),
                FieldError::required(&p.child("image"), ""),
            ],
        };
        assert_eq!(
            e.to_string(),
            "Pod \"web\" is invalid: [spec.containers[0].name: Required value, spec.containers[0].image: Required value]"
        );
        let causes = e.to_status().details.unwrap().causes.unwrap();
        assert_eq!(causes[1].field.as_deref(), Some("spec.containers[0].image"));
        assert_eq!(causes[1].reason.as_deref(), Some("FieldValueRequired"));
    }
}
