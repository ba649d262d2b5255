//! Image registries on loopback for the image tests: the real distribution registry
//! (`docker-registry serve`, optionally behind htpasswd) under a guard ([`Registry`]), small real
//! images built with umoci from the host's static busybox ([`build_busybox_layout`],
//! [`build_multiplatform_layout`], [`build_layered_layout`]), an nginx image built from Debian's
//! packages ([`build_debian_nginx_layout`]), all pushed or saved with skopeo
//! ([`push`], [`save_docker_archive`], [`save_oci_archive`]), and a bearer-token proxy in front
//! of a registry that can also misbehave on purpose ([`TokenProxy`], [`Fault`]).
//!
//! Nothing here reaches anything but 127.0.0.1 (or the address of a link a test made, given to
//! [`Registry::start_on`]), but for the Debian mirror the nginx image is installed from (once:
//! the build is cached). A test that needs a tool this host lacks asks
//! [`image_tools`] (or gets `None` from [`Registry::start`]), which calls
//! [`cannot_run`](crate::cannot_run): the test returns, and fails under `CI=true`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use sha2::Digest as _;

use crate::{cannot_run, Running, DEADLINE, POLL};

/// The static busybox every test image is made of.
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// The busybox applets linked into `/bin` of a test image.
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "cp", "echo", "env", "false", "hostname", "id", "kill", "ls", "mkdir",
    "mv", "nc", "ps", "pwd", "rm", "sleep", "test", "touch", "true", "wget", "httpd", "grep",
    "nslookup", "ip",
];

/// Where `tool` is on `PATH`, if it is.
fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Whether the tools that build and push test images are here (umoci, skopeo, the static
/// busybox, docker-registry); if not, says so through [`cannot_run`] and answers `false`, and
/// the test returns.
pub fn image_tools() -> bool {
    let mut missing: Vec<&str> = ["umoci", "skopeo", "docker-registry"]
        .into_iter()
        .filter(|tool| which(tool).is_none())
        .collect();
    if !Path::new(BUSYBOX).is_file() {
        missing.push(BUSYBOX);
    }
    if missing.is_empty() {
        return true;
    }
    cannot_run(
        "the image tools (umoci, skopeo, docker-registry, busybox-static)",
        format!("missing: {}", missing.join(", ")),
    );
    false
}

/// Runs a tool to completion; fails the test with its output if it fails.
fn run(command: &mut Command) -> String {
    let what = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A free port on 127.0.0.1 at the time of asking (the caller retries if it was taken since).
fn free_port() -> u16 {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free port on `ip` (an address of this host) at the time of asking.
fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"))
}

/// A port on 127.0.0.1 where nothing listens: connections to it are refused.
pub fn closed_port() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The status code of `GET path` on `addr`, if it answers HTTP.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A distribution registry (`docker-registry serve`) on `127.0.0.1:PORT`, storing into a
/// temporary directory, with deletes enabled. Killed and reaped when dropped.
pub struct Registry {
    process: Running,
    addr: String,
    credentials: Option<(String, String)>,
    /// The CA that signed the registry's certificate, when it serves HTTPS.
    ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry (no authentication). `None` (after [`cannot_run`]) when
    /// `docker-registry` is not installed.
    pub fn start() -> Option<Registry> {
        Registry::start_inner(None, false, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// An open registry on `ip:PORT` instead of loopback: for agents a test runs in network
    /// namespaces of their own, which reach this host at an address of a link the test made
    /// (never an address beyond the machine).
    pub fn start_on(ip: IpAddr) -> Option<Registry> {
        Registry::start_inner(None, false, ip)
    }

    /// A registry that serves HTTPS only, with a certificate for `127.0.0.1` and `localhost`
    /// signed by a CA made for it ([`Registry::ca_file`]).
    pub fn start_tls() -> Option<Registry> {
        Registry::start_inner(None, true, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The PEM file of the CA that signed an HTTPS registry's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// A registry that wants HTTP basic authentication as `user`/`pass` (htpasswd, bcrypt).
    /// `None` (after [`cannot_run`]) when `docker-registry` or `htpasswd` is not installed.
    pub fn start_with_htpasswd(user: &str, pass: &str) -> Option<Registry> {
        Registry::start_inner(
            Some((user.to_string(), pass.to_string())),
            false,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
    }

    /// `127.0.0.1:PORT` (`IP:PORT` for [`Registry::start_on`]).
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The user and password it wants, if it wants any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// What the registry logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn start_inner(
        credentials: Option<(String, String)>,
        tls: bool,
        ip: IpAddr,
    ) -> Option<Registry> {
        if which("docker-registry").is_none() {
            cannot_run(
                "docker-registry",
                "it is not on PATH (apt install docker-registry)",
            );
            return None;
        }
        if credentials.is_some() && which("htpasswd").is_none() {
            cannot_run("htpasswd", "it is not on PATH (apt install apache2-utils)");
            return None;
        }
        let mut dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let auth = match &credentials {
            None => String::new(),
            Some((user, pass)) => {
                let line = run(Command::new("htpasswd").args(["-Bbn", user, pass]));
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line).unwrap_or_else(|e| panic!("write htpasswd: {e}"));
                format!(
                    "auth:\n  htpasswd:\n    realm: minik-test\n    path: {}\n",
                    file.display()
                )
            }
        };
        let (tls_config, ca_file) = if tls {
            let (ca, cert, key) = test_certificates();
            let write = |name: &str, pem: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {name}: {e}"));
                path
            };
            let (cert, key, ca) = (
                write("tls.crt", &cert),
                write("tls.key", &key),
                write("ca.crt", &ca),
            );
            (
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ),
                Some(ca),
            )
        } else {
            (String::new(), None)
        };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let addr = SocketAddr::new(ip, free_port_on(ip)).to_string();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n{tls_config}{auth}",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap_or_else(|e| panic!("write registry config: {e}"));
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .unwrap_or_else(|e| panic!("create registry log: {e}"));
            let log2 = log
                .try_clone()
                .unwrap_or_else(|e| panic!("registry log: {e}"));
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
            let mut registry = Registry {
                process: Running::guard(child),
                addr,
                credentials: credentials.clone(),
                ca_file: ca_file.clone(),
                dir,
            };
            let until = Instant::now() + DEADLINE;
            loop {
                // An HTTPS server answers plain HTTP with 400: it is up.
                let up: &[u16] = if tls { &[400] } else { &[200, 401] };
                if http_status(&registry.addr, "/v2/").is_some_and(|s| up.contains(&s)) {
                    return Some(registry);
                }
                if let Ok(Some(_)) = registry.process.child.try_wait() {
                    // Exited: most likely the port was taken since it was picked. Try another.
                    break;
                }
                if Instant::now() >= until {
                    panic!(
                        "docker-registry did not answer GET /v2/ on {} within {DEADLINE:?}: {}",
                        registry.addr,
                        registry.log()
                    );
                }
                std::thread::sleep(POLL);
            }
            last_log = registry.log();
            // Take the directory back for the next attempt; the guard reaps the process.
            let Registry { dir: d, .. } = registry;
            dir = d;
        }
        panic!("docker-registry exited at start five times; last log: {last_log}");
    }
}

/// A CA, and a serving certificate it signed for `127.0.0.1` and `localhost`: PEM texts of the
/// CA certificate, the certificate and its key.
fn test_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "minik test registry CA");
    let ca = ca
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("CA certificate: {e}"));
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let mut params =
        CertificateParams::new(vec!["localhost".to_string()]).unwrap_or_else(|e| panic!("{e}"));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// An OCI image layout on disk (`index.json`, `blobs/sha256/...`), as umoci writes it.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The layout directory.
    pub dir: PathBuf,
}

