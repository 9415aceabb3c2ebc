//! The S3 store against a real S3-compatible server (s3s-fs on 127.0.0.1, path-style, signed
//! requests): streaming multipart round trips, failures mid-upload, clear errors, lookup by SHA,
//! retention, and the whole deploy flow restoring from S3.

use crate::common;
use crate::common::s3 as s3server;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{App, SHA};
use deploy_guard::store::{Put, S3Settings, S3Store, Store};
use s3server::{S3Server, BUCKET};
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

fn store(server: &S3Server, prefix: &str, part_size: u64, vars: &[(&str, &str)]) -> Arc<dyn Store> {
    store_with(server, prefix, part_size, vars, false)
}

fn store_with(
    server: &S3Server,
    prefix: &str,
    part_size: u64,
    vars: &[(&str, &str)],
    checksums: bool,
) -> Arc<dyn Store> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Arc::new(
        S3Store::new(
            S3Settings {
                bucket: BUCKET.into(),
                prefix: prefix.into(),
                endpoint: Some(server.endpoint()),
                region: Some("us-east-1".into()),
                path_style: None,
                part_size,
                parts_in_flight: 4,
                sse: None,
                sse_kms_key_id: None,
                checksums,
            },
            &vars,
        )
        .unwrap(),
    )
}

/// Deterministic pseudo-random bytes (incompressible, so nothing can cheat).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An app whose deploy-guard.yml stores backups in `server` under `prefix`.
fn s3_app(name: &str, releases: &[&str], server: &S3Server, extra: &str) -> App {
    let app = App::new(name, releases);
    let backup = format!("{}{extra}", server.backup_yaml(name));
    app.edit_config(|t| {
        let start = t.find("backup:").expect("a backup section");
        format!("{}{backup}", &t[..start])
    });
    app
}

fn run(app: &App, server: &S3Server, args: &[&str]) -> std::process::Output {
    app.run_env(args, &server.env())
}

#[tokio::test]
async fn forty_mib_in_8_mib_parts_round_trips_byte_for_byte() {
    let server = S3Server::start();
    let s = store(&server, "rt/prefix", 8 * MIB, &server.env());
    // Not a multiple of the part size: five full parts and a short last one.
    let body = data(40 * MIB as usize + 12345, 7);
    let mut reader = &body[..];
    let n = s.put("202611/big.sql.gz", &mut reader, Put::New).await.unwrap();
    assert_eq!(n, body.len() as u64);
    // Stored under the URL's prefix, one whole object, no upload left in progress.
    assert_eq!(server.keys(), vec!["rt/prefix/202611/big.sql.gz"]);
    assert_eq!(std::fs::metadata(server.object_path("rt/prefix/202611/big.sql.gz")).unwrap().len(), body.len() as u64);
    assert_eq!(server.pending_uploads(), Vec::<String>::new());
    let back = s.get_bytes("202611/big.sql.gz").await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&back)), hex::encode(Sha256::digest(&body)));
    // Exactly one part's worth goes as a multipart upload of one part; less as one PutObject.
    for (key, len) in [("exact", 8 * MIB as usize), ("small", 1000), ("empty", 0)] {
        let body = data(len, 3);
        s.put(key, &mut &body[..], Put::New).await.unwrap();
        assert_eq!(s.get_bytes(key).await.unwrap(), body, "{key}");
    }
    let listed = s.list("202611/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].key.as_str(), listed[0].size), ("202611/big.sql.gz", body.len() as u64));
    s.delete("202611/big.sql.gz").await.unwrap();
    s.delete("202611/big.sql.gz").await.unwrap(); // deleting what is gone is fine
    assert!(s.list("202611/").await.unwrap().is_empty());
    let err = format!("{:#}", s.get("202611/big.sql.gz").await.err().unwrap());
    assert!(err.contains("no object 202611/big.sql.gz in s3://backups/rt/prefix"), "{err}");
}

