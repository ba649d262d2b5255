//! The DaemonSet reconciler over snapshots: placement over nodes, the pods it makes, rolling
//! updates with maxUnavailable and maxSurge, OnDelete, status and history.

use minik_api::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use minik_api::k8s_openapi::api::core::v1::Node;

use minik_api::podview::PodView;
use serde_json::{json, Value};

use super::reconcile::{history, reconcile, Daemon, Decision, Inputs};
use crate::action::Action;
use crate::history::{self as revisions, HASH_LABEL};
use crate::kinds::Kind;
use crate::pods::testing::{at, labelled, on_node, owned_by, pod, ready, running};

fn daemon_set(patch: Value) -> DaemonSet {
    let base = json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10
        }
    });
    serde_json::from_value(minik_api::patch::merge_patch(&base, &patch)).expect("a DaemonSet")
}

fn node(name: &str, extra: Value) -> Node {
    let base =
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}});
    serde_json::from_value(minik_api::patch::merge_patch(&base, &extra)).expect("a node")
}

fn nodes(names: &[&str]) -> Vec<Node> {
    names.iter().map(|n| node(n, json!({}))).collect()
}

/// A daemon pod of `agent` with revision `hash` on `node`, Ready since `at(0)`.
fn daemon_pod(name: &str, node: &str, hash: &str) -> PodView {
    let p = owned_by(pod(name, 0), "DaemonSet", "agent", "ds-uid");
    ready(labelled(on_node(p, node), HASH_LABEL, hash), 0)
}

const HASH: &str = "new";

fn run_with(ds: &DaemonSet, nodes: &[Node], pods: &[PodView], may_manage: bool) -> Decision {
    let daemon = Daemon::of(ds).expect("a daemon");
    let node_refs: Vec<&Node> = nodes.iter().collect();
    let pod_refs: Vec<&PodView> = pods.iter().collect();
    let inputs = Inputs {
        nodes: &node_refs,
        pods: &pod_refs,
        old_revisions: &[],
        may_manage,
        now: at(100),
        burst: 500,
    };
    let mut n = 0;
    reconcile(&daemon, HASH, &inputs, &mut || {
        n += 1;
        format!("x{n}")
    })
}

fn run(ds: &DaemonSet, nodes: &[Node], pods: &[PodView]) -> Decision {
    run_with(ds, nodes, pods, true)
}

