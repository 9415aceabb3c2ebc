//! The compose runtime against a real Docker Engine and Compose v2: a `backend` / `worker` /
//! `postgres` project reached over SSH (loopback sshd, host key pinned), whose backend image holds
//! the real TypeORM fixture and runs its migrations in a one-off container, with a real HTTP
//! health endpoint. Every `simulate` scenario runs through the real deploy-guard binary; each test
//! checks the exit code, result and path of the JSON report, the running tag, the env file, and
//! the database's contents afterwards. Docker is set up by scripts/setup (scripts/docker-setup).

use crate::common::docker;

use docker::{DbState, Project};

const V1_TABLES: &str = "migrations,users";
const V1_COLUMNS: &str = "id,name";
const V1_MIGRATIONS: &str = "CreateUsers1700000000000";

pub(crate) fn sha(n: u8) -> String {
    format!("{n}").repeat(40)[..40].to_string()
}

pub(crate) fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "deploy-guard printed no JSON report ({e}), exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Exit code, `result` and `path` as the scenario must end.
pub(crate) fn expect(out: &std::process::Output, code: i32, result: &str, path: &str) -> serde_json::Value {
    let r = report(out);
    let explain = || format!("report: {r:#}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "exit code; {}", explain());
    assert_eq!(r["result"], result, "result; {}", explain());
    assert_eq!(r["path"], path, "path; {}", explain());
    r
}

/// The database as it was before the deploy; v1 running, healthy, and in the env file.
fn assert_as_before(p: &Project, before: &DbState) {
    assert_eq!(&p.db_state(), before, "the database is not as it was before the deploy");
    assert_eq!(p.running_tag(), "v1");
    assert_eq!(p.env_text(), docker::ENV_FILE, "the env file must say v1, the rest untouched");
    p.wait_healthy("v1");
}

/// The database, the running tag, the env file and health are all back at v1.
fn assert_back_at_v1(p: &Project, before: &DbState) {
    assert_as_before(p, before);
    let after = p.db_state();
    assert_eq!(after.tables, V1_TABLES);
    assert_eq!(after.user_columns, V1_COLUMNS);
    assert_eq!(after.migrations, V1_MIGRATIONS);
}

/// This project's config with `extra` (more YAML sections) appended, written as `name`.
fn config_with(p: &Project, name: &str, extra: &str) -> std::path::PathBuf {
    let path = p.tmp.path().join(name);
    let text = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    path
}

fn env_mode(p: &Project) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(&p.env_file).unwrap().permissions().mode() & 0o7777
}

