//! The PR check (`deploy-guard plan`) on a pull request: a checkout with dbmate migrations, a real
//! PostgreSQL database (the job's service container), GitHub's API as a local server recording
//! every request. The config names a remote target and a backup store: nothing may reach either.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::github::{calls, serve, Fake, TOKEN};
use crate::common::{self, SHA};

struct Repo {
    tmp: tempfile::TempDir,
    db: String,
    /// Connections the "target" (sshd's port in the config) received.
    ssh_attempts: Arc<AtomicUsize>,
}

const APPLIED: &str = "-- migrate:up\nCREATE TABLE orders (id int PRIMARY KEY, note text);\nDROP TABLE legacy;\n\
                       -- migrate:down\nDROP TABLE orders;\n";

impl Repo {
    /// A checkout whose `db/migrations` holds an applied migration and `pr` (name, SQL), and a
    /// database where the applied one ran, with three orders.
    fn new(prefix: &str, pr: (&str, &str)) -> Repo {
        let tmp = common::tempdir();
        let dir = tmp.path().join("db/migrations");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("001_orders.sql"), APPLIED).unwrap();
        std::fs::write(dir.join(pr.0), pr.1).unwrap();
        let db = common::fresh_db(prefix);
        common::cluster()
            .psql(
                &db,
                "CREATE TABLE orders (id int PRIMARY KEY, note text); \
                 INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c'); \
                 CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY); \
                 INSERT INTO schema_migrations VALUES ('001');",
            )
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ssh_attempts = Arc::new(AtomicUsize::new(0));
        let seen = ssh_attempts.clone();
        std::thread::spawn(move || {
            for _ in listener.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        let c = common::cluster();
        let config = format!(
            "project: shop\n\
             target:\n  host: 127.0.0.1\n  port: {port}\n  user: deploy\n  \
             known_hosts: \"127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n\
             app:\n  runtime: shell\n  commands:\n    deploy: ./start {{tag}}\n    stop: ./stop\n    \
             current_tag: cat TAG\n    status: ./status\n    logs: tail -n {{lines}} app.log\n  \
             health:\n    command: \"true\"\n\
             database:\n  url: postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable\n  bin_dir: {}\n\
             migrations:\n  tool: dbmate\n\
             backup:\n  store: file://{}\n",
            c.port,
            c.bin_dir.display(),
            tmp.path().join("store").display()
        );
        std::fs::write(tmp.path().join("deploy-guard.yml"), config).unwrap();
        std::fs::write(tmp.path().join("event.json"), json!({"pull_request": {"number": 7, "labels": []}}).to_string())
            .unwrap();
        Repo { tmp, db, ssh_attempts }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// `plan` as the action runs it in the pull request's job.
    async fn plan(&self, url: &str) -> std::process::Output {
        self.plan_with(url, &[]).await
    }

    /// [`Repo::plan`] with more arguments, dbmate (the checkout's tool) on PATH.
    async fn plan_with(&self, url: &str, more: &[&str]) -> std::process::Output {
        let (dir, url) = (self.tmp.path().to_path_buf(), url.to_string());
        let more: Vec<String> = more.iter().map(|s| s.to_string()).collect();
        let mut path = vec![crate::common::tool::fixture_dir("dbmate").join("node_modules/.bin")];
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let path = std::env::join_paths(path).unwrap();
        let _ = std::fs::remove_file(dir.join("outputs"));
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::bin())
                .args(["plan", "--sha", SHA])
                .args(&more)
                .env("PATH", path)
                .current_dir(&dir)
                .env("GITHUB_TOKEN", TOKEN)
                .env("GITHUB_REPOSITORY", "acme/shop")
                .env("GITHUB_API_URL", &url)
                .env("GITHUB_EVENT_PATH", dir.join("event.json"))
                .env("GITHUB_OUTPUT", dir.join("outputs"))
                .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
                .env_remove("GITHUB_ACTIONS")
                .env_remove("GITHUB_SHA")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// Nothing reached the target or the store, and the database is as it was.
    fn nothing_changed(&self) {
        assert_eq!(self.ssh_attempts.load(Ordering::SeqCst), 0, "the PR check connected to the target");
        assert!(!self.path("store").exists(), "the PR check wrote to the backup store");
        let psql = |sql: &str| common::cluster().psql(&self.db, sql).unwrap();
        assert_eq!(psql("SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM orders").trim(), "1:a,2:b,3:c");
        assert_eq!(psql("SELECT string_agg(version, ',') FROM schema_migrations").trim(), "001");
    }
}

fn pr_files(names: &[&str]) -> Vec<serde_json::Value> {
    names.iter().map(|n| json!({"filename": format!("db/migrations/{n}"), "status": "added"})).collect()
}

fn outputs(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("outputs")).unwrap_or_default()
}

const DROP_NOTE: &str =
    "-- migrate:up\nALTER TABLE orders DROP COLUMN note;\n-- migrate:down\nALTER TABLE orders ADD COLUMN note text;\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destructive_migration_fails_the_check_until_the_label_and_the_comment_is_updated_in_place() {
    let fake = Arc::new(Mutex::new(Fake { pr_files: pr_files(&["002_drop_note.sql"]), ..Default::default() }));
    let url = serve(fake.clone()).await;
    let repo = Repo::new("pr_destructive", ("002_drop_note.sql", DROP_NOTE));

