//! The OCI distribution protocol, pull side: resolve a reference to a manifest (through an
//! index when there is one, for this host's platform) and download blobs, verifying every byte
//! against its digest; over each endpoint of the registry in turn (mirrors first), with the
//! bearer-token and basic authentication registries ask for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::auth::{parse_www_authenticate, Challenge, Credential, Scheme};
use crate::manifest::{self, Descriptor, Fetched, Manifest, Platform, MANIFEST_ACCEPT};
use crate::registries::{Endpoint, RegistriesConfig, TlsConfig};
use crate::{Digest, ImageError, Reference, Verifier};

/// The largest manifest or index accepted (as distribution's own limit).
const MANIFEST_LIMIT: u64 = 4 << 20;
/// The largest image configuration read into memory.
const CONFIG_LIMIT: u64 = 16 << 20;
/// How much of an error body is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for the next bytes of an answer (not for a whole blob).
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a token lives when the token server does not say (the distribution spec's value).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("minik/", env!("CARGO_PKG_VERSION"));

/// Pulls manifests and blobs from registries, as `registries.yaml` routes them.
pub struct RegistryClient {
    config: RegistriesConfig,
    use_default_endpoint: bool,
    /// One HTTP client per distinct TLS configuration, made when first needed.
    clients: Mutex<Vec<(TlsConfig, reqwest::Client)>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

/// A bearer token is cached per endpoint, scope and the credential it was issued for: a token
/// got with one pod's pull secret is never used for a pull without it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    endpoint: String,
    scope: String,
    credential: Option<Credential>,
}

struct CachedToken {
    token: String,
    renew_at: Instant,
}

/// The endpoint that answered a [`RegistryClient::resolve`], and how it authenticates: blobs
/// are fetched from it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The endpoint's base URL (`https://mirror.example.com`, without `/v2`).
    url: String,
    /// `host[:port]`, naming the registry in errors.
    host: String,
    client: reqwest::Client,
    /// The credentials to try when the endpoint asks (its own, then the pull's); once one
    /// worked, only that one.
    candidates: Vec<Option<Credential>>,
    /// The credential in use (`None`: anonymous).
    credential: Option<Credential>,
    /// The endpoint's challenge, once it sent one.
    challenge: Option<Challenge>,
}

impl Source {
    /// The base URL of the endpoint that answered (a mirror's, or the registry's).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host[:port]` of that endpoint.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// What a reference resolved to.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The endpoint that answered; fetch the blobs from it.
    pub source: Source,
    /// The digest of what the tag points to (the index, or the manifest when there is no
    /// index): the repo digest, `name@digest`.
    pub digest: Digest,
    /// The digest of the image manifest for this platform.
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// The manifest as served (its digest is `manifest_digest`).
    pub manifest_bytes: Vec<u8>,
}

/// What a request was for, to name in a 404.
#[derive(Clone, Copy)]
enum Wanted<'a> {
    Manifest,
    Blob(&'a Digest),
}

