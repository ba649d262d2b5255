//! Container probes — startup, liveness, readiness — with every timing field Kubernetes has.
//! Each running container with probes gets one task that runs them and publishes what they
//! concluded (started, ready, or "restart it, because ..."); the agent reads that on its next
//! pass over the pod and acts. How one check is done (exec, HTTP, TCP) is behind [`Checker`],
//! so the fake runtime can script results.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{Container, Probe};
use minik_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::AsyncWriteExt;

use crate::spec::PortBinding;
use crate::BoxFuture;

/// One of the three probes of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// What one check is asked to do, with ports already resolved to host ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Exec {
        command: Vec<String>,
    },
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Unsupported(String),
}

/// Where a container's probes reach it.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub host: String,
    pub ports: Vec<PortBinding>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<std::path::PathBuf>,
    /// What the fake checker is to answer; other checkers ignore it.
    pub fake: crate::runtime::FakeScript,
    /// For a container of its own (the oci runtime): exec probes run in it, through its
    /// runtime's exec, and HTTP and TCP probes connect from inside its pod's network namespace
    /// (`host` is then an address in there: 127.0.0.1). `None`: a host process, probed from
    /// the host.
    pub inside: Option<Inside>,
}

/// A container probed from the inside.
#[derive(Clone)]
pub struct Inside {
    pub runtime: Arc<dyn crate::runtime::Runtime>,
    pub instance: String,
    /// The pod's network namespace (an nsfs file), or `None` for a host-network pod.
    pub netns: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Inside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inside")
            .field("instance", &self.instance)
            .field("netns", &self.netns)
            .finish()
    }
}

/// Resolves a probe port (number or container port name) to the host port the process
/// listens on: the process runtime gives each declared port a host port.
fn resolve_port(port: &IntOrString, target: &Target) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => Ok(target
            .ports
            .iter()
            .find(|p| p.container_port == *n)
            .map(|p| p.host_port)
            .or_else(|| u16::try_from(*n).ok())
            .ok_or_else(|| format!("port {n} is out of range"))?),
        IntOrString::String(name) => target
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.host_port)
            .ok_or_else(|| format!("port name {name:?} is not a port of the container")),
    }
}

/// The check a probe asks for.
pub fn check_of(probe: &Probe, target: &Target) -> Check {
    if let Some(exec) = &probe.exec {
        return Check::Exec {
            command: exec.command.clone().unwrap_or_default(),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = match resolve_port(&http.port, target) {
            Ok(p) => p,
            Err(e) => return Check::Unsupported(e),
        };
        let scheme = http
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        if scheme != "http" {
            return Check::Unsupported(format!(
                "scheme {scheme} is not supported by minik's probes"
            ));
        }
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.host.clone());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        return Check::Http {
            url: format!("http://{host}:{port}{path}"),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        return match resolve_port(&tcp.port, target) {
            Ok(port) => Check::Tcp {
                host: tcp
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| target.host.clone()),
                port,
            },
            Err(e) => Check::Unsupported(e),
        };
    }
    if probe.grpc.is_some() {
        return Check::Unsupported("gRPC probes are not supported by minik".into());
    }
    Check::Unsupported("the probe has no handler".into())
}

/// Performs one check; `Err` carries the failure message the events show.
pub trait Checker: Send + Sync + 'static {
    fn check<'a>(
        &'a self,
        kind: ProbeKind,
        check: &'a Check,
        target: &'a Target,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Real checks: a command on the host with the container's environment, an HTTP GET, a TCP
/// connect.
pub struct HostChecker;

impl Checker for HostChecker {
    fn check<'a>(
        &'a self,
        _kind: ProbeKind,
        check: &'a Check,
        target: &'a Target,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let outcome = tokio::time::timeout(timeout, run_check(check, target)).await;
            match outcome {
                Ok(result) => result,
                Err(_) => Err(format!("timeout after {}s", timeout.as_secs_f64())),
            }
        })
    }
}

async fn run_check(check: &Check, target: &Target) -> Result<(), String> {
    match (check, &target.inside) {
        (Check::Exec { command }, Some(inside)) => exec_inside(command, target, inside).await,
        (Check::Http { url, headers }, Some(inside)) => {
            http_get(url, headers, inside.netns.as_deref()).await
        }
        (Check::Tcp { host, port }, Some(inside)) => {
            crate::netns::connect(host, *port, inside.netns.as_deref())
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        }
        _ => run_on_host(check, target).await,
    }
}

