//! The node's own credential (SPEC §8). A node joins once: it presents the cluster's join token
//! (or an administrator's; none from loopback when the server allows anonymous clients there)
//! at `POST /minik/v1/join` and gets its own credential for the API and the key its endpoint
//! requires from the server. Both are kept in `DATA_DIR/credential.json` (mode 0600); a restarted
//! agent uses them again, and joins anew only if the server no longer knows them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use minik_api::ApiError;
use minik_client::{HttpApi, JOIN_PATH};
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
    data_dir: &Path,
    name: &str,
) -> Result<Credential, JoinError> {
    let refused = |error| JoinError::Refused {
        node: name.to_owned(),
        error,
    };
    let api = HttpApi::new(server).map_err(refused)?;
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
    let joiner = api.with_token(bootstrap.map(str::to_owned));
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