impl RegistryClient {
    /// A client for the registries of `config`; `use_default_endpoint: false` leaves out the
    /// default endpoint of registries that have mirrors (see [`RegistriesConfig::endpoints`]).
    pub fn new(
        config: RegistriesConfig,
        use_default_endpoint: bool,
    ) -> Result<RegistryClient, ImageError> {
        let default = TlsConfig::default();
        let client = build_client(&default)?;
        Ok(RegistryClient {
            config,
            use_default_endpoint,
            clients: Mutex::new(vec![(default, client)]),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client for a TLS configuration.
    fn client_for(&self, tls: &TlsConfig) -> Result<reqwest::Client, ImageError> {
        let mut clients = lock(&self.clients);
        if let Some((_, client)) = clients.iter().find(|(t, _)| t == tls) {
            return Ok(client.clone());
        }
        let client = build_client(tls)?;
        clients.push((tls.clone(), client.clone()));
        Ok(client)
    }

    /// Resolves `reference` to the image manifest for `platform`: tries each endpoint of its
    /// registry in order (mirrors first) until one answers. A reference with a digest gets
    /// exactly that content. `credentials` (from pull secrets) are tried after the endpoint's
    /// own (from `registries.yaml`) when the endpoint asks for authentication.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
        credentials: &[Credential],
    ) -> Result<Resolved, ImageError> {
        let image = reference.to_string();
        let endpoints = self
            .config
            .endpoints(reference.registry(), self.use_default_endpoint);
        let mut attempts = Vec::new();
        for endpoint in endpoints {
            match self
                .resolve_at(&endpoint, reference, &image, platform, credentials)
                .await
            {
                Ok(resolved) => return Ok(resolved),
                Err(e) => {
                    tracing::debug!(image = %image, endpoint = %endpoint.url, error = %e, "endpoint failed");
                    attempts.push((endpoint.url, e));
                }
            }
        }
        match attempts.len() {
            0 => Err(ImageError::Unreachable {
                registry: reference.registry().to_string(),
                error: "no endpoint to pull from".to_string(),
            }),
            1 => Err(attempts.remove(0).1),
            _ => Err(ImageError::Attempts { image, attempts }),
        }
    }

    async fn resolve_at(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        image: &str,
        platform: &Platform,
        credentials: &[Credential],
    ) -> Result<Resolved, ImageError> {
        let mut candidates: Vec<Option<Credential>> = Vec::new();
        for credential in endpoint.auth.iter().chain(credentials) {
            if !candidates.iter().flatten().any(|c| c == credential) {
                candidates.push(Some(credential.clone()));
            }
        }
        if candidates.is_empty() {
            candidates.push(None);
        }
        let mut source = Source {
            url: endpoint.url.trim_end_matches('/').to_string(),
            host: endpoint.host.clone(),
            client: self.client_for(&endpoint.tls)?,
            candidates,
            credential: None,
            challenge: None,
        };
        let repository = reference.repository();
        let (bytes, content_type) = self
            .get_manifest(&mut source, repository, image, &reference.tag_or_digest())
            .await?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = reference.digest() {
            if &digest != expected {
                return Err(ImageError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let entries = match manifest::parse(image, content_type.as_deref(), &bytes)? {
            Fetched::Manifest(manifest) => {
                return Ok(Resolved {
                    source,
                    manifest_digest: digest.clone(),
                    digest,
                    manifest,
                    manifest_bytes: bytes,
                })
            }
            Fetched::Index(entries) => entries,
        };
        let chosen = manifest::choose(image, &entries, platform)?.clone();
        if chosen.size > MANIFEST_LIMIT {
            return Err(ImageError::BadManifest {
                image: image.to_string(),
                why: format!(
                    "the index lists a manifest of {} bytes for {platform} (limit {MANIFEST_LIMIT})",
                    chosen.size
                ),
            });
        }
        let (manifest_bytes, content_type) = self
            .get_manifest(&mut source, repository, image, &chosen.digest.to_string())
            .await?;
        let manifest_digest = Digest::of(&manifest_bytes);
        if manifest_digest != chosen.digest {
            return Err(ImageError::DigestMismatch {
                expected: chosen.digest,
                actual: manifest_digest,
            });
        }
        if manifest_bytes.len() as u64 != chosen.size {
            return Err(ImageError::SizeMismatch {
                digest: chosen.digest,
                expected: chosen.size,
                actual: manifest_bytes.len() as u64,
            });
        }
        let content_type = content_type.unwrap_or(chosen.media_type);
        match manifest::parse(image, Some(&content_type), &manifest_bytes)? {
            Fetched::Manifest(manifest) => Ok(Resolved {
                source,
                digest,
                manifest_digest,
                manifest,
                manifest_bytes,
            }),
            Fetched::Index(_) => Err(ImageError::BadManifest {
                image: image.to_string(),
                why: format!("the index entry for {platform} is an index itself"),
            }),
        }
    }

    /// GETs `manifests/{reference}`: its bytes (at most [`MANIFEST_LIMIT`]) and content type.
    async fn get_manifest(
        &self,
        source: &mut Source,
        repository: &str,
        image: &str,
        tag_or_digest: &str,
    ) -> Result<(Vec<u8>, Option<String>), ImageError> {
        let url = format!("{}/v2/{repository}/manifests/{tag_or_digest}", source.url);
        let response = self
            .send(source, repository, image, &url, Some(MANIFEST_ACCEPT))
            .await?;
        if !response.status().is_success() {
            return Err(failure(response, image, &source.host, Wanted::Manifest).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let host = source.host.clone();
        let bytes = read_limited(response, MANIFEST_LIMIT)
            .await
            .map_err(|e| match e {
                Limited::TooLarge => ImageError::BadManifest {
                    image: image.to_string(),
                    why: format!("manifest larger than {MANIFEST_LIMIT} bytes"),
                },
                Limited::Http(e) => unreachable_error(&host, &e),
            })?;
        Ok((bytes, content_type))
    }

    /// Downloads the blob `descriptor` names from `source` into `out` (from its current
    /// position), checking size and digest as the bytes arrive; flushes and syncs `out`.
    /// Answers the bytes written. On an error, `out` holds a partial or wrong blob: discard it.
    pub async fn fetch_blob(
        &self,
        source: &Source,
        reference: &Reference,
        descriptor: &Descriptor,
        out: &mut tokio::fs::File,
    ) -> Result<u64, ImageError> {
        let image = reference.to_string();
        let mut response = self.get_blob(source, reference, &image, descriptor).await?;
        let digest = &descriptor.digest;
        let expected = descriptor.size;
        if let Some(length) = response.content_length().filter(|l| *l > expected) {
            return Err(ImageError::SizeMismatch {
                digest: digest.clone(),
                expected,
                actual: length,
            });
        }
        let mut verifier = Verifier::new(());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let total = verifier.written() + chunk.len() as u64;
                    if total > expected {
                        return Err(ImageError::SizeMismatch {
                            digest: digest.clone(),
                            expected,
                            actual: total,
                        });
                    }
                    out.write_all(&chunk)
                        .await
                        .map_err(ImageError::io(format!("writing blob {digest}")))?;
                    verifier.update(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(ImageError::Unreachable {
                        registry: source.host.clone(),
                        error: format!(
                        "blob {digest}: no data for {READ_TIMEOUT:?} after {} of {expected} bytes",
                        verifier.written()
                    ),
                    })
                }
                Err(e) => {
                    // The connection ended early: the blob is short.
                    tracing::debug!(blob = %digest, error = %error_chain(&e), "blob body ended early");
                    break;
                }
            }
        }
        let written = verifier.written();
        verifier.verify(digest, Some(expected))?;
        out.flush()
            .await
            .map_err(ImageError::io(format!("writing blob {digest}")))?;
        out.sync_all()
            .await
            .map_err(ImageError::io(format!("syncing blob {digest}")))?;
        Ok(written)
    }

    /// Downloads a small blob (an image configuration) into memory, verified.
    pub async fn fetch_config(
        &self,
        source: &Source,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Vec<u8>, ImageError> {
        let image = reference.to_string();
        if descriptor.size > CONFIG_LIMIT {
            return Err(ImageError::BadManifest {
                image,
                why: format!(
                    "image configuration of {} bytes (limit {CONFIG_LIMIT})",
                    descriptor.size
                ),
            });
        }
        let response = self.get_blob(source, reference, &image, descriptor).await?;
        let bytes = read_limited(response, descriptor.size)
            .await
            .map_err(|e| match e {
                Limited::TooLarge => ImageError::SizeMismatch {
                    digest: descriptor.digest.clone(),
                    expected: descriptor.size,
                    actual: descriptor.size + 1,
                },
                Limited::Http(e) => unreachable_error(&source.host, &e),
            })?;
        let mut verifier = Verifier::new(());
        verifier.update(&bytes);
        verifier.verify(&descriptor.digest, Some(descriptor.size))?;
        Ok(bytes)
    }

    /// GETs `blobs/{digest}` (following redirects to storage); a success or the error.
    async fn get_blob(
        &self,
        source: &Source,
        reference: &Reference,
        image: &str,
        descriptor: &Descriptor,
    ) -> Result<reqwest::Response, ImageError> {
        let mut source = source.clone();
        let repository = reference.repository();
        let url = format!("{}/v2/{repository}/blobs/{}", source.url, descriptor.digest);
        let response = self
            .send(&mut source, repository, image, &url, None)
            .await?;
        if !response.status().is_success() {
            return Err(failure(
                response,
                image,
                &source.host,
                Wanted::Blob(&descriptor.digest),
            )
            .await);
        }
        Ok(response)
    }

    /// Sends a GET with the source's authentication; on a 401 with a challenge, authenticates
    /// with each candidate credential in turn and sends again. Answers the first response that
    /// is not a refusal of the credentials (any status: the caller classifies it).
    async fn send(
        &self,
        source: &mut Source,
        repository: &str,
        image: &str,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ImageError> {
        let scope = format!("repository:{repository}:pull");
        let response = self.request(source, &scope, url, accept, image).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_www_authenticate);
        let mut message = error_message(response).await;
        let Some(challenge) = challenge else {
            return Err(ImageError::Unauthorized {
                image: image.to_string(),
                registry: source.host.clone(),
                message: format!("{message} (401 without a challenge this client understands)"),
            });
        };
        // The token just refused, if the request carried one: renewed, not reused.
        let mut refused = match &source.challenge {
            Some(c) if c.scheme == Scheme::Bearer => Some(source.credential.clone()),
            _ => None,
        };
        'candidates: for candidate in source.candidates.clone() {
            // A cached token may be stale (a restarted registry): one more try with a new one.
            for _ in 0..2 {
                let fresh = match challenge.scheme {
                    Scheme::Bearer => {
                        if refused.as_ref() == Some(&candidate) {
                            self.forget_token(source, &scope, candidate.as_ref());
                        }
                        match self
                            .token(source, &challenge, &scope, candidate.as_ref(), image)
                            .await
                        {
                            Ok((_, new)) => new,
                            Err(ImageError::Unauthorized { message: m, .. }) => {
                                message = m;
                                continue 'candidates;
                            }
                            Err(other) => return Err(other),
                        }
                    }
                    Scheme::Basic => {
                        if !matches!(candidate, Some(Credential::Basic { .. })) {
                            message = "the registry wants a username and password".to_string();
                            continue 'candidates;
                        }
                        true
                    }
                };
                source.challenge = Some(challenge.clone());
                source.credential = candidate.clone();
                let response = self.request(source, &scope, url, accept, image).await?;
                if matches!(
                    response.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    message = error_message(response).await;
                    if fresh {
                        continue 'candidates;
                    }
                    refused = Some(candidate.clone());
                    continue;
                }
                source.candidates = vec![candidate];
                return Ok(response);
            }
        }
        Err(ImageError::Unauthorized {
            image: image.to_string(),
            registry: source.host.clone(),
            message,
        })
    }

    /// One GET with the source's current authentication.
    async fn request(
        &self,
        source: &Source,
        scope: &str,
        url: &str,
        accept: Option<&str>,
        image: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let mut request = source.client.get(url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        match (&source.challenge, &source.credential) {
            (Some(challenge), credential) if challenge.scheme == Scheme::Bearer => {
                let (token, _) = self
                    .token(source, challenge, scope, credential.as_ref(), image)
                    .await?;
                request = request.bearer_auth(token);
            }
            (Some(_), Some(Credential::Basic { username, password })) => {
                request = request.basic_auth(username, Some(password));
            }
            _ => {}
        }
        request
            .send()
            .await
            .map_err(|e| unreachable_error(&source.host, &e))
    }

    fn forget_token(&self, source: &Source, scope: &str, credential: Option<&Credential>) {
        lock(&self.tokens).remove(&TokenKey {
            endpoint: source.url.clone(),
            scope: scope.to_string(),
            credential: credential.cloned(),
        });
    }

    /// A bearer token for `scope` at the source's endpoint: the cached one while it lives,
    /// else a new one from the challenge's realm, got with `credential` (anonymously without);
    /// and whether it is new.
    async fn token(
        &self,
        source: &Source,
        challenge: &Challenge,
        scope: &str,
        credential: Option<&Credential>,
        image: &str,
    ) -> Result<(String, bool), ImageError> {
        let key = TokenKey {
            endpoint: source.url.clone(),
            scope: scope.to_string(),
            credential: credential.cloned(),
        };
        if let Some(cached) = lock(&self.tokens).get(&key) {
            if Instant::now() < cached.renew_at {
                return Ok((cached.token.clone(), false));
            }
        }
        let unauthorized = |message: String| ImageError::Unauthorized {
            image: image.to_string(),
            registry: source.host.clone(),
            message,
        };
        let realm = challenge
            .realm
            .as_deref()
            .ok_or_else(|| unauthorized("a bearer challenge without a realm".to_string()))?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| unauthorized(format!("bearer realm {realm:?}: {e}")))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(unauthorized(format!(
                "bearer realm {realm:?} is not HTTP(S)"
            )));
        }
        let request = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "minik"),
                    ("scope", scope),
                ];
                if let Some(service) = challenge.service.as_deref() {
                    form.push(("service", service));
                }
                source.client.post(url).form(&form)
            }
            other => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = challenge.service.as_deref() {
                        query.append_pair("service", service);
                    }
                    query.append_pair("scope", scope);
                }
                let request = source.client.get(url);
                match other {
                    Some(Credential::Basic { username, password }) => {
                        request.basic_auth(username, Some(password))
                    }
                    _ => request,
                }
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable_error(&source.host, &e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let message = error_message(response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    unauthorized(format!("token server: {message}"))
                }
                StatusCode::TOO_MANY_REQUESTS => ImageError::TooManyRequests {
                    registry: source.host.clone(),
                    retry_after,
                },
                _ => ImageError::Registry {
                    registry: source.host.clone(),
                    status: status.as_u16(),
                    message: format!("token server: {message}"),
                },
            });
        }
        let body = read_limited(response, ERROR_BODY_LIMIT)
            .await
            .map_err(|e| match e {
                Limited::TooLarge => unauthorized("token answer too large".to_string()),
                Limited::Http(e) => unreachable_error(&source.host, &e),
            })?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| unauthorized(format!("token server answered something else: {e}")))?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| unauthorized("the token server answered no token".to_string()))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .max(DEFAULT_TOKEN_LIFETIME);
        lock(&self.tokens).insert(
            key,
            CachedToken {
                token: token.clone(),
                renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
            },
        );
        Ok((token, true))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn build_client(tls: &TlsConfig) -> Result<reqwest::Client, ImageError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ImageError::Config {
            source_name: path.display().to_string(),
            why: e.to_string(),
        })
    };
    let bad = |path: &std::path::Path, why: String| ImageError::Config {
        source_name: path.display().to_string(),
        why,
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(10));
    if let Some(ca_file) = &tls.ca_file {
        let certificates = reqwest::Certificate::from_pem_bundle(&read(ca_file)?).map_err(|e| {
            bad(
                ca_file,
                format!("not PEM certificates: {}", error_chain(&e)),
            )
        })?;
        if certificates.is_empty() {
            return Err(bad(ca_file, "no certificate in the CA file".to_string()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let mut pem = read(cert_file)?;
            pem.push(b'\n');
            pem.extend(read(key_file)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                bad(
                    cert_file,
                    format!(
                        "client certificate and key {}: {}",
                        key_file.display(),
                        error_chain(&e)
                    ),
                )
            })?;
            builder = builder.identity(identity);
        }
        (Some(file), None) | (None, Some(file)) => {
            return Err(bad(
                file,
                "a client certificate needs both cert_file and key_file".to_string(),
            ))
        }
        (None, None) => {}
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| ImageError::Config {
        source_name: "HTTP client".to_string(),
        why: error_chain(&e),
    })
}

