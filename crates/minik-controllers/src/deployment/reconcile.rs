//! The Deployment reconciler, a pure function: the Deployment, the ReplicaSets of its
//! namespace, the live pods of each ReplicaSet (for Recreate) and `now` in; the ReplicaSets to
//! adopt, release, create, scale and delete, the events, the status and the revision
//! annotation out. It follows Kubernetes' deployment controller (`syncDeployment`,
//! `rolloutRolling`, `rolloutRecreate`, `sync`/`scale`, `syncRolloutStatus`), working on
//! copies of the ReplicaSets so that each step sees what the steps before it decided.

use std::collections::HashMap;
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use minik_api::k8s_openapi::api::core::v1::ObjectReference;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference,
};
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::selector::Selector;
use serde_json::{json, Value};

use super::util::*;
use crate::action::{replace_keys, Action, Note, Plan, Target};
use crate::kinds::{self, controller_ref, is_deleting, labels, whole_seconds, Kind};

const COMPONENT: &str = "deployment-controller";

/// One ReplicaSet as the pass sees it: the copy the pass changes, and what it started from.
#[derive(Debug)]
struct Rs {
    rs: ReplicaSet,
    /// Made in this pass (created when the plan is carried out).
    created_here: bool,
    /// `spec.replicas` when the pass began, for the scaling events.
    from: i32,
    dirty: bool,
}

impl Rs {
    fn replicas(&self) -> i32 {
        self.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn status_replicas(&self) -> i32 {
        self.rs.status.as_ref().map_or(0, |s| s.replicas)
    }
    fn available(&self) -> i32 {
        self.rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
    }
    fn ready(&self) -> i32 {
        self.rs
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    }
    fn name(&self) -> &str {
        kinds::name(&self.rs.metadata)
    }
    fn uid(&self) -> &str {
        kinds::uid(&self.rs.metadata)
    }
}

/// What the reconciler is given besides the Deployment.
pub(crate) struct Inputs<'a> {
    /// Every ReplicaSet of the Deployment's namespace.
    pub replica_sets: &'a [&'a ReplicaSet],
    /// How many pods that have not finished each ReplicaSet (by uid) still has.
    pub live_pods: &'a HashMap<String, usize>,
    pub now: Timestamp,
}

struct Pass<'a> {
    d: &'a Deployment,
    spec: &'a DeploymentSpec,
    replicas: i32,
    rolling: bool,
    max_surge: i32,
    max_unavailable: i32,
    now: Timestamp,
    /// The status being worked out, from the stored one.
    status: DeploymentStatus,
    old_status: DeploymentStatus,
    /// The revision annotation the Deployment should carry.
    revision: Option<String>,
    rss: Vec<Rs>,
    new: Option<usize>,
    /// Indexes of the ReplicaSets changed, in the order they were first changed.
    changed: Vec<usize>,
    deletes: Vec<Target>,
    plan: Plan,
}

