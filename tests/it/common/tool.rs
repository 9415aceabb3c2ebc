//! The drill scenarios for a real migration tool: one test's world is its own database and its
//! own app directory (the tool's config, its installed packages linked from the fixture, and the
//! migrations of the release under test), deployed with the real deploy-guard binary.
//!
//! Every tool gets the same migrations, written in its own format: v1 creates `users` with five
//! rows (non-ASCII names, so a restore that mangles text shows), v2 adds a column and an index.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{cluster, fresh_db, tempdir, SHA};

pub const CREATE_USERS: &str = "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n\
    INSERT INTO users (name) VALUES ('Ana'), ('Zoë'), ('José'), ('Łukasz'), ('李雷');";
pub const DROP_USERS: &str = "DROP TABLE users;";
pub const ADD_NICKNAME: &str =
    "ALTER TABLE users ADD COLUMN nickname text;\nCREATE INDEX users_nickname_idx ON users (nickname);";
pub const DROP_NICKNAME: &str = "DROP INDEX users_nickname_idx;\nALTER TABLE users DROP COLUMN nickname;";
/// Fails on a table with rows: the tool's transaction rolls it back.
pub const ADD_TIER_NOT_NULL: &str = "ALTER TABLE users ADD COLUMN tier int NOT NULL;";
pub const DROP_TIER: &str = "ALTER TABLE users DROP COLUMN tier;";
/// A down migration that errors (the column is misspelt).
pub const BAD_DOWN: &str = "DROP INDEX users_nickname_idx;\nALTER TABLE users DROP COLUMN nick_name;";
/// A down migration that "succeeds" but leaves the column behind.
pub const LYING_DOWN: &str = "DROP INDEX users_nickname_idx;";
pub const USERS: &str = "1=Ana,2=Zoë,3=José,4=Łukasz,5=李雷";

/// One migration of a release, in plain SQL; the tool's `write` puts it in its own format.
pub struct Migration<'a> {
    /// 1-based position.
    pub n: usize,
    pub slug: &'a str,
    pub up: &'a str,
    pub down: &'a str,
}

/// A migration tool under test.
pub struct ToolSpec {
    /// `migrations.tool`.
    pub tool: &'static str,
    /// `tests/fixtures/NAME` whose `node_modules` the app directory links (npm tools).
    pub fixture: Option<&'static str>,
    /// Files of the project (tool config), relative to the app directory.
    pub files: Vec<(&'static str, String)>,
    /// The rest of the `migrations:` section (`dir:`, `config:`), indented by two spaces.
    pub yaml: &'static str,
    /// Writes every migration given, in the tool's format, into the app directory (all of
    /// them: a tool with a journal rewrites it).
    pub write: fn(&Path, &[Migration]),
    /// The tool's own commands to bring the database to v1 (run in the app directory).
    pub setup: &'static str,
    /// SQL that shows the migration table's state, and its value at v1 and v2.
    pub state_sql: &'static str,
    pub state_v1: &'static str,
    pub state_v2: &'static str,
    /// Directories put first on PATH (where the tool's binary is).
    pub path: Vec<PathBuf>,
}

/// The drill scenarios of a tool that reverts: one test each.
#[macro_export]
macro_rules! reverting_tool_scenarios {
    ($spec:expr) => {
        #[test]
        fn happy() {
            common::tool::happy($spec)
        }
        /// The tool's error is quoted (Alembic's: the last line of its traceback).
        #[test]
        fn migration_fails() {
            common::tool::migration_fails($spec)
        }
        #[test]
        fn unhealthy_after_migrate() {
            common::tool::unhealthy_reverts($spec)
        }
        #[test]
        fn bad_down() {
            common::tool::bad_down($spec)
        }
        #[test]
        fn lying_down() {
            common::tool::lying_down($spec)
        }
    };
}

/// The sample app: "deploying" a tag records it; health fails for a tag listed in `broken`.
pub const APP: &str = r#"#!/bin/sh
set -eu
dir=$(dirname "$0")
case "$1" in
  deploy) printf '%s\n' "$2" > "$dir/tag" ;;
  stop) : ;;
  current-tag) cat "$dir/tag" ;;
  status) echo "running $(cat "$dir/tag")" ;;
  logs) echo "started $(cat "$dir/tag")" ;;
  health) if grep -qxF "$(cat "$dir/tag")" "$dir/broken"; then echo "$(cat "$dir/tag") is broken" >&2; exit 1; fi ;;