impl Layout {
    fn index(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("index.json"))
            .unwrap_or_else(|e| panic!("{}/index.json: {e}", self.dir.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}/index.json: {e}", self.dir.display()))
    }

    /// The descriptor `index.json` gives for `tag`.
    pub fn descriptor(&self, tag: &str) -> serde_json::Value {
        let index = self.index();
        index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .cloned()
            .unwrap_or_else(|| panic!("{}: no tag {tag:?}", self.dir.display()))
    }

    /// The digest (`sha256:...`) of what `tag` points to: a manifest or an index.
    pub fn manifest_digest(&self, tag: &str) -> String {
        self.descriptor(tag)["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{tag}: descriptor without digest"))
            .to_string()
    }

    /// The blob of digest `digest` (`sha256:...`).
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read(self.dir.join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
    }

    /// The manifest `tag` points to, parsed.
    pub fn manifest(&self, tag: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(&self.manifest_digest(tag)))
            .unwrap_or_else(|e| panic!("manifest of {tag}: {e}"))
    }

    /// Writes a blob; answers its digest and size.
    fn write_blob(&self, bytes: &[u8]) -> (String, usize) {
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        let path = self.dir.join("blobs/sha256").join(&hex);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (format!("sha256:{hex}"), bytes.len())
    }

    /// Adds (or replaces) `tag` in `index.json`, pointing to `descriptor`.
    fn set_tag(&self, tag: &str, mut descriptor: serde_json::Value) {
        descriptor["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
        let mut index = self.index();
        let manifests = index["manifests"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("{}: index.json without manifests", self.dir.display()));
        manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
        manifests.push(descriptor);
        let text = serde_json::to_vec(&index).unwrap_or_else(|e| panic!("index.json: {e}"));
        std::fs::write(self.dir.join("index.json"), text)
            .unwrap_or_else(|e| panic!("write index.json: {e}"));
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.dir.display())
    }
}

/// Creates the layout `dir/oci` (if it is not there yet) and an empty image `tag` in it.
fn empty_image(dir: &Path, tag: &str) -> Layout {
    let layout = Layout {
        dir: dir.join("oci"),
    };
    if !layout.dir.join("oci-layout").exists() {
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout.dir));
    }
    run(Command::new("umoci")
        .args(["new", "--image"])
        .arg(layout.image(tag)));
    layout
}

