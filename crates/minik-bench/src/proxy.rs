//! `minik-bench proxy`: HTTP through a node agent's Service proxy (ClusterIP) versus straight
//! to the backend, in the same run. A selector-less Service with hand-written Endpoints points
//! at the backend, and a `minik node` (fake runtime, its proxy is real) proxies it, in each
//! `--proxy-mode` in turn: `userspace` (the agent relays the bytes) and `nftables` (the kernel
//! translates the connections; the agent only programs it). The load
//! client is raw HTTP/1.1 over tokio: in `keep-alive` mode each client sends its requests over
//! one connection, in `connect` mode every request opens a new connection (what the proxy's
//! accept-and-dial path costs).
//!
//! Fairness of the comparison:
//! - the backend is a process of its own, as a pod is (a backend inside this process would let
//!   the direct path skip the cross-process wake-ups the proxied path pays for);
//! - direct and proxied runs alternate for `--rounds` rounds in the order D P, P D, D P, ... so
//!   that a drift of the shared machine falls on both; the medians are compared;
//! - the CPU time each process used per request is printed beside the rates: on a machine whose
//!   cores are all busy, throughput is CPU per request, and the proxy's column is its own cost.
//!
//! Backends: `rust`, a trivial keep-alive HTTP/1.1 server (`minik-bench proxy --serve-backend`,
//! it answers from memory, so the proxy's hop is as large a share as it can be), and `python`,
//! the example web app of `examples/deployment.yaml` (Python's `http.server`, HTTP/1.0, one
//! connection per request, single-threaded), a backend that does what a small real app does.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::agent::Agent;
use crate::machine::cpu_time_of;
use crate::server::Server;

const BODY: &[u8] = b"hello from the backend\n";

/// The web app of `examples/deployment.yaml`, verbatim.
const PYTHON_APP: &str = r#"
import http.server, os
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"hello from {os.environ['POD_NAME']}\n".encode())
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"#;

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
    /// Rounds of (direct, proxied); the medians over the rounds are compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `rust` (a trivial keep-alive server, its own process) or `python` (the example app of
    /// `examples/deployment.yaml`; HTTP/1.0, so every request is a new connection).
    #[arg(long, default_value = "rust", value_parser = ["rust", "python"])]
    backend: String,
    /// The node agent's proxy mode: `userspace`, `nftables` (needs root and nft), or `both`,
    /// one after the other (nftables only where nft can run).
    #[arg(long, default_value = "both", value_parser = ["userspace", "nftables", "both"])]
    proxy_mode: String,
    /// Internal: serve the trivial backend, print its address, and run until stdin closes.
    #[arg(long, hide = true)]
    serve_backend: bool,
}

/// A child process, killed when dropped.
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

/// The trivial backend: a keep-alive HTTP/1.1 server answering every request (headers only,
/// no body is expected) with [`BODY`]. Runs in the process `--serve-backend` starts.
async fn serve_backend(listener: TcpListener) {
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    answer.extend_from_slice(BODY);
    let answer: &'static [u8] = answer.leak();
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 4096];
            let mut pending = Vec::new();
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                let mut answered = 0;
                while let Some(end) = find(&pending[answered..], b"\r\n\r\n") {
                    answered += end + 4;
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
                pending.drain(..answered);
            }
        });
    }
}

/// `minik-bench proxy --serve-backend`: the trivial backend as a process of its own.
fn run_backend_process() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        tokio::spawn(serve_backend(listener));
        // The parent holds our stdin; when it goes (or kills us) we go too.
        let mut stdin = tokio::io::stdin();
        let mut sink = [0u8; 64];
        while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
        anyhow::Ok(())
    })
}

