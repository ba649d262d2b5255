//! Validation of the storage kinds: PersistentVolumes and PersistentVolumeClaims (v1) and
//! StorageClasses (storage.k8s.io/v1), after Kubernetes' `ValidatePersistentVolume*`,
//! `ValidatePersistentVolumeClaim*` and `ValidateStorageClass*`, with their field paths and
//! wording (and their quirks: an update reports a changed `volumeMode` under `volumeMode`, not
//! `spec.volumeMode`, and the volume source under `spec.persistentvolumesource`).
//!
//! Where minik differs from Kubernetes: a claim with a `dataSource` or `dataSourceRef` is
//! refused, as minik neither clones volumes nor restores snapshots; a bound claim's storage
//! request may grow but never shrink (Kubernetes 1.33 also lets it shrink back towards
//! `status.capacity` to recover from a failed expansion, which minik never attempts); of the
//! volume sources, `hostPath`, `local`, `nfs` and `csi` are checked field by field and the
//! others only for being the one source of the volume.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, SecretReference, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde_json::Value;

use super::common::{dns_label, dns_subdomain, json, label_name, quantity, s, IMMUTABLE};
use super::meta::{object_meta, object_meta_update};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::quantity::Quantity;
use crate::{names, selector};

/// The access modes a volume or a claim may name, sorted as Kubernetes lists them.
pub const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
/// What may happen to a volume released by its claim.
pub const PV_RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
/// The reclaim policies a StorageClass may give the volumes it provisions.
pub const STORAGE_CLASS_RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
/// When a StorageClass's claims are provisioned and bound.
pub const VOLUME_BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
/// How a volume is presented to a container: a formatted filesystem, or a raw block device.
pub const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// The `type` a `hostPath` may check its path against (`""`: no check).
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// The annotation that named a volume's or claim's class before `storageClassName` existed;
/// it still wins over the field where both are set.
pub const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The annotation that gave mount options before `mountOptions` existed.
pub const MOUNT_OPTIONS_ANNOTATION: &str = "volume.beta.kubernetes.io/mount-options";

/// At most this many StorageClass parameters.
const MAX_PARAMETERS: usize = 512;
/// At most this many bytes of StorageClass parameters, keys and values together.
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

const NOT_POSITIVE: &str = "must be greater than zero";
const MORE_THAN_ONE_SOURCE: &str = "may not specify more than 1 volume type";
const NODE_AFFINITY_IMMUTABLE: &str =
    "field is immutable, except for updating from beta label to GA";
const CLAIM_SPEC_IMMUTABLE: &str =
    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

// ---------------------------------------------------------------------------------------------
// PersistentVolumes
// ---------------------------------------------------------------------------------------------

/// Validates a new PersistentVolume.
pub fn persistent_volume(pv: &PersistentVolume) -> ErrorList {
    let mut errs = object_meta(
        &pv.metadata,
        false,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(pv_common(pv));
    errs
}

/// Validates a replacement of a PersistentVolume: its source and `volumeMode` never change, and
/// its `nodeAffinity` may be set where it was unset but not changed once set (but for node
/// labels moving from their beta names to their GA names). A CSI volume may gain a
/// `controllerExpandSecretRef`.
pub fn persistent_volume_update(new: &PersistentVolume, old: &PersistentVolume) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(pv_common(new));
    let empty = PersistentVolumeSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    let old_spec = old.spec.as_ref().unwrap_or(&empty);

    let mut new_source = pv_source(new_spec);
    let old_source = pv_source(old_spec);
    let expand_ref_added = old_spec
        .csi
        .as_ref()
        .is_some_and(|c| c.controller_expand_secret_ref.is_none())
        && new_spec
            .csi
            .as_ref()
            .is_some_and(|c| c.controller_expand_secret_ref.is_some());
    if expand_ref_added {
        if let Some(csi) = new_source.get_mut("csi").and_then(Value::as_object_mut) {
            csi.remove("controllerExpandSecretRef");
        }
    }
    if new_source != old_source {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec").child("persistentvolumesource"),
            format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                changes(
                    "spec",
                    &Value::Object(old_source),
                    &Value::Object(new_source)
                )
            ),
        ));
    }
    if new_spec.volume_mode != old_spec.volume_mode {
        errs.push(FieldError::invalid(
            &FieldPath::new("volumeMode"),
            json(&new_spec.volume_mode),
            IMMUTABLE,
        ));
    }
    if let Some(old_affinity) = &old_spec.node_affinity {
        let unchanged = new_spec
            .node_affinity
            .as_ref()
            .is_some_and(|new_affinity| affinity_same_or_ga(new_affinity, old_affinity));
        if !unchanged {
            errs.push(FieldError::invalid(
                &FieldPath::new("nodeAffinity"),
                json(&new_spec.node_affinity),
                NODE_AFFINITY_IMMUTABLE,
            ));
        }
    }
    errs
}

