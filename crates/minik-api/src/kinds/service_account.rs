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

/// The ServiceAccount admission of a pod being created (Kubernetes'
/// `plugin/pkg/admission/serviceaccount`), with its account as stored (`None`: it does not
/// exist): a pod naming an account that does not exist is refused, in Kubernetes' words (what
/// follows `pods "NAME" is forbidden: `); a pod without `imagePullSecrets` gets its account's.
///
/// Where minik differs: a missing `default` account does not refuse the pod (Kubernetes refuses
/// it until the service account controller has made it, which fails pods created right after
/// their namespace); the pod then runs without the account's pull secrets.
pub fn admit_pod(pod: &mut Value, account: Option<&Value>) -> Result<(), String> {
    let name = account_name(pod).to_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_their_accounts_pull_secrets() {
        let account =
            json!({"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": "regcred"}]});
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {"serviceAccountName": "builder"}});
        admit_pod(&mut pod, Some(&account)).unwrap();
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}])
        );
        // A pod's own list wins.
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "mine"}]}});
        admit_pod(&mut pod, Some(&account)).unwrap();
        assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    #[test]
    fn a_missing_named_account_refuses_the_pod() {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {"serviceAccountName": "builder"}});
        assert_eq!(
            admit_pod(&mut pod, None),
            Err(
                "error looking up service account ci/builder: serviceaccount \"builder\" not found"
                    .into()
            )
        );
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ci"}, "spec": {}});
        assert_eq!(account_name(&pod), "default");
        assert_eq!(admit_pod(&mut pod, None), Ok(()));
    }
}
