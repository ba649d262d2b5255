//! The StatefulSet reconciler over snapshots: ordering with OrderedReady and Parallel, scale
//! down in reverse order, claims before pods, rolling updates down to the partition, claim
//! retention, status.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use minik_api::k8s_openapi::api::core::v1::PersistentVolumeClaim;

use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::podview::{PodStatusView, PodView};
use serde_json::{json, Value};

use super::reconcile::{reconcile, Decision, Inputs, Step};
use crate::history;
use crate::kinds::Kind;
use crate::pods::testing::{at, owned_by, pod, ready};

fn set_with(replicas: i32, extra: Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": "nginx",
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1",
                "volumeMounts": [{"name": "www", "mountPath": "/data"}]}]},
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "www", "labels": {"tier": "data"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn set(replicas: i32) -> StatefulSet {
    set_with(replicas, json!({}))
}

/// The name of the revision the set's template makes.
fn update_revision(set: &StatefulSet) -> String {
    let template = &set.spec.as_ref().unwrap().template;
    history::revision_name(
        "web",
        &history::hash_of(&history::template_patch(template), None),
    )
}

/// A pod of the set at `ordinal`, at revision `revision`, Running and Ready.
fn member(ordinal: i32, revision: &str) -> PodView {
    let mut p = ready(
        owned_by(
            pod(&format!("web-{ordinal}"), ordinal.into()),
            "StatefulSet",
            "web",
            "uid-web",
        ),
        ordinal.into(),
    );
    p.metadata
        .labels
        .get_or_insert_with(Default::default)
        .extend([
            ("controller-revision-hash".to_owned(), revision.to_owned()),
            (
                "statefulset.kubernetes.io/pod-name".to_owned(),
                format!("web-{ordinal}"),
            ),
            (
                "apps.kubernetes.io/pod-index".to_owned(),
                ordinal.to_string(),
            ),
        ]);
    p
}

fn pending(mut p: PodView) -> PodView {
    p.status = Some(PodStatusView {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    p
}

fn terminating(mut p: PodView) -> PodView {
    p.metadata.deletion_timestamp = Some(Time(at(100)));
    p
}

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "3"},
        "spec": {},
    }))
    .unwrap()
}

fn revision_of(set: &StatefulSet, number: i64) -> ControllerRevision {
    let spec = set.spec.as_ref().unwrap();
    history::new_revision(
        Kind::StatefulSet,
        &set.metadata,
        &BTreeMap::from([("app".to_owned(), "web".to_owned())]),
        history::template_patch(&spec.template),
        number,
        None,
    )
}

fn run(
    set: &StatefulSet,
    pods: &[PodView],
    claims: &[PersistentVolumeClaim],
    revisions: &[ControllerRevision],
) -> Decision {
    let pods: Vec<&PodView> = pods.iter().collect();
    let claims: BTreeMap<String, &PersistentVolumeClaim> = claims
        .iter()
        .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
        .collect();
    let revisions: Vec<&ControllerRevision> = revisions.iter().collect();
    reconcile(
        set,
        &Inputs {
            pods: &pods,
            claims: &claims,
            revisions: &revisions,
            now: at(1000),
        },
    )
}

