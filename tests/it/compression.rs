//! Compression where the data is (issue "Recovery time"): over SSH the dump is compressed on the
//! target and a restore decompressed there, so the link carries compressed bytes both ways —
//! counted here by a relay between deploy-guard and a real sshd. A target without `zstd`
//! compresses with `gzip`; pg_dump's own failure still fails the backup; and a backup that is
//! tampered with, truncated or carries a psql meta-command is refused before psql runs, with the
//! live database untouched and no scratch database left.

use crate::common;
use crate::common::tcp_count;

use common::{App, Sshd, SHA};
use tcp_count::CountingRelay;

fn ssh_env(sshd: &Sshd) -> Vec<(&'static str, &str)> {
    vec![("DEPLOY_GUARD_SSH_KEY", sshd.client_key.as_str())]
}

/// The sample app reached over SSH through `port` (the relay's, or the server's own), its
/// backups in a directory on this machine (`store_on: runner`), so every byte of a backup or a
/// restore crosses the link once.
fn app_over(name: &str, sshd: &Sshd, port: u16, store: &std::path::Path) -> App {
    app_over_with(name, sshd, port, store, "runner")
}

fn app_over_with(name: &str, sshd: &Sshd, port: u16, store: &std::path::Path, store_on: &str) -> App {
    let app = App::new(name, &[]);
    let target = sshd
        .target_yaml()
        .replace(&format!("port: {}\n", sshd.port), &format!("port: {port}\n"))
        .replace(&format!("[127.0.0.1]:{} ", sshd.port), &format!("[127.0.0.1]:{port} "));
    app.edit_config(|t| {
        let start = t.find("backup:").expect("a backup section");
        format!("{}backup:\n  store: \"file://{}\"\n  store_on: {store_on}\n{target}", &t[..start], store.display())
    });
    app
}

/// Rows that compress well, as most application data does: about 6 MiB of plain SQL.
fn fill(app: &App) {
    app.psql(
        "CREATE TABLE events AS SELECT i AS id, 'order ' || (i % 1000) || ' shipped to warehouse ' || (i % 7) AS note \
         FROM generate_series(1, 150000) i;",
    );
}

