use super::*;

const MINIMAL: &str = r#"
project: station
app:
  runtime: shell
  commands: { deploy: "./run {tag}", current_tag: "cat tag" }
  health: { url: "https://api.example.org/health", timeout: 90s }
database: { host: 127.0.0.1, name: app }
migrations: { run: "./migrate" }
backup: { store: "file:///var/backups/station" }
"#;

fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn err(yaml: &str, env: &[(&str, &str)]) -> String {
    format!("{:#}", Config::from_yaml(yaml, &vars(env)).unwrap_err())
}

#[test]
fn a_minimal_config_gets_the_defaults() {
    let c = Config::from_yaml(MINIMAL, &[]).unwrap();
    assert!(c.is_local());
    assert_eq!(c.app.health.timeout, Duration::from_secs(90));
    assert_eq!(c.migrations.timeout, Duration::from_secs(600));
    assert_eq!(c.rollback.strategy, Strategy::Auto);
    assert_eq!(c.database.maintenance_db, "postgres");
    assert_eq!(c.backup.compression.to_string(), "zstd:1");
}

#[test]
fn environment_overrides_every_kind_of_setting() {
    let c = Config::from_yaml(
        MINIMAL,
        &vars(&[
            ("DEPLOY_GUARD_APP_HEALTH_TIMEOUT", "2m"),
            ("DEPLOY_GUARD_DATABASE_PORT", "5433"),
            ("DEPLOY_GUARD_ROLLBACK_STRATEGY", "restore"),
            ("DEPLOY_GUARD_APP_COMMANDS_STOP", "./stop"),
            ("DEPLOY_GUARD_BACKUP_KEEP", ""), // empty: the Action passes unset inputs so
            ("DEPLOY_GUARD_SSH_KEY", "-----BEGIN…"), // a secret, not a setting
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.app.health.timeout, Duration::from_secs(120));
    assert_eq!(c.database.port, Some(5433));
    assert_eq!(c.rollback.strategy, Strategy::Restore);
    assert_eq!(c.app.commands.stop.as_deref(), Some("./stop"));
    assert_eq!(c.backup.keep, None);
}

#[test]
fn a_whole_config_can_come_from_the_environment() {
    let c = Config::from_yaml(
        "",
        &vars(&[
            ("DEPLOY_GUARD_PROJECT", "p"),
            ("DEPLOY_GUARD_APP_RUNTIME", "shell"),
            ("DEPLOY_GUARD_APP_COMMANDS_DEPLOY", "./d {tag}"),
            ("DEPLOY_GUARD_APP_COMMANDS_CURRENT_TAG", "cat t"),
            ("DEPLOY_GUARD_APP_HEALTH_COMMAND", "true"),
            ("DEPLOY_GUARD_DATABASE_NAME", "${DATABASE_NAME}"),
            ("DEPLOY_GUARD_MIGRATIONS_TOOL", "typeorm"),
            ("DEPLOY_GUARD_BACKUP_STORE", "s3://bucket/postgres"),
        ]),
    )
    .unwrap();
    assert_eq!(c.migrations.tool, Tool::Typeorm);
    assert_eq!(c.database.name.as_deref(), Some("${DATABASE_NAME}"));
}

#[test]
fn every_error_names_the_setting_and_where_it_is() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &MINIMAL.replace("runtime: shell", "runtime: shel"),
            &[],
            "line 4: app.runtime: `shel` is not one of: compose, shell, swarm, kubernetes; did you mean `shell`?",
        ),
        (
            &MINIMAL.replace("timeout: 90s", "timeout: soon"),
            &[],
            "line 6: app.health.timeout: expected a duration such as 90s, 2m or 1h30m, got \"soon\"",
        ),
        (
            &MINIMAL.replace("health:", "helth:"),
            &[],
            "line 6: app.helth: unknown setting `helth`; did you mean `health`?",
        ),
        (
            &MINIMAL.replace("host: 127.0.0.1", "host: 127.0.0.1, port: http"),
            &[],
            "line 7: database.port: expected a whole number from 0 to 65535, e.g. 5432, got \"http\"",
        ),
        (&MINIMAL.replace("./run {tag}", "./run"), &[], "line 5: app.commands.deploy: must contain {tag}"),
        (
            &MINIMAL.replace("url: \"https://api.example.org/health\"", "url: \"api/health\""),
            &[],
            "line 6: app.health.url",
        ),
        (&MINIMAL.replace("name: app", "name: \"app; drop\""), &[], "line 7: database.name"),
        (&MINIMAL.replace("file:///var/backups/station", "ftp://x"), &[], "line 9: backup.store"),
        (
            &MINIMAL.replace("migrations: { run: \"./migrate\" }", "migrations: {}"),
            &[],
            "line 8: migrations.run: required",
        ),
        (&MINIMAL.replace("project: station\n", ""), &[], "project: required, and not set (e.g. `project: station`)"),
        (
            MINIMAL,
            &[("DEPLOY_GUARD_MIGRATIONS_DIRTY_SQL", "SELECT version FROM schema_migrations WHERE dirty")],
            "DEPLOY_GUARD_MIGRATIONS_DIRTY_SQL (migrations.dirty_sql): needs migrations.table",
        ),
        (&format!("{MINIMAL}target: {{ host: vps }}\n"), &[], "line 10: target.known_hosts: required"),
        (
            &format!("{MINIMAL}backupp: {{}}\n"),
            &[],
            "line 10: backupp: unknown setting `backupp`; did you mean `backup`?",
        ),
        (
            MINIMAL,
            &[("DEPLOY_GUARD_TARGET_PORT", "22x")],
            "DEPLOY_GUARD_TARGET_PORT (target.port): expected a whole number",
        ),
        (
            MINIMAL,
            &[("DEPLOY_GUARD_APP_HEALTH_TIMEOUT", "soon")],
            "DEPLOY_GUARD_APP_HEALTH_TIMEOUT (app.health.timeout): expected a duration such as 90s",
        ),
        (MINIMAL, &[("DEPLOY_GUARD_TARGET_INSECURE_ACCEPT_ANY_HOST_KEY", "maybe")], "expected true or false"),
        (
            MINIMAL,
            &[("DEPLOY_GUARD_APP_HELTH_TIMEOUT", "2m")],
            "DEPLOY_GUARD_APP_HELTH_TIMEOUT: not a deploy-guard setting; did you mean DEPLOY_GUARD_APP_HEALTH_TIMEOUT?",
        ),
        ("- a\n- b\n", &[], "must be a mapping"),
        ("project: x\napp:\n  runtime: [\n", &[], "line 4: not valid YAML"),
    ];
    for (yaml, env, expected) in cases {
        let e = err(yaml, env);
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
}