/// [`empty_image`], unpacked (rootless) into a bundle; answers the layout and the bundle.
fn new_image(dir: &Path, tag: &str) -> (Layout, PathBuf) {
    let layout = empty_image(dir, tag);
    let bundle = dir.join(format!("bundle-{tag}"));
    let _ = std::fs::remove_dir_all(&bundle);
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(layout.image(tag))
        .arg(&bundle));
    (layout, bundle)
}

/// Adds what is in the bundle's rootfs as a new layer of `tag`.
fn repack(layout: &Layout, tag: &str, bundle: &Path) {
    run(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(layout.image(tag))
        .arg(bundle));
}

fn finish(layout: &Layout, bundle: &Path) {
    run(Command::new("umoci")
        .args(["gc", "--layout"])
        .arg(&layout.dir));
    let _ = std::fs::remove_dir_all(bundle);
}

/// Writes `contents` at `path` (absolute inside the image) under `rootfs`; executable when it
/// starts with `#!`.
fn write_file(rootfs: &Path, path: &str, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let target = rootfs.join(path.trim_start_matches('/'));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    std::fs::write(&target, contents).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
    let mode = if contents.starts_with(b"#!") {
        0o755
    } else {
        0o644
    };
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
}

/// Builds in `dir` an OCI layout holding a one-layer image `tag`: the static busybox as
/// `/bin/busybox` with its common applets linked in `/bin` (`sh`, `ls`, `cat`, `sleep`,
/// `wget`, `nc`...), an `/etc/passwd` with `root` and `nobody`, and `extra_files` (absolute
/// paths; a file starting with `#!` is made executable). The configuration gets `entrypoint`,
/// `cmd` and `env` (plus a default `PATH` unless `env` sets one).
pub fn build_busybox_layout(
    dir: &Path,
    tag: &str,
    extra_files: &[(&str, &[u8])],
    entrypoint: &[&str],
    cmd: &[&str],
    env: &[&str],
) -> Layout {
    let (layout, bundle) = new_image(dir, tag);
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copy {BUSYBOX}: {e}"));
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .unwrap_or_else(|e| panic!("link /bin/{applet}: {e}"));
    }
    write_file(
        &rootfs,
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    write_file(&rootfs, "/etc/group", b"root:x:0:\nnogroup:x:65534:\n");
    for (path, contents) in extra_files {
        write_file(&rootfs, path, contents);
    }
    repack(&layout, tag, &bundle);

    let mut config = Command::new("umoci");
    config
        .args(["config", "--no-history", "--image"])
        .arg(layout.image(tag));
    for arg in entrypoint {
        config.arg(format!("--config.entrypoint={arg}"));
    }
    for arg in cmd {
        config.arg(format!("--config.cmd={arg}"));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        config
            .arg("--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    for var in env {
        config.arg(format!("--config.env={var}"));
    }
    run(&mut config);
    finish(&layout, &bundle);
    layout
}

/// The tag [`build_multiplatform_layout`] gives the manifest of one platform.
pub fn platform_tag(tag: &str, architecture: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{tag}-{architecture}-{v}"),
        None => format!("{tag}-{architecture}"),
    }
}

/// Builds in `dir` a layout where `tag` is an image index with one busybox manifest per
/// platform of `platforms` (`("arm64", Some("v8"))`, all `linux`). The manifests share the
/// layer and differ in their configuration (architecture, and a label
/// `org.minik.test.platform`); each is also tagged [`platform_tag`]`(tag, arch, variant)`, so
/// that a test knows which digest each platform should resolve to.
pub fn build_multiplatform_layout(
    dir: &Path,
    tag: &str,
    platforms: &[(&str, Option<&str>)],
) -> Layout {
    let base = format!("{tag}-base");
    let layout = build_busybox_layout(dir, &base, &[], &[], &["sh"], &[]);
    let mut entries = Vec::new();
    for (architecture, variant) in platforms {
        let platform_name = match variant {
            Some(v) => format!("linux/{architecture}/{v}"),
            None => format!("linux/{architecture}"),
        };
        let ptag = platform_tag(tag, architecture, *variant);
        run(Command::new("umoci")
            .args(["config", "--no-history", "--image"])
            .arg(layout.image(&base))
            .arg(format!("--architecture={architecture}"))
            .arg(format!(
                "--config.label=org.minik.test.platform={platform_name}"
            ))
            .arg(format!("--tag={ptag}")));
        let mut platform = serde_json::json!({ "os": "linux", "architecture": architecture });
        if let Some(v) = variant {
            platform["variant"] = serde_json::json!(v);
        }
        let descriptor = layout.descriptor(&ptag);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": descriptor["digest"],
            "size": descriptor["size"],
            "platform": platform,
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&index).unwrap_or_else(|e| panic!("index: {e}"));
    let (digest, size) = layout.write_blob(&bytes);
    layout.set_tag(
        tag,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": size,
        }),
    );
    layout
}

