//! The `/etc/resolv.conf` of a pod: the kubelet's rules for `dnsPolicy` and `dnsConfig`
//! (`pkg/kubelet/network/dns/dns.go`), as a pure function of the pod, the node's cluster DNS
//! and the text of the host's resolv.conf, rendered as containerd writes the result.
//!
//! - `ClusterFirst` (the default): the cluster DNS address as the only nameserver, search
//!   `<ns>.svc.<domain> svc.<domain> <domain>` followed by the host's search paths, and
//!   `options ndots:5` (the host's options are not kept). A `hostNetwork` pod falls back to
//!   `Default`, and so does every pod of a node without cluster DNS (with a warning).
//! - `ClusterFirstWithHostNet`: `ClusterFirst`, also for `hostNetwork` pods.
//! - `Default`: the host's nameservers, search paths and options.
//! - `None`: nothing but the pod's `dnsConfig`.
//!
//! A `dnsConfig` is then added on top: its nameservers and search paths appended without
//! duplicates, its options merged by name (the pod's value wins; the kubelet's map makes the
//! order random, here the first appearance of each name keeps its place). Finally the
//! kubelet's limits: at most 3 nameservers, and at most 32 search paths of at most 253
//! characters each and 2048 characters in all, trimmed with a warning for the caller to
//! report (as the kubelet reports a `DNSConfigForming` event).
//!
//! What the API's validation refuses is refused here too (an `Err` naming the field), so a
//! pod that bypassed admission cannot make the file say what Kubernetes never would. One
//! refusal goes further than Kubernetes: an option name or value with whitespace or a control
//! character, which would break the file's lines.

use std::net::IpAddr;

use minik_api::k8s_openapi::api::core::v1::{Pod, PodDNSConfig, PodSpec};
use minik_api::FieldPath;

/// The most nameservers a resolver reads (glibc's `MAXNS`), the kubelet's limit.
pub const MAX_NAMESERVERS: usize = 3;
/// The most search paths the kubelet writes (Kubernetes' `MaxDNSSearchPaths`).
pub const MAX_SEARCH_PATHS: usize = 32;
/// The most characters of the search line, spaces included (`MaxDNSSearchListChars`).
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
/// The longest search path kept: some resolvers (glibc 2.28) abort on a longer one.
pub const MAX_SEARCH_PATH_CHARS: usize = 253;

/// The options of the cluster policies.
const CLUSTER_OPTIONS: &str = "ndots:5";

/// The node's cluster DNS, as the kubelet's `--cluster-dns` and `--cluster-domain` give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDnsConfig {
    /// The address pods ask: the ClusterIP of `kube-system/kube-dns`.
    pub nameserver: IpAddr,
    /// The cluster domain, such as `cluster.local`.
    pub domain: String,
}

/// A pod's resolv.conf and what the caller should report about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvConf {
    /// The file's text: `search`, `nameserver` and `options` lines, each only when it has
    /// something to say (an empty text when nothing does).
    pub text: String,
    /// What did not go as the pod asked, for Warning events on the pod.
    pub warnings: Vec<DnsWarning>,
}

/// Something the kubelet would report as a Warning event while forming a pod's DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsWarning {
    /// The event's reason: `MissingClusterDNS` or `DNSConfigForming`, as the kubelet's.
    pub reason: &'static str,
    pub message: String,
}

/// The parts of a resolv.conf, before the limits and rendering.
#[derive(Debug, Default)]
struct DnsConfig {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

/// What a `dnsPolicy` takes its base from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Cluster,
    Host,
    Empty,
}

