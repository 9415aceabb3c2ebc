//! The sample app a scenario deploys: its releases' migrations and what each release's app does,
//! staged with its own database (v1 applied, seeded, running), app directory and backup store.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::sandbox::Cluster;
use super::{Staged, DIRTY_RELEASE};

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
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id) ON DELETE CASCADE, \
         total numeric(10,2) NOT NULL CHECK (total >= 0), note text);\n\
         CREATE INDEX orders_customer_idx ON orders(customer_id);\n\
         CREATE VIEW customer_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id;\n\
         CREATE TABLE activity (at timestamptz NOT NULL, customer_id int, kind text NOT NULL, detail jsonb);",
    ),
    ("002_create_orders.down.sql", "DROP TABLE activity; DROP VIEW customer_totals; DROP TABLE orders;"),
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
        // A rename loses nothing: the same column under a new name, its down renames it back.
        "v2-rename" => (
            vec![
                ("003_rename_name.up.sql", "ALTER TABLE customers RENAME COLUMN name TO full_name;"),
                ("003_rename_name.down.sql", "ALTER TABLE customers RENAME COLUMN full_name TO name;"),
            ],
            false,
        ),
        // Forward-only: no down file at all.
        "v2-no-down" => (vec![(up, ADD_NICKNAME)], false),
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
        // Drops a column and closes the accounts of gone customers: their orders go by cascade.
        "v2-app-writes" => (
            vec![
                (
                    "003_drop_order_note.up.sql",
                    "ALTER TABLE orders DROP COLUMN note;\nDELETE FROM customers WHERE status = 'gone' AND id > 1900;",
                ),
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

/// The release has a migration without a down: no revert may be tried for it.
/// Whether the release's app never gets healthy (the kubernetes drill: its pods never get ready).
pub fn is_unhealthy(name: &str) -> bool {
    !release(name).1
}

pub fn has_no_down(name: &str) -> bool {
    let (files, _) = release(name);
    files.iter().filter_map(|(f, _)| f.strip_suffix(".up.sql")).any(|base| {
        let down = format!("{base}.down.sql");
        !files.iter().any(|(f, _)| *f == down)
    })
}

/// The app's next insert into `table` (one of the sample app's), as it would make it: its ids
/// from their sequences.
pub(super) fn next_insert(table: &str) -> Option<&'static str> {
    match table {
        "public.customers" => Some("INSERT INTO customers (name, email) VALUES ('next', 'next@example.org')"),
        "public.orders" => Some("INSERT INTO orders (customer_id, total) VALUES (1, 1)"),
        "public.activity" => Some("INSERT INTO activity (at, kind) VALUES (now(), 'next')"),
        _ => None,
    }
}

/// What a release's app writes when it starts (signups, an edit, a cancellation).
pub(super) fn app_writes(release: &str) -> Option<&'static str> {
    if release == "v2-additive" {
        return Some("UPDATE customers SET nickname = 'Zo' WHERE id = 5;");
    }
    (release == "v2-app-writes").then_some(
        "INSERT INTO customers (name, email, created_at) VALUES ('Neu 1', 'n1@example.org', '2026-12-06 10:00:00+00'), \
         ('Neu 2', 'n2@example.org', '2026-12-06 10:00:00+00'), ('Neu 3', 'n3@example.org', '2026-12-06 10:00:00+00');\n\
         UPDATE customers SET name = 'Zoë (renamed)' WHERE id = 5;\n\
         DELETE FROM orders WHERE id = 6000;\n\
         INSERT INTO activity VALUES ('2026-12-06 10:00:00+00', 5, 'renamed', '{\"from\": \"Zoë\"}'), \
         ('2026-12-06 10:00:00+00', 5, 'renamed', '{\"from\": \"Zoë\"}');",
    )
}

const SEED: &str = "INSERT INTO customers (name, email, status) \
    SELECT (ARRAY['Zoë','José','Łukasz','李雷','Ana'])[1 + i % 5] || ' ' || i, 'c' || i || '@example.org', \
           (ARRAY['active','paused','gone']::customer_status[])[1 + i % 3] \
    FROM generate_series(1, 2000) i;\n\
    INSERT INTO orders (customer_id, total, note) \
    SELECT 1 + i % 2000, (i % 997) / 7.0, CASE WHEN i % 4 = 0 THEN NULL ELSE 'order ' || i END \
    FROM generate_series(1, 6000) i;\n\
    INSERT INTO activity SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute', 1 + i % 2000, \
           (ARRAY['signup','order','login'])[1 + i % 3], CASE WHEN i % 5 = 0 THEN NULL ELSE jsonb_build_object('n', i % 7) END \
    FROM generate_series(1, 3000) i;";

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
