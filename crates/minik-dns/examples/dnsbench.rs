//! DNS benchmark: queries/s and latency of the cluster DNS server on loopback, against a
//! trivial UDP echo server driven by the same clients in the same run, and the time to
//! rebuild the zone.
//!
//! `cargo run --release -p minik-dns --example dnsbench -- [--clients N] [--seconds S]
//! [--services N]`
//!
//! Every client is a thread with a blocking UDP socket that sends one query, waits for its
//! answer, and sends the next, for S seconds; both servers run on a two-thread Tokio runtime
//! as minik's binary does. The queries are A, AAAA and SRV questions for the zone's Services
//! (ClusterIP and headless), their endpoints and pods, and names that do not exist.
//! The goals: p99 ≤ 1 ms, ≥ 20,000 queries/s.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_dns::{serve, ClusterDomain, SharedZone, Upstream, Zone};

struct Options {
    clients: usize,
    seconds: u64,
    services: u32,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        clients: 4,
        seconds: 3,
        services: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|e| format!("{what} {value:?}: {e}"))
        };
        match flag.as_str() {
            "--clients" => options.clients = number("--clients")?.max(1) as usize,
            "--seconds" => options.seconds = number("--seconds")?.max(1),
            "--services" => options.services = number("--services")?.clamp(1, 60_000) as u32,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}

fn meta(namespace: &str, name: &str, resource_version: u32) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        resource_version: Some(resource_version.to_string()),
        ..ObjectMeta::default()
    }
}

/// `n` Services in 10 namespaces, every tenth headless; each with 3 ready endpoints and two
/// ports (one named).
fn objects(n: u32) -> (Vec<Service>, Vec<Endpoints>) {
    let mut services = Vec::new();
    let mut endpoints = Vec::new();
    for i in 0..n {
        let namespace = format!("ns{}", i % 10);
        let name = format!("svc{i}");
        let headless = i % 10 == 9;
        let cluster_ip = if headless {
            "None".to_string()
        } else {
            Ipv4Addr::from(0x0a60_0000 + i).to_string()
        };
        services.push(Service {
            metadata: meta(&namespace, &name, i + 1),
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.clone()),
                cluster_ips: Some(vec![cluster_ip]),
                ports: Some(vec![
                    ServicePort {
                        name: Some("http".to_string()),
                        port: 80,
                        protocol: Some("TCP".to_string()),
                        ..ServicePort::default()
                    },
                    ServicePort {
                        name: Some("metrics".to_string()),
                        port: 9090,
                        protocol: Some("TCP".to_string()),
                        ..ServicePort::default()
                    },
                ]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
        endpoints.push(Endpoints {
            metadata: meta(&namespace, &name, n + i + 1),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(
                    (0..3)
                        .map(|j| EndpointAddress {
                            ip: Ipv4Addr::from(0x0af4_0000 + i * 4 + j).to_string(),
                            hostname: headless.then(|| format!("{name}-{j}")),
                            ..EndpointAddress::default()
                        })
                        .collect(),
                ),
                ports: Some(vec![EndpointPort {
                    name: Some("http".to_string()),
                    port: 8080,
                    protocol: Some("TCP".to_string()),
                    ..EndpointPort::default()
                }]),
                ..EndpointSubset::default()
            }]),
        });
    }
    (services, endpoints)
}

/// The mix of questions the clients ask, as packets (the ID is set per query).
fn questions(n: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..n {
        let service = format!("svc{i}.ns{}.svc.cluster.local.", i % 10);
        let mut names = vec![
            (service.clone(), RecordType::A),
            (service.clone(), RecordType::AAAA),
            (format!("_http._tcp.{service}"), RecordType::SRV),
            (
                format!("nope{i}.ns{}.svc.cluster.local.", i % 10),
                RecordType::A,
            ),
            (
                format!("10-244-{}-{}.ns1.pod.cluster.local.", i / 250, i % 250),
                RecordType::A,
            ),
        ];
        if i % 10 == 9 {
            names.push((format!("svc{i}-1.{service}"), RecordType::A));
        }
        for (name, query_type) in names {
            let Ok(name) = Name::from_ascii(&name) else {
                continue;
            };
            let mut message = Message::new(0, MessageType::Query, OpCode::Query);
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(name, query_type));
            if let Ok(bytes) = message.to_vec() {
                out.push(bytes);
            }
        }
    }
    out
}

struct Figures {
    queries: usize,
    lost: usize,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.queries as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        Duration::from_nanos(u64::from(self.latencies[index]))
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<10} {:>9.0} queries/s   p50 {:>6.1} µs   p99 {:>6.1} µs   p99.9 {:>7.1} µs   ({} queries, {} lost)",
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e6,
            self.percentile(0.99).as_secs_f64() * 1e6,
            self.percentile(0.999).as_secs_f64() * 1e6,
            self.queries,
            self.lost,
        )
    }
}

