//! Table-driven tests of validation: each case changes one valid object, defaults it as the API
//! server would, and compares the rendered errors with Kubernetes' wording. A property test
//! feeds mangled objects to defaulting and validation to show neither ever panics.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    Endpoints, Event, Namespace, Node, Pod, ReplicationController, ResourceQuota, Service,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ErrorList;
use crate::{defaults, names};

/// RFC 7386 merge patch: objects merge, `null` deletes, anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn render(errs: ErrorList) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

/// Builds an object from `base` and `patch`, defaults it, and returns its rendered errors.
fn errors<T: DeserializeOwned>(
    base: &Value,
    patch: &Value,
    default: fn(&mut T),
    validate: fn(&T) -> ErrorList,
) -> Vec<String> {
    let mut v = base.clone();
    merge(&mut v, patch);
    let mut obj: T = serde_json::from_value(v).expect("test object must deserialize");
    default(&mut obj);
    render(validate(&obj))
}

/// Like [`errors`], for an update from the defaulted `base` to the defaulted, patched object.
fn update_errors<T: DeserializeOwned>(
    base: &Value,
    patch: &Value,
    default: fn(&mut T),
    validate: fn(&T, &T) -> ErrorList,
) -> Vec<String> {
    let mut old: T = serde_json::from_value(base.clone()).expect("old object");
    default(&mut old);
    let mut v = base.clone();
    merge(&mut v, patch);
    let mut new: T = serde_json::from_value(v).expect("new object");
    default(&mut new);
    render(validate(&new, &old))
}

/// What a case expects: exactly these errors, or at least these among others.
enum Want {
    Exactly(Vec<String>),
    Contains(Vec<String>),
}

fn exactly<S: Into<String>>(errs: impl IntoIterator<Item = S>) -> Want {
    Want::Exactly(errs.into_iter().map(Into::into).collect())
}

fn contains<S: Into<String>>(errs: impl IntoIterator<Item = S>) -> Want {
    Want::Contains(errs.into_iter().map(Into::into).collect())
}

fn ok() -> Want {
    Want::Exactly(Vec::new())
}

fn check(name: &str, got: Vec<String>, want: &Want) {
    match want {
        Want::Exactly(want) => assert_eq!(&got, want, "case {name:?}"),
        Want::Contains(want) => {
            for w in want {
                assert!(got.contains(w), "case {name:?}: missing {w:?} in {got:#?}");
            }
        }
    }
}

fn run_table<T: DeserializeOwned>(
    base: &Value,
    cases: Vec<(&str, Value, Want)>,
    default: fn(&mut T),
    validate: fn(&T) -> ErrorList,
) {
    for (name, patch, want) in cases {
        check(name, errors(base, &patch, default, validate), &want);
    }
}

fn run_update_table<T: DeserializeOwned>(
    base: &Value,
    cases: Vec<(&str, Value, Want)>,
    default: fn(&mut T),
    validate: fn(&T, &T) -> ErrorList,
) {
    for (name, patch, want) in cases {
        check(name, update_errors(base, &patch, default, validate), &want);
    }
}

fn first(problems: Vec<String>) -> String {
    problems.into_iter().next().expect("a syntax problem")
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

fn base_pod() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"name": "http", "containerPort": 80}]}]}
    })
}

/// A patch that replaces the pod's single container.
fn with_container(c: Value) -> Value {
    json!({"spec": {"containers": [c]}})
}

fn web(extra: Value) -> Value {
    let mut c = json!({"name": "web", "image": "nginx:1.25"});
    merge(&mut c, &extra);
    with_container(c)
}

#[test]
fn pod_metadata() {
    let subdomain_msg = first(names::dns1123_subdomain("Web"));
    let label_msg = first(names::label_value("-bad"));
    let big = "x".repeat(300 * 1024);
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("valid", json!({}), ok()),
            ("no name", json!({"metadata": {"name": null}}), exactly(["metadata.name: Required value: name or generateName is required"])),
            ("generateName only", json!({"metadata": {"name": null, "generateName": "web-"}}), ok()),
            ("bad generateName", json!({"metadata": {"name": null, "generateName": "Web-"}}), exactly([format!("metadata.generateName: Invalid value: \"Web-\": {}", first(names::dns1123_subdomain("Wea")))])),
            ("bad name", json!({"metadata": {"name": "Web"}}), exactly([format!("metadata.name: Invalid value: \"Web\": {subdomain_msg}")])),
            ("no namespace", json!({"metadata": {"namespace": null}}), exactly(["metadata.namespace: Required value"])),
            ("bad label value", json!({"metadata": {"labels": {"app": "-bad"}}}), exactly([format!("metadata.labels: Invalid value: \"-bad\": {label_msg}")])),
            ("bad annotation key", json!({"metadata": {"annotations": {"a b": "x"}}}), contains(["metadata.annotations: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"])),
            ("upper-case annotation key", json!({"metadata": {"annotations": {"Example.COM/Key": "x"}}}), ok()),
            ("annotations too large", json!({"metadata": {"annotations": {"big": big}}}), exactly(["metadata.annotations: Too long: may not be more than 262144 bytes"])),
            ("negative generation", json!({"metadata": {"generation": -1}}), exactly(["metadata.generation: Invalid value: -1: must be greater than or equal to 0"])),
            ("owner reference fields", json!({"metadata": {"ownerReferences": [{"apiVersion": "", "kind": "", "name": "", "uid": ""}]}}), exactly([
                "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
                "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
            ])),
            ("unqualified finalizer", json!({"metadata": {"finalizers": ["cleanup"]}}), exactly(["metadata.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified"])),
            ("qualified finalizer", json!({"metadata": {"finalizers": ["example.com/cleanup", "foregroundDeletion"]}}), ok()),
        ],
        defaults::pod,
        super::pod,
    );
    let errs = errors::<Pod>(
        &base_pod(),
        &json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
        ]}}),
        defaults::pod,
        super::pod,
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("metadata.ownerReferences: Invalid value: [{"),
        "{errs:?}"
    );
    assert!(errs[0].ends_with(": Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"), "{errs:?}");
}

