//! The StatefulSet controller (apps/v1): pods with stable names `NAME-0..N-1`, hostnames and
//! claims, created in order and removed in reverse order, updated by revision. Changes of sets,
//! of their pods and of their revisions queue the set's key; a worker reads the caches, asks the
//! pure reconciler ([`reconcile::reconcile`]) for the steps of a pass and carries them out in
//! order, recording Kubernetes' events.

mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use minik_api::k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use minik_api::podview::PodView;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_client::{resource_of, Change, Subscription};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::action::{Action, Note};
use crate::executor::Executor;
use crate::kinds::{self, controller_ref, key_of, Kind};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

use reconcile::{orphaned, reconcile, reference, Inputs, Step, COMPONENT};

struct Context {
    caches: Caches,
    executor: Executor,
    queue: Queue<String>,
}

/// The StatefulSet controller. Subscribes now, so that no change after this call is missed,
/// and runs when the returned future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let sets = informers.stateful_sets.subscribe();
    let pods = informers.pods.subscribe();
    let revisions = informers.controller_revisions.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        queue: Queue::new(config),
    });
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_sets(sets, ctx.clone()));
        tasks.spawn(watch_pods(pods, ctx.clone()));
        tasks.spawn(watch_revisions(revisions, ctx.clone()));
        let caches = ctx.caches.clone();
        let queue = ctx.queue.clone();
        run_controller(
            "statefulset",
            workers,
            tasks,
            &caches,
            &queue,
            ctx,
            enqueue_all,
            |ctx, key| async move { sync(&ctx, &key).await },
        )
        .await
    }
}

fn enqueue_all(ctx: &Context) {
    for set in ctx.caches.stateful_sets.list() {
        ctx.queue.add(key_of(&set.metadata));
    }
}

