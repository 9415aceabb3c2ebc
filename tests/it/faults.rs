//! The fault suite (issue 13): each test injects ONE fault into a real run — the real binary, a
//! real PostgreSQL, real shell commands, a real OpenSSH server, a real S3 server (s3s-fs), real
//! processes killed with real signals — and asserts the outcome, the exit code, the database's
//! contents and the store's, and that nothing is left behind (no scratch database, no stray
//! object, no process). Each test's name says the fault; docs/RELIABILITY.md lists them.

use crate::common;
use crate::common::http_faults;
use crate::common::s3 as s3server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
use common::SshdExt;
use common::{App, Sshd, SHA};

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

    /// Whether the process that stopped at `name` is still there (not gone, not a zombie).
    fn waiting(&self, name: &str) -> bool {
        let pid = std::fs::read_to_string(self.dir.join(format!("{name}.at"))).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).is_some_and(|state| state != "Z")
    }

    /// Says `word` to what stopped at `name`. Over SSH, what a command that failed had started
    /// is killed (gate included): a gate whose process is gone needs no opening.
    fn open(&self, name: &str, word: &str) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let fifo = self.dir.join(format!("{name}.fifo"));
        let reached = self.dir.join(format!("{name}.at")).exists();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // Without O_NONBLOCK, opening a FIFO no one reads blocks for ever.
            match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo) {
                Ok(mut f) => return f.write_all(format!("{word}\n").as_bytes()).unwrap(),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    if reached && !self.waiting(name) {
                        return;
                    }
                    assert!(std::time::Instant::now() < deadline, "nothing reads gate {name}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot open gate {name}: {e}"),
            }
        }
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
    derived_databases_in(common::cluster(), db)
}

