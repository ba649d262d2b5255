//! What a node or a service account may do (authorization), after Kubernetes' node authorizer
//! and NodeRestriction admission — SPEC §8. The administrator may do everything; a joiner only
//! joins (`auth.rs`).
//!
//! A service account (`system:serviceaccount:NS:NAME`, by a bound token: `satokens.rs`) may,
//! until minik has RBAC, only read: get, list and watch every kind in every namespace (and the
//! `status`, `scale` and `log` subresources), except Secrets, which it may not read at all.
//! Every write (create, update, patch, delete, exec, port-forward, asking for tokens) is 403.
//! docs/service-accounts.md states the same policy.
//!
//! A node (`system:node:NAME`) may:
//! - read nodes, services and endpoints (its proxy and the pods' Service variables need them),
//!   and RuntimeClasses (as the kubelet reads them);
//! - list and watch pods only with the field selector `spec.nodeName=NAME`, and get, read the
//!   log of, and update the status of the pods bound to it;
//! - set the `minik.io/host-ports` annotation of a pod bound to it (a merge patch of that one
//!   annotation and nothing else: which host port each container port got);
//! - delete a pod bound to it once the pod is being deleted (after its graceful termination);
//! - create its own Node and update it and its status; get, create, update and delete its own
//!   Lease (`kube-node-lease/NAME`, its heartbeat);
//! - create, update and patch events;
//! - get a ConfigMap or Secret that a pod bound to it refers to (environment, volumes, image
//!   pull secrets: `minik_api::references`), and list and watch one such object by the field
//!   selector `metadata.name=NAME` in its namespace (how the kubelet follows them);
//! - ask for a token of a service account (`POST serviceaccounts/NAME/token`) that a pod bound
//!   to it runs as, bound to that pod (`boundObjectRef`: kind Pod, apiVersion v1, its name and
//!   uid), for the pod's projected token volume.
//!
//! Everything else is 403 with Kubernetes' message, before anything changes.

use axum::http::Method;
use minik_api::hostports::HOST_PORTS_ANNOTATION;
use minik_api::request::PatchKind;
use minik_api::resources::{ResourceInfo, NODE_LEASE_NAMESPACE};
use minik_api::ApiError;
use serde_json::Value;

use crate::identity::Identity;
use crate::ApiServer;

/// One request, as the authorizer sees it.
pub(crate) struct Attempt<'a> {
    pub method: &'a Method,
    pub info: &'static ResourceInfo,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub watch: bool,
    pub field_selector: Option<&'a str>,
    pub label_selector: Option<&'a str>,
    /// The patch's type, for PATCH.
    pub patch: Option<PatchKind>,
    pub body: &'a [u8],
}

impl Attempt<'_> {
    /// Kubernetes' verb for the request.
    fn verb(&self) -> &'static str {
        match (self.method, self.name) {
            (&Method::GET, Some(_)) if self.watch => "watch",
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) if self.watch => "watch",
            (&Method::GET, None) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, Some(_)) => "delete",
            (&Method::DELETE, None) => "deletecollection",
            _ => "unknown",
        }
    }

    fn resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.info.plural),
            None => self.info.plural.to_owned(),
        }
    }

    /// Kubernetes' words: `pods "web" is forbidden: User "system:node:n1" cannot delete
    /// resource "pods" in API group "" in the namespace "default": REASON`.
    fn forbidden(&self, identity: &Identity, reason: &str) -> ApiError {
        let subject = match self.name {
            Some(name) => format!("{} {name:?}", self.info.plural),
            None => self.info.plural.to_owned(),
        };
        let scope = match self.namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_owned(),
        };
        ApiError::Forbidden(format!(
            "{subject} is forbidden: User {:?} cannot {} resource {:?} in API group {:?} {scope}: {reason}",
            identity.user(),
            self.verb(),
            self.resource(),
            self.info.group,
        ))
    }
}

/// 403 for a path outside the resources that `identity` may not reach.
pub(crate) fn forbidden_path(identity: &Identity, method: &Method, path: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "forbidden: User {:?} cannot {} path {path:?}",
        identity.user(),
        method.as_str().to_ascii_lowercase(),
    ))
}

/// Whether `identity` may make `attempt`: `Ok` or the 403 to answer.
pub(crate) async fn authorize(
    server: &ApiServer,
    identity: &Identity,
    attempt: &Attempt<'_>,
) -> Result<(), ApiError> {
    match identity {
        Identity::Admin => Ok(()),
        Identity::Joiner => Err(attempt.forbidden(identity, "the join token may only join")),
        Identity::Node(node) => node_may(server, identity, node, attempt).await,
        Identity::ServiceAccount { .. } => service_account_may(identity, attempt),
        Identity::User { .. } => Err(attempt.forbidden(
            identity,
            "only the administrator (group system:masters), nodes and service accounts have permissions until minik has RBAC",
        )),
    }
}