/// What a PersistentVolume is checked for on every write, beyond its metadata.
fn pv_common(pv: &PersistentVolume) -> ErrorList {
    let mut errs = ErrorList::new();
    let empty = PersistentVolumeSpec::default();
    let spec = pv.spec.as_ref().unwrap_or(&empty);
    pv_spec(&mut errs, spec, &FieldPath::new("spec"));
    mount_options_annotation(&mut errs, pv, spec);
    errs
}

fn pv_spec(errs: &mut ErrorList, spec: &PersistentVolumeSpec, path: &FieldPath) {
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(&path.child("accessModes"), ""));
    }
    access_modes(errs, modes, &path.child("accessModes"));

    let cap_path = path.child("capacity");
    let empty = BTreeMap::new();
    let capacity = spec.capacity.as_ref().unwrap_or(&empty);
    if capacity.is_empty() {
        errs.push(FieldError::required(&cap_path, ""));
    }
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        errs.push(FieldError::not_supported(
            &cap_path,
            json(&spec.capacity),
            &["storage"],
        ));
    }
    for (name, q) in capacity {
        let q_path = cap_path.key(name);
        if let Some(parsed) = quantity(errs, q, &q_path) {
            basic_resource(errs, parsed, &q_path);
            positive(errs, parsed, &q_path);
        }
    }

    let policy = s(&spec.persistent_volume_reclaim_policy);
    if !policy.is_empty() && !PV_RECLAIM_POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            &path.child("persistentVolumeReclaimPolicy"),
            policy,
            PV_RECLAIM_POLICIES,
        ));
    }

    let affinity_path = path.child("nodeAffinity");
    if let Some(affinity) = &spec.node_affinity {
        volume_node_affinity(errs, affinity, &affinity_path);
    }
    pv_sources(errs, spec, path);

    if let Some(host_path) = &spec.host_path {
        if clean_path(&host_path.path) == "/" && policy == "Recycle" {
            errs.push(FieldError::forbidden(
                &path.child("persistentVolumeReclaimPolicy"),
                "may not be 'recycle' for a hostPath mount of '/'",
            ));
        }
    }
    let class = s(&spec.storage_class_name);
    if !class.is_empty() {
        dns_subdomain(errs, class, &path.child("storageClassName"));
    }
    if let Some(mode) = &spec.volume_mode {
        volume_mode(errs, mode, &path.child("volumeMode"));
    }
}

