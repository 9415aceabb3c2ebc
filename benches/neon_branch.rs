//! Backup and restore on `backup.provider: neon` against the local Neon API of the tests
//! (`tests/it/common/neon.rs`: a branch is `CREATE DATABASE … TEMPLATE` on real PostgreSQL),
//! next to the same commands on the default provider (`pg_dump` → zstd → a directory, restored
//! into a scratch database and swapped in), on the same data.
//!
//! `cargo bench --profile dev --bench neon_branch` (`BENCH_ROWS=400000`: rows of about 250 bytes
//! added to the sample app's database). Each command's wall time is split into the API's part
//! (the local server's time answering, summed over its requests: for a branch, the database copy)
//! and deploy-guard's (connecting, verifying, the manifest, polling). The local server copies
//! the whole database where Neon's branch is copy-on-write: its "API" seconds grow with the size,
//! Neon's do not. Prints a markdown table on stdout. Not run by `cargo test`.

#![allow(unsafe_code)] // the shared testkit's socket and signal calls (as in tests/it)

#[allow(unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::time::Instant;

const NEON_SHA: &str = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DUMP_SHA: &str = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn timed(app: &common::App, env: &[(&str, &str)], args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = app.run_env(args, env);
    assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    started.elapsed().as_secs_f64()
}

fn main() {
    let rows: u64 = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(400_000);
    let app = common::App::new("bench_neon", &[]);
    app.psql(&format!(
        "CREATE TABLE bench_rows AS SELECT g AS id, md5(g::text) AS a, repeat(md5((g * 7)::text), 6) AS b \
         FROM generate_series(1, {rows}) g; ALTER TABLE bench_rows ADD PRIMARY KEY (id); VACUUM ANALYZE bench_rows;"
    ));
    let size = app.psql(&format!("SELECT pg_size_pretty(pg_database_size('{}'))", app.db()));
    let server = common::neon::NeonServer::start(app.db());
    let plain = std::fs::read_to_string(&app.config).unwrap();
    let env = [("NEON_API_KEY", server.key.as_str())];
    let mut table = Vec::new();
    let api = |from: usize| -> f64 { server.seen()[from..].iter().map(|s| s.secs).sum() };

    app.edit_config(|c| format!("{c}{}", server.config_lines()));
    let n0 = server.seen().len();
    let backup = timed(&app, &env, &["backup", "--sha", NEON_SHA]);
    let backup_api = api(n0);
    let n1 = server.seen().len();
    let restore = timed(&app, &env, &["restore", "--sha", &NEON_SHA[..7]]);
    let restore_api = api(n1);
    table.push(("neon branch", backup, backup_api, restore, restore_api));

    std::fs::write(&app.config, &plain).unwrap();
    let backup = timed(&app, &[], &["backup", "--sha", DUMP_SHA]);
    let restore = timed(&app, &[], &["restore", "--sha", &DUMP_SHA[..7]]);
    table.push(("pg_dump → zstd → directory", backup, 0.0, restore, 0.0));

    println!("database {size} ({rows} rows of bench_rows beside the sample app's tables), one run\n");
    println!("| provider | backup | of it: API (local server) | deploy-guard | restore | of it: API | deploy-guard |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, b, ba, r, ra) in table {
        println!("| {name} | {b:.2} s | {ba:.2} s | {:.2} s | {r:.2} s | {ra:.2} s | {:.2} s |", b - ba, r - ra);
    }
}
