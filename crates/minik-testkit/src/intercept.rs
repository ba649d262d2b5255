//! An [`Api`] that passes every request on to another and shows each write to a hook first,
//! which may refuse it: how a test counts what a component writes, or has some of its writes
//! refused, without a second implementation of every verb.

use std::sync::Arc;

use minik_api::k8s_openapi::api::core::v1::{Namespace, Pod};
use minik_api::request::{DeleteOptions, Patch, WriteOptions};
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_client::{resource_of, Api, BoxFuture, ListParams, RawEventStream, RawObjectList};
use serde_json::Value;

/// One write, as the hook sees it before it is passed on.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// `create`, `replace`, `replace-status`, `patch`, `patch-status`, `delete`, `bind` (of a
    /// pod to a node) or `finalize` (of a namespace).
    pub verb: &'static str,
    pub info: &'static ResourceInfo,
    pub ns: Option<&'a str>,
    /// The object's name; for a create, its `metadata.name` (empty when it has none).
    pub name: &'a str,
    /// What a create writes; `None` for the other verbs.
    pub object: Option<&'a Value>,
}

/// Reads go straight to `inner`; each write goes to the hook, and on to `inner` only when the
/// hook answers `Ok` (its error is the write's answer otherwise).
pub struct Intercepted<H> {
    inner: Arc<dyn Api>,
    hook: H,
}

impl<H> Intercepted<H>
where
    H: Fn(&Write<'_>) -> Result<(), ApiError> + Send + Sync + 'static,
{
    pub fn new(inner: Arc<dyn Api>, hook: H) -> Self {
        Intercepted { inner, hook }
    }

    fn check(
        &self,
        verb: &'static str,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        object: Option<&Value>,
    ) -> Result<(), ApiError> {
        (self.hook)(&Write {
            verb,
            info,
            ns,
            name,
            object,
        })
    }
}

/// The write `call` makes, or the hook's refusal.
fn pass<'a, T: Send + 'a>(
    verdict: Result<(), ApiError>,
    call: impl FnOnce() -> BoxFuture<'a, Result<T, ApiError>>,
) -> BoxFuture<'a, Result<T, ApiError>> {
    match verdict {
        Ok(()) => call(),
        Err(e) => Box::pin(async move { Err(e) }),
    }
}

/// `plain`, or its `-status` form for a write of the status subresource.
fn verb(plain: &'static str, with_status: &'static str, status: bool) -> &'static str {
    if status {
        with_status
    } else {
        plain
    }
}

impl<H> Api for Intercepted<H>
where
    H: Fn(&Write<'_>) -> Result<(), ApiError> + Send + Sync + 'static,
{
    fn get<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        self.inner.get(info, ns, name)
    }

    fn list_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<RawObjectList, ApiError>> {
        self.inner.list_raw(info, ns, params)
    }

    fn watch_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RawEventStream, ApiError>> {
        self.inner.watch_raw(info, ns, params, resource_version)
    }

    fn create<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        object: Value,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let name = object.pointer("/metadata/name").and_then(Value::as_str);
        let verdict = self.check("create", info, ns, name.unwrap_or(""), Some(&object));
        pass(verdict, || self.inner.create(info, ns, object, opts))
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
        let verb = verb("replace", "replace-status", status);
        pass(self.check(verb, info, ns, name, None), || {
            self.inner.replace(info, ns, name, object, status, opts)
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
        let verb = verb("patch", "patch-status", status);
        pass(self.check(verb, info, ns, name, None), || {
            self.inner.patch(info, ns, name, patch, status, opts)
        })
    }

    fn delete<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        opts: DeleteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        pass(self.check("delete", info, ns, name, None), || {
            self.inner.delete(info, ns, name, opts)
        })
    }

    fn bind<'a>(
        &'a self,
        ns: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let info = resource_of::<Pod>();
        pass(self.check("bind", info, Some(ns), pod, None), || {
            self.inner.bind(ns, pod, node)
        })
    }

    fn finalize_namespace<'a>(
        &'a self,
        name: &'a str,
        finalizers: Vec<String>,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let info = resource_of::<Namespace>();
        pass(self.check("finalize", info, None, name, None), || {
            self.inner.finalize_namespace(name, finalizers)
        })
    }
}
