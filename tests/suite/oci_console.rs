//! OCI `process.terminal` with `--console-socket` (issue 31): the test is the engine, listening
//! on a unix socket in its temp dir; the runtime sends the pty master there with SCM_RIGHTS
//! (the pty's name as payload), the test types a command line into it and reads the answer,
//! computed inside so the terminal's echo of the input can never match.

use crate::common;

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;

use super::oci::{assert_refused, minimal_config, Bundle};

/// A bundle whose process is an interactive shell on a terminal, with a devpts of its own.
fn terminal_bundle(mark: &str) -> Bundle {
    let mut mounts = minimal_config()["mounts"].clone();
    mounts.as_array_mut().unwrap().push(
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
    );
    Bundle::new(json!({
        "mounts": mounts,
        "process": {"terminal": true, "args": ["/bin/sh"], "env": ["PATH=/bin", format!("M={mark}")]},
    }))
}

/// Accept the runtime's connection and take the master it sent (and the pty name).
fn receive_master(listener: &UnixListener) -> (File, String) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "nobody connected to the console socket"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg on the console socket");
    let len = msg.bytes;
    let mut master = None;
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: SCM_RIGHTS just installed the descriptor in our table.
            master = fds
                .first()
                .map(|&fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let name = String::from_utf8_lossy(&name[..len]).into_owned();
    (master.expect("an fd with SCM_RIGHTS"), name)
}

/// Read the terminal until `needle` shows up (or the deadline: the test fails with it all).
fn read_until(master: &mut File, needle: &str) -> String {
    let fd = std::os::fd::AsFd::as_fd(master);
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{needle:?} never came: {text:?}");
        match master.read(&mut buf) {
            Ok(0) => panic!("terminal closed before {needle:?}: {text:?}"),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read the terminal: {e} after {text:?}"),
        }
    }
}

/// `/proc/self/stat`'s tty_nr for `/dev/pts/N` (major 136): the controlling terminal.
fn tty_nr(pts: &str) -> u64 {
    let n: u64 = pts
        .trim_start_matches("/dev/pts/")
        .parse()
        .expect("pts number");
    (136 << 8) | (n & 0xff) | ((n & !0xff) << 12)
}

/// A line that prints the pty, the controlling terminal and a sum only the shell computes.
fn probe_line(a: u64, b: u64) -> String {
    format!("tty; cut -d' ' -f7 /proc/self/stat; echo sum-$(({a}+{b}))-$M\n")
}

#[test]
fn create_and_exec_send_the_pty_master_to_the_console_socket() {
    require_root!();
    let mark = marker();
    let b = terminal_bundle(&mark);
    let socket = b.dir.join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let ran = b.oci(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        &b.id,
    ]);
    ran.assert_code(0);
    let (mut master, name) = receive_master(&listener);
    assert!(name.starts_with("/dev/pts/"), "payload {name:?}");
    b.oci(&["start", &b.id]).assert_code(0);

    let (x, y) = (random_in(1000..=9999), random_in(1000..=9999));
    master.write_all(probe_line(x, y).as_bytes()).unwrap();
    let want = format!("sum-{}-{mark}", x + y);
    let text = read_until(&mut master, &want);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&name.as_str()), "tty says {name}: {lines:?}");
    assert!(
        lines.contains(&tty_nr(&name).to_string().as_str()),
        "controlling terminal {name}: {lines:?}"
    );

    // exec --tty: a second pty, the process's exit code is exec's.
    let socket2 = b.dir.join("exec.sock");
    let listener2 = UnixListener::bind(&socket2).unwrap();
    let code = random_in(3..=99);
    let exec = Command::new(runtime())
        .arg("--root")
        .arg(b.root.store())
        .args(["exec", "--tty", "--console-socket"])
        .arg(&socket2)
        .args([&b.id, "/bin/sh"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut master2, name2) = receive_master(&listener2);
    assert!(
        name2.starts_with("/dev/pts/") && name2 != name,
        "{name2:?} vs {name:?}"
    );
    let (x, y) = (random_in(1000..=9999), random_in(1000..=9999));
    master2
        .write_all(format!("{}exit {code}\n", probe_line(x, y)).as_bytes())
        .unwrap();
    let text = read_until(&mut master2, &format!("sum-{}-{mark}", x + y));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&name2.as_str()), "{name2}: {lines:?}");
    assert!(
        lines.contains(&tty_nr(&name2).to_string().as_str()),
        "{lines:?}"
    );
    let out = exec.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code as i32),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The init's shell ends when told to: the container stops.
    master.write_all(b"exit 0\n").unwrap();
    b.wait_status("stopped");
    b.oci(&["delete", &b.id]).assert_code(0);
    drop((master, master2));
    b.assert_clean(&mark, &[]);
}

#[test]
fn terminal_and_console_socket_are_refused_one_without_the_other() {
    require_root!();
    let mark = marker();
    let b = terminal_bundle(&mark);
    assert_refused(&b.create(), "no --console-socket");
    assert!(!b.oci_state_dir().join(&b.id).exists(), "nothing created");

    let plain = Bundle::new(
        json!({"process": {"args": ["/bin/sh", "-c", format!("exec sleep 30 # {mark}")]}}),
    );
    let socket = plain.dir.join("c.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec!["create", "--bundle", plain.dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(&plain.id);
        plain.oci(&args)
    };
    assert_refused(
        &create(&["--console-socket", socket.to_str().unwrap()]),
        "needs process.terminal",
    );
    assert!(!plain.oci_state_dir().join(&plain.id).exists());
    plain.create().assert_code(0);
    plain.oci(&["start", &plain.id]).assert_code(0);
    assert_refused(
        &plain.oci(&["exec", "--tty", &plain.id, "/bin/true"]),
        "no --console-socket",
    );
    assert_refused(
        &plain.oci(&[
            "exec",
            "--console-socket",
            socket.to_str().unwrap(),
            &plain.id,
            "/bin/true",
        ]),
        "needs process.terminal",
    );
    plain.oci(&["delete", "--force", &plain.id]).assert_code(0);
    plain.assert_clean(&mark, &[]);
    b.assert_clean(&mark, &[]);
}
