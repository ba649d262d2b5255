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
//! - [`nft`]: running the `nft` command (shared with the node's Service proxy).
//!
//! Inside: `ipam` (addresses on disk, host-local style), `link` (netlink: bridge, veths,
//! routes), `rules` (the nftables table), `sysctl`.

mod error;
mod ipam;
mod link;
pub mod netns;
mod network;
/// The `nft` command, run the one way the pod network and the node's Service proxy run it.
pub mod nft {
    pub use crate::rules::{run, NftFailure};
}
mod rules;
mod sysctl;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use minik_api::cidr::{self, Cidr, CidrError};
pub use network::{Config, Peer, PodNetwork, DEFAULT_MTU};
pub use rules::{HostPort, Protocol};

/// The bridge node `node`'s pod network is built on (a test or an operator looking for what an
/// agent left behind).
pub fn bridge_name(node: &str) -> String {
    link::bridge_name(node)
}

/// The nftables table (family `ip`) of node `node`'s pod network.
pub fn table_name(node: &str) -> String {
    rules::table_name(node)
}
