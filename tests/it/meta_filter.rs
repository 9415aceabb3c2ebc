//! The psql meta-command filter, tried against the real psql: on generated scripts built from
//! the pieces psql's lexer cares about (quotes of every kind, dollar quotes next to numbers and
//! identifiers, comments ending at `\r`, parentheses, function bodies, COPY data), whenever psql
//! runs the script's `\!` the filter must have refused the script. (The filter may refuse more
//! than psql would run: that costs a false alarm, never a command.)

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use tokio::io::AsyncReadExt;

use crate::common;

/// What psql's lexer reads differently, and what pg_dump writes.
const PIECES: &[&str] = &[
    "'",
    "''",
    "E'",
    "e'",
    "\"",
    "$a$",
    "$$",
    "$1",
    "1",
    "1e",
    "0x",
    "a",
    "x",
    "$",
    " ",
    "\n",
    "\r",
    "--",
    "/*",
    "*/",
    ";",
    "(",
    ")",
    "SELECT ",
    "U&'",
    "b'",
    "_",
    ".",
    ":",
    ":'a'",
    "\\\\",
    "\\",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql ",
    "BEGIN ATOMIC ",
    "END",
    "CASE ",
    "COPY t FROM stdin;\n",
    "\\.\n",
    "@RUN@",
    "@RUN@",
];

/// Whether psql, fed `script`, runs its `\!` (which creates `marker`).
fn psql_runs_it(db: &str, script: &str, marker: &std::path::Path) -> bool {
    let _ = std::fs::remove_file(marker);
    let cluster = common::cluster();
    let mut child = Command::new(cluster.bin_dir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-p"])
        .arg(cluster.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    // psql may stop reading early; what it did with the rest does not matter.
    let _ = child.stdin.take().expect("piped").write_all(script.as_bytes());
    child.wait().expect("psql ends");
    marker.exists()
}

fn filter_refuses(script: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut guard = deploy_guard::backup::MetaGuard::new(script.as_bytes());
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.is_err()
    })
}

#[test]
fn the_filter_refuses_every_script_on_which_psql_runs_a_meta_command() {
    let db = common::fresh_db("metafilter");
    common::cluster().psql(&db, "CREATE TABLE t (a text);").unwrap();
    let dir = common::tempdir();
    let marker = dir.path().join("ran");
    let run = format!("\\! touch {}\n", marker.display());
    let (ran, false_alarms) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let pieces = proptest::collection::vec(proptest::sample::select(PIECES), 1..24);
    let result = runner.run(&pieces, |picked| {
        let script: String = picked.iter().map(|p| if *p == "@RUN@" { run.as_str() } else { p }).collect();
        let runs = psql_runs_it(&db, &script, &marker);
        let refused = filter_refuses(&script);
        if runs {
            ran.set(ran.get() + 1);
        } else if refused {
            false_alarms.set(false_alarms.get() + 1);
        }
        prop_assert!(!runs || refused, "psql ran the command, the filter let it through:\n{script:?}");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator reaches both sides: scripts psql runs a command on, and scripts it does not.
    let (ran, false_alarms) = (ran.get(), false_alarms.get());
    assert!(ran > 100, "only {ran} of the generated scripts made psql run its command");
    eprintln!("psql ran the command in {ran} scripts; the filter also refused {false_alarms} others");
}