/// A new object never replaces one at its key: S3's conditional write, on a single PUT and on
/// CompleteMultipartUpload. The journal's next version of a manifest does replace it.
#[tokio::test]
async fn a_new_object_never_replaces_another_and_the_journal_replaces_its_own() {
    let server = S3Server::start();
    let s = store(&server, "cond", 5 * MIB, &server.env());
    s.put_bytes("a.manifest.json", b"first", Put::New).await.unwrap();
    let err = format!("{:#}", s.put_bytes("a.manifest.json", b"second", Put::New).await.unwrap_err());
    assert!(err.contains("refusing to replace it"), "{err}");
    assert_eq!(s.get_bytes("a.manifest.json").await.unwrap(), b"first");
    s.put_bytes("a.manifest.json", b"journal", Put::Replace).await.unwrap();
    assert_eq!(s.get_bytes("a.manifest.json").await.unwrap(), b"journal");
    let big = data(12 * MIB as usize, 5);
    s.put("b.sql.zst", &mut &big[..], Put::New).await.unwrap();
    let other = data(12 * MIB as usize, 9);
    let err = format!("{:#}", s.put("b.sql.zst", &mut &other[..], Put::New).await.unwrap_err());
    assert!(err.contains("refusing to replace it"), "{err}");
    assert_eq!(s.get_bytes("b.sql.zst").await.unwrap(), big, "the first object is intact");
    assert_eq!(server.pending_uploads(), Vec::<String>::new(), "the refused upload left parts behind");
}

/// With `backup.checksums`, S3's checksum of what it stored vouches for an upload: compared with
/// what was sent, never taken on trust (a stored checksum changed on the server is refused).
/// Where the server keeps none (s3s-fs after a multipart upload), the object is read back.
#[tokio::test]
async fn s3_checksums_vouch_for_what_was_sent_and_a_server_without_them_is_read_back() {
    use base64::Engine;
    let server = S3Server::start();
    let s = store_with(&server, "sums", 5 * MIB, &server.env(), true);
    assert_eq!(s.check().await.unwrap(), "writable; keeps SHA-256 checksums");
    let body = data(MIB as usize, 11);
    s.put("one.sql.zst", &mut &body[..], Put::New).await.unwrap();
    let sha = Sha256::digest(&body);
    assert_eq!(s.digest("one.sql.zst").await.unwrap().unwrap(), (body.len() as u64, hex::encode(sha)));
    // The server checked and kept the checksum that was sent.
    let info_path = server.internal_info_path("sums/one.sql.zst");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    assert_eq!(info["checksum_sha256"], base64::engine::general_purpose::STANDARD.encode(sha));
    // The server's checksum is what is compared with.
    let mut changed = info.clone();
    changed["checksum_sha256"] = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other")).into();
    std::fs::write(&info_path, serde_json::to_vec(&changed).unwrap()).unwrap();
    let err = format!("{:#}", s.digest("one.sql.zst").await.unwrap().unwrap_err());
    assert!(err.contains("S3 holds other bytes at s3://backups/sums/one.sql.zst than were sent"), "{err}");
    // A multipart upload: s3s-fs keeps no checksum of it, so nothing vouches and it is read back.
    let big = data(12 * MIB as usize, 12);
    s.put("big.sql.zst", &mut &big[..], Put::New).await.unwrap();
    assert!(s.digest("big.sql.zst").await.is_none());
    assert_eq!(s.get_bytes("big.sql.zst").await.unwrap(), big);
    // Nothing vouches for what this process did not upload, nor without checksums.
    let plain = store(&server, "sums", 5 * MIB, &server.env());
    assert!(plain.digest("one.sql.zst").await.is_none());
    assert_eq!(plain.check().await.unwrap(), "writable");
}

#[tokio::test]
async fn listing_follows_pagination() {
    let server = S3Server::start();
    let s = store(&server, "many", 8 * MIB, &server.env());
    for i in 0..1005 {
        s.put_bytes(&format!("k/{i:05}"), b"x", Put::New).await.unwrap();
    }
    s.put_bytes("other/x", b"x", Put::New).await.unwrap();
    let listed = s.list("k/").await.unwrap();
    assert_eq!(listed.len(), 1005, "more than one page of 1000");
    assert_eq!(listed[1004].key, "k/01004");
    assert_eq!(s.list("").await.unwrap().len(), 1006);
}

