//! `minik <verb>`: the command-line client. Each verb parses its flags (clap) into validated
//! settings, talks to the API server through `minik_client::HttpApi`, and prints what kubectl
//! prints for the same thing. Failures are one line on stderr and a non-zero exit.

mod apply;
mod config;
mod create_config;
mod create_job;
mod describe;
mod edit;
mod exec;
mod get;
mod jsonpath;
mod label;
mod logs;
mod manifest;
mod misc;
mod nodes;
mod patch;
mod pick;
mod port_forward;
mod printers;
mod rollout;
mod run;
pub(crate) mod tabwriter;
pub(crate) mod time;
mod token;

use std::process::ExitCode;

use minik_api::resources::{self, ResourceInfo};
use minik_api::ApiError;
use minik_client::{Api, HttpApi, ListParams};

pub use config::ClientFlags;

/// The client verbs, flattened into the top-level `minik` command.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create or update objects from manifests (client-side apply, as `kubectl apply`).
    Apply(apply::ApplyArgs),
    /// Create objects from manifests; fails if one already exists.
    Create(apply::CreateArgs),
    /// List objects or show some in a table, YAML, JSON or by name.
    Get(get::GetArgs),
    /// Show an object in detail, with its conditions and recent events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, by label selector, or as named in manifests.
    Delete(apply::DeleteArgs),
    /// Print the log of a container of a pod.
    Logs(logs::LogsArgs),
    /// Run a command in a container of a pod: exec [-i] [-t] POD [-c CONTAINER] -- COMMAND [ARGS...].
    Exec(exec::ExecArgs),
    /// Attach to the process a container runs: attach [-i] [-t] POD [-c CONTAINER].
    Attach(exec::AttachArgs),
    /// Forward local ports to a pod (or a pod of a deployment or service) through the server.
    PortForward(port_forward::PortForwardArgs),
    /// Set the number of replicas of a deployment, replica set or replication controller.
    Scale(misc::ScaleArgs),
    /// Print the client's and the server's versions.
    Version(misc::VersionArgs),
    /// List the kinds the server serves, with their short names.
    ApiResources(misc::ApiResourcesArgs),
    /// Follow, list, undo, restart, pause or resume the rollouts of deployments.
    Rollout(rollout::RolloutArgs),
    /// Change a field of objects: `set image` gives containers new images.
    Set(run::SetArgs),
    /// Create a pod running an image: run NAME --image IMAGE [-- ARGS...].
    Run(run::RunArgs),
    /// Create a Service for a pod, deployment, replica set, replication controller or service.
    Expose(run::ExposeArgs),
    /// Change fields of objects with a strategic merge, JSON merge or JSON patch.
    Patch(patch::PatchArgs),
    /// Set or remove labels of objects (KEY=VALUE, KEY-).
    Label(label::LabelArgs),
    /// Set or remove annotations of objects (KEY=VALUE, KEY-).
    Annotate(label::LabelArgs),
    /// Mark nodes unschedulable.
    Cordon(nodes::CordonArgs),
    /// Mark nodes schedulable again.
    Uncordon(nodes::CordonArgs),
    /// Cordon a node, then delete its pods (their controllers recreate them elsewhere).
    Drain(nodes::DrainArgs),
    /// Show where the control plane runs and how many nodes are Ready.
    ClusterInfo(misc::ClusterInfoArgs),
    /// Print a shell completion script: completion bash|zsh|fish.
    Completion(misc::CompletionArgs),
    /// Edit an object in $KUBE_EDITOR, $EDITOR or vi, and save it back.
    Edit(edit::EditArgs),
    /// Rotate the admin or join token, or revoke a node's credential.
    Token(token::TokenArgs),
}

