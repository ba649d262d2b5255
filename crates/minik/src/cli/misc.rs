//! Small verbs: `scale`, `version` and `api-resources`.

use minik_api::request::PatchKind;
use minik_api::resources::RESOURCES;
use minik_client::Api;
use serde_json::{json, Value};

use super::tabwriter::align;
use super::{fail, kind_slash_name, parse_targets, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND/NAME or KIND NAME: a deployment, replica set or replication controller.
    #[arg(required = true)]
    targets: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    replicas: i64,
}

pub async fn scale(args: ScaleArgs) -> CliResult {
    if args.replicas < 0 {
        return Err(fail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        ));
    }
    let client = Client::new(&args.client)?;
    let targets = parse_targets(&args.targets)?;
    for (info, names) in &targets.groups {
        if !info.has_subresource("scale") {
            return Err(fail!(
                "cannot scale a {}: it has no replicas",
                info.singular
            ));
        }
        if names.is_empty() {
            return Err(fail!(
                "resource(s) were provided, but no name was specified"
            ));
        }
        for name in names {
            let body = json!({"spec": {"replicas": args.replicas}});
            client
                .patch_object(info, name, PatchKind::Merge, body)
                .await?;
            println!("{} scaled", kind_slash_name(info, name));
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Only the client's version; the server is not contacted.
    #[arg(long)]
    client_only: bool,
}

pub async fn version(args: VersionArgs) -> CliResult {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    if args.client_only {
        return Ok(());
    }
    let client = Client::new(&args.client)?;
    let value = client.api.get_path("/version").await?;
    let version = value
        .get("gitVersion")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    println!("Server Version: {version}");
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ApiResourcesArgs {
    /// Only namespaced kinds (true) or only cluster-scoped ones (false).
    #[arg(long)]
    namespaced: Option<bool>,
    /// Only the resource names.
    #[arg(short = 'o', long, value_parser = ["name", "wide"])]
    output: Option<String>,
}

/// The kinds minik serves; they are the same table the server serves from.
pub fn api_resources(args: ApiResourcesArgs) -> CliResult {
    let kinds = RESOURCES
        .iter()
        .filter(|r| args.namespaced.is_none_or(|n| n == r.namespaced));
    if args.output.as_deref() == Some("name") {
        for r in kinds {
            println!("{}", r.qualified_plural());
        }
        return Ok(());
    }
    let mut text = String::from("NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND\n");
    for r in kinds {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            r.plural,
            r.short_names.join(","),
            r.api_version(),
            r.namespaced,
            r.kind
        ));
    }
    print!("{}", align(&text, 3));
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ClusterInfoArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// Where the control plane answers, and how many nodes are Ready.
pub async fn cluster_info(args: ClusterInfoArgs) -> CliResult {
    let client = Client::new(&args.client)?;
    let version = client.api.get_path("/version").await?;
    let nodes = super::resource("nodes")?;
    let list = client
        .api
        .list(nodes, None, &minik_client::ListParams::default())
        .await?;
    let ready = list
        .items
        .iter()
        .filter(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
        })
        .count();
    println!(
        "minik control plane ({}) is running at {}",
        version
            .get("gitVersion")
            .and_then(Value::as_str)
            .unwrap_or("unknown version"),
        client.settings.server
    );
    println!("Nodes: {} ({ready} Ready)", list.items.len());
    println!();
    println!(
        "To further debug and diagnose cluster problems, use 'minik get nodes', 'minik describe node NAME' and 'minik get events -A'."
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell to write a completion script for.
    shell: clap_complete::Shell,
}

/// Writes a completion script for `shell`, made from the same definition the parser uses, so
/// it knows every verb and flag.
pub fn completion(args: CompletionArgs) -> CliResult {
    if !matches!(
        args.shell,
        clap_complete::Shell::Bash | clap_complete::Shell::Zsh | clap_complete::Shell::Fish
    ) {
        return Err(fail!(
            "Unsupported shell type {:?}: minik writes completions for bash, zsh and fish",
            args.shell.to_string()
        ));
    }
    let mut command = <crate::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "minik", &mut out);
    use std::io::Write;
    // A closed stdout (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().write_all(&out);
    Ok(())
}
