//! IPv4 networks in CIDR notation, and the arithmetic of pod CIDRs: carving one subnet per node
//! out of the cluster CIDR, checking that networks do not overlap, and the addresses a subnet
//! reserves (network, gateway, broadcast). The server's node IPAM and the node's pod network
//! (`minik-net`) both use it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Kubernetes' default cluster CIDR (`--cluster-cidr`), out of which each node gets a pod CIDR.
pub const DEFAULT_CLUSTER_CIDR: Cidr = Cidr {
    network: Ipv4Addr::new(10, 244, 0, 0),
    prefix: 16,
};

/// Kubernetes' default service CIDR (`--service-cidr`), where ClusterIPs come from.
pub const DEFAULT_SERVICE_CIDR: Cidr = Cidr {
    network: Ipv4Addr::new(10, 96, 0, 0),
    prefix: 12,
};

/// The default size of a node's pod CIDR (`--node-cidr-mask-size`): a /24, 253 pods.
pub const DEFAULT_NODE_MASK: u8 = 24;

/// An IPv4 network: an address whose host bits are zero and a prefix length (0 to 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a text is not an IPv4 CIDR, or why networks do not fit together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The text is not `a.b.c.d/n`.
    #[error("{text:?} is not an IPv4 CIDR (like 10.244.0.0/16): {reason}")]
    Syntax { text: String, reason: &'static str },
    /// The address has bits set beyond the prefix.
    #[error("{text:?} has host bits set: the network is {network}")]
    HostBits { text: String, network: Cidr },
    /// A prefix length above 32.
    #[error("prefix length {0} is beyond 32")]
    Prefix(u8),
    /// Two networks that must be apart share addresses.
    #[error("{what} {cidr} overlaps {other}")]
    Overlap {
        what: &'static str,
        cidr: Cidr,
        /// What it overlaps, with its addresses: "the service CIDR 10.96.0.0/12".
        other: String,
    },
    /// A network that must lie inside another does not.
    #[error("{what} {cidr} is not inside {outer_what} {outer}")]
    Outside {
        what: &'static str,
        cidr: Cidr,
        outer_what: &'static str,
        outer: Cidr,
    },
    /// The node mask cannot carve the cluster CIDR.
    #[error(
        "node mask /{mask} does not fit cluster CIDR {cluster}: it must be at least /{} and at \
         most /30",
        cluster.prefix()
    )]
    NodeMask { cluster: Cidr, mask: u8 },
}

impl Cidr {
    /// The network of `address/prefix`: host bits are cleared.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Result<Cidr, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Prefix(prefix));
        }
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix)),
            prefix,
        })
    }

    /// The network address (the first one).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask (`255.255.255.0` for a /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The last address (the broadcast address of a subnet).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The number of addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The gateway of a pod subnet: its first address after the network address (the bridge's).
    /// A /31 or /32 has none.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| Ipv4Addr::from(u32::from(self.network) + 1))
    }

    /// The addresses pods can get: all but the network, gateway and broadcast addresses.
    /// Empty for a /31 or /32.
    pub fn pod_range(&self) -> std::ops::RangeInclusive<u32> {
        if self.prefix > 30 {
            #[allow(clippy::reversed_empty_ranges)]
            return 1..=0;
        }
        u32::from(self.network) + 2..=u32::from(self.broadcast()) - 1
    }

    /// Whether `address` is in the network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether every address of `other` is in this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }

    /// Whether the two networks share an address (one then covers the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The subnets of length `prefix` in this network, in order; none when `prefix` is shorter
    /// than the network's or beyond 32.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Cidr> {
        let valid = prefix >= self.prefix && prefix <= 32;
        let count: u64 = if valid {
            1u64 << (prefix - self.prefix)
        } else {
            0
        };
        let base = u64::from(u32::from(self.network));
        let step = if valid {
            1u64 << (32 - u32::from(prefix))
        } else {
            0
        };
        (0..count).map(move |i| Cidr {
            // In range: base + i * step stays below 2^32 because the subnets are inside self.
            network: Ipv4Addr::from((base + i * step) as u32),
            prefix,
        })
    }
}

