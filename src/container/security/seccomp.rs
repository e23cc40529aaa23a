//! The default seccomp profile, with the intent of docker's: every system call a container
//! may use stays allowed, and those that reach what namespaces do not isolate (kernel
//! modules, kexec, keyrings, bpf, perf, clocks, swap, new namespaces...) fail with `EPERM`,
//! unless the container holds the capability docker ties them to. Compiled by `seccompiler`
//! in the runtime before clone; the container's init only installs it.

use std::collections::BTreeMap;

use caps::{Capability, CapsHashSet};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::{Error, Result};

/// Denied whatever the capabilities: not namespaced, or obsolete attack surface.
const ALWAYS_DENIED: &[i64] = &[
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    libc::SYS_uselib,
    libc::SYS__sysctl,
    libc::SYS_nfsservctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Denied unless the container holds the capability (docker's `includes.caps` groups).
const DENIED_WITHOUT: &[(Capability, &[i64])] = &[
    (
        Capability::CAP_SYS_ADMIN,
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_fanotify_init,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_mount_setattr,
        ],
    ),
    (
        Capability::CAP_SYS_MODULE,
        &[
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
        ],
    ),
    (
        Capability::CAP_SYS_BOOT,
        &[
            libc::SYS_reboot,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
        ],
    ),
    (
        Capability::CAP_SYS_TIME,
        &[
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_clock_adjtime,
        ],
    ),
    (
        Capability::CAP_SYS_RAWIO,
        &[libc::SYS_iopl, libc::SYS_ioperm],
    ),
    (Capability::CAP_SYS_PTRACE, &[libc::SYS_userfaultfd]),
    (Capability::CAP_SYS_PACCT, &[libc::SYS_acct]),
    (Capability::CAP_SYSLOG, &[libc::SYS_syslog]),
    (
        Capability::CAP_DAC_READ_SEARCH,
        &[libc::SYS_open_by_handle_at],
    ),
    (Capability::CAP_SYS_TTY_CONFIG, &[libc::SYS_vhangup]),
];

/// `clone` flags that create namespaces (the first argument on x86_64).
const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// Syscall numbers with this bit are the x32 ABI's: same kernel entry points under other
/// numbers, which a filter keyed by number would let through.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The filters to install, in order (the kernel applies the strictest answer of all).
#[derive(Debug, Clone)]
pub struct Profile {
    filters: Vec<BpfProgram>,
    /// `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2) with each filter.
    flags: u32,
}

impl Profile {
    /// The default profile for a container that keeps `capabilities`.
    pub fn default_for(capabilities: &CapsHashSet) -> Result<Profile> {
        Ok(Profile {
            filters: vec![deny_filter(capabilities)?, nosys_filter(capabilities)?],
            flags: 0,
        })
    }

    /// A filter compiled elsewhere (an OCI config's `linux.seccomp`, see
    /// [`crate::container::oci::seccomp`]) and the `seccomp(2)` flags it asks for.
    pub fn from_program(program: BpfProgram, flags: u32) -> Profile {
        Profile {
            filters: vec![program],
            flags,
        }
    }

    /// Install every filter on the calling thread. Without `no_new_privs` the kernel requires
    /// `CAP_SYS_ADMIN`, so this runs before the capabilities are dropped.
    pub fn install(&self) -> Result<()> {
        self.filters.iter().try_for_each(|f| install(f, self.flags))
    }

    /// The filters, in installation order (tests run them through [`verdict`]).
    #[cfg(test)]
    pub(crate) fn filters(&self) -> &[BpfProgram] {
        &self.filters
    }

    #[cfg(test)]
    pub(crate) fn flags(&self) -> u32 {
        self.flags
    }
}

/// `EPERM` for what the capabilities do not cover, namespace-creating `clone` included.
fn deny_filter(capabilities: &CapsHashSet) -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALWAYS_DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    for (cap, syscalls) in DENIED_WITHOUT {
        if !capabilities.contains(cap) {
            rules.extend(syscalls.iter().map(|&nr| (nr, Vec::new())));
        }
    }
    if !capabilities.contains(&Capability::CAP_SYS_ADMIN) {
        rules.insert(libc::SYS_clone, namespace_flag_rules()?);
    }
    compile(rules, SeccompAction::Errno(libc::EPERM as u32))
}

/// One rule per namespace flag (rules of a syscall are alternatives).
fn namespace_flag_rules() -> Result<Vec<SeccompRule>> {
    NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag_set = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(seccomp_error)?;
            SeccompRule::new(vec![flag_set]).map_err(seccomp_error)
        })
        .collect()
}

/// `ENOSYS` for `clone3` (its flags live in memory a filter cannot read, so libcs fall back
/// to `clone`, as with docker's profile) and for every x32 syscall number.
fn nosys_filter(capabilities: &CapsHashSet) -> Result<BpfProgram> {
    let mut rules = BTreeMap::new();
    if !capabilities.contains(&Capability::CAP_SYS_ADMIN) {
        rules.insert(libc::SYS_clone3, Vec::new());
    }
    let mut program = x32_guard();
    program.extend(compile(rules, SeccompAction::Errno(libc::ENOSYS as u32))?);
    Ok(program)
}

