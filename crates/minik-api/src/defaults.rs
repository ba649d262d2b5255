//! Defaults as Kubernetes fills them (owned by helper C, in progress).
