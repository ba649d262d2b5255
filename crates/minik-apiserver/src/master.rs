//! The Services the API server keeps, and the cluster's network as it publishes it:
//!
//! - `kubernetes` in `default`: how pods find the API server, as Kubernetes' API server keeps
//!   it (its "master" Service and endpoints reconciler). A ClusterIP Service with port 443
//!   (`https`) and no selector, on the first host address of the service CIDR (which the
//!   serving certificate names), and Endpoints naming the server's address and port, written
//!   at each start (the port may change). Pods get `KUBERNETES_SERVICE_HOST` and
//!   `KUBERNETES_SERVICE_PORT` from it in every namespace.
//! - `kube-dns` in `kube-system`: the cluster DNS address, the 10th host address of the service
//!   CIDR (`10.96.0.10`, as kubeadm's), ports `dns` 53/UDP and `dns-tcp` 53/TCP and no
//!   selector: minik's DNS is node-local (every node agent answers on this address itself, as
//!   NodeLocal DNSCache does), so the Service has no Endpoints. Made when missing and then left
//!   as it is.
//! - `GET /minik/v1/network` ([`minik_api::network::ClusterNetwork`]): the cluster and service
//!   CIDRs and the DNS address and domain, which node agents read at start.
//!
//! Either Service asks for its usual address; when another Service holds it, it gets another
//! (with a warning). A Service already stored keeps its address, even one outside a service
//! CIDR changed since ([`services_outside_range`] names those for a warning at start).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use minik_api::cidr::Cidr;
use minik_api::network::{
    ClusterNetwork, DEFAULT_CLUSTER_DOMAIN, DNS_SERVICE_HOST_INDEX, DNS_SERVICE_NAME,
    DNS_SERVICE_NAMESPACE,
};
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::resources::{self, ResourceInfo};
use minik_api::{ApiError, FieldPath};
use serde_json::{json, Value};

use crate::answer::{json_response, HttpError};
use crate::registry::{Filter, Registry, Scope};
use crate::services::{host_address, outside_range};
use crate::ApiServer;

/// The Service's name and namespace.
pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";

/// The ClusterIP the `kubernetes` Service asks for: the first host address of the service CIDR,
/// as Kubernetes gives it the first of its own (10.96.0.1). `None` for a range without host
/// addresses (a /31 or /32, which `minik server` refuses).
pub fn service_ip(range: Cidr) -> Option<IpAddr> {
    host_address(range, 1).map(IpAddr::V4)
}

/// The ClusterIP the `kube-dns` Service asks for: the 10th host address of the service CIDR
/// (10.96.0.10, 127.96.0.10). `None` for a range of fewer addresses.
pub fn dns_ip(range: Cidr) -> Option<IpAddr> {
    host_address(range, DNS_SERVICE_HOST_INDEX).map(IpAddr::V4)
}

fn services() -> Result<&'static ResourceInfo, ApiError> {
    resources::by_kind("v1", "Service").map_err(ApiError::Internal)
}

/// Whether a create was refused for its requested ClusterIP (taken, or outside the range).
fn refused_address(e: &ApiError) -> bool {
    let field = FieldPath::new("spec").child("clusterIPs").index(0);
    matches!(e, ApiError::Invalid { errors, .. } if errors.iter().any(|f| f.field == field))
}

/// Creates the Service `body(Some(ip))` describes; when that address is refused (another
/// Service holds it), `body(None)`, on an address the allocator picks, with a warning.
async fn create_on(
    registry: &Registry,
    namespace: &str,
    ip: Option<IpAddr>,
    body: impl Fn(Option<String>) -> Value,
) -> Result<Bytes, ApiError> {
    let services = services()?;
    let Some(ip) = ip else {
        return registry
            .create(
                services,
                Some(namespace),
                body(None),
                WriteOptions::default(),
            )
            .await;
    };
    match registry
        .create(
            services,
            Some(namespace),
            body(Some(ip.to_string())),
            WriteOptions::default(),
        )
        .await
    {
        Err(e) if refused_address(&e) => {
            let wanted = body(None);
            let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
            tracing::warn!(%ip, service = %format!("{namespace}/{name}"), error = %e, "the Service's usual address is another Service's; it gets another");
            registry
                .create(services, Some(namespace), wanted, WriteOptions::default())
                .await
        }
        other => other,
    }
}