#[tokio::test]
async fn over_ssh_the_link_carries_compressed_bytes_both_ways() {
    let sshd = Sshd::start().unwrap();
    let relay = CountingRelay::start(sshd.port);
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("zst_link", &sshd, relay.port, &store);
    fill(&app);
    let before = common::state(app.db()).await;

    let (_, down0) = relay.counts();
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (_, down1) = relay.counts();
    let files = common::backup_files(&store);
    assert_eq!(files.len(), 1, "{files:?}");
    let data = &files[0];
    assert!(data.to_string_lossy().ends_with(".sql.zst"), "{data:?}");
    let plain = common::unpack(data);
    assert!(plain.contains("-- PostgreSQL database dump complete"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(common::manifest_of(data)).unwrap()).unwrap();
    assert_eq!(m["dump_bytes"].as_u64().unwrap(), plain.len() as u64);
    assert!(m["verified"].as_bool().unwrap());
    let stored = std::fs::metadata(data).unwrap().len();
    // The link carried the compressed object (plus SSH's framing and the small queries), not
    // the plain SQL: the backup's download is a fraction of the dump.
    let down = down1 - down0;
    assert!(plain.len() > 5 << 20, "{} bytes of SQL", plain.len());
    assert!(down < stored + (1 << 20), "{down} bytes came over the link for a {stored}-byte object");
    assert!(down * 4 < plain.len() as u64, "{down} bytes came over the link for {} of SQL", plain.len());

    // Restore: the object crosses compressed and is decompressed on the target.
    app.psql("DELETE FROM events WHERE id % 2 = 0; CREATE TABLE after_backup (x int);");
    let (up2, _) = relay.counts();
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (up3, _) = relay.counts();
    let up = up3 - up2;
    assert!(up < stored + (1 << 20), "{up} bytes went over the link for a {stored}-byte object");
    assert!(up * 4 < plain.len() as u64, "{up} bytes went over the link for {} of SQL", plain.len());
    assert_eq!(common::state(app.db()).await, before, "the restored data is the backup's");
}

#[tokio::test]
async fn a_store_on_the_target_is_written_and_restored_in_place_and_a_changed_object_there_is_refused() {
    let tmp = common::tempdir();
    let disk = tmp.path().join("vps-disk");
    let sshd = Sshd::with_private_dir(&disk).unwrap();
    let relay = CountingRelay::start(sshd.port);
    let store = disk.join("backups");
    let app = app_over_with("zst_inplace", &sshd, relay.port, &store, "target");
    fill(&app);
    let before = common::state(app.db()).await;
    let (up0, down0) = relay.counts();
    let out = app.run_env(&["backup", "--sha", SHA, "--json"], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (up1, down1) = relay.counts();
    let key = common::json(&out)["backup"]["key"].as_str().unwrap().to_string();
    let object = store.join(&key);
    let size: u64 =
        String::from_utf8(sshd.target_command(&format!("wc -c < '{}'", object.display())).output().unwrap().stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert!(size > 200_000, "{size}");
    // Dumped, compressed and written on the target; the written bytes crossed once, as they were
    // written, to be checked here (then hashed there, not read again).
    let (up, down) = (up1 - up0, down1 - down0);
    assert!(up < size / 2, "{up} bytes went up for a {size}-byte object written on the target");
    assert!(down > size && down < size + size / 2, "{down} bytes came down for a {size}-byte object");

    // No write since the backup: what crosses is the restore's alone (finding lost writes reads
    // both copies of every written table through the runner).
    let (up0, down0) = relay.counts();
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (up1, down1) = relay.counts();
    assert_eq!(common::state(app.db()).await, before, "the restored data is the backup's");
    // The object never crossed the link: a few queries' worth of bytes each way.
    assert!(
        up1 - up0 < size / 2 && down1 - down0 < size / 2,
        "{} up, {} down for a {size}-byte object",
        up1 - up0,
        down1 - down0
    );

    // Changed on the target after it was verified: refused before psql runs, nothing touched.
    app.psql("INSERT INTO customers (name) VALUES ('written after the restore');");
    let live = common::state(app.db()).await;
    let flip = format!("printf 'X' | dd of='{}' bs=1 seek=1000 conv=notrunc 2>/dev/null", object.display());
    assert!(sshd.target_command(&flip).status().unwrap().success());
    let err = common::restore_refused(&app, &ssh_env(&sshd), &live).await;
    assert!(err.contains("read back as") && err.contains("is not the verified backup"), "{err}");
}

#[tokio::test]
async fn a_target_without_zstd_compresses_with_gzip_there() {
    let sshd = Sshd::without(&["/usr/bin/zstd"]).unwrap();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("zst_absent", &sshd, sshd.port, &store);
    fill(&app);
    let before = common::state(app.db()).await;

    let out = app.run_env(&["check"], &ssh_env(&sshd));
    let text = common::stdout(&out);
    assert!(text.contains("gzip -6 on the target") && text.contains("has no zstd"), "{text}");
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("the target has no zstd tool: compressing with gzip there"), "{err}");
    let files = common::backup_files(&store);
    assert!(files.len() == 1 && files[0].to_string_lossy().ends_with(".sql.gz"), "{files:?}");
    assert!(common::unpack(&files[0]).contains("-- PostgreSQL database dump complete"));

    app.psql("DROP TABLE events;");
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
}

#[test]
fn pg_dump_failing_on_the_target_fails_the_backup_though_the_compressor_succeeded() {
    let sshd = Sshd::start().unwrap();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("zst_dumpfail", &sshd, sshd.port, &store);
    // A role that may read everything deploy-guard asks, but not one table's rows: pg_dump
    // fails half way, after writing (and zstd compressing) a valid-looking head of the dump.
    let role = format!("{}_ro", app.db());
    app.psql(&format!(
        "CREATE ROLE \"{role}\" LOGIN; GRANT ALL ON SCHEMA public TO \"{role}\"; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{role}\"; \
         CREATE TABLE zz_secret AS SELECT 1 AS x; REVOKE ALL ON zz_secret FROM \"{role}\";"
    ));
    app.edit_config(|t| t.replace("  user: postgres\n", &format!("  user: {role}\n")));
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    let err = common::stderr(&out);
    app.psql(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"));
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("pg_dump failed (exit 1)") && err.contains("permission denied"), "{err}");
    assert!(common::backup_files(&store).is_empty(), "a failed backup was kept");
}

/// Takes a backup over SSH, changes the live database, tampers with the stored object, and
/// checks the restore is refused (exit 3) with the live database as it was and no scratch left.
async fn refused_over_ssh(name: &str, tamper: impl FnOnce(&std::path::Path), message: &str) {
    refused_over_ssh_from(name, "runner", tamper, message).await
}

/// [`refused_over_ssh`] with the store `store_on` the runner or the target.
async fn refused_over_ssh_from(name: &str, store_on: &str, tamper: impl FnOnce(&std::path::Path), message: &str) {
    let sshd = Sshd::start().unwrap();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over_with(name, &sshd, sshd.port, &store, store_on);
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql("INSERT INTO customers (name) VALUES ('written after the backup');");
    let live = common::state(app.db()).await;
    let files = common::backup_files(&store);
    tamper(&files[0]);
    let err = common::restore_refused(&app, &ssh_env(&sshd), &live).await;
    assert!(err.contains(message), "expected {message:?} in {err}");
}

/// With a signed manifest, the pieces' hashes are trusted: an SSH restore checks each piece as it
/// streams to the target's decompressor, one pass. Read without the key, the same manifest is
/// unsigned as far as this run knows, and the object is read back whole here first.
#[tokio::test]
async fn a_signed_manifest_lets_an_ssh_restore_check_each_piece_in_one_pass() {
    let sshd = Sshd::start().unwrap();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("zst_signed", &sshd, sshd.port, &store);
    fill(&app);
    let before = common::state(app.db()).await;
    let mut signed = ssh_env(&sshd);
    signed.push(("DEPLOY_GUARD_MANIFEST_KEY", "0123456789abcdef0123456789abcdef"));
    let out = app.run_env(&["backup", "--sha", SHA], &signed);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql("CREATE TABLE leftovers (x int);");
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], &signed);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);

    let live = before;
    let file = &common::backup_files(&store)[0];
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
    let err = common::restore_refused(&app, &signed, &live).await;
    assert!(err.contains("piece 1 of 1") && err.contains("does not match its SHA-256"), "{err}");
    let err = common::restore_refused(&app, &ssh_env(&sshd), &live).await;
    assert!(err.contains("is not the verified backup; nothing was restored") && !err.contains("piece 1 of 1"), "{err}");
}