#[test]
fn pod_containers() {
    let label_msg = first(names::dns1123_label("Web_1"));
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("no containers", json!({"spec": {"containers": []}}), exactly(["spec.containers: Required value"])),
            ("no image or command", with_container(json!({"name": "web"})), exactly(["spec.containers[0].image: Required value: an image or a command is required"])),
            ("command without image", with_container(json!({"name": "web", "command": ["sleep", "3600"]})), ok()),
            ("empty command is no command", with_container(json!({"name": "web", "command": []})), exactly(["spec.containers[0].image: Required value: an image or a command is required"])),
            ("image with spaces", web(json!({"image": " nginx"})), exactly(["spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace"])),
            ("no container name", web(json!({"name": ""})), exactly(["spec.containers[0].name: Required value"])),
            ("bad container name", web(json!({"name": "Web_1"})), exactly([format!("spec.containers[0].name: Invalid value: \"Web_1\": {label_msg}")])),
            ("duplicate names", json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "a", "image": "x:1"}]}}), exactly(["spec.containers[1].name: Duplicate value: \"a\""])),
            ("init container shares a name", json!({"spec": {"initContainers": [{"name": "web", "image": "busybox:1"}]}}), exactly(["spec.initContainers[0].name: Duplicate value: \"web\""])),
            ("init container probes", json!({"spec": {"initContainers": [{"name": "init", "image": "busybox:1", "readinessProbe": {"exec": {"command": ["true"]}}}]}}), exactly(["spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"])),
            ("sidecar probes allowed", json!({"spec": {"initContainers": [{"name": "side", "image": "busybox:1", "restartPolicy": "Always", "readinessProbe": {"exec": {"command": ["true"]}}}]}}), ok()),
            ("restart policy on container", web(json!({"restartPolicy": "Always"})), exactly(["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"])),
            ("pull policy", web(json!({"imagePullPolicy": "Sometimes"})), exactly(["spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\""])),
            ("termination message policy", web(json!({"terminationMessagePolicy": "Loud"})), exactly(["spec.containers[0].terminationMessagePolicy: Unsupported value: \"Loud\": supported values: \"File\", \"FallbackToLogsOnError\""])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_ports() {
    let iana = names::iana_svc_name("HTTP");
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("container port missing", web(json!({"ports": [{"containerPort": 0}]})), exactly(["spec.containers[0].ports[0].containerPort: Required value"])),
            ("container port too big", web(json!({"ports": [{"containerPort": 70000}]})), exactly(["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"])),
            ("negative container port", web(json!({"ports": [{"containerPort": -1}]})), exactly(["spec.containers[0].ports[0].containerPort: Invalid value: -1: must be between 1 and 65535, inclusive"])),
            ("host port out of range", web(json!({"ports": [{"containerPort": 80, "hostPort": 65536}]})), exactly(["spec.containers[0].ports[0].hostPort: Invalid value: 65536: must be between 1 and 65535, inclusive"])),
            ("protocol", web(json!({"ports": [{"containerPort": 80, "protocol": "HTTP"}]})), exactly(["spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""])),
            ("port name syntax", web(json!({"ports": [{"containerPort": 80, "name": "HTTP"}]})), exactly(iana.iter().map(|m| format!("spec.containers[0].ports[0].name: Invalid value: \"HTTP\": {m}")))),
            ("port name twice in a container", web(json!({"ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]})), exactly(["spec.containers[0].ports[1].name: Duplicate value: \"http\""])),
            ("port name twice in a pod", json!({"spec": {"containers": [
                {"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "b", "image": "x:1", "ports": [{"containerPort": 81, "name": "http"}]}
            ]}}), exactly(["spec.containers[1].ports[0].name: Duplicate value: \"http\""])),
            ("host port twice", json!({"spec": {"containers": [
                {"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                {"name": "b", "image": "x:1", "ports": [{"containerPort": 81, "hostPort": 8080}]}
            ]}}), exactly(["spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\""])),
            ("host network needs matching host port", json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 81}]}]}}), exactly(["spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true"])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_env() {
    let env = |e: Value| web(json!({"env": [e]}));
    let from = |v: Value| env(json!({"name": "X", "valueFrom": v}));
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("plain value", env(json!({"name": "GREETING", "value": "hi"})), ok()),
            ("no name", env(json!({"name": "", "value": "x"})), exactly(["spec.containers[0].env[0].name: Required value"])),
            ("name with =", env(json!({"name": "A=B"})), exactly(["spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"])),
            ("pod name", from(json!({"fieldRef": {"fieldPath": "metadata.name"}})), ok()),
            ("pod IPs", from(json!({"fieldRef": {"fieldPath": "status.podIPs"}})), ok()),
            ("one label", from(json!({"fieldRef": {"fieldPath": "metadata.labels['app']"}})), ok()),
            ("bad label key", from(json!({"fieldRef": {"fieldPath": "metadata.labels['a/b/c']"}})), contains(["spec.containers[0].env[0].valueFrom.fieldRef: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"])),
            ("all labels not for env", from(json!({"fieldRef": {"fieldPath": "metadata.labels"}})), exactly(["spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\""])),
            ("restart policy not for env", from(json!({"fieldRef": {"fieldPath": "spec.restartPolicy"}})), contains(["spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.restartPolicy\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\""])),
            ("unknown field", from(json!({"fieldRef": {"fieldPath": "spec.favouriteColour"}})), exactly(["spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: \"spec.favouriteColour\": error converting fieldPath: field label not supported: spec.favouriteColour"])),
            ("wrong api version", from(json!({"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}})), exactly(["spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: \"metadata.name\": error converting fieldPath: unsupported pod version: v2"])),
            ("no source", from(json!({})), exactly(["spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"])),
            ("two sources", from(json!({"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}})), exactly(["spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"])),
            ("value and source", env(json!({"name": "X", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})), exactly(["spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"])),
            ("resource field", from(json!({"resourceFieldRef": {"resource": "limits.gpu"}})), exactly(["spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\", \"limits.memory\", \"requests.cpu\", \"requests.ephemeral-storage\", \"requests.memory\""])),
            ("secret key required", from(json!({"secretKeyRef": {"name": "s", "key": ""}})), exactly(["spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value"])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_resources() {
    let res = |r: Value| web(json!({"resources": r}));
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("requests within limits", res(json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})), ok()),
            ("request above limit", res(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})), exactly(["spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"])),
            ("memory request above limit", res(json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}})), exactly(["spec.containers[0].resources.requests: Invalid value: \"1Gi\": must be less than or equal to memory limit of 512Mi"])),
            // The request copied from the limit is just as wrong.
            ("unparsable", res(json!({"limits": {"cpu": "lots"}})), exactly([
                "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ])),
            ("negative", res(json!({"requests": {"memory": "-1"}})), exactly(["spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0"])),
            ("unknown resource", res(json!({"requests": {"gpu": "1"}})), exactly([
                "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
                "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
            ])),
            ("quota name in a container", res(json!({"requests": {"requests.cpu": "1"}})), exactly(["spec.containers[0].resources.requests[requests.cpu]: Invalid value: \"requests.cpu\": must be a standard resource for containers"])),
            ("extended resource", res(json!({"limits": {"example.com/gpu": "1"}})), ok()),
            ("extended without limit", res(json!({"requests": {"example.com/gpu": "1"}})), exactly(["spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"])),
            ("extended request below limit", res(json!({"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}})), exactly(["spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2"])),
            ("fractional extended", res(json!({"limits": {"example.com/gpu": "500m"}})), exactly([
                "spec.containers[0].resources.limits[example.com/gpu]: Invalid value: \"500m\": must be an integer",
                "spec.containers[0].resources.requests[example.com/gpu]: Invalid value: \"500m\": must be an integer",
            ])),
            ("hugepages alone", res(json!({"limits": {"hugepages-2Mi": "2Mi"}})), exactly(["spec.containers[0].resources: Forbidden: HugePages require cpu or memory"])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_probes_and_hooks() {
    let probe = |kind: &str, p: Value| web(json!({ kind: p }));
    let http_port = names::iana_svc_name("HTTP_1");
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("http probe", probe("livenessProbe", json!({"httpGet": {"port": 80}})), ok()),
            ("named port probe", probe("readinessProbe", json!({"tcpSocket": {"port": "http"}})), ok()),
            ("no handler", probe("livenessProbe", json!({"periodSeconds": 5})), exactly(["spec.containers[0].livenessProbe: Required value: must specify a handler type"])),
            ("two handlers", probe("livenessProbe", json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}})), exactly(["spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"])),
            ("exec without command", probe("startupProbe", json!({"exec": {}})), exactly(["spec.containers[0].startupProbe.exec.command: Required value"])),
            ("negative period", probe("readinessProbe", json!({"exec": {"command": ["true"]}, "periodSeconds": -1})), exactly(["spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0"])),
            ("negative delay", probe("readinessProbe", json!({"exec": {"command": ["true"]}, "initialDelaySeconds": -5})), exactly(["spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -5: must be greater than or equal to 0"])),
            ("liveness success threshold", probe("livenessProbe", json!({"exec": {"command": ["true"]}, "successThreshold": 2})), exactly(["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"])),
            ("readiness success threshold", probe("readinessProbe", json!({"exec": {"command": ["true"]}, "successThreshold": 2})), ok()),
            ("http port zero", probe("livenessProbe", json!({"httpGet": {"port": 0}})), exactly(["spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"])),
            ("http port bad name", probe("livenessProbe", json!({"httpGet": {"port": "HTTP_1"}})), exactly(http_port.iter().map(|m| format!("spec.containers[0].livenessProbe.httpGet.port: Invalid value: \"HTTP_1\": {m}")))),
            ("http scheme", probe("livenessProbe", json!({"httpGet": {"port": 80, "scheme": "FTP"}})), exactly(["spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\""])),
            ("readiness grace period", probe("readinessProbe", json!({"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 5})), exactly(["spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes"])),
            ("hook without handler", web(json!({"lifecycle": {"preStop": {}}})), exactly(["spec.containers[0].lifecycle.preStop: Required value: must specify a handler type"])),
            ("sleep longer than grace", web(json!({"lifecycle": {"preStop": {"sleep": {"seconds": 60}}}})), exactly(["spec.containers[0].lifecycle.preStop.sleep: Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)"])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_spec_fields() {
    let spec = |s: Value| json!({ "spec": s });
    let node_term = |expr: Value| {
        spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}}}),
        )
    };
    let expr_path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]";
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("restart policy", spec(json!({"restartPolicy": "Sometimes"})), exactly(["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""])),
            ("restart never", spec(json!({"restartPolicy": "Never"})), ok()),
            ("dns policy", spec(json!({"dnsPolicy": "Google"})), exactly(["spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""])),
            ("dns none needs config", spec(json!({"dnsPolicy": "None"})), exactly(["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"])),
            ("negative grace period", spec(json!({"terminationGracePeriodSeconds": -1})), exactly(["spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"])),
            ("zero grace period", spec(json!({"terminationGracePeriodSeconds": 0})), ok()),
            ("deadline", spec(json!({"activeDeadlineSeconds": 0})), exactly(["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"])),
            ("node selector key", spec(json!({"nodeSelector": {"a/b/c": "x"}})), contains(["spec.nodeSelector: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"])),
            ("node name", spec(json!({"nodeName": "Node_1"})), exactly([format!("spec.nodeName: Invalid value: \"Node_1\": {}", first(names::dns1123_subdomain("Node_1")))])),
            ("affinity operator", node_term(json!({"key": "zone", "operator": "Like", "values": ["a"]})), exactly([format!("{expr_path}.operator: Invalid value: \"Like\": not a valid selector operator")])),
            ("affinity In needs values", node_term(json!({"key": "zone", "operator": "In"})), exactly([format!("{expr_path}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'")])),
            ("affinity Exists takes no values", node_term(json!({"key": "zone", "operator": "Exists", "values": ["a"]})), exactly([format!("{expr_path}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")])),
            ("affinity Gt needs one value", node_term(json!({"key": "cores", "operator": "Gt", "values": ["1", "2"]})), exactly([format!("{expr_path}.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'")])),
            ("affinity valid", node_term(json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]})), ok()),
            ("affinity without terms", spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}})), exactly(["spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term"])),
            ("preferred weight", spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]}}})), exactly(["spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100"])),
            ("pod affinity topology key", spec(json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ""}]}}})), contains(["spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty"])),
            ("volume mount of unknown volume", web(json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]})), exactly(["spec.containers[0].volumeMounts[0].name: Invalid value: \"data\": must match the name of a volume in `spec.volumes`"])),
            ("volume mount", json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}], "containers": [{"name": "web", "image": "nginx:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}), ok()),
            ("volume with two sources", spec(json!({"volumes": [{"name": "data", "emptyDir": {}, "hostPath": {"path": "/tmp"}}]})), exactly(["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"])),
            ("duplicate volume", spec(json!({"volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]})), exactly(["spec.volumes[1].name: Duplicate value: \"data\""])),
            ("ephemeral containers on create", spec(json!({"ephemeralContainers": [{"name": "debug", "image": "busybox:1"}]})), contains(["spec.ephemeralContainers: Forbidden: cannot be set on create"])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_tolerations() {
    let tol = |t: Value| json!({"spec": {"tolerations": [t]}});
    run_table::<Pod>(
        &base_pod(),
        vec![
            ("equal", tol(json!({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"})), ok()),
            ("tolerate everything", tol(json!({"operator": "Exists"})), ok()),
            ("exists with value", tol(json!({"key": "dedicated", "operator": "Exists", "value": "db"})), exactly(["spec.tolerations[0].operator: Invalid value: \"db\": value must be empty when `operator` is 'Exists'"])),
            ("empty key needs exists", tol(json!({"operator": "Equal", "value": "x"})), exactly(["spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""])),
            ("unknown operator", tol(json!({"key": "k", "operator": "Like"})), exactly(["spec.tolerations[0].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\""])),
            ("unknown effect", tol(json!({"key": "k", "operator": "Exists", "effect": "NoRun"})), exactly(["spec.tolerations[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""])),
            ("seconds need NoExecute", tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 10})), exactly(["spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"])),
        ],
        defaults::pod,
        super::pod,
    );
}

#[test]
fn pod_updates() {
    let forbidden_prefix = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n";
    let base = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "5"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}], "activeDeadlineSeconds": 100}
    });
    run_update_table::<Pod>(
        &base,
        vec![
            ("nothing", json!({}), ok()),
            ("image", web(json!({"image": "nginx:1.26"})), ok()),
            ("labels", json!({"metadata": {"labels": {"tier": "front"}}}), ok()),
            ("uid left out", json!({"metadata": {"uid": null}}), ok()),
            ("shorter deadline", json!({"spec": {"activeDeadlineSeconds": 50}}), ok()),
            ("longer deadline", json!({"spec": {"activeDeadlineSeconds": 200}}), exactly(["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"])),
            ("deadline removed", json!({"spec": {"activeDeadlineSeconds": null}}), exactly(["spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"])),
            ("added toleration", json!({"spec": {"tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "dedicated", "operator": "Exists"}
            ]}}), ok()),
            ("name", json!({"metadata": {"name": "other"}}), exactly(["metadata.name: Invalid value: \"other\": field is immutable"])),
            ("namespace", json!({"metadata": {"namespace": "prod"}}), exactly(["metadata.namespace: Invalid value: \"prod\": field is immutable"])),
            ("uid", json!({"metadata": {"uid": "u-2"}}), exactly(["metadata.uid: Invalid value: \"u-2\": field is immutable"])),
            ("added container", json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "x:1"}]}}), exactly(["spec.containers: Forbidden: pod updates may not add or remove containers"])),
        ],
        defaults::pod,
        super::pod_update,
    );

    let errs = update_errors::<Pod>(
        &base,
        &web(json!({"command": ["sleep", "1"]})),
        defaults::pod,
        super::pod_update,
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with(forbidden_prefix), "{errs:#?}");
    assert!(
        errs[0].contains("spec.containers[0].command: null -> [\"sleep\",\"1\"]"),
        "{errs:#?}"
    );

    let errs = update_errors::<Pod>(
        &base,
        &json!({"spec": {"tolerations": []}}),
        defaults::pod,
        super::pod_update,
    );
    // Defaulting puts the not-ready/unreachable tolerations back, so this is no change.
    assert_eq!(errs, Vec::<String>::new());
    let errs = update_errors::<Pod>(
        &base,
        &json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}, {"key": "node.kubernetes.io/unreachable", "operator": "Equal", "effect": "NoExecute"}]}}),
        defaults::pod,
        super::pod_update,
    );
    assert_eq!(errs, vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".to_owned()]);
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn base_deployment() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}
            }
        }
    })
}

