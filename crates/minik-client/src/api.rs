//! The API as a trait: the verbs of the Kubernetes REST API on JSON objects, and typed helpers
//! on top for callers that work with k8s-openapi structs.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use futures::stream::BoxStream;
use futures::StreamExt;
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::request::{DeleteOptions, Patch, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
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
        RawWatchEvent::from_line(Bytes::copy_from_slice(line))?.parse()
    }
}

/// One event of a watch with its object still the JSON text it came as, for callers that decode
/// it straight into their own type (the informers) instead of through a [`Value`].
#[derive(Clone, Debug)]
pub struct RawWatchEvent {
    pub kind: WatchEventType,
    pub object: Bytes,
}

/// The two fields of a watch line, the object left unparsed (a slice of the line).
#[derive(serde::Deserialize)]
struct RawLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

impl RawWatchEvent {
    /// Splits one line of a watch stream into its type and the object's bytes (shared with
    /// `line`, not copied); an ERROR event becomes the error it carries.
    pub fn from_line(line: Bytes) -> Result<RawWatchEvent, ApiError> {
        let parsed: RawLine<'_> = serde_json::from_slice(&line).map_err(|e| {
            ApiError::Internal(format!(
                "the server sent a watch event that is not JSON: {e}"
            ))
        })?;
        let object = parsed
            .object
            .map(|raw| line.slice_ref(raw.get().as_bytes()))
            .unwrap_or_else(|| Bytes::from_static(b"null"));
        let kind = match parsed.kind.as_deref() {
            Some("ADDED") => WatchEventType::Added,
            Some("MODIFIED") => WatchEventType::Modified,
            Some("DELETED") => WatchEventType::Deleted,
            Some("BOOKMARK") => WatchEventType::Bookmark,
            Some("ERROR") => {
                let status: Value = serde_json::from_slice(&object).unwrap_or(Value::Null);
                let code = status.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
                let status = serde_json::from_value(status).unwrap_or_default();
                return Err(ApiError::from_status(code, &status));
            }
            other => {
                return Err(ApiError::Internal(format!(
                    "the server sent an unknown watch event type {other:?}"
                )))
            }
        };
        Ok(RawWatchEvent { kind, object })
    }

    /// The event with its object parsed.
    pub fn parse(self) -> Result<WatchEvent, ApiError> {
        Ok(WatchEvent {
            kind: self.kind,
            object: parse_object(&self.object)?,
        })
    }
}

fn parse_object(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("the server sent an object that is not JSON: {e}")))
}

/// A list answer with each item still the JSON text it came as.
#[derive(Clone, Debug)]
pub struct RawObjectList {
    pub items: Vec<Bytes>,
    /// The revision the list is consistent with: where a watch continues.
    pub resource_version: String,
}

impl RawObjectList {
    /// Splits a list's JSON body into its items' bytes (shared with `body`, not copied).
    pub fn from_body(body: Bytes) -> Result<RawObjectList, ApiError> {
        #[derive(serde::Deserialize, Default)]
        struct Meta {
            #[serde(rename = "resourceVersion", default)]
            resource_version: String,
        }
        #[derive(serde::Deserialize)]
        struct List<'a> {
            #[serde(default)]
            metadata: Option<Meta>,
            #[serde(borrow, default)]
            items: Option<Vec<&'a RawValue>>,
        }
        let list: List<'_> = serde_json::from_slice(&body).map_err(|e| {
            ApiError::Internal(format!("the server sent a list that is not JSON: {e}"))
        })?;
        Ok(RawObjectList {
            items: list
                .items
                .unwrap_or_default()
                .into_iter()
                .map(|raw| body.slice_ref(raw.get().as_bytes()))
                .collect(),
            resource_version: list.metadata.unwrap_or_default().resource_version,
        })
    }
}

