//! The defaults of ControllerRevisions: Kubernetes has none.

use k8s_openapi::api::apps::v1::ControllerRevision;

/// Defaults a ControllerRevision (nothing to default: a revision is written whole by its
/// controller).
pub fn controller_revision(_object: &mut ControllerRevision) {}
