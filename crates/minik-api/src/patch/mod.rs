//! The three PATCH bodies minik accepts — JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes' strategic merge patch — as pure functions from (object, patch) to a new object.
//!
//! Strategic merge patch is what `kubectl apply`, `kubectl edit` and `kubectl patch` send. It is a
//! JSON merge patch that knows, per field, whether a list is replaced whole (the default), merged
//! element by element on a merge key, or merged as a set of scalars, and it understands the
//! directives documented in Kubernetes' `strategic-merge-patch.md`: `$patch`, `$retainKeys`,
//! `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>`. Which fields merge is read
//! from `FIELD_RULES`, a table transcribed from the `patchStrategy`/`patchMergeKey` struct tags
//! of `k8s.io/api`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use json_patch::PatchOperation;
use serde_json::{Map, Value};

use crate::error::FieldPath;

mod three_way;
pub use three_way::three_way_merge_patch;

/// A patch that cannot be applied. The message names the problem and, for a strategic merge
/// patch, the field path where it was found (`spec.containers[1]: ...`); for a JSON patch it
/// names the failing operation. It is the client's mistake: the API server answers it with 400
/// (malformed patch) or 422 (a patch that does not apply).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

impl PatchError {
    /// An error found at `path`; a problem with the patch as a whole has an empty path.
    fn at(path: &FieldPath, message: impl fmt::Display) -> Self {
        if path.as_str().is_empty() {
            PatchError(message.to_string())
        } else {
            PatchError(format!("{path}: {message}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch
// ---------------------------------------------------------------------------------------------

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`): objects merge
/// recursively, `null` deletes a key, and anything else — lists included — replaces the target.
/// A patch that is not an object replaces the whole document. Every JSON value is a valid merge
/// patch, so this cannot fail.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut document = target.clone();
    json_patch::merge(&mut document, patch);
    document
}

// ---------------------------------------------------------------------------------------------
// JSON patch
// ---------------------------------------------------------------------------------------------

/// Kubernetes' API server refuses JSON patches with more operations than this.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most JSON, in bytes, that the `copy` operations of one patch may duplicate. Without a
/// bound, a few dozen operations that each copy the document into itself would double it every
/// time and exhaust memory; Kubernetes guards against the same thing with a copy size limit.
const MAX_JSON_PATCH_COPIED_BYTES: usize = 4 * 1024 * 1024;

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`): a JSON array of `add`,
/// `remove`, `replace`, `move`, `copy` and `test` operations, applied in order and atomically —
/// if any operation fails (a `test` that does not match, a path that does not exist), the error
/// says which one and nothing is applied.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(raw_operations) = patch else {
        return Err(PatchError(format!(
            "a JSON patch must be a JSON array of operations, not {}",
            json_type(patch)
        )));
    };
    if raw_operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError(format!(
            "the JSON patch has {} operations, more than the {MAX_JSON_PATCH_OPERATIONS} allowed",
            raw_operations.len()
        )));
    }
    let mut operations = Vec::with_capacity(raw_operations.len());
    for (i, raw) in raw_operations.iter().enumerate() {
        let operation: PatchOperation = serde_json::from_value(raw.clone())
            .map_err(|e| PatchError(format!("operation {i}: {e}")))?;
        operations.push(operation);
    }

    // The operations are applied one at a time to a copy, so a failure can name its operation
    // and simply drop the copy; the caller's document is never touched.
    let mut document = target.clone();
    let mut copied_bytes = 0usize;
    for (i, operation) in operations.iter().enumerate() {
        let name = operation_name(operation);
        let path = operation.path();
        if let PatchOperation::Copy(copy) = operation {
            if let Some(source) = document.pointer(copy.from.as_str()) {
                copied_bytes = copied_bytes.saturating_add(approximate_json_size(source));
                if copied_bytes > MAX_JSON_PATCH_COPIED_BYTES {
                    return Err(PatchError(format!(
                        "operation {i} ({name} {path}): the patch copies more than \
                         {MAX_JSON_PATCH_COPIED_BYTES} bytes"
                    )));
                }
            }
        }
        json_patch::patch_unsafe(&mut document, std::slice::from_ref(operation))
            .map_err(|e| PatchError(format!("operation {i} ({name} {path}): {}", e.kind)))?;
    }
    Ok(document)
}

