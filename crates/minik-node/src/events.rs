//! Events about pods, as the kubelet writes them (source component `kubelet`, host = the
//! node): Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed, ... Written by a task
//! of their own through a bounded queue, so an event never holds up a pod: when the queue is
//! full, the event is dropped (events are best effort in Kubernetes too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::core::v1::{Event, Pod};
use minik_api::request::WriteOptions;
use minik_client::{resource_of, Api};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How many events may wait to be written.
const QUEUE: usize = 4096;
/// How many event writes may be in flight at once.
const IN_FLIGHT: usize = 4;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// Sends events to the API server in the background. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    node: String,
    queue: mpsc::Sender<(String, Value)>,
    last_nanos: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder for node `node` and the task that writes its events.
    pub fn new(api: Arc<dyn Api>, node: &str) -> (Recorder, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let recorder = Recorder {
            node: node.to_owned(),
            queue: tx,
            last_nanos: Arc::new(AtomicU64::new(0)),
        };
        (recorder, write_all(api, rx))
    }

    /// Records an event about `pod`, and about one of its containers when `container` is set.
    pub fn pod(&self, pod: &Pod, container: Option<&str>, kind: Kind, reason: &str, message: &str) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let event = self.event(pod, container, kind, reason, message, SystemTime::now());
        if self.queue.try_send((namespace, event)).is_err() {
            tracing::debug!(reason, "the event queue is full; dropping an event");
        }
    }

    /// A unique name: the pod's name and a nanosecond timestamp in hex, as the kubelet does.
    fn name(&self, pod: &str, now: SystemTime) -> String {
        let nanos = crate::runtime::nanos(now);
        let mut last = self.last_nanos.load(Ordering::Relaxed);
        let chosen = loop {
            let next = nanos.max(last + 1);
            match self
                .last_nanos
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(seen) => last = seen,
            }
        };
        format!("{pod}.{chosen:x}")
    }

    /// The Event object.
    pub fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: Kind,
        reason: &str,
        message: &str,
        now: SystemTime,
    ) -> Value {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let timestamp = crate::logs::rfc3339_seconds(now);
        let mut involved = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": namespace,
            "name": name,
            "uid": pod.metadata.uid,
        });
        if let Some(c) = container {
            involved["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
        }
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": self.name(&name, now), "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": match kind { Kind::Normal => "Normal", Kind::Warning => "Warning" },
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
        })
    }
}

async fn write_all(api: Arc<dyn Api>, mut rx: mpsc::Receiver<(String, Value)>) {
    use futures::StreamExt;
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    events
        .for_each_concurrent(IN_FLIGHT, |(namespace, event)| {
            let api = api.clone();
            async move { write_one(api.as_ref(), &namespace, event).await }
        })
        .await;
}

async fn write_one(api: &dyn Api, namespace: &str, event: Value) {
    for attempt in 1..=3u32 {
        match api
            .create(
                resource_of::<Event>(),
                Some(namespace),
                event.clone(),
                WriteOptions::default(),
            )
            .await
        {
            Ok(_) => return,
            // The namespace is going away, or the name was taken: nothing to retry.
            Err(e) if !e.is_server_error() => {
                tracing::debug!(error = %e, "an event was refused");
                return;
            }
            Err(e) => {
                if attempt == 3 {
                    tracing::warn!(error = %e, "cannot write an event");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_pod_container_and_node_like_the_kubelet() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}
        }))
        .unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let recorder = Recorder {
            node: "n1".into(),
            queue: tx,
            last_nanos: Arc::default(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let e = recorder.event(&pod, Some("main"), Kind::Warning, "BackOff", "m", now);
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{main}");
        assert_eq!(e["involvedObject"]["uid"], "u-1");
        assert_eq!(e["source"], json!({"component": "kubelet", "host": "n1"}));
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["firstTimestamp"], "2023-11-14T22:13:20Z");
        let again = recorder.event(&pod, None, Kind::Normal, "X", "m", now);
        assert_ne!(e["metadata"]["name"], again["metadata"]["name"]);
        assert!(again["involvedObject"].get("fieldPath").is_none());
        // A full queue drops the event instead of waiting.
        recorder.pod(&pod, None, Kind::Normal, "A", "a");
        recorder.pod(&pod, None, Kind::Normal, "B", "b");
    }
}
