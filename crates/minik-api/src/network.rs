//! The cluster's network settings as the API server publishes them at [`NETWORK_PATH`]: the
//! cluster CIDR nodes' pod CIDRs come from, the service CIDR ClusterIPs come from, and the
//! cluster DNS address and domain. A node agent reads them at start to build its pod network
//! and each pod's `resolv.conf`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// Where the API server answers a [`ClusterNetwork`] (`GET`, any authenticated identity).
pub const NETWORK_PATH: &str = "/minik/v1/network";

/// The Service pods send DNS queries to, as tools expect it: `kube-system/kube-dns`.
pub const DNS_SERVICE_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE_NAME: &str = "kube-dns";

/// Which host address of the service CIDR the `kube-dns` Service asks for: the 10th
/// (`10.96.0.10`), as kubeadm gives it.
pub const DNS_SERVICE_HOST_INDEX: u32 = 10;

/// The cluster domain (the kubelet's `--cluster-domain`), under which Services are named
/// (`web.default.svc.cluster.local`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The answer of `GET /minik/v1/network`:
/// `{"clusterCIDR": "10.244.0.0/16", "nodeCIDRMaskSize": 24, "serviceCIDR": "10.96.0.0/12",
/// "clusterDNS": "10.96.0.10", "clusterDomain": "cluster.local"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetwork {
    /// The cluster CIDR each Node's `spec.podCIDR` is carved from (`--cluster-cidr`); `None`
    /// when the server runs no node IPAM (`--cluster-cidr none`).
    #[serde(rename = "clusterCIDR", with = "optional_cidr")]
    pub cluster_cidr: Option<Cidr>,
    /// The prefix length of each Node's pod CIDR (`--node-cidr-mask-size`).
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: u8,
    /// The range ClusterIPs come from (`--service-cidr`).
    #[serde(rename = "serviceCIDR", with = "cidr_text")]
    pub service_cidr: Cidr,
    /// The ClusterIP of the `kube-dns` Service in `kube-system`, the address pods send DNS
    /// queries to; `None` while that Service does not exist (or has no IPv4 ClusterIP).
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Ipv4Addr>,
    /// The cluster domain ([`DEFAULT_CLUSTER_DOMAIN`]).
    #[serde(rename = "clusterDomain")]
    pub cluster_domain: String,
}

/// A [`Cidr`] as its text, `10.96.0.0/12`.
mod cidr_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::cidr::Cidr;

    pub fn serialize<S: Serializer>(cidr: &Cidr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(cidr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An optional [`Cidr`] as its text or `null`.
mod optional_cidr {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::cidr::Cidr;

    pub fn serialize<S: Serializer>(cidr: &Option<Cidr>, s: S) -> Result<S::Ok, S::Error> {
        match cidr {
            Some(cidr) => s.collect_str(cidr),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cidr>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn network() -> ClusterNetwork {
        ClusterNetwork {
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
            node_cidr_mask_size: 24,
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            cluster_dns: Some(Ipv4Addr::new(10, 96, 0, 10)),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
        }
    }

    #[test]
    fn the_answer_reads_as_documented_and_back() {
        let text = json!({
            "clusterCIDR": "10.244.0.0/16",
            "nodeCIDRMaskSize": 24,
            "serviceCIDR": "10.96.0.0/12",
            "clusterDNS": "10.96.0.10",
            "clusterDomain": "cluster.local",
        });
        assert_eq!(serde_json::to_value(network()).unwrap(), text);
        assert_eq!(
            serde_json::from_value::<ClusterNetwork>(text).unwrap(),
            network()
        );
        let without = ClusterNetwork {
            cluster_cidr: None,
            cluster_dns: None,
            ..network()
        };
        let value = serde_json::to_value(&without).unwrap();
        assert_eq!(value["clusterCIDR"], serde_json::Value::Null);
        assert_eq!(value["clusterDNS"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<ClusterNetwork>(value).unwrap(),
            without
        );
    }

    #[test]
    fn a_bad_cidr_is_refused_with_the_reason() {
        let bad = json!({
            "clusterCIDR": null,
            "nodeCIDRMaskSize": 24,
            "serviceCIDR": "10.96.0.1/12",
            "clusterDNS": null,
            "clusterDomain": "cluster.local",
        });
        let err = serde_json::from_value::<ClusterNetwork>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("host bits set"), "{err}");
    }
}