/// Fills `out` with bytes no compressor shrinks (xorshift64*), the same for the same `seed`.
fn incompressible(out: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Builds in `dir` a layout where `tag` has one layer per entry of `layer_sizes`, layer `i`
/// holding `/layers/i.bin` of that many incompressible bytes (seeded by `seed` and `i`), so
/// that a layer's blob is about as large as its file. No busybox: data only (benchmarks).
pub fn build_layered_layout(dir: &Path, tag: &str, layer_sizes: &[usize], seed: u64) -> Layout {
    let layout = empty_image(dir, tag);
    let staging = dir.join(format!("layers-{tag}"));
    for (i, size) in layer_sizes.iter().enumerate() {
        let _ = std::fs::remove_dir_all(&staging);
        let mut bytes = vec![0u8; *size];
        incompressible(&mut bytes, seed.wrapping_add(i as u64));
        let file = format!("layers/{i}.bin");
        write_file(&staging, &file, &bytes);
        drop(bytes);
        let tar = dir.join(format!("layer-{tag}-{i}.tar"));
        run(Command::new("tar")
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--no-recursion",
                "-C",
            ])
            .arg(&staging)
            .arg("-cf")
            .arg(&tar)
            .args(["layers", &file]));
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image"])
            .arg(layout.image(tag))
            .arg(&tar));
        let _ = std::fs::remove_file(&tar);
    }
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new("umoci")
        .args(["gc", "--layout"])
        .arg(&layout.dir));
    layout
}

/// How [`push_with`] pushes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Push<'a> {
    /// Basic credentials for the registry.
    pub creds: Option<(&'a str, &'a str)>,
    /// Convert to Docker media types (schema 2 manifests, manifest lists) instead of OCI.
    pub docker_format: bool,
}

fn skopeo() -> Command {
    let mut command = Command::new("skopeo");
    command.arg("--insecure-policy");
    command
}

/// Pushes `tag` of `layout` to `registry` (`127.0.0.1:PORT`, plain HTTP) as `name`
/// (`library/busybox:1.36`), in OCI format, without credentials. An index is pushed with all
/// its manifests. Answers the digest the registry now serves for `name`.
pub fn push(layout: &Layout, tag: &str, registry: &str, name: &str) -> String {
    push_with(layout, tag, registry, name, Push::default())
}

/// [`push`], with credentials and/or conversion to Docker media types.
pub fn push_with(layout: &Layout, tag: &str, registry: &str, name: &str, how: Push) -> String {
    static PUSHES: AtomicUsize = AtomicUsize::new(0);
    let digest_file = layout.dir.join(format!(
        ".pushed-{}-{}",
        std::process::id(),
        PUSHES.fetch_add(1, Ordering::SeqCst)
    ));
    let mut command = skopeo();
    command.args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"]);
    command.arg(&digest_file);
    if layout.descriptor(tag)["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        command.arg("--all");
    }
    if how.docker_format {
        command.args(["--format", "v2s2"]);
    }
    match how.creds {
        Some((user, pass)) => command.arg(format!("--dest-creds={user}:{pass}")),
        None => command.arg("--dest-no-creds"),
    };
    command
        .arg(format!("oci:{}", layout.image(tag)))
        .arg(format!("docker://{registry}/{name}"));
    run(&mut command);
    let digest = std::fs::read_to_string(&digest_file)
        .unwrap_or_else(|e| panic!("skopeo --digestfile {}: {e}", digest_file.display()));
    let _ = std::fs::remove_file(&digest_file);
    digest.trim().to_string()
}

/// Saves `tag` of `layout` as a `docker save` archive at `file`, named `name` (`busybox:1.36`).
pub fn save_docker_archive(layout: &Layout, tag: &str, file: &Path, name: &str) {
    run(skopeo()
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}", layout.image(tag)))
        .arg(format!("docker-archive:{}:{name}", file.display())));
}

/// Saves `tag` of `layout` as an OCI archive (a tar of a layout) at `file`, its image named
/// `name` (the `org.opencontainers.image.ref.name` annotation).
pub fn save_oci_archive(layout: &Layout, tag: &str, file: &Path, name: &str) {
    run(skopeo()
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}", layout.image(tag)))
        .arg(format!("oci-archive:{}:{name}", file.display())));
}

/// The recipe of [`build_debian_nginx_layout`]'s image: a cached build is used only by the same
/// recipe, so a change to how the image is built changes this.
pub const DEBIAN_NGINX_VERSION: &str = "bookworm-nginx-light-1";

/// The Debian release and mirror the nginx image comes from (the mirror Debian's own images and
/// this project's CI hosts use).
const DEBIAN_SUITE: &str = "bookworm";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// `PATH` for the commands run in the Debian root, and in the image's configuration.
const DEBIAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The official nginx image's `/etc/nginx/conf.d/default.conf`, IPv4 only (its entrypoint adds
/// `listen [::]:80` only where IPv6 works): Debian's welcome page on port 80.
const NGINX_DEFAULT_CONF: &str = "server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
";

