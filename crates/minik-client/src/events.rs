//! Kubernetes' event recorder, on the side that emits events (client-go's `tools/record`): the
//! API server stores every Event it is given, so the counting and merging happen here, in the
//! components that report what they did.
//!
//! [`EventRecorder::record`] runs each occurrence through a correlator (client-go's
//! `EventCorrelator`, written anew), then writes what it decided:
//!
//! - the same event seen again (same source, involved object, type, reason and message) becomes
//!   a patch of the stored one's `count`, `lastTimestamp` and `message`, not a new object;
//! - similar events (the same but for the message) that bring the 10th distinct message within
//!   10 minutes of each other go into one event whose message says
//!   `(combined from similar events): ...`, counted like any other;
//! - a source may report 25 events about one object at once, then one every 5 minutes (a token
//!   bucket per source and object); the others are dropped.
//!
//! The correlator remembers the last 4096 keys of each kind. A patch of an event that has gone
//! meanwhile (it expired) creates it again with its count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi;
use minik_api::k8s_openapi::api::core::v1::{Event, ObjectReference};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use serde_json::{json, Value};

use crate::api::{resource_of, Api};

/// What the message of an event that combines similar ones starts with.
const COMBINED: &str = "(combined from similar events): ";
/// How many times a write is tried when the server fails.
const WRITE_ATTEMPTS: u32 = 3;
/// How long to wait before trying a failed write again, times the attempt.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// `Normal` or `Warning`, an event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One occurrence to report: what happened to which object, and who says so.
#[derive(Clone, Debug, PartialEq)]
pub struct EventNote {
    /// The object the event is about; its namespace is the event's (`default` for
    /// cluster-scoped objects).
    pub involved: ObjectReference,
    /// `source.component` and `reportingComponent`: `kubelet`, `default-scheduler`,
    /// `replicaset-controller`, ...
    pub component: String,
    /// `source.host` and `reportingInstance`: the node, for the kubelet.
    pub host: Option<String>,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// What names `object` as the one an event is about: its apiVersion, kind, namespace, name and
/// uid.
pub fn object_reference<K>(object: &K) -> ObjectReference
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let meta = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.into()),
        kind: Some(K::KIND.into()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    }
}

/// How the correlator merges, combines and limits events; the defaults are client-go's.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrelatorOptions {
    /// How many keys each of the correlator's caches remembers.
    pub cache_size: usize,
    /// Similar events combine into one from the one that brings this many distinct messages...
    pub max_similar: usize,
    /// ...each within this long of the similar one before it.
    pub similar_window: Duration,
    /// How many events a source may report about one object at once (0: no limit).
    pub spam_burst: u32,
    /// After the burst, one more event per this long.
    pub spam_refill: Duration,
}

impl Default for CorrelatorOptions {
    fn default() -> Self {
        CorrelatorOptions {
            cache_size: 4096,
            max_similar: 10,
            similar_window: Duration::from_secs(600),
            spam_burst: 25,
            spam_refill: Duration::from_secs(300),
        }
    }
}

/// What to write for one occurrence.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Correlated {
    /// A new event.
    Create { namespace: String, event: Value },
    /// A merge patch of the stored event `name` (count, lastTimestamp, message); `event` is the
    /// whole of it, to create if the stored one has gone.
    Patch {
        namespace: String,
        name: String,
        patch: Value,
        event: Value,
    },
    /// Nothing: the source has reported too much about the object lately.
    Skip,
}

