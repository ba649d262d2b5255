//! The registry's decisions, as pure functions of the object as stored, the request and the
//! time: what a create stores, what an update or patch turns the object into (or that it
//! changes nothing), what a delete does (at once, marked with a grace period, held by
//! finalizers), the `Scale` view and its validation, a binding, a namespace's finalize, and
//! the checks of an `Eviction`. Everything a kind does differently comes from its
//! [`Strategy`](minik_api::kinds::Strategy); nothing here names a kind. `mod.rs` reads,
//! writes and retries around these.

use minik_api::kinds::Deletion;
use minik_api::patch;
use minik_api::request::{DeleteOptions, PatchKind, Propagation, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::{ApiError, FieldError, FieldPath, ObjectRef};
use minik_store::Revision;
use serde_json::{json, Map, Value};

use super::Scope;

/// The metadata only the server writes: a create resets it, an update keeps what is stored.
const SERVER_OWNED: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// What a write step decided to do with the object it read.
#[derive(Debug, PartialEq)]
pub(super) enum Outcome {
    Write(Value),
    Unchanged,
    Delete,
}

pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn meta_mut(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON or YAML object".into()))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(ApiError::BadRequest("metadata: must be an object".into()));
    }
    Ok(meta.as_object_mut().expect("checked above"))
}

/// Checks `apiVersion` and `kind` of a body against the resource it was sent to, and fills
/// them in when absent (curl users often leave them out).
pub(super) fn check_type_meta(info: &ResourceInfo, object: &mut Value) -> Result<(), ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON or YAML object".into()))?;
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = map.get("kind").and_then(Value::as_str).map(str::to_owned);
    match (api_version.as_deref(), kind.as_deref()) {
        (None | Some(""), None | Some("")) => {}
        (Some(v), Some(k)) if v == info.api_version() && k == info.kind => {}
        (v, k) => {
            let v = v.unwrap_or(&info.api_version()).to_owned();
            let k = k.unwrap_or(info.kind).to_owned();
            return Err(ApiError::BadRequest(match resources::by_kind(&v, &k) {
                Err(unknown) => unknown,
                Ok(other) => format!(
                    "the body is a {} {}, but it was sent to {}",
                    other.api_version(),
                    other.kind,
                    info.qualified_plural()
                ),
            }));
        }
    }
    map.insert("apiVersion".into(), Value::String(info.api_version()));
    map.insert("kind".into(), Value::String(info.kind.into()));
    Ok(())
}

/// Whether a change touches more than metadata and status: what bumps `metadata.generation`.
fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(a) != strip(b)
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The API versions an `Eviction` body may have, as Kubernetes accepts them.
const EVICTION_VERSIONS: &[&str] = &["policy/v1", "policy/v1beta1"];

