//! Tests of the Deployment reconciler: table tests of single passes (surge and unavailability
//! arithmetic, Recreate, rollback, pausing, proportional scaling, history, deadlines) and a
//! simulated world — ReplicaSet controller and nodes included — in which whole rollouts run
//! while the invariants of a rolling update are checked at every step.

use std::collections::HashMap;

use minik_api::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    ReplicaSet, ReplicaSetStatus, RollingUpdateDeployment,
};
use minik_api::k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use minik_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minik_api::patch::merge_patch;
use serde_json::Value;

use super::reconcile::{reconcile, Inputs};
use super::util::*;
use crate::action::{Action, Plan};
use crate::kinds::{annotation, Kind};
use crate::pods::testing::at;

fn int(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.to_owned())
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn deployment(
    replicas: i32,
    surge: IntOrString,
    unavailable: IntOrString,
    image: &str,
) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                match_expressions: None,
            },
            template: template(image),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            min_ready_seconds: None,
            paused: None,
        }),
        status: None,
    }
}

fn recreate(mut d: Deployment) -> Deployment {
    if let Some(spec) = d.spec.as_mut() {
        spec.strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
    }
    d
}

fn spec_mut(d: &mut Deployment) -> &mut DeploymentSpec {
    d.spec.get_or_insert_with(Default::default)
}

/// A ReplicaSet of `d` for `image`, as the controller would have made it, with `replicas`
/// pods of which `available` are available.
fn owned_rs(
    d: &Deployment,
    image: &str,
    replicas: i32,
    available: i32,
    revision: i64,
    created: i64,
) -> ReplicaSet {
    let t = template(image);
    let hash = template_hash(&t, None);
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{image}")),
            generation: Some(1),
            resource_version: Some("3".into()),
            creation_timestamp: Some(Time(at(created))),
            labels: Some(
                [
                    ("app".to_owned(), "web".to_owned()),
                    (HASH_LABEL.to_owned(), hash.clone()),
                ]
                .into(),
            ),
            owner_references: Some(vec![crate::kinds::controller_reference(
                Kind::Deployment,
                &d.metadata,
            )]),
            annotations: Some(
                [
                    (REVISION.to_owned(), revision.to_string()),
                    (
                        DESIRED_REPLICAS.to_owned(),
                        d.spec
                            .as_ref()
                            .and_then(|s| s.replicas)
                            .unwrap_or(1)
                            .to_string(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(minik_api::k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: None,
            selector: LabelSelector {
                match_labels: Some(
                    [
                        ("app".to_owned(), "web".to_owned()),
                        (HASH_LABEL.to_owned(), hash.clone()),
                    ]
                    .into(),
                ),
                match_expressions: None,
            },
            template: Some({
                let mut t = t;
                if let Some(m) = t.metadata.as_mut() {
                    m.labels
                        .get_or_insert_with(Default::default)
                        .insert(HASH_LABEL.into(), hash);
                }
                t
            }),
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        }),
    };
    if let Some(a) = rs.metadata.annotations.as_mut() {
        let max = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) + 1;
        a.insert(MAX_REPLICAS.into(), max.to_string());
    }
    rs
}

fn pass(d: &Deployment, rss: &[ReplicaSet], now: i64) -> Plan {
    let refs: Vec<&ReplicaSet> = rss.iter().collect();
    let live = HashMap::new();
    reconcile(
        d,
        &Inputs {
            replica_sets: &refs,
            live_pods: &live,
            now: at(now),
        },
    )
}

/// The sizes a plan gives ReplicaSets, by the image of their template.
fn sizes(plan: &Plan, rss: &[ReplicaSet]) -> Vec<(String, i64)> {
    let image_of = |rs: &Value| {
        rs.pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Create {
                kind: Kind::ReplicaSet,
                objects,
                ..
            } => Some((
                image_of(&objects[0]),
                objects[0]["spec"]["replicas"].as_i64().unwrap_or(-1),
            )),
            Action::Patch {
                kind: Kind::ReplicaSet,
                name,
                body,
                status: false,
                ..
            } => {
                let rs = rss
                    .iter()
                    .find(|rs| rs.metadata.name.as_deref() == Some(name))?;
                let image = image_of(&serde_json::to_value(rs).ok()?);
                Some((image, body["spec"]["replicas"].as_i64().unwrap_or(-1)))
            }
            _ => None,
        })
        .collect()
}

