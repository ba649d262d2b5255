//! Hand-encoded protobuf bodies, laid out as Go's encoder writes them (every non-pointer field,
//! zero or not), and what they must become; malformed and random inputs must fail cleanly.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A varint field.
fn v(number: u32, value: u64) -> Vec<u8> {
    let mut out = varint(u64::from(number) << 3);
    out.extend(varint(value));
    out
}

/// A length-delimited field.
fn ld(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = varint((u64::from(number) << 3) | 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

fn s(number: u32, text: &str) -> Vec<u8> {
    ld(number, text.as_bytes())
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn entry(number: u32, key: &str, value: &[u8]) -> Vec<u8> {
    ld(number, &cat(&[s(1, key), ld(2, value)]))
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut out = b"k8s\0".to_vec();
    out.extend(cat(&[
        ld(1, &cat(&[s(1, api_version), s(2, kind)])),
        ld(2, raw),
        s(3, ""),
        s(4, ""),
    ]));
    out
}

/// ObjectMeta as Go writes it for a new object: every non-pointer field, zero or not.
fn object_meta(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut parts = vec![
        s(1, name),
        s(2, ""),
        s(3, ""),
        s(4, ""),
        s(5, ""),
        s(6, ""),
        v(7, 0),
        ld(8, &[]), // creationTimestamp: the zero time
    ];
    for (k, val) in labels {
        parts.push(entry(11, k, val.as_bytes()));
    }
    cat(&parts)
}

/// What `kubectl create deployment web --image=nginx --replicas=0` sends (field by field as
/// client-go's generated marshaller writes it).
fn deployment(replicas: u32) -> Vec<u8> {
    let container = cat(&[
        s(1, "nginx"),
        s(2, "nginx"),
        ld(8, &[]), // resources: {}
        s(5, ""),   // workingDir
        s(13, ""),  // terminationMessagePath
        s(14, ""),  // imagePullPolicy
        v(16, 0),   // stdin
        v(17, 0),   // stdinOnce
        v(18, 0),   // tty
        s(20, ""),  // terminationMessagePolicy
    ]);
    let pod_spec = cat(&[
        ld(2, &container),
        s(3, ""),    // restartPolicy
        s(6, ""),    // dnsPolicy
        s(8, ""),    // serviceAccountName
        s(10, ""),   // nodeName
        v(11, 0),    // hostNetwork
        v(12, 0),    // hostPID
        v(13, 0),    // hostIPC
        ld(14, &[]), // securityContext (a pointer in Go: sent because set)
        s(16, ""),   // hostname
    ]);
    let template = cat(&[ld(1, &object_meta("", &[("app", "web")])), ld(2, &pod_spec)]);
    let selector = entry(1, "app", b"web");
    let spec = cat(&[
        v(1, u64::from(replicas)),
        ld(2, &selector),
        ld(3, &template),
        ld(4, &[]), // strategy: {}
        v(5, 0),    // minReadySeconds
        v(7, 0),    // paused
    ]);
    let status = cat(&[v(1, 0), v(2, 0), v(3, 0), v(4, 0), v(5, 0), v(7, 0)]);
    envelope(
        "apps/v1",
        "Deployment",
        &cat(&[
            ld(1, &object_meta("web", &[("app", "web")])),
            ld(2, &spec),
            ld(3, &status),
        ]),
    )
}

#[test]
fn a_deployment_becomes_the_json_kubectl_would_send() {
    let got = decode_strict(&deployment(0));
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                // A pointer: zero is a value, kept.
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "nginx", "image": "nginx", "resources": {}}],
                        "securityContext": {}
                    }
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn a_service_with_int_or_string_ports_and_a_selector() {
    let port = |name: &str, number: u64, target: Vec<u8>| {
        cat(&[
            s(1, name),
            s(2, "TCP"),
            v(3, number),
            ld(4, &target),
            v(5, 0),
        ])
    };
    let spec = cat(&[
        ld(
            1,
            &port("80-8080", 80, cat(&[v(1, 0), v(2, 8080), s(3, "")])),
        ),
        ld(
            1,
            &port("web", 443, cat(&[v(1, 1), v(2, 0), s(3, "https")])),
        ),
        ld(1, &port("same", 53, cat(&[v(1, 0), v(2, 0), s(3, "")]))),
        entry(2, "app", b"web"),
        s(3, ""),
        s(4, "ClusterIP"),
    ]);
    let got = decode_strict(&envelope(
        "v1",
        "Service",
        &cat(&[
            ld(1, &object_meta("web", &[])),
            ld(2, &spec),
            ld(3, &ld(1, &[])),
        ]),
    ));
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "ports": [
                    {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "web", "protocol": "TCP", "port": 443, "targetPort": "https"},
                    // targetPort 0 is "not set": Kubernetes defaults it to the port.
                    {"name": "same", "protocol": "TCP", "port": 53}
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn inline_structs_times_quantities_and_packed_numbers() {
    let probe = cat(&[
        // ProbeHandler, inline: its httpGet joins the probe.
        ld(
            1,
            &ld(
                2,
                &cat(&[s(1, "/healthz"), ld(2, &cat(&[v(1, 0), v(2, 8080)]))]),
            ),
        ),
        v(2, 5),
    ]);
    let container = cat(&[
        s(1, "app"),
        s(2, "busybox"),
        ld(
            8,
            &cat(&[
                entry(1, "cpu", &s(1, "500m")),
                entry(2, "memory", &s(1, "64Mi")),
            ]),
        ),
        ld(10, &probe),
    ]);
    // Volume.VolumeSource is inline too.
    let volume = cat(&[s(1, "scratch"), ld(2, &ld(2, &[]))]);
    let security = cat(&[
        // supplementalGroups, packed; -1 as a ten-byte varint in an int64 list.
        ld(4, &cat(&[varint(1000), varint(2000)])),
        v(2, u64::MAX), // runAsUser: a pointer int64, -1
    ]);
    let spec = cat(&[
        ld(1, &volume),
        ld(2, &container),
        v(4, u64::MAX), // terminationGracePeriodSeconds: -1, kept (a pointer)
        ld(14, &security),
    ]);
    let meta = cat(&[
        s(1, "p"),
        ld(8, &cat(&[v(1, 1_700_000_000), v(2, 5)])),
        ld(
            17,
            &cat(&[s(1, "kubectl"), ld(7, &s(1, r#"{"f:metadata":{}}"#))]),
        ),
    ]);
    let got = decode_strict(&envelope("v1", "Pod", &cat(&[ld(1, &meta), ld(2, &spec)])));
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}}]
            },
            "spec": {
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{
                    "name": "app",
                    "image": "busybox",
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "initialDelaySeconds": 5
                    }
                }],
                "terminationGracePeriodSeconds": -1,
                "securityContext": {"runAsUser": -1, "supplementalGroups": [1000, 2000]}
            }
        })
    );
}