esac
"#;

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The tools venv of scripts/setup (alembic) and ~/.cargo/bin (sqlx).
pub fn tools_venv_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::var("DG_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(home).join(".cache/deploy-guard/tools"))
        .join("bin")
}

/// Where scripts/setup installs the Go tools (golang-migrate, goose): `DG_GO_DIR`, else
/// ~/.cache/deploy-guard/go.
pub fn go_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::var("DG_GO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(home).join(".cache/deploy-guard/go"))
        .join("bin")
}

pub fn cargo_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::var("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(home).join(".cargo")).join("bin")
}

/// Fails, not skips, when a tool is not installed: a test that silently skips proves nothing.
pub fn require(path: &Path, install: &str) {
    assert!(path.exists(), "{} is not installed: {install} (scripts/setup and scripts/test do it)", path.display());
}

pub struct World {
    pub tmp: tempfile::TempDir,
    pub db: String,
    pub spec: ToolSpec,
}

impl World {
    /// A world at v1, running tag v1; `broken` tags fail their health check.
    pub fn new(spec: ToolSpec, prefix: &str, broken: &[&str]) -> World {
        let db = fresh_db(prefix);
        let w = World { tmp: tempdir(), db, spec };
        let app = w.app();
        std::fs::create_dir_all(&app).unwrap();
        if let Some(f) = w.spec.fixture {
            let modules = fixture_dir(f).join("node_modules");
            require(&modules, &format!("npm ci --prefix tests/fixtures/{f}"));
            std::os::unix::fs::symlink(&modules, app.join("node_modules")).unwrap();
        }
        for (path, text) in &w.spec.files {
            let p = app.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        w.write(&[]);
        let out = w.sh(w.spec.setup);
        assert!(out.status.success(), "{} setup: {}{}", w.spec.tool, super::stdout(&out), super::stderr(&out));
        assert_eq!(w.state(), w.spec.state_v1, "the migration table at v1");
        assert_eq!(w.users(), USERS);

        let sh = app.join("app.sh");
        std::fs::write(&sh, APP).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(app.join("tag"), "v1\n").unwrap();
        std::fs::write(app.join("broken"), broken.iter().map(|t| format!("{t}\n")).collect::<String>()).unwrap();
        let config = format!(
            r#"project: {db}
app:
  runtime: shell
  workdir: "{app}"
  commands:
    deploy: "./app.sh deploy {{tag}}"
    stop: "./app.sh stop"
    current_tag: "./app.sh current-tag"
    status: "./app.sh status"
    logs: "./app.sh logs"
  health:
    command: "./app.sh health"
    timeout: 3s
    interval: 250ms
database:
  host: 127.0.0.1
  port: {port}
  user: postgres
  name: "{db}"
  bin_dir: "{bin}"
migrations:
  tool: {tool}
  timeout: 120s
{yaml}backup:
  store: "file://{store}"
"#,
            db = w.db,
            app = app.display(),
            port = cluster().port,
            bin = cluster().bin_dir.display(),
            tool = w.spec.tool,
            yaml = w.spec.yaml,
            store = w.tmp.path().join("backups").display(),
        );
        std::fs::write(w.config(), config).unwrap();
        w
    }

    pub fn app(&self) -> PathBuf {
        self.tmp.path().join("app")
    }

    pub fn config(&self) -> PathBuf {
        self.tmp.path().join("deploy-guard.yml")
    }

    /// The release's migrations: v1's, then `extra`.
    pub fn write(&self, extra: &[Migration]) {
        let mut all = vec![Migration { n: 1, slug: "create_users", up: CREATE_USERS, down: DROP_USERS }];
        all.extend(extra.iter().map(|m| Migration { ..*m }));
        (self.spec.write)(&self.app(), &all);
    }

    /// The release: v1's migrations and one more.
    pub fn release(&self, slug: &str, up: &str, down: &str) {
        self.write(&[Migration { n: 2, slug, up, down }]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}?sslmode=disable", cluster().port, self.db)
    }

    /// The environment a deploy's tool commands inherit: the database, and the tool on PATH.
    pub fn env(&self, c: &mut Command) {
        let mut path: Vec<PathBuf> = self.spec.path.clone();
        path.push(cluster().bin_dir.clone());
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        c.env("PATH", std::env::join_paths(path).unwrap())
            .env("DATABASE_URL", self.url())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", cluster().port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", &self.db)
            .env_remove("PGPASSWORD");
        for v in ["GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS", "GITHUB_SHA"] {
            c.env_remove(v);
        }
    }

