//! minik's node agent: registers its Node, keeps it alive with heartbeats, and drives the pods
//! bound to it to their spec through a [`runtime::Runtime`].

mod agent;
pub mod endpoint;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod spec;

use std::future::Future;
use std::pin::Pin;

pub use agent::{run, AgentConfig};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