async fn watch_sets(mut changes: Subscription<StatefulSet>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(set) => ctx.queue.add(key_of(&set.metadata)),
            Change::Deleted(set) => {
                let ctx = ctx.clone();
                tokio::spawn(async move { delete_claims_of(&ctx, &set).await });
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn watch_pods(mut changes: Subscription<PodView>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) | Change::Deleted(pod) => {
                match kinds::controller_key(&pod.metadata, Kind::StatefulSet) {
                    Some(key) => ctx.queue.add(key),
                    // An orphan: the sets that select it may adopt it.
                    None if controller_ref(&pod.metadata).is_none() => {
                        for set in ctx.caches.stateful_sets.filter(|s| {
                            s.metadata.namespace == pod.metadata.namespace
                                && s.spec.as_ref().is_some_and(|spec| {
                                    minik_api::selector::Selector::from_label_selector(
                                        &spec.selector,
                                    )
                                    .is_ok_and(|sel| sel.matches(kinds::labels(&pod.metadata)))
                                })
                        }) {
                            ctx.queue.add(key_of(&set.metadata));
                        }
                    }
                    None => {}
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn watch_revisions(mut changes: Subscription<ControllerRevision>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(r) | Change::Deleted(r) => {
                if let Some(key) = kinds::controller_key(&r.metadata, Kind::StatefulSet) {
                    ctx.queue.add(key);
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// A deleted set's claims that it alone owned (`whenDeleted: Delete`) go with it; minik's
/// garbage collector does not follow claims.
async fn delete_claims_of(ctx: &Context, set: &StatefulSet) {
    let uid = kinds::uid(&set.metadata);
    let namespace = set.metadata.namespace.clone();
    let pod_uids: HashSet<String> = ctx
        .caches
        .pods
        .filter(|p| p.metadata.namespace == namespace)
        .iter()
        .map(|p| kinds::uid(&p.metadata).to_owned())
        .collect();
    let claims = ctx.caches.claims.filter(|c| {
        c.metadata.namespace == namespace
            && kinds::owner_refs(&c.metadata).iter().any(|r| r.uid == uid)
            && orphaned(&c.metadata, |r| {
                r.uid == uid || (r.kind == "Pod" && !pod_uids.contains(&r.uid))
            })
    });
    for claim in claims {
        if let Err(e) = delete_claim(
            ctx,
            kinds::namespace(&claim.metadata),
            kinds::name(&claim.metadata),
            kinds::uid(&claim.metadata),
        )
        .await
        {
            tracing::warn!(claim = kinds::name(&claim.metadata), error = %e, "cannot delete the claim of a deleted StatefulSet");
        }
    }
}

async fn delete_claim(
    ctx: &Context,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), ApiError> {
    match delete(
        ctx,
        resource_of::<PersistentVolumeClaim>(),
        namespace,
        name,
        uid,
    )
    .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Creates `object` in `ns`.
async fn create(
    ctx: &Context,
    info: &'static ResourceInfo,
    ns: &str,
    object: Value,
) -> Result<(), ApiError> {
    ctx.executor
        .api()
        .create(info, Some(ns), object, WriteOptions::default())
        .await
        .map(drop)
}

/// Merge-patches the object `name` of `ns` with `body`.
async fn patch(
    ctx: &Context,
    info: &'static ResourceInfo,
    ns: &str,
    name: &str,
    body: Value,
) -> Result<(), ApiError> {
    let merge = Patch {
        kind: PatchKind::Merge,
        body,
    };
    ctx.executor
        .api()
        .patch(info, Some(ns), name, merge, false, WriteOptions::default())
        .await
        .map(drop)
}

/// Deletes the object `name` of `ns`, only if it is still the one with `uid`.
async fn delete(
    ctx: &Context,
    info: &'static ResourceInfo,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<(), ApiError> {
    let opts = DeleteOptions {
        precondition_uid: Some(uid.to_owned()),
        ..DeleteOptions::default()
    };
    ctx.executor
        .api()
        .delete(info, Some(ns), name, opts)
        .await
        .map(drop)
}

/// One pass over the set at `key`: observe, decide, act, then write the status.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(set) = ctx.caches.stateful_sets.get(key) else {
        return Ok(None);
    };
    let namespace = set.metadata.namespace.clone();
    let pods: Vec<Arc<PodView>> = ctx
        .caches
        .pods
        .filter(|p| p.metadata.namespace == namespace);
    let pod_refs: Vec<&PodView> = pods.iter().map(Arc::as_ref).collect();
    let claims: Vec<Arc<PersistentVolumeClaim>> = ctx
        .caches
        .claims
        .filter(|c| c.metadata.namespace == namespace);
    let claim_map: BTreeMap<String, &PersistentVolumeClaim> = claims
        .iter()
        .map(|c| (kinds::name(&c.metadata).to_owned(), c.as_ref()))
        .collect();
    let revisions: Vec<Arc<ControllerRevision>> = ctx
        .caches
        .controller_revisions
        .filter(|r| r.metadata.namespace == namespace);
    let revision_refs: Vec<&ControllerRevision> = revisions.iter().map(Arc::as_ref).collect();
    let inputs = Inputs {
        pods: &pod_refs,
        claims: &claim_map,
        revisions: &revision_refs,
        now: kinds::now(),
    };
    let decision = reconcile(&set, &inputs);
    let ns = kinds::namespace(&set.metadata).to_owned();
    let mut failure = None;
    for step in decision.steps {
        if let Err(e) = carry_out(ctx, &set, &ns, step).await {
            failure = Some(e);
            break;
        }
    }
    if let Some(body) = decision.status {
        let written = ctx
            .executor
            .apply(vec![Action::Patch {
                kind: Kind::StatefulSet,
                namespace: ns,
                name: kinds::name(&set.metadata).to_owned(),
                body,
                status: true,
            }])
            .await;
        if let (Some(e), None) = (written.error, &failure) {
            failure = Some(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(decision.requeue_after),
    }
}

/// Records an event about the set.
async fn note(
    ctx: &Context,
    set: &StatefulSet,
    type_: &'static str,
    reason: &'static str,
    message: String,
) {
    ctx.executor
        .record(Note {
            involved: reference(set),
            component: COMPONENT,
            type_,
            reason,
            message,
        })
        .await;
}

/// The `metadata.name` of an object to create.
fn object_name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A write whose outcome [`noted`] records.
#[derive(Clone, Copy)]
enum Write {
    Create,
    Delete,
}

/// Records the outcome of a write about the set: `success` as a `Normal` event, or
/// `"{subject} failed error: {e}"` as a `Warning` one. A create of what exists already and a
/// delete of what is gone are done, with no event.
async fn noted(
    ctx: &Context,
    set: &StatefulSet,
    write: Write,
    result: Result<(), ApiError>,
    success: String,
    subject: String,
) -> Result<(), ApiError> {
    let (done, succeeded, failed): (fn(&ApiError) -> bool, _, _) = match write {
        Write::Create => (
            ApiError::is_already_exists,
            "SuccessfulCreate",
            "FailedCreate",
        ),
        Write::Delete => (ApiError::is_not_found, "SuccessfulDelete", "FailedDelete"),
    };
    match result {
        Ok(()) => {
            note(ctx, set, "Normal", succeeded, success).await;
            Ok(())
        }
        Err(e) if done(&e) => Ok(()),
        Err(e) => {
            note(
                ctx,
                set,
                "Warning",
                failed,
                format!("{subject} failed error: {e}"),
            )
            .await;
            Err(e)
        }
    }
}

/// Carries out one step, with its events. A create of what exists already (made by an earlier
/// pass the cache has not shown yet) and a write to what is gone are done.
async fn carry_out(ctx: &Context, set: &StatefulSet, ns: &str, step: Step) -> Result<(), ApiError> {
    let set_name = kinds::name(&set.metadata).to_owned();
    let done = |result: Result<(), ApiError>| match result {
        Err(e) if e.is_already_exists() || e.is_not_found() => Ok(()),
        other => other,
    };
    let revisions = resource_of::<ControllerRevision>();
    let claims = resource_of::<PersistentVolumeClaim>();
    let pods = resource_of::<Pod>();
    match step {
        Step::CreateRevision(object) => done(create(ctx, revisions, ns, object).await),
        Step::RenumberRevision { name, revision } => done(
            patch(
                ctx,
                revisions,
                ns,
                &name,
                serde_json::json!({ "revision": revision }),
            )
            .await,
        ),
        Step::DeleteRevision(target) => {
            done(delete(ctx, revisions, ns, &target.name, &target.uid).await)
        }
        Step::PatchPod { name, body } => done(patch(ctx, pods, ns, &name, body).await),
        Step::PatchClaim { name, body } => done(patch(ctx, claims, ns, &name, body).await),
        Step::DeleteClaim(target) => delete_claim(ctx, ns, &target.name, &target.uid).await,
        Step::CreateClaim { object, pod } => {
            let claim = object_name(&object);
            let result = create(ctx, claims, ns, object).await;
            noted(
                ctx,
                set,
                Write::Create,
                result,
                format!("create Claim {claim} Pod {pod} in StatefulSet {set_name} success"),
                format!("create Claim {claim} for Pod {pod} in StatefulSet {set_name}"),
            )
            .await
        }
        Step::CreatePod(object) => {
            let pod = object_name(&object);
            let result = create(ctx, pods, ns, object).await;
            noted(
                ctx,
                set,
                Write::Create,
                result,
                format!("create Pod {pod} in StatefulSet {set_name} successful"),
                format!("create Pod {pod} in StatefulSet {set_name}"),
            )
            .await
        }
        Step::DeletePod { target, warning } => {
            if let Some((reason, message)) = warning {
                note(ctx, set, "Warning", reason, message).await;
            }
            let result = delete(ctx, pods, ns, &target.name, &target.uid).await;
            noted(
                ctx,
                set,
                Write::Delete,
                result,
                format!(
                    "delete Pod {} in StatefulSet {set_name} successful",
                    target.name
                ),
                format!("delete Pod {} in StatefulSet {set_name}", target.name),
            )
            .await
        }
    }
}
