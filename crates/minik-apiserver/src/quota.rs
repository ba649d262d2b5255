//! ResourceQuota admission: a create — or an update that makes an object use more, such as a
//! Service turning NodePort — that would take a namespace over one of its quotas is refused
//! with 403 and Kubernetes' message; one that fits is charged to every quota it concerns
//! (`status.used`, compare-and-swap) before the object is stored, as Kubernetes' quota
//! admission does.
//!
//! Within the server, one lock per namespace is held from reading the quotas until the object
//! is stored (or its charge refunded, when the store refuses it), and reading a ResourceQuota
//! waits for that lock. So the quota status controller, which reads a quota and then counts the
//! objects, never sees a charge whose object is not stored yet; and whatever it writes carries
//! the resourceVersion it read, so a charge made meanwhile makes its write conflict. Two
//! concurrent creates therefore can never both squeeze under a limit, and the controller
//! cannot undo a charge it has not seen the object of.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use minik_api::kinds::Admission;
use minik_api::quota::{self, ResourceList};
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_store::{Revision, Store, StoreError};
use serde_json::{json, Value};
use tokio::sync::OwnedMutexGuard;

use crate::errors::store_error;

/// How often the charge is retried when a quota changed under it (another server writing).
const MAX_CHARGE_ATTEMPTS: usize = 16;