/// The steps as short strings: `claim www-web-0`, `pod web-0`, `delete web-2`, ...
fn summary(d: &Decision) -> Vec<String> {
    d.steps
        .iter()
        .map(|s| match s {
            Step::CreateRevision(_) => "revision".to_owned(),
            Step::RenumberRevision { name, revision } => format!("renumber {name} {revision}"),
            Step::DeleteRevision(t) => format!("delete revision {}", t.name),
            Step::PatchPod { name, .. } => format!("patch pod {name}"),
            Step::CreateClaim { object, .. } => {
                format!("claim {}", object["metadata"]["name"].as_str().unwrap())
            }
            Step::PatchClaim { name, .. } => format!("patch claim {name}"),
            Step::DeleteClaim(t) => format!("delete claim {}", t.name),
            Step::CreatePod(object) => {
                format!("pod {}", object["metadata"]["name"].as_str().unwrap())
            }
            Step::DeletePod { target, .. } => format!("delete {}", target.name),
        })
        .collect()
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_claims_first() {
    let s = set(3);
    assert_eq!(
        summary(&run(&s, &[], &[], &[])),
        ["revision", "claim www-web-0", "pod web-0"]
    );
    let rev = revision_of(&s, 1);
    let name = update_revision(&s);
    assert_eq!(rev.metadata.name.as_deref(), Some(name.as_str()));
    // web-0 is not Running and Ready yet: nothing more.
    let web0 = pending(member(0, &name));
    assert!(summary(&run(
        &s,
        &[web0],
        &[claim("www-web-0")],
        std::slice::from_ref(&rev)
    ))
    .is_empty());
    // Ready: web-1 is next.
    let web0 = member(0, &name);
    assert_eq!(
        summary(&run(
            &s,
            std::slice::from_ref(&web0),
            &[claim("www-web-0")],
            std::slice::from_ref(&rev)
        )),
        ["claim www-web-1", "pod web-1"]
    );
    // A claim that exists is not made again.
    assert_eq!(
        summary(&run(
            &s,
            &[web0],
            &[claim("www-web-0"), claim("www-web-1")],
            &[rev]
        )),
        ["pod web-1"]
    );
}

#[test]
fn min_ready_seconds_hold_the_next_pod() {
    let s = set_with(2, json!({"minReadySeconds": 10}));
    let name = update_revision(&s);
    let mut web0 = member(0, &name);
    web0 = ready(web0, 995);
    let d = run(&s, &[web0], &[claim("www-web-0")], &[revision_of(&s, 1)]);
    assert!(summary(&d).is_empty(), "{:?}", summary(&d));
    assert!(d.requeue_after.is_some());
}

#[test]
fn revisions_carry_the_sets_annotations() {
    let mut s = set(1);
    s.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/change-cause".to_owned(),
        "image updated".to_owned(),
    )]));
    let d = run(&s, &[], &[], &[]);
    let Step::CreateRevision(r) = &d.steps[0] else {
        panic!("{:?}", summary(&d))
    };
    assert_eq!(r["metadata"]["name"], update_revision(&s).as_str());
    assert_eq!(
        r["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "image updated"
    );
    assert_eq!(r["metadata"]["labels"]["app"], "web");
    assert_eq!(r["revision"], 1);
}

#[test]
fn parallel_creates_every_pod_at_once() {
    let s = set_with(3, json!({"podManagementPolicy": "Parallel"}));
    assert_eq!(
        summary(&run(&s, &[], &[], &[])),
        [
            "revision",
            "claim www-web-0",
            "pod web-0",
            "claim www-web-1",
            "pod web-1",
            "claim www-web-2",
            "pod web-2"
        ]
    );
}

