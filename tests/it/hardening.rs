//! Hostile input and leaked secrets, through the real binary, a real PostgreSQL and real child
//! processes (issue 13). Each test's name says the fault it injects.

use crate::common;
use crate::common::s3 as s3server;

use common::{App, SHA};
use s3server::S3Server;

/// Every secret deploy-guard may hold, with a value that is easy to find in a dump of `env`.
const SECRETS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIADEPLOYGUARDLEAK1"),
    ("AWS_SECRET_ACCESS_KEY", "leak-secret-access-key-2"),
    ("AWS_SESSION_TOKEN", "leak-session-token-3"),
    ("GITHUB_TOKEN", "ghp_leakgithubtoken4"),
    ("DEPLOY_GUARD_SSH_KEY", "leak-ssh-private-key-5"),
    ("DEPLOY_GUARD_SSH_KEY_PASSPHRASE", "leak-ssh-passphrase-6"),
    ("DEPLOY_GUARD_MANIFEST_KEY", "leak-manifest-key-7"),
    ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "leak-oidc-request-8"),
];

#[test]
fn secrets_in_the_environment_never_reach_migration_deploy_or_health_commands() {
    let app = App::new("hard_env", &["v2"]);
    app.edit_config(|c| {
        c.replace("run: ./migrate.sh up {tag}", "run: env > migrate.env && ./migrate.sh up {tag}")
            .replace("deploy: ./app.sh deploy {tag}", "deploy: env > deploy.env && ./app.sh deploy {tag}")
            .replace("command: ./app.sh health", "command: env > health.env && ./app.sh health")
    });
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    // GitHub reporting stays off (no repository), whatever the machine running the tests sets.
    env.extend([("GITHUB_REPOSITORY", ""), ("DG_HARMLESS", "visible-to-children")]);
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let dir = app.stage.app_dir();
    for file in ["migrate.env", "deploy.env", "health.env"] {
        let seen = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(seen.contains("DG_HARMLESS=visible-to-children"), "{file}: the child's env was not captured");
        for (name, value) in SECRETS {
            assert!(!seen.contains(value), "{file}: {name} reached a child command");
            assert!(!seen.contains(&format!("{name}=")), "{file}: {name} is set in a child command");
        }
    }
    // Nor did any of them reach the logs.
    let logs = format!("{}{}", common::stdout(&out), common::stderr(&out));
    for (name, value) in SECRETS {
        assert!(!logs.contains(value), "{name} reached the logs");
    }
}

/// A command deploy-guard runs, as the same (unprivileged) user, cannot read deploy-guard's own
/// environment through `/proc/$PPID/environ`: the process is not dumpable.
#[test]
fn a_child_reading_its_parents_environment_sees_no_secret() {
    let app = App::new("hard_parent", &["v2"]);
    app.edit_config(|c| {
        c.replace(
            "command: ./app.sh health",
            "command: (cat /proc/$PPID/environ > parent.env) 2> parent.err; ./app.sh health",
        )
    });
    // deploy-guard runs as the user `postgres` (root could read any process's environment), from
    // a copy of the binary that user can reach, in a stage that user owns.
    let bin = app.tmp.path().join("deploy-guard");
    std::fs::copy(common::bin(), &bin).unwrap();
    let chown = std::process::Command::new("chown").args(["-R", "postgres"]).arg(app.tmp.path()).status().unwrap();
    assert!(chown.success());
    let mut c = std::process::Command::new("runuser");
    c.args(["-u", "postgres", "--"])
        .arg(&bin)
        .args(["deploy", "--sha", SHA, "--tag", "v2", "--config"])
        .arg(&app.config);
    c.env("GITHUB_REPOSITORY", "").env_remove("GITHUB_STEP_SUMMARY").env_remove("GITHUB_OUTPUT");
    for (k, v) in SECRETS {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let dir = app.stage.app_dir();
    let seen = std::fs::read_to_string(dir.join("parent.env")).unwrap_or_default();
    let why = std::fs::read_to_string(dir.join("parent.err")).unwrap();
    for (name, value) in SECRETS {
        assert!(!seen.contains(value), "{name} was read from the parent's environment");
    }
    assert!(why.contains("Permission denied"), "the child read its parent's environment: {why:?} {seen:?}");
}

#[test]
fn a_file_store_backup_is_0600_in_0700_directories_under_a_lax_umask() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new("hard_modes", &["v2"]);
    let store = app.tmp.path().join("modes-store");
    app.edit_config(|c| {
        let at = c.find("store: ").expect("store setting");
        format!("{}store: \"file://{}\"\n", &c[..at], store.display())
    });
    // A umask of 000 would make every file world-writable by default.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" backup --sha \"$1\" --config \"$2\"")
        .arg(common::bin())
        .arg(SHA)
        .arg(&app.config)
        .env("GITHUB_REPOSITORY", "");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (mut files, mut dirs) = (0, 0);
    let mut stack = vec![store.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        dirs += 1;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
                files += 1;
            }
        }
    }
    assert!(files >= 2 && dirs >= 2, "the dump and its manifest, in a month directory: {files} files, {dirs} dirs");
}