fn operation_name(operation: &PatchOperation) -> &'static str {
    match operation {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Roughly how many bytes `value` takes as JSON, without serializing it.
fn approximate_json_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().fold(2, |sum, item| {
            sum.saturating_add(approximate_json_size(item) + 1)
        }),
        Value::Object(map) => map.iter().fold(2, |sum, (key, item)| {
            sum.saturating_add(key.len() + 4 + approximate_json_size(item))
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: the field table
// ---------------------------------------------------------------------------------------------

/// What the Kubernetes API types say about one field, where it is not a plain merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldShape {
    /// A nested struct whose own fields are looked up under this name.
    Struct(&'static str),
    /// `patchStrategy:"merge" patchMergeKey:"<key>"` on a list of structs named `element`:
    /// elements are matched on `key` and merged one by one.
    MergeByKey {
        key: &'static str,
        element: &'static str,
    },
    /// `patchStrategy:"merge"` on a list of scalars: an ordered set.
    MergeSet,
}

/// One row of the table: field `field` of the struct (or kind) `owner` has shape `shape`.
struct FieldRule {
    owner: &'static str,
    field: &'static str,
    shape: FieldShape,
}

const fn rule(owner: &'static str, field: &'static str, shape: FieldShape) -> FieldRule {
    FieldRule {
        owner,
        field,
        shape,
    }
}

const fn by_key(key: &'static str, element: &'static str) -> FieldShape {
    FieldShape::MergeByKey { key, element }
}

use FieldShape::{MergeSet, Struct};

/// The kinds minik serves. Their top-level fields are the first rows of `FIELD_RULES`; any
/// other kind is patched without a schema (maps merge, every list is replaced).
const SERVED_KINDS: &[&str] = &[
    "Pod",
    "ReplicaSet",
    "ReplicationController",
    "Deployment",
    "Service",
    "Endpoints",
    "Namespace",
    "Node",
    "Event",
    "ResourceQuota",
    "RuntimeClass",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "StorageClass",
];

/// Where each struct sits and which of its lists merge, transcribed from the `patchStrategy`
/// and `patchMergeKey` struct tags of `k8s.io/api` (`core/v1/types.go`, `apps/v1/types.go`) and
/// `k8s.io/apimachinery/pkg/apis/meta/v1/types.go`. A field that is not listed is a plain field:
/// a map there merges key by key and a list is replaced whole. Lists that carry no patch
/// strategy in Kubernetes — `PodSpec.tolerations`, `PodSpec.readinessGates`, `NodeSpec.taints`,
/// `Endpoints.subsets`, `PodStatus.containerStatuses`, `ResourceQuotaSpec.scopes`, ... — are
/// deliberately absent. To support a new kind, add its top-level fields and any structs of its
/// own; the shared structs (`ObjectMeta`, `PodTemplateSpec`, `PodSpec`) are reused as they are.
static FIELD_RULES: &[FieldRule] = &[
    // Top level of each kind: every object's `metadata` is an ObjectMeta.
    rule("Pod", "metadata", Struct("ObjectMeta")),
    rule("Pod", "spec", Struct("PodSpec")),
    rule("Pod", "status", Struct("PodStatus")),
    rule("ReplicaSet", "metadata", Struct("ObjectMeta")),
    rule("ReplicaSet", "spec", Struct("ReplicaSetSpec")),
    rule("ReplicaSet", "status", Struct("ReplicaSetStatus")),
    rule("ReplicationController", "metadata", Struct("ObjectMeta")),
    rule(
        "ReplicationController",
        "spec",
        Struct("ReplicationControllerSpec"),
    ),
    rule(
        "ReplicationController",
        "status",
        Struct("ReplicationControllerStatus"),
    ),
    rule("Deployment", "metadata", Struct("ObjectMeta")),
    rule("Deployment", "spec", Struct("DeploymentSpec")),
    rule("Deployment", "status", Struct("DeploymentStatus")),
    rule("Service", "metadata", Struct("ObjectMeta")),
    rule("Service", "spec", Struct("ServiceSpec")),
    rule("Service", "status", Struct("ServiceStatus")),
    rule("Endpoints", "metadata", Struct("ObjectMeta")),
    rule("Namespace", "metadata", Struct("ObjectMeta")),
    rule("Namespace", "status", Struct("NamespaceStatus")),
    rule("Node", "metadata", Struct("ObjectMeta")),
    rule("Node", "spec", Struct("NodeSpec")),
    rule("Node", "status", Struct("NodeStatus")),
    rule("Event", "metadata", Struct("ObjectMeta")),
    rule("ResourceQuota", "metadata", Struct("ObjectMeta")),
    // node/v1 RuntimeClass: `scheduling.tolerations` is atomic, the rest plain fields.
    rule("RuntimeClass", "metadata", Struct("ObjectMeta")),
    rule("ConfigMap", "metadata", Struct("ObjectMeta")),
    rule("Secret", "metadata", Struct("ObjectMeta")),
    rule("ServiceAccount", "metadata", Struct("ObjectMeta")),
    // batch/v1 and the other apps/v1 workloads: their pod templates are a Pod's structs.
    rule("Job", "metadata", Struct("ObjectMeta")),
    rule("Job", "spec", Struct("JobSpec")),
    rule("JobSpec", "template", Struct("PodTemplateSpec")),
    rule("CronJob", "metadata", Struct("ObjectMeta")),
    rule("CronJob", "spec", Struct("CronJobSpec")),
    rule("CronJobSpec", "jobTemplate", Struct("JobTemplateSpec")),
    rule("JobTemplateSpec", "metadata", Struct("ObjectMeta")),
    rule("JobTemplateSpec", "spec", Struct("JobSpec")),
    rule("DaemonSet", "metadata", Struct("ObjectMeta")),
    rule("DaemonSet", "spec", Struct("DaemonSetSpec")),
    rule("DaemonSetSpec", "template", Struct("PodTemplateSpec")),
    rule("StatefulSet", "metadata", Struct("ObjectMeta")),
    rule("StatefulSet", "spec", Struct("StatefulSetSpec")),
    rule("StatefulSetSpec", "template", Struct("PodTemplateSpec")),
    rule("ControllerRevision", "metadata", Struct("ObjectMeta")),
    rule("PodDisruptionBudget", "metadata", Struct("ObjectMeta")),
    // core/v1 ServiceAccount: `Secrets []ObjectReference ... patchStrategy:"merge"
    // patchMergeKey:"name"`.
    rule(
        "ServiceAccount",
        "secrets",
        by_key("name", "ObjectReference"),
    ),
    // core/v1 PersistentVolume and storage/v1 StorageClass: no list of theirs carries a patch
    // strategy (`accessModes`, `mountOptions`, `allowedTopologies` are replaced whole).
    rule("PersistentVolume", "metadata", Struct("ObjectMeta")),
    rule("PersistentVolumeClaim", "metadata", Struct("ObjectMeta")),
    rule(
        "PersistentVolumeClaim",
        "status",
        Struct("PersistentVolumeClaimStatus"),
    ),
    // core/v1 PersistentVolumeClaimStatus: `Conditions ... patchStrategy:"merge"
    // patchMergeKey:"type"`.
    rule(
        "PersistentVolumeClaimStatus",
        "conditions",
        by_key("type", "PersistentVolumeClaimCondition"),
    ),
    rule("StorageClass", "metadata", Struct("ObjectMeta")),
    // meta/v1 ObjectMeta: `OwnerReferences ... patchStrategy:"merge" patchMergeKey:"uid"`.
    rule(
        "ObjectMeta",
        "ownerReferences",
        by_key("uid", "OwnerReference"),
    ),
    // meta/v1 ObjectMeta: `Finalizers []string ... patchStrategy:"merge"`.
    rule("ObjectMeta", "finalizers", MergeSet),
    // Workloads carry a pod template (apps/v1 ReplicaSetSpec, DeploymentSpec; core/v1
    // ReplicationControllerSpec); its metadata and spec are the same structs as a Pod's.
    rule("ReplicaSetSpec", "template", Struct("PodTemplateSpec")),
    rule(
        "ReplicationControllerSpec",
        "template",
        Struct("PodTemplateSpec"),
    ),
    rule("DeploymentSpec", "template", Struct("PodTemplateSpec")),
    // apps/v1 DeploymentSpec: `Strategy ... patchStrategy:"retainKeys"`. The retainKeys
    // strategy only tells clients to send `$retainKeys`; the directive itself is honoured on
    // every map.
    rule("DeploymentSpec", "strategy", Struct("DeploymentStrategy")),
    rule("PodTemplateSpec", "metadata", Struct("ObjectMeta")),
    rule("PodTemplateSpec", "spec", Struct("PodSpec")),
    // core/v1 PodSpec.
    // `Volumes ... patchStrategy:"merge,retainKeys" patchMergeKey:"name"`.
    rule("PodSpec", "volumes", by_key("name", "Volume")),
    // `InitContainers`, `Containers`: `patchStrategy:"merge" patchMergeKey:"name"`.
    rule("PodSpec", "initContainers", by_key("name", "Container")),
    rule("PodSpec", "containers", by_key("name", "Container")),
    // `EphemeralContainers ... patchStrategy:"merge" patchMergeKey:"name"`.
    rule(
        "PodSpec",
        "ephemeralContainers",
        by_key("name", "EphemeralContainer"),
    ),
    // `ImagePullSecrets ... patchStrategy:"merge" patchMergeKey:"name"`.
    rule(
        "PodSpec",
        "imagePullSecrets",
        by_key("name", "LocalObjectReference"),
    ),
    // `HostAliases ... patchStrategy:"merge" patchMergeKey:"ip"`.
    rule("PodSpec", "hostAliases", by_key("ip", "HostAlias")),
    // `TopologySpreadConstraints ... patchStrategy:"merge" patchMergeKey:"topologyKey"`.
    rule(
        "PodSpec",
        "topologySpreadConstraints",
        by_key("topologyKey", "TopologySpreadConstraint"),
    ),
    // `SchedulingGates ... patchStrategy:"merge" patchMergeKey:"name"`.
    rule(
        "PodSpec",
        "schedulingGates",
        by_key("name", "PodSchedulingGate"),
    ),
    // `ResourceClaims ... patchStrategy:"merge,retainKeys" patchMergeKey:"name"`.
    rule(
        "PodSpec",
        "resourceClaims",
        by_key("name", "PodResourceClaim"),
    ),
    // core/v1 Container.
    // `Ports ... patchStrategy:"merge" patchMergeKey:"containerPort"`.
    rule(
        "Container",
        "ports",
        by_key("containerPort", "ContainerPort"),
    ),
    // `Env ... patchStrategy:"merge" patchMergeKey:"name"`.
    rule("Container", "env", by_key("name", "EnvVar")),
    // `VolumeMounts ... patchStrategy:"merge" patchMergeKey:"mountPath"`.
    rule(
        "Container",
        "volumeMounts",
        by_key("mountPath", "VolumeMount"),
    ),
    // `VolumeDevices ... patchStrategy:"merge" patchMergeKey:"devicePath"`.
    rule(
        "Container",
        "volumeDevices",
        by_key("devicePath", "VolumeDevice"),
    ),
    // core/v1 EphemeralContainerCommon, inlined into EphemeralContainer: the same four tags.
    rule(
        "EphemeralContainer",
        "ports",
        by_key("containerPort", "ContainerPort"),
    ),
    rule("EphemeralContainer", "env", by_key("name", "EnvVar")),
    rule(
        "EphemeralContainer",
        "volumeMounts",
        by_key("mountPath", "VolumeMount"),
    ),
    rule(
        "EphemeralContainer",
        "volumeDevices",
        by_key("devicePath", "VolumeDevice"),
    ),
    // core/v1 PodStatus.
    // `Conditions ... patchStrategy:"merge" patchMergeKey:"type"`.
    rule("PodStatus", "conditions", by_key("type", "PodCondition")),
    // `HostIPs`, `PodIPs`: `patchStrategy:"merge" patchMergeKey:"ip"`.
    rule("PodStatus", "hostIPs", by_key("ip", "HostIP")),
    rule("PodStatus", "podIPs", by_key("ip", "PodIP")),
    // `ResourceClaimStatuses ... patchStrategy:"merge,retainKeys" patchMergeKey:"name"`.
    rule(
        "PodStatus",
        "resourceClaimStatuses",
        by_key("name", "PodResourceClaimStatus"),
    ),
    // apps/v1 ReplicaSetStatus, DeploymentStatus; core/v1 ReplicationControllerStatus:
    // `Conditions ... patchStrategy:"merge" patchMergeKey:"type"`.
    rule(
        "ReplicaSetStatus",
        "conditions",
        by_key("type", "ReplicaSetCondition"),
    ),
    rule(
        "DeploymentStatus",
        "conditions",
        by_key("type", "DeploymentCondition"),
    ),
    rule(
        "ReplicationControllerStatus",
        "conditions",
        by_key("type", "ReplicationControllerCondition"),
    ),
    // core/v1 ServiceSpec: `Ports ... patchStrategy:"merge" patchMergeKey:"port"`.
    rule("ServiceSpec", "ports", by_key("port", "ServicePort")),
    // core/v1 ServiceStatus: `Conditions ... patchStrategy:"merge" patchMergeKey:"type"`.
    rule("ServiceStatus", "conditions", by_key("type", "Condition")),
    // core/v1 NodeSpec: `PodCIDRs []string ... patchStrategy:"merge"`.
    rule("NodeSpec", "podCIDRs", MergeSet),
    // core/v1 NodeStatus: `Conditions`, `Addresses`: `patchStrategy:"merge" patchMergeKey:"type"`.
    rule("NodeStatus", "conditions", by_key("type", "NodeCondition")),
    rule("NodeStatus", "addresses", by_key("type", "NodeAddress")),
    // core/v1 NamespaceStatus: `Conditions ... patchStrategy:"merge" patchMergeKey:"type"`.
    rule(
        "NamespaceStatus",
        "conditions",
        by_key("type", "NamespaceCondition"),
    ),
];

/// The shape of field `field` of struct `owner`, if the table says anything about it.
fn field_shape(owner: Option<&str>, field: &str) -> Option<FieldShape> {
    let owner = owner?;
    FIELD_RULES
        .iter()
        .find(|r| r.owner == owner && r.field == field)
        .map(|r| r.shape)
}

/// How a list field is patched.
#[derive(Clone, Copy, Debug)]
enum ListStrategy {
    /// The patch's list replaces the original (lists without a patch strategy).
    Replace,
    MergeByKey {
        key: &'static str,
        element: &'static str,
    },
    MergeSet,
}

fn list_strategy(shape: Option<FieldShape>) -> ListStrategy {
    match shape {
        Some(FieldShape::MergeByKey { key, element }) => ListStrategy::MergeByKey { key, element },
        Some(FieldShape::MergeSet) => ListStrategy::MergeSet,
        Some(FieldShape::Struct(_)) | None => ListStrategy::Replace,
    }
}

fn struct_name(shape: Option<FieldShape>) -> Option<&'static str> {
    match shape {
        Some(FieldShape::Struct(name)) => Some(name),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: directives
// ---------------------------------------------------------------------------------------------

/// `$patch: replace | delete | merge`, in a map or as an element of a list.
const PATCH_DIRECTIVE: &str = "$patch";
/// `$retainKeys: [fields]`: the fields of this map that survive; all others are cleared.
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
/// `$setElementOrder/<field>: [elements]`: the order of the merged list `<field>`.
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder/";
/// `$deleteFromPrimitiveList/<field>: [values]`: values to remove from the list `<field>`.
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList/";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatchDirective {
    Replace,
    Delete,
    Merge,
}

fn parse_patch_directive(value: &Value, path: &FieldPath) -> Result<PatchDirective, PatchError> {
    match value.as_str() {
        Some("replace") => Ok(PatchDirective::Replace),
        Some("delete") => Ok(PatchDirective::Delete),
        Some("merge") => Ok(PatchDirective::Merge),
        _ => Err(PatchError::at(
            path,
            format!(
                "unknown $patch directive {value}: expected \"replace\", \"delete\" or \"merge\""
            ),
        )),
    }
}

fn is_directive_key(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// The list value of a `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` key,
/// with the field it names.
fn parse_list_directive<'a>(
    directive_key: &'a str,
    field: &'a str,
    value: &'a Value,
    path: &FieldPath,
) -> Result<(&'a str, &'a [Value]), PatchError> {
    if field.is_empty() {
        return Err(PatchError::at(
            path,
            format!("{directive_key} does not name a field"),
        ));
    }
    match value {
        Value::Array(items) => Ok((field, items.as_slice())),
        other => Err(PatchError::at(
            path,
            format!("{directive_key} must be a list, not {}", json_type(other)),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: the merge
// ---------------------------------------------------------------------------------------------

/// Applies a Kubernetes strategic merge patch (`application/strategic-merge-patch+json`) to
/// `original`, an object of kind `kind`.
///
/// Maps merge recursively and `null` deletes a key. Lists follow `FIELD_RULES`: lists with a
/// merge key merge element by element, lists of scalars with the merge strategy merge as sets,
/// and all other lists are replaced. A kind minik does not serve is patched with the same rules
/// but no table, i.e. like a JSON merge patch whose directives are still honoured.
///
/// What callers should know, especially where this departs from Kubernetes' implementation:
/// - Element order follows Kubernetes: `$setElementOrder/<field>` wins, then the relative order
///   of the patch's own elements, then the original's; elements of the original that the patch
///   does not mention keep their place. Without `$setElementOrder`, a new element that no
///   existing patch element follows is appended (Kubernetes' code would put it first; its
///   documentation and users expect it last).
/// - A value taken from the patch where the original has nothing to merge into (a new key, a
///   new list element, a type change) is used as sent, without `null`s and directives.
/// - `$patch: delete` in a map removes the key (as documented; Kubernetes' code leaves `{}`);
///   at the top level it is an error, since deleting is what DELETE is for.
/// - `$patch: merge` is accepted as an explicit "merge as usual" (Kubernetes rejects it).
/// - The result never contains a directive key, and a malformed patch is a `PatchError` naming
///   the field path, never a panic.
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch_map) = patch else {
        return Err(PatchError(format!(
            "a strategic merge patch must be a JSON object, not {}",
            json_type(patch)
        )));
    };
    let Value::Object(original_map) = original else {
        return Err(PatchError(format!(
            "the object being patched must be a JSON object, not {}",
            json_type(original)
        )));
    };
    let root = SERVED_KINDS.iter().copied().find(|served| *served == kind);
    match merge_map(original_map.clone(), patch_map, root, &FieldPath::new(""))? {
        Some(merged) => Ok(Value::Object(merged)),
        None => Err(PatchError(
            "$patch: delete at the top level would delete the whole object; send a DELETE request instead"
                .to_owned(),
        )),
    }
}

/// Merges `patch` into `original`, or into nothing when `original` is absent or of another JSON
/// type: then the patch value is taken as sent, minus its nulls and directives. `None` means the
/// patch deleted the value (`$patch: delete`).
fn merge_value(
    original: Option<Value>,
    patch: &Value,
    shape: Option<FieldShape>,
    order: Option<&[Value]>,
    path: &FieldPath,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(patch_map) => {
            let base = match original {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            Ok(merge_map(base, patch_map, struct_name(shape), path)?.map(Value::Object))
        }
        Value::Array(patch_list) => {
            let base = match original {
                Some(Value::Array(list)) => Some(list),
                _ => None,
            };
            let merged = merge_list(base, patch_list, list_strategy(shape), order, path)?;
            Ok(Some(Value::Array(merged)))
        }
        scalar => Ok(Some(scalar.clone())),
    }
}

/// Merges the map `patch` into `original`, a struct named `owner` in `FIELD_RULES` (or
/// unknown). Returns `None` when the patch deletes the map.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    owner: Option<&'static str>,
    path: &FieldPath,
) -> Result<Option<Map<String, Value>>, PatchError> {
    if let Some(directive) = patch.get(PATCH_DIRECTIVE) {
        match parse_patch_directive(directive, path)? {
            PatchDirective::Delete => return Ok(None),
            // The rest of the patch map becomes the whole map: merge it into nothing.
            PatchDirective::Replace => original.clear(),
            PatchDirective::Merge => {}
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS_DIRECTIVE) {
        apply_retain_keys(&mut original, patch, retain, path)?;
    }

    let mut orders: Vec<(&str, &[Value])> = Vec::new();
    let mut deletions: Vec<(&str, &[Value])> = Vec::new();
    let mut fields: Vec<(&str, &Value)> = Vec::new();
    for (key, value) in patch {
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS_DIRECTIVE {
            continue;
        }
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER_PREFIX) {
            orders.push(parse_list_directive(key, field, value, path)?);
        } else if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            deletions.push(parse_list_directive(key, field, value, path)?);
        } else {
            fields.push((key, value));
        }
    }

    // Deletions go first so that a value both deleted and added in one patch ends up present,
    // whatever order the keys arrived in.
    for (field, doomed) in &deletions {
        if let Some(Value::Array(list)) = original.get_mut(*field) {
            let doomed: HashSet<Identity> = doomed.iter().map(Identity::of).collect();
            list.retain(|item| !doomed.contains(&Identity::of(item)));
        }
    }

    for (key, patch_value) in &fields {
        if patch_value.is_null() {
            original.remove(*key);
            continue;
        }
        let shape = field_shape(owner, key);
        let order = orders
            .iter()
            .find(|(field, _)| field == key)
            .map(|(_, order)| *order);
        let previous = original.get_mut(*key).map(std::mem::take);
        match merge_value(previous, patch_value, shape, order, &path.child(key))? {
            Some(merged) => {
                original.insert((*key).to_owned(), merged);
            }
            None => {
                original.remove(*key);
            }
        }
    }

    // `$setElementOrder` for a list the patch does not otherwise touch only reorders it.
    for (field, order) in &orders {
        if fields.iter().any(|(key, _)| key == field) {
            continue;
        }
        let strategy = list_strategy(field_shape(owner, field));
        if matches!(strategy, ListStrategy::Replace) {
            continue;
        }
        if let Some(Value::Array(list)) = original.get_mut(*field) {
            let previous = std::mem::take(list);
            *list = merge_list(
                Some(previous),
                &[],
                strategy,
                Some(*order),
                &path.child(field),
            )?;
        }
    }
    Ok(Some(original))
}

/// Honours `$retainKeys`: every field the patch sets must be listed, and fields of the original
/// that are not listed are cleared. This is how a union such as a Deployment's `strategy`
/// switches member (`rollingUpdate` disappears when `type` becomes `Recreate`).
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &FieldPath,
) -> Result<(), PatchError> {
    let not_a_list = || PatchError::at(path, "$retainKeys must be a list of field names");
    let Value::Array(names) = retain else {
        return Err(not_a_list());
    };
    let mut keep: HashSet<&str> = HashSet::new();
    for name in names {
        keep.insert(name.as_str().ok_or_else(not_a_list)?);
    }
    for (key, value) in patch {
        if value.is_null() || is_directive_key(key) {
            continue;
        }
        if !keep.contains(key.as_str()) {
            return Err(PatchError::at(
                path,
                format!("the patch sets {key:?}, which $retainKeys does not list"),
            ));
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// Merges the list `patch` into `original` (`None` when there is no list to merge into).
fn merge_list(
    original: Option<Vec<Value>>,
    patch: &[Value],
    strategy: ListStrategy,
    order: Option<&[Value]>,
    path: &FieldPath,
) -> Result<Vec<Value>, PatchError> {
    match strategy {
        ListStrategy::Replace => replace_list(patch, path),
        ListStrategy::MergeByKey { key, element } => {
            merge_keyed_list(original, patch, key, element, order, path)
        }
        ListStrategy::MergeSet => merge_set(original, patch, order, path),
    }
}

/// A list without a patch strategy is the patch's list, minus directive elements. An explicit
/// `$patch: merge` cannot be honoured here, since there is nothing to match elements on.
fn replace_list(patch: &[Value], path: &FieldPath) -> Result<Vec<Value>, PatchError> {
    let mut replaced = Vec::with_capacity(patch.len());
    for (i, item) in patch.iter().enumerate() {
        let item_path = path.index(i);
        if let Some(directive) = item.as_object().and_then(|m| m.get(PATCH_DIRECTIVE)) {
            match parse_patch_directive(directive, &item_path)? {
                // The list is replaced anyway; a delete marker names nothing that would stay.
                PatchDirective::Replace | PatchDirective::Delete => continue,
                PatchDirective::Merge => {
                    return Err(PatchError::at(
                        &item_path,
                        "$patch: merge is not possible here: this list has no merge key and is always replaced",
                    ))
                }
            }
        }
        if let Some(value) = merge_value(None, item, None, None, &item_path)? {
            replaced.push(value);
        }
    }
    Ok(replaced)
}

/// One element of a merged list on its way to its final position.
struct Placed {
    value: Value,
    identity: Option<Identity>,
}

/// Merges a list whose elements are matched on `key` (containers by `name`, ports by
/// `containerPort`, ...). Special elements come first, as in Kubernetes: `{$patch: delete,
/// <key>: v}` removes every element whose key is `v`, and `{$patch: replace}` makes the list
/// exactly the patch's other elements. Each remaining patch element is merged into the first
/// element with the same key, or appended.
fn merge_keyed_list(
    original: Option<Vec<Value>>,
    patch: &[Value],
    key: &'static str,
    element: &'static str,
    order: Option<&[Value]>,
    path: &FieldPath,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut doomed: HashSet<Identity> = HashSet::new();
    let mut updates: Vec<(FieldPath, &Map<String, Value>, Identity)> = Vec::new();
    for (i, item) in patch.iter().enumerate() {
        let item_path = path.index(i);
        let Value::Object(map) = item else {
            return Err(PatchError::at(
                &item_path,
                format!(
                    "expected an object with merge key {key:?}, not {}",
                    json_type(item)
                ),
            ));
        };
        let directive = match map.get(PATCH_DIRECTIVE) {
            Some(directive) => Some(parse_patch_directive(directive, &item_path)?),
            None => None,
        };
        match directive {
            Some(PatchDirective::Delete) => {
                let value = merge_key_value(map, key, &item_path)?;
                doomed.insert(Identity::of(value));
            }
            Some(PatchDirective::Replace) => replace = true,
            // A bare `{$patch: merge}` only restates this list's strategy.
            Some(PatchDirective::Merge) if map.len() == 1 => {}
            Some(PatchDirective::Merge) | None => {
                let value = merge_key_value(map, key, &item_path)?;
                updates.push((item_path, map, Identity::of(value)));
            }
        }
    }

    let order_ids = match order {
        Some(order) => Some(keyed_order_identities(order, key, path)?),
        None => None,
    };
    if let Some(order_ids) = &order_ids {
        check_follows_order(updates.iter().map(|(_, _, id)| id), order_ids, path)?;
    }

    let original_ids: Vec<Option<Identity>> = original
        .iter()
        .flatten()
        .map(|item| keyed_identity(item, key))
        .collect();
    let merge_into_original = !replace && original.is_some();

    let mut slots: Vec<Option<Placed>> = Vec::new();
    if merge_into_original {
        let mut first_with: HashMap<Identity, usize> = HashMap::new();
        for item in original.into_iter().flatten() {
            let identity = keyed_identity(&item, key);
            if identity.as_ref().is_some_and(|id| doomed.contains(id)) {
                continue;
            }
            if let Some(id) = &identity {
                first_with.entry(id.clone()).or_insert(slots.len());
            }
            slots.push(Some(Placed {
                value: item,
                identity,
            }));
        }
        for (item_path, update, identity) in &updates {
            match first_with.get(identity).copied() {
                Some(at) => {
                    let Some(slot) = slots.get_mut(at) else {
                        continue;
                    };
                    let previous = match slot.take() {
                        Some(Placed {
                            value: Value::Object(map),
                            ..
                        }) => map,
                        _ => Map::new(),
                    };
                    *slot =
                        merge_map(previous, update, Some(element), item_path)?.map(|map| Placed {
                            value: Value::Object(map),
                            identity: Some(identity.clone()),
                        });
                }
                None => {
                    if let Some(map) = merge_map(Map::new(), update, Some(element), item_path)? {
                        first_with.insert(identity.clone(), slots.len());
                        slots.push(Some(Placed {
                            value: Value::Object(map),
                            identity: Some(identity.clone()),
                        }));
                    }
                }
            }
        }
    } else {
        // With nothing to merge into (a new list, or `$patch: replace`) the patch's elements
        // are taken as sent, as Kubernetes does: two ports that share a containerPort but not
        // a protocol stay two ports.
        for (item_path, update, identity) in &updates {
            if let Some(map) = merge_map(Map::new(), update, Some(element), item_path)? {
                slots.push(Some(Placed {
                    value: Value::Object(map),
                    identity: Some(identity.clone()),
                }));
            }
        }
    }
    let merged: Vec<Placed> = slots.into_iter().flatten().collect();

    if !merge_into_original && order_ids.is_none() {
        return Ok(merged.into_iter().map(|placed| placed.value).collect());
    }
    let append_new = order_ids.is_none();
    let order_ids =
        order_ids.unwrap_or_else(|| updates.iter().map(|(_, _, id)| id.clone()).collect());
    Ok(normalize_order(
        merged,
        &order_ids,
        &original_ids,
        append_new,
    ))
}

/// The value of the merge key of a patch element, which it must have.
fn merge_key_value<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &FieldPath,
) -> Result<&'a Value, PatchError> {
    map.get(key)
        .ok_or_else(|| PatchError::at(path, format!("element has no merge key {key:?}")))
}

fn keyed_identity(item: &Value, key: &str) -> Option<Identity> {
    item.as_object()
        .and_then(|map| map.get(key))
        .map(Identity::of)
}

/// The identities named by `$setElementOrder` for a list merged on `key`: each element must be
/// an object carrying the key (kubectl sends just `{name: ...}`).
fn keyed_order_identities(
    order: &[Value],
    key: &str,
    path: &FieldPath,
) -> Result<Vec<Identity>, PatchError> {
    order
        .iter()
        .enumerate()
        .map(|(i, item)| {
            keyed_identity(item, key).ok_or_else(|| {
                PatchError::at(
                    path,
                    format!("$setElementOrder element {i} has no merge key {key:?}"),
                )
            })
        })
        .collect()
}

/// Kubernetes requires the patch's elements to appear in `$setElementOrder` and in the same
/// relative order; anything else means the client computed the patch wrongly.
fn check_follows_order<'a>(
    patch_ids: impl Iterator<Item = &'a Identity>,
    order: &[Identity],
    path: &FieldPath,
) -> Result<(), PatchError> {
    if order.is_empty() {
        return Ok(());
    }
    let mut remaining = order.iter();
    for id in patch_ids {
        if !remaining.any(|ordered| ordered == id) {
            return Err(PatchError::at(
                path,
                "the patch's elements are missing from $setElementOrder or in a different order",
            ));
        }
    }
    Ok(())
}

/// Merges a list of scalars as an ordered set (`metadata.finalizers`): the original's values,
/// then the patch's new ones, without duplicates. Values are removed with
/// `$deleteFromPrimitiveList/<field>`, which the enclosing map handles; a `{$patch: replace}`
/// element makes the list exactly the patch's values.
fn merge_set(
    original: Option<Vec<Value>>,
    patch: &[Value],
    order: Option<&[Value]>,
    path: &FieldPath,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut values: Vec<&Value> = Vec::new();
    for (i, item) in patch.iter().enumerate() {
        let item_path = path.index(i);
        let directive = match item {
            Value::Object(map) => map.get(PATCH_DIRECTIVE),
            _ => None,
        };
        match (item, directive) {
            (Value::Object(_), Some(directive)) => {
                match parse_patch_directive(directive, &item_path)? {
                    PatchDirective::Replace => replace = true,
                    PatchDirective::Merge => {}
                    PatchDirective::Delete => {
                        return Err(PatchError::at(
                            &item_path,
                            "$patch: delete cannot name a value of a list of scalars; use $deleteFromPrimitiveList",
                        ))
                    }
                }
            }
            (Value::Object(_) | Value::Array(_), _) => {
                return Err(PatchError::at(
                    &item_path,
                    format!(
                        "expected a scalar: this list is merged as a set, not {}",
                        json_type(item)
                    ),
                ))
            }
            (scalar, _) => values.push(scalar),
        }
    }

    let order_ids = match order {
        Some(order) => Some(scalar_order_identities(order, path)?),
        None => None,
    };
    let value_ids: Vec<Identity> = values.iter().map(|v| Identity::of(v)).collect();
    if let Some(order_ids) = &order_ids {
        check_follows_order(value_ids.iter(), order_ids, path)?;
    }

    let original_ids: Vec<Option<Identity>> = original
        .iter()
        .flatten()
        .map(|item| Some(Identity::of(item)))
        .collect();
    let merge_into_original = !replace && original.is_some();
    let merged: Vec<Placed> = if merge_into_original {
        let mut seen: HashSet<Identity> = HashSet::new();
        original
            .into_iter()
            .flatten()
            .chain(values.iter().map(|v| (*v).clone()))
            .filter_map(|value| {
                let identity = Identity::of(&value);
                seen.insert(identity.clone()).then_some(Placed {
                    value,
                    identity: Some(identity),
                })
            })
            .collect()
    } else {
        values
            .iter()
            .zip(&value_ids)
            .map(|(value, identity)| Placed {
                value: (*value).clone(),
                identity: Some(identity.clone()),
            })
            .collect()
    };

    if !merge_into_original && order_ids.is_none() {
        return Ok(merged.into_iter().map(|placed| placed.value).collect());
    }
    let append_new = order_ids.is_none();
    let order_ids = order_ids.unwrap_or(value_ids);
    Ok(normalize_order(
        merged,
        &order_ids,
        &original_ids,
        append_new,
    ))
}

fn scalar_order_identities(order: &[Value], path: &FieldPath) -> Result<Vec<Identity>, PatchError> {
    order
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(_) | Value::Array(_) => Err(PatchError::at(
                path,
                format!(
                    "$setElementOrder element {i} must be a scalar, not {}",
                    json_type(item)
                ),
            )),
            scalar => Ok(Identity::of(scalar)),
        })
        .collect()
}