#[test]
fn deployments() {
    let strategy =
        |ru: Value| json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": ru}}});
    let percent_msg = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
    run_table::<Deployment>(
        &base_deployment(),
        vec![
            ("valid", json!({}), ok()),
            ("negative replicas", json!({"spec": {"replicas": -1}}), exactly(["spec.replicas: Invalid value: -1: must be greater than or equal to 0"])),
            ("zero replicas", json!({"spec": {"replicas": 0}}), ok()),
            ("selector does not match", json!({"spec": {"template": {"metadata": {"labels": {"app": "other"}}}}}), exactly(["spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"])),
            ("no selector", json!({"spec": {"selector": null}}), exactly(["spec.selector: Required value"])),
            ("empty selector", json!({"spec": {"selector": {"matchLabels": {"app": null}}}}), exactly(["spec.selector: Invalid value: {\"matchLabels\":{}}: empty selector is invalid for deployment"])),
            ("container error path", json!({"spec": {"template": {"spec": {"containers": [{"name": "web"}]}}}}), exactly(["spec.template.spec.containers[0].image: Required value: an image or a command is required"])),
            ("template label syntax", json!({"spec": {"template": {"metadata": {"labels": {"app": "web", "tier": "-x"}}}}}), exactly([format!("spec.template.labels: Invalid value: \"-x\": {}", first(names::label_value("-x")))])),
            ("restart never", json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}), exactly(["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""])),
            ("deadline", json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 10}}}}), exactly(["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"])),
            ("both zero", strategy(json!({"maxSurge": 0, "maxUnavailable": 0})), exactly(["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"])),
            ("both zero percent", strategy(json!({"maxSurge": "0%", "maxUnavailable": 0})), exactly(["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"])),
            ("surge only", strategy(json!({"maxSurge": 1, "maxUnavailable": 0})), ok()),
            ("bad percent", strategy(json!({"maxSurge": "20Percent"})), exactly([format!("spec.strategy.rollingUpdate.maxSurge: Invalid value: \"20Percent\": {percent_msg}")])),
            ("over 100%", strategy(json!({"maxUnavailable": "110%"})), exactly(["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"110%\": must not be greater than 100%"])),
            ("negative surge", strategy(json!({"maxSurge": -1})), exactly(["spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0"])),
            ("recreate with rolling update", json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}}), exactly(["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"])),
            ("recreate", json!({"spec": {"strategy": {"type": "Recreate"}}}), ok()),
            ("unknown strategy", json!({"spec": {"strategy": {"type": "BlueGreen"}}}), exactly(["spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""])),
            ("negative min ready", json!({"spec": {"minReadySeconds": -1}}), exactly(["spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"])),
            ("deadline before ready", json!({"spec": {"minReadySeconds": 10, "progressDeadlineSeconds": 5}}), exactly(["spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"])),
            ("negative history", json!({"spec": {"revisionHistoryLimit": -1}}), exactly(["spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"])),
        ],
        defaults::deployment,
        super::deployment,
    );
    run_update_table::<Deployment>(
        &base_deployment(),
        vec![
            ("scale", json!({"spec": {"replicas": 5}}), ok()),
            ("new image", json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}), ok()),
            ("selector", json!({"spec": {"selector": {"matchLabels": {"app": "web", "v": "2"}}, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}}), exactly(["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"])),
        ],
        defaults::deployment,
        super::deployment_update,
    );
}

