//! Table tests of the ReplicaSet reconciler: sizing, which pods go, adoption and release,
//! expectations, owners being deleted, status with minReadySeconds, and the status after
//! failing creates.

use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use minik_api::k8s_openapi::api::core::v1::{
    Container, PodSpec, PodTemplateSpec, ReplicationController, ReplicationControllerSpec,
};

use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use minik_api::podview::PodView;
use serde_json::json;

use super::reconcile::{reconcile, status_update, Decision, Failure, Inputs, Owner};
use crate::action::{Action, Plan};
use crate::kinds::Kind;
use crate::pods::testing::*;

fn replica_set(replicas: i32) -> ReplicaSet {
    let labels = [("app".to_owned(), "web".to_owned())];
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(2),
            resource_version: Some("10".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone().into()),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.into()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("nginx:1.25".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn mine(pod: PodView) -> PodView {
    owned_by(pod, "ReplicaSet", "web", "uid-web")
}

/// Everything a pass whose writes all succeed does, in order: claims, creates or deletes, the
/// status.
fn plan_of(owner: &Owner<'_>, decision: Decision, now: i64) -> Plan {
    let mut actions = decision.claims;
    actions.extend(decision.manage);
    actions.extend(status_update(owner, &decision.counts, None, at(now)));
    Plan {
        actions,
        requeue_after: decision.requeue_after,
    }
}

fn decide(owner: &Owner<'_>, pods: &[PodView], may_size: bool, now: i64) -> Decision {
    let refs: Vec<&PodView> = pods.iter().collect();
    let inputs = Inputs {
        pods: &refs,
        may_size,
        now: at(now),
        burst: 500,
    };
    let mut n = 0;
    reconcile(owner, &inputs, &mut || {
        n += 1;
        format!("s{n:04}")
    })
}

fn run(rs: &ReplicaSet, pods: &[PodView], may_size: bool, now: i64) -> Plan {
    let owner = Owner::of_replica_set(rs).expect("a valid ReplicaSet");
    plan_of(&owner, decide(&owner, pods, may_size, now), now)
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.deleted(Kind::Pod)
        .iter()
        .map(|t| t.name.clone())
        .collect()
}

/// The names of the pods whose ownerReferences the plan sets, with the owner uids they keep.
fn owner_patches(plan: &Plan) -> Vec<(String, Vec<String>)> {
    plan.patched(Kind::Pod)
        .into_iter()
        .map(|(name, body)| {
            let uids = body
                .pointer("/metadata/ownerReferences")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
                .filter_map(|r| r["uid"].as_str().map(str::to_owned))
                .collect();
            (name.to_owned(), uids)
        })
        .collect()
}

#[test]
fn sizing_creates_and_deletes_the_difference() {
    struct Case {
        name: &'static str,
        replicas: i32,
        pods: Vec<PodView>,
        may_size: bool,
        creates: usize,
        deletes: Vec<&'static str>,
    }
    let mut failed = mine(pod("failed", 0));
    if let Some(s) = failed.status.as_mut() {
        s.phase = Some("Failed".into());
    }
    let mut going = mine(pod("going", 0));
    going.metadata.deletion_timestamp = Some(Time(at(5)));
    let cases = vec![
        Case {
            name: "from nothing",
            replicas: 3,
            pods: vec![],
            may_size: true,
            creates: 3,
            deletes: vec![],
        },
        Case {
            name: "in step",
            replicas: 2,
            pods: vec![mine(pod("a", 0)), mine(pod("b", 0))],
            may_size: true,
            creates: 0,
            deletes: vec![],
        },
        Case {
            name: "finished and deleting pods are replaced",
            replicas: 2,
            pods: vec![mine(pod("a", 0)), failed, going],
            may_size: true,
            creates: 1,
            deletes: vec![],
        },
        Case {
            name: "surplus goes: unscheduled, then not ready, then newest",
            replicas: 2,
            pods: vec![
                mine(ready(on_node(pod("old-ready", 0), "n1"), 1)),
                mine(ready(on_node(pod("new-ready", 9), "n2"), 10)),
                mine(running(on_node(pod("not-ready", 3), "n3"))),
                mine(pod("unscheduled", 1)),
                mine(ready(on_node(pod("mid-ready", 5), "n4"), 6)),
            ],
            may_size: true,
            creates: 0,
            deletes: vec!["unscheduled", "not-ready", "new-ready"],
        },
        Case {
            name: "unobserved writes hold sizing back",
            replicas: 3,
            pods: vec![mine(pod("a", 0))],
            may_size: false,
            creates: 0,
            deletes: vec![],
        },
        Case {
            name: "pods of other controllers are not counted",
            replicas: 1,
            pods: vec![owned_by(
                pod("theirs", 0),
                "ReplicaSet",
                "other",
                "uid-other",
            )],
            may_size: true,
            creates: 1,
            deletes: vec![],
        },
    ];
    for case in cases {
        let plan = run(&replica_set(case.replicas), &case.pods, case.may_size, 20);
        assert_eq!(plan.created(Kind::Pod).len(), case.creates, "{}", case.name);
        assert_eq!(deleted(&plan), case.deletes, "{}", case.name);
    }
}

#[test]
fn new_pods_come_from_the_template_with_a_controller_reference() {
    let plan = run(&replica_set(2), &[], true, 0);
    let Some(Action::Create {
        objects, announce, ..
    }) = plan
        .actions
        .iter()
        .find(|a| matches!(a, Action::Create { .. }))
    else {
        panic!("no creates in {plan:?}");
    };
    assert_eq!(objects.len(), 2);
    let pod = &objects[0];
    assert_eq!(pod["metadata"]["name"], "web-s0001");
    assert_eq!(pod["metadata"]["generateName"], "web-");
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        pod["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "uid-web",
            "controller": true, "blockOwnerDeletion": true,
        }])
    );
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.25");
    assert_eq!(objects[1]["metadata"]["name"], "web-s0002");
    let announce = announce.as_ref().expect("creates are announced");
    assert_eq!(announce.reason, "SuccessfulCreate");
}

