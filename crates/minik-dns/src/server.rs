//! The sockets: UDP and TCP (RFC 1035 §4.2.2 and RFC 7766, two-byte length prefixes) over
//! one shared zone.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::DnsError;
use crate::handler::{self, Outcome, Transport};
use crate::upstream::Upstream;
use crate::zone::Zone;

/// How long an idle TCP connection stays open (CoreDNS's read timeout).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many TCP connections are served at once; more are closed at once.
const MAX_TCP_CONNECTIONS: usize = 512;

/// How many forwarded UDP queries may wait for the upstream at once; more get SERVFAIL.
const MAX_PENDING_FORWARDS: usize = 1024;

/// The zone the server answers from, replaced whole when the objects change. Clones share it.
#[derive(Clone, Debug)]
pub struct SharedZone(Arc<RwLock<Arc<Zone>>>);

impl SharedZone {
    /// Shares `zone`.
    pub fn new(zone: Zone) -> Self {
        SharedZone(Arc::new(RwLock::new(Arc::new(zone))))
    }

    /// Replaces the zone: every query from now on is answered from `zone`. Queries already
    /// being answered finish with the zone they started with.
    pub fn store(&self, zone: Zone) {
        let zone = Arc::new(zone);
        // A poisoned lock only means a writer panicked after replacing the Arc: still whole.
        let mut current = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = zone;
    }

    /// The zone as it is now.
    pub fn load(&self) -> Arc<Zone> {
        let current = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&current)
    }
}

/// Serves the zone on `udp` and `tcp` until the future is dropped, which stops every task it
/// started. Names outside the cluster domain go to `upstream`, or are REFUSED without one.
/// A receive or accept error concerns one packet or connection and is logged; an error is
/// returned only if one of the server's tasks ends, which is a bug.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    zone: SharedZone,
    upstream: Upstream,
) -> Result<(), DnsError> {
    let udp = Arc::new(udp);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let forwards = Arc::new(Semaphore::new(MAX_PENDING_FORWARDS));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(udp_worker(
            Arc::clone(&udp),
            zone.clone(),
            upstream.clone(),
            Arc::clone(&forwards),
        ));
    }
    tasks.spawn(tcp_acceptor(tcp, zone, upstream));
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(join_error) => {
                return Err(DnsError::Io {
                    what: "a server task ended".to_string(),
                    source: std::io::Error::other(join_error.to_string()),
                })
            }
        }
    }
    Ok(())
}

async fn udp_worker(
    socket: Arc<UdpSocket>,
    zone: SharedZone,
    upstream: Upstream,
    forwards: Arc<Semaphore>,
) -> Result<(), DnsError> {
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    let mut pending = JoinSet::new();
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            Some(_) = pending.join_next(), if !pending.is_empty() => continue,
        };
        let (n, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors and the like concern one peer, never the socket.
                tracing::debug!(%error, "DNS UDP receive");
                continue;
            }
        };
        let packet = &buffer[..n];
        let outcome = handler::handle(&zone.load(), packet, Transport::Udp, upstream.is_enabled());
        match outcome {
            Outcome::Reply(answer) => send(&socket, &answer, peer).await,
            Outcome::Drop => {}
            Outcome::Forward(forward) => {
                let Ok(permit) = Arc::clone(&forwards).try_acquire_owned() else {
                    send(&socket, &handler::server_failure(&forward), peer).await;
                    continue;
                };
                let packet = packet.to_vec();
                let socket = Arc::clone(&socket);
                let upstream = upstream.clone();
                pending.spawn(async move {
                    let answer = upstream
                        .exchange(&packet, &forward.query, false)
                        .await
                        .and_then(|answer| handler::relay(answer, &forward))
                        .unwrap_or_else(|| handler::server_failure(&forward));
                    send(&socket, &answer, peer).await;
                    drop(permit);
                });
            }
            Outcome::Chase(chase) => {
                let Ok(permit) = Arc::clone(&forwards).try_acquire_owned() else {
                    send(&socket, &handler::finish_chase(chase, Vec::new()), peer).await;
                    continue;
                };
                let socket = Arc::clone(&socket);
                let upstream = upstream.clone();
                pending.spawn(async move {
                    let found = upstream.resolve(&chase.target, chase.query_type).await;
                    send(&socket, &handler::finish_chase(chase, found), peer).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, answer: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(answer, peer).await {
        tracing::debug!(%error, %peer, "DNS UDP send");
    }
}

async fn tcp_acceptor(
    listener: TcpListener,
    zone: SharedZone,
    upstream: Upstream,
) -> Result<(), DnsError> {
    let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a connection reset before accept: wait a little
                // rather than spin, and go on.
                tracing::warn!(%error, "DNS TCP accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::debug!(%peer, "too many DNS TCP connections; closing this one");
            continue;
        };
        let zone = zone.clone();
        let upstream = upstream.clone();
        connections.spawn(async move {
            if let Err(error) = tcp_connection(stream, &zone, &upstream).await {
                tracing::debug!(%error, %peer, "DNS TCP connection");
            }
            drop(permit);
        });
    }
}

/// Answers the queries of one connection in order until the client closes it or stays idle
/// too long.
async fn tcp_connection(
    mut stream: TcpStream,
    zone: &SharedZone,
    upstream: &Upstream,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    loop {
        let length = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(length)) => length,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_) => return Ok(()),
        };
        let mut packet = vec![0u8; usize::from(length)];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut packet)).await {
            Ok(result) => result?,
            Err(_) => return Ok(()),
        };
        let outcome = handler::handle(&zone.load(), &packet, Transport::Tcp, upstream.is_enabled());
        let answer = match outcome {
            Outcome::Reply(answer) => answer,
            // A response sent to a server over TCP: the client is confused; hang up.
            Outcome::Drop => return Ok(()),
            Outcome::Forward(forward) => upstream
                .exchange(&packet, &forward.query, true)
                .await
                .and_then(|answer| handler::relay(answer, &forward))
                .unwrap_or_else(|| handler::server_failure(&forward)),
            Outcome::Chase(chase) => {
                let found = upstream.resolve(&chase.target, chase.query_type).await;
                handler::finish_chase(chase, found)
            }
        };
        let Ok(length) = u16::try_from(answer.len()) else {
            // encode() keeps TCP answers within 64 KiB; anything else is a bug, not a crash.
            return Ok(());
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&answer);
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await {
            Ok(result) => result?,
            // A client that does not read its answers is given up on.
            Err(_) => return Ok(()),
        }
    }
}