#[test]
fn replica_sets_and_controllers() {
    run_table::<ReplicaSet>(
        &base_deployment(),
        vec![
            ("valid", json!({}), ok()),
            ("negative replicas", json!({"spec": {"replicas": -3}}), exactly(["spec.replicas: Invalid value: -3: must be greater than or equal to 0"])),
            ("selector does not match", json!({"spec": {"template": {"metadata": {"labels": {"app": "db"}}}}}), exactly(["spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"])),
            ("on failure", json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}}), exactly(["spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""])),
        ],
        defaults::replica_set,
        super::replica_set,
    );
    run_update_table::<ReplicaSet>(
        &base_deployment(),
        vec![
            ("scale", json!({"spec": {"replicas": 3}}), ok()),
            ("selector", json!({"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}}}}), exactly(["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"x\"}}: field is immutable"])),
        ],
        defaults::replica_set,
        super::replica_set_update,
    );

    let rc = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
    });
    run_table::<ReplicationController>(
        &rc,
        vec![
            ("selector from template labels", json!({}), ok()),
            ("no selector, no labels", json!({"spec": {"template": {"metadata": null}}}), exactly(["spec.selector: Required value"])),
            ("selector does not match", json!({"spec": {"selector": {"app": "db"}}}), exactly(["spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"])),
            ("no template", json!({"spec": {"selector": {"app": "web"}, "template": null}}), exactly(["spec.template: Required value"])),
            ("deadline", json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}}), exactly(["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicationController is not Supported"])),
            ("negative replicas", json!({"spec": {"replicas": -1}}), exactly(["spec.replicas: Invalid value: -1: must be greater than or equal to 0"])),
        ],
        defaults::replication_controller,
        super::replication_controller,
    );
    run_update_table::<ReplicationController>(
        &rc,
        vec![(
            "selector may change",
            json!({"spec": {"selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}}),
            ok(),
        )],
        defaults::replication_controller,
        super::replication_controller_update,
    );
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------------------------

fn base_service() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
    })
}

