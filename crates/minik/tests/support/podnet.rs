//! What the pod-network tests share: finding and removing what a node's pod network leaves
//! on the host (its bridge, its tables, its routes), and address arithmetic.

use std::path::Path;
use std::process::{Command, Stdio};

/// The nftables tables of node `node`: its pod network's and its Service proxy's.
fn tables(node: &str) -> [String; 2] {
    [minik_net::table_name(node), format!("minik-{node}")]
}

/// Removes node `node`'s bridge and nftables tables in this network namespace, if they are
/// there (what an agent that failed leaves).
pub fn remove_network(node: &str) {
    let _ = Command::new("ip")
        .args(["link", "delete", &minik_net::bridge_name(node)])
        .stderr(Stdio::null())
        .status();
    for table in tables(node) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .stderr(Stdio::null())
            .status();
    }
}

/// What node `node` has left in this network namespace: its bridge, its tables, and routes
/// into `cluster_cidr`.
pub fn network_leftovers(node: &str, cluster_cidr: &str) -> Vec<String> {
    let mut left = Vec::new();
    let bridge = minik_net::bridge_name(node);
    if Path::new("/sys/class/net").join(&bridge).exists() {
        left.push(format!("bridge {bridge}"));
    }
    for table in tables(node) {
        let listed = Command::new("nft")
            .args(["list", "table", "ip", &table])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if listed.is_ok_and(|s| s.success()) {
            left.push(format!("table {table}"));
        }
    }
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "root", cluster_cidr])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    left.extend(routes.lines().map(|r| format!("route {r}")));
    left
}

/// Whether `ip` is inside `cidr` (`a.b.c.d/n`).
pub fn inside(ip: &str, cidr: &str) -> bool {
    let cidr: minik_net::Cidr = cidr.parse().unwrap();
    ip.parse().is_ok_and(|ip| cidr.contains(ip))
}

/// Waits until the log of pod `name` in `default` (of `container`, when given) holds `text`;
/// answers the log.
pub async fn log_with(
    http: &minik_testkit::Http,
    name: &str,
    container: Option<&str>,
    text: &str,
) -> String {
    let (path, what) = match container {
        Some(c) => (
            format!("/api/v1/namespaces/default/pods/{name}/log?container={c}"),
            format!("{name}/{c}"),
        ),
        None => (
            format!("/api/v1/namespaces/default/pods/{name}/log"),
            name.to_owned(),
        ),
    };
    super::wait_for(
        &format!("{text:?} in the log of {what}"),
        super::DEADLINE,
        || async {
            let log = http.get_text(&path).await.unwrap_or_default();
            if log.contains(text) {
                Ok(log)
            } else {
                Err(log)
            }
        },
    )
    .await
}
