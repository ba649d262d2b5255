//! `seccompProfile: RuntimeDefault` in the `oci` runtime, without the C library libcontainer's
//! own seccomp support links: the agent marks the container's `config.json` with
//! [`ANNOTATION`] (and turns `no_new_privs` on, which a filter installed by an unprivileged
//! process needs), and [`Executor`] — the workload executor libcontainer calls in the
//! container's process, after its namespaces, root, user and capabilities are set and just
//! before `execve` — compiles minik's default profile with `seccompiler` and installs it. Exec
//! processes (libcontainer tenants) read the same `config.json` and get the same filter.
//!
//! The profile denies what Docker's and containerd's default profiles deny to a container
//! without `CAP_SYS_ADMIN` (their documented "significant syscalls blocked"): kernel modules,
//! kexec, reboot, the clock, swap, accounting, quotas, keyrings, BPF, perf events, userfaultfd,
//! NUMA policy, mounts and pivot_root, `setns`, `unshare` and `clone` with a namespace flag,
//! cross-process memory access, file handles, and obsolete calls. Each answers `EPERM`, except
//! `clone3`, which answers `ENOSYS` (its flags are in memory a filter cannot read, so C
//! libraries fall back to `clone`, whose flags it can). Where Docker lists what is allowed
//! and minik what is denied, a system call neither names is allowed here: docs/runtimes.md
//! says so.

use std::collections::BTreeMap;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor as LibcontainerExecutor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use nix::libc;
use oci_spec::runtime::Spec;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The `config.json` annotation that asks for the default profile, and its value.
pub(crate) const ANNOTATION: &str = "minik.io/seccomp-profile";
pub(crate) const RUNTIME_DEFAULT: &str = "runtime/default";

/// Calls denied outright (`EPERM`) on every architecture.
const DENIED: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_umount2,
    libc::SYS_userfaultfd,
];

/// Calls only some architectures have, denied there too.
#[cfg(target_arch = "x86_64")]
const DENIED_HERE: &[i64] = &[
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_uselib,
    libc::SYS_ustat,
];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_HERE: &[i64] = &[];

/// The namespace flags `clone` and `unshare` may not carry.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
    // CLONE_NEWTIME (not in every libc's constants).
    0x80,
];

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("seccomp on {}: {e}", std::env::consts::ARCH))
}

/// The default profile's two filters: everything it denies with `EPERM`, and `clone3` with
/// `ENOSYS`.
pub(crate) fn runtime_default() -> Result<[BpfProgram; 2], String> {
    let fail = |e: seccompiler::BackendError| format!("the default seccomp profile: {e}");
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .chain(DENIED_HERE)
        .map(|nr| (*nr, Vec::new()))
        .collect();
    // A namespace flag in the first argument (unshare's flags; clone's on both architectures).
    let with_flag = |flag: libc::c_int| -> Result<SeccompRule, String> {
        let flag = u64::from(flag as u32);
        SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(fail)?])
        .map_err(fail)
    };
    let flagged: Vec<SeccompRule> = NAMESPACE_FLAGS
        .iter()
        .map(|f| with_flag(*f))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_unshare, flagged.clone());
    rules.insert(libc::SYS_clone, flagged);
    let denied = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(fail)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(fail)?;
    let compile = |f: SeccompFilter| BpfProgram::try_from(f).map_err(|e| e.to_string());
    Ok([compile(denied)?, compile(clone3)?])
}

/// Whether the container's `config.json` asks for the default profile.
fn wants_default(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .is_some_and(|v| v == RUNTIME_DEFAULT)
}

/// libcontainer's default executor (`execvp` of the process's arguments), preceded by the
/// default seccomp profile when the container asks for it.
#[derive(Clone)]
pub(crate) struct Executor;

impl LibcontainerExecutor for Executor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if wants_default(spec) {
            let filters = runtime_default().map_err(ExecutorError::Other)?;
            for filter in &filters {
                seccompiler::apply_filter(filter).map_err(|e| {
                    ExecutorError::Other(format!("cannot install the seccomp profile: {e}"))
                })?;
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_for_this_machine() {
        let [denied, clone3] = runtime_default().expect("compiles");
        // A jump per denied call and per namespace flag of clone and unshare, at least.
        assert!(
            denied.len() > DENIED.len() + DENIED_HERE.len() + 2 * NAMESPACE_FLAGS.len(),
            "{}",
            denied.len()
        );
        assert!(!clone3.is_empty());
    }

    /// Installs the profile in a child process (seccomp cannot be undone) and checks what
    /// it answers: unshare with a namespace flag and mount are refused, clone3 is unknown, and
    /// what containers do every day still works.
    #[test]
    fn the_default_profile_refuses_namespaces_and_mounts_and_allows_the_rest() {
        let filters = runtime_default().expect("compiles");
        // SAFETY: the child only makes system calls and exits; it never returns into the test
        // harness (the filters were compiled before the fork).
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    nix::sys::prctl::set_no_new_privs().map_err(|_| 10)?;
                    for f in &filters {
                        seccompiler::apply_filter(f).map_err(|_| 11)?;
                    }
                    let errno = |rc: libc::c_long| {
                        if rc < 0 {
                            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                        } else {
                            0
                        }
                    };
                    // SAFETY: plain system calls with no memory arguments but null ones.
                    unsafe {
                        if errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER))
                            != libc::EPERM
                        {
                            return Err(12);
                        }
                        if errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)) != libc::EPERM
                        {
                            return Err(13);
                        }
                        if errno(libc::syscall(libc::SYS_clone3, 0usize, 0usize)) != libc::ENOSYS {
                            return Err(14);
                        }
                        let none = std::ptr::null::<libc::c_char>();
                        if errno(libc::syscall(libc::SYS_mount, none, none, none, 0, none))
                            != libc::EPERM
                        {
                            return Err(15);
                        }
                        // unshare without a namespace flag, and getpid, are allowed.
                        if libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) != 0 {
                            return Err(16);
                        }
                        if libc::getpid() <= 0 {
                            return Err(17);
                        }
                    }
                    Ok(())
                })()
                .err()
                .unwrap_or(0);
                // SAFETY: leave the forked copy of the test process at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
