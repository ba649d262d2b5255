//! Who is asking (authentication) — SPEC §8.
//!
//! Every request but the health and version probes carries `Authorization: Bearer TOKEN`. The
//! tokens live in the server's `auth` directory (0700; every file 0600), made on first start:
//! - `admin-token`: full access;
//! - `join-token`: shared by the hosts that join as nodes; it can do one thing, exchange itself
//!   for a node credential (`POST /minik/v1/join`);
//! - `nodes.json`: each joined node's own credential, `node.NAME.SECRET`, and the key the
//!   server presents to that node's agent endpoint (logs, port-forward);
//! - `service-account-key`: the ECDSA P-256 key (PKCS#8 PEM) that signs service account tokens.
//!
//! A bearer token that is none of these may be a service account token (a JWT the server
//! signed, `satokens.rs`): it is accepted when its signature, times and audience verify and its
//! service account and bound pod or Secret still exist with the uids it names, and the request
//! then comes from that service account. Those lookups are two reads of the local store, so
//! nothing is cached: a deleted pod's token stops working at once (after the 60-second leeway
//! past the pod's deletion time that Kubernetes gives).
//!
//! Without a token, a request is anonymous: refused (401) unless the server allows anonymous
//! clients on loopback and the client's address is a loopback one, in which case it acts as the
//! administrator (what `minik up` does, so that curl on a laptop stays easy). Tokens are
//! compared in constant time and never logged. What each identity may do is `authz.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use minik_api::ApiError;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::answer::HttpError;
use crate::identity::Identity;
use crate::satokens::{self, SigningKey};
use crate::ApiServer;

/// The prefix of node credentials: `node.NAME.SECRET`.
const NODE_PREFIX: &str = "node.";

/// Where the tokens are and who may come in without one.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The directory of the join token and the node credentials (`DATA_DIR/auth`).
    pub dir: PathBuf,
    /// The admin token's file (default `dir/admin-token`).
    pub admin_file: Option<PathBuf>,
    /// Let clients without a token in as the administrator when they connect from a loopback
    /// address.
    pub anonymous_loopback: bool,
    /// The cluster CA's fingerprint when the API is served over HTTPS: the join token file then
    /// holds `K10<fingerprint>::SECRET`, so that a new node can check the server's CA.
    pub ca_fingerprint: Option<String>,
}

/// A joined node's secrets, as kept in `nodes.json`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSecrets {
    /// The secret part of the node's credential `node.NAME.SECRET`.
    secret: String,
    /// What the server presents to the node's agent endpoint.
    agent_key: String,
    /// Revoked by an administrator: the credential is dead, and only an administrator may
    /// join under this name again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    revoked: bool,
}

struct Secrets {
    admin: String,
    join: String,
    nodes: BTreeMap<String, NodeSecrets>,
}

/// The server's tokens, loaded at start and changed by joins and rotations.
pub struct Auth {
    config: AuthConfig,
    secrets: RwLock<Secrets>,
    /// Signs and verifies service account tokens.
    service_account_key: Arc<SigningKey>,
    /// Serializes the changes, so each file write sees the one before.
    writes: tokio::sync::Mutex<()>,
}

/// What a node gets when it joins.
#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct JoinAnswer {
    pub node_name: String,
    /// Its credential for the API.
    pub token: String,
    /// What its agent endpoint must require from the server.
    pub agent_key: String,
}

impl std::fmt::Debug for JoinAnswer {
    // Never print the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinAnswer")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// A fresh secret: 32 random bytes, hex.
fn random_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no randomness for a token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two secrets are equal, in time that depends only on their lengths.
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The token of an `Authorization` header, read strictly: RFC 6750 §2.1's
/// `"Bearer" 1*SP b64token` with the one space Kubernetes accepts (it refuses a second space
/// before the token), the scheme in any case (RFC 7235), and nothing after the token
/// (Kubernetes ignores what follows a space there; minik refuses it rather than guess what was
/// meant). b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn bearer_token(value: &HeaderValue) -> Result<&str, ApiError> {
    let malformed = || {
        ApiError::Unauthorized(
            "Unauthorized: the Authorization header must be \"Bearer TOKEN\": one space, then a \
             token of letters, digits and -._~+/ (and = at its end only), nothing after it"
                .into(),
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = value.split_at(value.find([' ', '\t']).unwrap_or(value.len()));
    if scheme.is_empty() {
        return Err(malformed());
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(format!(
            "Unauthorized: only bearer tokens are accepted, not {scheme:?}"
        )));
    }
    rest.strip_prefix(' ')
        .filter(|token| is_b64token(token))
        .ok_or_else(malformed)
}

/// RFC 6750's b64token: what a bearer token may be made of.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Reads a secret file, refusing one that others can read.
fn read_secret(path: &Path) -> std::io::Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable or writable by other users (mode {mode:o}); make it 0600 (chmod 600)",
                path.display()
            ),
        ));
    }
    Ok(Some(std::fs::read_to_string(path)?))
}