/// The netmask of a prefix length (at most 32), as a number.
fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/n`. An address with host bits set is refused (`10.244.0.1/16`): a typo
    /// there would silently mean another network.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let syntax = |reason| CidrError::Syntax {
            text: text.to_string(),
            reason,
        };
        let (address, prefix) = text.split_once('/').ok_or(syntax("no /prefix"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| syntax("the address is not a dotted IPv4 address"))?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax("the prefix length is not a number from 0 to 32"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| syntax("the prefix length is not a number from 0 to 32"))?;
        if prefix > 32 {
            return Err(syntax("the prefix length is not a number from 0 to 32"));
        }
        let cidr = Cidr::new(address, prefix)?;
        if cidr.network != address {
            return Err(CidrError::HostBits {
                text: text.to_string(),
                network: cidr,
            });
        }
        Ok(cidr)
    }
}

/// The first subnet of length `mask` in `cluster` that overlaps none of `used` (the pod CIDRs
/// already given to nodes), or `None` when the cluster CIDR is full or `mask` cannot carve it.
pub fn allocate(cluster: Cidr, mask: u8, used: &BTreeSet<Cidr>) -> Option<Cidr> {
    free_subnets(cluster, mask, used).next()
}

/// The subnets of length `mask` in `cluster` that overlap none of `used`, in address order;
/// none when `mask` cannot carve `cluster`. Taking `n` of them costs O(`used` log `used` + `n`),
/// however full the cluster CIDR is.
pub fn free_subnets<'a>(
    cluster: Cidr,
    mask: u8,
    used: impl IntoIterator<Item = &'a Cidr>,
) -> impl Iterator<Item = Cidr> {
    // The used address ranges within the cluster CIDR, as inclusive bounds, sorted and merged.
    let (first, last) = (
        u64::from(u32::from(cluster.network)),
        u64::from(u32::from(cluster.broadcast())),
    );
    let mut taken: Vec<(u64, u64)> = used
        .into_iter()
        .filter(|u| u.overlaps(&cluster))
        .map(|u| {
            let start = u64::from(u32::from(u.network)).max(first);
            let end = u64::from(u32::from(u.broadcast())).min(last);
            (start, end)
        })
        .collect();
    taken.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(taken.len());
    for (start, end) in taken {
        match merged.last_mut() {
            Some(previous) if start <= previous.1.saturating_add(1) => {
                previous.1 = previous.1.max(end)
            }
            _ => merged.push((start, end)),
        }
    }
    let valid = mask >= cluster.prefix && mask <= 32;
    let step = 1u64 << (32 - u32::from(mask.min(32)));
    let mut next = if valid { first } else { last + 1 };
    let mut ranges = merged.into_iter().peekable();
    std::iter::from_fn(move || loop {
        let end = next + step - 1;
        if end > last {
            return None;
        }
        while ranges.next_if(|r| r.1 < next).is_some() {}
        match ranges.peek() {
            Some(&(start, taken_end)) if start <= end => {
                // Skip to the first subnet boundary after the taken range.
                next = (taken_end / step + 1) * step;
            }
            _ => {
                let subnet = Cidr {
                    // In range: next + step - 1 <= last, which is an IPv4 address.
                    network: Ipv4Addr::from(next as u32),
                    prefix: mask,
                };
                next += step;
                return Some(subnet);
            }
        }
    })
}

/// Checks that `mask` can carve pod CIDRs out of `cluster`: at least as long as the cluster's
/// prefix, and leaving room for a gateway and a pod (at most /30).
pub fn check_node_mask(cluster: Cidr, mask: u8) -> Result<(), CidrError> {
    if mask < cluster.prefix() || mask > 30 {
        return Err(CidrError::NodeMask { cluster, mask });
    }
    Ok(())
}

/// Checks that the cluster CIDR and the service CIDR do not overlap.
pub fn check_cluster(cluster: Cidr, service: Cidr) -> Result<(), CidrError> {
    if cluster.overlaps(&service) {
        return Err(CidrError::Overlap {
            what: "cluster CIDR",
            cidr: cluster,
            other: format!("the service CIDR {service}"),
        });
    }
    Ok(())
}

/// Checks a node's pod CIDR and the service CIDR against the host's routes (`host_routes`: the
/// destinations of routes the pod network did not make, each with a description such as
/// `"the route to 10.0.0.0/8 dev eth0"`): a route that shares addresses with either would
/// send some of their traffic elsewhere, or hide hosts of the network. A default route is no
/// conflict, nor a route inside the cluster CIDR apart from the pod CIDR (another node's).
pub fn check_host_routes(
    pod: Cidr,
    service: Cidr,
    host_routes: &[(Cidr, String)],
) -> Result<(), CidrError> {
    for (what, cidr) in [("pod CIDR", pod), ("service CIDR", service)] {
        if let Some((_, description)) = host_routes
            .iter()
            .find(|(route, _)| route.prefix() > 0 && route.overlaps(&cidr))
        {
            return Err(CidrError::Overlap {
                what,
                cidr,
                other: description.clone(),
            });
        }
    }
    Ok(())
}

/// Checks a node's pod CIDR: inside the cluster CIDR, apart from the service CIDR, and large
/// enough for a gateway and a pod.
pub fn check_pod_cidr(pod: Cidr, cluster: Cidr, service: Cidr) -> Result<(), CidrError> {
    if !cluster.covers(&pod) {
        return Err(CidrError::Outside {
            what: "pod CIDR",
            cidr: pod,
            outer_what: "the cluster CIDR",
            outer: cluster,
        });
    }
    if pod.overlaps(&service) {
        return Err(CidrError::Overlap {
            what: "pod CIDR",
            cidr: pod,
            other: format!("the service CIDR {service}"),
        });
    }
    if pod.prefix() > 30 {
        return Err(CidrError::NodeMask {
            cluster,
            mask: pod.prefix(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        for text in [
            "10.244.0.0/16",
            "0.0.0.0/0",
            "10.244.3.7/32",
            "192.168.1.0/24",
        ] {
            assert_eq!(cidr(text).to_string(), text);
        }
        assert_eq!(DEFAULT_CLUSTER_CIDR, cidr("10.244.0.0/16"));
        assert_eq!(DEFAULT_SERVICE_CIDR, cidr("10.96.0.0/12"));
    }

    #[test]
    fn refuses_bad_text_with_the_reason() {
        let cases = [
            ("10.244.0.0", "no /prefix"),
            ("10.244.0/16", "not a dotted IPv4 address"),
            ("10.244.0.0/33", "not a number from 0 to 32"),
            ("10.244.0.0/", "not a number from 0 to 32"),
            ("10.244.0.0/+8", "not a number from 0 to 32"),
            ("10.244.0.0/008", "not a number from 0 to 32"),
            ("::1/128", "not a dotted IPv4 address"),
        ];
        for (text, reason) in cases {
            let err = text.parse::<Cidr>().unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
        assert_eq!(
            "10.244.0.1/16".parse::<Cidr>().unwrap_err().to_string(),
            "\"10.244.0.1/16\" has host bits set: the network is 10.244.0.0/16"
        );
    }

    #[test]
    fn subnet_addresses() {
        let pod = cidr("10.244.1.0/24");
        assert_eq!(pod.gateway(), Some(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(pod.broadcast(), Ipv4Addr::new(10, 244, 1, 255));
        assert_eq!(pod.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(pod.size(), 256);
        let range = pod.pod_range();
        assert_eq!(Ipv4Addr::from(*range.start()), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(Ipv4Addr::from(*range.end()), Ipv4Addr::new(10, 244, 1, 254));
        assert_eq!(cidr("10.0.0.0/30").pod_range().count(), 1);
        assert_eq!(cidr("10.0.0.0/31").pod_range().count(), 0);
        assert_eq!(cidr("10.0.0.0/31").gateway(), None);
        assert_eq!(cidr("0.0.0.0/0").broadcast(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn allocates_the_first_free_subnet() {
        let cluster = DEFAULT_CLUSTER_CIDR;
        let mut used = BTreeSet::new();
        let first = allocate(cluster, 24, &used).unwrap();
        assert_eq!(first, cidr("10.244.0.0/24"));
        used.insert(first);
        used.insert(cidr("10.244.2.0/24"));
        assert_eq!(allocate(cluster, 24, &used), Some(cidr("10.244.1.0/24")));
        used.insert(cidr("10.244.1.0/24"));
        assert_eq!(allocate(cluster, 24, &used), Some(cidr("10.244.3.0/24")));
        used.insert(cidr("10.244.3.0/24"));
        // A used /23 (a node given a larger subnet earlier) blocks both of its /24s.
        used.insert(cidr("10.244.4.0/23"));
        assert_eq!(allocate(cluster, 24, &used), Some(cidr("10.244.6.0/24")));
        // Full.
        let all: BTreeSet<Cidr> = cidr("10.244.0.0/22").subnets(24).collect();
        assert_eq!(allocate(cidr("10.244.0.0/22"), 24, &all), None);
        // A mask that cannot carve the cluster CIDR.
        assert_eq!(allocate(cluster, 8, &BTreeSet::new()), None);
        assert_eq!(allocate(cluster, 33, &BTreeSet::new()), None);
    }

    #[test]
    fn checks_masks_and_overlaps() {
        assert!(check_node_mask(DEFAULT_CLUSTER_CIDR, 24).is_ok());
        assert_eq!(
            check_node_mask(DEFAULT_CLUSTER_CIDR, 12)
                .unwrap_err()
                .to_string(),
            "node mask /12 does not fit cluster CIDR 10.244.0.0/16: it must be at least /16 and \
             at most /30"
        );
        assert!(check_node_mask(DEFAULT_CLUSTER_CIDR, 31).is_err());

        assert!(check_cluster(DEFAULT_CLUSTER_CIDR, DEFAULT_SERVICE_CIDR).is_ok());
        assert_eq!(
            check_cluster(cidr("10.96.0.0/16"), DEFAULT_SERVICE_CIDR)
                .unwrap_err()
                .to_string(),
            "cluster CIDR 10.96.0.0/16 overlaps the service CIDR 10.96.0.0/12"
        );
        let pod = cidr("10.244.1.0/24");
        let routes = [
            (cidr("0.0.0.0/0"), "the default route".to_string()),
            // Another node's bridge on the same host: inside the cluster CIDR, apart.
            (
                cidr("10.244.2.0/24"),
                "the route to 10.244.2.0/24".to_string(),
            ),
            (
                cidr("10.0.0.0/8"),
                "the route to 10.0.0.0/8 dev eth0".to_string(),
            ),
        ];
        assert_eq!(
            check_host_routes(pod, DEFAULT_SERVICE_CIDR, &routes)
                .unwrap_err()
                .to_string(),
            "pod CIDR 10.244.1.0/24 overlaps the route to 10.0.0.0/8 dev eth0"
        );
        assert!(check_host_routes(pod, DEFAULT_SERVICE_CIDR, &routes[..2]).is_ok());
        let service_route = [(cidr("10.100.0.0/16"), "the route to 10.100.0.0/16".into())];
        assert_eq!(
            check_host_routes(pod, DEFAULT_SERVICE_CIDR, &service_route)
                .unwrap_err()
                .to_string(),
            "service CIDR 10.96.0.0/12 overlaps the route to 10.100.0.0/16"
        );

        let (cluster, service) = (DEFAULT_CLUSTER_CIDR, DEFAULT_SERVICE_CIDR);
        assert!(check_pod_cidr(cidr("10.244.7.0/24"), cluster, service).is_ok());
        assert_eq!(
            check_pod_cidr(cidr("10.245.0.0/24"), cluster, service)
                .unwrap_err()
                .to_string(),
            "pod CIDR 10.245.0.0/24 is not inside the cluster CIDR 10.244.0.0/16"
        );
        assert!(check_pod_cidr(cidr("10.244.0.0/31"), cluster, service).is_err());
    }

    #[test]
    fn free_subnets_skip_what_is_taken() {
        let cluster = cidr("10.244.0.0/16");
        let used: BTreeSet<Cidr> = [
            cidr("10.244.0.0/24"),
            cidr("10.244.1.0/25"),
            cidr("10.244.3.0/24"),
            cidr("10.0.0.0/8"),
        ]
        .into_iter()
        .collect();
        // 10.0.0.0/8 covers the whole cluster CIDR: nothing is free.
        assert_eq!(free_subnets(cluster, 24, &used).next(), None);
        let used: Vec<Cidr> = used.into_iter().filter(|u| u.prefix() > 8).collect();
        let free: Vec<Cidr> = free_subnets(cluster, 24, &used).take(3).collect();
        assert_eq!(
            free,
            [
                cidr("10.244.2.0/24"),
                cidr("10.244.4.0/24"),
                cidr("10.244.5.0/24")
            ]
        );
        // The service CIDR and ranges outside the cluster CIDR.
        let used = [cidr("10.96.0.0/12"), cidr("10.244.0.0/17")];
        assert_eq!(
            free_subnets(cluster, 24, &used).next(),
            Some(cidr("10.244.128.0/24"))
        );
        assert_eq!(free_subnets(cluster, 24, &[]).count(), 256);
        assert_eq!(free_subnets(cidr("0.0.0.0/0"), 1, &[]).count(), 2);
        assert_eq!(
            free_subnets(
                cidr("255.255.255.252/30"),
                32,
                &[cidr("255.255.255.254/32")]
            )
            .collect::<Vec<_>>(),
            [
                cidr("255.255.255.252/32"),
                cidr("255.255.255.253/32"),
                cidr("255.255.255.255/32")
            ]
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,24}") {
            let _ = text.parse::<Cidr>();
        }

        #[test]
        fn printing_parses_back(address: u32, prefix in 0u8..=32) {
            let c = Cidr::new(Ipv4Addr::from(address), prefix).unwrap();
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
            prop_assert!(c.contains(Ipv4Addr::from(address)));
            prop_assert!(c.contains(c.broadcast()));
            prop_assert_eq!(c.size(), u64::from(u32::from(c.broadcast()) - u32::from(c.network())) + 1);
        }

        #[test]
        fn free_subnets_are_the_subnets_nothing_overlaps(
            prefix in 12u8..=24,
            extra in 0u8..=8,
            taken in proptest::collection::vec((any::<u32>(), 8u8..=32), 0..24),
        ) {
            let cluster = Cidr::new(Ipv4Addr::new(10, 244, 0, 0), prefix).unwrap();
            let mask = prefix + extra;
            // Half the taken ranges land inside the cluster CIDR.
            let used: Vec<Cidr> = taken
                .iter()
                .enumerate()
                .map(|(i, (a, p))| {
                    let address = if i % 2 == 0 {
                        u32::from(cluster.network()) | (a & !super::mask(prefix))
                    } else {
                        *a
                    };
                    Cidr::new(Ipv4Addr::from(address), *p).unwrap()
                })
                .collect();
            let expected: Vec<Cidr> = cluster
                .subnets(mask)
                .filter(|s| !used.iter().any(|u| u.overlaps(s)))
                .collect();
            prop_assert_eq!(free_subnets(cluster, mask, &used).collect::<Vec<_>>(), expected);
        }

        #[test]
        fn allocations_never_overlap(
            prefix in 8u8..=20,
            extra in 0u8..=6,
            taken in proptest::collection::vec(any::<u32>(), 0..20),
        ) {
            let cluster = Cidr::new(Ipv4Addr::new(10, 0, 0, 0), prefix).unwrap();
            let mask = prefix + extra;
            let mut used: BTreeSet<Cidr> = taken
                .iter()
                .map(|a| Cidr::new(Ipv4Addr::from(*a), mask).unwrap())
                .collect();
            for _ in 0..8 {
                match allocate(cluster, mask, &used) {
                    Some(subnet) => {
                        prop_assert!(cluster.covers(&subnet));
                        prop_assert_eq!(subnet.prefix(), mask);
                        prop_assert!(used.iter().all(|u| !u.overlaps(&subnet)));
                        used.insert(subnet);
                    }
                    None => {
                        let in_cluster = used.iter().filter(|u| cluster.covers(u)).count() as u64;
                        prop_assert_eq!(in_cluster, 1u64 << extra);
                    }
                }
            }
        }
    }
}
