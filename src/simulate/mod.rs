//! `simulate`: the rehearsal drill. Each scenario deploys a release of a sample app against a
//! throwaway PostgreSQL with the real engine, then checks it ended as it must with the data
//! intact (row counts and content checksums of the pre-deploy columns, schema fingerprint,
//! migration table, running tag).

pub mod sandbox;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::commands::deploy::DeployArgs;
use crate::config::Config;
use crate::exec::Local;
use crate::guard::{DbPath, End};
use crate::model::{DbNames, Sha};
use crate::world::World;
use sandbox::Cluster;

/// One failure to rehearse and how it must end.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Release deployed over v1.
    pub release: &'static str,
    pub expect_end: End,
    pub expect_path: DbPath,
    /// Rows the app writes after the backup that the restore must find: (inserted, updated,
    /// deleted); the replay file must then bring the database to what the app had written.
    pub lost_writes: Option<(u64, u64, u64)>,
    /// Runs with `rollback.additive: keep`: the new schema and what the app wrote into it stay.
    pub keep_additive: bool,
    /// Runs with `deploy.rehearse: true`.
    pub rehearse: bool,
    /// What is already wrong on the stage when the deploy starts.
    pub staged: Staged,
}

/// What is already wrong on a stage when the deploy under test starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staged {
    /// v1 runs, its migrations applied, nothing wrong.
    Clean,
    /// `database.bin_dir` holds a `pg_dump` that loses its connection part-way.
    CrashingPgDump,
    /// An earlier run of the migrations (release [`DIRTY_RELEASE`], by hand, outside
    /// deploy-guard) stopped part-way through a migration that cannot run in a transaction: one
    /// index built, the next left invalid, the tool's `dirty` flag set on its version.
    DirtyMigration,
}

/// The release whose migration run stopped part-way before a `dirty-state` deploy.
pub const DIRTY_RELEASE: &str = "v2-indexes";

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "happy",
        about: "a nullable column and an index: deployed",
        release: "v2",
        expect_end: End::Deployed,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "migration-fails",
        about: "NOT NULL column on a table with rows: the migration's transaction rolls back, nothing to revert",
        release: "v2-notnull",
        expect_end: End::RolledBack,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "unhealthy-after-migrate",
        about: "migration applies, the new app never gets healthy: revert works",
        release: "v2-crash",
        expect_end: End::RolledBack,
        expect_path: DbPath::Revert,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "bad-down",
        about: "the down() migration errors: restore the backup",
        release: "v2-bad-down",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "lying-down",
        about: "the down() \"succeeds\" but leaves a column behind: drift detected, restore",
        release: "v2-lying-down",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "destructive-down",
        about: "the migration drops a column holding data, its down() re-adds it empty: restore, data intact",
        release: "v2-drop-note",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "data-rewrite",
        about: "the migration rewrites every email (UPDATE), its down() is a no-op: restore, data intact",
        release: "v2-rewrite-email",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "lost-writes",
        about: "the app writes after the backup, the migration destroys a column: restore, the writes replayed exactly",
        release: "v2-app-writes",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: Some((3, 1, 1)),
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "additive-keep",
        about:
            "rollback.additive: keep; the migration only adds a column the new app fills in: previous tag, column kept",
        release: "v2-additive",
        expect_end: End::RolledBack,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: true,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "rehearsal-catches",
        about: "deploy.rehearse: true; a unique index the real rows break: caught on a copy, production never touched",
        release: "v2-unique-status",
        expect_end: End::Aborted,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: true,
        staged: Staged::Clean,
    },
    Scenario {
        name: "backup-fails",
        about: "pg_dump loses its connection part-way: abort, nothing changed",
        release: "v2",
        expect_end: End::Aborted,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::CrashingPgDump,
    },
    Scenario {
        name: "dirty-state",
        about: "an earlier migration run stopped part-way and left the tool's dirty flag: refused before the backup, \
                the tool's commands named, nothing changed",
        release: "v2",
        expect_end: End::Aborted,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::DirtyMigration,
    },
];

