//! Service account tokens: Kubernetes' bound tokens (`TokenRequest`,
//! `POST serviceaccounts/{name}/token`), which a pod authenticates to the API with as its
//! service account. See docs/service-accounts.md.
//!
//! A token is a JWT (RFC 7519) signed with ES256 (ECDSA P-256, SHA-256; RFC 7518 §3.4) by a key
//! kept in `DATA_DIR/auth/service-account-key` (PKCS#8 PEM, 0600, made on first start by
//! `auth.rs`); its claims are Kubernetes': `iss` ([`ISSUER`]), `sub`
//! (`system:serviceaccount:NS:NAME`), `aud`, `exp`, `iat`, `nbf`, `jti` and `kubernetes.io`
//! (the namespace, the service account's name and uid, and the pod or Secret it is bound to).
//! The signing is [`issue`] and [`verify`], pure functions of the key, the claims or token, and
//! the time; the rest of the module serves the TokenRequest (its I/O: the service account and
//! the bound object must exist) and checks a verified token's bound objects
//! ([`check_bound`]), as Kubernetes' service account authenticator does.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use minik_api::decode::{from_value_lenient, from_value_strict, DecodeError, FieldValidation};
use minik_api::k8s_openapi::api::authentication::v1::TokenRequest;
use minik_api::{ApiError, FieldError, FieldPath, ObjectRef};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ApiServer;

/// The tokens' issuer, and the audience the server identifies itself as: Kubernetes' default
/// `--service-account-issuer` (kubeadm's) and so its default `--api-audiences`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The audiences the API server accepts a token for, and gives a token that asks for none
/// (Kubernetes' `--api-audiences`, which defaults to the issuer).
pub const API_AUDIENCES: &[&str] = &[ISSUER];

/// The signing key's file in the server's `auth` directory.
pub const KEY_FILE: &str = "service-account-key";

/// How far clocks may disagree: a token is accepted up to this long after it expired and
/// before it becomes valid, and its bound objects are taken as gone this long after their
/// deletion time (Kubernetes' JWT leeway).
pub const LEEWAY_SECONDS: i64 = 60;

/// A token's lifetime when the request does not say (Kubernetes' default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The shortest lifetime a token may be asked for: 10 minutes.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// The longest lifetime a token may be asked for: 2^32 seconds.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// Tokens longer than this are not read (ours are well under 2 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The JWS algorithm of the tokens.
const ALGORITHM: &str = "ES256";

/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo, before its 65-byte point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// The user name of a service account: `system:serviceaccount:NS:NAME`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The key that signs and verifies service account tokens: an ECDSA P-256 key pair.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    /// The JWS `kid`: base64url of the SHA-256 of the public key's SubjectPublicKeyInfo DER,
    /// as Kubernetes names its keys.
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key, and its PKCS#8 PEM text to keep.
    pub fn generate() -> Result<(SigningKey, String), String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot make a service account signing key: no randomness".to_owned())?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pem(pkcs8.as_ref())))
    }

    /// The key of a PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`) of a P-256 key, as
    /// [`SigningKey::generate`] writes it and `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256` makes it.
    pub fn from_pem(text: &str) -> Result<SigningKey, String> {
        if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            return Err(
                "the key is in SEC1 form (BEGIN EC PRIVATE KEY); convert it to PKCS#8 \
                        with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            );
        }
        let start = text
            .find(PEM_BEGIN)
            .ok_or_else(|| format!("no {PEM_BEGIN} block"))?;
        let body = &text[start + PEM_BEGIN.len()..];
        let end = body
            .find(PEM_END)
            .ok_or_else(|| format!("no {PEM_END} line"))?;
        let base64: String = body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(base64)
            .map_err(|e| format!("the PEM block is not base64: {e}"))?;
        SigningKey::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not a PKCS#8 ECDSA P-256 private key: {e}"))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(SigningKey { pair, kid, rng })
    }

    /// The key's id, the `kid` of the tokens it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key: an uncompressed SEC1 point (65 bytes), what a JWKS would publish.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
}