#[test]
fn event_micro_times_and_delete_options() {
    let event = cat(&[
        ld(1, &object_meta("e", &[])),
        ld(2, &cat(&[s(1, "Pod"), s(3, "p")])),
        s(3, "Started"),
        ld(10, &cat(&[v(1, 1_700_000_000), v(2, 123_456_789)])),
    ]);
    let got = decode_strict(&envelope("v1", "Event", &event));
    assert_eq!(got["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    assert_eq!(got["involvedObject"], json!({"kind": "Pod", "name": "p"}));

    let options = cat(&[v(1, 0), s(4, "Foreground"), s(5, "All")]);
    let got = decode_strict(&envelope("meta.k8s.io/v1", "DeleteOptions", &options));
    assert_eq!(
        got,
        json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Foreground",
            "dryRun": ["All"]
        })
    );
}

#[test]
fn unknown_field_numbers_fail_strict_and_are_dropped_otherwise() {
    let spec = cat(&[v(1, 3), v(99, 1)]);
    let body = envelope("apps/v1", "Deployment", &ld(2, &spec));
    let err = decode(&body, FieldValidation::Strict).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown field number 99 in message apps.v1.DeploymentSpec at spec"
    );
    for lenient in [FieldValidation::Warn, FieldValidation::Ignore] {
        assert_eq!(
            decode(&body, lenient).unwrap()["spec"],
            json!({"replicas": 3})
        );
    }
    // A newer client's fields left unset (Go writes them as zeros) pass even under Strict.
    let spec = cat(&[v(1, 3), v(99, 0), s(100, ""), ld(101, &[])]);
    let body = envelope("apps/v1", "Deployment", &ld(2, &spec));
    assert_eq!(decode_strict(&body)["spec"], json!({"replicas": 3}));
}

#[test]
fn envelopes_that_are_not_kubernetes_protobuf_are_refused() {
    assert_eq!(
        decode(b"{\"kind\":\"Pod\"}", FieldValidation::Strict),
        Err(ProtobufError::NoMagic)
    );
    let err = decode(&envelope("v1", "ConfigMap", &[]), FieldValidation::Strict).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protobuf bodies of kind \"ConfigMap\" in \"v1\" are not supported (send JSON)"
    );
    let mut gzip = b"k8s\0".to_vec();
    gzip.extend(cat(&[
        ld(1, &cat(&[s(1, "v1"), s(2, "Pod")])),
        s(3, "gzip"),
    ]));
    let err = decode(&gzip, FieldValidation::Strict).unwrap_err();
    assert!(
        err.to_string().contains("contentEncoding \"gzip\""),
        "{err}"
    );
}

