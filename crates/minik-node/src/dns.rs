//! The node's cluster DNS server: `minik_dns` fed from the agent's informers of Services and
//! Endpoints. Every agent runs one (node-local DNS); the node's proxy sends the `kube-dns`
//! Service's address to it.
//!
//! The zone is a pure function of the objects ([`minik_dns::Zone::build`]), rebuilt whole
//! and swapped in when they change. Until both informers have listed their objects the server
//! answers SERVFAIL for names in the cluster domain (clients retry) rather than NXDOMAIN
//! (which they would cache). Changes come in bursts (a rollout moves many endpoints at once), so
//! a rebuild waits until [`QUIET`] has passed without a change, but never longer than
//! [`LATEST`] after the first change of a burst: answers follow the Endpoints within a fraction
//! of a second, and a storm of changes costs a few rebuilds a second at most.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minik_api::k8s_openapi::api::core::v1::{Endpoints, Service};
use minik_client::{Informer, InformerCache, Subscription};
use minik_dns::{ClusterDomain, SharedZone, Zone};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

pub use minik_dns::{Upstream, DEFAULT_UPSTREAM_TIMEOUT};

/// How long a burst of changes must pause before the zone is rebuilt.
const QUIET: Duration = Duration::from_millis(50);
/// How long after the first change of a burst the zone is rebuilt at the latest.
const LATEST: Duration = Duration::from_millis(200);
/// How many times a port chosen by the kernel for UDP is tried for TCP (listen port 0).
const EPHEMERAL_ATTEMPTS: usize = 20;

/// What the agent's DNS server serves and where.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// The cluster domain, such as `cluster.local`.
    pub domain: String,
    /// Where to listen, each address on UDP and TCP. Port 0 picks a free port, the same for
    /// both (tests).
    pub listen: Vec<SocketAddr>,
    /// Where names outside the cluster domain go, or [`Upstream::none`] to refuse them.
    pub upstream: Upstream,
}

/// The running DNS server. Dropping it, or [`ClusterDns::stop`], stops the server's tasks and
/// the rebuilds; the sockets close as the runtime drops those tasks, right after.
pub struct ClusterDns {
    addresses: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterDns {
    /// The addresses served, with the ports bound (UDP and TCP share each one).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Stops serving, and returns once the server's tasks have ended (their workers, which
    /// hold the sockets, are dropped by the runtime right after).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled, as asked; a panic was logged by the runtime already.
            let _ = task.await;
        }
    }
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts serving the cluster zone of `services` and `endpoints` (the agent's informers,
/// shared with its proxy) as `settings` say. Fails, naming the address, when a socket cannot
/// be bound (the port taken by another DNS server, an address that is not this host's), or
/// when the domain is not a DNS name.
pub async fn start(
    services: &Informer<Service>,
    endpoints: &Informer<Endpoints>,
    settings: DnsSettings,
) -> Result<ClusterDns, String> {
    let domain = ClusterDomain::parse(&settings.domain).map_err(|e| e.to_string())?;
    if settings.listen.is_empty() {
        return Err("the cluster DNS server has no address to listen on".to_string());
    }
    // Subscribed before anything is read, so that no change falls between a read and the
    // subscription.
    let changes = (services.subscribe(), endpoints.subscribe());
    let mut sockets = Vec::with_capacity(settings.listen.len());
    for address in &settings.listen {
        sockets.push(bind(*address).await?);
    }

    let zone = SharedZone::new(Zone::unsynced(&domain));
    let mut addresses = Vec::with_capacity(sockets.len());
    let mut tasks = Vec::with_capacity(sockets.len() + 1);
    for (udp, tcp, address) in sockets {
        addresses.push(address);
        let (zone, upstream) = (zone.clone(), settings.upstream.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(error) = minik_dns::serve(udp, tcp, zone, upstream).await {
                tracing::error!(%address, %error, "the cluster DNS server stopped");
            }
        }));
    }
    let sources = Sources {
        domain,
        services: services.cache(),
        endpoints: endpoints.cache(),
    };
    tasks.push(tokio::spawn(keep_zone(sources, changes, zone)));
    tracing::info!(
        addresses = ?addresses,
        domain = %settings.domain,
        upstream = ?settings.upstream.servers(),
        "serving cluster DNS"
    );
    Ok(ClusterDns { addresses, tasks })
}

/// UDP and TCP on `address` (on one port chosen by the kernel when its port is 0).
async fn bind(address: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), String> {
    if address.port() != 0 {
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|e| bind_error("UDP", address, &e))?;
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|e| bind_error("TCP", address, &e))?;
        return Ok((udp, tcp, address));
    }
    let mut last = None;
    for _ in 0..EPHEMERAL_ATTEMPTS {
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|e| bind_error("UDP", address, &e))?;
        let bound = udp
            .local_addr()
            .map_err(|e| bind_error("UDP", address, &e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            // Another socket has the port for TCP: try another one.
            Err(e) if e.kind() == ErrorKind::AddrInUse => last = Some((bound, e)),
            Err(e) => return Err(bind_error("TCP", bound, &e)),
        }
    }
    match last {
        Some((bound, e)) => Err(bind_error("TCP", bound, &e)),
        None => Err(format!("cannot listen for DNS on {address}")),
    }
}