fn pem(der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut out = format!("{PEM_BEGIN}\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// A token's claims, Kubernetes' names and shapes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer, [`ISSUER`].
    pub iss: String,
    /// `system:serviceaccount:NS:NAME`.
    pub sub: String,
    /// Who the token is for; the API server accepts it when one is in [`API_AUDIENCES`].
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// The token's unique id.
    pub jti: String,
    /// What the token is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The `kubernetes.io` claim: the service account and the object the token is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectClaim,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectClaim>,
}

/// An object a token names: its name and uid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClaim {
    pub name: String,
    pub uid: String,
}

/// The object a token is bound to, besides its service account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Bound to nothing but the service account.
    Nothing,
    /// Valid while this pod exists.
    Pod(ObjectClaim),
    /// Valid while this Secret exists.
    Secret(ObjectClaim),
}

impl Claims {
    /// The claims of a token for service account `account` of `namespace`, bound to `bound`,
    /// for `audiences`, issued at `now` (seconds since the epoch) for `expiration_seconds`.
    pub fn new(
        namespace: &str,
        account: ObjectClaim,
        bound: Bound,
        audiences: Vec<String>,
        now: i64,
        expiration_seconds: i64,
    ) -> Claims {
        let (pod, secret) = match bound {
            Bound::Nothing => (None, None),
            Bound::Pod(pod) => (Some(pod), None),
            Bound::Secret(secret) => (None, Some(secret)),
        };
        Claims {
            iss: ISSUER.to_owned(),
            sub: username(namespace, &account.name),
            aud: audiences,
            exp: now.saturating_add(expiration_seconds),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_owned(),
                serviceaccount: account,
                pod,
                secret,
            },
        }
    }
}

/// The JWS header of the tokens.
#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    /// Extensions the token says a reader must understand: none are, so a token with any is
    /// refused (RFC 7515 §4.1.11).
    #[serde(default, skip_serializing)]
    crit: Option<Value>,
}

/// The signed token of `claims`: `header.payload.signature`, each part base64url.
pub fn issue(key: &SigningKey, claims: &Claims) -> Result<String, String> {
    let header = Header {
        alg: ALGORITHM.to_owned(),
        kid: Some(key.kid.clone()),
        typ: None,
        crit: None,
    };
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key
        .pair
        .sign(&key.rng, signed.as_bytes())
        .map_err(|_| "cannot sign the token".to_owned())?;
    Ok(format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

/// The claims of `token` if `key` signed it with ES256, its issuer is [`ISSUER`], one of its
/// audiences is the server's ([`API_AUDIENCES`]), and at `now` (seconds since the epoch) it is
/// valid: not expired, not before its `nbf`, not issued in the future, all within
/// [`LEEWAY_SECONDS`]. Else why not. Whether its service account and bound object still exist
/// is [`check_bound`]'s question.
pub fn verify(key: &SigningKey, token: &str, now: i64) -> Result<Claims, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("the token is too long".into());
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT: it must be three base64url parts joined by dots".into());
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("the token's {what} is not base64url: {e}"))
    };
    let header: Header = serde_json::from_slice(&decode(header_part, "header")?)
        .map_err(|e| format!("the token's header is not a JWS header: {e}"))?;
    if header.alg != ALGORITHM {
        return Err(format!(
            "the token is signed with {:?}, not {ALGORITHM}",
            header.alg
        ));
    }
    if header.crit.is_some() {
        return Err("the token has critical header extensions".into());
    }
    if header.kid.as_deref().is_some_and(|kid| kid != key.kid) {
        return Err("the token was signed by another key".into());
    }
    let signature = decode(signature, "signature")?;
    // What was signed: `header.payload`, as sent.
    let signed = &token.as_bytes()[..header_part.len() + 1 + payload.len()];
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
        .verify(signed, &signature)
        .map_err(|_| "the token's signature is not valid".to_owned())?;
    let claims: Claims = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|e| format!("the token's claims are not a service account's: {e}"))?;
    if claims.iss != ISSUER {
        return Err(format!("the token was issued by {:?}", claims.iss));
    }
    if now > claims.exp.saturating_add(LEEWAY_SECONDS) {
        return Err("Token has expired.".into());
    }
    if now.saturating_add(LEEWAY_SECONDS) < claims.nbf {
        return Err("the token is not valid yet".into());
    }
    if now.saturating_add(LEEWAY_SECONDS) < claims.iat {
        return Err("the token is issued in the future".into());
    }
    if !claims
        .aud
        .iter()
        .any(|aud| API_AUDIENCES.contains(&aud.as_str()))
    {
        return Err(format!(
            "the token's audiences {:?} do not include the server's ({})",
            claims.aud,
            API_AUDIENCES.join(", ")
        ));
    }
    let k = &claims.kubernetes;
    if claims.sub != username(&k.namespace, &k.serviceaccount.name) {
        return Err("the token's subject is not its service account".into());
    }
    Ok(claims)
}