#[test]
fn malformed_messages_name_where_they_break() {
    // spec.replicas sent as a string.
    let body = envelope("apps/v1", "Deployment", &ld(2, &s(1, "three")));
    let err = decode(&body, FieldValidation::Strict)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "the protobuf body is malformed at spec.replicas (message apps.v1.DeploymentSpec): field 1 is sent as a length-delimited value, but it is varint on the wire"
    );
    // A container name that is not UTF-8.
    let body = envelope("v1", "Pod", &ld(2, &ld(2, &ld(1, &[0xff, 0xfe]))));
    let err = decode(&body, FieldValidation::Strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.containers[0].name"), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn every_truncation_of_a_valid_body_fails_cleanly_or_decodes() {
    let body = deployment(2);
    for len in 0..body.len() {
        // No panic; the result itself depends on where the cut falls.
        let _ = decode(&body[..len], FieldValidation::Strict);
        let _ = decode(&body[..len], FieldValidation::Ignore);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, FieldValidation::Strict);
        let mut with_magic = b"k8s\0".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = decode(&with_magic, FieldValidation::Ignore);
    }

    #[test]
    fn random_objects_inside_a_valid_envelope_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..512),
        kind in prop::sample::select(vec!["Pod", "Service", "Node", "Event", "Namespace"]),
    ) {
        let _ = decode(&envelope("v1", kind, &raw), FieldValidation::Strict);
        let _ = decode(&envelope("v1", kind, &raw), FieldValidation::Ignore);
    }

    #[test]
    fn mutated_deployments_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut body = deployment(1);
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = decode(&body, FieldValidation::Strict);
        let _ = decode(&body, FieldValidation::Ignore);
    }
}

#[test]
fn times_are_written_as_go_writes_them() {
    let cases = [
        (0, 0, None, "1970-01-01T00:00:00Z"),
        (951_782_400, 0, None, "2000-02-29T00:00:00Z"),
        (1_700_000_000, 999_999_999, None, "2023-11-14T22:13:20Z"),
        (
            1_700_000_000,
            999_999_999,
            Some(999_999),
            "2023-11-14T22:13:20.999999Z",
        ),
        (-1, 0, None, "1969-12-31T23:59:59Z"),
        (-62_167_219_200, 0, None, "0000-01-01T00:00:00Z"),
        (253_402_300_799, 0, None, "9999-12-31T23:59:59Z"),
    ];
    for (seconds, nanos, micros, want) in cases {
        assert_eq!(
            rfc3339(seconds, nanos, micros).as_deref(),
            Ok(want),
            "{seconds}"
        );
    }
    assert!(rfc3339(253_402_300_800, 0, None).is_err());
    assert!(rfc3339(-62_167_219_201, 0, None).is_err());
    assert!(rfc3339(0, -1, None).is_err());
    assert!(rfc3339(i64::MIN, 0, None).is_err());
    assert!(rfc3339(i64::MAX, 0, None).is_err());
}

fn unhex(lines: &[&str]) -> Vec<u8> {
    let hex = lines.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `body` decoded with strict field validation, which must succeed.
fn decode_strict(body: &[u8]) -> Value {
    decode(body, FieldValidation::Strict).unwrap()
}

/// The hex `lines` decode, with strict field validation, to `expected`.
fn assert_decodes_strictly_to(lines: &[&str], expected: serde_json::Value) {
    let body = unhex(lines);
    assert_eq!(decode_strict(&body), expected);
}

/// The bodies kubectl 1.33.1 sent for `create deployment web --image=nginx`, `create service
/// clusterip web --tcp=80:8080` and `create namespace team-a` (recorded by a proxy), decode to
/// what kubectl 1.31 sends as JSON for the same commands (`--dry-run=client -o json`), but for
/// `creationTimestamp: null`, which says the same as its absence.
#[test]
fn kubectl_1_33_bodies_decode_to_what_kubectl_1_31_sends_as_json() {
    assert_decodes_strictly_to(
        &[
            "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412ab010a1f0a0377656212001a0022002a00320038",
            "0042005a0a0a036170701203776562127a0801120c0a0a0a0361707012037765621a600a1c0a0012001a0022002a0032",
            "00380042005a0a0a036170701203776562124012220a056e67696e7812056e67696e782a0042006a0072008001008801",
            "00900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c080010",
            "0018002000280038001a002200",
        ],
        json!({"kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}},
                "strategy": {}},
            "status": {}}),
    );
    assert_decodes_strictly_to(
        &[
            "6b3873000a0d0a02763112075365727669636512690a1f0a0377656212001a0022002a003200380042005a0a0a036170",
            "70120377656212420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a0361707012037765",
            "621a002209436c757374657249503a00420052005a00600068001a020a001a002200",
        ],
        json!({"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"}, "type": "ClusterIP"},
            "status": {"loadBalancer": {}}}),
    );
    assert_decodes_strictly_to(
        &[
            "6b3873000a0f0a02763112094e616d657370616365121e0a160a067465616d2d6112001a0022002a0032003800420012",
            "001a020a001a002200",
        ],
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "team-a"},
            "spec": {}, "status": {}}),
    );
}

/// `kubectl drain --disable-eviction --grace-period=1` (1.33.1) deletes with these options.
#[test]
fn kubectl_1_33_delete_options_decode() {
    assert_decodes_strictly_to(
        &["6b3873000a130a027631120d44656c6574654f7074696f6e73120208011a002200"],
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 1}),
    );
}
