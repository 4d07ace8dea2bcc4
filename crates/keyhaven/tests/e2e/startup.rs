//! Starting `keyhaven server`: what it refuses, and that a refused start leaves nothing.

use crate::harness::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `keyhaven server` with `args`, expecting it to refuse to start: panics if it is
/// still running after a while (then it accepted what it should have refused).
fn refused_start(args: &[&std::ffi::OsStr]) -> (Output, String) {
    let mut child = Command::new(BIN)
        .arg("server")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "keyhaven server started instead of refusing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "exit 0: {stderr}");
    (out, stderr)
}

/// Nothing in `dir`, or no `dir` at all.
fn left_nothing(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_cannot_listen_leaves_nothing_in_a_new_data_directory() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let valkey = valkey_server();
    for data in [tmp.path().join("fresh"), tmp.path().join("new/nested")] {
        let (_, stderr) = refused_start(&[
            "--listen".as_ref(),
            addr.as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--valkey-server".as_ref(),
            valkey.as_os_str(),
        ]);
        assert!(
            stderr.contains(&format!("cannot listen on {addr}")),
            "{stderr}"
        );
        assert!(stderr.contains("in use"), "{stderr}");
        assert!(
            left_nothing(&data),
            "{} holds {:?}",
            data.display(),
            std::fs::read_dir(&data).unwrap().collect::<Vec<_>>()
        );
    }
    // A data directory that existed before is left as it was (here: empty, still there).
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    refused_start(&[
        "--listen".as_ref(),
        addr.as_ref(),
        "--data-dir".as_ref(),
        existing.as_os_str(),
        "--valkey-server".as_ref(),
        valkey.as_os_str(),
    ]);
    assert!(existing.is_dir() && left_nothing(&existing));
}

/// An executable script at `path` that prints `line` for `--version`, made by a child
/// process: a file this test process held open for writing could not be executed
/// ("text file busy") while another test forks.
fn fake_valkey(path: &Path, line: &str) {
    let script = format!("#!/bin/sh\necho '{line}'\n");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(r#"printf '%s' "$1" > "$2" && chmod +x "$2""#)
        .args(["sh", &script, path.to_str().unwrap()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valkey_server_that_is_not_valkey_8_or_newer_is_refused_naming_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("valkey-7");
    fake_valkey(
        &old,
        "Valkey server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1",
    );
    let redis = tmp.path().join("redis-server");
    fake_valkey(
        &redis,
        "Redis server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1",
    );
    let silent = tmp.path().join("silent");
    fake_valkey(&silent, "");
    let cases = [
        (silent.as_path(), "printed nothing for --version"),
        // GNU true answers --version with its own name.
        (Path::new("/bin/true"), "which is not a Valkey version"),
        (&old, "is Valkey 7.2.4, older than 8.0"),
        (&redis, "is Redis 7.2.4, not Valkey"),
    ];
    for (program, says) in cases {
        let data = tmp.path().join("data");
        let (_, stderr) = refused_start(&[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--valkey-server".as_ref(),
            program.as_os_str(),
        ]);
        assert!(stderr.contains(&program.display().to_string()), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.contains("needs Valkey 8.0 or newer"), "{stderr}");
        assert!(left_nothing(&data), "{}", data.display());
    }

    // The real one is accepted, and the server says what it found.
    let p = Platform::start().await;
    let log = p.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("found Valkey") && l.contains("version=")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relative_valkey_server_path_runs_services() {
    // Relative to this test's working directory (the package's): the server must resolve
    // it before it starts nodes in their own directories.
    let relative = Path::new("../../.venv/bin/valkey-server");
    assert!(relative.is_file(), "run scripts/setup first");
    let mut p = Platform::unstarted(&[]);
    p.valkey_binary = Some(relative.to_path_buf());
    p.boot().await;
    p.create("relative", "hobbyist", None).await;
    let s = p.wait_running("relative").await;
    let mut con = valkey(&s).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
}