/// Where `tool` is: on `PATH`, or in `/usr/sbin` or `/sbin` (root's tools, which a test's `PATH`
/// may lack).
fn find_tool(tool: &str) -> Option<PathBuf> {
    which(tool).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .into_iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|candidate| candidate.is_file())
    })
}

/// Builds in `dir` an OCI layout holding `tag`: an nginx image made as the official one is, from
/// Debian's packages. Debian bookworm (`debootstrap --variant=minbase`) with `nginx-light`
/// (nginx 1.22), its logs linked to `/dev/stdout` and `/dev/stderr`, the official image's
/// `default.conf` serving Debian's "Welcome to nginx!" page on port 80, and the official
/// configuration: `CMD ["nginx", "-g", "daemon off;"]`, `STOPSIGNAL SIGQUIT`, port `80/tcp`.
///
/// The image is built once per [`DEBIAN_NGINX_VERSION`] and kept under the system temp dir
/// (`minik-test-images/`), where later runs find it; two tests building at once build it once.
/// A build takes about a minute and a half and needs root, `debootstrap`, `umoci`, `skopeo` and
/// the Debian mirror. `None` (after [`cannot_run`]) when it cannot be built here.
pub fn build_debian_nginx_layout(dir: &Path, tag: &str) -> Option<Layout> {
    use std::os::unix::fs::MetadataExt;
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        cannot_run(
            "root (debootstrap and chroot build the Debian nginx image)",
            "not running as root",
        );
        return None;
    }
    let missing: Vec<&str> = ["debootstrap", "chroot", "umoci", "skopeo"]
        .into_iter()
        .filter(|tool| find_tool(tool).is_none())
        .collect();
    let Some(debootstrap) = find_tool("debootstrap").filter(|_| missing.is_empty()) else {
        cannot_run(
            "the tools that build the Debian nginx image (debootstrap, umoci, skopeo)",
            format!("missing: {}", missing.join(", ")),
        );
        return None;
    };
    let cached = cached_debian_nginx(&debootstrap);
    let layout = Layout {
        dir: dir.join("oci"),
    };
    run(skopeo()
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}", cached.image("nginx")))
        .arg(format!("oci:{}", layout.image(tag))));
    Some(layout)
}

/// The cached build of the Debian nginx image (tagged `nginx`), built first if there is none.
/// Builders take turns on a lock file; a build is made in a directory of its own and renamed
/// into place whole, so a reader never sees half of one.
fn cached_debian_nginx(debootstrap: &Path) -> Layout {
    let root = std::env::temp_dir().join("minik-test-images");
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let name = format!("debian-nginx-{DEBIAN_NGINX_VERSION}");
    let cached = Layout {
        dir: root.join(&name),
    };
    let complete = |layout: &Layout| layout.dir.join("index.json").is_file();
    if complete(&cached) {
        return cached;
    }
    let lock_path = root.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
    // Waits while another test or test process builds it; released when `lock` is dropped.
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    if complete(&cached) {
        return cached;
    }
    if cached.dir.exists() {
        // Not made by a rename of ours (those are whole): start again.
        std::fs::remove_dir_all(&cached.dir)
            .unwrap_or_else(|e| panic!("{}: {e}", cached.dir.display()));
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(&root)
        .unwrap_or_else(|e| panic!("tempdir in {}: {e}", root.display()));
    let staging_dir = std::fs::canonicalize(staging.path())
        .unwrap_or_else(|e| panic!("{}: {e}", staging.path().display()));
    // Dropped before `staging`: nothing stays mounted in what is then removed.
    let mounts = UnmountUnder(staging_dir.clone());
    let built = build_debian_nginx(&staging_dir, debootstrap, &mounts);
    std::fs::rename(&built.dir, &cached.dir).unwrap_or_else(|e| {
        panic!(
            "rename {} to {}: {e}",
            built.dir.display(),
            cached.dir.display()
        )
    });
    cached
}

/// Builds the Debian nginx image as `dir/oci:nginx`.
fn build_debian_nginx(dir: &Path, debootstrap: &Path, mounts: &UnmountUnder) -> Layout {
    let tag = "nginx";
    let layout = empty_image(dir, tag);
    let bundle = dir.join("bundle");
    // As root (not rootless): the files keep the owners Debian gives them.
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(layout.image(tag))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    run(Command::new(debootstrap)
        .env("PATH", DEBIAN_PATH)
        .arg("--variant=minbase")
        .arg(DEBIAN_SUITE)
        .arg(&rootfs)
        .arg(DEBIAN_MIRROR));
    mounts.unmount();

    // No service starts while packages are installed (nginx's would listen on the host).
    let policy = "/usr/sbin/policy-rc.d";
    write_file(&rootfs, policy, b"#!/bin/sh\nexit 101\n");
    in_chroot(
        &rootfs,
        &[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "nginx-light",
        ],
    );
    in_chroot(&rootfs, &["apt-get", "clean"]);
    mounts.unmount();
    remove(&rootfs.join(policy.trim_start_matches('/')));
    for emptied in [
        "var/lib/apt/lists",
        "var/cache/apt",
        "dev",
        "tmp",
        "var/tmp",
    ] {
        empty_dir(&rootfs.join(emptied));
    }
    // The host's name and resolver, which debootstrap copied; the runtime mounts a pod's own.
    write_file(&rootfs, "/etc/hostname", b"localhost\n");
    write_file(&rootfs, "/etc/resolv.conf", b"");

    // As the official image: logs to the container's output, its server in conf.d.
    for (log, target) in [("access.log", "/dev/stdout"), ("error.log", "/dev/stderr")] {
        let path = rootfs.join("var/log/nginx").join(log);
        remove(&path);
        std::os::unix::fs::symlink(target, &path)
            .unwrap_or_else(|e| panic!("link {}: {e}", path.display()));
    }
    remove(&rootfs.join("etc/nginx/sites-enabled/default"));
    write_file(
        &rootfs,
        "/etc/nginx/conf.d/default.conf",
        NGINX_DEFAULT_CONF.as_bytes(),
    );
    let page = rootfs.join("usr/share/nginx/html/index.html");
    let welcome = std::fs::read_to_string(&page).unwrap_or_default();
    assert!(
        welcome.contains("Welcome to nginx!"),
        "{}: not Debian's welcome page: {welcome:?}",
        page.display()
    );

    repack(&layout, tag, &bundle);
    run(Command::new("umoci")
        .args(["config", "--image"])
        .arg(layout.image(tag))
        .args([
            &format!("--config.env=PATH={DEBIAN_PATH}"),
            "--config.cmd=nginx",
            "--config.cmd=-g",
            "--config.cmd=daemon off;",
            "--config.exposedports=80/tcp",
            "--config.stopsignal=SIGQUIT",
            "--history.created_by=minik-testkit build_debian_nginx_layout",
        ]));
    finish(&layout, &bundle);
    layout
}

/// Runs `command` in the Debian root `rootfs`, with a clean environment.
fn in_chroot(rootfs: &Path, command: &[&str]) {
    run(Command::new("chroot")
        .env_clear()
        .env("PATH", DEBIAN_PATH)
        .env("HOME", "/root")
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .arg(rootfs)
        .args(command));
}

/// Removes a file or a symbolic link if it is there.
fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", path.display()),
    }
}

