//! `cordon`, `uncordon` and `drain`: marking nodes unschedulable and emptying them, with
//! kubectl's filters and messages. `drain` evicts the pods through the `pods/eviction`
//! subresource, as kubectl does, retrying every 5 s those their PodDisruptionBudget refuses
//! (or deletes them with `--disable-eviction`), and waits until they are gone.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use minik_api::request::{DeleteOptions, PatchKind};
use minik_client::{Api, ListParams};
use serde_json::{json, Value};

use super::printers::{arr, s};
use super::time::parse_duration;
use super::{exit, fail, report, resource, CliError, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct CordonArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The node(s).
    #[arg(required = true)]
    nodes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The node to empty.
    node: String,
    /// Also deletes pods that no controller owns (they will not come back).
    #[arg(long)]
    force: bool,
    /// Leaves pods owned by a DaemonSet alone instead of refusing.
    #[arg(long)]
    ignore_daemonsets: bool,
    /// Also deletes pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    delete_emptydir_data: bool,
    /// Seconds each pod gets to stop; -1 uses the pod's own terminationGracePeriodSeconds.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// How long to wait for the pods to be gone, e.g. 60s; 0 waits for ever.
    #[arg(long, default_value = "0")]
    timeout: String,
    /// Deletes the pods instead of evicting them, bypassing their PodDisruptionBudgets.
    #[arg(long)]
    disable_eviction: bool,
}

/// Sets or clears `spec.unschedulable`, printing kubectl's `node/NAME cordoned` (or `already
/// cordoned`).
async fn set_unschedulable(client: &Client, name: &str, cordon: bool) -> CliResult {
    let nodes = resource("nodes")?;
    let node = client.api.get(nodes, None, name).await?;
    let is = node.pointer("/spec/unschedulable") == Some(&Value::Bool(true));
    let verb = if cordon { "cordoned" } else { "uncordoned" };
    if is == cordon {
        println!("node/{name} already {verb}");
        return Ok(());
    }
    let value = if cordon { json!(true) } else { Value::Null };
    client
        .patch_object(
            nodes,
            name,
            PatchKind::Merge,
            json!({"spec": {"unschedulable": value}}),
        )
        .await
        .map_err(|e| {
            let verb = if cordon { "cordon" } else { "uncordon" };
            fail!("unable to {verb} node {name:?}: {e}")
        })?;
    println!("node/{name} {verb}");
    Ok(())
}

pub async fn cordon(args: CordonArgs, cordon: bool) -> CliResult<ExitCode> {
    let client = Client::new(&args.client)?;
    let mut failed = false;
    for word in &args.nodes {
        let result = match node_name(word) {
            Ok(name) => set_unschedulable(&client, name, cordon).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            report(&mut failed, e);
        }
    }
    exit(failed)
}

/// A node named as `NAME` or `node/NAME` (any of the node kind's names before the slash).
fn node_name(word: &str) -> CliResult<&str> {
    match word.split_once('/') {
        None => Ok(word),
        Some((kind, name)) if resource(kind)?.kind == "Node" && !name.is_empty() => Ok(name),
        Some((kind, _)) => Err(fail!("expected resource of type node, got {kind:?}")),
    }
}

/// An error's text without a leading `error: `, to nest it in another message.
fn strip_error(e: &CliError) -> String {
    let text = e.to_string();
    text.strip_prefix("error: ").unwrap_or(&text).to_owned()
}

/// What `drain` does with a pod, as kubectl's filters decide.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Delete,
    /// Deleted, with a warning (kubectl's `deleting Pods that declare no controller`).
    Warn(&'static str),
    /// Left alone silently (mirror pods) or with a warning (DaemonSet pods).
    Skip(Option<&'static str>),
    /// Refuses the drain: kubectl's `cannot delete ...` reason.
    Refuse(&'static str),
}

/// kubectl's drain filters, in its order: DaemonSet pods, mirror pods, local storage, and pods
/// no controller owns. Finished pods may always go.
fn verdict(pod: &Value, args: &DrainArgs) -> Verdict {
    let finished = matches!(s(pod, "/status/phase"), "Succeeded" | "Failed");
    let controller = arr(pod, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)));
    if controller.is_some_and(|c| s(c, "/kind") == "DaemonSet") {
        return if args.ignore_daemonsets {
            Verdict::Skip(Some("ignoring DaemonSet-managed Pods"))
        } else {
            Verdict::Refuse("DaemonSet-managed Pods (use --ignore-daemonsets to ignore)")
        };
    }
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("kubernetes.io/config.mirror"))
        .is_some()
    {
        return Verdict::Skip(None);
    }
    if finished {
        return Verdict::Delete;
    }
    let local_storage = arr(pod, "/spec/volumes")
        .iter()
        .any(|v| v.get("emptyDir").is_some());
    let mut warning = None;
    if local_storage {
        if !args.delete_emptydir_data {
            return Verdict::Refuse(
                "Pods with local storage (use --delete-emptydir-data to override)",
            );
        }
        warning = Some("deleting Pods with local storage");
    }
    if controller.is_none() {
        if !args.force {
            return Verdict::Refuse("Pods that declare no controller (use --force to override)");
        }
        warning = Some("deleting Pods that declare no controller");
    }
    match warning {
        Some(w) => Verdict::Warn(w),
        None => Verdict::Delete,
    }
}

