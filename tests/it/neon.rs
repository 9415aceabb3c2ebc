//! `backup.provider: neon`: the drill's scenarios against a local server that implements the
//! endpoints of Neon's API the client calls, checks every request and answer against Neon's
//! published OpenAPI description, and keeps its branches as real databases of the test cluster.

use crate::common;
use common::neon::{Faults, NeonServer, PRIMARY};
use common::{App, SHA};

fn setup(prefix: &str, releases: &[&str]) -> (App, NeonServer) {
    let app = App::new(prefix, releases);
    let server = NeonServer::start(app.db());
    app.edit_config(|c| format!("{c}{}", server.config_lines()));
    (app, server)
}

fn run(app: &App, server: &NeonServer, args: &[&str]) -> std::process::Output {
    app.run_env(args, &[("NEON_API_KEY", &server.key)])
}

fn migrations(app: &App) -> String {
    app.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")
}

fn on_branch(b: &common::neon::Branch, sql: &str) -> String {
    common::cluster().psql(&b.db, sql).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The one manifest in the app's store, as JSON.
fn manifest(app: &App) -> serde_json::Value {
    let found: Vec<_> = common::files_under(&app.stage.store_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    serde_json::from_slice(&std::fs::read(&found[0]).unwrap()).unwrap()
}

fn no_key_in(out: &std::process::Output, server: &NeonServer) {
    let all = format!("{}{}", common::stdout(out), common::stderr(out));
    assert!(!all.contains(&server.key) && !all.contains("npg-test-password"), "a secret was printed:\n{all}");
}

#[tokio::test]
async fn a_deploy_backs_up_by_branch_verified_and_recorded() {
    let (app, server) = setup("neon_happy", &["v2"]);
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::json(&out)["result"], "deployed");
    assert_eq!((app.tag(), migrations(&app)), ("v2".to_string(), "001,002,003".to_string()));
    // The branch holds the database as it was before the migrations: real data, copied then.
    let b = server.branch_named(&format!("deploy-guard/pre-{}-", &SHA[..7])).expect("the pre-deploy branch");
    assert_eq!(b.parent_id.as_deref(), Some(PRIMARY));
    assert_eq!(on_branch(&b, "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"), "001,002");
    assert_eq!(on_branch(&b, "SELECT count(*) FROM customers"), app.psql("SELECT count(*) FROM customers"));
    let m = manifest(&app);
    assert_eq!((m["neon"]["id"].as_str(), m["neon"]["name"].as_str()), (Some(b.id.as_str()), Some(b.name.as_str())));
    assert_eq!(m["neon"]["lsn"].as_str(), b.parent_lsn.as_deref());
    assert!(m["neon"]["lsn"].as_str().is_some_and(|l| l.contains('/')), "{m}");
    assert_eq!(m["verified"], true);
    no_key_in(&out, &server);
    server.assert_all_valid();
    // The operations were polled until they finished.
    assert!(server.seen().iter().any(|s| s.method == "GET" && s.path.contains("/operations/")));
}

#[tokio::test]
async fn a_failed_migration_restores_nothing() {
    let (app, server) = setup("neon_mfail", &["v2-notnull"]);
    let before = common::state(app.db()).await;
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2-notnull", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("none")));
    assert_eq!(common::state(app.db()).await, before);
    assert!(!server.seen().iter().any(|s| s.path.ends_with("/restore")), "no restore was needed");
    server.assert_all_valid();
}

#[tokio::test]
async fn an_unhealthy_release_is_reverted_checked_against_the_branch() {
    let (app, server) = setup("neon_revert", &["v2-crash"]);
    let before = common::state(app.db()).await;
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2-crash", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("revert")));
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    server.assert_all_valid();
}

#[tokio::test]
async fn a_bad_down_restores_by_branch_keeps_the_broken_state_and_finds_the_lost_writes() {
    let (app, server) = setup("neon_restore", &["v2-bad-down"]);
    // The new release writes when it starts: after the backup, lost by the restore.
    std::fs::write(
        app.stage.app_dir().join("releases/v2-bad-down/writes.sql"),
        "INSERT INTO customers (name, email) VALUES ('Late', 'late@example.org');\n\
         INSERT INTO activity VALUES ('2026-12-06 10:00:00+00', 1, 'late', '{}');\n",
    )
    .unwrap();
    let before = common::state(app.db()).await;
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2-bad-down", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!((r["result"].as_str(), r["path"].as_str()), (Some("rolled-back"), Some("restore")), "{r}");
    // The primary (same database name: the same connection string) is the pre-deploy state.
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(app.tag(), "v1");
    // The broken state is kept as a branch, the release's writes in it.
    let kept = server.branch_named(&format!("deploy-guard/failed-{}", &SHA[..7])).expect("the kept branch");
    assert_eq!(on_branch(&kept, "SELECT count(*) FROM schema_migrations"), "3");
    assert_eq!(on_branch(&kept, "SELECT count(*) FROM customers WHERE name = 'Late'"), "1");
    // Lost writes: the kept branch against the restored one.
    let tables = r["lost_writes"]["tables"].as_array().expect("lost writes found");
    let inserted =
        |t: &str| tables.iter().find(|x| x["table"] == t).map(|x| x["inserted"].as_u64().unwrap()).unwrap_or(0);
    assert_eq!((inserted("public.customers"), inserted("public.activity")), (1, 1), "{r}");
    assert!(server
        .seen()
        .iter()
        .any(|s| s.method == "POST" && s.path.ends_with(&format!("/branches/{PRIMARY}/restore"))));
    no_key_in(&out, &server);
    server.assert_all_valid();
    // The replay file puts them back on request.
    let replay = run(&app, &server, &["replay", "--sha", &SHA[..7]]);
    assert_eq!(replay.status.code(), Some(0), "{}", common::stderr(&replay));
    assert_eq!(app.psql("SELECT count(*) FROM customers WHERE name = 'Late'"), "1");
}

#[tokio::test]
async fn a_destructive_migration_is_undone_by_the_branch_with_its_data() {
    let (app, server) = setup("neon_destroy", &["v2-drop-note"]);
    let before = common::state(app.db()).await;
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2-drop-note", "--allow-destructive", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!(r["path"], "restore", "{r}");
    assert_eq!(common::state(app.db()).await, before, "the dropped column's values are back");
    server.assert_all_valid();
}

#[tokio::test]
async fn api_errors_and_rate_limits_are_retried() {
    let (app, server) = setup("neon_retry", &["v2"]);
    server.set_faults(Faults { unavailable: 2, rate_limited: 2, retry_after: 1, ..Faults::default() });
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(&statuses[..4], &[503, 503, 429, 429], "{statuses:?}");
    assert!(server.branch_named("deploy-guard/pre-").is_some());
    server.assert_all_valid();
}

#[tokio::test]
async fn an_operation_that_never_finishes_aborts_before_any_change() {
    let (app, server) = setup("neon_stuck", &["v2"]);
    server.set_faults(Faults { never_finish: true, ..Faults::default() });
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("is still running") && err.contains("operation_timeout"), "{err}");
    assert_eq!((app.tag(), migrations(&app)), ("v1".to_string(), "001,002".to_string()));
    server.assert_all_valid();
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_refused_before_anything_changes() {
    let (app, server) = setup("neon_key", &["v2"]);
    let missing = app.run(&["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(missing.status.code(), Some(2), "{}", common::stderr(&missing));
    assert!(common::stderr(&missing).contains("NEON_API_KEY"), "{}", common::stderr(&missing));
    assert!(server.seen().is_empty(), "no request without a key");
    let wrong = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2"], &[("NEON_API_KEY", "not-the-key")]);
    assert_eq!(wrong.status.code(), Some(4), "{}", common::stderr(&wrong));
    let err = common::stderr(&wrong);
    assert!(err.contains("NEON_API_KEY was refused") && !err.contains("not-the-key"), "{err}");
    assert!(server.seen().iter().all(|s| s.method == "GET"), "{:?}", server.seen());
    assert_eq!((app.tag(), migrations(&app)), ("v1".to_string(), "001,002".to_string()));
    assert_eq!(server.branches().len(), 1, "no branch made");
    server.assert_all_valid();
}

/// The checks are real: what the description forbids is refused and recorded.
#[tokio::test]
async fn the_local_server_refuses_what_the_description_does_not_allow() {
    let db = common::fresh_db("neon_schema");
    let server = NeonServer::start(&db);
    let http = reqwest::Client::new();
    let url = format!("{}/projects/{}", server.url, common::neon::PROJECT);
    let bad_id = http
        .post(format!("{url}/branches"))
        .bearer_auth(&server.key)
        .header("content-type", "application/json")
        .body(r#"{"branch": {"parent_id": "Not An Id", "name": 7}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status().as_u16(), 400);
    let no_db =
        http.get(format!("{url}/connection_uri?role_name=postgres")).bearer_auth(&server.key).send().await.unwrap();
    assert_eq!(no_db.status().as_u16(), 400);
    let v = server.violations().join("\n");
    assert!(v.contains("parent_id") && v.contains("\"Not An Id\""), "{v}");
    assert!(v.contains("7 is not of type \"string\""), "{v}");
    assert!(v.contains("required parameter database_name missing"), "{v}");
    assert_eq!(server.branches().len(), 1, "nothing was made");
    // And an answer missing what the description requires would be caught.
    let e = common::neon::errors_against("Branch", &serde_json::json!({"id": "br-x", "name": "x"})).join("\n");
    assert!(e.contains("\"project_id\" is a required property"), "{e}");
}

#[tokio::test]
async fn a_manual_restore_brings_the_branch_back_and_retention_deletes_old_branches() {
    const SHA2: &str = "fedcba9876543210fedcba9876543210fedcba98";
    let (app, server) = setup("neon_manual", &["v2", "v3"]);
    let check = run(&app, &server, &["check"]);
    assert!(common::stdout(&check).contains("Neon project dg-neon-test"), "{}", common::stdout(&check));
    let before = common::state(app.db()).await;
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let out = run(&app, &server, &["restore", "--sha", &SHA[..7], "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, before, "the database as it was before the deploy");
    let kept = server.branch_named(&format!("deploy-guard/failed-{}", &SHA[..7])).expect("the deployed state kept");
    assert_eq!(on_branch(&kept, "SELECT count(*) FROM schema_migrations"), "3");
    // Retention: keep one; the older pre-deploy branch goes, its database with it.
    app.edit_config(|c| c.replace("backup:\n", "backup:\n  keep: 1\n"));
    let first = server.branch_named(&format!("deploy-guard/pre-{}-", &SHA[..7])).unwrap();
    let out = run(&app, &server, &["deploy", "--sha", SHA2, "--tag", "v3"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let names: Vec<String> = server.branches().into_iter().map(|b| b.name).collect();
    assert!(!names.iter().any(|n| n.starts_with(&format!("deploy-guard/pre-{}", &SHA[..7]))), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with(&format!("deploy-guard/pre-{}", &SHA2[..7]))), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("deploy-guard/failed-")), "a kept broken state stays: {names:?}");
    let gone =
        common::cluster().psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{}'", first.db));
    assert_eq!(gone.unwrap(), "0");
    server.assert_all_valid();
}

#[tokio::test]
async fn a_rehearsal_on_a_branch_catches_a_migration_the_real_rows_break() {
    let (app, server) = setup("neon_rehearse", &["v2-unique-status", "v2"]);
    app.edit_config(|c| format!("{c}deploy:\n  rehearse: true\n"));
    let before = common::state(app.db()).await;
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2-unique-status", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("production was not touched") && err.contains("could not create unique index"), "{err}");
    assert!(!err.contains("it was not run"), "the tool reached the branch: {err}");
    assert_eq!(common::state(app.db()).await, before, "production never touched");
    assert_eq!(app.tag(), "v1");
    let names: Vec<String> = server.branches().into_iter().map(|b| b.name).collect();
    assert!(!names.iter().any(|n| n.starts_with("deploy-guard/rehearse-")), "the copy is deleted: {names:?}");
    assert!(
        server.seen().iter().any(|s| s.method == "DELETE"),
        "the rehearsal branch was deleted through the API: {:?}",
        server.seen()
    );
    // A release whose migrations go up and down cleanly rehearses and deploys.
    const SHA2: &str = "fedcba9876543210fedcba9876543210fedcba98";
    let out = run(&app, &server, &["deploy", "--sha", SHA2, "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert!(r.to_string().contains("brings back the schema, the migration rows and every row"), "{r}");
    assert_eq!(migrations(&app), "001,002,003");
    server.assert_all_valid();
}

#[tokio::test]
async fn the_plan_needs_no_key_and_a_bad_neon_setting_is_refused() {
    let (app, server) = setup("neon_plan", &["v2"]);
    let plan = app.run(&["deploy", "--sha", SHA, "--tag", "v2", "--dry-run"]);
    assert_eq!(plan.status.code(), Some(0), "{}", common::stderr(&plan));
    let text = common::stdout(&plan);
    assert!(text.contains("branch Neon project dg-neon-test") && text.contains("Neon branch restore"), "{text}");
    let runbook = common::stdout(&app.run(&["runbook"]));
    assert!(runbook.contains(&format!("neon branches restore {PRIMARY} ")), "{runbook}");
    app.edit_config(|c| c.replace(PRIMARY, "BR_Primary"));
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("backup.neon.branch_id"), "{}", common::stderr(&out));
    assert!(server.seen().is_empty(), "nothing was asked of the API");
    assert_eq!(migrations(&app), "001,002");
}

/// Over SSH a command's environment travels in its script: the branches, whose role password
/// Neon hands out, are read from this machine instead, and the restore still goes through.
#[tokio::test]
async fn over_ssh_the_branches_are_read_from_the_runner() {
    let sshd = common::Sshd::start().unwrap();
    let (app, server) = setup("neon_ssh", &["v2-bad-down"]);
    app.edit_config(|c| format!("{c}{}", sshd.target_yaml()));
    let before = common::state(app.db()).await;
    let out = app.run_env(
        &["deploy", "--sha", SHA, "--tag", "v2-bad-down", "--json"],
        &[("NEON_API_KEY", &server.key), ("DEPLOY_GUARD_SSH_KEY", &sshd.client_key), ("DEPLOY_GUARD_LOG", "debug")],
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(common::json(&out)["path"], "restore", "{err}");
    assert_eq!(common::state(app.db()).await, before);
    let branch_dbs: Vec<String> = server.branches().into_iter().skip(1).map(|b| b.db).collect();
    let lines: Vec<&str> = err.lines().filter(|l| branch_dbs.iter().any(|db| l.contains(db.as_str()))).collect();
    assert!(lines.iter().any(|l| l.contains("run locally")), "branch queries ran here:\n{err}");
    assert!(!lines.iter().any(|l| l.contains("run on")), "no branch query went to the target:\n{}", lines.join("\n"));
    assert!(!err.contains("npg-test-password") && !err.contains(&server.key), "a secret was logged");
    server.assert_all_valid();
}

/// `backup.copy_to`: after the deploy, a pg_dump of the branch goes offsite as an ordinary
/// backup, which a deploy-guard pointed at that store restores.
#[tokio::test]
async fn the_offsite_copy_is_a_dump_of_the_branch_taken_after_the_deploy() {
    use common::s3::{S3Server, BUCKET};
    let s3 = S3Server::start();
    let (app, server) = setup("neon_copy", &["v2"]);
    let plain = std::fs::read_to_string(&app.config).unwrap();
    let copy =
        format!("  copy_to: \"s3://{BUCKET}/offsite\"\n  endpoint: \"{}\"\n  region: us-east-1\n", s3.endpoint());
    app.edit_config(|c| format!("{c}{copy}"));
    let before = common::state(app.db()).await;
    let mut env = s3.env();
    env.push(("NEON_API_KEY", &server.key));
    let out = app.run_env(&["deploy", "--sha", SHA, "--tag", "v2", "--json"], &env);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let keys = s3.keys();
    assert!(keys.iter().any(|k| k.starts_with("offsite/") && k.ends_with(".sql.zst")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("offsite/") && k.ends_with(".manifest.json")), "{keys:?}");
    assert!(common::json(&out).to_string().contains("offsite copy: the branch deploy-guard/pre-"), "{err}");
    assert!(manifest(&app)["copy"].as_str().is_some_and(|c| c.contains("/offsite/")), "{}", manifest(&app));
    // A plain deploy-guard on the offsite store restores the pre-deploy state from it.
    let cut = plain.find("  provider: neon").unwrap();
    let offsite = plain[..cut].lines().filter(|l| !l.trim_start().starts_with("store:")).collect::<Vec<_>>().join("\n");
    let config = app.tmp.path().join("offsite.yml");
    std::fs::write(
        &config,
        format!(
            "{offsite}\n  store: \"s3://{BUCKET}/offsite\"\n  endpoint: \"{}\"\n  region: us-east-1\n",
            s3.endpoint()
        ),
    )
    .unwrap();
    let mut c = std::process::Command::new(common::bin());
    c.args(["restore", "--sha", &SHA[..7], "--config"]).arg(&config).envs(s3.env());
    let restored = c.output().unwrap();
    assert_eq!(restored.status.code(), Some(0), "{}", common::stderr(&restored));
    assert_eq!(common::state(app.db()).await, before, "the dump of the branch is the pre-deploy state");
    server.assert_all_valid();
}

/// Every manifest in the app's store, as JSON, by key.
fn manifests(app: &App) -> Vec<(String, serde_json::Value)> {
    common::files_under(&app.stage.store_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .map(|p| (p.to_string_lossy().into_owned(), serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()))
        .collect()
}

/// Every customer row, as a count and a digest (the table holds thousands).
const CUSTOMERS: &str =
    "SELECT count(*) || ' rows, md5 ' || md5(string_agg(id || ':' || name || ':' || coalesce(email, ''), ',' ORDER BY id)) \
     FROM customers";

/// Corruption found after the deploy: `restore --at` puts the primary back as it was at that
/// moment, through the same restore as any (validate, Neon's restore in place), the present kept.
#[tokio::test]
async fn restore_at_a_moment_brings_back_its_rows_and_keeps_the_present_as_a_branch() {
    let (app, server) = setup("neon_pitr", &["v2"]);
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    app.psql("INSERT INTO customers (name, email) VALUES ('Written after the deploy', 'after@example.org')");
    let t1 = server.snapshot();
    let at_t1 = common::state(app.db()).await;
    let customers_t1 = app.psql(CUSTOMERS);
    let (n, activity) = (app.psql("SELECT count(*) FROM customers"), app.psql("SELECT count(*) FROM activity"));
    assert!(n.parse::<u32>().unwrap() > 1 && activity != "0", "{n} {activity}");
    // The corruption, after T1.
    app.psql("UPDATE customers SET name = 'CORRUPT'");
    app.psql("DELETE FROM activity");
    let primary = server.branches()[0].clone();
    let out = run(&app, &server, &["restore", "--at", &t1, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!(r["result"], "restored", "{r}");
    // The live database holds exactly the rows of T1, under the same branch, compute and name.
    assert_eq!(app.psql(CUSTOMERS), customers_t1);
    assert_eq!(common::state(app.db()).await, at_t1);
    assert_eq!(app.psql("SELECT count(*) FROM activity"), activity);
    let after = server.branches()[0].clone();
    assert_eq!((&after.id, &after.endpoints, &after.db), (&primary.id, &primary.endpoints, &primary.db));
    // The branch restored from: the primary as it was at T1.
    let at = server.branch_named("deploy-guard/at-").expect("the point-in-time branch");
    assert_eq!((at.parent_id.as_deref(), at.parent_timestamp.as_deref()), (Some(PRIMARY), Some(t1.as_str())));
    assert!(server
        .seen()
        .iter()
        .any(|s| s.method == "POST" && s.path.ends_with(&format!("/branches/{PRIMARY}/restore"))));
    // The present is kept, corruption and all.
    let kept = server.branch_named(&format!("deploy-guard/failed-{}", &SHA[..7])).expect("the present kept");
    assert_eq!(on_branch(&kept, "SELECT count(*) FROM customers WHERE name = 'CORRUPT'"), n);
    assert_eq!(on_branch(&kept, "SELECT count(*) FROM activity"), "0");
    // What the restore took away: the kept branch against the restored primary.
    let tables = r["lost_writes"]["tables"].as_array().expect("lost writes compared");
    let customers = tables.iter().find(|t| t["table"] == "public.customers").expect("customers differ");
    assert_eq!(customers["updated"].as_u64().map(|u| u.to_string()), Some(n.clone()), "{r}");
    // Recorded as any restore: a manifest of its own, the journal in it.
    let all = manifests(&app);
    let (key, m) = all.iter().find(|(k, _)| k.contains("_point-in-time-")).expect("the point-in-time record");
    assert_eq!(m["neon"]["id"].as_str(), Some(at.id.as_str()), "{key}");
    assert_eq!(m["neon"]["at"].as_str().map(|a| a.starts_with(&t1[..19])), Some(true), "{m}");
    assert_eq!(m["sha"], SHA);
    let journal = m["journal"].to_string();
    assert!(journal.contains("swap") && journal.contains("lost-writes"), "{journal}");
    // `replay --sha` shows this restore's file (beside the point-in-time record), to review.
    let replay = run(&app, &server, &["replay", "--sha", &SHA[..7], "--dry-run"]);
    let sql = common::stdout(&replay);
    assert_eq!(replay.status.code(), Some(0), "{}", common::stderr(&replay));
    assert!(sql.contains("_point-in-time-") && sql.contains("CORRUPT"), "{}", &sql[..sql.len().min(2000)]);
    no_key_in(&out, &server);
    server.assert_all_valid();
}

/// A point-in-time restore that fails at Neon's restore names itself to run again (by its
/// record's key: the SHA would find the deploy's pre-deploy branch), and that command restores.
#[tokio::test]
async fn a_failed_restore_at_names_the_command_that_runs_it_again() {
    let (app, server) = setup("neon_pitr_again", &["v2"]);
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let t1 = server.snapshot();
    let (at_t1, customers_t1) = (common::state(app.db()).await, app.psql(CUSTOMERS));
    app.psql("DELETE FROM customers WHERE id % 2 = 0");
    let corrupt = common::state(app.db()).await;
    server.set_faults(Faults { refuse_restore: true, ..Faults::default() });
    let out = run(&app, &server, &["restore", "--at", &t1, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    assert_eq!(common::state(app.db()).await, corrupt, "Neon refused: nothing restored");
    let next: Vec<String> = common::json(&out)["next_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let again = next.iter().find(|c| c.contains("restore --key")).unwrap_or_else(|| panic!("{next:?}"));
    assert!(again.contains("_point-in-time-"), "{again}");
    assert!(!next.iter().any(|c| c.contains("rollback --sha")), "the SHA names the pre-deploy branch: {next:?}");
    server.set_faults(Faults::default());
    let key = again.split_whitespace().skip_while(|w| *w != "--key").nth(1).unwrap().trim_matches('\'');
    let out = run(&app, &server, &["restore", "--key", key, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!((common::state(app.db()).await, app.psql(CUSTOMERS)), (at_t1, customers_t1));
    server.assert_all_valid();
}

/// A time that is not one, one to come, or one before the history Neon keeps: refused (exit 2),
/// no branch made, nothing restored.
#[tokio::test]
async fn restore_at_refuses_garbage_the_future_and_a_time_outside_the_history() {
    let (app, server) = setup("neon_pitr_bad", &["v2"]);
    let out = run(&app, &server, &["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let t1 = server.snapshot();
    app.psql("UPDATE customers SET name = 'CORRUPT'");
    let (before, branches, records) = (common::state(app.db()).await, server.branches(), manifests(&app).len());
    let names = |bs: &[common::neon::Branch]| bs.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
    let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let asked = server.seen().len();
    for (at, says) in [
        ("yesterday", "not an RFC 3339 time"),
        ("2026-12-07", "not an RFC 3339 time"),
        (future.as_str(), "in the future"),
    ] {
        let out = run(&app, &server, &["restore", "--at", at]);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{at}: {err}");
        assert!(err.contains(says) && err.contains("nothing was changed"), "{at}: {err}");
    }
    assert_eq!(server.seen().len(), asked, "a bad --at asks nothing of the API");
    // Before the first moment the history holds.
    let before_history = chrono::DateTime::parse_from_rfc3339(&t1).unwrap() - chrono::Duration::hours(1);
    let out = run(&app, &server, &["restore", "--at", &before_history.to_rfc3339()]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("history retention window") && err.contains("nothing was changed"), "{err}");
    assert!(server.seen().iter().any(|s| s.method == "POST" && s.path.ends_with("/branches") && s.status == 400));
    assert!(!server.seen().iter().any(|s| s.path.ends_with("/restore")), "nothing restored");
    assert_eq!(names(&server.branches()), names(&branches), "no branch made");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(manifests(&app).len(), records, "nothing recorded");
    server.assert_all_valid();
}

/// pg_dump backups hold no history between them: `--at` is refused before anything is reached,
/// saying what to do instead.
#[tokio::test]
async fn restore_at_without_neon_is_refused_before_anything_changes() {
    let app = App::new("pitr_dump", &["v2"]);
    let out = app.run(&["deploy", "--sha", SHA, "--tag", "v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let (before, stored) = (common::state(app.db()).await, common::files_under(&app.stage.store_dir()));
    let out = app.run(&["restore", "--at", "2026-01-01T00:00:00Z"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("backup.provider: neon") && err.contains("restore --sha"), "{err}");
    assert!(err.contains("point-in-time recovery") && err.contains("nothing was changed"), "{err}");
    assert_eq!(common::state(app.db()).await, before);
    assert_eq!(common::files_under(&app.stage.store_dir()), stored);
}
