//! Step "network" (optional): the container has its own network namespace with an interface
//! besides `lo` that has an address, and the host end answers — a TCP connection from inside
//! carries a random message to a listener the grader holds on the run's host side (every run
//! has a network namespace of its own as its "host": see `RunNet`).

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{fail, not_attempted, pass, verdict, with_effects, Ctx, Job};
use crate::grade::inspect;
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

const HINT: &str = "step 6 (network): create a veth pair, move one end into the container's network namespace (CLONE_NEWNET), give both ends addresses and bring them up";

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let hold = match ctx.hold(Job::of(&[])) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let held = &hold.held;
    let pid = held.pid;
    let host_net = held.net.or_else(|| inspect::ns_inode("self", "net"));
    let own = inspect::ns_inode(&pid.to_string(), "net") != host_net;
    let links = inspect::interfaces(pid);
    let addrs = inspect::ipv4_addresses(&pid.to_string());
    let (_, fx) = hold.finish(ctx);
    if !own {
        return vec![with_effects(
            not_attempted(
                "own-network-namespace",
                "a network namespace of its own",
                "the host's",
                HINT,
            ),
            &fx,
        )];
    }
    let mut checks = vec![
        pass(
            "own-network-namespace",
            "a network namespace of its own",
            "own",
        ),
        verdict(
            !links.is_empty(),
            "interface-besides-lo",
            "an interface other than lo inside",
            format!("{links:?}"),
            HINT,
        ),
        verdict(
            !addrs.is_empty(),
            "address-on-interface",
            "an IPv4 address other than loopback inside",
            format!("{addrs:?}"),
            HINT,
        ),
    ];
    checks.push(host_reachable(ctx));
    checks[0] = with_effects(checks[0].clone(), &fx);
    checks
}

/// The host end: the probe connects to its default gateway (else another address of its /24)
/// on a port the grader listens on in the run's own host network namespace, from the start.
fn host_reachable(ctx: &mut Ctx) -> Check {
    let expected = "a TCP connection from inside reaches a listener on the host end of the link";
    let message = random_word("net");
    let port = 20000 + rand::random::<u16>() % 40000;
    let job = Job::of(&[&["connect-gateway", &port.to_string(), &message]]);
    let (started, listener) = match ctx.start_with_listener(&job, port) {
        Ok((Ok(started), listener)) => (started, listener),
        Ok((Err((out, marker)), _)) => {
            let fx = ctx.side_effects(&out, &marker);
            let check = fail("host-end-reachable", expected, out.describe(), HINT);
            return with_effects(check, &fx);
        }
        Err(e) => {
            return fail(
                "host-end-reachable",
                expected,
                format!("grader could not listen: {e}"),
                "grader error: rerun",
            )
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let accept = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || receive(&listener, &done))
    };
    let out = started.running.wait();
    let fx = ctx.side_effects(&out, &started.marker);
    done.store(true, Ordering::SeqCst);
    let received = accept.join().unwrap_or_default();
    let check = verdict(
        received.contains(&message),
        "host-end-reachable",
        expected,
        format!("port {port}: {}", out.describe()),
        HINT,
    );
    with_effects(check, &fx)
}

/// Everything the first connection sends, until the run is `done` (and a short grace after).
fn receive(listener: &TcpListener, done: &AtomicBool) -> String {
    let mut until: Option<Instant> = None;
    loop {
        match until {
            Some(u) if Instant::now() >= u => break,
            None if done.load(Ordering::SeqCst) => {
                until = Some(Instant::now() + Duration::from_millis(500));
            }
            _ => {}
        }
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    String::new()
}
