//! What the data-safety features add (issue 9: item 1, "know what a migration destroyed", and
//! item 4, "the writes a restore loses"), next to what a user would run anyway, on a throwaway
//! PostgreSQL with `pgbench -i -s N` data at each scale given.
//!
//! `cargo bench --bench data_safety` (`BENCH_SCALES=10,75`: pgbench scale factors, about 15 MiB
//! of database each; `BENCH_RUNS=3`: rounds of the timed pairs; `BENCH_ALL_ROWS_MAX_SCALE=10`:
//! also time `table_loss` with every row of pgbench_accounts changed, at scales up to this one;
//! `BENCH_ITEM1_ONLY=1`: stop after item 1's rows).
//! Side by side, in turns: the read-back without row sums, with every table's inline (as before),
//! `backup::verify` as it is (no sums), and `backup::sums` of the largest table (what a rollback
//! reads then); `table_loss` as it was, its fallback, and as it is.
//! Prints markdown tables on stdout, progress on stderr. Not run by `cargo test`.

#![allow(unsafe_code)] // libc calls measure and signal processes here

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use deploy_guard::backup::{self, Taken};
use std::cmp::Ordering;

use anyhow::{bail, Context, Result};
use deploy_guard::db::{copy_unescape, ident, literal, ConnInfo, DumpTables, Postgres, RowSum, Shape, TableLoss};
use deploy_guard::exec::{Executor, Local};
use deploy_guard::simulate::sandbox::Cluster;
use deploy_guard::store::{DirStore, Store};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

const BUF: usize = 256 * 1024;
const ACCOUNTS: &str = "public.pgbench_accounts";

fn say(msg: &str) {
    eprintln!("[{}] {msg}", load());
}

/// The 1-minute load average.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_string()
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid rusage.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut r);
        r
    }
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// User + system CPU seconds: of this process (all threads), or of its waited-for children.
fn cpu(who: libc::c_int) -> f64 {
    let r = rusage(who);
    secs(r.ru_utime) + secs(r.ru_stime)
}

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next reading is the peak of what follows.
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// One measured thing: wall seconds, CPU seconds of deploy-guard's own code (this process) and
/// of the child processes (psql, pg_dump, gunzip), this process's peak RSS, the load average.
#[derive(Clone)]
struct M {
    wall: f64,
    cpu_own: f64,
    cpu_children: f64,
    hwm: Option<f64>,
    load: String,
}

async fn measure<T, F: std::future::Future<Output = T>>(f: F) -> (T, M) {
    let (own, kids) = (cpu(libc::RUSAGE_SELF), cpu(libc::RUSAGE_CHILDREN));
    reset_hwm();
    let t = Instant::now();
    let out = f.await;
    let wall = t.elapsed().as_secs_f64();
    let m = M {
        wall,
        cpu_own: cpu(libc::RUSAGE_SELF) - own,
        cpu_children: cpu(libc::RUSAGE_CHILDREN) - kids,
        hwm: Some(vm_hwm_mib()),
        load: load(),
    };
    (out, m)
}

/// The median run (by wall time) and the min–max of wall times.
fn median(mut ms: Vec<M>) -> (M, f64, f64) {
    ms.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let (lo, hi) = (ms[0].wall, ms[ms.len() - 1].wall);
    (ms[ms.len() / 2].clone(), lo, hi)
}

struct Env {
    bin: PathBuf,
    port: u16,
}

impl Env {
    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.env("PGHOST", "127.0.0.1").env("PGPORT", self.port.to_string()).env("PGUSER", "postgres");
        c
    }

    /// `sh -c script` with the connection in the environment and the binaries on PATH.
    fn sh(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        c.env("PATH", path).env("PGHOST", "127.0.0.1").env("PGPORT", self.port.to_string()).env("PGUSER", "postgres");
        c
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out =
            self.cmd("psql").args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql]).output();
        let out = out.expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Runs `script` to the end; its wall time and the children's CPU.
async fn timed_sh(env: &Env, script: &str) -> M {
    let mut c = env.sh(script);
    c.stdin(Stdio::null());
    let (status, m) = measure(async { c.status().expect("sh runs") }).await;
    assert!(status.success(), "{script} failed");
    M { hwm: None, ..m }
}

