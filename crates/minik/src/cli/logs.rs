//! `logs`: a container's log through the API server (`pods/{name}/log`), optionally followed.
//! `deploy/NAME` (or `rs/`, `rc/`) picks a pod of the workload's selector, as kubectl does.

use std::io::Write;

use minik_client::{Api, ListParams};
use serde_json::Value;

use super::printers::{labels_string, selector_string};
use super::{fail, http, resource, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// POD, pod/NAME, or deploy/NAME (a pod of the deployment).
    target: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keeps printing as the log grows.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// The log of the previous, terminated instance of the container.
    #[arg(short = 'p', long)]
    previous: bool,
    /// Prefixes each line with its timestamp.
    #[arg(long)]
    timestamps: bool,
}

/// The query of the log request, from validated flags.
fn query(args: &LogsArgs) -> CliResult<String> {
    if args.tail < -1 {
        return Err(fail!("--tail must be -1 or more"));
    }
    let mut q = Vec::new();
    if let Some(c) = &args.container {
        q.push(format!("container={}", http::encode(c)));
    }
    if args.follow {
        q.push("follow=true".to_owned());
    }
    if args.tail >= 0 {
        q.push(format!("tailLines={}", args.tail));
    }
    if args.previous {
        q.push("previous=true".to_owned());
    }
    if args.timestamps {
        q.push("timestamps=true".to_owned());
    }
    Ok(if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    })
}

/// The pod a target names: itself, or the first (by name) pod a workload selects.
async fn pod_name(client: &Client, target: &str) -> CliResult<String> {
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(target.to_owned());
    };
    let info = resource(kind)?;
    if info.kind == "Pod" {
        return Ok(name.to_owned());
    }
    if !matches!(
        info.kind,
        "Deployment" | "ReplicaSet" | "ReplicationController"
    ) {
        return Err(fail!("cannot get the logs of a {}", info.singular));
    }
    let workload = client.api.get(info, client.ns_for(info), name).await?;
    let selector = match workload.pointer("/spec/selector/matchLabels") {
        Some(m) => selector_string(workload.pointer("/spec/selector"), m),
        None => labels_string(workload.pointer("/spec/selector")),
    };
    let pods = super::resource("pods")?;
    let mut list = client
        .api
        .list(pods, client.ns_for(pods), &ListParams::labels(selector))
        .await?
        .items;
    list.sort_by_key(|p| {
        p.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    list.first()
        .and_then(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| {
            fail!(
                "no pods found for {}/{name}",
                super::qualified_singular(info)
            )
        })
}

pub async fn run(args: LogsArgs) -> CliResult {
    let query = query(&args)?;
    let client = Client::new(&args.client)?;
    let pod = pod_name(&client, &args.target).await?;
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/log{query}",
        client.settings.namespace,
        http::encode(&pod)
    );
    let mut response = http::get(&client.settings.server, &path).await?;
    if !(200..300).contains(&response.code) {
        return Err(response.error().await);
    }
    let mut stdout = std::io::stdout();
    loop {
        let data = response
            .chunk()
            .await
            .map_err(|e| fail!("the log stream broke: {e}"))?;
        if data.is_empty() {
            return Ok(());
        }
        // A closed stdout (`| head`) ends the command quietly, as kubectl does.
        if stdout
            .write_all(&data)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(());
        }
    }
}
