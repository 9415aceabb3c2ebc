//! `backup.format: directory`: the dump is taken with `pg_dump -Fd -j`, tarred and compressed,
//! verified by reading its TOC and every table's rows back, and restored with `pg_restore -j`
//! into the scratch database — here and over SSH — with the same refusals as the plain format:
//! a changed, truncated or forged object fails the restore, the live database is untouched and
//! no scratch database is left.

use crate::common;

use common::{App, Sshd, SHA};

/// `app` set to take directory-format backups with 2 jobs.
fn directory(app: &App) {
    app.edit_config(|t| t.replacen("backup:\n", "backup:\n  format: directory\n  jobs: 2\n", 1));
}

/// More than one table's worth of work for the jobs: rows, an index, a large object.
fn fill(app: &App) {
    app.psql(
        "CREATE TABLE events AS SELECT i AS id, 'order ' || (i % 1000) || E' shipped\\tto ' || (i % 7) AS note \
         FROM generate_series(1, 50000) i; CREATE INDEX events_note ON events (note); \
         SELECT lo_from_bytea(0, 'a large object');",
    );
}

fn large_objects(app: &App) -> String {
    common::cluster()
        .psql(app.db(), "SELECT string_agg(encode(lo_get(oid), 'escape'), ',') FROM pg_largeobject_metadata")
        .unwrap()
}

fn ssh_env(sshd: &Sshd) -> Vec<(&'static str, &str)> {
    vec![("DEPLOY_GUARD_SSH_KEY", sshd.client_key.as_str())]
}

/// The sample app over SSH, its backups on this machine (`store_on: runner`).
fn app_over(name: &str, sshd: &Sshd, store: &std::path::Path) -> App {
    app_over_with(name, sshd, store, "runner")
}

/// [`app_over`] with its backups `store_on` the runner or the target.
fn app_over_with(name: &str, sshd: &Sshd, store: &std::path::Path, store_on: &str) -> App {
    let app = App::new(name, &[]);
    app.edit_config(|t| {
        let start = t.find("backup:").expect("a backup section");
        format!(
            "{}backup:\n  store: \"file://{}\"\n  store_on: {store_on}\n{}",
            &t[..start],
            store.display(),
            sshd.target_yaml()
        )
    });
    directory(&app);
    app
}

#[tokio::test]
async fn a_directory_backup_is_restored_by_pg_restore_after_its_rows_show_the_revert_cannot_be_trusted() {
    // The release rewrites every email and its down() does nothing: the rollback reads the
    // customers' rows out of the backup's tar, sees they changed, and restores the backup.
    let app = App::new("dir_local", &["v2-rewrite-email"]);
    directory(&app);
    fill(&app);
    let before = common::state(app.db()).await;
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2-rewrite-email", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("restore")), "{r:#}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(large_objects(&app), "a large object");
    let index = "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_note'";
    assert_eq!(common::cluster().psql(app.db(), index).unwrap(), "1");

    let files = common::backup_files(&app.stage.store_dir());
    assert!(files.len() == 1 && files[0].to_string_lossy().ends_with(".dir.tar.zst"), "{files:?}");
    let tar = common::unpack_bytes(&files[0]);
    assert_eq!(&tar[..7], b"toc.dat", "the TOC comes first in the tar");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::manifest_of(&files[0])).unwrap()).unwrap();
    assert_eq!(manifest["dump_bytes"].as_u64(), Some(tar.len() as u64));
    assert_eq!(manifest["tables"]["public.events"], serde_json::json!(["id", "note"]), "{manifest:#}");
    // The customers' row sums, as read from their file in the tar when the rollback compared.
    let customers = &manifest["data"]["public.customers"];
    let live = common::cluster().psql(app.db(), "SELECT count(*) FROM customers").unwrap();
    assert_eq!(customers["rows"].to_string(), live, "{manifest:#}");
}

/// A target whose `/var/tmp`, where the dumps' temporary directories go, is its own.
fn target() -> Sshd {
    Sshd::with_private_dir(std::path::Path::new("/var/tmp")).unwrap()
}