impl RawObjectList {
    /// The list with its items parsed.
    pub fn parse(self) -> Result<ObjectList, ApiError> {
        Ok(ObjectList {
            items: self
                .items
                .iter()
                .map(|item| parse_object(item))
                .collect::<Result<_, _>>()?,
            resource_version: self.resource_version,
        })
    }
}

pub type RawEventStream = BoxStream<'static, Result<RawWatchEvent, ApiError>>;

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

    /// The objects of a resource, each as the JSON text it came as: implementations that hold
    /// the text (the HTTP client, the server's in-process API) hand it out without parsing it,
    /// so that callers with a type of their own (the informers) decode it once.
    fn list_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<RawObjectList, ApiError>>;

    /// Every change after `resource_version` (or, when it is `None`, the current objects as
    /// ADDED and then every change), each object as its JSON text, as [`Api::list_raw`].
    /// Bookmarks are asked for.
    fn watch_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RawEventStream, ApiError>>;

    /// [`Api::list_raw`] with the objects parsed.
    fn list<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<ObjectList, ApiError>> {
        Box::pin(async move { self.list_raw(info, ns, params).await?.parse() })
    }

    /// [`Api::watch_raw`] with the objects parsed.
    fn watch<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<EventStream, ApiError>> {
        Box::pin(async move {
            let events = self.watch_raw(info, ns, params, resource_version).await?;
            Ok(events.map(|event| event?.parse()).boxed())
        })
    }

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

    /// Whether `part` lies inside `whole`'s memory: shared, not copied.
    fn within(part: &Bytes, whole: &Bytes) -> bool {
        let range = whole.as_ptr_range();
        range.contains(&part.as_ptr()) && part.len() <= whole.len()
    }

    #[test]
    fn raw_watch_lines_share_the_object_bytes() {
        let line = Bytes::from_static(
            b"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\\\"b\"}}}\n",
        );
        let event = RawWatchEvent::from_line(line.clone()).unwrap();
        assert_eq!(event.kind, WatchEventType::Modified);
        assert_eq!(
            &event.object[..],
            br#"{"kind":"Pod","metadata":{"name":"a\"b"}}"#
        );
        assert!(within(&event.object, &line));
        let parsed = event.parse().unwrap();
        assert_eq!(parsed.object["metadata"]["name"], "a\"b");

        // The type may come after the object, and may be escaped.
        let event = RawWatchEvent::from_line(Bytes::from_static(
            br#"{"object":{},"type":"BOOK\u004dARK"}"#,
        ))
        .unwrap();
        assert_eq!(event.kind, WatchEventType::Bookmark);
        let gone = RawWatchEvent::from_line(Bytes::from_static(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#,
        ))
        .unwrap_err();
        assert!(gone.is_gone(), "{gone:?}");
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"type":"ADDED","object":{"a":}}"#,
            br#"{"type":7}"#,
        ] {
            assert!(
                RawWatchEvent::from_line(Bytes::from_static(bad)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn raw_lists_share_the_items_bytes() {
        let body = Bytes::from_static(
            br#"{"kind":"PodList","items":[{"metadata":{"name":"a"}}, {"metadata":{"name":"b"}}],"metadata":{"resourceVersion":"42","continue":""}}"#,
        );
        let list = RawObjectList::from_body(body.clone()).unwrap();
        assert_eq!(list.resource_version, "42");
        assert_eq!(list.items.len(), 2);
        assert_eq!(&list.items[1][..], br#"{"metadata":{"name":"b"}}"#);
        assert!(list.items.iter().all(|item| within(item, &body)));
        let parsed = list.parse().unwrap();
        assert_eq!(parsed.items[0]["metadata"]["name"], "a");

        let empty = RawObjectList::from_body(Bytes::from_static(br#"{"items":null}"#)).unwrap();
        assert!(empty.items.is_empty());
        assert_eq!(empty.resource_version, "");
        assert!(RawObjectList::from_body(Bytes::from_static(br#"{"items":{}}"#)).is_err());
    }
}