/// An exec probe in the container (its namespaces, user, root): the runtime's exec.
async fn exec_inside(command: &[String], target: &Target, inside: &Inside) -> Result<(), String> {
    if command.is_empty() {
        return Err("the exec probe has no command".into());
    }
    let request = crate::runtime::ExecRequest {
        command: command.to_vec(),
        env: target.env.clone(),
        working_dir: target.working_dir.clone(),
        tty: false,
        stdin: false,
    };
    let (runtime, instance) = (inside.runtime.clone(), inside.instance.clone());
    let process = tokio::task::spawn_blocking(move || runtime.exec(&instance, &request))
        .await
        .map_err(|e| e.to_string())??;
    // A probe that times out is dropped: its command must not run on.
    struct KillOnDrop(Option<Arc<dyn crate::runtime::ExecControl>>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(control) = self.0.take() {
                control.kill();
            }
        }
    }
    let mut guard = KillOnDrop(Some(process.control.clone()));
    // Output is not kept (the kubelet keeps only a little of it); it is drained so that the
    // command never blocks on a full pipe.
    let drain = |reader: Option<crate::runtime::ExecReader>| async move {
        if let Some(mut r) = reader {
            let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
        }
    };
    let (code, _, _) = tokio::join!(process.exit, drain(process.stdout), drain(process.stderr));
    guard.0 = None;
    match code? {
        0 => Ok(()),
        code => Err(format!("command exited with {code}")),
    }
}

async fn run_on_host(check: &Check, target: &Target) -> Result<(), String> {
    match check {
        Check::Unsupported(why) => Err(why.clone()),
        Check::Exec { command } => {
            let (program, args) = command
                .split_first()
                .ok_or("the exec probe has no command")?;
            let program = crate::runtime::resolve_program(program).map_err(|e| e.to_string())?;
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .env_clear()
                .envs(target.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            if let Some(dir) = &target.working_dir {
                cmd.current_dir(dir);
            }
            let status = cmd.status().await.map_err(|e| e.to_string())?;
            match status.code() {
                Some(0) => Ok(()),
                Some(code) => Err(format!("command exited with {code}")),
                None => Err("command was killed".into()),
            }
        }
        Check::Http { url, headers } => http_get(url, headers, None).await,
        Check::Tcp { host, port } => crate::netns::connect(host, *port, None)
            .await
            .map(|_| ())
            .map_err(|e| format!("dial tcp {host}:{port}: {e}")),
    }
}

/// A minimal HTTP/1.0 GET: the status line decides (200–399 is success), as the kubelet does.
async fn http_get(
    url: &str,
    headers: &[(String, String)],
    netns: Option<&std::path::Path>,
) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// is supported")?;
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (host, port) = authority
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .unwrap_or((authority, 80));
    let mut stream = crate::netns::connect(host, port, netns)
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {authority}: {e}"))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: minik-probe/1.0\r\nAccept: */*\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 512];
    // Only the status line matters; read until it is complete.
    while !buffer.contains(&b'\n') && buffer.len() < 4096 {
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut chunk)
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buffer);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// What a container's probes have concluded so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// The readiness probe passes (or there is none) and the container has started.
    pub ready: bool,
    /// The container must be restarted: this probe (startup or liveness) gave up, with its
    /// last failure message.
    pub restart: Option<(ProbeKind, String)>,
    /// The last failure message of each probe, for events.
    pub last_failure: Option<(ProbeKind, String)>,
    /// Failures not yet reported as `Unhealthy` events (the latest few).
    pub unreported: Vec<(ProbeKind, String)>,
}

/// The shared, changing verdict of one container.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Verdict>>);