fn sized(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(i, n)| (i.to_string(), *n)).collect()
}

#[test]
fn a_new_deployment_gets_a_replica_set_named_by_its_template_hash() {
    let d = deployment(3, pct("25%"), pct("25%"), "v1");
    let plan = pass(&d, &[], 0);
    let Some(Action::Create { objects, .. }) = plan.actions.first() else {
        panic!("no ReplicaSet made: {plan:?}");
    };
    let rs = &objects[0];
    let hash = template_hash(&template("v1"), None);
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["labels"][HASH_LABEL], hash.as_str());
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"][HASH_LABEL],
        hash.as_str()
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL],
        hash.as_str()
    );
    assert_eq!(rs["spec"]["replicas"], 3);
    assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
    assert_eq!(rs["metadata"]["annotations"][DESIRED_REPLICAS], "3");
    assert_eq!(rs["metadata"]["annotations"][MAX_REPLICAS], "4");
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(
        rs["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );
    assert_eq!(
        plan.notes(),
        vec![format!("Scaled up replica set web-{hash} to 3")]
    );
    let status = plan.status_written(Kind::Deployment).expect("a status");
    assert_eq!(status["observedGeneration"], 1);
    let progressing = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == PROGRESSING))
        .expect("Progressing");
    assert_eq!(progressing["reason"], NEW_RS_CREATED);
    assert_eq!(
        progressing["message"],
        format!("Created new replica set \"web-{hash}\"")
    );
    let revision = plan.patched(Kind::Deployment);
    assert_eq!(revision[0].1["metadata"]["annotations"][REVISION], "1");
}