    /// A shell command in the app directory, with the tool's environment.
    pub fn sh(&self, script: &str) -> Output {
        let mut c = Command::new("sh");
        c.args(["-c", script]).current_dir(self.app());
        self.env(&mut c);
        c.output().expect("run sh")
    }

    /// deploy-guard with this world's config.
    pub fn dg(&self, args: &[&str]) -> Output {
        let mut c = Command::new(super::bin());
        c.args(args).arg("--config").arg(self.config());
        self.env(&mut c);
        c.output().expect("run deploy-guard")
    }

    pub fn deploy(&self, tag: &str) -> Output {
        self.dg(&["deploy", "--sha", SHA, "--tag", tag, "--json"])
    }

    pub fn psql(&self, sql: &str) -> String {
        cluster().psql(&self.db, sql).unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn state(&self) -> String {
        self.psql(self.spec.state_sql)
    }

    pub fn users(&self) -> String {
        self.psql("SELECT string_agg(id || '=' || name, ',' ORDER BY id) FROM users")
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.psql(&format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = '{column}'"
        )) == "1"
    }

    /// Backups in the store.
    pub fn backups(&self) -> usize {
        fn count(d: &Path) -> usize {
            std::fs::read_dir(d).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            count(&p)
                        } else {
                            usize::from(super::is_backup_data(&p.to_string_lossy()))
                        }
                    })
                    .sum()
            })
        }
        count(&self.tmp.path().join("backups"))
    }

    pub fn tag(&self) -> String {
        std::fs::read_to_string(self.app().join("tag")).unwrap().trim().to_string()
    }

    /// How a deploy ended: (exit code, result, path), with its output for failures.
    pub fn ended(&self, out: &Output) -> (Option<i32>, String, String) {
        let r = super::json(out);
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        (out.status.code(), s("result"), s("path"))
    }

    /// The database is back at v1 exactly: rows, data, no v2 column, v1 running.
    pub fn assert_back_at_v1(&self, column: &str) {
        assert_eq!(self.state(), self.spec.state_v1, "the migration table is back at v1");
        assert!(!self.has_column(column), "{column} is gone");
        assert_eq!(self.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_nickname_idx'"), "0");
        assert_eq!(self.users(), USERS);
        assert_eq!(self.tag(), "v1");
    }
}

pub fn explain(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", super::stdout(out), super::stderr(out))
}

/// happy: v2 applies, deployed.
pub fn happy(spec: ToolSpec) {
    let w = World::new(spec, "happy", &[]);
    w.release("add_nickname", ADD_NICKNAME, DROP_NICKNAME);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", explain(&out));
    assert!(w.has_column("nickname"));
    assert_eq!(w.state(), w.spec.state_v2);
    assert_eq!(w.users(), USERS);
    assert_eq!(w.tag(), "v2");
}

/// migration-fails: the tool's transaction rolls back; nothing to revert, v1 redeployed; the
/// tool's error is quoted.
pub fn migration_fails(spec: ToolSpec) {
    migration_fails_saying(spec, "contains null values")
}

/// migration-fails, for a tool that says something else than the database's error.
pub fn migration_fails_saying(spec: ToolSpec, said: &str) {
    let w = World::new(spec, "fails", &[]);
    w.release("add_tier", ADD_TIER_NOT_NULL, DROP_TIER);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "none".into()), "{}", explain(&out));
    w.assert_back_at_v1("tier");
    let r = super::json(&out);
    let migrate = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "migrate").expect("a migrate step");
    let detail = migrate["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(said), "the tool's last words are quoted: {detail}");
    assert!(!detail.contains('\u{1b}'), "no terminal control codes: {detail:?}");
}

