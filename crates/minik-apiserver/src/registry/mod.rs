//! The API's operations on objects — create, get, list, update, patch, delete, and the
//! subresources — over the store. Both the HTTP handlers and in-process callers (scheduler,
//! controllers) go through here, so every write is admitted (decoded, defaulted, validated) and
//! versioned the same way.
//!
//! This module does the I/O (reads, compare-and-swap writes and their retries, address
//! allocation and quota charging); every decision about an object is a pure function in
//! `decide.rs`, and everything a kind does differently is asked of its strategy
//! ([`minik_api::kinds`]).

mod decide;
mod paging;

use std::sync::Arc;

use bytes::Bytes;
use minik_api::fields::{self, FieldSelector};
use minik_api::kinds::{runtime_class, service_account, Admission};
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::selector::Selector;
use minik_api::{ApiError, ObjectRef};
use minik_store::{Listing, PageRequest, Revision, Store, StoreError, Stored};
use serde_json::{json, Value};

use crate::errors::{parse_object, store_error};
use crate::quota::Quotas;
use crate::services::{Allocation, Allocator};
use decide::{meta_mut, str_at, Outcome};
use paging::ReadFrom;
pub use paging::{ListOptions, EXPIRED_LIST, INCONSISTENT_CONTINUE};

/// How many times a write is retried when another writer changed the object between our read
/// and our compare-and-swap.
const MAX_WRITE_ATTEMPTS: usize = 32;

/// Namespaces that exist from the first start ([`minik_api::kinds::namespace::SYSTEM`]).
pub const SYSTEM_NAMESPACES: &[&str] = minik_api::kinds::namespace::SYSTEM;

/// The object operations of the API.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    services: Arc<Allocator>,
    quotas: Arc<Quotas>,
    /// The `tolerationSeconds` of the not-ready and unreachable tolerations pods get when they
    /// have none (`--pod-eviction-timeout`).
    pod_toleration_seconds: i64,
    /// How many bytes of changes a watch may fall behind before it is cut (`--watch-buffer-bytes`).
    watch_buffer_bytes: usize,
    /// Whether pods get the service account token volume at admission (not on a plain-HTTP
    /// server, which has no cluster CA for its `ca.crt`).
    token_volumes: bool,
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

impl Deleted {
    /// The object as it was deleted, or as it is now stored.
    pub fn into_object(self) -> Bytes {
        match self {
            Deleted::Gone(b) | Deleted::Pending(b) => b,
        }
    }
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
    /// The `continue` token of the next page, if the list goes on.
    pub continue_token: Option<String>,
    /// How many objects follow this page, when the list is not filtered (Kubernetes'
    /// `remainingItemCount`).
    pub remaining: Option<u64>,
}

/// Why a list failed. A list whose snapshot is gone comes with the token that reads the rest
/// of it as of now (a 410 with `metadata.continue`, as kube-apiserver answers).
#[derive(Debug)]
pub struct ListError {
    pub error: ApiError,
    pub continue_token: Option<String>,
}

impl From<ApiError> for ListError {
    fn from(error: ApiError) -> Self {
        ListError {
            error,
            continue_token: None,
        }
    }
}

/// Five random characters from Kubernetes' alphabet for generated names.
fn random_suffix() -> String {
    // A v4 uuid's bytes are random but for its version and variant bits (bytes 6 and 8).
    minik_api::generated::suffix(uuid::Uuid::new_v4().as_bytes())
}

