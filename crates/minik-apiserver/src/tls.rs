//! The server's side of TLS (docs/tls.md): the cluster CA and the serving certificate under
//! `DATA_DIR/tls/` (made on first start, re-issued when the names it must carry change, renewed
//! while serving once two thirds of its validity have passed), or the operator's own
//! certificate, re-read when its file changes; the administrator's client certificate; the
//! certificates of the node agents' endpoints, signed from their requests; and the client
//! configuration the server reaches those endpoints with.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minik_tls::{certified_key, Ca, Leaf, ServingCert, TlsError, Usage};

/// How long the certificates the server issues itself are valid: a year, as k3s' and kubeadm's.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// The user and group of the administrator's client certificate (kubeadm's `admin.conf`).
pub const ADMIN_USER: &str = "admin";
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of node certificates (`system:node:NAME` users).
pub const NODES_GROUP: &str = "system:nodes";

/// Where the TLS files are and what the serving certificate must name.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// `DATA_DIR/tls`.
    pub dir: PathBuf,
    /// The DNS names the serving certificate carries (besides the built-in ones).
    pub dns_names: Vec<String>,
    /// The addresses it carries (`minik server` puts the `kubernetes` Service's ClusterIP
    /// first: [`TlsSettings::naming_service_ip`]).
    pub ips: Vec<IpAddr>,
    /// How long the certificates the server issues are valid.
    pub lifetime: Duration,
    /// The operator's own serving certificate and key, used instead of one the CA issues.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// The names every serving certificate of the API server carries: those in-cluster clients
/// use for the `kubernetes` Service, and loopback (with the loopback addresses; the Service's
/// ClusterIP is among the settings' addresses).
pub const BUILT_IN_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

impl TlsSettings {
    /// These settings with the `kubernetes` Service's usual ClusterIP (the first host address
    /// of `service_cidr`, [`crate::master::service_ip`]) as the first of the addresses: the
    /// address in-cluster clients connect to.
    pub fn naming_service_ip(mut self, service_cidr: minik_api::cidr::Cidr) -> TlsSettings {
        if let Some(ip) = crate::master::service_ip(service_cidr) {
            self.ips.retain(|other| *other != ip);
            self.ips.insert(0, ip);
        }
        self
    }
}

/// Where the serving certificate comes from.
enum Source {
    /// Issued by the cluster CA for these names, kept in `DATA_DIR/tls/server.{crt,key}`.
    Issued { leaf: Leaf },
    /// The operator's files: re-read when they change.
    Files {
        cert: PathBuf,
        key: PathBuf,
        seen: Option<SystemTime>,
    },
}

/// The cluster's TLS on the server.
pub struct ClusterTls {
    ca: Ca,
    settings: TlsSettings,
    serving: Arc<ServingCert>,
    source: std::sync::Mutex<Source>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    let result = if private {
        minik_tls::write_private_file(path, text)
    } else {
        minik_tls::write_private_file(path, text).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        })
    };
    result.map_err(|e| TlsError(format!("cannot write {}: {e}", path.display())))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The text of the names a certificate was issued for, kept beside it to notice a change.
fn names_record(leaf: &Leaf) -> String {
    let mut lines: Vec<String> = leaf.dns_names.clone();
    lines.extend(leaf.ips.iter().map(IpAddr::to_string));
    lines.join("\n") + "\n"
}

impl ClusterTls {
    /// The CA and serving certificate in `settings.dir`, made or re-issued as needed.
    pub fn open(settings: TlsSettings) -> Result<ClusterTls, TlsError> {
        let ca = Ca::load_or_create(&settings.dir)?;
        let (serving, source) =
            match (&settings.cert_file, &settings.key_file) {
                (Some(cert), Some(key)) => {
                    let loaded = load_files(cert, key)?;
                    let seen = modified(cert).max(modified(key));
                    (
                        ServingCert::new(loaded),
                        Source::Files {
                            cert: cert.clone(),
                            key: key.clone(),
                            seen,
                        },
                    )
                }
                (None, None) => {
                    let leaf = server_leaf(&settings);
                    let key = kept_or_issued(&ca, &settings, &leaf, SystemTime::now())?;
                    (ServingCert::new(key), Source::Issued { leaf })
                }
                _ => return Err(TlsError(
                    "--tls-cert-file and --tls-private-key-file go together: give both or neither"
                        .into(),
                )),
            };
        let tls = ClusterTls {
            ca,
            settings,
            serving,
            source: std::sync::Mutex::new(source),
        };
        tls.admin_certificate(SystemTime::now())?;
        Ok(tls)
    }