/// Whether the object a verified token names (its service account, its pod or Secret) is
/// still the one it was issued for: `stored` is the object of that name now, `None` when there
/// is none. Gone, another uid (deleted and made again), or deleted longer than
/// [`LEEWAY_SECONDS`] before `now` (a pod past its grace period): the token is invalid.
pub fn check_bound(
    kind: &str,
    claim: &ObjectClaim,
    stored: Option<&Value>,
    now: i64,
) -> Result<(), String> {
    let Some(object) = stored else {
        return Err(format!(
            "Token has been invalidated: {kind} {:?} is gone",
            claim.name
        ));
    };
    let uid = object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if uid != claim.uid {
        return Err(format!(
            "{kind} UID ({uid}) does not match claim ({})",
            claim.uid
        ));
    }
    let deleted = object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(minik_api::time::parse_seconds);
    if deleted.is_some_and(|at| at < now - LEEWAY_SECONDS) {
        return Err(format!(
            "Token has been invalidated: {kind} {:?} has been deleted",
            claim.name
        ));
    }
    Ok(())
}

/// The service account a stored pod runs as; one stored without it runs as `default`, as
/// Kubernetes' ServiceAccount admission would have set it.
pub(crate) fn pod_service_account(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
}

/// Seconds since the epoch, now.
pub(crate) fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The stored object `ns/name` of `plural` (core group), `None` when there is none.
pub(crate) async fn stored(
    server: &ApiServer,
    plural: &str,
    ns: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let info = minik_api::resources::by_plural("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
    match server.registry.get(info, Some(ns), name).await {
        Ok(stored) => serde_json::from_slice(&stored.value)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("a stored object is not JSON: {e}"))),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `TokenRequest` of a request body: `authentication.k8s.io/v1` (apiVersion and kind may be
/// left out), decoded strictly under `fieldValidation=Strict`.
fn decode_request(
    ns: &str,
    mut body: Value,
    fv: FieldValidation,
) -> Result<TokenRequest, ApiError> {
    const API_VERSION: &str = "authentication.k8s.io/v1";
    let Some(map) = body.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the body of serviceaccounts/token must be a TokenRequest object".into(),
        ));
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion").to_owned(), text("kind").to_owned());
    match (api_version.as_str(), kind.as_str()) {
        ("" | API_VERSION, "" | "TokenRequest") => {}
        (v, k) => {
            return Err(ApiError::BadRequest(format!(
            "the body of serviceaccounts/token must be a TokenRequest of {API_VERSION}, not {} {}",
            if v.is_empty() { "<no apiVersion>" } else { v },
            if k.is_empty() { "<no kind>" } else { k },
        )))
        }
    }
    map.insert("apiVersion".into(), json!(API_VERSION));
    map.insert("kind".into(), json!("TokenRequest"));
    // The status is the server's to fill in (kubectl sends an empty one with nulls).
    map.remove("status");
    let decoded = match fv {
        FieldValidation::Strict => from_value_strict::<TokenRequest>(&body),
        FieldValidation::Warn | FieldValidation::Ignore => {
            from_value_lenient::<TokenRequest>(&body)
        }
    };
    let request = decoded.map_err(|e| {
        let strict = if matches!(e, DecodeError::UnknownFields(_)) {
            "strict decoding error: "
        } else {
            ""
        };
        ApiError::BadRequest(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {strict}{e}"
        ))
    })?;
    if let Some(body_ns) = request.metadata.namespace.as_deref() {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    Ok(request)
}

/// Kubernetes' validation of a TokenRequest's lifetime (422).
fn validate_expiration(seconds: i64) -> Result<(), ApiError> {
    let field = FieldPath::new("spec").child("expirationSeconds");
    let mut errors = Vec::new();
    if seconds < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            &field,
            seconds,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            &field,
            seconds,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            kind: "TokenRequest".into(),
            group: "authentication.k8s.io".into(),
            name: String::new(),
            errors,
        })
    }
}