#[test]
fn shas_and_tags_are_checked() {
    use crate::model::Sha;
    assert!(Sha::parse("abc1234").is_ok());
    assert!(Sha::parse("ABC1234def").is_ok());
    for bad in ["abc123", "xyz1234", "abc1234; rm", &"a".repeat(41)] {
        assert!(Sha::parse(bad).is_err(), "{bad}");
    }
    for good in ["v1.2.3", "latest", "_x", "2026-05-10.1"] {
        assert!(check_tag("--tag", good).is_ok(), "{good}");
    }
    for bad in ["", "-x", ".x", "a b", "a;b", "$(id)", "a/b", &"a".repeat(129)] {
        assert!(check_tag("--tag", bad).is_err(), "{bad:?}");
    }
}

const S3: &str = r#"
project: station
app:
  runtime: shell
  commands: { deploy: "./run {tag}", current_tag: "cat tag" }
  health: { url: "https://api.example.org/health" }
database: { host: 127.0.0.1, name: app }
migrations: { run: "./migrate" }
backup:
  store: s3://station-backups/postgres
  endpoint: https://s3.us-west-004.backblazeb2.com
  region: us-west-004
"#;

#[test]
fn s3_settings_have_defaults_units_and_limits() {
    let c = Config::from_yaml(S3, &[]).unwrap();
    assert_eq!((c.backup.part_size, c.backup.parts_in_flight), (8 << 20, 4));
    let c = Config::from_yaml(&format!("{S3}  part_size: 16MiB\n  sse: AES256\n  max_age: 30days\n"), &[]).unwrap();
    assert_eq!(c.backup.part_size, 16 << 20);
    assert_eq!(c.backup.max_age, Some(Duration::from_secs(30 * 86400)));
    let c = Config::from_yaml(
        S3,
        &vars(&[("DEPLOY_GUARD_BACKUP_PART_SIZE", "10485760"), ("DEPLOY_GUARD_BACKUP_PATH_STYLE", "false")]),
    )
    .unwrap();
    assert_eq!((c.backup.part_size, c.backup.path_style), (10 << 20, Some(false)));
    for (extra, expected) in [
        ("  part_size: 4MiB\n", "backup.part_size: 4194304 bytes is outside S3's limits"),
        ("  part_size: 8 parsecs\n", "backup.part_size: \"8 parsecs\": unknown unit"),
        ("  parts_in_flight: 0\n", "backup.parts_in_flight: 0 must be 1 to 64"),
        ("  sse: rot13\n", "backup.sse: \"rot13\" must be AES256, aws:kms or aws:kms:dsse"),
        ("  sse_kms_key_id: k\n", "backup.sse_kms_key_id: needs backup.sse: aws:kms"),
        ("  keep: 0\n", "backup.keep: must be at least 1"),
    ] {
        let e = err(&format!("{S3}{extra}"), &[]);
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
    let e = err(&S3.replace("https://s3.us-west-004", "s3.us-west-004"), &[]);
    assert!(e.contains("backup.endpoint: \"s3.us-west-004.backblazeb2.com\" must be a URL"), "{e}");
    let e = err(&S3.replace("s3://station-backups/postgres", "file:///var/b"), &[]);
    assert!(e.contains("backup.endpoint: only applies to an s3:// backup.store"), "{e}");
}

const HOSTS: &str = r#"
target:
  host: web1
  user: deploy
  known_hosts: "web1 ssh-ed25519 AAAA\nweb2 ssh-ed25519 BBBB"
  hosts:
    - host: web2
    - host: web3
      port: 2222
      user: ops
      fingerprint: "SHA256:abc"
"#;

#[test]
fn several_hosts_inherit_what_they_do_not_set() {
    let c = Config::from_yaml(&format!("{MINIMAL}{HOSTS}"), &[]).unwrap();
    assert_eq!(c.app.rollout, Rollout::OneAtATime);
    let hosts = c.target.app_hosts();
    let names: Vec<String> = hosts.iter().map(Target::host_name).collect();
    assert_eq!(names, ["web1", "web2", "web3:2222"]);
    assert_eq!(hosts[1].user.as_deref(), Some("deploy"));
    assert_eq!(hosts[1].known_hosts, c.target.known_hosts);
    // Its own pin replaces the primary's lines.
    assert_eq!((hosts[2].user.as_deref(), hosts[2].known_hosts.as_deref()), (Some("ops"), None));
    assert_eq!(hosts[2].fingerprint.as_deref(), Some("SHA256:abc"));
    let all = Config::from_yaml(&format!("{MINIMAL}{HOSTS}"), &vars(&[("DEPLOY_GUARD_APP_ROLLOUT", "all-at-once")]));
    assert_eq!(all.unwrap().app.rollout, Rollout::AllAtOnce);
}

#[test]
fn several_hosts_need_a_primary_a_pin_each_and_no_host_twice() {
    let no_primary = "target:\n  hosts:\n    - host: web2\n";
    assert!(err(&format!("{MINIMAL}{no_primary}"), &[]).contains("target.hosts: needs target.host"));
    let unpinned = "target:\n  host: web1\n  user: deploy\n  fingerprint: \"SHA256:x\"\n  hosts:\n    - host: web2\n";
    // The primary's fingerprint pins the primary only: web2 needs a pin of its own.
    assert!(err(&format!("{MINIMAL}{unpinned}"), &[]).contains("target.hosts[0].known_hosts: required"));
    let twice = HOSTS.replace("host: web3", "host: web2").replace("      port: 2222\n", "");
    assert!(err(&format!("{MINIMAL}{twice}"), &[]).contains("web2 is named twice"));
    // A swarm spreads its services over its nodes itself.
    let swarm = MINIMAL
        .replace("runtime: shell", "runtime: swarm\n  service: station_backend")
        .replace("database: { host: 127.0.0.1, name: app }", "database: { service: station_postgres, name: app }");
    let e = err(&format!("{swarm}{HOSTS}"), &[]);
    assert!(e.contains("target.hosts: only with app.runtime: shell or compose"), "{e}");
}

#[test]
fn a_swarm_config_names_its_services_and_where_the_database_is() {
    let swarm = MINIMAL
        .replace(
            "runtime: shell",
            "runtime: swarm\n  service: station_backend\n  services: [station_backend, station_worker]",
        )
        .replace("database: { host: 127.0.0.1, name: app }", "database: { service: station_postgres, name: app }");
    let c = Config::from_yaml(&swarm, &[]).unwrap();
    assert_eq!(c.app.runtime, RuntimeKind::Swarm);
    let cases: &[(&str, &str, &str)] = &[
        ("  service: station_backend\n", "", "app.service: required with app.runtime: swarm"),
        ("station_worker]", "station_worker, 'a b']", "\"a b\" is not a swarm service name"),
        ("[station_backend, ", "[", "app.services: must include app.service (station_backend)"),
        ("service: station_postgres, ", "", "database.service: required with app.runtime: swarm"),
        (
            "  service: station_backend\n",
            "  service: station_backend\n  tag_variable: TAG\n",
            "app.tag_variable: not used",
        ),
    ];
    for (from, to, expected) in cases {
        let e = err(&swarm.replacen(from, to, 1), &[]);
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
}

#[test]
fn a_kubernetes_database_service_is_a_pod_to_exec_into() {
    let k8s = MINIMAL
        .replace(
            "runtime: shell\n  commands: { deploy: \"./run {tag}\", current_tag: \"cat tag\" }",
            "runtime: kubernetes\n  kubernetes: { namespace: spade, deployments: [api], container: app, image: ghcr.io/a/b }",
        )
        .replace("database: { host: 127.0.0.1, name: app }", "database: { service: pod/postgres-0, name: app }");
    let c = Config::from_yaml(&k8s, &[]).unwrap();
    assert_eq!(c.database.service.as_deref(), Some("pod/postgres-0"));
    for ok in ["postgres-0", "statefulset/postgres", "statefulset.apps/db.main"] {
        Config::from_yaml(&k8s.replace("pod/postgres-0", ok), &[]).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
    }
    for bad in ["'pod/a b'", "'Pod/x'", "'pod/-x'", "'/x'", "'pod/'", "'pod/x;rm'", "'a/b/c'"] {
        let e = err(&k8s.replace("pod/postgres-0", bad), &[]);
        assert!(e.contains("is not a pod to `kubectl exec` into"), "{bad}: {e}");
    }
}
