//! End-to-end tests of the client verbs beyond apply/get/describe/delete: rollout, set image,
//! run, expose, label, annotate, edit, cordon, uncordon, drain, cluster-info, completion, and
//! get's jsonpath, custom columns, sorting and watch-only, through the real `minik` binary
//! against a real server and node agents (fake runtime). Every process is killed on failure.

mod support;

use std::time::Duration;

use expect_test::expect;
use minik_testkit::blocking::wait_for;
use minik_testkit::DEADLINE;
use support::client::{check, realign, Cluster, Out};

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    team: shop
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
";

/// Asserts a command failed with exactly this one line on stderr.
fn fails_with(out: &Out, line: &str) {
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, format!("{line}\n").as_str()),
        "stdout: {}",
        out.stdout
    );
}

/// Checks the lines of `rollout status`: progress lines in kubectl's words, then success.
fn rolled_out(out: &str, name: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some(format!("deployment {name:?} successfully rolled out").as_str()),
        "{out}"
    );
    for line in &lines[..lines.len() - 1] {
        assert!(
            *line == "Waiting for deployment spec update to be observed..."
                || line.starts_with(&format!(
                    "Waiting for deployment {name:?} rollout to finish: "
                )),
            "unexpected progress line {line:?} in\n{out}"
        );
    }
}

