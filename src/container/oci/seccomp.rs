//! An OCI config's `linux.seccomp`, compiled with seccompiler into one BPF program (no filter
//! at all when the field is absent, as runc; `run`'s docker-like default is not involved).
//!
//! seccompiler builds a filter with a single match action, and a profile has one per syscall
//! entry, so each action gets its own seccompiler filter whose "no match" is a sentinel; the
//! sentinel returns are then turned into jumps to the next filter, and the profile's
//! `defaultAction` ends the program. Filters come in the kernel's precedence order (kill,
//! trap, errno, log, allow), so a syscall listed under two actions gets the strictest.
//! x32 syscall numbers fail with `ENOSYS` ahead of everything (their numbers would escape a
//! deny list) and a non-x86_64 syscall (i386) kills the process: names are resolved for
//! x86_64 only, whatever `architectures` lists.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::container::security::seccomp::{x32_guard, Profile};
use crate::{Error, Result};

/// "No rule of this filter matched": never a real action (TRACE is refused).
const FALL_THROUGH: SeccompAction = SeccompAction::Trace(0xffff);

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

/// Syscalls of one action: unconditional (`None`) or alternatives of argument conditions.
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// `linux.seccomp` → the profile the container's init (and each `exec`) installs.
pub fn profile(config: &LinuxSeccomp) -> Result<Profile> {
    let default = action(
        config.default_action(),
        config.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let flags = flags(config.flags().as_deref().unwrap_or_default())?;
    let mut groups: Vec<(SeccompAction, Rules)> = Vec::new();
    for (i, entry) in config.syscalls().iter().flatten().enumerate() {
        let at = format!("linux.seccomp.syscalls[{i}]");
        let act = action(entry.action(), entry.errno_ret(), &format!("{at}.action"))?;
        let rules = conditions(entry, &at)?;
        let numbers = numbers(entry.names(), &at)?;
        if act == default {
            continue; // nothing to add (libseccomp refuses such a rule; runc skips it)
        }
        let slot = match groups.iter().position(|(a, _)| *a == act) {
            Some(k) => &mut groups[k].1,
            None => {
                groups.push((act.clone(), Rules::new()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        for nr in numbers {
            add(slot, nr, rules.clone());
        }
    }
    groups.sort_by_key(|(a, _)| precedence(a));
    let mut program = x32_guard();
    for (act, rules) in groups {
        program.extend(chained(compile(rules, act)?));
    }
    program.push(ret(default));
    if program.len() > MAX_INSTRUCTIONS {
        return Err(usage(&format!(
            "linux.seccomp compiles to {} BPF instructions, more than the kernel's {MAX_INSTRUCTIONS}",
            program.len()
        )));
    }
    Ok(Profile::from_program(program, flags))
}

fn usage(why: &str) -> Error {
    Error::Usage(format!("config.json: {why}"))
}

/// An OCI action as seccompiler's (ERRNO's number: `errnoRet`, else EPERM as runc).
fn action(given: LinuxSeccompAction, errno: Option<u32>, at: &str) -> Result<SeccompAction> {
    use LinuxSeccompAction as A;
    Ok(match given {
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActLog => SeccompAction::Log,
        A::ScmpActNotify | A::ScmpActTrace => {
            return Err(usage(&format!("{at} {given} is not supported")))
        }
    })
}

/// Lower first: the order the kernel ranks actions in (the strictest wins).
fn precedence(action: &SeccompAction) -> u8 {
    match action {
        SeccompAction::KillProcess => 0,
        SeccompAction::KillThread => 1,
        SeccompAction::Trap => 2,
        SeccompAction::Errno(_) => 3,
        SeccompAction::Trace(_) => 4,
        SeccompAction::Log => 5,
        SeccompAction::Allow => 6,
    }
}

/// `flags`: TSYNC (one thread anyway), LOG, SPEC_ALLOW; the rest refused.
fn flags(given: &[LinuxSeccompFilterFlag]) -> Result<u32> {
    given.iter().try_fold(0, |bits, flag| {
        let bit = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            other => {
                return Err(usage(&format!(
                    "linux.seccomp.flags {other} is not supported"
                )))
            }
        };
        Ok(bits | bit as u32)
    })
}

/// x86_64 numbers of `names`; a name of another architecture only (`chown32`, `socketcall`
/// in docker's lists, powerpc's `swapcontext` and s390x's `s390_pci_mmio_read` in podman's) is
/// skipped, as libseccomp does; a name no architecture has is refused.
fn numbers(names: &[String], at: &str) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for name in names {
        if let Ok(sysno) = syscalls::Sysno::from_str(name) {
            out.push(i64::from(sysno.id()));
        } else if !foreign(name) {
            return Err(usage(&format!("{at}.names: unknown system call {name:?}")));
        }
    }
    Ok(out)
}

fn foreign(name: &str) -> bool {
    use syscalls::{aarch64, arm, loongarch64, mips, mips64, powerpc, powerpc64, riscv32};
    use syscalls::{riscv64, s390x, sparc, sparc64, x86};
    x86::Sysno::from_str(name).is_ok()
        || arm::Sysno::from_str(name).is_ok()
        || aarch64::Sysno::from_str(name).is_ok()
        || powerpc::Sysno::from_str(name).is_ok()
        || powerpc64::Sysno::from_str(name).is_ok()
        || s390x::Sysno::from_str(name).is_ok()
        || mips::Sysno::from_str(name).is_ok()
        || mips64::Sysno::from_str(name).is_ok()
        || riscv32::Sysno::from_str(name).is_ok()
        || riscv64::Sysno::from_str(name).is_ok()
        || loongarch64::Sysno::from_str(name).is_ok()
        || sparc::Sysno::from_str(name).is_ok()
        || sparc64::Sysno::from_str(name).is_ok()
}

/// `args` as rules: all conditions of an entry at once, or, when one argument is compared
/// twice, each condition on its own (runc's reading of such an entry).
fn conditions(entry: &LinuxSyscall, at: &str) -> Result<Option<Vec<SeccompRule>>> {
    let args = entry.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args
        .iter()
        .enumerate()
        .map(|(j, arg)| condition(arg, &format!("{at}.args[{j}]")))
        .collect::<Result<Vec<_>>>()?;
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort_unstable();
    indexes.dedup();
    let groups = match indexes.len() == args.len() {
        true => vec![conditions],
        false => conditions.into_iter().map(|c| vec![c]).collect(),
    };
    groups
        .into_iter()
        .map(|c| SeccompRule::new(c).map_err(|e| usage(&format!("{at}.args: {e}"))))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// One comparison of a 64-bit argument (`SCMP_CMP_MASKED_EQ`: `value` is the mask,
/// `valueTwo` what the masked argument must equal).
fn condition(arg: &LinuxSeccompArg, at: &str) -> Result<SeccompCondition> {
    use LinuxSeccompOperator as O;
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| usage(&format!("{at}.index {} is not 0 to 5", arg.index())))?;
    let (op, value) = match arg.op() {
        O::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        O::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        O::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        O::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        O::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        O::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        O::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| usage(&format!("{at}: {e}")))
}

/// Merge `rules` for `nr` into an action's set (unconditional wins over conditions).
fn add(slot: &mut Rules, nr: i64, rules: Option<Vec<SeccompRule>>) {
    let merged = match (slot.remove(&nr), rules) {
        (Some(None), _) | (_, None) => None,
        (Some(Some(mut old)), Some(new)) => {
            old.extend(new);
            Some(old)
        }
        (None, Some(new)) => Some(new),
    };
    slot.insert(nr, merged);
}

/// One action's filter; no match returns [`FALL_THROUGH`].
fn compile(rules: Rules, action: SeccompAction) -> Result<BpfProgram> {
    let rules = rules
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    let filter = SeccompFilter::new(rules, FALL_THROUGH, action, TargetArch::x86_64)
        .map_err(|e| usage(&format!("linux.seccomp: {e}")))?;
    BpfProgram::try_from(filter).map_err(|e| usage(&format!("linux.seccomp: {e}")))
}

/// Each `return FALL_THROUGH` becomes a jump past the program's end (to the next filter).
fn chained(mut program: BpfProgram) -> BpfProgram {
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    let sentinel = u32::from(FALL_THROUGH);
    let len = program.len();
    for (i, ins) in program.iter_mut().enumerate() {
        if ins.code == RET_K && ins.k == sentinel {
            *ins = sock_filter {
                code: JA,
                jt: 0,
                jf: 0,
                k: (len - i - 1) as u32,
            };
        }
    }
    program
}

fn ret(action: SeccompAction) -> sock_filter {
    sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: u32::from(action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::security::seccomp::verdict;
    use serde_json::json;

    fn compiled(config: serde_json::Value) -> Result<Profile> {
        let parsed: LinuxSeccomp = serde_json::from_value(config).unwrap();
        profile(&parsed)
    }

    fn run(p: &Profile, nr: i64, args: [u64; 6]) -> u32 {
        let filters = p.filters();
        assert_eq!(filters.len(), 1);
        verdict(&filters[0], nr, args)
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    fn errno(e: u32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e
    }

    #[test]
    fn each_action_and_the_default_reach_their_syscalls() {
        let (e1, e2) = (10 + std::process::id() % 50, 70 + std::process::id() % 50);
        let p = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": e1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write", "chown32", "swapcontext", "s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": e2},
                {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["write"], "action": "SCMP_ACT_TRAP"},
                {"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": e1},
            ],
        }))
        .unwrap();
        let none = [0; 6];
        assert_eq!(run(&p, libc::SYS_read, none), ALLOW);
        assert_eq!(run(&p, libc::SYS_mkdir, none), errno(e2));
        assert_eq!(
            run(&p, libc::SYS_getpid, none),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        // Listed twice: the strictest action.
        assert_eq!(run(&p, libc::SYS_write, none), libc::SECCOMP_RET_TRAP);
        assert_eq!(run(&p, libc::SYS_openat, none), errno(e1));
        assert_eq!(run(&p, libc::SYS_close, none), errno(e1));
        // x32 numbers never reach the rules.
        assert_eq!(
            run(&p, libc::SYS_read | 0x4000_0000, none),
            errno(libc::ENOSYS as u32)
        );
    }

    #[test]
    fn every_operator_compares_the_whole_argument() {
        let big = 1u64 << 40;
        let cases = [
            ("SCMP_CMP_EQ", big, None, big, big + 1),
            ("SCMP_CMP_NE", big, None, big + 1, big),
            ("SCMP_CMP_LT", big, None, big - 1, big),
            ("SCMP_CMP_LE", big, None, big, big + 1),
            ("SCMP_CMP_GT", big, None, big + 1, big),
            ("SCMP_CMP_GE", big, None, big, big - 1),
            ("SCMP_CMP_MASKED_EQ", 0xf0, Some(0x30), 0x3c, 0x4c),
        ];
        for (op, value, two, hit, miss) in cases {
            for index in [0usize, 3] {
                let mut arg = json!({"index": index, "value": value, "op": op});
                if let Some(two) = two {
                    arg["valueTwo"] = json!(two);
                }
                let p = compiled(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42, "args": [arg]}],
                }))
                .unwrap();
                let (mut on, mut off) = ([0; 6], [0; 6]);
                on[index] = hit;
                off[index] = miss;
                assert_eq!(run(&p, libc::SYS_keyctl, on), errno(42), "{op} {index}");
                assert_eq!(run(&p, libc::SYS_keyctl, off), ALLOW, "{op} {index}");
            }
        }
    }

    #[test]
    fn unsupported_values_are_refused_with_one_line() {
        for (config, needle) in [
            (
                json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
                "linux.seccomp.defaultAction SCMP_ACT_NOTIFY is not supported",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["read"], "action": "SCMP_ACT_TRACE"}]}),
                "linux.seccomp.syscalls[1].action SCMP_ACT_TRACE is not supported",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read", "no_such_call"], "action": "SCMP_ACT_ERRNO"}]}),
                "linux.seccomp.syscalls[0].names: unknown system call \"no_such_call\"",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
                "args[0].index 6",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
                "linux.seccomp.flags",
            ),
        ] {
            let err = compiled(config).unwrap_err();
            let line = err.to_string();
            assert!(line.contains(needle), "{needle}: {line}");
            assert!(line.starts_with("config.json: ") && !line.contains('\n'));
            assert_eq!(err.exit_code(), 125);
        }
    }

    #[test]
    fn flags_are_passed_to_seccomp() {
        let p = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}))
        .unwrap();
        assert_eq!(
            p.flags(),
            libc::SECCOMP_FILTER_FLAG_LOG as u32 | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32
        );
    }
}
