//! The API's operations on objects — create, get, list, update, patch, delete, and the
//! subresources — over the store. Both the HTTP handlers and in-process callers (scheduler,
//! controllers) go through here, so every write is admitted (decoded, defaulted, validated) and
//! versioned the same way.

use std::sync::Arc;

use bytes::Bytes;
use minik_api::fields::{self, FieldSelector};
use minik_api::patch;
use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::selector::Selector;
use minik_api::{ApiError, FieldError, FieldPath, ObjectRef};
use minik_store::{Listing, Revision, Store, StoreError, Stored};
use serde_json::{json, Map, Value};

/// How many times a write is retried when another writer changed the object between our read
/// and our compare-and-swap.
const MAX_WRITE_ATTEMPTS: usize = 32;

/// Namespaces that exist from the first start and cannot be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    resources::NODE_LEASE_NAMESPACE,
];
const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The object operations of the API.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    services: Arc<crate::services::Allocator>,
    quota_locks: Arc<crate::quota::QuotaLocks>,
    /// The `tolerationSeconds` of the not-ready and unreachable tolerations pods get when they
    /// have none (`--pod-eviction-timeout`).
    pod_toleration_seconds: i64,
    /// How many bytes of changes a watch may fall behind before it is cut (`--watch-buffer-bytes`).
    watch_buffer_bytes: usize,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The object itself; its status is kept as it was (for kinds with a status subresource).
    Main,
    /// The `status` subresource: only the status changes.
    Status,
}

/// What a delete did: the object is gone, or it is marked and will go later (graceful deletion
/// of a pod, or finalizers still to run).
#[derive(Clone, Debug)]
pub enum Deleted {
    Gone(Bytes),
    Pending(Bytes),
}

