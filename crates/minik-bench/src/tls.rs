//! `minik-bench tls`: what HTTPS costs the API (issue 24). Two `minik server`s run on this
//! machine, one on HTTPS (the default: rustls, ECDSA P-256, the cluster CA verified by the
//! client) and one with `--plain-http`, each over its own scratch data dir, and the same clients
//! measure both in the same run:
//!
//! - GETs/s of one Pod and durable creates/s of ConfigMaps, `--clients` at once, over kept-alive
//!   connections (one reqwest client, its pool reused): goal HTTPS >= 0.9x plain HTTP;
//! - a new connection for every `GET /healthz`, one at a time: the TLS handshake's cost per new
//!   connection is the difference of the medians.
//!
//! Plain and HTTPS phases alternate for `--rounds` rounds (P T, T P, ...), so that a drift of the
//! shared machine falls on both; the medians over the rounds are compared.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::report::{print_and_save, Row, Target, Unit};
use crate::server::Server;
use crate::stats::{median, ms};

/// The goal of issue 24: HTTPS with keep-alive at least this share of plain HTTP.
const GOAL_RATIO: f64 = 0.9;

#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// The minik binary [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
    /// Seconds each GET and create phase runs.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Concurrent clients of the GET and create phases.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// New connections (one request each) per handshake phase.
    #[arg(long, default_value_t = 400)]
    connections: usize,
    /// Rounds of (plain, HTTPS); the medians over the rounds are compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One server under measurement and the kept-alive client for it.
struct Measured {
    server: Server,
    client: reqwest::Client,
    /// A client that opens a new connection for every request.
    fresh: reqwest::Client,
    name: &'static str,
}

/// What one round measured of one server.
#[derive(Default, Clone)]
struct Round {
    gets_per_sec: f64,
    creates_per_sec: f64,
    connect_median: Duration,
}

pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    if args.seconds <= 0.0 || args.clients == 0 || args.rounds == 0 || args.connections == 0 {
        bail!("--seconds, --clients, --rounds and --connections must be positive");
    }
    let minik = match &args.minik {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot tell where minik-bench is")?
            .with_file_name("minik"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(args, minik))
}

async fn start(
    minik: &std::path::Path,
    dir: &std::path::Path,
    tls: bool,
) -> anyhow::Result<Measured> {
    let plain = reqwest::Client::new();
    let server = Server::start_with(minik, dir, Some(&plain), tls, &[]).await?;
    let client = server
        .client_builder()?
        .pool_max_idle_per_host(1024)
        .build()?;
    let fresh = server.client_builder()?.pool_max_idle_per_host(0).build()?;
    Ok(Measured {
        server,
        client,
        fresh,
        name: if tls { "HTTPS" } else { "plain HTTP" },
    })
}