fn derived_databases_in(cluster: &deploy_guard::simulate::sandbox::Cluster, db: &str) -> Vec<String> {
    let out = cluster
        .psql("postgres", &format!("SELECT datname FROM pg_database WHERE datname LIKE '{db}\\_\\_%' ORDER BY 1"))
        .unwrap();
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Every file below `dir` (relative), sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<String> {
    common::files_under(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect()
}

/// Nothing left behind by `app`'s runs: no process mentions its directory or database, no scratch
/// (`__restore_`) database exists, and its file store holds only backups, manifests and replay
/// files (no partial upload).
fn nothing_left_behind(app: &App) {
    nothing_left_behind_in(app, common::cluster())
}

fn nothing_left_behind_in(app: &App, cluster: &deploy_guard::simulate::sandbox::Cluster) {
    let dir = app.tmp.path().display().to_string();
    let db = app.db().to_string();
    let mut left = Vec::new();
    until("the run's processes to exit", 20, || {
        left = processes_mentioning(&dir);
        left.extend(processes_mentioning(&format!("PGDATABASE={db}\0")));
        left.extend(processes_mentioning(&format!("-d {db}")));
        left.is_empty()
    });
    let scratch: Vec<String> =
        derived_databases_in(cluster, &db).into_iter().filter(|d| d.contains("__restore_")).collect();
    assert!(scratch.is_empty(), "scratch databases left: {scratch:?}");
    let partial: Vec<String> = files(&app.stage.store_dir())
        .into_iter()
        .filter(|f| !common::is_backup_data(f) && !f.ends_with(".json") && !f.contains(".lost-writes."))
        .collect();
    assert!(partial.is_empty(), "stray objects in the store: {partial:?}");
}

fn out_of(child: Child) -> (i32, String, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.code().unwrap_or(-1), common::stdout(&o), common::stderr(&o))
}

/// The backups (`.sql.zst`) and manifests (`.json`) in `app`'s file store.
fn backups(app: &App) -> (usize, usize) {
    let f = files(&app.stage.store_dir());
    (f.iter().filter(|f| common::is_backup_data(f)).count(), f.iter().filter(|f| f.ends_with(".json")).count())
}

/// The one manifest in the file store, as JSON.
fn manifest(app: &App) -> serde_json::Value {
    let f: Vec<String> = files(&app.stage.store_dir()).into_iter().filter(|f| f.ends_with(".json")).collect();
    assert_eq!(f.len(), 1, "{f:?}");
    serde_json::from_slice(&std::fs::read(app.stage.store_dir().join(&f[0])).unwrap()).unwrap()
}

/// A deploy of v2 that succeeds; the database after it.
async fn deploy_v2(app: &App) -> common::State {
    deploy_v2_with(app, &[]).await
}

async fn deploy_v2_with(app: &App, env: &[(&str, &str)]) -> common::State {
    let out = dg(app, &["deploy", "--sha", SHA, "--tag", "v2"], env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    common::state(app.db()).await
}

/// The run ended aborted (exit 4) with the database as `before` and the app on v1.
async fn aborted_unchanged(app: &App, child: Child, before: &common::State) {
    let (code, out, err) = out_of(child);
    assert_eq!(code, 4, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"], "aborted", "{err}");
    assert_eq!(&common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
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
    until("the orphaned command to finish", 120, || done.exists());
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

/// The advisory lock id deploy-guard takes for `app` (project and database are the db name).
fn lock_id(app: &App) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("deploy-guard:{0}/{0}", app.db()).as_bytes());
    i64::from_be_bytes(d[..8].try_into().unwrap())
}

/// Ends the session holding `app`'s deploy lock, as a dropped connection would.
fn drop_lock_session(app: &App) {
    let id = lock_id(app);
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' \
         AND classid = {} AND objid = {}",
        (id >> 32) as u32,
        id as u32
    );
    assert_eq!(common::cluster().psql("postgres", &sql).unwrap(), "1", "no session held the deploy lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_lock_lost_mid_run_is_taken_again_or_the_run_stops_if_another_holds_it() {
    for taken_by_another in [false, true] {
        let app = App::new("fault_lock", &["v2"]);
        let gates = Gates::new(&app);
        let stop = gates.stop("migrate");
        app.edit_config(|c| {
            c.replace("run: ./migrate.sh up {tag}", &format!("run: {stop} && ./migrate.sh up {{tag}}"))
        });
        let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[]);
        gates.reached("migrate", &mut child);
        drop_lock_session(&app);
        // Another run's session takes the lock while this one's connection is gone.
        let mut other = taken_by_another.then(|| {
            let c = common::cluster();
            let mut p = Command::new(c.bin_dir.join("psql"))
                .args(["-X", "-q", "-h", "127.0.0.1", "-p", &c.port.to_string(), "-U", "postgres", "-d", "postgres"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            writeln!(p.stdin.as_mut().unwrap(), "SELECT pg_advisory_lock({});", lock_id(&app)).unwrap();
            until("the other session to hold the lock", 30, || {
                let q = format!(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = {}",
                    lock_id(&app) as u32
                );
                common::cluster().psql("postgres", &q).unwrap() == "1"
            });
            p
        });
        gates.open("migrate", "go");
        let (code, stdout, err) = out_of(child);
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
        if taken_by_another {
            assert_eq!(code, 3, "{err}");
            assert_eq!(r["outcome"]["stuck_at"], "deploy", "{r}");
            assert!(r["outcome"]["reason"].as_str().unwrap().contains("lost the deploy lock"), "{r}");
            // It stopped where it lost the lock: the migration ran, v2 was never started.
            assert!(migrated(&app));
            assert_eq!(app.tag(), "v1");
            let mut p = other.take().unwrap();
            let _ = p.kill();
            let _ = p.wait();
        } else {
            assert_eq!(code, 0, "{err}");
            assert!(r["notes"].to_string().contains("taken again"), "{r}");
            assert_eq!(app.tag(), "v2");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_migrate_cuts_it_short_journaled_with_exit_3_then_rollback_sha_finds_nothing_changed() {
    let (app, r, _, before) = signalled_mid_migration("fault_term", &[libc::SIGTERM]).await;
    assert_eq!(r["outcome"]["stuck_at"], "assess", "{r}");
    assert!(r["next_commands"].to_string().contains("rollback --sha 0123456"), "{r}");
    let rb = dg(&app, &["rollback", "--sha", &SHA[..7], "--json"], &[]).output().unwrap();
    assert_eq!(rb.status.code(), Some(0), "{}", common::stderr(&rb));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    nothing_left_behind(&app);
}

/// The runner's second signal while the run is still stopping changes nothing: the migration is
/// cut short and journaled as after the first alone, the process not ended half way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_sigint_while_stopping_changes_nothing() {
    let (app, _, err, _) = signalled_mid_migration("fault_int_term", &[libc::SIGINT, libc::SIGTERM]).await;
    assert!(!err.contains("stopping now"), "the second signal ended the process: {err}");
    nothing_left_behind(&app);
}

/// A deploy whose migration is held at a gate, sent `signals` there one right after the other: it
/// exits 3, the migration killed where it runs and cut short by the first signal, its
/// transaction never committed, journaled `migrate=failed`, the database and the app as before.
/// Returns the app, the report, stderr and the state before.
async fn signalled_mid_migration(name: &str, signals: &[i32]) -> (App, serde_json::Value, String, common::State) {
    let app = App::new(name, &["v2"]);
    let gates = Gates::new(&app);
    let stop = gates.stop("migrate");
    app.edit_config(|c| c.replace("run: ./migrate.sh up {tag}", &format!("run: {stop} && ./migrate.sh up {{tag}}")));
    let before = common::state(app.db()).await;
    let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[]);
    gates.reached("migrate", &mut child);
    for signal in signals {
        unsafe {
            libc::kill(child.id() as i32, *signal);
        }
    }
    let (code, stdout, err) = out_of(child);
    assert_eq!(code, 3, "{err}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    // Two signals sent together may be read in either order: tokio keeps no order across kinds.
    let name = |s: &i32| if *s == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(
        signals.iter().any(|s| reason.contains(&format!("stopped by {}: `migrate` was cut short", name(s)))),
        "{r}"
    );
    assert!(!gates.waiting("migrate"), "the migration's command runs on");
    assert!(!migrated(&app));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    let steps = journal_steps(&app);
    assert_eq!(steps.last().map(String::as_str), Some("migrate=failed"), "{steps:?}");
    (app, r, err, before)
}

/// `step=state` of each journal entry of `app`'s one manifest, in order.
fn journal_steps(app: &App) -> Vec<String> {
    manifest(app)["journal"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}={}", e["step"].as_str().unwrap(), e["state"].as_str().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A job cancelled as GitHub Actions cancels it: the action's own step script run by bash, sent
// SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that.

/// How the cancelled step ended.
struct Cancelled {
    code: Option<i32>,
    stderr: String,
    /// It had to be killed: it did not stop within the runner's 10 s.
    killed: bool,
}

/// The moment to cancel a run at.
enum When {
    /// Its log has a line holding this.
    Logged(&'static str),
    /// This file exists (a gate was reached).
    File(PathBuf),
}

/// Runs the action's "Run deploy-guard" step script for `deploy` of `tag` with bash, as the
/// runner does, and cancels it as the runner does at the moment `when`.
fn cancel_the_action(app: &App, tag: &str, when: When) -> Cancelled {
    use std::io::BufRead;
    let action: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml")).unwrap())
            .unwrap();
    let step = action["runs"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_str() == Some("run"))
        .expect("the action's run step");
    let script = app.tmp.path().join("run-step.sh");
    std::fs::write(&script, step["run"].as_str().unwrap()).unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail"]).arg(&script);
    for (k, _) in std::env::vars() {
        if k.starts_with("GITHUB_") || k.starts_with("INPUT_") || k.starts_with("DEPLOY_GUARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "")
        .env("DG_BIN", common::bin())
        .env("INPUT_COMMAND", "deploy")
        .env("INPUT_CONFIG", &app.config)
        .env("INPUT_SHA", SHA)
        .env("INPUT_TAG", tag);
    for input in ["PREVIOUS_TAG", "PATH", "SSH_KEY", "KNOWN_HOSTS", "GITHUB_TOKEN"] {
        cmd.env(format!("INPUT_{input}"), "");
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let logged = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = logged.clone();
    let needle = match &when {
        When::Logged(s) => Some(*s),
        When::File(_) => None,
    };
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if needle.is_some_and(|n| line.contains(n)) {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let reached = loop {
        let now = match &when {
            When::Logged(_) => logged.load(std::sync::atomic::Ordering::SeqCst),
            When::File(f) => f.exists(),
        };
        if now {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let pid = child.id() as i32;
    let mut killed = false;
    if reached {
        // bash exec'd deploy-guard: the step's process is deploy-guard itself.
        let wait = |child: &mut Child, secs: f64| {
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        unsafe { libc::kill(pid, libc::SIGINT) };
        if !wait(&mut child, 7.5) {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            if !wait(&mut child, 2.5) {
                killed = true;
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(reached, "the run never reached the moment to cancel it:\n{stderr}");
    Cancelled { code: status.code(), stderr, killed }
}

/// Rows enough that a restore takes a moment.
fn grow(app: &App) {
    app.psql("CREATE TABLE ballast AS SELECT i, md5(i::text) AS h FROM generate_series(1, 400000) i;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_mid_migration_stops_within_the_runners_window_with_the_old_database() {
    let app = App::new("cancel_migrate", &["v2"]);
    let gates = Gates::new(&app);
    let stop = gates.stop("migrate");
    app.edit_config(|c| c.replace("run: ./migrate.sh up {tag}", &format!("run: {stop} && ./migrate.sh up {{tag}}")));
    let before = common::state(app.db()).await;
    let c = cancel_the_action(&app, "v2", When::File(gates.dir.join("migrate.at")));
    assert!(!c.killed, "not stopped within the runner's 10 s:\n{}", c.stderr);
    assert_eq!(c.code, Some(3), "{}", c.stderr);
    assert!(c.stderr.contains("stopped by SIGINT: `migrate` was cut short"), "{}", c.stderr);
    assert_eq!(common::state(app.db()).await, before, "the database is not the old one");
    assert_eq!(journal_steps(&app).last().map(String::as_str), Some("migrate=failed"));
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_mid_restore_stops_with_the_live_database_untouched_and_no_scratch_left() {
    let app = App::new("cancel_restore", &["v2-bad-down"]);
    grow(&app);
    let c = cancel_the_action(&app, "v2-bad-down", When::Logged("▶ restore:"));
    assert!(!c.killed, "not stopped within the runner's 10 s:\n{}", c.stderr);
    assert_eq!(c.code, Some(3), "{}", c.stderr);
    let steps = journal_steps(&app);
    assert_eq!(steps.last().map(String::as_str), Some("restore=failed"), "not stopped during the restore: {steps:?}");
    assert!(c.stderr.contains("stopped by SIGINT"), "{}", c.stderr);
    assert!(migrated(&app), "the live database is not the one the deploy left");
    nothing_left_behind(&app);
    // A later run picks up from the journal and restores.
    let rb = dg(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore"], &[]).output().unwrap();
    assert_eq!(rb.status.code(), Some(0), "{}", common::stderr(&rb));
    assert!(!migrated(&app));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_mid_swap_lets_the_swap_finish_and_stops_with_the_restored_database() {
    let app = App::new("cancel_swap", &["v2-bad-down"]);
    grow(&app);
    let before = common::state(app.db()).await;
    let c = cancel_the_action(&app, "v2-bad-down", When::Logged("▶ swap:"));
    assert!(!c.killed, "not stopped within the runner's 10 s:\n{}", c.stderr);
    assert_eq!(c.code, Some(3), "{}", c.stderr);
    let steps = journal_steps(&app);
    assert!(steps.contains(&"swap=ok".to_string()), "the swap did not finish: {steps:?}");
    assert!(c.stderr.contains("stopped by SIGINT: `swap` finished"), "not stopped during the swap:\n{}", c.stderr);
    assert_eq!(common::state(app.db()).await, before, "the database is not the restored one");
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

/// A `bin_dir` whose `pg_dump` and `psql` are the sh scripts given (`@REAL@` stands for the real
/// tools' directory), with `database.bin_dir` pointed at it.
fn tool_wrappers(app: &App, pg_dump: &str, psql: &str) {
    let real = common::cluster().bin_dir.display().to_string();
    let bin = app.tmp.path().join("gated-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in [("pg_dump", pg_dump), ("psql", psql)] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(bin.join(name), format!("#!/bin/sh\n{}", body.replace("@REAL@", &real))).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = bin.display().to_string();
    app.edit_config(|c| {
        let at = c.find("bin_dir: ").unwrap();
        let end = at + c[at..].find('\n').unwrap();
        format!("{}bin_dir: \"{bin}\"{}", &c[..at], &c[end..])
    });
}

/// A wrapper that runs the real tool.
fn pass(tool: &str) -> String {
    format!("exec @REAL@/{tool} \"$@\"\n")
}

/// A `bin_dir` whose `pg_dump` (and, for a restore, `psql`) stops at a gate before it runs the
/// real tool, so the test can kill it there.
fn gated_tools(app: &App, gates: &Gates, pg_dump: bool, psql_restore: bool) {
    let pg_dump = if pg_dump {
        format!("{} || exit 1\nexec @REAL@/pg_dump \"$@\"\n", gates.stop("pg_dump"))
    } else {
        pass("pg_dump")
    };
    let psql = if psql_restore {
        format!(
            "case \"$*\" in *--single-transaction*) exec sh -c '{} || exit 1; exec @REAL@/psql \"$@\"' psql \"$@\";; esac\nexec @REAL@/psql \"$@\"\n",
            gates.stop("psql")
        )
    } else {
        pass("psql")
    };
    tool_wrappers(app, &pg_dump, &psql);
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
    aborted_unchanged(&app, child, &before).await;
    // No backup data object: a manifest without a verified backup is never written.
    assert_eq!(backups(&app).0, 0, "{:?}", files(&app.stage.store_dir()));
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_killed_mid_restore_leaves_the_live_database_as_it_was_and_drops_the_scratch() {
    let app = App::new("fault_psql", &["v2"]);
    let deployed = deploy_v2(&app).await;
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

// ---------------------------------------------------------------------------------------------
// Storage faults

/// A tmpfs of `kib` KiB, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, kib: u32) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"]).arg(&at).status();
        assert!(ok.is_ok_and(|s| s.success()), "cannot mount a tmpfs at {} (needs root)", at.display());
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_on_a_file_store_aborts_with_exit_4_and_leaves_no_partial_backup() {
    let app = App::new("fault_full", &["v2"]);
    let fs = Tmpfs::mount(app.tmp.path().join("small"), 32);
    let store = fs.0.join("store");
    app.edit_config(|c| {
        let at = c.find("store: ").unwrap();
        format!("{}store: \"file://{}\"\n", &c[..at], store.display())
    });
    let before = common::state(app.db()).await;
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[]).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert_eq!(common::json(&out)["result"], "aborted");
    assert!(err.contains("No space left on device"), "the cause is not named: {err}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    let left: Vec<String> = files(&store).into_iter().filter(|f| !f.ends_with(".json")).collect();
    assert!(left.is_empty(), "a partial backup was left on the full disk: {left:?}");
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_backup_object_is_refused_and_the_live_database_is_untouched() {
    let app = App::new("fault_tamper", &["v2"]);
    let deployed = deploy_v2(&app).await;
    let key = files(&app.stage.store_dir()).into_iter().find(|f| common::is_backup_data(f)).unwrap();
    let path = app.stage.store_dir().join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let out = dg(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &[]).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(common::json(&out)["result"], "rollback-failed");
    assert!(err.contains("is not the verified backup"), "the tampering is not named: {err}");
    assert_eq!(common::state(app.db()).await, deployed, "the live database changed");
    // The app was not stopped for a backup that could not be used: it runs v2 as before.
    assert!(app.stage.app_dir().join("state/running").exists(), "the app was stopped for nothing");
    assert_eq!(app.tag(), "v2");
    assert!(derived_databases(app.db()).is_empty(), "{:?}", derived_databases(app.db()));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the evidence was changed");
    assert_eq!(backups(&app), (1, 1));
    nothing_left_behind(&app);
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tag_or_sha_is_refused_with_exit_2_before_anything_runs() {
    let app = App::new("fault_hostile", &["v2"]);
    let proof = app.tmp.path().join("pwned");
    let before = common::state(app.db()).await;
    let evil = format!("$(touch {})", proof.display());
    for args in [
        vec!["deploy", "--sha", SHA, "--tag", &*format!("v2;touch {}", proof.display())],
        vec!["deploy", "--sha", SHA, "--tag", &evil],
        vec!["deploy", "--sha", &evil, "--tag", "v2"],
        vec!["deploy", "--sha", SHA, "--tag", "v2", "--previous-tag", "`id`"],
        vec!["rollback", "--sha", &evil],
        vec!["resolve", "--sha", &evil, "--note", "x"],
    ] {
        let out = dg(&app, &args, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", common::stderr(&out));
        assert!(common::stderr(&out).contains("nothing was changed"), "{args:?}");
    }
    assert!(!proof.exists(), "a hostile argument ran a command");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert!(!app.stage.store_dir().exists(), "{:?}", files(&app.stage.store_dir()));
    nothing_left_behind(&app);
}

/// A database name read from the env file (`${DB_NAME}`) with `value`.
fn name_from_env_file(app: &App, value: &str) {
    std::fs::write(app.tmp.path().join("app.env"), format!("DB_NAME={value}\n")).unwrap();
    let env = app.tmp.path().join("app.env").display().to_string();
    app.edit_config(|c| {
        c.replace(&format!("name: \"{}\"", app.db()), "name: \"${DB_NAME}\"")
            .replace("  runtime: shell\n", &format!("  runtime: shell\n  env_file: \"{env}\"\n"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_env_file_value_never_runs_and_changes_nothing() {
    let app = App::new("fault_envval", &["v2"]);
    let proof = app.tmp.path().join("pwned");
    let before = common::state(app.db()).await;
    for value in [format!("$(touch {})", proof.display()), format!("`touch {}`", proof.display())] {
        name_from_env_file(&app, &value);
        let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &[]).output().unwrap();
        let code = out.status.code();
        assert!(code == Some(4) || code == Some(2), "{value}: {code:?} {}", common::stderr(&out));
        assert!(!proof.exists(), "{value}: the env file value ran as a command");
        std::fs::write(&app.config, app.stage.config_yaml(app.db())).unwrap();
    }
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert_eq!(backups(&app).0, 0);
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_name_with_an_equals_sign_is_refused_not_read_as_a_connection_string() {
    let app = App::new("fault_eq", &["v2"]);
    let before = common::state(app.db()).await;
    // Read as a connection string or URI, each would reach another database.
    for (name, why) in [
        (format!("dbname={} host=127.0.0.1", app.db()), "connection string"),
        (format!("postgresql://127.0.0.1/{}", app.db()), "connection URI"),
    ] {
        name_from_env_file(&app, &name);
        let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &[]).output().unwrap();
        let err = common::stderr(&out);
        assert!(matches!(out.status.code(), Some(2) | Some(4)), "{err}");
        assert!(err.contains(why), "{err}");
        std::fs::write(&app.config, app.stage.config_yaml(app.db())).unwrap();
    }
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert_eq!(backups(&app).0, 0);
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_63_byte_database_name_is_restored_by_scratch_and_swap_without_touching_another_name() {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut db = format!("f63_{}_{}_", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    while db.len() < 63 {
        db.push('x');
    }
    let tmp = common::tempdir();
    let stage = deploy_guard::simulate::Stage::new(
        common::cluster(),
        tmp.path(),
        &db,
        &["v2-bad-down"],
        deploy_guard::simulate::Staged::Clean,
    )
    .unwrap();
    let config = tmp.path().join("deploy-guard.yml");
    std::fs::write(&config, stage.config_yaml("f63")).unwrap();
    let app = App { tmp, stage, config };
    // A literal name is capped at 40 bytes; one from the env file may use PostgreSQL's 63.
    name_from_env_file(&app, &db);
    let before = common::state(app.db()).await;
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2-bad-down", "--json"], &[]).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("restore")), "{err}");
    assert_eq!(common::state(app.db()).await, before, "the live database is not the backup's");
    assert_eq!(app.tag(), "v1");
    // The broken database is kept under its own (shortened) name, distinct from the live one.
    let kept = r["kept_database"].as_str().expect("kept_database").to_string();
    assert!(kept != db && kept.len() <= 63 && kept.contains("__failed_"), "{kept}");
    let exists =
        common::cluster().psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{kept}'"));
    assert_eq!(exists.unwrap().trim(), "1", "the kept copy {kept} does not exist");
    nothing_left_behind(&app);
    common::cluster().psql("postgres", &format!("DROP DATABASE \"{kept}\"")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_output_carrying_workflow_commands_cannot_issue_them_in_the_actions_log() {
    let app = App::new("fault_wfcmd", &["v2-notnull"]);
    app.edit_config(|c| {
        c.replace(
            "run: ./migrate.sh up {tag}",
            "run: echo '::add-mask::injected'; echo '::error::injected-by-migration' >&2; ./migrate.sh up {tag}",
        )
    });
    let before = common::state(app.db()).await;
    let out =
        dg(&app, &["deploy", "--sha", SHA, "--tag", "v2-notnull"], &[("GITHUB_ACTIONS", "true")]).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("injected"), "the migration's output is not in the log at all: {err}");
    // Read the log as the runner does: `::stop-commands::T` stops processing until `::T::`.
    let mut stopped: Option<String> = None;
    for line in err.lines() {
        let l = line.trim_start();
        match &stopped {
            Some(t) if l == format!("::{t}::") => stopped = None,
            Some(_) => {}
            None => {
                if let Some(t) = l.strip_prefix("::stop-commands::") {
                    assert!(t.len() >= 32, "a guessable token: {t}");
                    stopped = Some(t.to_string());
                } else {
                    assert!(!l.contains("injected"), "a workflow command from the migration ran: {line}");
                }
            }
        }
    }
    assert!(stopped.is_none(), "commands were never resumed");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_blocks_the_next_deploy_and_keeps_its_backup_until_resolved() {
    let app = App::new("fault_stuck", &["v2", "v2-crash"]);
    // The previous tag cannot be started again: the rollback cannot finish.
    app.edit_config(|c| {
        c.replace("deploy: ./app.sh deploy {tag}", "deploy: test {tag} != v1 && ./app.sh deploy {tag}")
            .replace("backup:\n", "backup:\n  keep: 1\n")
    });
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2-crash", "--json"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert_eq!(common::json(&out)["result"], "rollback-failed");
    let stuck = common::state(app.db()).await;
    // A later backup with retention (keep: 1) must not prune the stuck run's backup.
    let sha2 = "3333333333333333333333333333333333333333";
    let out = dg(&app, &["backup", "--sha", sha2], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(backups(&app), (2, 2), "retention pruned the backup of an unresolved rollback-failed run");
    // The next deploy is refused, saying what to run.
    let sha3 = "4444444444444444444444444444444444444444";
    let out = dg(&app, &["deploy", "--sha", sha3, "--tag", "v2"], &[]).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("resolve --sha {}", &SHA[..7])), "{err}");
    assert_eq!(common::state(app.db()).await, stuck, "the refused deploy changed the database");
    assert_eq!(backups(&app), (2, 2));
    // Its manifest broken (a field no manifest has): it is not trusted, and not skipped either.
    let manifest = common::files_under(&app.stage.store_dir())
        .into_iter()
        .find(|p| {
            p.to_string_lossy().contains(&format!("_pre-deploy-{}", &SHA[..7]))
                && p.to_string_lossy().ends_with(".manifest.json")
        })
        .expect("the stuck run's manifest");
    let kept = std::fs::read(&manifest).unwrap();
    let mut broken: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    broken["sha256"] = "not a digest".into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let out = dg(&app, &["deploy", "--sha", sha3, "--tag", "v2"], &[]).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("cannot be trusted") && err.contains("waits for a person"), "{err}");
    assert_eq!(common::state(app.db()).await, stuck, "the refused deploy changed the database");
    // Read with a manifest key, the unsigned manifest cannot be verified: not trusted, not skipped.
    std::fs::write(&manifest, &kept).unwrap();
    let key = [("DEPLOY_GUARD_MANIFEST_KEY", "0123456789abcdef0123456789abcdef")];
    let out = dg(&app, &["deploy", "--sha", sha3, "--tag", "v2"], &key).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("cannot be trusted") && err.contains("waits for a person"), "{err}");
    assert_eq!(common::state(app.db()).await, stuck, "the refused deploy changed the database");
    // A person repairs it and records what they did.
    let out = dg(&app, &["resolve", "--sha", &SHA[..7], "--note", "started v1 by hand"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(common::stdout(&out).contains("started v1 by hand"));
    let again = dg(&app, &["resolve", "--sha", &SHA[..7], "--note", "twice"], &[]).output().unwrap();
    assert_eq!(again.status.code(), Some(3), "resolving twice: {}", common::stderr(&again));
    std::fs::write(&app.config, app.stage.config_yaml(app.db())).unwrap();
    let out = dg(&app, &["deploy", "--sha", sha3, "--tag", "v2"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.tag(), "v2");
    assert!(migrated(&app));
    nothing_left_behind(&app);
}

// ---------------------------------------------------------------------------------------------
// SSH and S3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_key_is_refused_with_exit_4_before_anything_runs() {
    let sshd = Sshd::start().unwrap();
    let app = App::new("fault_unknownkey", &["v2"]);
    // known_hosts pins another port only: this server's key is unknown.
    let elsewhere = sshd.known_hosts().replace(&format!(":{}", sshd.port), ":1");
    app.edit_config(|t| format!("{t}{}", sshd.target_yaml().replace(&sshd.known_hosts(), &elsewhere)));
    let before = common::state(app.db()).await;
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &[("DEPLOY_GUARD_SSH_KEY", &sshd.client_key)])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert!(!app.stage.store_dir().exists());
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_server_killed_during_the_backup_upload_aborts_with_exit_4_and_stores_nothing() {
    let mut s3 = s3server::S3Server::start();
    let app = App::new("fault_s3up", &["v2"]);
    let gates = Gates::new(&app);
    gated_tools(&app, &gates, true, false);
    let yaml = s3.backup_yaml("prod");
    app.edit_config(|c| {
        let at = c.find("backup:\n").unwrap();
        format!("{}{yaml}", &c[..at])
    });
    let before = common::state(app.db()).await;
    let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &s3.env());
    gates.reached("pg_dump", &mut child);
    s3.stop();
    gates.open("pg_dump", "go");
    aborted_unchanged(&app, child, &before).await;
    s3.restart();
    assert_eq!(s3.keys(), Vec::<String>::new(), "objects stored by a failed backup");
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_stuck_behind_a_lock_names_who_blocks_it_and_lock_timeout_fails_it_fast() {
    for (case, settings) in [("timeout", "timeout: 2s"), ("lock_timeout", "timeout: 60s\n  lock_timeout: 500ms")] {
        let app = App::new(&format!("fault_blocked_{case}"), &["v2"]);
        app.edit_config(|c| c.replace("timeout: 60s", settings));
        let before = common::state(app.db()).await;
        // Another session reads the table the migration alters, in a transaction left open: its
        // ACCESS SHARE lets the backup read, and makes the ALTER wait.
        let c = common::cluster();
        let mut holder = Command::new(c.bin_dir.join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &c.port.to_string(), "-U", "postgres", "-d", app.db()])
            .env("PGAPPNAME", "test-blocker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            writeln!(holder.stdin.as_mut().unwrap(), "BEGIN; SELECT count(*) FROM customers;").unwrap();
        }
        until("the blocker to hold its lock", 30, || {
            let q = format!(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE a.application_name = 'test-blocker' AND a.datname = '{}' AND l.mode = 'AccessShareLock' AND l.granted",
                app.db()
            );
            common::cluster().psql("postgres", &q).unwrap() != "0"
        });
        let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[]).output().unwrap();
        let _ = holder.kill();
        let _ = holder.wait();
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{case}: {err}");
        let r = common::json(&out);
        let detail =
            r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "migrate").unwrap()["detail"].to_string();
        if case == "timeout" {
            assert!(detail.contains("it waited on a lock held by pid") && detail.contains("test-blocker"), "{detail}");
        } else {
            assert!(detail.contains("lock timeout"), "{detail}");
        }
        assert_eq!(common::state(app.db()).await, before, "{case}");
        assert_eq!(app.tag(), "v1");
    }
}

// ---------------------------------------------------------------------------------------------
// Connections dropped

/// The parent of `pid` and its command name, from /proc.
fn parent_and_name(pid: i32) -> Option<(i32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (name, rest) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))?;
    Some((rest.split_whitespace().nth(1)?.parse().ok()?, name.to_string()))
}

/// Drops the SSH connection the command `pid` runs on, as a broken link does: SIGKILLs every
/// sshd process serving it (its sshd ancestors below the listening server). The command itself
/// runs on, orphaned.
fn drop_ssh_connection_of(pid: u32) {
    let mut sshds = Vec::new();
    let mut at = pid as i32;
    while let Some((parent, _)) = parent_and_name(at) {
        match parent_and_name(parent) {
            Some((_, name)) if name == "sshd" => sshds.push(parent),
            _ if !sshds.is_empty() => break,
            _ => {}
        }
        if parent <= 1 {
            break;
        }
        at = parent;
    }
    sshds.pop(); // the listening server: it stays up, so deploy-guard can connect again
    assert!(!sshds.is_empty(), "{pid} does not run under an sshd session");
    for p in sshds {
        sigkill(p as u32);
    }
}

/// `app` reached over a real sshd: the config's target and the key deploy-guard is given.
fn over_ssh(app: &App, sshd: &Sshd) -> Vec<(&'static str, String)> {
    app.edit_config(|t| format!("{t}{}", sshd.target_yaml()));
    vec![("DEPLOY_GUARD_SSH_KEY", sshd.client_key.clone())]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The step named `step` of a JSON report.
fn step(r: &serde_json::Value, step: &str) -> serde_json::Value {
    r["steps"].as_array().unwrap().iter().find(|s| s["step"] == step).cloned().unwrap_or_default()
}

/// Whether the sample app is running (not stopped).
fn app_running(app: &App) -> bool {
    app.stage.app_dir().join("state/running").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_connection_dropped_mid_backup_aborts_with_exit_4_and_stores_nothing() {
    let sshd = Sshd::start().unwrap();
    let app = App::new("fault_ssh_dump", &["v2"]);
    let env = over_ssh(&app, &sshd);
    let gates = Gates::new(&app);
    // pg_dump writes half its dump, then the stream stops at a gate and the link drops.
    let pg_dump = format!(
        "t=$(mktemp) || exit 1\n@REAL@/pg_dump \"$@\" > \"$t\" || {{ rc=$?; rm -f \"$t\"; exit $rc; }}\n\
         half=$(( $(wc -c < \"$t\") / 2 ))\nhead -c $half \"$t\"\n{} || {{ rm -f \"$t\"; exit 1; }}\n\
         tail -c +$((half + 1)) \"$t\"; rm -f \"$t\"\n",
        gates.stop("pg_dump")
    );
    tool_wrappers(&app, &pg_dump, &pass("psql"));
    let before = common::state(app.db()).await;
    let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &env_refs(&env));
    let pid = gates.reached("pg_dump", &mut child);
    drop_ssh_connection_of(pid);
    let (code, out, err) = out_of(child);
    assert!(!gates.waiting("pg_dump"), "the dump was left running on the target");
    gates.open("pg_dump", "stop");
    assert_eq!(code, 4, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"], "aborted", "{err}");
    let backup = step(&r, "backup");
    assert!(backup["detail"].to_string().contains("dropped"), "the cause is not named: {backup}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert!(app_running(&app));
    assert_eq!(backups(&app).0, 0, "{:?}", files(&app.stage.store_dir()));
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_connection_dropped_mid_restore_leaves_the_live_database_and_the_app_as_they_were() {
    let sshd = Sshd::start().unwrap();
    let app = App::new("fault_ssh_restore", &["v2"]);
    let env = over_ssh(&app, &sshd);
    let deployed = deploy_v2_with(&app, &env_refs(&env)).await;
    let gates = Gates::new(&app);
    // The restoring psql gets the first 4 KiB of the backup, then its input stops at a gate and
    // the link drops, with psql still connected to the scratch database.
    let psql = format!(
        "case \"$*\" in *--single-transaction*)\n  {{ head -c 4096; {} >/dev/null || exit 1; cat; }} | @REAL@/psql \"$@\"; exit $? ;;\nesac\n{}",
        gates.stop("psql"),
        pass("psql")
    );
    tool_wrappers(&app, &pass("pg_dump"), &psql);
    let mut child = spawn(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &env_refs(&env));
    let pid = gates.reached("psql", &mut child);
    drop_ssh_connection_of(pid);
    let (code, out, err) = out_of(child);
    // What the dropped command started on the target was killed when deploy-guard reconnected.
    assert!(!gates.waiting("psql"), "the restore's psql was left running on the target");
    gates.open("psql", "stop");
    assert_eq!(code, 3, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"], "rollback-failed", "{err}");
    let restore = step(&r, "restore");
    assert_eq!(restore["state"], "failed", "{restore}");
    assert!(restore["detail"].to_string().contains("dropped"), "the cause is not named: {restore}");
    // Nothing was replaced: the live database as deployed, the app never stopped.
    assert_eq!(common::state(app.db()).await, deployed);
    assert_eq!(app.tag(), "v2");
    assert!(app_running(&app), "the app was stopped for a restore that failed");
    assert_eq!(backups(&app), (1, 1));
    nothing_left_behind(&app);
    assert!(derived_databases(app.db()).is_empty(), "{:?}", derived_databases(app.db()));
}

/// `rollback --path restore` over SSH whose link drops at the swap's renames: `after` they
/// committed (the outcome is lost with the link), or before they ran.
async fn ssh_dropped_at_the_swap(after: bool) {
    let sshd = Sshd::start().unwrap();
    let app = App::new(&format!("fault_ssh_swap_{after}"), &["v2"]);
    let env = over_ssh(&app, &sshd);
    let before = common::state(app.db()).await;
    let deployed = deploy_v2_with(&app, &env_refs(&env)).await;
    let gates = Gates::new(&app);
    let gate = gates.stop("swap");
    let renames = if after {
        format!("printf '%s\\n' \"$first\" | @REAL@/psql \"$@\"; rc=$?; {gate}; exit $rc")
    } else {
        format!("{gate} || exit 1; printf '%s\\n' \"$first\" | @REAL@/psql \"$@\"; exit $?")
    };
    // Every psql passes its input through (line by line: the lock session streams); the one
    // carrying the renames stops at the gate.
    let psql = format!(
        "case \"$*\" in *--single-transaction*) exec @REAL@/psql \"$@\";; esac\nIFS= read -r first\n\
         case \"$first\" in *'RENAME TO'*) {renames} ;; esac\n{{ printf '%s\\n' \"$first\"; cat; }} | @REAL@/psql \"$@\"\n"
    );
    tool_wrappers(&app, &pass("pg_dump"), &psql);
    let mut child = spawn(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &env_refs(&env));
    let pid = gates.reached("swap", &mut child);
    drop_ssh_connection_of(pid);
    let (code, out, err) = out_of(child);
    assert!(!gates.waiting("swap"), "the renames' psql was left running on the target");
    gates.open("swap", if after { "go" } else { "stop" });
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    let names = derived_databases(app.db());
    let failed = format!("{}__failed_{}", app.db(), &SHA[..7]);
    let scratch = format!("{}__restore_{}", app.db(), &SHA[..7]);
    let allows = |db: &str| {
        common::cluster()
            .psql("postgres", &format!("SELECT datallowconn FROM pg_database WHERE datname = '{db}'"))
            .unwrap()
    };
    if after {
        // The renames committed: the swap is done, whatever the lost link said.
        assert_eq!(code, 0, "{err}");
        assert_eq!(r["result"], "rolled-back", "{err}");
        assert_eq!(r["path"], "restore", "{err}");
        assert_eq!(step(&r, "swap")["state"], "ok", "{r:#}");
        assert_eq!(common::state(app.db()).await, before, "the live database is not the backup");
        assert_eq!(names, vec![failed.clone()], "the broken database is kept, nothing else");
        assert_eq!(allows(&failed), "t", "the kept database must stay readable");
        assert_eq!(app.tag(), "v1");
        assert!(app_running(&app));
    } else {
        // Nothing was renamed: the live database stays as deployed and connectable; the
        // validated copy waits for the next commands.
        assert_eq!(code, 3, "{err}");
        assert_eq!(r["result"], "rollback-failed", "{err}");
        let swap = step(&r, "swap");
        assert_eq!(swap["state"], "failed", "{swap}");
        assert!(swap["detail"].to_string().contains("dropped"), "{swap}");
        assert_eq!(common::state(app.db()).await, deployed);
        assert_eq!(allows(app.db()), "t", "the live database was left refusing connections");
        assert_eq!(names, vec![scratch], "only the validated copy is left");
        // The next command the report gives finishes the job.
        assert!(out.contains(&format!("rollback --sha {} --path restore", &SHA[..7])), "{out}");
        tool_wrappers(&app, &pass("pg_dump"), &pass("psql"));
        let again = dg(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &env_refs(&env))
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(0), "{}", common::stderr(&again));
        assert_eq!(common::state(app.db()).await, before);
        assert_eq!(derived_databases(app.db()), vec![failed]);
        assert_eq!(app.tag(), "v1");
    }
    assert_eq!(backups(&app), (1, 1));
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_connection_dropped_after_the_swap_committed_is_found_done_and_the_rollback_finishes() {
    ssh_dropped_at_the_swap(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_connection_dropped_before_the_swap_leaves_the_live_database_connectable_and_unchanged() {
    ssh_dropped_at_the_swap(false).await;
}

// ---------------------------------------------------------------------------------------------
// S3 answering 5xx, resetting connections

/// `app` with its store in a real S3 server behind a fault-injecting proxy.
fn behind_proxy(app: &App) -> (s3server::S3Server, http_faults::Proxy) {
    let s3 = s3server::S3Server::start();
    let proxy = http_faults::Proxy::start(s3.port);
    let yaml = s3.backup_yaml("prod").replace(&s3.endpoint(), &proxy.endpoint());
    app.edit_config(|c| {
        let at = c.find("backup:\n").unwrap();
        format!("{}{yaml}", &c[..at])
    });
    (s3, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_answering_503_is_retried_and_the_backup_lands_or_aborts_with_exit_4_and_nothing_stored() {
    // Twice: the SDK's retries carry the backup through.
    let app = App::new("fault_s3_503", &["v2"]);
    let (s3, proxy) = behind_proxy(&app);
    proxy.fail("PUT", ".sql.zst", 2, http_faults::Fault::Status(503));
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &s3.env()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{:?}", common::stderr(&out), proxy.log());
    assert_eq!(proxy.count(&["PUT", ".sql.zst", "503 (injected)"]), 2, "{:?}", proxy.log());
    assert_eq!(proxy.count(&["PUT", ".sql.zst", "-> 200"]), 1, "{:?}", proxy.log());
    let keys = s3.keys();
    assert_eq!(keys.iter().filter(|k| common::is_backup_data(k)).count(), 1, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.ends_with(".json")).count(), 1, "{keys:?}");
    assert_eq!(app.tag(), "v2");

    // Every time: the backup fails, nothing is changed or stored.
    let app = App::new("fault_s3_503_always", &["v2"]);
    let (s3, proxy) = behind_proxy(&app);
    proxy.fail("PUT", ".sql.zst", usize::MAX, http_faults::Fault::Status(503));
    let before = common::state(app.db()).await;
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &s3.env()).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let r = common::json(&out);
    assert_eq!(r["result"], "aborted");
    assert!(step(&r, "backup")["detail"].to_string().contains("503"), "the cause is not named: {r:#}");
    assert_eq!(proxy.count(&["PUT", ".sql.zst", "503 (injected)"]), 3, "{:?}", proxy.log());
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    assert_eq!(s3.keys(), Vec::<String>::new(), "objects stored by a failed backup");
    assert_eq!(s3.pending_uploads(), Vec::<String>::new());
    nothing_left_behind(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_download_fails_the_restore_with_nothing_replaced_and_a_rerun_restores() {
    let app = App::new("fault_s3_reset", &["v2"]);
    let (s3, proxy) = behind_proxy(&app);
    let before = common::state(app.db()).await;
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2"], &s3.env()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let deployed = common::state(app.db()).await;
    let keys = s3.keys();
    let key = keys.iter().find(|k| common::is_backup_data(k)).unwrap().clone();
    let size = std::fs::metadata(s3.object_path(&key)).unwrap().len() as usize;
    // A 503 before the download starts is retried by the SDK; a reset half-way through the body
    // is not retried by anyone: the restore fails.
    proxy.fail("GET", ".sql.zst", 1, http_faults::Fault::Status(503));
    proxy.fail("GET", ".sql.zst", 1, http_faults::Fault::ResetAfter(size / 2));
    let out = dg(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &s3.env()).output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}\n{:?}", proxy.log());
    let r = common::json(&out);
    assert_eq!(r["result"], "rollback-failed");
    let restore = step(&r, "restore");
    assert_eq!(restore["state"], "failed", "{restore}");
    assert_eq!(proxy.count(&["GET", ".sql.zst", "503 (injected)"]), 1, "{:?}", proxy.log());
    assert_eq!(proxy.count(&["GET", ".sql.zst", "reset after"]), 1, "{:?}", proxy.log());
    assert_eq!(common::state(app.db()).await, deployed, "a half-downloaded backup replaced the live database");
    assert_eq!(app.tag(), "v2");
    assert!(app_running(&app), "the app was stopped for a restore that failed");
    assert!(derived_databases(app.db()).is_empty(), "{:?}", derived_databases(app.db()));
    assert_eq!(s3.keys(), keys, "the store changed");
    // The link is back: the same command restores.
    proxy.heal();
    let out = dg(&app, &["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"], &s3.env()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    nothing_left_behind(&app);
}

// ---------------------------------------------------------------------------------------------
// The database server restarted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_server_restarted_mid_migration_rolls_back_with_nothing_half_applied() {
    // Its own cluster: restarting the shared one would break the other tests.
    let cluster = deploy_guard::simulate::sandbox::Cluster::start(None).unwrap();
    let tmp = common::tempdir();
    let db = "fault_pg_restart";
    cluster.create_database(db).unwrap();
    let stage =
        deploy_guard::simulate::Stage::new(&cluster, tmp.path(), db, &[], deploy_guard::simulate::Staged::Clean)
            .unwrap();
    let config = tmp.path().join("deploy-guard.yml");
    std::fs::write(&config, stage.config_yaml(db)).unwrap();
    let app = App { tmp, stage, config };
    let gates = Gates::new(&app);
    // A release whose migration creates a table, then stops at a gate inside its transaction.
    let releases = app.stage.app_dir().join("releases");
    let dir = releases.join("v2-mid/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(releases.join("v1/migrations")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("003_mid.up.sql"),
        format!("CREATE TABLE mid_table (id int);\n\\! {}\nINSERT INTO mid_table VALUES (1);\n", gates.stop("migrate")),
    )
    .unwrap();
    std::fs::write(dir.join("003_mid.down.sql"), "DROP TABLE mid_table;").unwrap();
    let before = common::state_in(&cluster, db).await;
    let mut child = spawn(&app, &["deploy", "--sha", SHA, "--tag", "v2-mid", "--json"], &[]);
    gates.reached("migrate", &mut child);
    assert_eq!(
        cluster.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'").unwrap(),
        "1"
    );
    cluster.restart().unwrap();
    gates.open("migrate", "go");
    let (code, out, err) = out_of(child);
    assert_eq!(code, 1, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"], "rolled-back", "{err}");
    assert_eq!(r["path"], "none", "{err}");
    assert_eq!(step(&r, "migrate")["state"], "failed", "{r:#}");
    assert_eq!(cluster.psql(db, "SELECT to_regclass('mid_table') IS NULL").unwrap(), "t");
    assert_eq!(common::state_in(&cluster, db).await, before);
    assert_eq!(app.tag(), "v1");
    assert!(app_running(&app));
    assert_eq!(backups(&app), (1, 1));
    nothing_left_behind_in(&app, &cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_cannot_be_cancelled_is_not_assessed_the_backup_is_restored_instead() {
    let app = App::new("fault_uncancellable", &["v2"]);
    let before = common::state(app.db()).await;
    // The migration leaves behind what a killed client cannot stop (a container, a detached
    // worker): a loop that reconnects as the migration (its PGAPPNAME) whenever it is ended.
    let marker = format!("dg-uncancellable-{}", std::process::id());
    std::fs::write(
        app.stage.app_dir().join("hang.sh"),
        format!(
            "setsid sh -c 'while :; do psql -X -q -c \"SELECT pg_sleep(0.3) /* {marker} */\" >/dev/null 2>&1; done' \
             </dev/null >/dev/null 2>&1 &\nsleep 60\n"
        ),
    )
    .unwrap();
    app.edit_config(|c| c.replace("./migrate.sh up {tag}", "sh hang.sh").replace("timeout: 60s", "timeout: 2s"));
    let out = dg(&app, &["deploy", "--sha", SHA, "--tag", "v2", "--json"], &[]).output().unwrap();
    let _ = Command::new("pkill").args(["-f", &marker]).status();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r = common::json(&out);
    assert_eq!(r["result"], "rolled-back", "{r}");
    assert_eq!(r["path"], "restore", "assess must not be trusted: {r}");
    let steps = r["steps"].as_array().unwrap();
    let detail = |name: &str| steps.iter().find(|s| s["step"] == name).map(|s| s["detail"].to_string()).unwrap();
    assert!(detail("migrate").contains("cancelling it failed too"), "{}", detail("migrate"));
    assert!(detail("assess").contains("may still be running"), "{}", detail("assess"));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
}