/// The token in a token file (its first line), or a new one written there.
fn load_or_make_token(path: &Path) -> std::io::Result<String> {
    load_or_make(path, None)
}

/// The secret of the join token file, or a new one written there. With the cluster CA's
/// fingerprint the file holds the token in k3s' form `K10<fingerprint>::SECRET` (re-written so
/// if it holds another form or another CA's hash); the server checks the secret.
fn load_or_make_join_token(path: &Path, ca_fingerprint: Option<&str>) -> std::io::Result<String> {
    load_or_make(path, Some(ca_fingerprint))
}

/// The secret in a token file; `join` is `Some(fingerprint)` for the join token file.
fn load_or_make(path: &Path, join: Option<Option<&str>>) -> std::io::Result<String> {
    let render = |secret: &str| {
        let hash = join.flatten().map(str::to_owned);
        minik_tls::JoinToken {
            ca_hash: hash,
            secret: secret.to_owned(),
        }
        .render()
    };
    if let Some(text) = read_secret(path)? {
        let line = text.lines().next().unwrap_or("").trim().to_owned();
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is empty; delete it to have a new token made",
                    path.display()
                ),
            ));
        }
        let token = match join {
            Some(_) => {
                minik_tls::JoinToken::parse(&line)
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })?
                    .secret
            }
            None => line.clone(),
        };
        if !is_b64token(&token) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds a token a bearer header cannot carry: use only letters, digits \
                     and -._~+/ (and = at its end), or delete the file to have a new token made",
                    path.display()
                ),
            ));
        }
        if join.is_some() && render(&token) != line {
            minik_client::write_private_file(path, &format!("{}\n", render(&token)))?;
        }
        return Ok(token);
    }
    let token = random_secret()?;
    minik_client::write_private_file(path, &format!("{}\n", render(&token)))?;
    Ok(token)
}

/// The service account signing key in `path`, or a new one written there.
fn load_or_make_signing_key(path: &Path) -> std::io::Result<SigningKey> {
    if let Some(text) = read_secret(path)? {
        return SigningKey::from_pem(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not a service account signing key: {e}; delete the file to have a new key \
                     made (the service account tokens issued so far then stop working)"
                ),
            )
        });
    }
    let (key, pem) = SigningKey::generate().map_err(std::io::Error::other)?;
    minik_client::write_private_file(path, &pem)?;
    Ok(key)
}