/// An error with its causes (`error sending request: connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn unreachable_error(host: &str, e: &reqwest::Error) -> ImageError {
    ImageError::Unreachable {
        registry: host.to_string(),
        error: error_chain(e),
    }
}

enum Limited {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a whole body of at most `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, Limited> {
    if response.content_length().is_some_and(|l| l > limit) {
        return Err(Limited::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Limited::Http)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Limited::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// The registry's errors body (`{"errors":[{"code":..,"message":..}]}`).
#[derive(serde::Deserialize)]
struct ErrorsBody {
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What an error answer says: the codes and messages of its errors body, else its text, else
/// its status.
async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    let body = read_limited(response, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    describe_error_body(status, &body).1
}

/// The error codes of a body and a message for people.
fn describe_error_body(status: StatusCode, body: &[u8]) -> (Vec<String>, String) {
    if let Ok(parsed) = serde_json::from_slice::<ErrorsBody>(body) {
        if !parsed.errors.is_empty() {
            let codes = parsed.errors.iter().map(|e| e.code.clone()).collect();
            let message = parsed
                .errors
                .iter()
                .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                    (false, false) => format!("{}: {}", e.code, e.message),
                    (false, true) => e.code.clone(),
                    _ => e.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return (codes, message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return (Vec::new(), status.to_string());
    }
    let short: String = text.chars().take(300).collect();
    (Vec::new(), short)
}

/// The error for an answer that is not a success.
async fn failure(
    response: reqwest::Response,
    image: &str,
    host: &str,
    wanted: Wanted<'_>,
) -> ImageError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = read_limited(response, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    classify(status, retry_after, &body, image, host, wanted)
}

fn classify(
    status: StatusCode,
    retry_after: Option<u64>,
    body: &[u8],
    image: &str,
    host: &str,
    wanted: Wanted<'_>,
) -> ImageError {
    let (codes, message) = describe_error_body(status, body);
    let unknown = status == StatusCode::NOT_FOUND
        || codes.iter().any(|c| {
            matches!(
                c.as_str(),
                "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN"
            )
        });
    if unknown {
        return match wanted {
            Wanted::Manifest => ImageError::ManifestUnknown {
                image: image.to_string(),
            },
            Wanted::Blob(digest) => ImageError::BlobUnknown {
                image: image.to_string(),
                digest: digest.clone(),
            },
        };
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ImageError::Unauthorized {
            image: image.to_string(),
            registry: host.to_string(),
            message,
        },
        StatusCode::TOO_MANY_REQUESTS => ImageError::TooManyRequests {
            registry: host.to_string(),
            retry_after,
        },
        _ => ImageError::Registry {
            registry: host.to_string(),
            status: status.as_u16(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"x")
    }

    #[test]
    fn classifies_registry_answers() {
        let c = |status: u16, body: &str, retry: Option<u64>, wanted| {
            classify(
                StatusCode::from_u16(status).unwrap(),
                retry,
                body.as_bytes(),
                "reg.test/app:1",
                "reg.test",
                wanted,
            )
        };
        let d = digest();
        assert!(matches!(
            c(404, "", None, Wanted::Manifest),
            ImageError::ManifestUnknown { .. }
        ));
        assert!(matches!(
            c(
                400,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}"#,
                None,
                Wanted::Manifest
            ),
            ImageError::ManifestUnknown { .. }
        ));
        assert!(matches!(
            c(404, "", None, Wanted::Blob(&d)),
            ImageError::BlobUnknown { .. }
        ));
        let e = c(
            403,
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            None,
            Wanted::Manifest,
        );
        assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("reg.test") && text.contains("DENIED: requested access"),
            "{text}"
        );
        let e = c(429, "", Some(30), Wanted::Manifest);
        assert!(
            matches!(
                e,
                ImageError::TooManyRequests {
                    retry_after: Some(30),
                    ..
                }
            ),
            "{e}"
        );
        let e = c(503, "upstream down\n", None, Wanted::Manifest);
        assert!(
            matches!(e, ImageError::Registry { status: 503, ref message, .. } if message == "upstream down"),
            "{e}"
        );
        let e = c(502, "", None, Wanted::Manifest);
        assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
    }

    #[test]
    fn error_bodies_become_one_line() {
        let (codes, message) = describe_error_body(
            StatusCode::UNAUTHORIZED,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[]},{"code":"X"}]}"#,
        );
        assert_eq!(codes, ["UNAUTHORIZED", "X"]);
        assert_eq!(message, "UNAUTHORIZED: authentication required; X");
        let long = "x".repeat(1000);
        assert_eq!(
            describe_error_body(StatusCode::BAD_REQUEST, long.as_bytes())
                .1
                .len(),
            300
        );
    }

    #[test]
    fn retry_after_is_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, " 12 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(12));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn tls_files_that_are_missing_or_wrong_are_configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            ca_file: Some(dir.path().join("nope.pem")),
            ..TlsConfig::default()
        };
        let e = build_client(&missing).unwrap_err();
        assert!(matches!(e, ImageError::Config { .. }), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let e = build_client(&TlsConfig {
            ca_file: Some(garbage),
            ..TlsConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("garbage.pem"), "{e}");

        let e = build_client(&TlsConfig {
            cert_file: Some(dir.path().join("cert.pem")),
            ..TlsConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("both cert_file and key_file"), "{e}");

        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        };
        assert!(build_client(&insecure).is_ok());
    }

    #[test]
    fn one_http_client_per_tls_configuration() {
        let client = RegistryClient::new(RegistriesConfig::default(), false).unwrap();
        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        };
        client.client_for(&TlsConfig::default()).unwrap();
        client.client_for(&insecure).unwrap();
        client.client_for(&insecure).unwrap();
        assert_eq!(lock(&client.clients).len(), 2);
    }
}