pub fn scenarios_named(name: &str) -> Result<Vec<Scenario>> {
    if name == "all" {
        return Ok(SCENARIOS.to_vec());
    }
    let mut out = Vec::new();
    for n in name.split(',') {
        match SCENARIOS.iter().find(|s| s.name == n.trim()) {
            Some(s) => out.push(*s),
            None => bail!(
                "--scenario {n:?}: unknown; choose from {} or all",
                SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(out)
}

/// How a scenario ended.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub result: String,
    pub path: String,
    pub exit_code: i32,
    /// Seconds from the first rollback step to the end (None: no rollback ran).
    pub recovery_secs: Option<f64>,
    pub duration_secs: f64,
    pub data_intact: bool,
    pub as_expected: bool,
    /// What did not end as it must (empty when as expected).
    pub problems: Vec<String>,
}

const RELEASE_V1: &[(&str, &str)] = &[
    (
        "001_create_customers.up.sql",
        "CREATE TYPE customer_status AS ENUM ('active', 'paused', 'gone');\n\
         CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, \
         status customer_status NOT NULL DEFAULT 'active', created_at timestamptz NOT NULL DEFAULT now());",
    ),
    ("001_create_customers.down.sql", "DROP TABLE customers; DROP TYPE customer_status;"),
    (
        "002_create_orders.up.sql",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), \
         total numeric(10,2) NOT NULL CHECK (total >= 0), note text);\n\
         CREATE INDEX orders_customer_idx ON orders(customer_id);\n\
         CREATE VIEW customer_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;",
    ),
    ("002_create_orders.down.sql", "DROP VIEW customer_totals; DROP TABLE orders;"),
];

const ADD_NICKNAME: &str =
    "ALTER TABLE customers ADD COLUMN nickname text;\nCREATE INDEX customers_nickname_idx ON customers(nickname);";
const DROP_NICKNAME: &str = "DROP INDEX customers_nickname_idx;\nALTER TABLE customers DROP COLUMN nickname;";

/// Migrations of each release beyond v1, and whether the release's app is healthy.
fn release(name: &str) -> (Vec<(&'static str, &'static str)>, bool) {
    let up = "003_add_nickname.up.sql";
    let down = "003_add_nickname.down.sql";
    match name {
        "v2" => (vec![(up, ADD_NICKNAME), (down, DROP_NICKNAME)], true),
        "v2-notnull" => (
            vec![
                ("003_add_loyalty_tier.up.sql", "ALTER TABLE customers ADD COLUMN loyalty_tier int NOT NULL;"),
                ("003_add_loyalty_tier.down.sql", "ALTER TABLE customers DROP COLUMN loyalty_tier;"),
            ],
            true,
        ),
        "v2-crash" => (vec![(up, ADD_NICKNAME), (down, DROP_NICKNAME)], false),
        "v2-bad-down" => (
            vec![
                (up, ADD_NICKNAME),
                (down, "DROP INDEX customers_nickname_idx;\nALTER TABLE customers DROP COLUMN nick_name;"),
            ],
            false,
        ),
        "v2-lying-down" => (vec![(up, ADD_NICKNAME), (down, "DROP INDEX customers_nickname_idx;")], false),
        "v2-drop-note" => (
            vec![
                ("003_drop_order_note.up.sql", "ALTER TABLE orders DROP COLUMN note;"),
                ("003_drop_order_note.down.sql", "ALTER TABLE orders ADD COLUMN note text;"),
            ],
            false,
        ),
        "v2-additive" => (vec![(up, ADD_NICKNAME), (down, DROP_NICKNAME)], false),
        "v2-unique-status" => (
            vec![
                ("003_one_per_status.up.sql", "CREATE UNIQUE INDEX customers_status_key ON customers (status);"),
                ("003_one_per_status.down.sql", "DROP INDEX customers_status_key;"),
            ],
            true,
        ),
        "v2-app-writes" => (
            vec![
                ("003_drop_order_note.up.sql", "ALTER TABLE orders DROP COLUMN note;"),
                ("003_drop_order_note.down.sql", "ALTER TABLE orders ADD COLUMN note text;"),
            ],
            false,
        ),
        // No transaction (CREATE INDEX CONCURRENTLY cannot run in one): the first index is
        // built, the unique one fails on the rows and is left INVALID, the version dirty.
        DIRTY_RELEASE => (
            vec![
                (
                    "003_customer_indexes.up.sql",
                    "-- no-transaction\nCREATE INDEX CONCURRENTLY customers_name_idx ON customers (name);\n\
                     CREATE UNIQUE INDEX CONCURRENTLY customers_status_key ON customers (status);",
                ),
                (
                    "003_customer_indexes.down.sql",
                    "DROP INDEX IF EXISTS customers_status_key;\nDROP INDEX IF EXISTS customers_name_idx;",
                ),
            ],
            true,
        ),
        "v2-rewrite-email" => (
            vec![
                ("003_upper_emails.up.sql", "UPDATE customers SET email = upper(email);"),
                ("003_upper_emails.down.sql", "SELECT 1;"),
            ],
            false,
        ),
        _ => (vec![], true),
    }
}

