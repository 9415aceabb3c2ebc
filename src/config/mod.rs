//! `deploy-guard.yml` + `DEPLOY_GUARD_*` environment overrides → one validated [`Config`].
//!
//! Loading never touches the target: a bad config is reported (exit 2) before anything runs.

mod app;
mod env;
mod error;
mod kubernetes;
mod neon;
pub mod size;
mod target;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use crate::model::{Compression, Strategy};

pub use app::{App, Health, RuntimeKind, ShellCommands};
pub use env::SETTINGS;
pub use error::{ConfigError, Origin};
pub use kubernetes::{Kubernetes, MigrateWhere};
pub use neon::{check_id as check_neon_id, Neon, Provider, API_KEY_VAR as NEON_API_KEY};
pub use target::{HostEntry, Rollout, Target};
pub use validate::{check_tag, is_var_ref as validate_var_ref};

/// The whole validated configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Project name: used in backup manifests, the lock key and the report.
    pub project: String,
    #[serde(default)]
    pub target: Target,
    pub app: App,
    pub database: Database,
    #[serde(default)]
    pub migrations: Migrations,
    pub backup: Backup,
    #[serde(default)]
    pub rollback: Rollback,
    #[serde(default)]
    pub github: Github,
    #[serde(default)]
    pub verify: Verify,
    #[serde(default)]
    pub deploy: DeploySettings,
    /// Where each setting was written, for errors found after loading.
    #[serde(skip)]
    pub origin: Origin,
}

/// How a deploy runs.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySettings {
    /// Rehearse every deploy first: restore the verified backup into a scratch database, run the
    /// release's migrations up and down there, and compare; a migration that fails there stops
    /// the deploy before production is touched.
    #[serde(default)]
    pub rehearse: bool,
}

/// The user's own checks that a rollback brought everything back.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Read-only SQL whose results must be the same before the deploy and after a rollback
    /// (`SELECT count(*) FROM users`).
    #[serde(default)]
    pub queries: Vec<String>,
    /// Smoke commands that must exit 0 after a rollback (run where the app runs).
    #[serde(default)]
    pub commands: Vec<String>,
}

/// Reporting on GitHub (needs GITHUB_TOKEN and GITHUB_REPOSITORY, as Actions sets them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Github {
    /// Deployment environment name.
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Create a GitHub deployment with statuses.
    #[serde(default = "yes")]
    pub deployments: bool,
    /// Keep one comment on the pull request (or commit) up to date.
    #[serde(default = "yes")]
    pub comment: bool,
    /// Open an incident issue with a postmortem draft when a deploy is rolled back or stuck.
    #[serde(default = "yes")]
    pub incident: bool,
    /// Put the app's last log lines in incident issues (off: they may carry user data, and the
    /// repository may be public).
    #[serde(default)]
    pub incident_logs: bool,
}

impl Default for Github {
    fn default() -> Self {
        Github {
            environment: default_environment(),
            deployments: true,
            comment: true,
            incident: true,
            incident_logs: false,
        }
    }
}

