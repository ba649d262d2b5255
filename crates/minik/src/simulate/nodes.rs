//! The simulated nodes: their Node objects, their Leases and their status, as the kubelet keeps
//! them for one node (`minik-node`'s agent: register, heartbeat). One ticker walks over all the
//! nodes, each at its own offset in the heartbeat period, and hands due nodes to a bounded pool
//! of workers; a node costs a few dozen bytes of state here, its name being made from its
//! index when needed.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use minik_api::k8s_openapi::api::coordination::v1::Lease;
use minik_api::k8s_openapi::api::core::v1::Node;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::wellknown::{LABEL_HOSTNAME, NODE_LEASE_NAMESPACE};
use minik_api::ApiError;
use minik_client::{resource_of, Api, WorkQueue};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::follow::Seen;
use super::Config;

/// How long a Lease is valid without renewal (the kubelet's `nodeLeaseDurationSeconds`).
const LEASE_DURATION_SECONDS: i64 = 40;
/// How often a node's status is written when nothing in it changed (the kubelet's
/// `nodeStatusReportFrequency`); the Lease is the heartbeat in between.
const STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// The ticker never wakes more often than this: nodes due within it go together.
const TICK: Duration = Duration::from_millis(10);

/// What the simulator knows of one node.
#[derive(Debug, Default)]
struct NodeState {
    /// The Node exists, as far as the simulator knows.
    registered: bool,
    /// The stored status says otherwise than the simulator would (the node lifecycle
    /// controller marked it Unknown, say): write it at the next heartbeat.
    status_due: bool,
    /// When the status is written again although nothing changed.
    next_report: Option<Instant>,
    /// The stored Ready condition's `lastTransitionTime`, when it is True: kept on rewrites.
    ready_since: Option<Box<str>>,
    /// Seen in the list of Nodes under way.
    listed: bool,
}

/// The pool of simulated nodes.
pub(super) struct Fleet {
    api: Arc<dyn Api>,
    config: Config,
    states: Mutex<Vec<NodeState>>,
    /// The first registration of every node is under way ([`Fleet::register_all`]): the
    /// heartbeats leave the nodes not yet registered to it.
    registering: AtomicBool,
    /// Heartbeats that failed since the ticker last said so, and the last error.
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl Fleet {
    pub fn new(api: Arc<dyn Api>, config: Config) -> Fleet {
        let states = (0..config.count).map(|_| NodeState::default()).collect();
        Fleet {
            api,
            config,
            states: Mutex::new(states),
            registering: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    fn states(&self) -> MutexGuard<'_, Vec<NodeState>> {
        // Every critical section leaves the states consistent.
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self) -> u32 {
        self.config.count
    }

    pub fn heartbeat(&self) -> Duration {
        self.config.heartbeat
    }

    pub fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    pub fn pod_ips(&self) -> minik_api::cidr::Cidr {
        self.config.pod_ips
    }

    /// The name of node `i`.
    pub fn name(&self, i: u32) -> String {
        format!("{}{i}", self.config.prefix)
    }

    /// Which node `name` is, if it is one of the simulated ones.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        index_of(&self.config.prefix, self.config.count, name)
    }

    /// The InternalIP of node `i`: the i-th address of `--node-ip-cidr`.
    pub fn address(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.config.node_ips.pod_range().start().saturating_add(i))
    }