/// What a release's app writes when it starts (signups, an edit, a cancellation).
fn app_writes(release: &str) -> Option<&'static str> {
    if release == "v2-additive" {
        return Some("UPDATE customers SET nickname = 'Zo' WHERE id = 5;");
    }
    (release == "v2-app-writes").then_some(
        "INSERT INTO customers (name, email) VALUES ('Neu 1', 'n1@example.org'), ('Neu 2', 'n2@example.org'), \
         ('Neu 3', 'n3@example.org');\n\
         UPDATE customers SET name = 'Zoë (renamed)' WHERE id = 5;\n\
         DELETE FROM orders WHERE id = 6000;",
    )
}

const SEED: &str = "INSERT INTO customers (name, email, status) \
    SELECT (ARRAY['Zoë','José','Łukasz','李雷','Ana'])[1 + i % 5] || ' ' || i, 'c' || i || '@example.org', \
           (ARRAY['active','paused','gone']::customer_status[])[1 + i % 3] \
    FROM generate_series(1, 2000) i;\n\
    INSERT INTO orders (customer_id, total, note) \
    SELECT 1 + i % 2000, (i % 997) / 7.0, CASE WHEN i % 4 = 0 THEN NULL ELSE 'order ' || i END \
    FROM generate_series(1, 6000) i;";