/// An error the user sees as one line. API errors the server answered are shown in kubectl's
/// `Error from server (Reason): message` form; everything else as `error: message`.
#[derive(Debug)]
pub enum CliError {
    Server(Box<ApiError>),
    /// A server's answer about an object from a manifest: kubectl names the file.
    InFile {
        error: Box<ApiError>,
        doing: &'static str,
        source: String,
    },
    Other(anyhow::Error),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Server(e) if is_transport(e) => write!(f, "error: {e}"),
            // kubectl shows validation failures without the "Error from server" prefix.
            CliError::Server(e) if e.reason() == "Invalid" => write!(f, "The {e}"),
            CliError::Server(e) => write!(f, "Error from server ({}): {e}", e.reason()),
            CliError::InFile { error, .. } if is_transport(error) => write!(f, "error: {error}"),
            CliError::InFile {
                error,
                doing,
                source,
            } => write!(
                f,
                "Error from server ({}): error when {doing} \"{source}\": {}{error}",
                error.reason(),
                if error.reason() == "Invalid" {
                    "The "
                } else {
                    ""
                }
            ),
            CliError::Other(e) => write!(f, "error: {e:#}"),
        }
    }
}

/// Whether an error is not a Kubernetes answer: the server was not reached (`HttpApi` names the
/// address and how to start a server), or what answered sent no Status (a proxy's page).
fn is_transport(e: &ApiError) -> bool {
    e.is_unreachable() || matches!(e, ApiError::Other { reason, .. } if reason.is_empty())
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        CliError::Server(Box::new(e))
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(e)
    }
}

/// Makes an `error: ...` from a message.
macro_rules! fail {
    ($($arg:tt)*) => {
        $crate::cli::CliError::Other(anyhow::anyhow!($($arg)*))
    };
}
pub(crate) use fail;

pub type CliResult<T = ()> = Result<T, CliError>;

/// What a verb needs to talk to the cluster.
pub struct Client {
    pub api: HttpApi,
    pub settings: config::Settings,
}

impl Client {
    fn new(flags: &ClientFlags) -> CliResult<Client> {
        let settings = flags.settings()?;
        let api = HttpApi::trusting(&settings.server, &settings.trust)
            .map_err(|e| fail!("{e}"))?
            .with_token(settings.token.as_ref().map(|t| t.expose().to_owned()));
        Ok(Client { api, settings })
    }

    /// The namespace a namespaced request goes to; `None` for cluster-scoped kinds.
    pub fn ns_for<'a>(&'a self, info: &ResourceInfo) -> Option<&'a str> {
        info.namespaced.then_some(self.settings.namespace.as_str())
    }

    /// The objects of `info` in `ns` that `selector` picks, for a verb given a kind and no
    /// names; without a selector, only with `all` (`--all`).
    pub async fn list_selected(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        selector: &Option<String>,
        all: bool,
    ) -> CliResult<Vec<serde_json::Value>> {
        if selector.is_none() && !all {
            return Err(fail!(
                "resource(s) were provided, but no name was specified"
            ));
        }
        let params = ListParams {
            label_selector: selector.clone(),
            field_selector: None,
        };
        Ok(self.api.list(info, ns, &params).await?.items)
    }

    /// Patches one object in the namespace the verb works in.
    pub async fn patch_object(
        &self,
        info: &'static ResourceInfo,
        name: &str,
        kind: minik_api::request::PatchKind,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let patch = minik_api::request::Patch { kind, body };
        let opts = minik_api::request::WriteOptions::default();
        self.api
            .patch(info, self.ns_for(info), name, patch, false, opts)
            .await
    }
}