#[tokio::test]
async fn a_tampered_object_is_refused_before_the_target_decompresses_it() {
    refused_over_ssh(
        "zst_tamper",
        |f| {
            let mut bytes = std::fs::read(f).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(f, bytes).unwrap();
        },
        "is not the verified backup",
    )
    .await;
}

#[tokio::test]
async fn a_truncated_object_is_refused() {
    refused_over_ssh(
        "zst_trunc",
        |f| {
            let len = std::fs::metadata(f).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(len / 2).unwrap();
        },
        "is not the verified backup",
    )
    .await;
}

#[tokio::test]
async fn a_forged_backup_with_a_meta_command_is_refused_before_psql_on_the_target_sees_it() {
    let tmp = common::tempdir();
    let witness = tmp.path().join("shell-ran");
    let w = witness.clone();
    refused_over_ssh(
        "zst_meta",
        move |f| {
            let mut sql = common::unpack(f);
            let at = sql.find("CREATE TABLE").unwrap();
            sql.insert_str(at, &format!("\\! touch {}\n", w.display()));
            common::forge_backup(f, sql.as_bytes());
        },
        "a psql meta-command outside COPY data",
    )
    .await;
    assert!(!witness.exists(), "the meta-command ran on the target");
}

#[tokio::test]
async fn a_forged_backup_that_fools_a_naive_filter_is_refused_over_ssh_too() {
    let tmp = common::tempdir();
    let witness = tmp.path().join("shell-ran");
    let w = witness.clone();
    refused_over_ssh(
        "zst_dollar",
        move |f| {
            // pg_dump's `\restrict` line out, then a quote that opens where psql's does not.
            let sql: String =
                common::unpack(f).lines().filter(|l| !l.contains("restrict ")).map(|l| format!("{l}\n")).collect();
            let at = sql.find("CREATE TABLE").unwrap();
            let forged = format!("{}SELECT 1$a$ x $a$ \\! touch {}\n{}", &sql[..at], w.display(), &sql[at..]);
            common::forge_backup(f, forged.as_bytes());
        },
        "a dollar sign right after a number",
    )
    .await;
    assert!(!witness.exists(), "the meta-command ran on the target");
}

/// A store on the target is restored in place: the target decompresses it straight into psql and
/// nothing streams through deploy-guard's filter. psql's own restricted mode refuses the forged
/// meta-command there (both shapes: a plain `\\!` and one hidden from a naive filter).
#[tokio::test]
async fn a_forged_backup_in_a_store_on_the_target_runs_nothing_when_restored_in_place() {
    for (name, line) in
        [("zst_inplace_meta", "\\! touch {}\n"), ("zst_inplace_dollar", "SELECT 1$a$ x $a$ \\! touch {}\n")]
    {
        let tmp = common::tempdir();
        let witness = tmp.path().join("shell-ran");
        let w = witness.clone();
        refused_over_ssh_from(
            name,
            "target",
            move |f| {
                let sql: String =
                    common::unpack(f).lines().filter(|l| !l.contains("restrict ")).map(|l| format!("{l}\n")).collect();
                let at = sql.find("CREATE TABLE").unwrap();
                let forged = format!("{}{}{}", &sql[..at], line.replace("{}", &w.display().to_string()), &sql[at..]);
                common::forge_backup(f, forged.as_bytes());
            },
            "backslash commands are restricted",
        )
        .await;
        assert!(!witness.exists(), "{name}: the meta-command ran on the target");
    }
}