/// Exactly one source, each checked as Kubernetes checks it, in Kubernetes' order (which
/// decides which of two sources is reported as the extra one). A `flexVolume` is never reported
/// as an extra one, as in Kubernetes.
fn pv_sources(errs: &mut ErrorList, spec: &PersistentVolumeSpec, path: &FieldPath) {
    let present = [
        ("hostPath", spec.host_path.is_some()),
        ("gcePersistentDisk", spec.gce_persistent_disk.is_some()),
        (
            "awsElasticBlockStore",
            spec.aws_elastic_block_store.is_some(),
        ),
        ("glusterfs", spec.glusterfs.is_some()),
        ("flocker", spec.flocker.is_some()),
        ("nfs", spec.nfs.is_some()),
        ("rbd", spec.rbd.is_some()),
        ("quobyte", spec.quobyte.is_some()),
        // Kubernetes' path, although the field is `cephfs`.
        ("cephFS", spec.cephfs.is_some()),
        ("iscsi", spec.iscsi.is_some()),
        ("cinder", spec.cinder.is_some()),
        ("fc", spec.fc.is_some()),
        ("flexVolume", spec.flex_volume.is_some()),
        ("azureFile", spec.azure_file.is_some()),
        ("vsphereVolume", spec.vsphere_volume.is_some()),
        (
            "photonPersistentDisk",
            spec.photon_persistent_disk.is_some(),
        ),
        ("portworxVolume", spec.portworx_volume.is_some()),
        ("azureDisk", spec.azure_disk.is_some()),
        ("scaleIO", spec.scale_io.is_some()),
        ("local", spec.local.is_some()),
        ("storageos", spec.storageos.is_some()),
        ("csi", spec.csi.is_some()),
    ];
    let mut count = 0;
    for (name, _) in present.iter().filter(|(_, set)| *set) {
        let source_path = path.child(name);
        if count > 0 && *name != "flexVolume" {
            errs.push(FieldError::forbidden(&source_path, MORE_THAN_ONE_SOURCE));
            continue;
        }
        count += 1;
        match *name {
            "hostPath" => {
                if let Some(h) = &spec.host_path {
                    host_path(errs, &h.path, s(&h.type_), &source_path);
                }
            }
            "local" => {
                if let Some(l) = &spec.local {
                    required_path(errs, &l.path, &source_path.child("path"));
                }
                if spec.node_affinity.is_none() {
                    errs.push(FieldError::required(
                        &path.child("nodeAffinity"),
                        "Local volume requires node affinity",
                    ));
                }
            }
            "nfs" => {
                if let Some(nfs) = &spec.nfs {
                    if nfs.server.is_empty() {
                        errs.push(FieldError::required(&source_path.child("server"), ""));
                    }
                    if nfs.path.is_empty() {
                        errs.push(FieldError::required(&source_path.child("path"), ""));
                    }
                    if !nfs.path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            &source_path.child("path"),
                            nfs.path.as_str(),
                            "must be an absolute path",
                        ));
                    }
                }
            }
            "csi" => {
                if let Some(csi) = &spec.csi {
                    csi_source(errs, csi, &source_path);
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
}

/// A `hostPath`: a path without `..`, and a known `type`.
fn host_path(errs: &mut ErrorList, path: &str, kind: &str, at: &FieldPath) {
    if required_path(errs, path, &at.child("path")) && !HOST_PATH_TYPES.contains(&kind) {
        errs.push(FieldError::not_supported(
            &at.child("type"),
            kind,
            HOST_PATH_TYPES,
        ));
    }
}

/// A path that is set and has no `..` element; false when it is missing.
fn required_path(errs: &mut ErrorList, path: &str, at: &FieldPath) -> bool {
    if path.is_empty() {
        errs.push(FieldError::required(at, ""));
        return false;
    }
    if path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(at, path, "must not contain '..'"));
    }
    true
}

/// Go's `path.Clean`, enough to tell whether a path names `/`.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !path.starts_with('/') {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (path.starts_with('/'), joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn csi_source(errs: &mut ErrorList, csi: &CSIPersistentVolumeSource, path: &FieldPath) {
    let driver_path = path.child("driver");
    if csi.driver.is_empty() {
        errs.push(FieldError::required(&driver_path, ""));
    }
    if csi.driver.len() > 63 {
        errs.push(FieldError::too_long(&driver_path, csi.driver.as_str(), 63));
    }
    for m in names::dns1123_subdomain(&csi.driver.to_lowercase()) {
        errs.push(FieldError::invalid(&driver_path, csi.driver.as_str(), m));
    }
    if csi.volume_handle.is_empty() {
        errs.push(FieldError::required(&path.child("volumeHandle"), ""));
    }
    for (name, secret) in [
        (
            "controllerPublishSecretRef",
            &csi.controller_publish_secret_ref,
        ),
        (
            "controllerExpandSecretRef",
            &csi.controller_expand_secret_ref,
        ),
        ("nodePublishSecretRef", &csi.node_publish_secret_ref),
        ("nodeExpandSecretRef", &csi.node_expand_secret_ref),
    ] {
        if let Some(secret) = secret {
            secret_reference(errs, secret, &path.child(name));
        }
    }
}

