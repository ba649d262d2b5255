//! `run` (a Pod from flags, as `kubectl run`), `create namespace|deployment NAME` (objects
//! from flags, as `kubectl create`), `expose` (a Service that selects what a pod, workload or
//! Service selects) and `set image` (new images for containers of a pod or of a workload's
//! template).

use std::collections::BTreeMap;
use std::process::ExitCode;

use minik_api::request::{PatchKind, WriteOptions};
use minik_api::resources::ResourceInfo;
use minik_client::Api;
use serde_json::{json, Map, Value};

use super::printers::{arr, s};
use super::{
    exit, fail, kind_slash_name, named_targets, printers, report, CliResult, Client, ClientFlags,
};

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The pod's name (also its container's).
    name: String,
    /// The container's image.
    #[arg(long)]
    image: Option<String>,
    /// A port the container exposes.
    #[arg(long)]
    port: Option<String>,
    /// KEY=VALUE environment variables; may be repeated.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Labels as k=v,k2=v2 (default: run=NAME).
    #[arg(short = 'l', long)]
    labels: Option<String>,
    /// KEY=VALUE annotations for the pod; may be repeated.
    #[arg(long = "annotations", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// The pod's restart policy: Always, OnFailure or Never.
    #[arg(long, default_value = "Always")]
    restart: String,
    /// Uses the arguments after -- as the command rather than as its arguments.
    #[arg(long)]
    command: bool,
    /// The image pull policy: Always, IfNotPresent or Never (default: the server's).
    #[arg(long)]
    image_pull_policy: Option<String>,
    /// none, client (print the pod without creating it) or server (have it checked, not stored).
    #[arg(long, default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    dry_run: String,
    /// Prints the created pod as yaml, json or name instead of a message.
    #[arg(short = 'o', long, value_parser = ["yaml", "json", "name"])]
    output: Option<String>,
    /// Keep a stdin open on the container (`stdin: true`); attach to it unless --attach=false.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Give the container a terminal (`tty: true`); needs -i.
    #[arg(short = 't', long)]
    tty: bool,
    /// Wait for the pod to run, then attach to it (default: with -i).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    attach: Option<bool>,
    /// Leave the container's stdin open after the first attach ends (no `stdinOnce`).
    #[arg(long)]
    leave_stdin_open: bool,
    /// Delete the pod once the attached session ends.
    #[arg(long)]
    rm: bool,
    /// How long to wait for the pod to run before attaching.
    #[arg(long, default_value = "1m", value_parser = super::time::parse_duration)]
    pod_running_timeout: std::time::Duration,
    /// No hint or warning while attaching.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The command's arguments (or, with --command, the command).
    #[arg(last = true)]
    args: Vec<String>,
}

/// `--dry-run`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DryRun {
    None,
    Client,
    Server,
}

fn dry_run(value: &str) -> CliResult<DryRun> {
    match value {
        "none" | "false" => Ok(DryRun::None),
        "client" | "true" => Ok(DryRun::Client),
        "server" => Ok(DryRun::Server),
        other => Err(fail!(
            "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
        )),
    }
}

