//! The OCI config's device rules (`linux.resources.devices`), enforced as runc, crun and youki
//! do: on cgroup v1 a directory in the `devices` hierarchy whose `devices.deny`/`devices.allow`
//! get one line per rule; on cgroup v2 a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the
//! rules, attached to the container's cgroup (it lives and dies with that cgroup).
//!
//! Rules are evaluated in order, the last matching one wins, and no rule means "allowed" (a
//! fresh device cgroup). The allow rules of [`DEFAULT_DEVICES`] are appended, as runc does, so
//! the nodes every container's /dev holds stay usable whatever the config says. Accepted: the
//! deny-all rule, allow-all, and allow rules for any type/major/minor/access; a deny rule
//! narrower than "all" is refused by the caller (v1 could not express it in order).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::dir::CgroupDir;
use super::layout::{self, Layout};
use super::{ensure_ancestors, warn_not_removed};
use crate::{Error, Result};

/// Which devices a rule covers (`a`, `c`, `b` in the config and in v1's files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    All,
    Char,
    Block,
}

/// `m`, `r`, `w` as the kernel's BPF context encodes them (v1 uses the letters).
const MKNOD: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;
const RWM: u8 = MKNOD | READ | WRITE;

/// The largest numbers a device can have (12-bit major, 20-bit minor).
const MAX_MAJOR: i64 = 0xfff;
const MAX_MINOR: i64 = 0xf_ffff;

/// One device rule, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    /// `None`: any major (the config's absent or -1, v1's `*`).
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// [`MKNOD`] | [`READ`] | [`WRITE`] bits.
    pub access: u8,
}

/// `(major, minor)` of the character devices a container's /dev holds whatever the config
/// says (the spec's default devices, /dev/console and /dev/pts/*; `None`: any minor).
pub const DEFAULT_DEVICES: [(u32, Option<u32>); 9] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
];

impl Rule {
    /// Check one config rule (`typ`: `a`, `c` or `b`; absent means `a`); `Err` is the reason,
    /// for a line that the caller prefixes with the field's name.
    pub fn parse(
        allow: bool,
        typ: Option<char>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> std::result::Result<Rule, String> {
        let kind = match typ.unwrap_or('a') {
            'a' => Kind::All,
            'c' => Kind::Char,
            'b' => Kind::Block,
            other => return Err(format!("type {other:?} is not supported (a, c or b)")),
        };
        let number = |n: Option<i64>, max: i64, what: &str| match n {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=max).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(format!(
                "{what} {n} is out of range (0..={max}, or -1 for any)"
            )),
        };
        let major = number(major, MAX_MAJOR, "major")?;
        let minor = number(minor, MAX_MINOR, "minor")?;
        let access = parse_access(access.unwrap_or("rwm"))?;
        let rule = Rule {
            allow,
            kind,
            major,
            minor,
            access,
        };
        if kind == Kind::All && (major.is_some() || minor.is_some() || access != RWM) {
            return Err("type a (all devices) takes no major, minor or partial access".into());
        }
        if !allow && kind != Kind::All {
            return Err("only the deny-all rule is supported among deny rules".into());
        }
        Ok(rule)
    }

    /// An allow rule for one of [`DEFAULT_DEVICES`], with every access.
    fn default_device((major, minor): (u32, Option<u32>)) -> Rule {
        Rule {
            allow: true,
            kind: Kind::Char,
            major: Some(major),
            minor,
            access: RWM,
        }
    }

    /// The v1 control file and line for this rule (`devices.deny` `a`, `devices.allow`
    /// `c 1:3 rwm`).
    pub fn v1_line(&self) -> (&'static str, String) {
        let file = if self.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let number = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let line = match self.kind {
            Kind::All => "a".to_owned(),
            Kind::Char | Kind::Block => format!(
                "{} {}:{} {}",
                if self.kind == Kind::Char { 'c' } else { 'b' },
                number(self.major),
                number(self.minor),
                access_letters(self.access)
            ),
        };
        (file, line)
    }
}

