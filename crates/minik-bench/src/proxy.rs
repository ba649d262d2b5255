//! `minik-bench proxy`: HTTP through a node agent's Service proxy (ClusterIP) versus straight
//! to the backend, in the same run. The backend is a small HTTP/1.1 server in this process; a
//! selector-less Service with hand-written Endpoints points at it, and a `minik node` (fake
//! runtime, its proxy is real) proxies it. The load client is raw HTTP/1.1 over tokio: in
//! `keep-alive` mode each client sends its requests over one connection, in `connect` mode
//! every request opens a new connection (what the proxy's accept-and-dial path costs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::server::Server;

const BODY: &[u8] = b"hello from the backend\n";

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// The minik binary [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
    /// Requests per measurement.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// `keep-alive` (one connection per client) or `connect` (a new connection per request).
    #[arg(long, default_value = "keep-alive", value_parser = ["keep-alive", "connect"])]
    mode: String,
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn default_minik() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("minik"))
}

/// A minimal HTTP/1.1 server: answers every request (headers only, no body) with [`BODY`],
/// keeping the connection open.
async fn backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                    BODY.len()
                );
                let mut answer = response.into_bytes();
                answer.extend_from_slice(BODY);
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Sends one GET on `s` and reads the whole answer.
async fn request(s: &mut TcpStream, host: &str, buf: &mut [u8]) -> anyhow::Result<()> {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut got = Vec::new();
    loop {
        let n = s.read(buf).await?;
        if n == 0 {
            bail!("the connection closed mid-answer");
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + BODY.len() {
                return Ok(());
            }
        }
    }
}

/// Runs `total` requests against `addr` with `clients` clients; returns (elapsed, latencies).
async fn load(
    addr: SocketAddr,
    total: usize,
    clients: usize,
    keep_alive: bool,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let per_client = total / clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        tasks.push(tokio::spawn(async move {
            let host = addr.to_string();
            let mut buf = vec![0u8; 4096];
            let mut latencies = Vec::with_capacity(per_client);
            let mut conn: Option<TcpStream> = None;
            for _ in 0..per_client {
                let t = Instant::now();
                if conn.is_none() || !keep_alive {
                    let s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    conn = Some(s);
                }
                let s = conn.as_mut().expect("connected above");
                request(s, &host, &mut buf).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((started.elapsed(), all))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(addr: SocketAddr, args: &ProxyArgs) -> anyhow::Result<Figures> {
    let keep_alive = args.mode == "keep-alive";
    // A short warm-up, not counted.
    load(
        addr,
        (args.requests / 10).max(args.clients),
        args.clients,
        keep_alive,
    )
    .await?;
    let (elapsed, mut latencies) = load(addr, args.requests, args.clients, keep_alive).await?;
    latencies.sort();
    Ok(Figures {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let minik = match &args.minik {
        Some(m) => m.clone(),
        None => default_minik()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(&minik, &args))
}

async fn run_async(minik: &Path, args: &ProxyArgs) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let server = Server::start(minik, &scratch.path().join("server"), &http).await?;
    let base = server.base();
    let _node = Guard(
        Command::new(minik)
            .args([
                "node",
                "--server",
                &base,
                "--name",
                "bench-proxy",
                "--runtime",
                "fake",
            ])
            .args(["--address", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(scratch.path().join("node"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start minik node")?,
    );
    let backend = backend().await?;
    let svc: serde_json::Value = http
        .post(format!("{base}/api/v1/namespaces/default/services"))
        .json(
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench"},
                      "spec": {"ports": [{"port": 8080}]}}),
        )
        .send()
        .await?
        .json()
        .await?;
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .context("the Service has no clusterIP")?
        .to_owned();
    let created = http
        .post(format!("{base}/api/v1/namespaces/default/endpoints"))
        .json(
            &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "bench"},
                      "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                   "ports": [{"port": backend.port()}]}]}),
        )
        .send()
        .await?;
    if !created.status().is_success() {
        bail!("cannot create the Endpoints: {}", created.text().await?);
    }
    let front: SocketAddr = format!("{ip}:8080").parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = async {
            let mut s = TcpStream::connect(front).await?;
            request(&mut s, &ip, &mut [0u8; 4096]).await
        };
        if ok.await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the proxy did not serve {front} within 30s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "proxy: {} requests, {} clients, {} ({})",
        args.requests,
        args.clients,
        args.mode,
        if args.mode == "keep-alive" {
            "one connection per client"
        } else {
            "a new connection per request"
        }
    );
    // Direct, proxied, and direct again, so that a drift of the machine shows.
    let direct = measure(backend, args).await?;
    let proxied = measure(front, args).await?;
    let direct2 = measure(backend, args).await?;
    let best_direct = if direct2.rps > direct.rps {
        &direct2
    } else {
        &direct
    };
    for (name, f) in [
        ("direct  ", &direct),
        ("proxied ", &proxied),
        ("direct  ", &direct2),
    ] {
        println!(
            "  {name} {:>9.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs",
            f.rps,
            us(f.p50),
            us(f.p99)
        );
    }
    println!(
        "  proxied / direct throughput: {:.1}% (target >= 80%)",
        100.0 * proxied.rps / best_direct.rps
    );
    println!(
        "  added p50: {:.1} µs (target <= 100 µs), added p99: {:.1} µs",
        us(proxied.p50) - us(best_direct.p50),
        us(proxied.p99) - us(best_direct.p99)
    );
    drop(server);
    Ok(())
}