#[test]
fn happy_deploy_writes_the_tag_where_compose_reads_it_and_a_later_rollback_reverts() {
    let p = Project::start("happy");
    let before = p.db_state();
    assert_eq!(before.migrations, V1_MIGRATIONS);

    let out = p.deploy_guard(&["deploy", "--sha", &sha(1), "--tag", "v2", "--json"]);
    let r = expect(&out, 0, "deployed", "none");
    assert_eq!(r["previous_tag"], "v1");
    let after = p.db_state();
    assert_eq!(after.user_columns, "id,name,nickname");
    assert_eq!(after.migrations, "CreateUsers1700000000000,AddNickname1700000000001");
    assert_eq!(after.users, before.users, "the deploy changed the users' data");
    assert_eq!(p.running_tag(), "v2");
    assert_eq!(p.env_text(), docker::ENV_FILE.replace("APP_VERSION=v1", "APP_VERSION=v2"));
    assert_eq!(env_mode(&p), 0o640, "the env file's mode changed");

    // The host's next plain `docker compose up -d` (a reboot, a colleague, cron) keeps v2.
    p.compose_ok(&["up", "-d"]);
    assert_eq!(p.running_tag(), "v2");
    p.wait_healthy("v2");

    // The job ended; a new process rolls back by SHA: TypeORM's down() in the v2 image.
    let out = p.deploy_guard(&["rollback", "--sha", &sha(1)[..7], "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "rollback: {}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    let r = report(&out);
    assert_eq!(r["path"], "revert", "{r:#}");
    assert_back_at_v1(&p, &before);
    assert_eq!(env_mode(&p), 0o640);
    p.compose_ok(&["up", "-d"]);
    assert_eq!(p.running_tag(), "v1", "a plain `docker compose up -d` after the rollback must run v1");
    p.wait_healthy("v1");
}

/// Deploys `tag` over v1, which must end rolled back by `path` with everything back at v1.
fn rolled_back(test: &str, n: u8, tag: &str, path: &str) -> (Project, serde_json::Value) {
    let p = Project::start(test);
    let before = p.db_state();
    let out = p.deploy_guard(&["deploy", "--sha", &sha(n), "--tag", tag, "--json"]);
    let r = expect(&out, 1, "rolled-back", path);
    assert_back_at_v1(&p, &before);
    (p, r)
}

#[test]
fn migration_fails_rolls_back_as_a_whole_with_nothing_to_revert() {
    rolled_back("migration-fails", 2, "v2-notnull", "none");
}

#[test]
fn unhealthy_after_migrate_reverts_in_an_image_whose_entrypoint_crashes_with_the_app_container_gone() {
    let p = Project::start("unhealthy");
    let before = p.db_state();
    // The app container is gone (removed by hand, a failed host): the previous tag comes from
    // the env file's tag variable.
    p.compose_ok(&["rm", "--stop", "--force", "backend"]);
    assert_eq!(p.running_tag(), "");
    let out = p.deploy_guard(&["deploy", "--sha", &sha(3), "--tag", "v2-crash", "--json"]);
    let r = expect(&out, 1, "rolled-back", "revert");
    assert_eq!(r["previous_tag"], "v1", "{r:#}");
    // The v2-crash image cannot start (its entrypoint exits 1: the logs the rollback collected
    // say so), yet TypeORM's down() ran in it.
    let logs = r["app_logs"].as_str().unwrap_or_default();
    assert!(logs.contains("cannot start"), "v2-crash's entrypoint did not run and crash: {r:#}");
    assert_back_at_v1(&p, &before);
}

#[test]
fn a_down_that_errors_restores_the_backup() {
    let (p, _) = rolled_back("bad-down", 4, "v2-bad-down", "restore");
    let kept = format!("shop__failed_{}", &sha(4)[..7]);
    assert_eq!(p.psql(&format!("SELECT count(*) FROM pg_database WHERE datname = '{kept}'")), "1", "broken db kept");
}

#[test]
fn a_down_that_leaves_a_column_behind_is_caught_and_the_backup_restored() {
    let (_, r) = rolled_back("lying-down", 5, "v2-lying-down", "restore");
    let drift = r["drift"].to_string();
    assert!(drift.contains("nickname"), "the drift must name the column left behind: {r:#}");
}

#[test]
fn a_migration_that_destroyed_data_is_not_reverted_but_restored() {
    rolled_back("destructive-down", 11, "v2-drop-name", "restore");
}

/// A rename loses nothing: assess tells it from a drop by the catalog's identities, the revert
/// renames it back and is verified, nothing is restored.
#[test]
fn a_renamed_column_is_reverted_not_restored() {
    let (_, r) = rolled_back("rename", 31, "v2-rename-name", "revert");
    let assess = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "assess").expect("an assess step");
    let said = assess["detail"].as_str().unwrap_or_default();
    assert!(said.contains("renamed column public.users.name to full_name"), "{said}");
    assert!(!said.contains("dropped"), "{said}");
}

#[test]
fn a_migration_that_rewrote_data_is_not_reverted_but_restored() {
    rolled_back("data-rewrite", 12, "v2-rewrite-name", "restore");
}

#[test]
fn a_directory_format_backup_is_dumped_and_restored_inside_the_postgres_container() {
    let p = Project::start("dir-format");
    let config = config_with(&p, "dir.yml", "  format: directory\n  jobs: 2\n");
    let before = p.db_state();
    // v2-drop-name destroys data: its down cannot bring it back, the backup is restored.
    let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha(17), "--tag", "v2-drop-name", "--json"]);
    expect(&out, 1, "rolled-back", "restore");
    assert_back_at_v1(&p, &before);
    let stored = p.stored_files();
    assert!(stored.iter().any(|f| f.ends_with(".dir.tar.zst")), "{stored:?}");
    let left = p.compose_ok(&["exec", "-T", "postgres", "sh", "-c", "ls -A /var/tmp"]);
    assert_eq!(left.trim(), "", "the container's temporary directories are removed");
}