/// The nodes the pass makes pods for (from each pod's node affinity).
fn created_on(d: &Decision) -> Vec<String> {
    d.manage
        .iter()
        .filter_map(|a| match a {
            Action::Create { objects, .. } => Some(objects),
            _ => None,
        })
        .flatten()
        .map(|p| {
            p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn created(d: &Decision) -> Vec<Value> {
    d.manage
        .iter()
        .filter_map(|a| match a {
            Action::Create { objects, .. } => Some(objects.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn deleted(d: &Decision) -> Vec<String> {
    d.manage
        .iter()
        .filter_map(|a| match a {
            Action::Delete { targets, .. } => Some(targets),
            _ => None,
        })
        .flatten()
        .map(|t| t.name.clone())
        .collect()
}

fn status(d: &Decision) -> Value {
    d.status.clone().unwrap_or_default()["status"].clone()
}

#[test]
fn one_pod_per_eligible_node_placed_through_the_scheduler() {
    let ds = daemon_set(json!({"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}));
    let ns = vec![
        node("a", json!({"metadata": {"labels": {"disk": "ssd"}}})),
        node("b", json!({"metadata": {"labels": {"disk": "hdd"}}})),
        node(
            "c",
            json!({"metadata": {"labels": {"disk": "ssd"}}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ),
        node(
            "d",
            json!({"metadata": {"labels": {"disk": "ssd"}}, "spec": {"unschedulable": true}}),
        ),
    ];
    let d = run(&ds, &ns, &[]);
    assert_eq!(
        created_on(&d),
        ["a", "d"],
        "a cordoned node still gets its daemon pod"
    );
    let pod = &created(&d)[0];
    assert_eq!(pod["spec"].get("nodeName"), None, "the scheduler binds it");
    assert_eq!(pod["metadata"]["labels"][HASH_LABEL], HASH);
    assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "2");
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .starts_with("agent-"));
    let tolerations: Vec<String> = pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        tolerations,
        [
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/disk-pressure:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/pid-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
        ]
    );
    assert_eq!(
        status(&d),
        json!({"desiredNumberScheduled": 2, "currentNumberScheduled": 0, "numberMisscheduled": 0,
               "numberReady": 0, "updatedNumberScheduled": null, "numberAvailable": null,
               "numberUnavailable": 2, "observedGeneration": 2})
    );
    let events: Vec<_> = d
        .manage
        .iter()
        .filter_map(|a| match a {
            Action::Create {
                announce: Some(a), ..
            } => Some((a.reason, a.verb)),
            _ => None,
        })
        .collect();
    assert_eq!(events, [("SuccessfulCreate", "Created pod: ")]);
}

#[test]
fn nodes_that_change_keep_or_lose_their_pods() {
    let ds =
        daemon_set(json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "edge"}}}}}));
    let edge = |name: &str, spec: Value| {
        node(
            name,
            json!({"metadata": {"labels": {"role": "edge"}}, "spec": spec}),
        )
    };
    let ns = vec![
        edge("a", json!({})),
        // Tainted NoSchedule after its pod started: the pod stays, but does not count.
        edge(
            "b",
            json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}),
        ),
        // Tainted NoExecute: its pod goes.
        edge(
            "c",
            json!({"taints": [{"key": "k", "effect": "NoExecute"}]}),
        ),
        // Relabelled: its pod goes.
        node("d", json!({})),
    ];
    let pods = vec![
        daemon_pod("pa", "a", HASH),
        daemon_pod("pb", "b", HASH),
        daemon_pod("pc", "c", HASH),
        daemon_pod("pd", "d", HASH),
        // Bound to a node that was deleted, and meant for one that never existed.
        daemon_pod("pe", "gone", HASH),
        owned_by(
            {
                let mut p = pod("pf", 0);
                if let Some(spec) = p.spec.as_mut() {
                    super::placement::pin_to_node(&mut spec.affinity, "nowhere");
                }
                p
            },
            "DaemonSet",
            "agent",
            "ds-uid",
        ),
    ];
    let d = run(&ds, &ns, &pods);
    assert!(created_on(&d).is_empty());
    assert_eq!(deleted(&d), ["pc", "pd", "pe", "pf"]);
    let s = status(&d);
    assert_eq!(s["desiredNumberScheduled"], 1);
    assert_eq!(s["currentNumberScheduled"], 1);
    assert_eq!(s["numberMisscheduled"], 3);
    assert_eq!(s["numberAvailable"], 1);
}

#[test]
fn extra_failed_and_succeeded_pods_are_cleaned_up() {
    let ds = daemon_set(json!({}));
    let mut failed = daemon_pod("failed", "b", HASH);
    if let Some(s) = failed.status.as_mut() {
        s.phase = Some("Failed".into());
    }
    let mut second = daemon_pod("second", "a", HASH);
    second.metadata.creation_timestamp =
        Some(minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
    let d = run(
        &ds,
        &nodes(&["a", "b"]),
        &[daemon_pod("first", "a", HASH), second, failed],
    );
    assert_eq!(
        deleted(&d),
        ["second", "failed"],
        "the oldest pod of a node stays"
    );
    assert_eq!(
        d.notes
            .iter()
            .map(|n| (n.reason, n.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            "FailedDaemonPod",
            "Found failed daemon pod default/failed on node b, will try to kill it"
        )]
    );
}

#[test]
fn orphans_are_adopted_and_unselected_pods_released() {
    let ds = daemon_set(json!({}));
    let orphan = ready(on_node(pod("orphan", 0), "a"), 0);
    let stray = labelled(daemon_pod("stray", "b", HASH), "app", "other");
    let d = run(&ds, &nodes(&["a", "b"]), &[orphan, stray]);
    let patched: Vec<(String, Value)> = d
        .claims
        .iter()
        .filter_map(|a| match a {
            Action::Patch {
                name,
                body,
                kind: Kind::Pod,
                ..
            } => Some((name.clone(), body.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(patched.len(), 2);
    assert_eq!(patched[0].0, "orphan");
    assert_eq!(
        patched[0].1["metadata"]["ownerReferences"][0]["uid"],
        "ds-uid"
    );
    assert_eq!(patched[1].0, "stray");
    assert_eq!(patched[1].1["metadata"]["ownerReferences"], Value::Null);
    assert_eq!(created_on(&d), ["b"]);
}

#[test]
fn unobserved_writes_hold_the_pass_back() {
    let ds = daemon_set(json!({}));
    let d = run_with(
        &ds,
        &nodes(&["a", "b"]),
        &[daemon_pod("pa", "a", "old")],
        false,
    );
    assert!(d.manage.is_empty());
    let s = status(&d);
    assert_eq!(s.get("observedGeneration"), None);
    assert_eq!(s["desiredNumberScheduled"], 2);
    assert_eq!(s["updatedNumberScheduled"], Value::Null);
}

#[test]
fn rolling_updates_stay_within_max_unavailable() {
    let ns = nodes(&["a", "b", "c", "d"]);
    let old = |n: &str| daemon_pod(&format!("p{n}"), n, "old");
    let all_old: Vec<PodView> = ["a", "b", "c", "d"].iter().map(|n| old(n)).collect();
    // One at a time.
    let ds = daemon_set(json!({}));
    assert_eq!(deleted(&run(&ds, &ns, &all_old)), ["pa"]);
    // Two at a time, or a percent of the nodes rounded up.
    let two =
        daemon_set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}));
    assert_eq!(deleted(&run(&two, &ns, &all_old)), ["pa", "pb"]);
    let quarter = daemon_set(
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "30%"}}}}),
    );
    assert_eq!(deleted(&run(&quarter, &ns, &all_old)), ["pa", "pb"]);
    // A new pod not yet available uses up the budget; then the next node goes.
    let mut step = vec![running(daemon_pod("na", "a", HASH))];
    step.extend(["b", "c", "d"].iter().map(|n| old(n)));
    assert!(deleted(&run(&ds, &ns, &step)).is_empty());
    step[0] = daemon_pod("na", "a", HASH);
    assert_eq!(deleted(&run(&ds, &ns, &step)), ["pb"]);
    // An old pod that is not available anyway is replaced at once.
    let mut broken = all_old.clone();
    broken[2] = running(old("c"));
    assert_eq!(deleted(&run(&ds, &ns, &broken)), ["pc"]);
    // A node without its pod counts as unavailable: nothing else goes meanwhile.
    let d = run(&ds, &ns, &all_old[1..]);
    assert_eq!(created_on(&d), ["a"]);
    assert!(deleted(&d).is_empty());
    // Once all are new, the status says so.
    let done: Vec<PodView> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| daemon_pod(&format!("n{n}"), n, HASH))
        .collect();
    let d = run(&ds, &ns, &done);
    assert!(d.manage.is_empty());
    assert_eq!(status(&d)["updatedNumberScheduled"], 4);
    assert_eq!(status(&d)["numberAvailable"], 4);
}

