//! One module per served kind, holding that kind's rules, as Kubernetes keeps them in each
//! `pkg/registry/<group>/<kind>/strategy.go`: how it is defaulted and validated on a create
//! and on an update, what it carries over from the stored version, and the decisions the
//! generic registry asks of it (its [`Strategy`]). The registry of the API server never asks
//! "is this a Pod?"; it asks the strategy of the kind it serves.
//!
//! Design: a kind's rules come in two parts, both written in its module.
//! - [`Kind`], on the typed object (`k8s_openapi`'s `Pod`, ...): defaults, validation of a
//!   create and of an update, what an update carries over. The table of kinds
//!   ([`crate::resources::RESOURCES`]) turns it into JSON-in, JSON-out admission.
//! - [`Strategy`], object-safe and on JSON, referenced from the table entry: whether a create
//!   keeps the status a client sends, how a delete proceeds, what holds a deletion, whether a
//!   name may not be deleted, the form of a scale selector, extra row conditions in Tables, and
//!   the server-side admission steps ([`Admission`]) the API server carries out with its I/O
//!   (allocating addresses, charging quotas). Every method has the common answer as default, so
//!   a kind only writes where it differs.
//!
//! Like all of `minik-api`, strategies are pure: no I/O, no clock (time is passed in).
//!
//! The quota a kind is charged is its strategy's too ([`crate::quota`] does the arithmetic), and
//! so are its printer columns and cells ([`crate::printers`] holds what several kinds share:
//! the column type, the name and age columns, pod summaries). Field selectors stay a table
//! keyed by kind name in [`crate::fields`], beside the field paths they read.

mod config_map;
mod controller_revision;
mod cron_job;
mod daemon_set;
mod deployment;
mod endpoints;
mod event;
mod job;
mod lease;
pub mod namespace;
mod node;
pub mod persistent_volume;
mod persistent_volume_claim;
mod pod;
mod pod_disruption_budget;
mod replica_set;
mod replication_controller;
mod resource_quota;
pub mod runtime_class;
mod secret;
mod service;
pub mod service_account;
mod stateful_set;
pub mod storage_class;

pub(crate) use config_map::CONFIG_MAPS;
pub(crate) use controller_revision::CONTROLLER_REVISIONS;
pub(crate) use cron_job::CRON_JOBS;
pub(crate) use daemon_set::DAEMON_SETS;
pub(crate) use deployment::DEPLOYMENTS;
pub(crate) use endpoints::ENDPOINTS;
pub(crate) use event::EVENTS;
pub(crate) use job::JOBS;
pub(crate) use lease::LEASES;
pub(crate) use namespace::NAMESPACES;
pub(crate) use node::NODES;
pub(crate) use persistent_volume::PERSISTENT_VOLUMES;
pub(crate) use persistent_volume_claim::PERSISTENT_VOLUME_CLAIMS;
pub(crate) use pod::PODS;
pub(crate) use pod_disruption_budget::POD_DISRUPTION_BUDGETS;
pub(crate) use replica_set::REPLICA_SETS;
pub(crate) use replication_controller::REPLICATION_CONTROLLERS;
pub(crate) use resource_quota::RESOURCE_QUOTAS;
pub(crate) use runtime_class::RUNTIME_CLASSES;
pub(crate) use secret::SECRETS;
pub(crate) use service::SERVICES;
pub(crate) use service_account::SERVICE_ACCOUNTS;
pub(crate) use stateful_set::STATEFUL_SETS;
pub(crate) use storage_class::STORAGE_CLASSES;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::Metadata;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::decode::{self, DecodeError, FieldValidation};
use crate::error::ErrorList;
use crate::printers::{self, Table};
use crate::quantity::ResourceList;
use crate::selector::Selector;