impl Auth {
    /// Loads the tokens under `config.dir`, making the missing ones.
    pub fn open(config: AuthConfig) -> std::io::Result<Auth> {
        let context = |what: &Path| {
            let what = what.display().to_string();
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
        };
        // Made private from the start (then made so if it existed already).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)
            .map_err(context(&config.dir))?;
        std::fs::set_permissions(&config.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(context(&config.dir))?;
        let admin_file = config.admin_file();
        let admin = load_or_make_token(&admin_file).map_err(context(&admin_file))?;
        let join_file = config.join_file();
        let join = load_or_make_join_token(&join_file, config.ca_fingerprint.as_deref())
            .map_err(context(&join_file))?;
        let nodes_file = config.nodes_file();
        let nodes = match read_secret(&nodes_file).map_err(context(&nodes_file))? {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a node credential file: {e}", nodes_file.display()),
                )
            })?,
            None => BTreeMap::new(),
        };
        let key_file = config.service_account_key_file();
        let service_account_key =
            load_or_make_signing_key(&key_file).map_err(context(&key_file))?;
        Ok(Auth {
            config,
            secrets: RwLock::new(Secrets { admin, join, nodes }),
            service_account_key: Arc::new(service_account_key),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    fn secrets(&self) -> std::sync::RwLockReadGuard<'_, Secrets> {
        // Every change replaces whole values, so a panicked writer left nothing half done.
        self.secrets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn secrets_mut(&self) -> std::sync::RwLockWriteGuard<'_, Secrets> {
        self.secrets.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Who presents `authorization` from `peer`.
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        peer: Option<IpAddr>,
    ) -> Result<Identity, ApiError> {
        let Some(value) = authorization else {
            return match peer {
                Some(ip) if self.config.anonymous_loopback && is_loopback(ip) => {
                    Ok(Identity::Admin)
                }
                _ => Err(ApiError::Unauthorized(
                    "Unauthorized: this server needs a bearer token (Authorization: Bearer TOKEN)"
                        .into(),
                )),
            };
        };
        let invalid =
            || ApiError::Unauthorized("Unauthorized: the bearer token is not valid".into());
        let token = bearer_token(value)?;
        let secrets = self.secrets();
        if let Some((name, secret)) = token
            .strip_prefix(NODE_PREFIX)
            .and_then(|rest| rest.rsplit_once('.'))
        {
            return match secrets.nodes.get(name) {
                Some(node) if !node.revoked && same(secret, &node.secret) => {
                    Ok(Identity::Node(name.to_owned()))
                }
                _ => Err(invalid()),
            };
        }
        let admin = same(token, &secrets.admin);
        let join = same(token, &secrets.join);
        match (admin, join) {
            (true, _) => Ok(Identity::Admin),
            (false, true) => Ok(Identity::Joiner),
            (false, false) => Err(invalid()),
        }
    }

    /// The key that signs and verifies service account tokens.
    pub(crate) fn service_account_key(&self) -> Arc<SigningKey> {
        self.service_account_key.clone()
    }

    /// The key the server presents to `node`'s agent endpoint, if it joined.
    pub fn agent_key(&self, node: &str) -> Option<String> {
        self.secrets()
            .nodes
            .get(node)
            .filter(|n| !n.revoked)
            .map(|n| n.agent_key.clone())
    }

    /// Gives `node` a new credential (replacing an earlier one) and keeps it on disk before
    /// answering. `may_join` decides, under the lock that orders joins and revocations, from
    /// whether the name has a credential (valid or revoked) already.
    pub async fn join<F, Fut>(&self, node: &str, may_join: F) -> Result<JoinAnswer, ApiError>
    where
        F: FnOnce(bool) -> Fut,
        Fut: std::future::Future<Output = Result<(), ApiError>>,
    {
        let _write = self.writes.lock().await;
        let known = self.secrets().nodes.contains_key(node);
        may_join(known).await?;
        let fresh = NodeSecrets {
            secret: random_secret().map_err(internal)?,
            agent_key: random_secret().map_err(internal)?,
            revoked: false,
        };
        let mut nodes = self.secrets().nodes.clone();
        nodes.insert(node.to_owned(), fresh.clone());
        self.save_nodes(&nodes)?;
        self.secrets_mut().nodes = nodes;
        Ok(JoinAnswer {
            node_name: node.to_owned(),
            token: format!("{NODE_PREFIX}{node}.{}", fresh.secret),
            agent_key: fresh.agent_key,
        })
    }

    /// Takes `node`'s credential away, leaving a mark so that only an administrator may join
    /// under its name again (the host it was taken from may hold the join token too); false
    /// when it had none.
    pub async fn revoke(&self, node: &str) -> Result<bool, ApiError> {
        let _write = self.writes.lock().await;
        let mut nodes = self.secrets().nodes.clone();
        match nodes.get_mut(node) {
            Some(record) if !record.revoked => record.revoked = true,
            _ => return Ok(false),
        }
        self.save_nodes(&nodes)?;
        self.secrets_mut().nodes = nodes;
        Ok(true)
    }

    /// Replaces the admin or the join token; answers the new one as its file holds it (the join
    /// token in its `K10<CA hash>::SECRET` form over HTTPS) and its file.
    pub async fn rotate(&self, which: TokenKind) -> Result<(String, PathBuf), ApiError> {
        let _write = self.writes.lock().await;
        let token = random_secret().map_err(internal)?;
        let path = match which {
            TokenKind::Admin => self.config.admin_file(),
            TokenKind::Join => self.config.join_file(),
        };
        let path_copy = path.clone();
        let text = match which {
            TokenKind::Admin => format!("{token}\n"),
            TokenKind::Join => format!(
                "{}\n",
                minik_tls::JoinToken {
                    ca_hash: self.config.ca_fingerprint.clone(),
                    secret: token.clone(),
                }
                .render()
            ),
        };
        let shown = text.trim().to_owned();
        tokio::task::spawn_blocking(move || minik_client::write_private_file(&path_copy, &text))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(internal)?;
        let mut secrets = self.secrets_mut();
        match which {
            TokenKind::Admin => secrets.admin = token.clone(),
            TokenKind::Join => secrets.join = token.clone(),
        }
        Ok((shown, path))
    }

    fn save_nodes(&self, nodes: &BTreeMap<String, NodeSecrets>) -> Result<(), ApiError> {
        let text = serde_json::to_string_pretty(nodes).map_err(|e| internal(e.into()))?;
        minik_client::write_private_file(&self.config.nodes_file(), &text).map_err(internal)
    }
}

