//! The OCI runtime spec (`config.json`) of one container, as containerd's CRI plugin writes it
//! for a Kubernetes container and runc (here youki's `libcontainer`) reads it.
//!
//! What is set, and where it comes from:
//! - process: argv, `K=V` environment, working directory, uid/gid/additional gids, no
//!   terminal, `noNewPrivileges` from `allowPrivilegeEscalation: false`, Docker's default 14
//!   capabilities (bounding, effective, permitted; none inheritable or ambient) with
//!   `capabilities.add`/`drop` applied as containerd does, `RLIMIT_NOFILE` 1048576;
//! - root: the overlay, read-only for `readOnlyRootFilesystem`;
//! - mounts: containerd's defaults less `/run` (as the CRI plugin), `/sys/fs/cgroup`
//!   read-only, then the agent's files bound with `rbind,rprivate,ro|rw` (a bind replaces the
//!   default mount at the same place; one at `/dev` replaces every default under `/dev`);
//! - linux: the pod's namespaces, a new mount namespace, a cgroup namespace on cgroup v2 only
//!   (as containerd, not for privileged containers), the six device nodes every runtime creates,
//!   the device cgroup (deny all, allow those and the pseudo-terminals), memory (swap equal to
//!   the limit: no swap, as the kubelet asks when swap is off), CPU and pids limits, the cgroup
//!   path, and containerd's masked and read-only paths.
//!
//! A privileged container gets every capability, every device allowed in the device cgroup,
//! `/sys` and `/sys/fs/cgroup` read-write and no masked or read-only path. Unlike containerd it
//! does not get the host's device nodes: the spec is built from its input alone.
//!
//! `linux.seccomp` is never set: libcontainer loads profiles only with its `libseccomp` feature,
//! which links the C library. `seccompProfile: RuntimeDefault` is the [`ANNOTATION`] instead,
//! with `no_new_privs` on, which minik's own executor acts on ([`super::seccomp`]); without it
//! a container runs `Unconfined`, Kubernetes' default.
//!
//! Not in the spec because libcontainer does them for every container: the `/dev/fd`,
//! `/dev/stdin`, `/dev/stdout`, `/dev/stderr` and `/dev/kcore` symbolic links, and `/dev/ptmx`
//! as a link to `pts/ptmx`. libcontainer's device cgroup also always allows `mknod` of any
//! device, `/dev/console`, `/dev/ptmx` and `/dev/net/tun` on top of the rules here.

use std::collections::HashSet;

use super::seccomp::{ANNOTATION, RUNTIME_DEFAULT};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::container::{OciContainer, PidNamespace, Resources, Security};

/// The open files a container may have (soft and hard), as containerd gives.
pub(crate) const NOFILE: u64 = 1_048_576;

/// Every capability, by the name Kubernetes uses (without `CAP_`).
const ALL_CAPABILITIES: &[(&str, Capability)] = &[
    ("AUDIT_CONTROL", Capability::AuditControl),
    ("AUDIT_READ", Capability::AuditRead),
    ("AUDIT_WRITE", Capability::AuditWrite),
    ("BLOCK_SUSPEND", Capability::BlockSuspend),
    ("BPF", Capability::Bpf),
    ("CHECKPOINT_RESTORE", Capability::CheckpointRestore),
    ("CHOWN", Capability::Chown),
    ("DAC_OVERRIDE", Capability::DacOverride),
    ("DAC_READ_SEARCH", Capability::DacReadSearch),
    ("FOWNER", Capability::Fowner),
    ("FSETID", Capability::Fsetid),
    ("IPC_LOCK", Capability::IpcLock),
    ("IPC_OWNER", Capability::IpcOwner),
    ("KILL", Capability::Kill),
    ("LEASE", Capability::Lease),
    ("LINUX_IMMUTABLE", Capability::LinuxImmutable),
    ("MAC_ADMIN", Capability::MacAdmin),
    ("MAC_OVERRIDE", Capability::MacOverride),
    ("MKNOD", Capability::Mknod),
    ("NET_ADMIN", Capability::NetAdmin),
    ("NET_BIND_SERVICE", Capability::NetBindService),
    ("NET_BROADCAST", Capability::NetBroadcast),
    ("NET_RAW", Capability::NetRaw),
    ("PERFMON", Capability::Perfmon),
    ("SETGID", Capability::Setgid),
    ("SETFCAP", Capability::Setfcap),
    ("SETPCAP", Capability::Setpcap),
    ("SETUID", Capability::Setuid),
    ("SYS_ADMIN", Capability::SysAdmin),
    ("SYS_BOOT", Capability::SysBoot),
    ("SYS_CHROOT", Capability::SysChroot),
    ("SYS_MODULE", Capability::SysModule),
    ("SYS_NICE", Capability::SysNice),
    ("SYS_PACCT", Capability::SysPacct),
    ("SYS_PTRACE", Capability::SysPtrace),
    ("SYS_RAWIO", Capability::SysRawio),
    ("SYS_RESOURCE", Capability::SysResource),
    ("SYS_TIME", Capability::SysTime),
    ("SYS_TTY_CONFIG", Capability::SysTtyConfig),
    ("SYSLOG", Capability::Syslog),
    ("WAKE_ALARM", Capability::WakeAlarm),
];