/// Runs a client verb and turns its outcome into an exit status, printing any error.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: ClientCommand) -> CliResult<ExitCode> {
    match command {
        ClientCommand::Apply(args) => apply::apply(args).await,
        ClientCommand::Create(args) => apply::create(args).await,
        ClientCommand::Get(args) => get::run(args).await,
        ClientCommand::Describe(args) => describe::run(args).await,
        ClientCommand::Delete(args) => apply::delete(args).await,
        ClientCommand::Logs(args) => logs::run(args).await.map(|()| ExitCode::SUCCESS),
        ClientCommand::Exec(args) => exec::run(args).await,
        ClientCommand::Attach(args) => exec::attach(args).await,
        ClientCommand::PortForward(args) => {
            port_forward::run(args).await.map(|()| ExitCode::SUCCESS)
        }
        ClientCommand::Scale(args) => misc::scale(args).await.map(|()| ExitCode::SUCCESS),
        ClientCommand::Version(args) => misc::version(args).await.map(|()| ExitCode::SUCCESS),
        ClientCommand::ApiResources(args) => misc::api_resources(args).map(|()| ExitCode::SUCCESS),
        ClientCommand::Rollout(args) => rollout::run(args).await,
        ClientCommand::Set(args) => run::set(args).await,
        ClientCommand::Run(args) => run::run(args).await,
        ClientCommand::Expose(args) => run::expose(args).await,
        ClientCommand::Patch(args) => patch::run(args).await,
        ClientCommand::Label(args) => label::run(args, label::Which::Labels).await,
        ClientCommand::Annotate(args) => label::run(args, label::Which::Annotations).await,
        ClientCommand::Cordon(args) => nodes::cordon(args, true).await,
        ClientCommand::Uncordon(args) => nodes::cordon(args, false).await,
        ClientCommand::Drain(args) => nodes::drain(args).await,
        ClientCommand::ClusterInfo(args) => {
            misc::cluster_info(args).await.map(|()| ExitCode::SUCCESS)
        }
        ClientCommand::Completion(args) => misc::completion(args).map(|()| ExitCode::SUCCESS),
        ClientCommand::Edit(args) => edit::run(args).await,
        ClientCommand::Token(args) => token::run(args).await,
    }
}

/// The kind a user names on the command line, with kubectl's error for an unknown one.
pub fn resource(name: &str) -> CliResult<&'static ResourceInfo> {
    resources::by_user_name(name)
        .ok_or_else(|| fail!("the server doesn't have a resource type \"{name}\""))
}

/// The kinds `get all` shows, as kubectl: those in the `all` category.
pub fn all_kinds() -> Vec<&'static ResourceInfo> {
    resources::RESOURCES
        .iter()
        .filter(|r| r.categories.contains(&"all"))
        .collect()
}

/// `pod/web` or `deployment.apps/web`: how kubectl names one object in messages.
pub fn kind_slash_name(info: &ResourceInfo, name: &str) -> String {
    format!("{}/{name}", qualified_singular(info))
}

/// `pod` or `deployment.apps`.
pub fn qualified_singular(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.singular.to_owned()
    } else {
        format!("{}.{}", info.singular, info.group)
    }
}

/// What a verb was asked to act on: `KIND NAME...`, `KIND/NAME...`, or `KIND[,KIND...]`.
#[derive(Debug)]
pub struct Targets {
    /// Each kind with the names asked for (empty: all of that kind).
    pub groups: Vec<(&'static ResourceInfo, Vec<String>)>,
    /// Whether several kinds were named, so output names carry their kind (as kubectl).
    pub several_kinds: bool,
}

/// Parses `KIND[,KIND] [NAME...]` or `KIND/NAME [KIND/NAME...]`.
pub fn parse_targets(words: &[String]) -> CliResult<Targets> {
    let Some(first) = words.first() else {
        return Err(fail!(
            "you must specify the type of resource to get. Use \"minik api-resources\" for a complete list of supported resources"
        ));
    };
    if first.contains('/') {
        let mut groups: Vec<(&'static ResourceInfo, Vec<String>)> = Vec::new();
        for word in words {
            let Some((kind, name)) = word.split_once('/') else {
                return Err(fail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'minik get resource/<resource_name>' instead of 'minik get resource resource/<resource_name>'"
                ));
            };
            if name.is_empty() {
                return Err(fail!(
                    "arguments in resource/name form must have a single resource and name"
                ));
            }
            let info = resource(kind)?;
            match groups.iter_mut().find(|(i, _)| std::ptr::eq(*i, info)) {
                Some((_, names)) => names.push(name.to_owned()),
                None => groups.push((info, vec![name.to_owned()])),
            }
        }
        // kubectl prefixes names with their kind when several kinds were asked for.
        let several_kinds = groups.len() > 1;
        return Ok(Targets {
            groups,
            several_kinds,
        });
    }
    let mut kinds: Vec<&'static ResourceInfo> = Vec::new();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let found = if kind.eq_ignore_ascii_case("all") {
            all_kinds()
        } else {
            vec![resource(kind)?]
        };
        for info in found {
            if !kinds.iter().any(|k| std::ptr::eq(*k, info)) {
                kinds.push(info);
            }
        }
    }
    let names: Vec<String> = words[1..].to_vec();
    if names.iter().any(|n| n.contains('/')) {
        return Err(fail!(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'minik get resource/<resource_name>' instead of 'minik get resource resource/<resource_name>'"
        ));
    }
    let several_kinds = kinds.len() > 1 || first.eq_ignore_ascii_case("all");
    Ok(Targets {
        groups: kinds.into_iter().map(|k| (k, names.clone())).collect(),
        several_kinds,
    })
}