/// Runs `script` under `/usr/bin/time -f %M`: wall time, children's CPU, and the largest RSS of
/// any single process of it (MiB).
async fn timed_sh_rss(env: &Env, script: &str) -> (M, f64) {
    let rss = tempfile::NamedTempFile::new().unwrap();
    let wrapped =
        format!("/usr/bin/time -o {} -f %M sh -c {}", rss.path().display(), deploy_guard::exec::quote(script));
    let m = timed_sh(env, &wrapped).await;
    let kb: f64 = std::fs::read_to_string(rss.path()).unwrap().trim().lines().last().unwrap().parse().unwrap();
    (m, kb / 1024.0)
}

/// `backup::verify`'s read-back (size, sha256 of the object, gunzip, length of the SQL) without
/// the row sums (what the verification cost before item 1), or with them fed inline on the
/// gunzip thread (`inline`: as `backup::verify` did before they got their own thread).
async fn verify_copy(store: &dyn Store, taken: &Taken, inline: bool) -> BTreeMap<String, RowSum> {
    use async_compression::tokio::bufread::GzipDecoder;
    use tokio::io::{AsyncReadExt, BufReader};
    let object = store.get(&taken.key).await.unwrap();
    let gz_sha = Arc::new(std::sync::Mutex::new((0u64, Sha256::new())));
    let seen = gz_sha.clone();
    let metered = tokio_util::io::InspectReader::new(object, move |b: &[u8]| {
        let mut s = seen.lock().unwrap();
        s.0 += b.len() as u64;
        s.1.update(b);
    });
    let mut decoder = GzipDecoder::new(BufReader::with_capacity(BUF, metered));
    decoder.multiple_members(true);
    let mut raw_sha = Sha256::new();
    let mut raw = 0u64;
    let mut tail = deploy_guard::exec::Tail::new(4096);
    let mut tables = DumpTables::default();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = decoder.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        if inline {
            tables.feed(&buf[..n]);
        }
        raw += n as u64;
        raw_sha.update(&buf[..n]);
        tail.push(&buf[..n]);
    }
    let (gz, sha) = std::mem::take(&mut *gz_sha.lock().unwrap());
    assert_eq!((gz, hex::encode(sha.finalize())), (taken.size, taken.sha256.clone()));
    assert_eq!(Some(raw), taken.dump_bytes);
    assert!(tail.text().contains(backup::TRAILER));
    tables.tables
}

/// A writer that feeds what it is given through [`DumpTables`] (chunked line splitting), to
/// compare with `table_sum`'s own byte-at-a-time sink on the same COPY output.
struct FeedSink(DumpTables);

impl tokio::io::AsyncWrite for FeedSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.feed(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Single-threaded passes over the plain SQL file, in 256 KiB chunks from the page cache:
/// (name, wall seconds, thread CPU seconds).
fn passes(plain: &Path) -> Vec<(&'static str, f64, f64)> {
    let thread_cpu = || {
        let r = rusage(libc::RUSAGE_THREAD);
        secs(r.ru_utime) + secs(r.ru_stime)
    };
    type Pass = Box<dyn FnMut(&[u8])>;
    let mut out = Vec::new();
    let kinds: Vec<(&'static str, Pass)> = vec![
        ("read only", Box::new(|_: &[u8]| {})),
        (
            "xxh3 of whole chunks",
            Box::new({
                let mut acc = 0u64;
                move |b: &[u8]| {
                    acc = acc.wrapping_add(xxhash_rust::xxh3::xxh3_64(b));
                    std::hint::black_box(acc);
                }
            }),
        ),
        (
            "newline scan (`memchr`, as DumpTables::feed)",
            Box::new({
                let mut lines = 0u64;
                move |b: &[u8]| {
                    lines += memchr::memchr_iter(b'\n', b).count() as u64;
                    std::hint::black_box(lines);
                }
            }),
        ),
        (
            "DumpTables::feed, every table summed (split, xxh3 per row, non-null per column)",
            Box::new({
                let mut t = DumpTables::default();
                move |b: &[u8]| t.feed(b)
            }),
        ),
    ];
    for (name, mut f) in kinds {
        let mut file = std::fs::File::open(plain).unwrap();
        let mut buf = vec![0u8; BUF];
        let (c0, t0) = (thread_cpu(), Instant::now());
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            f(&buf[..n]);
        }
        out.push((name, t0.elapsed().as_secs_f64(), thread_cpu() - c0));
    }
    out
}