/// Label and field selection of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector` query values for `info`'s kind.
    pub fn parse(
        info: &ResourceInfo,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let labels = Selector::parse(labels.unwrap_or("")).map_err(ApiError::BadRequest)?;
        let fields = FieldSelector::parse(fields.unwrap_or("")).map_err(ApiError::BadRequest)?;
        fields::check_supported(info.kind, &fields).map_err(ApiError::BadRequest)?;
        Ok(Filter { labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether the object, in its JSON form, is selected.
    pub fn matches(&self, kind: &str, object: &Value) -> bool {
        if !self.labels.is_empty() {
            let labels = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            if !self.labels.matches(&labels) {
                return false;
            }
        }
        self.fields.is_empty()
            || self
                .fields
                .matches(|f| fields::field_value(kind, object, f))
    }
}

/// A list answer: the selected objects as stored, and the revision it is consistent with.
pub struct ListResult {
    pub items: Vec<Bytes>,
    pub revision: Revision,
}

/// What a write step decided to do with the object it read.
enum Outcome {
    Write(Value),
    Unchanged,
    Delete,
}

pub(crate) fn store_error(info: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    let target = ObjectRef::new(info.group, info.plural, name);
    match e {
        StoreError::NotFound { .. } => ApiError::NotFound(target),
        StoreError::AlreadyExists { .. } => ApiError::AlreadyExists(target),
        StoreError::Conflict { .. } => ApiError::conflict(target),
        StoreError::Compacted { requested, oldest } => {
            ApiError::Gone(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::Lagged => ApiError::Gone("the watch fell behind; list again".into()),
        StoreError::Closed => ApiError::ServiceUnavailable("the server is shutting down".into()),
        StoreError::NoSpace(message) => ApiError::InsufficientStorage(message),
        e @ (StoreError::NotAnObject { .. } | StoreError::Backend(_)) => {
            ApiError::Internal(e.to_string())
        }
    }
}

fn parse_object(info: &ResourceInfo, name: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Internal(format!(
            "stored {} {name:?} is not valid JSON: {e}",
            info.kind
        ))
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn meta_mut(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON or YAML object".into()))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(ApiError::BadRequest("metadata: must be an object".into()));
    }
    Ok(meta.as_object_mut().expect("checked above"))
}

/// The current time as Kubernetes writes it: RFC 3339, whole seconds, UTC.
pub(crate) fn now_timestamp() -> String {
    timestamp_after(0)
}

fn timestamp_after(seconds: i64) -> String {
    use minik_api::k8s_openapi::jiff::Timestamp;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Past the end of the calendar (a huge grace period) the latest time will do.
    let t = Timestamp::from_second(now.saturating_add(seconds)).unwrap_or(Timestamp::MAX);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five characters from Kubernetes' alphabet for generated names (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Checks `apiVersion` and `kind` of a body against the resource it was sent to, and fills
/// them in when absent (curl users often leave them out).
fn check_type_meta(info: &ResourceInfo, object: &mut Value) -> Result<(), ApiError> {
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

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry {
            services: Arc::new(crate::services::Allocator::new(store.clone())),
            store,
            quota_locks: Arc::default(),
            pod_toleration_seconds: minik_api::defaults::DEFAULT_TOLERATION_SECONDS,
            watch_buffer_bytes: minik_store::DEFAULT_WATCH_BUFFER_BYTES,
        }
    }

    /// Pods that do not tolerate their node being not-ready or unreachable get tolerations
    /// for `seconds` (Kubernetes' DefaultTolerationSeconds admission).
    pub fn with_pod_toleration_seconds(mut self, seconds: i64) -> Self {
        self.pod_toleration_seconds = seconds;
        self
    }

    /// Watches are cut as too slow once `bytes` of changes were made after the oldest one they
    /// have not yet delivered (see [`minik_store::WatchStream::set_buffer_bytes`]).
    pub fn with_watch_buffer_bytes(mut self, bytes: usize) -> Self {
        self.watch_buffer_bytes = bytes;
        self
    }

    pub(crate) fn watch_buffer_bytes(&self) -> usize {
        self.watch_buffer_bytes
    }

    pub(crate) fn quota_locks(&self) -> &crate::quota::QuotaLocks {
        &self.quota_locks
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates the namespaces every cluster has, if they are missing.
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        let info = namespaces();
        for ns in SYSTEM_NAMESPACES {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(info, None, body, WriteOptions::default()).await {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads one object.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        if let (Some(ns), "ResourceQuota") = (ns, info.kind) {
            self.quota_barrier(ns).await;
        }
        self.store
            .get(&info.key(ns, name))
            .await
            .map_err(|e| store_error(info, name, e))?
            .ok_or_else(|| ApiError::NotFound(ObjectRef::new(info.group, info.plural, name)))
    }

    /// Lists the objects of one namespace (or all) that the filter selects.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        filter: &Filter,
    ) -> Result<ListResult, ApiError> {
        let Listing { items, revision } = self
            .store
            .list(&info.prefix(ns))
            .await
            .map_err(|e| store_error(info, "", e))?;
        let items = if filter.is_everything() {
            items.into_iter().map(|s| s.value).collect()
        } else {
            items
                .into_iter()
                .filter(|s| {
                    serde_json::from_slice::<Value>(&s.value)
                        .map(|v| filter.matches(info.kind, &v))
                        .unwrap_or(false)
                })
                .map(|s| s.value)
                .collect()
        };
        Ok(ListResult { items, revision })
    }

    /// Creates an object from a request body.
    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        mut body: Value,
        opts: WriteOptions,
    ) -> Result<Bytes, ApiError> {
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
        for server_owned in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(server_owned);
        }
        meta.insert("creationTimestamp".into(), Value::String(now_timestamp()));
        meta.insert("generation".into(), json!(1));
        let generate_name = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        let named = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        // Node status is reported by its agent on registration; every other kind starts with the
        // status the server gives it.
        if info.has_subresource("status") && info.kind != "Node" {
            if let Some(map) = body.as_object_mut() {
                map.remove("status");
            }
        }
        if let Some(ns) = ns.filter(|_| info.namespaced) {
            let name = body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            self.check_namespace_open(info, ns, name).await?;
        }
        if info.kind == "Pod" {
            minik_api::defaults::pod_tolerations_json(&mut body, self.pod_toleration_seconds);
        }
        let attempts = if named || generate_name.is_none() {
            1
        } else {
            8
        };
        let mut last_err = None;
        for _ in 0..attempts {
            let mut object = body.clone();
            if let (false, Some(prefix)) = (named, &generate_name) {
                meta_mut(&mut object)?.insert(
                    "name".into(),
                    Value::String(format!("{prefix}{}", random_suffix())),
                );
            }
            meta_mut(&mut object)?.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            let mut admitted = info.admit_create(&object, opts.field_validation)?;
            let allocation = self.services.begin(info, ns, None, true).await?;
            if let Some(allocation) = &allocation {
                allocation.assign(&mut admitted, None)?;
            }
            let name = str_at(&admitted, "/metadata/name")
                .unwrap_or_default()
                .to_owned();
            let charge = self
                .charge_quota(info, ns, &mut admitted, None, opts.dry_run)
                .await?;
            if opts.dry_run {
                return serde_json::to_vec(&admitted)
                    .map(Bytes::from)
                    .map_err(|e| ApiError::Internal(e.to_string()));
            }
            let created = self.store.create(&info.key(ns, &name), admitted).await;
            if created.is_err() {
                self.refund_quota(charge).await;
            } else {
                drop(charge);
            }
            match created {
                Ok(stored) => return Ok(stored.value),
                Err(e @ StoreError::AlreadyExists { .. }) if !named => {
                    last_err = Some(store_error(info, &name, e));
                }
                Err(e) => return Err(store_error(info, &name, e)),
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::Internal("no name could be generated".into())))
    }

    /// Refuses new objects in a namespace that does not exist or is being deleted.
    async fn check_namespace_open(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let stored = self.get(namespaces(), None, ns).await?;
        let namespace = parse_object(namespaces(), ns, &stored.value)?;
        let terminating = namespace.pointer("/metadata/deletionTimestamp").is_some()
            || str_at(&namespace, "/status/phase") == Some("Terminating");
        if terminating {
            return Err(ApiError::Forbidden(format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                info.qualified_plural()
            )));
        }
        Ok(())
    }

    /// Reads, decides and writes with compare-and-swap, retrying when another writer got there
    /// first. `step` sees the current object and its revision and says what to do; it must not
    /// assume it runs only once.
    async fn write_loop<F>(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
        mut step: F,
    ) -> Result<Deleted, ApiError>
    where
        F: FnMut(&Value, Revision) -> Result<Outcome, ApiError>,
    {
        let key = info.key(ns, name);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = self.get(info, ns, name).await?;
            let object = parse_object(info, name, &current.value)?;
            let written = match step(&object, current.revision)? {
                Outcome::Unchanged => return Ok(Deleted::Pending(current.value)),
                Outcome::Write(mut new) => {
                    // An update that makes the object use more (a Service turning NodePort)
                    // is checked and charged against the namespace's quotas, as a create is.
                    let charge = self
                        .charge_quota(info, ns, &mut new, Some(&object), dry_run)
                        .await?;
                    if dry_run {
                        return Ok(Deleted::Pending(Bytes::from(
                            serde_json::to_vec(&new)
                                .map_err(|e| ApiError::Internal(e.to_string()))?,
                        )));
                    }
                    let written = self.store.update(&key, new, Some(current.revision)).await;
                    if written.is_err() {
                        self.refund_quota(charge).await;
                    } else {
                        drop(charge);
                    }
                    written.map(|s| Deleted::Pending(s.value))
                }
                Outcome::Delete if dry_run => return Ok(Deleted::Gone(current.value)),
                Outcome::Delete => self
                    .store
                    .delete(&key, Some(current.revision))
                    .await
                    .map(|s| Deleted::Gone(s.value)),
            };
            match written {
                Ok(done) => return Ok(done),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(info, name, e)),
            }
        }
        Err(ApiError::conflict(ObjectRef::new(
            info.group,
            info.plural,
            name,
        )))
    }

    /// Replaces an object (PUT), or its status.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        scope: Scope,
        opts: WriteOptions,
    ) -> Result<Bytes, ApiError> {
        let allocation = self
            .services
            .begin(info, ns, Some(name), scope == Scope::Main)
            .await?;
        let done = self
            .write_loop(info, ns, name, opts.dry_run, |current, revision| {
                let outcome =
                    admit_update(info, ns, name, current, revision, body.clone(), scope, opts)?;
                allocated(allocation.as_ref(), outcome, current)
            })
            .await?;
        Ok(match done {
            Deleted::Gone(b) | Deleted::Pending(b) => b,
        })
    }

    /// Patches an object (PATCH), or its status.
    pub async fn patch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        patch: &Patch,
        scope: Scope,
        opts: WriteOptions,
    ) -> Result<Bytes, ApiError> {
        let allocation = self
            .services
            .begin(info, ns, Some(name), scope == Scope::Main)
            .await?;
        let done = self
            .write_loop(info, ns, name, opts.dry_run, |current, revision| {
                let patched = apply_patch(info, patch.kind, current, &patch.body)?;
                let outcome =
                    admit_update(info, ns, name, current, revision, patched, scope, opts)?;
                allocated(allocation.as_ref(), outcome, current)
            })
            .await?;
        Ok(match done {
            Deleted::Gone(b) | Deleted::Pending(b) => b,
        })
    }

    /// The `scale` subresource of a Deployment, ReplicaSet or ReplicationController.
    pub async fn get_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let stored = self.get(info, ns, name).await?;
        scale_of(info, &parse_object(info, name, &stored.value)?)
    }

    /// Sets the replicas of a scalable object from a `Scale` (PUT), or from a patch of its
    /// current `Scale` (PATCH).
    pub async fn update_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        change: ScaleChange,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        let done = self
            .write_loop(info, ns, name, opts.dry_run, |current, revision| {
                let current_scale = scale_of(info, current)?;
                let scale = match &change {
                    ScaleChange::Replace(body) => body.clone(),
                    ScaleChange::Patch(kind, patch_body) => {
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
            })
            .await?;
        let bytes = match done {
            Deleted::Gone(b) | Deleted::Pending(b) => b,
        };
        scale_of(info, &parse_object(info, name, &bytes)?)
    }

    /// Binds a pod to a node (`pods/{name}/binding`). Two binds of one pod cannot both win: the
    /// write is a compare-and-swap on a pod that has no node yet.
    pub async fn bind(
        &self,
        ns: &str,
        name: &str,
        binding: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let info = pods();
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
        self.write_loop(info, Some(ns), name, dry_run, |current, _| {
            if let Some(existing) = str_at(current, "/spec/nodeName") {
                return Err(ApiError::Conflict {
                    target: ObjectRef::new("", "pods", name),
                    detail: format!("pod {name} is already assigned to node {existing:?}"),
                });
            }
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::Conflict {
                    target: ObjectRef::new("", "pods", name),
                    detail: format!("pod {name} is being deleted, cannot be assigned to a host"),
                });
            }
            let mut pod = current.clone();
            pod["spec"]["nodeName"] = Value::String(node.clone());
            set_condition(&mut pod, "PodScheduled", "True", None, None);
            Ok(Outcome::Write(pod))
        })
        .await
        .map(|_| ())
    }

    /// `namespaces/{name}/finalize`: replaces a namespace's `spec.finalizers` (what the
    /// namespace controller removes once the namespace is empty). A namespace being deleted
    /// goes as soon as nothing holds it.
    pub async fn finalize_namespace(
        &self,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Bytes, ApiError> {
        let info = namespaces();
        let finalizers = match body.pointer("/spec/finalizers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|f| {
                    f.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::BadRequest(
                            "spec.finalizers: every finalizer must be a string".into(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "spec.finalizers: must be a list of strings".into(),
                ))
            }
        };
        let done = self
            .write_loop(info, None, name, dry_run, |current, _| {
                let mut namespace = current.clone();
                if !namespace["spec"].is_object() {
                    namespace["spec"] = json!({});
                }
                namespace["spec"]["finalizers"] = json!(finalizers);
                if &namespace == current {
                    return Ok(Outcome::Unchanged);
                }
                if namespace.pointer("/metadata/deletionTimestamp").is_some()
                    && nothing_holds(info, &namespace)
                {
                    return Ok(Outcome::Delete);
                }
                Ok(Outcome::Write(namespace))
            })
            .await?;
        Ok(match done {
            Deleted::Gone(b) | Deleted::Pending(b) => b,
        })
    }

    /// Deletes an object: at once, or by marking it (graceful pod deletion, finalizers).
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        if info.kind == "Namespace" && UNDELETABLE_NAMESPACES.contains(&name) {
            return Err(ApiError::Forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
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
        self.write_loop(info, ns, name, opts.dry_run, |current, revision| {
            decide_delete(info, name, current, revision, opts)
        })
        .await
    }

    /// Evicts a pod (`pods/{name}/eviction`, a `policy/v1` or `policy/v1beta1` `Eviction`): the
    /// pod is deleted exactly as a `DELETE` with the eviction's `deleteOptions` would delete it,
    /// gracefully when it is on a node. minik has no PodDisruptionBudgets, so no budget can
    /// refuse an eviction (Kubernetes' 429); a dry run (`dryRun=All` on the request or in the
    /// options) checks everything and changes nothing.
    pub async fn evict(
        &self,
        ns: &str,
        name: &str,
        eviction: &Value,
        opts: WriteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut delete = eviction_delete_options(ns, name, eviction, opts.field_validation)?;
        delete.dry_run |= opts.dry_run;
        self.delete(pods(), Some(ns), name, &delete).await
    }
}