/// A bind error that names the address and says what usually causes it.
fn bind_error(protocol: &str, address: SocketAddr, error: &std::io::Error) -> String {
    let hint = match error.kind() {
        ErrorKind::AddrInUse => {
            " (another DNS server, such as systemd-resolved or dnsmasq, may already listen there)"
        }
        ErrorKind::AddrNotAvailable => " (the address is not one of this host's)",
        ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability)"
        }
        _ => "",
    };
    format!("cannot listen for DNS on {protocol} {address}: {error}{hint}")
}

/// What the zone is built from.
struct Sources {
    domain: ClusterDomain,
    services: InformerCache<Service>,
    endpoints: InformerCache<Endpoints>,
}

impl Sources {
    /// Builds the zone from the caches as they are now, off the async threads (a large
    /// cluster's zone takes milliseconds), and logs it. None if the build did not finish.
    async fn build(&self) -> Option<Zone> {
        let domain = self.domain.clone();
        let services = self.services.list();
        let endpoints = self.endpoints.list();
        let built = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let zone = Zone::build(
                &domain,
                services.iter().map(Arc::as_ref),
                endpoints.iter().map(Arc::as_ref),
            );
            (zone, started.elapsed(), services.len(), endpoints.len())
        })
        .await;
        match built {
            Ok((zone, took, services, endpoints)) => {
                tracing::debug!(
                    names = zone.len(),
                    services,
                    endpoints,
                    took_us = took.as_micros() as u64,
                    "rebuilt the cluster DNS zone"
                );
                Some(zone)
            }
            Err(error) => {
                // A panic in the build (a bug), or the runtime shutting down: the zone served
                // stays as it is, stale rather than empty.
                tracing::error!(%error, "cannot build the cluster DNS zone");
                None
            }
        }
    }
}

/// Keeps `zone` built from the sources: once both caches are synced, then after every burst
/// of changes. Ends when an informer is gone (the agent is stopping).
async fn keep_zone(
    sources: Sources,
    mut changes: (Subscription<Service>, Subscription<Endpoints>),
    zone: SharedZone,
) {
    tokio::join!(
        sources.services.wait_synced(),
        sources.endpoints.wait_synced()
    );
    if let Some(built) = sources.build().await {
        zone.store(built);
    }
    while changes.next().await {
        let going_on = rest_of_burst(&mut changes).await;
        if let Some(built) = sources.build().await {
            zone.store(built);
        }
        if !going_on {
            break;
        }
    }
    // The informers end only when the agent drops them, as it stops.
    tracing::debug!(
        "the informers of Services or Endpoints stopped; the zone is no longer rebuilt"
    );
}

/// Where changes come from: the subscriptions to both informers (a channel in tests).
trait Changes {
    /// Waits for the next change; false when there will be none (an informer is gone).
    fn next(&mut self) -> impl std::future::Future<Output = bool> + Send;
}

impl Changes for (Subscription<Service>, Subscription<Endpoints>) {
    async fn next(&mut self) -> bool {
        let (services, endpoints) = self;
        tokio::select! {
            change = services.next() => change.is_some(),
            change = endpoints.next() => change.is_some(),
        }
    }
}

/// Waits out a burst of changes whose first one just came: until [`QUIET`] passes without
/// another, or [`LATEST`] after the first, whichever is sooner. False when the changes ended.
async fn rest_of_burst(changes: &mut impl Changes) -> bool {
    let latest = tokio::time::Instant::now() + LATEST;
    loop {
        let quiet = (tokio::time::Instant::now() + QUIET).min(latest);
        tokio::select! {
            more = changes.next() => if !more { return false },
            _ = tokio::time::sleep_until(quiet) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;

    impl Changes for mpsc::UnboundedReceiver<()> {
        async fn next(&mut self) -> bool {
            self.recv().await.is_some()
        }
    }

    /// How long after the first of changes sent at `offsets` (milliseconds from the start)
    /// the burst is over, and whether the changes go on.
    async fn burst_of(offsets: &'static [u64], close: bool) -> (Duration, bool) {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let start = Instant::now();
        let sending = tokio::spawn(async move {
            for offset in offsets {
                tokio::time::sleep_until(start + Duration::from_millis(*offset)).await;
                let _ = sender.send(());
            }
            if !close {
                // Keep the channel open past every deadline.
                std::future::pending::<()>().await;
            }
        });
        assert!(receiver.next().await, "the first change");
        let going_on = rest_of_burst(&mut receiver).await;
        let took = start.elapsed();
        sending.abort();
        (took, going_on)
    }

    #[tokio::test(start_paused = true)]
    async fn one_change_is_applied_after_the_quiet_time() {
        assert_eq!(burst_of(&[0], false).await, (QUIET, true));
    }

    #[tokio::test(start_paused = true)]
    async fn changes_close_together_are_applied_together_after_the_last() {
        let (took, going_on) = burst_of(&[0, 30, 60, 90], false).await;
        assert_eq!(took, Duration::from_millis(90) + QUIET);
        assert!(going_on);
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_changes_is_applied_at_the_latest_time() {
        static EVERY_10_MS: [u64; 100] = {
            let mut offsets = [0; 100];
            let mut i = 0;
            while i < 100 {
                offsets[i] = i as u64 * 10;
                i += 1;
            }
            offsets
        };
        assert_eq!(burst_of(&EVERY_10_MS, false).await, (LATEST, true));
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_changes_ends_the_burst() {
        let (_, going_on) = burst_of(&[0, 10], true).await;
        assert!(!going_on);
    }
}