/// `k=v,k2=v2` as a map, with kubectl's errors.
fn parse_labels(spec: &str) -> CliResult<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for part in spec.split(',') {
        let Some((k, v)) = part.split_once('=').filter(|(_, v)| !v.contains('=')) else {
            return Err(fail!("unexpected label spec: {part}"));
        };
        if k.is_empty() {
            return Err(fail!("unexpected empty label key"));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// The Pod `run` creates.
fn pod_of(args: &RunArgs) -> CliResult<Value> {
    let Some(image) = args.image.as_deref().filter(|i| !i.is_empty()) else {
        return Err(fail!("--image is required"));
    };
    if image.chars().any(char::is_whitespace) {
        return Err(fail!(
            "invalid image name {image:?}: invalid reference format"
        ));
    }
    let restart = match args.restart.as_str() {
        r @ ("Always" | "OnFailure" | "Never") => r,
        other => {
            return Err(fail!(
                "invalid restart policy: {other}, valid values are: Always, OnFailure, Never"
            ))
        }
    };
    let labels = match &args.labels {
        Some(spec) if !spec.is_empty() => parse_labels(spec)?,
        _ => BTreeMap::from([("run".to_owned(), args.name.clone())]),
    };
    let mut container = json!({"name": args.name, "image": image});
    if let Some(policy) = &args.image_pull_policy {
        if !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never") {
            return Err(fail!("invalid image pull policy: {policy}, valid values are: Always, IfNotPresent, Never"));
        }
        container["imagePullPolicy"] = json!(policy);
    }
    let mut env = Vec::new();
    for pair in &args.env {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push(json!({"name": k, "value": v})),
            _ => return Err(fail!("invalid env: {pair}")),
        }
    }
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if let Some(port) = &args.port {
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| fail!("--port must be a number"))?;
        container["ports"] = json!([{"containerPort": port}]);
    }
    if !args.args.is_empty() {
        let key = if args.command { "command" } else { "args" };
        container[key] = json!(args.args);
    }
    // kubectl's: stdinOnce unless the stdin is to stay open.
    if args.stdin {
        container["stdin"] = json!(true);
        if !args.leave_stdin_open {
            container["stdinOnce"] = json!(true);
        }
    }
    if args.tty {
        container["tty"] = json!(true);
    }
    let mut metadata = json!({"name": args.name, "labels": labels});
    for pair in &args.annotations {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => metadata["annotations"][k] = json!(v),
            _ => return Err(fail!("invalid annotation spec: {pair}")),
        }
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [container], "restartPolicy": restart},
    }))
}

/// Prints what a create-like verb made: as `-o` asks, or `KIND/NAME created`.
fn print_result(
    info: &ResourceInfo,
    object: &Value,
    output: Option<&str>,
    message: &str,
    dry: DryRun,
) {
    let suffix = match dry {
        DryRun::None => "",
        DryRun::Client => " (dry run)",
        DryRun::Server => " (server dry run)",
    };
    match output {
        Some("yaml") => print!("{}", printers::to_yaml(object)),
        Some("json") => print!("{}", printers::to_json(object)),
        Some(_) => println!("{}", kind_slash_name(info, s(object, "/metadata/name"))),
        None => println!(
            "{} {message}{suffix}",
            kind_slash_name(info, s(object, "/metadata/name"))
        ),
    }
}