async fn measure(args: TlsArgs, minik: PathBuf) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let plain = start(&minik, &scratch.path().join("plain"), false).await?;
    let https = start(&minik, &scratch.path().join("https"), true).await?;
    for target in [&plain, &https] {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        });
        let made = target
            .client
            .post(format!(
                "{}/api/v1/namespaces/default/pods",
                target.server.base()
            ))
            .json(&pod)
            .send()
            .await?;
        if !made.status().is_success() {
            bail!(
                "{}: cannot create the pod to GET: {}",
                target.name,
                made.status()
            );
        }
    }
    println!(
        "minik-bench tls: {} clients, {:.1}s phases, {} connections, {} rounds; plain HTTP and HTTPS alternate",
        args.clients, args.seconds, args.connections, args.rounds
    );
    let mut rounds: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    let phase = Duration::from_secs_f64(args.seconds);
    for round in 0..args.rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let target = if which == 0 { &plain } else { &https };
            let gets = throughput(target, args.clients, phase, Load::Get).await?;
            let creates =
                throughput(target, args.clients, phase, Load::Create(round * 2 + which)).await?;
            let connect = connections(target, args.connections).await?;
            println!(
                "round {}: {:<10} GET {:>8.0}/s  create {:>7.0}/s  new connection + GET p50 {:.3} ms",
                round + 1,
                target.name,
                gets,
                creates,
                ms(connect)
            );
            rounds[which].push(Round {
                gets_per_sec: gets,
                creates_per_sec: creates,
                connect_median: connect,
            });
        }
    }
    let middle = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let of = |which: usize, f: fn(&Round) -> f64| middle(rounds[which].iter().map(f).collect());
    let plain_gets = of(0, |r| r.gets_per_sec);
    let https_gets = of(1, |r| r.gets_per_sec);
    let plain_creates = of(0, |r| r.creates_per_sec);
    let https_creates = of(1, |r| r.creates_per_sec);
    let connect = |which: usize| {
        median(
            &rounds[which]
                .iter()
                .map(|r| r.connect_median)
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default()
    };
    let (plain_connect, https_connect) = (connect(0), connect(1));
    let rows = vec![
        Row::new(
            format!(
                "GET one pod, {} clients, keep-alive, HTTPS (goal >= {GOAL_RATIO}x plain)",
                args.clients
            ),
            https_gets,
            Unit::PerSec,
        )
        .baseline("plain HTTP, same run", plain_gets)
        .target(Target::AtLeast(plain_gets * GOAL_RATIO)),
        Row::new(
            format!(
                "durable creates, {} clients, keep-alive, HTTPS (goal >= {GOAL_RATIO}x plain)",
                args.clients
            ),
            https_creates,
            Unit::PerSec,
        )
        .baseline("plain HTTP, same run", plain_creates)
        .target(Target::AtLeast(plain_creates * GOAL_RATIO)),
        Row::new(
            "new connection + GET /healthz, HTTPS (median)",
            ms(https_connect),
            Unit::Millis,
        )
        .baseline("plain HTTP, same run", ms(plain_connect)),
        Row::new(
            "TLS handshake cost per new connection (difference of the medians)",
            ms(https_connect.saturating_sub(plain_connect)),
            Unit::Millis,
        ),
    ];
    print_and_save("tls", &rows, args.json.as_deref())?;
    for target in [plain, https] {
        target.server.stop().await?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Load {
    Get,
    /// Creates, with names unique to this phase.
    Create(usize),
}

/// Requests per second `clients` tasks complete in `phase` over the kept-alive client.
async fn throughput(
    target: &Measured,
    clients: usize,
    phase: Duration,
    load: Load,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let base = target.server.base();
    let started = Instant::now();
    let until = started + phase;
    let mut tasks = tokio::task::JoinSet::new();
    for client_index in 0..clients {
        let (client, done, failed, base) = (
            target.client.clone(),
            done.clone(),
            failed.clone(),
            base.clone(),
        );
        tasks.spawn(async move {
            let mut n = 0usize;
            while Instant::now() < until {
                let sent = match load {
                    Load::Get => {
                        client
                            .get(format!("{base}/api/v1/namespaces/default/pods/bench"))
                            .send()
                            .await
                    }
                    Load::Create(phase_index) => {
                        let body = json!({
                            "apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": format!("cm-{phase_index}-{client_index}-{n}")},
                            "data": {"k": "v"}
                        });
                        client
                            .post(format!("{base}/api/v1/namespaces/default/configmaps"))
                            .json(&body)
                            .send()
                            .await
                    }
                };
                n += 1;
                match sent {
                    Ok(answer) if answer.status().is_success() => {
                        let _ = answer.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        bail!("{}: {failures} requests failed", target.name);
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// The median time of a new connection and one `GET /healthz` on it, `count` times in a row.
async fn connections(target: &Measured, count: usize) -> anyhow::Result<Duration> {
    let url = format!("{}/healthz", target.server.base());
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let began = Instant::now();
        let answer = target.fresh.get(&url).send().await?;
        let _ = answer.bytes().await?;
        samples.push(began.elapsed());
    }
    median(&samples).context("no samples")
}