/// Docker's and containerd's default capabilities.
const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from an unprivileged container (containerd's defaults).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths an unprivileged container sees read-only (containerd's defaults).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The device nodes in every container's `/dev`: (path, major, minor).
const DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Where cgroup v2 (the unified hierarchy) shows itself.
const CGROUP2_MARKER: &str = "/sys/fs/cgroup/cgroup.controllers";

/// The OCI runtime spec of `c`. The only thing read from the host is whether it runs cgroup v2
/// (then the container gets its own cgroup namespace, as containerd gives).
pub(crate) fn spec(c: &OciContainer) -> Result<Spec, String> {
    spec_on(c, Path::new(CGROUP2_MARKER).exists())
}

/// [`spec`] for a host with (`cgroup_v2`) or without the unified cgroup hierarchy.
pub(crate) fn spec_on(c: &OciContainer, cgroup_v2: bool) -> Result<Spec, String> {
    validate(c)?;
    let privileged = c.security.privileged;
    let caps = capabilities(&c.security)?;
    let process = ProcessBuilder::default()
        .terminal(c.terminal)
        .user(
            UserBuilder::default()
                .uid(c.user.uid)
                .gid(c.user.gid)
                .additional_gids(c.user.additional_gids.clone())
                .build()
                .map_err(err)?,
        )
        .args(c.args.clone())
        .env(
            c.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd(PathBuf::from(&c.cwd))
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()
                .map_err(err)?,
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(c.nofile)
            .soft(c.nofile)
            .build()
            .map_err(err)?])
        // The default seccomp profile is installed by the container's own process after its
        // capabilities are dropped, which the kernel allows only with no_new_privs.
        .no_new_privileges(c.security.no_new_privileges || c.security.seccomp_default)
        .build()
        .map_err(err)?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(c, cgroup_namespace(c, cgroup_v2))?)
        .devices(devices()?)
        .resources(resources(&c.resources, privileged)?)
        .cgroups_path(PathBuf::from(&c.cgroup_path))
        .build()
        .map_err(err)?;
    let strings = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(strings(MASKED_PATHS)));
        linux.set_readonly_paths(Some(strings(READONLY_PATHS)));
    }
    // Not set: see the module's documentation.
    linux.set_seccomp(None);

    let mut spec = SpecBuilder::default()
        .version(oci_spec::runtime::VERSION)
        .process(process)
        .root(
            RootBuilder::default()
                .path(c.rootfs.clone())
                .readonly(c.security.read_only_root)
                .build()
                .map_err(err)?,
        )
        .hostname(c.hostname.clone())
        .mounts(mounts(c)?)
        .linux(linux)
        .build()
        .map_err(err)?;
    spec.set_annotations(c.security.seccomp_default.then(|| {
        [(ANNOTATION.to_owned(), RUNTIME_DEFAULT.to_owned())]
            .into_iter()
            .collect()
    }));
    Ok(spec)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("building the OCI spec: {e}")
}

/// What the kernel or the runtime would refuse later, with a clearer message now.
fn validate(c: &OciContainer) -> Result<(), String> {
    if c.args.is_empty() {
        return Err("no command specified".to_owned());
    }
    if let Some(arg) = c.args.iter().find(|a| a.contains('\0')) {
        return Err(format!("argument {arg:?} contains a NUL byte"));
    }
    for (name, value) in &c.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        if value.contains('\0') {
            return Err(format!("environment variable {name} contains a NUL byte"));
        }
    }
    if !c.cwd.starts_with('/') {
        return Err(format!("the working directory {:?} is not absolute", c.cwd));
    }
    if let Some((_, dest, _)) = c.binds.iter().find(|(_, dest, _)| !dest.starts_with('/')) {
        return Err(format!("mount destination {dest:?} is not absolute"));
    }
    Ok(())
}

