//! End-to-end tests of the client verbs: the real `minik` binary as server, node agent (fake
//! runtime, or process runtime for logs) and client. Output people read is snapshotted with
//! ages, times and addresses normalised; every process started is killed, even on failure.

mod support;

use std::process::Command;
use std::time::Duration;

use expect_test::expect;
use minik_testkit::blocking::wait_for;
use minik_testkit::DEADLINE;
use support::client::{check, realign, Cluster};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
    tier: front
spec:
  nodeName: n1
  containers:
  - name: web
    image: nginx:1.25
";

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
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
";

#[test]
fn an_unreachable_server_is_one_line_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_minik"))
        .args(["get", "pods", "--server", "http://127.0.0.1:1"])
        .env("HOME", dir.path())
        .env_remove("MINIK_SERVER")
        .env_remove("MINIK_TOKEN")
        .output()
        .expect("run minik");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot reach the minik server at http://127.0.0.1:1 (connection refused): is 'minik server' or 'minik up' running?\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn server_and_namespace_come_from_flags_env_then_config_file() {
    let c = Cluster::new();
    std::fs::create_dir_all(c.home().join(".minik")).expect("mkdir");
    std::fs::write(
        c.home().join(".minik/config"),
        format!("server: {}\nnamespace: team\n", c.server.base),
    )
    .expect("write config");
    // No flag, no environment: the config file's server and namespace.
    let out = c.minik_in(&["get", "pods"], None, &[("MINIK_SERVER", "")]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, "No resources found in team namespace.\n")
    );
    // The environment wins over the file, the flag over the environment.
    let out = c.minik_in(&["get", "pods"], None, &[("MINIK_NAMESPACE", "envns")]);
    assert_eq!(out.stderr, "No resources found in envns namespace.\n");
    let out = c.minik_in(
        &["get", "pods", "-n", "flagns"],
        None,
        &[("MINIK_NAMESPACE", "envns")],
    );
    assert_eq!(out.stderr, "No resources found in flagns namespace.\n");
    let out = c.minik_in(
        &["get", "pods", "--server", &c.server.base],
        None,
        &[("MINIK_SERVER", "http://127.0.0.1:1")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A config file that is not YAML is a clear error.
    std::fs::write(c.home().join(".minik/config"), "server: [\n").expect("write config");
    let out = c.minik(&["get", "pods"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains(".minik/config"),
        "{}",
        out.stderr
    );
}

#[test]
fn apply_creates_then_is_unchanged_then_removes_what_the_file_dropped() {
    let c = Cluster::new();
    let file = c.write("app.yaml", &format!("{POD}---\n{DEPLOY}"));
    check(
        &c.ok(&["apply", "-f", &file]),
        expect![[r#"
            pod/web created
            deployment.apps/web created
        "#]],
    );
    let before = c.json(&["get", "pod", "web"]);
    check(
        &c.ok(&["apply", "-f", &file]),
        expect![[r#"
            pod/web unchanged
            deployment.apps/web unchanged
        "#]],
    );
    let after = c.json(&["get", "pod", "web"]);
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "an unchanged apply must not write"
    );
    assert!(
        after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // Dropping a label from the file removes it; a label someone else added stays.
    c.ok(&["scale", "deploy/web", "--replicas", "0"]);
    let edited = POD.replace("    tier: front\n", "");
    let file2 = c.write("app2.yaml", &edited);
    let pods_info = c.json(&["get", "pod", "web"]);
    let _ = pods_info;
    check(
        &c.ok(&["apply", "-f", &file2]),
        expect![[r#"
            pod/web configured
        "#]],
    );
    let pod = c.json(&["get", "pod", "web"]);
    assert_eq!(pod["metadata"]["labels"], serde_json::json!({"app": "web"}));
    // The deployment's replicas, changed by scale, are set back by re-applying its file.
    let deploy_file = c.write("deploy.yaml", &DEPLOY.replace("replicas: 0", "replicas: 2"));
    check(
        &c.ok(&["apply", "-f", &deploy_file]),
        expect![[r#"
            deployment.apps/web configured
        "#]],
    );
    assert_eq!(c.json(&["get", "deploy", "web"])["spec"]["replicas"], 2);

    // stdin, directories and List documents work too; create refuses what exists.
    let out = c.minik_in(&["apply", "-f", "-"], Some(&edited), &[]);
    assert_eq!(out.stdout, "pod/web unchanged\n", "{}", out.stderr);
    let out = c.minik(&["create", "-f", &file2]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!("Error from server (AlreadyExists): error when creating \"{file2}\": pods \"web\" already exists\n")
    );
    c.write("dir/a.yaml", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: web}\n  spec: {selector: {app: web}, ports: [{port: 80}]}\n");
    c.write(
        "dir/sub/b.json",
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}"#,
    );
    let dir = c.home().join("dir").display().to_string();
    assert_eq!(c.ok(&["apply", "-f", &dir]), "service/web created\n");
    assert_eq!(
        c.ok(&["apply", "-R", "-f", &dir]),
        "service/web unchanged\nnamespace/team created\n"
    );
    check(
        &c.ok(&["delete", "-R", "-f", &dir]),
        expect![[r#"
            service "web" deleted
            namespace "team" deleted
        "#]],
    );
}

/// Regression: `apply` diffed lists with a table of its own that lacked merge keys the server
/// has, so elements removed from the file stayed on the server.
#[test]
fn apply_removes_list_elements_the_file_dropped_as_kubectl_does() {
    let c = Cluster::new();
    let full = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: lists
  finalizers: [example.com/keep, example.com/drop]
spec:
  replicas: 0
  selector:
    matchLabels: {app: lists}
  template:
    metadata:
      labels: {app: lists}
    spec:
      tolerations:
      - {key: keep, operator: Exists}
      - {key: drop, operator: Exists}
      topologySpreadConstraints:
      - {topologyKey: zone, maxSkew: 1, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: lists}}}
      - {topologyKey: kubernetes.io/hostname, maxSkew: 1, whenUnsatisfiable: ScheduleAnyway}
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        - containerPort: 8443
";
    let file = c.write("lists.yaml", full);
    c.ok(&["apply", "-f", &file]);
    let trimmed = full
        .replace(", example.com/drop]", "]")
        .replace("      - {key: drop, operator: Exists}\n", "")
        .replace(
            "      - {topologyKey: kubernetes.io/hostname, maxSkew: 1, whenUnsatisfiable: ScheduleAnyway}\n",
            "",
        )
        .replace("        - containerPort: 8443\n", "");
    let file = c.write("lists.yaml", &trimmed);
    assert_eq!(
        c.ok(&["apply", "-f", &file]),
        "deployment.apps/lists configured\n"
    );
    let live = c.json(&["get", "deploy", "lists"]);
    let spec = &live["spec"]["template"]["spec"];
    assert_eq!(
        live["metadata"]["finalizers"],
        serde_json::json!(["example.com/keep"])
    );
    assert_eq!(
        spec["tolerations"],
        serde_json::json!([{"key": "keep", "operator": "Exists"}])
    );
    let topology: Vec<&str> = spec["topologySpreadConstraints"]
        .as_array()
        .expect("constraints")
        .iter()
        .filter_map(|t| t["topologyKey"].as_str())
        .collect();
    assert_eq!(topology, ["zone"]);
    let ports: Vec<i64> = spec["containers"][0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert_eq!(ports, [80]);
    assert_eq!(
        c.ok(&["apply", "-f", &file]),
        "deployment.apps/lists unchanged\n"
    );
}

#[test]
fn bad_manifests_fail_before_anything_is_sent() {
    let c = Cluster::new();
    let bad = DEPLOY.replace(
        "      containers:\n      - name: web\n        image: nginx:1.25\n",
        "      containers:\n        name: web\n",
    );
    c.write("examples/bad.yaml", &format!("{POD}---\n{bad}"));
    let out = c.minik(&["apply", "-f", "examples/bad.yaml"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: examples/bad.yaml: document 2: spec.template.spec.containers: invalid type: map, expected a sequence\n"
    );
    assert_eq!(out.stdout, "");
    let out = c.minik(&["get", "pod", "web"]);
    assert_eq!(
        out.stderr,
        "Error from server (NotFound): pods \"web\" not found\n"
    );
    assert_eq!(out.code, 1);

    c.write("typo.yaml", &POD.replace("image:", "imagee:"));
    let out = c.minik(&["apply", "-f", "typo.yaml"]);
    assert_eq!(
        out.stderr,
        "error: typo.yaml: document 1: unknown field \"spec.containers[0].imagee\"\n"
    );
    c.write("old.yaml", &DEPLOY.replace("apps/v1", "extensions/v1beta1"));
    let out = c.minik(&["apply", "-f", "old.yaml"]);
    assert!(
        out.stderr.starts_with("error: old.yaml: document 1: no kind \"Deployment\" is registered for version \"extensions/v1beta1\"; Deployment is served as apps/v1 (minik serves: "),
        "{}",
        out.stderr
    );
    let out = c.minik(&["apply", "-f", "missing.yaml"]);
    assert_eq!(
        out.stderr,
        "error: the path \"missing.yaml\" does not exist\n"
    );
    let out = c.minik(&["get", "widgets"]);
    assert_eq!(
        out.stderr,
        "error: the server doesn't have a resource type \"widgets\"\n"
    );
}

#[test]
fn get_prints_kubectl_tables_and_formats() {
    let c = Cluster::with_node("fake");
    let file = c.write("app.yaml", &format!("{POD}---\n{DEPLOY}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    nodePort: 30080\n"));
    c.ok(&["apply", "-f", &file]);
    wait_for("pod web to run", DEADLINE, || {
        c.ok(&["get", "po", "web"])
            .contains("Running")
            .then_some(())
    });
    check(
        &c.ok(&["get", "pods"]),
        expect![[r#"
            NAME   READY   STATUS    RESTARTS   AGE
            web    1/1     Running   0          <age>
        "#]],
    );
    check(
        &c.ok(&["get", "pods", "-o", "wide", "--show-labels"]),
        expect![[r#"
            NAME   READY   STATUS    RESTARTS   AGE   IP          NODE   NOMINATED NODE   READINESS GATES   LABELS
            web    1/1     Running   0          <age> 127.0.0.1   n1     <none>           <none>            app=web,tier=front
        "#]],
    );
    let svc = c.json(&["get", "svc", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!cluster_ip.is_empty(), "{svc}");
    let tables = realign(&c.ok(&["get", "deploy,svc"]), &cluster_ip, "<cluster-ip>");
    check(
        &tables,
        expect![[r#"
            NAME                  READY   UP-TO-DATE   AVAILABLE   AGE
            deployment.apps/web   0/0     0            0           <age>

            NAME                 TYPE        CLUSTER-IP     EXTERNAL-IP   PORT(S)        AGE
            service/kubernetes   ClusterIP   127.96.0.1     <none>        443/TCP        <age>
            service/web          NodePort    <cluster-ip>   <none>        80:30080/TCP   <age>
        "#]],
    );
    check(
        &c.ok(&["get", "no"]),
        expect![[r#"
            NAME   STATUS   ROLES    AGE   VERSION
            n1     Ready    <none>   <age> v1.33.0-minik.0.1.0
        "#]],
    );
    check(
        &c.ok(&["get", "pods,deploy", "-o", "name"]),
        expect![[r#"
            pod/web
            deployment.apps/web
        "#]],
    );
    // -l, --field-selector, -A, and the empty and not-found answers.
    assert_eq!(
        c.ok(&["get", "pods", "-l", "tier=front", "-o", "name"]),
        "pod/web\n"
    );
    let out = c.minik(&["get", "pods", "-l", "tier=back"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "No resources found in default namespace.\n")
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pods",
            "--field-selector",
            "spec.nodeName=n1",
            "-o",
            "name"
        ]),
        "pod/web\n"
    );
    assert!(c
        .ok(&["get", "pods", "-A"])
        .starts_with("NAMESPACE   NAME   READY"));
    let out = c.minik(&["get", "pod", "nope"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "Error from server (NotFound): pods \"nope\" not found\n")
    );
    // YAML and JSON read back as the object.
    let yaml = c.ok(&["get", "pod/web", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
        "{yaml}"
    );
    let list = c.json(&["get", "pods"]);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    check(
        &c.ok(&["get", "ns"]),
        expect![[r#"
            NAME              STATUS   AGE
            default           Active   <age>
            kube-node-lease   Active   <age>
            kube-public       Active   <age>
            kube-system       Active   <age>
        "#]],
    );
}

#[test]
fn describe_shows_a_pod_in_kubectls_layout() {
    let c = Cluster::with_node("fake");
    let file = c.write("pod.yaml", POD);
    c.ok(&["apply", "-f", &file]);
    wait_for("pod web to run", DEADLINE, || {
        c.ok(&["get", "po", "web"])
            .contains("Running")
            .then_some(())
    });
    let uid = c.json(&["get", "pod", "web"])["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let event = format!(
        "apiVersion: v1
kind: Event
metadata:
  name: web.1
involvedObject:
  kind: Pod
  name: web
  namespace: default
  uid: {uid}
reason: Pulled
message: Container image \"nginx:1.25\" already present on machine
type: Normal
count: 3
firstTimestamp: \"2020-01-01T00:00:00Z\"
lastTimestamp: \"2020-01-01T00:10:00Z\"
source:
  component: kubelet
"
    );
    let event_file = c.write("event.yaml", &event);
    c.ok(&["create", "-f", &event_file]);
    let text = c.ok(&["describe", "pod", "web"]);
    let events: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .collect();
    // The agent's own events (Pulled, Created, Started) come after the one made here, which
    // is the oldest.
    assert!(events.len() >= 4, "{text}");
    assert_eq!(
        events[1].split_whitespace().collect::<Vec<_>>(),
        ["Type", "Reason", "Age", "From", "Message"]
    );
    let row: Vec<&str> = events[3].split_whitespace().collect();
    assert_eq!(&row[..2], ["Normal", "Pulled"], "{text}");
    assert!(
        events[3].contains(" (x3 over ")
            && events[3]
                .ends_with("kubelet  Container image \"nginx:1.25\" already present on machine"),
        "{text}"
    );
    let events_at = text.find("Events:").unwrap_or(text.len());
    check(
        &text[..events_at],
        expect![[r#"
            Name:             web
            Namespace:        default
            Priority:         0
            Service Account:  default
            Node:             n1/127.0.0.1
            Start Time:       <time>
            Labels:           app=web
                              tier=front
            Annotations:      <none>
            Status:           Running
            IP:               127.0.0.1
            IPs:
              IP:  127.0.0.1
            Containers:
              web:
                Container ID:   <id>
                Image:          nginx:1.25
                State:          Running
                  Started:      <time>
                Ready:          True
                Restart Count:  0
                Environment:    <none>
            Conditions:
              Type                       Status
              PodReadyToStartContainers  True
              Initialized                True
              Ready                      True
              ContainersReady            True
              PodScheduled               True
            Node-Selectors:              <none>
            Tolerations:                 node.kubernetes.io/not-ready:NoExecute op=Exists for <age>
                                         node.kubernetes.io/unreachable:NoExecute op=Exists for <age>
        "#]],
    );
    let out = c.minik(&["describe", "pod", "nope"]);
    assert_eq!(
        out.stderr,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
}

#[test]
fn delete_scale_and_watch() {
    let c = Cluster::new();
    let file = c.write("app.yaml", &format!("{POD}---\n{DEPLOY}"));
    c.ok(&["apply", "-f", &file]);
    check(
        &c.ok(&["scale", "deployment", "web", "--replicas", "3"]),
        expect![[r#"
            deployment.apps/web scaled
        "#]],
    );
    assert_eq!(c.json(&["get", "deploy/web"])["spec"]["replicas"], 3);

    // A watch prints the existing pods, then each change.
    let (killer, rx) = c.spawn_lines(&["get", "pods", "-w", "-l", "tier=front", "-o", "name"]);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).ok().as_deref(),
        Some("pod/web")
    );
    c.ok(&["delete", "pod", "web", "--grace-period", "0"]);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).ok().as_deref(),
        Some("pod/web")
    );
    drop(killer);

    let out = c.minik(&["delete", "pod", "web"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "Error from server (NotFound): pods \"web\" not found\n")
    );
    check(
        &c.ok(&["delete", "deploy/web", "--cascade=orphan"]),
        expect![[r#"
            deployment.apps "web" deleted
        "#]],
    );
    let out = c.minik(&["delete", "pods", "--cascade=sideways", "--all"]);
    assert_eq!(out.stderr, "error: invalid cascade value (sideways). Must be \"background\", \"foreground\", or \"orphan\"\n");
}

#[test]
fn logs_of_a_pod_through_the_api() {
    let c = Cluster::with_node("process");
    let pod = "apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  nodeName: n1
  containers:
  - name: talker
    image: busybox
    command: [sh, -c, 'echo one; echo two; echo three; sleep 60']
";
    let file = c.write("talker.yaml", pod);
    c.ok(&["apply", "-f", &file]);
    let logs = wait_for("the pod's log", DEADLINE, || {
        let out = c.minik(&["logs", "talker"]);
        (out.code == 0 && out.stdout.contains("three")).then_some(out.stdout)
    });
    assert_eq!(logs, "one\ntwo\nthree\n");
    assert_eq!(c.ok(&["logs", "pod/talker", "--tail", "1"]), "three\n");
    let out = c.minik(&["logs", "talker", "-c", "nope"]);
    assert_eq!(
        out.stderr,
        "Error from server (BadRequest): container nope is not valid for pod talker\n"
    );
    let out = c.minik(&["logs", "ghost"]);
    assert_eq!(
        out.stderr,
        "Error from server (NotFound): pods \"ghost\" not found\n"
    );
    c.ok(&["delete", "pod", "talker", "--grace-period", "0"]);
}

#[test]
fn version_and_api_resources() {
    let c = Cluster::new();
    let version = c.ok(&["version"]);
    assert!(
        version.starts_with("Client Version: v0.1.0\nServer Version: v1.33"),
        "{version}"
    );
    check(
        &c.ok(&["api-resources"]),
        expect![[r#"
            NAME                     SHORTNAMES   APIVERSION               NAMESPACED   KIND
            namespaces               ns           v1                       false        Namespace
            nodes                    no           v1                       false        Node
            pods                     po           v1                       true         Pod
            replicationcontrollers   rc           v1                       true         ReplicationController
            services                 svc          v1                       true         Service
            endpoints                ep           v1                       true         Endpoints
            events                   ev           v1                       true         Event
            resourcequotas           quota        v1                       true         ResourceQuota
            configmaps               cm           v1                       true         ConfigMap
            secrets                               v1                       true         Secret
            serviceaccounts          sa           v1                       true         ServiceAccount
            persistentvolumes        pv           v1                       false        PersistentVolume
            persistentvolumeclaims   pvc          v1                       true         PersistentVolumeClaim
            deployments              deploy       apps/v1                  true         Deployment
            replicasets              rs           apps/v1                  true         ReplicaSet
            jobs                                  batch/v1                 true         Job
            cronjobs                 cj           batch/v1                 true         CronJob
            daemonsets               ds           apps/v1                  true         DaemonSet
            statefulsets             sts          apps/v1                  true         StatefulSet
            controllerrevisions                   apps/v1                  true         ControllerRevision
            poddisruptionbudgets     pdb          policy/v1                true         PodDisruptionBudget
            leases                                coordination.k8s.io/v1   true         Lease
            runtimeclasses                        node.k8s.io/v1           false        RuntimeClass
            storageclasses           sc           storage.k8s.io/v1        false        StorageClass
        "#]],
    );
}