/// Checks an `Eviction` body sent to `pods/{name}/eviction` in namespace `ns` and returns the
/// delete options it carries.
pub(super) fn eviction_delete_options(
    ns: &str,
    name: &str,
    body: &Value,
    fv: minik_api::resources::FieldValidation,
) -> Result<DeleteOptions, ApiError> {
    use minik_api::k8s_openapi::api::policy::v1::Eviction;
    use minik_api::resources::FieldValidation;

    let mut body = body.clone();
    let map = body
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON or YAML object".into()))?;
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion").to_owned(), text("kind").to_owned());
    // Both versions have the same fields; the body is read as policy/v1. Left out, apiVersion
    // and kind are those of the subresource, as for other bodies sent with curl.
    match (api_version.as_str(), kind.as_str()) {
        ("", "") => {}
        (v, "Eviction") if EVICTION_VERSIONS.contains(&v) => {}
        (v, k) => {
            return Err(ApiError::BadRequest(format!(
                "the body of pods/eviction must be an Eviction of {}, not {} {}",
                EVICTION_VERSIONS.join(" or "),
                if v.is_empty() { "<no apiVersion>" } else { v },
                if k.is_empty() { "<no kind>" } else { k },
            )))
        }
    }
    map.insert("apiVersion".into(), json!("policy/v1"));
    map.insert("kind".into(), json!("Eviction"));
    let decoded = match fv {
        FieldValidation::Strict => minik_api::decode::from_value_strict::<Eviction>(&body),
        FieldValidation::Warn | FieldValidation::Ignore => {
            minik_api::decode::from_value_lenient::<Eviction>(&body)
        }
    };
    let eviction = decoded.map_err(|e| {
        let strict = if matches!(e, minik_api::decode::DecodeError::UnknownFields(_)) {
            "strict decoding error: "
        } else {
            ""
        };
        ApiError::BadRequest(format!(
            "Eviction in version {:?} cannot be handled as a Eviction: {strict}{e}",
            api_version.strip_prefix("policy/").unwrap_or("v1")
        ))
    })?;
    // Kubernetes' words: the name is required and must be the pod's.
    if eviction.metadata.name.as_deref() != Some(name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    if let Some(body_ns) = eviction.metadata.namespace.as_deref() {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    let Some(options) = eviction.delete_options else {
        return Ok(DeleteOptions::default());
    };
    let mut propagation = options
        .propagation_policy
        .filter(|p| !p.is_empty())
        .map(|p| {
            Propagation::parse(&p).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "deleteOptions.propagationPolicy {p:?} is not valid: use Background, Foreground or Orphan"
                ))
            })
        })
        .transpose()?;
    if options.orphan_dependents == Some(true) {
        propagation = Some(Propagation::Orphan);
    }
    let mut dry_run = false;
    for value in options.dry_run.unwrap_or_default() {
        if value != "All" {
            return Err(ApiError::BadRequest(format!(
                "deleteOptions.dryRun: invalid dry run option {value:?}: the only supported value is \"All\""
            )));
        }
        dry_run = true;
    }
    let preconditions = options.preconditions.unwrap_or_default();
    Ok(DeleteOptions {
        grace_period_seconds: options.grace_period_seconds,
        propagation,
        precondition_uid: preconditions.uid,
        precondition_resource_version: preconditions.resource_version,
        dry_run,
    })
}

pub(super) fn invalid_binding(name: &str, field: &str, message: &str) -> ApiError {
    ApiError::BadRequest(format!("Binding {name:?} is invalid: {field}: {message}"))
}

/// Sets (or adds) a condition in `status.conditions`, moving `lastTransitionTime` only when the
/// status changes, as Kubernetes does.
pub(super) fn set_condition(
    object: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: i64,
) {
    let now = timestamp_after(now, 0);
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("made an array above");
    let mut condition =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        condition["reason"] = json!(r);
    }
    if let Some(m) = message {
        condition["message"] = json!(m);
    }
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(existing) => {
            if existing["status"] == status {
                condition["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = condition;
        }
        None => list.push(condition),
    }
}

pub(super) fn apply_patch(
    info: &ResourceInfo,
    kind: PatchKind,
    current: &Value,
    patch_body: &Value,
) -> Result<Value, ApiError> {
    apply_patch_plain(kind, info.kind, current, patch_body)
}

pub(super) fn apply_patch_plain(
    kind: PatchKind,
    object_kind: &str,
    current: &Value,
    patch_body: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Merge => {
            if !patch_body.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            Ok(patch::merge_patch(current, patch_body))
        }
        PatchKind::Strategic => patch::strategic_merge_patch(object_kind, current, patch_body)
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        PatchKind::Json => {
            patch::json_patch(current, patch_body).map_err(|e| ApiError::BadRequest(e.to_string()))
        }
    }
}