/// Objects named one by one (`KIND NAME...` or `KIND/NAME...`), for verbs that act on named
/// objects only.
pub fn named_targets(words: &[String]) -> CliResult<Vec<(&'static ResourceInfo, String)>> {
    let targets = parse_targets(words)?;
    let mut out = Vec::new();
    for (info, names) in targets.groups {
        if names.is_empty() {
            return Err(fail!(
                "resource(s) were provided, but no name was specified"
            ));
        }
        out.extend(names.into_iter().map(|n| (info, n)));
    }
    Ok(out)
}

/// Prints an error for one object and remembers that the command failed, so the other objects
/// are still tried, as kubectl does.
pub fn report(failed: &mut bool, e: CliError) {
    eprintln!("{e}");
    *failed = true;
}

/// The exit status of a verb that went on after failures.
pub fn exit(failed: bool) -> CliResult<ExitCode> {
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn targets_parse_in_every_kubectl_form() {
        let t = parse_targets(&words("po web db")).unwrap();
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].0.plural, "pods");
        assert_eq!(t.groups[0].1, vec!["web", "db"]);
        assert!(!t.several_kinds);
        let t = parse_targets(&words("deploy,svc")).unwrap();
        assert_eq!(t.groups.len(), 2);
        assert!(t.several_kinds);
        let t = parse_targets(&words("deployments.apps/web pod/db")).unwrap();
        assert!(t.several_kinds);
        assert_eq!(t.groups[0].0.plural, "deployments");
        assert!(!parse_targets(&words("po/a pods/b")).unwrap().several_kinds);
        assert_eq!(t.groups[1].1, vec!["db"]);
        assert!(parse_targets(&words("pods/web rs")).is_err());
        assert!(parse_targets(&words("widgets")).is_err());
        assert!(parse_targets(&[]).is_err());
        let t = parse_targets(&words("all")).unwrap();
        assert!(t.groups.iter().any(|(i, _)| i.plural == "pods"));
        assert!(t.groups.iter().all(|(i, _)| i.plural != "events"));
    }

    #[test]
    fn errors_read_like_kubectl() {
        let e = CliError::from(ApiError::NotFound(minik_api::ObjectRef::new(
            "", "pods", "web",
        )));
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"web\" not found"
        );
        let e = CliError::from(ApiError::Unreachable(
            "cannot reach the minik server at http://x (connection refused): is 'minik server' or 'minik up' running?".into(),
        ));
        assert!(e.to_string().starts_with("error: cannot reach"));
        // An answer from the server is one, whatever its words: no guessing from prefixes.
        let e = CliError::from(ApiError::ServiceUnavailable(
            "the stream from node n1 broke".into(),
        ));
        assert_eq!(
            e.to_string(),
            "Error from server (ServiceUnavailable): the stream from node n1 broke"
        );
    }
}
