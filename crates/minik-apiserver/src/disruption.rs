//! The PodDisruptionBudget check of the eviction subresource (Kubernetes'
//! `pkg/registry/core/pod/storage/eviction.go`): before `pods/{name}/eviction` deletes a pod, the
//! budget that selects it must allow one more disruption, and the eviction spends it with a
//! compare-and-swap write of the budget's status (`disruptionsAllowed` one lower, the pod in
//! `disruptedPods`), retried when another writer got there first. The decisions are
//! [`minik_api::disruption`]'s; this module does the reads and the write.

use minik_api::disruption::{self, MORE_THAN_ONE_BUDGET};
use minik_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use minik_api::request::{DeleteOptions, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::ApiError;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::parse_object;
use crate::registry::{pods, Filter, Registry, Scope};

/// How many times spending a budget is tried when its status keeps changing under us
/// (Kubernetes' `EvictionsRetry` allows about as many).
const SPEND_ATTEMPTS: usize = 10;

fn budgets() -> Result<&'static ResourceInfo, ApiError> {
    resources::by_plural("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not served".into()))
}

fn typed<T: DeserializeOwned>(
    info: &ResourceInfo,
    name: &str,
    bytes: &[u8],
) -> Result<T, ApiError> {
    let value = parse_object(info, name, bytes)?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::Internal(format!("stored {} {name:?} cannot be read: {e}", info.kind))
    })
}

/// Checks that evicting the pod `name` of `ns` respects its disruption budget, spends the
/// budget when it must, and says how the pod may then be deleted: an unhealthy pod let go
/// without spending the budget is deleted only as it was judged (`delete` gets the pod's
/// resourceVersion as a precondition, unless the client set one). Answers 429 when the budget allows no
/// disruption now, and 500 when several budgets select the pod. A dry run spends nothing.
pub(crate) async fn check_eviction(
    registry: &Registry,
    ns: &str,
    name: &str,
    delete: &mut DeleteOptions,
) -> Result<(), ApiError> {
    let stored = registry.get(pods(), Some(ns), name).await?;
    let pod: PodView = typed(pods(), name, &stored.value)?;
    if disruption::can_ignore_budget(&pod) {
        return Ok(());
    }
    let info = budgets()?;
    let listed = registry.list(info, Some(ns), &Filter::default()).await?;
    let mut selecting = Vec::new();
    for bytes in &listed.items {
        let pdb: PodDisruptionBudget = typed(info, "", bytes)?;
        if disruption::selects(&pdb, &pod) {
            selecting.push(pdb);
        }
    }
    let pdb = match selecting.len() {
        0 => return Ok(()),
        1 => selecting.remove(0),
        _ => return Err(ApiError::Internal(MORE_THAN_ONE_BUDGET.into())),
    };
    if disruption::unhealthy_may_go(&pdb, &pod) {
        if delete.precondition_resource_version.is_none() {
            delete.precondition_resource_version = pod.metadata.resource_version.clone();
        }
        return Ok(());
    }
    spend(registry, info, ns, name, pdb, delete.dry_run).await
}

/// Takes one disruption from the budget for the pod `pod_name`, re-reading the budget after a
/// conflicting write.
async fn spend(
    registry: &Registry,
    info: &'static ResourceInfo,
    ns: &str,
    pod_name: &str,
    mut pdb: PodDisruptionBudget,
    dry_run: bool,
) -> Result<(), ApiError> {
    let budget = pdb.metadata.name.clone().unwrap_or_default();
    for attempt in 0..SPEND_ATTEMPTS {
        if attempt > 0 {
            let stored = registry.get(info, Some(ns), &budget).await?;
            pdb = typed(info, &budget, &stored.value)?;
        }
        let status = disruption::check_and_decrement(&pdb, pod_name, Timestamp::now())
            .map_err(|refusal| refusal.into_error(&budget))?;
        if dry_run {
            return Ok(());
        }
        // The body carries the resourceVersion read: the write applies to that version only.
        pdb.status = Some(status);
        let body: Value =
            serde_json::to_value(&pdb).map_err(|e| ApiError::Internal(e.to_string()))?;
        match registry
            .update(
                info,
                Some(ns),
                &budget,
                body,
                Scope::Status,
                WriteOptions::default(),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Timeout(format!(
        "couldn't update PodDisruptionBudget {budget:?} due to conflicts"
    )))
}