    /// The cluster CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The administrator's client certificate and key files (`DATA_DIR/tls/client-admin.*`,
    /// user `admin` in group `system:masters`), issued anew when missing or due for renewal.
    pub fn admin_certificate(&self, now: SystemTime) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert = self.settings.dir.join("client-admin.crt");
        let key = self.settings.dir.join("client-admin.key");
        let due = std::fs::read_to_string(&cert)
            .ok()
            .and_then(|pem| {
                minik_tls::certified_key(&pem, &std::fs::read_to_string(&key).ok()?).ok()
            })
            .and_then(|k| k.cert.first().and_then(|c| minik_tls::validity(c).ok()))
            .map(|(nb, na)| minik_tls::renewal_due(nb, na));
        if due.is_none_or(|due| now >= due) {
            let issued = self.ca.issue(
                &Leaf {
                    common_name: ADMIN_USER.into(),
                    organization: Some(MASTERS_GROUP.into()),
                    dns_names: Vec::new(),
                    ips: Vec::new(),
                    usage: Usage::Client,
                },
                self.settings.lifetime,
                now,
            )?;
            write(&key, &issued.key_pem, true)?;
            write(&cert, &issued.cert_pem, true)?;
        }
        Ok((cert, key))
    }

    /// The rustls configuration the API is served with (client certificates of the cluster
    /// CA accepted).
    pub fn server_config(&self) -> Result<Arc<minik_tls::rustls::ServerConfig>, TlsError> {
        minik_tls::server_config(self.serving.clone(), Some(self.ca.pem()))
    }

    /// The client configuration for calls to node agents: only the cluster CA is trusted.
    pub fn agents_client_config(&self) -> Result<minik_tls::rustls::ClientConfig, TlsError> {
        minik_tls::client_config(self.ca.pem(), None)
    }

    /// The certificate of node `node`'s agent endpoint for the key of `request` (PEM), valid
    /// for the node's name and `addresses`.
    pub fn sign_node_serving(
        &self,
        node: &str,
        request: &str,
        addresses: &[IpAddr],
    ) -> Result<String, TlsError> {
        let leaf = Leaf {
            common_name: format!("system:node:{node}"),
            organization: Some(NODES_GROUP.into()),
            dns_names: vec![node.to_owned()],
            ips: addresses.to_vec(),
            usage: Usage::Server,
        };
        self.ca
            .sign_request(request, &leaf, self.settings.lifetime, SystemTime::now())
    }

    /// Renews the serving certificate (or re-reads the operator's changed files) when due;
    /// answers when to look again.
    pub fn refresh(&self, now: SystemTime) -> Result<SystemTime, TlsError> {
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *source {
            Source::Issued { leaf } => {
                let due = self.serving.renewal_due()?;
                if now >= due {
                    let key = issue_and_keep(&self.ca, &self.settings, leaf, now)?;
                    self.serving.replace(key);
                    tracing::info!("renewed the API server's serving certificate");
                }
                self.admin_certificate(now)?;
                Ok(self
                    .serving
                    .renewal_due()?
                    .max(now + Duration::from_secs(1)))
            }
            Source::Files { cert, key, seen } => {
                let now_seen = modified(cert).max(modified(key));
                if now_seen != *seen {
                    self.serving.replace(load_files(cert, key)?);
                    *seen = now_seen;
                    tracing::info!(cert = %cert.display(), "re-read the serving certificate");
                }
                Ok(now + Duration::from_secs(60))
            }
        }
    }

    /// Renews what is due until the task is aborted; a failure is logged and tried again.
    pub async fn keep_fresh(self: Arc<Self>) {
        loop {
            let next = match self.refresh(SystemTime::now()) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "cannot renew the serving certificate");
                    SystemTime::now() + Duration::from_secs(60)
                }
            };
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(3600));
            tokio::time::sleep(wait).await;
        }
    }
}