/// `count md5` of the rows of `table` in database `db`: its `columns`, ordered by id.
fn rows(p: &Project, db: &str, table: &str, columns: &str) -> String {
    p.psql_in(
        db,
        &format!(
            "SELECT count(*) || ' ' || md5(coalesce(string_agg(ROW({columns})::text, ',' ORDER BY id), '')) FROM {table}"
        ),
    )
}

/// What each table lost, as the report says: (table, inserted, updated, deleted), sorted.
fn lost_counts(r: &serde_json::Value) -> Vec<(String, u64, u64, u64)> {
    let n = |t: &serde_json::Value, k: &str| t[k].as_u64().unwrap_or_else(|| panic!("lost_writes: no {k}: {r:#}"));
    let mut out: Vec<_> = r["lost_writes"]["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("the report names no lost writes: {r:#}"))
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_string(), n(t, "inserted"), n(t, "updated"), n(t, "deleted")))
        .collect();
    out.sort();
    out
}

#[test]
fn writes_made_after_the_backup_go_to_a_replay_file_that_brings_them_back_after_the_restore() {
    let p = Project::start("lost-writes");
    // The shop's orders, there before the deploy: the release's migration drops their notes.
    p.psql(
        "CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), \
         total numeric(10,2) NOT NULL, note text); \
         INSERT INTO orders (user_id, total, note) SELECT 1 + i % 305, (i % 997) / 7.0, 'order ' || i \
         FROM generate_series(1, 600) i;",
    );
    const ORDERS: &str = "id, user_id, total, note";
    let before = p.db_state();
    let orders_before = rows(&p, "shop", "orders", ORDERS);

    // v2-app-writes' server writes when it starts, after the backup (three signups, a rename, a
    // cancelled order), then never gets healthy; its migration destroyed the notes: restore.
    let sha = sha(13);
    let out = p.deploy_guard(&["deploy", "--sha", &sha, "--tag", "v2-app-writes", "--json"]);
    let r = expect(&out, 1, "rolled-back", "restore");
    assert!(r["destroyed"].to_string().contains("note"), "the report must say the notes were destroyed: {r:#}");
    assert_as_before(&p, &before);
    assert_eq!(rows(&p, "shop", "orders", ORDERS), orders_before, "the orders' notes are not back");

    // The writes are in the kept database, and in a replay file beside the backup.
    let kept = format!("shop__failed_{}", &sha[..7]);
    assert_eq!(
        p.psql_in(&kept, "SELECT string_agg(name, ',' ORDER BY id) FROM users WHERE id = 2 OR id > 305"),
        "Zoë (renamed),Neu 1,Neu 2,Neu 3",
        "the kept database lacks what v2-app-writes wrote"
    );
    assert_eq!(
        lost_counts(&r),
        [("public.orders".to_string(), 0, 0, 1), ("public.users".to_string(), 3, 1, 0)],
        "lost (inserted, updated, deleted) rows"
    );
    let key = r["lost_writes"]["key"].as_str().unwrap();
    assert!(key.contains(".lost-writes.") && key.ends_with(".sql"), "{r:#}");
    assert!(
        p.stored_files().iter().any(|f| f.ends_with(key)),
        "the replay file {key} is not in the store: {:?}",
        p.stored_files()
    );

    // Reviewed, then applied by a new process, by SHA.
    let out = p.deploy_guard(&["replay", "--sha", &sha[..7], "--dry-run"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay --dry-run: {printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("'Neu 1'") && printed.contains("DELETE FROM"), "replay --dry-run printed:\n{printed}");
    assert_eq!(p.db_state(), before, "replay --dry-run changed the database");
    let out = p.deploy_guard(&["replay", "--sha", &sha[..7]]);
    assert!(out.status.success(), "replay: {}", String::from_utf8_lossy(&out.stderr));
    for (table, columns) in [("users", "id, name"), ("orders", "id, user_id, total")] {
        assert_eq!(
            rows(&p, "shop", table, columns),
            rows(&p, &kept, table, columns),
            "after the replay, {table} differs from what the app had written"
        );
    }
    assert_eq!(p.psql("SELECT count(*) FROM orders WHERE note IS NOT NULL"), "599", "the other orders' notes");
    // The app carries on: v1 healthy, and the next signup gets a fresh id.
    p.wait_healthy("v1");
    assert_eq!(p.psql("INSERT INTO users (name) VALUES ('after the replay') RETURNING id"), "309");
}

#[test]
fn additive_migrations_stay_under_keep_and_the_previous_tag_runs_on_them() {
    let p = Project::start("additive-keep");
    let before = p.db_state();
    let config = config_with(&p, "keep.yml", "rollback:\n  additive: keep\n");
    // v2-additive adds nickname (and its index), writes one when it starts, never gets healthy.
    let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha(14), "--tag", "v2-additive", "--json"]);
    let r = expect(&out, 1, "rolled-back", "none");
    assert!(r["kept_additions"].to_string().contains("nickname"), "the report must say what stays: {r:#}");
    let after = p.db_state();
    assert_eq!(after.user_columns, "id,name,nickname");
    assert!(after.indexes.contains("users_nickname_idx"), "the index was dropped: {}", after.indexes);
    assert_eq!(after.migrations, format!("{V1_MIGRATIONS},AddNickname1700000000001"));
    assert_eq!(after.users, before.users, "the users' names changed");
    assert_eq!(p.psql("SELECT nickname FROM users WHERE id = 2"), "Zo", "what v2 wrote into the kept column is gone");
    assert_eq!(
        p.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'shop\\_\\_%'"),
        "",
        "nothing was to be restored, yet a scratch or kept database exists"
    );
    assert_eq!(p.running_tag(), "v1");
    assert_eq!(p.env_text(), docker::ENV_FILE, "the env file must say v1, the rest untouched");
    p.wait_healthy("v1");
    p.compose_ok(&["up", "-d"]);
    assert_eq!(p.running_tag(), "v1", "a plain `docker compose up -d` after the rollback must run v1");
    p.wait_healthy("v1");
}