/// `clients` threads asking `server` the `packets` in turn for `duration`.
fn drive(
    server: SocketAddr,
    packets: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    duration: Duration,
) -> Figures {
    let started = Instant::now();
    let deadline = started + duration;
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let packets = Arc::clone(packets);
            std::thread::spawn(move || -> std::io::Result<(usize, usize, Vec<u32>)> {
                let socket = StdUdpSocket::bind("127.0.0.1:0")?;
                socket.connect(server)?;
                socket.set_read_timeout(Some(Duration::from_millis(200)))?;
                let mut buffer = vec![0u8; 4096];
                let mut latencies = Vec::with_capacity(1 << 20);
                let (mut queries, mut lost) = (0usize, 0usize);
                let mut index = client * 7919;
                let mut id: u16 = (client as u16).wrapping_mul(4099);
                while Instant::now() < deadline {
                    let mut packet = packets[index % packets.len()].clone();
                    index += 1;
                    id = id.wrapping_add(1);
                    packet[..2].copy_from_slice(&id.to_be_bytes());
                    let sent = Instant::now();
                    socket.send(&packet)?;
                    loop {
                        match socket.recv(&mut buffer) {
                            Ok(n) if n >= 2 && buffer[..2] == id.to_be_bytes() => {
                                latencies
                                    .push(sent.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                                queries += 1;
                                break;
                            }
                            // A late answer to a query counted as lost.
                            Ok(_) => continue,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                lost += 1;
                                break;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok((queries, lost, latencies))
            })
        })
        .collect();
    let mut figures = Figures {
        queries: 0,
        lost: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for thread in threads {
        match thread.join() {
            Ok(Ok((queries, lost, latencies))) => {
                figures.queries += queries;
                figures.lost += lost;
                figures.latencies.extend(latencies);
            }
            Ok(Err(error)) => eprintln!("a client failed: {error}"),
            Err(_) => eprintln!("a client thread panicked"),
        }
    }
    figures.elapsed = started.elapsed();
    figures.latencies.sort_unstable();
    figures
}

/// The baseline: a UDP server that sends every datagram back, with as many receive loops as
/// the DNS server has.
async fn echo(socket: tokio::net::UdpSocket) {
    let socket = Arc::new(socket);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let socket = Arc::clone(&socket);
        tasks.spawn(async move {
            let mut buffer = vec![0u8; 65535];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer).await {
                let _ = socket.send_to(&buffer[..n], peer).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("dnsbench: {error}");
            std::process::exit(2);
        }
    };
    let domain = ClusterDomain::default();
    let (services, endpoints) = objects(options.services);

    // Rebuild time: what every Endpoints change costs.
    let mut builds = Vec::new();
    let mut zone = Zone::build(&domain, &services, &endpoints);
    for _ in 0..20 {
        let started = Instant::now();
        zone = Zone::build(&domain, &services, &endpoints);
        builds.push(started.elapsed());
    }
    builds.sort();
    println!(
        "zone: {} services ({} headless), 3 endpoints each, {} names; rebuild p50 {:.2} ms, max {:.2} ms",
        options.services,
        options.services / 10,
        zone.len(),
        builds[builds.len() / 2].as_secs_f64() * 1e3,
        builds[builds.len() - 1].as_secs_f64() * 1e3,
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dnsbench: tokio runtime: {error}");
            std::process::exit(1);
        }
    };
    let bound = runtime.block_on(async {
        let echo_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        std::io::Result::Ok((echo_socket, udp, tcp))
    });
    let (echo_socket, udp, tcp) = match bound {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("dnsbench: binding loopback sockets: {error}");
            std::process::exit(1);
        }
    };
    let (Ok(echo_address), Ok(dns_address)) = (echo_socket.local_addr(), udp.local_addr()) else {
        eprintln!("dnsbench: no local address");
        std::process::exit(1);
    };
    let echo_task = runtime.spawn(echo(echo_socket));
    let dns_task = runtime.spawn(serve(udp, tcp, SharedZone::new(zone), Upstream::none()));

    let packets = Arc::new(questions(options.services));
    let duration = Duration::from_secs(options.seconds);
    println!(
        "{} clients, {} s per server, {} distinct questions",
        options.clients,
        options.seconds,
        packets.len()
    );
    // Warm both up, then measure the echo baseline and the DNS server in turn.
    drive(
        echo_address,
        &packets,
        options.clients,
        Duration::from_millis(300),
    );
    drive(
        dns_address,
        &packets,
        options.clients,
        Duration::from_millis(300),
    );
    let baseline = drive(echo_address, &packets, options.clients, duration);
    let dns = drive(dns_address, &packets, options.clients, duration);
    println!("{}", baseline.line("udp echo"));
    println!("{}", dns.line("dns"));
    println!(
        "dns/echo: throughput {:.2}x, p99 latency {:.2}x",
        dns.rate() / baseline.rate(),
        dns.percentile(0.99).as_secs_f64() / baseline.percentile(0.99).as_secs_f64().max(1e-9),
    );
    let p99_ok = dns.percentile(0.99) <= Duration::from_millis(1);
    let rate_ok = dns.rate() >= 20_000.0;
    println!(
        "goals: p99 <= 1 ms: {}; >= 20,000 queries/s: {}",
        if p99_ok { "met" } else { "NOT met" },
        if rate_ok { "met" } else { "NOT met" },
    );
    echo_task.abort();
    dns_task.abort();
}