/// The API versions an `Eviction` body may have, as Kubernetes accepts them.
const EVICTION_VERSIONS: &[&str] = &["policy/v1", "policy/v1beta1"];

/// Checks an `Eviction` body sent to `pods/{name}/eviction` in namespace `ns` and returns the
/// delete options it carries.
fn eviction_delete_options(
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

/// Fills in the cluster IP and node ports of a Service being replaced (nothing for other kinds).
fn allocated(
    allocation: Option<&crate::services::Allocation<'_>>,
    outcome: Outcome,
    current: &Value,
) -> Result<Outcome, ApiError> {
    match (allocation, outcome) {
        (Some(allocation), Outcome::Write(mut new)) => {
            allocation.assign(&mut new, Some(current))?;
            Ok(Outcome::Write(new))
        }
        (_, outcome) => Ok(outcome),
    }
}

/// What changes a `Scale` request asks for.
#[derive(Clone, Debug)]
pub enum ScaleChange {
    Replace(Value),
    Patch(PatchKind, Value),
}

fn invalid_binding(name: &str, field: &str, message: &str) -> ApiError {
    ApiError::BadRequest(format!("Binding {name:?} is invalid: {field}: {message}"))
}

pub(crate) fn namespaces() -> &'static ResourceInfo {
    resources::by_plural("", "v1", "namespaces").expect("namespaces are served")
}