/// v2 (with `down` as its down migration) applies, its app never gets healthy: rolled back by
/// `path`, the database exactly at v1 again. Returns the world and the report.
pub fn unhealthy_world(spec: ToolSpec, prefix: &str, down: &str, path: &str) -> (World, serde_json::Value) {
    let w = World::new(spec, prefix, &["v2"]);
    w.release("add_nickname", ADD_NICKNAME, down);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), path.into()), "{}", explain(&out));
    w.assert_back_at_v1("nickname");
    (w, super::json(&out))
}

fn unhealthy(spec: ToolSpec, prefix: &str, down: &str, path: &str) -> serde_json::Value {
    unhealthy_world(spec, prefix, down, path).1
}

/// unhealthy-after-migrate: the tool's revert undoes v2.
pub fn unhealthy_reverts(spec: ToolSpec) {
    unhealthy(spec, "unhealthy", DROP_NICKNAME, "revert");
}

/// A forward-only tool, v2 unhealthy: straight to restore, and the report says why.
pub fn unhealthy_restores(spec: ToolSpec) {
    let r = unhealthy(spec, "fwd_only", DROP_NICKNAME, "restore");
    assert!(!r["steps"].as_array().unwrap().iter().any(|s| s["step"] == "revert"), "no revert was tried: {r:#}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("restoring the pre-deploy backup is the only way back"), "{notes}");
}

/// bad-down: the down migration errors; the backup is restored.
pub fn bad_down(spec: ToolSpec) {
    unhealthy(spec, "bad_down", BAD_DOWN, "restore");
}

/// lying-down: the down migration leaves the column behind; drift is seen, the backup restored.
pub fn lying_down(spec: ToolSpec) {
    unhealthy(spec, "lying_down", LYING_DOWN, "restore");
}

/// `rollback --path revert` on a forward-only tool: bad usage, nothing touched.
pub fn revert_is_bad_usage(spec: ToolSpec) {
    let w = World::new(spec, "fwd_usage", &[]);
    let out = w.dg(&["rollback", "--sha", SHA, "--path", "revert"]);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(super::stderr(&out).contains("cannot revert"), "{}", explain(&out));
    assert_eq!(w.backups(), 0, "nothing was written");
    assert_eq!(w.state(), w.spec.state_v1);
}

/// v2's release is `extra` (a migration without a down among them), and its app never gets
/// healthy: assess knows before any revert that the release cannot be reverted and goes straight
/// to restore, saying which migration has no down. Returns the world and the report.
pub fn forward_only_release_restores(
    spec: ToolSpec,
    prefix: &str,
    extra: &[Migration],
    lacking: &str,
) -> (World, serde_json::Value) {
    let w = World::new(spec, prefix, &["v2"]);
    w.write(extra);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(1), "rolled-back".into(), "restore".into()), "{}", explain(&out));
    w.assert_back_at_v1("nickname");
    let r = super::json(&out);
    let steps = r["steps"].as_array().unwrap();
    assert!(!steps.iter().any(|s| s["step"] == "revert"), "no revert was tried: {r:#}");
    let assess = steps.iter().find(|s| s["step"] == "assess").expect("an assess step");
    let said = assess["detail"].as_str().unwrap_or_default();
    assert!(said.contains(&format!("{lacking} cannot be reverted (no down migration)")), "{said}");
    (w, r)
}

