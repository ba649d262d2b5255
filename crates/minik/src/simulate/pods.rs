//! The pods of the simulated nodes, as kwok's default pod stages play them: a pod bound to one
//! of the nodes is reported Running and Ready at once, with its containers running and an
//! address of its own from `--pod-ip-cidr`; it keeps running whatever its restart policy; once
//! marked for deletion it is deleted with grace period 0, as the kubelet confirms a pod whose
//! containers stopped. One watch of all pods serves every node; what is kept per pod is its
//! key, uid, node and address. Status writes go through a bounded pool of workers and are
//! retried on conflict with the pod as the server has it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use minik_api::cidr::Cidr;
use minik_api::k8s_openapi::api::core::v1::Pod;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use minik_client::{resource_of, Api, HttpApi, WorkQueue};
use serde_json::{json, Value};

use super::follow::{list_pages, Seen};
use super::nodes::{now_rfc3339, Fleet};

/// How many times a status write is tried again with a fresh read after a conflict; beyond
/// that the watch brings the newer pod and the write is tried from there.
const CONFLICT_RETRIES: usize = 3;

/// What the simulator needs of a pod it plays: who it is, where it runs, what it runs and what
/// its status says now. Made from a watch event or a read, never kept once acted on.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PodView {
    namespace: String,
    name: String,
    uid: String,
    resource_version: String,
    node: u32,
    deleting: bool,
    host_network: bool,
    /// Name and image of each container, in the spec's order.
    containers: Vec<(String, String)>,
    init_containers: Vec<(String, String)>,
    phase: String,
    ready: bool,
    pod_ip: Option<String>,
    start_time: Option<String>,
    /// Every container of the spec has a running status.
    all_running: bool,
}

impl PodView {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn names_and_images(pod: &Value, pointer: &str) -> Vec<(String, String)> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        str_at(c, "/name").unwrap_or_default().to_owned(),
                        str_at(c, "/image").unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The view of `pod` if it is bound to a simulated node (`node_of` tells which); `None` for
/// every other pod.
pub(super) fn view(pod: &Value, node_of: impl Fn(&str) -> Option<u32>) -> Option<PodView> {
    let node = node_of(str_at(pod, "/spec/nodeName")?)?;
    let containers = names_and_images(pod, "/spec/containers");
    let running: HashSet<&str> = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|ss| {
            ss.iter()
                .filter(|s| s.pointer("/state/running").is_some())
                .filter_map(|s| str_at(s, "/name"))
                .collect()
        })
        .unwrap_or_default();
    let all_running = containers
        .iter()
        .all(|(name, _)| running.contains(name.as_str()));
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True");
    Some(PodView {
        namespace: str_at(pod, "/metadata/namespace")?.to_owned(),
        name: str_at(pod, "/metadata/name")?.to_owned(),
        uid: str_at(pod, "/metadata/uid")?.to_owned(),
        resource_version: str_at(pod, "/metadata/resourceVersion")
            .unwrap_or_default()
            .to_owned(),
        node,
        deleting: pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null()),
        host_network: pod
            .pointer("/spec/hostNetwork")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        containers,
        init_containers: names_and_images(pod, "/spec/initContainers"),
        phase: str_at(pod, "/status/phase").unwrap_or_default().to_owned(),
        ready,
        pod_ip: str_at(pod, "/status/podIP")
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned),
        start_time: str_at(pod, "/status/startTime").map(str::to_owned),
        all_running,
    })
}

/// Where a pod is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    /// `hostNetwork`: the node's address.
    Host,
    /// An address of its own.
    Own(Ipv4Addr),
    /// None yet: `--pod-ip-cidr` is used up.
    Waiting,
}

/// What a pod needs from the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    /// Marked for deletion: confirm it (grace period 0).
    Delete,
    /// Its status is not yet the running one: write it.
    Report,
    /// It would run but has no address yet.
    Address,
}

/// What to do for `view`, whose address is `address` and whose node is at `host_ip`.
fn need(view: &PodView, address: Address, host_ip: Ipv4Addr) -> Need {
    if view.deleting {
        return Need::Delete;
    }
    // Someone else ended it (an eviction, a test): a pod that ended stays ended.
    if matches!(view.phase.as_str(), "Succeeded" | "Failed") {
        return Need::Nothing;
    }
    let ip = match address {
        Address::Host => host_ip,
        Address::Own(ip) => ip,
        Address::Waiting => return Need::Address,
    };
    let settled = view.phase == "Running"
        && view.ready
        && view.all_running
        && view.pod_ip.as_deref() == Some(ip.to_string().as_str());
    if settled {
        Need::Nothing
    } else {
        Need::Report
    }
}