#[test]
fn services() {
    let ports = |p: Value| json!({"spec": {"ports": p}});
    let iana = names::iana_svc_name("HTTP_X");
    run_table::<Service>(
        &base_service(),
        vec![
            ("valid", json!({}), ok()),
            ("bad name", json!({"metadata": {"name": "1web"}}), exactly([format!("metadata.name: Invalid value: \"1web\": {}", first(names::dns1035_label("1web")))])),
            ("no ports", ports(json!([])), exactly(["spec.ports: Required value"])),
            ("headless without ports", json!({"spec": {"clusterIP": "None", "ports": []}}), ok()),
            ("external name", json!({"spec": {"type": "ExternalName", "externalName": "db.example.com.", "ports": null, "selector": null}}), ok()),
            ("external name required", json!({"spec": {"type": "ExternalName", "ports": null}}), exactly(["spec.externalName: Required value"])),
            // `targetPort` defaults to `port`, so it is wrong too.
            ("port zero", ports(json!([{"port": 0}])), exactly(["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive", "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"])),
            ("names required", ports(json!([{"port": 80}, {"port": 443}])), exactly(["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"])),
            ("names unique", ports(json!([{"name": "web", "port": 80}, {"name": "web", "port": 443}])), exactly(["spec.ports[1].name: Duplicate value: \"web\""])),
            ("same port twice", ports(json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}])), exactly(["spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"])),
            ("same port, other protocol", ports(json!([{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"}])), ok()),
            ("target port name", ports(json!([{"port": 80, "targetPort": "HTTP_X"}])), exactly(iana.iter().map(|m| format!("spec.ports[0].targetPort: Invalid value: \"HTTP_X\": {m}")))),
            ("target port number", ports(json!([{"port": 80, "targetPort": 70000}])), exactly(["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"])),
            ("protocol", ports(json!([{"port": 80, "protocol": "HTTP"}])), exactly(["spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""])),
            ("node port on cluster IP", ports(json!([{"port": 80, "nodePort": 30080}])), exactly(["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"])),
            ("node port", json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}), ok()),
            ("node port out of range", json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}), exactly(["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"])),
            ("load balancer", json!({"spec": {"type": "LoadBalancer"}}), ok()),
            ("unknown type", json!({"spec": {"type": "Magic"}}), contains(["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""])),
            ("headless node port", json!({"spec": {"type": "NodePort", "clusterIP": "None"}}), contains(["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"])),
            ("bad cluster IP", json!({"spec": {"clusterIP": "10.0.0.300"}}), exactly(["spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"])),
            ("cluster IP mismatch", json!({"spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.2"]}}), exactly(["spec.clusterIPs: Invalid value: [\"10.96.0.2\"]: first value must match `clusterIP`"])),
            ("selector label", json!({"spec": {"selector": {"app": "-web"}}}), exactly([format!("spec.selector: Invalid value: \"-web\": {}", first(names::label_value("-web")))])),
            ("affinity", json!({"spec": {"sessionAffinity": "Sticky"}}), exactly(["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""])),
            ("affinity timeout", json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}}), exactly(["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"])),
            ("external policy on cluster IP", json!({"spec": {"externalTrafficPolicy": "Local"}}), exactly(["spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"])),
            ("external policy value", json!({"spec": {"type": "NodePort", "externalTrafficPolicy": "Nearby"}}), exactly(["spec.externalTrafficPolicy: Unsupported value: \"Nearby\": supported values: \"Cluster\", \"Local\""])),
            ("external IP", json!({"spec": {"externalIPs": ["not-an-ip"]}}), exactly(["spec.externalIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"])),
        ],
        defaults::service,
        super::service,
    );
    let allocated = {
        let mut v = base_service();
        merge(&mut v, &json!({"spec": {"clusterIP": "10.96.0.10"}}));
        v
    };
    run_update_table::<Service>(
        &allocated,
        vec![
            ("ports", json!({"spec": {"ports": [{"port": 8080}]}}), ok()),
            (
                "cluster IP",
                json!({"spec": {"clusterIP": "10.96.0.11"}}),
                exactly([
                    "spec.clusterIPs[0]: Invalid value: [\"10.96.0.11\"]: may not change once set",
                ]),
            ),
            (
                "cluster IP unset",
                json!({"spec": {"clusterIP": null}}),
                exactly([
                    "spec.clusterIPs[0]: Invalid value: []: primary clusterIP can not be unset",
                ]),
            ),
            (
                "to external name",
                json!({"spec": {"type": "ExternalName", "externalName": "x.example.com", "clusterIP": null, "ports": null}}),
                Want::Contains(vec![]),
            ),
        ],
        defaults::service,
        super::service_update,
    );
    // A replacement without the allocated cluster IP keeps it once the caller carries it over.
    let mut old: Service = serde_json::from_value(allocated.clone()).expect("old");
    defaults::service(&mut old);
    let mut new: Service = serde_json::from_value(base_service()).expect("new");
    defaults::service_update(&mut new, &old);
    defaults::service(&mut new);
    assert_eq!(
        render(super::service_update(&new, &old)),
        Vec::<String>::new()
    );
}

#[test]
fn endpoints() {
    let base = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 8080}]}]
    });
    let subset = |s: Value| json!({"subsets": [s]});
    run_table::<Endpoints>(
        &base,
        vec![
            ("valid", json!({}), ok()),
            ("loopback allowed", subset(json!({"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 8080}]})), ok()),
            ("bad IP", subset(json!({"addresses": [{"ip": "10.1.0"}], "ports": [{"port": 8080}]})), exactly(["subsets[0].addresses[0].ip: Invalid value: \"10.1.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"])),
            ("unspecified", subset(json!({"addresses": [{"ip": "0.0.0.0"}]})), exactly(["subsets[0].addresses[0].ip: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"])),
            ("link local", subset(json!({"notReadyAddresses": [{"ip": "169.254.1.1"}]})), exactly(["subsets[0].notReadyAddresses[0].ip: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"])),
            ("no addresses", subset(json!({"ports": [{"port": 80}]})), exactly(["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"])),
            ("port names", subset(json!({"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 80}, {"port": 443, "name": "https"}]})), exactly(["subsets[0].ports[0].name: Required value"])),
            ("port range", subset(json!({"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 0}]})), exactly(["subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"])),
        ],
        defaults::endpoints,
        super::endpoints,
    );
    run_update_table::<Endpoints>(
        &base,
        vec![(
            "new address",
            subset(json!({"addresses": [{"ip": "10.1.0.6"}]})),
            ok(),
        )],
        defaults::endpoints,
        super::endpoints_update,
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster objects
// ---------------------------------------------------------------------------------------------

#[test]
fn namespaces() {
    let base = json!({"metadata": {"name": "dev"}});
    run_table::<Namespace>(
        &base,
        vec![
            ("valid", json!({}), ok()),
            ("bad name", json!({"metadata": {"name": "dev.team"}}), exactly([format!("metadata.name: Invalid value: \"dev.team\": {}", first(names::dns1123_label("dev.team")))])),
            ("namespaced namespace", json!({"metadata": {"namespace": "default"}}), exactly(["metadata.namespace: Forbidden: not allowed on this type"])),
            ("unqualified finalizer", json!({"spec": {"finalizers": ["cleanup"]}}), exactly(["spec.finalizers: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified"])),
        ],
        defaults::namespace,
        super::namespace,
    );
    run_update_table::<Namespace>(
        &base,
        vec![
            ("labels", json!({"metadata": {"labels": {"team": "a"}}}), ok()),
            ("finalizers", json!({"spec": {"finalizers": ["kubernetes", "example.com/x"]}}), exactly(["spec.finalizers: Invalid value: [\"kubernetes\",\"example.com/x\"]: field is immutable"])),
        ],
        defaults::namespace,
        super::namespace_update,
    );
    let mut old: Namespace = serde_json::from_value(base.clone()).expect("old");
    defaults::namespace(&mut old);
    let mut new = old.clone();
    if let Some(spec) = new.spec.as_mut() {
        spec.finalizers = Some(Vec::new());
    }
    assert_eq!(
        render(super::namespace_finalize_update(&new, &old)),
        Vec::<String>::new()
    );
}

#[test]
fn nodes() {
    let base = json!({"metadata": {"name": "node-1"}, "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
    let taints = |t: Value| json!({"spec": {"taints": t}});
    run_table::<Node>(
        &base,
        vec![
            ("valid", json!({}), ok()),
            ("taint", taints(json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])), ok()),
            ("taint effect", taints(json!([{"key": "dedicated", "effect": "NoRun"}])), exactly(["metadata.taints[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""])),
            ("taint without effect", taints(json!([{"key": "dedicated"}])), exactly(["metadata.taints[0].effect: Required value"])),
            ("taint key", taints(json!([{"key": "", "effect": "NoSchedule"}])), exactly(["metadata.taints[0].key: Invalid value: \"\": name part must be non-empty"])),
            ("duplicate taint", taints(json!([{"key": "a", "effect": "NoSchedule"}, {"key": "a", "value": "x", "effect": "NoSchedule"}])), exactly(["metadata.taints[1]: Duplicate value: {\"effect\":\"NoSchedule\",\"key\":\"a\",\"value\":\"x\"}"])),
            ("same key other effect", taints(json!([{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoExecute"}])), ok()),
            ("negative capacity", json!({"status": {"capacity": {"cpu": "-1"}}}), contains(["status.capacity.cpu: Invalid value: \"-1\": must be greater than or equal to 0"])),
            ("fractional pods", json!({"status": {"capacity": {"pods": "1.5"}}}), contains(["status.capacity.pods: Invalid value: \"1500m\": must be an integer"])),
            ("bad pod CIDR", json!({"spec": {"podCIDRs": ["10.0.0.0/33"]}}), exactly(["spec.podCIDRs[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"])),
        ],
        defaults::node,
        super::node,
    );
    run_update_table::<Node>(
        &base,
        vec![
            ("cordon", json!({"spec": {"unschedulable": true}}), ok()),
            ("taint effect", taints(json!([{"key": "dedicated", "effect": "NoRun"}])), exactly(["metadata.taints[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""])),
            ("duplicate address", json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.1"}]}}), exactly(["status.addresses[1]: Duplicate value: {\"address\":\"10.0.0.1\",\"type\":\"InternalIP\"}"])),
        ],
        defaults::node,
        super::node_update,
    );
}

#[test]
fn events() {
    let base = json!({
        "metadata": {"name": "web.17a1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started", "type": "Normal"
    });
    run_table::<Event>(
        &base,
        vec![
            ("valid", json!({}), ok()),
            ("about a node", json!({"involvedObject": {"kind": "Node", "name": "node-1", "namespace": null}}), ok()),
            ("namespace mismatch", json!({"involvedObject": {"namespace": "prod"}}), exactly(["involvedObject.namespace: Invalid value: \"prod\": does not match event.namespace"])),
            ("new style needs reporter", json!({"eventTime": "2024-01-01T00:00:00.000000Z", "action": "Start"}), exactly([
                "reportingController: Required value",
                "reportingController: Invalid value: \"\": name part must be non-empty",
                "reportingInstance: Required value",
            ])),
        ],
        defaults::event,
        super::event,
    );
}

#[test]
fn resource_quotas() {
    let base = json!({"metadata": {"name": "compute", "namespace": "default"}, "spec": {"hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi"}}});
    let hard = |h: Value| json!({"spec": {"hard": h}});
    run_table::<ResourceQuota>(
        &base,
        vec![
            ("valid", json!({}), ok()),
            ("object counts", hard(json!({"count/deployments.apps": "2", "services.nodeports": "1", "configmaps": "5"})), ok()),
            ("negative", hard(json!({"pods": "-1"})), exactly(["spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0"])),
            ("fractional count", hard(json!({"pods": "1.5"})), exactly(["spec.hard[pods]: Invalid value: \"1500m\": must be an integer"])),
            ("unknown", hard(json!({"widgets": "1"})), exactly([
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota",
            ])),
            ("storage is standard but not for quota", hard(json!({"storage": "1Gi"})), exactly(["spec.hard[storage]: Invalid value: \"storage\": must be a standard resource for quota"])),
            ("unparsable", hard(json!({"requests.memory": "1GB"})), exactly(["spec.hard[requests.memory]: Invalid value: \"1GB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"])),
            ("scopes", json!({"spec": {"hard": {"requests.cpu": null, "limits.memory": null}, "scopes": ["BestEffort", "NotBestEffort"]}}), exactly(["spec.scopes: Invalid value: [\"BestEffort\",\"NotBestEffort\"]: conflicting scopes"])),
            ("scope for compute", json!({"spec": {"scopes": ["BestEffort"]}}), exactly(["spec.scopes: Invalid value: [\"BestEffort\"]: unsupported scope applied to resource"])),
            ("unknown scope", json!({"spec": {"hard": {"pods": "1"}, "scopes": ["Sometimes"]}}), exactly(["spec.scopes: Invalid value: [\"Sometimes\"]: unsupported scope"])),
        ],
        defaults::resource_quota,
        super::resource_quota,
    );
    run_update_table::<ResourceQuota>(
        &base,
        vec![
            ("raise", hard(json!({"pods": "20"})), ok()),
            (
                "scopes",
                json!({"spec": {"scopes": ["Terminating"]}}),
                exactly(["spec.scopes: Invalid value: [\"Terminating\"]: field is immutable"]),
            ),
        ],
        defaults::resource_quota,
        super::resource_quota_update,
    );
}

#[test]
fn runtime_classes() {
    let base = rich_runtime_class();
    let scheduling = |s: Value| json!({"scheduling": s});
    let label_error = first(names::dns1123_label("Run.C"));
    run_table::<RuntimeClass>(
        &base,
        vec![
            ("valid", json!({}), ok()),
            ("the docs' example", json!({"metadata": {"name": "myclass"}, "handler": "myconfiguration", "overhead": null, "scheduling": null}), ok()),
            ("bad name", json!({"metadata": {"name": "My_Class"}}), exactly([format!("metadata.name: Invalid value: \"My_Class\": {}", first(names::dns1123_subdomain("My_Class")))])),
            ("namespaced", json!({"metadata": {"namespace": "default"}}), exactly(["metadata.namespace: Forbidden: not allowed on this type"])),
            ("no handler", json!({"handler": null}), exactly([format!("handler: Invalid value: \"\": {}", first(names::dns1123_label("")))])),
            ("handler not a label", json!({"handler": "Run.C"}), exactly([format!("handler: Invalid value: \"Run.C\": {label_error}")])),
            ("negative overhead", json!({"overhead": {"podFixed": {"cpu": "-1"}}}), exactly(["overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"])),
            ("unknown overhead", json!({"overhead": {"podFixed": {"widgets": "1"}}}), contains(["overhead.limits[widgets]: Invalid value: \"widgets\": must be a standard resource for containers"])),
            ("unparsable overhead", json!({"overhead": {"podFixed": {"memory": "1GB"}}}), exactly(["overhead.limits[memory]: Invalid value: \"1GB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"])),
            ("empty overhead", json!({"overhead": {"podFixed": null}}), ok()),
            ("node selector key", scheduling(json!({"nodeSelector": {"bad key": "x"}})), exactly([format!("scheduling.nodeSelector: Invalid value: \"bad key\": {}", first(names::qualified_name("bad key")))])),
            ("node selector value", scheduling(json!({"nodeSelector": {"sandbox": "not ok"}})), exactly([format!("scheduling.nodeSelector: Invalid value: \"not ok\": {}", first(names::label_value("not ok")))])),
            ("toleration operator", scheduling(json!({"tolerations": [{"key": "k", "operator": "Like"}]})), exactly(["scheduling.tolerations[0].operator: Unsupported value: \"Like\": supported values: \"Equal\", \"Exists\""])),
            ("toleration seconds", scheduling(json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]})), exactly(["scheduling.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"])),
            ("duplicate toleration", scheduling(json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": null}]})), exactly(["scheduling.tolerations[1]: Duplicate value: {\"effect\":\"NoSchedule\",\"key\":\"k\",\"operator\":\"Exists\"}"])),
            ("same key other effect", scheduling(json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "operator": "Exists", "effect": "NoExecute"}]})), ok()),
        ],
        defaults::runtime_class,
        super::runtime_class,
    );
    run_update_table::<RuntimeClass>(
        &base,
        vec![
            (
                "labels",
                json!({"metadata": {"labels": {"team": "a"}}}),
                ok(),
            ),
            (
                "overhead",
                json!({"overhead": {"podFixed": {"cpu": "1"}}}),
                ok(),
            ),
            (
                "handler",
                json!({"handler": "kata"}),
                exactly(["handler: Invalid value: \"kata\": field is immutable"]),
            ),
            (
                "handler and its syntax",
                json!({"handler": "Run.C"}),
                exactly([
                    format!("handler: Invalid value: \"Run.C\": {label_error}"),
                    "handler: Invalid value: \"Run.C\": field is immutable".to_owned(),
                ]),
            ),
        ],
        defaults::runtime_class,
        super::runtime_class_update,
    );
}

// ---------------------------------------------------------------------------------------------
// Nothing panics
// ---------------------------------------------------------------------------------------------

/// Strings likely to break a careless check: empty, odd, boundary, and meaningful ones.
fn string_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "-",
            "None",
            "latest",
            "0",
            "0.5",
            "1e3",
            "-1",
            "1Ei",
            "9999999999999999999999Ei",
            "100%",
            "25%",
            "101%",
            "%",
            "Always",
            "Never",
            "Exists",
            "Equal",
            "NoExecute",
            "TCP",
            "IPv4",
            "10.0.0.1",
            "::1",
            "0.0.0.0",
            "ClusterIP",
            "NodePort",
            "LoadBalancer",
            "ExternalName",
            "RollingUpdate",
            "Recreate",
            "metadata.labels['a']",
            "metadata.name",
            "In",
            "Gt",
            "a/b/c",
            "kubernetes",
            "http",
            "HTTP",
            "/",
            "v1",
            "apps/v1",
            "é",
            "\u{0}",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
    ]
}

/// Numbers at the edges of what fields accept.
fn int_leaf() -> impl Strategy<Value = i64> {
    prop_oneof![
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            80,
            65535,
            65536,
            30000,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN
        ]),
        any::<i32>().prop_map(i64::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        int_leaf().prop_map(Value::from),
        string_leaf().prop_map(Value::from),
    ]
}

/// Field names from the kinds under test, so random objects often reach deep checks.
const KEYS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "image",
    "command",
    "ports",
    "containerPort",
    "hostPort",
    "protocol",
    "port",
    "targetPort",
    "nodePort",
    "env",
    "value",
    "valueFrom",
    "fieldRef",
    "fieldPath",
    "apiVersion",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "livenessProbe",
    "readinessProbe",
    "httpGet",
    "tcpSocket",
    "exec",
    "periodSeconds",
    "tolerations",
    "key",
    "operator",
    "effect",
    "tolerationSeconds",
    "selector",
    "matchLabels",
    "template",
    "metadata",
    "spec",
    "containers",
    "initContainers",
    "replicas",
    "strategy",
    "rollingUpdate",
    "maxSurge",
    "maxUnavailable",
    "type",
    "clusterIP",
    "clusterIPs",
    "ipFamilies",
    "sessionAffinity",
    "volumes",
    "volumeMounts",
    "affinity",
    "nodeAffinity",
];

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Every JSON pointer inside `v`, so mutations can land anywhere in a valid object.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One change to a valid object: at a pointer to a leaf, a value of the same JSON type (so the
/// result usually still deserializes and reaches the checks), or now and then anything at all.
#[derive(Clone, Debug)]
struct Edit {
    pointer: String,
    text: String,
    number: i64,
    wild: Value,
    keep_type: bool,
}

fn apply(v: &mut Value, edit: &Edit) {
    let Some(slot) = v.pointer_mut(&edit.pointer) else {
        return;
    };
    *slot = match (&*slot, edit.keep_type) {
        (Value::String(_), true) => Value::from(edit.text.clone()),
        (Value::Number(_), true) => Value::from(edit.number),
        (Value::Bool(b), true) => Value::from(!b),
        // Lists and maps are changed through their leaves.
        (Value::Object(_) | Value::Array(_), true) => return,
        _ => edit.wild.clone(),
    };
}

/// A rich valid object with some of its parts replaced.
fn mangled(base: Value) -> impl Strategy<Value = Value> {
    let mut ptrs = Vec::new();
    pointers(&base, String::new(), &mut ptrs);
    let edit = (
        prop::sample::select(ptrs),
        string_leaf(),
        int_leaf(),
        any_json(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(pointer, text, number, wild, keep_type)| Edit {
            pointer,
            text,
            number,
            wild,
            keep_type,
        });
    prop::collection::vec(edit, 1..5).prop_map(move |edits| {
        let mut v = base.clone();
        for edit in &edits {
            apply(&mut v, edit);
        }
        v
    })
}

fn rich_pod() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"a": "b"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "1", "controller": true}]},
        "spec": {
            "volumes": [{"name": "data", "emptyDir": {}}],
            "initContainers": [{"name": "init", "image": "busybox:1", "command": ["true"]}],
            "containers": [{
                "name": "web", "image": "nginx:1.25", "command": ["nginx"],
                "ports": [{"name": "http", "containerPort": 80, "hostPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
                "livenessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 5},
                "readinessProbe": {"tcpSocket": {"port": 80}},
                "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "nodeSelector": {"disk": "ssd"},
            "hostNetwork": false
        }
    })
}

fn rich_deployment() -> Value {
    let mut d = base_deployment();
    merge(
        &mut d,
        &json!({"spec": {
            "replicas": 3,
            "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": rich_pod()["spec"].clone()}
        }}),
    );
    d
}

fn rich_runtime_class() -> Value {
    json!({
        "metadata": {"name": "gvisor", "labels": {"sandbox": "yes"}},
        "handler": "runsc",
        "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
        "scheduling": {"nodeSelector": {"sandbox": "gvisor"},
                       "tolerations": [{"key": "sandbox", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"}]}
    })
}

fn rich_service() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.3", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP"}],
                 "sessionAffinity": "ClientIP", "externalIPs": ["10.0.0.9"]}
    })
}

/// Defaults and validates `v` as a `T` when it deserializes: validation must not panic before or
/// after defaulting, defaulting must be idempotent, and updates between the object and `base`
/// must not panic either.
fn exercise<T>(
    v: Value,
    base: &Value,
    default: fn(&mut T),
    validate: fn(&T) -> ErrorList,
    update: fn(&T, &T) -> ErrorList,
) where
    T: DeserializeOwned + Serialize + Clone,
{
    let Ok(mut obj) = serde_json::from_value::<T>(v) else {
        return;
    };
    let Ok(mut base_obj) = serde_json::from_value::<T>(base.clone()) else {
        return;
    };
    let _ = validate(&obj);
    let _ = update(&obj, &base_obj);
    default(&mut obj);
    let once = serde_json::to_value(&obj).ok();
    default(&mut obj);
    assert_eq!(
        once,
        serde_json::to_value(&obj).ok(),
        "defaulting is not idempotent"
    );
    let _ = validate(&obj);
    default(&mut base_obj);
    let _ = update(&obj, &base_obj);
    let _ = update(&base_obj, &obj);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn pods_never_panic(v in mangled(rich_pod())) {
        exercise::<Pod>(v, &rich_pod(), defaults::pod, super::pod, super::pod_update);
    }

    #[test]
    fn deployments_never_panic(v in mangled(rich_deployment())) {
        exercise::<Deployment>(v, &rich_deployment(), defaults::deployment, super::deployment, super::deployment_update);
    }

    #[test]
    fn services_never_panic(v in mangled(rich_service())) {
        exercise::<Service>(v, &rich_service(), defaults::service, super::service, super::service_update);
    }

    #[test]
    fn runtime_classes_never_panic(v in mangled(rich_runtime_class())) {
        exercise::<RuntimeClass>(v, &rich_runtime_class(), defaults::runtime_class, super::runtime_class, super::runtime_class_update);
    }

    #[test]
    fn random_json_never_panics(v in any_json()) {
        exercise::<Pod>(v.clone(), &rich_pod(), defaults::pod, super::pod, super::pod_update);
        exercise::<Deployment>(v.clone(), &rich_deployment(), defaults::deployment, super::deployment, super::deployment_update);
        exercise::<Service>(v, &rich_service(), defaults::service, super::service, super::service_update);
    }
}

#[test]
fn rich_objects_are_valid() {
    // The property tests start from these; they must be valid to begin with.
    check(
        "pod",
        errors::<Pod>(&rich_pod(), &json!({}), defaults::pod, super::pod),
        &ok(),
    );
    check(
        "deployment",
        errors::<Deployment>(
            &rich_deployment(),
            &json!({}),
            defaults::deployment,
            super::deployment,
        ),
        &ok(),
    );
    check(
        "service",
        errors::<Service>(
            &rich_service(),
            &json!({}),
            defaults::service,
            super::service,
        ),
        &ok(),
    );
    check(
        "runtime class",
        errors::<RuntimeClass>(
            &rich_runtime_class(),
            &json!({}),
            defaults::runtime_class,
            super::runtime_class,
        ),
        &ok(),
    );
}