/// The service account policy (the module's doc): reads of everything but Secrets.
fn service_account_may(identity: &Identity, a: &Attempt<'_>) -> Result<(), ApiError> {
    if (a.info.group, a.info.plural) == ("", "secrets") {
        return Err(a.forbidden(
            identity,
            "service accounts may not read secrets until minik has RBAC",
        ));
    }
    let read =
        a.method == Method::GET && matches!(a.subresource, None | Some("status" | "scale" | "log"));
    if read {
        Ok(())
    } else {
        Err(a.forbidden(
            identity,
            "service accounts may only get, list and watch until minik has RBAC",
        ))
    }
}

async fn node_may(
    server: &ApiServer,
    identity: &Identity,
    node: &str,
    a: &Attempt<'_>,
) -> Result<(), ApiError> {
    let read = a.method == Method::GET;
    let deny = |reason: &str| Err(a.forbidden(identity, reason));
    match (a.info.group, a.info.plural) {
        ("", "services" | "endpoints") if read && a.subresource.is_none() => Ok(()),
        ("node.k8s.io", "runtimeclasses") if read && a.subresource.is_none() => Ok(()),
        ("", "nodes") => match (a.method, a.name) {
            (&Method::GET, _) if a.subresource.is_none() || a.subresource == Some("status") => {
                Ok(())
            }
            (&Method::POST, None) => {
                let named = body_name(a.body);
                if named.as_deref() == Some(node) {
                    Ok(())
                } else {
                    deny(&format!("node {node:?} can only create its own Node object"))
                }
            }
            (&Method::PUT | &Method::PATCH, Some(name))
                if matches!(a.subresource, None | Some("status")) =>
            {
                if name == node {
                    Ok(())
                } else {
                    deny(&format!("node {node:?} cannot modify node {name:?}"))
                }
            }
            _ => deny(&format!("node {node:?} cannot {} nodes", a.verb())),
        },
        ("", "pods") => pod_may(server, node, a).await.or_else(|reason| deny(&reason)),
        ("coordination.k8s.io", "leases") => {
            let name = match a.method {
                &Method::POST => body_name(a.body),
                _ => a.name.map(str::to_owned),
            };
            let verb_ok = matches!(
                a.method,
                &Method::GET | &Method::POST | &Method::PUT | &Method::PATCH | &Method::DELETE
            ) && !a.watch;
            if verb_ok
                && a.namespace == Some(NODE_LEASE_NAMESPACE)
                && name.as_deref() == Some(node)
            {
                Ok(())
            } else {
                deny(&format!(
                    "node {node:?} may only use its own Lease, {NODE_LEASE_NAMESPACE}/{node}"
                ))
            }
        }
        ("", "persistentvolumes") => volume_may(server, node, a)
            .await
            .or_else(|reason| deny(&reason)),
        ("", "configmaps" | "secrets" | "persistentvolumeclaims") => referenced_may(server, node, a)
            .await
            .or_else(|reason| deny(&reason)),
        ("", "serviceaccounts") if a.method == Method::POST && a.subresource == Some("token") => {
            token_may(server, node, a).await.or_else(|reason| deny(&reason))
        }
        ("" | "events.k8s.io", "events")
            if matches!(a.method, &Method::POST | &Method::PUT | &Method::PATCH)
                && a.subresource.is_none() =>
        {
            Ok(())
        }
        _ => deny("nodes may only read nodes, services, endpoints and their own pods, and write their own Node and Lease, their pods' status and events"),
    }
}