/// The resolv.conf of `pod` on a node whose cluster DNS is `cluster` (None when the node has
/// none) and whose own resolv.conf reads `host_resolv_conf`. `Err` names the field that the
/// API's validation would have refused, or says why the cluster domain is not one.
pub fn resolv_conf(
    pod: &Pod,
    cluster: Option<&ClusterDnsConfig>,
    host_resolv_conf: &str,
) -> Result<ResolvConf, String> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    check_pod(pod, spec)?;
    if let Some(cluster) = cluster {
        check_domain(&cluster.domain)?;
    }

    let mut warnings = Vec::new();
    let policy = match spec.dns_policy.as_deref() {
        None | Some("") => "ClusterFirst",
        Some(policy) => policy,
    };
    let base = match policy {
        "None" => Base::Empty,
        "ClusterFirstWithHostNet" => Base::Cluster,
        "ClusterFirst" if spec.host_network != Some(true) => Base::Cluster,
        // A hostNetwork pod with ClusterFirst gets the host's DNS, as on Kubernetes.
        "ClusterFirst" | "Default" => Base::Host,
        other => return Err(format!("spec.dnsPolicy: Unsupported value: {other:?}")),
    };

    let mut config = match (base, cluster) {
        (Base::Empty, _) => DnsConfig::default(),
        (Base::Host, _) => parse_host(host_resolv_conf),
        (Base::Cluster, Some(cluster)) => {
            let host = parse_host(host_resolv_conf);
            DnsConfig {
                servers: vec![cluster.nameserver.to_string()],
                searches: cluster_searches(pod, &cluster.domain, host.searches),
                options: vec![CLUSTER_OPTIONS.to_string()],
            }
        }
        (Base::Cluster, None) => {
            warnings.push(DnsWarning {
                reason: "MissingClusterDNS",
                message: "ClusterDNS is not configured: the node agent has no cluster DNS \
                          address and cannot create Pod using \"ClusterFirst\" policy. Falling \
                          back to \"Default\" policy."
                    .to_string(),
            });
            parse_host(host_resolv_conf)
        }
    };
    if let Some(pod_config) = spec.dns_config.as_ref() {
        append_pod_config(&mut config, pod_config);
    }
    fit_limits(&mut config, &mut warnings);
    Ok(ResolvConf {
        text: render(&config),
        warnings,
    })
}

/// The kubelet's `parseResolvConf`: `nameserver` lines accumulate, the last `search` line
/// wins, `options` lines accumulate with one option per name (the later one wins), `#`
/// comments and other keywords (`domain`, `sortlist`) are ignored. A trailing dot of a search
/// path is dropped so that it counts once, except for `.` itself (systemd-resolved's "no
/// search domain"), which is kept.
fn parse_host(text: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        let mut fields = trimmed.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(server) = fields.next() {
                    config.servers.push(server.to_string());
                }
            }
            Some("search") => {
                config.searches = fields
                    .map(|search| match search {
                        "." => search,
                        _ => search.strip_suffix('.').unwrap_or(search),
                    })
                    .map(str::to_string)
                    .collect();
            }
            Some("options") => {
                for option in fields {
                    let name = option.split(':').next().unwrap_or(option);
                    let known = config
                        .options
                        .iter_mut()
                        .find(|known| known.split(':').next() == Some(name));
                    match known {
                        Some(known) => *known = option.to_string(),
                        None => config.options.push(option.to_string()),
                    }
                }
            }
            _ => {}
        }
    }
    config
}

/// `<ns>.svc.<domain> svc.<domain> <domain>`, then the host's search paths, without
/// duplicates; only the host's when the domain is empty.
fn cluster_searches(pod: &Pod, domain: &str, host: Vec<String>) -> Vec<String> {
    if domain.is_empty() {
        return host;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut searches = vec![
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ];
    searches.extend(host);
    without_duplicates(searches)
}

/// The kubelet's `appendDNSConfig`.
fn append_pod_config(config: &mut DnsConfig, pod: &PodDNSConfig) {
    let servers = std::mem::take(&mut config.servers);
    config.servers = without_duplicates(
        servers
            .into_iter()
            .chain(pod.nameservers.iter().flatten().cloned()),
    );
    let searches = std::mem::take(&mut config.searches);
    config.searches = without_duplicates(
        searches
            .into_iter()
            .chain(pod.searches.iter().flatten().cloned()),
    );

    // Options by name: `name:value` or a bare `name`; a later one replaces an earlier one.
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| {
        match merged.iter_mut().find(|(known, _)| known == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => merged.push((name.to_string(), value.to_string())),
        };
    };
    for option in &config.options {
        match option.split_once(':') {
            Some((name, value)) => set(name, value),
            None => set(option, ""),
        }
    }
    for option in pod.options.iter().flatten() {
        set(
            option.name.as_deref().unwrap_or_default(),
            option.value.as_deref().unwrap_or_default(),
        );
    }
    config.options = merged
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                name
            } else {
                format!("{name}:{value}")
            }
        })
        .collect();
}