/// `if (nr >= X32_SYSCALL_BIT) return ERRNO(ENOSYS);` — three instructions ahead of a
/// compiled filter (its jumps are relative, so prepending keeps them valid).
pub(crate) fn x32_guard() -> BpfProgram {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    vec![
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        }, // seccomp_data.nr
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
    ]
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, action: SeccompAction) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, action, TargetArch::x86_64)
        .map_err(seccomp_error)?;
    BpfProgram::try_from(filter).map_err(seccomp_error)
}

fn seccomp_error(e: impl std::fmt::Display) -> Error {
    Error::Runtime(format!("seccomp profile: {e}"))
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`: unlike `seccompiler::apply_filter`, this does
/// not set `no_new_privs` (docker's default leaves it off; `--security-opt
/// no-new-privileges` sets it).
fn install(filter: &[sock_filter], flags: u32) -> Result<()> {
    let len = u16::try_from(filter.len()).map_err(|_| seccomp_error("filter too long"))?;
    let program = libc::sock_fprog {
        len,
        // seccompiler's `sock_filter` is `#[repr(C)]` with the kernel's layout.
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `program` points at `filter`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &program as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(
            "install the seccomp filter",
            std::io::Error::last_os_error(),
        ))
    }
}

/// Run `filter`'s BPF over one x86_64 syscall the way the kernel would and return its action
/// (the instructions seccompiler and [`x32_guard`] emit).
#[cfg(test)]
pub(crate) fn verdict(filter: &[sock_filter], nr: i64, args: [u64; 6]) -> u32 {
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let ins = &filter[pc];
        let class = u32::from(ins.code) & 0x07;
        match class {
            c if c == libc::BPF_LD => {
                acc = match ins.k {
                    0 => nr as u32,
                    4 => 0xc000_003e, // AUDIT_ARCH_X86_64
                    k @ 16..=63 => {
                        let arg = args[(k as usize - 16) / 8];
                        if k % 8 == 0 {
                            arg as u32
                        } else {
                            (arg >> 32) as u32
                        }
                    }
                    k => panic!("unexpected load offset {k}"),
                };
                pc += 1;
            }
            c if c == libc::BPF_ALU => {
                assert_eq!(u32::from(ins.code) & 0xf0, libc::BPF_AND);
                acc &= ins.k;
                pc += 1;
            }
            c if c == libc::BPF_JMP => {
                let op = u32::from(ins.code) & 0xf0;
                let taken = match op {
                    o if o == libc::BPF_JA => {
                        pc += 1 + ins.k as usize;
                        continue;
                    }
                    o if o == libc::BPF_JEQ => acc == ins.k,
                    o if o == libc::BPF_JGE => acc >= ins.k,
                    o if o == libc::BPF_JGT => acc > ins.k,
                    o => panic!("unexpected jump {o:#x}"),
                };
                pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
            }
            c if c == libc::BPF_RET => return ins.k,
            c => panic!("unexpected class {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strictest verdict of all filters, as the kernel combines them.
    fn run(profile: &Profile, nr: i64, arg0: u64) -> u32 {
        let mut verdicts: Vec<u32> = profile
            .filters
            .iter()
            .map(|f| verdict(f, nr, [arg0, 0, 0, 0, 0, 0]))
            .collect();
        verdicts.sort_by_key(|v| v & libc::SECCOMP_RET_ACTION_FULL);
        verdicts[0]
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn profile(caps: &[Capability]) -> Profile {
        Profile::default_for(&caps.iter().copied().collect()).unwrap()
    }

    #[test]
    fn default_denies_kernel_wide_calls_and_allows_ordinary_ones() {
        let p = profile(&super::super::capabilities::DEFAULT);
        for nr in [
            libc::SYS_keyctl,
            libc::SYS_init_module,
            libc::SYS_bpf,
            libc::SYS_mount,
        ] {
            assert_eq!(run(&p, nr, 0), EPERM, "syscall {nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_ptrace,
        ] {
            assert_eq!(run(&p, nr, 0), ALLOW, "syscall {nr}");
        }
        assert_eq!(run(&p, libc::SYS_clone3, 0), ENOSYS);
        assert_eq!(
            run(&p, libc::SYS_keyctl | i64::from(X32_SYSCALL_BIT), 0),
            ENOSYS
        );
    }

    #[test]
    fn clone_is_denied_only_with_namespace_flags() {
        let p = profile(&[]);
        let fork_like = (libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        assert_eq!(run(&p, libc::SYS_clone, fork_like), ALLOW);
        for flag in NAMESPACE_FLAGS {
            assert_eq!(
                run(&p, libc::SYS_clone, fork_like | flag),
                EPERM,
                "{flag:#x}"
            );
        }
    }

    #[test]
    fn a_capability_lifts_its_group() {
        let p = profile(&[Capability::CAP_SYS_ADMIN]);
        assert_eq!(run(&p, libc::SYS_mount, 0), ALLOW);
        assert_eq!(run(&p, libc::SYS_clone, libc::CLONE_NEWNS as u64), ALLOW);
        assert_eq!(run(&p, libc::SYS_clone3, 0), ALLOW);
        assert_eq!(run(&p, libc::SYS_init_module, 0), EPERM);
        assert_eq!(run(&p, libc::SYS_keyctl, 0), EPERM);
    }
}