/// Turns a requested replacement of `current` into the object to store: server-owned fields
/// kept, status or spec kept as the scope says, preconditions checked, admitted, generation
/// bumped when the spec changed; or "unchanged" when the result equals what is stored.
#[allow(clippy::too_many_arguments)]
pub(super) fn admit_update(
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    current: &Value,
    revision: Revision,
    mut body: Value,
    scope: Scope,
    opts: WriteOptions,
) -> Result<Outcome, ApiError> {
    check_type_meta(info, &mut body)?;
    let meta = meta_mut(&mut body)?;
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    if let (true, Some(ns)) = (info.namespaced, ns) {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            _ => {}
        }
    }
    // A resourceVersion in the body is a precondition; without one the update is unconditional
    // (still compare-and-swap against what this attempt read).
    if let Some(rv) = meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        if rv != revision.to_string() {
            return Err(ApiError::conflict(ObjectRef::new(
                info.group,
                info.plural,
                name,
            )));
        }
    }

    let mut new = match scope {
        Scope::Status => {
            let mut new = current.clone();
            match body.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        Scope::Main => {
            let current_meta = current
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let meta = meta_mut(&mut body)?;
            meta.insert("name".into(), Value::String(name.into()));
            if let Some(ns) = ns.filter(|_| info.namespaced) {
                meta.insert("namespace".into(), Value::String(ns.into()));
            }
            for server_owned in SERVER_OWNED {
                match current_meta.get(server_owned) {
                    Some(v) => meta.insert(server_owned.into(), v.clone()),
                    None => meta.remove(server_owned),
                };
            }
            if info.has_subresource("status") {
                if let Some(m) = body.as_object_mut() {
                    match current.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
            }
            body
        }
    };
    meta_mut(&mut new)?.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );

    let mut admitted = info.admit_update(&new, current, opts.field_validation)?;
    if spec_changed(&admitted, current) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut admitted)?.insert("generation".into(), json!(generation + 1));
    }
    if &admitted == current {
        return Ok(Outcome::Unchanged);
    }
    if admitted.pointer("/metadata/deletionTimestamp").is_some() && nothing_holds(info, &admitted) {
        return Ok(Outcome::Delete);
    }
    Ok(Outcome::Write(admitted))
}

/// Whether an object marked for deletion may go now: no finalizer is left, its grace period
/// is over (a pod's node cuts it to zero once the containers stopped), and nothing in the
/// object holds it by its kind's rules (a namespace's `spec.finalizers`).
pub(super) fn nothing_holds(info: &ResourceInfo, object: &Value) -> bool {
    let grace = object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    grace == 0 && !has_finalizers(object) && !info.strategy.deletion_held(object)
}

/// RFC 3339, whole seconds, UTC, `seconds` after `now` (seconds since the epoch); past the
/// end of the calendar (a huge grace period) the latest time will do.
pub(super) fn timestamp_after(now: i64, seconds: i64) -> String {
    minik_api::time::rfc3339(minik_api::time::from_unix_seconds(
        now.saturating_add(seconds),
    ))
}