/// `[a, b]` for several errors, `a` for one: Go's aggregated error.
fn aggregate(messages: &[String]) -> String {
    match messages {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn key_of(pod: &Value) -> String {
    format!(
        "{}/{}",
        s(pod, "/metadata/namespace"),
        s(pod, "/metadata/name")
    )
}

pub async fn drain(args: DrainArgs) -> CliResult<ExitCode> {
    if args.grace_period < -1 {
        return Err(fail!("--grace-period must be -1 or more"));
    }
    let timeout = parse_duration(&args.timeout).map_err(|e| fail!("invalid --timeout: {e}"))?;
    let client = Client::new(&args.client)?;
    let name = node_name(&args.node)?.to_owned();
    set_unschedulable(&client, &name, true).await?;
    match empty_node(&client, &args, timeout).await {
        Ok(()) => {
            println!("node/{name} drained");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let message = strip_error(&e);
            eprintln!(
                "error: unable to drain node {name:?} due to error: {message}, continuing command..."
            );
            eprintln!("There are pending nodes to be drained:");
            eprintln!(" {name}");
            Err(fail!("{message}"))
        }
    }
}

/// Deletes the node's pods that may go and waits until they are gone.
async fn empty_node(client: &Client, args: &DrainArgs, timeout: Duration) -> CliResult {
    let pods = resource("pods")?;
    let list = client
        .api
        .list(
            pods,
            None,
            &ListParams::fields(format!("spec.nodeName={}", args.node)),
        )
        .await?;
    let mut refusals: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut warnings: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut doomed = Vec::new();
    for pod in &list.items {
        match verdict(pod, args) {
            Verdict::Delete => doomed.push(pod),
            Verdict::Warn(w) => {
                warnings.entry(w).or_default().push(key_of(pod));
                doomed.push(pod);
            }
            Verdict::Skip(Some(w)) => warnings.entry(w).or_default().push(key_of(pod)),
            Verdict::Skip(None) => {}
            Verdict::Refuse(r) => refusals.entry(r).or_default().push(key_of(pod)),
        }
    }
    if !refusals.is_empty() {
        let messages: Vec<String> = refusals
            .iter()
            .map(|(why, pods)| format!("cannot delete {why}: {}", pods.join(", ")))
            .collect();
        return Err(fail!("{}", aggregate(&messages)));
    }
    if !warnings.is_empty() {
        let messages: Vec<String> = warnings
            .iter()
            .map(|(why, pods)| format!("{why}: {}", pods.join(", ")))
            .collect();
        eprintln!("Warning: {}", messages.join("; "));
    }
    let options = DeleteOptions {
        grace_period_seconds: (args.grace_period >= 0).then_some(args.grace_period),
        ..Default::default()
    };
    if !args.disable_eviction {
        return evict_all(client, &doomed, &options, args, timeout).await;
    }
    for pod in &doomed {
        let (ns, name) = (s(pod, "/metadata/namespace"), s(pod, "/metadata/name"));
        match client
            .api
            .delete(pods, Some(ns), name, options.clone())
            .await
        {
            Ok(_) => {}
            // Gone already: nothing left to do.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    for pod in &doomed {
        wait_gone(client, pod, deadline, args).await?;
        println!("pod/{} deleted", s(pod, "/metadata/name"));
    }
    Ok(())
}

/// Waits until `pod` is gone (or replaced by a pod of the same name), failing at `deadline`.
async fn wait_gone(
    client: &Client,
    pod: &Value,
    deadline: Option<tokio::time::Instant>,
    args: &DrainArgs,
) -> CliResult {
    let pods = resource("pods")?;
    let (ns, name, uid) = (
        s(pod, "/metadata/namespace"),
        s(pod, "/metadata/name"),
        s(pod, "/metadata/uid"),
    );
    loop {
        match client.api.get(pods, Some(ns), name).await {
            Err(e) if e.is_not_found() => return Ok(()),
            // A pod of the same name with another uid is a replacement: this one is gone.
            Ok(p) if s(&p, "/metadata/uid") != uid => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(drain_timed_out(args));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn drain_timed_out(args: &DrainArgs) -> CliError {
    fail!("drain did not complete within {}", args.timeout.trim())
}

/// How long kubectl waits before evicting again a pod whose disruption budget refused it.
const EVICTION_RETRY: Duration = Duration::from_secs(5);

/// Evicts every pod at once, as kubectl does: each pod is evicted, again every 5 s while its
/// PodDisruptionBudget refuses (429), then waited for; the whole is bounded by `--timeout`.
async fn evict_all(
    client: &Client,
    doomed: &[&Value],
    options: &DeleteOptions,
    args: &DrainArgs,
    timeout: Duration,
) -> CliResult {
    let work = futures::future::join_all(
        doomed
            .iter()
            .map(|pod| evict_and_wait(client, pod, options, args)),
    );
    let results = if timeout.is_zero() {
        work.await
    } else {
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| drain_timed_out(args))?
    };
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|e| strip_error(&e))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(fail!("{}", aggregate(&errors)))
    }
}

/// Evicts one pod, retrying while its disruption budget refuses, and waits until it is gone.
async fn evict_and_wait(
    client: &Client,
    pod: &Value,
    options: &DeleteOptions,
    args: &DrainArgs,
) -> CliResult {
    let (ns, name) = (s(pod, "/metadata/namespace"), s(pod, "/metadata/name"));
    loop {
        println!("evicting pod {ns}/{name}");
        match evict_pod(client, ns, name, options).await {
            Ok(()) => break,
            // Gone already: nothing left to do.
            Err(e) if e.is_not_found() => return Ok(()),
            // A disruption budget refuses it for now (429): try again, as kubectl does.
            Err(e) if e.code() == 429 => {
                eprintln!("error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {e}");
                tokio::time::sleep(EVICTION_RETRY).await;
            }
            Err(e) => return Err(fail!("error when evicting pods/{name:?} -n {ns:?}: {e}")),
        }
    }
    wait_gone(client, pod, None, args).await?;
    println!("pod/{name} evicted");
    Ok(())
}

/// The `policy/v1` Eviction kubectl sends for a pod: its name and the delete options.
fn eviction_body(ns: &str, name: &str, options: &DeleteOptions) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
        "deleteOptions": options.to_body(),
    })
}