/// The merge patch of the status subresource that makes `view` running at `now`, on the
/// node at `host_ip` with address `pod_ip`. It carries the pod's resourceVersion: a pod changed
/// since is a conflict, not overwritten.
fn status_patch(view: &PodView, pod_ip: Ipv4Addr, host_ip: Ipv4Addr, now: &str) -> Value {
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .into_iter()
    .map(condition)
    .collect();
    let container = |(name, image): &(String, String), started: bool, state: Value| {
        json!({
            "name": name, "image": image, "imageID": "",
            "containerID": format!("simulated://{}/{name}", view.uid),
            "ready": true, "started": started, "restartCount": 0,
            "state": state,
        })
    };
    let running: Vec<Value> = view
        .containers
        .iter()
        .map(|c| container(c, true, json!({"running": {"startedAt": now}})))
        .collect();
    let mut status = json!({
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": pod_ip.to_string(),
        "podIPs": [{"ip": pod_ip.to_string()}],
        "startTime": view.start_time.as_deref().unwrap_or(now),
        "containerStatuses": running,
    });
    if !view.init_containers.is_empty() {
        let completed = json!({"terminated": {
            "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now,
        }});
        let completed: Vec<Value> = view
            .init_containers
            .iter()
            .map(|c| container(c, false, completed.clone()))
            .collect();
        status["initContainerStatuses"] = json!(completed);
    }
    json!({
        "metadata": {"resourceVersion": view.resource_version},
        "status": status,
    })
}

/// The addresses of `--pod-ip-cidr`: each given to one pod at a time, handed out in order and
/// then again as pods go.
#[derive(Debug)]
struct IpPool {
    next: u32,
    last: u32,
    free: Vec<u32>,
    used: HashSet<u32>,
}

impl IpPool {
    fn new(cidr: Cidr) -> IpPool {
        let range = cidr.pod_range();
        IpPool {
            next: *range.start(),
            last: *range.end(),
            free: Vec::new(),
            used: HashSet::new(),
        }
    }

    /// A free address, if any is left.
    fn take(&mut self) -> Option<Ipv4Addr> {
        while let Some(ip) = self.free.pop() {
            if self.used.insert(ip) {
                return Some(Ipv4Addr::from(ip));
            }
        }
        // `last` is below the broadcast address, so `next` never wraps.
        while self.next <= self.last {
            let ip = self.next;
            self.next += 1;
            if self.used.insert(ip) {
                return Some(Ipv4Addr::from(ip));
            }
        }
        None
    }

    /// Takes `ip` (an address a pod already has, from an earlier run) if it is in the pool and
    /// free.
    fn adopt(&mut self, ip: Ipv4Addr, cidr: Cidr) -> bool {
        let range = cidr.pod_range();
        range.contains(&u32::from(ip)) && self.used.insert(u32::from(ip))
    }

    fn release(&mut self, ip: Ipv4Addr) {
        if self.used.remove(&u32::from(ip)) {
            self.free.push(u32::from(ip));
        }
    }
}

/// What the simulator keeps of one pod of its nodes.
#[derive(Debug)]
struct PodRecord {
    uid: Box<str>,
    address: Address,
    /// The newest view not yet acted on (boxed: most records have none, and a record should
    /// cost tens of bytes, not hundreds).
    latest: Option<Box<PodView>>,
    /// The deletion was confirmed; later events of the pod need nothing more.
    deleted: bool,
    /// Seen in the list of pods under way.
    listed: bool,
}

struct State {
    records: HashMap<String, PodRecord>,
    pool: IpPool,
    /// Pods waiting for an address, oldest first.
    waiting: VecDeque<String>,
    /// Whether running out of addresses was said since the last address came free.
    said_exhausted: bool,
}

/// The pods of the simulated nodes.
pub(super) struct Pods {
    api: Arc<dyn Api>,
    fleet: Arc<Fleet>,
    state: Mutex<State>,
    queue: WorkQueue<String>,
}

