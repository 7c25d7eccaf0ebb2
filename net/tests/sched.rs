//! Reactor scheduling: real-time reactors when asked and permitted, never
//! real-time threads created by a reactor, and a typed error when real-time
//! is required but refused. Checked on real executors through the kernel's
//! own view of each thread's policy.

mod common;

use std::sync::mpsc;
use std::sync::Mutex;

use common::{config, Router, TestServer};
use net::{ReactorPriority, Server, ServerError};

/// The calling thread's policy, without the reset-on-fork flag.
fn current_policy() -> libc::c_int {
    const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;
    // SAFETY: pid 0 is the calling thread; no pointers involved.
    let p = unsafe { libc::sched_getscheduler(0) };
    assert!(
        p >= 0,
        "sched_getscheduler: {}",
        std::io::Error::last_os_error()
    );
    p & !SCHED_RESET_ON_FORK
}

/// Whether this process may make a thread SCHED_FIFO, tried on a throw-away
/// thread, independently of the code under test.
fn realtime_permitted() -> bool {
    std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: pid 0 is this short-lived thread; `param` outlives the call.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
    })
    .join()
    .unwrap()
}

/// Starts a 2-shard server whose factory reports, from each shard thread,
/// the shard's own policy and that of a thread it spawns.
fn start_reporting(
    priority: ReactorPriority,
) -> (
    Result<TestServer, ServerError>,
    mpsc::Receiver<(libc::c_int, libc::c_int)>,
) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut cfg = config(2);
    cfg.reactor_priority = priority;
    let started = Server::start(cfg, move |shard| {
        let own = current_policy();
        let child = std::thread::spawn(current_policy).join().unwrap();
        tx.lock().unwrap().send((own, child)).unwrap();
        Router::new(shard, None)
    })
    .map(TestServer::from_handle);
    (started, rx)
}

#[test]
fn realtime_if_permitted_makes_reactors_fifo_but_not_their_threads() {
    let permitted = realtime_permitted();
    let (server, rx) = start_reporting(ReactorPriority::RealtimeIfPermitted);
    let server = server.expect("starts whether or not real-time is permitted");
    assert_eq!(server.handle().reactor_realtime(), permitted);
    let want = if permitted {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    for _ in 0..2 {
        let (own, child) = rx.recv().unwrap();
        assert_eq!(own, want, "reactor policy (permitted: {permitted})");
        assert_eq!(
            child,
            libc::SCHED_OTHER,
            "a thread a reactor creates must not inherit real-time"
        );
    }
    assert_eq!(server.connect().get("/hello").status, 200);
}

#[test]
fn normal_priority_leaves_reactors_alone() {
    let (server, rx) = start_reporting(ReactorPriority::Normal);
    let server = server.unwrap();
    assert!(!server.handle().reactor_realtime());
    for _ in 0..2 {
        assert_eq!(rx.recv().unwrap(), (libc::SCHED_OTHER, libc::SCHED_OTHER));
    }
    assert_eq!(server.connect().get("/hello").status, 200);
}

#[test]
fn required_realtime_either_runs_fifo_or_fails_with_a_typed_error() {
    let permitted = realtime_permitted();
    let (server, rx) = start_reporting(ReactorPriority::Realtime);
    match server {
        Ok(server) => {
            assert!(permitted, "started real-time without permission?");
            assert!(server.handle().reactor_realtime());
            for _ in 0..2 {
                assert_eq!(rx.recv().unwrap().0, libc::SCHED_FIFO);
            }
        }
        Err(e) => {
            assert!(!permitted, "refused although permitted: {e}");
            assert!(matches!(e, ServerError::Realtime(_)), "{e:?}");
            assert!(e.to_string().contains("CAP_SYS_NICE"), "{e}");
        }
    }
}
