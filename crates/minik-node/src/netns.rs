//! Connections into a pod's network namespace, for pods that have one of their own (the oci
//! runtime's sandboxes): probes and port-forward reach the container's ports there.

/// Connects to `host:port`, from inside the network namespace `netns` when given: a thread of
/// its own enters the namespace (setns changes only the calling thread), connects, and ends;
/// the socket stays in that namespace.
pub async fn connect(
    host: &str,
    port: u16,
    netns: Option<&std::path::Path>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(netns) = netns else {
        return tokio::net::TcpStream::connect((host, port)).await;
    };
    let address: std::net::IpAddr = host.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host} is not an IP address (a probe inside a pod takes one)"),
        )
    })?;
    let netns = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("probe-netns".into())
        .spawn(move || {
            let connected = std::fs::File::open(&netns)
                .and_then(|ns| {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)
                })
                .and_then(|()| {
                    std::net::TcpStream::connect_timeout(
                        &std::net::SocketAddr::new(address, port),
                        std::time::Duration::from_secs(10),
                    )
                });
            let _ = tx.send(connected);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the probe's thread ended"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}
