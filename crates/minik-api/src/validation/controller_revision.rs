//! Validation of ControllerRevisions, as Kubernetes' `ValidateControllerRevision` and
//! `ValidateControllerRevisionUpdate`: data is mandatory, the revision is not negative, and the
//! data never changes once written.

use k8s_openapi::api::apps::v1::ControllerRevision;

use super::common::{json, nonnegative, IMMUTABLE};
use super::meta::{object_meta, object_meta_update};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;

/// Validates a new ControllerRevision.
pub fn controller_revision(object: &ControllerRevision) -> ErrorList {
    let mut errs = object_meta(
        &object.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(content(object));
    errs
}

/// The rules of a revision beyond its metadata.
fn content(object: &ControllerRevision) -> ErrorList {
    let mut errs = ErrorList::new();
    if object.data.as_ref().is_none_or(|d| d.0.is_null()) {
        errs.push(FieldError::required(
            &FieldPath::new("data"),
            "data is mandatory",
        ));
    }
    nonnegative(&mut errs, object.revision, &FieldPath::new("revision"));
    errs
}

/// Validates a replacement of a ControllerRevision: its data is immutable.
pub fn controller_revision_update(new: &ControllerRevision, old: &ControllerRevision) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(content(new));
    if new.data != old.data {
        errs.push(FieldError::invalid(
            &FieldPath::new("data"),
            json(&new.data),
            IMMUTABLE,
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

    fn revision(data: Option<serde_json::Value>, number: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some("agent-abc".into()),
                namespace: Some("default".into()),
                resource_version: Some("1".into()),
                ..ObjectMeta::default()
            },
            data: data.map(RawExtension),
            revision: number,
        }
    }

    fn rendered(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn data_is_mandatory_and_revisions_not_negative() {
        let ok = revision(Some(serde_json::json!({"spec": {}})), 1);
        assert_eq!(rendered(controller_revision(&ok)), Vec::<String>::new());
        assert_eq!(
            rendered(controller_revision(&revision(None, -1))),
            vec![
                "data: Required value: data is mandatory",
                "revision: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn data_is_immutable_and_the_number_is_not() {
        let old = revision(Some(serde_json::json!({"a": 1})), 1);
        let renumbered = revision(Some(serde_json::json!({"a": 1})), 4);
        assert_eq!(
            rendered(controller_revision_update(&renumbered, &old)),
            Vec::<String>::new()
        );
        let changed = revision(Some(serde_json::json!({"a": 2})), 1);
        let errs = rendered(controller_revision_update(&changed, &old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("data: Invalid value") && errs[0].ends_with(IMMUTABLE));
    }
}
