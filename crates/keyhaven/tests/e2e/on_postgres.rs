//! The store-dependent tests again, against PostgreSQL: this test runs the test binary
//! itself once more with `KEYHAVEN_TEST_STORE=postgres`, so every platform of the modules
//! below keeps its state in a fresh PostgreSQL database instead of SQLite. The modules are
//! those whose guarantees live in the store: names and quotas, the five-replica limit
//! under concurrency, the promotion intent (and its roll-forward after a crash at each
//! step), users and tokens, service changes, each project's one CA. Tests that
//! open the SQLite file itself (an old database's upgrade, a token from before prefixes
//! were kept) stay SQLite-only.

use crate::pg;
use std::process::Command;

const MODULES: &[&str] = &[
    "service_api::",
    "replicas::",
    "promotion::",
    // The promotion intent: Keyhaven killed at each step rolls it forward from the store.
    "crashes::",
    "update::",
    "identity::",
    // One CA per project, created in the write transaction that found none.
    "project_ca::",
];
const SQLITE_ONLY: &[&str] = &[
    "identity::emails_that_collide_in_an_old_database_stop_the_server_naming_them",
    "identity::tokens_are_listed_and_revoked_by_their_prefix_and_only_by_their_owner",
];

#[test]
fn the_store_dependent_tests_pass_on_postgresql() {
    assert!(
        !pg::selected(),
        "the PostgreSQL pass runs this binary again; it must not run itself"
    );
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("KEYHAVEN_TEST_STORE", "postgres")
        .args(MODULES)
        .args(["--skip", "on_postgres::"])
        // One at a time: this pass runs beside the rest of the suite, and the fault tests
        // in it bound their waits for a machine that is not doubly loaded.
        .args(["--test-threads", "1"]);
    for t in SQLITE_ONLY {
        cmd.args(["--skip", t]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with("test result:"))
        .unwrap_or("no summary")
        .to_string();
    assert!(
        out.status.success(),
        "the store-dependent tests failed on PostgreSQL: {summary}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = summary
        .split_whitespace()
        .skip_while(|w| *w != "ok." && *w != "FAILED.")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= 40,
        "only {passed} store-dependent tests ran on PostgreSQL: {summary}"
    );
    println!("on PostgreSQL: {summary}");
}