    let out = repo.plan(&url).await;
    assert_eq!(out.status.code(), Some(4), "{}\n{}", common::stdout(&out), common::stderr(&out));
    assert!(!common::stderr(&out).contains(TOKEN) && !common::stdout(&out).contains(TOKEN), "token leaked");
    {
        let f = fake.lock().unwrap();
        assert_eq!(
            calls(&f),
            [
                "GET /repos/acme/shop/issues/7/labels",
                "GET /repos/acme/shop/pulls/7/files",
                "GET /repos/acme/shop/issues/7/comments",
                "POST /repos/acme/shop/issues/7/comments",
            ]
        );
        let body = f.requests[3].body["body"].as_str().unwrap();
        assert!(body.starts_with("<!-- deploy-guard:shop:pr-check -->"), "{body}");
        // The statement, its table and the rows at stake (counted in the database: 3 orders).
        let row = "| destructive | `db/migrations/002_drop_note.sql: ALTER TABLE orders DROP COLUMN note` | `orders` | 3 rows |";
        assert!(body.contains(row), "{body}");
        assert!(body.contains("**destructive**") && body.contains("`allow-destructive` label"), "{body}");
        // Only the pull request's migrations: the applied file's DROP TABLE is not this PR's.
        assert!(!body.contains("legacy"), "{body}");
        // The path a deploy would take, and the way back: a revert cannot undo a dropped column.
        assert!(body.contains("preflight → pull → classify → backup → record → migrate → deploy → health"), "{body}");
        assert!(body.contains("restore the backup: the migrations' SQL was classified destructive"), "{body}");
    }
    let out_file = outputs(repo.tmp.path());
    assert!(out_file.contains("result=destructive\n") && out_file.contains("destructive=1\n"), "{out_file}");
    assert!(out_file.contains("comment-url=https://github.com/acme/shop/pull/7#issuecomment-1000\n"), "{out_file}");
    assert!(std::fs::read_to_string(repo.path("summary.md")).unwrap().contains("The deploy's plan"));
    repo.nothing_changed();