/// A healthy deploy of `extra` (a migration without a down among them), then `rollback --path
/// revert`: refused at once (exit 2) naming `--path restore`, the database and tag as deployed,
/// the deploy still recorded `deployed`, and the next deploy goes ahead.
pub fn revert_of_a_forward_only_release_is_refused(spec: ToolSpec, prefix: &str, extra: &[Migration], lacking: &str) {
    let w = World::new(spec, prefix, &[]);
    w.write(extra);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", explain(&out));
    let deployed = (w.state(), w.has_column("nickname"), w.users(), w.tag());
    let out = w.dg(&["rollback", "--sha", &SHA[..7], "--path", "revert"]);
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    let said = super::stderr(&out);
    assert!(said.contains(lacking) && said.contains("--path restore"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!((w.state(), w.has_column("nickname"), w.users(), w.tag()), deployed, "nothing changed");
    let listed = super::json(&w.dg(&["backups", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
    assert_eq!(listed[0]["outcome"], "deployed", "{listed:#}");
    // The pipeline is not blocked: the next deploy is not refused as half rolled back.
    let out = w.dg(&["deploy", "--sha", "1111111111111111111111111111111111111111", "--tag", "v3", "--json"]);
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", explain(&out));
    assert_eq!(w.tag(), "v3");
}

/// A failed or dirty state refuses the deploy before anything changes (exit 4), naming the
/// tool's commands; `check` reports it too.
pub fn dirty_refuses_deploy(w: &World, expect_in_message: &str) {
    let before = (w.state(), w.has_column("nickname"));
    w.release("add_nickname", ADD_NICKNAME, DROP_NICKNAME);
    let out = w.deploy("v2");
    assert_eq!(out.status.code(), Some(4), "{}", explain(&out));
    let text = format!("{}{}", super::stdout(&out), super::stderr(&out));
    assert!(text.contains("failed or dirty"), "{text}");
    assert!(text.contains(expect_in_message), "expected {expect_in_message:?} in {text}");
    assert_eq!((w.state(), w.has_column("nickname")), before, "nothing changed");
    assert_eq!(w.tag(), "v1");
    let check = w.dg(&["check"]);
    assert_ne!(check.status.code(), Some(0), "{}", explain(&check));
    assert!(super::stdout(&check).contains("tool state"), "{}", explain(&check));
}

/// A file the tool needs (its config, its migrations directory) that is not there: exit 2 from
/// check and from deploy, naming the setting, before the backup.
pub fn missing_file_is_bad_config(w: &World, edit: (&str, &str), key: &str) {
    let text = std::fs::read_to_string(w.config()).unwrap();
    assert!(text.contains(edit.0), "{text}");
    std::fs::write(w.config(), text.replace(edit.0, edit.1)).unwrap();
    for args in [&["check"][..], &["deploy", "--sha", SHA, "--tag", "v2"][..]] {
        let out = w.dg(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", explain(&out));
        let said = format!("{}{}", super::stdout(&out), super::stderr(&out));
        assert!(said.contains(key), "{args:?} names {key}: {said}");
    }
    assert_eq!(w.backups(), 0, "no backup was taken");
    assert_eq!(w.state(), w.spec.state_v1);
    assert_eq!(w.tag(), "v1");
}

/// The deploy classifies the release's pending up SQL and nothing else: under
/// `rollback.destructive: refuse`, an `UPDATE` in a migration applied before the deploy and a
/// `DROP COLUMN` in the down of a pending one do not stop it; a pending `DROP COLUMN` does, before
/// the backup (exit 4).
pub fn classifies_only_pending_ups(spec: ToolSpec) {
    let w = World::new(spec, "classify", &[]);
    let text = std::fs::read_to_string(w.config()).unwrap();
    std::fs::write(w.config(), format!("{text}rollback:\n  destructive: refuse\n")).unwrap();
    let touch = Migration { n: 2, slug: "touch_names", up: "UPDATE users SET name = name;", down: "SELECT 1;" };
    w.write(&[Migration { ..touch }]);
    let out = w.sh(w.spec.setup);
    assert!(out.status.success(), "{}", explain(&out));
    let applied = w.state();

    let drop = Migration { n: 3, slug: "drop_name", up: "ALTER TABLE users DROP COLUMN name;", down: DROP_USERS };
    w.write(&[Migration { ..touch }, drop]);
    let out = w.deploy("v2");
    assert_eq!(out.status.code(), Some(4), "{}", explain(&out));
    let r = super::json(&out);
    let classify = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "classify").expect("a classify step");
    let said = classify["detail"].as_str().unwrap_or_default();
    assert!(said.contains("drop-column") && !said.contains("UPDATE"), "{said}");
    assert_eq!((w.state(), w.backups(), w.users(), w.tag()), (applied.clone(), 0, USERS.to_string(), "v1".into()));

    w.write(&[touch, Migration { n: 3, slug: "add_nickname", up: ADD_NICKNAME, down: DROP_NICKNAME }]);
    let out = w.deploy("v2");
    assert_eq!(w.ended(&out), (Some(0), "deployed".into(), "none".into()), "{}", explain(&out));
    assert!(w.has_column("nickname"));
}
