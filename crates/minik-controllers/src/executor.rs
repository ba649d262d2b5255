//! Carries out plans through the [`Api`]: creates in slow-start batches, deletes at once with
//! preconditions, merge patches, and events. It stops at the first write that fails, so what a
//! plan orders (say, scale one ReplicaSet down before another up) holds, and reports what was
//! not done so that expectations can be lowered.

use std::sync::Arc;

use futures::future::join_all;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_client::{Api, EventNote, EventRecorder, EventType};
use serde_json::Value;

use crate::action::{Action, Announce, Note, ObjectPatch, Target};
use crate::kinds::Kind;

/// What a plan's execution did not do.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Names of objects whose create failed or was never tried.
    pub not_created: Vec<String>,
    /// Uids of objects whose delete failed, was never tried, or found nothing to delete.
    pub not_deleted: Vec<String>,
    /// The first failure; the actions after it were skipped.
    pub error: Option<ApiError>,
}

#[derive(Clone)]
pub(crate) struct Executor {
    api: Arc<dyn Api>,
    events: EventRecorder,
}

/// The outcome of a write to one object: done also when the object is gone, as there is then
/// nothing left to change, and its deletion is seen by whoever cares.
fn gone_is_done<T>(result: Result<T, ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

fn object_name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Executor {
    pub(crate) fn new(api: Arc<dyn Api>) -> Self {
        Executor {
            events: EventRecorder::new(api.clone()),
            api,
        }
    }

    pub(crate) fn api(&self) -> &Arc<dyn Api> {
        &self.api
    }

    /// Applies the actions in order, stopping at the first failure.
    pub(crate) async fn apply(&self, actions: Vec<Action>) -> Report {
        let mut report = Report::default();
        let mut actions = actions.into_iter();
        while let Some(action) = actions.next() {
            let done = match action {
                Action::Create {
                    kind,
                    namespace,
                    objects,
                    announce,
                } => {
                    self.create_all(kind, &namespace, objects, announce, &mut report)
                        .await
                }
                Action::Delete {
                    kind,
                    namespace,
                    targets,
                    propagation,
                    announce,
                } => {
                    self.delete_all(
                        kind,
                        &namespace,
                        targets,
                        propagation,
                        announce,
                        &mut report,
                    )
                    .await
                }
                Action::Patch {
                    kind,
                    namespace,
                    name,
                    body,
                    status,
                } => self.patch(kind, &namespace, &name, body, status).await,
                Action::PatchEach { kind, patches } => self.patch_each(kind, patches).await,
                Action::Record(note) => {
                    self.record(note).await;
                    Ok(())
                }
            };
            if let Err(e) = done {
                report.error = Some(e);
                for skipped in actions {
                    match skipped {
                        Action::Create { objects, .. } => {
                            report.not_created.extend(objects.iter().map(object_name))
                        }
                        Action::Delete { targets, .. } => report
                            .not_deleted
                            .extend(targets.into_iter().map(|t| t.uid)),
                        Action::Patch { .. } | Action::PatchEach { .. } | Action::Record(_) => {}
                    }
                }
                break;
            }
        }
        report
    }

    /// Creates in batches of 1, 2, 4, ... (Kubernetes' `slowStartBatch`): a burst that is going
    /// to fail (quota, admission) fails after one request instead of hundreds.
    async fn create_all(
        &self,
        kind: Kind,
        namespace: &str,
        objects: Vec<Value>,
        announce: Option<Announce>,
        report: &mut Report,
    ) -> Result<(), ApiError> {
        let info = kind.info();
        let mut remaining = objects.into_iter().peekable();
        let mut batch_size = 1usize;
        let mut created = Vec::new();
        let mut failure = None;
        while remaining.peek().is_some() {
            let batch: Vec<Value> = remaining.by_ref().take(batch_size).collect();
            let results = join_all(batch.into_iter().map(|object| async move {
                let name = object_name(&object);
                let result = self
                    .api
                    .create(info, Some(namespace), object, WriteOptions::default())
                    .await;
                (name, result)
            }))
            .await;
            for (name, result) in results {
                match result {
                    Ok(_) => created.push(name),
                    Err(e) => {
                        tracing::debug!(kind = kind.name(), %namespace, %name, error = %e, "create failed");
                        report.not_created.push(name);
                        failure.get_or_insert(e);
                    }
                }
            }
            if failure.is_some() {
                report
                    .not_created
                    .extend(remaining.map(|o| object_name(&o)));
                break;
            }
            batch_size = batch_size.saturating_mul(2);
        }
        self.announce(announce, &created).await;
        failure.map_or(Ok(()), Err)
    }

    async fn delete_all(
        &self,
        kind: Kind,
        namespace: &str,
        targets: Vec<Target>,
        propagation: Option<minik_api::request::Propagation>,
        announce: Option<Announce>,
        report: &mut Report,
    ) -> Result<(), ApiError> {
        let info = kind.info();
        let results = join_all(targets.into_iter().map(|target| async move {
            let opts = DeleteOptions {
                propagation,
                precondition_uid: Some(target.uid.clone()),
                precondition_resource_version: target.resource_version.clone(),
                ..DeleteOptions::default()
            };
            let result = self
                .api
                .delete(info, Some(namespace), &target.name, opts)
                .await;
            (target, result)
        }))
        .await;
        let mut failure = None;
        let mut deleted = Vec::new();
        for (target, result) in results {
            match result {
                Ok(_) => deleted.push(target.name),
                // Someone else deleted it: what the delete wanted is true.
                Err(e) if e.is_not_found() => report.not_deleted.push(target.uid),
                Err(e) => {
                    tracing::debug!(kind = kind.name(), %namespace, name = %target.name, error = %e, "delete failed");
                    report.not_deleted.push(target.uid);
                    failure.get_or_insert(e);
                }
            }
        }
        self.announce(announce, &deleted).await;
        failure.map_or(Ok(()), Err)
    }

    async fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        body: Value,
        status: bool,
    ) -> Result<(), ApiError> {
        let ns = (!namespace.is_empty()).then_some(namespace);
        self.patch_resource(kind.info(), ns, name, body, status)
            .await
    }

    /// Applies independent patches concurrently; every one is tried, the first failure is
    /// returned.
    async fn patch_each(&self, kind: Kind, patches: Vec<ObjectPatch>) -> Result<(), ApiError> {
        let results =
            join_all(patches.into_iter().map(|p| async move {
                self.patch(kind, &p.namespace, &p.name, p.body, false).await
            }))
            .await;
        results.into_iter().collect()
    }

    /// Records the event `announce` describes for each of `names` (the objects an action wrote).
    async fn announce(&self, announce: Option<Announce>, names: &[String]) {
        if let Some(announce) = announce {
            join_all(
                names
                    .iter()
                    .map(|name| self.record(announced(&announce, name))),
            )
            .await;
        }
    }

    /// Merge-patches an object of any served kind, or its status (the controllers of cluster
    /// objects: nodes, namespaces, quotas). A vanished object is not an error.
    pub(crate) async fn patch_resource(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        status: bool,
    ) -> Result<(), ApiError> {
        let patch = Patch {
            kind: PatchKind::Merge,
            body,
        };
        gone_is_done(
            self.api
                .patch(info, ns, name, patch, status, WriteOptions::default())
                .await,
        )
    }

    /// Deletes an object of any served kind, only if it is still the one with `uid` (when
    /// given), in the background. A vanished object is not an error.
    pub(crate) async fn delete_resource(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let opts = DeleteOptions {
            precondition_uid: uid.map(str::to_owned),
            propagation: Some(minik_api::request::Propagation::Background),
            ..DeleteOptions::default()
        };
        gone_is_done(self.api.delete(info, ns, name, opts).await)
    }

    /// Replaces an object's status; the `metadata.resourceVersion` of `object` makes it apply
    /// only to that version. A vanished object is not an error.
    pub(crate) async fn replace_status(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        object: Value,
    ) -> Result<(), ApiError> {
        gone_is_done(
            self.api
                .replace(info, ns, name, object, true, WriteOptions::default())
                .await,
        )
    }

    /// Sets a namespace's `spec.finalizers` through its `finalize` subresource.
    pub(crate) async fn finalize_namespace(
        &self,
        name: &str,
        finalizers: Vec<String>,
    ) -> Result<(), ApiError> {
        gone_is_done(self.api.finalize_namespace(name, finalizers).await)
    }

    /// Records an event through the recorder the controllers share, which merges repeats as
    /// Kubernetes' does. A failure is only logged: events are for people, and losing one must
    /// not hold up a control loop.
    pub(crate) async fn record(&self, note: Note) {
        let note = EventNote {
            involved: note.involved,
            component: note.component.to_owned(),
            host: None,
            type_: match note.type_ {
                "Warning" => EventType::Warning,
                _ => EventType::Normal,
            },
            reason: note.reason.to_owned(),
            message: note.message,
        };
        if let Err(e) = self.events.record(&note).await {
            tracing::debug!(reason = %note.reason, error = %e, "cannot record an event");
        }
    }
}

