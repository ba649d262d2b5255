//! The `kubernetes` Service in `default`: how pods find the API server, as Kubernetes'
//! API server keeps it (its "master" Service and endpoints reconciler). A ClusterIP Service
//! with port 443 (`https`) and no selector, on the first address of the ClusterIP range (which
//! the serving certificate names), and Endpoints naming the server's address and port,
//! written at each start (the port may change). Pods get `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT` from it in every namespace.

use std::net::IpAddr;

use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::{resources, ApiError};
use serde_json::json;

use crate::registry::{Registry, Scope};

/// The Service's name and namespace.
pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";

/// The ClusterIP the `kubernetes` Service asks for: the first of the range, as Kubernetes
/// gives it the first of its service CIDR (10.96.0.1).
pub fn service_ip() -> IpAddr {
    let (network, _) = crate::services::CLUSTER_IP_RANGE;
    IpAddr::V4(std::net::Ipv4Addr::from(u32::from(network) + 1))
}

/// Makes (or brings up to date) the `kubernetes` Service and its Endpoints for the API server
/// at `address:port`; answers the Service's ClusterIP.
pub async fn ensure(registry: &Registry, address: IpAddr, port: u16) -> Result<String, ApiError> {
    let services = resources::by_kind("v1", "Service").map_err(ApiError::Internal)?;
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
            match registry
                .create(
                    services,
                    Some(NAMESPACE),
                    body(Some(service_ip().to_string())),
                    WriteOptions::default(),
                )
                .await
            {
                Ok(made) => made,
                // The address is some other Service's (made before minik kept this one).
                Err(ApiError::Invalid { .. }) => {
                    tracing::warn!(ip = %service_ip(), "the kubernetes Service's usual address is taken; it gets another (which the serving certificate does not name)");
                    registry
                        .create(
                            services,
                            Some(NAMESPACE),
                            body(None),
                            WriteOptions::default(),
                        )
                        .await?
                }
                Err(e) => return Err(e),
            }
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
    let service: serde_json::Value = serde_json::from_slice(&service)
        .map_err(|e| ApiError::Internal(format!("the kubernetes Service is not JSON: {e}")))?;
    Ok(service["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}