impl Pods {
    pub fn new(api: Arc<dyn Api>, fleet: Arc<Fleet>) -> Pods {
        let pool = IpPool::new(fleet.pod_ips());
        Pods {
            api,
            fleet,
            state: Mutex::new(State {
                records: HashMap::new(),
                pool,
                waiting: VecDeque::new(),
                said_exhausted: false,
            }),
            queue: WorkQueue::new(Duration::from_millis(100), Duration::from_secs(10)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view_of(&self, pod: &Value) -> Option<PodView> {
        view(pod, |name| self.fleet.index_of(name))
    }

    /// Takes in what the watch of pods saw: pods of the simulated nodes that need something
    /// are queued for the workers; pods that are gone give their addresses back.
    pub fn observe(&self, seen: Seen) {
        let mut state = self.state();
        match seen {
            Seen::Relisting => {
                for record in state.records.values_mut() {
                    record.listed = false;
                }
            }
            Seen::Synced => {
                let gone: Vec<String> = state
                    .records
                    .iter()
                    .filter(|(_, record)| !record.listed)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in gone {
                    self.forget(&mut state, &key);
                }
            }
            Seen::Applied(pod) => {
                if let Some(view) = self.view_of(&pod) {
                    self.applied(&mut state, view);
                }
            }
            Seen::Deleted(pod) => {
                if let Some(view) = self.view_of(&pod) {
                    let key = view.key();
                    if state.records.get(&key).is_some_and(|r| *r.uid == *view.uid) {
                        self.forget(&mut state, &key);
                    }
                }
            }
        }
    }

    /// A pod of a simulated node as it is now.
    fn applied(&self, state: &mut State, view: PodView) {
        let key = view.key();
        if state.records.get(&key).is_some_and(|r| *r.uid != *view.uid) {
            // The pod was deleted and made again under the same name while the watch was away.
            self.forget(state, &key);
        }
        if !state.records.contains_key(&key) {
            let address = if view.host_network {
                Address::Host
            } else {
                let cidr = self.fleet.pod_ips();
                let adopted = view
                    .pod_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                    .filter(|ip| state.pool.adopt(*ip, cidr));
                match adopted.or_else(|| state.pool.take()) {
                    Some(ip) => Address::Own(ip),
                    None => Address::Waiting,
                }
            };
            if address == Address::Waiting && !view.deleting {
                state.waiting.push_back(key.clone());
                if !state.said_exhausted {
                    state.said_exhausted = true;
                    tracing::warn!(
                        cidr = %self.fleet.pod_ips(),
                        pods = state.records.len(),
                        "--pod-ip-cidr is used up: pods wait for an address (give a larger one)"
                    );
                }
            }
            state.records.insert(
                key.clone(),
                PodRecord {
                    uid: view.uid.as_str().into(),
                    address,
                    latest: None,
                    deleted: false,
                    listed: true,
                },
            );
        }
        let Some(record) = state.records.get_mut(&key) else {
            return;
        };
        record.listed = true;
        let need = need(&view, record.address, self.fleet.address(view.node));
        let acts = match need {
            Need::Delete => !record.deleted,
            Need::Report => true,
            Need::Nothing | Need::Address => false,
        };
        if acts {
            record.latest = Some(Box::new(view));
            self.queue.add(key);
        }
    }

    /// Drops the record of `key` and gives its address to the oldest pod waiting for one.
    fn forget(&self, state: &mut State, key: &str) {
        let Some(record) = state.records.remove(key) else {
            return;
        };
        let Address::Own(ip) = record.address else {
            return;
        };
        state.pool.release(ip);
        state.said_exhausted = false;
        while let Some(waiting) = state.waiting.pop_front() {
            let Some(ip) = state.pool.take() else {
                state.waiting.push_front(waiting);
                break;
            };
            match state.records.get_mut(&waiting) {
                Some(r) if r.address == Address::Waiting => {
                    r.address = Address::Own(ip);
                    // Its next event (or a resync) would do too; queueing it now is sooner.
                    // Without a view to act on, the worker reads the pod.
                    self.queue.add(waiting);
                    break;
                }
                _ => state.pool.release(ip),
            }
        }
    }

    /// A worker of the bounded pool: takes queued pods until the process stops.
    pub async fn work(self: Arc<Self>) {
        loop {
            let key = self.queue.next().await;
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    tracing::warn!(pod = %key, error = %e, "cannot update the pod; retrying");
                    self.queue.retry(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    /// Does what pod `key` needs: deletes it, or writes its running status (reading it again
    /// after a conflict).
    async fn sync(&self, key: &str) -> Result<(), ApiError> {
        let taken = {
            let mut state = self.state();
            state
                .records
                .get_mut(key)
                .map(|r| (r.latest.take(), r.address))
        };
        let Some((latest, address)) = taken else {
            return Ok(());
        };
        let mut view = match latest {
            Some(view) => *view,
            None => match self.read(key).await? {
                Some(view) => view,
                None => return Ok(()),
            },
        };
        for _ in 0..=CONFLICT_RETRIES {
            let host_ip = self.fleet.address(view.node);
            let pod_ip = match address {
                Address::Own(ip) => ip,
                Address::Host | Address::Waiting => host_ip,
            };
            let result = match need(&view, address, host_ip) {
                Need::Nothing | Need::Address => return Ok(()),
                Need::Delete => return self.delete(&view).await,
                Need::Report => {
                    let patch = Patch {
                        kind: PatchKind::Merge,
                        body: status_patch(&view, pod_ip, host_ip, &now_rfc3339()),
                    };
                    self.api
                        .patch(
                            resource_of::<Pod>(),
                            Some(&view.namespace),
                            &view.name,
                            patch,
                            true,
                            WriteOptions::default(),
                        )
                        .await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) if e.is_conflict() => {
                    let uid = view.uid.clone();
                    match self.read(key).await? {
                        Some(fresh) if fresh.uid == uid => view = fresh,
                        // Gone, or another pod of the same name: its own events bring it.
                        _ => return Ok(()),
                    }
                }
                Err(e) => {
                    self.put_back(key, view);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Keeps `view` for the retry of `key`, unless a newer one came meanwhile.
    fn put_back(&self, key: &str, view: PodView) {
        let mut state = self.state();
        if let Some(record) = state.records.get_mut(key) {
            if record.latest.is_none() && *record.uid == *view.uid {
                record.latest = Some(Box::new(view));
            }
        }
    }

    /// Pod `key` as the server has it now, if it is still one of the simulated nodes'.
    async fn read(&self, key: &str) -> Result<Option<PodView>, ApiError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        match self.api.get(resource_of::<Pod>(), Some(ns), name).await {
            Ok(pod) => Ok(self.view_of(&pod)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Confirms the deletion of the pod of `view` (only that pod: its uid is a precondition).
    async fn delete(&self, view: &PodView) -> Result<(), ApiError> {
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: Some(view.uid.clone()),
            ..Default::default()
        };
        match self
            .api
            .delete(
                resource_of::<Pod>(),
                Some(&view.namespace),
                &view.name,
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        let mut state = self.state();
        if let Some(record) = state.records.get_mut(&view.key()) {
            if *record.uid == *view.uid {
                record.deleted = true;
            }
        }
        Ok(())
    }

    /// Deletes every pod bound to a simulated node (grace period 0, each by its uid), as
    /// Kubernetes' pod garbage collector deletes the pods of Nodes that are gone: what
    /// `--delete-nodes-on-exit` does once the nodes are. Answers how many there were.
    pub async fn delete_all(&self, http: &HttpApi) -> Result<usize, ApiError> {
        let mut bound: Vec<PodView> = Vec::new();
        list_pages(http, resource_of::<Pod>(), &mut |seen| {
            if let Seen::Applied(pod) = seen {
                bound.extend(self.view_of(&pod));
            }
        })
        .await?;
        let n = bound.len();
        futures::stream::iter(bound)
            .for_each_concurrent(self.fleet.concurrency(), |view| async move {
                if let Err(e) = self.delete(&view).await {
                    tracing::warn!(pod = %view.key(), error = %e, "cannot delete the pod");
                }
            })
            .await;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, status: Value) -> Value {
        json!({
            "metadata": {"namespace": "default", "name": "web-1", "uid": "u1", "resourceVersion": "7"},
            "spec": {
                "nodeName": node,
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "main", "image": "nginx"}, {"name": "side", "image": "envoy"}],
            },
            "status": status,
        })
    }

    fn ours(name: &str) -> Option<u32> {
        name.strip_prefix("sim-").and_then(|i| i.parse().ok())
    }

    const HOST: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    #[test]
    fn only_pods_bound_to_a_simulated_node_are_played() {
        assert!(view(&pod("sim-3", json!({})), ours).is_some_and(|v| v.node == 3));
        assert_eq!(view(&pod("real-node", json!({})), ours), None);
        let mut unbound = pod("sim-3", json!({}));
        unbound["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(view(&unbound, ours), None);
        assert_eq!(view(&json!(null), ours), None, "no panic on anything");
        assert_eq!(view(&json!({"spec": {"nodeName": "sim-1"}}), ours), None);
    }

    #[test]
    fn a_bound_pod_is_reported_running_once_and_then_left_alone() {
        let pending = view(&pod("sim-0", json!({"phase": "Pending"})), ours).unwrap();
        assert_eq!(need(&pending, Address::Own(IP), HOST), Need::Report);
        assert_eq!(need(&pending, Address::Waiting, HOST), Need::Address);

        let patch = status_patch(&pending, IP, HOST, "2024-01-01T00:00:00Z");
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        // What the server stores after the merge patch is what the next event shows.
        let mut stored = pod("sim-0", json!({}));
        stored["status"] = patch["status"].clone();
        let running = view(&stored, ours).unwrap();
        assert_eq!(need(&running, Address::Own(IP), HOST), Need::Nothing);
        assert_eq!(
            need(&running, Address::Own(Ipv4Addr::new(10, 200, 0, 3)), HOST),
            Need::Report,
            "another address is not this pod's"
        );

        let status: minik_api::k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(patch["status"].clone()).unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.200.0.2"));
        assert_eq!(status.host_ip.as_deref(), Some("10.199.0.2"));
        let names: Vec<String> = status
            .container_statuses
            .unwrap()
            .into_iter()
            .filter(|s| s.ready && s.state.as_ref().is_some_and(|st| st.running.is_some()))
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["main", "side"]);
        let init = status.init_container_statuses.unwrap();
        assert_eq!(
            init[0]
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(0)
        );
        let conditions = status.conditions.unwrap();
        for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == "True"),
                "{type_}"
            );
        }
    }

    #[test]
    fn a_host_network_pod_has_its_node_s_address() {
        let mut p = pod("sim-0", json!({}));
        p["spec"]["hostNetwork"] = json!(true);
        let v = view(&p, ours).unwrap();
        let patch = status_patch(&v, HOST, HOST, "2024-01-01T00:00:00Z");
        p["status"] = patch["status"].clone();
        assert_eq!(
            need(&view(&p, ours).unwrap(), Address::Host, HOST),
            Need::Nothing
        );
    }

    #[test]
    fn deletion_wins_and_an_ended_pod_stays_ended() {
        let mut p = pod("sim-0", json!({"phase": "Running"}));
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(
            need(&view(&p, ours).unwrap(), Address::Own(IP), HOST),
            Need::Delete
        );
        for phase in ["Succeeded", "Failed"] {
            let p = pod("sim-0", json!({ "phase": phase }));
            assert_eq!(
                need(&view(&p, ours).unwrap(), Address::Own(IP), HOST),
                Need::Nothing
            );
        }
    }

    #[test]
    fn addresses_are_unique_reused_and_adopted() {
        let cidr: Cidr = "10.0.0.0/29".parse().unwrap();
        let mut pool = IpPool::new(cidr);
        // A /29 has 8 addresses; network, gateway and broadcast are not given.
        let taken: Vec<Ipv4Addr> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(
            taken,
            (2..=6)
                .map(|i| Ipv4Addr::new(10, 0, 0, i))
                .collect::<Vec<_>>()
        );
        assert_eq!(pool.take(), None);
        pool.release(Ipv4Addr::new(10, 0, 0, 4));
        pool.release(Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(pool.take(), Some(Ipv4Addr::new(10, 0, 0, 4)));
        assert_eq!(pool.take(), None, "a double release gives one address back");

        let mut pool = IpPool::new(cidr);
        assert!(pool.adopt(Ipv4Addr::new(10, 0, 0, 3), cidr));
        assert!(!pool.adopt(Ipv4Addr::new(10, 0, 0, 3), cidr), "taken");
        assert!(!pool.adopt(Ipv4Addr::new(10, 0, 1, 3), cidr), "outside");
        let taken: Vec<Ipv4Addr> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(taken.len(), 4);
        assert!(!taken.contains(&Ipv4Addr::new(10, 0, 0, 3)));
    }
}