#[test]
fn rolling_updates_with_surge_make_the_new_pod_first() {
    let ds = daemon_set(
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}),
    );
    let ns = nodes(&["a", "b", "c"]);
    let old = |n: &str| daemon_pod(&format!("p{n}"), n, "old");
    let all_old: Vec<PodView> = ["a", "b", "c"].iter().map(|n| old(n)).collect();
    let d = run(&ds, &ns, &all_old);
    assert_eq!(created_on(&d), ["a"]);
    assert!(deleted(&d).is_empty());
    // The new pod is not available yet: the old one stays, nothing more is made.
    let mut step = all_old.clone();
    step.push(running(daemon_pod("na", "a", HASH)));
    let d = run(&ds, &ns, &step);
    assert!(d.manage.is_empty(), "{:?}", d.manage);
    // Available: the old pod of that node goes.
    step[3] = daemon_pod("na", "a", HASH);
    let d = run(&ds, &ns, &step);
    assert_eq!(deleted(&d), ["pa"]);
    // An old pod that is not available gets its new pod beside it at once, surge or not.
    let mut broken = all_old.clone();
    broken[1] = running(old("b"));
    broken.push(running(daemon_pod("na", "a", HASH)));
    let d = run(&ds, &ns, &broken);
    assert_eq!(created_on(&d), ["b"]);
}

#[test]
fn on_delete_replaces_only_deleted_pods() {
    let ds = daemon_set(
        json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
    );
    let ns = nodes(&["a", "b"]);
    let d = run(
        &ds,
        &ns,
        &[daemon_pod("pa", "a", "old"), daemon_pod("pb", "b", "old")],
    );
    assert!(d.manage.is_empty());
    assert_eq!(status(&d)["updatedNumberScheduled"], Value::Null);
    let d = run(&ds, &ns, &[daemon_pod("pa", "a", "old")]);
    assert_eq!(created_on(&d), ["b"]);
    assert_eq!(created(&d)[0]["metadata"]["labels"][HASH_LABEL], HASH);
}