/// Quota admission over the store: one lock per namespace that has quotas, and the charges.
pub(crate) struct Quotas {
    store: Arc<dyn Store>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What a create was charged; hold it until the object is stored, refund it if it is not.
#[must_use]
pub(crate) struct Charge {
    ns: String,
    /// Quota name and the usage added to it.
    charged: Vec<(String, ResourceList)>,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl Charge {
    pub(crate) fn none() -> Charge {
        Charge {
            ns: String::new(),
            charged: Vec::new(),
            _guard: None,
        }
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn quotas_info() -> &'static ResourceInfo {
    minik_api::resources::by_plural("", "v1", "resourcequotas").expect("quotas are served")
}

fn scopes(quota: &Value) -> Vec<String> {
    quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

impl Quotas {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Quotas {
            store,
            locks: Mutex::default(),
        }
    }

    async fn lock(&self, ns: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(ns.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Waits until no create in `ns` is between its quota charge and its store write; called
    /// before a ResourceQuota is read.
    pub(crate) async fn barrier(&self, ns: &str) {
        drop(self.lock(ns).await);
    }

    /// The quotas of a namespace as stored: (name, object, revision).
    async fn quotas_of(&self, ns: &str) -> Result<Vec<(String, Value, Revision)>, ApiError> {
        let info = quotas_info();
        let listing = self
            .store
            .list(&info.prefix(Some(ns)))
            .await
            .map_err(|e| store_error(info, "", e))?;
        Ok(listing
            .items
            .into_iter()
            .filter_map(|s| {
                let v: Value = serde_json::from_slice(&s.value).ok()?;
                let name = v.pointer("/metadata/name")?.as_str()?.to_owned();
                Some((name, v, s.revision))
            })
            .collect())
    }

    /// The usage of the resources `hard` names, counted from the objects of the namespace.
    async fn count_usage(
        &self,
        ns: &str,
        hard: &ResourceList,
        scopes: &[String],
        extra: Option<(&ResourceInfo, &Value)>,
    ) -> Result<ResourceList, ApiError> {
        let mut objects: Vec<(&ResourceInfo, Value)> = Vec::new();
        for info in quota::kinds_for(hard.keys()) {
            let listing = self
                .store
                .list(&info.prefix(Some(ns)))
                .await
                .map_err(|e| store_error(info, "", e))?;
            objects.extend(
                listing
                    .items
                    .iter()
                    .filter_map(|s| serde_json::from_slice(&s.value).ok())
                    .map(|v| (info, v)),
            );
        }
        let all = objects.iter().map(|(i, v)| (*i, v)).chain(extra);
        Ok(quota::total_usage(hard, scopes, all, now_seconds()))
    }

    /// Checks a create of `object` (or, with `old`, an update from `old` to it) against the
    /// quotas of its namespace and charges it to those it concerns (unless `dry_run`). A new
    /// ResourceQuota also gets its first status here, counted from what the namespace holds.
    pub(crate) async fn charge(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        object: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Charge, ApiError> {
        let Some(ns) = ns.filter(|_| info.namespaced) else {
            return Ok(Charge::none());
        };
        let is_quota = info.admits(Admission::QuotaStatus);
        let update_delta = match old {
            // A quota's own updates (its status) are not charged; nor is an update that
            // uses no more than before, which is most of them: decided before any lock.
            Some(_) if is_quota => return Ok(Charge::none()),
            Some(old) => {
                let delta = quota::update_delta(info, old, object, now_seconds());
                if delta.is_empty() {
                    return Ok(Charge::none());
                }
                Some(delta)
            }
            None => None,
        };
        if !is_quota && self.quotas_of(ns).await?.is_empty() {
            return Ok(Charge::none());
        }
        let guard = self.lock(ns).await;
        if is_quota {
            let hard = quota::read_list(object.pointer("/spec/hard"));
            let used = self
                .count_usage(ns, &hard, &scopes(object), Some((info, &object.clone())))
                .await?;
            object["status"] =
                json!({"hard": quota::write_list(&hard), "used": quota::write_list(&used)});
        }
        let delta = match update_delta {
            Some(delta) => delta,
            None => quota::usage(info, object, now_seconds()),
        };
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let forbidden = |refusal: quota::Refusal| {
            ApiError::Forbidden(format!(
                "{} {name:?} is forbidden: {refusal}",
                info.qualified_plural()
            ))
        };
        for _ in 0..MAX_CHARGE_ATTEMPTS {
            // Decide for every quota first, so a refusal by one charges none.
            let mut writes = Vec::new();
            for (quota_name, stored, revision) in self.quotas_of(ns).await? {
                let scopes = scopes(&stored);
                if !quota::scopes_match(&scopes, info, object) {
                    continue;
                }
                let hard = quota::read_list(stored.pointer("/spec/hard"));
                let mut used = quota::read_list(stored.pointer("/status/used"));
                if delta
                    .keys()
                    .any(|k| hard.contains_key(k) && !used.contains_key(k))
                {
                    // The quota is new or limits something new: count before charging.
                    used = self.count_usage(ns, &hard, &scopes, None).await?;
                }
                let Some(new_used) = quota::admit(&quota_name, &hard, &used, info, object, &delta)
                    .map_err(forbidden)?
                else {
                    continue;
                };
                let mut updated = stored.clone();
                updated["status"] = json!({
                    "hard": quota::write_list(&hard),
                    "used": quota::write_list(&new_used),
                });
                let charged: ResourceList = delta
                    .iter()
                    .filter(|(k, _)| hard.contains_key(*k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                writes.push((quota_name, updated, revision, charged));
            }
            if dry_run {
                return Ok(Charge::none());
            }
            let mut charge = Charge {
                ns: ns.to_owned(),
                charged: Vec::new(),
                _guard: None,
            };
            let mut conflicted = false;
            for (quota_name, updated, revision, charged) in writes {
                let key = quotas_info().key(Some(ns), &quota_name);
                match self.store.update(&key, updated, Some(revision)).await {
                    Ok(_) => charge.charged.push((quota_name, charged)),
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                        conflicted = true;
                        break;
                    }
                    Err(e) => {
                        self.refund(charge).await;
                        return Err(store_error(quotas_info(), &quota_name, e));
                    }
                }
            }
            if conflicted {
                self.refund(charge).await;
                continue;
            }
            charge._guard = Some(guard);
            return Ok(charge);
        }
        Err(ApiError::conflict(minik_api::ObjectRef::new(
            "",
            "resourcequotas",
            "",
        )))
    }

    /// Takes back what a create was charged, when the object was not stored after all.
    pub(crate) async fn refund(&self, charge: Charge) {
        for (quota_name, charged) in &charge.charged {
            let key = quotas_info().key(Some(&charge.ns), quota_name);
            for _ in 0..MAX_CHARGE_ATTEMPTS {
                let Ok(Some(stored)) = self.store.get(&key).await else {
                    break;
                };
                let Ok(mut object) = serde_json::from_slice::<Value>(&stored.value) else {
                    break;
                };
                let mut used = quota::read_list(object.pointer("/status/used"));
                for (k, q) in charged {
                    if let Some(u) = used.get_mut(k) {
                        *u = u.checked_sub(*q).unwrap_or(*u).max(Default::default());
                    }
                }
                object["status"]["used"] = quota::write_list(&used);
                match self.store.update(&key, object, Some(stored.revision)).await {
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => {
                        // The quota status controller recounts from the objects soon.
                        tracing::warn!(quota = %quota_name, error = %e, "cannot refund a quota charge");
                        break;
                    }
                    Ok(_) => break,
                }
            }
        }
    }
}
