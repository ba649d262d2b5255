//! The ConfigMaps and Secrets a pod refers to: in the environment and `envFrom` of each of its
//! containers (init and ephemeral ones too), in its volumes (directly and through projected
//! volumes) and, for Secrets, in `imagePullSecrets`. The node agent fetches these; the node
//! authorizer lets a node read exactly these (Kubernetes' node authorizer graph).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, PodSpec};

/// Names, in the pod's namespace, of what a pod reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    /// PersistentVolumeClaims, by `persistentVolumeClaim` volumes.
    pub claims: BTreeSet<String>,
}

impl References {
    /// Whether the pod refers to the object of kind `kind` (`ConfigMap`, `Secret` or
    /// `PersistentVolumeClaim`) named `name`.
    pub fn contains(&self, kind: &str, name: &str) -> bool {
        match kind {
            "ConfigMap" => self.config_maps.contains(name),
            "Secret" => self.secrets.contains(name),
            "PersistentVolumeClaim" => self.claims.contains(name),
            _ => false,
        }
    }
}

/// Everything `spec` refers to.
pub fn of_pod_spec(spec: &PodSpec) -> References {
    let mut refs = References::default();
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| (c.env.as_deref(), c.env_from.as_deref()));
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| (c.env.as_deref(), c.env_from.as_deref()));
    for (env, env_from) in containers.chain(ephemeral) {
        env_refs(
            &mut refs,
            env.unwrap_or_default(),
            env_from.unwrap_or_default(),
        );
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(claim) = &v.persistent_volume_claim {
            refs.claims.insert(claim.claim_name.clone());
        }
        if let Some(cm) = &v.config_map {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.secrets.insert(name);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                refs.config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                refs.secrets.insert(s.name.clone());
            }
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        refs.secrets.insert(s.name.clone());
    }
    refs.config_maps.remove("");
    refs.secrets.remove("");
    refs.claims.remove("");
    refs
}

fn env_refs(refs: &mut References, env: &[EnvVar], env_from: &[EnvFromSource]) {
    for from in env.iter().filter_map(|e| e.value_from.as_ref()) {
        if let Some(r) = &from.config_map_key_ref {
            refs.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            refs.secrets.insert(r.name.clone());
        }
    }
    for from in env_from {
        if let Some(r) = &from.config_map_ref {
            refs.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            refs.secrets.insert(r.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_place_a_pod_names_an_object_counts() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "a", "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "Z", "value": "plain"},
            ]}],
            "initContainers": [{"name": "i", "envFrom": [
                {"configMapRef": {"name": "from-cm"}}, {"secretRef": {"name": "from-secret"}},
            ]}],
            "ephemeralContainers": [{"name": "e", "envFrom": [{"configMapRef": {"name": "debug-cm"}}]}],
            "volumes": [
                {"name": "v1", "configMap": {"name": "vol-cm"}},
                {"name": "v2", "secret": {"secretName": "vol-secret"}},
                {"name": "v3", "projected": {"sources": [
                    {"configMap": {"name": "proj-cm"}}, {"secret": {"name": "proj-secret"}},
                    {"downwardAPI": {"items": []}},
                ]}},
                {"name": "v4", "emptyDir": {}},
                {"name": "v5", "persistentVolumeClaim": {"claimName": "data"}},
            ],
            "imagePullSecrets": [{"name": "regcred"}],
        }))
        .unwrap();
        let refs = of_pod_spec(&spec);
        assert_eq!(
            refs.config_maps
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["debug-cm", "env-cm", "from-cm", "proj-cm", "vol-cm"]
        );
        assert_eq!(
            refs.secrets.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "env-secret",
                "from-secret",
                "proj-secret",
                "regcred",
                "vol-secret"
            ]
        );
        assert!(refs.contains("Secret", "regcred"));
        assert!(refs.contains("PersistentVolumeClaim", "data"));
        assert!(!refs.contains("ConfigMap", "regcred"));
        assert_eq!(of_pod_spec(&PodSpec::default()), References::default());
    }
}