fn revision(ds: &DaemonSet, image: &str, number: i64) -> ControllerRevision {
    let mut template = ds.spec.clone().unwrap_or_default().template;
    if let Some(spec) = template.spec.as_mut() {
        spec.containers[0].image = Some(image.into());
    }
    revisions::new_revision(
        Kind::DaemonSet,
        &ds.metadata,
        &Default::default(),
        revisions::template_patch(&template),
        number,
        None,
    )
}

#[test]
fn history_records_each_template_and_renumbers_rollbacks() {
    let ds = daemon_set(
        json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "v2",
        "kubectl.kubernetes.io/last-applied-configuration": "{}"}}}),
    );
    let daemon = Daemon::of(&ds).expect("a daemon");
    let one = revision(&ds, "v1", 1);
    let found = history(&daemon, &[&one]);
    let created = found.create.clone().expect("a new revision");
    assert_eq!(created.revision, 2);
    assert_eq!(
        found.hash,
        revisions::hash_label(&created).unwrap_or_default()
    );
    assert_eq!(
        created.metadata.name.as_deref(),
        Some(&*revisions::revision_name("agent", &found.hash))
    );
    assert_eq!(
        created
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .keys()
            .collect::<Vec<_>>(),
        ["kubernetes.io/change-cause"]
    );
    assert_eq!(found.old, vec![&one]);
    // The same template hashes the same, whatever the pass.
    assert_eq!(history(&daemon, &[&one]).hash, found.hash);
    // Back to a template of an old revision: that revision becomes the newest.
    let three = revision(&ds, "v3", 3);
    let current = history(&daemon, &[&one, &three, &created]).current.cloned();
    assert_eq!(current.as_ref().map(|r| r.revision), Some(2));
    assert_eq!(
        history(&daemon, &[&one, &three, &created]).renumber,
        Some(4)
    );
    // Someone else's revisions are not ours.
    let mut foreign = created.clone();
    foreign.metadata.owner_references = None;
    assert!(history(&daemon, &[&foreign]).create.is_some());
}

#[test]
fn history_beyond_the_limit_goes_unless_pods_run_it() {
    let ds = daemon_set(json!({"spec": {"revisionHistoryLimit": 1}}));
    let daemon = Daemon::of(&ds).expect("a daemon");
    let old: Vec<ControllerRevision> = (1..=4)
        .map(|n| revision(&ds, &format!("v{n}"), n))
        .collect();
    let old_refs: Vec<&ControllerRevision> = old.iter().collect();
    // A pod still runs revision 1.
    let live = revisions::hash_label(&old[0])
        .unwrap_or_default()
        .to_owned();
    let pods = [daemon_pod("pa", "a", &live)];
    let pod_refs: Vec<&PodView> = pods.iter().collect();
    let ns = nodes(&["a"]);
    let node_refs: Vec<&Node> = ns.iter().collect();
    let inputs = Inputs {
        nodes: &node_refs,
        pods: &pod_refs,
        old_revisions: &old_refs,
        may_manage: true,
        now: at(100),
        burst: 500,
    };
    let d = reconcile(&daemon, HASH, &inputs, &mut || "x".into());
    let gone: Vec<String> = d.truncate.iter().map(|t| t.name.clone()).collect();
    assert_eq!(
        gone,
        [&old[1], &old[2]]
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_unchanged_status_is_not_written() {
    let ds = daemon_set(
        json!({"status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1,
        "numberMisscheduled": 0, "numberReady": 1, "updatedNumberScheduled": 1,
        "numberAvailable": 1, "observedGeneration": 2}}),
    );
    let d = run(&ds, &nodes(&["a"]), &[daemon_pod("pa", "a", HASH)]);
    assert!(d.manage.is_empty());
    assert_eq!(d.status, None);
}

#[test]
fn unschedulable_daemon_pods_are_reported() {
    let ds = daemon_set(json!({}));
    let mut p = owned_by(
        labelled(pod("pa", 0), HASH_LABEL, HASH),
        "DaemonSet",
        "agent",
        "ds-uid",
    );
    if let Some(spec) = p.spec.as_mut() {
        super::placement::pin_to_node(&mut spec.affinity, "a");
    }
    p.status = serde_json::from_value(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}))
        .ok();
    let d = run(&ds, &nodes(&["a"]), &[p]);
    assert!(d.manage.is_empty());
    assert_eq!(
        d.notes
            .iter()
            .map(|n| (n.reason, n.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            "FailedPlacement",
            "failed to place pod on \"a\": 0/1 nodes are available: 1 Insufficient cpu."
        )]
    );
}
