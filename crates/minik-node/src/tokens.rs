//! Service account tokens for projected `serviceAccountToken` volume sources, as the kubelet's
//! token manager gets them: a TokenRequest for the pod's service account, bound to the pod
//! (so the token dies with it), with the source's audience and lifetime; kept and handed out
//! again until 80% of its lifetime has passed, then requested anew (the volume's file is
//! rewritten on the agent's next pass over the pod).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::{Pod, ServiceAccountTokenProjection};
use minik_client::Api;
use serde_json::json;

/// The lifetime a projected token gets when its source names none (Kubernetes' default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Which token a projected source asks for: its audience ("" for the API server's) and
/// lifetime.
pub type TokenKey = (String, i64);

/// The key of a projected source.
pub fn key_of(source: &ServiceAccountTokenProjection) -> TokenKey {
    (
        source.audience.clone().unwrap_or_default(),
        source
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS),
    )
}

struct Held {
    token: String,
    /// When it is to be renewed: 80% of its lifetime after it was issued.
    renew_at: SystemTime,
}

/// The tokens of the node's pods, by pod uid and key.
#[derive(Default)]
pub(crate) struct Tokens {
    held: Mutex<HashMap<(String, TokenKey), Held>>,
}

impl Tokens {
    /// A token for each projected `serviceAccountToken` source of `pod`'s volumes, or why it
    /// could not be had (the pod's volume then waits, with the reason in a `FailedMount`).
    pub(crate) async fn for_pod(
        &self,
        api: &dyn Api,
        pod: &Pod,
        now: SystemTime,
    ) -> BTreeMap<TokenKey, Result<String, String>> {
        let mut out = BTreeMap::new();
        let sources = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.service_account_token.as_ref());
        for source in sources {
            let key = key_of(source);
            if out.contains_key(&key) {
                continue;
            }
            let token = self.get(api, pod, &key, now).await;
            out.insert(key, token);
        }
        out
    }

    async fn get(
        &self,
        api: &dyn Api,
        pod: &Pod,
        key: &TokenKey,
        now: SystemTime,
    ) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let slot = (uid.clone(), key.clone());
        if let Some(held) = self.lock().get(&slot) {
            if now < held.renew_at {
                return Ok(held.token.clone());
            }
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|a| !a.is_empty())
            .unwrap_or("default");
        let (audience, seconds) = key;
        let mut spec = json!({
            "expirationSeconds": seconds,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid},
        });
        if !audience.is_empty() {
            spec["audiences"] = json!([audience]);
        }
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": spec,
        });
        let answer = api
            .request_token(ns, account, body)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let token = answer
            .pointer("/status/token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "failed to fetch token: the answer holds no token".to_owned())?
            .to_owned();
        let lifetime = Duration::from_secs(u64::try_from(*seconds).unwrap_or(0));
        self.lock().insert(
            slot,
            Held {
                token: token.clone(),
                renew_at: now + lifetime.mul_f64(0.8),
            },
        );
        Ok(token)
    }

    /// Forgets the tokens of a pod that is gone.
    pub(crate) fn forget(&self, pod_uid: &str) {
        self.lock().retain(|(uid, _), _| uid != pod_uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, TokenKey), Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}