/// `Ok` when node `node` may make `a` on pods, else why not.
async fn pod_may(server: &ApiServer, node: &str, a: &Attempt<'_>) -> Result<(), String> {
    let no_relationship = || format!("no relationship found between node {node:?} and this object");
    let Some(name) = a.name else {
        // Collections: only this node's pods, by field selector.
        if a.method == Method::GET && selects_node(a.field_selector, node) {
            return Ok(());
        }
        return Err(format!(
            "node {node:?} may only list and watch pods with fieldSelector spec.nodeName={node}"
        ));
    };
    let allowed_shape = match (a.method, a.subresource) {
        // A watch of one pod by name would follow whatever pod gets that name next, on any
        // node, and replay the history of earlier ones: nodes watch their pods by field
        // selector only.
        (&Method::GET, _) if a.watch => {
            return Err(format!(
                "node {node:?} may only watch pods with fieldSelector spec.nodeName={node}, not one pod by name"
            ))
        }
        (&Method::GET, None | Some("status" | "log")) => true,
        (&Method::PUT | &Method::PATCH, Some("status")) => true,
        (&Method::PATCH, None) => {
            if !only_host_ports(a.patch, a.body) {
                return Err(format!(
                    "node {node:?} may only change the {HOST_PORTS_ANNOTATION} annotation of its pods (a merge patch of that annotation alone), and their status"
                ));
            }
            true
        }
        (&Method::DELETE, None) => true,
        _ => false,
    };
    if !allowed_shape {
        return Err(format!(
            "node {node:?} cannot {} pods{}",
            a.verb(),
            a.subresource.map(|s| format!("/{s}")).unwrap_or_default()
        ));
    }
    let ns = a.namespace.unwrap_or_default();
    // A pod that does not exist is answered 404 by the handler, as for anyone who may ask.
    let pod = match crate::agent::pod(server, ns, name).await {
        Ok(pod) => pod,
        Err(ApiError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return Err(no_relationship());
    }
    if a.method == Method::DELETE && pod.pointer("/metadata/deletionTimestamp").is_none() {
        return Err(format!(
            "node {node:?} may delete its pods only after their deletion was requested"
        ));
    }
    Ok(())
}

/// `Ok` when node `node` may make `a` on a ConfigMap or Secret, else why not: reads of one
/// object, by name or by a `metadata.name` field selector, that a pod bound to the node refers
/// to.
async fn referenced_may(server: &ApiServer, node: &str, a: &Attempt<'_>) -> Result<(), String> {
    let kind = a.info.kind;
    let by_selector = a.field_selector.and_then(selected_name);
    let name = match (a.method, a.name, a.subresource) {
        (&Method::GET, Some(name), None) if !a.watch => name.to_owned(),
        (&Method::GET, None, None) => by_selector.ok_or_else(|| {
            format!(
                "node {node:?} may only list and watch one {kind} at a time, by fieldSelector metadata.name=NAME"
            )
        })?,
        _ => return Err(format!("node {node:?} may only read {}", a.info.plural)),
    };
    let ns = a.namespace.unwrap_or_default();
    let pods = minik_api::resources::by_plural("", "v1", "pods")
        .ok_or_else(|| "pods are not served".to_owned())?;
    let filter = crate::registry::Filter::parse(pods, None, Some(&format!("spec.nodeName={node}")))
        .map_err(|e| e.to_string())?;
    let listed = server
        .registry
        .list(pods, Some(ns), &filter)
        .await
        .map_err(|e| e.to_string())?;
    let referenced = listed.items.iter().any(|bytes| {
        serde_json::from_slice::<minik_api::k8s_openapi::api::core::v1::Pod>(bytes)
            .ok()
            .and_then(|p| p.spec)
            .is_some_and(|spec| minik_api::references::of_pod_spec(&spec).contains(kind, &name))
    });
    if referenced {
        Ok(())
    } else {
        Err(format!(
            "no relationship found between node {node:?} and this object"
        ))
    }
}

/// `Ok` when node `node` may ask for a token of service account `a.name`, else why not: as
/// Kubernetes' node authorizer, a pod bound to the node must run as the service account; as
/// its NodeRestriction admission, the token must be bound to a pod on the node, named with its
/// uid.
async fn token_may(server: &ApiServer, node: &str, a: &Attempt<'_>) -> Result<(), String> {
    let account = a.name.unwrap_or_default();
    let ns = a.namespace.unwrap_or_default();
    let pods = minik_api::resources::by_plural("", "v1", "pods")
        .ok_or_else(|| "pods are not served".to_owned())?;
    let filter = crate::registry::Filter::parse(pods, None, Some(&format!("spec.nodeName={node}")))
        .map_err(|e| e.to_string())?;
    let listed = server
        .registry
        .list(pods, Some(ns), &filter)
        .await
        .map_err(|e| e.to_string())?;
    let on_node: Vec<Value> = listed
        .items
        .iter()
        .filter_map(|bytes| serde_json::from_slice(bytes).ok())
        .collect();
    if !on_node
        .iter()
        .any(|pod| crate::satokens::pod_service_account(pod) == account)
    {
        return Err(format!(
            "no relationship found between node {node:?} and this object"
        ));
    }
    let body = minik_api::decode::parse_document(a.body).unwrap_or(Value::Null);
    let reference = body.pointer("/spec/boundObjectRef");
    let text = |key: &str| {
        reference
            .and_then(|r| r.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if text("apiVersion") != "v1" || text("kind") != "Pod" || text("name").is_empty() {
        return Err(format!("node {node:?} requested token not bound to a pod"));
    }
    let uid = text("uid");
    if uid.is_empty() {
        return Err(format!(
            "node {node:?} requested token with a pod binding without a uid"
        ));
    }
    let Some(pod) = on_node
        .iter()
        .find(|pod| pod.pointer("/metadata/name").and_then(Value::as_str) == Some(text("name")))
    else {
        return Err(format!(
            "node {node:?} requested token bound to a pod scheduled on a different node"
        ));
    };
    if pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return Err(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    Ok(())
}

/// The label minik's local-path provisioner gives a volume: the node its directory is on.
const LOCAL_PATH_NODE: &str = "minik.io/local-path-node";

/// `Ok` when node `node` may make `a` on a PersistentVolume, else why not: get a volume bound
/// to a claim that one of its pods uses (to mount it); list and watch the local-path volumes
/// on it (label selector `minik.io/local-path-node=NODE`), and remove a finalizer of one (a
/// merge patch of `metadata.finalizers` alone: its directory is gone).
async fn volume_may(server: &ApiServer, node: &str, a: &Attempt<'_>) -> Result<(), String> {
    let own_label = format!("{LOCAL_PATH_NODE}={node}");
    match (a.method, a.name, a.subresource) {
        (&Method::GET, None, None) => {
            if a.label_selector.map(str::trim) == Some(own_label.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "node {node:?} may only list and watch persistentvolumes with labelSelector {own_label}"
                ))
            }
        }
        (&Method::GET, Some(name), None) if !a.watch => {
            if mounts_volume(server, node, name).await? {
                Ok(())
            } else {
                Err(format!(
                    "no relationship found between node {node:?} and this object"
                ))
            }
        }
        (&Method::PATCH, Some(name), None)
            if a.patch == Some(PatchKind::Merge) && only_finalizers(a.body) =>
        {
            let volumes = minik_api::resources::by_plural("", "v1", "persistentvolumes")
                .ok_or_else(|| "persistentvolumes are not served".to_owned())?;
            let stored = match server.registry.get(volumes, None, name).await {
                Ok(stored) => stored,
                // Answered 404 by the handler, as for anyone.
                Err(ApiError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let pv: Value = serde_json::from_slice(&stored.value).map_err(|e| e.to_string())?;
            let label = pv
                .pointer("/metadata/labels")
                .and_then(|l| l.get(LOCAL_PATH_NODE))
                .and_then(Value::as_str);
            if label == Some(node) {
                Ok(())
            } else {
                Err(format!(
                    "no relationship found between node {node:?} and this object"
                ))
            }
        }
        _ => Err(format!(
            "node {node:?} may only read the persistentvolumes its pods use, and remove the finalizers of its local-path volumes"
        )),
    }
}

/// Whether a pod bound to `node` uses a claim bound to volume `volume`.
async fn mounts_volume(server: &ApiServer, node: &str, volume: &str) -> Result<bool, String> {
    let pods = minik_api::resources::by_plural("", "v1", "pods")
        .ok_or_else(|| "pods are not served".to_owned())?;
    let claims = minik_api::resources::by_plural("", "v1", "persistentvolumeclaims")
        .ok_or_else(|| "persistentvolumeclaims are not served".to_owned())?;
    let filter = crate::registry::Filter::parse(pods, None, Some(&format!("spec.nodeName={node}")))
        .map_err(|e| e.to_string())?;
    let listed = server
        .registry
        .list(pods, None, &filter)
        .await
        .map_err(|e| e.to_string())?;
    for bytes in &listed.items {
        let Ok(pod) = serde_json::from_slice::<minik_api::k8s_openapi::api::core::v1::Pod>(bytes)
        else {
            continue;
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(spec) = pod.spec else { continue };
        for claim in minik_api::references::of_pod_spec(&spec).claims {
            let Ok(stored) = server.registry.get(claims, Some(&ns), &claim).await else {
                continue;
            };
            let bound = serde_json::from_slice::<Value>(&stored.value)
                .ok()
                .and_then(|c| {
                    c.pointer("/spec/volumeName")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            if bound.as_deref() == Some(volume) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether a merge patch changes `metadata.finalizers` alone (a `resourceVersion` precondition
/// allowed).
fn only_finalizers(body: &[u8]) -> bool {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(Value::Object(meta)) = top.get("metadata") else {
        return false;
    };
    top.len() == 1
        && meta.contains_key("finalizers")
        && meta
            .keys()
            .all(|k| k == "finalizers" || k == "resourceVersion")
}

/// The name a field selector pins `metadata.name` to, if that is all it selects on.
fn selected_name(selector: &str) -> Option<String> {
    let terms: Vec<&str> = selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    match terms.as_slice() {
        [term] => term
            .strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

/// Whether a field selector pins `spec.nodeName` to `node`.
fn selects_node(selector: Option<&str>, node: &str) -> bool {
    selector.is_some_and(|s| {
        s.split(',').any(|term| {
            let term = term.trim();
            let value = term
                .strip_prefix("spec.nodeName==")
                .or_else(|| term.strip_prefix("spec.nodeName="));
            value == Some(node)
        })
    })
}

/// `metadata.name` of a JSON body.
fn body_name(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether a patch sets the host-ports annotation and nothing else:
/// `{"metadata":{"annotations":{"minik.io/host-ports": "..." | null}}}` as a merge or
/// strategic merge patch.
fn only_host_ports(kind: Option<PatchKind>, body: &[u8]) -> bool {
    if !matches!(kind, Some(PatchKind::Merge | PatchKind::Strategic)) {
        return false;
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(Value::Object(meta)) = top.get("metadata").filter(|_| top.len() == 1) else {
        return false;
    };
    let Some(Value::Object(annotations)) = meta.get("annotations").filter(|_| meta.len() == 1)
    else {
        return false;
    };
    annotations.len() == 1
        && matches!(
            annotations.get(HOST_PORTS_ANNOTATION),
            Some(Value::String(_) | Value::Null)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finalizer_patches_pass() {
        assert!(only_finalizers(br#"{"metadata":{"finalizers":[]}}"#));
        assert!(only_finalizers(
            br#"{"metadata":{"finalizers":null,"resourceVersion":"5"}}"#
        ));
        assert!(!only_finalizers(
            br#"{"metadata":{"finalizers":[],"labels":{}}}"#
        ));
        assert!(!only_finalizers(
            br#"{"metadata":{"finalizers":[]},"spec":{}}"#
        ));
        assert!(!only_finalizers(b"[]"));
    }

    #[test]
    fn one_object_is_selected_by_name() {
        assert_eq!(selected_name("metadata.name=cfg"), Some("cfg".into()));
        assert_eq!(selected_name("metadata.name==cfg"), Some("cfg".into()));
        assert_eq!(selected_name("metadata.name="), None);
        assert_eq!(selected_name("metadata.name!=cfg"), None);
        assert_eq!(selected_name("metadata.name=a,metadata.namespace=b"), None);
        assert_eq!(selected_name("type=Opaque"), None);
    }

    #[test]
    fn field_selectors_must_pin_the_node() {
        assert!(selects_node(Some("spec.nodeName=n1"), "n1"));
        assert!(selects_node(
            Some("status.phase=Running,spec.nodeName==n1"),
            "n1"
        ));
        assert!(!selects_node(Some("spec.nodeName=n2"), "n1"));
        assert!(!selects_node(Some("spec.nodeName!=n1"), "n1"));
        assert!(!selects_node(Some("spec.nodeName=n1x"), "n1"));
        assert!(!selects_node(None, "n1"));
    }

    #[test]
    fn only_the_host_ports_annotation_may_be_patched() {
        let ok = format!(r#"{{"metadata":{{"annotations":{{"{HOST_PORTS_ANNOTATION}":"x"}}}}}}"#);
        assert!(only_host_ports(Some(PatchKind::Merge), ok.as_bytes()));
        assert!(only_host_ports(Some(PatchKind::Strategic), ok.as_bytes()));
        assert!(!only_host_ports(Some(PatchKind::Json), ok.as_bytes()));
        assert!(!only_host_ports(None, ok.as_bytes()));
        for bad in [
            format!(
                r#"{{"metadata":{{"annotations":{{"{HOST_PORTS_ANNOTATION}":"x","other":"y"}}}}}}"#
            ),
            format!(
                r#"{{"metadata":{{"labels":{{"a":"b"}},"annotations":{{"{HOST_PORTS_ANNOTATION}":"x"}}}}}}"#
            ),
            format!(
                r#"{{"spec":{{}},"metadata":{{"annotations":{{"{HOST_PORTS_ANNOTATION}":"x"}}}}}}"#
            ),
            format!(r#"{{"metadata":{{"annotations":{{"{HOST_PORTS_ANNOTATION}":{{"a":1}}}}}}}}"#),
            r#"{"metadata":{"annotations":{}}}"#.to_owned(),
            "not json".to_owned(),
        ] {
            assert!(
                !only_host_ports(Some(PatchKind::Merge), bad.as_bytes()),
                "{bad}"
            );
        }
    }
}