fn secret_reference(errs: &mut ErrorList, secret: &SecretReference, path: &FieldPath) {
    let name = s(&secret.name);
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        dns_subdomain(errs, name, &path.child("name"));
    }
    let namespace = s(&secret.namespace);
    if namespace.is_empty() {
        errs.push(FieldError::required(&path.child("namespace"), ""));
    } else {
        dns_label(errs, namespace, &path.child("namespace"));
    }
}

/// Mount options given by the old annotation are refused for the sources that take none
/// (Kubernetes' volume-specific check, `pkg/volume/validation`).
fn mount_options_annotation(
    errs: &mut ErrorList,
    pv: &PersistentVolume,
    spec: &PersistentVolumeSpec,
) {
    let takes_options = spec.gce_persistent_disk.is_some()
        || spec.aws_elastic_block_store.is_some()
        || spec.glusterfs.is_some()
        || spec.nfs.is_some()
        || spec.rbd.is_some()
        || spec.quobyte.is_some()
        || spec.iscsi.is_some()
        || spec.cinder.is_some()
        || spec.cephfs.is_some()
        || spec.azure_file.is_some()
        || spec.vsphere_volume.is_some()
        || spec.azure_disk.is_some()
        || spec.photon_persistent_disk.is_some();
    let annotated = pv
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MOUNT_OPTIONS_ANNOTATION));
    if annotated && !takes_options {
        errs.push(FieldError::forbidden(
            &FieldPath::new("metadata")
                .child("annotations")
                .child(MOUNT_OPTIONS_ANNOTATION),
            "may not specify mount options for this volume type",
        ));
    }
}

/// The volume source fields of a spec, as JSON, for comparing two specs' sources.
fn pv_source(spec: &PersistentVolumeSpec) -> serde_json::Map<String, Value> {
    const NOT_SOURCE: &[&str] = &[
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeAttributesClassName",
        "volumeMode",
    ];
    match json(spec) {
        Value::Object(mut fields) => {
            fields.retain(|k, _| !NOT_SOURCE.contains(&k.as_str()));
            fields
        }
        _ => serde_json::Map::new(),
    }
}

fn volume_node_affinity(errs: &mut ErrorList, affinity: &VolumeNodeAffinity, path: &FieldPath) {
    match &affinity.required {
        Some(required) => super::pod::node_selector(errs, required, &path.child("required")),
        None => errs.push(FieldError::required(
            &path.child("required"),
            "must specify required node constraints",
        )),
    }
}

/// Node labels Kubernetes renamed, beta name first: a volume's node affinity may move from one
/// to the other.
const BETA_TO_GA_LABELS: &[(&str, &str)] = &[
    (
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/zone",
    ),
    (
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/region",
    ),
    (
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
    ),
    ("beta.kubernetes.io/os", "kubernetes.io/os"),
    ("beta.kubernetes.io/arch", "kubernetes.io/arch"),
];

/// Whether `new` equals `old`, but for keys of `old`'s expressions renamed to their GA names.
fn affinity_same_or_ga(new: &VolumeNodeAffinity, old: &VolumeNodeAffinity) -> bool {
    if new == old {
        return true;
    }
    let (Some(new), Some(old)) = (&new.required, &old.required) else {
        return false;
    };
    new.node_selector_terms.len() == old.node_selector_terms.len()
        && new
            .node_selector_terms
            .iter()
            .zip(&old.node_selector_terms)
            .all(|(n, o)| {
                let (n_exprs, o_exprs) = (
                    n.match_expressions.as_deref().unwrap_or_default(),
                    o.match_expressions.as_deref().unwrap_or_default(),
                );
                n.match_fields == o.match_fields
                    && n_exprs.len() == o_exprs.len()
                    && n_exprs.iter().zip(o_exprs).all(|(ne, oe)| {
                        ne.operator == oe.operator
                            && ne.values == oe.values
                            && (ne.key == oe.key
                                || BETA_TO_GA_LABELS
                                    .iter()
                                    .any(|(beta, ga)| oe.key == *beta && ne.key == *ga))
                    })
            })
}

// ---------------------------------------------------------------------------------------------
// PersistentVolumeClaims
// ---------------------------------------------------------------------------------------------

