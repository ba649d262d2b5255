//! The [`minik_client::Api`] of the components that run inside the server (scheduler,
//! controllers): the same registry operations the HTTP handlers call, without the socket.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use minik_api::request::{DeleteOptions, Patch, WriteOptions};
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_client::{Api, BoxFuture, ListParams, RawEventStream, RawObjectList};
use serde_json::{json, Value};

use crate::registry::{Filter, Registry, Scope};
use crate::watch::{WatchFrame, WatchOptions, WatchStart};

/// How long an in-process watch lasts before its informer re-watches.
const LOCAL_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const LOCAL_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

fn parse(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("a stored object is not JSON: {e}")))
}

fn filter(info: &ResourceInfo, params: &ListParams) -> Result<Filter, ApiError> {
    Filter::parse(
        info,
        params.label_selector.as_deref(),
        params.field_selector.as_deref(),
    )
}

fn scope(status: bool) -> Scope {
    if status {
        Scope::Status
    } else {
        Scope::Main
    }
}

impl Api for Registry {
    fn get<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { parse(&Registry::get(self, info, ns, name).await?.value) })
    }

    fn list_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<RawObjectList, ApiError>> {
        Box::pin(async move {
            let listed = Registry::list(self, info, ns, &filter(info, params)?).await?;
            Ok(RawObjectList {
                items: listed.items,
                resource_version: listed.revision.to_string(),
            })
        })
    }

    fn watch_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RawEventStream, ApiError>> {
        Box::pin(async move {
            let start = match resource_version {
                None | Some("") | Some("0") => WatchStart::Now,
                Some(rv) => WatchStart::After(rv.parse().map_err(|_| {
                    ApiError::BadRequest(format!("resourceVersion {rv:?} is not valid"))
                })?),
            };
            let opts = WatchOptions {
                start,
                filter: filter(info, params)?,
                bookmarks: Some(LOCAL_BOOKMARK_INTERVAL),
                timeout: LOCAL_WATCH_TIMEOUT,
                closing: None,
                stalled: None,
            };
            let frames = Registry::watch(self, info, ns, opts).await?;
            Ok(frames.map(WatchFrame::into_raw).boxed())
        })
    }

    fn create<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        object: Value,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { parse(&Registry::create(self, info, ns, object, opts).await?) })
    }

    fn replace<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        object: Value,
        status: bool,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            parse(&Registry::update(self, info, ns, name, object, scope(status), opts).await?)
        })
    }

    fn patch<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        patch: Patch,
        status: bool,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            parse(&Registry::patch(self, info, ns, name, &patch, scope(status), opts).await?)
        })
    }

    fn delete<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        opts: DeleteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let done = Registry::delete(self, info, ns, name, &opts).await?;
            parse(&done.into_object())
        })
    }

    fn bind<'a>(
        &'a self,
        ns: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let binding =
                json!({"metadata": {"name": pod}, "target": {"kind": "Node", "name": node}});
            Registry::bind(self, ns, pod, &binding, false).await
        })
    }

    fn finalize_namespace<'a>(
        &'a self,
        name: &'a str,
        finalizers: Vec<String>,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let body = json!({"spec": {"finalizers": finalizers}});
            parse(&Registry::finalize_namespace(self, name, &body, false).await?)
        })
    }
}
