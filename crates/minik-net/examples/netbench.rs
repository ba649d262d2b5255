//! The pod network's benchmark: how long attaching a pod takes (IPAM, veth pair, addresses,
//! routes) over many pods, and TCP between two pods across the bridge against the same
//! transfer over loopback inside one namespace, in the same run. Everything happens in network
//! namespaces it makes (a "host" and the pods) and removes at the end.
//!
//! `cargo run --release -p minik-net --example netbench [PODS] [MIB]` (root; defaults 200 pods,
//! 1024 MiB per transfer; `MTU=1500` in the environment for another MTU than the default).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minik_net::{netns, Config, PodNetwork};

/// The namespaces of the run, removed on drop.
struct Namespaces(Vec<PathBuf>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for path in self.0.iter().rev() {
            let _ = netns::remove(path);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    if !(2..=250).contains(&pods) {
        return Err("PODS must be from 2 to 250 (one /24)".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(pods, mib))
}

async fn run(pods: usize, mib: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut namespaces = Namespaces(Vec::new());
    let host = dir.path().join("host");
    netns::create(&host).await?;
    namespaces.0.push(host.clone());
    let network = PodNetwork::start(Config {
        node_name: "bench".into(),
        pod_cidr: "10.244.0.0/24".parse()?,
        cluster_cidr: "10.244.0.0/16".parse()?,
        service_cidr: "10.96.0.0/12".parse()?,
        egress: false,
        mtu: std::env::var("MTU")
            .ok()
            .map(|m| m.parse())
            .transpose()?
            .unwrap_or(minik_net::DEFAULT_MTU),
        ipam_dir: dir.path().join("ipam"),
        host_netns: Some(host.clone()),
    })
    .await?;

    let mut pod_paths = Vec::new();
    for i in 0..pods {
        let path = dir.path().join(format!("pod-{i}"));
        netns::create(&path).await?;
        namespaces.0.push(path.clone());
        pod_paths.push(path);
    }
    let mut attach = Vec::new();
    let mut pod_ips = Vec::new();
    for (i, path) in pod_paths.iter().enumerate() {
        let start = Instant::now();
        pod_ips.push(network.add_pod(&format!("pod-uid-{i}"), path).await?);
        attach.push(start.elapsed());
    }
    println!(
        "attach a pod (IPAM + veth pair + address + default route), {pods} pods: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&mut attach, 50)),
        ms(percentile(&mut attach, 99)),
        ms(percentile(&mut attach, 100)),
    );

    let (client, server, server_ip) = (&pod_paths[0], &pod_paths[1], pod_ips[1]);
    let bytes = mib << 20;
    let rounds = 7;
    let mut bridge = Vec::new();
    let mut loopback = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let port = 5000 + round as u16 * 2;
        // Alternating, so both see the same load of the machine.
        let b = transfer(client, server, (server_ip, port), bytes)?;
        let l = transfer(client, client, (Ipv4Addr::LOCALHOST, port + 1), bytes)?;
        ratios.push(l.as_secs_f64() / b.as_secs_f64());
        bridge.push(b);
        loopback.push(l);
    }
    let gbits = |d: &Duration| (bytes as f64 * 8.0) / d.as_secs_f64() / 1e9;
    println!(
        "TCP {mib} MiB pod to pod across the bridge: median {:.2} Gbit/s ({} Gbit/s)",
        gbits(&percentile(&mut bridge.clone(), 50)),
        list(&bridge, gbits)
    );
    println!(
        "TCP {mib} MiB over loopback in one pod:       median {:.2} Gbit/s ({} Gbit/s)",
        gbits(&percentile(&mut loopback.clone(), 50)),
        list(&loopback, gbits)
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "bridge / loopback throughput, median of {rounds} back-to-back pairs: {:.2}x (each: {})",
        ratios[rounds / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut bridge_rtt = round_trips(client, server, (server_ip, 5100), 20_000)?;
    let mut loopback_rtt = round_trips(client, client, (Ipv4Addr::LOCALHOST, 5101), 20_000)?;
    println!(
        "TCP round trip (1 byte), 20000: bridge p50 {:.1} us p99 {:.1} us; loopback p50 {:.1} us p99 {:.1} us",
        us(percentile(&mut bridge_rtt, 50)),
        us(percentile(&mut bridge_rtt, 99)),
        us(percentile(&mut loopback_rtt, 50)),
        us(percentile(&mut loopback_rtt, 99)),
    );

    let mut detach = Vec::new();
    for i in 0..pods {
        let start = Instant::now();
        network.remove_pod(&format!("pod-uid-{i}")).await?;
        detach.push(start.elapsed());
    }
    println!(
        "detach a pod: p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&mut detach, 50)),
        ms(percentile(&mut detach, 99)),
    );
    network.stop().await?;
    drop(namespaces);
    Ok(())
}

/// Sends `bytes` from a client in `client_ns` to a server in `server_ns` on `address`, and
/// returns the time from connect to the server's acknowledgement of the last byte.
fn transfer(
    client_ns: &Path,
    server_ns: &Path,
    address: (Ipv4Addr, u16),
    bytes: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let listener = netns::run_in(Some(server_ns), move || TcpListener::bind(address))??;
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; 256 << 10];
        let mut received = 0;
        loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            received += n;
        }
        stream.write_all(b"k")?;
        Ok(received)
    });
    let address = SocketAddr::from(address);
    let elapsed = netns::run_in(Some(client_ns), move || -> std::io::Result<Duration> {
        let buffer = vec![7u8; 256 << 10];
        let start = Instant::now();
        let mut stream = TcpStream::connect(address)?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buffer.len());
            stream.write_all(&buffer[..n])?;
            left -= n;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 1];
        stream.read_exact(&mut ack)?;
        Ok(start.elapsed())
    })??;
    let received = server.join().map_err(|_| "the server thread panicked")??;
    if received != bytes {
        return Err(format!("the server got {received} of {bytes} bytes").into());
    }
    Ok(elapsed)
}

/// `count` one-byte request/answer round trips; the time of each.
fn round_trips(
    client_ns: &Path,
    server_ns: &Path,
    address: (Ipv4Addr, u16),
    count: usize,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let listener = netns::run_in(Some(server_ns), move || TcpListener::bind(address))??;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let address = SocketAddr::from(address);
    let times = netns::run_in(
        Some(client_ns),
        move || -> std::io::Result<Vec<Duration>> {
            let mut stream = TcpStream::connect(address)?;
            stream.set_nodelay(true)?;
            let mut byte = [1u8; 1];
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let start = Instant::now();
                stream.write_all(&byte)?;
                stream.read_exact(&mut byte)?;
                times.push(start.elapsed());
            }
            Ok(times)
        },
    )??;
    server.join().map_err(|_| "the server thread panicked")??;
    Ok(times)
}

/// The `p`th percentile (nearest rank) of `values`.
fn percentile(values: &mut [Duration], p: usize) -> Duration {
    values.sort();
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank.min(values.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn list(values: &[Duration], f: impl Fn(&Duration) -> f64) -> String {
    values
        .iter()
        .map(|v| format!("{:.2}", f(v)))
        .collect::<Vec<_>>()
        .join(", ")
}