pub async fn run(args: RunArgs) -> CliResult<ExitCode> {
    let dry = dry_run(&args.dry_run)?;
    let attach = args.attach.unwrap_or(args.stdin);
    if args.tty && !args.stdin {
        return Err(fail!(
            "-i/--stdin is required for containers with -t/--tty=true"
        ));
    }
    if args.rm && !attach {
        return Err(fail!("--rm should only be used for attached containers"));
    }
    if attach && dry != DryRun::None {
        return Err(fail!("--dry-run can't be used with attached containers options (--attach, --stdin, or --tty)"));
    }
    let mut pod = pod_of(&args)?;
    let pods = super::resource("pods")?;
    let settings = args.client.settings()?;
    pod["metadata"]["namespace"] = json!(settings.namespace);
    if dry == DryRun::Client {
        print_result(pods, &pod, args.output.as_deref(), "created", dry);
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(&args.client)?;
    let opts = WriteOptions {
        dry_run: dry == DryRun::Server,
        ..Default::default()
    };
    let created = client
        .api
        .create(pods, client.ns_for(pods), pod, opts)
        .await?;
    if !attach {
        print_result(pods, &created, args.output.as_deref(), "created", dry);
        return Ok(ExitCode::SUCCESS);
    }
    let session = attach_to_new(&client, &args).await;
    // Only a pod that ends by itself tells how it ended (kubectl's rule).
    let ends = !args.leave_stdin_open && args.restart != "Always";
    let ended = match &session {
        Ok(()) if ends => Some(
            wait_for_pod(
                &client,
                &args.name,
                args.pod_running_timeout.max(MAX_RUN_WAIT),
                |phase| matches!(phase, "Succeeded" | "Failed"),
            )
            .await,
        ),
        _ => None,
    };
    if args.rm {
        let ns = client.ns_for(pods);
        client
            .api
            .delete(pods, ns, &args.name, Default::default())
            .await?;
        println!("pod \"{}\" deleted", args.name);
    }
    session?;
    match ended {
        None => Ok(ExitCode::SUCCESS),
        Some(pod) => exit_of(&pod?),
    }
}

/// How long `run --attach` waits, after the session, for a pod to end.
const MAX_RUN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits for the new pod to run, then attaches to its container; prints its log instead when
/// it ended first (kubectl's `run --attach`).
async fn attach_to_new(client: &Client, args: &RunArgs) -> CliResult<()> {
    let pod = wait_for_pod(client, &args.name, args.pod_running_timeout, |phase| {
        phase != "Pending"
    })
    .await?;
    if matches!(s(&pod, "/status/phase"), "Succeeded" | "Failed") {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/log",
            s(&pod, "/metadata/namespace"),
            args.name
        );
        let log = client.api.get_stream(&path, &[]).await?;
        futures::pin_mut!(log);
        while let Some(chunk) = futures::StreamExt::next(&mut log).await {
            std::io::Write::write_all(&mut std::io::stdout(), &chunk?)
                .map_err(|e| fail!("cannot write the log: {e}"))?;
        }
        return Ok(());
    }
    let status =
        super::exec::attach_to(client, &pod, &args.name, (args.stdin, args.tty), args.quiet)
            .await?;
    super::exec::exit_code(&status).map(drop)
}