/// Validates a new PersistentVolumeClaim.
pub fn persistent_volume_claim(pvc: &PersistentVolumeClaim) -> ErrorList {
    let mut errs = object_meta(
        &pvc.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(pvc_spec(pvc));
    errs
}

/// Validates a replacement of a PersistentVolumeClaim. Its spec is immutable but for
/// `volumeName` while it is empty (binding), a `storageClassName` set where there was none
/// (matching the old beta annotation, if any), and the storage request of a bound claim, which
/// may grow but not shrink.
pub fn persistent_volume_claim_update(
    new: &PersistentVolumeClaim,
    old: &PersistentVolumeClaim,
) -> ErrorList {
    let meta_path = FieldPath::new("metadata");
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &meta_path);
    errs.extend(pvc_spec(new));

    let empty = PersistentVolumeClaimSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    let mut new_clone = new_spec.clone();
    let mut old_clone = old_spec.clone();

    if s(&old_spec.volume_name).is_empty() {
        old_clone.volume_name.clone_from(&new_spec.volume_name);
    }
    let old_annotation = annotation(old, BETA_STORAGE_CLASS_ANNOTATION);
    let new_annotation = annotation(new, BETA_STORAGE_CLASS_ANNOTATION);
    let class_from_annotation = old_annotation.is_some()
        && old_spec.storage_class_name.is_none()
        && new_spec.storage_class_name.as_deref() == old_annotation
        && new_annotation.is_none_or(|a| Some(a) == old_annotation);
    if class_from_annotation {
        new_clone.storage_class_name = None;
    } else {
        if new_annotation.unwrap_or_default() != old_annotation.unwrap_or_default() {
            errs.push(FieldError::invalid(
                &meta_path
                    .child("annotations")
                    .child(BETA_STORAGE_CLASS_ANNOTATION),
                new_annotation.unwrap_or_default(),
                IMMUTABLE,
            ));
        }
        let class_from_nil = old_spec.storage_class_name.is_none()
            && new_spec
                .storage_class_name
                .as_deref()
                .is_some_and(|class| old_annotation.is_none_or(|a| a == class));
        if class_from_nil {
            new_clone.storage_class_name = None;
        }
    }

    let bound = new.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Bound");
    if bound {
        if let Some(requests) = new_clone
            .resources
            .as_mut()
            .and_then(|r| r.requests.as_mut())
        {
            match storage_request(old_spec) {
                Some(old_storage) => {
                    requests.insert("storage".to_owned(), old_storage.clone());
                }
                None => {
                    requests.remove("storage");
                }
            }
        }
    }
    new_clone
        .volume_attributes_class_name
        .clone_from(&old_clone.volume_attributes_class_name);

    if new_clone != old_clone {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec"),
            format!(
                "{CLAIM_SPEC_IMMUTABLE}\n{}",
                changes("spec", &json(&old_clone), &json(&new_clone))
            ),
        ));
    }
    let size = |spec| {
        storage_request(spec)
            .and_then(|q| Quantity::try_from(q).ok())
            .unwrap_or(Quantity::ZERO)
    };
    if size(new_spec) < size(old_spec) {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec")
                .child("resources")
                .child("requests")
                .child("storage"),
            "field can not be less than previous value",
        ));
    }
    if new_spec.volume_mode != old_spec.volume_mode {
        errs.push(FieldError::invalid(
            &FieldPath::new("volumeMode"),
            json(&new_spec.volume_mode),
            IMMUTABLE,
        ));
    }

    // What Kubernetes checks of a status update (minik checks every update alike; a status
    // carried over unchanged passes).
    let cap_path = FieldPath::new("status").child("capacity");
    for (name, q) in new
        .status
        .as_ref()
        .and_then(|st| st.capacity.as_ref())
        .into_iter()
        .flatten()
    {
        let q_path = cap_path.key(name);
        if let Some(parsed) = quantity(&mut errs, q, &q_path) {
            basic_resource(&mut errs, parsed, &q_path);
        }
    }
    errs
}