/// The kubelet's `formDNSConfigFitsLimits`: the first 3 nameservers; the first 32 search
/// paths, without those longer than 253 characters, and without the last ones while the line
/// is longer than 2048 characters. Each trimming is reported with what is kept.
fn fit_limits(config: &mut DnsConfig, warnings: &mut Vec<DnsWarning>) {
    if config.servers.len() > MAX_NAMESERVERS {
        config.servers.truncate(MAX_NAMESERVERS);
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the \
                 applied nameserver line is: {}",
                config.servers.join(" ")
            ),
        });
    }

    let mut exceeded = false;
    if config.searches.len() > MAX_SEARCH_PATHS {
        config.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = config.searches.len();
    config
        .searches
        .retain(|search| search.len() <= MAX_SEARCH_PATH_CHARS);
    exceeded |= config.searches.len() != before;
    while search_line_length(&config.searches) > MAX_SEARCH_LIST_CHARS {
        config.searches.pop();
        exceeded = true;
    }
    if exceeded {
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the \
                 applied search line is: {}",
                config.searches.join(" ")
            ),
        });
    }
}

/// The length of the search paths joined by single spaces.
fn search_line_length(searches: &[String]) -> usize {
    let characters: usize = searches.iter().map(String::len).sum();
    characters + searches.len().saturating_sub(1)
}

/// The file as containerd writes a sandbox's DNS configuration.
fn render(config: &DnsConfig) -> String {
    let mut text = String::new();
    if !config.searches.is_empty() {
        text.push_str("search ");
        text.push_str(&config.searches.join(" "));
        text.push('\n');
    }
    for server in &config.servers {
        text.push_str("nameserver ");
        text.push_str(server);
        text.push('\n');
    }
    if !config.options.is_empty() {
        text.push_str("options ");
        text.push_str(&config.options.join(" "));
        text.push('\n');
    }
    text
}