    // A reviewer adds the label: the same comment is edited, the check passes.
    fake.lock().unwrap().labels = vec!["allow-destructive".into()];
    let out = repo.plan(&url).await;
    assert_eq!(out.status.code(), Some(0), "{}\n{}", common::stdout(&out), common::stderr(&out));
    let f = fake.lock().unwrap();
    let c = calls(&f);
    assert_eq!(c.iter().filter(|c| c.starts_with("POST")).count(), 1, "{c:?}");
    assert_eq!(c.last().map(String::as_str), Some("PATCH /repos/acme/shop/issues/comments/1000"), "{c:?}");
    assert_eq!(f.comments.len(), 1);
    let body = f.comments[0]["body"].as_str().unwrap();
    assert!(body.contains("**allowed**") && body.contains("allowed by the `allow-destructive` label"), "{body}");
    assert!(outputs(repo.tmp.path()).contains("result=allowed\n"));
    repo.nothing_changed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_migration_passes_and_an_annotated_one_is_allowed() {
    let safe = "-- migrate:up\nCREATE TABLE coupons (id int, code text);\n-- migrate:down\nDROP TABLE coupons;\n";
    let fake = Arc::new(Mutex::new(Fake { pr_files: pr_files(&["002_coupons.sql"]), ..Default::default() }));
    let url = serve(fake.clone()).await;
    let repo = Repo::new("pr_safe", ("002_coupons.sql", safe));
    let out = repo.plan(&url).await;
    assert_eq!(out.status.code(), Some(0), "{}\n{}", common::stdout(&out), common::stderr(&out));
    let body = fake.lock().unwrap().requests.last().unwrap().body["body"].as_str().unwrap().to_string();
    assert!(body.contains("**passed**") && body.contains("`db/migrations/002_coupons.sql`: no destructive"), "{body}");
    assert!(body.contains("revert with the tool's down"), "{body}");
    repo.nothing_changed();

    let annotated = DROP_NOTE.replace(
        "ALTER TABLE orders DROP",
        "-- deploy-guard: allow-destructive notes moved to order_notes in 001\nALTER TABLE orders DROP",
    );
    let fake = Arc::new(Mutex::new(Fake { pr_files: pr_files(&["002_drop_note.sql"]), ..Default::default() }));
    let url = serve(fake.clone()).await;
    let repo = Repo::new("pr_annotated", ("002_drop_note.sql", &annotated));
    let out = repo.plan(&url).await;
    assert_eq!(out.status.code(), Some(0), "{}\n{}", common::stdout(&out), common::stderr(&out));
    let body = fake.lock().unwrap().requests.last().unwrap().body["body"].as_str().unwrap().to_string();
    assert!(body.contains("destructive (allowed: notes moved to order_notes in 001)"), "{body}");
    repo.nothing_changed();
}

/// `--rehearse`: the pull request's migrations up and back down on a copy of the job's database,
/// dbmate run here in the checkout. A revert that brings the dropped column back empty is said in
/// the comment; a migration that fails on the copy fails the check (4). The job's database is as
/// it was, no copy is left, nothing reached the target or its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_on_the_jobs_database_runs_the_migrations_up_and_down_on_a_copy() {
    let fake = Arc::new(Mutex::new(Fake { pr_files: pr_files(&["002_drop_note.sql"]), ..Default::default() }));
    let url = serve(fake.clone()).await;
    let repo = Repo::new("pr_rehearse", ("002_drop_note.sql", DROP_NOTE));
    let copies = || {
        let q = format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_\\_%'", repo.db);
        common::cluster().psql("postgres", &q).unwrap()
    };

    let out = repo.plan_with(&url, &["--rehearse", "--allow-destructive"]).await;
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let body = fake.lock().unwrap().comments[0]["body"].as_str().unwrap().to_string();
    assert!(body.contains("**Rehearsed** on a copy of the job's database: 1 migration(s) up in"), "{body}");
    assert!(
        body.contains("the revert does NOT bring everything back") && body.contains("rows of public.orders"),
        "{body}"
    );
    assert!(stdout.contains("rehearsed: 1 migration(s) up in"), "{stdout}");
    repo.nothing_changed();
    assert_eq!(copies(), "0", "a copy of the job's database was left behind");

    // A migration that fails on the copy: the check fails, saying how.
    std::fs::write(
        repo.path("db/migrations/002_drop_note.sql"),
        "-- migrate:up\nALTER TABLE ordres ADD COLUMN x int;\n-- migrate:down\nSELECT 1;\n",
    )
    .unwrap();
    let out = repo.plan_with(&url, &["--rehearse"]).await;
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("migrations-fail:"), "{stdout}");
    let body = fake.lock().unwrap().comments[0]["body"].as_str().unwrap().to_string();
    assert!(body.contains("the migrations FAILED") && body.contains("\"ordres\" does not exist"), "{body}");
    assert!(outputs(repo.tmp.path()).contains("result=migrations-fail\n"));
    repo.nothing_changed();
    assert_eq!(copies(), "0", "a copy of the job's database was left behind");
}