/// `loss_shape` + `table_loss` of pgbench_accounts, `b` restored and `a` kept, the statements
/// collected in a `Vec`: as it was, as its fallback for many differences is, or as it is.
async fn loss_of(pg: &Postgres, how: How) -> (TableLoss, usize) {
    let shape = pg.loss_shape("b", "a", ACCOUNTS, &Default::default()).await.unwrap();
    let mut buf = Vec::new();
    let loss = match how {
        How::Before => Before(pg).table_loss("b", "a", &shape, &mut buf).await,
        How::Whole => pg.table_loss_streamed("b", "a", &shape, &mut buf).await,
        How::Now => pg.table_loss("b", "a", &shape, &mut buf).await,
    };
    (loss.unwrap(), buf.len())
}

#[derive(Clone, Copy)]
enum How {
    Before,
    Whole,
    Now,
}

const HOWS: [(&str, How); 3] = [
    ("before: every row's statement built and streamed, md5", How::Before),
    ("`table_loss_whole` (the fallback above 20 000 differences): the kept rows' statements streamed", How::Whole),
    ("**now**: key + hash streamed, the differing rows read by key", How::Now),
];

struct Report {
    scale: u32,
    lines: Vec<String>,
}

impl Report {
    fn row(&mut self, what: &str, m: &M, range: Option<(f64, f64)>, rss: Option<f64>, notes: &str) {
        let wall = match range {
            Some((lo, hi)) => format!("{:.2} ({:.2}–{:.2})", m.wall, lo, hi),
            None => format!("{:.2}", m.wall),
        };
        let rss = rss.or(m.hwm).map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into());
        self.lines.push(format!(
            "| {what} | {wall} | {:.2} | {:.2} | {rss} | {} | {notes} |",
            m.cpu_own, m.cpu_children, m.load
        ));
    }
}