fn parse_access(text: &str) -> std::result::Result<u8, String> {
    let mut bits = 0;
    for c in text.chars() {
        bits |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => return Err(format!("access {text:?} must be made of r, w and m")),
        };
    }
    if bits == 0 {
        return Err("access must not be empty".into());
    }
    Ok(bits)
}

fn access_letters(bits: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The rules to enforce: the config's, then allow rules for [`DEFAULT_DEVICES`].
pub fn with_defaults(config: &[Rule]) -> Vec<Rule> {
    let mut rules = config.to_vec();
    rules.extend(DEFAULT_DEVICES.iter().copied().map(Rule::default_device));
    rules
}

/// An installed device policy: on v1 the `devices` cgroup (removed on drop unless
/// [`Devices::keep`]), on v2 nothing to hold (the program stays with the cgroup).
#[derive(Debug)]
pub struct Devices {
    v1: Option<CgroupDir>,
}

impl Devices {
    /// Enforce `rules` (with [`DEFAULT_DEVICES`] appended) for the container whose cgroup is
    /// at `rel` under each hierarchy root (`v2_dir`: its directory on v2), before any process
    /// of the container runs the user program.
    pub fn install(rel: &Path, v2_dir: Option<&PathBuf>, rules: &[Rule]) -> Result<Devices> {
        let rules = with_defaults(rules);
        match (layout::host(), v2_dir) {
            (Layout::V2 { .. }, Some(dir)) => {
                attach_program(dir, &program(&rules))?;
                Ok(Devices { v1: None })
            }
            _ => {
                let mount = v1_mount().ok_or_else(|| {
                    Error::Host(
                        "linux.resources.devices: no devices cgroup hierarchy on this host: \
                         cannot enforce the device rules"
                            .into(),
                    )
                })?;
                ensure_ancestors(&mount, rel)?;
                let dir = CgroupDir::create(mount.join(rel))?;
                let devices = Devices { v1: Some(dir) };
                if let Some(dir) = &devices.v1 {
                    write_v1(dir, &rules)?;
                }
                Ok(devices)
            }
        }
    }

    /// Move `pid` into the v1 `devices` cgroup (v2: it is already in the cgroup).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        match &self.v1 {
            Some(dir) => dir.add(pid),
            None => Ok(()),
        }
    }

    /// The v1 directory, which joins the container's cgroup paths (`exec`, `delete`).
    pub fn path(&self) -> Option<PathBuf> {
        self.v1.as_ref().map(|d| d.path().to_owned())
    }

    /// Leave the v1 directory in place for `delete` (the guard is defused, not dropped).
    pub fn keep(mut self) {
        self.v1 = None;
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        if let Some(dir) = &self.v1 {
            if let Err(e) = dir.remove() {
                warn_not_removed(dir.path(), &e);
            }
        }
    }
}

/// Where the v1 `devices` controller is mounted, from the mount table.
pub fn v1_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    layout::parse_mountinfo(&mountinfo)
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "devices"))
        .map(|m| m.mount_point)
}

/// v1: `devices.deny`/`devices.allow`, one line per rule in order; the kernel applies each
/// (a deny-all resets the list and denies by default, an allow-all resets it and allows).
pub fn write_v1(dir: &CgroupDir, rules: &[Rule]) -> Result<()> {
    rules.iter().try_for_each(|rule| {
        let (file, line) = rule.v1_line();
        dir.write(file, &line)
    })
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// The opcodes the program uses (linux/bpf.h, bpf_common.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The device program for `rules`: r2 = device type, r3 = access, r4 = major, r5 = minor
/// (from `struct bpf_cgroup_dev_ctx` in r1); then one block per rule from the last to the
/// first, each returning its verdict when the request matches; no match allows. Blocks after
/// an unconditional one are left out (the verifier refuses unreachable code).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let block = rule_block(rule);
        let unconditional = block.len() == 2;
        prog.extend(block);
        if unconditional {
            return prog;
        }
    }
    prog.push(insn(MOV_K, 0, 0, 0, 1));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The checks of one rule, each jumping past the block on a mismatch, then its verdict.