/// The tokens that can be rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    Join,
}

impl AuthConfig {
    pub fn admin_file(&self) -> PathBuf {
        self.admin_file
            .clone()
            .unwrap_or_else(|| self.dir.join("admin-token"))
    }

    pub fn join_file(&self) -> PathBuf {
        self.dir.join("join-token")
    }

    fn nodes_file(&self) -> PathBuf {
        self.dir.join("nodes.json")
    }

    /// The service account signing key's file, `dir/service-account-key`.
    pub fn service_account_key_file(&self) -> PathBuf {
        self.dir.join(satokens::KEY_FILE)
    }
}

fn internal(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("cannot keep the tokens: {e}"))
}

/// Loopback, including IPv4-mapped IPv6 loopback (`::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The paths anyone may reach without credentials, as Kubernetes' `system:public-info-viewer`.
/// `/cacerts` is the cluster CA certificate (as k3s serves it), which a new node fetches to
/// check against its join token's hash before it trusts the server.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/" | crate::tokens::CACERTS_PATH
    )
}

/// Whether an identity that is not the administrator may reach a path outside `/api` and
/// `/apis` resources: discovery and OpenAPI documents for nodes; the join for joiners; the
/// cluster's network settings (`GET /minik/v1/network`) for everyone but joiners.
fn may_reach(identity: &Identity, method: &axum::http::Method, path: &str) -> bool {
    let network = path == minik_api::network::NETWORK_PATH && method == axum::http::Method::GET;
    match identity {
        Identity::Admin => true,
        Identity::Joiner => path == minik_client::JOIN_PATH && method == axum::http::Method::POST,
        Identity::Node(node) => {
            !path.starts_with("/minik/")
                || network
                || (path == crate::tokens::serving_certificate_path(node)
                    && method == axum::http::Method::POST)
        }
        Identity::ServiceAccount { .. } | Identity::User { .. } => {
            !path.starts_with("/minik/") || network
        }
    }
}

/// The service account whose bound token `authorization` carries, when the token verifies
/// (`satokens::verify`) and its service account and bound object are still the ones it was
/// issued for (`satokens::check_bound`). Why a token is refused is logged at debug level; the
/// client gets the same 401 as for any token that is nobody's.
async fn service_account(
    server: &ApiServer,
    authorization: Option<&HeaderValue>,
) -> Option<Identity> {
    let token = bearer_token(authorization?).ok()?;
    // Only a JWT (three parts) can be one; other tokens that matched nothing stop here.
    if token.split('.').count() != 3 {
        return None;
    }
    let key = server.service_account_key.as_deref()?;
    match bound_identity(server, key, token, satokens::now_seconds()).await {
        Ok(identity) => Some(identity),
        Err(reason) => {
            tracing::debug!(%reason, "a service account token was refused");
            None
        }
    }
}