async fn one_scale(
    cluster: &Cluster,
    env: &Env,
    scale: u32,
    runs: usize,
    all_rows_max: u32,
    item1_only: bool,
) -> Report {
    let mut rep = Report { scale, lines: Vec::new() };
    for db in ["a", "b", "c"] {
        env.psql("postgres", &format!("DROP DATABASE IF EXISTS {db};"));
    }
    cluster.create_database("a").unwrap();
    say(&format!("scale {scale}: pgbench -i -s {scale}"));
    let t = Instant::now();
    let ok = env.cmd("pgbench").args(["-i", "-q", "-s", &scale.to_string(), "a"]).output().unwrap();
    assert!(ok.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&ok.stderr));
    let gen = t.elapsed().as_secs_f64();
    let db_bytes: u64 = env.psql("postgres", "SELECT pg_database_size('a');").parse().unwrap();
    let accounts_bytes: u64 = env.psql("a", "SELECT pg_table_size('pgbench_accounts');").parse().unwrap();
    say(&format!("scale {scale}: {:.0} MiB on disk, generated in {gen:.0} s", mib(db_bytes)));

    let pg = Postgres::new(
        Arc::new(Local),
        Some(env.bin.display().to_string()),
        ConnInfo {
            host: Some("127.0.0.1".into()),
            port: Some(env.port),
            user: Some("postgres".into()),
            dbname: None,
            sslmode: None,
        },
        "a".into(),
        "postgres".into(),
    );
    let store_dir = tempfile::Builder::new().prefix("dg-bench-store-").tempdir().unwrap();
    let store = DirStore::new(store_dir.path());

    // ---- Item 1, every deploy: the catalog query before the dump.
    say("table_stats");
    let mut stats_ms = Vec::new();
    let mut floor_ms = Vec::new();
    let mut ntables = 0;
    for _ in 0..runs.max(5) {
        let (s, m) = measure(pg.table_stats("a")).await;
        ntables = s.unwrap().len();
        stats_ms.push(m);
        let (s, m) = measure(pg.query("a", "SELECT 1;")).await;
        s.unwrap();
        floor_ms.push(m);
    }
    let (m, lo, hi) = median(stats_ms);
    rep.row(
        "`table_stats` (one catalog query through psql)",
        &m,
        Some((lo, hi)),
        None,
        &format!("{ntables} tables; median of {}", runs.max(5)),
    );
    let (m, lo, hi) = median(floor_ms);
    rep.row("`SELECT 1` through psql, for scale", &m, Some((lo, hi)), None, "starting psql is most of it");

    // ---- The backup itself, for scale.
    say("backup::take (pg_dump → gzip → store)");
    let key = "bench/a.sql.gz";
    let gzip6 = backup::Packing {
        format: deploy_guard::model::Format::Plain,
        codec: deploy_guard::model::Codec::Gzip,
        level: 6,
        on_target: false,
    };
    let (taken, m) = measure(backup::take(&pg, &store, key, gzip6)).await;
    let taken = taken.unwrap();
    rep.row(
        "`backup::take`: pg_dump → gzip -6 → store (for scale)",
        &m,
        None,
        None,
        &format!("{:.0} MiB of SQL → {:.1} MiB", mib(taken.dump_bytes.unwrap_or_default()), mib(taken.size)),
    );

    // ---- Item 1, every deploy: the read-back with and without the row sums, in turns; and on
    // a rollback, the sums of the one table touched, read from the backup then.
    say("verify without row sums, with every table's inline (before), as it is now; sums of one table on a rollback");
    let object = std::fs::read(store_dir.path().join(key)).unwrap();
    let mut manifest = deploy_guard::record::Manifest::verified(
        "bench",
        &deploy_guard::model::Sha::parse("abc1234def").unwrap(),
        "bench",
        chrono::Utc::now(),
        Taken { chunks: Some(backup::Chunks::of(&object)), ..taken.clone() },
    );
    manifest.dump_bytes = taken.dump_bytes.unwrap_or_default();
    drop(object);
    let (mut now, mut inline, mut without, mut lazy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sums: BTreeMap<String, RowSum> = BTreeMap::new();
    let mut same = true;
    for _ in 0..runs {
        let (_, m) = measure(verify_copy(&store, &taken, false)).await;
        without.push(m);
        let (inline_sums, m) = measure(verify_copy(&store, &taken, true)).await;
        inline.push(m);
        let (columns, m) = measure(backup::verify(&store, &taken)).await;
        same &= columns.unwrap().keys().eq(inline_sums.keys());
        now.push(m);
        let (s, m) = measure(backup::sums(&store, &manifest.stored(), [ACCOUNTS.to_string()].into())).await;
        sums = s.unwrap();
        same &= sums.get(ACCOUNTS) == inline_sums.get(ACCOUNTS);
        lazy.push(m);
    }
    let (mw, lo, hi) = median(without);
    rep.row("verify read-back **without** row sums (size, sha256, gunzip)", &mw, Some((lo, hi)), None, "");
    for (label, ms) in [
        ("the same **plus every table's row sums** inline on the gunzip thread (before)", inline),
        ("**`backup::verify`** (now: column lists and the meta-command check on their own thread, no sums)", now),
        ("on a rollback: **`backup::sums`** of pgbench_accounts, read from the verified backup (now)", lazy),
    ] {
        let (m, lo, hi) = median(ms);
        let added = m.wall - mw.wall;
        rep.row(
            label,
            &m,
            Some((lo, hi)),
            None,
            &format!(
                "{added:+.2} s wall, {:+.2} s CPU against the first row ({:.0} MiB of SQL; sums and tables equal: {})",
                m.cpu_own - mw.cpu_own,
                mib(taken.dump_bytes.unwrap_or_default()),
                if same { "yes" } else { "**NO**" }
            ),
        );
    }

    // The same, single-threaded over the plain SQL, to see what bounds it.
    let plain_dir = tempfile::Builder::new().prefix("dg-bench-plain-").tempdir().unwrap();
    let plain = plain_dir.path().join("a.sql");
    let gz = store_dir.path().join(key);
    let ok = env.sh(&format!("gunzip -c {} > {}", gz.display(), plain.display())).status().unwrap();
    assert!(ok.success());
    let _ = passes(&plain); // warm the page cache
    for (name, wall, cpu) in passes(&plain) {
        let m = M { wall, cpu_own: cpu, cpu_children: 0.0, hwm: None, load: load() };
        let rate = mib(taken.dump_bytes.unwrap_or_default()) / wall.max(0.001);
        rep.row(&format!("pass over the plain SQL: {name}"), &m, None, None, &format!("{rate:.0} MiB/s, one thread"));
    }
    drop(plain_dir);

    // ---- Item 1, a rollback: the biggest table summed, against COPY alone.
    let backup_sum = sums[ACCOUNTS].clone();
    say("table_sum of pgbench_accounts vs psql COPY > /dev/null");
    let (mut ts, mut copy, mut fed) = (Vec::new(), Vec::new(), Vec::new());
    let mut same = true;
    let copy_sql = format!("COPY {ACCOUNTS} ({}) TO STDOUT", backup_sum.columns.join(", "));
    for _ in 0..runs {
        copy.push(timed_sh(env, "psql -X -q -d a -c 'COPY pgbench_accounts TO STDOUT' > /dev/null").await);
        let (s, m) = measure(pg.table_sum("a", ACCOUNTS, &backup_sum.columns)).await;
        same &= s.unwrap().same_rows(&backup_sum);
        ts.push(m);
        // The same COPY, summed by DumpTables' chunked splitter instead of table_sum's sink.
        let (s, m) = measure(async {
            let mut sink = FeedSink(DumpTables::default());
            sink.0.feed(format!("COPY {ACCOUNTS} ({}) FROM stdin;\n", backup_sum.columns.join(", ")).as_bytes());
            let cmd = pg.query_cmd("a");
            let input = format!("{copy_sql};\n").into_bytes();
            let mut input = input.as_slice();
            let exit = Local.run(&cmd, Some(&mut input), &mut sink).await.unwrap();
            exit.check("COPY").unwrap();
            sink.0.feed(b"\\.\n");
            sink.0.tables.remove(ACCOUNTS).unwrap()
        })
        .await;
        same &= s.same_rows(&backup_sum);
        fed.push(m);
    }
    let (mc, lo, hi) = median(copy);
    rep.row(
        "`psql -c \"COPY pgbench_accounts TO STDOUT\" > /dev/null`",
        &mc,
        Some((lo, hi)),
        None,
        &format!("{} rows, table {:.0} MiB", backup_sum.rows, mib(accounts_bytes)),
    );
    let (m, lo, hi) = median(ts);
    rep.row(
        "**`Postgres::table_sum`** of pgbench_accounts",
        &m,
        Some((lo, hi)),
        None,
        &format!(
            "{:.2}× the COPY alone; sum equals the backup's: {}",
            m.wall / mc.wall,
            if same { "yes" } else { "**NO**" }
        ),
    );
    let (m, lo, hi) = median(fed);
    rep.row(
        "the same COPY summed by `DumpTables::feed` (chunked) instead",
        &m,
        Some((lo, hi)),
        None,
        &format!("{:.2}× the COPY alone", m.wall / mc.wall),
    );

    if item1_only {
        return rep;
    }
    // ---- Item 4, a rollback: the kept (written-to) copy against the restored one.
    say("CREATE DATABASE b TEMPLATE a; UPDATE a …");
    env.psql("postgres", "CREATE DATABASE b TEMPLATE a;");
    let changed: u64 =
        env.psql("a", "WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 1000 = 0 RETURNING 1) SELECT count(*) FROM u;")
            .parse()
            .unwrap();
    say("table_loss before and after (a kept, b restored), in turns");
    let mut rows_loss = Vec::new();
    for (label, how) in HOWS {
        rows_loss.push((label, how, Vec::new()));
    }
    for _ in 0..runs {
        for (_, how, ms) in rows_loss.iter_mut() {
            ms.push(measure(loss_of(&pg, *how)).await);
        }
    }
    let mut walls = Vec::new();
    for (label, _, ms) in rows_loss {
        let ((loss, replay_bytes), _) = ms[0].clone();
        let right = loss.updated == changed && loss.inserted == 0 && loss.deleted == 0;
        let (m, lo, hi) = median(ms.into_iter().map(|(_, m)| m).collect());
        walls.push(m.wall);
        rep.row(
            &format!("`loss_shape` + `table_loss` of pgbench_accounts, {label}"),
            &m,
            Some((lo, hi)),
            None,
            &format!(
                "{} of {} rows updated; found {} updated, {} inserted, {} deleted ({}); replay {:.1} KiB{}",
                changed,
                backup_sum.rows,
                loss.updated,
                loss.inserted,
                loss.deleted,
                if right { "right" } else { "**WRONG**" },
                replay_bytes as f64 / 1024.0,
                if walls.len() > 1 {
                    format!("; {:.1}× faster than before", walls[0] / m.wall)
                } else {
                    String::new()
                }
            ),
        );
    }

    say("gunzip | psql --single-transaction (plain restore, for scale)");
    env.psql("postgres", "CREATE DATABASE c;");
    let (m, rss) = timed_sh_rss(
        env,
        &format!("gunzip -c {} | psql -X -q --single-transaction -v ON_ERROR_STOP=1 -d c > /dev/null", gz.display()),
    )
    .await;
    rep.row(
        "`gunzip \\| psql --single-transaction` of the backup (for scale)",
        &m,
        None,
        Some(rss),
        "max RSS = largest process (psql)",
    );
    env.psql("postgres", "DROP DATABASE c;");

    if scale <= all_rows_max {
        say("worst case: every row of pgbench_accounts changed");
        env.psql("a", "UPDATE pgbench_accounts SET abalance = abalance + 1;");
        for (label, how) in HOWS {
            let ((loss, bytes), m) = measure(loss_of(&pg, how)).await;
            rep.row(
                &format!("`table_loss`, **every** row of pgbench_accounts updated, {label}"),
                &m,
                None,
                None,
                &format!(
                    "found {} updated; replay {:.0} MiB (collected in a Vec here)",
                    loss.updated,
                    mib(bytes as u64)
                ),
            );
        }
    }
    for db in ["a", "b"] {
        env.psql("postgres", &format!("DROP DATABASE {db};"));
    }
    rep.lines.insert(
        0,
        format!(
            "`pgbench -i -s {scale}`: {:.0} MiB on disk (pg_database_size), pgbench_accounts {} rows / {:.0} MiB, \
             {:.0} MiB of plain SQL → {:.1} MiB gzipped; generated in {gen:.0} s.\n",
            mib(db_bytes),
            backup_sum.rows,
            mib(accounts_bytes),
            mib(taken.dump_bytes.unwrap_or_default()),
            mib(taken.size)
        ),
    );
    rep
}