    /// Registers every node with its Lease, `concurrency` at a time, retrying each until the
    /// server takes it. Fails at once when the server refuses the credential or the first
    /// Node (every node is made alike, so the others would be refused too). The heartbeats
    /// run meanwhile ([`Fleet::tick`]), so that the nodes registered first renew their Leases
    /// however long the last ones take.
    pub async fn register_all(&self) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.register(0).await {
                Ok(()) => break,
                Err(e @ (ApiError::Unauthorized(_) | ApiError::Forbidden(_))) => {
                    anyhow::bail!(
                        "the server refused to register node {}: {e}\n(minik simulate needs an \
                         admin credential: --token, MINIK_TOKEN or ~/.minik/config)",
                        self.name(0)
                    )
                }
                // A Node the server finds invalid (a taint value it refuses, say) stays so.
                Err(e @ (ApiError::Invalid { .. } | ApiError::BadRequest(_))) => {
                    anyhow::bail!("the server refused node {}: {e}", self.name(0))
                }
                Err(e) => {
                    tracing::warn!(node = %self.name(0), error = %e, "cannot register yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        futures::stream::iter(1..self.count())
            .for_each_concurrent(self.concurrency(), |i| async move {
                let mut delay = Duration::from_millis(100);
                while let Err(e) = self.register(i).await {
                    tracing::warn!(node = %self.name(i), error = %e, "cannot register yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            })
            .await;
        self.registering.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Registers node `i` and renews its Lease. A Node that exists already (an earlier run)
    /// keeps what administrators set (unschedulable, labels, taints) and gets fresh status.
    async fn register(&self, i: u32) -> Result<(), ApiError> {
        let name = self.name(i);
        let now = now_rfc3339();
        let object = node_object(&self.config, &name, self.address(i), &now);
        let nodes = resource_of::<Node>();
        let created = match self
            .api
            .create(nodes, None, object.clone(), WriteOptions::default())
            .await
        {
            Ok(_) => true,
            Err(e) if e.is_already_exists() => {
                let status = Patch {
                    kind: PatchKind::Merge,
                    body: json!({"status": object["status"]}),
                };
                self.api
                    .patch(nodes, None, &name, status, true, WriteOptions::default())
                    .await?;
                false
            }
            Err(e) => return Err(e),
        };
        self.renew_lease(&name, created).await?;
        let first_report = Instant::now() + first_report_after(i, self.count());
        let mut states = self.states();
        if let Some(state) = states.get_mut(i as usize) {
            state.registered = true;
            state.status_due = false;
            state.next_report = Some(first_report);
            state.ready_since = Some(now.into());
        }
        Ok(())
    }

    /// Renews the Lease of node `name` (`kube-node-lease/NAME`), creating it when there is
    /// none. `fresh`: the Node was just made, so the Lease most likely has to be made too
    /// (tried first, saving a request per node when thousands register).
    async fn renew_lease(&self, name: &str, fresh: bool) -> Result<(), ApiError> {
        let leases = resource_of::<Lease>();
        let ns = Some(NODE_LEASE_NAMESPACE);
        let spec = json!({
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now_micro(),
        });
        let create = || {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                "spec": spec,
            });
            self.api.create(leases, ns, lease, WriteOptions::default())
        };
        if fresh {
            match create().await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
        }
        let patch = Patch {
            kind: PatchKind::Merge,
            body: json!({ "spec": spec }),
        };
        match self
            .api
            .patch(leases, ns, name, patch, false, WriteOptions::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => match create().await {
                // Another renewal made it meanwhile: renewed either way.
                Ok(_) => Ok(()),
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Writes node `i`'s conditions, keeping when it became Ready if it was Ready already.
    async fn report_status(&self, i: u32) -> Result<(), ApiError> {
        let name = self.name(i);
        let now = now_rfc3339();
        let since = self
            .states()
            .get(i as usize)
            .and_then(|s| s.ready_since.clone());
        let body =
            json!({"status": {"conditions": conditions(&now, since.as_deref().unwrap_or(&now))}});
        let patch = Patch {
            kind: PatchKind::Merge,
            body,
        };
        let result = self
            .api
            .patch(
                resource_of::<Node>(),
                None,
                &name,
                patch,
                true,
                WriteOptions::default(),
            )
            .await;
        let mut states = self.states();
        let Some(state) = states.get_mut(i as usize) else {
            return Ok(());
        };
        match result {
            Ok(_) => {
                state.status_due = false;
                state.next_report = Some(Instant::now() + STATUS_REPORT_FREQUENCY);
                state.ready_since = Some(since.unwrap_or_else(|| now.into()));
                Ok(())
            }
            Err(e) if e.is_not_found() => {
                state.registered = false;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// One heartbeat of node `i`: registers it if it is gone, else renews its Lease and writes
    /// its status when that is due.
    async fn heartbeat_one(&self, i: u32) -> Result<(), ApiError> {
        let now = Instant::now();
        let (registered, report) = match self.states().get(i as usize) {
            Some(s) => (
                s.registered,
                s.status_due || s.next_report.is_none_or(|at| now >= at),
            ),
            None => return Ok(()),
        };
        if !registered {
            if self.registering.load(Ordering::Relaxed) {
                // `register_all` has it in hand.
                return Ok(());
            }
            tracing::info!(node = %self.name(i), "registering the node again");
            return self.register(i).await;
        }
        self.renew_lease(&self.name(i), false).await?;
        if report {
            self.report_status(i).await?;
        }
        Ok(())
    }

    /// Takes in what the watch of Nodes saw: a simulated node that is gone is registered
    /// again, and one whose Ready condition is not True gets its status written.
    pub fn observe(&self, seen: Seen) {
        let mut states = self.states();
        match seen {
            Seen::Relisting => {
                for state in states.iter_mut() {
                    state.listed = false;
                }
            }
            Seen::Applied(node) => {
                if let Some(i) = self.index_in(&node) {
                    applied(&mut states[i as usize], &node);
                }
            }
            Seen::Deleted(node) => {
                if let Some(i) = self.index_in(&node) {
                    gone(&mut states[i as usize]);
                }
            }
            Seen::Synced => {
                for state in states.iter_mut().filter(|s| !s.listed) {
                    gone(state);
                }
            }
        }
    }

    fn index_in(&self, node: &Value) -> Option<u32> {
        self.index_of(node.pointer("/metadata/name")?.as_str()?)
    }

    /// The ticker: hands every node to the heartbeat workers once per period, node `i` at
    /// `i/N` of the way through it, so that N nodes make an even stream of renewals rather than
    /// a burst. Says once per period how many heartbeats failed.
    pub async fn tick(self: Arc<Self>, beats: WorkQueue<u32>) {
        let n = self.count();
        let period = self.heartbeat();
        let start = Instant::now();
        let mut round: u32 = 1;
        let mut next: u32 = 0;
        loop {
            let now = Instant::now();
            // After a long stall (a suspended process) every node is overdue: one heartbeat
            // each, then the schedule goes on from now.
            let elapsed = now.saturating_duration_since(start);
            let behind = elapsed.saturating_sub(period.saturating_mul(round));
            if behind > period {
                for i in 0..n {
                    beats.add(i);
                }
                round = (elapsed.as_nanos() / period.as_nanos()).min(u32::MAX as u128) as u32 + 1;
                next = 0;
            }
            loop {
                let due = period
                    .checked_mul(round)
                    .and_then(|d| d.checked_add(slot(next, n, period)))
                    .and_then(|d| start.checked_add(d));
                let Some(due) = due else {
                    // Beyond what the clock holds: no more rounds.
                    return std::future::pending().await;
                };
                if due > now {
                    tokio::time::sleep_until(due.max(now + TICK)).await;
                    break;
                }
                beats.add(next);
                next += 1;
                if next == n {
                    next = 0;
                    round = round.saturating_add(1);
                    self.say_failures();
                }
            }
        }
    }

    fn say_failures(&self) {
        let failed = self.failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = self
                .last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            tracing::warn!(failed, last_error = %last, "heartbeats failed in the last period");
        }
    }

    /// A heartbeat worker: takes due nodes from `beats` until the process stops.
    pub async fn beat(self: Arc<Self>, beats: WorkQueue<u32>) {
        loop {
            let i = beats.next().await;
            match self.heartbeat_one(i).await {
                Ok(()) => beats.forget(&i),
                Err(e) => {
                    tracing::debug!(node = %self.name(i), error = %e, "heartbeat failed");
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("{}: {e}", self.name(i)));
                    beats.retry(i);
                }
            }
            beats.done(&i);
        }
    }

    /// Deletes every node and its Lease, `concurrency` at a time (what is gone already is no
    /// error).
    pub async fn delete_all(&self) {
        futures::stream::iter(0..self.count())
            .for_each_concurrent(self.concurrency(), |i| async move {
                let name = self.name(i);
                let node = self
                    .api
                    .delete(resource_of::<Node>(), None, &name, DeleteOptions::default())
                    .await;
                let lease = self
                    .api
                    .delete(
                        resource_of::<Lease>(),
                        Some(NODE_LEASE_NAMESPACE),
                        &name,
                        DeleteOptions::default(),
                    )
                    .await;
                for result in [node, lease] {
                    match result {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => tracing::warn!(node = %name, error = %e, "cannot delete"),
                    }
                }
            })
            .await;
    }
}

/// What a watch event of one simulated node says about it.
fn applied(state: &mut NodeState, node: &Value) {
    state.registered = true;
    state.listed = true;
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) if c["status"] == "True" => {
            state.ready_since = c["lastTransitionTime"].as_str().map(Into::into);
        }
        _ => {
            state.status_due = true;
            state.ready_since = None;
        }
    }
}

/// A simulated node's Node is gone: the next heartbeat registers it again.
fn gone(state: &mut NodeState) {
    state.registered = false;
    state.ready_since = None;
}

/// Node `i` of `count` named `{prefix}{i}`, if `name` is one.
fn index_of(prefix: &str, count: u32, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    // `sim-01` is not node 1: only the canonical spelling names a node.
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().filter(|i| *i < count)
}

/// Where node `i` of `n` renews in each period: `i/n` of the way through it.
fn slot(i: u32, n: u32, period: Duration) -> Duration {
    let nanos = period.as_nanos() * u128::from(i) / u128::from(n.max(1));
    Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
}

/// When node `i` of `n` first writes its status again after registering: spread between half
/// and all of [`STATUS_REPORT_FREQUENCY`], so that nodes registered together do not all report
/// in the same period five minutes later.
fn first_report_after(i: u32, n: u32) -> Duration {
    let half = STATUS_REPORT_FREQUENCY / 2;
    half + slot(i, n, half)
}

/// The conditions of a healthy node at `now`, Ready since `ready_since`. The pressure
/// conditions are the kubelet's when there is no pressure.
fn conditions(now: &str, ready_since: &str) -> Value {
    let condition = |type_: &str, status: &str, reason: &str, message: &str, since: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "simulated node has sufficient memory available",
            now
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "simulated node has no disk pressure",
            now
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "simulated node has sufficient PID available",
            now
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "minik simulate is posting ready status (a simulated node: nothing runs)",
            ready_since
        ),
    ])
}

/// The Node object of a simulated node named `name` at `address`, registered at `now`. Its
/// agent endpoint is port 0: the API server answers that the node reports none when asked for
/// a log, an exec or a port-forward of its pods.
fn node_object(config: &Config, name: &str, address: Ipv4Addr, now: &str) -> Value {
    let mut labels = config.labels.clone();
    labels.insert(LABEL_HOSTNAME.into(), name.into());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert(
        "kubernetes.io/arch".into(),
        minik_api::wellknown::go_arch().into(),
    );
    let resources = json!({
        "cpu": config.cpu,
        "memory": config.memory,
        "pods": config.max_pods.to_string(),
    });
    let version = env!("CARGO_PKG_VERSION");
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": if config.taints.is_empty() { Value::Null } else { json!(config.taints) }},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions(now, now),
            "addresses": [
                {"type": "InternalIP", "address": address.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "",
                "osImage": "minik simulated node",
                "containerRuntimeVersion": format!("simulated://minik-{version}"),
                "kubeletVersion": format!("v1.33.0-minik.{version}"),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": minik_api::wellknown::go_arch(),
            },
        },
    })
}

/// Now as a `metav1.Time`.
pub(super) fn now_rfc3339() -> String {
    minik_api::time::rfc3339(minik_api::time::from_system(SystemTime::now()))
}

/// Now as a `metav1.MicroTime`.
fn now_micro() -> String {
    minik_api::time::rfc3339_micro(minik_api::time::from_system(SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_testkit::{Intercepted, Write, DEADLINE};

    #[test]
    fn only_the_canonical_names_of_the_pool_are_its_nodes() {
        let cases = [
            ("sim-0", Some(0)),
            ("sim-4999", Some(4999)),
            ("sim-5000", None),
            ("sim-01", None),
            ("sim-", None),
            ("sim-1a", None),
            ("sim-+1", None),
            ("other-1", None),
            ("sim-99999999999999999999", None),
        ];
        for (name, expected) in cases {
            assert_eq!(index_of("sim-", 5000, name), expected, "{name}");
        }
        assert_eq!(index_of("", 10, "7"), Some(7));
    }

    #[test]
    fn renewals_are_spread_evenly_over_the_period() {
        let period = Duration::from_secs(10);
        assert_eq!(slot(0, 5000, period), Duration::ZERO);
        assert_eq!(slot(2500, 5000, period), Duration::from_secs(5));
        assert_eq!(slot(4999, 5000, period), Duration::from_millis(9998));
        assert_eq!(slot(0, 1, period), Duration::ZERO);
        // Reports after registration fall between 150 s and 300 s.
        assert_eq!(first_report_after(0, 4), Duration::from_secs(150));
        assert_eq!(first_report_after(2, 4), Duration::from_secs(225));
        assert!(first_report_after(3, 4) < STATUS_REPORT_FREQUENCY);
    }

    #[test]
    fn a_node_not_ready_gets_its_status_written_and_a_ready_one_keeps_its_transition() {
        let mut state = NodeState {
            registered: false,
            ..Default::default()
        };
        let node = |status: &str| {
            json!({"metadata": {"name": "sim-0"}, "status": {"conditions": [
                {"type": "Ready", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z"}
            ]}})
        };
        applied(&mut state, &node("True"));
        assert!(state.registered && !state.status_due);
        assert_eq!(state.ready_since.as_deref(), Some("2024-01-01T00:00:00Z"));
        applied(&mut state, &node("Unknown"));
        assert!(state.status_due);
        assert_eq!(state.ready_since, None);
        let mut fresh = NodeState::default();
        applied(&mut fresh, &json!({"metadata": {"name": "sim-0"}}));
        assert!(fresh.status_due, "a node without conditions gets them");
    }

    fn config(count: u32) -> Config {
        Config {
            count,
            prefix: "sim-".into(),
            cpu: "32".into(),
            memory: "256Gi".into(),
            max_pods: 110,
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            taints: vec![json!({"key": "k", "value": "", "effect": "NoSchedule"})],
            heartbeat: Duration::from_secs(10),
            pod_ips: "10.200.0.0/16".parse().unwrap(),
            node_ips: "10.199.0.0/16".parse().unwrap(),
            concurrency: 2,
            delete_on_exit: false,
        }
    }

    /// The pool over an in-process server whose writes `refuse` may refuse.
    async fn fleet_refusing(
        count: u32,
        refuse: impl Fn(&Write<'_>) -> Result<(), ApiError> + Send + Sync + 'static,
    ) -> (minik_testkit::TestServer, Fleet) {
        let server = minik_testkit::start().await;
        let api = Arc::new(Intercepted::new(server.api.clone(), refuse));
        (server, Fleet::new(api, config(count)))
    }

    #[tokio::test]
    async fn registration_makes_nodes_and_leases_and_a_heartbeat_renews_the_lease() {
        let (server, fleet) = fleet_refusing(3, |_| Ok(())).await;
        fleet.register_all().await.unwrap();
        let lease = |name: &'static str| {
            let api = server.api.clone();
            async move {
                let lease = api
                    .get(resource_of::<Lease>(), Some(NODE_LEASE_NAMESPACE), name)
                    .await
                    .unwrap();
                lease["spec"]["renewTime"].as_str().unwrap().to_owned()
            }
        };
        for name in ["sim-0", "sim-1", "sim-2"] {
            let node = server
                .api
                .get(resource_of::<Node>(), None, name)
                .await
                .unwrap();
            assert_eq!(node["metadata"]["labels"][LABEL_HOSTNAME], name);
            lease(name).await;
        }
        let first = lease("sim-1").await;
        // MicroTime: a renewal a few microseconds later is another time.
        minik_testkit::wait_for("a renewal to read differently", DEADLINE, || async {
            fleet.heartbeat_one(1).await.unwrap();
            (lease("sim-1").await != first).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn a_node_the_server_finds_invalid_stops_the_registration_and_an_outage_does_not() {
        let (_server, fleet) = fleet_refusing(2, |w| {
            if w.verb == "create" && w.info.kind == "Node" {
                Err(ApiError::Invalid {
                    kind: "Node".into(),
                    group: String::new(),
                    name: w.name.into(),
                    errors: Vec::new(),
                })
            } else {
                Ok(())
            }
        })
        .await;
        let err = fleet.register_all().await.unwrap_err();
        assert!(
            format!("{err:#}").contains("the server refused node sim-0"),
            "{err:#}"
        );

        // Two refusals that pass, then the server takes the nodes.
        let refusals = Arc::new(AtomicU64::new(0));
        let counted = refusals.clone();
        let (server, fleet) = fleet_refusing(2, move |w| {
            let unavailable = w.verb == "create"
                && w.info.kind == "Node"
                && counted.fetch_add(1, Ordering::Relaxed) < 2;
            if unavailable {
                Err(ApiError::ServiceUnavailable("restarting".into()))
            } else {
                Ok(())
            }
        })
        .await;
        fleet.register_all().await.unwrap();
        assert!(refusals.load(Ordering::Relaxed) >= 4);
        let nodes = server
            .api
            .list(resource_of::<Node>(), None, &Default::default())
            .await
            .unwrap();
        assert_eq!(nodes.items.len(), 2);
    }

    #[test]
    fn the_node_object_is_a_kubelet_s_with_no_agent_endpoint() {
        let config = config(1);
        let now = "2024-01-01T00:00:00Z";
        let node = node_object(&config, "sim-0", Ipv4Addr::new(10, 199, 0, 2), now);
        assert_eq!(node["metadata"]["labels"]["zone"], "a");
        assert_eq!(node["metadata"]["labels"][LABEL_HOSTNAME], "sim-0");
        assert_eq!(node["spec"]["taints"][0]["key"], "k");
        assert_eq!(node["status"]["capacity"]["pods"], "110");
        assert_eq!(node["status"]["allocatable"]["memory"], "256Gi");
        assert_eq!(node["status"]["addresses"][0]["address"], "10.199.0.2");
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            0
        );
        let conditions = node["status"]["conditions"].as_array().unwrap();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert!(conditions
            .iter()
            .filter(|c| c["type"] != "Ready")
            .all(|c| c["status"] == "False"));
        // Round trip through the typed Node: every field is one Kubernetes has.
        let typed: Node = serde_json::from_value(node).unwrap();
        assert_eq!(
            typed
                .status
                .and_then(|s| s.node_info)
                .map(|i| i.architecture),
            Some(minik_api::wellknown::go_arch().to_owned())
        );
    }
}