/// Evicts a pod through its `eviction` subresource.
async fn evict_pod(
    client: &Client,
    ns: &str,
    name: &str,
    options: &DeleteOptions,
) -> Result<(), minik_api::ApiError> {
    client
        .api
        .post_path(
            &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"),
            &eviction_body(ns, name, options),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        drain: DrainArgs,
    }

    fn drain_args(flags: &str) -> DrainArgs {
        Cmd::try_parse_from(["drain", "n1"].into_iter().chain(flags.split_whitespace()))
            .unwrap()
            .drain
    }

    #[test]
    fn drain_filters_decide_like_kubectl() {
        let owned = |kind: &str| json!({"metadata": {"ownerReferences": [{"kind": kind, "controller": true, "name": "x", "uid": "u", "apiVersion": "apps/v1"}]}, "status": {"phase": "Running"}});
        let bare = json!({"metadata": {}, "status": {"phase": "Running"}});
        let done = json!({"metadata": {}, "status": {"phase": "Succeeded"}});
        let scratch = json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "controller": true}]}, "spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        let plain = drain_args("");
        assert_eq!(verdict(&owned("ReplicaSet"), &plain), Verdict::Delete);
        assert_eq!(
            verdict(&bare, &plain),
            Verdict::Refuse("Pods that declare no controller (use --force to override)")
        );
        assert_eq!(verdict(&done, &plain), Verdict::Delete);
        assert!(matches!(
            verdict(&owned("DaemonSet"), &plain),
            Verdict::Refuse(_)
        ));
        assert!(matches!(verdict(&scratch, &plain), Verdict::Refuse(_)));
        let forced = drain_args("--force --ignore-daemonsets --delete-emptydir-data");
        assert_eq!(
            verdict(&bare, &forced),
            Verdict::Warn("deleting Pods that declare no controller")
        );
        assert_eq!(
            verdict(&owned("DaemonSet"), &forced),
            Verdict::Skip(Some("ignoring DaemonSet-managed Pods"))
        );
        assert_eq!(
            verdict(&scratch, &forced),
            Verdict::Warn("deleting Pods with local storage")
        );
        assert_eq!(aggregate(&["a".into()]), "a");
        let zero = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(
            eviction_body("default", "web-1", &zero),
            json!({"apiVersion": "policy/v1", "kind": "Eviction",
                   "metadata": {"name": "web-1", "namespace": "default"},
                   "deleteOptions": {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}})
        );
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}