/// Decides what a delete does with the object as it is now (`now` in seconds since the epoch).
pub(super) fn decide_delete(
    info: &ResourceInfo,
    name: &str,
    current: &Value,
    revision: Revision,
    opts: &DeleteOptions,
    now: i64,
) -> Result<Outcome, ApiError> {
    let conflict = |detail: String| ApiError::Conflict {
        target: ObjectRef::new(info.group, info.plural, name),
        detail,
    };
    if let Some(uid) = &opts.precondition_uid {
        let actual = str_at(current, "/metadata/uid").unwrap_or_default();
        if actual != uid {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(rv) = &opts.precondition_resource_version {
        if *rv != revision.to_string() {
            return Err(conflict(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
            )));
        }
    }

    let mut object = current.clone();
    let mut changed = false;
    let meta = meta_mut(&mut object)?;
    let finalizer = match opts.propagation {
        Some(Propagation::Foreground) => Some("foregroundDeletion"),
        Some(Propagation::Orphan) => Some("orphan"),
        _ => None,
    };
    if let Some(f) = finalizer {
        let list = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            if !list.iter().any(|x| x == f) {
                list.push(json!(f));
                changed = true;
            }
        }
    }

    let requested_grace = match info.strategy.deletion(&object) {
        // Marked at once, without grace; whoever holds it (the namespace controller, through
        // `namespaces/{name}/finalize`) lets it go when done.
        Deletion::Finalized { status } => {
            meta_mut(&mut object)?.insert("deletionGracePeriodSeconds".into(), json!(0));
            if nothing_holds(info, &object) {
                return Ok(Outcome::Delete);
            }
            if object.pointer("/metadata/deletionTimestamp").is_none() {
                meta_mut(&mut object)?.insert(
                    "deletionTimestamp".into(),
                    Value::String(timestamp_after(now, 0)),
                );
                changed = true;
            }
            let differs = status.as_object().is_some_and(|fields| {
                fields
                    .iter()
                    .any(|(k, v)| object.pointer(&format!("/status/{k}")) != Some(v))
            });
            if differs {
                object["status"] = status;
                changed = true;
            }
            return Ok(if changed {
                Outcome::Write(object)
            } else {
                Outcome::Unchanged
            });
        }
        Deletion::Graceful { default_seconds } => {
            opts.grace_period_seconds.unwrap_or(default_seconds)
        }
        Deletion::Immediate => 0,
    };
    let current_grace = object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let marked = object.pointer("/metadata/deletionTimestamp").is_some();
    if requested_grace == 0 && !has_finalizers(&object) {
        return Ok(Outcome::Delete);
    }
    // Marking again only ever shortens the grace period.
    if !marked || current_grace.is_some_and(|g| requested_grace < g) {
        let meta = meta_mut(&mut object)?;
        meta.insert(
            "deletionTimestamp".into(),
            Value::String(timestamp_after(now, requested_grace)),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(requested_grace));
        changed = true;
    }
    Ok(if changed {
        Outcome::Write(object)
    } else {
        Outcome::Unchanged
    })
}

/// The `Scale` view (autoscaling/v1) of a scalable object.
pub(super) fn scale_of(info: &ResourceInfo, object: &Value) -> Result<Value, ApiError> {
    let selector = info
        .strategy
        .scale_selector(object)
        .map_err(ApiError::Internal)?;
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

pub(super) fn validate_scale(name: &str, scale: &Value) -> Result<i32, ApiError> {
    let invalid = |value: Value, detail: &str| ApiError::Invalid {
        kind: "Scale".into(),
        group: "autoscaling".into(),
        name: name.into(),
        errors: vec![FieldError::invalid(
            &FieldPath::new("spec").child("replicas"),
            value,
            detail,
        )],
    };
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => match v.as_i64() {
            Some(n) if n < 0 => Err(invalid(v.clone(), "must be greater than or equal to 0")),
            Some(n) => {
                i32::try_from(n).map_err(|_| invalid(v.clone(), "must fit in a 32-bit integer"))
            }
            None => Err(invalid(v.clone(), "must be an integer")),
        },
    }
}

/// A create's body made ready for admission: type and namespace checked and filled in,
/// server-owned metadata reset (`creationTimestamp` is `now`), and the status dropped unless
/// the kind keeps what the client sends.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) body: Value,
    /// `metadata.generateName`, when a name is to be generated from it.
    pub(super) generate_name: Option<String>,
}

pub(super) fn prepare_create(
    info: &ResourceInfo,
    ns: Option<&str>,
    mut body: Value,
    now: i64,
) -> Result<Prepared, ApiError> {
    check_type_meta(info, &mut body)?;
    let meta = meta_mut(&mut body)?;
    if info.namespaced {
        let ns = ns.ok_or_else(|| {
            ApiError::BadRequest(format!("{} must be created in a namespace", info.plural))
        })?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            _ => {}
        }
        meta.insert("namespace".into(), Value::String(ns.into()));
    } else {
        meta.remove("namespace");
    }
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let unwritable = ["resourceVersion", "managedFields", "selfLink"];
    for server_owned in SERVER_OWNED.into_iter().chain(unwritable) {
        meta.remove(server_owned);
    }
    meta.insert(
        "creationTimestamp".into(),
        Value::String(timestamp_after(now, 0)),
    );
    meta.insert("generation".into(), json!(1));
    let named = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let generate_name = meta
        .get("generateName")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty() && !named)
        .map(str::to_owned);
    if info.has_subresource("status") && !info.strategy.keeps_status_on_create() {
        if let Some(map) = body.as_object_mut() {
            map.remove("status");
        }
    }
    Ok(Prepared {
        body,
        generate_name,
    })
}