/// What deploy-guard left in the target's `/var/tmp`.
fn left_on(sshd: &Sshd) -> String {
    let out = sshd.target_command("ls -A /var/tmp").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn over_ssh_a_directory_backup_is_dumped_and_restored_on_the_target() {
    let sshd = target();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("dir_ssh", &sshd, &store);
    fill(&app);
    let before = common::state(app.db()).await;
    let out = app.run_env(&["check"], &ssh_env(&sshd));
    let text = common::stdout(&out);
    assert!(text.contains("pg_restore") && text.contains("directory format, zstd -1 on the target"), "{text}");
    let room = text.lines().find(|l| l.contains("temp space")).unwrap_or_default();
    assert!(room.starts_with("ok") && room.contains("free in $TMPDIR"), "{text}");
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql("DELETE FROM events WHERE id % 3 = 0; DROP TABLE customers CASCADE;");
    let out = app.run_env(&["restore", "--sha", &SHA[..7]], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(large_objects(&app), "a large object");
    assert_eq!(left_on(&sshd), "", "the temporary directories are removed");
}

#[tokio::test]
async fn a_changed_or_truncated_directory_backup_is_refused_over_ssh() {
    let sshd = target();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("dir_tamper", &sshd, &store);
    // Rows that do not compress, so that the object is several 2 MiB pieces long.
    app.psql("CREATE TABLE noise AS SELECT md5(i::text) || md5((i * 7)::text) AS x FROM generate_series(1, 150000) i;");
    // Signed: an SSH restore then streams piece by piece, each checked as it goes.
    let mut env = ssh_env(&sshd);
    env.push(("DEPLOY_GUARD_MANIFEST_KEY", "0123456789abcdef0123456789abcdef"));
    let out = app.run_env(&["backup", "--sha", SHA], &env);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql("INSERT INTO customers (name) VALUES ('written after the backup');");
    let live = common::state(app.db()).await;
    let file = common::backup_files(&store).remove(0);
    let good = std::fs::read(&file).unwrap();
    assert!(good.len() > 4 << 20, "{} bytes", good.len());
    let mut bytes = good.clone();
    let late = bytes.len() - 1000;
    bytes[late] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let err = common::restore_refused(&app, &env, &live).await;
    assert!(err.contains("does not match its SHA-256") && !err.contains("piece 1 of"), "{err}");
    // The restore that took the pieces before the changed one was killed on the target: what it
    // unpacked is removed all the same.
    assert_eq!(left_on(&sshd), "");
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let err = common::restore_refused(&app, &env, &live).await;
    assert!(err.contains("is not the verified backup"), "{err}");
    assert_eq!(left_on(&sshd), "");
}

/// Replaces the directory-format backup `file` with its own archive changed by `script` (run in
/// the unpacked directory), toc.dat first again, its manifest rewritten to match (an unsigned
/// store lets whoever can write it do that).
fn forge(file: &std::path::Path, work: &std::path::Path, script: &str) {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work.join("dump")).unwrap();
    std::fs::write(work.join("dump.tar"), common::unpack_bytes(file)).unwrap();
    let script = format!(
        "set -e; tar -x -f dump.tar -C dump; cd dump; {script}; tar -c -f ../forged.tar toc.dat $(ls | grep -v -x toc.dat)"
    );
    let ok = std::process::Command::new("sh").arg("-c").arg(&script).current_dir(work).status().unwrap();
    assert!(ok.success(), "{script}");
    common::forge_backup(file, &std::fs::read(work.join("forged.tar")).unwrap());
}

/// Archives pg_dump did not write — a symbolic link beside the real files, a list of large
/// objects that names a path on the target (pg_restore would load that file into the
/// database) — are refused before tar unpacks them, over SSH and here, and nothing is restored.
#[tokio::test]
async fn forged_archives_are_refused_before_tar_unpacks_them() {
    let cases = [
        ("ln -s /etc zz_link", "only files belong"),
        ("sed -i 's# blob_# ../../../../etc/hostname#' blobs.toc", "blobs.toc lists"),
        ("echo '1 blob_1.dat' >> blobs.toc", "blob_1.dat, named by its TOC, is missing"),
        ("cp blobs.toc blob_7.dat", "blob_7.dat, which no list of large objects names"),
    ];
    let (sshd, app, live, _store) =
        forged_each("dir_forged", "runner", &cases, "not a pg_dump directory archive").await;
    // The last one restored by a run on this machine (a local target): refused as it streams.
    app.edit_config(|t| {
        let start = t.find("target:").expect("a target section");
        t[..start].to_string()
    });
    let err = common::restore_refused(&app, &[], &live).await;
    assert!(err.contains("not a pg_dump directory archive"), "{err}");
    assert_eq!(left_on(&sshd), "");
}

/// Restored in place from a store on the target, the archive never streams through the check
/// here: what tar unpacked is checked there before pg_restore opens it, and a forged link or a
/// list of large objects naming a path on the target is refused; nothing is restored.
#[tokio::test]
async fn forged_archives_in_a_store_on_the_target_are_refused_before_pg_restore_opens_them() {
    let cases = [
        ("ln -s /etc zz_link", "zz_link is not a file pg_dump writes"),
        ("sed -i 's# blob_# ../../../../etc/hostname#' blobs.toc", "names a file pg_dump does not write"),
    ];
    let (sshd, ..) = forged_each("dir_forged_inplace", "target", &cases, "").await;
    assert_eq!(left_on(&sshd), "");
}

/// A directory backup over SSH (its store `store_on` the runner or the target), the live database
/// changed after it, then the backup forged by each `(script, why)` in turn (its unsigned
/// manifest rewritten to match): each restore is refused saying `said` and `why`, nothing touched.
/// (The store is in the returned directory.)
async fn forged_each(
    name: &str,
    store_on: &str,
    cases: &[(&str, &str)],
    said: &str,
) -> (Sshd, App, common::State, tempfile::TempDir) {
    let sshd = target();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over_with(name, &sshd, &store, store_on);
    fill(&app);
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql("INSERT INTO customers (name) VALUES ('written after the backup');");
    let live = common::state(app.db()).await;
    let file = common::backup_files(&store).remove(0);
    let good = std::fs::read(&file).unwrap();
    let manifest = std::fs::read(common::manifest_of(&file)).unwrap();
    let work = tmp.path().join("forge");
    for (script, why) in cases {
        std::fs::write(&file, &good).unwrap();
        std::fs::write(common::manifest_of(&file), &manifest).unwrap();
        forge(&file, &work, script);
        let err = common::restore_refused(&app, &ssh_env(&sshd), &live).await;
        assert!(err.contains(said) && err.contains(why), "{script}: {err}");
    }
    (sshd, app, live, tmp)
}

/// The dump's files go to the target's `/var/tmp`, often the database server's own disk: with too
/// little free there, `check` says so and a backup is refused before pg_dump writes a byte.
#[tokio::test]
async fn a_directory_backup_that_would_fill_the_targets_disk_is_refused_before_it_starts() {
    let sshd = Sshd::with_small_tmp(64 << 20).unwrap();
    let tmp = common::tempdir();
    let store = tmp.path().join("backups");
    let app = app_over("dir_full", &sshd, &store);
    fill(&app);
    let out = app.run_env(&["check"], &ssh_env(&sshd));
    let text = common::stdout(&out);
    assert!(text.contains("FAIL temp space") && text.contains("free in $TMPDIR"), "{text}");
    let out = app.run_env(&["backup", "--sha", SHA], &ssh_env(&sshd));
    let err = common::stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("would write about") && err.contains("use backup.format: plain"), "{err}");
    assert!(common::backup_files(&store).is_empty(), "a refused backup stored something");
    assert_eq!(left_on(&sshd), "");
}

