//! Who a request comes from, as authentication (`auth.rs`) records it in the request's
//! extensions and everything after asks it (`authz.rs`, the handlers, `tokens.rs`). A leaf.

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The administrator: the admin token, an anonymous loopback client when those are
    /// allowed, or any client of a server run without authentication (tests, benchmarks).
    Admin,
    /// A host holding the join token: it may only join (`POST /minik/v1/join`).
    Joiner,
    /// A node agent, by its own credential.
    Node(String),
    /// A service account, by a bound token the server signed (`satokens.rs`): what a pod
    /// running as it authenticates with.
    ServiceAccount { namespace: String, name: String },
    /// A user named by a client certificate of the cluster CA that is neither the
    /// administrator's nor a node's: authenticated, but allowed nothing beyond discovery until
    /// minik has RBAC.
    User { name: String, groups: Vec<String> },
}

impl Identity {
    /// The user name Kubernetes would give this identity, for messages.
    pub fn user(&self) -> String {
        match self {
            Identity::Admin => "admin".into(),
            Identity::Joiner => "system:bootstrap:minik".into(),
            Identity::Node(name) => format!("system:node:{name}"),
            Identity::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
            Identity::User { name, .. } => name.clone(),
        }
    }
}
