//! The node's own credential (SPEC §8). A node joins once: it presents the cluster's join token
//! (or an administrator's; none from loopback when the server allows anonymous clients there)
//! at `POST /minik/v1/join` and gets its own credential for the API and the key its endpoint
//! requires from the server. Both are kept in `DATA_DIR/credential.json` (mode 0600); a restarted
//! agent uses them again, and joins anew only if the server no longer knows them.
//!
//! Over HTTPS the node first settles whom it trusts ([`cluster_trust`]): the CA given to it
//! (`--certificate-authority`), else the one it kept from an earlier join (`DATA_DIR/ca.crt`),
//! else the CA the server presents at `/cacerts` — taken only if its SHA-256 is the one the join
//! token carries (`K10<hash>::SECRET`, k3s' form), and refused naming both hashes otherwise.
//! From then on every connection verifies the server against that CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use minik_api::ApiError;
use minik_client::{HttpApi, Trust, JOIN_PATH};
use minik_tls::JoinToken;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a joined node holds.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub node_name: String,
    /// The bearer token of this node for the API.
    pub token: String,
    /// What the agent's endpoint requires from the server.
    pub agent_key: String,
}

impl std::fmt::Debug for Credential {
    // Never print the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// Why a node could not get a credential.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the server refused the join of node {node:?}: {error}")]
    Refused { node: String, error: ApiError },
    #[error("cannot keep the node credential in {path}: {error}")]
    Storage {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot trust the server {server}: {reason}")]
    Trust { server: String, reason: String },
}

/// The CA file a joined node keeps.
pub fn ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ca.crt")
}

/// Whom the node trusts for `server` (module doc): no CA for a plain-HTTP server.
pub async fn cluster_trust(
    server: &str,
    bootstrap: Option<&str>,
    data_dir: &Path,
    ca_file: Option<&Path>,
) -> Result<Trust, JoinError> {
    let untrusted = |reason: String| JoinError::Trust {
        server: server.to_owned(),
        reason,
    };
    if !server.starts_with("https://") {
        return Ok(Trust::default());
    }
    let token = bootstrap
        .map(JoinToken::parse)
        .transpose()
        .map_err(|e| untrusted(e.to_string()))?;
    let check = |pem: &str, source: &str| -> Result<(), String> {
        match &token {
            Some(token) => token
                .check_ca(pem)
                .map_err(|e| format!("{e}; the CA came from {source}")),
            None => Ok(()),
        }
    };
    if let Some(file) = ca_file {
        let pem =
            minik_tls::read_pem(file, "CA certificate").map_err(|e| untrusted(e.to_string()))?;
        check(&pem, &file.display().to_string()).map_err(untrusted)?;
        return Ok(Trust::ca(pem));
    }
    let kept = ca_path(data_dir);
    if let Ok(pem) = std::fs::read_to_string(&kept) {
        check(
            &pem,
            &format!(
                "{} (kept from an earlier join; remove it if the cluster was made anew)",
                kept.display()
            ),
        )
        .map_err(untrusted)?;
        return Ok(Trust::ca(pem));
    }
    let Some(token) = token.filter(|t| t.ca_hash.is_some()) else {
        return Err(untrusted(
            "it serves HTTPS and this node does not know the cluster CA yet: give --token the join token with the CA hash (K10<hash>::<secret>, as the server's DATA_DIR/auth/join-token holds it) or --certificate-authority the server's DATA_DIR/tls/ca.crt".into(),
        ));
    };
    let pem = retrying("fetching the cluster CA", || fetch_ca(server))
        .await
        .map_err(|e| untrusted(e.to_string()))?;
    token.check_ca(&pem).map_err(|e| untrusted(e.to_string()))?;
    std::fs::create_dir_all(data_dir)
        .and_then(|()| minik_client::write_private_file(&kept, &pem))
        .map_err(|error| JoinError::Storage {
            path: kept.clone(),
            error,
        })?;
    tracing::info!(ca = %kept.display(), "the server's CA matches the join token; kept");
    Ok(Trust::ca(pem))
}

/// The CA certificate the server at `server` presents at `/cacerts`, read without verifying
/// the server (nothing is trusted or sent before the caller checks it).
async fn fetch_ca(server: &str) -> Result<String, ApiError> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::Internal(format!("cannot build an HTTP client: {e}")))?;
    let url = format!("{}/cacerts", server.trim_end_matches('/'));
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| ApiError::Unreachable(format!("{url}: {e}")))?;
    if !answer.status().is_success() {
        return Err(ApiError::BadRequest(format!(
            "{url} answered {} instead of the cluster CA",
            answer.status()
        )));
    }
    answer
        .text()
        .await
        .map_err(|e| ApiError::Unreachable(format!("{url}: {e}")))
}

fn credential_path(data_dir: &Path) -> PathBuf {
    data_dir.join("credential.json")
}

