//! The options of API requests, shared by the API server and its clients: what a write, a
//! patch or a delete may ask for beyond the object itself.

use serde_json::Value;

use crate::resources::FieldValidation;

/// Options every write takes.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: admit and answer, but store nothing.
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

/// A patch as a client sent it.
#[derive(Clone, Debug)]
pub struct Patch {
    pub kind: PatchKind,
    pub body: Value,
}

/// The kinds of patch a client can send, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`, what kubectl sends.
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
}

/// How dependents of a deleted object are treated (`propagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl PatchKind {
    /// The content type a client sends this patch with.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchKind::Merge => "application/merge-patch+json",
            PatchKind::Strategic => "application/strategic-merge-patch+json",
            PatchKind::Json => "application/json-patch+json",
        }
    }

    /// The patch kind a content type names, if any.
    pub fn from_content_type(media: &str) -> Option<PatchKind> {
        [PatchKind::Merge, PatchKind::Strategic, PatchKind::Json]
            .into_iter()
            .find(|k| k.content_type() == media)
    }
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }

    pub fn parse(s: &str) -> Option<Propagation> {
        [
            Propagation::Background,
            Propagation::Foreground,
            Propagation::Orphan,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

impl DeleteOptions {
    /// The options as a `DeleteOptions` body, as kubectl sends them.
    pub fn to_body(&self) -> Value {
        let mut body = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = self.grace_period_seconds {
            body["gracePeriodSeconds"] = g.into();
        }
        if let Some(p) = self.propagation {
            body["propagationPolicy"] = p.as_str().into();
        }
        if self.precondition_uid.is_some() || self.precondition_resource_version.is_some() {
            body["preconditions"] = serde_json::json!({
                "uid": self.precondition_uid,
                "resourceVersion": self.precondition_resource_version,
            });
        }
        if self.dry_run {
            body["dryRun"] = serde_json::json!(["All"]);
        }
        body
    }
}