/// Reads pod `name` until its phase is one `wanted` takes, for at most `timeout`.
async fn wait_for_pod(
    client: &Client,
    name: &str,
    timeout: std::time::Duration,
    wanted: impl Fn(&str) -> bool,
) -> CliResult<Value> {
    let pods = super::resource("pods")?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pod = client.api.get(pods, client.ns_for(pods), name).await?;
        if wanted(s(&pod, "/status/phase")) {
            return Ok(pod);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fail!(
                "timed out waiting for the condition on pods/{name}: its phase is {}",
                s(&pod, "/status/phase")
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The exit status of `run --attach` for a pod that ended: 0 when it succeeded; its first
/// container's exit code, with kubectl's message, when it failed.
fn exit_of(pod: &Value) -> CliResult<ExitCode> {
    if s(pod, "/status/phase") == "Succeeded" {
        return Ok(ExitCode::SUCCESS);
    }
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    let (ns, name) = (s(pod, "/metadata/namespace"), s(pod, "/metadata/name"));
    let Some(code) = terminated["exitCode"].as_i64() else {
        return Err(fail!("pod {ns}/{name} failed with unknown exit code"));
    };
    eprintln!(
        "pod {ns}/{name} terminated ({})\n{}",
        terminated["reason"].as_str().unwrap_or("Error"),
        terminated["message"].as_str().unwrap_or_default()
    );
    Ok(ExitCode::from(
        u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
    ))
}

// ---------------------------------------------------------------------------------------------
// create namespace|deployment
// ---------------------------------------------------------------------------------------------

/// `create KIND NAME [flags]`: an object made from flags rather than a manifest.
#[derive(clap::Subcommand, Debug)]
pub enum CreateWhat {
    /// A namespace.
    #[command(visible_alias = "ns")]
    Namespace(CreateNamespaceArgs),
    /// A deployment running the given images, labelled and selected by app=NAME.
    #[command(visible_alias = "deploy")]
    Deployment(CreateDeploymentArgs),
    /// A config map from literals, files, directories or env files.
    #[command(visible_alias = "cm")]
    Configmap(super::create_config::ConfigMapArgs),
    /// A secret: generic (literals, files, env files), docker-registry or tls.
    Secret(super::create_config::SecretArgs),
    /// A job running an image, or made from a CronJob's job template.
    Job(super::create_job::JobArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateNamespaceArgs {
    name: String,
    /// none, client (print without creating) or server, as for run.
    #[arg(long, default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    dry_run: String,
    /// Prints the object as yaml, json or name instead of a message.
    #[arg(short = 'o', long, value_parser = ["yaml", "json", "name"])]
    output: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CreateDeploymentArgs {
    name: String,
    /// An image to run; may be repeated, one container each.
    #[arg(long, required = true)]
    image: Vec<String>,
    /// The number of replicas.
    #[arg(long, default_value_t = 1)]
    replicas: i64,
    /// A port the (first) container exposes.
    #[arg(long)]
    port: Option<u16>,
    /// none, client (print without creating) or server, as for run.
    #[arg(long, default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    dry_run: String,
    /// Prints the object as yaml, json or name instead of a message.
    #[arg(short = 'o', long, value_parser = ["yaml", "json", "name"])]
    output: Option<String>,
}

/// The container name kubectl derives from an image: the last path part, without tag or
/// digest (`docker.io/library/nginx:1.25` → `nginx`).
fn container_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split(['@', ':']).next().unwrap_or(base);
    base.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

fn deployment_of(args: &CreateDeploymentArgs) -> CliResult<Value> {
    if args.replicas < 0 {
        return Err(fail!("--replicas must be 0 or more, not {}", args.replicas));
    }
    let mut containers: Vec<Value> = Vec::new();
    for image in &args.image {
        let name = container_name(image);
        if name.is_empty() {
            return Err(fail!(
                "invalid image name {image:?}: invalid reference format"
            ));
        }
        containers.push(json!({"name": name, "image": image}));
    }
    if let (Some(port), Some(first)) = (args.port, containers.first_mut()) {
        first["ports"] = json!([{"containerPort": port}]);
    }
    let labels = json!({"app": args.name});
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": args.name, "labels": labels},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
        },
    }))
}

/// Creates what `create KIND NAME` describes; prints `KIND/NAME created`.
pub async fn create_from_flags(client: &ClientFlags, what: CreateWhat) -> CliResult<ExitCode> {
    let (kind, object, dry, output) = match what {
        CreateWhat::Namespace(a) => (
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": a.name}}),
            dry_run(&a.dry_run)?,
            a.output,
        ),
        CreateWhat::Deployment(a) => (
            "deployments",
            deployment_of(&a)?,
            dry_run(&a.dry_run)?,
            a.output,
        ),
        CreateWhat::Job(a) => {
            let dry = dry_run(&a.print.dry_run)?;
            let object = super::create_job::job(client, &a).await?;
            ("jobs", object, dry, a.print.output)
        }
        CreateWhat::Configmap(a) => {
            let dry = dry_run(&a.print.dry_run)?;
            let object = super::create_config::configmap(&a)?;
            ("configmaps", object, dry, a.print.output)
        }
        CreateWhat::Secret(a) => {
            let dry = dry_run(&a.print().dry_run)?;
            let object = super::create_config::secret(&a)?;
            ("secrets", object, dry, a.print().output.clone())
        }
    };
    let info = super::resource(kind)?;
    let mut object = object;
    let settings = client.settings()?;
    if info.namespaced {
        object["metadata"]["namespace"] = json!(settings.namespace);
    }
    if dry == DryRun::Client {
        print_result(info, &object, output.as_deref(), "created", dry);
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(client)?;
    let opts = WriteOptions {
        dry_run: dry == DryRun::Server,
        ..Default::default()
    };
    let created = client
        .api
        .create(info, client.ns_for(info), object, opts)
        .await?;
    print_result(info, &created, output.as_deref(), "created", dry);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// expose
// ---------------------------------------------------------------------------------------------

#[derive(clap::Args, Debug)]
pub struct ExposeArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// pod|deploy|rs|rc|svc NAME, or KIND/NAME.
    #[arg(required = true)]
    targets: Vec<String>,
    /// The Service's port (default: the ports the object declares).
    #[arg(long)]
    port: Option<String>,
    /// The port (number or name) traffic goes to on the pods (default: the same as --port).
    #[arg(long)]
    target_port: Option<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type", default_value = "ClusterIP")]
    service_type: String,
    /// The Service's name (default: the object's).
    #[arg(long)]
    name: Option<String>,
    /// TCP, UDP or SCTP (default: what the object declares, else TCP).
    #[arg(long)]
    protocol: Option<String>,
    /// The selector to use instead of the object's, as k=v,k2=v2.
    #[arg(long)]
    selector: Option<String>,
    /// Labels for the Service, as k=v,k2=v2 (default: the object's labels).
    #[arg(short = 'l', long)]
    labels: Option<String>,
    /// none, client or server, as for run.
    #[arg(long, default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    dry_run: String,
    /// Prints the Service as yaml, json or name instead of a message.
    #[arg(short = 'o', long, value_parser = ["yaml", "json", "name"])]
    output: Option<String>,
}

/// The label selector a Service gets from the object it exposes.
fn selector_for(info: &ResourceInfo, obj: &Value) -> CliResult<Map<String, Value>> {
    let map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let selector = match info.kind {
        "Pod" => {
            let labels = map(obj.pointer("/metadata/labels"));
            if labels.is_empty() {
                return Err(fail!("couldn't retrieve selectors via --selector flag or introspection: the pod has no labels and cannot be exposed"));
            }
            labels
        }
        "Service" | "ReplicationController" => map(obj.pointer("/spec/selector")),
        "Deployment" | "ReplicaSet" => {
            if !arr(obj, "/spec/selector/matchExpressions").is_empty() {
                return Err(fail!("couldn't retrieve selectors via --selector flag or introspection: couldn't convert expressions - {:?} to map-based selector format", obj.pointer("/spec/selector/matchExpressions").map(Value::to_string).unwrap_or_default()));
            }
            map(obj.pointer("/spec/selector/matchLabels"))
        }
        other => return Err(fail!("cannot expose a {other}")),
    };
    if selector.is_empty() {
        return Err(fail!(
            "couldn't retrieve selectors via --selector flag or introspection: the {} has no selector",
            info.singular
        ));
    }
    Ok(selector)
}

/// The ports (and protocols) the exposed object declares, in order.
fn ports_for(info: &ResourceInfo, obj: &Value) -> Vec<(i64, String)> {
    let containers = match info.kind {
        "Pod" => arr(obj, "/spec/containers"),
        "Service" => {
            return arr(obj, "/spec/ports")
                .iter()
                .filter_map(|p| {
                    p.get("port")
                        .and_then(Value::as_i64)
                        .map(|n| (n, protocol_of(p)))
                })
                .collect()
        }
        _ => arr(obj, "/spec/template/spec/containers"),
    };
    containers
        .iter()
        .flat_map(|c| arr(c, "/ports"))
        .filter_map(|p| {
            p.get("containerPort")
                .and_then(Value::as_i64)
                .map(|n| (n, protocol_of(p)))
        })
        .collect()
}

fn protocol_of(port: &Value) -> String {
    match s(port, "/protocol") {
        "" => "TCP".into(),
        p => p.to_owned(),
    }
}

fn int_or_string(text: &str) -> Value {
    match text.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(text),
    }
}

/// The Service `expose` creates for `obj`.
fn service_for(args: &ExposeArgs, info: &ResourceInfo, obj: &Value) -> CliResult<Value> {
    let selector = match &args.selector {
        Some(spec) => parse_labels(spec)?
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
        None => selector_for(info, obj)?,
    };
    let service_type = match args.service_type.as_str() {
        t @ ("ClusterIP" | "NodePort" | "LoadBalancer") => t,
        other => {
            return Err(fail!(
                "invalid service type {other:?}: minik serves ClusterIP, NodePort and LoadBalancer"
            ))
        }
    };
    if let Some(p) = &args.protocol {
        if !matches!(p.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(fail!("invalid protocol {p:?}: must be TCP, UDP or SCTP"));
        }
    }
    let declared = ports_for(info, obj);
    let ports: Vec<(i64, String)> = match &args.port {
        Some(p) => {
            let port: i64 = p
                .parse()
                .ok()
                .filter(|n| (1..=65535).contains(n))
                .ok_or_else(|| fail!("invalid --port {p:?}: must be a number from 1 to 65535"))?;
            let protocol = declared
                .iter()
                .find(|(n, _)| *n == port)
                .map(|(_, proto)| proto.clone())
                .unwrap_or_else(|| "TCP".into());
            vec![(port, protocol)]
        }
        None if declared.is_empty() => {
            return Err(fail!("couldn't find port via --port flag or introspection"))
        }
        None => declared,
    };
    let several = ports.len() > 1;
    let service_ports: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, (port, protocol))| {
            let protocol = args.protocol.clone().unwrap_or_else(|| protocol.clone());
            let target = match &args.target_port {
                Some(t) => int_or_string(t),
                None => json!(port),
            };
            let mut p = json!({"port": port, "protocol": protocol, "targetPort": target});
            if several {
                p["name"] = json!(format!("port-{}", i + 1));
            }
            p
        })
        .collect();
    let name = match &args.name {
        Some(n) => n.clone(),
        None => s(obj, "/metadata/name").chars().take(63).collect(),
    };
    let labels: Value = match &args.labels {
        Some(spec) => json!(parse_labels(spec)?),
        None => obj
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({})),
    };
    let mut metadata = json!({"name": name});
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        metadata["labels"] = labels;
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"selector": selector, "ports": service_ports, "type": service_type},
    }))
}

