//! The fault suite (issue 13): each test injects ONE fault into a real run — the real binary, a
//! real PostgreSQL, real shell commands, a real OpenSSH server, a real S3 server (s3s-fs), real
//! processes killed with real signals — and asserts the outcome, the exit code, the database's
//! contents and the store's, and that nothing is left behind (no scratch database, no stray
//! object, no process). Each test's name says the fault; docs/RELIABILITY.md lists them.

mod common;
#[path = "common/s3.rs"]
mod s3server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{App, Sshd, SHA};
#[allow(unused_imports)]
use common::SshdExt;

// ---------------------------------------------------------------------------------------------
// Harness

/// Polls `f` every 20 ms until it holds; fails after `secs`.
fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// deploy-guard with `app`'s config, GitHub and Actions variables cleared, ready to spawn.
fn dg(app: &App, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(common::bin());
    c.args(args).arg("--config").arg(&app.config);
    for v in ["GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS", "GITHUB_SHA", "GITHUB_TOKEN"] {
        c.env_remove(v);
    }
    c.env("GITHUB_REPOSITORY", "");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn spawn(app: &App, args: &[&str], env: &[(&str, &str)]) -> Child {
    dg(app, args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn deploy-guard")
}

fn sigkill(pid: u32) {
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// A point a command stops at: `sh gate.sh NAME` writes NAME.at (with its pid) and blocks on
/// NAME.fifo until the test says `go` (exit 0) or anything else (exit 1).
struct Gates {
    dir: PathBuf,
}

impl Gates {
    fn new(app: &App) -> Gates {
        let dir = app.tmp.path().join("gates");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("gate.sh"),
            "d=$(dirname \"$0\"); echo $$ > \"$d/$1.tmp\"; mv \"$d/$1.tmp\" \"$d/$1.at\"\n\
             read -r x < \"$d/$1.fifo\"; [ \"$x\" = go ]\n",
        )
        .unwrap();
        Gates { dir }
    }

    /// The shell snippet that stops at gate `name`.
    fn stop(&self, name: &str) -> String {
        mkfifo(&self.dir.join(format!("{name}.fifo")));
        format!("sh {} {name}", self.dir.join("gate.sh").display())
    }

    /// Waits until something stopped at `name`; returns its pid.
    fn reached(&self, name: &str, child: &mut Child) -> u32 {
        let at = self.dir.join(format!("{name}.at"));
        until(&format!("gate {name}"), 60, || {
            if let Ok(Some(s)) = child.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("deploy-guard ended ({s}) before gate {name}: {err}");
            }
            at.exists()
        });
        std::fs::read_to_string(at).unwrap().trim().parse().unwrap()
    }

    fn open(&self, name: &str, word: &str) {
        std::fs::write(self.dir.join(format!("{name}.fifo")), format!("{word}\n")).unwrap();
    }
}

/// Processes (other than this test) whose command line or environment mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let (cmd, env) = (read("cmdline"), read("environ"));
        let hit = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_bytes());
        if hit(&cmd) || hit(&env) {
            let stat = String::from_utf8_lossy(&read("stat")).into_owned();
            if stat.split_whitespace().nth(2) == Some("Z") {
                continue; // a zombie is already dead: its parent reaps it
            }
            out.push(format!("{pid}: {}", String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// Every database of the test cluster named after `db` other than `db` itself.
fn derived_databases(db: &str) -> Vec<String> {
    let out = common::cluster()
        .psql("postgres", &format!("SELECT datname FROM pg_database WHERE datname LIKE '{db}\\_\\_%' ORDER BY 1"))
        .unwrap();
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Every file below `dir` (relative), sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Nothing left behind by `app`'s runs: no process mentions its directory or database, no scratch
/// (`__restore_`) database exists, and no partial upload is in its file store.
fn nothing_left_behind(app: &App) {
    let dir = app.tmp.path().display().to_string();
    let db = app.db().to_string();
    let mut left = Vec::new();
    until("the run's processes to exit", 20, || {
        left = processes_mentioning(&dir);
        left.extend(processes_mentioning(&format!("PGDATABASE={db}\0")));
        left.extend(processes_mentioning(&format!("-d {db}")));
        left.is_empty()
    });
    let scratch: Vec<String> = derived_databases(&db).into_iter().filter(|d| d.contains("__restore_")).collect();
    assert!(scratch.is_empty(), "scratch databases left: {scratch:?}");
    let partial: Vec<String> =
        files(&app.stage.store_dir()).into_iter().filter(|f| !f.ends_with(".sql.gz") && !f.ends_with(".json")).collect();
    assert!(partial.is_empty(), "stray objects in the store: {partial:?}");
}

fn out_of(child: Child) -> (i32, String, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.code().unwrap_or(-1), common::stdout(&o), common::stderr(&o))
}

/// The backups (`.sql.gz`) and manifests (`.json`) in `app`'s file store.
fn backups(app: &App) -> (usize, usize) {
    let f = files(&app.stage.store_dir());
    (f.iter().filter(|f| f.ends_with(".sql.gz")).count(), f.iter().filter(|f| f.ends_with(".json")).count())
}

/// The one manifest in the file store, as JSON.
fn manifest(app: &App) -> serde_json::Value {
    let f: Vec<String> = files(&app.stage.store_dir()).into_iter().filter(|f| f.ends_with(".json")).collect();
    assert_eq!(f.len(), 1, "{f:?}");
    serde_json::from_slice(&std::fs::read(app.stage.store_dir().join(&f[0])).unwrap()).unwrap()
}

fn migrated(app: &App) -> bool {
    app.psql("SELECT count(*) FROM schema_migrations WHERE version = '003'").trim() == "1"
}

// ---------------------------------------------------------------------------------------------
// Processes killed, runs raced

/// Kills deploy-guard with SIGKILL while `step`'s command is stopped at a gate, lets the command
/// finish on its own (as an orphan does), then `rollback --sha` must bring everything back.
async fn kill_9_during(step: &str) {
    let app = App::new(&format!("fault_k9_{step}"), &["v2"]);
    let gates = Gates::new(&app);
    let done = app.tmp.path().join(format!("{step}.done"));
    let stop = gates.stop(step);
    let done_q = done.display().to_string();
    app.edit_config(|c| match step {
        "migrate" => c.replace(
            "run: ./migrate.sh up {tag}",
            &format!("run: {stop} && ./migrate.sh up {{tag}} > migrate.out 2>&1 && touch {done_q}"),
        ),
        // The deploy of v2 stops; the rollback's redeploy passes through.
        "deploy" => c.replace(
            "deploy: ./app.sh deploy {tag}",
            &format!(
                "deploy: if [ ! -e {done_q} ]; then {stop} && ./app.sh deploy {{tag}} > deploy.out 2>&1 && touch {done_q}; \
                 else ./app.sh deploy {{tag}}; fi"
            ),
        ),
        // The first health check stops; later ones (the rollback's) pass through.
        _ => c.replace(
            "command: ./app.sh health",
            &format!("command: if [ ! -e {done_q} ]; then {stop}; touch {done_q}; fi; ./app.sh health"),
        ),
    });
    let before = common::state(app.db()).await;
    let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &[]);
    gates.reached(step, &mut child);
    sigkill(child.id());
    let (code, _, _) = out_of(child);
    assert_eq!(code, -1, "deploy-guard was not killed");
    gates.open(step, "go");
    until("the orphaned command to finish", 30, || done.exists());
    // The journal says where it stopped; the next deploy is refused until it is rolled back.
    assert_eq!(manifest(&app)["outcome"], serde_json::Value::Null);
    let next = dg(&app, &["deploy", "--sha", "1111111111111111111111111111111111111111", "--tag", "v2"], &[])
        .output()
        .unwrap();
    assert_eq!(next.status.code(), Some(4), "{}", common::stderr(&next));
    assert!(common::stderr(&next).contains(&format!("stopped during `{step}`")), "{}", common::stderr(&next));
    let rb = dg(&app, &["rollback", "--sha", &SHA[..7], "--json"], &[]).output().unwrap();
    assert_eq!(rb.status.code(), Some(0), "{}", common::stderr(&rb));
    assert_eq!(common::json(&rb)["result"], "rolled-back");
    assert_eq!(common::state(app.db()).await, before, "the database is not as it was before the deploy");
    assert_eq!(app.tag(), "v1");
    assert!(!migrated(&app));
    assert_eq!(backups(&app), (1, 1));
    assert!(!manifest(&app)["outcome"].is_null(), "the rollback's outcome is not recorded");
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_deploy_guard_during_migrate_then_rollback_sha_restores_everything() {
    kill_9_during("migrate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_deploy_guard_during_deploy_then_rollback_sha_restores_everything() {
    kill_9_during("deploy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_deploy_guard_during_health_then_rollback_sha_restores_everything() {
    kill_9_during("health").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deploys_started_together_one_takes_the_lock_the_other_exits_4_changing_nothing() {
    let app = App::new("fault_race", &["v2"]);
    let gates = Gates::new(&app);
    let stop = gates.stop("migrate");
    app.edit_config(|c| c.replace("run: ./migrate.sh up {tag}", &format!("run: {stop} && ./migrate.sh up {{tag}}")));
    let other_sha = "2222222222222222222222222222222222222222";
    let mut a = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &[]);
    let mut b = spawn(&app, &["deploy", "--sha", other_sha, "--tag", "v2"], &[]);
    // One of them reaches the migration; the other must end on its own, with exit 4.
    let at = gates.dir.join("migrate.at");
    let mut loser = None;
    until("one deploy to lose the race", 60, || {
        if loser.is_none() {
            if let Ok(Some(_)) = a.try_wait() {
                loser = Some(0);
            } else if let Ok(Some(_)) = b.try_wait() {
                loser = Some(1);
            }
        }
        loser.is_some() && at.exists()
    });
    let (winner, lost, winner_sha) = if loser == Some(0) { (b, a, other_sha) } else { (a, b, SHA) };
    let (code, _, err) = out_of(lost);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("lock"), "the loser does not say it lost the lock: {err}");
    // The loser took no backup and touched nothing: only the winner's backup exists so far.
    assert_eq!(backups(&app), (1, 1));
    assert_eq!(manifest(&app)["sha"], winner_sha);
    assert!(!migrated(&app));
    gates.open("migrate", "go");
    let (code, _, err) = out_of(winner);
    assert_eq!(code, 0, "{err}");
    assert!(migrated(&app));
    assert_eq!(app.tag(), "v2");
    assert_eq!(backups(&app), (1, 1));
    nothing_left_behind(&app);
}

/// A `bin_dir` whose `pg_dump` (and, for a restore, `psql`) stops at a gate before it runs the
/// real tool, so the test can kill it there.
fn gated_tools(app: &App, gates: &Gates, pg_dump: bool, psql_restore: bool) {
    let real = common::cluster().bin_dir.display().to_string();
    let bin = app.tmp.path().join("gated-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let write = |name: &str, body: String| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(bin.join(name), body).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let gate = |name: &str| gates.stop(name);
    write(
        "pg_dump",
        if pg_dump {
            format!("#!/bin/sh\n{} || exit 1\nexec {real}/pg_dump \"$@\"\n", gate("pg_dump"))
        } else {
            format!("#!/bin/sh\nexec {real}/pg_dump \"$@\"\n")
        },
    );
    write(
        "psql",
        if psql_restore {
            format!(
                "#!/bin/sh\ncase \"$*\" in *--single-transaction*) exec sh -c '{} || exit 1; exec {real}/psql \"$@\"' psql \"$@\";; esac\nexec {real}/psql \"$@\"\n",
                gate("psql")
            )
        } else {
            format!("#!/bin/sh\nexec {real}/psql \"$@\"\n")
        },
    );
    let bin = bin.display().to_string();
    app.edit_config(|c| {
        let at = c.find("bin_dir: ").unwrap();
        let end = at + c[at..].find('\n').unwrap();
        format!("{}bin_dir: \"{bin}\"{}", &c[..at], &c[end..])
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_killed_during_the_backup_aborts_with_exit_4_and_nothing_changed() {
    let app = App::new("fault_pgdump", &["v2"]);
    let gates = Gates::new(&app);
    gated_tools(&app, &gates, true, false);
    let before = common::state(app.db()).await;
    let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[]);
    let pid = gates.reached("pg_dump", &mut child);
    sigkill(pid);
    let (code, out, err) = out_of(child);
    assert_eq!(code, 4, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"], "aborted", "{err}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    // No backup data object: a manifest without a verified backup is never written.
    assert_eq!(backups(&app).0, 0, "{:?}", files(&app.stage.store_dir()));
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_killed_mid_restore_leaves_the_live_database_as_it_was_and_drops_the_scratch() {
    let app = App::new("fault_psql", &["v2"]);
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let deployed = common::state(app.db()).await;
    let gates = Gates::new(&app);
    gated_tools(&app, &gates, false, true);
    let mut child = spawn(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &[]);
    let pid = gates.reached("psql", &mut child);
    sigkill(pid);
    let (code, out, err) = out_of(child);
    assert_eq!(code, 3, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"], "rollback-failed", "{err}");
    let restore = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "restore").unwrap();
    assert_eq!(restore["state"], "failed", "{restore}");
    // The live database was never touched: the restore went into the scratch one.
    assert_eq!(common::state(app.db()).await, deployed);
    assert!(derived_databases(app.db()).is_empty(), "{:?}", derived_databases(app.db()));
    assert_eq!(backups(&app), (1, 1));
    assert!(!manifest(&app)["outcome"].is_null(), "the rollback's outcome is not recorded");
    nothing_left_behind(&app);
}