/// The second line holds alone: with the stream's own check out of the way, what tar unpacked
/// is looked at before pg_restore opens any of it: a link, a directory or a file pg_dump does not
/// write is refused and pg_restore never runs; a genuine dump's files pass.
#[tokio::test]
async fn what_tar_unpacked_is_checked_before_pg_restore_opens_it() {
    let source = common::fresh_db("dir_unpacked_src");
    common::cluster().psql(&source, "CREATE TABLE t AS SELECT 1 AS a;").unwrap();
    let tmp = common::tempdir();
    let dump = tmp.path().join("dump");
    let c = common::cluster();
    let out = std::process::Command::new(c.bin_dir.join("pg_dump"))
        .args(["-h", "127.0.0.1", "-U", "postgres", "-Fd", "-Z", "0", "-f"])
        .arg(&dump)
        .args(["-p", &c.port.to_string(), &source])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tar = |extra: &str| {
        let script = format!("cd '{}' && {extra} tar -c -f - *", dump.display());
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let pg = deploy_guard::db::Postgres::new(
        std::sync::Arc::new(deploy_guard::exec::Local),
        Some(c.bin_dir.display().to_string()),
        deploy_guard::db::ConnInfo {
            host: Some("127.0.0.1".into()),
            port: Some(c.port),
            user: Some("postgres".into()),
            ..Default::default()
        },
        source.clone(),
        "postgres".into(),
    );
    let restore = |bytes: Vec<u8>, into: String| {
        let pg = pg.clone();
        async move { pg.restore_format_into(&into, deploy_guard::model::Format::Directory, &mut &bytes[..], false).await }
    };
    for (extra, named) in [
        ("ln -s /etc/hostname 9999.dat &&", "9999.dat"),
        ("mkdir sub && touch sub/x &&", "sub"),
        ("touch notes.txt &&", "notes.txt"),
    ] {
        let into = common::fresh_db("dir_unpacked");
        let bytes = tar(extra);
        let _ = std::process::Command::new("sh")
            .args(["-c", &format!("cd '{}' && rm -rf 9999.dat sub notes.txt", dump.display())])
            .status();
        let err = format!("{:#}", restore(bytes, into.clone()).await.unwrap_err());
        assert!(
            err.contains(&format!("refusing to restore: {named}")) && err.contains("not a file pg_dump writes"),
            "{err}"
        );
        assert_eq!(c.psql(&into, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").unwrap(), "0");
    }
    let into = common::fresh_db("dir_unpacked");
    restore(tar(""), into.clone()).await.unwrap();
    assert_eq!(c.psql(&into, "SELECT a FROM t").unwrap(), "1");
}
