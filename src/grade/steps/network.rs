//! Step "network" (optional): the container has its own network namespace with an interface
//! besides `lo` that has an address, and the host end answers — a TCP connection from inside
//! carries a random message to a listener the grader holds on the host.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{fail, not_attempted, pass, verdict, with_effects, Ctx};
use crate::grade::inspect;
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

const HINT: &str = "step 6 (network): create a veth pair, move one end into the container's network namespace (CLONE_NEWNET), give both ends addresses and bring them up";

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let hold = match ctx.hold(&[]) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let held = &hold.held;
    let pid = held.pid;
    let own = inspect::ns_inode(&pid.to_string(), "net") != inspect::ns_inode("self", "net");
    let links = inspect::interfaces(pid);
    let addrs = inspect::ipv4_addresses(&pid.to_string());
    let gateway = inspect::default_gateway(pid);
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
    checks.push(host_reachable(ctx, gateway, &addrs));
    checks[0] = with_effects(checks[0].clone(), &fx);
    checks
}

/// The host end: the default gateway if the container has one, else a host address in the
/// container's /24.
fn host_reachable(ctx: &mut Ctx, gateway: Option<String>, addrs: &[String]) -> Check {
    let expected = "a TCP connection from inside reaches a listener on the host end of the link";
    let target = gateway.or_else(|| {
        inspect::ipv4_addresses("self").into_iter().find(|h| {
            addrs
                .iter()
                .any(|a| a.rsplit_once('.').map(|p| p.0) == h.rsplit_once('.').map(|p| p.0))
        })
    });
    let Some(target) = target else {
        return fail(
            "host-end-reachable",
            expected,
            "no default route and no host address in the container's subnet",
            HINT,
        );
    };
    let listener = match TcpListener::bind("0.0.0.0:0") {
        Ok(l) => l,
        Err(e) => {
            return fail(
                "host-end-reachable",
                expected,
                format!("grader could not listen: {e}"),
                "",
            )
        }
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(0)
        .to_string();
    let _ = listener.set_nonblocking(true);
    let message = random_word("net");
    let done = Arc::new(AtomicBool::new(false));
    let accept = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || receive(&listener, &done))
    };
    let (out, fx) = ctx.run(&["connect", &target, &port, &message], &[], None);
    done.store(true, Ordering::SeqCst);
    let received = accept.join().unwrap_or_default();
    let check = verdict(
        received.contains(&message),
        "host-end-reachable",
        expected,
        format!("to {target}:{port}: {}", out.describe()),
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