#[test]
fn a_migration_the_real_rows_break_is_caught_on_a_copy_and_production_is_never_touched() {
    let p = Project::start("rehearsal-catches");
    let before = p.db_state();
    let config = config_with(&p, "rehearse.yml", "deploy:\n  rehearse: true\n");
    let sha = sha(15);
    let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha, "--tag", "v2-unique-first-name", "--json"]);
    let r = expect(&out, 4, "aborted", "none");
    assert!(
        r.to_string().contains("could not create unique index"),
        "the report must say why the migration failed on the copy: {r:#}"
    );
    let steps: Vec<&str> = r["steps"].as_array().unwrap().iter().filter_map(|e| e["step"].as_str()).collect();
    assert!(steps.contains(&"rehearse"), "no rehearsal ran: {steps:?}");
    assert!(!steps.contains(&"migrate") && !steps.contains(&"deploy"), "production was touched: {steps:?}");
    assert_back_at_v1(&p, &before);
    let copy = format!("shop__rehearse_{}", &sha[..7]);
    assert_eq!(
        p.psql(&format!("SELECT count(*) FROM pg_database WHERE datname = '{copy}'")),
        "0",
        "the rehearsal copy {copy} was left behind"
    );
}

/// A rehearsal of a good release runs its migrations on the copy, not on production: the
/// tool in the one-off container is pointed at the copy (PGDATABASE and DATABASE_URL inside the
/// container, confirmed by psql there before it runs), and production keeps v1's schema and rows.
#[test]
fn a_rehearsal_runs_the_migrations_on_the_copy_never_on_production() {
    let p = Project::start("rehearse-good");
    let before = p.db_state();
    let out = p.deploy_guard(&["rehearse", "--sha", &sha(16), "--tag", "v2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&out);
    assert_eq!(r["rehearsal"]["applied"], 1, "one migration applied on the copy: {r:#}");
    assert_as_before(&p, &before);
}

/// TypeORM has no dirty or failed state to refuse (sqlx's `success = false`, golang-migrate's
/// `dirty`): it records a migration in the transaction that runs it. Its nearest case is a
/// migration outside a transaction that fails half-way: no row, the tool says clean, the schema
/// is changed. Its revert must not run (it would revert the last *recorded* migration).
#[test]
fn a_non_transactional_migration_that_fails_half_way_is_restored_not_reverted() {
    let p = Project::start("half-applied");
    let before = p.db_state();
    let good = std::fs::read_to_string(&p.config).unwrap();
    let text = good.replace("migration:run -d", "migration:run -t each -d");
    assert_ne!(text, good, "the config's run command changed: update this test");
    let config = p.tmp.path().join("each.yml");
    std::fs::write(&config, text).unwrap();
    let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha(16), "--tag", "v2-half-applied", "--json"]);
    let r = expect(&out, 1, "rolled-back", "restore");
    // Half-applied: the column and the (invalid) index were there, with no migration recorded.
    let drift = r["drift"].to_string();
    assert!(drift.contains("first_name") && drift.contains("users_first_name_key"), "drift: {r:#}");
    assert_eq!(r["migrations_after"], r["migrations_before"], "{r:#}");
    let steps: Vec<&str> = r["steps"].as_array().unwrap().iter().filter_map(|e| e["step"].as_str()).collect();
    assert!(!steps.contains(&"revert"), "TypeORM's revert ran with nothing of this deploy recorded: {steps:?}");
    assert_back_at_v1(&p, &before);
}

