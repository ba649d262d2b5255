//! How the store's errors and its stored bytes become [`ApiError`]s: the one conversion every
//! module that reads or writes the store shares (the registry, quota admission, the ClusterIP
//! allocator, watches, event expiry). A leaf: it knows the store and the API's types, nothing
//! of the server.

use minik_api::resources::ResourceInfo;
use minik_api::{ApiError, ObjectRef};
use minik_store::StoreError;
use serde_json::Value;

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

pub(crate) fn parse_object(
    info: &ResourceInfo,
    name: &str,
    bytes: &[u8],
) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Internal(format!(
            "stored {} {name:?} is not valid JSON: {e}",
            info.kind
        ))
    })
}