/// The identity of service account `token` at `now`, or why it is not valid.
async fn bound_identity(
    server: &ApiServer,
    key: &SigningKey,
    token: &str,
    now: i64,
) -> Result<Identity, String> {
    let claims = satokens::verify(key, token, now)?;
    let k = &claims.kubernetes;
    let ns = k.namespace.as_str();
    let account = satokens::stored(server, "serviceaccounts", ns, &k.serviceaccount.name)
        .await
        .map_err(|e| e.to_string())?;
    satokens::check_bound("ServiceAccount", &k.serviceaccount, account.as_ref(), now)?;
    if let Some(pod) = &k.pod {
        let stored = satokens::stored(server, "pods", ns, &pod.name)
            .await
            .map_err(|e| e.to_string())?;
        satokens::check_bound("Pod", pod, stored.as_ref(), now)?;
    }
    if let Some(secret) = &k.secret {
        let stored = satokens::stored(server, "secrets", ns, &secret.name)
            .await
            .map_err(|e| e.to_string())?;
        satokens::check_bound("Secret", secret, stored.as_ref(), now)?;
    }
    Ok(Identity::ServiceAccount {
        namespace: k.namespace.clone(),
        name: k.serviceaccount.name.clone(),
    })
}

/// Who a client certificate of the cluster CA names (Kubernetes' x509 authenticator: CN the
/// user, O the groups): the administrator for the `system:masters` group, a node for
/// `system:node:NAME` in `system:nodes`, any other user by name (who may reach discovery only,
/// until minik has RBAC).
fn certificate_identity(who: &minik_tls::ClientIdentity) -> Identity {
    let in_group = |g: &str| who.groups.iter().any(|group| group == g);
    if in_group(crate::tls::MASTERS_GROUP) {
        return Identity::Admin;
    }
    if let Some(node) = who.user.strip_prefix("system:node:") {
        if in_group(crate::tls::NODES_GROUP) && !node.is_empty() {
            return Identity::Node(node.to_owned());
        }
    }
    Identity::User {
        name: who.user.clone(),
        groups: who.groups.clone(),
    }
}

