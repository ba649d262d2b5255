//! Clients of the minik API. [`Api`] is the API as a trait, with an HTTP implementation
//! ([`HttpApi`]) for separate processes and an in-process one in `minik-apiserver` for the
//! components that run inside the server; [`Informer`] keeps a watched cache of one kind, and
//! [`WorkQueue`] feeds reconcilers the keys to look at.

mod api;
mod http;
mod informer;
mod queue;

pub use api::{
    resource_of, Api, ApiExt, BoxFuture, EventStream, ListParams, ObjectList, WatchEvent,
    WatchEventType,
};
pub use http::HttpApi;
pub use informer::{cache_key, Change, Informer, InformerCache, InformerConfig, Subscription};
pub use queue::WorkQueue;