/// Refuses to create `name` of `info` in a namespace that is being deleted.
pub(super) fn check_namespace_open(
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    namespace: &Value,
) -> Result<(), ApiError> {
    let terminating = namespace.pointer("/metadata/deletionTimestamp").is_some()
        || str_at(namespace, "/status/phase") == Some("Terminating");
    if terminating {
        return Err(ApiError::Forbidden(format!(
            "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            info.qualified_plural()
        )));
    }
    Ok(())
}

/// Refuses a delete of what the kind's rules say may never be deleted.
pub(super) fn check_deletable(
    info: &ResourceInfo,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(why) = info.strategy.undeletable(name) {
        return Err(ApiError::Forbidden(format!(
            "{} {name:?} is forbidden: {why}",
            info.plural
        )));
    }
    if let Some(grace) = opts.grace_period_seconds.filter(|g| *g < 0) {
        return Err(ApiError::Invalid {
            kind: "DeleteOptions".into(),
            group: String::new(),
            name: name.into(),
            errors: vec![FieldError::invalid(
                &FieldPath::new("gracePeriodSeconds"),
                grace,
                "must be greater than or equal to 0",
            )],
        });
    }
    Ok(())
}

/// The node a `Binding` of pod `name` names, checked.
pub(super) fn binding_target(name: &str, binding: &Value) -> Result<String, ApiError> {
    if let Some(body_name) = str_at(binding, "/metadata/name") {
        if body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the binding ({body_name}) does not match the pod name on the URL ({name})"
            )));
        }
    }
    let node = str_at(binding, "/target/name")
        .ok_or_else(|| invalid_binding(name, "target.name", "Required value"))?
        .to_owned();
    if !minik_api::names::dns1123_subdomain(&node).is_empty() {
        return Err(invalid_binding(
            name,
            "target.name",
            &format!("Invalid value: {node:?}"),
        ));
    }
    Ok(node)
}

/// Binds the pod `current` to `node`: refused when it has a node already or is being deleted.
pub(super) fn bind(name: &str, current: &Value, node: &str, now: i64) -> Result<Outcome, ApiError> {
    let refuse = |detail: String| ApiError::Conflict {
        target: ObjectRef::new("", "pods", name),
        detail,
    };
    if let Some(existing) = str_at(current, "/spec/nodeName") {
        return Err(refuse(format!(
            "pod {name} is already assigned to node {existing:?}"
        )));
    }
    if current.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(refuse(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        )));
    }
    let mut pod = current.clone();
    pod["spec"]["nodeName"] = Value::String(node.to_owned());
    set_condition(&mut pod, "PodScheduled", "True", None, None, now);
    Ok(Outcome::Write(pod))
}

/// The `spec.finalizers` of a `namespaces/{name}/finalize` body.
pub(super) fn finalizers_of(body: &Value) -> Result<Vec<String>, ApiError> {
    match body.pointer("/spec/finalizers") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|f| {
                f.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::BadRequest("spec.finalizers: every finalizer must be a string".into())
                })
            })
            .collect(),
        Some(_) => Err(ApiError::BadRequest(
            "spec.finalizers: must be a list of strings".into(),
        )),
    }
}

/// Replaces the `spec.finalizers` of `current`; an object being deleted goes as soon as
/// nothing holds it.
pub(super) fn finalize(info: &ResourceInfo, current: &Value, finalizers: &[String]) -> Outcome {
    let mut object = current.clone();
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    object["spec"]["finalizers"] = json!(finalizers);
    if &object == current {
        return Outcome::Unchanged;
    }
    if object.pointer("/metadata/deletionTimestamp").is_some() && nothing_holds(info, &object) {
        return Outcome::Delete;
    }
    Outcome::Write(object)
}