#[test]
fn a_backup_that_fails_part_way_aborts_with_nothing_changed() {
    let p = Project::start("backup-fails");
    // A real pg_dump failure part-way: the backup role may read every table but one, whose
    // row-level security stops pg_dump when it reaches that table's data (after the others').
    p.psql(
        "CREATE ROLE dumper LOGIN; CREATE ROLE auditor; \
         CREATE TABLE zz_audit (id serial PRIMARY KEY, note text); INSERT INTO zz_audit (note) VALUES ('kept'); \
         ALTER TABLE zz_audit OWNER TO auditor; ALTER TABLE zz_audit ENABLE ROW LEVEL SECURITY; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO dumper; GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO dumper;",
    );
    let config = p.tmp.path().join("dumper.yml");
    let text = std::fs::read_to_string(&p.config).unwrap().replace("user: ${DATABASE_USER}", "user: dumper");
    std::fs::write(&config, text).unwrap();
    let before = p.db_state();
    let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha(6), "--tag", "v2", "--json"]);
    let r = expect(&out, 4, "aborted", "none");
    assert!(r.to_string().contains("zz_audit"), "the report must say where pg_dump failed: {r:#}");
    assert_eq!(p.stored_files(), Vec::<String>::new(), "a failed backup left files in the store");
    assert_eq!(p.db_state(), before);
    assert_eq!(p.running_tag(), "v1");
    assert_eq!(p.env_text(), docker::ENV_FILE);
    p.wait_healthy("v1");
}

#[test]
fn a_crash_looping_container_does_not_count_as_the_previous_tag() {
    let p = Project::start("crash-loop");
    // Someone started v2-crash by hand: it restarts and exits, over and over.
    let mut up = p.compose(&["up", "-d", "backend"]);
    up.env("APP_VERSION", "v2-crash");
    docker::run(&mut up).unwrap();
    let out = p.deploy_guard(&["deploy", "--sha", &sha(7), "--tag", "v2", "--json"]);
    let r = expect(&out, 0, "deployed", "none");
    assert_eq!(r["previous_tag"], "v1", "the env file's tag, not the crash-looping container's: {r:#}");
    assert_eq!(p.running_tag(), "v2");
    p.wait_healthy("v2");
}

/// Each service's state, image tag and health, as `check` over compose reports them.
fn services_report(p: &Project, config: &std::path::Path) -> String {
    let config = deploy_guard::config::Config::load(Some(config), &[]).unwrap();
    let creds = deploy_guard::exec::ssh::Credentials { key: p.sshd.client_key.clone(), passphrase: None };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ssh = deploy_guard::exec::ssh::Ssh::connect(&config.target, &creds).await.unwrap();
        let compose = deploy_guard::app::compose::Compose::from_config(
            std::sync::Arc::new(ssh),
            &config.app,
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        compose.services_report().await.unwrap_or_else(|e| format!("error: {e:#}"))
    })
}