fn load(path: &Path) -> Option<Credential> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(credential) => Some(credential),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable node credential");
            None
        }
    }
}

/// Writes the credential with mode 0600, atomically.
fn save(path: &Path, credential: &Credential) -> std::io::Result<()> {
    let text = serde_json::to_string(credential).map_err(std::io::Error::other)?;
    minik_client::write_private_file(path, &text)
}

/// Whether an error means "try again later" (the server is not there or not well yet).
fn transient(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Unreachable(_)
            | ApiError::ServiceUnavailable(_)
            | ApiError::Timeout(_)
            | ApiError::Internal(_)
    ) || e.code() >= 500
}

/// Calls `attempt` until it gives an answer that is not transient, waiting longer each time.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, "{what}: retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// The credential of node `name`: the one kept under `data_dir` if the server still takes it,
/// else a new one from joining with `bootstrap` (the join token, an admin token, or none).
/// Waits for the server while it cannot be reached.
pub async fn credential(
    server: &str,
    bootstrap: Option<&str>,
    trust: &Trust,
    data_dir: &Path,
    name: &str,
) -> Result<Credential, JoinError> {
    let refused = |error| JoinError::Refused {
        node: name.to_owned(),
        error,
    };
    let api = HttpApi::trusting(server, trust).map_err(refused)?;
    // The server checks the secret; the CA hash was for this node.
    let bootstrap = bootstrap
        .map(|b| JoinToken::parse(b).map(|t| t.secret))
        .transpose()
        .map_err(|e| refused(ApiError::BadRequest(e.to_string())))?;
    let path = credential_path(data_dir);
    if let Some(kept) = load(&path).filter(|c| c.node_name == name) {
        let check = api.clone().with_token(Some(kept.token.clone()));
        let nodes = format!("/api/v1/nodes/{name}");
        match retrying("checking the node credential", || check.get_path(&nodes)).await {
            Err(ApiError::Unauthorized(_)) => {
                tracing::warn!(node = %name, "the server no longer takes this node's credential; joining again");
            }
            // Known (the Node may or may not exist yet).
            _ => return Ok(kept),
        }
    }
    let joiner = api.with_token(bootstrap);
    let body = json!({ "nodeName": name });
    let answer = retrying("joining the cluster", || joiner.post_path(JOIN_PATH, &body))
        .await
        .map_err(refused)?;
    let credential: Credential = serde_json::from_value(answer).map_err(|e| {
        refused(ApiError::Internal(format!(
            "the join answer is not a node credential: {e}"
        )))
    })?;
    save(&path, &credential).map_err(|error| JoinError::Storage {
        path: path.clone(),
        error,
    })?;
    tracing::info!(node = %name, path = %path.display(), "joined; credential kept");
    Ok(credential)
}

/// A node that has joined: its API client (its own credential, the cluster's trust), what its
/// endpoint requires from the server, and its endpoint's HTTPS when the server has it.
pub struct Joined {
    pub api: HttpApi,
    pub endpoint_key: minik_client::Secret,
    pub endpoint_tls: Option<crate::agent::EndpointTls>,
}

/// Joins node `name` to the cluster at `server` (or takes its kept credential): settles the
/// trust, gets the credential, and over HTTPS the endpoint's certificate for `address`.
pub async fn connect(
    server: &str,
    bootstrap: Option<&str>,
    ca_file: Option<&Path>,
    data_dir: &Path,
    name: &str,
    address: std::net::IpAddr,
) -> Result<Joined, JoinError> {
    let trust = cluster_trust(server, bootstrap, data_dir, ca_file).await?;
    let credential = credential(server, bootstrap, &trust, data_dir, name).await?;
    let refused = |error| JoinError::Refused {
        node: name.to_owned(),
        error,
    };
    let api = HttpApi::trusting(server, &trust)
        .map_err(refused)?
        .with_token(Some(credential.token));
    let endpoint_tls = match trust.ca_pem {
        Some(_) => {
            let addresses = vec![address];
            let key = retrying("getting the endpoint's certificate", || {
                crate::certs::request(&api, name, &addresses)
            })
            .await
            .map_err(refused)?;
            Some(crate::agent::EndpointTls {
                serving: minik_tls::ServingCert::new(key),
                api: api.clone(),
                addresses,
            })
        }
        None => None,
    };
    Ok(Joined {
        api,
        endpoint_key: minik_client::Secret::new(credential.agent_key),
        endpoint_tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_are_kept_private_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = credential_path(dir.path());
        let credential = Credential {
            node_name: "n1".into(),
            token: "node.n1.secret".into(),
            agent_key: "key".into(),
        };
        save(&path, &credential).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(&path), Some(credential.clone()));
        let shown = format!("{credential:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("key\""),
            "{shown}"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(load(&path), None);
    }
}