#[test]
fn rolling_steps_honour_surge_and_unavailability() {
    // (case, replicas, maxSurge, maxUnavailable, old (size, available), new (size, available)
    // or none, the sizes one pass sets)
    type Case = (
        &'static str,
        i32,
        IntOrString,
        IntOrString,
        (i32, i32),
        Option<(i32, i32)>,
        Vec<(&'static str, i64)>,
    );
    let cases: Vec<Case> = vec![
        (
            "start: surge one, retire one",
            4,
            int(1),
            int(1),
            (4, 4),
            None,
            vec![("v2", 1), ("v1", 3)],
        ),
        (
            "new pods not ready: grow to the surge",
            4,
            int(1),
            int(1),
            (3, 3),
            Some((1, 0)),
            vec![("v2", 2)],
        ),
        (
            "at the surge, nothing ready: wait",
            4,
            int(1),
            int(1),
            (3, 3),
            Some((2, 0)),
            vec![],
        ),
        (
            "new pods ready: retire old ones",
            4,
            int(1),
            int(1),
            (3, 3),
            Some((2, 2)),
            vec![("v1", 1)],
        ),
        (
            "no surge: retire first",
            4,
            int(0),
            int(1),
            (4, 4),
            None,
            vec![("v2", 0), ("v1", 3)],
        ),
        (
            "no unavailability: surge first",
            4,
            int(1),
            int(0),
            (4, 4),
            None,
            vec![("v2", 1)],
        ),
        (
            "percents: 25% of 10 is 3 up and 2 down",
            10,
            pct("25%"),
            pct("25%"),
            (10, 10),
            None,
            vec![("v2", 3), ("v1", 8)],
        ),
        (
            "unhealthy old replicas go first",
            4,
            int(1),
            int(1),
            (4, 2),
            None,
            vec![("v2", 1), ("v1", 3)],
        ),
        (
            "done: old at zero",
            4,
            int(1),
            int(1),
            (0, 0),
            Some((4, 4)),
            vec![],
        ),
        (
            "too big a new one shrinks",
            2,
            int(1),
            int(1),
            (0, 0),
            Some((4, 4)),
            vec![("v2", 2)],
        ),
    ];
    for (case, replicas, surge, unavailable, old, new, expected) in cases {
        let d = deployment(replicas, surge, unavailable, "v2");
        let mut rss = vec![owned_rs(&d, "v1", old.0, old.1, 1, 0)];
        if let Some((size, available)) = new {
            rss.push(owned_rs(&d, "v2", size, available, 2, 10));
        }
        let plan = pass(&d, &rss, 20);
        assert_eq!(sizes(&plan, &rss), sized(&expected), "{case}");
    }
}

#[test]
fn pods_still_going_count_against_the_surge() {
    // The old ReplicaSet was sized down to 2 but its 3 pods have not gone yet.
    let d = deployment(4, int(1), int(1), "v2");
    let mut old = owned_rs(&d, "v1", 2, 2, 1, 0);
    if let Some(s) = old.status.as_mut() {
        s.replicas = 3;
    }
    let rss = vec![old, owned_rs(&d, "v2", 2, 0, 2, 10)];
    let plan = pass(&d, &rss, 20);
    assert!(
        !sizes(&plan, &rss).iter().any(|(image, _)| image == "v2"),
        "the new ReplicaSet waits: {:?}",
        sizes(&plan, &rss)
    );
}

#[test]
fn scaling_events_are_worded_as_kubernetes_words_them() {
    let d = deployment(4, int(1), int(1), "v2");
    let rss = vec![
        owned_rs(&d, "v1", 3, 3, 1, 0),
        owned_rs(&d, "v2", 2, 2, 2, 10),
    ];
    let plan = pass(&d, &rss, 20);
    let old_name = rss[0].metadata.name.clone().unwrap_or_default();
    assert_eq!(
        plan.notes(),
        vec![format!("Scaled down replica set {old_name} to 1 from 3")]
    );
    let (_, body) = plan.patched(Kind::ReplicaSet)[0];
    assert_eq!(
        body["metadata"]["resourceVersion"], "3",
        "scaling is conditional"
    );
}

#[test]
fn recreate_stops_everything_before_starting_anew() {
    let d = recreate(deployment(3, int(1), int(1), "v2"));
    let old = owned_rs(&d, "v1", 3, 3, 1, 0);
    let rss = vec![old.clone()];
    assert_eq!(sizes(&pass(&d, &rss, 5), &rss), sized(&[("v1", 0)]));

    // Scaled down, but pods are still there: wait.
    let mut draining = old.clone();
    if let Some(spec) = draining.spec.as_mut() {
        spec.replicas = Some(0);
    }
    let refs = [&draining];
    let live: HashMap<String, usize> = [("uid-v1".to_owned(), 2)].into();
    let plan = reconcile(
        &d,
        &Inputs {
            replica_sets: &refs,
            live_pods: &live,
            now: at(5),
        },
    );
    assert_eq!(sizes(&plan, &[draining.clone()]), sized(&[]));

    // All gone: the new ReplicaSet is made at full size.
    if let Some(s) = draining.status.as_mut() {
        s.replicas = 0;
        s.available_replicas = None;
        s.ready_replicas = None;
    }
    let rss = vec![draining];
    assert_eq!(sizes(&pass(&d, &rss, 5), &rss), sized(&[("v2", 3)]));
}

#[test]
fn rollback_scales_the_old_replica_set_up_and_bumps_its_revision() {
    // Revision 1 ran v1; revision 2 runs v2; the template is set back to v1 (`rollout undo`).
    let d = deployment(3, int(1), int(1), "v1");
    let rss = vec![
        owned_rs(&d, "v1", 0, 0, 1, 0),
        owned_rs(&d, "v2", 3, 3, 2, 10),
    ];
    let plan = pass(&d, &rss, 20);
    // The old ReplicaSet grows first, by the surge; the other shrinks in later passes.
    assert_eq!(sizes(&plan, &rss), sized(&[("v1", 1)]));
    let v1_name = rss[0].metadata.name.as_deref().unwrap_or_default();
    let (_, body) = plan
        .patched(Kind::ReplicaSet)
        .into_iter()
        .find(|(n, _)| *n == v1_name)
        .expect("v1 patched");
    assert_eq!(body["metadata"]["annotations"][REVISION], "3");
    assert_eq!(body["metadata"]["annotations"][REVISION_HISTORY], "1");
    assert_eq!(
        plan.created(Kind::ReplicaSet),
        Vec::<String>::new(),
        "no new ReplicaSet"
    );
    let d_patch = plan.patched(Kind::Deployment);
    assert_eq!(d_patch[0].1["metadata"]["annotations"][REVISION], "3");
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out() {
    let mut d = deployment(5, int(1), int(1), "v2");
    spec_mut(&mut d).paused = Some(true);
    let mut old = owned_rs(&d, "v1", 3, 3, 1, 0);
    if let Some(a) = old.metadata.annotations.as_mut() {
        a.insert(DESIRED_REPLICAS.into(), "3".into());
        a.insert(MAX_REPLICAS.into(), "4".into());
    }
    let rss = vec![old];
    let plan = pass(&d, &rss, 20);
    assert!(plan.created(Kind::ReplicaSet).is_empty());
    assert_eq!(sizes(&plan, &rss), sized(&[("v1", 5)]));
    let status = plan.status_written(Kind::Deployment).expect("status");
    let progressing = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == PROGRESSING))
        .expect("Progressing");
    assert_eq!(progressing["status"], "Unknown");
    assert_eq!(progressing["reason"], PAUSED);
}