fn server_leaf(settings: &TlsSettings) -> Leaf {
    let mut dns_names: Vec<String> = BUILT_IN_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for name in &settings.dns_names {
        if !dns_names.contains(name) {
            dns_names.push(name.clone());
        }
    }
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ];
    for ip in &settings.ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    Leaf {
        common_name: "minik-apiserver".into(),
        organization: None,
        dns_names,
        ips,
        usage: Usage::Server,
    }
}

fn load_files(
    cert: &Path,
    key: &Path,
) -> Result<Arc<minik_tls::rustls::sign::CertifiedKey>, TlsError> {
    let cert_pem = minik_tls::read_pem(cert, "serving certificate")?;
    let key_pem = minik_tls::read_pem(key, "serving key")?;
    certified_key(&cert_pem, &key_pem)
        .map_err(|e| TlsError(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// The kept serving certificate if it was issued by this CA for these names and is not due
/// for renewal; else a new one, kept.
fn kept_or_issued(
    ca: &Ca,
    settings: &TlsSettings,
    leaf: &Leaf,
    now: SystemTime,
) -> Result<Arc<minik_tls::rustls::sign::CertifiedKey>, TlsError> {
    let (cert, key, names) = serving_files(&settings.dir);
    let kept = (|| {
        if std::fs::read_to_string(&names).ok()? != names_record(leaf) {
            return None;
        }
        let loaded = load_files(&cert, &key).ok()?;
        let leaf_cert = loaded.cert.first()?;
        let (nb, na) = minik_tls::validity(leaf_cert).ok()?;
        let issued_here = loaded.cert.len() == 1 && ca.issued(leaf_cert);
        (issued_here && now < minik_tls::renewal_due(nb, na)).then_some(loaded)
    })();
    match kept {
        Some(key) => Ok(key),
        None => issue_and_keep(ca, settings, leaf, now),
    }
}

fn serving_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.names"),
    )
}

fn issue_and_keep(
    ca: &Ca,
    settings: &TlsSettings,
    leaf: &Leaf,
    now: SystemTime,
) -> Result<Arc<minik_tls::rustls::sign::CertifiedKey>, TlsError> {
    let issued = ca.issue(leaf, settings.lifetime, now)?;
    let (cert, key, names) = serving_files(&settings.dir);
    write(&key, &issued.key_pem, true)?;
    write(&cert, &issued.cert_pem, false)?;
    write(&names, &names_record(leaf), false)?;
    certified_key(&issued.cert_pem, &issued.key_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, lifetime: Duration) -> TlsSettings {
        TlsSettings {
            dir: dir.join("tls"),
            dns_names: vec!["api.example".into()],
            ips: vec!["10.1.2.3".parse().unwrap()],
            lifetime,
            cert_file: None,
            key_file: None,
        }
    }

    fn served_pem(tls: &ClusterTls) -> Vec<u8> {
        tls.serving.current().cert[0].to_vec()
    }

    #[test]
    fn the_serving_certificate_is_kept_reissued_for_new_names_and_renewed_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let first = ClusterTls::open(settings(dir.path(), day)).unwrap();
        let again = ClusterTls::open(settings(dir.path(), day)).unwrap();
        assert_eq!(
            served_pem(&first),
            served_pem(&again),
            "kept across restarts"
        );
        assert_eq!(first.ca().pem(), again.ca().pem());
        let mut more = settings(dir.path(), day);
        more.dns_names.push("other.example".into());
        let renamed = ClusterTls::open(more).unwrap();
        assert_ne!(
            served_pem(&first),
            served_pem(&renamed),
            "new names, new certificate"
        );
        let before = served_pem(&renamed);
        let later = SystemTime::now() + day * 2 / 3 + Duration::from_secs(60);
        renamed.refresh(SystemTime::now()).unwrap();
        assert_eq!(served_pem(&renamed), before, "not due yet");
        let next = renamed.refresh(later).unwrap();
        assert_ne!(served_pem(&renamed), before, "renewed when due");
        assert!(next > later);
        use std::os::unix::fs::PermissionsExt;
        for key in [
            "ca.key",
            "server.key",
            "client-admin.key",
            "client-admin.crt",
        ] {
            let mode = std::fs::metadata(dir.path().join("tls").join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn the_certificate_names_the_kubernetes_service_of_the_service_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let range: minik_api::cidr::Cidr = "10.96.0.0/12".parse().unwrap();
        let named = settings(dir.path(), DEFAULT_CERT_LIFETIME).naming_service_ip(range);
        assert_eq!(
            named.ips,
            [
                "10.96.0.1".parse::<IpAddr>().unwrap(),
                "10.1.2.3".parse().unwrap()
            ]
        );
        // Asking again changes nothing: the certificate's names stay the same.
        assert_eq!(named.clone().naming_service_ip(range).ips, named.ips);
        let leaf = server_leaf(&named);
        assert_eq!(
            leaf.ips,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap(),
                "10.96.0.1".parse().unwrap(),
                "10.1.2.3".parse().unwrap(),
            ]
        );
        let loopback = settings(dir.path(), DEFAULT_CERT_LIFETIME)
            .naming_service_ip(crate::loopback_service_cidr());
        assert!(!server_leaf(&loopback)
            .ips
            .contains(&"10.96.0.1".parse().unwrap()));
        assert!(server_leaf(&loopback)
            .ips
            .contains(&"127.96.0.1".parse().unwrap()));
    }

    #[test]
    fn operator_files_are_used_and_must_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("operator-ca", SystemTime::now()).unwrap();
        let issued = ca
            .issue(
                &Leaf {
                    common_name: "api".into(),
                    organization: None,
                    dns_names: vec!["api.example".into()],
                    ips: vec![],
                    usage: Usage::Server,
                },
                Duration::from_secs(3600),
                SystemTime::now(),
            )
            .unwrap();
        let cert = dir.path().join("op.crt");
        let key = dir.path().join("op.key");
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let mut s = settings(dir.path(), DEFAULT_CERT_LIFETIME);
        s.cert_file = Some(cert.clone());
        s.key_file = Some(key.clone());
        let tls = ClusterTls::open(s.clone()).unwrap();
        let served = served_pem(&tls);
        use minik_tls::rustls::pki_types::pem::PemObject;
        let expected = minik_tls::rustls::pki_types::CertificateDer::from_pem_slice(
            issued.cert_pem.as_bytes(),
        )
        .unwrap();
        assert_eq!(served, expected.to_vec());
        let mut half = s.clone();
        half.key_file = None;
        let err = ClusterTls::open(half).unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
        std::fs::write(&key, "not a key").unwrap();
        let err = ClusterTls::open(s).unwrap_err().to_string();
        assert!(err.contains("op.crt") && err.contains("op.key"), "{err}");
    }

    #[test]
    fn node_certificates_name_the_node_whatever_the_request_asks() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ClusterTls::open(settings(dir.path(), DEFAULT_CERT_LIFETIME)).unwrap();
        let (request, _key) = minik_tls::certificate_request("system:node:other").unwrap();
        let pem = tls
            .sign_node_serving("n1", &request, &["127.0.0.1".parse().unwrap()])
            .unwrap();
        use minik_tls::rustls::pki_types::pem::PemObject;
        let der =
            minik_tls::rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let who = minik_tls::client_identity(&der).unwrap();
        assert_eq!(who.user, "system:node:n1");
        assert!(tls.ca().issued(&der));
    }
}