/// A step of admission that needs the API server's I/O, declared by a kind and carried out by
/// the server (Kubernetes' admission plugins and registry allocators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Pods that do not tolerate their node being not-ready or unreachable get tolerations for
    /// the server's configured seconds (Kubernetes' DefaultTolerationSeconds).
    DefaultTolerationSeconds,
    /// A ClusterIP and node ports are allocated from what the other stored objects of the kind
    /// hold, on creates and on replacements of the object (not of its status).
    AllocateServiceAddresses,
    /// The object is a ResourceQuota: its first status is counted from the namespace on create,
    /// its own updates are not charged, and reading it waits for charges under way.
    QuotaStatus,
    /// A pod being created, once defaulted and validated, gets the overhead, node selector and
    /// tolerations of the RuntimeClass it names, and is refused when that class does not exist
    /// or conflicts with it (Kubernetes' RuntimeClass admission; [`runtime_class::admit_pod`]).
    RuntimeClass,
    /// A pod being created runs as an existing service account (refused otherwise, but for
    /// `default`) and, without pull secrets of its own, gets its account's
    /// ([`service_account::admit_pod`]).
    ServiceAccount,
}

/// How a delete proceeds, once preconditions and propagation finalizers are dealt with.
#[derive(Clone, Debug, PartialEq)]
pub enum Deletion {
    /// Gone at once, unless finalizers hold it (then marked, without a grace period).
    Immediate,
    /// Marked with a grace period, the request's or else `default_seconds`, for whoever runs
    /// it to stop it (a node agent); gone when that grace period is cut to zero.
    Graceful { default_seconds: i64 },
    /// Marked at once, its status replaced by `status`, and gone when nothing holds it: no
    /// finalizers and [`Strategy::deletion_held`] false.
    Finalized { status: Value },
}

/// The decisions the generic registry asks of a kind. Defaults are the common answers.
pub trait Strategy: Sync + Send + std::fmt::Debug {
    /// Whether a create keeps the status the client sends, for a kind with a status
    /// subresource (otherwise it starts with none: the server's and controllers' to write).
    fn keeps_status_on_create(&self) -> bool {
        false
    }

    /// The server-side admission steps of the kind.
    fn admission(&self) -> &'static [Admission] {
        &[]
    }

    /// How a delete of `object`, as it is stored now, proceeds.
    fn deletion(&self, _object: &Value) -> Deletion {
        Deletion::Immediate
    }

    /// Whether something in the object itself still holds its deletion (beyond
    /// `metadata.finalizers` and the grace period, which hold every kind).
    fn deletion_held(&self, _object: &Value) -> bool {
        false
    }

    /// Why the object named `name` may never be deleted, if it may not.
    fn undeletable(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// Whether a `DELETE` of the whole collection is served.
    fn deletes_collection(&self) -> bool {
        true
    }

    /// `status.selector` of the kind's `Scale` (autoscaling/v1): the object's `spec.selector`
    /// in label selector syntax. The default reads a `LabelSelector`.
    fn scale_selector(&self, object: &Value) -> Result<String, String> {
        match object.pointer("/spec/selector") {
            Some(selector) => {
                let selector: LabelSelector = serde_json::from_value(selector.clone())
                    .map_err(|e| format!("stored selector is invalid: {e}"))?;
                Selector::from_label_selector(&selector).map(|s| s.to_string())
            }
            None => Ok(String::new()),
        }
    }

    /// The kind's table (`kubectl get`, server-side `Table`s).
    fn table(&self) -> &Table {
        &printers::DEFAULT_TABLE
    }

    /// The `conditions` of the object's row in a server-side `Table`; `Null` for none.
    fn row_conditions(&self, _object: &Value) -> Value {
        Value::Null
    }

    /// The name quotas also count the kind's objects under, besides `count/<resource>`
    /// (Kubernetes' legacy object counts: `pods`, `services`, ...).
    fn quota_object_count(&self) -> Option<&'static str> {
        None
    }

    /// What the object adds to its namespace's quota usage at `now` (seconds since the epoch)
    /// besides its object counts; `None` when it does not count at all any more (a finished
    /// pod).
    fn quota_usage(&self, _object: &Value, _now: i64) -> Option<ResourceList> {
        Some(ResourceList::new())
    }

    /// Whether objects of the kind make up the usage of the quota resource `name`, besides
    /// their object counts (`requests.cpu`, `services.nodeports`, ...).
    fn quota_resource(&self, _name: &str) -> bool {
        false
    }

    /// Whether the quota scope `scope` (`BestEffort`, ...) covers the object. Kinds without
    /// scopes are covered by quotas without scopes only.
    fn in_quota_scope(&self, _scope: &str, _object: &Value) -> bool {
        false
    }

    /// What the object leaves unspecified that a quota limiting `hard` requires of it, in
    /// Kubernetes' words (`limits.cpu for: a,b`); `None` when nothing is missing.
    fn quota_unspecified(&self, _hard: &ResourceList, _object: &Value) -> Option<String> {
        None
    }
}

