//! Small verbs: `scale`, `version` and `api-resources`.

use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::resources::RESOURCES;
use minik_client::Api;
use serde_json::{json, Value};

use super::tabwriter::align;
use super::{fail, http, kind_slash_name, parse_targets, CliResult, Client, ClientFlags};

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
            let patch = Patch {
                kind: PatchKind::Merge,
                body: json!({"spec": {"replicas": args.replicas}}),
            };
            client
                .api
                .patch(
                    info,
                    client.ns_for(info),
                    name,
                    patch,
                    false,
                    WriteOptions::default(),
                )
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
    let settings = args.client.settings()?;
    let mut response = http::get(&settings.server, "/version").await?;
    if !(200..300).contains(&response.code) {
        return Err(response.error().await);
    }
    let text = response
        .text()
        .await
        .map_err(|e| fail!("cannot read the server's version: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| fail!("the server's /version is not JSON: {e}"))?;
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