/// Puts a merged list in Kubernetes' order. Elements named by `order` (the `$setElementOrder`
/// list, or else the patch's own elements) take that relative order; the others — elements only
/// the server has — keep the original's relative order; and the two sequences are interleaved
/// by the original's positions, so a server-only element stays where it was relative to the
/// elements around it.
///
/// A patch element the original does not have cannot be placed by the original's positions.
/// With `$setElementOrder` it goes where Kubernetes puts it (before the server-only elements
/// that follow). Without it (`append_new`), it takes the position of the next patch element
/// that the original has, and if there is none it is appended: `kubectl patch` adding a
/// container puts it last, as the strategic merge patch documentation describes.
fn normalize_order(
    merged: Vec<Placed>,
    order: &[Identity],
    original: &[Option<Identity>],
    append_new: bool,
) -> Vec<Value> {
    let mut order_position: HashMap<&Identity, usize> = HashMap::new();
    for (i, id) in order.iter().enumerate() {
        order_position.entry(id).or_insert(i);
    }
    let mut original_position: HashMap<&Identity, usize> = HashMap::new();
    for (i, id) in original.iter().enumerate() {
        if let Some(id) = id {
            original_position.entry(id).or_insert(i);
        }
    }
    let (mut in_order, mut server_only): (Vec<Placed>, Vec<Placed>) = merged
        .into_iter()
        .partition(|placed| position_in(&order_position, placed).is_some());
    in_order.sort_by_key(|placed| position_in(&order_position, placed).unwrap_or(usize::MAX));
    server_only.sort_by_key(|placed| position_in(&original_position, placed).unwrap_or(usize::MAX));

    let mut in_order_positions: Vec<Option<usize>> = in_order
        .iter()
        .map(|placed| position_in(&original_position, placed))
        .collect();
    if append_new {
        let mut next_known = None;
        for position in in_order_positions.iter_mut().rev() {
            match position {
                Some(known) => next_known = Some(*known),
                None => *position = next_known,
            }
        }
    }

    let mut left = server_only
        .into_iter()
        .map(|placed| {
            let position = position_in(&original_position, &placed);
            (placed.value, position)
        })
        .peekable();
    let mut right = in_order
        .into_iter()
        .map(|placed| placed.value)
        .zip(in_order_positions)
        .peekable();
    let mut ordered = Vec::new();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, left_position)), Some((_, right_position))) => {
                match (left_position, right_position) {
                    (Some(l), Some(r)) => l < r,
                    (_, None) => append_new,
                    (None, Some(_)) => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((value, _)) = next {
            ordered.push(value);
        }
    }
    ordered
}