/// The ClusterIP of a stored Service.
fn cluster_ip_of(service: &[u8], what: &str) -> Result<String, ApiError> {
    let service: Value = serde_json::from_slice(service)
        .map_err(|e| ApiError::Internal(format!("the {what} Service is not JSON: {e}")))?;
    Ok(service["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Makes (or brings up to date) the `kubernetes` Service and its Endpoints for the API server
/// at `address:port`; answers the Service's ClusterIP.
pub async fn ensure(registry: &Registry, address: IpAddr, port: u16) -> Result<String, ApiError> {
    let services = services()?;
    let endpoints = resources::by_kind("v1", "Endpoints").map_err(ApiError::Internal)?;
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let ports = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
    let service = match registry.get(services, Some(NAMESPACE), NAME).await {
        Ok(_) => {
            let patch = Patch {
                kind: PatchKind::Merge,
                body: json!({"metadata": {"labels": labels}, "spec": {"ports": ports}}),
            };
            registry
                .patch(
                    services,
                    Some(NAMESPACE),
                    NAME,
                    &patch,
                    Scope::Main,
                    WriteOptions::default(),
                )
                .await?
        }
        Err(ApiError::NotFound(_)) => {
            let body = |ip: Option<String>| {
                let mut spec =
                    json!({"type": "ClusterIP", "ports": ports, "sessionAffinity": "None"});
                if let Some(ip) = ip {
                    spec["clusterIP"] = json!(ip);
                }
                json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                    "spec": spec,
                })
            };
            // On another address than the first, the serving certificate does not name it.
            create_on(
                registry,
                NAMESPACE,
                service_ip(registry.service_cidr()),
                body,
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    let subsets = json!([{
        "addresses": [{"ip": address.to_string()}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }]);
    match registry.get(endpoints, Some(NAMESPACE), NAME).await {
        Ok(_) => {
            let patch = Patch {
                kind: PatchKind::Merge,
                body: json!({"metadata": {"labels": labels}, "subsets": subsets}),
            };
            registry
                .patch(
                    endpoints,
                    Some(NAMESPACE),
                    NAME,
                    &patch,
                    Scope::Main,
                    WriteOptions::default(),
                )
                .await?;
        }
        Err(ApiError::NotFound(_)) => {
            let body = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "subsets": subsets,
            });
            registry
                .create(endpoints, Some(NAMESPACE), body, WriteOptions::default())
                .await?;
        }
        Err(e) => return Err(e),
    }
    cluster_ip_of(&service, "kubernetes")
}

/// Makes the `kube-dns` Service in `kube-system` when it is missing (after
/// [`Registry::bootstrap`], which makes the namespace); answers its ClusterIP. One that exists
/// is left as it is.
pub async fn ensure_dns(registry: &Registry) -> Result<String, ApiError> {
    let services = services()?;
    let service = match registry
        .get(services, Some(DNS_SERVICE_NAMESPACE), DNS_SERVICE_NAME)
        .await
    {
        Ok(stored) => stored.value,
        Err(ApiError::NotFound(_)) => {
            let body = |ip: Option<String>| {
                let mut spec = json!({
                    "type": "ClusterIP",
                    "sessionAffinity": "None",
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    ],
                });
                if let Some(ip) = ip {
                    spec["clusterIP"] = json!(ip);
                }
                json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {
                        "name": DNS_SERVICE_NAME,
                        "namespace": DNS_SERVICE_NAMESPACE,
                        "labels": {
                            "k8s-app": "kube-dns",
                            "kubernetes.io/name": "KubeDNS",
                            "kubernetes.io/cluster-service": "true",
                        },
                    },
                    "spec": spec,
                })
            };
            let ip = dns_ip(registry.service_cidr());
            create_on(registry, DNS_SERVICE_NAMESPACE, ip, body).await?
        }
        Err(e) => return Err(e),
    };
    cluster_ip_of(&service, "kube-dns")
}

/// The stored Services whose ClusterIPs lie outside the service CIDR (given by an earlier
/// one), as `NS/NAME (IP)`: they keep their addresses, which the proxy may not reach the same
/// way; recreating such a Service moves it into the range.
pub async fn services_outside_range(registry: &Registry) -> Result<Vec<String>, ApiError> {
    let range = registry.service_cidr();
    let listed = registry.list(services()?, None, &Filter::default()).await?;
    let mut outside = Vec::new();
    for item in &listed.items {
        let Ok(service) = serde_json::from_slice::<Value>(item) else {
            continue;
        };
        let ips = outside_range(&service, range);
        if ips.is_empty() {
            continue;
        }
        let meta = |field: &str| {
            service["metadata"][field]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        outside.push(format!(
            "{}/{} ({})",
            meta("namespace"),
            meta("name"),
            ips.join(", ")
        ));
    }
    Ok(outside)
}

/// The cluster's network as `/minik/v1/network` answers it: the settings the server runs with,
/// and the `kube-dns` Service's ClusterIP as stored (`None` while there is none).
pub(crate) async fn cluster_network(server: &ApiServer) -> Result<ClusterNetwork, ApiError> {
    let cluster_dns = match server
        .registry
        .get(services()?, Some(DNS_SERVICE_NAMESPACE), DNS_SERVICE_NAME)
        .await
    {
        Ok(stored) => cluster_ip_of(&stored.value, "kube-dns")?
            .parse::<Ipv4Addr>()
            .ok(),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(ClusterNetwork {
        cluster_cidr: server.config.cluster_cidr,
        node_cidr_mask_size: server.config.node_cidr_mask_size,
        service_cidr: server.registry.service_cidr(),
        cluster_dns,
        cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
    })
}

/// `GET /minik/v1/network`, for every authenticated identity but the join token (`auth.rs`).
pub(crate) async fn network(State(server): State<Arc<ApiServer>>) -> Response {
    let answer = cluster_network(&server).await.and_then(|network| {
        serde_json::to_vec(&network).map_err(|e| ApiError::Internal(e.to_string()))
    });
    match answer {
        Ok(body) => json_response(StatusCode::OK, Bytes::from(body)),
        Err(e) => HttpError(e).into_response(),
    }
}
