//! minik's pod network on a node, built without CNI binaries: every pod in its own network
//! namespace gets an address of the node's pod CIDR, an `eth0` on the node's bridge, and a
//! default route through the bridge; the node routes other nodes' pod CIDRs to them
//! (host-gateway style), lets pods reach beyond the cluster through masquerade or not at all,
//! and publishes hostPorts with DNAT.
//!
//! - [`cidr`]: IPv4 networks and the arithmetic of pod CIDRs (`minik_api::cidr`, shared with
//!   the server's node IPAM).
//! - [`PodNetwork`]: one node's pod network, what the agent calls (see its methods).
//! - [`netns`]: network namespaces pinned at a path, and running code inside one.
//!
//! Inside: `ipam` (addresses on disk, host-local style), `link` (netlink: bridge, veths,
//! routes), `rules` (the nftables table), `sysctl`.

mod error;
mod ipam;
mod link;
pub mod netns;
mod network;
mod rules;
mod sysctl;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use minik_api::cidr::{self, Cidr, CidrError};
pub use network::{Config, Peer, PodNetwork, DEFAULT_MTU};
pub use rules::{HostPort, Protocol};