fn pvc_spec(pvc: &PersistentVolumeClaim) -> ErrorList {
    let mut errs = ErrorList::new();
    let path = FieldPath::new("spec");
    let empty = PersistentVolumeClaimSpec::default();
    let spec = pvc.spec.as_ref().unwrap_or(&empty);

    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    if let Some(sel) = &spec.selector {
        errs.extend(selector::validate_label_selector(
            sel,
            &path.child("selector"),
        ));
    }
    access_modes(&mut errs, modes, &path.child("accessModes"));

    let storage_path = path.child("resources").key("storage");
    match storage_request(spec) {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(q) => {
            if let Some(parsed) = quantity(&mut errs, q, &storage_path) {
                positive(&mut errs, parsed, &storage_path);
            }
        }
    }

    let class = s(&spec.storage_class_name);
    if !class.is_empty() {
        dns_subdomain(&mut errs, class, &path.child("storageClassName"));
    }
    if let Some(mode) = &spec.volume_mode {
        volume_mode(&mut errs, mode, &path.child("volumeMode"));
    }
    for (field, set) in [
        ("dataSource", spec.data_source.is_some()),
        ("dataSourceRef", spec.data_source_ref.is_some()),
    ] {
        if set {
            errs.push(FieldError::forbidden(
                &path.child(field),
                "minik does not populate volumes from a data source (it neither clones volumes nor restores snapshots): create the claim without one",
            ));
        }
    }
    errs
}

fn storage_request(spec: &PersistentVolumeClaimSpec) -> Option<&K8sQuantity> {
    spec.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
}

fn annotation<'a>(pvc: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------------
// Shared by volumes and claims
// ---------------------------------------------------------------------------------------------

/// Each mode known, and `ReadWriteOncePod` alone.
fn access_modes(errs: &mut ErrorList, modes: &[String], path: &FieldPath) {
    let (mut once_pod, mut other) = (false, false);
    for mode in modes {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            errs.push(FieldError::not_supported(path, mode.as_str(), ACCESS_MODES));
        } else if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn volume_mode(errs: &mut ErrorList, mode: &str, path: &FieldPath) {
    if !VOLUME_MODES.contains(&mode) {
        errs.push(FieldError::not_supported(path, mode, VOLUME_MODES));
    }
}

/// Kubernetes' `validateBasicResource`: not negative (reported as a whole number).
fn basic_resource(errs: &mut ErrorList, q: Quantity, path: &FieldPath) {
    if q < Quantity::ZERO {
        errs.push(FieldError::invalid(
            path,
            q.value(),
            "must be a valid resource quantity",
        ));
    }
}

fn positive(errs: &mut ErrorList, q: Quantity, path: &FieldPath) {
    if q <= Quantity::ZERO {
        errs.push(FieldError::invalid(path, q.to_string(), NOT_POSITIVE));
    }
}

/// One `  path: old -> new` line for each difference between two JSON values, for the
/// messages of immutable fields (Kubernetes appends a Go diff).
fn changes(at: &str, old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_into(&mut lines, at, old, new);
    lines.join("\n")
}

fn diff_into(lines: &mut Vec<String>, at: &str, old: &Value, new: &Value) {
    const MAX_LINES: usize = 20;
    if lines.len() >= MAX_LINES || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_into(
                    lines,
                    &format!("{at}.{k}"),
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                );
            }
        }
        _ => lines.push(format!("  {at}: {old} -> {new}")),
    }
}

// ---------------------------------------------------------------------------------------------
// StorageClasses
// ---------------------------------------------------------------------------------------------