#[test]
fn burst_limits_one_pass() {
    let owner_rs = replica_set(800);
    let owner = Owner::of_replica_set(&owner_rs).expect("valid");
    let inputs = Inputs {
        pods: &[],
        may_size: true,
        now: at(0),
        burst: 500,
    };
    let plan = plan_of(&owner, reconcile(&owner, &inputs, &mut || "x".into()), 0);
    assert_eq!(plan.created(Kind::Pod).len(), 500);
}

#[test]
fn orphans_are_adopted_and_strays_released() {
    type Case = (
        &'static str,
        Vec<PodView>,
        Vec<(&'static str, Vec<&'static str>)>,
        usize,
    );
    let cases: Vec<Case> = vec![
        (
            "a matching orphan is adopted and counted",
            vec![pod("orphan", 0), mine(pod("a", 0))],
            vec![("orphan", vec!["uid-web"])],
            1,
        ),
        (
            "an orphan that does not match is left alone",
            vec![labelled(pod("stray", 0), "app", "db")],
            vec![],
            3,
        ),
        (
            "an owned pod that no longer matches is released and replaced",
            vec![
                mine(labelled(pod("relabelled", 0), "app", "debug")),
                mine(pod("a", 0)),
                mine(pod("b", 0)),
            ],
            vec![("relabelled", vec![])],
            1,
        ),
        (
            "an orphan being deleted is not adopted",
            vec![{
                let mut p = pod("going", 0);
                p.metadata.deletion_timestamp = Some(Time(at(1)));
                p
            }],
            vec![],
            3,
        ),
    ];
    for (case, pods, patches, creates) in cases {
        let plan = run(&replica_set(3), &pods, true, 10);
        let expected: Vec<(String, Vec<String>)> = patches
            .into_iter()
            .map(|(n, uids)| (n.to_owned(), uids.into_iter().map(str::to_owned).collect()))
            .collect();
        assert_eq!(owner_patches(&plan), expected, "{case}");
        assert_eq!(plan.created(Kind::Pod).len(), creates, "{case}");
    }
}

#[test]
fn adoption_is_conditional_on_the_pod_version() {
    let plan = run(&replica_set(1), &[pod("orphan", 0)], true, 10);
    let (_, body) = plan.patched(Kind::Pod)[0];
    assert_eq!(body["metadata"]["resourceVersion"], "7");
}

#[test]
fn an_owner_being_deleted_neither_sizes_nor_adopts() {
    let mut rs = replica_set(3);
    rs.metadata.deletion_timestamp = Some(Time(at(1)));
    let plan = run(&rs, &[pod("orphan", 0), mine(pod("a", 0))], true, 10);
    assert!(plan.created(Kind::Pod).is_empty());
    assert!(deleted(&plan).is_empty());
    assert!(owner_patches(&plan).is_empty());
}

#[test]
fn status_counts_ready_and_available_pods() {
    let mut rs = replica_set(4);
    if let Some(spec) = rs.spec.as_mut() {
        spec.min_ready_seconds = Some(10);
    }
    let pods = vec![
        mine(ready(on_node(pod("long-ready", 0), "n1"), 0)),
        mine(ready(on_node(pod("just-ready", 0), "n1"), 15)),
        mine(running(on_node(pod("starting", 0), "n1"))),
        mine(labelled(pod("extra-label", 0), "tier", "x")),
    ];
    let plan = run(&rs, &pods, true, 20);
    assert_eq!(
        plan.status_written(Kind::ReplicaSet),
        Some(&json!({
            "replicas": 4,
            "fullyLabeledReplicas": 4,
            "readyReplicas": 2,
            "availableReplicas": 1,
            "observedGeneration": 2,
        }))
    );
    // "just-ready" turns available 10 s after 15, strictly: at 25 s plus a moment.
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(5001)));
}