/// A capability from its Kubernetes name (`NET_ADMIN`, any case, `CAP_` optional).
fn capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, c)| *c)
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The process's capabilities: the defaults with `add` and `drop` applied in containerd's
/// order (`ALL` added, `ALL` dropped, then each added, then each dropped), or all of them for a
/// privileged container. Unknown names are an error, privileged or not.
fn capabilities(security: &Security) -> Result<Capabilities, String> {
    let unknown: Vec<&str> = security
        .cap_add
        .iter()
        .chain(&security.cap_drop)
        .filter(|n| !is_all(n) && capability(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!("unknown capabilities: {}", unknown.join(", ")));
    }
    let all = || ALL_CAPABILITIES.iter().map(|(_, c)| *c);
    if security.privileged {
        return Ok(all().collect());
    }
    let mut caps: HashSet<Capability> = DEFAULT_CAPABILITIES.iter().copied().collect();
    if security.cap_add.iter().any(|n| is_all(n)) {
        caps.extend(all());
    }
    if security.cap_drop.iter().any(|n| is_all(n)) {
        caps.clear();
    }
    caps.extend(security.cap_add.iter().filter_map(|n| capability(n)));
    for dropped in security.cap_drop.iter().filter_map(|n| capability(n)) {
        caps.remove(&dropped);
    }
    Ok(caps)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(PathBuf::from(destination))
        .typ(typ)
        .source(PathBuf::from(source))
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(err)
}

/// The default mounts, then the binds (parents before children).
fn mounts(c: &OciContainer) -> Result<Vec<Mount>, String> {
    let rw = if c.security.privileged { "rw" } else { "ro" };
    let defaults = [
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw],
        )?,
    ];
    let bound: Vec<&str> = c
        .binds
        .iter()
        .map(|(_, dest, _)| dest.trim_end_matches('/'))
        .map(|d| if d.is_empty() { "/" } else { d })
        .collect();
    let dev_bound = bound.contains(&"/dev");
    let mut out: Vec<Mount> = defaults
        .into_iter()
        .filter(|m| {
            let dest = m.destination().to_string_lossy();
            let replaced = bound.contains(&dest.as_ref());
            let under_dev = dev_bound && dest.starts_with("/dev/");
            !replaced && !under_dev
        })
        .collect();
    let mut binds: Vec<&(PathBuf, String, bool)> = c.binds.iter().collect();
    binds.sort_by_key(|(_, dest, _)| Path::new(dest).components().count());
    for (source, dest, read_only) in binds {
        out.push(
            MountBuilder::default()
                .destination(PathBuf::from(dest))
                .typ("bind")
                .source(source.clone())
                .options(vec![
                    "rbind".to_owned(),
                    "rprivate".to_owned(),
                    if *read_only { "ro" } else { "rw" }.to_owned(),
                ])
                .build()
                .map_err(err)?,
        );
    }
    Ok(out)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, String> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    match path {
        Some(path) => builder.path(path.to_path_buf()),
        None => builder,
    }
    .build()
    .map_err(err)
}

/// Whether the container gets a cgroup namespace of its own: on cgroup v2 unless privileged,
/// as containerd gives; and with `hostPID` on v1 too. There libcontainer (0.6) would otherwise
/// bind the container's cgroups into it by a path it miscomputes for a container without a PID
/// namespace (it takes the parent's cgroup for the host's root: "failed to prepare rootfs");
/// in a namespace it mounts the hierarchies themselves, which show the container the same
/// cgroups.
fn cgroup_namespace(c: &OciContainer, cgroup_v2: bool) -> bool {
    (cgroup_v2 && !c.security.privileged) || c.namespaces.pid == PidNamespace::Host
}

