//! The defaults of PodDisruptionBudgets.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

/// Defaults a PodDisruptionBudget: policy/v1 defaults nothing (unlike policy/v1beta1, it does
/// not make an empty budget `minAvailable: 1`), and an absent `unhealthyPodEvictionPolicy`
/// behaves as `IfHealthyBudget` without being written.
pub fn pod_disruption_budget(_object: &mut PodDisruptionBudget) {}
