//! Validation of `metadata`, shared by every kind: names, namespace, labels, annotations, owner
//! references and finalizers on create, and the fields an update may not change.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::common::{go_string_slice, json, label_name, s, IMMUTABLE, NEGATIVE};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::{names, selector};

/// Annotations of one object may hold at most this many bytes, keys and values together.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Finalizers Kubernetes itself uses without a domain.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Validates an object's metadata on create.
///
/// `name_check` is the syntax of names of this kind (`names::dns1123_subdomain` for most,
/// `names::dns1123_label` for Namespace, `names::dns1035_label` for Service). A missing name is
/// accepted when `generateName` is set, so callers may validate before generating the name; the
/// prefix is then checked as Kubernetes checks it (a trailing `-` is fine). `namespaced` says
/// whether the kind lives in a namespace: callers set `metadata.namespace` from the URL first.
pub fn object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_check: fn(&str) -> Vec<String>,
    path: &FieldPath,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = s(&meta.name);
    let generate_name = s(&meta.generate_name);

    if !generate_name.is_empty() {
        let path = path.child("generateName");
        for m in name_check(&mask_trailing_dash(generate_name)) {
            errs.push(FieldError::invalid(&path, generate_name, m));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        let path = path.child("name");
        for m in name_check(name) {
            errs.push(FieldError::invalid(&path, name, m));
        }
    }

    let namespace = s(&meta.namespace);
    let ns_path = path.child("namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&ns_path, ""));
        } else {
            for m in names::dns1123_label(namespace) {
                errs.push(FieldError::invalid(&ns_path, namespace, m));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(&ns_path, "not allowed on this type"));
    }

    if let Some(generation) = meta.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            &path.child("generation"),
            generation,
            NEGATIVE,
        ));
    }
    errs.extend(common_meta(meta, path));
    errs
}

/// Validates an object's metadata on update: `name`, `namespace`, `uid`, `creationTimestamp`,
/// `deletionTimestamp` and `deletionGracePeriodSeconds` cannot change, `generation` cannot go
/// down, no finalizer may be added once deletion started, and the new labels, annotations, owner
/// references and finalizers must be valid.
///
/// Kubernetes copies the server-managed fields from the stored object before validating, so a
/// client may leave them out; minik's callers do the same (see
/// [`crate::defaults::object_meta_update`]), and a field left out is treated as unchanged here.
pub fn object_meta_update(new: &ObjectMeta, old: &ObjectMeta, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();

    if old.deletion_timestamp.is_some() {
        let old_finalizers = old.finalizers.as_deref().unwrap_or_default();
        let added: Vec<String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_finalizers.contains(f))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                &path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(&added)
                ),
            ));
        }
    }

    if let (Some(new_gen), Some(old_gen)) = (new.generation, old.generation) {
        if new_gen < old_gen {
            errs.push(FieldError::invalid(
                &path.child("generation"),
                new_gen,
                "must not be decremented",
            ));
        }
    }

    if s(&new.name) != s(&old.name) {
        errs.push(FieldError::invalid(
            &path.child("name"),
            s(&new.name),
            IMMUTABLE,
        ));
    }
    if s(&new.namespace) != s(&old.namespace) {
        errs.push(FieldError::invalid(
            &path.child("namespace"),
            s(&new.namespace),
            IMMUTABLE,
        ));
    }
    if !s(&new.uid).is_empty() && s(&new.uid) != s(&old.uid) {
        errs.push(FieldError::invalid(
            &path.child("uid"),
            s(&new.uid),
            IMMUTABLE,
        ));
    }
    if new.creation_timestamp.is_some() && new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            json(&new.creation_timestamp),
            IMMUTABLE,
        ));
    }
    if new.deletion_timestamp.is_some() && new.deletion_timestamp != old.deletion_timestamp {
        errs.push(FieldError::invalid(
            &path.child("deletionTimestamp"),
            json(&new.deletion_timestamp),
            IMMUTABLE,
        ));
    }
    if new.deletion_grace_period_seconds.is_some()
        && new.deletion_grace_period_seconds != old.deletion_grace_period_seconds
    {
        errs.push(FieldError::invalid(
            &path.child("deletionGracePeriodSeconds"),
            json(&new.deletion_grace_period_seconds),
            IMMUTABLE,
        ));
    }

    errs.extend(common_meta(new, path));
    errs
}

/// What create and update both check: labels, annotations, owner references, finalizers.
fn common_meta(meta: &ObjectMeta, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(labels) = meta.labels.as_ref() {
        errs.extend(selector::validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = meta.annotations.as_ref() {
        errs.extend(annotations_errors(annotations, &path.child("annotations")));
    }
    if let Some(refs) = meta.owner_references.as_ref() {
        errs.extend(owner_references(refs, &path.child("ownerReferences")));
    }
    if let Some(finalizers) = meta.finalizers.as_ref() {
        errs.extend(finalizers_errors(finalizers, &path.child("finalizers")));
    }
    errs
}

/// Annotation keys are qualified names (case does not matter) and all annotations together hold
/// at most 256 KiB.
pub(super) fn annotations_errors(
    annotations: &BTreeMap<String, String>,
    path: &FieldPath,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        for m in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), m));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn owner_references(refs: &[OwnerReference], path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        // Like Kubernetes, the errors name the list, not the entry.
        let version = r
            .api_version
            .rsplit_once('/')
            .map_or(r.api_version.as_str(), |(_, v)| v);
        if version.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("apiVersion"),
                r.api_version.as_str(),
                "version must not be empty",
            ));
        }
        for (field, value) in [("kind", &r.kind), ("name", &r.name), ("uid", &r.uid)] {
            if value.is_empty() {
                errs.push(FieldError::invalid(
                    &path.child(field),
                    "",
                    "must not be empty",
                ));
            }
        }
        if r.api_version == "v1" && r.kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                json(r),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let this = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    json(refs),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => first_controller = Some(this),
            }
        }
    }
    errs
}

/// Finalizers are qualified names; those without a domain must be one Kubernetes knows, and an
/// object cannot both orphan and delete its dependents.
fn finalizers_errors(finalizers: &[String], path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, f) in finalizers.iter().enumerate() {
        label_name(&mut errs, f, path);
        errs.extend(kube_finalizer_name(f, &path.index(i)));
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has("orphan") && has("foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            json(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

pub(super) fn kube_finalizer_name(f: &str, path: &FieldPath) -> Option<FieldError> {
    (!f.contains('/') && !STANDARD_FINALIZERS.contains(&f)).then(|| {
        FieldError::invalid(
            path,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        )
    })
}

/// A `generateName` prefix may end in `-`, since random characters follow it.
fn mask_trailing_dash(prefix: &str) -> String {
    match prefix.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => format!("{rest}a"),
        _ => prefix.to_owned(),
    }
}