impl Shared {
    pub fn get(&self) -> Verdict {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Verdict> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict, taking out its news — the restart request and the failures not reported
    /// yet — so that they are acted on once.
    pub fn take(&self) -> Verdict {
        let mut v = self.lock();
        let news = v.clone();
        v.restart = None;
        v.unreported.clear();
        news
    }
}

/// The timing of one probe, with Kubernetes' defaults for absent fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timing {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

fn timing(probe: &Probe) -> Timing {
    let secs =
        |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    Timing {
        initial_delay: secs(probe.initial_delay_seconds, 0),
        period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// The running probes of one container instance; dropping it stops them.
pub struct Probes {
    pub verdict: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs the probes of one container until the returned [`Probes`] is dropped; `changed` is
/// called whenever the verdict changes.
pub fn spawn(
    container: &Container,
    target: Target,
    checker: Arc<dyn Checker>,
    changed: Arc<dyn Fn() + Send + Sync>,
) -> Probes {
    let startup = container.startup_probe.clone();
    let liveness = container.liveness_probe.clone();
    let readiness = container.readiness_probe.clone();
    let shared = Shared::default();
    {
        let mut v = shared.lock();
        v.started = startup.is_none();
        v.ready = v.started && readiness.is_none();
    }
    if startup.is_none() && liveness.is_none() && readiness.is_none() {
        return Probes {
            verdict: shared,
            task: None,
        };
    }
    let verdict = shared.clone();
    let task = tokio::spawn(async move {
        let started_at = tokio::time::Instant::now();
        let run = |kind, probe| {
            run_probe(
                kind,
                probe,
                &target,
                checker.as_ref(),
                &verdict,
                changed.as_ref(),
                started_at,
            )
        };
        if let Some(probe) = &startup {
            if !run(ProbeKind::Startup, probe).await {
                return;
            }
        }
        let live = async {
            if let Some(probe) = &liveness {
                run(ProbeKind::Liveness, probe).await;
            }
        };
        let ready = async {
            if let Some(probe) = &readiness {
                run(ProbeKind::Readiness, probe).await;
            } else {
                let mut v = verdict.lock();
                if !v.ready {
                    v.ready = true;
                    drop(v);
                    changed();
                }
            }
        };
        tokio::join!(live, ready);
    });
    Probes {
        verdict: shared,
        task: Some(task),
    }
}

/// Runs one probe. For startup: returns true once it passed, false if it gave up. For liveness:
/// returns once it asked for a restart. Readiness runs until aborted.
async fn run_probe(
    kind: ProbeKind,
    probe: &Probe,
    target: &Target,
    checker: &dyn Checker,
    verdict: &Shared,
    changed: &(dyn Fn() + Send + Sync),
    started_at: tokio::time::Instant,
) -> bool {
    let t = timing(probe);
    let check = check_of(probe, target);
    tokio::time::sleep_until(started_at + t.initial_delay).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let result = checker.check(kind, &check, target, t.timeout).await;
        let mut notify = false;
        {
            let mut v = verdict.lock();
            match result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    if successes >= t.success_threshold {
                        match kind {
                            ProbeKind::Startup => {
                                v.started = true;
                                drop(v);
                                changed();
                                return true;
                            }
                            ProbeKind::Readiness if !v.ready => {
                                v.ready = true;
                                notify = true;
                            }
                            _ => {}
                        }
                    }
                }
                Err(message) => {
                    successes = 0;
                    failures += 1;
                    v.last_failure = Some((kind, message.clone()));
                    // Every failure is an event, as in Kubernetes; a few are kept until the
                    // agent reports them (the server aggregates repeats).
                    if v.unreported.len() >= 8 {
                        v.unreported.remove(0);
                    }
                    v.unreported.push((kind, message.clone()));
                    notify = true;
                    if failures >= t.failure_threshold {
                        match kind {
                            ProbeKind::Startup | ProbeKind::Liveness => {
                                v.restart = Some((kind, message.clone()));
                                v.ready = false;
                                drop(v);
                                changed();
                                return false;
                            }
                            ProbeKind::Readiness if v.ready => {
                                v.ready = false;
                                notify = true;
                            }
                            ProbeKind::Readiness => {}
                        }
                    }
                }
            }
        }
        if notify {
            changed();
        }
        tokio::time::sleep(t.period).await;
    }
}

/// Scripted checks for the fake runtime: every check passes unless the container's
/// [`FakeScript`](crate::runtime::FakeScript) says that its probe fails.
pub struct FakeChecker;

impl Checker for FakeChecker {
    fn check<'a>(
        &'a self,
        kind: ProbeKind,
        _check: &'a Check,
        target: &'a Target,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if target.fake.fails(kind) {
                Err(format!("{} probe scripted to fail", kind.name()))
            } else {
                Ok(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn container(probes: serde_json::Value) -> Container {
        let mut c =
            json!({"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 80}]});
        for (k, v) in probes.as_object().unwrap() {
            c[k] = v.clone();
        }
        serde_json::from_value(c).unwrap()
    }

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            ports: vec![PortBinding {
                name: Some("http".into()),
                container_port: 80,
                host_port: 31080,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_to_host_ports() {
        let probe: Probe =
            serde_json::from_value(json!({"httpGet": {"path": "healthz", "port": "http"}}))
                .unwrap();
        assert_eq!(
            check_of(&probe, &target()),
            Check::Http {
                url: "http://127.0.0.1:31080/healthz".into(),
                headers: vec![]
            }
        );
        let probe: Probe = serde_json::from_value(json!({"tcpSocket": {"port": 80}})).unwrap();
        assert_eq!(
            check_of(&probe, &target()),
            Check::Tcp {
                host: "127.0.0.1".into(),
                port: 31080
            }
        );
        let probe: Probe =
            serde_json::from_value(json!({"tcpSocket": {"port": "metrics"}})).unwrap();
        assert!(
            matches!(check_of(&probe, &target()), Check::Unsupported(m) if m.contains("\"metrics\""))
        );
    }

    /// A checker whose answers follow a script, one per check, then repeat the last.
    struct Scripted(Mutex<Vec<bool>>);

    impl Checker for Scripted {
        fn check<'a>(
            &'a self,
            _: ProbeKind,
            _: &'a Check,
            _: &'a Target,
            _: Duration,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                let mut script = self.0.lock().unwrap();
                let ok = if script.len() > 1 {
                    script.remove(0)
                } else {
                    script[0]
                };
                if ok {
                    Ok(())
                } else {
                    Err("scripted failure".into())
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_thresholds() {
        let c = container(
            json!({"readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2, "successThreshold": 2}}),
        );
        let checker = Arc::new(Scripted(Mutex::new(vec![
            true, true, false, false, true, true,
        ])));
        let changes = Arc::new(AtomicUsize::new(0));
        let counter = changes.clone();
        let probes = spawn(
            &c,
            target(),
            checker,
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let verdict = probes.verdict.clone();
        assert!(verdict.get().started && !verdict.get().ready);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(verdict.get().ready, "two successes make it ready");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!verdict.get().ready, "two failures make it not ready");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(verdict.get().ready);
        // Ready, each failure (for its event; the second also unready), ready again.
        assert_eq!(changes.load(Ordering::SeqCst), 4);
        let failures = verdict.take().unreported;
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures.iter().all(|(k, _)| *k == ProbeKind::Readiness));
        assert!(verdict.take().unreported.is_empty(), "reported once");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_failure_asks_for_a_restart_after_the_initial_delay() {
        let c = container(
            json!({"livenessProbe": {"httpGet": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 3}}),
        );
        let probes = spawn(
            &c,
            target(),
            Arc::new(Scripted(Mutex::new(vec![false]))),
            Arc::new(|| {}),
        );
        let verdict = probes.verdict.clone();
        tokio::time::sleep(Duration::from_millis(5000 + 2 * 2000 - 100)).await;
        assert_eq!(
            verdict.get().restart,
            None,
            "three failures take 5s + 2 periods"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            verdict.take().restart,
            Some((ProbeKind::Liveness, "scripted failure".to_owned()))
        );
        assert_eq!(verdict.take().restart, None, "acted on once");
        assert!(
            !verdict.get().ready,
            "a container about to be restarted is not ready"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gates_the_other_probes() {
        let c = container(json!({
            "startupProbe": {"exec": {"command": ["x"]}, "periodSeconds": 1, "failureThreshold": 10},
            "readinessProbe": {"exec": {"command": ["x"]}, "periodSeconds": 1}
        }));
        let probes = spawn(
            &c,
            target(),
            Arc::new(Scripted(Mutex::new(vec![false, false, true]))),
            Arc::new(|| {}),
        );
        let verdict = probes.verdict.clone();
        assert!(!verdict.get().started);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let v = verdict.get();
        assert!(v.started && v.ready, "{v:?}");
    }

    #[tokio::test]
    async fn real_checks_against_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                    .await
                    .unwrap_or(0);
                let code = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = Target::default();
        let timeout = Duration::from_secs(5);
        let http = |path: &str| Check::Http {
            url: format!("http://127.0.0.1:{port}{path}"),
            headers: vec![],
        };
        assert_eq!(
            HostChecker
                .check(ProbeKind::Readiness, &http("/ok"), &t, timeout)
                .await,
            Ok(())
        );
        assert_eq!(
            HostChecker
                .check(ProbeKind::Readiness, &http("/bad"), &t, timeout)
                .await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        let tcp = Check::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(
            HostChecker
                .check(ProbeKind::Liveness, &tcp, &t, timeout)
                .await,
            Ok(())
        );
        let exec = |cmd: &[&str]| Check::Exec {
            command: cmd.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            HostChecker
                .check(ProbeKind::Liveness, &exec(&["true"]), &t, timeout)
                .await,
            Ok(())
        );
        assert_eq!(
            HostChecker
                .check(ProbeKind::Liveness, &exec(&["false"]), &t, timeout)
                .await,
            Err("command exited with 1".into())
        );
        let slow = exec(&["sleep", "5"]);
        assert_eq!(
            HostChecker
                .check(ProbeKind::Liveness, &slow, &t, Duration::from_millis(100))
                .await,
            Err("timeout after 0.1s".into())
        );
    }
}