/// The clock of the registry's decisions: seconds since the epoch.
fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn into_bytes(object: &Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(object)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry {
            services: Arc::new(Allocator::new(
                store.clone(),
                crate::services::loopback_service_cidr(),
            )),
            quotas: Arc::new(Quotas::new(store.clone())),
            store,
            pod_toleration_seconds: minik_api::defaults::DEFAULT_TOLERATION_SECONDS,
            watch_buffer_bytes: minik_store::DEFAULT_WATCH_BUFFER_BYTES,
            token_volumes: true,
        }
    }

    /// Whether the ServiceAccount admission gives pods the `kube-api-access-*` volume (on by
    /// default; a server without a cluster CA turns it off, as the volume's `ca.crt` comes from
    /// the CA's `kube-root-ca.crt` ConfigMap).
    pub fn with_token_volumes(mut self, on: bool) -> Self {
        self.token_volumes = on;
        self
    }

    /// ClusterIPs are allocated from `range` (`--service-cidr`; without it
    /// `127.96.0.0/16`, [`crate::loopback_service_cidr`]).
    pub fn with_service_cidr(mut self, range: minik_api::cidr::Cidr) -> Self {
        self.services = Arc::new(Allocator::new(self.store.clone(), range));
        self
    }

    /// The service CIDR ClusterIPs are allocated from.
    pub fn service_cidr(&self) -> minik_api::cidr::Cidr {
        self.services.range()
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
        if let Some(ns) = ns.filter(|_| info.admits(Admission::QuotaStatus)) {
            self.quotas.barrier(ns).await;
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
        Ok(ListResult {
            items,
            revision,
            continue_token: None,
            remaining: None,
        })
    }

    /// Lists the objects of one namespace (or all) that the filter selects, a page at a time
    /// and as of the revision the options ask for, as Kubernetes does: every page of one list
    /// is read at the revision of its first, so together they are one consistent list
    /// whatever is written between them. A filtered page reads on until it has `limit`
    /// objects or the list ends.
    pub async fn list_page(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        filter: &Filter,
        options: &ListOptions,
    ) -> Result<ListResult, ListError> {
        let prefix = info.prefix(ns);
        let (start, revision, counted) = match paging::read_from(options, &prefix)? {
            ReadFrom::Newest { at_least } => {
                if let Some(wanted) = at_least {
                    self.await_revision(wanted).await?;
                }
                (None, None, None)
            }
            ReadFrom::Exact(revision) => {
                self.await_revision(revision).await?;
                (None, Some(revision), None)
            }
            ReadFrom::Continue(token) => {
                if token.revision.is_some_and(|r| r > self.store.revision()) {
                    // A token from another store (wiped, or restored from a backup): its
                    // snapshot is not here, so it is as good as expired.
                    let compacted = StoreError::Compacted {
                        requested: token.revision.unwrap_or_default(),
                        oldest: self.store.revision(),
                    };
                    return Err(self.list_failed(info, &prefix, Some(token.start), compacted));
                }
                // What the first page counted holds for every page of its snapshot; an
                // inconsistent continuation counts again.
                let counted = token.remaining.filter(|_| token.revision.is_some());
                (Some(token.start), token.revision, counted)
            }
        };
        let limit = options.page_limit().unwrap_or(0);
        if start.is_none() && revision.is_none() && limit == 0 {
            // All of the newest revision: the plain list.
            return Ok(self.list(info, ns, filter).await?);
        }
        let continuing = start.clone();
        let everything = filter.is_everything();
        let mut request = PageRequest {
            start,
            revision,
            limit,
            count_rest: everything && limit > 0 && counted.is_none(),
        };
        let mut items = Vec::new();
        loop {
            let page = match self.store.list_page(&prefix, request.clone()).await {
                Ok(page) => page,
                Err(e) => return Err(self.list_failed(info, &prefix, continuing, e)),
            };
            let at = Some(page.revision);
            let mut last = None;
            for item in page.items {
                if limit > 0 && items.len() == limit {
                    // The chunk had more matches than the page takes: go on after the last.
                    let token = last.as_deref().map(|last| {
                        let next = paging::Continue {
                            start: paging::key_after(last),
                            revision: at,
                            remaining: None,
                        };
                        paging::encode(&prefix, &next)
                    });
                    return Ok(ListResult {
                        items,
                        revision: page.revision,
                        continue_token: token,
                        remaining: None,
                    });
                }
                let selected = everything
                    || serde_json::from_slice::<Value>(&item.value)
                        .is_ok_and(|v| filter.matches(info.kind, &v));
                if selected {
                    items.push(item.value);
                    last = Some(item.key);
                }
            }
            let filled = limit > 0 && items.len() >= limit;
            match page.next {
                Some(next) if !filled && !everything => {
                    // Read on, as of the same revision, with a larger chunk each time (a
                    // selective filter leaves most of each chunk out).
                    request = PageRequest {
                        start: Some(next),
                        revision: at,
                        limit: request
                            .limit
                            .saturating_mul(2)
                            .clamp(limit, paging::MAX_CHUNK.max(limit)),
                        count_rest: false,
                    };
                }
                next => {
                    // A filtered page goes on after the last key it read, selected or not.
                    let remaining = match counted {
                        Some(counted) => {
                            Some(counted.saturating_sub(items.len() as u64)).filter(|_| everything)
                        }
                        None => page.remaining,
                    };
                    let token = next.map(|start| {
                        let next = paging::Continue {
                            start,
                            revision: at,
                            remaining,
                        };
                        paging::encode(&prefix, &next)
                    });
                    return Ok(ListResult {
                        items,
                        revision: page.revision,
                        continue_token: token,
                        remaining,
                    });
                }
            }
        }
    }

    /// Waits (as long as Kubernetes' watch cache does) for the store to reach `revision`, which
    /// a list asked for; a timeout as Kubernetes answers it if it does not.
    async fn await_revision(&self, revision: Revision) -> Result<(), ApiError> {
        if self
            .store
            .reached(revision, paging::FUTURE_REVISION_WAIT)
            .await
        {
            return Ok(());
        }
        Err(ApiError::Timeout(format!(
            "Too large resource version: {revision}, current: {}",
            self.store.revision()
        )))
    }

    /// The answer to a paged read of the store that failed with `e`: a snapshot that is gone is
    /// a 410, with a token to read the rest as of now if a continue token asked for it.
    fn list_failed(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        continuing: Option<String>,
        e: StoreError,
    ) -> ListError {
        match (e, continuing) {
            (StoreError::Compacted { .. }, Some(start)) => ListError {
                error: ApiError::Gone(INCONSISTENT_CONTINUE.into()),
                continue_token: Some(paging::encode(
                    prefix,
                    &paging::Continue {
                        start,
                        revision: None,
                        remaining: None,
                    },
                )),
            },
            (StoreError::Compacted { .. }, None) => ApiError::Gone(EXPIRED_LIST.into()).into(),
            (e, _) => store_error(info, "", e).into(),
        }
    }

    /// Creates an object from a request body.
    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: WriteOptions,
    ) -> Result<Bytes, ApiError> {
        let decide::Prepared {
            mut body,
            generate_name,
        } = decide::prepare_create(info, ns, body, now_seconds())?;
        if let Some(ns) = ns.filter(|_| info.namespaced) {
            let name = body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let stored = self.get(namespaces(), None, ns).await?;
            let namespace = parse_object(namespaces(), ns, &stored.value)?;
            decide::check_namespace_open(info, ns, name, &namespace)?;
        }
        if info.admits(Admission::DefaultTolerationSeconds) {
            minik_api::defaults::pod_tolerations_json(&mut body, self.pod_toleration_seconds);
        }
        let attempts = if generate_name.is_some() { 8 } else { 1 };
        let mut last_err = None;
        for attempt in 1..=attempts {
            // The last attempt (the only one, without generateName) takes the body itself.
            let mut object = if attempt == attempts {
                std::mem::take(&mut body)
            } else {
                body.clone()
            };
            if let Some(prefix) = &generate_name {
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
            if info.admits(Admission::RuntimeClass) {
                // After defaults, as Kubernetes' admission plugins see a pod (the default
                // tolerations included); what the class adds was validated with the class.
                self.admit_runtime_class(info, &mut admitted).await?;
            }
            if info.admits(Admission::ServiceAccount) {
                self.admit_service_account(info, ns, &mut admitted).await?;
            }
            let allocation = self.allocation(info, ns, None, Scope::Main).await?;
            if let Some(allocation) = &allocation {
                allocation.assign(&mut admitted, None)?;
            }
            let name = str_at(&admitted, "/metadata/name")
                .unwrap_or_default()
                .to_owned();
            let charge = self
                .quotas
                .charge(info, ns, &mut admitted, None, opts.dry_run)
                .await?;
            if opts.dry_run {
                return into_bytes(&admitted);
            }
            let created = self.store.create(&info.key(ns, &name), admitted).await;
            if created.is_err() {
                self.quotas.refund(charge).await;
            } else {
                drop(charge);
            }
            match created {
                Ok(stored) => return Ok(stored.value),
                Err(e @ StoreError::AlreadyExists { .. }) if generate_name.is_some() => {
                    last_err = Some(store_error(info, &name, e));
                }
                Err(e) => return Err(store_error(info, &name, e)),
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::Internal("no name could be generated".into())))
    }

    /// Kubernetes' RuntimeClass admission of a pod being created: reads the RuntimeClass the
    /// pod names and lets [`runtime_class::admit_pod`] fill the pod in from it or refuse it.
    async fn admit_runtime_class(
        &self,
        info: &ResourceInfo,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let classes = runtime_classes();
        let class = match runtime_class::class_name(pod).map(str::to_owned) {
            // An empty name is no key; such a class does not exist.
            None => None,
            Some(name) if name.is_empty() => None,
            Some(name) => match self
                .store
                .get(&classes.key(None, &name))
                .await
                .map_err(|e| store_error(classes, &name, e))?
            {
                Some(stored) => Some(parse_object(classes, &name, &stored.value)?),
                None => None,
            },
        };
        runtime_class::admit_pod(pod, class.as_ref()).map_err(|why| forbidden(info, pod, &why))
    }

    /// The ServiceAccount admission of a pod being created: reads the account the pod runs as
    /// and lets [`service_account::admit_pod`] fill the pod in from it or refuse it.
    async fn admit_service_account(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let accounts = resources::by_kind("v1", "ServiceAccount").map_err(ApiError::Internal)?;
        let name = service_account::account_name(pod).to_owned();
        let account = match self
            .store
            .get(&accounts.key(ns, &name))
            .await
            .map_err(|e| store_error(accounts, &name, e))?
        {
            Some(stored) => Some(parse_object(accounts, &name, &stored.value)?),
            None => None,
        };
        let suffix = self
            .token_volumes
            .then(|| minik_api::generated::suffix(uuid::Uuid::new_v4().as_bytes()));
        service_account::admit_pod(pod, account.as_ref(), suffix.as_deref())
            .map_err(|why| forbidden(info, pod, &why))
    }

    /// For a write of the object itself (not its status) of a kind whose addresses the server
    /// allocates: the allocation, holding the allocator's lock until dropped after the write.
    async fn allocation(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: Option<&str>,
        scope: Scope,
    ) -> Result<Option<Allocation<'_>>, ApiError> {
        if scope != Scope::Main || !info.admits(Admission::AllocateServiceAddresses) {
            return Ok(None);
        }
        self.services.begin(info, ns, name).await.map(Some)
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
                        .quotas
                        .charge(info, ns, &mut new, Some(&object), dry_run)
                        .await?;
                    if dry_run {
                        return Ok(Deleted::Pending(Bytes::from(
                            serde_json::to_vec(&new)
                                .map_err(|e| ApiError::Internal(e.to_string()))?,
                        )));
                    }
                    let written = self.store.update(&key, new, Some(current.revision)).await;
                    if written.is_err() {
                        self.quotas.refund(charge).await;
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
        self.replace(info, ns, name, scope, opts, |_| Ok(body.clone()))
            .await
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
        self.replace(info, ns, name, scope, opts, |current| {
            decide::apply_patch(info, patch.kind, current, &patch.body)
        })
        .await
    }

    /// An update or a patch: `requested` turns the current object into the requested one,
    /// which is admitted as an update in `scope` (and given its addresses, for a kind the
    /// server allocates them for).
    async fn replace(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        scope: Scope,
        opts: WriteOptions,
        requested: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Bytes, ApiError> {
        let allocation = self.allocation(info, ns, Some(name), scope).await?;
        let done = self
            .write_loop(info, ns, name, opts.dry_run, |current, revision| {
                let body = requested(current)?;
                let outcome =
                    decide::admit_update(info, ns, name, current, revision, body, scope, opts)?;
                allocated(allocation.as_ref(), outcome, current)
            })
            .await?;
        Ok(done.into_object())
    }

    /// The `scale` subresource of a Deployment, ReplicaSet or ReplicationController.
    pub async fn get_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let stored = self.get(info, ns, name).await?;
        decide::scale_of(info, &parse_object(info, name, &stored.value)?)
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
                decide::scale_update(info, ns, name, current, revision, &change, opts)
            })
            .await?;
        let bytes = done.into_object();
        decide::scale_of(info, &parse_object(info, name, &bytes)?)
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
        let node = decide::binding_target(name, binding)?;
        self.write_loop(pods(), Some(ns), name, dry_run, |current, _| {
            decide::bind(name, current, &node, now_seconds())
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
        let finalizers = decide::finalizers_of(body)?;
        let done = self
            .write_loop(info, None, name, dry_run, |current, _| {
                Ok(decide::finalize(info, current, &finalizers))
            })
            .await?;
        Ok(done.into_object())
    }

    /// Deletes an object: at once, or by marking it (graceful pod deletion, finalizers).
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        decide::check_deletable(info, name, opts)?;
        self.write_loop(info, ns, name, opts.dry_run, |current, revision| {
            decide::decide_delete(info, name, current, revision, opts, now_seconds())
        })
        .await
    }

    /// Evicts a pod (`pods/{name}/eviction`, a `policy/v1` or `policy/v1beta1` `Eviction`): the
    /// pod is deleted exactly as a `DELETE` with the eviction's `deleteOptions` would delete it,
    /// gracefully when it is on a node, once the PodDisruptionBudget that selects it allows it
    /// (Kubernetes' 429 otherwise; see `disruption::check_eviction`); a dry run
    /// (`dryRun=All` on the request or in the options) checks everything and changes nothing.
    pub async fn evict(
        &self,
        ns: &str,
        name: &str,
        eviction: &Value,
        opts: WriteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut delete =
            decide::eviction_delete_options(ns, name, eviction, opts.field_validation)?;
        delete.dry_run |= opts.dry_run;
        crate::disruption::check_eviction(self, ns, name, &mut delete).await?;
        self.delete(pods(), Some(ns), name, &delete).await
    }
}

/// Fills in the cluster IP and node ports of a Service being replaced (nothing for other kinds).
fn allocated(
    allocation: Option<&Allocation<'_>>,
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

/// An admission plugin's refusal of an object, in Kubernetes' words:
/// `pods "NAME" is forbidden: WHY`.
fn forbidden(info: &ResourceInfo, object: &Value, why: &str) -> ApiError {
    let resource = info.qualified_plural();
    ApiError::Forbidden(match str_at(object, "/metadata/name") {
        Some(name) => format!("{resource} {name:?} is forbidden: {why}"),
        None => format!("{resource} is forbidden: {why}"),
    })
}

pub(crate) fn namespaces() -> &'static ResourceInfo {
    resources::by_plural("", "v1", "namespaces").expect("namespaces are served")
}

pub(crate) fn pods() -> &'static ResourceInfo {
    resources::by_plural("", "v1", "pods").expect("pods are served")
}

fn runtime_classes() -> &'static ResourceInfo {
    resources::by_plural("node.k8s.io", "v1", "runtimeclasses").expect("runtime classes are served")
}
