//! ServiceAccounts (v1): the identities pods run as. Every namespace gets `default` from the
//! service account controller. Defaults and validation in
//! [`crate::validation::service_account`]; the ServiceAccount admission of pods
//! ([`admit_pod`]), which the API server carries out with the account it read
//! ([`Admission::ServiceAccount`](super::Admission)).

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, arr, col, name_cell, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    ServiceAccount,
    defaults::service_account,
    validation::service_account,
    validation::service_account_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const SERVICE_ACCOUNTS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(arr(obj, "/secrets").len()),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

/// The service account a pod runs as (`spec.serviceAccountName`, defaulted to `default`).
pub fn account_name(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

/// Where Kubernetes mounts a pod's service account credentials in every container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the name of the volume admission adds for them (`kube-api-access-x7k2p`).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// The lifetime admission asks for the token of that volume: Kubernetes' 3607 s (an hour and
/// a little, so that clients that assumed an hour are told apart in its audit logs).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The ServiceAccount admission of a pod being created (Kubernetes'
/// `plugin/pkg/admission/serviceaccount`), with its account as stored (`None`: it does not
/// exist): a pod naming an account that does not exist is refused, in Kubernetes' words (what
/// follows `pods "NAME" is forbidden: `); a pod without `imagePullSecrets` gets its account's;
/// and unless the pod or its account sets `automountServiceAccountToken: false`, every
/// container without a mount of its own at [`TOKEN_MOUNT_PATH`] gets the projected
/// `kube-api-access-SUFFIX` volume there (token, `ca.crt`, `namespace`), so that in-cluster
/// clients find the API. `suffix` makes the volume's name (five random characters, as
/// Kubernetes' name generator); without one no volume is added (a server without a cluster
/// CA, whose `ca.crt` the volume would hold).
///
/// Where minik differs: a missing `default` account does not refuse the pod (Kubernetes refuses
/// it until the service account controller has made it, which fails pods created right after
/// their namespace); the pod then runs without the account's pull secrets, and its token volume
/// waits (`FailedMount`) until the account exists.
pub fn admit_pod(
    pod: &mut Value,
    account: Option<&Value>,
    suffix: Option<&str>,
) -> Result<(), String> {
    let name = account_name(pod).to_owned();
    if let Some(suffix) = suffix.filter(|_| automount(pod, account)) {
        mount_token(pod, suffix);
    }
    let Some(account) = account else {
        if name == "default" {
            return Ok(());
        }
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(format!(
            "error looking up service account {ns}/{name}: serviceaccount {name:?} not found"
        ));
    };
    let has_own = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let inherited = account
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let (false, Some(secrets), Some(spec)) = (
        has_own,
        inherited,
        pod.get_mut("spec").and_then(Value::as_object_mut),
    ) {
        spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
    }
    Ok(())
}

/// Whether the pod gets the token volume: the pod's `automountServiceAccountToken` if set, else
/// its account's, else yes.
fn automount(pod: &Value, account: Option<&Value>) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .or_else(|| account?.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Adds the token volume and its mounts (Kubernetes' `mountServiceAccountToken`): a volume the
/// pod already has under the prefix is reused; a container (init containers too) with any
/// mount at the path keeps its own; the volume is added only if a container mounts it.
fn mount_token(pod: &mut Value, suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_owned);
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if !mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(json!({"name": volume, "projected": {
                "defaultMode": 0o644,
                "sources": [
                    {"serviceAccountToken": {
                        "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            }}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_their_accounts_pull_secrets() {
        let account =
            json!({"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": "regcred"}]});
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {"serviceAccountName": "builder"}});
        admit_pod(&mut pod, Some(&account), Some("x7k2p")).unwrap();
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}])
        );
        // A pod's own list wins.
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "mine"}]}});
        admit_pod(&mut pod, Some(&account), Some("x7k2p")).unwrap();
        assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    #[test]
    fn a_missing_named_account_refuses_the_pod() {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {"serviceAccountName": "builder"}});
        assert_eq!(
            admit_pod(&mut pod, None, Some("x7k2p")),
            Err(
                "error looking up service account ci/builder: serviceaccount \"builder\" not found"
                    .into()
            )
        );
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {}});
        assert_eq!(account_name(&pod), "default");
        assert_eq!(admit_pod(&mut pod, None, Some("x7k2p")), Ok(()));
    }

    #[test]
    fn every_container_gets_the_token_volume_unless_told_not_to() {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "mine", "emptyDir": {}}],
        }});
        admit_pod(
            &mut pod,
            Some(&json!({"metadata": {"name": "default"}})),
            Some("x7k2p"),
        )
        .unwrap();
        let mount = json!({"name": "kube-api-access-x7k2p", "readOnly": true,
            "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"][1], mount);
        // A container with its own mount at the path keeps it alone.
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let volume = &pod["spec"]["volumes"][2];
        assert_eq!(volume["name"], "kube-api-access-x7k2p");
        assert_eq!(volume["projected"]["defaultMode"], 420);
        let sources = &volume["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        // Admitting again (a pod that has the volume) adds nothing.
        let before = pod.clone();
        admit_pod(&mut pod, None, Some("other")).unwrap();
        assert_eq!(pod, before);

        // automountServiceAccountToken: the pod's word wins over its account's.
        let quiet = json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false});
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        let mut pod = bare.clone();
        admit_pod(&mut pod, Some(&quiet), Some("x7k2p")).unwrap();
        assert_eq!(pod, bare);
        let mut pod = bare.clone();
        pod["spec"]["automountServiceAccountToken"] = json!(true);
        admit_pod(&mut pod, Some(&quiet), Some("x7k2p")).unwrap();
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-x7k2p");
        let mut pod = bare.clone();
        pod["spec"]["automountServiceAccountToken"] = json!(false);
        admit_pod(&mut pod, None, Some("x7k2p")).unwrap();
        assert!(pod["spec"].get("volumes").is_none());
        // No suffix (a server without a CA): no volume.
        let mut pod = bare.clone();
        admit_pod(&mut pod, None, None).unwrap();
        assert_eq!(pod, bare);
    }
}