/// Starts the backend process; returns it and its address.
fn start_backend(kind: &str) -> anyhow::Result<(Guard, SocketAddr)> {
    match kind {
        "rust" => {
            let me = std::env::current_exe().context("cannot tell where minik-bench is")?;
            let mut child = Guard(
                Command::new(me)
                    .args(["proxy", "--serve-backend"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("cannot start the backend process")?,
            );
            let stdout = child.0.stdout.take().context("the backend has no stdout")?;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line)?;
            let addr = line
                .trim()
                .parse()
                .with_context(|| format!("the backend printed {line:?}, not an address"))?;
            Ok((child, addr))
        }
        _ => {
            // A port that was free a moment ago; the app binds it itself.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Guard(
                Command::new("python3")
                    .args(["-c", PYTHON_APP])
                    .env("PORT", port.to_string())
                    .env("POD_NAME", "bench")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("cannot start python3 for the example web app")?,
            );
            Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where an answer ends, once its headers are in `got`.
enum Framing {
    /// `Content-Length`: the answer is complete at this many bytes.
    Length(usize),
    /// No length: the answer runs until the server closes the connection.
    UntilClose,
}

fn framing(got: &[u8]) -> Option<(Framing, bool)> {
    let end = find(got, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&got[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let http10 = lines.next()?.starts_with("HTTP/1.0");
    let mut length = None;
    let mut close = http10;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Some(match length {
        Some(n) => (Framing::Length(end + n), !close),
        None => (Framing::UntilClose, false),
    })
}

/// Sends one GET on `s` and reads the whole answer; returns whether the connection can carry
/// another request.
async fn request(s: &mut TcpStream, req: &[u8], got: &mut Vec<u8>) -> anyhow::Result<bool> {
    s.write_all(req).await?;
    got.clear();
    let mut framed = None;
    loop {
        if got.capacity() - got.len() < 2048 {
            got.reserve(4096);
        }
        let n = s.read_buf(got).await?;
        if framed.is_none() {
            framed = framing(got);
        }
        match (&framed, n) {
            (Some((Framing::Length(len), reusable)), _) if got.len() >= *len => {
                return Ok(*reusable)
            }
            (Some((Framing::UntilClose, _)), 0) => return Ok(false),
            (_, 0) => bail!("the connection closed mid-answer"),
            _ => {}
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
            let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
            let mut got = Vec::with_capacity(4096);
            let mut latencies = Vec::with_capacity(per_client);
            let mut conn: Option<TcpStream> = None;
            for _ in 0..per_client {
                let t = Instant::now();
                let s = match &mut conn {
                    Some(s) if keep_alive => s,
                    _ => {
                        let s = TcpStream::connect(addr).await?;
                        s.set_nodelay(true)?;
                        conn.insert(s)
                    }
                };
                if !request(s, &req, &mut got).await? {
                    conn = None;
                }
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

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The processes whose CPU time is charged to the requests.
struct Pids {
    client: u32,
    backend: u32,
    proxy: u32,
}

/// CPU time per process, read before and after a measurement.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    backend: Duration,
    proxy: Duration,
}

impl Cpu {
    fn read(pids: &Pids) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            client: cpu_time_of(pids.client)?,
            backend: cpu_time_of(pids.backend)?,
            proxy: cpu_time_of(pids.proxy)?,
        })
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            client: self.client.saturating_sub(before.client),
            backend: self.backend.saturating_sub(before.backend),
            proxy: self.proxy.saturating_sub(before.proxy),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.client += other.client;
        self.backend += other.backend;
        self.proxy += other.proxy;
    }
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
    cpu: Cpu,
    requests: usize,
}

struct Bench<'a> {
    args: &'a ProxyArgs,
    keep_alive: bool,
    pids: Pids,
}

impl Bench<'_> {
    async fn measure(&self, addr: SocketAddr) -> anyhow::Result<Figures> {
        let before = Cpu::read(&self.pids)?;
        let (elapsed, mut latencies) =
            load(addr, self.args.requests, self.args.clients, self.keep_alive).await?;
        let cpu = Cpu::read(&self.pids)?.since(before);
        latencies.sort();
        Ok(Figures {
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            cpu,
            requests: latencies.len(),
        })
    }

    async fn warm_up(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let n = (self.args.requests / 10).max(self.args.clients);
        load(addr, n, self.args.clients, self.keep_alive).await?;
        Ok(())
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    if args.serve_backend {
        return run_backend_process();
    }
    if args.rounds == 0 || args.clients == 0 || args.requests < args.clients {
        bail!("--rounds and --clients must be at least 1, and --requests at least --clients");
    }
    let minik = match &args.minik {
        Some(m) => m.clone(),
        None => default_minik()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // An agent in nftables mode turns route_localnet on and leaves it so (docs/services.md);
    // the benchmark puts the host back as it found it.
    let route_localnet = std::fs::read_to_string(ROUTE_LOCALNET).ok();
    let result = runtime.block_on(run_async(&minik, &args));
    if let Some(before) = route_localnet {
        if std::fs::read_to_string(ROUTE_LOCALNET).ok().as_deref() != Some(before.as_str()) {
            if let Err(e) = std::fs::write(ROUTE_LOCALNET, before.trim()) {
                eprintln!(
                    "warning: cannot restore {ROUTE_LOCALNET} to {}: {e}",
                    before.trim()
                );
            }
        }
    }
    result
}

/// The sysctl an agent in nftables mode turns on.
const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// Waits until `addr` answers an HTTP request.
async fn wait_serving(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    loop {
        let ok = async {
            let mut s = TcpStream::connect(addr).await?;
            request(&mut s, &req, &mut Vec::new()).await
        };
        if ok.await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not serve {addr} within 30s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `nft` can run here (and this process may read the ruleset).
fn nft_usable() -> bool {
    Command::new("nft")
        .args(["list", "tables"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The proxy modes to measure for `--proxy-mode`.
fn modes(asked: &str) -> Vec<&'static str> {
    match asked {
        "userspace" => vec!["userspace"],
        "nftables" => vec!["nftables"],
        _ if nft_usable() => vec!["userspace", "nftables"],
        _ => {
            println!("  (nft cannot run here: the nftables mode is not measured)");
            vec!["userspace"]
        }
    }
}

async fn run_async(minik: &Path, args: &ProxyArgs) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let server = Server::start(minik, &scratch.path().join("server"), &http).await?;
    let base = server.base();
    let (backend_process, backend) = start_backend(&args.backend)?;
    wait_serving(backend, "the backend").await?;
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

    // Python's http.server speaks HTTP/1.0 and closes every connection.
    let keep_alive = args.mode == "keep-alive" && args.backend == "rust";
    println!(
        "proxy: {} backend, {} requests x {} rounds, {} clients, {}",
        args.backend,
        args.requests,
        args.rounds,
        args.clients,
        if keep_alive {
            "keep-alive (one connection per client)"
        } else {
            "connect (a new connection per request)"
        }
    );
    for mode in modes(&args.proxy_mode) {
        // One agent per mode, each with a name (and nftables table) of this run only; it is
        // stopped with SIGTERM, so it closes its listeners or deletes its table.
        let name = format!("bench-proxy-{mode}-{}", std::process::id());
        let mut node = Agent::start(
            minik,
            &base,
            &name,
            &scratch.path().join(&name),
            &[
                "--runtime",
                "fake",
                "--address",
                "127.0.0.1",
                "--proxy-mode",
                mode,
            ],
        )?;
        wait_serving(front, &format!("the {mode} proxy")).await?;
        let bench = Bench {
            args,
            keep_alive,
            pids: Pids {
                client: std::process::id(),
                backend: backend_process.0.id(),
                proxy: node.pid(),
            },
        };
        compare(&bench, mode, backend, front).await?;
        node.stop(Duration::from_secs(30))
            .with_context(|| format!("stopping the {mode} agent"))?;
    }
    drop(backend_process);
    drop(server);
    Ok(())
}

/// Direct against proxied through the agent in `mode`, alternating for the rounds; prints
/// each round and the medians.
async fn compare(
    bench: &Bench<'_>,
    mode: &str,
    backend: SocketAddr,
    front: SocketAddr,
) -> anyhow::Result<()> {
    let args = bench.args;
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "proxy mode {mode}{}:",
        if mode == "nftables" {
            " (the kernel translates; its work is charged to the client and backend, the \
             agent's column is its idle cost)"
        } else {
            ""
        }
    );
    println!(
        "  machine: {} CPUs, load average {} before the run",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    bench.warm_up(backend).await?;
    bench.warm_up(front).await?;
    let mut direct = Vec::new();
    let mut proxied = Vec::new();
    for round in 0..args.rounds {
        // D P, P D, D P, ...: a drift of the machine falls on both sides.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for via_proxy in order {
            let (name, addr, into) = if via_proxy {
                ("proxied", front, &mut proxied)
            } else {
                ("direct ", backend, &mut direct)
            };
            let f = bench.measure(addr).await?;
            println!(
                "  round {} {name} {:>7.0} req/s   p50 {:>7.1} µs   p99 {:>7.1} µs",
                round + 1,
                f.rps,
                us(f.p50),
                us(f.p99)
            );
            into.push(f);
        }
    }
    println!("  medians over the rounds, and CPU time per request (every round) by process:");
    println!("           req/s        p50        p99    client  backend    proxy");
    let summary = |name: &str, runs: &[Figures]| {
        let mut cpu = Cpu::default();
        let mut n = 0;
        for f in runs {
            cpu.add(f.cpu);
            n += f.requests;
        }
        let per = |d: Duration| us(d) / n.max(1) as f64;
        let rps = median(runs.iter().map(|f| f.rps).collect());
        let p50 = median(runs.iter().map(|f| us(f.p50)).collect());
        let p99 = median(runs.iter().map(|f| us(f.p99)).collect());
        println!(
            "  {name} {rps:>7.0}  {p50:>7.1} µs {p99:>7.1} µs  {:>5.1} µs {:>5.1} µs {:>5.1} µs",
            per(cpu.client),
            per(cpu.backend),
            per(cpu.proxy)
        );
        (rps, p50, p99)
    };
    let (d_rps, d_p50, d_p99) = summary("direct ", &direct);
    let (p_rps, p_p50, p_p99) = summary("proxied", &proxied);
    println!(
        "  proxied / direct throughput: {:.1}% (target >= 80%)",
        100.0 * p_rps / d_rps
    );
    println!(
        "  added p50: {:.1} µs (target <= 100 µs), added p99: {:.1} µs",
        p_p50 - d_p50,
        p_p99 - d_p99
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_framed_by_length_or_by_close() {
        let keep = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert!(matches!(framing(keep), Some((Framing::Length(43), true))));
        let closing = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\n";
        assert!(matches!(
            framing(closing),
            Some((Framing::Length(_), false))
        ));
        let python = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.12\r\n\r\nhello";
        assert!(matches!(
            framing(python),
            Some((Framing::UntilClose, false))
        ));
        assert!(framing(b"HTTP/1.1 200 OK\r\nContent-Le").is_none());
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
