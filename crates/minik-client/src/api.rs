//! The API as a trait: the verbs of the Kubernetes REST API on JSON objects, and typed helpers
//! on top for callers that work with k8s-openapi structs.

use std::future::Future;
use std::pin::Pin;

use futures::stream::BoxStream;
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::request::{DeleteOptions, Patch, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Label and field selection of a list or watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl ListParams {
    pub fn labels(selector: impl Into<String>) -> Self {
        ListParams {
            label_selector: Some(selector.into()),
            field_selector: None,
        }
    }

    pub fn fields(selector: impl Into<String>) -> Self {
        ListParams {
            label_selector: None,
            field_selector: Some(selector.into()),
        }
    }
}

/// A list answer.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    /// The revision the list is consistent with: where a watch continues.
    pub resource_version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
}

/// One event of a watch. Errors (a 410 among them) arrive as `Err` and end the stream.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub kind: WatchEventType,
    pub object: Value,
}

impl WatchEvent {
    /// Parses one line of a watch stream; an ERROR event becomes the error it carries.
    pub fn from_line(line: &[u8]) -> Result<WatchEvent, ApiError> {
        let mut event: Value = serde_json::from_slice(line).map_err(|e| {
            ApiError::Internal(format!(
                "the server sent a watch event that is not JSON: {e}"
            ))
        })?;
        let object = event
            .get_mut("object")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let kind = match event.get("type").and_then(Value::as_str) {
            Some("ADDED") => WatchEventType::Added,
            Some("MODIFIED") => WatchEventType::Modified,
            Some("DELETED") => WatchEventType::Deleted,
            Some("BOOKMARK") => WatchEventType::Bookmark,
            Some("ERROR") => {
                let code = object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
                let status = serde_json::from_value(object).unwrap_or_default();
                return Err(ApiError::from_status(code, &status));
            }
            other => {
                return Err(ApiError::Internal(format!(
                    "the server sent an unknown watch event type {other:?}"
                )))
            }
        };
        Ok(WatchEvent { kind, object })
    }
}

pub type EventStream = BoxStream<'static, Result<WatchEvent, ApiError>>;

/// The verbs of the API on one resource. `ns` is ignored for cluster-scoped kinds and `None`
/// means all namespaces for lists and watches.
pub trait Api: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    fn list<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<ObjectList, ApiError>>;

    /// Every change after `resource_version` (or, when it is `None`, the current objects as
    /// ADDED and then every change). Bookmarks are asked for.
    fn watch<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<EventStream, ApiError>>;

    fn create<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        object: Value,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// Replaces an object (`status: false`) or its status subresource (`status: true`).
    fn replace<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        object: Value,
        status: bool,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// Patches an object (`status: false`) or its status subresource (`status: true`).
    fn patch<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        patch: Patch,
        status: bool,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// Deletes an object; the answer is its last state (or its marked state, when the deletion
    /// waits for a grace period or finalizers).
    fn delete<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        opts: DeleteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// Binds a pod to a node through the `binding` subresource.
    fn bind<'a>(
        &'a self,
        ns: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Requests a token for service account `ns/account` through its `token` subresource
    /// (`body`: an `authentication.k8s.io/v1` TokenRequest); answers the TokenRequest with its
    /// `status.token`. Clients that cannot answer 405.
    fn request_token<'a>(
        &'a self,
        ns: &'a str,
        account: &'a str,
        body: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let _ = body;
        Box::pin(async move {
            Err(ApiError::MethodNotAllowed(format!(
                "this client cannot request tokens for {ns}/{account}"
            )))
        })
    }

    /// Replaces a namespace's `spec.finalizers` through its `finalize` subresource (what the
    /// namespace controller does once the namespace is empty). Only the in-process API of the
    /// server implements it; other clients answer 405.
    fn finalize_namespace<'a>(
        &'a self,
        name: &'a str,
        finalizers: Vec<String>,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let _ = finalizers;
        Box::pin(async move {
            Err(ApiError::MethodNotAllowed(format!(
                "this client cannot finalize namespace {name}"
            )))
        })
    }
}

/// The served resource of a k8s-openapi type.
pub fn resource_of<K: k8s_openapi::Resource>() -> &'static ResourceInfo {
    resources::by_kind(K::API_VERSION, K::KIND)
        .unwrap_or_else(|e| panic!("{} is not a served kind: {e}", K::KIND))
}

fn decode<K: DeserializeOwned>(value: Value) -> Result<K, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::Internal(format!(
            "the server sent an object that does not decode: {e}"
        ))
    })
}

fn encode<K: Serialize>(object: &K) -> Result<Value, ApiError> {
    serde_json::to_value(object)
        .map_err(|e| ApiError::Internal(format!("cannot encode the object: {e}")))
}

/// Typed helpers over [`Api`] for k8s-openapi types.
pub trait ApiExt: Api {
    fn get_as<'a, K>(
        &'a self,
        ns: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<K, ApiError>>
    where
        K: k8s_openapi::Resource + DeserializeOwned + 'a,
    {
        Box::pin(async move { decode(self.get(resource_of::<K>(), ns, name).await?) })
    }

    fn list_as<'a, K>(
        &'a self,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<(Vec<K>, String), ApiError>>
    where
        K: k8s_openapi::Resource + DeserializeOwned + Send + 'a,
    {
        Box::pin(async move {
            let list = self.list(resource_of::<K>(), ns, params).await?;
            let items = list
                .items
                .into_iter()
                .map(decode)
                .collect::<Result<Vec<K>, _>>()?;
            Ok((items, list.resource_version))
        })
    }

    fn create_as<'a, K>(&'a self, object: &'a K) -> BoxFuture<'a, Result<K, ApiError>>
    where
        K: k8s_openapi::Resource
            + Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + Serialize
            + DeserializeOwned
            + Sync
            + 'a,
    {
        Box::pin(async move {
            let ns = object.metadata().namespace.as_deref();
            decode(
                self.create(
                    resource_of::<K>(),
                    ns,
                    encode(object)?,
                    WriteOptions::default(),
                )
                .await?,
            )
        })
    }

    /// Replaces the object, or its status, with compare-and-swap on its resourceVersion.
    fn replace_as<'a, K>(
        &'a self,
        object: &'a K,
        status: bool,
    ) -> BoxFuture<'a, Result<K, ApiError>>
    where
        K: k8s_openapi::Resource
            + Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + Serialize
            + DeserializeOwned
            + Sync
            + 'a,
    {
        Box::pin(async move {
            let meta = object.metadata();
            let name = meta.name.as_deref().unwrap_or_default();
            let value = encode(object)?;
            decode(
                self.replace(
                    resource_of::<K>(),
                    meta.namespace.as_deref(),
                    name,
                    value,
                    status,
                    WriteOptions::default(),
                )
                .await?,
            )
        })
    }
}

impl<T: Api + ?Sized> ApiExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_parse_and_errors_become_errors() {
        let event = WatchEvent::from_line(br#"{"type":"ADDED","object":{"kind":"Pod"}}"#).unwrap();
        assert_eq!(event.kind, WatchEventType::Added);
        assert_eq!(event.object["kind"], "Pod");
        let gone = WatchEvent::from_line(
            br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410,"reason":"Expired","message":"too old resource version: 1 (9)"}}"#,
        )
        .unwrap_err();
        assert!(gone.is_gone());
        assert!(WatchEvent::from_line(b"{").is_err());
        assert!(WatchEvent::from_line(br#"{"type":"SOMETHING"}"#).is_err());
    }
}
