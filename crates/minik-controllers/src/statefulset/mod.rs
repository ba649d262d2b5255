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
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
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

/// The set controlling `meta`, if a StatefulSet does.
fn owner_key(
    meta: &minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    let r = controller_ref(meta)?;
    (r.kind == Kind::StatefulSet.name()).then(|| format!("{}/{}", kinds::namespace(meta), r.name))
}

async fn watch_pods(mut changes: Subscription<Pod>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) | Change::Deleted(pod) => match owner_key(&pod.metadata) {
                Some(key) => ctx.queue.add(key),
                // An orphan: the sets that select it may adopt it.
                None if controller_ref(&pod.metadata).is_none() => {
                    for set in ctx.caches.stateful_sets.filter(|s| {
                        s.metadata.namespace == pod.metadata.namespace
                            && s.spec.as_ref().is_some_and(|spec| {
                                minik_api::selector::Selector::from_label_selector(&spec.selector)
                                    .is_ok_and(|sel| sel.matches(kinds::labels(&pod.metadata)))
                            })
                    }) {
                        ctx.queue.add(key_of(&set.metadata));
                    }
                }
                None => {}
            },
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn watch_revisions(mut changes: Subscription<ControllerRevision>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(r) | Change::Deleted(r) => {
                if let Some(key) = owner_key(&r.metadata) {
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
    let opts = DeleteOptions {
        precondition_uid: Some(uid.to_owned()),
        ..DeleteOptions::default()
    };
    match ctx
        .executor
        .api()
        .delete(
            resource_of::<PersistentVolumeClaim>(),
            Some(namespace),
            name,
            opts,
        )
        .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// One pass over the set at `key`: observe, decide, act, then write the status.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(set) = ctx.caches.stateful_sets.get(key) else {
        return Ok(None);
    };
    let namespace = set.metadata.namespace.clone();
    let pods: Vec<Arc<Pod>> = ctx
        .caches
        .pods
        .filter(|p| p.metadata.namespace == namespace);
    let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
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

fn merge(body: Value) -> Patch {
    Patch {
        kind: PatchKind::Merge,
        body,
    }
}

/// Carries out one step, with its events. A create of what exists already (made by an earlier
/// pass the cache has not shown yet) and a write to what is gone are done.
async fn carry_out(ctx: &Context, set: &StatefulSet, ns: &str, step: Step) -> Result<(), ApiError> {
    let api = ctx.executor.api();
    let set_name = kinds::name(&set.metadata).to_owned();
    let done = |result: Result<(), ApiError>| match result {
        Err(e) if e.is_already_exists() || e.is_not_found() => Ok(()),
        other => other,
    };
    match step {
        Step::CreateRevision(object) => done(
            api.create(
                resource_of::<ControllerRevision>(),
                Some(ns),
                object,
                WriteOptions::default(),
            )
            .await
            .map(drop),
        ),
        Step::RenumberRevision { name, revision } => done(
            api.patch(
                resource_of::<ControllerRevision>(),
                Some(ns),
                &name,
                merge(serde_json::json!({ "revision": revision })),
                false,
                WriteOptions::default(),
            )
            .await
            .map(drop),
        ),
        Step::DeleteRevision(target) => {
            let opts = DeleteOptions {
                precondition_uid: Some(target.uid),
                ..DeleteOptions::default()
            };
            done(
                api.delete(
                    resource_of::<ControllerRevision>(),
                    Some(ns),
                    &target.name,
                    opts,
                )
                .await
                .map(drop),
            )
        }
        Step::PatchPod { name, body } => done(
            api.patch(
                resource_of::<Pod>(),
                Some(ns),
                &name,
                merge(body),
                false,
                WriteOptions::default(),
            )
            .await
            .map(drop),
        ),
        Step::PatchClaim { name, body } => done(
            api.patch(
                resource_of::<PersistentVolumeClaim>(),
                Some(ns),
                &name,
                merge(body),
                false,
                WriteOptions::default(),
            )
            .await
            .map(drop),
        ),
        Step::DeleteClaim(target) => delete_claim(ctx, ns, &target.name, &target.uid).await,
        Step::CreateClaim { object, pod } => {
            let claim = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match api
                .create(
                    resource_of::<PersistentVolumeClaim>(),
                    Some(ns),
                    object,
                    WriteOptions::default(),
                )
                .await
            {
                Ok(_) => {
                    note(
                        ctx,
                        set,
                        "Normal",
                        "SuccessfulCreate",
                        format!("create Claim {claim} Pod {pod} in StatefulSet {set_name} success"),
                    )
                    .await;
                    Ok(())
                }
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => {
                    note(ctx, set, "Warning", "FailedCreate", format!("create Claim {claim} for Pod {pod} in StatefulSet {set_name} failed error: {e}")).await;
                    Err(e)
                }
            }
        }
        Step::CreatePod(object) => {
            let pod = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match api
                .create(
                    resource_of::<Pod>(),
                    Some(ns),
                    object,
                    WriteOptions::default(),
                )
                .await
            {
                Ok(_) => {
                    note(
                        ctx,
                        set,
                        "Normal",
                        "SuccessfulCreate",
                        format!("create Pod {pod} in StatefulSet {set_name} successful"),
                    )
                    .await;
                    Ok(())
                }
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => {
                    note(
                        ctx,
                        set,
                        "Warning",
                        "FailedCreate",
                        format!("create Pod {pod} in StatefulSet {set_name} failed error: {e}"),
                    )
                    .await;
                    Err(e)
                }
            }
        }
        Step::DeletePod { target, warning } => {
            if let Some((reason, message)) = warning {
                note(ctx, set, "Warning", reason, message).await;
            }
            let opts = DeleteOptions {
                precondition_uid: Some(target.uid.clone()),
                ..DeleteOptions::default()
            };
            match api
                .delete(resource_of::<Pod>(), Some(ns), &target.name, opts)
                .await
            {
                Ok(_) => {
                    note(
                        ctx,
                        set,
                        "Normal",
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {} in StatefulSet {set_name} successful",
                            target.name
                        ),
                    )
                    .await;
                    Ok(())
                }
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => {
                    note(
                        ctx,
                        set,
                        "Warning",
                        "FailedDelete",
                        format!(
                            "delete Pod {} in StatefulSet {set_name} failed error: {e}",
                            target.name
                        ),
                    )
                    .await;
                    Err(e)
                }
            }
        }
    }
}
