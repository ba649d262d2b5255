//! Kernel settings under `/proc/sys`. The network ones are per network namespace: they are
//! those of the namespace of the thread that opens the file, so they are set from a thread
//! inside the namespace (`netns::run_in`).

use std::path::Path;

use crate::Error;

/// Forwarding between interfaces: pods' packets go through the node.
pub(crate) const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// Bridged IPv4 traffic goes through the `ip` family's netfilter hooks (br_netfilter), so the
/// Services' DNAT is undone for the answers of a pod to a pod on the same bridge. Present only
/// where the br_netfilter module is loaded.
pub(crate) const BRIDGE_NF_CALL_IPTABLES: &str = "net/bridge/bridge-nf-call-iptables";

/// The sysctl that lets the bridge carry packets with a loopback source: a hostPort reached at
/// `127.0.0.1` is DNATed to a pod, then masqueraded to the bridge's address.
pub(crate) fn route_localnet(interface: &str) -> String {
    format!("net/ipv4/conf/{interface}/route_localnet")
}

/// Writes `value` to `/proc/sys/NAME` unless it holds it already.
pub(crate) fn set(name: &str, value: &str) -> Result<(), Error> {
    let path = Path::new("/proc/sys").join(name);
    let error = |source| Error::Sysctl {
        name: name.replace('/', "."),
        value: value.to_string(),
        source,
    };
    if std::fs::read_to_string(&path).map_err(error)?.trim() == value {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(error)
}

/// Like [`set`], for a setting that exists only with a kernel module: absent is no error.
pub(crate) fn set_if_present(name: &str, value: &str) -> Result<bool, Error> {
    if !Path::new("/proc/sys").join(name).exists() {
        return Ok(false);
    }
    set(name, value).map(|()| true)
}