#[test]
fn scaling_in_the_middle_of_a_rollout_is_proportional() {
    // 10 replicas with 25% surge (3) mid-rollout: old 8, new 5; then scaled to 15 (surge 4).
    let d = deployment(15, pct("25%"), pct("25%"), "v2");
    let mut old = owned_rs(&d, "v1", 8, 8, 1, 0);
    let mut new = owned_rs(&d, "v2", 5, 0, 2, 10);
    for rs in [&mut old, &mut new] {
        if let Some(a) = rs.metadata.annotations.as_mut() {
            a.insert(DESIRED_REPLICAS.into(), "10".into());
            a.insert(MAX_REPLICAS.into(), "13".into());
        }
    }
    let rss = vec![old, new];
    let plan = pass(&d, &rss, 20);
    // 19 allowed - 13 = 6 to add: 8*19/13 = 11.7 -> +4, 5*19/13 = 7.3 -> +2.
    assert_eq!(sizes(&plan, &rss), sized(&[("v1", 12), ("v2", 7)]));
    for (_, body) in plan.patched(Kind::ReplicaSet) {
        assert_eq!(body["metadata"]["annotations"][DESIRED_REPLICAS], "15");
        assert_eq!(body["metadata"]["annotations"][MAX_REPLICAS], "19");
    }
}

#[test]
fn old_revisions_beyond_the_history_limit_are_deleted() {
    let mut d = deployment(2, int(1), int(1), "v4");
    spec_mut(&mut d).revision_history_limit = Some(1);
    d.status = Some(DeploymentStatus {
        replicas: Some(2),
        updated_replicas: Some(2),
        available_replicas: Some(2),
        ready_replicas: Some(2),
        observed_generation: Some(1),
        ..DeploymentStatus::default()
    });
    let rss = vec![
        owned_rs(&d, "v1", 0, 0, 1, 0),
        owned_rs(&d, "v2", 0, 0, 2, 1),
        owned_rs(&d, "v3", 0, 0, 3, 2),
        owned_rs(&d, "v4", 2, 2, 4, 3),
    ];
    let plan = pass(&d, &rss, 20);
    let deleted: Vec<&str> = plan
        .deleted(Kind::ReplicaSet)
        .into_iter()
        .map(|t| t.uid.as_str())
        .collect();
    assert_eq!(deleted, vec!["uid-v1", "uid-v2"]);
}

fn progressing_condition(reason: &str, updated_at: i64) -> DeploymentCondition {
    DeploymentCondition {
        type_: PROGRESSING.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some("ReplicaSet is progressing.".into()),
        last_update_time: Some(Time(at(updated_at))),
        last_transition_time: Some(Time(at(updated_at))),
    }
}