fn without_duplicates(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// What the API's validation says about the pod's `dnsPolicy` and `dnsConfig` (one rule, kept
/// in `minik_api::validation`), the search line's length that Kubernetes also refuses, and
/// options that would break the file's lines.
fn check_pod(pod: &Pod, spec: &PodSpec) -> Result<(), String> {
    let policy_path = FieldPath::new("spec").child("dnsPolicy");
    let config_path = FieldPath::new("spec").child("dnsConfig");
    let unset_policy = spec.dns_policy.as_deref().is_none_or(str::is_empty);
    let mut problems: Vec<String> = minik_api::validation::pod(pod)
        .into_iter()
        .filter(|error| {
            let field = error.field.as_str();
            // An unset policy is the default, ClusterFirst, here as after defaulting.
            (field == policy_path.as_str() && !unset_policy) || under(field, &config_path)
        })
        .map(|error| error.to_string())
        .collect();
    if let Some(config) = spec.dns_config.as_ref() {
        let searches = config.searches.as_deref().unwrap_or_default();
        if search_line_length(searches) > MAX_SEARCH_LIST_CHARS {
            problems.push(format!(
                "{}: Invalid value: {:?}: must not have more than {MAX_SEARCH_LIST_CHARS} \
                 characters (including spaces) in the search list",
                config_path.child("searches"),
                searches.join(" ")
            ));
        }
        for (i, option) in config.options.iter().flatten().enumerate() {
            let path = config_path.child("options").index(i);
            for (field, value) in [("name", &option.name), ("value", &option.value)] {
                let value = value.as_deref().unwrap_or_default();
                if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    problems.push(format!(
                        "{}: Invalid value: {value:?}: must not contain whitespace or control \
                         characters",
                        path.child(field)
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Whether `field` is `path` or a field below it.
fn under(field: &str, path: &FieldPath) -> bool {
    field
        .strip_prefix(path.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The cluster domain must be a DNS name (a trailing dot allowed), or empty (no cluster
/// search paths, as the kubelet without `--cluster-domain`).
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Ok(());
    }
    let problems = minik_api::names::dns1123_subdomain(domain.strip_suffix('.').unwrap_or(domain));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the cluster domain {domain:?} is not a DNS name: {}",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use minik_api::k8s_openapi::api::core::v1::{Container, PodDNSConfigOption};
    use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use proptest::prelude::*;

    use super::*;

    const HOST: &str = "# generated by the host\n\
                        nameserver 192.0.2.53\n\
                        nameserver 192.0.2.54\n\
                        search corp.example lab.example.\n\
                        options timeout:2 attempts:3\n";

    fn cluster() -> ClusterDnsConfig {
        ClusterDnsConfig {
            nameserver: "10.96.0.10".parse().expect("an address"),
            domain: "cluster.local".to_string(),
        }
    }

    fn pod(policy: Option<&str>, host_network: bool, config: Option<PodDNSConfig>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("shop".to_string()),
                name: Some("web".to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".to_string(),
                    image: Some("nginx".to_string()),
                    ..Container::default()
                }],
                dns_policy: policy.map(str::to_string),
                host_network: host_network.then_some(true),
                dns_config: config,
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn dns_config(
        nameservers: &[&str],
        searches: &[&str],
        options: &[(&str, Option<&str>)],
    ) -> PodDNSConfig {
        let strings = |items: &[&str]| {
            (!items.is_empty()).then(|| items.iter().map(|s| s.to_string()).collect())
        };
        PodDNSConfig {
            nameservers: strings(nameservers),
            searches: strings(searches),
            options: (!options.is_empty()).then(|| {
                options
                    .iter()
                    .map(|(name, value)| PodDNSConfigOption {
                        name: Some(name.to_string()),
                        value: value.map(str::to_string),
                    })
                    .collect()
            }),
        }
    }

    fn text(pod: &Pod, cluster: Option<&ClusterDnsConfig>, host: &str) -> String {
        let conf = resolv_conf(pod, cluster, host).expect("a resolv.conf");
        assert_eq!(conf.warnings, Vec::new(), "no warnings expected");
        conf.text
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_search_paths() {
        let expected = "search shop.svc.cluster.local svc.cluster.local cluster.local \
                        corp.example lab.example\n\
                        nameserver 10.96.0.10\n\
                        options ndots:5\n";
        assert_eq!(
            text(
                &pod(Some("ClusterFirst"), false, None),
                Some(&cluster()),
                HOST
            ),
            expected
        );
        // Unset is ClusterFirst, the default.
        assert_eq!(
            text(&pod(None, false, None), Some(&cluster()), HOST),
            expected
        );
    }

    #[test]
    fn cluster_first_on_the_host_network_falls_back_to_default() {
        let expected = "search corp.example lab.example\n\
                        nameserver 192.0.2.53\n\
                        nameserver 192.0.2.54\n\
                        options timeout:2 attempts:3\n";
        assert_eq!(
            text(
                &pod(Some("ClusterFirst"), true, None),
                Some(&cluster()),
                HOST
            ),
            expected
        );
        assert_eq!(
            text(&pod(Some("Default"), false, None), Some(&cluster()), HOST),
            expected
        );
    }

    #[test]
    fn cluster_first_with_host_net_keeps_the_cluster_dns_on_the_host_network() {
        let got = text(
            &pod(Some("ClusterFirstWithHostNet"), true, None),
            Some(&cluster()),
            HOST,
        );
        assert_eq!(
            got,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example \
             lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn without_cluster_dns_cluster_first_falls_back_to_default_with_a_warning() {
        for policy in ["ClusterFirst", "ClusterFirstWithHostNet"] {
            let conf = resolv_conf(&pod(Some(policy), false, None), None, HOST).expect("a file");
            assert_eq!(
                conf.text,
                "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
                 options timeout:2 attempts:3\n"
            );
            assert_eq!(conf.warnings.len(), 1, "{policy}");
            assert_eq!(conf.warnings[0].reason, "MissingClusterDNS");
            assert!(conf.warnings[0]
                .message
                .contains("ClusterDNS is not configured"));
        }
        // Default never needed it: no warning.
        let conf = resolv_conf(&pod(Some("Default"), false, None), None, HOST).expect("a file");
        assert!(conf.warnings.is_empty());
    }

    #[test]
    fn none_is_only_the_pods_dns_config() {
        let config = dns_config(
            &["1.2.3.4"],
            &["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
            &[("ndots", Some("2")), ("edns0", None)],
        );
        let got = text(
            &pod(Some("None"), false, Some(config)),
            Some(&cluster()),
            HOST,
        );
        assert_eq!(
            got,
            "search ns1.svc.cluster-domain.example my.dns.search.suffix\n\
             nameserver 1.2.3.4\n\
             options ndots:2 edns0\n"
        );
    }

    #[test]
    fn dns_config_is_appended_without_duplicates_and_options_merge_by_name() {
        let config = dns_config(
            &["10.96.0.10", "192.0.2.99"],
            &["cluster.local", "extra.example"],
            &[
                ("ndots", Some("2")),
                ("edns0", None),
                ("timeout", Some("1")),
            ],
        );
        let got = text(
            &pod(Some("ClusterFirst"), false, Some(config)),
            Some(&cluster()),
            HOST,
        );
        assert_eq!(
            got,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example \
             lab.example extra.example\n\
             nameserver 10.96.0.10\n\
             nameserver 192.0.2.99\n\
             options ndots:2 edns0 timeout:1\n"
        );
        // On Default the host's options are the base: the pod's value wins, in place.
        let config = dns_config(&[], &[], &[("attempts", Some("5")), ("rotate", None)]);
        let got = text(&pod(Some("Default"), false, Some(config)), None, HOST);
        assert!(
            got.ends_with("options timeout:2 attempts:5 rotate\n"),
            "{got}"
        );
    }

    #[test]
    fn an_option_without_a_value_replaces_one_with_a_value() {
        let config = dns_config(&[], &[], &[("ndots", None)]);
        let got = text(&pod(None, false, Some(config)), Some(&cluster()), "");
        assert!(got.ends_with("options ndots\n"), "{got}");
    }

    #[test]
    fn host_resolv_conf_is_read_as_the_kubelet_reads_it() {
        let host = "  # a comment\n\
                    nameserver 192.0.2.1\n\
                    nameserver\n\
                    search first.example\n\
                    domain ignored.example\n\
                    search second.example. third.example .\n\
                    options ndots:1 timeout:2\n\
                    options rotate ndots:3\n\
                    nameserver 192.0.2.2 extra words\r\n";
        let got = text(&pod(Some("Default"), false, None), None, host);
        assert_eq!(
            got,
            "search second.example third.example .\n\
             nameserver 192.0.2.1\n\
             nameserver 192.0.2.2\n\
             options ndots:3 timeout:2 rotate\n"
        );
        assert_eq!(text(&pod(Some("Default"), false, None), None, ""), "");
    }

    #[test]
    fn nameservers_beyond_three_are_dropped_with_a_warning() {
        let config = dns_config(&["192.0.2.10", "192.0.2.11", "192.0.2.12"], &[], &[]);
        let conf =
            resolv_conf(&pod(None, false, Some(config)), Some(&cluster()), HOST).expect("a file");
        let servers: Vec<&str> = conf
            .text
            .lines()
            .filter_map(|line| line.strip_prefix("nameserver "))
            .collect();
        assert_eq!(servers, ["10.96.0.10", "192.0.2.10", "192.0.2.11"]);
        assert_eq!(conf.warnings.len(), 1);
        assert_eq!(conf.warnings[0].reason, "DNSConfigForming");
        assert!(conf.warnings[0]
            .message
            .ends_with("the applied nameserver line is: 10.96.0.10 192.0.2.10 192.0.2.11"));
    }

    #[test]
    fn search_paths_beyond_the_limits_are_dropped_with_a_warning() {
        // 30 host paths after the 3 of the cluster: 33, one too many.
        let host_searches: Vec<String> = (0..30).map(|i| format!("s{i}.example")).collect();
        let host = format!("nameserver 192.0.2.1\nsearch {}\n", host_searches.join(" "));
        let conf = resolv_conf(&pod(None, false, None), Some(&cluster()), &host).expect("a file");
        let searches = search_paths(&conf.text);
        assert_eq!(searches.len(), MAX_SEARCH_PATHS);
        assert_eq!(searches.last().map(String::as_str), Some("s28.example"));
        assert_eq!(conf.warnings.len(), 1);
        assert!(conf.warnings[0]
            .message
            .starts_with("Search Line limits were exceeded"));

        // A host path longer than 253 characters is left out, the rest kept.
        let long = format!("{}.example", "a".repeat(250));
        let host = format!("search {long} kept.example\n");
        let conf = resolv_conf(&pod(Some("Default"), false, None), None, &host).expect("a file");
        assert_eq!(search_paths(&conf.text), ["kept.example"]);
        assert_eq!(conf.warnings.len(), 1);

        // More than 2048 characters: the last paths go until the line fits.
        let host_searches: Vec<String> = (0..12)
            .map(|i| format!("{}{i:02}.example", "b".repeat(200)))
            .collect();
        let host = format!("search {}\n", host_searches.join(" "));
        let conf = resolv_conf(&pod(Some("Default"), false, None), None, &host).expect("a file");
        let searches = search_paths(&conf.text);
        assert_eq!(searches.len(), 9);
        assert!(searches.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
        assert_eq!(conf.warnings.len(), 1);
    }

    fn search_paths(text: &str) -> Vec<String> {
        text.lines()
            .find_map(|line| line.strip_prefix("search "))
            .map(|line| line.split(' ').map(str::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_empty_cluster_domain_adds_no_search_paths() {
        let mut config = cluster();
        config.domain = String::new();
        let got = text(&pod(None, false, None), Some(&config), HOST);
        assert_eq!(
            got,
            "search corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn what_validation_refuses_is_refused_with_its_field() {
        let cases: Vec<(Pod, &str)> = vec![
            (
                pod(Some("Google"), false, None),
                "spec.dnsPolicy: Unsupported value: \"Google\"",
            ),
            (
                pod(Some("None"), false, None),
                "spec.dnsConfig: Required value",
            ),
            (
                pod(
                    Some("None"),
                    false,
                    Some(dns_config(&[], &["a.example"], &[])),
                ),
                "spec.dnsConfig.nameservers: Required value",
            ),
            (
                pod(None, false, Some(dns_config(&["not-an-ip"], &[], &[]))),
                "spec.dnsConfig.nameservers[0]: Invalid value: \"not-an-ip\"",
            ),
            (
                pod(
                    None,
                    false,
                    Some(dns_config(
                        &["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"],
                        &[],
                        &[],
                    )),
                ),
                "spec.dnsConfig.nameservers: Invalid value",
            ),
            (
                pod(None, false, Some(dns_config(&[], &["Bad_Domain"], &[]))),
                "spec.dnsConfig.searches[0]: Invalid value: \"Bad_Domain\"",
            ),
            (
                pod(None, false, Some(dns_config(&[], &[], &[("", Some("1"))]))),
                "spec.dnsConfig.options[0]: Required value",
            ),
            (
                pod(
                    None,
                    false,
                    Some(dns_config(
                        &[],
                        &[],
                        &[("ndots", Some("1\nnameserver 6.6.6.6"))],
                    )),
                ),
                "spec.dnsConfig.options[0].value: Invalid value",
            ),
        ];
        for (pod, expected) in cases {
            let error = resolv_conf(&pod, Some(&cluster()), HOST).expect_err(expected);
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        }
        let long: Vec<String> = (0..9)
            .map(|i| format!("{}{i}.example", "c".repeat(240)))
            .collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        let error = resolv_conf(
            &pod(None, false, Some(dns_config(&[], &refs, &[]))),
            None,
            "",
        )
        .expect_err("a search line over 2048 characters");
        assert!(
            error.contains("must not have more than 2048 characters"),
            "{error}"
        );

        let mut bad = cluster();
        bad.domain = "cluster local".to_string();
        let error =
            resolv_conf(&pod(None, false, None), Some(&bad), HOST).expect_err("a bad domain");
        assert!(
            error.starts_with("the cluster domain \"cluster local\""),
            "{error}"
        );
    }

    /// Pods that mostly pass validation (so that most cases reach the merging and the limits),
    /// with some that do not.
    fn arbitrary_pod() -> impl Strategy<Value = Pod> {
        let policy = prop_oneof![
            2 => Just(None),
            2 => Just(Some("ClusterFirst".to_string())),
            2 => Just(Some("ClusterFirstWithHostNet".to_string())),
            2 => Just(Some("Default".to_string())),
            2 => Just(Some("None".to_string())),
            1 => ".{0,12}".prop_map(Some),
        ];
        let nameserver = prop_oneof![
            5 => any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            5 => any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
            1 => ".{0,20}",
        ];
        let search = prop_oneof![
            20 => "[a-z]{1,60}(\\.[a-z]{1,60}){0,3}\\.?",
            1 => Just(".".to_string()),
            1 => ".{0,300}",
        ];
        let option = prop_oneof![
            10 => ("[a-z0-9-]{1,10}", proptest::option::of("[0-9]{1,2}")),
            1 => (".{0,10}", proptest::option::of(".{0,5}")),
        ];
        let config = proptest::option::of((
            proptest::collection::vec(nameserver, 0..4),
            prop_oneof![
                6 => proptest::collection::vec(search.clone(), 0..10),
                1 => proptest::collection::vec(search, 10..40),
            ],
            proptest::collection::vec(option, 0..6),
        ));
        (policy, any::<bool>(), config).prop_map(|(policy, host_network, config)| {
            let config = config.map(|(nameservers, searches, options)| PodDNSConfig {
                nameservers: Some(nameservers),
                searches: Some(searches),
                options: Some(
                    options
                        .into_iter()
                        .map(|(name, value)| PodDNSConfigOption {
                            name: Some(name),
                            value,
                        })
                        .collect(),
                ),
            });
            pod(policy.as_deref(), host_network, config)
        })
    }

    fn arbitrary_host() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            "nameserver [0-9.]{1,15}",
            "search( [a-z.]{1,300}){0,40}",
            "options( [a-z:0-9]{1,10}){0,5}",
            "#.{0,20}",
            ".{0,80}",
        ];
        proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #[test]
        fn no_input_panics_and_the_file_stays_within_the_limits(
            pod in arbitrary_pod(),
            cluster in proptest::option::of((
                prop_oneof![5 => "[a-z]{1,10}(\\.[a-z]{1,10}){0,2}", 1 => ".{0,10}"],
                any::<std::net::IpAddr>(),
            )),
            host in arbitrary_host(),
        ) {
            let cluster = cluster.map(|(domain, nameserver)| ClusterDnsConfig { nameserver, domain });
            let Ok(conf) = resolv_conf(&pod, cluster.as_ref(), &host) else {
                return Ok(());
            };
            let mut servers = 0;
            let mut search_lines = 0;
            let mut option_lines = 0;
            for line in conf.text.lines() {
                if let Some(list) = line.strip_prefix("search ") {
                    search_lines += 1;
                    let paths: Vec<&str> = list.split(' ').collect();
                    prop_assert!(paths.len() <= MAX_SEARCH_PATHS, "{} paths", paths.len());
                    prop_assert!(list.len() <= MAX_SEARCH_LIST_CHARS, "{} characters", list.len());
                    prop_assert!(paths.iter().all(|p| !p.is_empty() && p.len() <= MAX_SEARCH_PATH_CHARS));
                } else if line.starts_with("nameserver ") {
                    servers += 1;
                    prop_assert_eq!(line.split(' ').count(), 2);
                } else if line.starts_with("options ") {
                    option_lines += 1;
                } else {
                    prop_assert!(false, "a line that is none of the three: {:?}", line);
                }
            }
            prop_assert!(servers <= MAX_NAMESERVERS);
            prop_assert!(search_lines <= 1 && option_lines <= 1);
            prop_assert!(conf.text.is_empty() || conf.text.ends_with('\n'));
        }
    }
}