pub(crate) fn pods() -> &'static ResourceInfo {
    resources::by_plural("", "v1", "pods").expect("pods are served")
}

/// Sets (or adds) a condition in `status.conditions`, moving `lastTransitionTime` only when the
/// status changes, as Kubernetes does.
fn set_condition(
    object: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = now_timestamp();
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

fn apply_patch(
    info: &ResourceInfo,
    kind: PatchKind,
    current: &Value,
    patch_body: &Value,
) -> Result<Value, ApiError> {
    apply_patch_plain(kind, info.kind, current, patch_body)
}

fn apply_patch_plain(
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
fn admit_update(
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
            for server_owned in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
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
/// is over (a pod's node cuts it to zero once the containers stopped), and, for a namespace,
/// the namespace controller has emptied it and removed its `spec.finalizers`.
fn nothing_holds(info: &ResourceInfo, object: &Value) -> bool {
    let grace = object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let namespace_held = info.kind == "Namespace"
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
    grace == 0 && !has_finalizers(object) && !namespace_held
}

/// Decides what a delete does with the object as it is now.
fn decide_delete(
    info: &ResourceInfo,
    name: &str,
    current: &Value,
    revision: Revision,
    opts: &DeleteOptions,
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

    if info.kind == "Namespace" {
        // The namespace controller empties the namespace, then removes its `kubernetes`
        // finalizer through `namespaces/{name}/finalize`; the namespace goes when nothing
        // holds it any more.
        meta_mut(&mut object)?.insert("deletionGracePeriodSeconds".into(), json!(0));
        if nothing_holds(info, &object) {
            return Ok(Outcome::Delete);
        }
        if object.pointer("/metadata/deletionTimestamp").is_none() {
            meta_mut(&mut object)?
                .insert("deletionTimestamp".into(), Value::String(now_timestamp()));
            changed = true;
        }
        if str_at(&object, "/status/phase") != Some("Terminating") {
            object["status"] = json!({"phase": "Terminating"});
            changed = true;
        }
        return Ok(if changed {
            Outcome::Write(object)
        } else {
            Outcome::Unchanged
        });
    }

    // A pod on a node stops gracefully: the node agent sees deletionTimestamp, stops the
    // containers within the grace period and then deletes the pod with grace 0.
    let graceful_pod = info.kind == "Pod" && str_at(&object, "/spec/nodeName").is_some();
    let requested_grace = if graceful_pod {
        opts.grace_period_seconds.unwrap_or_else(|| {
            object
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        })
    } else {
        0
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
            Value::String(timestamp_after(requested_grace)),
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
fn scale_of(info: &ResourceInfo, object: &Value) -> Result<Value, ApiError> {
    let selector = match info.kind {
        "ReplicationController" => object
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => match object.pointer("/spec/selector") {
            Some(sel) => {
                let sel = serde_json::from_value(sel.clone())
                    .map_err(|e| ApiError::Internal(format!("stored selector is invalid: {e}")))?;
                Selector::from_label_selector(&sel)
                    .map(|s| s.to_string())
                    .map_err(ApiError::Internal)?
            }
            None => String::new(),
        },
    };
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

fn validate_scale(name: &str, scale: &Value) -> Result<i32, ApiError> {
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