/// What admission needs of a kind's type: its defaults and validation, which include the
/// object's metadata.
pub(crate) trait Kind: Serialize + DeserializeOwned + Metadata<Ty = ObjectMeta> {
    fn set_defaults(&mut self);
    /// Carries over from the stored object what a replacement may leave out (allocated
    /// addresses, server-set metadata), before defaults and validation.
    fn carry_over(&mut self, old: &Self) {
        crate::defaults::object_meta_update(self.metadata_mut(), old.metadata());
    }
    fn validate(&self) -> ErrorList;
    fn validate_update(&self, old: &Self) -> ErrorList;
}

/// `impl Kind` from a kind's defaults and validation functions.
macro_rules! typed_rules {
    ($ty:ty, $defaults:path, $validate:path, $validate_update:path) => {
        impl $crate::kinds::Kind for $ty {
            fn set_defaults(&mut self) {
                $defaults(self)
            }
            fn validate(&self) -> $crate::error::ErrorList {
                $validate(self)
            }
            fn validate_update(&self, old: &Self) -> $crate::error::ErrorList {
                $validate_update(self, old)
            }
        }
    };
}
pub(crate) use typed_rules;

/// Why a write was refused by admission, before the owner of the object is known for messages.
#[derive(Debug)]
pub(crate) enum AdmitError {
    Decode(DecodeError),
    Invalid(ErrorList),
}

fn decode<K: Kind>(value: &Value, fv: FieldValidation) -> Result<K, AdmitError> {
    match fv {
        FieldValidation::Strict => decode::from_value_strict(value),
        FieldValidation::Warn | FieldValidation::Ignore => decode::from_value_lenient(value),
    }
    .map_err(AdmitError::Decode)
}

fn encode<K: Kind>(object: &K) -> Result<Value, AdmitError> {
    serde_json::to_value(object).map_err(|e| AdmitError::Decode(DecodeError::Syntax(e.to_string())))
}

/// Decodes, defaults and validates an object of kind `K` to be created.
pub(crate) fn admit_create<K: Kind>(
    value: &Value,
    fv: FieldValidation,
) -> Result<Value, AdmitError> {
    let mut object: K = decode(value, fv)?;
    object.set_defaults();
    let errors = object.validate();
    if !errors.is_empty() {
        return Err(AdmitError::Invalid(errors));
    }
    encode(&object)
}

/// Decodes, carries over, defaults and validates a replacement of `old`, of kind `K`.
pub(crate) fn admit_update<K: Kind>(
    value: &Value,
    old: &Value,
    fv: FieldValidation,
) -> Result<Value, AdmitError> {
    let mut object: K = decode(value, fv)?;
    // The stored object was admitted before; a lenient decode cannot fail on it unless the
    // store is damaged, which is worth a clear error rather than a panic.
    let old: K = decode(old, FieldValidation::Ignore)?;
    object.carry_over(&old);
    object.set_defaults();
    let errors = object.validate_update(&old);
    if !errors.is_empty() {
        return Err(AdmitError::Invalid(errors));
    }
    encode(&object)
}

/// The strategy of kinds that follow every common rule of the registry: only their table is
/// their own.
#[derive(Debug)]
pub(crate) struct Common(pub(crate) Table);

impl Strategy for Common {
    fn table(&self) -> &Table {
        &self.0
    }
}