#[test]
fn bad_compose_settings_are_refused_by_check_and_by_deploy_before_the_backup() {
    let p = Project::start("bad-input");
    let out = p.deploy_guard(&["check"]);
    assert!(out.status.success(), "check of the good config: {}", String::from_utf8_lossy(&out.stdout));
    let report = services_report(&p, &p.config);
    for part in ["backend running, tag v1", "postgres running, healthy", "worker running, tag v1"] {
        assert!(report.contains(part), "services report lacks {part:?}: {report}");
    }

    let before = p.db_state();
    let good = std::fs::read_to_string(&p.config).unwrap();
    let compose_file = p.compose_file.display().to_string();
    let cases = [
        (
            "a compose file that does not exist",
            good.replace(&compose_file, "/nonexistent/docker-compose.prod.yml"),
            "app.compose_file: /nonexistent/docker-compose.prod.yml does not exist",
        ),
        (
            "a service the compose file does not define",
            good.replace("service: backend", "service: api"),
            "app.service: \"api\" is not a service of",
        ),
        (
            "a tag variable the compose file never reads",
            good.replace("tag_variable: APP_VERSION", "tag_variable: STATION_VERSION"),
            "does not follow STATION_VERSION",
        ),
    ];
    for (i, (what, text, message)) in cases.into_iter().enumerate() {
        assert_ne!(text, good);
        let config = p.tmp.path().join(format!("bad-{i}.yml"));
        std::fs::write(&config, text).unwrap();

        let out = p.deploy_guard_with(&config, &["check"]);
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{what}: check passed:\n{printed}");
        assert!(printed.contains(message), "{what}: check must say {message:?}:\n{printed}");

        let sha = sha(8 + i as u8);
        let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha, "--tag", "v2", "--json"]);
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(matches!(out.status.code(), Some(2 | 4)), "{what}: deploy must stop with 2 or 4:\n{printed}");
        assert_eq!(p.stored_files(), Vec::<String>::new(), "{what}: a backup was taken:\n{printed}");
        assert_eq!(p.db_state(), before, "{what}: the database changed");
        assert_eq!(p.running_tag(), "v1", "{what}");
        assert_eq!(p.env_text(), docker::ENV_FILE, "{what}: the env file changed");
    }
    p.wait_healthy("v1");
}

/// The one-off containers of the project (`docker compose run`), running or not.
fn one_off_containers(p: &Project) -> Vec<String> {
    let project = format!("label=com.docker.compose.project={}", p.name);
    let out = docker::run(std::process::Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &project,
        "--filter",
        "label=com.docker.compose.oneoff=True",
    ]))
    .unwrap();
    out.split_whitespace().map(str::to_string).collect()
}

/// What a tool command that times out must leave: a release `tag` whose `step` (`migrate` or
/// `revert`, run by `migrations.KEY`, which is also TypeORM's command) sleeps in PostgreSQL past
/// `timeout`, then creates `late`; its command retries until it succeeds, as entrypoints that
/// wait for the database do. Killing the client and ending its session is not enough: the
/// one-off container runs on, connects again and commits after the deploy moved on, unless it
/// is removed.
struct TimedOut {
    project: &'static str,
    tag: &'static str,
    sha: u8,
    key: &'static str,
    timeout: &'static str,
    step: &'static str,
    noun: &'static str,
    path: &'static str,
    late: &'static str,
}

