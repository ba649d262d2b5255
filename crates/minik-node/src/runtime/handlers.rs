//! The runtimes one node offers, by the handler names RuntimeClasses use (`oci`, `process`,
//! `fake`), with the node's default for pods that name no RuntimeClass. It is itself a
//! [`Runtime`]: each container goes to the handler its pod asked for, and every later call about
//! it to the runtime that has it — also for containers an earlier agent started, which each
//! runtime finds again by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ContainerSpec, ExecProcess, ExecRequest, Runtime, StartError, Started, State};
use crate::BoxFuture;

/// One runtime the node offers.
pub struct Handler {
    pub name: String,
    pub runtime: Arc<dyn Runtime>,
    /// Whether its containers run from images (the agent pulls them first).
    pub runs_images: bool,
}

/// The node's runtimes.
pub struct Runtimes {
    default: usize,
    handlers: Vec<Handler>,
    /// Which handler has each container the agent started or asked about.
    owners: Mutex<HashMap<String, usize>>,
}

impl Runtimes {
    /// The runtimes `handlers`, the first being the node's default.
    pub fn new(handlers: Vec<Handler>) -> Runtimes {
        assert!(!handlers.is_empty(), "a node offers at least one runtime");
        Runtimes {
            default: 0,
            handlers,
            owners: Mutex::default(),
        }
    }

    /// A node with one runtime.
    pub fn single(name: &str, runtime: Arc<dyn Runtime>, runs_images: bool) -> Runtimes {
        Runtimes::new(vec![Handler {
            name: name.to_owned(),
            runtime,
            runs_images,
        }])
    }

    /// The handler names, the default first.
    pub fn names(&self) -> Vec<&str> {
        self.handlers.iter().map(|h| h.name.as_str()).collect()
    }

    /// The handler a pod gets: the one its RuntimeClass names, or the node's default.
    pub fn handler(&self, name: Option<&str>) -> Result<&Handler, String> {
        match name {
            None => Ok(&self.handlers[self.default]),
            Some(name) => self
                .handlers
                .iter()
                .find(|h| h.name == name)
                .ok_or_else(|| {
                    format!(
                        "no runtime for {name:?} is configured on this node (it offers: {})",
                        self.names().join(", ")
                    )
                }),
        }
    }

    /// Whether any handler runs images (then the node needs an image service).
    pub fn any_runs_images(&self) -> bool {
        self.handlers.iter().any(|h| h.runs_images)
    }

    /// The runtime that has container `id`.
    fn owner(&self, id: &str) -> Option<&Arc<dyn Runtime>> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = owners.get(id) {
            return Some(&self.handlers[*i].runtime);
        }
        let found = self
            .handlers
            .iter()
            .position(|h| h.runtime.containers().iter().any(|c| c == id))?;
        owners.insert(id.to_owned(), found);
        Some(&self.handlers[found].runtime)
    }
}

impl Runtime for Runtimes {
    fn start(&self, spec: &ContainerSpec) -> Result<Started, StartError> {
        let index = match &spec.handler {
            None => self.default,
            Some(name) => self
                .handlers
                .iter()
                .position(|h| &h.name == name)
                .ok_or_else(|| {
                    StartError::Failed(self.handler(Some(name)).err().unwrap_or_default())
                })?,
        };
        let started = self.handlers[index].runtime.start(spec)?;
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.id.clone(), index);
        Ok(started)
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, ()> {
        match self.owner(id) {
            Some(runtime) => runtime.stop(id, grace),
            None => Box::pin(async {}),
        }
    }

    fn state(&self, id: &str) -> State {
        self.owner(id).map_or(State::Unknown, |r| r.state(id))
    }

    fn remove(&self, id: &str) {
        if let Some(runtime) = self.owner(id) {
            runtime.remove(id);
        }
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn containers(&self) -> Vec<String> {
        self.handlers
            .iter()
            .flat_map(|h| h.runtime.containers())
            .collect()
    }

    fn remove_pod_sandbox(&self, pod_uid: &str) {
        for h in &self.handlers {
            h.runtime.remove_pod_sandbox(pod_uid);
        }
    }

    fn network_namespace(&self, id: &str) -> Option<std::path::PathBuf> {
        self.owner(id).and_then(|r| r.network_namespace(id))
    }

    fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecProcess, String> {
        match self.owner(id) {
            Some(runtime) => runtime.exec(id, request),
            None => Err("the container is not running".into()),
        }
    }

    fn attach(&self, id: &str, stdin: bool) -> Result<ExecProcess, String> {
        match self.owner(id) {
            Some(runtime) => runtime.attach(id, stdin),
            None => Err("the container is not running".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{FakeRuntime, FakeScript};

    #[test]
    fn each_container_goes_to_its_handler_and_stays_there() {
        let a = Arc::new(FakeRuntime::new());
        let b = Arc::new(FakeRuntime::new());
        let runtimes = Runtimes::new(vec![
            Handler {
                name: "a".into(),
                runtime: a.clone(),
                runs_images: false,
            },
            Handler {
                name: "b".into(),
                runtime: b.clone(),
                runs_images: true,
            },
        ]);
        assert_eq!(runtimes.handler(None).unwrap().name, "a");
        assert!(runtimes.handler(Some("b")).unwrap().runs_images);
        assert_eq!(
            runtimes.handler(Some("gvisor")).err().unwrap(),
            "no runtime for \"gvisor\" is configured on this node (it offers: a, b)"
        );
        let mut spec = ContainerSpec::faked("u1/c/1", FakeScript::default());
        spec.handler = Some("b".into());
        runtimes.start(&spec).unwrap();
        assert_eq!(b.containers(), ["u1/c/1"]);
        assert!(a.containers().is_empty());
        assert!(matches!(runtimes.state("u1/c/1"), State::Running { .. }));
        let spec = ContainerSpec::faked("u1/d/1", FakeScript::default());
        runtimes.start(&spec).unwrap();
        assert_eq!(a.containers(), ["u1/d/1"]);
        let mut all = runtimes.containers();
        all.sort();
        assert_eq!(all, ["u1/c/1", "u1/d/1"]);
        runtimes.remove("u1/c/1");
        assert!(b.containers().is_empty());
    }
}
