//! Service account tokens over real HTTP on a server with authentication: the TokenRequest
//! (`POST serviceaccounts/{name}/token`) and its errors, a token authenticating its service
//! account (which may read everything but Secrets and write nothing), the tokens refused with
//! 401 (expired, tampered, unsigned, for another audience, bound to a deleted pod or to a
//! service account made again), and the node rule: a node asks for tokens of its own pods only.

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use minik_apiserver::satokens::{self, Bound, Claims, ObjectClaim, SigningKey};
use minik_apiserver::{ApiServer, Auth, AuthConfig, Config};
use minik_testkit::{open_store, serve, start, TestServer, HISTORY};
use reqwest::Method;
use serde_json::{json, Value};

const NS: &str = "/api/v1/namespaces/default";
const INVALID: &str = "Unauthorized: the bearer token is not valid";

/// A server with authentication, its admin token, two joined nodes' tokens and the file of its
/// service account key.
struct Cluster {
    s: TestServer,
    admin: String,
    n1: String,
    n2: String,
    key_file: PathBuf,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(dir.path(), HISTORY);
        let auth = Auth::open(AuthConfig {
            dir: dir.path().join("auth"),
            admin_file: None,
            anonymous_loopback: false,
            ca_fingerprint: None,
        })
        .expect("auth");
        let admin = std::fs::read_to_string(dir.path().join("auth/admin-token")).expect("admin");
        let n1 = auth.join("n1", |_| async { Ok(()) }).await.expect("join");
        let n2 = auth.join("n2", |_| async { Ok(()) }).await.expect("join");
        let key_file = dir.path().join("auth/service-account-key");
        let server = ApiServer::secured(Arc::new(store.clone()), Config::default(), auth);
        Cluster {
            s: serve(server, store, dir).await,
            admin: admin.trim().to_owned(),
            n1: n1.token,
            n2: n2.token,
            key_file,
        }
    }

    async fn send(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .s
            .client
            .request(method, self.s.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let code = response.status().as_u16();
        (code, response.json::<Value>().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(&self.admin, method, path, body).await
    }

    /// Creates service account `name`; answers its uid.
    async fn account(&self, name: &str) -> String {
        let (code, body) = self
            .admin(
                Method::POST,
                &format!("{NS}/serviceaccounts"),
                Some(json!({"metadata": {"name": name}})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        uid(&body)
    }

    /// Creates pod `name` running as `account`, bound to `node` if any; answers its uid.
    async fn pod(&self, name: &str, account: &str, node: Option<&str>) -> String {
        let mut pod = minik_testkit::manifest::pod(name);
        pod["spec"]["serviceAccountName"] = json!(account);
        let (code, body) = self
            .admin(Method::POST, &format!("{NS}/pods"), Some(pod))
            .await;
        assert_eq!(code, 201, "{body}");
        if let Some(node) = node {
            let binding = json!({"metadata": {"name": name}, "target": {"name": node}});
            let (code, bound) = self
                .admin(
                    Method::POST,
                    &format!("{NS}/pods/{name}/binding"),
                    Some(binding),
                )
                .await;
            assert_eq!(code, 201, "{bound}");
        }
        uid(&body)
    }

    /// `POST serviceaccounts/{account}/token` as `token`'s holder.
    async fn request_token(&self, token: &str, account: &str, spec: Value) -> (u16, Value) {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": spec,
        });
        self.send(
            token,
            Method::POST,
            &format!("{NS}/serviceaccounts/{account}/token"),
            Some(body),
        )
        .await
    }

    /// A token of `account` bound to pod `pod`, asked for by the administrator.
    async fn pod_token(&self, account: &str, pod: &str, pod_uid: &str) -> String {
        let (code, body) = self
            .request_token(&self.admin, account, bound_to_pod(pod, pod_uid))
            .await;
        assert_eq!(code, 201, "{body}");
        token_of(&body)
    }

    fn key(&self) -> SigningKey {
        let pem = std::fs::read_to_string(&self.key_file).expect("the key file");
        SigningKey::from_pem(&pem).expect("the key")
    }
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("no uid in {object}"))
        .to_owned()
}

