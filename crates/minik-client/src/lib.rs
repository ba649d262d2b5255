//! Clients of the minik API. [`Api`] is the API as a trait, with an HTTP implementation
//! ([`HttpApi`]) for separate processes and an in-process one in `minik-apiserver` for the
//! components that run inside the server; [`Informer`] keeps a watched cache of one kind, and
//! [`WorkQueue`] feeds reconcilers the keys to look at, retrying failures no faster than a
//! [`RateLimit`] allows; [`EventRecorder`] records the components' events, merging repeats as
//! Kubernetes' recorder does.

mod api;
mod events;
mod http;
mod informer;
mod queue;
mod ratelimit;

pub use api::{
    resource_of, Api, ApiExt, BoxFuture, EventStream, ListParams, ObjectList, RawEventStream,
    RawObjectList, RawWatchEvent, WatchEvent, WatchEventType,
};
pub use events::{object_reference, CorrelatorOptions, EventNote, EventRecorder, EventType};
pub use http::{HttpApi, Trust};
pub use informer::{
    cache_key, Change, Informer, InformerCache, InformerConfig, SharedInformers, Subscription,
};
pub use queue::WorkQueue;
pub use ratelimit::RateLimit;

/// Where a node exchanges the join token for its own credential (`POST`, `{"nodeName": NAME}`;
/// served by `minik-apiserver`, called by `minik-node`).
pub const JOIN_PATH: &str = "/minik/v1/join";

/// A token or key: shown as `<redacted>` by `Debug`, so that printing settings never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Writes `text` to `path` with mode 0600, atomically (one home: `minik_tls`).
pub use minik_tls::write_private_file;

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_private_files_are_private() {
        let secret: Secret = " s3cr3t \n".parse().unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret)), "Some(<redacted>)");

        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a rewritten file is private too");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
