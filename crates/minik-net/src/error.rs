//! The one error type of the crate: each variant names what failed and where.

use std::path::PathBuf;

use crate::cidr::{Cidr, CidrError};

/// What went wrong building or tearing down the pod network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A network that does not fit (syntax, overlap, outside the cluster CIDR).
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// Every pod address of the node's pod CIDR is in use. The kubelet reports this as
    /// `FailedCreatePodSandBox` with this message.
    #[error("no IP addresses available in pod CIDR {cidr}: all {in_use} are in use")]
    Exhausted { cidr: Cidr, in_use: usize },
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A network namespace could not be made, entered or removed.
    #[error("{action} network namespace {}: {source}", path.display())]
    Netns {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A netlink request failed; `what` says which (a link, an address, a route).
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    /// A sysctl could not be set.
    #[error("setting {name} to {value}: {source}")]
    Sysctl {
        name: String,
        value: String,
        source: std::io::Error,
    },
    /// The `nft` command failed or refused the ruleset.
    #[error("`{command}` failed: {message}")]
    Nft { command: String, message: String },
    /// Other nodes' pod CIDRs that could not be routed; the routes of the others are in place.
    #[error("{}", .0.join("; "))]
    Unroutable(Vec<String>),
    /// A setting or argument that cannot work, with why.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// A netlink error about `what`.
    pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
        let what = what.into();
        move |source| Error::Netlink { what, source }
    }
}

/// The errno of a netlink error, if the kernel answered with one.
pub(crate) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}