/// Where `placed` sits in `positions`, if it is there at all.
fn position_in(positions: &HashMap<&Identity, usize>, placed: &Placed) -> Option<usize> {
    placed
        .identity
        .as_ref()
        .and_then(|id| positions.get(id).copied())
}

/// What makes two list elements (or two merge key values) the same, as Go's `==` on decoded
/// JSON decides it: numbers compare as float64 (so `80` and `80.0` match), everything else by
/// value. It is a canonical string so that lists are merged with hash lookups, not in
/// quadratic time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Identity(String);

impl Identity {
    fn of(value: &Value) -> Self {
        Identity(match value {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => format!("bool:{b}"),
            Value::Number(n) => match n.as_f64() {
                // `+ 0.0` folds -0 into 0, which Go also considers equal.
                Some(f) => format!("number:{}", f + 0.0),
                None => format!("number:{n}"),
            },
            Value::String(s) => format!("string:{s}"),
            other => format!("json:{other}"),
        })
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    // ---- JSON merge patch ---------------------------------------------------------------

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        // The test cases of RFC 7386, appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(merge_patch(&target, &patch), expected, "{target} + {patch}");
        }
    }

    #[test]
    fn merge_patch_replaces_lists_even_for_known_kinds() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            merge_patch(&pod, &patch),
            json!({"spec": {"containers": [{"name": "c"}]}})
        );
    }

    // ---- JSON patch ---------------------------------------------------------------------

    #[test]
    fn json_patch_applies_every_operation_in_order() {
        let target = json!({"a": 1, "list": [1, 2], "m": {"x": "y"}});
        let patch = json!([
            {"op": "test", "path": "/a", "value": 1},
            {"op": "add", "path": "/b", "value": {"c": true}},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "remove", "path": "/list/0"},
            {"op": "replace", "path": "/a", "value": 10},
            {"op": "move", "from": "/m/x", "path": "/moved"},
            {"op": "copy", "from": "/b", "path": "/copied"},
        ]);
        assert_eq!(
            json_patch(&target, &patch),
            Ok(json!({
                "a": 10,
                "b": {"c": true},
                "copied": {"c": true},
                "list": [2, 3],
                "m": {},
                "moved": "y",
            }))
        );
    }

    #[test]
    fn json_patch_errors_name_the_failing_operation() {
        let target = json!({"a": 1});
        let cases = [
            (
                json!({"op": "add", "path": "/a", "value": 1}),
                "a JSON patch must be a JSON array of operations, not an object",
            ),
            (
                json!([{"op": "add", "value": 1}]),
                "operation 0: missing field `path`",
            ),
            (
                json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 5}]),
                "operation 1 (test /a): value did not match",
            ),
            (
                json!([{"op": "remove", "path": "/nope"}]),
                "operation 0 (remove /nope): path is invalid",
            ),
            (
                json!([{"op": "move", "from": "/nope", "path": "/b"}]),
                "operation 0 (move /b): \"from\" path is invalid",
            ),
            (
                json!([{"op": "replace", "path": "/a/b/c", "value": 1}]),
                "operation 0 (replace /a/b/c): path is invalid",
            ),
        ];
        for (patch, expected) in cases {
            assert_eq!(
                json_patch(&target, &patch),
                Err(PatchError(expected.to_owned())),
                "{patch}"
            );
        }
    }

    #[test]
    fn json_patch_rejects_unknown_operations_and_bad_pointers() {
        let target = json!({"a": 1});
        for patch in [
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!(["add"]),
        ] {
            let Err(PatchError(message)) = json_patch(&target, &patch) else {
                panic!("{patch} should fail");
            };
            assert!(message.starts_with("operation 0: "), "{message}");
        }
    }

    #[test]
    fn json_patch_bounds_what_copies_can_grow() {
        // Each copy doubles the document; unbounded, forty of them would need terabytes.
        let copies: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
            .collect();
        let Err(PatchError(message)) = json_patch(&json!({"a": "x"}), &Value::Array(copies)) else {
            panic!("the copies should be refused");
        };
        assert!(message.contains("copies more than"), "{message}");
    }

    // ---- Strategic merge patch: rules and directives ------------------------------------

    /// One strategic merge patch case: name, kind, original, patch, expected result.
    type Case = (&'static str, &'static str, Value, Value, Value);

    fn check(cases: Vec<Case>) {
        for (name, kind, original, patch, expected) in cases {
            assert_eq!(
                strategic_merge_patch(kind, &original, &patch),
                Ok(expected),
                "case: {name}"
            );
        }
    }

    fn containers(names: &[&str]) -> Value {
        Value::Array(names.iter().map(|n| json!({"name": n})).collect())
    }

    fn pod_with(containers: Value) -> Value {
        json!({"kind": "Pod", "spec": {"containers": containers}})
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        check(vec![
            (
                "maps merge recursively; kubectl sets a label to null to delete it",
                "Pod",
                json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}}}),
                json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
                json!({"metadata": {"name": "p", "labels": {"app": "web", "env": "prod"}}}),
            ),
            (
                "null for a key the original lacks changes nothing",
                "Pod",
                json!({"a": 1}),
                json!({"b": null}),
                json!({"a": 1}),
            ),
            (
                "scalars replace",
                "Deployment",
                json!({"spec": {"replicas": 1, "paused": false}}),
                json!({"spec": {"replicas": 3}}),
                json!({"spec": {"replicas": 3, "paused": false}}),
            ),
            (
                "a value of another JSON type replaces the original",
                "Pod",
                json!({"a": "x", "b": {"c": 1}, "d": [1]}),
                json!({"a": {"b": 1, "n": null}, "b": [1], "d": {"e": 2}}),
                json!({"a": {"b": 1}, "b": [1], "d": {"e": 2}}),
            ),
            (
                "an empty patch changes nothing",
                "Pod",
                pod_with(containers(&["a", "b"])),
                json!({}),
                pod_with(containers(&["a", "b"])),
            ),
        ]);
    }

    #[test]
    fn lists_without_a_strategy_are_replaced() {
        check(vec![
            (
                "PodSpec.tolerations has no patch strategy",
                "Pod",
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}]}}),
            ),
            (
                "PodSpec.readinessGates has no patch strategy",
                "Pod",
                json!({"spec": {"readinessGates": [{"conditionType": "a"}]}}),
                json!({"spec": {"readinessGates": [{"conditionType": "b"}]}}),
                json!({"spec": {"readinessGates": [{"conditionType": "b"}]}}),
            ),
            (
                "NodeSpec.taints has no patch strategy",
                "Node",
                json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
                json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
            ),
            (
                "Endpoints.subsets has no patch strategy",
                "Endpoints",
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}),
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}),
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}),
            ),
            (
                "container args are replaced",
                "Pod",
                pod_with(json!([{"name": "a", "args": ["x", "y"]}])),
                json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
                pod_with(json!([{"name": "a", "args": ["z"]}])),
            ),
            (
                "$setElementOrder of a replaced list is ignored",
                "Pod",
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
                json!({"spec": {"$setElementOrder/tolerations": [{"key": "b"}, {"key": "a"}]}}),
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
            ),
        ]);
    }

    #[test]
    fn lists_with_a_merge_key_merge_element_wise() {
        check(vec![
            (
                "a patched container keeps its other fields and its neighbours",
                "Pod",
                pod_with(json!([
                    {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
                    {"name": "b", "image": "b:1"},
                ])),
                json!({"spec": {"containers": [{"name": "a", "image": "a:2"}]}}),
                pod_with(json!([
                    {"name": "a", "image": "a:2", "ports": [{"containerPort": 80}]},
                    {"name": "b", "image": "b:1"},
                ])),
            ),
            (
                "a new container is appended",
                "Pod",
                pod_with(containers(&["a", "b"])),
                json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}}),
                pod_with(json!([{"name": "a"}, {"name": "b"}, {"name": "c", "image": "c:1"}])),
            ),
            (
                "the patch's own order wins over the original's",
                "Pod",
                pod_with(json!([{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}])),
                json!({"spec": {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}}),
                pod_with(json!([
                    {"name": "2", "value": "b"},
                    {"name": "3", "value": "c"},
                    {"name": "1", "value": "a"},
                ])),
            ),
            (
                "a new element listed before an existing one stays before it",
                "Pod",
                pod_with(containers(&["a", "b", "c"])),
                json!({"spec": {"containers": [{"name": "d"}, {"name": "a", "image": "x"}]}}),
                pod_with(
                    json!([{"name": "d"}, {"name": "a", "image": "x"}, {"name": "b"}, {"name": "c"}]),
                ),
            ),
            (
                "patched elements merge into the original's positions",
                "Pod",
                pod_with(containers(&["b", "c", "a"])),
                json!({"spec": {"containers": [{"name": "a", "x": 1}, {"name": "b", "x": 1}, {"name": "d"}]}}),
                pod_with(json!([
                    {"name": "c"},
                    {"name": "a", "x": 1},
                    {"name": "b", "x": 1},
                    {"name": "d"},
                ])),
            ),
            (
                "merge keys compare numbers as numbers",
                "Pod",
                pod_with(json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}])),
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "protocol": "TCP"}]}]}}),
                pod_with(
                    json!([{"name": "a", "ports": [{"containerPort": 80.0, "name": "http", "protocol": "TCP"}]}]),
                ),
            ),
            (
                "a new list is taken as sent: two ports sharing a containerPort stay two",
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{"name": "dns", "ports": [
                    {"containerPort": 53, "protocol": "TCP"},
                    {"containerPort": 53, "protocol": "UDP"},
                ]}]}}),
                pod_with(json!([{"name": "a"}, {"name": "dns", "ports": [
                    {"containerPort": 53, "protocol": "TCP"},
                    {"containerPort": 53, "protocol": "UDP"},
                ]}])),
            ),
            (
                "an empty patch list changes nothing",
                "Pod",
                pod_with(containers(&["a", "b"])),
                json!({"spec": {"containers": []}}),
                pod_with(containers(&["a", "b"])),
            ),
        ]);
    }

    #[test]
    fn what_kubectl_apply_sends() {
        check(vec![
            (
                "$setElementOrder/containers and a changed image",
                "Pod",
                pod_with(json!([
                    {"name": "app", "image": "app:1", "resources": {"limits": {"cpu": "1"}}},
                    {"name": "sidecar", "image": "side:1"},
                ])),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["app", "sidecar"]),
                    "containers": [{"name": "sidecar", "image": "side:2"}],
                }}),
                pod_with(json!([
                    {"name": "app", "image": "app:1", "resources": {"limits": {"cpu": "1"}}},
                    {"name": "sidecar", "image": "side:2"},
                ])),
            ),
            (
                "removing a container with $patch: delete",
                "Pod",
                pod_with(
                    json!([{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "side:1"}]),
                ),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["app"]),
                    "containers": [{"$patch": "delete", "name": "sidecar"}],
                }}),
                pod_with(json!([{"name": "app", "image": "app:1"}])),
            ),
            (
                "changing one env var of a Deployment's container",
                "Deployment",
                json!({"spec": {"replicas": 2, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:1", "env": [
                        {"name": "A", "value": "1"},
                        {"name": "B", "value": "2"},
                        {"name": "C", "value": "3"},
                    ]}]},
                }}}),
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": containers(&["web"]),
                    "containers": [{
                        "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                        "name": "web",
                        "env": [{"name": "B", "value": "20"}],
                    }],
                }}}}),
                json!({"spec": {"replicas": 2, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:1", "env": [
                        {"name": "A", "value": "1"},
                        {"name": "B", "value": "20"},
                        {"name": "C", "value": "3"},
                    ]}]},
                }}}),
            ),
            (
                "setting a label to null",
                "Deployment",
                json!({"metadata": {"name": "web", "labels": {"app": "web", "old": "yes"}}}),
                json!({"metadata": {"labels": {"old": null}}}),
                json!({"metadata": {"name": "web", "labels": {"app": "web"}}}),
            ),
            (
                "adding a container between two others",
                "Pod",
                pod_with(containers(&["a", "c"])),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["a", "b", "c"]),
                    "containers": [{"name": "b", "image": "b:1"}],
                }}),
                pod_with(json!([{"name": "a"}, {"name": "b", "image": "b:1"}, {"name": "c"}])),
            ),
        ]);
    }

    #[test]
    fn set_element_order() {
        check(vec![
            (
                "reorders without other changes",
                "Pod",
                pod_with(containers(&["a", "b", "c"])),
                json!({"spec": {"$setElementOrder/containers": containers(&["c", "a", "b"])}}),
                pod_with(containers(&["c", "a", "b"])),
            ),
            (
                "server-only elements keep their place",
                "Pod",
                pod_with(containers(&["1", "2", "9", "3", "4"])),
                json!({"spec": {"$setElementOrder/containers": containers(&["2", "1", "4", "3"])}}),
                pod_with(containers(&["2", "1", "9", "4", "3"])),
            ),
            (
                "server-only elements after the ordered ones stay after them",
                "Pod",
                pod_with(containers(&["1", "3", "4", "2", "9"])),
                json!({"spec": {"$setElementOrder/containers": containers(&["4", "2", "3", "1"])}}),
                pod_with(containers(&["4", "2", "3", "1", "9"])),
            ),
            (
                "new elements go where the order puts them",
                "Pod",
                pod_with(containers(&["1", "2"])),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["4", "1", "2", "3"]),
                    "containers": [{"name": "4"}, {"name": "3"}],
                }}),
                pod_with(containers(&["4", "1", "2", "3"])),
            ),
            (
                "elements named only by the order are ignored",
                "Pod",
                pod_with(containers(&["1", "3"])),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["3", "2", "1"]),
                    "containers": [{"name": "3", "v": 3}, {"name": "1", "v": 1}],
                }}),
                pod_with(json!([{"name": "3", "v": 3}, {"name": "1", "v": 1}])),
            ),
            (
                "orders a list the original does not have yet",
                "Pod",
                json!({"spec": {}}),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["b", "a"]),
                    "containers": [{"name": "b"}, {"name": "a"}],
                }}),
                json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
            ),
            (
                "orders a set of finalizers",
                "Pod",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}),
                json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
            ),
        ]);
    }

    #[test]
    fn patch_directive() {
        check(vec![
            (
                "$patch: delete removes every element with the key",
                "Pod",
                pod_with(json!([{"name": "a", "env": [
                    {"name": "A", "value": "1"}, {"name": "A", "value": "2"}, {"name": "B"},
                ]}])),
                json!({"spec": {"containers": [{"name": "a", "env": [{"$patch": "delete", "name": "A"}]}]}}),
                pod_with(json!([{"name": "a", "env": [{"name": "B"}]}])),
            ),
            (
                "$patch: delete of a missing element changes nothing",
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{"$patch": "delete", "name": "zz"}]}}),
                pod_with(containers(&["a"])),
            ),
            (
                "$patch: replace as a list element replaces the list",
                "Pod",
                pod_with(json!([{"name": "a", "image": "a"}, {"name": "b"}])),
                json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}),
                pod_with(containers(&["c"])),
            ),
            (
                "$patch: replace with no other element empties the list",
                "Pod",
                pod_with(containers(&["a", "b"])),
                json!({"spec": {"containers": [{"$patch": "replace"}]}}),
                pod_with(json!([])),
            ),
            (
                "$patch: replace in a map replaces the map",
                "Pod",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
                json!({"metadata": {"labels": {"c": "3"}}}),
            ),
            (
                "$patch: replace at the top level replaces the object",
                "Pod",
                json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n"}}),
                json!({"$patch": "replace", "metadata": {"name": "b"}}),
                json!({"metadata": {"name": "b"}}),
            ),
            (
                "$patch: delete in a map deletes it",
                "Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}),
                json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
            ),
            (
                "$patch: delete in a map the original lacks adds nothing",
                "Pod",
                json!({"spec": {}}),
                json!({"spec": {"affinity": {"$patch": "delete"}}}),
                json!({"spec": {}}),
            ),
            (
                "$patch: merge in a map merges as usual",
                "Pod",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            ),
            (
                "a bare $patch: merge element only restates the strategy",
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{"$patch": "merge"}, {"name": "b"}]}}),
                pod_with(containers(&["a", "b"])),
            ),
        ]);
    }

    #[test]
    fn retain_keys() {
        check(vec![
            (
                "a Deployment strategy switches from RollingUpdate to Recreate",
                "Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            (
                "a volume switches source",
                "Pod",
                json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]}}),
                json!({"spec": {"volumes": [{
                    "$retainKeys": ["configMap", "name"],
                    "name": "data",
                    "configMap": {"name": "cm"},
                }]}}),
                json!({"spec": {"volumes": [
                    {"name": "data", "configMap": {"name": "cm"}},
                    {"name": "other", "emptyDir": {}},
                ]}}),
            ),
            (
                "nulls and other directives need not be listed",
                "Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
        ]);
    }

    #[test]
    fn primitive_lists_with_the_merge_strategy_are_sets() {
        check(vec![
            (
                "finalizers merge as a set",
                "Pod",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            ),
            (
                "$deleteFromPrimitiveList removes values",
                "Namespace",
                json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                json!({"metadata": {"finalizers": ["a", "c"]}}),
            ),
            (
                "$deleteFromPrimitiveList on a missing list adds nothing",
                "Pod",
                json!({"metadata": {"name": "x"}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
                json!({"metadata": {"name": "x"}}),
            ),
            (
                "deleting and adding in one patch",
                "Pod",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
            ),
            (
                "$deleteFromPrimitiveList also works on a list without a strategy",
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "args": ["x", "y", "z"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["y"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "args": ["x", "z"]}]}}),
            ),
            (
                "$patch: replace in a set replaces it",
                "Pod",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c", {"$patch": "replace"}]}}),
                json!({"metadata": {"finalizers": ["c"]}}),
            ),
            (
                "a pod template's finalizers are a set too",
                "ReplicaSet",
                json!({"spec": {"template": {"metadata": {"finalizers": ["a"]}}}}),
                json!({"spec": {"template": {"metadata": {"finalizers": ["b"]}}}}),
                json!({"spec": {"template": {"metadata": {"finalizers": ["a", "b"]}}}}),
            ),
            (
                "a node's podCIDRs are a set",
                "Node",
                json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}}),
                json!({"spec": {"podCIDRs": ["10.0.1.0/24", "10.0.0.0/24"]}}),
                json!({"spec": {"podCIDRs": ["10.0.1.0/24", "10.0.0.0/24"]}}),
            ),
        ]);
    }

    #[test]
    fn the_table_covers_each_served_kind() {
        check(vec![
            (
                "container volumeMounts by mountPath, volumeDevices by devicePath",
                "Pod",
                pod_with(json!([{"name": "a",
                    "volumeMounts": [{"mountPath": "/a", "name": "v1"}],
                    "volumeDevices": [{"devicePath": "/dev/a", "name": "d1"}],
                }])),
                json!({"spec": {"containers": [{"name": "a",
                    "volumeMounts": [{"mountPath": "/a", "readOnly": true}, {"mountPath": "/b", "name": "v2"}],
                    "volumeDevices": [{"devicePath": "/dev/a", "name": "d2"}],
                }]}}),
                pod_with(json!([{"name": "a",
                    "volumeMounts": [{"mountPath": "/a", "name": "v1", "readOnly": true}, {"mountPath": "/b", "name": "v2"}],
                    "volumeDevices": [{"devicePath": "/dev/a", "name": "d2"}],
                }])),
            ),
            (
                "ownerReferences by uid",
                "ReplicaSet",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "d"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2", "name": "e"}]}}),
                json!({"metadata": {"ownerReferences": [
                    {"uid": "1", "name": "d", "controller": true},
                    {"uid": "2", "name": "e"},
                ]}}),
            ),
            (
                "initContainers and ephemeralContainers by name, with their env",
                "Pod",
                json!({"spec": {
                    "initContainers": [{"name": "init", "image": "i:1"}],
                    "ephemeralContainers": [{"name": "debug", "env": [{"name": "A", "value": "1"}]}],
                }}),
                json!({"spec": {
                    "initContainers": [{"name": "init", "image": "i:2"}],
                    "ephemeralContainers": [{"name": "debug", "env": [{"name": "B", "value": "2"}]}],
                }}),
                json!({"spec": {
                    "initContainers": [{"name": "init", "image": "i:2"}],
                    "ephemeralContainers": [{"name": "debug", "env": [
                        {"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                    ]}],
                }}),
            ),
            (
                "imagePullSecrets by name, hostAliases by ip, topologySpreadConstraints by topologyKey",
                "Pod",
                json!({"spec": {
                    "imagePullSecrets": [{"name": "a"}],
                    "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["a"]}],
                    "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
                }}),
                json!({"spec": {
                    "imagePullSecrets": [{"name": "b"}],
                    "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}],
                    "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                }}),
                json!({"spec": {
                    "imagePullSecrets": [{"name": "a"}, {"name": "b"}],
                    "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}],
                    "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
                }}),
            ),
            (
                "a ReplicationController's template containers by name",
                "ReplicationController",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b"}]}}}}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}, {"name": "b"}]}}}}),
            ),
            (
                "a ReplicaSet's template containers by name",
                "ReplicaSet",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "b"}]}}}}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}),
            ),
            (
                "Service ports by port",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            ),
            (
                "Node conditions and addresses by type",
                "Node",
                json!({"status": {
                    "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
                    "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                }}),
                json!({"status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "Hostname", "address": "n1"}],
                }}),
                json!({"status": {
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}],
                    "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                }}),
            ),
            (
                "Pod conditions by type, podIPs by ip",
                "Pod",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}], "podIPs": [{"ip": "10.1.0.1"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "podIPs": [{"ip": "fd00::1"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "podIPs": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}]}}),
            ),
            (
                "Deployment conditions by type",
                "Deployment",
                json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}}),
                json!({"status": {"conditions": [{"type": "Progressing", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
            ),
            (
                "ReplicaSet and ReplicationController conditions by type",
                "ReplicaSet",
                json!({"status": {"conditions": [{"type": "ReplicaFailure", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "ReplicaFailure", "status": "False"}]}}),
                json!({"status": {"conditions": [{"type": "ReplicaFailure", "status": "False"}]}}),
            ),
            (
                "Namespace conditions by type",
                "Namespace",
                json!({"status": {"phase": "Active", "conditions": [{"type": "A", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "B", "status": "True"}]}}),
                json!({"status": {"phase": "Active", "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}}),
            ),
            (
                "every kind's metadata is an ObjectMeta",
                "Event",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b"]}}),
                json!({"metadata": {"finalizers": ["a", "b"]}}),
            ),
            (
                "ResourceQuota scopes are replaced",
                "ResourceQuota",
                json!({"spec": {"scopes": ["BestEffort"]}, "metadata": {"finalizers": ["a"]}}),
                json!({"spec": {"scopes": ["NotBestEffort"]}, "metadata": {"finalizers": ["b"]}}),
                json!({"spec": {"scopes": ["NotBestEffort"]}, "metadata": {"finalizers": ["a", "b"]}}),
            ),
        ]);
    }

    #[test]
    fn unknown_kinds_merge_like_a_merge_patch_with_directives() {
        check(vec![
            (
                "lists are replaced, even ones a Pod would merge",
                "Widget",
                json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}}),
                json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}}),
                json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}}),
            ),
            (
                "directives are honoured",
                "Widget",
                json!({"spec": {"m": {"x": 1}, "n": {"y": 1}, "u": {"a": 1, "b": 2}, "l": [1, 2, 3]}}),
                json!({"spec": {
                    "m": {"$patch": "replace", "z": 3},
                    "n": {"$patch": "delete"},
                    "u": {"$retainKeys": ["b", "c"], "c": 3},
                    "$deleteFromPrimitiveList/l": [2],
                }}),
                json!({"spec": {"m": {"z": 3}, "u": {"b": 2, "c": 3}, "l": [1, 3]}}),
            ),
            (
                "struct names are not kinds",
                "PodSpec",
                json!({"containers": [{"name": "a"}]}),
                json!({"containers": [{"name": "b"}]}),
                json!({"containers": [{"name": "b"}]}),
            ),
        ]);
    }

    #[test]
    fn directives_never_reach_the_result() {
        check(vec![
            (
                "directives inside a new container are applied and dropped",
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{
                    "name": "b",
                    "$setElementOrder/env": [{"name": "Y"}, {"name": "X"}],
                    "$deleteFromPrimitiveList/args": ["q"],
                    "$retainKeys": ["name", "env", "securityContext"],
                    "env": [{"name": "Y", "value": null}, {"name": "X", "value": "1"}, {"$patch": "delete", "name": "Z"}],
                    "securityContext": {"$patch": "replace", "runAsUser": 1, "runAsGroup": null},
                }]}}),
                pod_with(json!([{"name": "a"}, {
                    "name": "b",
                    "env": [{"name": "Y"}, {"name": "X", "value": "1"}],
                    "securityContext": {"runAsUser": 1},
                }])),
            ),
            (
                "directives inside a replaced list are dropped",
                "Pod",
                json!({"spec": {"tolerations": [{"key": "a"}]}}),
                json!({"spec": {"tolerations": [{"key": "b", "x": {"$patch": "delete"}}, {"$patch": "replace"}]}}),
                json!({"spec": {"tolerations": [{"key": "b"}]}}),
            ),
        ]);
    }

    #[test]
    fn malformed_patches_name_the_field() {
        let cases: Vec<(&str, Value, Value, &str)> = vec![
            (
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "spec.containers[0]: element has no merge key \"name\"",
            ),
            (
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{"name": "a"}, {"$patch": "delete"}]}}),
                "spec.containers[1]: element has no merge key \"name\"",
            ),
            (
                "Deployment",
                json!({}),
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"value": "1"}]}]}}}}),
                "spec.template.spec.containers[0].env[0]: element has no merge key \"name\"",
            ),
            (
                "Pod",
                json!({"metadata": {"labels": {}}}),
                json!({"metadata": {"labels": {"$patch": "bogus"}}}),
                "metadata.labels: unknown $patch directive \"bogus\": expected \"replace\", \"delete\" or \"merge\"",
            ),
            (
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": [{"name": "a"}, {"$patch": 7}]}}),
                "spec.containers[1]: unknown $patch directive 7: expected \"replace\", \"delete\" or \"merge\"",
            ),
            (
                "Pod",
                json!({}),
                json!(["not", "an", "object"]),
                "a strategic merge patch must be a JSON object, not a list",
            ),
            (
                "Pod",
                json!("text"),
                json!({}),
                "the object being patched must be a JSON object, not a string",
            ),
            (
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"containers": ["a"]}}),
                "spec.containers[0]: expected an object with merge key \"name\", not a string",
            ),
            (
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"$setElementOrder/containers": "a"}}),
                "spec: $setElementOrder/containers must be a list, not a string",
            ),
            (
                "Pod",
                pod_with(containers(&["a"])),
                json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}),
                "spec.containers: $setElementOrder element 0 has no merge key \"name\"",
            ),
            (
                "Pod",
                pod_with(containers(&["1", "3", "2"])),
                json!({"spec": {
                    "$setElementOrder/containers": containers(&["1", "2", "3"]),
                    "containers": [{"name": "3"}, {"name": "1"}],
                }}),
                "spec.containers: the patch's elements are missing from $setElementOrder or in a different order",
            ),
            (
                "Pod",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["b"], "finalizers": ["a"]}}),
                "metadata.finalizers: the patch's elements are missing from $setElementOrder or in a different order",
            ),
            (
                "Deployment",
                json!({"spec": {"strategy": {}}}),
                json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
                "spec.strategy: $retainKeys must be a list of field names",
            ),
            (
                "Deployment",
                json!({"spec": {"strategy": {}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["rollingUpdate"], "type": "Recreate"}}}),
                "spec.strategy: the patch sets \"type\", which $retainKeys does not list",
            ),
            (
                "Pod",
                json!({"metadata": {"name": "a"}}),
                json!({"$patch": "delete"}),
                "$patch: delete at the top level would delete the whole object; send a DELETE request instead",
            ),
            (
                "Pod",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": [{"a": 1}]}}),
                "metadata.finalizers[0]: expected a scalar: this list is merged as a set, not an object",
            ),
            (
                "Pod",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": [{"$patch": "delete"}]}}),
                "metadata.finalizers[0]: $patch: delete cannot name a value of a list of scalars; use $deleteFromPrimitiveList",
            ),
            (
                "Pod",
                json!({"spec": {"tolerations": []}}),
                json!({"spec": {"tolerations": [{"$patch": "merge"}]}}),
                "spec.tolerations[0]: $patch: merge is not possible here: this list has no merge key and is always replaced",
            ),
            (
                "Pod",
                json!({"metadata": {}}),
                json!({"metadata": {"$deleteFromPrimitiveList/": ["a"]}}),
                "metadata: $deleteFromPrimitiveList/ does not name a field",
            ),
        ];
        for (kind, original, patch, expected) in cases {
            assert_eq!(
                strategic_merge_patch(kind, &original, &patch),
                Err(PatchError(expected.to_owned())),
                "{patch}"
            );
        }
    }

    /// The strategy of the list at `path` (field names, list elements implied) in a `kind`.
    fn strategy_at(kind: &str, path: &[&str]) -> String {
        let mut owner = SERVED_KINDS.iter().copied().find(|k| *k == kind);
        let mut shape = None;
        for field in path {
            shape = field_shape(owner, field);
            owner = match shape {
                Some(FieldShape::Struct(name)) => Some(name),
                Some(FieldShape::MergeByKey { element, .. }) => Some(element),
                _ => None,
            };
        }
        match list_strategy(shape) {
            ListStrategy::Replace => "replace".to_owned(),
            ListStrategy::MergeByKey { key, .. } => format!("merge by {key}"),
            ListStrategy::MergeSet => "merge as a set".to_owned(),
        }
    }

    #[test]
    fn list_strategies_match_the_kubernetes_struct_tags() {
        // One case a line: `<kind> <path>: <expected strategy>`.
        let cases = "\
            Pod metadata.ownerReferences: merge by uid
            Pod metadata.finalizers: merge as a set
            Pod metadata.managedFields: replace
            Pod spec.containers: merge by name
            Pod spec.initContainers: merge by name
            Pod spec.ephemeralContainers: merge by name
            Pod spec.volumes: merge by name
            Pod spec.imagePullSecrets: merge by name
            Pod spec.hostAliases: merge by ip
            Pod spec.topologySpreadConstraints: merge by topologyKey
            Pod spec.tolerations: replace
            Pod spec.readinessGates: replace
            Pod spec.containers.ports: merge by containerPort
            Pod spec.containers.env: merge by name
            Pod spec.containers.volumeMounts: merge by mountPath
            Pod spec.containers.volumeDevices: merge by devicePath
            Pod spec.containers.args: replace
            Pod spec.ephemeralContainers.env: merge by name
            Pod status.conditions: merge by type
            Pod status.podIPs: merge by ip
            Pod status.containerStatuses: replace
            Deployment spec.template.spec.containers: merge by name
            Deployment spec.template.spec.containers.env: merge by name
            Deployment spec.template.metadata.finalizers: merge as a set
            Deployment status.conditions: merge by type
            ReplicaSet spec.template.spec.initContainers: merge by name
            ReplicaSet status.conditions: merge by type
            ReplicationController spec.template.spec.volumes: merge by name
            ReplicationController status.conditions: merge by type
            Service spec.ports: merge by port
            Service status.conditions: merge by type
            Service status.loadBalancer.ingress: replace
            Endpoints subsets: replace
            Namespace status.conditions: merge by type
            Namespace spec.finalizers: replace
            Node spec.taints: replace
            Node spec.podCIDRs: merge as a set
            Node status.conditions: merge by type
            Node status.addresses: merge by type
            Node status.images: replace
            Event metadata.finalizers: merge as a set
            ResourceQuota spec.scopes: replace
            Widget metadata.finalizers: replace
        ";
        for case in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (kind, rest) = case.split_once(' ').expect("kind");
            let (path, expected) = rest.split_once(": ").expect("expected strategy");
            let path: Vec<&str> = path.split('.').collect();
            assert_eq!(
                strategy_at(kind, &path),
                expected,
                "{kind} {}",
                path.join(".")
            );
        }
    }

    #[test]
    fn field_rules_are_unique_and_every_kind_has_metadata() {
        let mut seen = HashSet::new();
        for rule in FIELD_RULES {
            assert!(
                seen.insert((rule.owner, rule.field)),
                "{}.{} is listed twice",
                rule.owner,
                rule.field
            );
        }
        for kind in SERVED_KINDS {
            assert_eq!(
                field_shape(Some(kind), "metadata"),
                Some(FieldShape::Struct("ObjectMeta")),
                "{kind}"
            );
        }
    }

    // ---- Properties ---------------------------------------------------------------------

    /// Keys that exercise the table and every directive, malformed ones included.
    const KEYS: &[&str] = &[
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$setElementOrder/a",
        "$setElementOrder/",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/a",
        "$deleteFromPrimitiveList/",
        "metadata",
        "finalizers",
        "ownerReferences",
        "uid",
        "spec",
        "template",
        "containers",
        "name",
        "env",
        "ports",
        "containerPort",
        "status",
        "conditions",
        "type",
        "a",
        "b",
    ];

    /// Keys of ordinary objects: no directives.
    const PLAIN_KEYS: &[&str] = &[
        "metadata",
        "finalizers",
        "spec",
        "template",
        "containers",
        "name",
        "env",
        "ports",
        "containerPort",
        "a",
    ];

    const KINDS: &[&str] = &["Pod", "Deployment", "ReplicaSet", "Node", "Widget"];

    fn json_with_keys(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            prop::sample::select(vec![
                "a",
                "b",
                "replace",
                "delete",
                "merge",
                "name",
                "containers"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 96, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(keys), inner, 0..6).prop_map(
                    |map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                ),
            ]
        })
    }

    fn any_json() -> impl Strategy<Value = Value> {
        json_with_keys(KEYS)
    }

    fn any_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        prop::collection::btree_map(prop::sample::select(keys), json_with_keys(keys), 0..6)
            .prop_map(|map| {
                Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            })
    }

    fn json_patch_operation() -> impl Strategy<Value = Value> {
        let pointer = prop::sample::select(vec![
            "", "/a", "/a/0", "/a/-", "/b/c", "/~1", "/0", "/-", "x",
        ]);
        (
            prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "bogus"]),
            pointer.clone(),
            pointer,
            any_json(),
        )
            .prop_map(|(op, path, from, value)| {
                json!({"op": op, "path": path, "from": from, "value": value})
            })
    }

    fn has_directive_key(value: &Value) -> bool {
        match value {
            Value::Object(map) => map
                .iter()
                .any(|(key, item)| is_directive_key(key) || has_directive_key(item)),
            Value::Array(items) => items.iter().any(has_directive_key),
            _ => false,
        }
    }

    proptest! {
        /// Whatever the three objects, the three-way patch is one the server accepts whenever
        /// the manifest itself fits the kind's merge rules (a manifest the server could not
        /// merge, such as a `null` container, is refused either way).
        #[test]
        fn the_three_way_patch_always_applies(
            kind in prop::sample::select(KINDS),
            original in any_object(PLAIN_KEYS),
            modified in any_object(PLAIN_KEYS),
            current in any_object(PLAIN_KEYS),
        ) {
            prop_assume!(strategic_merge_patch(kind, &current, &modified).is_ok());
            let patch = three_way_merge_patch(kind, Some(&original), &modified, &current);
            let merged = strategic_merge_patch(kind, &current, &patch);
            prop_assert!(merged.is_ok(), "{patch}: {merged:?}");
        }
    }

    proptest! {
        #[test]
        fn no_patch_function_panics(
            kind in prop::sample::select(KINDS),
            target in any_json(),
            patch in any_json(),
        ) {
            let _ = merge_patch(&target, &patch);
            let _ = json_patch(&target, &patch);
            let _ = strategic_merge_patch(kind, &target, &patch);
        }

        #[test]
        fn strategic_merge_patch_of_objects_does_not_panic(
            kind in prop::sample::select(KINDS),
            original in any_object(KEYS),
            patch in any_object(KEYS),
        ) {
            let _ = strategic_merge_patch(kind, &original, &patch);
        }

        #[test]
        fn json_patch_of_operations_does_not_panic(
            target in any_json(),
            operations in prop::collection::vec(json_patch_operation(), 0..6),
        ) {
            let _ = json_patch(&target, &Value::Array(operations));
        }

        #[test]
        fn an_empty_patch_changes_nothing(
            kind in prop::sample::select(KINDS),
            original in any_object(KEYS),
        ) {
            prop_assert_eq!(merge_patch(&original, &json!({})), original.clone());
            prop_assert_eq!(strategic_merge_patch(kind, &original, &json!({})), Ok(original));
        }

        #[test]
        fn directives_never_appear_in_a_result(
            kind in prop::sample::select(KINDS),
            original in any_object(PLAIN_KEYS),
            patch in any_object(KEYS),
        ) {
            if let Ok(result) = strategic_merge_patch(kind, &original, &patch) {
                prop_assert!(!has_directive_key(&result), "{}", result);
            }
        }
    }
}