fn announced(announce: &Announce, name: &str) -> Note {
    Note {
        involved: announce.involved.clone(),
        component: announce.component,
        type_: "Normal",
        reason: announce.reason,
        message: format!("{}{name}", announce.verb),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use minik_api::ObjectRef;
    use minik_client::{BoxFuture, ListParams, RawEventStream, RawObjectList};
    use serde_json::json;

    use super::*;

    /// An API that records what it is asked, fails the creates and deletes of the names it is
    /// told to, and answers NotFound for the deletes of names it does not know.
    #[derive(Default)]
    struct Scripted {
        calls: Mutex<Vec<String>>,
        /// Writes in flight at once, as seen by the creates and patches themselves.
        concurrent: Mutex<Vec<usize>>,
        in_flight: Mutex<usize>,
        fail: HashSet<String>,
        missing: HashSet<String>,
    }

    impl Scripted {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        fn log(&self, call: String) {
            if let Ok(mut c) = self.calls.lock() {
                c.push(call);
            }
        }
        /// Counts this write in flight while letting every write started with it start before
        /// any finishes, and notes how many were in flight together.
        async fn count_in_flight(&self) {
            if let Ok(mut n) = self.in_flight.lock() {
                *n += 1;
            }
            tokio::task::yield_now().await;
            if let (Ok(mut seen), Ok(n)) = (self.concurrent.lock(), self.in_flight.lock()) {
                seen.push(*n);
            }
            tokio::task::yield_now().await;
            if let Ok(mut n) = self.in_flight.lock() {
                *n -= 1;
            }
        }
    }

    fn unfaked<T>() -> Result<T, ApiError> {
        Err(ApiError::Internal("not scripted".into()))
    }

    impl Api for Scripted {
        fn get<'a>(
            &'a self,
            _: &'static ResourceInfo,
            _: Option<&'a str>,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async { unfaked() })
        }
        fn list_raw<'a>(
            &'a self,
            _: &'static ResourceInfo,
            _: Option<&'a str>,
            _: &'a ListParams,
        ) -> BoxFuture<'a, Result<RawObjectList, ApiError>> {
            Box::pin(async { unfaked() })
        }
        fn watch_raw<'a>(
            &'a self,
            _: &'static ResourceInfo,
            _: Option<&'a str>,
            _: &'a ListParams,
            _: Option<&'a str>,
        ) -> BoxFuture<'a, Result<RawEventStream, ApiError>> {
            Box::pin(async { unfaked() })
        }
        fn create<'a>(
            &'a self,
            info: &'static ResourceInfo,
            _: Option<&'a str>,
            object: Value,
            _: WriteOptions,
        ) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                let name = object_name(&object);
                if info.kind == "Event" {
                    self.log(format!(
                        "event {}",
                        object["message"].as_str().unwrap_or_default()
                    ));
                    return Ok(object);
                }
                self.count_in_flight().await;
                self.log(format!("create {name}"));
                if self.fail.contains(&name) {
                    return Err(ApiError::Forbidden(format!("{name} exceeds quota")));
                }
                Ok(object)
            })
        }
        fn replace<'a>(
            &'a self,
            _: &'static ResourceInfo,
            _: Option<&'a str>,
            _: &'a str,
            _: Value,
            _: bool,
            _: WriteOptions,
        ) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async { unfaked() })
        }
        fn patch<'a>(
            &'a self,
            _: &'static ResourceInfo,
            _: Option<&'a str>,
            name: &'a str,
            _: Patch,
            status: bool,
            _: WriteOptions,
        ) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                self.log(format!(
                    "patch {name}{}",
                    if status { "/status" } else { "" }
                ));
                self.count_in_flight().await;
                if self.missing.contains(name) {
                    return Err(ApiError::NotFound(ObjectRef::new("", "pods", name)));
                }
                if self.fail.contains(name) {
                    return Err(ApiError::conflict(ObjectRef::new("", "pods", name)));
                }
                Ok(Value::Null)
            })
        }
        fn delete<'a>(
            &'a self,
            _: &'static ResourceInfo,
            _: Option<&'a str>,
            name: &'a str,
            opts: DeleteOptions,
        ) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                self.log(format!(
                    "delete {name} uid={}",
                    opts.precondition_uid.unwrap_or_default()
                ));
                if self.missing.contains(name) {
                    return Err(ApiError::NotFound(ObjectRef::new("", "pods", name)));
                }
                if self.fail.contains(name) {
                    return Err(ApiError::conflict(ObjectRef::new("", "pods", name)));
                }
                Ok(Value::Null)
            })
        }
        fn bind<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), ApiError>> {
            Box::pin(async { unfaked() })
        }
    }

    fn pods(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"metadata": {"name": format!("p{i}")}}))
            .collect()
    }

    fn create(objects: Vec<Value>) -> Action {
        Action::Create {
            kind: Kind::Pod,
            namespace: "default".into(),
            objects,
            announce: None,
        }
    }

    fn patch(name: &str) -> Action {
        Action::Patch {
            kind: Kind::Pod,
            namespace: "default".into(),
            name: name.into(),
            body: json!({}),
            status: true,
        }
    }

    #[tokio::test]
    async fn creates_go_in_doubling_batches() {
        let api = Arc::new(Scripted::default());
        let report = Executor::new(api.clone())
            .apply(vec![create(pods(10))])
            .await;
        assert!(report.error.is_none());
        assert!(report.not_created.is_empty());
        let concurrent = api.concurrent.lock().map(|c| c.clone()).unwrap_or_default();
        // Batches of 1, 2, 4 and the last 3: no create ever ran beside more than its batch.
        assert_eq!(concurrent.iter().max(), Some(&4), "{concurrent:?}");
        assert_eq!(concurrent.first(), Some(&1), "{concurrent:?}");
        assert_eq!(api.calls().len(), 10);
    }

    #[tokio::test]
    async fn a_failed_batch_stops_the_creates_and_the_plan() {
        let api = Arc::new(Scripted {
            fail: ["p4".to_owned()].into(),
            ..Scripted::default()
        });
        let report = Executor::new(api.clone())
            .apply(vec![create(pods(10)), patch("status-after")])
            .await;
        assert!(matches!(report.error, Some(ApiError::Forbidden(_))));
        // Batches [p0] [p1 p2] [p3 p4 p5 p6]: p4 fails, p7..p9 are never tried.
        let mut not_created = report.not_created.clone();
        not_created.sort();
        assert_eq!(not_created, vec!["p4", "p7", "p8", "p9"]);
        let calls = api.calls();
        assert_eq!(calls.len(), 7, "{calls:?}");
        assert!(!calls.contains(&"patch status-after/status".to_owned()));
    }

    #[tokio::test]
    async fn deletes_that_find_nothing_are_done_and_failures_reported() {
        let api = Arc::new(Scripted {
            missing: ["gone".to_owned()].into(),
            fail: ["changed".to_owned()].into(),
            ..Scripted::default()
        });
        let target = |name: &str| Target {
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: None,
        };
        let announce = Announce {
            involved: Default::default(),
            component: "replicaset-controller",
            reason: "SuccessfulDelete",
            verb: "Deleted pod: ",
        };
        let delete = |names: &[&str]| Action::Delete {
            kind: Kind::Pod,
            namespace: "default".into(),
            targets: names.iter().map(|n| target(n)).collect(),
            propagation: None,
            announce: Some(announce.clone()),
        };
        let report = Executor::new(api.clone())
            .apply(vec![delete(&["a", "gone"]), patch("missing-is-fine")])
            .await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(report.not_deleted, vec!["uid-gone"]);
        let calls = api.calls();
        assert!(calls.contains(&"delete a uid=uid-a".to_owned()));
        assert!(calls.contains(&"event Deleted pod: a".to_owned()));
        assert!(!calls.iter().any(|c| c == "event Deleted pod: gone"));

        let report = Executor::new(api.clone())
            .apply(vec![delete(&["changed"]), delete(&["later"])])
            .await;
        assert!(report.error.is_some_and(|e| e.is_conflict()));
        assert_eq!(report.not_deleted, vec!["uid-changed", "uid-later"]);
    }

    #[tokio::test]
    async fn a_patch_of_a_vanished_object_is_not_an_error() {
        let api = Arc::new(Scripted {
            missing: ["vanished".to_owned()].into(),
            ..Scripted::default()
        });
        let report = Executor::new(api.clone())
            .apply(vec![patch("vanished"), patch("next")])
            .await;
        assert!(report.error.is_none());
        assert_eq!(
            api.calls(),
            vec!["patch vanished/status", "patch next/status"]
        );
    }

    #[tokio::test]
    async fn independent_patches_go_at_once_and_every_one_is_tried() {
        let api = Arc::new(Scripted {
            missing: ["gone".to_owned()].into(),
            fail: ["changed".to_owned()].into(),
            ..Scripted::default()
        });
        let each = |names: &[&str]| Action::PatchEach {
            kind: Kind::Pod,
            patches: names
                .iter()
                .map(|n| ObjectPatch {
                    namespace: "default".into(),
                    name: (*n).into(),
                    body: json!({}),
                })
                .collect(),
        };
        let report = Executor::new(api.clone())
            .apply(vec![each(&["a", "gone", "b", "c"])])
            .await;
        assert!(report.error.is_none(), "{:?}", report.error);
        let concurrent = api.concurrent.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(concurrent.iter().max(), Some(&4), "{concurrent:?}");

        let report = Executor::new(api.clone())
            .apply(vec![each(&["changed", "d"]), patch("after")])
            .await;
        assert!(report.error.is_some_and(|e| e.is_conflict()));
        let calls = api.calls();
        assert!(calls.contains(&"patch d".to_owned()), "{calls:?}");
        assert!(
            !calls.contains(&"patch after/status".to_owned()),
            "{calls:?}"
        );
    }
}