/// The object a `Scale` change asks for: `current` with the replicas of the requested `Scale`
/// (a replacement, or a patch of the current `Scale`), admitted as an update.
pub(super) fn scale_update(
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    current: &Value,
    revision: Revision,
    change: &super::ScaleChange,
    opts: WriteOptions,
) -> Result<Outcome, ApiError> {
    let current_scale = scale_of(info, current)?;
    let scale = match change {
        super::ScaleChange::Replace(body) => body.clone(),
        super::ScaleChange::Patch(kind, patch_body) => {
            apply_patch_plain(*kind, "Scale", &current_scale, patch_body)?
        }
    };
    let replicas = validate_scale(name, &scale)?;
    let mut body = current.clone();
    if let Some(rv) = str_at(&scale, "/metadata/resourceVersion") {
        meta_mut(&mut body)?.insert("resourceVersion".into(), Value::String(rv.into()));
    }
    if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(replicas));
    }
    admit_update(info, ns, name, current, revision, body, Scope::Main, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_api::resources::by_plural;

    /// 2024-01-01T00:00:00Z.
    const NOW: i64 = 1_704_067_200;

    fn info(plural: &str) -> &'static ResourceInfo {
        by_plural("", "v1", plural)
            .or_else(|| by_plural("apps", "v1", plural))
            .expect("served")
    }

    /// An object of `info` as the store holds it after a create at revision 5.
    fn stored(info: &ResourceInfo, body: Value) -> Value {
        let ns = info.namespaced.then_some("default");
        let prepared = prepare_create(info, ns, body, NOW).unwrap();
        let mut object = prepared.body;
        meta_mut(&mut object)
            .unwrap()
            .insert("uid".into(), json!("uid-1"));
        let mut admitted = info
            .admit_create(&object, Default::default())
            .expect("admitted");
        meta_mut(&mut admitted)
            .unwrap()
            .insert("resourceVersion".into(), json!("5"));
        admitted
    }

    fn pod(node: Option<&str>) -> Value {
        let mut pod = stored(
            info("pods"),
            json!({"metadata": {"name": "web"},
                   "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}),
        );
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        pod
    }

    fn namespace(finalizers: &[&str]) -> Value {
        let mut ns = stored(info("namespaces"), json!({"metadata": {"name": "team-a"}}));
        ns["spec"] = json!({"finalizers": finalizers});
        ns
    }

    fn update(
        info: &ResourceInfo,
        current: &Value,
        body: Value,
        scope: Scope,
    ) -> Result<Outcome, ApiError> {
        let ns = info.namespaced.then_some("default");
        let name = str_at(current, "/metadata/name").unwrap();
        admit_update(
            info,
            ns,
            name,
            current,
            5,
            body,
            scope,
            WriteOptions::default(),
        )
    }

    fn written(outcome: Result<Outcome, ApiError>) -> Value {
        match outcome {
            Ok(Outcome::Write(v)) => v,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn an_update_keeps_what_its_scope_does_not_own() {
        let pods = info("pods");
        let mut current = pod(None);
        current["status"] = json!({"phase": "Pending"});

        // The object itself: its status, and forged server-owned fields, stay as stored.
        let mut body = current.clone();
        body["metadata"]["labels"] = json!({"app": "web"});
        body["metadata"]["uid"] = json!("forged");
        body["status"] = json!({"phase": "Running"});
        let new = written(update(pods, &current, body, Scope::Main));
        assert_eq!(new["metadata"]["labels"]["app"], "web");
        assert_eq!(new["metadata"]["uid"], "uid-1");
        assert_eq!(new["status"]["phase"], "Pending");
        assert_eq!(new["metadata"]["generation"], 1, "labels are not the spec");

        // The status subresource: only the status changes.
        let mut body = current.clone();
        body["status"] = json!({"phase": "Running"});
        body["metadata"]["labels"] = json!({"app": "web"});
        let new = written(update(pods, &current, body, Scope::Status));
        assert_eq!(new["status"]["phase"], "Running");
        assert!(new["metadata"].get("labels").is_none());
    }

    #[test]
    fn an_update_is_refused_unchanged_bumped_or_a_delete() {
        let rs = by_plural("apps", "v1", "replicasets").unwrap();
        let current = stored(
            rs,
            json!({"metadata": {"name": "web"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        let with = |f: &dyn Fn(&mut Value)| {
            let mut body = current.clone();
            f(&mut body);
            update(rs, &current, body, Scope::Main)
        };
        assert_eq!(with(&|_| {}).unwrap(), Outcome::Unchanged);
        let stale = with(&|b| b["metadata"]["resourceVersion"] = json!("4")).unwrap_err();
        assert_eq!(stale.code(), 409);
        let renamed = with(&|b| b["metadata"]["name"] = json!("other")).unwrap_err();
        assert_eq!(renamed.code(), 400);
        let invalid = with(&|b| b["spec"]["replicas"] = json!(-1)).unwrap_err();
        assert_eq!(invalid.code(), 422);
        let scaled = written(with(&|b| b["spec"]["replicas"] = json!(3)));
        assert_eq!(scaled["metadata"]["generation"], 2);

        // Marked for deletion, it goes when its last finalizer is removed.
        let mut marked = current.clone();
        marked["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        marked["metadata"]["finalizers"] = json!(["orphan"]);
        let mut body = marked.clone();
        body["metadata"]["finalizers"] = json!([]);
        assert_eq!(
            update(rs, &marked, body, Scope::Main).unwrap(),
            Outcome::Delete
        );
    }

    fn delete(
        info: &ResourceInfo,
        current: &Value,
        opts: DeleteOptions,
    ) -> Result<Outcome, ApiError> {
        let name = str_at(current, "/metadata/name").unwrap();
        decide_delete(info, name, current, 5, &opts, NOW)
    }

    #[test]
    fn a_delete_follows_the_kinds_rules() {
        let pods = info("pods");
        let grace = |s: i64| DeleteOptions {
            grace_period_seconds: Some(s),
            ..Default::default()
        };
        // A pod no node runs goes at once; one on a node is marked for its grace period.
        assert_eq!(
            delete(pods, &pod(None), DeleteOptions::default()).unwrap(),
            Outcome::Delete
        );
        let marked = written(delete(pods, &pod(Some("n1")), DeleteOptions::default()));
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2024-01-01T00:00:30Z"
        );
        assert_eq!(
            delete(pods, &pod(Some("n1")), grace(0)).unwrap(),
            Outcome::Delete
        );
        // Marking again only shortens the grace period.
        assert_eq!(
            delete(pods, &marked, grace(60)).unwrap(),
            Outcome::Unchanged
        );
        let shorter = written(delete(pods, &marked, grace(10)));
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);

        // A namespace turns Terminating until its spec.finalizers are removed.
        let namespaces = info("namespaces");
        let terminating = written(delete(
            namespaces,
            &namespace(&["kubernetes"]),
            DeleteOptions::default(),
        ));
        assert_eq!(terminating["status"]["phase"], "Terminating");
        assert_eq!(
            terminating["metadata"]["deletionTimestamp"],
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(
            delete(namespaces, &terminating, DeleteOptions::default()).unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(
            delete(namespaces, &namespace(&[]), DeleteOptions::default()).unwrap(),
            Outcome::Delete
        );
        assert_eq!(finalize(namespaces, &terminating, &[]), Outcome::Delete);

        // Orphan propagation holds any object by a finalizer; preconditions are checked first.
        let orphaned = written(delete(
            info("services"),
            &stored(
                info("services"),
                json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
            ),
            DeleteOptions {
                propagation: Some(Propagation::Orphan),
                ..Default::default()
            },
        ));
        assert_eq!(orphaned["metadata"]["finalizers"], json!(["orphan"]));
        let wrong_uid = DeleteOptions {
            precondition_uid: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(delete(pods, &pod(None), wrong_uid).unwrap_err().code(), 409);

        let kept =
            check_deletable(namespaces, "kube-system", &DeleteOptions::default()).unwrap_err();
        assert_eq!(
            kept.to_string(),
            "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"
        );
        assert!(check_deletable(namespaces, "team-a", &DeleteOptions::default()).is_ok());
        assert_eq!(
            check_deletable(pods, "web", &grace(-1)).unwrap_err().code(),
            422
        );
    }

    #[test]
    fn a_create_resets_what_the_server_owns() {
        let body = json!({"metadata": {"name": "n1", "uid": "forged", "generation": 7},
                          "status": {"capacity": {"cpu": "2"}}});
        let node = prepare_create(info("nodes"), None, body.clone(), NOW)
            .unwrap()
            .body;
        assert_eq!(node["kind"], "Node");
        assert_eq!(node["metadata"]["generation"], 1);
        assert_eq!(
            node["metadata"]["creationTimestamp"],
            "2024-01-01T00:00:00Z"
        );
        assert!(node["metadata"].get("uid").is_none());
        assert_eq!(
            node["status"]["capacity"]["cpu"], "2",
            "a node reports its own status"
        );
        let rq = prepare_create(info("resourcequotas"), Some("default"), body, NOW).unwrap();
        assert!(rq.body.get("status").is_none());
        let generated = json!({"metadata": {"generateName": "web-"}});
        let prepared = prepare_create(info("pods"), Some("default"), generated, NOW).unwrap();
        assert_eq!(prepared.generate_name.as_deref(), Some("web-"));
        let elsewhere = json!({"metadata": {"name": "web", "namespace": "other"}});
        assert_eq!(
            prepare_create(info("pods"), Some("default"), elsewhere, NOW)
                .unwrap_err()
                .code(),
            400
        );
        let typed_wrong =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        assert_eq!(
            prepare_create(info("pods"), Some("default"), typed_wrong, NOW)
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn scales_read_and_write_replicas() {
        let rc = by_plural("", "v1", "replicationcontrollers").unwrap();
        let current = stored(
            rc,
            json!({"metadata": {"name": "web"},
                   "spec": {"replicas": 2, "selector": {"app": "web"},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        let scale = scale_of(rc, &current).unwrap();
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web");
        let change = |replicas: Value| {
            let body = json!({"spec": {"replicas": replicas}});
            scale_update(
                rc,
                Some("default"),
                "web",
                &current,
                5,
                &super::super::ScaleChange::Replace(body),
                WriteOptions::default(),
            )
        };
        let scaled = written(change(json!(4)));
        assert_eq!(scaled["spec"]["replicas"], 4);
        for bad in [json!(-1), json!("two"), json!(1u64 << 40)] {
            assert_eq!(change(bad.clone()).unwrap_err().code(), 422, "{bad}");
        }
        let patch =
            super::super::ScaleChange::Patch(PatchKind::Merge, json!({"spec": {"replicas": 0}}));
        let zero = written(scale_update(
            rc,
            Some("default"),
            "web",
            &current,
            5,
            &patch,
            WriteOptions::default(),
        ));
        assert_eq!(zero["spec"]["replicas"], 0);
    }

    #[test]
    fn bindings_and_evictions_are_checked() {
        assert_eq!(
            binding_target("web", &json!({"target": {"name": "n1"}})).unwrap(),
            "n1"
        );
        assert_eq!(
            binding_target("web", &json!({"target": {}}))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            binding_target(
                "web",
                &json!({"metadata": {"name": "db"}, "target": {"name": "n1"}})
            )
            .unwrap_err()
            .code(),
            400
        );
        let bound = written(bind("web", &pod(None), "n1", NOW));
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(
            bind("web", &pod(Some("n2")), "n1", NOW).unwrap_err().code(),
            409
        );

        let fv = Default::default();
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"},
                              "deleteOptions": {"gracePeriodSeconds": 0}});
        let opts = eviction_delete_options("default", "web", &eviction, fv).unwrap();
        assert_eq!(opts.grace_period_seconds, Some(0));
        assert_eq!(
            eviction_delete_options("default", "db", &eviction, fv)
                .unwrap_err()
                .code(),
            400
        );
        let wrong = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
        assert_eq!(
            eviction_delete_options("default", "web", &wrong, fv)
                .unwrap_err()
                .code(),
            400
        );
    }
}