/// An app whose backups go to `server` under `prefix`.
fn s3_app(name: &str, releases: &[&str], server: &S3Server) -> App {
    let app = App::new(name, releases);
    let backup = server.backup_yaml(name);
    app.edit_config(|t| {
        let start = t.find("backup:").expect("a backup section");
        format!("{}{backup}", &t[..start])
    });
    app
}

const MANIFEST_KEY: &str = "a6f1c0de2b9e4f7a8c3d5e6f7a8b9c0d";

fn run_s3(app: &App, server: &S3Server, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    let mut env = server.env();
    env.push(("GITHUB_REPOSITORY", ""));
    env.extend_from_slice(extra);
    app.run_env(args, &env)
}

/// The one manifest object in the bucket.
fn manifest_path(server: &S3Server) -> std::path::PathBuf {
    let keys: Vec<String> = server.keys().into_iter().filter(|k| k.ends_with(".manifest.json")).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    server.object_path(&keys[0])
}

fn databases_like(prefix: &str) -> String {
    common::cluster()
        .psql(
            "postgres",
            &format!(
                "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '{prefix}%'"
            ),
        )
        .unwrap()
}

#[tokio::test]
async fn a_tampered_signed_manifest_in_s3_is_refused_and_nothing_is_restored() {
    let server = S3Server::start();
    let app = s3_app("hard_sig", &["v2"], &server);
    let key = [("DEPLOY_GUARD_MANIFEST_KEY", MANIFEST_KEY)];
    let out = run_s3(&app, &server, &["backup", "--sha", SHA], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let path = manifest_path(&server);
    let signed = std::fs::read_to_string(&path).unwrap();
    assert!(signed.contains("\"signature\": \"hmac-sha256:"), "{signed}");
    assert!(!signed.contains(MANIFEST_KEY) && !common::stderr(&out).contains(MANIFEST_KEY), "the key leaked");
    // A change after the backup: the app writes on.
    app.psql("CREATE TABLE after_backup (x int); INSERT INTO after_backup VALUES (1);");
    let before = common::state(app.db()).await;

    // Someone with write access to the bucket edits the manifest (here: its creation time, so that
    // it sorts first; any field will do).
    std::fs::write(&path, signed.replacen("\"created_at\": \"20", "\"created_at\": \"21", 1)).unwrap();
    for args in [&["restore", "--sha", SHA][..], &["rollback", "--sha", SHA, "--path", "restore"][..]] {
        let out = run_s3(&app, &server, args, &key);
        assert_ne!(out.status.code(), Some(0), "{args:?}: a tampered manifest was trusted");
        let err = common::stderr(&out);
        assert!(err.contains("fails its signature check"), "{args:?}: {err}");
        assert!(!err.contains(MANIFEST_KEY), "the key leaked");
    }
    // Nothing was restored, nothing was left behind, the backup is still there.
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(databases_like(&format!("{}__", app.db())), "", "a scratch or kept database was left");
    assert_eq!(server.keys().len(), 2, "{:?}", server.keys());

    // Put back as it was, it restores (the key was right all along).
    std::fs::write(&path, &signed).unwrap();
    let out = run_s3(&app, &server, &["restore", "--sha", SHA], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.psql("SELECT to_regclass('after_backup') IS NULL"), "t", "the backup was restored");
}

#[tokio::test]
async fn an_unsigned_manifest_is_refused_when_a_key_is_set_and_warned_about_once_when_not() {
    let server = S3Server::start();
    let app = s3_app("hard_unsigned", &["v2"], &server);
    let out = run_s3(&app, &server, &["backup", "--sha", SHA], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(!std::fs::read_to_string(manifest_path(&server)).unwrap().contains("signature"));
    let out = run_s3(&app, &server, &["backups"], &[]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("backup manifests are unsigned").count(), 1, "{err}");
    let before = common::state(app.db()).await;
    let out = run_s3(&app, &server, &["restore", "--sha", SHA], &[("DEPLOY_GUARD_MANIFEST_KEY", MANIFEST_KEY)]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        common::stderr(&out).contains("is not signed, but DEPLOY_GUARD_MANIFEST_KEY is set"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(common::state(app.db()).await, before);
}

#[tokio::test]
async fn a_hostile_tag_in_a_stored_manifest_is_refused_before_anything_runs() {
    let server = S3Server::start();
    let app = s3_app("hard_hostile", &["v2"], &server);
    let out = run_s3(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let path = manifest_path(&server);
    let marker = app.tmp.path().join("pwned");
    let text = std::fs::read_to_string(&path).unwrap();
    let hostile = format!("v1$(touch {})", marker.display());
    std::fs::write(&path, text.replace("\"previous_tag\": \"v1\"", &format!("\"previous_tag\": {hostile:?}"))).unwrap();
    let before = common::state(app.db()).await;
    let out = run_s3(&app, &server, &["rollback", "--sha", SHA], &[]);
    assert_ne!(out.status.code(), Some(0));
    let err = common::stderr(&out);
    assert!(err.contains("is not trustworthy") && err.contains("not a valid image tag"), "{err}");
    assert!(!marker.exists(), "the hostile tag ran");
    assert_eq!(app.tag(), "v2", "the app was touched");
    assert_eq!(common::state(app.db()).await, before);
}

/// Waits (bounded) for the wall clock to reach the next second: backups are ordered by the second
/// in their names, so a backup taken after this one is the newer.
fn next_second() {
    let now = chrono::Utc::now().timestamp();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while chrono::Utc::now().timestamp() == now {
        assert!(std::time::Instant::now() < deadline, "the clock stopped");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn another_projects_backup_of_the_same_sha_in_a_shared_bucket_is_never_picked() {
    let server = S3Server::start();
    let shared = |name: &str| {
        let app = App::new(name, &["v2"]);
        let backup = server.backup_yaml("shared");
        app.edit_config(|t| format!("{}{backup}", &t[..t.find("backup:").unwrap()]));
        app
    };
    let prod = shared("hard_prod");
    let staging = shared("hard_staging");
    let project = |app: &App| {
        let text = std::fs::read_to_string(&app.config).unwrap();
        text.lines().find_map(|l| l.strip_prefix("project: ")).unwrap().trim_matches('"').to_string()
    };
    // The production deploy of SHA, then a staging backup and a nightly production backup of the
    // same commit, both newer.
    let out = run_s3(&prod, &server, &["deploy", "--sha", SHA, "--tag", "v2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    next_second();
    let out = run_s3(&staging, &server, &["backup", "--sha", SHA], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    next_second();
    let out = run_s3(&prod, &server, &["backup", "--sha", SHA], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(server.keys().len(), 6, "three backups and their manifests: {:?}", server.keys());

    let vars: Vec<(String, String)> = server.env().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let store = deploy_guard::store::S3Store::new(
        deploy_guard::store::S3Settings {
            bucket: s3server::BUCKET.into(),
            prefix: "shared".into(),
            endpoint: Some(server.endpoint()),
            region: Some("us-east-1".into()),
            path_style: None,
            part_size: 8 << 20,
            parts_in_flight: 2,
            sse: None,
            sse_kms_key_id: None,
            checksums: false,
        },
        &vars,
    )
    .unwrap();
    // By project and database: production's own pre-deploy backup, not the later nightly one.
    let m = deploy_guard::record::find_for(&store, &project(&prod), prod.db(), &SHA[..7]).await.unwrap();
    assert_eq!((m.project.as_str(), m.database.as_str()), (project(&prod).as_str(), prod.db()));
    assert_eq!((m.tag.as_deref(), m.outcome), (Some("v2"), Some(deploy_guard::guard::Outcome::Deployed)));
    let m = deploy_guard::record::find_for(&store, &project(&staging), staging.db(), SHA).await.unwrap();
    assert_eq!(m.database, staging.db());
    // Another project, or production's name with staging's database: refused, naming what exists.
    for (p, d) in [("shop", "shop"), (project(&prod).as_str(), staging.db())] {
        let e = format!(
            "{:#}",
            deploy_guard::record::find_for(&store, p, d, &SHA[..7]).await.expect_err("picked a foreign backup")
        );
        assert!(e.contains("belong to another project or database"), "{e}");
        assert!(
            e.contains(&format!("database {}", prod.db())) && e.contains(&format!("database {}", staging.db())),
            "{e}"
        );
    }
    // Nothing was deleted along the way.
    assert_eq!(server.keys().len(), 6);
}

/// The one backup object in a file store, decompressed.
fn plain_dump(store: &std::path::Path) -> (std::path::PathBuf, String) {
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if common::is_backup_data(&p.to_string_lossy()) {
                let text = common::unpack(&p);
                return (p, text);
            }
        }
    }
    panic!("no backup in {}", store.display())
}

#[tokio::test]
async fn a_backup_carrying_a_psql_shell_escape_is_refused_and_the_scratch_database_dropped() {
    let app = App::new("hard_meta", &["v2"]);
    let out = app.run_env(&["backup", "--sha", SHA], &[("GITHUB_REPOSITORY", "")]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (path, sql) = plain_dump(&app.stage.store_dir());
    // This machine's pg_dump writes `\restrict KEY` / `\unrestrict KEY` (15.14+): a real dump with
    // them restores through the filter.
    if sql.lines().any(|l| l.starts_with("\\restrict ")) {
        assert!(sql.lines().any(|l| l.starts_with("\\unrestrict ")), "restrict without unrestrict");
    }
    let out = app.run_env(&["restore", "--sha", SHA], &[("GITHUB_REPOSITORY", "")]);
    assert_eq!(out.status.code(), Some(0), "a genuine dump was refused: {}", common::stderr(&out));

    let before = common::state(app.db()).await;
    let marker = app.tmp.path().join("pwned");
    let scratch = format!("{}__restore_{}", app.db(), &SHA[..7]);
    // Before pg_dump's own `\restrict` (so psql would run it), in the middle of the SQL, and
    // behind a COPY line that is really inside a string.
    let shell = format!("\\! touch {}\n", marker.display());
    let first_set = sql.find("\nSET ").expect("a SET line") + 1;
    let copy_in_string = format!("SELECT '\nCOPY x FROM stdin;\n';\n{shell}\\.\n");
    // pg_dump's own `\restrict` line left out, as a forger would.
    let unrestricted: String = sql.lines().filter(|l| !l.contains("restrict ")).map(|l| format!("{l}\n")).collect();
    let unset = unrestricted.find("\nSET ").expect("a SET line") + 1;
    let at = |s: &str| format!("{}{s}{}", &unrestricted[..unset], &unrestricted[unset..]);
    let meta = "psql meta-command outside COPY data";
    for (hostile, why) in [
        (format!("{shell}{sql}"), meta),
        (format!("{}{shell}{}", &sql[..first_set], &sql[first_set..]), meta),
        (format!("{}SELECT 1; {shell}{}", &sql[..first_set], &sql[first_set..]), meta),
        (format!("{}{copy_in_string}{}", &sql[..first_set], &sql[first_set..]), meta),
        // psql reads the number 1, then the quote `$a$ x $a$`, then runs the shell escape.
        (at(&format!("SELECT 1$a$ x $a$ {shell}")), "a dollar sign right after a number"),
        // `--` ends at a carriage return for psql.
        (at(&format!("SELECT 1; -- note\r{shell}")), meta),
        // Inside parentheses `;` ends nothing: the COPY line is not one, what follows is SQL.
        (at(&format!("SELECT (1;\nCOPY x FROM stdin;\n{shell}\\.\n")), meta),
        // psql before 15.19 runs the backtick before it checks the key.
        (at(&format!("SELECT '\\unrestrict `touch {}`';\n", marker.display())), "backtick"),
    ] {
        common::forge_backup(&path, hostile.as_bytes());
        let out = app.run_env(&["restore", "--sha", SHA], &[("GITHUB_REPOSITORY", "")]);
        let err = common::stderr(&out);
        assert_ne!(out.status.code(), Some(0), "a shell escape was restored: {err}");
        assert!(err.contains(why), "expected {why:?}: {err}");
        assert!(!marker.exists(), "psql ran the shell escape");
        assert!(!common::cluster().database_exists(&scratch).unwrap(), "the scratch database was left behind");
        assert_eq!(common::state(app.db()).await, before, "the live database changed");
    }
}

/// The second line holds alone: with the filter out of the way, psql itself, restricted under
/// deploy-guard's key, refuses a meta-command and whatever `\unrestrict` a forger can write.
#[tokio::test]
async fn psql_restricted_by_the_restore_refuses_meta_commands_itself() {
    let db = common::fresh_db("hard_restrict");
    let pg = deploy_guard::db::Postgres::new(
        std::sync::Arc::new(deploy_guard::exec::Local),
        Some(common::cluster().bin_dir.display().to_string()),
        deploy_guard::db::ConnInfo {
            host: Some("127.0.0.1".into()),
            port: Some(common::cluster().port),
            user: Some("postgres".into()),
            ..Default::default()
        },
        db.clone(),
        "postgres".into(),
    );
    assert!(pg.psql().await.unwrap().restricts(), "this machine's psql has no \\restrict");
    let dir = common::tempdir();
    let marker = dir.path().join("ran");
    let shell = format!("\\! touch {}\n", marker.display());
    for hostile in [
        format!("CREATE TABLE t (a int);\n{shell}"),
        // A dump's own restrict lines, then the forger's: the key is not theirs to know.
        format!("--\n\\restrict Abc\n\nCREATE TABLE t (a int);\n\\unrestrict Abc\n{shell}"),
        format!("\\unrestrict guess\n{shell}"),
    ] {
        let r = pg.restore_into(&db, &mut hostile.as_bytes(), true).await;
        assert!(r.is_err(), "restored: {hostile}");
        assert!(!marker.exists(), "psql ran the shell escape: {hostile}");
        assert_eq!(common::cluster().psql(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").unwrap(), "0");
    }
    // A genuine dump's own lines are taken out on the way in: it restores.
    let genuine = "--\n-- PostgreSQL database dump\n--\n\n\\restrict Abc1\n\nCREATE TABLE t (a int);\n--\n\n\\unrestrict Abc1\n\n";
    pg.restore_into(&db, &mut genuine.as_bytes(), true).await.unwrap();
    assert_eq!(common::cluster().psql(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").unwrap(), "1");
    // Unrestricted, psql runs it: the restriction is what stopped it above.
    let _ = pg.restore_into(&db, &mut shell.as_bytes(), false).await;
    assert!(marker.exists(), "the shell escape did not run even unrestricted: the test proves nothing");
}

/// Yields `data`, then fails: a store read that breaks mid-stream.
struct BreaksOff {
    data: Option<Vec<u8>>,
}

impl tokio::io::AsyncRead for BreaksOff {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.data.take() {
            Some(d) => buf.put_slice(&d),
            None => return std::task::Poll::Ready(Err(std::io::Error::other("connection reset by the store"))),
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// A restore whose input breaks off: psql must not wait forever, the run fails with the input's
/// error, and (where the executor can kill it before its stdin closes) psql commits nothing.
async fn broken_restore(exec: std::sync::Arc<dyn deploy_guard::exec::Executor>, db: &str, committed_ok: bool) {
    let c = common::cluster();
    let pg = common::postgres_on(exec, db);
    let mut input = BreaksOff {
        data: Some(b"CREATE TABLE half_restored (x int);\nINSERT INTO half_restored VALUES (1);\n".to_vec()),
    };
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), pg.restore_into(db, &mut input, true))
        .await
        .expect("the restore hung after its input broke off");
    let e = format!("{:#}", r.expect_err("a broken input must fail the restore"));
    assert!(e.contains("connection reset by the store"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    if !committed_ok {
        assert_eq!(
            c.psql(db, "SELECT to_regclass('half_restored') IS NULL").unwrap(),
            "t",
            "a partial restore was committed"
        );
    }
}

#[tokio::test]
async fn a_local_restore_whose_input_breaks_off_fails_at_once_and_commits_nothing() {
    let db = common::fresh_db("hard_brk_local");
    broken_restore(std::sync::Arc::new(deploy_guard::exec::Local), &db, false).await;
}

#[tokio::test]
async fn an_ssh_restore_whose_input_breaks_off_fails_at_once_and_commits_nothing() {
    use common::SshdExt;
    let sshd = common::Sshd::start().unwrap();
    let ssh = deploy_guard::exec::ssh::Ssh::connect(&sshd.target(), &sshd.credentials()).await.unwrap();
    let db = common::fresh_db("hard_brk_ssh");
    // OpenSSH 9.2 does not act on the KILL signal request: psql is found on the target by the
    // command's own variable and killed before its stdin is closed, so it never sees EOF.
    broken_restore(std::sync::Arc::new(ssh), &db, false).await;
}

#[tokio::test]
async fn a_command_without_a_timeout_still_has_one() {
    assert!(deploy_guard::exec::Cmd::new("x", "true").deadline() <= std::time::Duration::from_secs(3600));
    let c = deploy_guard::exec::Cmd::new("sleep", "sleep 30").timeout(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let out = deploy_guard::exec::capture(&deploy_guard::exec::Local, &c).await.unwrap();
    assert!(out.exit.timed_out && started.elapsed() < std::time::Duration::from_secs(10), "{out:?}");
    let pg = common::postgres("postgres");
    assert_eq!(pg.dump_cmd().timeout, Some(deploy_guard::config::DEFAULT_STREAM_TIMEOUT));
    let pg = pg.stream_timeout(std::time::Duration::from_secs(90));
    assert_eq!(pg.psql_cmd("psql", "postgres", "").timeout, Some(std::time::Duration::from_secs(90)));
}

/// Two backups of one SHA named in the same second are two backups, and a
/// `backup --sha` of the deployed commit right after its deploy leaves the deploy's own pre-deploy
/// backup the one a rollback by SHA restores.
#[tokio::test]
async fn a_backup_never_replaces_another_and_the_rollback_by_sha_keeps_the_pre_deploy_one() {
    let app = App::new("hard_unique", &["v2"]);
    let store = app.stage.store_dir();
    let stem = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().split('.').next().unwrap().to_string();
    let second = |p: &std::path::PathBuf| stem(p)[..15].to_string();
    // One after the other (a backup holds the deploy lock) from the start of a second, until a
    // pair is named in the same second (the first try, nearly always).
    let mut same_second = false;
    for _ in 0..5 {
        let before: std::collections::BTreeSet<_> = common::backup_files(&store).into_iter().collect();
        next_second();
        let (a, b) = (app.run(&["backup", "--sha", SHA]), app.run(&["backup", "--sha", SHA]));
        for out in [&a, &b] {
            assert_eq!(out.status.code(), Some(0), "{}", common::stderr(out));
        }
        let new: Vec<_> = common::backup_files(&store).into_iter().filter(|f| !before.contains(f)).collect();
        assert_eq!(new.len(), 2, "two backups left {new:?}");
        assert!(new.iter().all(|f| stem(f).contains(&format!("_backup-{}-", &SHA[..7]))), "{new:?}");
        for f in &new {
            assert!(common::manifest_of(f).exists(), "{f:?} has no manifest");
        }
        if second(&new[0]) == second(&new[1]) {
            same_second = true;
            break;
        }
    }
    assert!(same_second, "no two backups in a row were named in the same second");

    let before = common::state(app.db()).await;
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let out = app.run(&["backup", "--sha", SHA]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_ne!(common::state(app.db()).await, before, "v2's migrations changed nothing to tell apart");
    let out = app.run(&["rollback", "--sha", &SHA[..7], "--path", "restore", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let key = common::json(&out)["backup"]["key"].as_str().unwrap_or_default().to_string();
    assert!(key.contains(&format!("_pre-deploy-{}-", &SHA[..7])), "restored {key}");
    assert_eq!(common::state(app.db()).await, before, "the rollback did not restore the pre-deploy state");
    assert_eq!(app.tag(), "v1");
}

/// A signed manifest holding a rehearsal (its durations are floats that must read back exactly
/// as they were signed) is accepted by the rollback by SHA, the restore and the replay.
#[tokio::test]
async fn a_signed_manifest_with_a_rehearsal_is_accepted_by_rollback_restore_and_replay() {
    let app = App::new("hard_signed_rehearsal", &["v2"]);
    app.edit_config(|t| format!("{t}\ndeploy:\n  rehearse: true\n"));
    let key = [("DEPLOY_GUARD_MANIFEST_KEY", "0123456789abcdef0123456789abcdef")];
    let before = common::state(app.db()).await;
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let manifest = common::find_file(&app.stage.store_dir(), ".manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert!(m["signature"].as_str().is_some_and(|s| s.starts_with("hmac-sha256:")), "{m:#}");
    assert!(m["rehearsal"]["up_secs"].as_f64().is_some(), "no rehearsal kept: {m:#}");

    // A write after the deploy, taken away by the restore, found and replayed.
    app.psql("INSERT INTO customers (name) VALUES ('written after the deploy');");
    let out = app.run_env(&["rollback", "--sha", &SHA[..7], "--path", "restore"], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    let out = app.run_env(&["replay", "--sha", &SHA[..7]], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.psql("SELECT count(*) FROM customers WHERE name = 'written after the deploy'"), "1");
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], &key);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
}