/// The middleware that authenticates every request (but the public ones) and records its
/// [`Identity`] in the request's extensions; resource handlers authorize with it (`authz.rs`).
pub async fn guard(
    State(server): State<Arc<ApiServer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = server.auth.as_ref() else {
        request.extensions_mut().insert(Identity::Admin);
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let authorization = request.headers().get(header::AUTHORIZATION);
    let certificate = request
        .extensions()
        .get::<crate::limits::ClientCertificate>()
        .map(|c| certificate_identity(&c.0));
    // A client certificate (verified in the handshake) comes first, as in Kubernetes' chain
    // of authenticators; then the server's tokens; then service account tokens.
    let authenticated = match certificate {
        Some(identity) => Ok(identity),
        None => auth.authenticate(authorization, peer),
    };
    let identity = match authenticated {
        Ok(identity) => identity,
        // After the server's own tokens, a service account's.
        Err(e) => match service_account(&server, authorization).await {
            Some(identity) => identity,
            None => return HttpError(e).into_response(),
        },
    };
    if !may_reach(&identity, request.method(), request.uri().path()) {
        return HttpError(crate::authz::forbidden_path(
            &identity,
            request.method(),
            request.uri().path(),
        ))
        .into_response();
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, anonymous_loopback: bool) -> Auth {
        Auth::open(AuthConfig {
            dir: dir.join("auth"),
            admin_file: None,
            anonymous_loopback,
            ca_fingerprint: None,
        })
        .unwrap()
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));

    #[test]
    fn tokens_are_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let auth = open(dir.path(), false);
        let admin_file = dir.path().join("auth/admin-token");
        let mode = std::fs::metadata(&admin_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("auth"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let admin = std::fs::read_to_string(&admin_file).unwrap();
        assert_eq!(admin.trim().len(), 64);
        assert_eq!(
            auth.authenticate(Some(&bearer(admin.trim())), REMOTE),
            Ok(Identity::Admin)
        );
        // A second start reads the same tokens.
        let again = open(dir.path(), false);
        assert_eq!(
            again.authenticate(Some(&bearer(admin.trim())), REMOTE),
            Ok(Identity::Admin)
        );
        // A token file others can read is refused, naming the file and the fix.
        std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Auth::open(AuthConfig {
            dir: dir.path().join("auth"),
            admin_file: None,
            anonymous_loopback: false,
            ca_fingerprint: None,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("admin-token") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_join_token_file_carries_the_ca_fingerprint_and_the_secret_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let config = |fingerprint: Option<&str>| AuthConfig {
            dir: dir.path().join("auth"),
            admin_file: None,
            anonymous_loopback: false,
            ca_fingerprint: fingerprint.map(str::to_owned),
        };
        let first = "a".repeat(64);
        let auth = Auth::open(config(Some(&first))).unwrap();
        let text = std::fs::read_to_string(auth.config.join_file()).unwrap();
        let token = minik_tls::JoinToken::parse(&text).unwrap();
        assert_eq!(token.ca_hash.as_deref(), Some(first.as_str()));
        assert_eq!(
            auth.authenticate(Some(&bearer(&token.secret)), None)
                .unwrap(),
            Identity::Joiner
        );
        // A new CA rewrites the file with the same secret; without TLS the bare secret stays.
        let second = "b".repeat(64);
        let again = Auth::open(config(Some(&second))).unwrap();
        let text = std::fs::read_to_string(again.config.join_file()).unwrap();
        assert_eq!(text.trim(), format!("K10{second}::{}", token.secret));
        Auth::open(config(None)).unwrap();
        let text = std::fs::read_to_string(again.config.join_file()).unwrap();
        assert_eq!(text.trim(), token.secret);
        // Rotation keeps the form.
        let auth = Auth::open(config(Some(&first))).unwrap();
        let (new, path) = auth.rotate(TokenKind::Join).await.unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.trim(), new);
        let secret = minik_tls::JoinToken::parse(&new).unwrap().secret;
        assert_eq!(new, format!("K10{first}::{secret}"));
        assert_eq!(
            auth.authenticate(Some(&bearer(&secret)), None).unwrap(),
            Identity::Joiner
        );
    }

    #[test]
    fn anonymous_only_from_loopback_and_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let strict = open(dir.path(), false);
        assert_eq!(strict.authenticate(None, LOOPBACK).unwrap_err().code(), 401);
        let relaxed = open(dir.path(), true);
        assert_eq!(relaxed.authenticate(None, LOOPBACK), Ok(Identity::Admin));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            relaxed.authenticate(None, Some(mapped)),
            Ok(Identity::Admin)
        );
        assert_eq!(relaxed.authenticate(None, REMOTE).unwrap_err().code(), 401);
        assert_eq!(relaxed.authenticate(None, None).unwrap_err().code(), 401);
        // A wrong token is refused even from loopback.
        assert_eq!(
            relaxed
                .authenticate(Some(&bearer("nope")), LOOPBACK)
                .unwrap_err()
                .code(),
            401
        );
        let basic = HeaderValue::from_static("Basic YWRtaW46YWRtaW4=");
        let err = relaxed.authenticate(Some(&basic), LOOPBACK).unwrap_err();
        assert!(err.to_string().contains("bearer"), "{err}");
    }

    #[test]
    fn bearer_headers_are_read_strictly_as_rfc_6750_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let auth = open(dir.path(), false);
        let admin = std::fs::read_to_string(dir.path().join("auth/admin-token")).unwrap();
        let admin = admin.trim();
        let header = |text: &str| HeaderValue::from_str(text).unwrap();
        for good in [
            format!("Bearer {admin}"),
            format!("bearer {admin}"),
            format!("BEARER {admin}"),
        ] {
            assert_eq!(
                auth.authenticate(Some(&header(&good)), REMOTE),
                Ok(Identity::Admin),
                "{good}"
            );
        }
        for malformed in [
            format!("Bearer  {admin}"),
            format!("Bearer {admin} "),
            format!("Bearer {admin}  "),
            format!("Bearer\t{admin}"),
            format!("Bearer {admin} extra"),
            format!(" Bearer {admin}"),
            format!("Bearer {admin},"),
            format!("Bearer ={admin}"),
            format!("Bearer {admin}=x"),
            "Bearer".into(),
            "Bearer ".into(),
            "Bearer =".into(),
        ] {
            let err = auth
                .authenticate(Some(&header(&malformed)), REMOTE)
                .unwrap_err();
            assert_eq!(err.code(), 401, "{malformed:?}");
            assert!(
                err.to_string().contains("must be \"Bearer TOKEN\""),
                "{malformed:?}: {err}"
            );
        }
        // A well-formed token that is nobody's, and another scheme.
        let err = auth
            .authenticate(Some(&header("Bearer abc-._~+/==")), REMOTE)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unauthorized: the bearer token is not valid"
        );
        let err = auth
            .authenticate(Some(&header("Token abc")), REMOTE)
            .unwrap_err();
        assert!(err.to_string().contains("not \"Token\""), "{err}");
        // A token file a header cannot carry is refused at start, naming the file.
        let own = dir.path().join("own-token");
        minik_client::write_private_file(&own, "not a token\n").unwrap();
        let err = Auth::open(AuthConfig {
            dir: dir.path().join("auth"),
            admin_file: Some(own),
            anonymous_loopback: false,
            ca_fingerprint: None,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("own-token") && err.contains("-._~+/"), "{err}");
    }

    #[tokio::test]
    async fn nodes_join_get_their_own_identity_and_can_be_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let auth = open(dir.path(), false);
        let join = std::fs::read_to_string(dir.path().join("auth/join-token")).unwrap();
        assert_eq!(
            auth.authenticate(Some(&bearer(join.trim())), REMOTE),
            Ok(Identity::Joiner)
        );
        let a = auth.join("node-a", |_| async { Ok(()) }).await.unwrap();
        let shown = format!("{a:?}");
        assert!(
            !shown.contains(&a.agent_key) && !shown.contains(&a.token),
            "{shown}"
        );
        let b = auth.join("node.b", |_| async { Ok(()) }).await.unwrap();
        assert_eq!(
            auth.authenticate(Some(&bearer(&a.token)), REMOTE),
            Ok(Identity::Node("node-a".into()))
        );
        // Dots in node names are fine.
        assert_eq!(
            auth.authenticate(Some(&bearer(&b.token)), REMOTE),
            Ok(Identity::Node("node.b".into()))
        );
        // One node's secret under another's name is nobody.
        let secret_a = a.token.rsplit_once('.').unwrap().1;
        let forged = format!("node.node.b.{secret_a}");
        assert_eq!(
            auth.authenticate(Some(&bearer(&forged)), REMOTE)
                .unwrap_err()
                .code(),
            401
        );
        // Kept across restarts.
        let again = open(dir.path(), false);
        assert_eq!(
            again.authenticate(Some(&bearer(&a.token)), REMOTE),
            Ok(Identity::Node("node-a".into()))
        );
        assert_eq!(again.agent_key("node-a"), Some(a.agent_key.clone()));
        assert!(auth.revoke("node-a").await.unwrap());
        assert!(!auth.revoke("node-a").await.unwrap());
        assert_eq!(
            auth.authenticate(Some(&bearer(&a.token)), REMOTE)
                .unwrap_err()
                .code(),
            401
        );
        assert!(open(dir.path(), false).agent_key("node-a").is_none());
    }

    #[test]
    fn the_service_account_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let auth = open(dir.path(), false);
        let file = dir.path().join("auth/service-account-key");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        let kid = auth.service_account_key().kid().to_owned();
        assert_eq!(open(dir.path(), false).service_account_key().kid(), kid);
        // A key others can read is refused, as the tokens are; so is one that is not a key.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let config = AuthConfig {
            dir: dir.path().join("auth"),
            admin_file: None,
            anonymous_loopback: false,
            ca_fingerprint: None,
        };
        let err = Auth::open(config.clone()).err().unwrap().to_string();
        assert!(
            err.contains("service-account-key") && err.contains("chmod 600"),
            "{err}"
        );
        minik_client::write_private_file(&file, "junk\n").unwrap();
        let err = Auth::open(config).err().unwrap().to_string();
        assert!(
            err.contains("service-account-key") && err.contains("delete the file"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rotation_replaces_the_old_token_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let auth = open(dir.path(), false);
        let old = std::fs::read_to_string(dir.path().join("auth/join-token")).unwrap();
        let (new, path) = auth.rotate(TokenKind::Join).await.unwrap();
        assert_eq!(path, dir.path().join("auth/join-token"));
        assert_ne!(old.trim(), new);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), new);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            auth.authenticate(Some(&bearer(old.trim())), REMOTE)
                .unwrap_err()
                .code(),
            401
        );
        assert_eq!(
            auth.authenticate(Some(&bearer(&new)), REMOTE),
            Ok(Identity::Joiner)
        );
    }
}
