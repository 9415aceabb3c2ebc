//! The `typeorm` preset against real TypeORM (tests/fixtures/typeorm, from npm): a deploy applies
//! its migration; an unhealthy release is reverted by TypeORM's own `down()`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/typeorm");
    // Fail, not skip: a test that silently skips proves nothing.
    assert!(
        dir.join("node_modules/.bin/typeorm").exists(),
        "TypeORM is not installed for the fixture: run `npm ci --prefix tests/fixtures/typeorm`"
    );
    dir
}

/// One test's world: its own database, with TypeORM migration 1 applied, and its own temp dir
/// holding the sample app (running v1), the config and the backup store.
struct World {
    tmp: tempfile::TempDir,
    db: String,
}

impl World {
    fn new(prefix: &str, broken: &[&str]) -> World {
        World::with_source(prefix, broken, "data-source.js")
    }

    /// With the TypeORM data source `source` (its own migrations directory).
    fn with_source(prefix: &str, broken: &[&str], source: &str) -> World {
        let fixture = fixture();
        let cluster = common::cluster();
        let db = common::fresh_db(prefix);
        let tmp = common::tempdir();
        let w = World { tmp, db };
        // The state before the deploy: migration 1 applied (run both, revert the newest).
        for step in ["migration:run", "migration:revert"] {
            let out = w
                .pg_env(Command::new("npx"))
                // The state before the deploy comes from the first release's data source:
                // CreateUsers applied, its rows in place.
                .args(["--no-install", "typeorm", step, "-d", "data-source.js"])
                .current_dir(&fixture)
                .output()
                .expect("run npx");
            assert!(out.status.success(), "typeorm {step}: {}{}", common::stdout(&out), common::stderr(&out));
        }
        assert_eq!(w.migrations(), "CreateUsers1700000000000");

        let app = w.tmp.path().join("app.sh");
        std::fs::write(&app, common::tool::APP).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(w.tmp.path().join("tag"), "v1\n").unwrap();
        std::fs::write(w.tmp.path().join("broken"), broken.iter().map(|t| format!("{t}\n")).collect::<String>())
            .unwrap();

        let app = app.display();
        let config = format!(
            r#"project: {db}
app:
  runtime: shell
  workdir: "{fixture}"
  commands:
    deploy: "{app} deploy {{tag}}"
    stop: "{app} stop"
    current_tag: "{app} current-tag"
    status: "{app} status"
    logs: "{app} logs"
  health:
    command: "{app} health"
    timeout: 3s
    interval: 250ms
database:
  host: 127.0.0.1
  port: {port}
  user: postgres
  name: "{db}"
  bin_dir: "{bin}"
migrations:
  tool: typeorm
  data_source: {source}
  timeout: 120s
backup:
  store: "file://{store}"
"#,
            db = w.db,
            fixture = fixture.display(),
            port = cluster.port,
            bin = cluster.bin_dir.display(),
            source = source,
            store = w.tmp.path().join("backups").display(),
        );
        std::fs::write(w.tmp.path().join("deploy-guard.yml"), config).unwrap();
        w
    }

    /// The libpq variables data-source.js reads, for this world's database.
    fn pg_env(&self, mut c: Command) -> Command {
        c.env("PGHOST", "127.0.0.1")
            .env("PGPORT", common::cluster().port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", &self.db)
            .env_remove("PGPASSWORD");
        c
    }

    /// `deploy-guard deploy` with the PG* variables in its environment: the migration commands
    /// it starts inherit them (deploy-guard passes connection settings only to its own psql).
    fn deploy(&self, tag: &str) -> Output {
        let mut c = self.pg_env(Command::new(common::bin()));
        c.args(["deploy", "--sha", common::SHA, "--tag", tag, "--json", "--config"])
            .arg(self.tmp.path().join("deploy-guard.yml"));
        for v in ["GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS", "GITHUB_SHA"] {
            c.env_remove(v);
        }
        c.output().expect("run deploy-guard")
    }

    fn psql(&self, sql: &str) -> String {
        common::cluster().psql(&self.db, sql).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// TypeORM's migration table, in order.
    fn migrations(&self) -> String {
        self.psql("SELECT string_agg(name, ',' ORDER BY id) FROM migrations")
    }

    fn users(&self) -> String {
        self.psql("SELECT string_agg(id || '=' || name, ',' ORDER BY id) FROM users")
    }

    fn has_nickname(&self) -> bool {
        let n = self.psql(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'",
        );
        n == "1"
    }

    fn tag(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("tag")).unwrap().trim().to_string()
    }
}

#[test]
fn a_healthy_release_applies_the_typeorm_migration() {
    let w = World::new("typeorm_happy", &[]);
    let out = w.deploy("v2");
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::json(&out)["result"], "deployed");
    assert!(w.has_nickname());
    assert_eq!(w.migrations(), "CreateUsers1700000000000,AddNickname1700000000001");
    assert_eq!(w.tag(), "v2");
}

#[test]
fn an_unhealthy_release_is_reverted_by_typeorm() {
    let w = World::new("typeorm_revert", &["v2"]);
    let users = w.users();
    assert_eq!(users, "1=Ana,2=Zoë,3=José,4=Łukasz,5=李雷");
    let out = w.deploy("v2");
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("revert")), "{r:#}");
    assert_eq!(w.migrations(), "CreateUsers1700000000000");
    assert!(!w.has_nickname());
    assert_eq!(w.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_nickname_idx'"), "0");
    assert_eq!(w.users(), users);
    assert_eq!(w.tag(), "v1");
}

#[test]
fn a_typeorm_migration_that_drops_a_column_with_data_is_restored_not_reverted() {
    // DropBio's down() re-adds the column, empty: TypeORM would call that a successful revert.
    let w = World::with_source("typeorm_drop", &["v2"], "data-source-drop.js");
    let users = w.users();
    let out = w.deploy("v2");
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("restore")), "{r:#}");
    let steps: Vec<&str> = r["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert!(!steps.contains(&"revert"), "{steps:?}");
    assert_eq!(
        r["destroyed"][0], "`DropBio1700000000006` dropped column public.users.name (5 non-null values at the backup)",
        "{r:#}"
    );
    // Every name is back, and TypeORM's table is as before the deploy.
    assert_eq!(w.users(), users);
    assert_eq!(w.migrations(), "CreateUsers1700000000000");
    assert_eq!(w.tag(), "v1");
}