#[test]
fn status_is_written_only_when_it_changes() {
    let mut rs = replica_set(1);
    rs.status = Some(ReplicaSetStatus {
        replicas: 1,
        fully_labeled_replicas: Some(1),
        ready_replicas: Some(1),
        available_replicas: Some(1),
        observed_generation: Some(2),
        ..ReplicaSetStatus::default()
    });
    let pods = vec![mine(ready(pod("a", 0), 0))];
    assert_eq!(run(&rs, &pods, true, 20), Plan::default());
    // A pod that is no longer ready clears the counters to nothing, as Kubernetes omits zeros.
    let plan = run(&rs, &[mine(running(pod("a", 0)))], true, 20);
    assert_eq!(
        plan.status_written(Kind::ReplicaSet),
        Some(&json!({
            "replicas": 1,
            "fullyLabeledReplicas": 1,
            "readyReplicas": null,
            "availableReplicas": null,
            "observedGeneration": 2,
        }))
    );
}

#[test]
fn replication_controllers_use_their_equality_selector() {
    let rc = ReplicationController {
        metadata: ObjectMeta {
            name: Some("legacy".into()),
            namespace: Some("default".into()),
            uid: Some("uid-legacy".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicationControllerSpec {
            replicas: Some(2),
            selector: Some([("app".to_owned(), "web".to_owned())].into()),
            template: replica_set(1).spec.and_then(|s| s.template),
            min_ready_seconds: None,
        }),
        status: None,
    };
    let owner = Owner::of_replication_controller(&rc).expect("valid");
    let pods = [pod("orphan", 0), labelled(pod("db", 0), "app", "db")];
    let refs: Vec<&PodView> = pods.iter().collect();
    let inputs = Inputs {
        pods: &refs,
        may_size: true,
        now: at(0),
        burst: 500,
    };
    let plan = plan_of(
        &owner,
        reconcile(&owner, &inputs, &mut || "abcde".into()),
        0,
    );
    assert_eq!(
        owner_patches(&plan),
        vec![("orphan".to_owned(), vec!["uid-legacy".to_owned()])]
    );
    let created = plan.created(Kind::Pod);
    assert_eq!(created, vec!["legacy-abcde"]);
    let Some(Action::Create { objects, .. }) = plan
        .actions
        .iter()
        .find(|a| matches!(a, Action::Create { .. }))
    else {
        panic!("no create");
    };
    assert_eq!(
        objects[0]["metadata"]["ownerReferences"][0]["kind"],
        "ReplicationController"
    );
    assert_eq!(
        objects[0]["metadata"]["ownerReferences"][0]["apiVersion"],
        "v1"
    );
}

fn quota_refusal(pod: &str) -> Failure {
    Failure {
        reason: "FailedCreate",
        message: format!(
            "pods \"{pod}\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1"
        ),
    }
}

/// Regression (issue 23): with a quota of one pod and two replicas, the status said 0 replicas
/// while the ReplicaSet owned one pod, because the status was written only when the creates
/// succeeded.
#[test]
fn a_pass_whose_creates_fail_still_counts_the_pods_it_has() {
    let rs = replica_set(2);
    let owner = Owner::of_replica_set(&rs).expect("valid");
    let decision = decide(&owner, &[mine(pod("a", 0))], true, 10);
    assert!(
        matches!(decision.manage, Some(Action::Create { ref objects, .. }) if objects.len() == 1)
    );
    let failure = quota_refusal("web-s0001");
    let Some(Action::Patch {
        body, status: true, ..
    }) = status_update(&owner, &decision.counts, Some(&failure), at(10))
    else {
        panic!("no status write");
    };
    assert_eq!(body["status"]["replicas"], 1);
    assert_eq!(body["status"]["fullyLabeledReplicas"], 1);
    assert_eq!(body["status"]["observedGeneration"], 2);
    let condition = &body["status"]["conditions"][0];
    assert_eq!(condition["type"], "ReplicaFailure");
    assert_eq!(condition["reason"], "FailedCreate");
    assert_eq!(condition["message"], failure.message.as_str());
}

/// Regression (issue 23): every failing pass wrote the status again; once it says the counts
/// and the failure, the next failing passes write nothing.
#[test]
fn failing_passes_that_change_nothing_write_no_status() {
    let mut rs = replica_set(2);
    rs.status = Some(
        serde_json::from_value(json!({
            "replicas": 1,
            "fullyLabeledReplicas": 1,
            "observedGeneration": 2,
            "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": quota_refusal("web-s0001").message,
                "lastTransitionTime": "1970-01-01T00:00:10Z"}],
        }))
        .expect("a status"),
    );
    let owner = Owner::of_replica_set(&rs).expect("valid");
    let decision = decide(&owner, &[mine(pod("a", 0))], true, 20);
    for name in ["web-s0002", "web-s0003", "web-s0004"] {
        assert_eq!(
            status_update(&owner, &decision.counts, Some(&quota_refusal(name)), at(20)),
            None,
            "{name}"
        );
    }
    // The creates going through at last: the condition goes, the counts stay.
    let Some(Action::Patch { body, .. }) = status_update(&owner, &decision.counts, None, at(30))
    else {
        panic!("no status write");
    };
    assert_eq!(body["status"]["conditions"], json!(null));
    assert_eq!(body["status"]["replicas"], 1);
}
