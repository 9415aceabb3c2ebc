//! Backup → restore round trips on a database with many kinds of objects, and restores that
//! must be refused before the live database is touched.

use crate::common;
use common::{App, SHA};

/// Schemas, enums, domains, sequences, views, a materialized view, functions, triggers,
/// indexes, foreign keys, non-ASCII text, NULLs and a 100k-row table.
const RICH: &str = r#"
CREATE SCHEMA billing;
CREATE SCHEMA "Audit Log";
CREATE TYPE billing.currency AS ENUM ('EUR', 'USD', 'JPY');
CREATE DOMAIN billing.positive AS numeric(12,2) CHECK (VALUE >= 0);
CREATE SEQUENCE billing.invoice_no START 1000 INCREMENT 7;
CREATE TABLE billing.invoices (
  id bigint PRIMARY KEY DEFAULT nextval('billing.invoice_no'),
  customer_id int REFERENCES customers(id) ON DELETE SET NULL,
  amount billing.positive NOT NULL,
  currency billing.currency NOT NULL DEFAULT 'EUR',
  memo text,
  meta jsonb,
  issued_at timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'
);
CREATE INDEX invoices_customer_currency ON billing.invoices (customer_id, currency) WHERE memo IS NOT NULL;
CREATE TABLE "Audit Log"."Événements" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text NOT NULL, at timestamptz);
CREATE FUNCTION billing.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO "Audit Log"."Événements"(what, at) VALUES (TG_OP || ' ' || NEW.id, '2026-01-01'); RETURN NEW; END $$;
CREATE TRIGGER invoices_audit AFTER INSERT ON billing.invoices FOR EACH ROW EXECUTE FUNCTION billing.audit();
CREATE VIEW billing.totals AS SELECT currency, sum(amount) AS total FROM billing.invoices GROUP BY currency;
CREATE MATERIALIZED VIEW billing.big_spenders AS SELECT customer_id, sum(amount) s FROM billing.invoices GROUP BY 1 HAVING sum(amount) > 100;
INSERT INTO billing.invoices (customer_id, amount, currency, memo, meta)
SELECT CASE WHEN i % 10 = 0 THEN NULL ELSE 1 + i % 2000 END, (i % 5000) / 3.0,
       (ARRAY['EUR','USD','JPY']::billing.currency[])[1 + i % 3],
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'Rechnung für Zoë — 請求書 №' || i || E'\ttab\nnewline' END,
       CASE WHEN i % 2 = 0 THEN jsonb_build_object('i', i, 'emoji', '🚀') END
FROM generate_series(1, 100000) i;
REFRESH MATERIALIZED VIEW billing.big_spenders;
"#;

/// What a failed migration might leave behind.
const DAMAGE: &str = "ALTER TABLE customers ADD COLUMN loyalty int; DROP VIEW billing.totals; \
    DELETE FROM billing.invoices WHERE id % 2 = 0; CREATE TABLE leftovers (x int);";

#[tokio::test]
async fn round_trip_restores_schema_and_data_exactly() {
    let app = App::new("br_rich", &[]);
    app.psql(RICH);
    let before = common::state(app.db()).await;
    assert!(before.1.get("billing.invoices").map(|v| v.0) == Some(100000), "{:?}", before.1);
    let out = app.run(&["backup", "--sha", SHA]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql(DAMAGE);
    let damaged = common::state(app.db()).await;
    assert_ne!(damaged, before);

    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let after = common::state(app.db()).await;
    assert_eq!(after.0.diff(&before.0), Vec::<String>::new());
    assert_eq!(after, before);
    // The damaged database is kept for forensics, damage and all.
    let kept = format!("{}__failed_{}", app.db(), &SHA[..7]);
    assert_eq!(common::state(&kept).await, damaged);
    // No scratch database is left behind.
    let scratch = format!("{}__restore_{}", app.db(), &SHA[..7]);
    assert!(!common::cluster().database_exists(&scratch).unwrap());
}

/// `backup.compression: gzip` here: compressed in this process, `.sql.gz`, restored exactly.
#[tokio::test]
async fn gzip_backups_are_compressed_in_process_and_round_trip() {
    let app = App::new("br_gzip", &[]);
    app.edit_config(|t| t.replacen("backup:\n", "backup:\n  compression: gzip\n", 1));
    let before = common::state(app.db()).await;
    let out = app.run(&["backup", "--sha", SHA]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("gzip -6 here)"), "{err}");
    assert!(backup_file(&app).to_string_lossy().ends_with(".sql.gz"));
    app.psql("CREATE TABLE leftovers (x int);");
    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
}

/// The default `backup.verify: stored` checks the dump on its way to the store and reads back
/// only the stored bytes; `full` reads the object back whole and decompresses it. Both must
/// record the same: the tables and their columns, the pieces, the sizes — and both backups must
/// restore, and refuse a changed object.
#[tokio::test]
async fn a_dump_checked_on_its_way_records_what_a_full_read_back_records() {
    let app = App::new("br_verify", &[]);
    app.psql(RICH);
    let before = common::state(app.db()).await;
    // Each backup's manifest, its hashes checked against the stored file itself.
    let manifest = |sha: &str| -> serde_json::Value {
        use sha2::{Digest, Sha256};
        let out = app.run(&["backup", "--sha", sha]);
        assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
        let file = common::backup_files(&app.stage.store_dir())
            .into_iter()
            .find(|f| f.to_string_lossy().contains(&sha[..7]))
            .expect("the backup");
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(common::manifest_of(&file)).unwrap()).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(m["size"], bytes.len() as u64);
        assert_eq!(m["sha256"], hex::encode(Sha256::digest(&bytes)));
        let piece = m["chunks"]["piece"].as_u64().expect("pieces recorded") as usize;
        let pieces: Vec<String> = bytes.chunks(piece).map(|p| hex::encode(Sha256::digest(p))).collect();
        assert_eq!(m["chunks"]["sha256"], serde_json::json!(pieces));
        m
    };
    let stored = manifest(SHA);
    app.edit_config(|t| t.replacen("backup:\n", "backup:\n  verify: full\n", 1));
    let other = "1111111111111111111111111111111111111111";
    let full = manifest(other);
    // Two dumps of the same data (pg_dump's random `\restrict` key aside): the same tables and
    // columns, the same length.
    for field in ["tables", "dump_bytes", "verified"] {
        assert_eq!(stored[field], full[field], "{field}");
    }
    assert!(stored["tables"].as_object().is_some_and(|t| t.contains_key("billing.invoices")), "{}", stored["tables"]);
    assert_eq!(stored["verified"], true);

    app.psql(DAMAGE);
    for sha in [SHA, other] {
        let out = app.run(&["restore", "--sha", &sha[..7]]);
        assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
        assert_eq!(common::state(app.db()).await, before);
    }
}

