//! Validation of Services and Endpoints: types, ports, cluster IPs and node ports, traffic
//! policies, and the addresses Endpoints list.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, Endpoints, Service, ServicePort, ServiceSpec,
};
use serde_json::json;

use super::common::{
    dns_label, dns_subdomain, ip_address, json, label_name, one_of, parse_ip, port_number,
    port_number_or_name, s, PROTOCOLS,
};
use super::meta::{object_meta, object_meta_update};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::{names, selector};

/// The node ports minik hands out, as Kubernetes' default `--service-node-port-range`.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;
/// The longest `ClientIP` session affinity (one day).
const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];

/// Validates a Service on create.
///
/// As in Kubernetes: ports are required except for headless and ExternalName services, a port
/// needs a name when there are several, `targetPort` is a number or an IANA port name, and node
/// ports are only for NodePort and LoadBalancer services. A node port must lie in
/// 30000–32767, the range minik allocates from (Kubernetes' allocator reports the same).
pub fn service(svc: &Service) -> ErrorList {
    let meta_path = FieldPath::new("metadata");
    let mut errs = object_meta(&svc.metadata, true, names::dns1035_label, &meta_path);
    let spec_path = FieldPath::new("spec");
    let empty = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&empty);
    let type_ = s(&spec.type_);
    let headless = is_headless(spec);
    let ports = spec.ports.as_deref().unwrap_or_default();
    let ports_path = spec_path.child("ports");

    if ports.is_empty() && !headless && type_ != "ExternalName" {
        errs.push(FieldError::required(&ports_path, ""));
    }
    let cluster_ips_path = spec_path.child("clusterIPs");
    match type_ {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            &cluster_ips_path.index(0),
            "None",
            format!("may not be set to 'None' for {type_} services"),
        )),
        "ExternalName" => {
            if spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
                errs.push(FieldError::forbidden(
                    &cluster_ips_path,
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
                errs.push(FieldError::forbidden(
                    &spec_path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    &spec_path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            // A CNAME may end with a dot to say it is fully qualified.
            let cname = s(&spec.external_name).trim_end_matches('.');
            if cname.is_empty() {
                errs.push(FieldError::required(&spec_path.child("externalName"), ""));
            } else {
                dns_subdomain(&mut errs, cname, &spec_path.child("externalName"));
            }
        }
        _ => {}
    }

    let mut port_names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        service_port(
            &mut errs,
            p,
            ports.len() > 1,
            &mut port_names,
            &ports_path.index(i),
        );
    }

    if let Some(sel) = spec.selector.as_ref() {
        errs.extend(selector::validate_labels(sel, &spec_path.child("selector")));
    }

    let affinity = s(&spec.session_affinity);
    one_of(
        &mut errs,
        affinity,
        &spec_path.child("sessionAffinity"),
        &["ClientIP", "None"],
    );
    let config_path = spec_path.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        let timeout_path = config_path.child("clientIP").child("timeoutSeconds");
        match timeout {
            None => errs.push(FieldError::required(
                &timeout_path,
                "when session affinity type is ClientIP",
            )),
            Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => {
                errs.push(FieldError::invalid(
                    &timeout_path,
                    t,
                    format!(
                        "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                    ),
                ))
            }
            Some(_) => {}
        }
    } else if affinity == "None" && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(
            &config_path,
            "must not be set when session affinity is None",
        ));
    }

    if type_ != "ExternalName" {
        cluster_ips(&mut errs, spec, &spec_path);
    }

    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let path = spec_path.child("externalIPs").index(i);
        let before = errs.len();
        ip_address(&mut errs, ip, &path);
        if errs.len() == before {
            non_special_ip(&mut errs, ip, &path);
        }
    }

    one_of(&mut errs, type_, &spec_path.child("type"), SERVICE_TYPES);

    let allows_node_ports = type_ == "NodePort" || type_ == "LoadBalancer";
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let port_path = ports_path.index(i);
        if let Some(node_port) = p.node_port.filter(|n| *n != 0) {
            let np_path = port_path.child("nodePort");
            if !allows_node_ports && SERVICE_TYPES.contains(&type_) {
                errs.push(FieldError::forbidden(
                    &np_path,
                    format!("may not be used when `type` is '{type_}'"),
                ));
            } else if !NODE_PORT_RANGE.contains(&node_port) {
                errs.push(FieldError::invalid(
                    &np_path,
                    node_port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                ));
            }
            if !node_ports.insert((s(&p.protocol).to_owned(), node_port)) {
                errs.push(FieldError::duplicate(&np_path, node_port));
            }
        }
        if !port_keys.insert((s(&p.protocol).to_owned(), p.port)) {
            errs.push(FieldError::duplicate(
                &port_path,
                json!({"port": p.port, "protocol": s(&p.protocol)}),
            ));
        }
    }

    if spec
        .load_balancer_source_ranges
        .as_ref()
        .is_some_and(|r| !r.is_empty())
        && type_ != "LoadBalancer"
    {
        errs.push(FieldError::forbidden(
            &spec_path.child("loadBalancerSourceRanges"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if spec.allocate_load_balancer_node_ports.is_some() && type_ != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            &spec_path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if type_ == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required(
            &spec_path.child("allocateLoadBalancerNodePorts"),
            "",
        ));
    }

    traffic_policies(&mut errs, spec, type_, &spec_path);
    errs
}

/// Validates a Service update: as on create, and the cluster IPs and IP families, once set,
/// cannot change (switching to or from ExternalName and headless services aside). Callers
/// carry the allocated values of the stored service into a replacement that omits them first
/// ([`crate::defaults::service_update`]), as Kubernetes does.
pub fn service_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    let empty = ServiceSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    let external = |s: &ServiceSpec| s.type_.as_deref() == Some("ExternalName");

    // Switching to or from ExternalName, or between headless services, allocates nothing.
    let exempt = external(new_spec)
        || external(old_spec)
        || (is_headless(new_spec) && is_headless(old_spec));
    if !exempt {
        let new_ips = new_spec.cluster_ips.as_deref().unwrap_or_default();
        let old_ips = old_spec.cluster_ips.as_deref().unwrap_or_default();
        let ips_path = FieldPath::new("spec").child("clusterIPs");
        if new_ips.len() == old_ips.len() {
            for (i, (n, o)) in new_ips.iter().zip(old_ips).enumerate() {
                if n != o {
                    errs.push(FieldError::invalid(
                        &ips_path.index(i),
                        json(new_ips),
                        "may not change once set",
                    ));
                }
            }
        } else if new_ips.len() < old_ips.len() {
            match new_ips.first() {
                None => errs.push(FieldError::invalid(
                    &ips_path.index(0),
                    json(new_ips),
                    "primary clusterIP can not be unset",
                )),
                Some(first) if Some(first) != old_ips.first() => errs.push(FieldError::invalid(
                    &ips_path.index(0),
                    json(new_ips),
                    "may not change once set",
                )),
                Some(_) => {}
            }
        } else if let (Some(first), Some(old_first)) = (new_ips.first(), old_ips.first()) {
            if first != old_first {
                errs.push(FieldError::invalid(
                    &ips_path.index(0),
                    json(new_ips),
                    "may not change once set",
                ));
            }
        }

        let new_families = new_spec.ip_families.as_deref().unwrap_or_default();
        let old_families = old_spec.ip_families.as_deref().unwrap_or_default();
        if !is_headless(new_spec)
            && !is_headless(old_spec)
            && !old_families.is_empty()
            && new_families.first() != old_families.first()
        {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec").child("ipFamilies").index(0),
                json(new_families),
                "may not change once set",
            ));
        }
    }

    let needs_health_check = |s: &ServiceSpec| {
        s.type_.as_deref() == Some("LoadBalancer")
            && s.external_traffic_policy.as_deref() == Some("Local")
    };
    if needs_health_check(old_spec)
        && needs_health_check(new_spec)
        && new_spec.health_check_node_port != old_spec.health_check_node_port
    {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec").child("healthCheckNodePort"),
            "field is immutable",
        ));
    }

    errs.extend(
        service(new)
            .into_iter()
            .filter(|e| !e.field.as_str().starts_with("metadata.")),
    );
    errs
}

