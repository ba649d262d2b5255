//! The `minik` binary: parses the command line and runs one role (server, ...).

mod allocator;
mod cli;
mod image;
mod kubeconfig;
mod node;
mod server;
mod simulate;
mod up;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: allocation was a quarter of the server's CPU time under
/// load (docs/benchmarks.md). Built with `no_thp` (the workspace Cargo.toml): mimalloc does
/// not ask for transparent huge pages, which cost 40-100 MB of RSS for no CPU gain measured.
/// The `system-allocator` feature leaves glibc's malloc in place, for heap profilers that see
/// only malloc (heaptrack; docs/benchmarks.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// minik: a container orchestrator in one binary, speaking the Kubernetes API.
#[derive(Parser)]
#[command(name = "minik", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: API server, store, scheduler and controllers.
    Server(server::ServerArgs),
    /// Run a node agent: register this host as a Node and run the pods bound to it.
    Node(node::NodeArgs),
    /// The client verbs: apply, get, describe, delete, logs, ...
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Run a whole cluster on this machine: the control plane and N node agents.
    Up(up::UpArgs),
    /// The images on this node: ls, pull, rm, inspect, import.
    Image(image::ImageArgs),
    /// Simulate N nodes in this one process (as kwok does): Nodes, Leases and pod status
    /// against a server, for testing controllers and schedulers at scale. Nothing runs.
    Simulate(simulate::SimulateArgs),
    /// Helpers the node agent starts (the oci runtime's monitors' spawner, container monitor,
    /// pod sandbox maker and exec): `minik` started again as a small single-threaded process.
    #[command(hide = true)]
    Internal {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    // Before anything starts a thread: the helpers fork into containers and namespaces. Their
    // stdout and stderr are the container's log, so they log nothing.
    if let Command::Internal { args } = &cli.command {
        let code = match args.split_first() {
            Some((helper, rest)) if helper == "oci-monitor" => {
                minik_node::runtime::oci_monitor_main(rest)
            }
            Some((helper, rest)) if helper == "oci-spawner" => {
                minik_node::runtime::oci_spawner_main(rest)
            }
            Some((helper, rest)) if helper == "oci-sandbox" => {
                minik_node::runtime::oci_sandbox_main(rest)
            }
            Some((helper, rest)) if helper == "oci-exec" => {
                minik_node::runtime::oci_exec_main(rest)
            }
            _ => {
                eprintln!("minik internal: unknown helper {args:?}");
                2
            }
        };
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Node(args) => node::run(args),
        // Client verbs print their own errors, in kubectl's forms.
        Command::Client(command) => return cli::run(command),
        Command::Up(args) => up::run(args),
        Command::Image(args) => image::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Internal { .. } => unreachable!("helpers ran above"),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