fn backup_file(app: &App) -> std::path::PathBuf {
    common::backup_files(&app.stage.store_dir()).pop().expect("no backup file")
}

/// Restoring a tampered backup must fail (exit 3) with the live database exactly as it was.
async fn refused(app: &App, tamper: impl FnOnce(&std::path::Path), message: &str) {
    assert_eq!(app.run(&["backup", "--sha", SHA]).status.code(), Some(0));
    app.psql("INSERT INTO customers (name) VALUES ('written after the backup');");
    let live = common::state(app.db()).await;
    tamper(&backup_file(app));
    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(message), "expected {message:?} in {err}");
    assert!(err.contains("is untouched"), "{err}");
    assert_eq!(common::state(app.db()).await, live);
    let scratch = format!("{}__restore_{}", app.db(), &SHA[..7]);
    assert!(!common::cluster().database_exists(&scratch).unwrap(), "scratch left behind");
}

#[tokio::test]
async fn a_truncated_backup_is_refused() {
    let app = App::new("br_trunc", &[]);
    refused(
        &app,
        |f| {
            let len = std::fs::metadata(f).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(len / 2).unwrap();
        },
        "is not the verified backup",
    )
    .await;
}

#[tokio::test]
async fn a_corrupted_backup_is_refused() {
    let app = App::new("br_corrupt", &[]);
    refused(
        &app,
        |f| {
            let mut bytes = std::fs::read(f).unwrap();
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 64] {
                *b ^= 0x5a;
            }
            std::fs::write(f, bytes).unwrap();
        },
        "is not the verified backup",
    )
    .await;
}

#[tokio::test]
async fn a_replaced_backup_that_still_decompresses_is_refused() {
    let app = App::new("br_replaced", &[]);
    refused(
        &app,
        |f| {
            std::fs::write(f, common::pack(f, b"DROP TABLE customers CASCADE;\n")).unwrap();
        },
        "is not the verified backup",
    )
    .await;
}

/// A backup of several pieces restores in one pass, each piece checked before psql reads it: a
/// change in the last piece fails the restore after psql took the first ones, and the scratch
/// database that held them is dropped. A manifest written before pieces were recorded restores
/// by checking the whole object first.
#[tokio::test]
async fn a_change_in_a_later_piece_fails_the_one_pass_restore_and_older_manifests_still_restore() {
    let app = App::new("br_pieces", &[]);
    // Hex digests barely compress: about 12 MiB stored, several 2 MiB pieces.
    app.psql(
        "CREATE TABLE digests AS SELECT i, md5(i::text) || md5((i * 7)::text) AS h FROM generate_series(1, 300000) i;",
    );
    let before = common::state(app.db()).await;
    assert_eq!(app.run(&["backup", "--sha", SHA]).status.code(), Some(0));
    let file = backup_file(&app);
    let manifest = common::manifest_of(&file);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let pieces = m["chunks"]["sha256"].as_array().unwrap().len();
    assert!(pieces >= 3, "{pieces} pieces in {}", m["chunks"]);

    app.psql("CREATE TABLE leftovers (x int);");
    let live = common::state(app.db()).await;
    let original = std::fs::read(&file).unwrap();
    let mut changed = original.clone();
    let near_end = changed.len() - 100;
    changed[near_end] ^= 0xff;
    std::fs::write(&file, &changed).unwrap();
    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("piece {pieces} of {pieces}")) && err.contains("is untouched"), "{err}");
    assert_eq!(common::state(app.db()).await, live);
    let scratch = format!("{}__restore_{}", app.db(), &SHA[..7]);
    assert!(!common::cluster().database_exists(&scratch).unwrap(), "scratch left behind");

    // The same backup, its manifest without pieces (as an older deploy-guard wrote it).
    let mut old = m.clone();
    old.as_object_mut().unwrap().remove("chunks");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(3), "the changed object restored: {}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, live);
    std::fs::write(&file, &original).unwrap();
    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
}