/// A map that forgets its least recently used entries beyond `capacity`.
struct Lru<V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (V, u64)>,
    order: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.tick += 1;
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = self.tick;
        self.order.insert(self.tick, key.to_owned());
        Some(value)
    }

    fn insert(&mut self, key: String, value: V) {
        self.tick += 1;
        if let Some((_, used)) = self.entries.insert(key.clone(), (value, self.tick)) {
            self.order.remove(&used);
        }
        self.order.insert(self.tick, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Similar events lately: their distinct messages (at most `max_similar`) and when the last came.
struct Similar {
    messages: HashSet<String>,
    last: SystemTime,
}

/// The stored event an event key was last written as.
struct Seen {
    name: String,
    /// How many times it was seen (an Event's `count` is an int32; it stops at the top).
    count: i32,
    first_timestamp: String,
}

/// A token bucket: `tokens` as of `at`.
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// The pure part of the recorder: given an occurrence and the time, what to write. Its state is
/// what it has decided before.
pub(crate) struct EventCorrelator {
    options: CorrelatorOptions,
    similar: Lru<Similar>,
    seen: Lru<Seen>,
    spam: Lru<Bucket>,
    /// The nanoseconds of the last name given, so that names never repeat.
    last_name: u128,
}

fn s(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

/// The source and the object (without the field path): client-go's spam key, which is also the
/// part every key below starts with.
fn object_key(note: &EventNote) -> String {
    let o = &note.involved;
    [
        note.component.as_str(),
        note.host.as_deref().unwrap_or(""),
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.uid),
        s(&o.api_version),
    ]
    .join("\u{0}")
}

/// What makes two events similar (all but the message): client-go's aggregate key.
fn similar_key(note: &EventNote) -> String {
    // The reporting component and instance are the source's component and host.
    [
        "similar",
        &object_key(note),
        note.type_.as_str(),
        &note.reason,
    ]
    .join("\u{0}")
}

/// What makes two events the same: client-go's `getEventKey`.
fn event_key(note: &EventNote) -> String {
    [
        "event",
        &object_key(note),
        s(&note.involved.field_path),
        note.type_.as_str(),
        &note.reason,
        &note.message,
    ]
    .join("\u{0}")
}

/// RFC 3339 in whole seconds, UTC, as Kubernetes writes event timestamps.
fn timestamp(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_second(seconds)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// The namespace of the events about an object: its own, or `default` for cluster-scoped ones.
fn event_namespace(note: &EventNote) -> String {
    match note.involved.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns.to_owned(),
        _ => "default".to_owned(),
    }
}

impl EventCorrelator {
    pub(crate) fn new(options: CorrelatorOptions) -> Self {
        EventCorrelator {
            similar: Lru::new(options.cache_size),
            seen: Lru::new(options.cache_size),
            spam: Lru::new(options.cache_size),
            options,
            last_name: 0,
        }
    }

    /// Decides what to write for `note`, seen at `now`.
    pub(crate) fn correlate(&mut self, note: &EventNote, now: SystemTime) -> Correlated {
        let (key, message) = if self.combines(note, now) {
            (similar_key(note), format!("{COMBINED}{}", note.message))
        } else {
            (event_key(note), note.message.clone())
        };
        let namespace = event_namespace(note);
        let last_timestamp = timestamp(now);
        // Counted even when the spam filter drops it, as client-go does: the next one that
        // gets through carries the true count.
        let decision = match self.seen.get_mut(&key) {
            Some(seen) => {
                seen.count = seen.count.saturating_add(1);
                Correlated::Patch {
                    patch: json!({
                        "count": seen.count,
                        "lastTimestamp": last_timestamp,
                        "message": message,
                    }),
                    event: event_object(note, &namespace, seen, &message, &last_timestamp),
                    name: seen.name.clone(),
                    namespace,
                }
            }
            None => {
                let seen = Seen {
                    name: self.new_name(note, now),
                    count: 1,
                    first_timestamp: last_timestamp.clone(),
                };
                let event = event_object(note, &namespace, &seen, &message, &last_timestamp);
                self.seen.insert(key, seen);
                Correlated::Create { namespace, event }
            }
        };
        if self.allowed(note, now) {
            decision
        } else {
            Correlated::Skip
        }
    }

    /// Whether `note` goes into the event that combines its similar ones: once a group of
    /// similar events, none more than the window after the one before, has had `max_similar`
    /// distinct messages.
    fn combines(&mut self, note: &EventNote, now: SystemTime) -> bool {
        let key = similar_key(note);
        let window = self.options.similar_window;
        let max = self.options.max_similar.max(1);
        let fresh = self
            .similar
            .get_mut(&key)
            .is_none_or(|similar| since(now, similar.last) > window);
        if fresh {
            self.similar.insert(
                key.clone(),
                Similar {
                    messages: HashSet::new(),
                    last: now,
                },
            );
        }
        let Some(similar) = self.similar.get_mut(&key) else {
            return false;
        };
        similar.last = now;
        if similar.messages.len() < max {
            similar.messages.insert(note.message.clone());
        }
        similar.messages.len() >= max
    }

    /// The spam filter: takes a token from the bucket of the note's source and object.
    fn allowed(&mut self, note: &EventNote, now: SystemTime) -> bool {
        let burst = f64::from(self.options.spam_burst);
        if self.options.spam_burst == 0 {
            return true;
        }
        let refill = self.options.spam_refill;
        let key = object_key(note);
        if self.spam.get_mut(&key).is_none() {
            self.spam.insert(
                key.clone(),
                Bucket {
                    tokens: burst,
                    at: now,
                },
            );
        }
        let Some(bucket) = self.spam.get_mut(&key) else {
            return true;
        };
        let earned = if refill.is_zero() {
            burst
        } else {
            since(now, bucket.at).as_secs_f64() / refill.as_secs_f64()
        };
        bucket.tokens = (bucket.tokens + earned).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A name no other event of this correlator has: the object's name and the time in
    /// nanoseconds, in hex, as Kubernetes' recorder names events.
    fn new_name(&mut self, note: &EventNote, now: SystemTime) -> String {
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.last_name = nanos.max(self.last_name.saturating_add(1));
        format!("{}.{:x}", s(&note.involved.name), self.last_name)
    }
}

/// The Event object of `note`, stored as `seen`, last seen at `last_timestamp`.
fn event_object(
    note: &EventNote,
    namespace: &str,
    seen: &Seen,
    message: &str,
    last_timestamp: &str,
) -> Value {
    let mut source = json!({"component": note.component});
    let mut event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": seen.name, "namespace": namespace},
        "involvedObject": note.involved,
        "reason": note.reason,
        "message": message,
        "type": note.type_.as_str(),
        "reportingComponent": note.component,
        "firstTimestamp": seen.first_timestamp,
        "lastTimestamp": last_timestamp,
        "count": seen.count,
    });
    if let Some(host) = &note.host {
        source["host"] = json!(host);
        event["reportingInstance"] = json!(host);
    }
    event["source"] = source;
    event
}

/// Per-key locks that go away when nobody holds or waits for them.
#[derive(Default)]
struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock of one key; dropping it lets the next writer of the key go.
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl KeyLocks {
    async fn lock(&self, key: String) -> KeyGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let held = lock.clone().lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            lock,
            _held: held,
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's, this guard's and the held guard's: nobody else waits.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.key);
        }
    }
}