/// One pass over a Deployment.
pub(crate) fn reconcile(d: &Deployment, inputs: &Inputs<'_>) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = d.spec.as_ref() else {
        return plan;
    };
    let selector = match Selector::from_label_selector(&spec.selector) {
        Ok(s) if !s.is_empty() => s,
        // Validation refuses both; a Deployment selecting everything must not adopt it all.
        _ => return plan,
    };
    let uid = kinds::uid(&d.metadata);
    let deleting = is_deleting(&d.metadata);

    // Claim: keep the owned ReplicaSets that still match, release the rest, adopt orphans.
    let mut claimed = Vec::new();
    for rs in inputs.replica_sets.iter().copied() {
        let matches = selector.matches(labels(&rs.metadata));
        match controller_ref(&rs.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    claimed.push(rs);
                } else if !deleting {
                    let refs = kinds::owner_refs(&rs.metadata)
                        .iter()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    plan.actions.push(set_owner_refs(rs, refs));
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && !is_deleting(&rs.metadata) {
                    let mut refs = kinds::owner_refs(&rs.metadata).to_vec();
                    refs.push(kinds::controller_reference(Kind::Deployment, &d.metadata));
                    plan.actions.push(set_owner_refs(rs, refs));
                }
            }
        }
    }
    if !plan.actions.is_empty() {
        // The ReplicaSets change owners first; the next pass sees them settled.
        plan.requeue(Duration::ZERO);
        return plan;
    }

    let strategy = spec.strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("Recreate");
    let replicas = spec.replicas.unwrap_or(1);
    let rolling_update = strategy.and_then(|s| s.rolling_update.as_ref());
    let (surge, unavailable) = fenceposts(
        rolling_update.and_then(|r| r.max_surge.as_ref()),
        rolling_update.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
    );
    let old_status = d.status.clone().unwrap_or_default();
    let mut pass = Pass {
        d,
        spec,
        replicas,
        rolling,
        max_surge: if rolling { surge } else { 0 },
        max_unavailable: if rolling && replicas > 0 {
            unavailable.min(replicas)
        } else {
            0
        },
        now: whole_seconds(inputs.now),
        status: old_status.clone(),
        old_status,
        revision: None,
        rss: claimed
            .into_iter()
            .map(|rs| Rs {
                rs: rs.clone(),
                created_here: false,
                from: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                dirty: false,
            })
            .collect(),
        new: None,
        changed: Vec::new(),
        deletes: Vec::new(),
        plan,
    };

    if deleting {
        pass.sync_revision(false, inputs.replica_sets);
        pass.sync_status();
    } else {
        pass.check_paused_conditions();
        if spec.paused == Some(true) || pass.is_scaling_event(inputs.replica_sets) {
            pass.sync(inputs.replica_sets);
        } else if rolling {
            pass.rollout_rolling(inputs.replica_sets);
        } else {
            pass.rollout_recreate(inputs.replica_sets, inputs.live_pods);
        }
    }
    pass.finish()
}