/// A staged sample app: its own database (v1 applied, seeded, running), app directory with the
/// releases, and backup store. Tests use it too.
pub struct Stage {
    pub dir: PathBuf,
    pub db: String,
    /// Directory `database.bin_dir` points at (a crashing pg_dump for `backup-fails`).
    pub bin_dir: PathBuf,
    pub port: u16,
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

impl Stage {
    /// Stages database `db` and `dir/app` with releases v1 and each of `releases`, and what is
    /// `staged` as already wrong.
    pub fn new(cluster: &Cluster, dir: &Path, db: &str, releases: &[&str], staged: Staged) -> Result<Stage> {
        let app = dir.join("app");
        std::fs::create_dir_all(app.join("state"))?;
        write_exec(&app.join("app.sh"), include_str!("files/app.sh"))?;
        write_exec(&app.join("migrate.sh"), include_str!("files/migrate.sh"))?;
        if !cluster.database_exists(db)? {
            cluster.create_database(db)?;
        }
        std::fs::write(
            app.join("env.sh"),
            format!(
                "export PGHOST=127.0.0.1 PGPORT={} PGUSER=postgres PGDATABASE=${{PGDATABASE:-{db}}}\nexport PATH={}:$PATH\n",
                cluster.port,
                crate::exec::quote(&cluster.bin_dir.display().to_string())
            ),
        )?;
        let earlier = (staged == Staged::DirtyMigration).then_some(DIRTY_RELEASE);
        for name in std::iter::once("v1").chain(releases.iter().copied()).chain(earlier) {
            let (migrations, healthy) = release(name);
            let mdir = app.join("releases").join(name).join("migrations");
            std::fs::create_dir_all(&mdir)?;
            for (f, sql) in RELEASE_V1.iter().chain(migrations.iter()) {
                std::fs::write(mdir.join(f), sql)?;
            }
            if healthy {
                std::fs::write(app.join("releases").join(name).join("healthy"), "")?;
            }
            if let Some(sql) = app_writes(name) {
                std::fs::write(app.join("releases").join(name).join("writes.sql"), sql)?;
            }
        }
        let sh = |args: &[&str]| -> Result<()> {
            let out = std::process::Command::new("sh").args(args).output()?;
            if !out.status.success() {
                bail!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        let migrate = app.join("migrate.sh").display().to_string();
        sh(&[&migrate, "up", "v1"])?;
        cluster.psql(db, SEED)?;
        sh(&[&app.join("app.sh").display().to_string(), "deploy", "v1"])?;
        if let Some(release) = earlier {
            let out = std::process::Command::new(&migrate).args(["up", release]).output()?;
            let said = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !said.contains("is dirty") {
                bail!("staging the dirty state: migrate.sh up {release} must stop part-way, it said: {said}");
            }
        }
        let bin_dir = if staged == Staged::CrashingPgDump {
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin)?;
            let real = cluster.bin_dir.display().to_string();
            write_exec(&bin.join("pg_dump"), &include_str!("files/pg_dump_crash.sh").replace("@REAL_BIN@", &real))?;
            std::os::unix::fs::symlink(cluster.bin_dir.join("psql"), bin.join("psql"))?;
            bin
        } else {
            cluster.bin_dir.clone()
        };
        Ok(Stage { dir: dir.to_path_buf(), db: db.to_string(), bin_dir, port: cluster.port })
    }

    pub fn app_dir(&self) -> PathBuf {
        self.dir.join("app")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("backups")
    }

    /// The deploy-guard.yml for this stage.
    pub fn config_yaml(&self, project: &str) -> String {
        include_str!("files/simulate.yml")
            .replace("@PROJECT@", project)
            .replace("@APP@", &self.app_dir().display().to_string())
            .replace("@PORT@", &self.port.to_string())
            .replace("@DB@", &self.db)
            .replace("@BIN@", &self.bin_dir.display().to_string())
            .replace("@STORE@", &self.store_dir().display().to_string())
    }
}

/// What "the data" is: per table, row count and a checksum of the columns it had before.
struct Snapshot {
    tables: BTreeMap<String, (i64, String)>,
    columns: BTreeMap<String, Vec<String>>,
}

async fn snapshot(w: &World, columns: Option<&BTreeMap<String, Vec<String>>>) -> Result<Snapshot> {
    let db = &w.db;
    let columns = match columns {
        Some(c) => c.clone(),
        None => {
            let v = db
                .query_json(
                    &db.name,
                    "SELECT json_object_agg(t, cols) FROM (SELECT table_name AS t, json_agg(column_name ORDER BY ordinal_position) AS cols \
                     FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('customers','orders') GROUP BY table_name) x;",
                )
                .await?;
            serde_json::from_value(v)?
        }
    };
    let mut tables = BTreeMap::new();
    for (t, cols) in &columns {
        let row = format!("ROW({})", cols.iter().map(|c| crate::db::ident(c)).collect::<Vec<_>>().join(","));
        let sql = format!(
            "SELECT json_build_array(count(*), md5(coalesce(string_agg({row}::text, E'\\n' ORDER BY {row}::text), ''))) FROM {};",
            crate::db::ident(t)
        );
        tables.insert(t.clone(), serde_json::from_value(db.query_json(&db.name, &sql).await?)?);
    }
    Ok(Snapshot { tables, columns })
}

async fn run_one(cluster: &Cluster, root: &Path, s: &Scenario, base: Option<&Config>) -> Result<ScenarioResult> {
    let db = format!("shop_{}", s.name.replace('-', "_"));
    let st = Stage::new(cluster, &root.join(s.name), &db, &[s.release], s.staged)?;
    let mut config = Config::from_yaml(&st.config_yaml(&format!("simulate-{}", s.name)), &[])?;
    if s.keep_additive {
        config.rollback.additive = crate::config::Additive::Keep;
    }
    config.deploy.rehearse = s.rehearse;
    let mut s3_prefix = None;
    if let Some(b) = base {
        config.backup.compression = b.backup.compression;
        // A drill with an S3 store rehearses against it, each scenario under its own prefix
        // (removed afterwards).
        if let crate::store::StoreUrl::S3 { bucket, prefix } = crate::store::StoreUrl::parse(&b.backup.store)? {
            let sub = format!("deploy-guard-simulate-{}-{}", std::process::id(), s.name);
            let prefix = if prefix.is_empty() { sub } else { format!("{prefix}/{sub}") };
            config.backup = b.backup.clone();
            config.backup.store = format!("s3://{bucket}/{prefix}");
            s3_prefix = Some(prefix);
        }
    }
    let w = World::with_executor(config, Arc::new(Local)).await?;
    let table = w.migrator.table.clone().context("no table")?;
    let before = snapshot(&w, None).await?;
    let rows_before = w.db.migration_rows(&w.db.name, &table, "version").await?;
    let fp_before = w.db.fingerprint(&w.db.name).await?;
    let sha = {
        use sha2::Digest;
        Sha::parse(&hex::encode(sha2::Sha256::digest(s.name.as_bytes()))[..40])?
    };
    let started = Instant::now();
    let args = DeployArgs {
        sha: &sha,
        tag: s.release,
        previous_tag: None,
        fallback_previous_tag: None,
        config_arg: "",
        allow_destructive: false,
    };
    let report = crate::commands::deploy::deploy(&w, &args).await;
    let duration_secs = started.elapsed().as_secs_f64();

    let mut problems = Vec::new();
    if report.outcome.end() != s.expect_end || report.outcome.path() != s.expect_path {
        problems.push(format!(
            "ended {} via {}, must end {} via {}: {}",
            report.result,
            report.path,
            s.expect_end.title(),
            s.expect_path.name(),
            report.headline
        ));
    }
    let after = snapshot(&w, Some(&before.columns)).await?;
    let data_intact = after.tables == before.tables;
    if !data_intact {
        problems.push(format!("data changed: before {:?}, after {:?}", before.tables, after.tables));
    }
    let rows_after = w.db.migration_rows(&w.db.name, &table, "version").await?;
    let fp_after = w.db.fingerprint(&w.db.name).await?;
    let tag_after = w.runtime.current_tag().await?.unwrap_or_default();
    if s.expect_end == End::Deployed {
        if tag_after != s.release || rows_after.len() != rows_before.len() + 1 {
            problems.push(format!(
                "expected {} running with one more migration; {tag_after} runs with {} rows",
                s.release,
                rows_after.len()
            ));
        }
    } else {
        if s.keep_additive {
            // The additions stay, with what the new app wrote into them; nothing else changed.
            let diff = fp_before.diff(&fp_after);
            if diff.iter().any(|l| l.starts_with("- ")) || rows_after.len() != rows_before.len() + 1 {
                problems.push(format!("expected only additions kept: {}", diff.join("; ")));
            }
            if w.db.query(&w.db.name, "SELECT nickname FROM customers WHERE id = 5;").await? != "Zo" {
                problems.push("what the new app wrote into the kept column is gone".into());
            }
        } else {
            if fp_after != fp_before {
                problems
                    .push(format!("schema differs from before the deploy: {}", fp_before.diff(&fp_after).join("; ")));
            }
            if rows_after != rows_before {
                problems.push("migration table differs from before the deploy".into());
            }
        }
        if tag_after != "v1" {
            problems.push(format!("{tag_after} runs, v1 must"));
        }
        if w.health.probe_once().await.is_err() {
            problems.push("the app is not healthy after the rollback".into());
        }
    }
    if s.staged == Staged::DirtyMigration {
        // Refused before the backup, naming the tool's commands; the dirty flag left for a person.
        let f = w.migrator.failed.as_ref().context("the sample app's tool has no dirty state")?;
        let at = match &report.outcome {
            crate::guard::Outcome::Aborted { at, .. } => Some(*at),
            _ => None,
        };
        if at != Some(crate::guard::Step::Preflight) {
            problems.push(format!("must be refused at preflight, ended at {at:?}"));
        }
        for c in f.inspect.iter().chain(&f.clear) {
            if !report.headline.contains(c.as_str()) {
                problems.push(format!("the refusal does not name `{c}`: {}", report.headline));
            }
        }
        if w.migrator.failed_state(&w.db, &w.db.name).await?.is_none() {
            problems.push("the dirty flag is gone: the deploy touched the tool's state".into());
        }
    }
    if matches!(
        report.outcome,
        crate::guard::Outcome::Aborted { at: crate::guard::Step::Backup | crate::guard::Step::Preflight, .. }
    ) {
        let objects = w.store.list("").await?;
        if !objects.is_empty() {
            problems.push(format!(
                "a failed backup left objects behind: {:?}",
                objects.iter().map(|o| &o.key).collect::<Vec<_>>()
            ));
        }
    }
    if s.expect_path == DbPath::Restore && !w.db.database_exists(&DbNames::new(&st.db, &sha)?.failed).await? {
        problems.push("the broken database was not kept".into());
    }
    if s.rehearse {
        if report.steps.iter().any(|e| e.step == crate::guard::Step::Migrate) {
            problems.push("the migrations ran on production".into());
        }
        if w.db.database_exists(&DbNames::new(&st.db, &sha)?.rehearse).await? {
            problems.push("the rehearsal copy was left behind".into());
        }
    }
    if let Some(expected) = s.lost_writes {
        if let Err(e) = check_replay(&w, &report, &sha, expected).await {
            problems.push(format!("{e:#}"));
        }
    }
    if s3_prefix.is_some() {
        for o in w.store.list("").await? {
            w.store.delete(&o.key).await?;
        }
    }
    Ok(ScenarioResult {
        scenario: s.name.into(),
        result: report.result.to_string(),
        path: report.path.to_string(),
        exit_code: report.exit_code.code(),
        recovery_secs: report.recovery_secs,
        duration_secs,
        data_intact,
        as_expected: problems.is_empty(),
        problems,
    })
}

/// Runs the scenarios, each on its own database in one throwaway cluster.
pub async fn run(scenarios: &[Scenario], config: Option<&Path>, record: Option<&Path>) -> Result<Vec<ScenarioResult>> {
    let base = match config {
        Some(p) => Some(crate::model::usage(Config::load(Some(p), &[]))?),
        None => None,
    };
    let bin = base.as_ref().and_then(|c| c.database.bin_dir.as_ref()).map(PathBuf::from);
    tracing::info!("starting a throwaway PostgreSQL cluster");
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(bin.as_deref())).await??;
    let root = tempfile::Builder::new().prefix("deploy-guard-simulate-").tempdir()?;
    let mut results = Vec::new();
    for s in scenarios {
        tracing::info!("── scenario {}: {}", s.name, s.about);
        let r = run_one(&cluster, root.path(), s, base.as_ref())
            .await
            .with_context(|| format!("scenario {} could not be run", s.name))?;
        if !r.as_expected {
            tracing::error!("scenario {} did not end as it must: {}", s.name, r.problems.join("; "));
        }
        results.push(r);
    }
    if let Some(path) = record {
        append_record(path, &results)?;
    }
    Ok(results)
}

/// The table `simulate` prints.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:<16} {:>9} {:>9} {:<5} {}\n",
        "SCENARIO", "PATH", "OUTCOME", "RECOVERY", "TOTAL", "DATA", "AS IT MUST"
    );
    for r in results {
        out.push_str(&format!(
            "{:<24} {:<8} {:<16} {:>9} {:>9} {:<5} {}\n",
            r.scenario,
            r.path,
            format!("{} ({})", r.result, r.exit_code),
            r.recovery_secs.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "-".into()),
            format!("{:.1} s", r.duration_secs),
            if r.data_intact { "ok" } else { "LOST" },
            if r.as_expected { "yes".to_string() } else { format!("NO: {}", r.problems.join("; ")) }
        ));
    }
    let bad = results.iter().filter(|r| !r.as_expected).count();
    out.push_str(&if bad == 0 {
        format!("all {} scenarios ended as they must\n", results.len())
    } else {
        format!("{bad} of {} scenarios did NOT end as they must\n", results.len())
    });
    out
}