#[tokio::main]
async fn main() {
    let scales: Vec<u32> = std::env::var("BENCH_SCALES")
        .unwrap_or_else(|_| "10,75".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SCALES: comma-separated integers"))
        .collect();
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let all_rows_max: u32 = std::env::var("BENCH_ALL_ROWS_MAX_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let item1_only = std::env::var_os("BENCH_ITEM1_ONLY").is_some();
    assert!(Path::new("/usr/bin/time").exists(), "/usr/bin/time is missing: apt-get install -y time");
    say("starting a throwaway PostgreSQL");
    let cluster = Cluster::start(None).expect("a PostgreSQL cluster");
    let env = Env { bin: cluster.bin_dir.clone(), port: cluster.port };
    let version = env.psql("postgres", "SHOW server_version;");
    let header = format!(
        "PostgreSQL {version}, {} CPUs, {runs} run(s) of each timed pair\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    print!("{header}");
    for scale in scales {
        let rep = one_scale(&cluster, &env, scale, runs, all_rows_max, item1_only).await;
        let mut text = format!("### pgbench scale {}\n\n{}\n", rep.scale, rep.lines[0]);
        text.push_str(
            "| What | Wall (s), median (min–max) | CPU, deploy-guard's own (s) | CPU, children (s) | Peak RSS (MiB) | Load (1 min) | Notes |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
        );
        for l in &rep.lines[1..] {
            text.push_str(l);
            text.push('\n');
        }
        text.push('\n');
        print!("{text}");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
    }
}

// ---- `table_loss` as it was before it streamed only keys and hashes, verbatim but for the
// helpers it shares with the library, for the side-by-side rows.

struct Before<'a>(&'a Postgres);

impl Before<'_> {
    async fn table_loss(
        &self,
        live: &str,
        kept: &str,
        shape: &Shape,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<TableLoss> {
        let (kept_rows, kept_task) = self.keyed_rows(kept, shape, Side::Kept);
        let (live_rows, live_task) = self.keyed_rows(live, shape, Side::Live);
        let mut kept_lines = BufReader::new(kept_rows).lines();
        let mut live_lines = BufReader::new(live_rows).lines();
        let mut loss = TableLoss { table: shape.table.clone(), ..Default::default() };
        let mut k = next_row(&mut kept_lines).await?;
        let mut l = next_row(&mut live_lines).await?;
        loop {
            let ord = match (&k, &l) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.key.as_bytes().cmp(b.key.as_bytes()),
            };
            match ord {
                Ordering::Less => {
                    let row = k.take().expect("a kept row");
                    out.write_all(format!("{}\n", row.statement).as_bytes()).await?;
                    loss.inserted += 1;
                    k = next_row(&mut kept_lines).await?;
                }
                Ordering::Greater => {
                    let row = l.take().expect("a live row");
                    out.write_all(format!("{}\n", row.statement).as_bytes()).await?;
                    loss.deleted += 1;
                    l = next_row(&mut live_lines).await?;
                }
                Ordering::Equal => {
                    let (a, b) = (k.take().expect("kept"), l.take().expect("live"));
                    if a.hash != b.hash {
                        out.write_all(format!("{}\n", a.statement).as_bytes()).await?;
                        loss.updated += 1;
                    }
                    k = next_row(&mut kept_lines).await?;
                    l = next_row(&mut live_lines).await?;
                }
            }
        }
        for (side, task) in [("kept", kept_task), ("live", live_task)] {
            let exit = task.await.context("reading rows")??;
            exit.check(&format!("reading {} in the {side} database", shape.table))?;
        }
        Ok(loss)
    }

    /// Streams `key<TAB>hash<TAB>statement` lines of `db`'s table, ordered by key in byte order.
    fn keyed_rows(
        &self,
        db: &str,
        shape: &Shape,
        side: Side,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Result<deploy_guard::exec::Exit>>) {
        let q = |c: &String| ident(c);
        let key_row = format!("row({})::text", shape.key.iter().map(q).collect::<Vec<_>>().join(", "));
        let all_row = format!("row({})::text", shape.columns.iter().map(q).collect::<Vec<_>>().join(", "));
        let statement = match side {
            // The kept row, upserted.
            Side::Kept => shape.upsert_sql(),
            // The live row, deleted by its key.
            Side::Live => {
                let conds: Vec<String> = shape
                    .key
                    .iter()
                    .map(|c| format!("format('%s = %s', {}, quote_nullable({}))", literal(&q(c)), q(c)))
                    .collect();
                format!(
                    "format('DELETE FROM %s WHERE %s', {}, concat_ws(' AND ', {}))",
                    literal(&shape.table),
                    conds.join(", ")
                )
            }
        };
        let sql = format!(
            "COPY (SELECT {key_row} COLLATE \"C\" AS k, md5({all_row}), {statement} || ';' FROM {} ORDER BY 1) TO STDOUT;\n",
            shape.table
        );
        let cmd = self.0.query_cmd(db);
        let exec = self.0.executor().clone();
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut input = sql.as_bytes();
            let exit = exec.run(&cmd, Some(&mut input), &mut w).await;
            let _ = w.shutdown().await;
            exit
        });
        (r, task)
    }
}

#[derive(Clone, Copy)]
enum Side {
    Kept,
    Live,
}

struct Row {
    key: String,
    hash: String,
    statement: String,
}

async fn next_row(lines: &mut tokio::io::Lines<BufReader<tokio::io::DuplexStream>>) -> Result<Option<Row>> {
    let Some(line) = lines.next_line().await? else { return Ok(None) };
    let mut f = line.splitn(3, '\t');
    let (Some(k), Some(h), Some(s)) = (f.next(), f.next(), f.next()) else {
        bail!("unexpected row from COPY: {:.200}", line);
    };
    Ok(Some(Row { key: copy_unescape(k), hash: h.to_string(), statement: copy_unescape(s) }))
}