/// Validates a new StorageClass, once defaulted (`reclaimPolicy`, `volumeBindingMode`).
pub fn storage_class(sc: &StorageClass) -> ErrorList {
    let mut errs = object_meta(
        &sc.metadata,
        false,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(storage_class_fields(sc));
    errs
}

/// Validates a replacement of a StorageClass: its provisioner, parameters, reclaim policy and
/// binding mode never change.
pub fn storage_class_update(new: &StorageClass, old: &StorageClass) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(storage_class_fields(new));
    let params = |sc: &StorageClass| sc.parameters.clone().unwrap_or_default();
    if params(new) != params(old) {
        errs.push(FieldError::forbidden(
            &FieldPath::new("parameters"),
            "updates to parameters are forbidden.",
        ));
    }
    if new.provisioner != old.provisioner {
        errs.push(FieldError::forbidden(
            &FieldPath::new("provisioner"),
            "updates to provisioner are forbidden.",
        ));
    }
    if s(&new.reclaim_policy) != s(&old.reclaim_policy) {
        errs.push(FieldError::forbidden(
            &FieldPath::new("reclaimPolicy"),
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if new.volume_binding_mode != old.volume_binding_mode {
        errs.push(FieldError::invalid(
            &FieldPath::new("volumeBindingMode"),
            json(&new.volume_binding_mode),
            IMMUTABLE,
        ));
    }
    errs
}

fn storage_class_fields(sc: &StorageClass) -> ErrorList {
    let mut errs = ErrorList::new();
    let provisioner_path = FieldPath::new("provisioner");
    if sc.provisioner.is_empty() {
        errs.push(FieldError::required(&provisioner_path, ""));
    } else {
        for m in names::qualified_name(&sc.provisioner.to_lowercase()) {
            errs.push(FieldError::invalid(
                &provisioner_path,
                sc.provisioner.as_str(),
                m,
            ));
        }
    }

    let params_path = FieldPath::new("parameters");
    let params = sc.parameters.as_ref();
    if params.is_some_and(|p| p.len() > MAX_PARAMETERS) {
        errs.push(FieldError::too_long(
            &params_path,
            "Provisioner Parameters exceeded max allowed",
            MAX_PARAMETERS,
        ));
    } else {
        let mut total = 0usize;
        for (k, v) in params.into_iter().flatten() {
            if k.is_empty() {
                errs.push(FieldError::invalid(
                    &params_path,
                    k.as_str(),
                    "field can not be empty.",
                ));
            }
            total = total.saturating_add(k.len()).saturating_add(v.len());
        }
        if total > MAX_PARAMETERS_SIZE {
            errs.push(FieldError::too_long(&params_path, "", MAX_PARAMETERS_SIZE));
        }
    }

    let policy = s(&sc.reclaim_policy);
    if !policy.is_empty() && !STORAGE_CLASS_RECLAIM_POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            &FieldPath::new("reclaimPolicy"),
            policy,
            STORAGE_CLASS_RECLAIM_POLICIES,
        ));
    }
    let mode_path = FieldPath::new("volumeBindingMode");
    match sc.volume_binding_mode.as_deref() {
        None => errs.push(FieldError::required(&mode_path, "")),
        Some(mode) if !VOLUME_BINDING_MODES.contains(&mode) => errs.push(
            FieldError::not_supported(&mode_path, mode, VOLUME_BINDING_MODES),
        ),
        Some(_) => {}
    }
    allowed_topologies(&mut errs, sc);
    errs
}

/// Each term's expressions name a label once, with a non-empty set of values; no two terms
/// are the same.
fn allowed_topologies(errs: &mut ErrorList, sc: &StorageClass) {
    let path = FieldPath::new("allowedTopologies");
    let mut seen: Vec<BTreeMap<&str, BTreeSet<&str>>> = Vec::new();
    for (i, term) in sc.allowed_topologies.iter().flatten().enumerate() {
        let term_path = path.index(i);
        let exprs_path = term_path.child("matchLabelExpressions");
        let mut by_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (j, req) in term.match_label_expressions.iter().flatten().enumerate() {
            let req_path = exprs_path.index(j);
            let values_path = req_path.child("values");
            if req.values.is_empty() {
                errs.push(FieldError::required(&values_path, ""));
            }
            let mut values = BTreeSet::new();
            for (k, v) in req.values.iter().enumerate() {
                if !values.insert(v.as_str()) {
                    errs.push(FieldError::duplicate(&values_path.index(k), v.as_str()));
                }
            }
            label_name(errs, &req.key, &req_path.child("key"));
            if by_key.insert(req.key.as_str(), values).is_some() {
                errs.push(FieldError::duplicate(
                    &req_path.child("key"),
                    req.key.as_str(),
                ));
            }
        }
        if seen.contains(&by_key) {
            errs.push(FieldError::duplicate(&exprs_path, ""));
        }
        seen.push(by_key);
    }
}