fn timed_out_tool(t: TimedOut) {
    let p = Project::start(t.project);
    let config = p.tmp.path().join("slow.yml");
    let text = std::fs::read_to_string(&p.config).unwrap();
    let line = format!("  {0}: ./node_modules/.bin/typeorm migration:{0} -d data-source.js", t.key);
    let retrying = format!(
        "  {0}: \"until ./node_modules/.bin/typeorm migration:{0} -d data-source.js; do sleep 1; done\"",
        t.key
    );
    assert!(text.contains(&line), "{text}");
    let text = text.replace("  timeout: 3m", &format!("  timeout: {}", t.timeout)).replace(&line, &retrying);
    std::fs::write(&config, &text).unwrap();
    let before = p.db_state();
    let out = p.deploy_guard_with(&config, &["deploy", "--sha", &sha(t.sha), "--tag", t.tag, "--json"]);
    let r = expect(&out, 1, "rolled-back", t.path);
    // Gone when deploy-guard returned: nothing is left that could still commit.
    assert_eq!(one_off_containers(&p), Vec::<String>::new(), "the {}'s container outlived the deploy", t.noun);
    assert_eq!(p.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'deploy-guard-%'"), "0");
    let step = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == t.step).unwrap().to_string();
    assert!(step.contains("timed out"), "{step}");
    assert!(step.contains(&format!("1 container(s) of the {} removed", t.noun)), "{step}");
    assert!(step.contains(&format!("session(s) of the {} ended", t.noun)), "{step}");
    let late = format!("SELECT to_regclass('{}') IS NULL", t.late);
    assert_eq!(p.psql(&late), "t", "the timed-out {} committed", t.noun);
    assert_back_at_v1(&p, &before);
}

#[test]
fn a_migration_that_times_out_has_its_container_removed_and_never_commits() {
    // The migration sleeps 30 s, then creates `late_change`.
    timed_out_tool(TimedOut {
        project: "slow-migration",
        tag: "v2-slow",
        sha: 13,
        key: "run",
        timeout: "5s",
        step: "migrate",
        noun: "migration",
        path: "none",
        late: "late_change",
    });
}

#[test]
fn a_revert_that_times_out_has_its_container_removed_before_the_restore() {
    // The release's up() adds a column and its health fails, so deploy-guard reverts; its down()
    // sleeps 60 s, then creates `late_revert`. Left running after its timeout, the loop would
    // reconnect to the database the restore swapped in and revert the migration before it
    // (CreateUsers) there.
    timed_out_tool(TimedOut {
        project: "slow-revert",
        tag: "v2-slow-down",
        sha: 21,
        key: "revert",
        timeout: "20s",
        step: "revert",
        noun: "revert",
        path: "restore",
        late: "late_revert",
    });
}

/// A registry on 127.0.0.1 that has no tag at all: `/v2/` answers (a registry is there), every
/// manifest is unknown. Records the paths asked for.
fn empty_registry() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(path.clone());
            let (status, body) = if path == "/v2/" {
                ("200 OK", "{}".to_string())
            } else {
                (
                    "404 Not Found",
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_string(),
                )
            };
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDocker-Distribution-API-Version: registry/2.0\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (port, asked)
}

#[test]
fn a_tag_the_target_cannot_pull_aborts_before_the_backup_with_nothing_changed() {
    let p = Project::start("pull-fails");
    // The compose file's images now come from a registry on loopback that lacks the new tag
    // (the running v1 container stays as it was).
    let (port, asked) = empty_registry();
    let repo = &docker::images().backend_repo;
    let compose = std::fs::read_to_string(&p.compose_file).unwrap();
    assert!(compose.contains(&format!("{repo}:${{APP_VERSION}}")), "{compose}");
    std::fs::write(&p.compose_file, compose.replace(repo.as_str(), &format!("127.0.0.1:{port}/{repo}"))).unwrap();
    let before = p.db_state();

    let out = p.deploy_guard(&["deploy", "--sha", &sha(8), "--tag", "v9-never-pushed", "--json"]);
    let r = expect(&out, 4, "aborted", "none");
    let said = format!("{r}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("cannot pull the image of v9-never-pushed"), "{said}");
    assert!(said.contains("manifest unknown"), "the registry's own error is shown: {said}");
    assert!(said.contains("docker login"), "it says how to log the target in: {said}");
    assert!(
        asked.lock().unwrap().iter().any(|a| a.ends_with("/manifests/v9-never-pushed")),
        "the registry was not asked for the tag: {:?}",
        asked.lock().unwrap()
    );
    // Before anything: no backup taken, the database, the running tag and the env file as they were.
    assert_eq!(p.stored_files(), Vec::<String>::new(), "a backup was taken");
    assert_eq!(p.db_state(), before);
    assert_eq!(p.running_tag(), "v1");
    assert_eq!(p.env_text(), docker::ENV_FILE);
    p.wait_healthy("v1");
}