#[tokio::test]
async fn the_swap_cuts_off_sessions_still_connected_to_the_live_database() {
    let app = App::new("br_sessions", &[]);
    let before = common::state(app.db()).await;
    assert_eq!(app.run(&["backup", "--sha", SHA]).status.code(), Some(0));
    app.psql("CREATE TABLE leftovers (x int);");
    // An idle session (a connection pool, monitoring, autovacuum) holds the live database.
    let c = common::cluster();
    let mut idle = std::process::Command::new(c.bin_dir.join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-p", &c.port.to_string(), "-d", app.db()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let connected = || {
        c.psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'", app.db())).unwrap()
    };
    for _ in 0..100 {
        if connected() != "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(connected(), "1", "the idle session did not connect");
    let out = app.run(&["restore", "--sha", &SHA[..7]]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("WARNING"), "{err}");
    assert_eq!(common::state(app.db()).await, before);
    let _ = idle.kill();
    let _ = idle.wait();
}

#[tokio::test]
async fn row_sums_are_read_from_the_verified_backup_only_when_asked_and_equal_the_live_tables() {
    use deploy_guard::backup;
    use deploy_guard::store::DirStore;
    let app = App::new("br_sums", &[]);
    // Several 2 MiB pieces, the table after `customers` and `orders` in the dump.
    app.psql(
        "CREATE TABLE digests AS SELECT i, md5(i::text) || md5((i * 7)::text) AS h FROM generate_series(1, 300000) i;",
    );
    assert_eq!(app.run(&["backup", "--sha", SHA]).status.code(), Some(0));
    let store = DirStore::new(app.stage.store_dir());
    let m = deploy_guard::record::list(&store).await.unwrap().manifests.pop().unwrap();
    // Verifying the backup listed every table and summed none.
    assert!(m.data.is_empty(), "{:?}", m.data.keys());
    assert_eq!(m.tables["public.digests"], ["i", "h"]);
    assert!(m.dumped("public.orders") && m.dumped("public.customers"));

    let db = common::postgres(app.db());
    let wanted = ["public.customers".to_string(), "public.orders".to_string(), "public.gone".to_string()];
    let sums = backup::sums(&store, &m.stored(), wanted.into()).await.unwrap();
    assert_eq!(sums.keys().collect::<Vec<_>>(), ["public.customers", "public.orders"]);
    for (t, sum) in &sums {
        let live = db.table_sum(app.db(), t, &sum.columns).await.unwrap();
        assert!(live.same_rows(sum) && live.rows > 0, "{t}: {live:?} vs {sum:?}");
    }
    let digests = backup::sums(&store, &m.stored(), ["public.digests".to_string()].into()).await.unwrap();
    let live = db.table_sum(app.db(), "public.digests", &m.tables["public.digests"]).await.unwrap();
    assert_eq!(digests["public.digests"], live);

    // Another backup's object in its place (whole, valid, of the same codec, one row changed):
    // no sums come from it, whether the pieces or the whole object's hash catch it.
    let file = backup_file(&app);
    app.psql("UPDATE digests SET h = 'changed' WHERE i = 1;");
    let other = "fedcba9876543210fedcba9876543210fedcba98";
    assert_eq!(app.run(&["backup", "--sha", other]).status.code(), Some(0));
    let files = common::backup_files(&app.stage.store_dir());
    let replacement = files.iter().find(|f| f.to_string_lossy().contains(&other[..7])).unwrap();
    std::fs::copy(replacement, &file).unwrap();
    let all: std::collections::BTreeSet<String> = m.tables.keys().cloned().collect();
    let err = backup::sums(&store, &m.stored(), all.clone()).await.unwrap_err();
    assert!(format!("{err:#}").contains("is not the verified backup"), "{err:#}");
    let mut old = m.clone();
    old.chunks = None;
    let err = backup::sums(&store, &old.stored(), all).await.unwrap_err();
    assert!(format!("{err:#}").contains("read back as"), "{err:#}");
}