/// Removes what is in `dir`, keeping `dir`.
fn empty_dir(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
}

/// The mount points under one directory: [`UnmountUnder::unmount`] unmounts them (debootstrap
/// mounts `/proc` and `/sys` in its target while it works and unmounts them when it ends, but
/// not if it is killed), and so does dropping it.
struct UnmountUnder(PathBuf);

impl UnmountUnder {
    /// Mount points under the directory, deepest first.
    fn mounts(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut found: Vec<PathBuf> = text
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|field| {
                PathBuf::from(
                    field
                        .replace("\\040", " ")
                        .replace("\\011", "\t")
                        .replace("\\012", "\n")
                        .replace("\\134", "\\"),
                )
            })
            .filter(|mount| mount.starts_with(&self.0))
            .collect();
        found.sort_by_key(|mount| std::cmp::Reverse(mount.as_os_str().len()));
        found.dedup();
        found
    }

    /// Unmounts (lazily) everything mounted under the directory, deepest first.
    fn unmount_all(&self) {
        for mount in self.mounts() {
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(&mount)
                .stdin(Stdio::null())
                .output();
        }
    }

    /// [`UnmountUnder::unmount_all`]; fails the test if something stays mounted.
    fn unmount(&self) {
        self.unmount_all();
        let left = self.mounts();
        assert!(left.is_empty(), "still mounted: {left:?}");
    }
}

impl Drop for UnmountUnder {
    fn drop(&mut self) {
        self.unmount_all();
    }
}

/// A way for [`TokenProxy`] to misbehave, to see that a client notices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every `/v2/...` request answers this status, with a registry-style JSON error body
    /// (and `Retry-After: 7` on 429).
    Status(u16),
    /// Blobs arrive with their first byte changed (same size).
    TamperBlobs,
    /// Blobs arrive cut in half, without a `Content-Length`, the connection closed cleanly.
    TruncateBlobs,
    /// Blob requests are redirected (307) to the upstream registry, as registries redirect to
    /// their storage.
    RedirectBlobs,
    /// Blobs arrive whole but slowly: [`SLOW_CHUNK`] bytes every [`SLOW_DELAY`] (about 800 kB/s),
    /// so that a test can catch a pull in the middle of a download.
    SlowBlobs,
}

/// How many bytes of a blob [`Fault::SlowBlobs`] sends at a time.
pub const SLOW_CHUNK: usize = 16 * 1024;

/// How long [`Fault::SlowBlobs`] waits before each chunk.
pub const SLOW_DELAY: Duration = Duration::from_millis(20);