fn append_record(path: &Path, results: &[ScenarioResult]) -> Result<()> {
    use std::io::Write;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if new {
        writeln!(f, "| date | scenario | path | duration | result |\n|---|---|---|---|---|")?;
    }
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    for r in results {
        writeln!(
            f,
            "| {date} | {} | {} | {:.1} s | {} |",
            r.scenario,
            r.path,
            r.recovery_secs.unwrap_or(r.duration_secs),
            if r.as_expected { format!("ok ({})", r.result) } else { format!("FAILED: {}", r.problems.join("; ")) }
        )?;
    }
    Ok(())
}

/// The restore found exactly the app's writes, and the replay file brings the live database to
/// the rows the app had written (compared with the kept database, column for column).
async fn check_replay(w: &World, report: &crate::report::Report, sha: &Sha, expected: (u64, u64, u64)) -> Result<()> {
    let lost = report.lost_writes.as_ref().context("the restore did not look for lost writes")?;
    let found = lost.tables.iter().fold((0, 0, 0), |a, t| (a.0 + t.inserted, a.1 + t.updated, a.2 + t.deleted));
    if found != expected {
        bail!("the restore found {found:?} lost (inserted, updated, deleted) rows, the app wrote {expected:?}");
    }
    let prefix = crate::model::ShaPrefix::parse(sha.short())?;
    crate::commands::replay::replay(w, &prefix, false).await?;
    let kept = DbNames::new(&w.db.name, sha)?.failed;
    for t in &lost.tables {
        let shape = w.db.loss_shape(&w.db.name, &kept, &t.table).await?;
        let live = w.db.table_sum(&w.db.name, &t.table, &shape.columns).await?;
        let was = w.db.table_sum(&kept, &t.table, &shape.columns).await?;
        if !live.same_rows(&was) {
            bail!("after the replay, {} differs from what the app had written", t.table);
        }
    }
    Ok(())
}