#[test]
fn a_stuck_rollout_times_out_after_its_deadline() {
    let mut d = deployment(2, int(0), int(1), "v2");
    // A new ReplicaSet whose pods never become ready.
    let rss = vec![
        owned_rs(&d, "v1", 1, 1, 1, 0),
        owned_rs(&d, "v2", 2, 0, 2, 10),
    ];
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(3),
        updated_replicas: Some(2),
        available_replicas: Some(1),
        ready_replicas: Some(1),
        unavailable_replicas: Some(2),
        conditions: Some(vec![progressing_condition(RS_UPDATED, 100)]),
        ..DeploymentStatus::default()
    });
    // Within the deadline: nothing new, look again when it passes.
    let plan = pass(&d, &rss, 400);
    assert_eq!(
        plan.requeue_after,
        Some(std::time::Duration::from_secs(301))
    );
    // Past it: Progressing turns False.
    let plan = pass(&d, &rss, 701);
    let status = plan.status_written(Kind::Deployment).expect("status");
    let c = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == PROGRESSING))
        .expect("Progressing");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], TIMED_OUT);
    let new_name = rss[1].metadata.name.clone().unwrap_or_default();
    assert_eq!(
        c["message"],
        format!("ReplicaSet \"{new_name}\" has timed out progressing.")
    );
}

#[test]
fn a_hash_collision_is_counted_and_not_created() {
    let d = deployment(2, int(1), int(1), "v1");
    // A ReplicaSet that has the name this template hashes to, with another template.
    let mut squatter = owned_rs(&d, "other", 1, 1, 1, 0);
    squatter.metadata.name = Some(format!("web-{}", template_hash(&template("v1"), None)));
    let plan = pass(&d, &[squatter], 5);
    assert!(plan.created(Kind::ReplicaSet).is_empty());
    let status = plan.status_written(Kind::Deployment).expect("status");
    assert_eq!(status["collisionCount"], 1);
}

#[test]
fn orphan_replica_sets_are_adopted_before_anything_else() {
    let d = deployment(2, int(1), int(1), "v1");
    let mut orphan = owned_rs(&d, "v1", 2, 2, 1, 0);
    orphan.metadata.owner_references = None;
    let plan = pass(&d, &[orphan], 5);
    let patches = plan.patched(Kind::ReplicaSet);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].1["metadata"]["ownerReferences"][0]["uid"],
        "uid-web"
    );
    assert_eq!(plan.actions.len(), 1, "nothing else this pass");
    assert_eq!(plan.requeue_after, Some(std::time::Duration::ZERO));
}

/// A world of ReplicaSets and pods in which the Deployment reconciler's plans are carried out,
/// with a ReplicaSet controller that creates pods before it deletes any (the worst order for
/// the surge) and nodes that make a few pods ready per step.
struct World {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    /// (pods, ready pods) per ReplicaSet name.
    pods: HashMap<String, (i32, i32)>,
    revision: u64,
    now: i64,
    events: Vec<String>,
}

impl World {
    fn new(d: Deployment) -> World {
        World {
            d,
            rss: Vec::new(),
            pods: HashMap::new(),
            revision: 10,
            now: 0,
            events: Vec::new(),
        }
    }