/// The body of `upstream`, cut in [`SLOW_CHUNK`]s sent one every [`SLOW_DELAY`].
fn slow_body(upstream: reqwest::Response) -> Body {
    use futures::StreamExt as _;
    let pieces = upstream.bytes_stream().flat_map(|chunk| {
        let pieces: Vec<Result<Bytes, std::io::Error>> = match chunk {
            Ok(bytes) => (0..bytes.len())
                .step_by(SLOW_CHUNK)
                .map(|at| Ok(bytes.slice(at..(at + SLOW_CHUNK).min(bytes.len()))))
                .collect(),
            Err(e) => vec![Err(std::io::Error::other(e))],
        };
        futures::stream::iter(pieces)
    });
    Body::from_stream(pieces.then(|piece| async move {
        tokio::time::sleep(SLOW_DELAY).await;
        piece
    }))
}

/// Who may have a token from a [`TokenProxy`].
#[derive(Clone, Debug)]
enum Tokens {
    /// No authentication at all: the proxy only forwards (and injects faults).
    Off,
    /// Anyone, without credentials (as Docker Hub gives anonymous pull tokens).
    Anonymous,
    /// Only who sends these basic credentials (the expected `Authorization` value).
    Basic(String),
}

struct ProxyState {
    upstream: String,
    addr: String,
    tokens: Tokens,
    issued: Mutex<HashSet<String>>,
    issued_count: AtomicUsize,
    fault: Mutex<Option<Fault>>,
    requests: Mutex<Vec<String>>,
    http: reqwest::Client,
}