pub async fn expose(args: ExposeArgs) -> CliResult<ExitCode> {
    let dry = dry_run(&args.dry_run)?;
    let client = Client::new(&args.client)?;
    let services = super::resource("services")?;
    let mut failed = false;
    for (info, name) in named_targets(&args.targets)? {
        let result = async {
            if !matches!(
                info.kind,
                "Pod" | "Service" | "ReplicationController" | "Deployment" | "ReplicaSet"
            ) {
                return Err(fail!("cannot expose a {}", info.kind));
            }
            let obj = client.api.get(info, client.ns_for(info), &name).await?;
            let mut svc = service_for(&args, info, &obj)?;
            svc["metadata"]["namespace"] = json!(client.settings.namespace);
            if dry == DryRun::Client {
                return Ok(svc);
            }
            let opts = WriteOptions {
                dry_run: dry == DryRun::Server,
                ..Default::default()
            };
            Ok(client
                .api
                .create(services, client.ns_for(services), svc, opts)
                .await?)
        }
        .await;
        match result {
            Ok(svc) => print_result(services, &svc, args.output.as_deref(), "exposed", dry),
            Err(e) => report(&mut failed, e),
        }
    }
    exit(failed)
}

// ---------------------------------------------------------------------------------------------
// set image
// ---------------------------------------------------------------------------------------------

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    #[command(subcommand)]
    command: SetCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SetCommand {
    /// Sets the images of containers: KIND NAME CONTAINER=IMAGE... (`*=IMAGE` for all).
    Image(SetImageArgs),
}

