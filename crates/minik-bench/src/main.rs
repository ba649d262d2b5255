//! `minik-bench`: load tools that measure minik end to end against its release binary.

/// A line of progress on stderr, `[minik-bench] ...`, for the suites that print their phases.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[minik-bench] {}", format!($($arg)*)) };
}

mod agent;
mod all;
mod api;
mod args;
mod controllers;
mod cpu;
mod daemonsets;
mod images;
mod jobs;
mod machine;
mod node;
mod oci;
mod parse;
mod podnet;
mod podwatch;
mod proxy;
mod report;
mod scale;
mod scheduler;
mod server;
mod simulated;
mod sled_baseline;
mod stats;
mod tls;
mod up;
mod workload;

use clap::{Parser, Subcommand};

/// The allocator of the `minik` binary, so that what runs in process here (the scheduler
/// benchmark's API server) runs as it does in `minik server`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measures minik from the outside: spawns the real binary and drives it over loopback HTTP.
#[derive(Parser)]
#[command(name = "minik-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The API server and store: durable creates, GETs, LIST, watch delivery, memory, start-up.
    Api(api::ApiArgs),
    /// Every suite, one after another, merged into one markdown and one JSON report.
    All(all::AllArgs),
    /// The scheduler: decisions/s, and pods bound/s end to end through an in-process server.
    Scheduler(scheduler::SchedulerArgs),
    /// The workload controllers: a 1,000-replica Deployment, its rolling update, 200 real pods.
    Controllers(controllers::ControllersArgs),
    /// The Job controller: a Job of 1,000 completions (parallelism 100) on fake nodes to
    /// Complete, against 1,000 bare pods to Succeeded.
    Jobs(jobs::JobsArgs),
    /// The DaemonSet controller: a DaemonSet over 1,000 simulated nodes (`minik simulate`) to
    /// all available, against as many pinned bare pods to Running.
    Daemonsets(daemonsets::DaemonSetsArgs),
    /// `minik up`: cold start to nodes Ready, and `minik apply` of the example to pods Running.
    Up(up::UpArgs),
    /// The node agent: pod start latency one at a time and in a burst, agent memory.
    Node(node::NodeArgs),
    /// The Service proxy: HTTP requests/s and latency through a ClusterIP versus direct.
    Proxy(proxy::ProxyArgs),
    /// Image pulls: minik's cold and warm pull of a Debian-like image from a loopback registry
    /// against `skopeo copy` (and `umoci unpack`) of the same image.
    Images(images::ImagesArgs),
    /// Pod start with the oci runtime (isolated containers) against `runc run -d`, and the
    /// memory minik adds per running container.
    Oci(oci::OciArgs),
    /// What HTTPS costs the API: GETs/s and creates/s over HTTPS against plain HTTP in the same
    /// run, and the TLS handshake per new connection.
    Tls(tls::TlsArgs),
    /// The control plane at scale (issue 22): 5,000 simulated nodes and 50,000 pods, mutating
    /// calls and pod start under a steady background, memory per pod, start-up, and the data
    /// dir through 100,000 create/delete cycles.
    Scale(scale::ScaleArgs),
    /// The pod network (issue 19): pod to pod across two nodes against loopback, a ClusterIP
    /// against the pod IP, cluster DNS from a pod, and the pod network's setup per pod.
    Podnet(podnet::PodnetArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Api(args) => args.config().and_then(api::run),
        Command::All(args) => all::run(args),
        Command::Scheduler(args) => scheduler::run(args),
        Command::Controllers(args) => controllers::run(args),
        Command::Jobs(args) => jobs::run(args),
        Command::Daemonsets(args) => daemonsets::run(args),
        Command::Up(args) => up::run(args),
        Command::Node(args) => node::run(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Images(args) => images::run(args),
        Command::Oci(args) => oci::run(args),
        Command::Tls(args) => tls::run(args),
        Command::Podnet(args) => podnet::run(args),
        Command::Scale(args) => scale::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