fn default_environment() -> String {
    "production".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    #[serde(default = "default_engine")]
    pub engine: Engine,
    /// Where the database runs, so `pg_dump`/`psql` run inside it: a compose or swarm service,
    /// or with kubernetes a pod to `kubectl exec` into (`pod/postgres-0`, `statefulset/postgres`).
    pub service: Option<String>,
    /// `postgres://user@host:port/name` for direct access (no password: use PGPASSWORD).
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Database name; `${VAR}` is read from `app.env_file` (or the environment).
    pub name: Option<String>,
    pub user: Option<String>,
    /// Database to connect to for CREATE/RENAME DATABASE and the deploy lock.
    #[serde(default = "default_maintenance_db")]
    pub maintenance_db: String,
    /// Directory holding `pg_dump` and `psql` (else they are looked up on PATH).
    pub bin_dir: Option<String>,
    /// How long one `pg_dump` or `psql` may run (a backup or a restore stream).
    #[serde(default = "default_stream_timeout", with = "humantime_serde")]
    pub stream_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    // One line per preset; its file in src/migrate/ and its line in `migrate::preset`.
    Typeorm,
    NodePgMigrate,
    Knex,
    Drizzle,
    Sqlx,
    Alembic,
    Dbmate,
    Prisma,
    GolangMigrate,
    Goose,
    Command,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Migrations {
    #[serde(default = "default_tool")]
    pub tool: Tool,
    /// Applies pending migrations (`{tag}`, `{sha}` are replaced).
    pub run: Option<String>,
    /// Reverts the most recent migration (run once per migration to revert).
    pub revert: Option<String>,
    /// Prints, one per line, the migrations of the release (named as in the migration table)
    /// that have no down, run with the release's code (`{tag}`, `{sha}` are replaced): a release
    /// that applied one goes straight to restore, and `rollback --path revert` refuses it. The
    /// `prisma` preset knows its own (a migration without `rollback.sql`).
    pub no_down: Option<String>,
    /// Table the tool records applied migrations in.
    pub table: Option<String>,
    /// Column that orders that table.
    pub order_by: Option<String>,
    /// TypeORM data source file (preset `typeorm`).
    pub data_source: Option<String>,
    /// The tool's config file, relative to the app's directory: knexfile (knex), drizzle config
    /// (drizzle), alembic.ini (alembic), schema.prisma (prisma), node-pg-migrate's config file.
    pub config: Option<String>,
    /// The migrations directory, relative to the app's directory (the preset's default if unset).
    pub dir: Option<String>,
    /// Where the pending migrations' SQL can be read before they run, relative to the app's
    /// directory, with `{tag}` (a glob: `releases/{tag}/migrations/*.up.sql`); presets know theirs.
    pub pending_sql: Option<String>,
    /// SQL that prints one line per failed or dirty migration, none when the state is clean
    /// (the preset's own detection if unset), e.g. golang-migrate's
    /// `SELECT version FROM schema_migrations WHERE dirty`.
    pub dirty_sql: Option<String>,
    /// The tool's command that clears that state once a person has checked the schema (printed,
    /// never run), e.g. `migrate force VERSION`.
    pub dirty_clear: Option<String>,
    #[serde(default = "default_migration_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PostgreSQL's `lock_timeout` for the tool's sessions (through PGOPTIONS): a migration that
    /// waits on a lock longer fails, instead of queueing every query behind it.
    #[serde(default, with = "humantime_serde")]
    pub lock_timeout: Option<Duration>,
    /// PostgreSQL's `statement_timeout` for the tool's sessions (through PGOPTIONS).
    #[serde(default, with = "humantime_serde")]
    pub statement_timeout: Option<Duration>,
    /// The rehearsal (`deploy.rehearse`) reports every table lock that blocks reads or writes
    /// and that a migration held longer than this on the copy.
    #[serde(default = "default_lock_warn", with = "humantime_serde")]
    pub lock_warn: Duration,
    /// Where the tool runs: the runner (default) or a Kubernetes Job (`job`).
    #[serde(default, rename = "where")]
    pub location: MigrateWhere,
}

impl Default for Migrations {
    fn default() -> Self {
        Migrations {
            tool: default_tool(),
            run: None,
            revert: None,
            no_down: None,
            table: None,
            order_by: None,
            data_source: None,
            config: None,
            dir: None,
            pending_sql: None,
            dirty_sql: None,
            dirty_clear: None,
            timeout: default_migration_timeout(),
            lock_timeout: None,
            statement_timeout: None,
            lock_warn: default_lock_warn(),
            location: MigrateWhere::Runner,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// `file:///dir` or `s3://bucket/prefix`.
    pub store: String,
    /// `pg_dump` (default) or `neon`: a branch (its manifests stay in `store`).
    #[serde(default)]
    pub provider: Provider,
    pub neon: Option<Neon>,
    /// Where a `file://` store is: on the target host (default; over SSH when `target.host` is
    /// set) or on the machine deploy-guard runs on (`runner`, refused on GitHub-hosted runners).
    #[serde(default)]
    pub store_on: StoreOn,
    /// A second, offsite copy of every verified backup (`s3://bucket/prefix`), verified too.
    pub copy_to: Option<String>,
    /// S3 endpoint URL for non-AWS services (B2, R2, MinIO); omitted → AWS S3.
    pub endpoint: Option<String>,
    /// S3 region; omitted → `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1` with an endpoint.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: on with an endpoint, off for AWS.
    pub path_style: Option<bool>,
    /// Multipart part size (bytes, or `8MiB`); every part but the last has exactly this size.
    #[serde(default = "default_part_size", deserialize_with = "size::deserialize")]
    pub part_size: u64,
    /// Parts uploaded at once; memory is bounded by part_size × parts_in_flight.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: u32,
    /// Server-side encryption passed through to S3: `AES256`, `aws:kms` or `aws:kms:dsse`.
    pub sse: Option<String>,
    /// KMS key for `sse: aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// S3 only: send each part's SHA-256 (`x-amz-checksum-sha256`), which S3 checks and keeps,
    /// and verify a backup by S3's checksum instead of reading it back. Default: on for AWS S3,
    /// off with `endpoint` (some S3-compatible services reject the headers).
    pub checksums: Option<bool>,
    /// Keep at most this many backups (never the newest verified one).
    pub keep: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// `zstd` (default) or `gzip`, optionally with a level (`zstd:5`, `gzip:9`); a bare number
    /// is a gzip level (the older form).
    #[serde(default)]
    pub compression: Compression,
    /// `plain` (default: psql restores it in one transaction) or `directory` (`pg_dump -j` and
    /// `pg_restore -j`, for large databases on servers with cores to spare).
    #[serde(default)]
    pub format: crate::model::Format,
    /// Parallel jobs of `pg_dump` and `pg_restore` with `format: directory`.
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// `stored`: the dump checked on its way to the store, then the stored bytes read back;
    /// `full`: the stored object read back whole and decompressed.
    #[serde(default)]
    pub verify: crate::model::Verify,
}

fn default_jobs() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreOn {
    /// The host the app and database run on: backups outlive the runner.
    #[default]
    Target,
    /// The machine deploy-guard runs on.
    Runner,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[serde(default)]
    pub strategy: Strategy,
    /// When the failed deploy's migrations only added (nullable or defaulted columns, tables,
    /// indexes, constraints): `revert` them (default), or `keep` them and redeploy the previous
    /// tag alone — its schema is a subset of the new one.
    #[serde(default)]
    pub additive: Additive,
    /// When the pending migrations' SQL shows destructive statements before the deploy:
    /// `restore` (default: the safe path is planned up front, the revert never trusted) or
    /// `refuse` (exit 4 before the backup, unless `deploy --allow-destructive`).
    #[serde(default)]
    pub destructive: Destructive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Destructive {
    #[default]
    Restore,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Additive {
    #[default]
    Revert,
    Keep,
}

pub(super) fn default_ssh_port() -> u16 {
    22
}
pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(15)
}
pub(super) fn default_command_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_stream_timeout() -> Duration {
    DEFAULT_STREAM_TIMEOUT
}

/// `database.stream_timeout` unless set: how long one dump or restore may take.
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);
fn default_engine() -> Engine {
    Engine::Postgres
}
fn default_maintenance_db() -> String {
    "postgres".into()
}
fn default_tool() -> Tool {
    Tool::Command
}
fn default_lock_warn() -> Duration {
    Duration::from_secs(5)
}

fn default_migration_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_part_size() -> u64 {
    8 << 20
}
fn default_parts_in_flight() -> u32 {
    4
}

/// Where the config came from, for messages.
pub const DEFAULT_FILE: &str = "deploy-guard.yml";

impl Config {
    /// Loads `path` (or `./deploy-guard.yml`), applies `DEPLOY_GUARD_*` overrides from `vars`,
    /// then validates. Every error is a [`ConfigError`] naming the setting and where it is.
    pub fn load(path: Option<&Path>, vars: &[(String, String)]) -> Result<Config> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_FILE), false),
        };
        let missing = |why: String| ConfigError {
            message: format!(
                "{why}; run `deploy-guard init` to write one for this repository, or pass --config FILE \
                 (examples/ has one per setup)"
            ),
            key: None,
            file: Some(file.display().to_string()),
            line: None,
            column: None,
            variable: None,
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                if !env::has_overrides(vars) {
                    let dir = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into());
                    return Err(missing(format!("not found in {dir}, and no DEPLOY_GUARD_* settings")).into());
                }
                String::new()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing("not found".into()).into()),
            Err(e) => return Err(missing(format!("cannot be read ({e})")).into()),
        };
        Self::parse(Origin::new(Some(&file), &text), vars)
    }

    /// Parses YAML text with overrides; the core of [`Config::load`].
    pub fn from_yaml(text: &str, vars: &[(String, String)]) -> Result<Config> {
        Self::parse(Origin::new(None, text), vars)
    }

    fn parse(mut origin: Origin, vars: &[(String, String)]) -> Result<Config> {
        let text = origin.text().to_string();
        let mut value: serde_yaml::Value = if text.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(&text).map_err(|e| origin.syntax(&e))?
        };
        if !value.is_mapping() {
            return Err(origin
                .error(
                    None,
                    "the config must be a mapping of sections (project, target, app, database, migrations, backup, rollback)",
                )
                .into());
        }
        origin.set_from_env(env::apply_overrides(&mut value, vars).map_err(|e| *e)?);
        let mut config: Config = serde_path_to_error::deserialize(value.clone())
            .map_err(|e| origin.serde_error(&e.path().to_string(), &e.into_inner().to_string(), &value))?;
        let checked = config.validate().and_then(|()| config.validate_runner(vars));
        if let Err(e) = checked {
            return Err(origin.rule_error(&format!("{e:#}")).into());
        }
        config.origin = origin;
        Ok(config)
    }

    /// A [`ConfigError`] about `key`, found after loading (a `${VAR}` that is not set on the target),
    /// as a usage error (exit 2).
    pub fn error(&self, key: &str, message: impl Into<String>) -> anyhow::Error {
        crate::model::Usage(self.origin.error(Some(key), message).into()).into()
    }

    /// True when `backup.store` is a directory reached over the target connection.
    pub fn store_on_target(&self) -> bool {
        self.target.host.is_some()
            && self.backup.store_on == StoreOn::Target
            && matches!(crate::model::StoreUrl::parse(&self.backup.store), Ok(crate::model::StoreUrl::Dir(_)))
    }

    /// True when commands run on this machine (no `target.host`).
    pub fn is_local(&self) -> bool {
        self.target.host.is_none()
    }
}

/// The process environment as (name, value) pairs, for [`Config::load`].
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

#[cfg(test)]
mod tests;
