//! Tests of child-process cleanup, including the SIGKILLed-parent case.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{ChildGuard, free_port, http_get_status, wait_http_ok};

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

fn wait_dead(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn drop_terminates_the_child_and_logs_go_to_a_file() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo hello-from-child; exec sleep 300"]);
    let mut guard = ChildGuard::spawn("sleeper", cmd).unwrap();
    let pid = guard.pid();
    assert!(alive(pid));
    assert!(guard.exited().is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !guard.log_tail(20).contains("hello-from-child") {
        assert!(
            Instant::now() < deadline,
            "log never written: {}",
            guard.log_path().display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        guard
            .log_path()
            .starts_with(crate::tools::workspace_root().join("target/e2e-logs"))
    );
    drop(guard);
    assert!(!alive(pid), "child {pid} survived drop");
}

#[test]
fn wait_ready_fails_fast_with_the_log_when_the_child_exits() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo boom-line; exit 3"]);
    let mut guard = ChildGuard::spawn("crasher", cmd).unwrap();
    let port = free_port();
    assert_ne!(port, 0);
    let start = Instant::now();
    let err = guard
        .wait_ready(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(30),
        )
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    let msg = format!("{err:#}");
    assert!(msg.contains("boom-line") && msg.contains("exited"), "{msg}");
    assert!(http_get_status(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(1)).is_err());
    let err = wait_http_ok(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("not ready"), "{err:#}");
}

const HELPER_ENV: &str = "E2E_PDEATHSIG_HELPER";

/// Not a test on its own: run by `children_die_with_a_sigkilled_parent` in a separate process.
#[test]
#[ignore = "helper process of children_die_with_a_sigkilled_parent"]
fn pdeathsig_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    // Spawn from a short-lived thread: the child must outlive it (spawner thread design).
    let guard = std::thread::spawn(|| {
        let mut cmd = Command::new("sleep");
        cmd.arg("300");
        ChildGuard::spawn("orphan", cmd).unwrap()
    })
    .join()
    .unwrap();
    println!("CHILD_PID={}", guard.pid());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn children_die_with_a_sigkilled_parent() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "process_tests::pdeathsig_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let pid: u32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest may print "test name ... " on the same line first.
        .find_map(|l| {
            l.split("CHILD_PID=")
                .nth(1)
                .and_then(|p| p.trim().parse().ok())
        })
        .expect("helper printed no CHILD_PID");
    // The spawning test thread has exited by now; the child must still be running.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(pid),
        "child died with its (short-lived) spawning thread"
    );
    helper.kill().unwrap(); // SIGKILL: no destructor runs in the helper.
    helper.wait().unwrap();
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "child {pid} outlived its SIGKILLed parent"
    );
}
