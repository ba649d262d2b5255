//! Well-known names of Kubernetes, each defined once: the taints the control plane sets, the
//! labels and annotations clients and controllers agree on, and the default scheduler's name.
//! Whatever reads or writes one of these uses the constant here.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// The taint the node lifecycle controller puts on a node whose `Ready` condition is `False`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose agent stopped reporting.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint `kubectl cordon` implies (`spec.unschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The label every node carries with its own name.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

/// The annotation `kubectl apply` keeps the last applied manifest in.
pub const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The annotation `kubectl rollout restart` sets on a pod template.
pub const ANNOTATION_RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Which of a ReplicaSet's pods go first when it scales down (lower first).
pub const ANNOTATION_POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// An Indexed Job's pod's completion index (an annotation, and a label too).
pub const JOB_COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The revision of a Deployment and of each of its ReplicaSets.
pub const ANNOTATION_DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";

/// The scheduler a pod is meant for when it does not say.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Where nodes keep their heartbeat Leases, one per node, named after it (Kubernetes'
/// `kube-node-lease`).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`): the effect matches
/// (an empty effect matches every effect), the key matches (an empty key with `Exists` matches
/// every key), and the value is equal (`Equal`, the default) or anything (`Exists`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key only makes sense with `Exists`; validation refuses it otherwise.
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// This machine's architecture as Go (and so Kubernetes' `kubernetes.io/arch` label and
/// `nodeInfo.architecture`) spells it: `amd64`, `arm64`.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_as_kubernetes_matches_them() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let cases = [
            (toleration("dedicated", "Equal", "db", "NoSchedule"), true),
            (toleration("dedicated", "", "db", ""), true),
            (toleration("dedicated", "Equal", "web", "NoSchedule"), false),
            (toleration("dedicated", "Exists", "", ""), true),
            (toleration("dedicated", "Exists", "", "NoExecute"), false),
            (toleration("", "Exists", "", ""), true),
            (toleration("", "Equal", "db", ""), false),
            (toleration("other", "Exists", "", ""), false),
            (toleration("dedicated", "Gt", "db", ""), false),
        ];
        for (t, expected) in cases {
            assert_eq!(tolerates(&t, &taint), expected, "{t:?}");
        }
        assert!(tolerated(
            &[
                toleration("x", "Exists", "", ""),
                toleration("dedicated", "Exists", "", "")
            ],
            &taint
        ));
        assert!(!tolerated(&[], &taint));
    }
}