/// A registry front on `127.0.0.1:PORT` doing the bearer-token dance: `/v2/...` without a
/// token it issued answers 401 with `WWW-Authenticate: Bearer realm="http://ADDR/token",
/// service="minik-test",scope="repository:NAME:pull"`; `/token` issues tokens; requests with
/// a token are forwarded to the upstream registry. It can also inject a [`Fault`]. Its task is
/// aborted when dropped.
pub struct TokenProxy {
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenProxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`) that gives tokens to whoever sends `user` and
    /// `pass` as basic credentials, or to anyone when `credentials` is `None`.
    pub async fn start(upstream: &str, credentials: Option<(&str, &str)>) -> TokenProxy {
        let tokens = match credentials {
            None => Tokens::Anonymous,
            Some((user, pass)) => Tokens::Basic(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            )),
        };
        TokenProxy::start_inner(upstream, tokens).await
    }

    /// A proxy to `upstream` without authentication: for faults only.
    pub async fn passthrough(upstream: &str) -> TokenProxy {
        TokenProxy::start_inner(upstream, Tokens::Off).await
    }

    async fn start_inner(upstream: &str, tokens: Tokens) -> TokenProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let addr: SocketAddr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("reqwest client: {e}"));
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            addr: addr.to_string(),
            tokens,
            issued: Mutex::new(HashSet::new()),
            issued_count: AtomicUsize::new(0),
            fault: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            http,
        });
        let handler_state = state.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                let state = handler_state.clone();
                async move { handle(&state, method, uri, headers).await }
            });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenProxy { state, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.state.addr.clone()
    }

    /// Starts (or, with `None`, stops) misbehaving.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.state.fault) = fault;
    }

    /// Forgets every token it issued, as a restarted token server would: clients must get
    /// new ones.
    pub fn revoke_tokens(&self) {
        lock(&self.state.issued).clear();
    }

    /// How many tokens it issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued_count.load(Ordering::SeqCst)
    }

    /// The requests it received, in order: `GET /v2/library/busybox/manifests/1.36`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn respond(status: StatusCode, headers: &[(header::HeaderName, String)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

fn registry_error(code: &str, message: &str) -> Body {
    Body::from(serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string())
}

async fn handle(state: &ProxyState, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    lock(&state.requests).push(format!("{method} {path}"));
    let json = (header::CONTENT_TYPE, "application/json".to_string());

    if path == "/token" {
        if let Tokens::Basic(expected) = &state.tokens {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if given != Some(expected.as_str()) {
                return respond(
                    StatusCode::UNAUTHORIZED,
                    &[json],
                    registry_error("UNAUTHORIZED", "incorrect username or password"),
                );
            }
        }
        let n = state.issued_count.fetch_add(1, Ordering::SeqCst);
        let token = format!("minik-test-token-{n}");
        lock(&state.issued).insert(token.clone());
        return respond(
            StatusCode::OK,
            &[json],
            Body::from(
                serde_json::json!({ "token": token, "access_token": token, "expires_in": 300 })
                    .to_string(),
            ),
        );
    }
    if !path.starts_with("/v2") {
        return respond(StatusCode::NOT_FOUND, &[], Body::empty());
    }

    let fault = lock(&state.fault).clone();
    if let Some(Fault::Status(code)) = fault {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut extra = vec![json];
        if code == 429 {
            extra.push((header::RETRY_AFTER, "7".to_string()));
        }
        return respond(
            status,
            &extra,
            registry_error("UNKNOWN", &format!("injected fault {code}")),
        );
    }

    if !matches!(state.tokens, Tokens::Off) {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let valid = token.is_some_and(|t| lock(&state.issued).contains(t));
        if !valid {
            let name = path
                .trim_start_matches("/v2/")
                .rsplit_once("/manifests/")
                .or_else(|| path.trim_start_matches("/v2/").rsplit_once("/blobs/"))
                .map(|(name, _)| name.to_string())
                .unwrap_or_default();
            let challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"minik-test\",scope=\"repository:{name}:pull\"",
                state.addr
            );
            return respond(
                StatusCode::UNAUTHORIZED,
                &[json, (header::WWW_AUTHENTICATE, challenge)],
                registry_error("UNAUTHORIZED", "authentication required"),
            );
        }
    }

    let is_blob = path.contains("/blobs/");
    let target = format!(
        "http://{}{}",
        state.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/v2/")
    );
    if is_blob && fault == Some(Fault::RedirectBlobs) {
        return respond(
            StatusCode::TEMPORARY_REDIRECT,
            &[(header::LOCATION, target)],
            Body::empty(),
        );
    }

    let mut request = state.http.request(method, &target);
    if let Some(accept) = headers.get(header::ACCEPT) {
        request = request.header(header::ACCEPT, accept.clone());
    }
    let upstream = match request.send().await {
        Ok(upstream) => upstream,
        Err(e) => {
            return respond(
                StatusCode::BAD_GATEWAY,
                &[json],
                registry_error("UNKNOWN", &format!("upstream: {e}")),
            )
        }
    };
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut copied = Vec::new();
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::HeaderName::from_static("docker-content-digest"),
    ] {
        if let Some(value) = upstream
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
        {
            copied.push((name, value.to_string()));
        }
    }
    if is_blob && status.is_success() {
        match fault {
            Some(Fault::TamperBlobs) => {
                let mut bytes = upstream
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                if let Some(first) = bytes.first_mut() {
                    *first ^= 0xff;
                }
                return respond(status, &copied, Body::from(bytes));
            }
            Some(Fault::TruncateBlobs) => {
                let bytes = upstream.bytes().await.unwrap_or_default();
                let half = bytes.slice(..bytes.len() / 2);
                copied.retain(|(name, _)| name != header::CONTENT_LENGTH);
                let stream =
                    futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
                return respond(status, &copied, Body::from_stream(stream));
            }
            Some(Fault::SlowBlobs) => return respond(status, &copied, slow_body(upstream)),
            _ => {}
        }
    }
    respond(status, &copied, Body::from_stream(upstream.bytes_stream()))
}

/// Writes `dir/registries.yaml` sending `docker.io` to the registry at `addr` (plain HTTP on
/// loopback): with `--disable-default-registry-endpoint`, pulls never leave the machine.
pub fn docker_io_mirror(dir: &Path, addr: &str) -> PathBuf {
    let file = dir.join("registries.yaml");
    std::fs::write(
        &file,
        format!("mirrors:\n  docker.io:\n    endpoint: [\"http://{addr}\"]\n"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_bytes_are_deterministic_and_varied() {
        let mut a = vec![0u8; 1001];
        let mut b = vec![0u8; 1001];
        incompressible(&mut a, 3);
        incompressible(&mut b, 3);
        assert_eq!(a, b);
        incompressible(&mut b, 4);
        assert_ne!(a, b);
        let distinct: HashSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
    }

    #[test]
    fn a_closed_port_refuses_connections() {
        assert!(TcpStream::connect(closed_port()).is_err());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn builds_layered_images_and_archives() {
        if !image_tools() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let layout = build_layered_layout(dir.path(), "data", &[1000, 300_000], 7);
        let manifest = layout.manifest("data");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        // Incompressible: the gzip of 300,000 random bytes is no smaller.
        assert!(layers[1]["size"].as_u64().unwrap() >= 300_000, "{manifest}");

        let busybox = build_busybox_layout(
            dir.path(),
            "1.36",
            &[("/hello.sh", b"#!/bin/sh\necho hi\n")],
            &["/hello.sh"],
            &[],
            &["A=b"],
        );
        let config_digest = busybox.manifest("1.36")["config"]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let config: serde_json::Value =
            serde_json::from_slice(&busybox.blob(&config_digest)).unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/hello.sh"])
        );
        let env = config["config"]["Env"].to_string();
        assert!(env.contains("A=b") && env.contains("PATH="), "{env}");

        let docker = dir.path().join("docker.tar");
        save_docker_archive(&busybox, "1.36", &docker, "busybox:1.36");
        let bytes = std::fs::read(&docker).unwrap();
        assert!(contains(&bytes, b"manifest.json"));
        assert!(contains(&bytes, b"busybox:1.36"));
        let oci = dir.path().join("oci.tar");
        save_oci_archive(&busybox, "1.36", &oci, "busybox:1.36");
        let bytes = std::fs::read(&oci).unwrap();
        assert!(contains(&bytes, b"index.json") && contains(&bytes, b"oci-layout"));
    }

    #[test]
    fn platform_tags_name_the_platform() {
        assert_eq!(platform_tag("multi", "arm64", Some("v8")), "multi-arm64-v8");
        assert_eq!(platform_tag("multi", "amd64", None), "multi-amd64");
    }
}