fn namespaces(c: &OciContainer, cgroup_ns: bool) -> Result<Vec<LinuxNamespace>, String> {
    let ns = &c.namespaces;
    let mut out = Vec::new();
    match &ns.pid {
        PidNamespace::Own => out.push(namespace(LinuxNamespaceType::Pid, None)?),
        PidNamespace::Pod(path) => out.push(namespace(LinuxNamespaceType::Pid, Some(path))?),
        PidNamespace::Host => {}
    }
    out.push(namespace(LinuxNamespaceType::Ipc, Some(&ns.ipc))?);
    out.push(namespace(LinuxNamespaceType::Uts, Some(&ns.uts))?);
    out.push(namespace(LinuxNamespaceType::Mount, None)?);
    if let Some(network) = &ns.network {
        out.push(namespace(LinuxNamespaceType::Network, Some(network))?);
    }
    if cgroup_ns {
        out.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(out)
}

fn devices() -> Result<Vec<LinuxDevice>, String> {
    DEVICES
        .iter()
        .map(|(path, major, minor)| {
            LinuxDeviceBuilder::default()
                .path(PathBuf::from(path))
                .typ(LinuxDeviceType::C)
                .major(*major)
                .minor(*minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(err)
        })
        .collect()
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
) -> Result<LinuxDeviceCgroup, String> {
    let mut builder = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access("rwm");
    if let Some(major) = major {
        builder = builder.major(major);
    }
    if let Some(minor) = minor {
        builder = builder.minor(minor);
    }
    builder.build().map_err(err)
}

/// The device cgroup: all devices for a privileged container; otherwise none but the
/// [`DEVICES`], `/dev/ptmx` and the pseudo-terminals.
fn device_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>, String> {
    if privileged {
        return Ok(vec![device_rule(true, LinuxDeviceType::A, None, None)?]);
    }
    let mut rules = vec![device_rule(false, LinuxDeviceType::A, None, None)?];
    for (_, major, minor) in DEVICES {
        rules.push(device_rule(
            true,
            LinuxDeviceType::C,
            Some(*major),
            Some(*minor),
        )?);
    }
    rules.push(device_rule(true, LinuxDeviceType::C, Some(5), Some(2))?);
    rules.push(device_rule(true, LinuxDeviceType::C, Some(136), None)?);
    Ok(rules)
}

fn resources(r: &Resources, privileged: bool) -> Result<LinuxResources, String> {
    let mut builder = LinuxResourcesBuilder::default().devices(device_rules(privileged)?);
    if let Some(limit) = r.memory_limit {
        builder = builder.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .map_err(err)?,
        );
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(shares) = r.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some((quota, period)) = r.cpu_quota {
            cpu = cpu.quota(quota).period(period);
        }
        builder = builder.cpu(cpu.build().map_err(err)?);
    }
    if let Some(limit) = r.pids_limit {
        builder = builder.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(err)?,
        );
    }
    builder.build().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::oci::container::{Namespaces, User};
    use serde_json::{json, Value};

    fn typical() -> OciContainer {
        OciContainer {
            id: "uid-1/web/0".into(),
            args: vec!["/bin/server".into(), "--port=8080".into()],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("GREETING".into(), "a=b c".into()),
            ],
            cwd: "/srv".into(),
            user: User {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1000, 4],
            },
            hostname: "web-1".into(),
            rootfs: PathBuf::from("/var/lib/minik/overlay/c1/merged"),
            namespaces: Namespaces {
                network: Some(PathBuf::from("/run/minik/netns/pod-1")),
                ipc: PathBuf::from("/run/minik/ns/pod-1/ipc"),
                uts: PathBuf::from("/run/minik/ns/pod-1/uts"),
                pid: PidNamespace::Own,
            },
            cgroup_path: "/minik/n1/uid-1/web".into(),
            resources: Resources::default(),
            security: Security::default(),
            terminal: false,
            nofile: NOFILE,
            binds: vec![
                (
                    PathBuf::from("/var/lib/minik/pods/uid-1/etc-hosts"),
                    "/etc/hosts".into(),
                    false,
                ),
                (
                    PathBuf::from("/var/lib/minik/pods/uid-1/resolv.conf"),
                    "/etc/resolv.conf".into(),
                    true,
                ),
            ],
        }
    }

    fn to_json(spec: &Spec) -> Value {
        serde_json::to_value(spec).expect("serialize")
    }

    /// The capability names of one set, sorted.
    fn cap_names(spec: &Spec, set: &str) -> Vec<String> {
        let json = to_json(spec);
        let mut names: Vec<String> = json["process"]["capabilities"][set]
            .as_array()
            .expect("capability set")
            .iter()
            .map(|v| v.as_str().expect("name").to_owned())
            .collect();
        names.sort();
        names
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    const DEFAULT_CAP_NAMES: &[&str] = &[
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];

    #[test]
    fn typical_container() {
        let spec = spec_on(&typical(), false).expect("spec");
        let mut json = to_json(&spec);
        // Sets are unordered: checked on their own.
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(cap_names(&spec, set), sorted(DEFAULT_CAP_NAMES), "{set}");
        }
        json["process"]["capabilities"]["bounding"] = json!("checked");
        json["process"]["capabilities"]["effective"] = json!("checked");
        json["process"]["capabilities"]["permitted"] = json!("checked");
        let expected = json!({
            "ociVersion": "1.1.0",
            "root": {"path": "/var/lib/minik/overlay/c1/merged", "readonly": false},
            "hostname": "web-1",
            "process": {
                "terminal": false,
                "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 4]},
                "args": ["/bin/server", "--port=8080"],
                "env": ["PATH=/usr/bin:/bin", "GREETING=a=b c"],
                "cwd": "/srv",
                "capabilities": {
                    "bounding": "checked", "effective": "checked", "permitted": "checked",
                    "inheritable": [], "ambient": []
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
                "noNewPrivileges": false
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
                {"destination": "/etc/hosts", "type": "bind",
                 "source": "/var/lib/minik/pods/uid-1/etc-hosts",
                 "options": ["rbind", "rprivate", "rw"]},
                {"destination": "/etc/resolv.conf", "type": "bind",
                 "source": "/var/lib/minik/pods/uid-1/resolv.conf",
                 "options": ["rbind", "rprivate", "ro"]}
            ],
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "ipc", "path": "/run/minik/ns/pod-1/ipc"},
                    {"type": "uts", "path": "/run/minik/ns/pod-1/uts"},
                    {"type": "mount"},
                    {"type": "network", "path": "/run/minik/netns/pod-1"}
                ],
                "devices": [
                    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 0, "gid": 0},
                    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 438, "uid": 0, "gid": 0},
                    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 438, "uid": 0, "gid": 0},
                    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8, "fileMode": 438, "uid": 0, "gid": 0},
                    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9, "fileMode": 438, "uid": 0, "gid": 0},
                    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0, "fileMode": 438, "uid": 0, "gid": 0}
                ],
                "resources": {"devices": [
                    {"allow": false, "type": "a", "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 136, "access": "rwm"}
                ]},
                "cgroupsPath": "/minik/n1/uid-1/web",
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                    "/sys/devices/virtual/powercap"
                ],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        assert_eq!(json, expected, "{json:#}");
    }

    #[test]
    fn the_spec_reads_back_as_libcontainer_reads_it() {
        let mut c = typical();
        c.resources = Resources {
            memory_limit: Some(64 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some((50_000, 100_000)),
            pids_limit: Some(100),
        };
        c.security.cap_add = vec!["SYS_ADMIN".into()];
        for cgroup_v2 in [false, true] {
            let spec = spec_on(&c, cgroup_v2).expect("spec");
            let text = serde_json::to_string_pretty(&spec).expect("serialize");
            let back: Spec = serde_json::from_str(&text).expect("parse");
            assert_eq!(back, spec);
            // What libcontainer checks before creating the container.
            assert!(back.version().starts_with("1."));
            let syscall = libcontainer::syscall::syscall::create_syscall();
            libcontainer::utils::validate_spec_for_new_user_ns(&back, &*syscall)
                .expect("user namespace");
            let linux = back.linux().as_ref().expect("linux");
            libcontainer::namespaces::Namespaces::try_from(linux.namespaces().as_ref())
                .expect("namespaces");
            // Through the file, as `Spec::load` in libcontainer does.
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("config.json");
            spec.save(&path).expect("save");
            assert_eq!(Spec::load(&path).expect("load"), spec);
        }
    }

    #[test]
    fn capabilities_add_and_drop() {
        let with = |add: &[&str], drop: &[&str]| {
            let mut c = typical();
            c.security.cap_add = add.iter().map(|s| s.to_string()).collect();
            c.security.cap_drop = drop.iter().map(|s| s.to_string()).collect();
            spec_on(&c, false).map(|s| cap_names(&s, "effective"))
        };
        let defaults_and = |extra: &[&str], less: &[&str]| {
            let mut v: Vec<&str> = DEFAULT_CAP_NAMES
                .iter()
                .copied()
                .filter(|c| !less.contains(c))
                .collect();
            v.extend_from_slice(extra);
            sorted(&v)
        };
        let all: Vec<String> = sorted(
            &ALL_CAPABILITIES
                .iter()
                .map(|(n, _)| n)
                .map(|n| format!("CAP_{n}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(all.len(), 41);
        assert_eq!(
            with(
                &["NET_ADMIN", "sys_time", "CAP_SYS_PTRACE"],
                &["NET_RAW", "mknod"]
            ),
            Ok(defaults_and(
                &["CAP_NET_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE"],
                &["CAP_NET_RAW", "CAP_MKNOD"]
            ))
        );
        // Drop ALL then add: only what is added.
        assert_eq!(
            with(&["NET_BIND_SERVICE"], &["ALL"]),
            Ok(sorted(&["CAP_NET_BIND_SERVICE"]))
        );
        assert_eq!(with(&[], &["all"]), Ok(vec![]));
        // Add ALL then drop one.
        let mut all_but_chown = all.clone();
        all_but_chown.retain(|c| c != "CAP_CHOWN");
        assert_eq!(with(&["ALL"], &["CHOWN"]), Ok(all_but_chown));
        // Adding what is there and dropping what is not are no-ops.
        assert_eq!(
            with(&["KILL"], &["SYS_ADMIN"]),
            Ok(sorted(DEFAULT_CAP_NAMES))
        );
        assert_eq!(
            with(&["NET_ADMIN", "FLY"], &["SWIM"]),
            Err("unknown capabilities: FLY, SWIM".to_owned())
        );
        // Each set is the same; inheritable and ambient stay empty.
        let mut c = typical();
        c.security.cap_add = vec!["NET_ADMIN".into()];
        let spec = spec_on(&c, false).expect("spec");
        assert_eq!(cap_names(&spec, "bounding"), cap_names(&spec, "permitted"));
        assert_eq!(cap_names(&spec, "inheritable"), Vec::<String>::new());
        assert_eq!(cap_names(&spec, "ambient"), Vec::<String>::new());
    }

    #[test]
    fn privileged_containers() {
        let mut c = typical();
        c.security.privileged = true;
        c.security.cap_drop = vec!["ALL".into()];
        let spec = spec_on(&c, true).expect("spec");
        assert_eq!(cap_names(&spec, "effective").len(), 41);
        assert_eq!(cap_names(&spec, "bounding").len(), 41);
        let json = to_json(&spec);
        assert!(json["linux"].get("maskedPaths").is_none());
        assert!(json["linux"].get("readonlyPaths").is_none());
        assert_eq!(
            json["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
        assert_eq!(json["mounts"][5]["destination"], "/sys");
        assert_eq!(
            json["mounts"][5]["options"],
            json!(["nosuid", "noexec", "nodev", "rw"])
        );
        assert_eq!(json["mounts"][6]["destination"], "/sys/fs/cgroup");
        assert_eq!(
            json["mounts"][6]["options"],
            json!(["nosuid", "noexec", "nodev", "relatime", "rw"])
        );
        // No cgroup namespace for a privileged container, even on cgroup v2.
        let types: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .map(|n| n["type"].as_str().expect("type"))
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount", "network"]);
    }

    #[test]
    fn read_only_root_and_no_new_privileges() {
        let mut c = typical();
        c.security.read_only_root = true;
        c.security.no_new_privileges = true;
        let json = to_json(&spec_on(&c, false).expect("spec"));
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["noNewPrivileges"], true);
    }

    #[test]
    fn the_default_seccomp_profile_is_asked_for_with_no_new_privileges() {
        let mut c = typical();
        let json = to_json(&spec_on(&c, false).expect("spec"));
        assert!(json.get("annotations").is_none(), "{json}");
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert!(json["linux"].get("seccomp").is_none());
        c.security.seccomp_default = true;
        let json = to_json(&spec_on(&c, false).expect("spec"));
        assert_eq!(json["annotations"][ANNOTATION], RUNTIME_DEFAULT);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert!(json["linux"].get("seccomp").is_none());
    }

    #[test]
    fn namespaces_follow_the_pod() {
        let types = |c: &OciContainer, v2: bool| -> Value {
            to_json(&spec_on(c, v2).expect("spec"))["linux"]["namespaces"].clone()
        };
        // Host network: no network namespace at all.
        let mut c = typical();
        c.namespaces.network = None;
        assert_eq!(
            types(&c, false),
            json!([
                {"type": "pid"},
                {"type": "ipc", "path": "/run/minik/ns/pod-1/ipc"},
                {"type": "uts", "path": "/run/minik/ns/pod-1/uts"},
                {"type": "mount"}
            ])
        );
        // Shared PID namespace: joined by path; host PID: none.
        c.namespaces.pid = PidNamespace::Pod(PathBuf::from("/run/minik/ns/pod-1/pid"));
        assert_eq!(
            types(&c, false)[0],
            json!({"type": "pid", "path": "/run/minik/ns/pod-1/pid"})
        );
        c.namespaces.pid = PidNamespace::Host;
        let host = types(&c, false);
        assert_eq!(
            host[0],
            json!({"type": "ipc", "path": "/run/minik/ns/pod-1/ipc"})
        );
        // ... and, on cgroup v1 too, a cgroup namespace (libcontainer's v1 bind mounts of a
        // container without a PID namespace fail).
        assert_eq!(
            host.as_array().and_then(|a| a.last()),
            Some(&json!({"type": "cgroup"}))
        );
        // cgroup v2: a cgroup namespace of its own.
        let all = types(&typical(), true);
        assert_eq!(all[5], json!({"type": "cgroup"}));
        assert_eq!(all.as_array().map(Vec::len), Some(6));
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let mut c = typical();
        c.resources = Resources {
            memory_limit: Some(128 << 20),
            cpu_shares: Some(102),
            cpu_quota: Some((25_000, 100_000)),
            pids_limit: Some(512),
        };
        let json = to_json(&spec_on(&c, false).expect("spec"));
        let r = &json["linux"]["resources"];
        assert_eq!(r["memory"], json!({"limit": 134217728, "swap": 134217728}));
        assert_eq!(
            r["cpu"],
            json!({"shares": 102, "quota": 25000, "period": 100000})
        );
        assert_eq!(r["pids"], json!({"limit": 512}));
        // Only what is set.
        c.resources = Resources {
            cpu_shares: Some(2),
            ..Resources::default()
        };
        let json = to_json(&spec_on(&c, false).expect("spec"));
        let r = &json["linux"]["resources"];
        assert_eq!(r["cpu"], json!({"shares": 2}));
        assert!(r.get("memory").is_none());
        assert!(r.get("pids").is_none());
    }

    #[test]
    fn binds_replace_defaults_and_sort() {
        let mut c = typical();
        c.binds = vec![
            (PathBuf::from("/h/deep"), "/data/a/b".into(), false),
            (PathBuf::from("/h/shm"), "/dev/shm".into(), false),
            (PathBuf::from("/h/data"), "/data".into(), true),
        ];
        let json = to_json(&spec_on(&c, false).expect("spec"));
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| m["destination"].as_str().expect("destination"))
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/data",
                "/dev/shm",
                "/data/a/b"
            ]
        );
        // A whole /dev replaces every default under it.
        c.binds = vec![(PathBuf::from("/h/dev"), "/dev/".into(), false)];
        let json = to_json(&spec_on(&c, false).expect("spec"));
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| m["destination"].as_str().expect("destination"))
            .collect();
        assert_eq!(dests, ["/proc", "/sys", "/sys/fs/cgroup", "/dev/"]);
    }

    #[test]
    fn bad_input_is_an_error() {
        type Change = fn(&mut OciContainer);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.args.clear(), "no command specified"),
            (
                |c| c.args.push("a\0b".into()),
                "argument \"a\\0b\" contains a NUL byte",
            ),
            (
                |c| c.env.push(("A=B".into(), "x".into())),
                "invalid environment variable name \"A=B\"",
            ),
            (
                |c| c.env.push((String::new(), "x".into())),
                "invalid environment variable name \"\"",
            ),
            (
                |c| c.cwd = "srv".into(),
                "the working directory \"srv\" is not absolute",
            ),
            (
                |c| c.binds.push((PathBuf::from("/h"), "etc/x".into(), true)),
                "mount destination \"etc/x\" is not absolute",
            ),
        ];
        for (change, message) in cases {
            let mut c = typical();
            change(&mut c);
            assert_eq!(spec_on(&c, false), Err(message.to_owned()));
        }
    }
}