fn token_of(answer: &Value) -> String {
    answer["status"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_owned()
}

fn bound_to_pod(name: &str, uid: &str) -> Value {
    json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid}})
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

fn assert_unauthorized(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 401, "{what}: {}", answer.1);
    assert_eq!(answer.1["message"], INVALID, "{what}");
}

#[tokio::test]
async fn a_token_reads_everything_but_secrets_and_writes_nothing() {
    let c = Cluster::start().await;
    let account_uid = c.account("robot").await;
    let pod_uid = c.pod("web", "robot", None).await;
    let (code, body) = c
        .admin(
            Method::POST,
            &format!("{NS}/secrets"),
            Some(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");

    let before = now();
    let (code, answer) = c
        .request_token(&c.admin, "robot", bound_to_pod("web", &pod_uid))
        .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(answer["metadata"]["name"], "robot");
    assert_eq!(answer["metadata"]["namespace"], "default");
    assert_eq!(answer["spec"]["audiences"], json!([satokens::ISSUER]));
    assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    assert_eq!(answer["spec"]["boundObjectRef"]["name"], "web");
    let token = token_of(&answer);
    let claims = claims_of(&token);
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(claims["aud"], json!([satokens::ISSUER]));
    let exp = claims["exp"].as_i64().expect("exp");
    assert!((before + 3600..=now() + 3600).contains(&exp), "{claims}");
    assert_eq!(
        answer["status"]["expirationTimestamp"],
        minik_api::time::rfc3339_seconds(exp)
    );
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default",
               "serviceaccount": {"name": "robot", "uid": account_uid},
               "pod": {"name": "web", "uid": pod_uid}})
    );

    // Reads, of every kind but Secrets, in every namespace.
    for path in [
        format!("{NS}/pods"),
        format!("{NS}/pods/web"),
        format!("{NS}/pods/web/status"),
        "/api/v1/pods".to_owned(),
        "/api/v1/namespaces/kube-system/serviceaccounts".to_owned(),
        "/api/v1/configmaps".to_owned(),
        format!("{NS}/pods?watch=true&timeoutSeconds=1"),
        "/api/v1".to_owned(),
        "/apis".to_owned(),
    ] {
        let (code, body) = c.send(&token, Method::GET, &path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = c
        .send(&token, Method::GET, &format!("{NS}/secrets/s"), None)
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "secrets \"s\" is forbidden: User \"system:serviceaccount:default:robot\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\""
        ),
        "{message}"
    );
    for path in [format!("{NS}/secrets"), "/api/v1/secrets".to_owned()] {
        let (code, body) = c.send(&token, Method::GET, &path, None).await;
        assert_eq!(code, 403, "{path}: {body}");
    }

    // Writes of any kind.
    let (code, body) = c
        .send(
            &token,
            Method::POST,
            &format!("{NS}/pods"),
            Some(minik_testkit::manifest::pod("mine")),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("pods is forbidden: User \"system:serviceaccount:default:robot\" cannot create resource \"pods\""),
        "{message}"
    );
    let (code, body) = c
        .send(&token, Method::DELETE, &format!("{NS}/pods/web"), None)
        .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = c
        .request_token(&token, "robot", bound_to_pod("web", &pod_uid))
        .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = c
        .send(
            &token,
            Method::GET,
            &format!("{NS}/pods/web/exec?command=ls"),
            None,
        )
        .await;
    assert_eq!(code, 403, "{body}");
    // minik's own endpoints are not for service accounts.
    let (code, body) = c
        .send(&token, Method::POST, "/minik/v1/rotate", Some(json!({})))
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(c.s.get(&format!("{NS}/pods")).await.code == 401);
}