#[test]
fn rollout_status_history_undo_restart_pause_and_resume() {
    let c = Cluster::with_node("fake");
    c.apply("web.yaml", WEB);
    rolled_out(&c.ok(&["rollout", "status", "deploy/web"]), "web");
    let hash = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.labels.pod-template-hash}",
    ]);
    assert!(!hash.is_empty());
    let described = c
        .ok(&["describe", "deploy", "web"])
        .replace(&hash, "<hash>");
    check(
        &described,
        expect![[r#"
            Name:                   web
            Namespace:              default
            CreationTimestamp:      <time>
            Labels:                 team=shop
            Annotations:            deployment.kubernetes.io/revision: 1
            Selector:               app=web
            Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable
            StrategyType:           RollingUpdate
            MinReadySeconds:        0
            RollingUpdateStrategy:  25% max unavailable, 25% max surge
            Pod Template:
              Labels:  app=web
              Containers:
               web:
                Image:         nginx:1.25
                Port:          80/TCP
                Environment:   <none>
              Volumes:         <none>
              Node-Selectors:  <none>
              Tolerations:     <none>
            Conditions:
              Type           Status  Reason
              ----           ------  ------
              Available      True    MinimumReplicasAvailable
              Progressing    True    NewReplicaSetAvailable
            OldReplicaSets:  <none>
            NewReplicaSet:   web-<hash> (2/2 replicas created)
            Events:
              Type    Reason             Age   From                   Message
              ----    ------             ----  ----                   -------
              Normal  ScalingReplicaSet  <age> deployment-controller  Scaled up replica set web-<hash> to 2
        "#]],
    );

    // A new image is a new revision; its change-cause is what `history` lists.
    check(
        &c.ok(&["set", "image", "deployment/web", "web=nginx:1.26"]),
        expect![[r#"
            deployment.apps/web image updated
        "#]],
    );
    c.ok(&[
        "annotate",
        "deploy",
        "web",
        "kubernetes.io/change-cause=image 1.26",
    ]);
    rolled_out(
        &c.ok(&["rollout", "status", "deployment", "web", "--timeout", "60s"]),
        "web",
    );
    wait_for("revision 2 to carry its change-cause", DEADLINE, || {
        let out = c.ok(&["rollout", "history", "deploy/web"]);
        out.contains("image 1.26").then_some(())
    });
    check(
        &c.ok(&["rollout", "history", "deploy/web"]),
        expect![[r#"
            deployment.apps/web 
            REVISION  CHANGE-CAUSE
            1         <none>
            2         image 1.26

        "#]],
    );
    let revision_1 = c.ok(&["rollout", "history", "deploy/web", "--revision", "1"]);
    assert!(
        revision_1.starts_with("deployment.apps/web with revision #1\nPod Template:\n")
            && revision_1.contains("    Image:         nginx:1.25\n"),
        "{revision_1}"
    );

    // Undo goes back to revision 1's template, which becomes revision 3.
    check(
        &c.ok(&["rollout", "undo", "deploy/web"]),
        expect![[r#"
            deployment.apps/web rolled back
        "#]],
    );
    rolled_out(&c.ok(&["rollout", "status", "deploy/web"]), "web");
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.25"
    );
    check(
        &c.ok(&["rollout", "undo", "deploy/web", "--to-revision", "3"]),
        expect![[r#"
            deployment.apps/web skipped rollback (current template already matches revision 3)
        "#]],
    );
    fails_with(
        &c.minik(&["rollout", "undo", "deploy/web", "--to-revision", "9"]),
        "error: unable to find specified revision 9 in history",
    );

    // Paused: no undo, no restart, and pausing twice is an error, as kubectl.
    check(
        &c.ok(&["rollout", "pause", "deploy/web"]),
        expect![[r#"
            deployment.apps/web paused
        "#]],
    );
    assert_eq!(c.json(&["get", "deploy/web"])["spec"]["paused"], true);
    fails_with(
        &c.minik(&["rollout", "pause", "deploy/web"]),
        "error: deployments.apps \"web\" is already paused",
    );
    fails_with(
        &c.minik(&["rollout", "undo", "deploy/web"]),
        "error: you cannot rollback a paused deployment; resume it first with 'minik rollout resume' and try again",
    );
    fails_with(
        &c.minik(&["rollout", "restart", "deploy/web"]),
        "error: deployments.apps \"web\" can't restart paused deployment (run rollout resume first)",
    );
    check(
        &c.ok(&["rollout", "resume", "deploy/web"]),
        expect![[r#"
            deployment.apps/web resumed
        "#]],
    );
    fails_with(
        &c.minik(&["rollout", "resume", "deploy/web"]),
        "error: deployments.apps \"web\" is not paused",
    );

    // Restart stamps the template, which rolls every pod.
    check(
        &c.ok(&["rollout", "restart", "deploy/web"]),
        expect![[r#"
            deployment.apps/web restarted
        "#]],
    );
    let restarted = c.json(&["get", "deploy/web"]);
    let stamp = &restarted["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"];
    assert!(
        stamp.as_str().is_some_and(|s| s.ends_with('Z')),
        "{restarted}"
    );
    rolled_out(&c.ok(&["rollout", "status", "deploy/web"]), "web");
    assert!(c
        .ok(&["rollout", "history", "deploy/web"])
        .contains("\n4         <none>\n"));

    // Other kinds and missing objects.
    fails_with(
        &c.minik(&["rollout", "status", "rs/web"]),
        "error: no status viewer has been implemented for \"ReplicaSet\"",
    );
    fails_with(
        &c.minik(&["rollout", "history", "deploy/nope"]),
        "Error from server (NotFound): deployments.apps \"nope\" not found",
    );
    fails_with(
        &c.minik(&["rollout", "status", "deploy/web", "--timeout", "5x"]),
        "error: invalid --timeout: time: unknown unit \"x\" in duration \"5x\"",
    );
}

#[test]
fn rollout_status_fails_on_the_progress_deadline_and_on_timeout() {
    let c = Cluster::with_node("fake");
    // Pods that no node can take never become available.
    let stuck = WEB
        .replace("replicas: 2", "replicas: 1\n  progressDeadlineSeconds: 1")
        .replace(
            "    spec:\n      containers:",
            "    spec:\n      nodeSelector:\n        nowhere: \"true\"\n      containers:",
        );
    c.apply("stuck.yaml", &stuck);
    let out = c.minik(&["rollout", "status", "deploy/web", "--timeout", "60s"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: deployment \"web\" exceeded its progress deadline\n"
        ),
        "{}",
        out.stdout
    );
    let slow = stuck
        .replace("progressDeadlineSeconds: 1", "progressDeadlineSeconds: 600")
        .replace("name: web\n  labels", "name: slow\n  labels");
    c.apply("slow.yaml", &slow);
    let out = c.minik(&["rollout", "status", "deploy/slow", "--timeout", "1s"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error: timed out waiting for the condition\n")
    );
    // --watch=false prints the status once and returns.
    let out = c.minik(&["rollout", "status", "deploy/slow", "--watch=false"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

#[test]
fn run_create_expose_set_image_label_and_annotate() {
    let c = Cluster::new();
    check(
        &c.ok(&[
            "run",
            "one",
            "--image",
            "busybox:1.36",
            "--port",
            "8080",
            "--env",
            "MODE=test",
            "--labels",
            "app=one,tier=back",
            "--restart",
            "Never",
            "--command",
            "--",
            "sleep",
            "60",
        ]),
        expect![[r#"
            pod/one created
        "#]],
    );
    let pod = c.json(&["get", "pod", "one"]);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["name"], "one");
    assert_eq!(container["image"], "busybox:1.36");
    assert_eq!(container["command"], serde_json::json!(["sleep", "60"]));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["env"][0]["value"], "test");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    check(
        &c.ok(&[
            "run",
            "dry",
            "--image",
            "nginx",
            "--dry-run=client",
            "-o",
            "yaml",
            "--",
            "-g",
            "daemon off;",
        ]),
        expect![[r#"
            apiVersion: v1
            kind: Pod
            metadata:
              labels:
                run: dry
              name: dry
              namespace: default
            spec:
              containers:
              - args:
                - -g
                - daemon off;
                image: nginx
                name: dry
              restartPolicy: Always
        "#]],
    );
    fails_with(
        &c.minik(&["get", "pod", "dry"]),
        "Error from server (NotFound): pods \"dry\" not found",
    );
    fails_with(
        &c.minik(&["run", "x", "--image", "a", "--restart", "Sometimes"]),
        "error: invalid restart policy: Sometimes, valid values are: Always, OnFailure, Never",
    );
    fails_with(&c.minik(&["run", "x"]), "error: --image is required");

    // create KIND NAME: objects from flags.
    check(
        &c.ok(&["create", "namespace", "team"]),
        expect![[r#"
            namespace/team created
        "#]],
    );
    check(
        &c.ok(&[
            "create",
            "deploy",
            "api",
            "--image",
            "nginx:1.25",
            "--replicas",
            "0",
            "-n",
            "team",
        ]),
        expect![[r#"
            deployment.apps/api created
        "#]],
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "api",
            "-n",
            "team",
            "-o",
            "jsonpath={.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].name}"
        ]),
        "api nginx"
    );
    fails_with(
        &c.minik(&["create", "ns", "team"]),
        "Error from server (AlreadyExists): namespaces \"team\" already exists",
    );

    // expose: the Service selects what the workload selects, on the ports it declares.
    c.apply("web.yaml", WEB);
    check(
        &c.ok(&[
            "expose",
            "deploy/web",
            "--type",
            "NodePort",
            "--name",
            "front",
        ]),
        expect![[r#"
            service/front exposed
        "#]],
    );
    check(
        &c.ok(&[
            "get",
            "svc",
            "front",
            "-o",
            "jsonpath={.spec.type} {.spec.selector} {.spec.ports[0].port}->{.spec.ports[0].targetPort} {.metadata.labels.team}",
        ]),
        expect![[r#"
            NodePort {"app":"web"} 80->80 shop
        "#]],
    );
    c.ok(&[
        "expose",
        "pod",
        "one",
        "--port",
        "9000",
        "--target-port",
        "8080",
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "svc/one",
            "-o",
            "jsonpath={.spec.selector.app} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        ]),
        "one 9000 8080"
    );
    fails_with(
        &c.minik(&["expose", "pod", "one"]),
        "Error from server (AlreadyExists): services \"one\" already exists",
    );
    fails_with(
        &c.minik(&["expose", "ns", "default", "--port", "80"]),
        "error: cannot expose a Namespace",
    );

    // set image on a pod, and on a container that does not exist.
    check(
        &c.ok(&["set", "image", "pod/one", "one=busybox:1.37"]),
        expect![[r#"
            pod/one image updated
        "#]],
    );
    assert_eq!(
        c.ok(&[
            "get",
            "po",
            "one",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ]),
        "busybox:1.37"
    );
    fails_with(
        &c.minik(&["set", "image", "deploy/web", "nope=x"]),
        "error: unable to find container named \"nope\"",
    );

    // label and annotate: set, refuse to change without --overwrite, remove.
    check(
        &c.ok(&["label", "pods", "one", "env=prod"]),
        expect![[r#"
            pod/one labeled
        "#]],
    );
    fails_with(
        &c.minik(&["label", "pod/one", "env=dev"]),
        "error: 'env' already has a value (prod), and --overwrite is false",
    );
    check(
        &c.ok(&["label", "pod/one", "env=dev", "--overwrite"]),
        expect![[r#"
            pod/one labeled
        "#]],
    );
    check(
        &c.ok(&["label", "po", "one", "env-", "tier-"]),
        expect![[r#"
            pod/one unlabeled
        "#]],
    );
    assert_eq!(
        c.json(&["get", "pod", "one"])["metadata"]["labels"],
        serde_json::json!({"app": "one"})
    );
    fails_with(
        &c.minik(&["label", "pod", "one", "a=b=c"]),
        "error: invalid label spec: a=b=c",
    );
    check(
        &c.ok(&["annotate", "pod", "one", "note=first", "owner=me"]),
        expect![[r#"
            pod/one annotated
        "#]],
    );
    fails_with(
        &c.minik(&["annotate", "pod", "one", "note=second"]),
        "error: --overwrite is false but found the following declared annotation(s): 'note' already has a value (first)",
    );
    c.ok(&[
        "annotate",
        "pod",
        "one",
        "note=second",
        "--overwrite",
        "owner-",
    ]);
    let annotations = c.json(&["get", "pod", "one"])["metadata"]["annotations"].clone();
    assert_eq!(annotations, serde_json::json!({"note": "second"}));
    // A selector labels every match.
    c.ok(&["run", "two", "--image", "busybox", "--labels", "app=one"]);
    check(
        &c.ok(&["label", "pods", "-l", "app=one", "batch=1"]),
        expect![[r#"
            pod/one labeled
            pod/two labeled
        "#]],
    );
}

#[test]
fn edit_reopens_the_file_with_the_error_then_saves() {
    let c = Cluster::new();
    c.apply("web.yaml", &WEB.replace("replicas: 2", "replicas: 0"));
    // An editor that first saves an invalid value, then (seeing the error) a valid one.
    let script = c.write(
        "editor.sh",
        r#"#!/bin/sh
dir=$(dirname "$0")
n=$(cat "$dir/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$dir/count"
if [ "$n" = 1 ]; then
  sed -i 's/^  replicas: 0$/  replicas: -1/' "$1"
else
  cp "$1" "$dir/second-open.yaml"
  sed -i 's/^  replicas: -1$/  replicas: 3/' "$1"
fi
"#,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = c.minik_in(
        &["edit", "deploy/web"],
        None,
        &[("EDITOR", script.as_str())],
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            "deployment.apps/web edited\n",
            "error: deployments.apps \"web\" is invalid\n"
        )
    );
    let second = std::fs::read_to_string(c.home().join("second-open.yaml")).expect("read");
    let header: String = second
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    check(
        &header,
        expect![[r#"
            # Please edit the object below. Lines beginning with a '#' will be ignored,
            # and an empty file will abort the edit. If an error occurs while saving this file will be
            # reopened with the relevant failures.
            #
            # deployments.apps "web" was not valid:
            # * spec.replicas: Invalid value: -1: must be greater than or equal to 0
            #
        "#]],
    );
    assert_eq!(c.json(&["get", "deploy/web"])["spec"]["replicas"], 3);

    // Saving without a change, or with the name changed, changes nothing.
    let out = c.minik_in(&["edit", "deploy", "web"], None, &[("KUBE_EDITOR", "true")]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, "Edit cancelled, no changes made.\n")
    );
    let rename = "sed -i 's/^  name: web$/  name: other/'";
    let out = c.minik_in(&["edit", "deploy", "web"], None, &[("KUBE_EDITOR", rename)]);
    assert_eq!(out.code, 1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("A copy of your changes has been stored to \"")
            && lines[1] == "error: At least one of apiVersion, kind and name was changed",
        "{}",
        out.stderr
    );
    fails_with(
        &c.minik_in(&["edit", "deploy", "nope"], None, &[("EDITOR", "true")]),
        "Error from server (NotFound): deployments.apps \"nope\" not found",
    );
}

#[test]
fn cordon_uncordon_and_drain() {
    let c = Cluster::with_node("fake");
    c.apply("web.yaml", WEB);
    c.ok(&["run", "loner", "--image", "busybox"]);
    wait_for("three running pods", DEADLINE, || {
        let out = c.ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ]);
        (out.lines().count() == 3).then_some(())
    });
    check(
        &c.ok(&["cordon", "n1"]),
        expect![[r#"
            node/n1 cordoned
        "#]],
    );
    check(
        &c.ok(&["cordon", "n1"]),
        expect![[r#"
            node/n1 already cordoned
        "#]],
    );
    assert!(c
        .ok(&["get", "no", "n1"])
        .contains(" Ready,SchedulingDisabled "));
    check(
        &c.ok(&["uncordon", "no/n1"]),
        expect![[r#"
            node/n1 uncordoned
        "#]],
    );
    // A pod no controller owns stops the drain (it would not come back) ...
    let out = c.minik(&["drain", "n1"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "node/n1 cordoned\n");
    check(
        &out.stderr,
        expect![[r#"
            error: unable to drain node "n1" due to error: cannot delete Pods that declare no controller (use --force to override): default/loner, continuing command...
            There are pending nodes to be drained:
             n1
            error: cannot delete Pods that declare no controller (use --force to override): default/loner
        "#]],
    );
    assert_eq!(c.ok(&["get", "pods", "-o", "name"]).lines().count(), 3);
    // ... unless forced; the deployment's pods come back Pending, since the node is cordoned.
    let out = c.minik(&[
        "drain",
        "n1",
        "--force",
        "--grace-period",
        "0",
        "--timeout",
        "60s",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "Warning: deleting Pods that declare no controller: default/loner\n"
    );
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("node/n1 already cordoned"));
    assert_eq!(lines.last().copied(), Some("node/n1 drained"));
    lines.sort();
    // Evicted through pods/eviction, with kubectl's lines.
    assert!(
        lines.contains(&"evicting pod default/loner"),
        "{}",
        out.stdout
    );
    assert!(lines.contains(&"pod/loner evicted"), "{}", out.stdout);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("pod/web-") && l.ends_with(" evicted"))
            .count(),
        2,
        "{}",
        out.stdout
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("evicting pod default/web-"))
            .count(),
        2,
        "{}",
        out.stdout
    );
    wait_for("the deployment's new pods, unscheduled", DEADLINE, || {
        let out = c.ok(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}|{end}",
        ]);
        (out == "||").then_some(())
    });
    // --disable-eviction deletes instead, as kubectl's does.
    c.ok(&["uncordon", "n1"]);
    wait_for("the deployment's pods, running again", DEADLINE, || {
        let out = c.ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ]);
        (out.lines().count() == 2).then_some(())
    });
    let out = c.minik(&[
        "drain",
        "n1",
        "--disable-eviction",
        "--grace-period",
        "0",
        "--timeout",
        "60s",
    ]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(
        lines[1..3]
            .iter()
            .all(|l| l.starts_with("pod/web-") && l.ends_with(" deleted")),
        "{}",
        out.stdout
    );
    fails_with(
        &c.minik(&["drain", "nope"]),
        "Error from server (NotFound): nodes \"nope\" not found",
    );
}

#[test]
fn get_with_jsonpath_custom_columns_sort_by_all_and_watch_only() {
    let c = Cluster::with_node("fake");
    c.apply("web.yaml", WEB);
    c.ok(&["expose", "deploy", "web"]);
    // The fake runtime's container exits at once with code 1, again and again.
    c.ok(&[
        "run",
        "crash",
        "--image",
        "busybox",
        "--annotations",
        "minik.io/fake-run-seconds=0",
        "--annotations",
        "minik.io/fake-exit-code=1",
    ]);
    wait_for("the deployment's pods to run", DEADLINE, || {
        let out = c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ]);
        (out == "2").then_some(())
    });
    // The pods sorted by name, by custom columns and by JSONPath.
    let names = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--sort-by",
        ".metadata.name",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    ]);
    let mut sorted: Vec<&str> = names.lines().collect();
    assert_eq!(sorted.len(), 2, "{names}");
    sorted.sort();
    assert_eq!(names.lines().collect::<Vec<_>>(), sorted);
    let columns = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "custom-columns=NODE:.spec.nodeName,IMAGE:.spec.containers[*].image,READY:.status.conditions[?(@.type==\"Ready\")].status,MISSING:.spec.nothing",
    ]);
    check(
        &columns,
        expect![[r#"
            NODE   IMAGE        READY   MISSING
            n1     nginx:1.25   True    <none>
            n1     nginx:1.25   True    <none>
        "#]],
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.name}: {.spec.replicas}"
        ]),
        "web: 2"
    );
    fails_with(
        &c.minik(&["get", "pods", "-o", "jsonpath={.items[}"]),
        "error: error parsing jsonpath {.items[}: expected an index, a slice or a quoted key in [ ] at column 9 of \"{.items[}\"",
    );
    fails_with(
        &c.minik(&["get", "pods", "--sort-by", ".spec.nothing"]),
        "error: couldn't find any field with path \".spec.nothing\" in the list of objects",
    );
    fails_with(
        &c.minik(&["get", "pods", "-o", "custom-columns=NAME"]),
        "error: unexpected custom-columns spec: NAME, expected <header>:<json-path-expr>",
    );

    // STATUS shows what kubectl shows: a container that keeps failing, one that finished,
    // one that failed.
    for (name, code) in [("done", "0"), ("failed", "3")] {
        c.ok(&[
            "run",
            name,
            "--image",
            "busybox",
            "--restart",
            "Never",
            "--annotations",
            "minik.io/fake-run-seconds=0",
            "--annotations",
            &format!("minik.io/fake-exit-code={code}"),
        ]);
    }
    wait_for(
        "the crashing pod to back off",
        Duration::from_secs(60),
        || {
            let out = c.ok(&["get", "pod", "crash", "--no-headers"]);
            out.contains(" CrashLoopBackOff ").then_some(())
        },
    );
    wait_for("the finished pods' STATUS", Duration::from_secs(60), || {
        let out = c.ok(&[
            "get",
            "pods",
            "done",
            "failed",
            "-o",
            "custom-columns=S:.status.phase",
            "--no-headers",
        ]);
        (out == "Succeeded\nFailed\n").then_some(())
    });
    let table = c.ok(&["get", "pods", "done", "failed"]);
    let statuses: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(statuses, ["Completed", "Error"], "{table}");
    // Every short name kubectl users type is known.
    for short in [
        "po", "rs", "rc", "deploy", "svc", "ns", "no", "ep", "ev", "quota",
    ] {
        let out = c.minik(&["get", short, "-o", "name"]);
        assert_eq!(out.code, 0, "get {short}: {}", out.stderr);
    }

    // `all` prints every kind of the category, names prefixed with their kind.
    let cluster_ip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let all = c.ok(&["get", "all", "-l", "app=web", "-o", "name"]);
    let kinds: Vec<&str> = all
        .lines()
        .map(|l| l.split('/').next().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["pod", "pod", "replicaset.apps"], "{all}");
    let services = realign(
        &c.ok(&["get", "all", "--field-selector", "metadata.name=web"]),
        &cluster_ip,
        "<cluster-ip>",
    );
    check(
        &services,
        expect![[r#"
            NAME          TYPE        CLUSTER-IP     EXTERNAL-IP   PORT(S)   AGE
            service/web   ClusterIP   <cluster-ip>   <none>        80/TCP    <age>

            NAME                  READY   UP-TO-DATE   AVAILABLE   AGE
            deployment.apps/web   2/2     2            2           <age>
        "#]],
    );

    // --watch-only prints changes only: the new pod, not the ones already there.
    let (_killer, rx) = c.spawn_lines(&[
        "get",
        "pods",
        "--watch-only",
        "-o",
        "name",
        "-l",
        "watched=yes",
    ]);
    // A pod made before the watch has listed is not a change, so new pods are made until the
    // watch reports one; then a change to it is reported too.
    let mut made = 0;
    let first = wait_for("the watch to report a new pod", DEADLINE, || {
        made += 1;
        let name = format!("w{made}");
        c.ok(&[
            "run",
            &name,
            "--image",
            "busybox",
            "--labels",
            "watched=yes",
        ]);
        rx.recv_timeout(Duration::from_millis(500)).ok()
    });
    assert!(first.starts_with("pod/w"), "{first}");
    let name = first.trim_start_matches("pod/").to_owned();
    c.ok(&["label", "pod", &name, "more=1"]);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the watch to report the change");
        assert!(line.starts_with("pod/w"), "{line}");
        if line == first {
            break;
        }
    }
}

#[test]
fn cluster_info_and_completion() {
    let c = Cluster::with_node("fake");
    let info = c.ok(&["cluster-info"]).replace(&c.server.base, "<server>");
    check(
        &info,
        expect![[r#"
            minik control plane (v1.33.0-minik.0.1.0) is running at <server>
            Nodes: 1 (1 Ready)

            To further debug and diagnose cluster problems, use 'minik get nodes', 'minik describe node NAME' and 'minik get events -A'.
        "#]],
    );
    let bash = c.ok(&["completion", "bash"]);
    assert!(
        bash.contains("_minik()") && bash.contains("rollout"),
        "{bash}"
    );
    assert!(c.ok(&["completion", "zsh"]).starts_with("#compdef minik"));
    assert!(c.ok(&["completion", "fish"]).contains("complete -c minik"));
    let out = c.minik(&["completion", "powershell"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: Unsupported shell type \"powershell\": minik writes completions for bash, zsh and fish\n"
    );
}

#[test]
fn failures_are_one_line_each() {
    let c = Cluster::new();
    // Invalid, in kubectl's words.
    fails_with(
        &c.minik(&["run", "Bad", "--image", "x", "-n", "default"]),
        "The Pod \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'), spec.containers[0].name: Invalid value: \"Bad\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')]",
    );
    // Forbidden by a quota.
    c.apply("quota.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\nspec:\n  hard:\n    pods: \"1\"\n",);
    wait_for("the quota to count", DEADLINE, || {
        c.ok(&["get", "quota", "q", "-o", "jsonpath={.status.hard.pods}"])
            .eq("1")
            .then_some(())
    });
    c.ok(&["run", "a", "--image", "busybox"]);
    fails_with(
        &c.minik(&["run", "b", "--image", "busybox"]),
        "Error from server (Forbidden): pods \"b\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1",
    );
    // A conflict: a manifest that carries a stale resourceVersion.
    let mut pod = c.json(&["get", "pod", "a"]);
    pod["metadata"]["resourceVersion"] = serde_json::json!("1");
    pod["metadata"]["labels"]["run"] = serde_json::json!("changed");
    let stale = c.write("stale.json", &pod.to_string());
    fails_with(
        &c.minik(&["apply", "-f", &stale]),
        &format!("Error from server (Conflict): error when patching \"{stale}\": Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again"),
    );
    // Unknown kinds and names in both forms.
    fails_with(
        &c.minik(&["scale", "widget/x", "--replicas", "1"]),
        "error: the server doesn't have a resource type \"widget\"",
    );
    fails_with(
        &c.minik(&["label", "deploy", "ghost", "a=b"]),
        "Error from server (NotFound): deployments.apps \"ghost\" not found",
    );
    fails_with(
        &c.minik(&["logs", "ghost"]),
        "Error from server (NotFound): pods \"ghost\" not found",
    );
    // An unreachable server, for verbs old and new.
    for args in [
        &["rollout", "status", "deploy/web"][..],
        &["cordon", "n1"][..],
        &["logs", "-l", "app=x"][..],
        &["cluster-info"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--server", "http://127.0.0.1:1"]);
        fails_with(
            &c.minik(&all),
            "error: cannot reach the minik server at http://127.0.0.1:1 (connection refused): is 'minik server' or 'minik up' running?",
        );
    }
}

#[test]
fn logs_of_a_deployment_and_of_every_pod_a_selector_picks() {
    let c = Cluster::with_node("process");
    let talk = WEB
        .replace("name: web\n  labels", "name: talk\n  labels")
        .replace("app: web", "app: talk")
        .replace(
            "        image: nginx:1.25\n        ports:\n        - containerPort: 80\n",
            "        image: busybox\n        command: [sh, -c, 'echo hello from $POD_NAME; echo bye; sleep 60']\n",
        );
    c.apply("talk.yaml", &talk);
    let pods: Vec<String> = wait_for("both pods to have talked", Duration::from_secs(60), || {
        let names = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=talk",
            "-o",
            "name",
            "--sort-by",
            ".metadata.name",
        ]);
        let names: Vec<String> = names
            .lines()
            .map(|n| n.trim_start_matches("pod/").to_owned())
            .collect();
        let talked = names.len() == 2
            && names.iter().all(|n| {
                let out = c.minik(&["logs", n]);
                out.code == 0 && out.stdout.contains("bye")
            });
        talked.then_some(names)
    });
    // -l shows every pod's log (the last 10 lines of each), with --prefix saying whose.
    let out = c.ok(&["logs", "-l", "app=talk", "--prefix"]);
    let want: String = pods
        .iter()
        .map(|p| format!("[pod/{p}/web] hello from {p}\n[pod/{p}/web] bye\n"))
        .collect();
    assert_eq!(out, want);
    assert_eq!(
        c.ok(&["logs", "-l", "app=talk", "--tail", "1"]),
        "bye\nbye\n"
    );
    // deploy/NAME picks one pod and says so.
    let out = c.minik(&["logs", "deploy/talk", "--tail", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let chosen = out
        .stderr
        .strip_prefix("Found 2 pods, using pod/")
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(pods.contains(&chosen), "{chosen}");
    assert_eq!(out.stdout, format!("hello from {chosen}\nbye\n"));
    // -f with several pods follows all of them, whole lines at a time.
    let (_killer, rx) = c.spawn_lines(&["logs", "-f", "-l", "app=talk", "--prefix", "--tail", "1"]);
    let mut got: Vec<String> = (0..2)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(20))
                .expect("a followed line")
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = pods.iter().map(|p| format!("[pod/{p}/web] bye")).collect();
    want.sort();
    assert_eq!(got, want);
    // With no match, kubectl's words; a selector and a name together are refused.
    let out = c.minik(&["logs", "-l", "app=none"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "No resources found in default namespace.\n")
    );
    fails_with(
        &c.minik(&["logs", "x", "-l", "app=talk"]),
        "error: only a selector (-l) or a POD name is allowed, not both",
    );
    c.ok(&["delete", "deploy", "talk"]);
}