#[derive(clap::Args, Debug)]
struct SetImageArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND NAME... or KIND/NAME..., then CONTAINER=IMAGE...
    #[arg(required = true)]
    args: Vec<String>,
}

pub async fn set(args: SetArgs) -> CliResult<ExitCode> {
    match args.command {
        SetCommand::Image(a) => set_image(a).await,
    }
}

/// The strategic merge patch that gives the named containers their new images, or the name
/// of a container that does not exist.
fn image_patch(obj: &Value, template: bool, images: &BTreeMap<String, String>) -> CliResult<Value> {
    let spec = if template {
        "/spec/template/spec"
    } else {
        "/spec"
    };
    let mut lists = Map::new();
    let mut found = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let mut changed = Vec::new();
        for c in arr(obj, &format!("{spec}/{list}")) {
            let name = s(c, "/name");
            let image = images.get(name).or_else(|| images.get("*"));
            if let Some(image) = image {
                found.insert(name.to_owned());
                changed.push(json!({"name": name, "image": image}));
            }
        }
        if !changed.is_empty() {
            lists.insert(list.to_owned(), Value::Array(changed));
        }
    }
    for name in images.keys() {
        if name != "*" && !found.contains(name) {
            return Err(fail!("unable to find container named {name:?}"));
        }
    }
    let mut patch = Value::Object(lists);
    if template {
        patch = json!({"template": {"spec": patch}});
    }
    Ok(json!({ "spec": patch }))
}

