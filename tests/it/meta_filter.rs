//! The psql meta-command filter, tried against the real psql: on generated scripts built from
//! the pieces psql's lexer cares about (quotes of every kind, dollar quotes next to numbers and
//! identifiers, comments ending at `\r`, parentheses, function bodies, COPY data), whenever psql
//! runs the script's `\!` the filter must have refused the script. (The filter may refuse more
//! than psql would run: that costs a false alarm, never a command.) Against this machine's psql
//! 15 one script at a time, and against psql 17 (the Docker base image's; psql 16+ read numbers
//! differently) in one container.

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
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
    "1.",
    "1_",
    "e",
    "E",
    "-",
    "+",
    ":e",
    ":LAST_ERROR_MESSAGE",
    "X'",
    "n'",
    "U&\"",
    "/",
    "*",
    "$_$",
    "0b1",
    "@RAISE@",
    "@RUN@",
    "@RUN@",
];

/// Whether psql, fed `script`, runs its `\!` (which creates `marker`).
fn psql_runs_it(db: &str, script: &str, marker: &std::path::Path) -> bool {
    let _ = std::fs::remove_file(marker);
    let cluster = common::cluster();
    // A `\!` cut short by the generator (`\! touch` with SQL after it) creates files where psql runs.
    let mut child = Command::new(cluster.bin_dir.join("psql"))
        .current_dir(marker.parent().expect("the marker's directory"))
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

/// `picked` as a script whose `\!` and raised error touch `marker`.
fn script(picked: &[&str], marker: &str) -> String {
    picked
        .iter()
        .map(|&p| match p {
            "@RUN@" => format!("\\! touch {marker}\n"),
            // An error whose message is the command: psql puts it where `:LAST_ERROR_MESSAGE` stands.
            "@RAISE@" => format!("DO $r$BEGIN RAISE EXCEPTION '\\! touch {marker}'; END$r$;\n"),
            p => p.to_string(),
        })
        .collect()
}

fn pieces() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(proptest::sample::select(PIECES), 1..24)
}

/// How many scripts to try: PROPTEST_CASES searches longer (a gap found once is worth a hunt).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1500)
}

#[test]
fn the_filter_refuses_every_script_on_which_psql_runs_a_meta_command() {
    let db = common::fresh_db("metafilter");
    common::cluster().psql(&db, "CREATE TABLE t (a text);").unwrap();
    let dir = common::tempdir();
    let marker = dir.path().join("ran");
    let (ran, false_alarms) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&pieces(), |picked| {
        let script = script(&picked, &marker.display().to_string());
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

/// The cases found so far, each one psql 15 runs: the filter refuses them all.
#[test]
fn the_gaps_found_so_far_run_on_psql_and_are_refused() {
    let db = common::fresh_db("metafilter_found");
    let dir = common::tempdir();
    let marker = dir.path().join("ran");
    for picked in [
        // psql 15+ reads `1e-` as one token, then `-` and the command (psql 14: a comment).
        &["1e", "--", "@RUN@"][..],
        // psql 15+ reads `1e`, then the E-string `e'\' … '`.
        &["SELECT ", "1e", "e'", "\\", "'", " ", "@RUN@", "'"],
        // `:e` is a variable psql leaves alone; the plain string `'\'` ends before the command.
        &["SELECT ", ":e", "'", "\\", "'", " ", "@RUN@", "'"],
        &["@RAISE@", "SELECT ", ":LAST_ERROR_MESSAGE", ";"],
    ] {
        let script = script(picked, &marker.display().to_string());
        assert!(psql_runs_it(&db, &script, &marker), "psql 15 did not run the command in {script:?}");
        assert!(filter_refuses(&script), "the filter let this through: {script:?}");
    }
}

/// The property against psql 17, whose lexer reads numbers as psql 16+ does (`0x1e` is one
/// number there, `0x` then `1e` in psql 15): every generated script is run in one container
/// of the Docker base image, each by its own psql, against this machine's cluster.
#[test]
fn docker_psql_17_runs_no_command_the_filter_let_through() {
    common::docker::docker_ready();
    let base = common::docker_images::base_image();
    let db = common::fresh_db("metafilter17");
    common::cluster().psql(&db, "CREATE TABLE t (a text);").unwrap();
    let dir = common::tempdir();
    let mut runner = proptest::test_runner::TestRunner::default();
    let strategy = pieces();
    let scripts: Vec<String> = (0..cases())
        .map(|_| script(&strategy.new_tree(&mut runner).expect("a script").current(), "/tmp/ran"))
        .collect();
    for (n, s) in scripts.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{n}.sql")), s).unwrap();
    }
    let run_all = format!(
        "psql --version; for f in /s/*.sql; do rm -f /tmp/ran; \
         psql -X -q -v ON_ERROR_STOP=0 -h 127.0.0.1 -p {} -U postgres -d {db} <\"$f\" >/dev/null 2>&1; \
         [ -e /tmp/ran ] && echo \"ran ${{f##*/}}\"; done; true",
        common::cluster().port
    );
    let mount = format!("{}:/s:ro", dir.path().display());
    let out = common::docker::ok(&mut common::docker::docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        &mount,
        "-e",
        "PATH=/usr/lib/postgresql/17/bin:/usr/bin:/bin",
        &base,
        "sh",
        "-c",
        &run_all,
    ]));
    assert!(out.starts_with("psql (PostgreSQL) 17."), "not psql 17: {out}");
    let ran: Vec<&String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("ran ")?.strip_suffix(".sql")?.parse::<usize>().ok())
        .map(|n| &scripts[n])
        .collect();
    let mut through: Vec<&&String> = ran.iter().filter(|s| !filter_refuses(s)).collect();
    through.sort_by_key(|s| s.len());
    assert!(through.is_empty(), "psql 17 ran the command, the filter let it through:\n{:?}", through.first());
    assert!(ran.len() > 100, "only {} of the generated scripts made psql 17 run its command", ran.len());
    eprintln!("psql 17 ran the command in {} of {} scripts; the filter refused each", ran.len(), scripts.len());
}