fn rule_block(rule: &Rule) -> Vec<Insn> {
    // Jumps are written with off = -1 and pointed at the block's end once its length is known.
    let mut block = Vec::new();
    match rule.kind {
        Kind::All => {}
        Kind::Char => block.push(insn(JNE_K, 2, 0, -1, DEV_CHAR)),
        Kind::Block => block.push(insn(JNE_K, 2, 0, -1, DEV_BLOCK)),
    }
    if rule.access != RWM {
        // Matches when every requested access bit is one the rule names.
        block.push(insn(MOV_X, 1, 3, 0, 0));
        block.push(insn(AND_K, 1, 0, 0, i32::from(rule.access)));
        block.push(insn(JNE_X, 1, 3, -1, 0));
    }
    if let Some(major) = rule.major {
        block.push(insn(JNE_K, 4, 0, -1, major as i32));
    }
    if let Some(minor) = rule.minor {
        block.push(insn(JNE_K, 5, 0, -1, minor as i32));
    }
    block.push(insn(MOV_K, 0, 0, 0, i32::from(rule.allow)));
    block.push(insn(EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if ins.off == -1 {
            ins.off = (len - i - 1) as i16;
        }
    }
    block
}

// bpf(2) commands, program and attach types (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live #[repr(C)] prefix of `union bpf_attr` for `cmd`, its size given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Load `prog` and attach it to the cgroup v2 directory `dir` (with `BPF_F_ALLOW_MULTI`, so a
/// parent's program still applies). The program's fd is closed on return: the attachment
/// holds the program, and the cgroup's removal frees both.
fn attach_program(dir: &Path, prog: &[Insn]) -> Result<()> {
    let license = c"GPL";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    let fd = match bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => fd,
        Err(e) => {
            // Once more with the verifier's log, for the message.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &attr);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            return Err(Error::io(
                format!("load the device cgroup program (verifier: {text:?})"),
                e,
            ));
        }
    };
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that we alone own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = std::fs::File::open(dir).map_err(|e| Error::path("open cgroup", dir, e))?;
    let attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &attach)
        .map_err(|e| Error::path("attach the device program to cgroup", dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(typ: char, major: i64, minor: i64, access: &str) -> Rule {
        Rule::parse(true, Some(typ), Some(major), Some(minor), Some(access)).unwrap()
    }

    fn deny_all() -> Rule {
        Rule::parse(false, None, None, None, Some("rwm")).unwrap()
    }

    /// Run `prog` on a context as the kernel would (only the instructions we emit), checking
    /// that every jump lands inside the program.
    fn run(prog: &[Insn], kind: i32, access: u8, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                AND_K => r[dst] &= imm,
                RSH_K => r[dst] >>= imm,
                MOV_K => r[dst] = imm,
                MOV_X => r[dst] = r[src],
                JNE_K | JNE_X => {
                    let other = if i.code == JNE_K { imm } else { r[src] };
                    if r[dst] != other {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            assert!(pc < prog.len(), "jump or fall-through past the end");
        }
    }

    /// Every instruction is reached by some path (the verifier refuses dead code).
    fn assert_all_reachable(prog: &[Insn]) {
        let mut reached = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if pc >= prog.len() || reached[pc] {
                continue;
            }
            reached[pc] = true;
            match prog[pc].code {
                EXIT => {}
                JNE_K | JNE_X => {
                    todo.push(pc + 1);
                    todo.push(pc + 1 + prog[pc].off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        assert!(reached.iter().all(|r| *r), "unreachable: {reached:?}");
    }

    #[test]
    fn deny_all_plus_defaults_allows_only_the_default_devices() {
        let prog = program(&with_defaults(&[deny_all()]));
        assert_all_reachable(&prog);
        let minor = 1 + (std::process::id() % 200);
        assert_eq!(run(&prog, DEV_BLOCK, MKNOD, 8, minor), 0, "block 8:x mknod");
        assert_eq!(run(&prog, DEV_BLOCK, READ, 8, 0), 0, "block 8:0 read");
        assert_eq!(run(&prog, DEV_CHAR, MKNOD, 1, 3), 1, "/dev/null mknod");
        assert_eq!(run(&prog, DEV_CHAR, READ | WRITE, 1, 3), 1);
        assert_eq!(run(&prog, DEV_CHAR, READ, 136, minor), 1, "any pty");
        assert_eq!(run(&prog, DEV_CHAR, READ, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&prog, DEV_CHAR, READ, 10, 200), 0, "/dev/net/tun");
    }

    #[test]
    fn the_last_matching_rule_wins_and_partial_access_is_honoured() {
        let tun = rule('c', 10, 200, "rw");
        let prog = program(&[deny_all(), tun]);
        assert_all_reachable(&prog);
        assert_eq!(run(&prog, DEV_CHAR, READ | WRITE, 10, 200), 1);
        assert_eq!(run(&prog, DEV_CHAR, MKNOD, 10, 200), 0, "m not granted");
        assert_eq!(run(&prog, DEV_CHAR, READ, 10, 201), 0);
        // A later deny-all overrides the earlier allow; the allow block is then dead code.
        let prog = program(&[tun, deny_all()]);
        assert_all_reachable(&prog);
        assert_eq!(run(&prog, DEV_CHAR, READ, 10, 200), 0);
    }

    #[test]
    fn wildcards_and_no_rules() {
        let any_block = Rule::parse(true, Some('b'), Some(-1), None, None).unwrap();
        let prog = program(&[deny_all(), any_block]);
        assert_all_reachable(&prog);
        assert_eq!(run(&prog, DEV_BLOCK, MKNOD, 259, 7), 1);
        assert_eq!(run(&prog, DEV_CHAR, MKNOD, 259, 7), 0);
        // No rule matching: allowed, as in a fresh device cgroup.
        let prog = program(&[rule('c', 10, 200, "rwm")]);
        assert_all_reachable(&prog);
        assert_eq!(run(&prog, DEV_BLOCK, READ, 8, 0), 1);
    }

    #[test]
    fn v1_lines_are_what_the_kernel_reads() {
        let lines: Vec<_> = [
            deny_all(),
            rule('c', 10, 200, "mrw"),
            Rule::parse(true, Some('b'), Some(8), Some(-1), Some("r")).unwrap(),
        ]
        .iter()
        .map(Rule::v1_line)
        .collect();
        assert_eq!(
            lines,
            [
                ("devices.deny", "a".to_owned()),
                ("devices.allow", "c 10:200 rwm".to_owned()),
                ("devices.allow", "b 8:* r".to_owned()),
            ]
        );
    }

    #[test]
    fn write_v1_writes_each_line_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("devices.deny"), "").unwrap();
        std::fs::write(tmp.path().join("devices.allow"), "").unwrap();
        let dir = CgroupDir::new(tmp.path());
        write_v1(&dir, &with_defaults(&[deny_all()])).unwrap();
        // A plain file keeps the last write: the last default device.
        assert_eq!(dir.read("devices.deny").unwrap(), "a");
        assert_eq!(dir.read("devices.allow").unwrap(), "c 136:* rwm");
    }

    #[test]
    fn what_is_not_enforced_is_refused() {
        let refused = [
            (false, Some('c'), Some(1), Some(3), None),
            (true, Some('a'), Some(1), None, None),
            (true, None, None, None, Some("r")),
            (true, Some('u'), Some(1), Some(3), None),
            (true, Some('c'), Some(4096), None, None),
            (true, Some('c'), Some(1), Some(-2), None),
            (true, Some('c'), Some(1), Some(3), Some("rx")),
            (true, Some('c'), Some(1), Some(3), Some("")),
        ];
        for (allow, typ, major, minor, access) in refused {
            assert!(
                Rule::parse(allow, typ, major, minor, access).is_err(),
                "{allow} {typ:?} {major:?} {minor:?} {access:?}"
            );
        }
    }
}