/// Records events through an [`Api`], merging repeats as Kubernetes' recorder does (see the
/// module). Cheap to clone; clones share what has been recorded.
#[derive(Clone)]
pub struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    api: Arc<dyn Api>,
    correlator: Mutex<EventCorrelator>,
    /// Writes about one object from one source go one at a time, in the order they were
    /// decided, so that a patch never overtakes the create it patches.
    writing: KeyLocks,
}

impl EventRecorder {
    pub fn new(api: Arc<dyn Api>) -> EventRecorder {
        EventRecorder::with_options(api, CorrelatorOptions::default())
    }

    pub fn with_options(api: Arc<dyn Api>, options: CorrelatorOptions) -> EventRecorder {
        EventRecorder {
            inner: Arc::new(Inner {
                api,
                correlator: Mutex::new(EventCorrelator::new(options)),
                writing: KeyLocks::default(),
            }),
        }
    }

    /// Records one occurrence of `note`: creates an event, bumps the one it repeats, or drops it
    /// (spam). A write the server fails is tried again a few times; the error that remains is
    /// answered, for the caller to log (events are best effort, in Kubernetes too).
    pub async fn record(&self, note: &EventNote) -> Result<(), ApiError> {
        let _writing = self.inner.writing.lock(object_key(note)).await;
        let decision = {
            let mut correlator = self
                .inner
                .correlator
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            correlator.correlate(note, SystemTime::now())
        };
        let mut attempt = 1;
        loop {
            match self.write(&decision).await {
                Err(e) if e.is_server_error() && attempt < WRITE_ATTEMPTS => {
                    tokio::time::sleep(RETRY_AFTER * attempt).await;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn write(&self, decision: &Correlated) -> Result<(), ApiError> {
        match decision {
            Correlated::Skip => Ok(()),
            Correlated::Create { namespace, event } => self.create(namespace, event).await,
            Correlated::Patch {
                namespace,
                name,
                patch,
                event,
            } => {
                let patch = Patch {
                    kind: PatchKind::Merge,
                    body: patch.clone(),
                };
                let patched = self
                    .inner
                    .api
                    .patch(
                        resource_of::<Event>(),
                        Some(namespace),
                        name,
                        patch,
                        false,
                        WriteOptions::default(),
                    )
                    .await;
                match patched {
                    Ok(_) => Ok(()),
                    // Expired or deleted meanwhile: it comes back with its count.
                    Err(e) if e.is_not_found() => self.create(namespace, event).await,
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn create(&self, namespace: &str, event: &Value) -> Result<(), ApiError> {
        match self
            .inner
            .api
            .create(
                resource_of::<Event>(),
                Some(namespace),
                event.clone(),
                WriteOptions::default(),
            )
            .await
        {
            // An earlier attempt got there (its answer was lost).
            Err(e) if e.is_already_exists() => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(second: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + second)
    }

    fn pod(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    fn note(object: &str, reason: &str, message: &str) -> EventNote {
        EventNote {
            involved: pod(object),
            component: "kubelet".into(),
            host: Some("n1".into()),
            type_: EventType::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// What a decision writes, in short: `create NAME count MESSAGE`, `patch NAME count
    /// MESSAGE` or `skip`.
    fn short(decision: &Correlated) -> String {
        match decision {
            Correlated::Create { event, .. } => format!(
                "create {} {} {}",
                event["metadata"]["name"].as_str().unwrap_or(""),
                event["count"],
                event["message"].as_str().unwrap_or("")
            ),
            Correlated::Patch { name, patch, .. } => format!(
                "patch {name} {} {}",
                patch["count"],
                patch["message"].as_str().unwrap_or("")
            ),
            Correlated::Skip => "skip".into(),
        }
    }

    /// Runs `steps` (second, note) through one correlator and answers the short decisions,
    /// with names shortened to `#n` in order of appearance.
    fn run(options: CorrelatorOptions, steps: &[(u64, EventNote)]) -> Vec<String> {
        let mut c = EventCorrelator::new(options);
        let mut names: Vec<String> = Vec::new();
        steps
            .iter()
            .map(|(second, note)| {
                let mut line = short(&c.correlate(note, at(*second)));
                if let Some(name) = line.split(' ').nth(1).map(str::to_owned) {
                    if name.contains('.') {
                        let n = match names.iter().position(|x| *x == name) {
                            Some(n) => n,
                            None => {
                                names.push(name.clone());
                                names.len() - 1
                            }
                        };
                        line = line.replacen(&name, &format!("#{n}"), 1);
                    }
                }
                line
            })
            .collect()
    }

    #[test]
    fn an_object_reference_names_the_object_by_its_kind_and_uid() {
        let web: minik_api::k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "resourceVersion": "7"}
        }))
        .unwrap();
        assert_eq!(object_reference(&web), pod("web"));
    }

    #[test]
    fn correlation_table() {
        let backoff = || note("web", "BackOff", "Back-off restarting failed container");
        let mut other_container = backoff();
        other_container.involved.field_path = Some("spec.containers{side}".into());
        let mut other_host = backoff();
        other_host.host = Some("n2".into());
        let mut normal = backoff();
        normal.type_ = EventType::Normal;
        let check = |what: &str, steps: &[(u64, EventNote)], want: &[&str]| {
            assert_eq!(run(CorrelatorOptions::default(), steps), want, "{what}");
        };
        check(
            "the same event again is a patch of the first, counted",
            &[(0, backoff()), (10, backoff()), (20, backoff())],
            &[
                "create #0 1 Back-off restarting failed container",
                "patch #0 2 Back-off restarting failed container",
                "patch #0 3 Back-off restarting failed container",
            ],
        );
        check(
            "an hour later it is still the same event (until the cache forgets it)",
            &[(0, backoff()), (3600, backoff())],
            &[
                "create #0 1 Back-off restarting failed container",
                "patch #0 2 Back-off restarting failed container",
            ],
        );
        check(
            "another object, message, reason, container, host or type is another event",
            &[
                (0, backoff()),
                (
                    1,
                    note("db", "BackOff", "Back-off restarting failed container"),
                ),
                (2, note("web", "BackOff", "another message")),
                (
                    3,
                    note("web", "Failed", "Back-off restarting failed container"),
                ),
                (4, other_container),
                (5, other_host),
                (6, normal),
            ],
            &[
                "create #0 1 Back-off restarting failed container",
                "create #1 1 Back-off restarting failed container",
                "create #2 1 another message",
                "create #3 1 Back-off restarting failed container",
                "create #4 1 Back-off restarting failed container",
                "create #5 1 Back-off restarting failed container",
                "create #6 1 Back-off restarting failed container",
            ],
        );
    }

    #[test]
    fn the_tenth_distinct_similar_message_starts_a_combined_event() {
        let created = |i: u64| {
            (
                i,
                note("web", "SuccessfulCreate", &format!("Created pod: p{i}")),
            )
        };
        let mut steps: Vec<_> = (0..12).map(created).collect();
        // A repeat of a message seen before also goes into the combined event now.
        steps.push((12, note("web", "SuccessfulCreate", "Created pod: p0")));
        // Another reason is not similar.
        steps.push((13, note("web", "SuccessfulDelete", "Deleted pod: p0")));
        // Eleven minutes of quiet: the group starts over.
        steps.push((13 + 660, note("web", "SuccessfulCreate", "Created pod: q")));
        let got = run(CorrelatorOptions::default(), &steps);
        let mut want: Vec<String> = (0..9)
            .map(|i| format!("create #{i} 1 Created pod: p{i}"))
            .collect();
        want.push("create #9 1 (combined from similar events): Created pod: p9".into());
        want.push("patch #9 2 (combined from similar events): Created pod: p10".into());
        want.push("patch #9 3 (combined from similar events): Created pod: p11".into());
        want.push("patch #9 4 (combined from similar events): Created pod: p0".into());
        want.push("create #10 1 Deleted pod: p0".into());
        want.push("create #11 1 Created pod: q".into());
        assert_eq!(got, want);
    }

    #[test]
    fn similar_events_spread_out_do_not_combine() {
        let steps: Vec<_> = (0..12)
            .map(|i| {
                (
                    i * 601,
                    note("web", "Unhealthy", &format!("probe failed {i}")),
                )
            })
            .collect();
        let got = run(CorrelatorOptions::default(), &steps);
        assert!(
            got.iter()
                .all(|l| l.starts_with("create ") && !l.contains(COMBINED)),
            "{got:?}"
        );
    }

    #[test]
    fn a_source_gets_a_burst_per_object_then_one_event_per_refill() {
        let options = CorrelatorOptions {
            spam_burst: 3,
            spam_refill: Duration::from_secs(300),
            ..CorrelatorOptions::default()
        };
        let backoff = || note("web", "BackOff", "b");
        let mut kube_proxy = backoff();
        kube_proxy.component = "kube-proxy".into();
        let got = run(
            options,
            &[
                (0, backoff()),
                (1, backoff()),
                (2, note("web", "Started", "s")),
                (3, backoff()),
                // Another object, another source: their own buckets.
                (3, note("db", "BackOff", "b")),
                (3, kube_proxy),
                (299, backoff()),
                (303, backoff()),
                (304, backoff()),
            ],
        );
        assert_eq!(
            got,
            [
                "create #0 1 b",
                "patch #0 2 b",
                "create #1 1 s",
                "skip",
                "create #2 1 b",
                "create #3 1 b",
                "skip",
                // The skipped ones were counted all the same.
                "patch #0 5 b",
                "skip",
            ]
        );
    }

    #[test]
    fn events_are_named_and_filled_in_as_kubernetes_recorder_does() {
        let mut c = EventCorrelator::new(CorrelatorOptions::default());
        let mut backoff = note("web", "BackOff", "b");
        backoff.involved.field_path = Some("spec.containers{main}".into());
        let Correlated::Create { namespace, event } = c.correlate(&backoff, at(0)) else {
            panic!("a create")
        };
        assert_eq!(namespace, "shop");
        assert_eq!(
            event,
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "web.17979cfe362a0000", "namespace": "shop"},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "shop",
                    "name": "web", "uid": "uid-web", "fieldPath": "spec.containers{main}"},
                "reason": "BackOff", "message": "b", "type": "Warning",
                "source": {"component": "kubelet", "host": "n1"},
                "reportingComponent": "kubelet", "reportingInstance": "n1",
                "firstTimestamp": "2023-11-14T22:13:20Z", "lastTimestamp": "2023-11-14T22:13:20Z",
                "count": 1,
            })
        );
        // Names never repeat, even at the same instant.
        let Correlated::Create { event: other, .. } = c.correlate(&note("web", "X", "x"), at(0))
        else {
            panic!("a create")
        };
        assert_eq!(other["metadata"]["name"], "web.17979cfe362a0001");
        // A repeat carries the first time and the whole event, to create it again if it is gone.
        let Correlated::Patch {
            name, patch, event, ..
        } = c.correlate(&backoff, at(65))
        else {
            panic!("a patch")
        };
        assert_eq!(name, "web.17979cfe362a0000");
        assert_eq!(
            patch,
            json!({"count": 2, "lastTimestamp": "2023-11-14T22:14:25Z", "message": "b"})
        );
        assert_eq!(event["count"], 2);
        assert_eq!(event["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(event["lastTimestamp"], "2023-11-14T22:14:25Z");
        assert_eq!(event["metadata"]["name"], name);

        // Events about cluster-scoped objects go in `default`; a controller has no host.
        let node = EventNote {
            involved: ObjectReference {
                kind: Some("Node".into()),
                name: Some("n1".into()),
                ..ObjectReference::default()
            },
            component: "node-controller".into(),
            host: None,
            type_: EventType::Normal,
            reason: "RegisteredNode".into(),
            message: "m".into(),
        };
        let Correlated::Create { namespace, event } = c.correlate(&node, at(0)) else {
            panic!("a create")
        };
        assert_eq!(namespace, "default");
        assert_eq!(event["metadata"]["namespace"], "default");
        assert_eq!(event["source"], json!({"component": "node-controller"}));
        assert!(event.get("reportingInstance").is_none());
    }

    #[test]
    fn the_caches_forget_the_least_recently_used_beyond_their_size() {
        let mut lru = Lru::new(2);
        lru.insert("a".into(), 1);
        lru.insert("b".into(), 2);
        assert_eq!(lru.get_mut("a").copied(), Some(1));
        lru.insert("c".into(), 3);
        assert_eq!(lru.len(), 2);
        assert!(lru.get_mut("b").is_none(), "b was used least recently");
        assert_eq!(lru.get_mut("a").copied(), Some(1));
        assert_eq!(lru.get_mut("c").copied(), Some(3));

        // A forgotten event is created anew.
        let options = CorrelatorOptions {
            cache_size: 1,
            ..CorrelatorOptions::default()
        };
        let got = run(
            options,
            &[
                (0, note("web", "A", "a")),
                (1, note("web", "B", "b")),
                (2, note("web", "A", "a")),
            ],
        );
        assert_eq!(got, ["create #0 1 a", "create #1 1 b", "create #2 1 a"]);
    }

    #[test]
    fn time_going_backwards_is_no_panic_and_no_refill() {
        let options = CorrelatorOptions {
            spam_burst: 1,
            ..CorrelatorOptions::default()
        };
        let got = run(
            options,
            &[(100, note("web", "A", "a")), (0, note("web", "A", "a"))],
        );
        assert_eq!(got, ["create #0 1 a", "skip"]);
        let mut c = EventCorrelator::new(CorrelatorOptions::default());
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(
            c.correlate(&note("web", "A", "a"), before_epoch),
            Correlated::Create { .. }
        ));
    }
}
