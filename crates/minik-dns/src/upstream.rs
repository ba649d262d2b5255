//! The upstream resolvers that names outside the cluster domain are forwarded to.
//!
//! Each forwarded query goes out on a fresh UDP socket (its own ephemeral port) with a random
//! ID, and only an answer from that server, with that ID and the same question, is taken; a
//! truncated answer is asked again over TCP when the client came over TCP. Servers are tried in
//! turn, starting from the next one for each query, each within the timeout; when none
//! answers the client gets SERVFAIL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The DNS servers that names outside the cluster zone are forwarded to, or none.
#[derive(Clone, Debug)]
pub struct Upstream {
    servers: Arc<[SocketAddr]>,
    timeout: Duration,
    next: Arc<AtomicUsize>,
}

/// How long one upstream server gets to answer one query, unless told otherwise.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

impl Upstream {
    /// No upstream: names outside the cluster domain are REFUSED.
    pub fn none() -> Self {
        Self::new(Vec::new(), DEFAULT_UPSTREAM_TIMEOUT)
    }

    /// Forward to `servers`, giving each `timeout` to answer one query.
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Upstream {
            servers: servers.into(),
            timeout,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether there is any server to forward to.
    pub fn is_enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The servers, in the order given.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The `nameserver` lines of a resolv.conf text, on port 53 (what CoreDNS's
    /// `forward . /etc/resolv.conf` uses). Lines that are not addresses are skipped; an IPv6
    /// zone (`fe80::1%eth0`) is not supported and skipped.
    pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                if words.next()? != "nameserver" {
                    return None;
                }
                let address: IpAddr = words.next()?.parse().ok()?;
                Some(SocketAddr::new(address, 53))
            })
            .collect()
    }

    /// The answer of the first server that gives one to `query` (the client's bytes), with
    /// the forwarded ID still in it; None when no server answered in time.
    pub(crate) async fn exchange(
        &self,
        packet: &[u8],
        query: &Query,
        tcp_on_truncation: bool,
    ) -> Option<Vec<u8>> {
        if self.servers.is_empty() || packet.len() < 12 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.servers.len() {
            let server = self.servers[(start + i) % self.servers.len()];
            let id = random_id();
            let mut forwarded = packet.to_vec();
            forwarded[..2].copy_from_slice(&id.to_be_bytes());
            let exchange = async {
                let answer = exchange_udp(server, &forwarded, id, query).await?;
                if tcp_on_truncation && answer.get(2).is_some_and(|flags| flags & 0x02 != 0) {
                    return exchange_tcp(server, &forwarded, id, query).await;
                }
                Some(answer)
            };
            match tokio::time::timeout(self.timeout, exchange).await {
                Ok(Some(answer)) => return Some(answer),
                Ok(None) => tracing::debug!(%server, "upstream gave no usable answer"),
                Err(_) => tracing::debug!(%server, "upstream did not answer in time"),
            }
        }
        None
    }

    /// The answer records of the upstream for `name`/`query_type` (following a CNAME out of
    /// the cluster zone); empty when it does not answer.
    pub(crate) async fn resolve(&self, name: &Name, query_type: RecordType) -> Vec<Record> {
        let query = Query::query(name.clone(), query_type);
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(query.clone());
        let Ok(packet) = message.to_vec() else {
            return Vec::new();
        };
        let Some(answer) = self.exchange(&packet, &query, true).await else {
            return Vec::new();
        };
        Message::from_vec(&answer)
            .map(|message| message.answers)
            .unwrap_or_default()
    }
}

/// Whether `answer` is the answer to the query `id`/`query`.
fn answers(answer: &[u8], id: u16, query: &Query) -> bool {
    let Ok(message) = Message::from_vec(answer) else {
        return false;
    };
    message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && message.queries.len() == 1
        && message.queries[0] == *query
}

async fn exchange_udp(
    server: SocketAddr,
    packet: &[u8],
    id: u16,
    query: &Query,
) -> Option<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(server).await.ok()?;
    socket.send(packet).await.ok()?;
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    loop {
        let n = socket.recv(&mut buffer).await.ok()?;
        if answers(&buffer[..n], id, query) {
            buffer.truncate(n);
            return Some(buffer);
        }
        // Someone else's or a spoofed datagram: keep waiting for ours until the timeout.
    }
}

async fn exchange_tcp(
    server: SocketAddr,
    packet: &[u8],
    id: u16,
    query: &Query,
) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.ok()?;
    let length = u16::try_from(packet.len()).ok()?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.ok()?;
    let length = stream.read_u16().await.ok()?;
    let mut answer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut answer).await.ok()?;
    answers(&answer, id, query).then_some(answer)
}

/// A random query ID from the OS; a counter if the OS has none to give.
fn random_id() -> u16 {
    static FALLBACK: AtomicU32 = AtomicU32::new(0x5bd1);
    let value =
        getrandom::u32().unwrap_or_else(|_| FALLBACK.fetch_add(0x9e37_79b9, Ordering::Relaxed));
    (value >> 16) as u16 ^ value as u16
}