/// Serves `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: the TokenRequest of
/// `body` answered with its token, as Kubernetes' TokenREST does. The service account must
/// exist (404); a bound object (a Pod, run by this service account, or a Secret) must exist
/// (404) and have the uid the reference names, if it names one (409).
pub(crate) async fn token_request(
    server: &ApiServer,
    ns: &str,
    name: &str,
    body: Value,
    fv: FieldValidation,
) -> Result<Value, ApiError> {
    let key = server.service_account_key.as_deref().ok_or_else(|| {
        ApiError::ServiceUnavailable(
            "this server has no key to sign service account tokens with".into(),
        )
    })?;
    let mut request = decode_request(ns, body, fv)?;
    let expiration = request
        .spec
        .expiration_seconds
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    validate_expiration(expiration)?;
    let accounts = minik_api::resources::by_plural("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::Internal("serviceaccounts are not served".into()))?;
    let account = stored(server, "serviceaccounts", ns, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(ObjectRef::new(accounts.group, accounts.plural, name)))?;
    let uid_of = |object: &Value| {
        object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let bound = match &request.spec.bound_object_ref {
        None => Bound::Nothing,
        Some(reference) => {
            let api_version = reference.api_version.as_deref().unwrap_or_default();
            let kind = reference.kind.as_deref().unwrap_or_default();
            let object_name = reference.name.as_deref().unwrap_or_default();
            let plural = match (api_version, kind) {
                ("v1", "Pod") => "pods",
                ("v1", "Secret") => "secrets",
                _ => {
                    let (group, version) =
                        api_version.rsplit_once('/').unwrap_or(("", api_version));
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token to object of type {group}/{version}, Kind={kind}"
                    )));
                }
            };
            let object = stored(server, plural, ns, object_name)
                .await?
                .ok_or_else(|| ApiError::NotFound(ObjectRef::new("", plural, object_name)))?;
            if plural == "pods" && pod_service_account(&object) != name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                )));
            }
            let uid = uid_of(&object);
            if let Some(wanted) = reference.uid.as_deref().filter(|u| !u.is_empty()) {
                if wanted != uid {
                    return Err(ApiError::Conflict {
                        target: ObjectRef::new("", kind, object_name),
                        detail: format!(
                            "the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
                        ),
                    });
                }
            }
            let claim = ObjectClaim {
                name: object_name.to_owned(),
                uid,
            };
            if plural == "pods" {
                Bound::Pod(claim)
            } else {
                Bound::Secret(claim)
            }
        }
    };
    if request.spec.audiences.is_empty() {
        request.spec.audiences = API_AUDIENCES.iter().map(|a| (*a).to_owned()).collect();
    }
    let now = now_seconds();
    let claims = Claims::new(
        ns,
        ObjectClaim {
            name: name.to_owned(),
            uid: uid_of(&account),
        },
        bound,
        request.spec.audiences.clone(),
        now,
        expiration,
    );
    let token = issue(key, &claims).map_err(ApiError::Internal)?;
    let mut spec = serde_json::to_value(&request.spec)
        .map_err(|e| ApiError::Internal(format!("cannot write the TokenRequest: {e}")))?;
    spec["expirationSeconds"] = json!(expiration);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": minik_api::time::rfc3339_seconds(claims.exp),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn key() -> SigningKey {
        SigningKey::generate().expect("a key").0
    }

    fn account() -> ObjectClaim {
        ObjectClaim {
            name: "default".into(),
            uid: "sa-uid".into(),
        }
    }

    fn claims(now: i64, seconds: i64) -> Claims {
        Claims::new(
            "default",
            account(),
            Bound::Pod(ObjectClaim {
                name: "web".into(),
                uid: "pod-uid".into(),
            }),
            vec![ISSUER.to_owned()],
            now,
            seconds,
        )
    }

    /// `token` with its payload replaced by `payload`, the signature kept.
    fn with_payload(token: &str, payload: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        )
    }

    #[test]
    fn a_token_verifies_with_its_claims_until_it_expires() {
        let key = key();
        let issued = claims(NOW, 3600);
        let token = issue(&key, &issued).unwrap();
        assert_eq!(token.split('.').count(), 3);
        let verified = verify(&key, &token, NOW).unwrap();
        assert_eq!(verified, issued);
        assert_eq!(verified.sub, "system:serviceaccount:default:default");
        assert_eq!(verified.exp, NOW + 3600);
        assert_eq!((verified.iat, verified.nbf), (NOW, NOW));
        // Kubernetes' claim names, as clients decoding the token read them.
        let payload: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(payload["kubernetes.io"]["pod"]["name"], "web");
        assert!(payload["kubernetes.io"].get("secret").is_none());
        assert_eq!(payload["aud"], json!([ISSUER]));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": key.kid()}));
        // The leeway, and no further.
        assert!(verify(&key, &token, NOW + 3600 + LEEWAY_SECONDS).is_ok());
        let err = verify(&key, &token, NOW + 3600 + LEEWAY_SECONDS + 1).unwrap_err();
        assert_eq!(err, "Token has expired.");
        assert!(verify(&key, &token, NOW - LEEWAY_SECONDS).is_ok());
        let err = verify(&key, &token, NOW - LEEWAY_SECONDS - 1).unwrap_err();
        assert!(err.contains("not valid yet"), "{err}");
    }

    #[test]
    fn forged_tokens_are_refused() {
        let key = key();
        let token = issue(&key, &claims(NOW, 3600)).unwrap();
        // Another key's signature.
        let other = key_from_elsewhere();
        let err = verify(&other, &token, NOW).unwrap_err();
        assert!(err.contains("another key"), "{err}");
        // The same token without its kid, checked against the other key: a bad signature.
        let parts: Vec<&str> = token.split('.').collect();
        let no_kid = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            parts[1],
            parts[2]
        );
        assert!(verify(&other, &no_kid, NOW)
            .unwrap_err()
            .contains("signature is not valid"));
        // A tampered signature, or a tampered payload.
        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[10] ^= 1;
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(&signature)
        );
        assert!(verify(&key, &tampered, NOW)
            .unwrap_err()
            .contains("signature is not valid"));
        let mut payload = serde_json::to_value(claims(NOW, 3600)).unwrap();
        payload["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
        payload["sub"] = json!("system:serviceaccount:default:admin");
        assert!(verify(&key, &with_payload(&token, &payload), NOW)
            .unwrap_err()
            .contains("signature is not valid"));
        // alg none, with or without a signature, and HS256 with the public key as secret.
        for alg in ["none", "None", "HS256", "RS256", "ES384"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            for signature in ["", parts[2]] {
                let forged = format!("{header}.{}.{signature}", parts[1]);
                let err = verify(&key, &forged, NOW).unwrap_err();
                assert!(err.contains("not ES256"), "{alg}: {err}");
            }
        }
        // Critical extensions are not understood.
        let crit = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","crit":["exp"]}"#),
            parts[1],
            parts[2]
        );
        assert!(verify(&key, &crit, NOW).unwrap_err().contains("critical"));
        // Not a JWT at all.
        for junk in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "eyJhbGciOiJFUzI1NiJ9..",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(verify(&key, junk, NOW).is_err(), "{junk}");
        }
    }

    fn key_from_elsewhere() -> SigningKey {
        // A key read back from its PEM text, as another server would keep it.
        let (_, pem) = SigningKey::generate().unwrap();
        SigningKey::from_pem(&pem).unwrap()
    }

    #[test]
    fn claims_are_checked_after_the_signature() {
        let key = key();
        let sign = |claims: &Claims| issue(&key, claims).unwrap();
        let mut other_audience = claims(NOW, 3600);
        other_audience.aud = vec!["vault".into()];
        let err = verify(&key, &sign(&other_audience), NOW).unwrap_err();
        assert!(err.contains("audiences"), "{err}");
        let mut several = claims(NOW, 3600);
        several.aud = vec!["vault".into(), ISSUER.into()];
        assert!(verify(&key, &sign(&several), NOW).is_ok());
        let mut issuer = claims(NOW, 3600);
        issuer.iss = "https://elsewhere".into();
        assert!(verify(&key, &sign(&issuer), NOW)
            .unwrap_err()
            .contains("issued by"));
        let mut subject = claims(NOW, 3600);
        subject.sub = username("kube-system", "default");
        assert!(verify(&key, &sign(&subject), NOW)
            .unwrap_err()
            .contains("subject"));
        let mut future = claims(NOW, 3600);
        future.iat = NOW + 3 * LEEWAY_SECONDS;
        assert!(verify(&key, &sign(&future), NOW)
            .unwrap_err()
            .contains("future"));
    }

    #[test]
    fn keys_round_trip_through_pem_and_keep_their_id() {
        let (key, pem) = SigningKey::generate().unwrap();
        assert!(pem.starts_with(PEM_BEGIN) && pem.trim_end().ends_with(PEM_END));
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(key.public_key().len(), 65);
        // A token of one verifies with the other.
        let token = issue(&key, &claims(NOW, 600)).unwrap();
        assert!(verify(&again, &token, NOW).is_ok());
        let shown = format!("{key:?}");
        assert!(
            shown.contains(key.kid()) && !shown.contains("pair"),
            "{shown}"
        );
        for bad in [
            "",
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        ] {
            assert!(SigningKey::from_pem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bound_objects_must_be_the_same_and_not_long_deleted() {
        let claim = ObjectClaim {
            name: "web".into(),
            uid: "u1".into(),
        };
        let object = |uid: &str, deleted: Option<i64>| {
            let mut o = json!({"metadata": {"name": "web", "uid": uid}});
            if let Some(at) = deleted {
                o["metadata"]["deletionTimestamp"] = json!(minik_api::time::rfc3339_seconds(at));
            }
            o
        };
        assert!(check_bound("Pod", &claim, Some(&object("u1", None)), NOW).is_ok());
        assert!(check_bound("Pod", &claim, None, NOW)
            .unwrap_err()
            .contains("invalidated"));
        assert!(check_bound("Pod", &claim, Some(&object("u2", None)), NOW)
            .unwrap_err()
            .contains("does not match claim"));
        // Being deleted gracefully: valid until its deletion time, and the leeway after.
        assert!(check_bound("Pod", &claim, Some(&object("u1", Some(NOW + 30))), NOW).is_ok());
        assert!(check_bound(
            "Pod",
            &claim,
            Some(&object("u1", Some(NOW - LEEWAY_SECONDS))),
            NOW
        )
        .is_ok());
        assert!(check_bound(
            "Pod",
            &claim,
            Some(&object("u1", Some(NOW - LEEWAY_SECONDS - 1))),
            NOW
        )
        .unwrap_err()
        .contains("deleted"));
    }

    #[test]
    fn token_requests_decode_as_kubectl_sends_them() {
        // kubectl create token's body.
        let kubectl = json!({"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1",
            "metadata":{"creationTimestamp":null},
            "spec":{"audiences":null,"expirationSeconds":null,"boundObjectRef":null},
            "status":{"token":"","expirationTimestamp":null}});
        let request = decode_request("default", kubectl, FieldValidation::Strict).unwrap();
        assert!(request.spec.audiences.is_empty());
        assert_eq!(request.spec.expiration_seconds, None);
        let bare = decode_request("default", json!({"spec": {}}), FieldValidation::Strict).unwrap();
        assert!(bare.spec.bound_object_ref.is_none());
        let err = decode_request(
            "default",
            json!({"spec": {"audience": ["x"]}}),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(decode_request(
            "default",
            json!({"spec": {"audience": ["x"]}}),
            FieldValidation::Ignore
        )
        .is_ok());
        let err = decode_request(
            "default",
            json!({"apiVersion": "v1", "kind": "Pod"}),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(err.code(), 400);
        let err = decode_request(
            "default",
            json!({"metadata": {"namespace": "other"}, "spec": {}}),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert!(err.to_string().contains("namespace"), "{err}");
        assert!(decode_request("default", json!([]), FieldValidation::Strict).is_err());
    }

    #[test]
    fn lifetimes_are_validated_in_kubernetes_words() {
        assert!(validate_expiration(MIN_EXPIRATION_SECONDS).is_ok());
        assert!(validate_expiration(MAX_EXPIRATION_SECONDS).is_ok());
        let err = validate_expiration(60).unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "TokenRequest \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        let err = validate_expiration(MAX_EXPIRATION_SECONDS + 1).unwrap_err();
        assert!(
            err.to_string().contains("larger than 2^32 seconds"),
            "{err}"
        );
    }
}