#[tokio::test]
async fn a_failing_body_aborts_the_multipart_upload() {
    struct Failing(usize);
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("pg_dump went away")));
            }
            let n = self.0.min(buf.remaining()).min(64 * 1024);
            buf.put_slice(&vec![7u8; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let server = S3Server::start();
    let s = store(&server, "fail", 5 * MIB, &server.env());
    let err = s.put("x.sql.gz", &mut Failing(17 * MIB as usize), Put::New).await.unwrap_err();
    assert!(format!("{err:#}").contains("pg_dump went away"), "{err:#}");
    assert_eq!(server.keys(), Vec::<String>::new());
    assert_eq!(server.pending_uploads(), Vec::<String>::new(), "parts left behind");
}

#[test]
fn wrong_credentials_missing_bucket_unreachable_endpoint_say_what_to_fix() {
    let mut server = S3Server::start();
    let app = s3_app("s3_errors", &["v2"], &server, "");
    let before = app.psql("SELECT count(*) FROM customers");
    type Case<'a> = (Vec<(&'a str, &'a str)>, Box<dyn Fn(&App)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("AWS_ACCESS_KEY_ID", "AKIANOBODY"), ("AWS_SECRET_ACCESS_KEY", s3server::SECRET_KEY)],
            Box::new(|_| {}),
            "does not know the access key AKIANOBODY: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ),
        (
            vec![("AWS_ACCESS_KEY_ID", s3server::ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", "wrong")],
            Box::new(|_| {}),
            "AWS_SECRET_ACCESS_KEY is not the secret of access key AKIADEPLOYGUARDTEST",
        ),
        (vec![], Box::new(|_| {}), "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"),
        (
            server.env(),
            Box::new(|a: &App| a.edit_config(|t| t.replace("s3://backups/", "s3://no-such-bucket/"))),
            "bucket \"no-such-bucket\" does not exist at http://127.0.0.1:",
        ),
    ];
    for (env, edit, message) in cases {
        let config = std::fs::read_to_string(&app.config).unwrap();
        edit(&app);
        let mut env = env;
        if !env.iter().any(|(k, _)| *k == "AWS_ACCESS_KEY_ID") {
            env.extend([("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")]);
        }
        for args in [&["backup", "--sha", SHA][..], &["check"], &["backups"]] {
            let out = app.run_env(args, &env);
            let err = common::stderr(&out);
            assert_eq!(out.status.code(), Some(3), "{args:?}: {err}\n{}", common::stdout(&out));
            let text = format!("{err}{}", common::stdout(&out));
            assert!(text.contains(message), "{args:?}: expected {message:?} in\n{text}");
        }
        // A deploy aborts (exit 4) before changing anything.
        let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &env);
        assert_eq!(out.status.code(), Some(4), "{}", common::stderr(&out));
        assert!(common::stderr(&out).contains(message), "{}", common::stderr(&out));
        assert_eq!(app.tag(), "v1");
        std::fs::write(&app.config, config).unwrap();
    }
    // The server is gone: the endpoint is unreachable.
    server.stop();
    for args in [&["backup", "--sha", SHA][..], &["check"]] {
        let out = run(&app, &server, args);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{err}");
        let text = format!("{err}{}", common::stdout(&out));
        assert!(
            text.contains(&format!(
                "cannot reach the S3 endpoint http://127.0.0.1:{}: check backup.endpoint",
                server.port
            )),
            "{text}"
        );
    }
    assert_eq!(app.psql("SELECT count(*) FROM customers"), before);
    assert_eq!(app.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"), "001,002");
}

#[test]
fn the_server_stopped_mid_upload_aborts_the_deploy_and_leaves_no_parts() {
    let mut server = S3Server::start();
    // Large enough (and slow enough to compress at level 9) that the upload is still running
    // when the server goes; one part at a time so the first part marks "mid-upload".
    let app = s3_app("s3_midway", &["v2"], &server, "  part_size: 5MiB\n  parts_in_flight: 1\n  compression: 9\n");
    app.psql(
        "CREATE TABLE filler AS SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) || md5((i * 31)::text) AS t \
         FROM generate_series(1, 1000000) i;",
    );
    let mut child = std::process::Command::new(common::bin())
        .args(["deploy", "--sha", SHA, "--tag", "v2", "--json", "--config"])
        .arg(&app.config)
        .envs(server.env())
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    // Wait for the first part to land, then stop the server.
    let start = Instant::now();
    while !server.pending_uploads().iter().any(|f| f.contains(".part-1")) {
        assert!(start.elapsed() < Duration::from_secs(120), "no part was ever uploaded");
        assert!(child.try_wait().unwrap().is_none(), "deploy-guard ended before the upload");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop();
    // The parts fail after their retries; deploy-guard then aborts the upload, retrying until
    // the server is back. Bring it back once it says so.
    loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("deploy-guard never tried to abort the upload");
        if line.contains("aborting the multipart upload") {
            break;
        }
    }
    server.restart();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(4), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "aborted");
    assert!(err.contains("cannot reach the S3 endpoint"), "{err}");
    assert!(err.contains("no parts left"), "{err}");
    assert_eq!(server.pending_uploads(), Vec::<String>::new(), "parts left behind");
    assert!(
        server.keys().iter().all(|k| !k.ends_with(".manifest.json") && !common::is_backup_data(k)),
        "{:?}",
        server.keys()
    );
    // Migrations never ran; the app was never touched.
    assert_eq!(app.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"), "001,002");
    assert_eq!(app.tag(), "v1");
}

#[test]
fn a_failing_migration_restores_from_s3_by_itself_and_restore_finds_7_characters() {
    let server = S3Server::start();
    let app = s3_app("s3_deploy", &["v2"], &server, "  keep: 5\n");
    // A release whose second migration fails after its first was applied: the database has
    // changed, and the strategy says restore.
    let rel = app.stage.app_dir().join("releases/v2-broken/migrations");
    std::fs::create_dir_all(&rel).unwrap();
    for e in std::fs::read_dir(app.stage.app_dir().join("releases/v2/migrations")).unwrap().flatten() {
        std::fs::copy(e.path(), rel.join(e.file_name())).unwrap();
    }
    std::fs::write(rel.join("004_broken.up.sql"), "ALTER TABLE no_such_table ADD COLUMN x int;").unwrap();
    std::fs::write(rel.join("004_broken.down.sql"), "SELECT 1;").unwrap();
    app.edit_config(|t| format!("{t}rollback:\n  strategy: restore\n"));
    let before = tokio::runtime::Runtime::new().unwrap().block_on(common::state(app.db()));

    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2-broken", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("restore")), "{r}");
    assert!(r["backup"]["location"].as_str().unwrap().starts_with("s3://backups/s3_deploy/20"), "{r}");
    assert_eq!(tokio::runtime::Runtime::new().unwrap().block_on(common::state(app.db())), before);
    assert_eq!(app.tag(), "v1");
    // Backup and manifest are in the bucket, under the prefix.
    let keys = server.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("s3_deploy/20") && k.contains("_pre-deploy-0123456-")), "{keys:?}");

    // `backups` lists it; `restore --sha` with 7 characters finds it and restores it.
    let listed = common::json(&run(&app, &server, &["backups", "--json"]));
    assert_eq!((listed[0]["verified"].as_bool(), listed[0]["outcome"].as_str()), (Some(true), Some("rolled-back")));
    app.psql("INSERT INTO customers (name) VALUES ('after the deploy');");
    let out = run(&app, &server, &["restore", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(tokio::runtime::Runtime::new().unwrap().block_on(common::state(app.db())), before);

    // A good deploy then goes through, with S3 as the store.
    let out = run(&app, &server, &["deploy", "--sha", "1111111222222233333334444444555555566666", "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.tag(), "v2");
}

#[test]
fn lookup_by_sha_prefix_on_s3() {
    let server = S3Server::start();
    let app = s3_app("s3_lookup", &[], &server, "");
    let other = "0123999999999999999999999999999999999999";
    for sha in [SHA, other] {
        let out = run(&app, &server, &["backup", "--sha", sha]);
        assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
        assert!(
            common::stdout(&out).contains("backup verified: s3://backups/s3_lookup/20"),
            "{}",
            common::stdout(&out)
        );
    }
    let table = common::stdout(&run(&app, &server, &["backups"]));
    assert!(table.contains("0123456") && table.contains("0123999") && table.contains("yes"), "{table}");
    let only = common::json(&run(&app, &server, &["backups", "--sha", "0123456", "--json"]));
    assert_eq!(only.as_array().unwrap().len(), 1);
    let ambiguous = run(&app, &server, &["restore", "--sha", "0123"]);
    assert_eq!(ambiguous.status.code(), Some(3));
    assert!(
        common::stderr(&ambiguous).contains("SHA prefix 0123 is ambiguous: it matches 0123456789abcdef"),
        "{}",
        common::stderr(&ambiguous)
    );
    let unknown = run(&app, &server, &["restore", "--sha", "abcdef1"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(
        common::stderr(&unknown).contains("no backup for a deploy of SHA abcdef1 in s3://backups/s3_lookup"),
        "{}",
        common::stderr(&unknown)
    );
    let out = run(&app, &server, &["restore", "--sha", "0123999"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
}

/// What is left in the bucket, by `{sha7}.{extension}` (`…_backup-{sha7}-{nonce}.{extension}`).
fn shas_left(server: &S3Server) -> Vec<String> {
    let mut left: Vec<String> = server
        .keys()
        .iter()
        .map(|k| {
            let named = k.rsplit('_').next().unwrap().split_once('-').unwrap().1;
            format!("{}.{}", &named[..7], named.split_once('.').unwrap().1)
        })
        .collect();
    left.sort();
    left
}

/// Rewrites a manifest stored in the server (created_at, outcome).
fn set_manifest(server: &S3Server, key: &str, created_at: &str, outcome: Option<&str>) {
    let path = server.object_path(key);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["created_at"] = created_at.into();
    // The journal's typed outcome, as deploy-guard writes it.
    m["outcome"] = match outcome {
        Some("rolled-back") => {
            serde_json::json!({"result": "rolled-back", "failed_step": "migrate", "path": "restore"})
        }
        Some(result) => serde_json::json!({ "result": result }),
        None => serde_json::Value::Null,
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn retention_keeps_and_deletes_exactly_what_it_should() {
    let server = S3Server::start();
    let app = s3_app("s3_keep", &[], &server, "");
    let shas = ["aaaaaaa", "bbbbbbb", "ccccccc", "ddddddd", "eeeeeee"].map(|s| format!("{s}{}", &SHA[7..]));
    for sha in &shas {
        let out = run(&app, &server, &["backup", "--sha", sha]);
        assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    }
    let manifests: Vec<String> = server.keys().into_iter().filter(|k| k.ends_with(".manifest.json")).collect();
    let manifest_of = |p: &str| manifests.iter().find(|k| k.contains(&format!("_backup-{p}-"))).unwrap().clone();
    // a oldest … e newest; b belongs to a deploy that never finished; e is not verified.
    set_manifest(&server, &manifest_of("aaaaaaa"), "2020-01-01T00:00:00Z", Some("deployed"));
    set_manifest(&server, &manifest_of("bbbbbbb"), "2020-01-02T00:00:00Z", None);
    set_manifest(&server, &manifest_of("ccccccc"), "2020-01-03T00:00:00Z", Some("rolled-back"));
    set_manifest(&server, &manifest_of("ddddddd"), "2020-01-04T00:00:00Z", Some("backed-up"));
    {
        let path = server.object_path(&manifest_of("eeeeeee"));
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["created_at"] = "2020-01-05T00:00:00Z".into();
        m["verified"] = false.into();
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    let all = server.keys();
    assert_eq!(all.len(), 10);

    // No retention configured: nothing goes.
    let out = run(&app, &server, &["prune"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(common::stderr(&out).contains("no retention configured"), "{}", common::stderr(&out));
    assert_eq!(server.keys(), all);

    // max_age far in the past would take everything: it keeps the newest verified (d) and the
    // unfinished deploy (b). A dry run deletes nothing.
    app.edit_config(|t| format!("{t}  max_age: 30days\n"));
    let out = run(&app, &server, &["prune", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    assert_eq!(text.lines().filter(|l| l.starts_with("would be deleted")).count(), 3, "{text}");
    assert_eq!(server.keys(), all);

    // keep: 1 (with max_age removed): everything but the newest (e, unverified), the newest
    // verified (d) and the unfinished deploy (b).
    app.edit_config(|t| t.replace("  max_age: 30days\n", "  keep: 1\n"));
    let out = run(&app, &server, &["prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("_backup-aaaaaaa-") && text.contains("_backup-ccccccc-"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    let left = shas_left(&server);
    assert_eq!(
        left,
        [
            "bbbbbbb.manifest.json",
            "bbbbbbb.sql.zst",
            "ddddddd.manifest.json",
            "ddddddd.sql.zst",
            "eeeeeee.manifest.json",
            "eeeeeee.sql.zst"
        ]
    );
    let listed = common::json(&run(&app, &server, &["backups", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Retention also runs after a successful backup, and says what it deleted.
    let out = run(&app, &server, &["backup", "--sha", &format!("fffffff{}", &SHA[7..])]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("retention: deleted") && err.contains("_backup-ddddddd-") && err.contains("_backup-eeeeeee-"),
        "{err}"
    );
    let left = shas_left(&server);
    assert_eq!(left, ["bbbbbbb.manifest.json", "bbbbbbb.sql.zst", "fffffff.manifest.json", "fffffff.sql.zst"]);
}

#[test]
fn simulate_scenarios_with_the_s3_store() {
    let server = S3Server::start();
    let app = s3_app("s3_sim", &[], &server, "");
    let out = run(&app, &server, &["simulate", "--json"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let results = common::json(&out);
    assert_eq!(results.as_array().unwrap().len(), deploy_guard::simulate::SCENARIOS.len());
    assert!(results.as_array().unwrap().iter().all(|r| r["as_expected"] == true), "{results}");
    assert!(err.contains("s3://backups/s3_sim/deploy-guard-simulate-"), "{err}");
    // Each scenario cleaned up after itself.
    assert_eq!(server.keys(), Vec::<String>::new());
    assert_eq!(server.pending_uploads(), Vec::<String>::new());
}

#[test]
fn retention_works_the_same_on_a_directory_store() {
    let app = App::new("dir_keep", &[]);
    for p in ["aaaaaaa", "bbbbbbb", "ccccccc"] {
        let out = app.run(&["backup", "--sha", &format!("{p}{}", &SHA[7..])]);
        assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    }
    app.edit_config(|t| format!("{t}  keep: 1\n"));
    let out = app.run(&["prune", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let deleted = common::json(&out);
    let mut shas: Vec<&str> = deleted.as_array().unwrap().iter().map(|d| &d["sha"].as_str().unwrap()[..7]).collect();
    shas.sort();
    assert_eq!(shas, ["aaaaaaa", "bbbbbbb"]);
    let left = common::json(&app.run(&["backups", "--json"]));
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert!(left[0]["sha"].as_str().unwrap().starts_with("ccccccc"));
    let files = std::fs::read_dir(app.stage.store_dir()).unwrap().flatten().count();
    assert_eq!(files, 1, "one month directory");
}

/// A backup in S3 changed after it was written and verified — one flipped bit, a cut-off end —
/// is refused before psql sees a byte of it (each piece checked against the manifest): exit 3,
/// the live database untouched, no scratch left. Unchanged, it restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_in_the_bucket_after_it_was_verified_is_refused() {
    let server = S3Server::start();
    // With S3's checksums: they vouch for the upload, not for what the bucket holds later.
    let app = s3_app("s3_changed", &[], &server, "  checksums: true\n");
    app.psql("CREATE TABLE events AS SELECT i AS id, md5(i::text) AS note FROM generate_series(1, 60000) i;");
    let env = [server.env(), vec![("DEPLOY_GUARD_LOG", "info,deploy_guard=debug")]].concat();
    let out = app.run_env(&["backup", "--sha", SHA, "--json"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("S3's SHA-256 checksum"), "not verified by S3's checksum");
    let key = common::json(&out)["backup"]["key"].as_str().unwrap().to_string();
    // The upload carried the backup's SHA-256, which the server checked and kept.
    let sha = common::json(&out)["backup"]["sha256"].as_str().unwrap().to_string();
    let info = std::fs::read(server.internal_info_path(&format!("s3_changed/{key}"))).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    use base64::Engine;
    assert_eq!(info["checksum_sha256"], base64::engine::general_purpose::STANDARD.encode(hex::decode(&sha).unwrap()));
    let object = server.object_path(&format!("s3_changed/{key}"));
    let good = std::fs::read(&object).unwrap_or_else(|e| panic!("{}: {e}", object.display()));
    app.psql("INSERT INTO customers (name) VALUES ('written after the backup');");
    let live = common::state(app.db()).await;
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    for (what, bytes) in [("one flipped bit", flipped), ("a cut-off end", good[..good.len() - 100].to_vec())] {
        std::fs::write(&object, &bytes).unwrap();
        let err = common::restore_refused(&app, &server.env(), &live).await;
        assert!(err.contains("is not the verified backup"), "{what}: {err}");
    }
    std::fs::write(&object, &good).unwrap();
    let out = run(&app, &server, &["restore", "--sha", &SHA[..7]]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(app.psql("SELECT count(*) FROM customers WHERE name = 'written after the backup'"), "0");
}