impl Pass<'_> {
    fn name(&self) -> &str {
        kinds::name(&self.d.metadata)
    }

    fn has_progress_deadline(&self) -> bool {
        self.spec
            .progress_deadline_seconds
            .is_some_and(|s| s != i32::MAX)
    }

    fn by_creation(&self, indexes: &mut [usize]) {
        indexes.sort_by(|a, b| by_creation(&self.rss[*a].rs, &self.rss[*b].rs));
    }

    fn olds(&self) -> Vec<usize> {
        let mut olds: Vec<usize> = (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect();
        self.by_creation(&mut olds);
        olds
    }

    fn all(&self) -> Vec<usize> {
        (0..self.rss.len()).collect()
    }

    fn sum(&self, indexes: &[usize], f: impl Fn(&Rs) -> i32) -> i32 {
        indexes.iter().map(|i| f(&self.rss[*i])).sum()
    }

    fn mark(&mut self, i: usize) {
        if !self.rss[i].dirty {
            self.rss[i].dirty = true;
            self.changed.push(i);
        }
    }

    /// Sets a ReplicaSet's size and its replica annotations (Kubernetes' `scaleReplicaSet`);
    /// whether the size changed.
    fn scale(&mut self, i: usize, to: i32) -> bool {
        let (desired, max) = (self.replicas, self.replicas.saturating_add(self.max_surge));
        let rs = &mut self.rss[i];
        let resized = rs.replicas() != to;
        if resized {
            rs.rs.spec.get_or_insert_with(Default::default).replicas = Some(to);
        }
        let annotated = set_replicas_annotations(&mut rs.rs, desired, max);
        if resized || annotated {
            self.mark(i);
        }
        resized
    }

    /// Scales only when the size changes (Kubernetes' `scaleReplicaSetAndRecordEvent`).
    fn scale_if_needed(&mut self, i: usize, to: i32) -> bool {
        self.rss[i].replicas() != to && self.scale(i, to)
    }

    /// Finds the ReplicaSet whose template is the Deployment's (the new one), brings its
    /// revision above the old ones', and makes it when asked and missing (Kubernetes'
    /// `getAllReplicaSetsAndSyncRevision`).
    fn sync_revision(&mut self, create: bool, everything: &[&ReplicaSet]) {
        let mut order = self.all();
        self.by_creation(&mut order);
        self.new = order.into_iter().find(|i| {
            self.rss[*i]
                .rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &self.spec.template))
        });
        let max_old = self
            .olds()
            .iter()
            .map(|i| revision(&self.rss[*i].rs))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = self.new {
            let (d, max_surge) = (self.d, self.max_surge);
            let rs = &mut self.rss[i];
            let mut changed = set_new_rs_annotations(d, &mut rs.rs, new_revision, true, max_surge);
            let spec = rs.rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds.unwrap_or(0) != self.spec.min_ready_seconds.unwrap_or(0) {
                spec.min_ready_seconds = self.spec.min_ready_seconds;
                changed = true;
            }
            if changed {
                self.mark(i);
            }
            self.revision =
                kinds::annotation(&self.rss[i].rs.metadata, REVISION).map(str::to_owned);
            if self.has_progress_deadline() && condition(&self.status, PROGRESSING).is_none() {
                let message = format!("Found new replica set {:?}", self.rss[i].name());
                let c = new_condition(PROGRESSING, "True", FOUND_NEW_RS, message, self.now);
                set_condition(&mut self.status, c);
            }
            return;
        }
        if !create {
            return;
        }
        let hash = template_hash(&self.spec.template, self.status.collision_count);
        let name = format!("{}-{hash}", self.name());
        if everything
            .iter()
            .any(|rs| kinds::name(&rs.metadata) == name)
        {
            // Another ReplicaSet has the name (not ours, or not this template): a hash
            // collision. Counting it changes the hash the next pass uses.
            self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
            return;
        }
        let rs = self.new_replica_set(&name, &hash, new_revision);
        self.rss.push(Rs {
            rs,
            created_here: true,
            from: 0,
            dirty: false,
        });
        let i = self.rss.len() - 1;
        self.new = Some(i);
        let replicas = self.new_rs_replicas(i);
        if let Some(spec) = self.rss[i].rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        self.mark(i);
        self.revision = Some(new_revision.to_string());
        if self.has_progress_deadline() {
            let message = format!("Created new replica set {name:?}");
            let c = new_condition(PROGRESSING, "True", NEW_RS_CREATED, message, self.now);
            set_condition(&mut self.status, c);
        }
    }

    fn new_replica_set(&self, name: &str, hash: &str, new_revision: i64) -> ReplicaSet {
        let mut template = self.spec.template.clone();
        let mut template_labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        template_labels.insert(HASH_LABEL.to_owned(), hash.to_owned());
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(template_labels.clone());
        let mut selector: LabelSelector = self.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.to_owned(), hash.to_owned());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: self.d.metadata.namespace.clone(),
                labels: Some(template_labels),
                owner_references: Some(vec![kinds::controller_reference(
                    Kind::Deployment,
                    &self.d.metadata,
                )]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(self.d, &mut rs, new_revision, false, self.max_surge);
        rs
    }

    /// How big the new ReplicaSet may be now (Kubernetes' `NewRSNewReplicas`). Pods are
    /// counted as the larger of a ReplicaSet's size and the pods it still has, so that pods
    /// of an old ReplicaSet being scaled down still count until they are gone: the total
    /// never goes above replicas + maxSurge.
    fn new_rs_replicas(&self, new: usize) -> i32 {
        if !self.rolling {
            return self.replicas;
        }
        let current = self.sum(&self.all(), |rs| rs.replicas().max(rs.status_replicas()));
        let max_total = self.replicas.saturating_add(self.max_surge);
        let new_replicas = self.rss[new].replicas();
        if current >= max_total {
            return new_replicas;
        }
        let up = (max_total - current).min(self.replicas - new_replicas);
        new_replicas + up.max(0)
    }

    fn rollout_rolling(&mut self, everything: &[&ReplicaSet]) {
        self.sync_revision(true, everything);
        let Some(new) = self.new else {
            // A hash collision was counted; the next pass makes the ReplicaSet.
            return self.sync_rollout_status();
        };
        if self.reconcile_new(new) || self.reconcile_olds(new) {
            return self.sync_rollout_status();
        }
        if complete(self.d, &self.old_status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Scales the new ReplicaSet up as far as maxSurge allows (or down to the target).
    fn reconcile_new(&mut self, new: usize) -> bool {
        let current = self.rss[new].replicas();
        if current == self.replicas {
            return false;
        }
        if current > self.replicas {
            return self.scale_if_needed(new, self.replicas);
        }
        let to = self.new_rs_replicas(new);
        self.scale_if_needed(new, to)
    }

    /// Scales old ReplicaSets down as far as maxUnavailable allows, unhealthy replicas first
    /// (Kubernetes' `reconcileOldReplicaSets`).
    fn reconcile_olds(&mut self, new: usize) -> bool {
        let olds = self.olds();
        if self.sum(&olds, Rs::replicas) == 0 {
            return false;
        }
        let all_pods = self.sum(&self.all(), Rs::replicas);
        let min_available = self.replicas - self.max_unavailable;
        let new_unavailable = self.rss[new].replicas() - self.rss[new].available();
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(&olds, max_scaled_down);
        let scaled = self.scale_down_olds(&olds);
        cleaned + scaled > 0
    }

    /// Scales down the replicas of old ReplicaSets that are not available: they serve
    /// nothing, and waiting for them could block the rollout for good.
    fn cleanup_unhealthy(&mut self, olds: &[usize], max: i32) -> i32 {
        let mut total = 0;
        for &i in olds {
            if total >= max {
                break;
            }
            let (replicas, available) = (self.rss[i].replicas(), self.rss[i].available());
            if replicas == 0 || available >= replicas {
                continue;
            }
            let down = (max - total).min(replicas - available);
            self.scale_if_needed(i, replicas - down);
            total += down;
        }
        total
    }

    /// Scales old ReplicaSets down, oldest first, while at least replicas - maxUnavailable
    /// stay available. A ReplicaSet counts at most its size: replicas above it are going.
    fn scale_down_olds(&mut self, olds: &[usize]) -> i32 {
        let available = self.sum(&self.all(), |rs| rs.available().min(rs.replicas()));
        let min_available = self.replicas - self.max_unavailable;
        if available <= min_available {
            return 0;
        }
        let wanted = available - min_available;
        let mut total = 0;
        for &i in olds {
            if total >= wanted {
                break;
            }
            let replicas = self.rss[i].replicas();
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(wanted - total);
            self.scale_if_needed(i, replicas - down);
            total += down;
        }
        total
    }

    fn rollout_recreate(&mut self, everything: &[&ReplicaSet], live_pods: &HashMap<String, usize>) {
        self.sync_revision(false, everything);
        let active_olds: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|i| self.rss[*i].replicas() > 0)
            .collect();
        let mut scaled_down = false;
        for i in active_olds {
            scaled_down |= self.scale_if_needed(i, 0);
        }
        if scaled_down {
            return self.sync_rollout_status();
        }
        // Recreate means no old pod runs beside a new one: wait until they are all gone.
        let olds = self.olds();
        let old_running = self.sum(&olds, Rs::status_replicas) > 0
            || olds
                .iter()
                .any(|i| live_pods.get(self.rss[*i].uid()).is_some_and(|n| *n > 0));
        if old_running {
            return self.sync_rollout_status();
        }
        if self.new.is_none() {
            self.sync_revision(true, everything);
        }
        if let Some(new) = self.new {
            self.scale_if_needed(new, self.replicas);
        }
        if complete(self.d, &self.old_status) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&mut self, everything: &[&ReplicaSet]) -> bool {
        self.sync_revision(false, everything);
        let replicas = self.replicas;
        self.rss
            .iter()
            .filter(|rs| rs.replicas() > 0)
            .filter_map(|rs| int_annotation(&rs.rs, DESIRED_REPLICAS))
            .any(|desired| desired != replicas)
    }

    /// A paused Deployment or a scaling event: sizes change, templates do not (Kubernetes'
    /// `sync`).
    fn sync(&mut self, everything: &[&ReplicaSet]) {
        self.sync_revision(false, everything);
        self.scale_proportionally();
        if self.spec.paused == Some(true) {
            self.cleanup();
        }
        self.sync_status();
    }

    /// Kubernetes' `scale`: the one active ReplicaSet takes the whole count; otherwise a
    /// saturated new one takes it and the old go; otherwise the change is shared in proportion
    /// to the ReplicaSets' sizes, the leftovers to the largest.
    fn scale_proportionally(&mut self) {
        if let Some(i) = self.active_or_latest() {
            self.scale_if_needed(i, self.replicas);
            return;
        }
        if let Some(new) = self.new.filter(|n| self.is_saturated(*n)) {
            for i in self.olds() {
                if self.rss[i].replicas() > 0 {
                    self.scale_if_needed(i, 0);
                }
            }
            let _ = new;
            return;
        }
        if !self.rolling {
            return;
        }
        let mut active: Vec<usize> = self
            .all()
            .into_iter()
            .filter(|i| self.rss[*i].replicas() > 0)
            .collect();
        let total = self.sum(&active, Rs::replicas);
        let allowed = if self.replicas > 0 {
            self.replicas.saturating_add(self.max_surge)
        } else {
            0
        };
        let to_add = allowed - total;
        // Larger first; among equals the newer when growing and the older when shrinking.
        active.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            rb.replicas().cmp(&ra.replicas()).then_with(|| {
                let older_first = by_creation(&ra.rs, &rb.rs);
                if to_add > 0 {
                    older_first.reverse()
                } else {
                    older_first
                }
            })
        });
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for &i in &active {
            if to_add != 0 {
                let p = self.proportion(i, to_add, added);
                sizes.push(self.rss[i].replicas() + p);
                added += p;
            } else {
                sizes.push(self.rss[i].replicas());
            }
        }
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                *first = (*first + to_add - added).max(0);
            }
        }
        for (i, size) in active.into_iter().zip(sizes) {
            self.scale(i, size);
        }
    }

    /// Kubernetes' `GetProportion`.
    fn proportion(&self, i: usize, to_add: i32, added: i32) -> i32 {
        let rs = &self.rss[i];
        if rs.replicas() == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// Kubernetes' `getReplicaSetFraction`: how much a ReplicaSet grows or shrinks when the
    /// Deployment goes from the size the ReplicaSet was sized for to the new one.
    fn fraction(&self, rs: &Rs) -> i32 {
        if self.replicas == 0 {
            return -rs.replicas();
        }
        let deployment_replicas = self.replicas.saturating_add(self.max_surge);
        let annotated = int_annotation(&rs.rs, MAX_REPLICAS)
            .unwrap_or_else(|| self.old_status.replicas.unwrap_or(0));
        if annotated == 0 {
            return 0;
        }
        let size = f64::from(rs.replicas()) * f64::from(deployment_replicas) / f64::from(annotated);
        size.round() as i32 - rs.replicas()
    }

    fn active_or_latest(&self) -> Option<usize> {
        if self.rss.is_empty() {
            return None;
        }
        let mut olds = self.olds();
        olds.reverse();
        let mut candidates = olds.clone();
        candidates.extend(self.new);
        let active: Vec<usize> = candidates
            .into_iter()
            .filter(|i| self.rss[*i].replicas() > 0)
            .collect();
        match active.len() {
            0 => self.new.or_else(|| olds.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    fn is_saturated(&self, new: usize) -> bool {
        let rs = &self.rss[new];
        int_annotation(&rs.rs, DESIRED_REPLICAS) == Some(self.replicas)
            && rs.replicas() == self.replicas
            && rs.available() == self.replicas
    }

    /// Deletes the oldest revisions beyond revisionHistoryLimit that are empty and settled.
    fn cleanup(&mut self) {
        let Some(limit) = self.spec.revision_history_limit.filter(|l| *l != i32::MAX) else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|i| !is_deleting(&self.rss[*i].rs.metadata) && !self.rss[*i].created_here)
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit.max(0));
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| by_revision(&self.rss[*a].rs, &self.rss[*b].rs));
        for &i in cleanable.iter().take(excess as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs.status_replicas() != 0
                || rs.replicas() != 0
                || rs.rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.deletes.push(Target {
                name: rs.name().to_owned(),
                uid: rs.uid().to_owned(),
                resource_version: None,
            });
        }
    }

    /// Kubernetes' `checkPausedConditions`: pausing and resuming show in Progressing, so that
    /// time spent paused never counts against the progress deadline.
    fn check_paused_conditions(&mut self) {
        if !self.has_progress_deadline() {
            return;
        }
        let current = condition(&self.status, PROGRESSING);
        if current.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return;
        }
        let paused_shown = current.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let paused = self.spec.paused == Some(true);
        if paused && !paused_shown {
            let c = new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                self.now,
            );
            set_condition(&mut self.status, c);
        } else if !paused && paused_shown {
            let c = new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                self.now,
            );
            set_condition(&mut self.status, c);
        }
    }

    /// Kubernetes' `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all();
        let available = self.sum(&all, Rs::available);
        let total = self.sum(&all, Rs::replicas);
        let nonzero = |n: i32| (n != 0).then_some(n);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nonzero(self.sum(&all, Rs::status_replicas)),
            updated_replicas: nonzero(self.new.map_or(0, |i| self.rss[i].status_replicas())),
            ready_replicas: nonzero(self.sum(&all, Rs::ready)),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: self.status.terminating_replicas,
        };
        let c = if available >= self.replicas - self.max_unavailable {
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// Kubernetes' `syncDeploymentStatus`: the counts and availability only.
    fn sync_status(&mut self) {
        self.status = self.calculate_status();
    }

    /// Kubernetes' `syncRolloutStatus`: the counts, and whether the rollout progresses, is
    /// complete, or has run out of time.
    fn sync_rollout_status(&mut self) {
        let mut status = self.calculate_status();
        if !self.has_progress_deadline() {
            remove_condition(&mut status, PROGRESSING);
        }
        // As in Kubernetes, the condition this pass already set (a new ReplicaSet) counts.
        let current = condition(&self.status, PROGRESSING).cloned();
        let was_complete = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        let new_name = self.new.map(|i| self.rss[i].name().to_owned());
        let subject = match &new_name {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!("Deployment {:?}", self.name()),
        };
        if self.has_progress_deadline() && !was_complete {
            if complete(self.d, &status) {
                let message = format!("{subject} has successfully progressed.");
                let c = new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, self.now);
                set_condition(&mut status, c);
            } else if progressing(&self.old_status, &status) {
                let message = format!("{subject} is progressing.");
                let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, message, self.now);
                // Progress moves lastUpdateTime; the transition time stays while it is True.
                if let Some(current) = condition(&status, PROGRESSING) {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                }
                remove_condition(&mut status, PROGRESSING);
                set_condition(&mut status, c);
            } else if self.timed_out(&status) {
                let message = format!("{subject} has timed out progressing.");
                let c = new_condition(PROGRESSING, "False", TIMED_OUT, message, self.now);
                set_condition(&mut status, c);
            }
        }
        // ReplicaSets report failures (such as a refused create) in a ReplicaFailure condition.
        let failure = self.new.into_iter().chain(self.olds()).find_map(|i| {
            self.rss[i]
                .rs
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| {
                    c.iter()
                        .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
                })
                .cloned()
        });
        match failure {
            Some(f) => {
                let c = minik_api::k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                };
                set_condition(&mut status, c);
            }
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        self.status = status;
        self.requeue_if_stuck();
    }

    /// Kubernetes' `DeploymentTimedOut`.
    fn timed_out(&self, status: &DeploymentStatus) -> bool {
        let Some(c) = condition(status, PROGRESSING) else {
            return false;
        };
        match c.reason.as_deref() {
            Some(NEW_RS_AVAILABLE) => false,
            Some(TIMED_OUT) => true,
            _ => {
                let deadline = i64::from(self.spec.progress_deadline_seconds.unwrap_or(600));
                c.last_update_time
                    .as_ref()
                    .is_some_and(|t| t.0.as_second() + deadline < self.now.as_second())
            }
        }
    }

    /// Kubernetes' `requeueStuckDeployment`: a rollout that makes no progress is looked at
    /// again when its deadline passes, so that it is seen to time out.
    fn requeue_if_stuck(&mut self) {
        if !self.has_progress_deadline() {
            return;
        }
        let Some(c) = condition(&self.status, PROGRESSING) else {
            return;
        };
        if complete(self.d, &self.status) || c.reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let Some(updated) = c.last_update_time.as_ref() else {
            return;
        };
        let deadline = i64::from(self.spec.progress_deadline_seconds.unwrap_or(600));
        let left = updated.0.as_second() + deadline - self.now.as_second();
        // Strictly after the deadline, as `timed_out` asks; a second at least, rate-limited.
        let after = Duration::from_secs(left.max(0) as u64 + 1);
        self.plan.requeue(after);
    }

    /// The plan: ReplicaSet writes in the order decided, each followed by its event; then the
    /// deletions of old revisions, the status and the revision annotation.
    fn finish(mut self) -> Plan {
        let involved = ObjectReference {
            api_version: Some(Kind::Deployment.api_version().into()),
            kind: Some(Kind::Deployment.name().into()),
            namespace: self.d.metadata.namespace.clone(),
            name: self.d.metadata.name.clone(),
            uid: self.d.metadata.uid.clone(),
            resource_version: self.d.metadata.resource_version.clone(),
            field_path: None,
        };
        let namespace = kinds::namespace(&self.d.metadata).to_owned();
        for i in std::mem::take(&mut self.changed) {
            let rs = &self.rss[i];
            let to = rs.replicas();
            let message = if rs.created_here {
                let object = match serde_json::to_value(&rs.rs) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a ReplicaSet");
                        continue;
                    }
                };
                self.plan.actions.push(Action::Create {
                    kind: Kind::ReplicaSet,
                    namespace: namespace.clone(),
                    objects: vec![object],
                    announce: None,
                });
                (to > 0).then(|| format!("Scaled up replica set {} to {to}", rs.name()))
            } else {
                let spec = rs.rs.spec.as_ref();
                self.plan.actions.push(Action::Patch {
                    kind: Kind::ReplicaSet,
                    namespace: namespace.clone(),
                    name: rs.name().to_owned(),
                    body: json!({
                        "metadata": {
                            "resourceVersion": kinds::resource_version(&rs.rs.metadata),
                            "annotations": rs.rs.metadata.annotations,
                        },
                        "spec": {
                            "replicas": to,
                            "minReadySeconds": spec.and_then(|s| s.min_ready_seconds).filter(|m| *m != 0),
                        },
                    }),
                    status: false,
                });
                let direction = if to > rs.from { "up" } else { "down" };
                (to != rs.from).then(|| {
                    format!(
                        "Scaled {direction} replica set {} to {to} from {}",
                        rs.name(),
                        rs.from
                    )
                })
            };
            if let Some(message) = message {
                self.plan.actions.push(Action::Record(Note {
                    involved: involved.clone(),
                    component: COMPONENT,
                    type_: "Normal",
                    reason: "ScalingReplicaSet",
                    message,
                }));
            }
        }
        if !self.deletes.is_empty() {
            self.plan.actions.push(Action::Delete {
                kind: Kind::ReplicaSet,
                namespace: namespace.clone(),
                targets: std::mem::take(&mut self.deletes),
                propagation: None,
                announce: None,
            });
        }
        let stored = self.d.status.clone().unwrap_or_default();
        if self.status != stored {
            let old = serde_json::to_value(&stored).unwrap_or(Value::Null);
            let new = serde_json::to_value(&self.status).unwrap_or(Value::Null);
            self.plan.actions.push(Action::Patch {
                kind: Kind::Deployment,
                namespace: namespace.clone(),
                name: self.name().to_owned(),
                body: json!({"status": replace_keys(&old, &new)}),
                status: true,
            });
        }
        if let Some(revision) = self.revision.take() {
            if kinds::annotation(&self.d.metadata, REVISION) != Some(revision.as_str()) {
                self.plan.actions.push(Action::Patch {
                    kind: Kind::Deployment,
                    namespace,
                    name: self.name().to_owned(),
                    body: json!({"metadata": {"annotations": {REVISION: revision}}}),
                    status: false,
                });
            }
        }
        self.plan
    }
}

/// Kubernetes' `DeploymentComplete`: every replica updated and available, the spec observed.
fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Kubernetes' `DeploymentProgressing`: more updated, ready or available replicas, or fewer
/// old ones, than the last status said.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_olds = n(old.replicas) - n(old.updated_replicas);
    let new_olds = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_olds < old_olds
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn set_owner_refs(rs: &ReplicaSet, refs: Vec<OwnerReference>) -> Action {
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(refs).unwrap_or(Value::Null)
    };
    Action::Patch {
        kind: Kind::ReplicaSet,
        namespace: kinds::namespace(&rs.metadata).to_owned(),
        name: kinds::name(&rs.metadata).to_owned(),
        body: json!({"metadata": {
            "resourceVersion": kinds::resource_version(&rs.metadata),
            "ownerReferences": refs,
        }}),
        status: false,
    }
}