#[test]
fn pods_have_stable_identity_and_their_claims() {
    let s = set_with(2, json!({"ordinals": {"start": 5}}));
    let d = run(&s, &[], &[], &[]);
    let Step::CreateClaim { object: claim, pod } = &d.steps[1] else {
        panic!("{:?}", d.steps)
    };
    assert_eq!(pod, "web-5");
    assert_eq!(claim["metadata"]["name"], "www-web-5");
    assert_eq!(
        claim["metadata"]["labels"],
        json!({"app": "web", "tier": "data"})
    );
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert!(claim["metadata"].get("ownerReferences").is_none());
    let Step::CreatePod(p) = &d.steps[2] else {
        panic!("{:?}", d.steps)
    };
    assert_eq!(p["metadata"]["name"], "web-5");
    assert_eq!(p["spec"]["hostname"], "web-5");
    assert_eq!(p["spec"]["subdomain"], "nginx");
    let labels = &p["metadata"]["labels"];
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-5");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "5");
    assert_eq!(
        labels["controller-revision-hash"],
        update_revision(&s).as_str()
    );
    assert_eq!(
        p["spec"]["volumes"],
        json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-5"}}])
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
}

#[test]
fn scale_down_goes_in_reverse_order_one_at_a_time() {
    let s = set(1);
    let name = update_revision(&s);
    let rev = revision_of(&s, 1);
    let claims = [claim("www-web-0"), claim("www-web-1"), claim("www-web-2")];
    let all = [member(0, &name), member(1, &name), member(2, &name)];
    assert_eq!(
        summary(&run(&s, &all, &claims, std::slice::from_ref(&rev))),
        ["delete web-2"]
    );
    // web-2 is going: wait for it.
    let going = [
        member(0, &name),
        member(1, &name),
        terminating(member(2, &name)),
    ];
    assert!(summary(&run(&s, &going, &claims, std::slice::from_ref(&rev))).is_empty());
    let left = [member(0, &name), member(1, &name)];
    assert_eq!(
        summary(&run(&s, &left, &claims, std::slice::from_ref(&rev))),
        ["delete web-1"]
    );
    // Claims are kept (Retain).
    let d = run(&s, &[member(0, &name)], &claims, &[rev]);
    assert!(summary(&d).is_empty(), "{:?}", summary(&d));
    // Parallel: all at once.
    let p = set_with(1, json!({"podManagementPolicy": "Parallel"}));
    let rev = revision_of(&p, 1);
    assert_eq!(
        summary(&run(&p, &all, &claims, &[rev])),
        ["delete web-2", "delete web-1"]
    );
}

#[test]
fn an_unhealthy_replica_holds_a_scale_down_but_an_unhealthy_condemned_pod_goes() {
    let s = set(1);
    let name = update_revision(&s);
    let claims = [claim("www-web-0"), claim("www-web-1"), claim("www-web-2")];
    let all = [
        pending(member(0, &name)),
        member(1, &name),
        member(2, &name),
    ];
    assert!(summary(&run(&s, &all, &claims, &[revision_of(&s, 1)])).is_empty());
    let all = [
        member(0, &name),
        member(1, &name),
        pending(member(2, &name)),
    ];
    assert_eq!(
        summary(&run(&s, &all, &claims, &[revision_of(&s, 1)])),
        ["delete web-2"]
    );
}

#[test]
fn failed_pods_are_deleted_to_be_made_again() {
    let s = set(2);
    let name = update_revision(&s);
    let mut web0 = member(0, &name);
    web0.status = Some(PodStatusView {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    let d = run(&s, &[web0], &[claim("www-web-0")], &[revision_of(&s, 1)]);
    assert_eq!(summary(&d), ["delete web-0"]);
    let Step::DeletePod { warning, .. } = &d.steps[0] else {
        panic!()
    };
    assert_eq!(
        warning.as_ref().map(|w| (w.0, w.1.as_str())),
        Some((
            "RecreatingFailedPod",
            "StatefulSet default/web is recreating failed Pod web-0"
        ))
    );
}

#[test]
fn rolling_updates_go_from_the_highest_ordinal_down_to_the_partition() {
    let old = set(3);
    let old_rev = revision_of(&old, 1);
    let old_name = update_revision(&old);
    let mut new = set_with(
        3,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
    );
    new.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    new.status = serde_json::from_value(json!({"replicas": 3, "currentRevision": old_name})).ok();
    let new_name = update_revision(&new);
    assert_ne!(old_name, new_name);
    let new_rev = revision_of(&new, 2);
    let claims = [claim("www-web-0"), claim("www-web-1"), claim("www-web-2")];
    let revs = [old_rev.clone(), new_rev.clone()];

    let d = run(
        &new,
        &[
            member(0, &old_name),
            member(1, &old_name),
            member(2, &old_name),
        ],
        &claims,
        &[old_rev],
    );
    assert_eq!(summary(&d), ["revision", "delete web-2"]);
    // web-2 is replaced at the update revision, not ready yet: wait.
    let pods = [
        member(0, &old_name),
        member(1, &old_name),
        pending(member(2, &new_name)),
    ];
    assert!(summary(&run(&new, &pods, &claims, &revs)).is_empty());
    let pods = [
        member(0, &old_name),
        member(1, &old_name),
        member(2, &new_name),
    ];
    assert_eq!(summary(&run(&new, &pods, &claims, &revs)), ["delete web-1"]);
    // Down to the partition: web-0 stays at the current revision...
    let pods = [
        member(0, &old_name),
        member(1, &new_name),
        member(2, &new_name),
    ];
    let d = run(&new, &pods, &claims, &revs);
    assert!(summary(&d).is_empty(), "{:?}", summary(&d));
    let status = &d.status.as_ref().unwrap()["status"];
    assert_eq!(status["currentRevision"], old_name.as_str());
    assert_eq!(status["updateRevision"], new_name.as_str());
    assert_eq!(status["currentReplicas"], 1);
    assert_eq!(status["updatedReplicas"], 2);
    // ...and if deleted it comes back at the current revision.
    let pods = [member(1, &new_name), member(2, &new_name)];
    let d = run(&new, &pods, &claims, &revs);
    let Some(Step::CreatePod(p)) = d.steps.first() else {
        panic!("{:?}", summary(&d))
    };
    assert_eq!(
        p["metadata"]["labels"]["controller-revision-hash"],
        old_name.as_str()
    );
    assert_eq!(p["spec"]["containers"][0]["image"], "nginx:1");
}

#[test]
fn on_delete_leaves_old_pods_alone() {
    let old = set(2);
    let old_name = update_revision(&old);
    let mut new = set_with(2, json!({"updateStrategy": {"type": "OnDelete"}}));
    new.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    let revs = [revision_of(&old, 1), revision_of(&new, 2)];
    let pods = [member(0, &old_name), member(1, &old_name)];
    let d = run(
        &new,
        &pods,
        &[claim("www-web-0"), claim("www-web-1")],
        &revs,
    );
    assert!(summary(&d).is_empty(), "{:?}", summary(&d));
}

#[test]
fn a_rollback_renumbers_the_old_revision() {
    let s = set(1);
    let mut other = set(1);
    other
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    let revs = [revision_of(&s, 1), revision_of(&other, 2)];
    let d = run(
        &s,
        &[member(0, &update_revision(&s))],
        &[claim("www-web-0")],
        &revs,
    );
    assert_eq!(summary(&d), [format!("renumber {} 3", update_revision(&s))]);
}

#[test]
fn retention_policies_set_claim_owners() {
    // whenDeleted: Delete: claims are made owned by the set.
    let s = set_with(
        2,
        json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}),
    );
    let d = run(&s, &[], &[], &[]);
    let Step::CreateClaim { object, .. } = &d.steps[1] else {
        panic!()
    };
    assert_eq!(
        object["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "uid-web"}])
    );
    // whenScaled: Delete: the claim of a condemned pod is owned by that pod before it goes.
    let s = set_with(
        1,
        json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
    );
    let name = update_revision(&s);
    let claims = [claim("www-web-0"), claim("www-web-1")];
    let d = run(
        &s,
        &[member(0, &name), member(1, &name)],
        &claims,
        &[revision_of(&s, 1)],
    );
    assert_eq!(summary(&d), ["patch claim www-web-1", "delete web-1"]);
    let Step::PatchClaim { body, .. } = &d.steps[0] else {
        panic!()
    };
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "uid-web-1"}])
    );
    assert_eq!(body["metadata"]["resourceVersion"], "3");
    // Once the pod is gone, so is its claim.
    let mut owned = claim("www-web-1");
    owned.metadata.owner_references =
        serde_json::from_value(body["metadata"]["ownerReferences"].clone()).ok();
    let d = run(
        &s,
        &[member(0, &name)],
        &[claim("www-web-0"), owned],
        &[revision_of(&s, 1)],
    );
    assert_eq!(summary(&d), ["delete claim www-web-1"]);
    // Both Delete: the set owns the claims in range.
    let s = set_with(
        1,
        json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}),
    );
    let d = run(
        &s,
        &[member(0, &update_revision(&s))],
        &[claim("www-web-0")],
        &[revision_of(&s, 1)],
    );
    assert_eq!(summary(&d), ["patch claim www-web-0"]);
}

#[test]
fn status_counts_pods_and_revisions() {
    let s = set(3);
    let name = update_revision(&s);
    let pods = [
        member(0, &name),
        member(1, &name),
        pending(member(2, &name)),
    ];
    let claims = [claim("www-web-0"), claim("www-web-1"), claim("www-web-2")];
    let d = run(&s, &pods, &claims, &[revision_of(&s, 1)]);
    assert_eq!(
        d.status.unwrap()["status"],
        json!({
            "replicas": 3, "readyReplicas": 2, "availableReplicas": 2,
            "currentReplicas": 3, "updatedReplicas": 3,
            "currentRevision": name, "updateRevision": name,
            "collisionCount": 0, "observedGeneration": 1,
        })
    );
}

#[test]
fn orphans_named_as_members_are_adopted() {
    let s = set(1);
    let mut orphan = member(0, &update_revision(&s));
    orphan.metadata.owner_references = None;
    let d = run(&s, &[orphan], &[claim("www-web-0")], &[revision_of(&s, 1)]);
    assert_eq!(summary(&d), ["patch pod web-0"]);
}