/// A headless service has no cluster IP: `clusterIP: None`.
fn is_headless(spec: &ServiceSpec) -> bool {
    match spec.cluster_ips.as_deref() {
        Some([only]) => only == "None",
        Some(_) => false,
        // Before defaulting fills `clusterIPs`, the singular field says it.
        None => spec.cluster_ip.as_deref() == Some("None"),
    }
}

fn service_port(
    errs: &mut ErrorList,
    p: &ServicePort,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &FieldPath,
) {
    let name = s(&p.name);
    let name_path = path.child("name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else if !name.is_empty() {
        dns_label(errs, name, &name_path);
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&name_path, name));
        }
    }
    port_number(errs, p.port, &path.child("port"));
    one_of(errs, s(&p.protocol), &path.child("protocol"), PROTOCOLS);
    match p.target_port.as_ref() {
        Some(target) => port_number_or_name(errs, target, &path.child("targetPort")),
        // Defaulting sets it to `port`; without defaulting it reads as 0, as in Kubernetes.
        None => port_number(errs, 0, &path.child("targetPort")),
    }
    if let Some(app_protocol) = p.app_protocol.as_deref() {
        label_name(errs, app_protocol, &path.child("appProtocol"));
    }
}

/// `clusterIP` and `clusterIPs` agree; the IPs are valid (or the single value `None`); at most
/// one per family; families and policy are known values.
fn cluster_ips(errs: &mut ErrorList, spec: &ServiceSpec, spec_path: &FieldPath) {
    let ips_path = spec_path.child("clusterIPs");
    let cluster_ip = s(&spec.cluster_ip);
    let ips = spec.cluster_ips.as_deref().unwrap_or_default();
    if !cluster_ip.is_empty() {
        match ips.first() {
            None => errs.push(FieldError::required(&ips_path, "")),
            Some(first) if first != cluster_ip => errs.push(FieldError::invalid(
                &ips_path,
                json(ips),
                "first value must match `clusterIP`",
            )),
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            json(ips),
            "must be empty when `clusterIP` is not specified",
        ));
    }

    let families_path = spec_path.child("ipFamilies");
    let mut seen = BTreeSet::new();
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        if family != "IPv4" && family != "IPv6" {
            errs.push(FieldError::not_supported(
                &families_path.index(i),
                family.as_str(),
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(family.as_str()) {
            errs.push(FieldError::duplicate(
                &families_path.index(i),
                family.as_str(),
            ));
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref() {
        let supported = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !supported.contains(&policy) {
            errs.push(FieldError::not_supported(
                &spec_path.child("ipFamilyPolicy"),
                policy,
                &supported,
            ));
        }
    }

    let mut invalid = false;
    let mut parsed = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                invalid = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    json(ips),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let before = errs.len();
        ip_address(errs, ip, &ips_path.index(i));
        invalid |= errs.len() != before;
        parsed.extend(parse_ip(ip));
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            json(ips),
            "may only hold up to 2 values",
        ));
    }
    if invalid {
        return;
    }
    if let [a, b, ..] = parsed.as_slice() {
        if a.is_ipv4() == b.is_ipv4() {
            errs.push(FieldError::invalid(
                &ips_path,
                json(ips),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if ips.first().is_some_and(|ip| ip != "None") {
        for (i, (ip, family)) in parsed
            .iter()
            .zip(spec.ip_families.iter().flatten())
            .enumerate()
        {
            let mismatch = match family.as_str() {
                "IPv4" => ip.is_ipv6(),
                "IPv6" => ip.is_ipv4(),
                _ => false,
            };
            if mismatch {
                errs.push(FieldError::invalid(
                    &ips_path.index(i),
                    ip.to_string(),
                    format!("expected an {family} value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

fn traffic_policies(errs: &mut ErrorList, spec: &ServiceSpec, type_: &str, spec_path: &FieldPath) {
    let externally_accessible = crate::defaults::externally_accessible(spec, type_);
    let external = s(&spec.external_traffic_policy);
    let external_path = spec_path.child("externalTrafficPolicy");
    if !externally_accessible {
        if !external.is_empty() {
            errs.push(FieldError::invalid(
                &external_path,
                external,
                "may only be set for externally-accessible services",
            ));
        }
    } else {
        one_of(errs, external, &external_path, TRAFFIC_POLICIES);
    }

    // Kubernetes allocates the health-check port itself and then requires it; minik's node
    // proxy needs none, so it is optional here, and checked when given.
    let health_path = spec_path.child("healthCheckNodePort");
    let needs_health_check = type_ == "LoadBalancer" && external == "Local";
    match spec.health_check_node_port.filter(|p| *p != 0) {
        Some(p) if !needs_health_check => errs.push(FieldError::invalid(
            &health_path,
            p,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        )),
        Some(p) => port_number(errs, p, &health_path),
        None => {}
    }

    let internal_path = spec_path.child("internalTrafficPolicy");
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(type_, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(FieldError::required(&internal_path, ""));
        }
        None => {}
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => {
            errs.push(FieldError::not_supported(
                &internal_path,
                p,
                TRAFFIC_POLICIES,
            ));
        }
        Some(_) => {}
    }
    if let Some(d) = spec
        .traffic_distribution
        .as_deref()
        .filter(|d| *d != "PreferClose")
    {
        errs.push(FieldError::not_supported(
            &spec_path.child("trafficDistribution"),
            d,
            &["PreferClose"],
        ));
    }
}

/// Validates Endpoints on create.
///
/// As Kubernetes, except that loopback addresses are allowed: minik's process runtime shares the
/// host network, so on one machine a pod's address can well be `127.0.0.1`.
pub fn endpoints(ep: &Endpoints) -> ErrorList {
    let mut errs = object_meta(
        &ep.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    let subsets_path = FieldPath::new("subsets");
    for (i, subset) in ep.subsets.iter().flatten().enumerate() {
        let idx = subsets_path.index(i);
        let addresses = subset.addresses.as_deref().unwrap_or_default();
        let not_ready = subset.not_ready_addresses.as_deref().unwrap_or_default();
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &idx,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addresses.iter().enumerate() {
            endpoint_address(&mut errs, a, &idx.child("addresses").index(j));
        }
        for (j, a) in not_ready.iter().enumerate() {
            endpoint_address(&mut errs, a, &idx.child("notReadyAddresses").index(j));
        }
        let ports = subset.ports.as_deref().unwrap_or_default();
        for (j, p) in ports.iter().enumerate() {
            endpoint_port(&mut errs, p, ports.len() > 1, &idx.child("ports").index(j));
        }
    }
    errs
}

/// Validates an Endpoints update: metadata rules, and the new object as on create.
pub fn endpoints_update(new: &Endpoints, old: &Endpoints) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(
        endpoints(new)
            .into_iter()
            .filter(|e| !e.field.as_str().starts_with("metadata.")),
    );
    errs
}

fn endpoint_address(errs: &mut ErrorList, a: &EndpointAddress, path: &FieldPath) {
    let ip_path = path.child("ip");
    ip_address(errs, &a.ip, &ip_path);
    let hostname = s(&a.hostname);
    if !hostname.is_empty() {
        dns_label(errs, hostname, &path.child("hostname"));
    }
    if let Some(node) = a.node_name.as_deref() {
        dns_subdomain(errs, node, &path.child("nodeName"));
    }
    non_special_ip(errs, &a.ip, &ip_path);
}

/// Addresses that can never reach a pod: unspecified and link-local ones. (Kubernetes also
/// refuses loopback; minik allows it, see [`endpoints`].)
fn non_special_ip(errs: &mut ErrorList, ip: &str, path: &FieldPath) {
    let Some(addr) = parse_ip(ip) else {
        return;
    };
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    let (link_local, link_local_multicast) = match addr {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => {
            let seg = v6.segments()[0];
            (seg & 0xffc0 == 0xfe80, seg & 0xff0f == 0xff02)
        }
    };
    if link_local {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

fn endpoint_port(errs: &mut ErrorList, p: &EndpointPort, require_name: bool, path: &FieldPath) {
    let name = s(&p.name);
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        dns_label(errs, name, &path.child("name"));
    }
    port_number(errs, p.port, &path.child("port"));
    one_of(errs, s(&p.protocol), &path.child("protocol"), PROTOCOLS);
    if let Some(app_protocol) = p.app_protocol.as_deref() {
        label_name(errs, app_protocol, &path.child("appProtocol"));
    }
}