async fn set_image(args: SetImageArgs) -> CliResult<ExitCode> {
    let first_change = args
        .args
        .iter()
        .position(|w| w.contains('='))
        .unwrap_or(args.args.len());
    let (targets, specs) = args.args.split_at(first_change);
    if targets.is_empty() {
        return Err(fail!(
            "one or more resources must be specified as <resource> <name> or <resource>/<name>"
        ));
    }
    if specs.is_empty() {
        return Err(fail!("at least one image update is required"));
    }
    let mut images = BTreeMap::new();
    for spec in specs {
        match spec.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => {
                images.insert(c.to_owned(), i.to_owned());
            }
            _ => {
                return Err(fail!(
                    "invalid image update {spec:?}: expected CONTAINER=IMAGE"
                ))
            }
        }
    }
    if images.contains_key("*") && images.len() > 1 {
        return Err(fail!("all containers are already specified by *, but saw more than one container_name=container_image pairs"));
    }
    let client = Client::new(&args.client)?;
    let mut failed = false;
    for (info, name) in named_targets(targets)? {
        let result = async {
            let template = match info.kind {
                "Pod" => false,
                "Deployment" | "ReplicaSet" | "ReplicationController" => true,
                other => {
                    return Err(fail!(
                        "cannot set the image of a {other}: it has no containers"
                    ))
                }
            };
            let obj = client.api.get(info, client.ns_for(info), &name).await?;
            let body = image_patch(&obj, template, &images)?;
            client
                .patch_object(info, &name, PatchKind::Strategic, body)
                .await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => println!("{} image updated", kind_slash_name(info, &name)),
            Err(e) => report(&mut failed, e),
        }
    }
    exit(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    fn run_args(line: &str) -> RunArgs {
        Cmd::try_parse_from(std::iter::once("run").chain(line.split_whitespace()))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .run
    }

    #[test]
    fn run_makes_the_pod_kubectl_makes() {
        let pod = pod_of(&run_args(
            "web --image nginx --port 80 --env A=1 --env B= --restart Never -- -g daemon",
        ))
        .unwrap();
        assert_eq!(
            pod,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"run": "web"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}], "args": ["-g", "daemon"]}]}})
        );
        let pod = pod_of(&run_args(
            "t --image busybox -l app=t,tier=x --command -- sleep 5",
        ))
        .unwrap();
        assert_eq!(pod["metadata"]["labels"], json!({"app": "t", "tier": "x"}));
        assert_eq!(
            pod["spec"]["containers"][0]["command"],
            json!(["sleep", "5"])
        );
        for bad in [
            "x",
            "x --image a --port http",
            "x --image a --env NOVALUE",
            "x --image a --restart Sometimes",
            "x --image a -l novalue",
        ] {
            assert!(pod_of(&run_args(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn run_dash_it_asks_for_a_stdin_and_a_terminal_as_kubectl_does() {
        let container =
            |line: &str| pod_of(&run_args(line)).unwrap()["spec"]["containers"][0].clone();
        let c = container("sh --image busybox -i -t");
        assert_eq!(
            (&c["stdin"], &c["stdinOnce"], &c["tty"]),
            (&json!(true), &json!(true), &json!(true))
        );
        let c = container("sh --image busybox -i --leave-stdin-open");
        assert_eq!(
            (&c["stdin"], &c["stdinOnce"], &c["tty"]),
            (&json!(true), &Value::Null, &Value::Null)
        );
        let c = container("sh --image busybox");
        assert_eq!((&c["stdin"], &c["tty"]), (&Value::Null, &Value::Null));
        // What kubectl refuses before it sends anything.
        for (line, message) in [
            ("sh --image busybox -t", "-i/--stdin is required for containers with -t/--tty=true"),
            ("sh --image busybox --rm", "--rm should only be used for attached containers"),
            ("sh --image busybox -i --attach=false --rm", "--rm should only be used for attached containers"),
            ("sh --image busybox -i --dry-run", "--dry-run can't be used with attached containers options (--attach, --stdin, or --tty)"),
        ] {
            let e = run(run_args(line)).await.unwrap_err();
            assert_eq!(e.to_string(), format!("error: {message}"), "{line}");
        }
    }

    #[test]
    fn expose_takes_selector_and_ports_from_the_object() {
        let deploy_info = super::super::resource("deploy").unwrap();
        let deploy = json!({"metadata": {"name": "web", "labels": {"team": "a"}}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]}}}});
        let args = ExposeArgs {
            client: ClientFlags::default(),
            targets: vec![],
            port: None,
            target_port: None,
            service_type: "NodePort".into(),
            name: Some("front".into()),
            protocol: None,
            selector: None,
            labels: None,
            dry_run: "none".into(),
            output: None,
        };
        let svc = service_for(&args, deploy_info, &deploy).unwrap();
        assert_eq!(
            svc,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "front", "labels": {"team": "a"}},
                "spec": {"selector": {"app": "web"}, "type": "NodePort", "ports": [
                    {"name": "port-1", "port": 8080, "protocol": "TCP", "targetPort": 8080},
                    {"name": "port-2", "port": 53, "protocol": "UDP", "targetPort": 53}]}})
        );
        let one = ExposeArgs {
            port: Some("80".into()),
            target_port: Some("http".into()),
            service_type: "ClusterIP".into(),
            name: None,
            ..args
        };
        let svc = service_for(&one, deploy_info, &deploy).unwrap();
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": "http"}])
        );
        assert_eq!(svc["metadata"]["name"], "web");
        let pod_info = super::super::resource("po").unwrap();
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        assert!(service_for(&one, pod_info, &bare).is_err());
    }

    #[test]
    fn create_deployment_names_containers_after_their_images() {
        assert_eq!(container_name("docker.io/library/nginx:1.25"), "nginx");
        assert_eq!(container_name("busybox@sha256:abc"), "busybox");
        assert_eq!(container_name("My_App"), "my-app");
        let args = CreateDeploymentArgs {
            name: "web".into(),
            image: vec!["nginx:1.25".into(), "busybox".into()],
            replicas: 2,
            port: Some(80),
            dry_run: "none".into(),
            output: None,
        };
        let d = deployment_of(&args).unwrap();
        assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}, {"name": "busybox", "image": "busybox"}])
        );
        assert!(deployment_of(&CreateDeploymentArgs {
            replicas: -1,
            ..args
        })
        .is_err());
    }

    #[test]
    fn set_image_patches_named_containers_only() {
        let deploy = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}});
        let images = BTreeMap::from([("b".to_owned(), "2".to_owned())]);
        assert_eq!(
            image_patch(&deploy, true, &images).unwrap(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}})
        );
        let all = BTreeMap::from([("*".to_owned(), "3".to_owned())]);
        assert_eq!(
            image_patch(&deploy, true, &all).unwrap()["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let missing = BTreeMap::from([("zz".to_owned(), "2".to_owned())]);
        assert_eq!(
            image_patch(&deploy, true, &missing)
                .unwrap_err()
                .to_string(),
            "error: unable to find container named \"zz\""
        );
    }
}
