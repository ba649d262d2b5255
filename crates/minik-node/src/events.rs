//! Events about pods, as the kubelet writes them (source component `kubelet`, host = the
//! node): Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed, ... Written by a task
//! of their own through a bounded queue, so an event never holds up a pod: when the queue is
//! full, the event is dropped (events are best effort in Kubernetes too). The writing task
//! records them with `minik_client::EventRecorder`, which turns repeats (a crash loop's
//! BackOff) into one event with a count.

use std::sync::Arc;

use minik_api::k8s_openapi::api::core::v1::{ObjectReference, Pod};
use minik_client::{object_reference, Api, EventNote, EventRecorder};
use tokio::sync::mpsc;

pub(crate) use minik_client::EventType as Kind;

/// How many events may wait to be written.
const QUEUE: usize = 4096;
/// How many event writes may be in flight at once.
const IN_FLIGHT: usize = 4;
/// The source component of the kubelet's events.
const COMPONENT: &str = "kubelet";

/// Sends events to the API server in the background. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    node: String,
    queue: mpsc::Sender<EventNote>,
}

impl Recorder {
    /// A recorder for node `node` and the task that writes its events.
    pub fn new(api: Arc<dyn Api>, node: &str) -> (Recorder, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let recorder = Recorder {
            node: node.to_owned(),
            queue: tx,
        };
        (recorder, write_all(EventRecorder::new(api), rx))
    }

    /// Records an event about `pod`, and about one of its containers when `container` is set.
    pub fn pod(&self, pod: &Pod, container: Option<&str>, kind: Kind, reason: &str, message: &str) {
        let note = self.note(pod, container, kind, reason, message);
        if self.queue.try_send(note).is_err() {
            tracing::debug!(reason, "the event queue is full; dropping an event");
        }
    }

    /// What the event says, and about which object.
    fn note(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: Kind,
        reason: &str,
        message: &str,
    ) -> EventNote {
        EventNote {
            involved: ObjectReference {
                field_path: container.map(|c| format!("spec.containers{{{c}}}")),
                ..object_reference(pod)
            },
            component: COMPONENT.to_owned(),
            host: Some(self.node.clone()),
            type_: kind,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }
}

async fn write_all(events: EventRecorder, mut rx: mpsc::Receiver<EventNote>) {
    use futures::StreamExt;
    let notes = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    notes
        .for_each_concurrent(IN_FLIGHT, |note| {
            let events = events.clone();
            async move {
                match events.record(&note).await {
                    Ok(()) => {}
                    // The namespace is going away, say: nothing to retry.
                    Err(e) if !e.is_server_error() => {
                        tracing::debug!(error = %e, "an event was refused")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot write an event"),
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        };
        let note = recorder.note(&pod, Some("main"), Kind::Warning, "BackOff", "m");
        assert_eq!(
            note.involved.field_path.as_deref(),
            Some("spec.containers{main}")
        );
        assert_eq!(note.involved.uid.as_deref(), Some("u-1"));
        assert_eq!(note.involved.namespace.as_deref(), Some("shop"));
        assert_eq!(
            (note.component.as_str(), note.host.as_deref()),
            ("kubelet", Some("n1"))
        );
        assert_eq!(note.type_, Kind::Warning);
        let about_the_pod = recorder.note(&pod, None, Kind::Normal, "X", "m");
        assert!(about_the_pod.involved.field_path.is_none());
        // A full queue drops the event instead of waiting.
        recorder.pod(&pod, None, Kind::Normal, "A", "a");
        recorder.pod(&pod, None, Kind::Normal, "B", "b");
    }
}