#[tokio::test]
async fn unbound_tokens_and_audiences() {
    let c = Cluster::start().await;
    c.account("robot").await;
    // kubectl create token's body: nulls everywhere.
    let (code, answer) = c
        .send(
            &c.admin,
            Method::POST,
            &format!("{NS}/serviceaccounts/robot/token"),
            Some(
                json!({"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1",
                "metadata":{"creationTimestamp":null},
                "spec":{"audiences":null,"expirationSeconds":null,"boundObjectRef":null},
                "status":{"token":"","expirationTimestamp":null}}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    let token = token_of(&answer);
    assert!(claims_of(&token)["kubernetes.io"].get("pod").is_none());
    let (code, body) = c
        .send(&token, Method::GET, &format!("{NS}/pods"), None)
        .await;
    assert_eq!(code, 200, "{body}");

    // A token for another audience is not for this server; one that names it among others is.
    let (code, answer) = c
        .request_token(
            &c.admin,
            "robot",
            json!({"audiences": ["vault"], "expirationSeconds": 600}),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["spec"]["audiences"], json!(["vault"]));
    let vault = token_of(&answer);
    assert_eq!(claims_of(&vault)["aud"], json!(["vault"]));
    let refused = c
        .send(&vault, Method::GET, &format!("{NS}/pods"), None)
        .await;
    assert_unauthorized(&refused, "another audience");
    let (code, answer) = c
        .request_token(
            &c.admin,
            "robot",
            json!({"audiences": ["vault", satokens::ISSUER]}),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    let (code, body) = c
        .send(&token_of(&answer), Method::GET, &format!("{NS}/pods"), None)
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn expired_forged_and_unsigned_tokens_are_refused() {
    let c = Cluster::start().await;
    let account_uid = c.account("robot").await;
    let account = ObjectClaim {
        name: "robot".into(),
        uid: account_uid,
    };
    let key = c.key();
    let audiences = vec![satokens::ISSUER.to_owned()];
    let pods = format!("{NS}/pods");
    // Made with the server's own key and functions: valid now, and issued two hours ago for
    // one hour, so expired.
    let fresh = Claims::new(
        "default",
        account.clone(),
        Bound::Nothing,
        audiences.clone(),
        now(),
        600,
    );
    let fresh = satokens::issue(&key, &fresh).expect("issue");
    let (code, body) = c.send(&fresh, Method::GET, &pods, None).await;
    assert_eq!(code, 200, "{body}");
    let old = Claims::new(
        "default",
        account.clone(),
        Bound::Nothing,
        audiences.clone(),
        now() - 7200,
        3600,
    );
    let expired = satokens::issue(&key, &old).expect("issue");
    assert_unauthorized(&c.send(&expired, Method::GET, &pods, None).await, "expired");
    // Not yet valid.
    let later = Claims::new(
        "default",
        account.clone(),
        Bound::Nothing,
        audiences.clone(),
        now() + 3600,
        3600,
    );
    let later = satokens::issue(&key, &later).expect("issue");
    assert_unauthorized(
        &c.send(&later, Method::GET, &pods, None).await,
        "not yet valid",
    );

    let parts: Vec<&str> = fresh.split('.').collect();
    // A tampered signature.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
    signature[0] ^= 0x80;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    assert_unauthorized(
        &c.send(&tampered, Method::GET, &pods, None).await,
        "tampered signature",
    );
    // Claims changed under the old signature: another service account.
    let mut claims = claims_of(&fresh);
    claims["sub"] = json!("system:serviceaccount:kube-system:default");
    claims["kubernetes.io"]["namespace"] = json!("kube-system");
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_unauthorized(
        &c.send(&swapped, Method::GET, &pods, None).await,
        "changed claims",
    );
    // alg none: no signature at all, or the old one kept.
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    for signature in ["", parts[2]] {
        let unsigned = format!("{none}.{}.{signature}", parts[1]);
        assert_unauthorized(
            &c.send(&unsigned, Method::GET, &pods, None).await,
            "alg none",
        );
    }
    // HS256 with anything as the secret.
    let hs = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let confused = format!("{hs}.{}.{}", parts[1], parts[2]);
    assert_unauthorized(&c.send(&confused, Method::GET, &pods, None).await, "HS256");
    // Another server's key.
    let (other, _) = SigningKey::generate().expect("a key");
    let claims = Claims::new("default", account, Bound::Nothing, audiences, now(), 600);
    let foreign = satokens::issue(&other, &claims).expect("issue");
    assert_unauthorized(
        &c.send(&foreign, Method::GET, &pods, None).await,
        "another key",
    );
    // Not a JWT.
    assert_unauthorized(&c.send("a.b.c", Method::GET, &pods, None).await, "junk");
}

#[tokio::test]
async fn tokens_die_with_their_pod_or_service_account() {
    let c = Cluster::start().await;
    c.account("robot").await;
    let pods = format!("{NS}/pods");

    // The bound pod deleted (it was on no node: at once).
    let web = c.pod("web", "robot", None).await;
    let token = c.pod_token("robot", "web", &web).await;
    assert_eq!(c.send(&token, Method::GET, &pods, None).await.0, 200);
    let (code, body) = c
        .admin(Method::DELETE, &format!("{NS}/pods/web"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_unauthorized(
        &c.send(&token, Method::GET, &pods, None).await,
        "pod deleted",
    );
    // A pod of the same name made again is another pod.
    c.pod("web", "robot", None).await;
    assert_unauthorized(
        &c.send(&token, Method::GET, &pods, None).await,
        "pod made again",
    );

    // A pod on a node being deleted gracefully: its token lasts until the pod's deletion time
    // (and Kubernetes' leeway after it).
    let db = c.pod("db", "robot", Some("n1")).await;
    let token = c.pod_token("robot", "db", &db).await;
    let (code, body) = c
        .admin(Method::DELETE, &format!("{NS}/pods/db"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["metadata"]["deletionTimestamp"].is_string(), "{body}");
    let (code, body) = c.send(&token, Method::GET, &pods, None).await;
    assert_eq!(code, 200, "{body}");

    // The service account deleted and made again: a new uid.
    let unbound = {
        let (code, answer) = c.request_token(&c.admin, "robot", json!({})).await;
        assert_eq!(code, 201, "{answer}");
        token_of(&answer)
    };
    assert_eq!(c.send(&unbound, Method::GET, &pods, None).await.0, 200);
    let (code, body) = c
        .admin(Method::DELETE, &format!("{NS}/serviceaccounts/robot"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_unauthorized(
        &c.send(&unbound, Method::GET, &pods, None).await,
        "account deleted",
    );
    c.account("robot").await;
    assert_unauthorized(
        &c.send(&unbound, Method::GET, &pods, None).await,
        "account made again",
    );
    assert_unauthorized(
        &c.send(&token, Method::GET, &pods, None).await,
        "account made again",
    );
}

#[tokio::test]
async fn token_requests_are_checked_as_kubernetes_checks_them() {
    let c = Cluster::start().await;
    c.account("robot").await;
    c.account("other").await;
    let web = c.pod("web", "robot", None).await;

    let (code, body) = c.request_token(&c.admin, "ghost", json!({})).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "serviceaccounts \"ghost\" not found");

    let (code, body) = c
        .request_token(&c.admin, "robot", json!({"expirationSeconds": 60}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert!(
        body["message"].as_str().is_some_and(|m| m.ends_with(
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        )),
        "{body}"
    );

    let (code, body) = c
        .request_token(&c.admin, "robot", bound_to_pod("nope", "x"))
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "pods \"nope\" not found");

    let (code, body) = c
        .request_token(&c.admin, "robot", bound_to_pod("web", "not-its-uid"))
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(
            "the UID in the bound object reference (not-its-uid) does not match the UID in record"
        )),
        "{body}"
    );

    let (code, body) = c
        .request_token(&c.admin, "other", bound_to_pod("web", &web))
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "cannot bind token for serviceaccount \"other\" to pod running with different serviceaccount name."
    );

    let (code, body) = c
        .request_token(
            &c.admin,
            "robot",
            json!({"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "d"}}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "cannot bind token to object of type apps/v1, Kind=Deployment"
    );

    // Bound to a Secret: valid while it exists.
    let (code, secret) = c
        .admin(
            Method::POST,
            &format!("{NS}/secrets"),
            Some(json!({"metadata": {"name": "s"}})),
        )
        .await;
    assert_eq!(code, 201, "{secret}");
    let (code, answer) = c
        .request_token(
            &c.admin,
            "robot",
            json!({"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}}),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    let token = token_of(&answer);
    assert_eq!(
        claims_of(&token)["kubernetes.io"]["secret"]["uid"],
        json!(uid(&secret))
    );
    assert_eq!(
        c.send(&token, Method::GET, &format!("{NS}/pods"), None)
            .await
            .0,
        200
    );
    c.admin(Method::DELETE, &format!("{NS}/secrets/s"), None)
        .await;
    assert_unauthorized(
        &c.send(&token, Method::GET, &format!("{NS}/pods"), None)
            .await,
        "secret deleted",
    );

    // Not a TokenRequest.
    let (code, body) = c
        .send(
            &c.admin,
            Method::POST,
            &format!("{NS}/serviceaccounts/robot/token"),
            Some(json!({"apiVersion": "v1", "kind": "Pod"})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    // Only POST.
    let (code, body) = c
        .admin(
            Method::GET,
            &format!("{NS}/serviceaccounts/robot/token"),
            None,
        )
        .await;
    assert_eq!(code, 405, "{body}");
}

#[tokio::test]
async fn nodes_ask_for_tokens_of_their_own_pods_only() {
    let c = Cluster::start().await;
    c.account("robot").await;
    c.account("lonely").await;
    let web = c.pod("web", "robot", Some("n1")).await;
    let far = c.pod("far", "robot", Some("n2")).await;

    let (code, answer) = c
        .request_token(&c.n1, "robot", bound_to_pod("web", &web))
        .await;
    assert_eq!(code, 201, "{answer}");
    let token = token_of(&answer);
    assert_eq!(claims_of(&token)["kubernetes.io"]["pod"]["uid"], json!(web));
    let (code, body) = c
        .send(&token, Method::GET, &format!("{NS}/pods"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    // n2 for its own pod too.
    let (code, answer) = c
        .request_token(&c.n2, "robot", bound_to_pod("far", &far))
        .await;
    assert_eq!(code, 201, "{answer}");

    let forbidden = |answer: (u16, Value), reason: &str| {
        assert_eq!(answer.0, 403, "{reason}: {}", answer.1);
        let message = answer.1["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.starts_with("serviceaccounts \"robot\" is forbidden: User \"system:node:n1\" cannot create resource \"serviceaccounts/token\"")
                || message.starts_with("serviceaccounts \"lonely\" is forbidden"),
            "{message}"
        );
        assert!(message.ends_with(reason), "{message}");
    };
    // Another node's pod.
    forbidden(
        c.request_token(&c.n1, "robot", bound_to_pod("far", &far))
            .await,
        "node \"n1\" requested token bound to a pod scheduled on a different node",
    );
    // Not bound to a pod, or without its uid, or with another uid.
    forbidden(
        c.request_token(&c.n1, "robot", json!({})).await,
        "node \"n1\" requested token not bound to a pod",
    );
    forbidden(
        c.request_token(&c.n1, "robot", bound_to_pod("web", ""))
            .await,
        "node \"n1\" requested token with a pod binding without a uid",
    );
    forbidden(
        c.request_token(&c.n1, "robot", bound_to_pod("web", &far))
            .await,
        "The object might have been deleted and then recreated",
    );
    // A service account none of its pods runs as.
    forbidden(
        c.request_token(&c.n1, "lonely", bound_to_pod("web", &web))
            .await,
        "no relationship found between node \"n1\" and this object",
    );
    // Nodes still may not read service accounts.
    let (code, body) = c
        .send(
            &c.n1,
            Method::GET,
            &format!("{NS}/serviceaccounts/robot"),
            None,
        )
        .await;
    assert_eq!(code, 403, "{body}");
}

/// A server without authentication still issues tokens (with a key of its own), for the
/// in-process tests of the components that ask for them.
#[tokio::test]
async fn servers_without_authentication_issue_tokens_too() {
    let s = start().await;
    let created = s
        .post(
            &format!("{NS}/serviceaccounts"),
            &json!({"metadata": {"name": "robot"}}),
        )
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let answer = s
        .post(
            &format!("{NS}/serviceaccounts/robot/token"),
            &json!({"spec": {"expirationSeconds": 600}}),
        )
        .await;
    assert_eq!(answer.code, 201, "{}", answer.body);
    let claims = claims_of(&token_of(&answer.body));
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(e, i)| e - i),
        Some(600)
    );
}