    fn next_rv(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    fn pass(&mut self) {
        let plan = pass(&self.d, &self.rss, self.now);
        for action in plan.actions {
            match action {
                Action::Create {
                    kind: Kind::ReplicaSet,
                    objects,
                    ..
                } => {
                    let mut rs: ReplicaSet =
                        serde_json::from_value(objects[0].clone()).expect("a ReplicaSet");
                    rs.metadata.uid = Some(format!("uid-{}", self.revision));
                    rs.metadata.generation = Some(1);
                    rs.metadata.creation_timestamp = Some(Time(at(self.now)));
                    rs.metadata.resource_version = Some(self.next_rv());
                    self.rss.push(rs);
                }
                Action::Patch {
                    kind: Kind::ReplicaSet,
                    name,
                    body,
                    ..
                } => {
                    let rv = self.next_rv();
                    let rs = self
                        .rss
                        .iter_mut()
                        .find(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
                        .expect("the patched ReplicaSet exists");
                    assert_eq!(
                        body["metadata"]["resourceVersion"].as_str(),
                        rs.metadata.resource_version.as_deref(),
                        "a patch of a version the pass did not see"
                    );
                    let current = serde_json::to_value(&*rs).expect("encode");
                    let mut patched: ReplicaSet =
                        serde_json::from_value(merge_patch(&current, &body)).expect("decode");
                    if patched.spec != rs.spec {
                        patched.metadata.generation = rs.metadata.generation.map(|g| g + 1);
                    }
                    patched.metadata.resource_version = Some(rv);
                    *rs = patched;
                }
                Action::Patch {
                    kind: Kind::Deployment,
                    body,
                    ..
                } => {
                    let current = serde_json::to_value(&self.d).expect("encode");
                    self.d = serde_json::from_value(merge_patch(&current, &body)).expect("decode");
                }
                Action::Delete {
                    kind: Kind::ReplicaSet,
                    targets,
                    ..
                } => {
                    self.rss.retain(|rs| {
                        !targets
                            .iter()
                            .any(|t| Some(&t.uid) == rs.metadata.uid.as_ref())
                    });
                }
                Action::Record(note) => self.events.push(note.message),
                other => panic!("unexpected action {other:?}"),
            }
        }
    }

    fn total_pods(&self) -> i32 {
        self.pods.values().map(|(n, _)| n).sum()
    }

    fn ready_pods(&self) -> i32 {
        self.pods.values().map(|(_, r)| r).sum()
    }

    /// The ReplicaSet controllers and the nodes: creates, then deletes (not-ready pods
    /// first), then `make_ready` pods turn ready, then statuses. Checks `check` after each
    /// change of pods.
    fn settle(&mut self, make_ready: i32, check: &dyn Fn(&World)) {
        let specs: Vec<(String, i32)> = self
            .rss
            .iter()
            .map(|rs| {
                (
                    rs.metadata.name.clone().unwrap_or_default(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                )
            })
            .collect();
        for (name, spec) in &specs {
            let entry = self.pods.entry(name.clone()).or_insert((0, 0));
            entry.0 = entry.0.max(*spec);
        }
        check(self);
        for (name, spec) in &specs {
            let entry = self.pods.entry(name.clone()).or_insert((0, 0));
            if entry.0 > *spec {
                let surplus = entry.0 - spec;
                let not_ready = entry.0 - entry.1;
                entry.1 -= (surplus - not_ready).max(0);
                entry.0 = *spec;
            }
        }
        self.pods
            .retain(|name, _| specs.iter().any(|(n, _)| n == name));
        check(self);
        let mut left = make_ready;
        for (name, _) in specs.iter().rev() {
            if let Some(entry) = self.pods.get_mut(name) {
                let turn = (entry.0 - entry.1).min(left);
                entry.1 += turn;
                left -= turn;
            }
        }
        check(self);
        for rs in &mut self.rss {
            let name = rs.metadata.name.clone().unwrap_or_default();
            let (pods, ready) = self.pods.get(&name).copied().unwrap_or((0, 0));
            let nonzero = |n: i32| (n != 0).then_some(n);
            rs.status = Some(ReplicaSetStatus {
                replicas: pods,
                ready_replicas: nonzero(ready),
                available_replicas: nonzero(ready),
                fully_labeled_replicas: nonzero(pods),
                observed_generation: rs.metadata.generation,
                ..ReplicaSetStatus::default()
            });
        }
        self.now += 1;
    }

    fn complete(&self) -> bool {
        let replicas = self.d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = self.d.status.clone().unwrap_or_default();
        status.observed_generation == self.d.metadata.generation
            && status.updated_replicas.unwrap_or(0) == replicas
            && status.replicas.unwrap_or(0) == replicas
            && status.available_replicas.unwrap_or(0) == replicas
    }

    /// Runs passes (two per step, the second on statuses that lag the first's writes) until
    /// the rollout completes.
    fn roll(&mut self, make_ready: i32, check: &dyn Fn(&World)) {
        for _ in 0..200 {
            self.pass();
            self.pass();
            self.settle(make_ready, check);
            self.pass();
            if self.complete() {
                return;
            }
        }
        panic!(
            "the rollout did not complete: {:?} {:?}",
            self.d.status, self.pods
        );
    }
}

#[test]
fn whole_rollouts_stay_within_surge_and_unavailability() {
    let cases = [
        (4, int(1), int(1), 1),
        (3, int(0), int(1), 1),
        (3, int(1), int(0), 1),
        (10, pct("25%"), pct("25%"), 2),
        (10, pct("25%"), pct("25%"), 10),
        (5, pct("100%"), int(0), 5),
        (1, int(1), int(0), 1),
        (7, pct("30%"), pct("0%"), 3),
        (6, pct("0%"), pct("50%"), 6),
    ];
    for (replicas, surge, unavailable, make_ready) in cases {
        let case = format!("{replicas} replicas, {surge:?} surge, {unavailable:?} unavailable");
        let (max_surge, max_unavailable) = fenceposts(Some(&surge), Some(&unavailable), replicas);
        let mut world = World::new(deployment(replicas, surge, unavailable, "v1"));
        world.roll(replicas, &|_| {});
        assert_eq!(world.rss.len(), 1, "{case}: one ReplicaSet");

        // A new template: the watcher's invariants hold at every step of the rollout.
        spec_mut(&mut world.d).template = template("v2");
        world.d.metadata.generation = Some(2);
        let check = |w: &World| {
            assert!(
                w.total_pods() <= replicas + max_surge,
                "{case}: {} pods, more than {replicas} + {max_surge}: {:?}",
                w.total_pods(),
                w.pods
            );
            assert!(
                w.ready_pods() >= replicas - max_unavailable,
                "{case}: {} ready, fewer than {replicas} - {max_unavailable}: {:?}",
                w.ready_pods(),
                w.pods
            );
        };
        world.roll(make_ready, &check);
        let sizes: Vec<i32> = world
            .rss
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .collect();
        assert_eq!(
            sizes.iter().filter(|n| **n > 0).count(),
            1,
            "{case}: {sizes:?}"
        );
        assert_eq!(
            annotation(&world.d.metadata, REVISION),
            Some("2"),
            "{case}: the Deployment is at revision 2"
        );
        let status = world.d.status.clone().unwrap_or_default();
        let progressing = condition(&status, PROGRESSING).expect("Progressing");
        assert_eq!(
            progressing.reason.as_deref(),
            Some(NEW_RS_AVAILABLE),
            "{case}"
        );
        let available = condition(&status, AVAILABLE).expect("Available");
        assert_eq!(available.status, "True", "{case}");
        assert!(
            world
                .events
                .iter()
                .any(|e| e.starts_with("Scaled down replica set web-")),
            "{case}: {:?}",
            world.events
        );
    }
}

#[test]
fn rolling_back_in_the_world_reuses_the_old_replica_set() {
    let mut world = World::new(deployment(3, int(1), int(1), "v1"));
    world.roll(3, &|_| {});
    let v1 = world.rss[0].metadata.name.clone();
    spec_mut(&mut world.d).template = template("v2");
    world.d.metadata.generation = Some(2);
    world.roll(3, &|_| {});
    spec_mut(&mut world.d).template = template("v1");
    world.d.metadata.generation = Some(3);
    world.roll(3, &|_| {});
    assert_eq!(world.rss.len(), 2, "no third ReplicaSet");
    let active: Vec<&ReplicaSet> = world
        .rss
        .iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas) == Some(3))
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].metadata.name, v1);
    assert_eq!(annotation(&active[0].metadata, REVISION), Some("3"));
    assert_eq!(annotation(&active[0].metadata, REVISION_HISTORY), Some("1"));
    assert_eq!(annotation(&world.d.metadata, REVISION), Some("3"));
}
