//! [`World`]: the config and every adapter it names, wired once for every command.

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::app::compose::{self, Compose};
use crate::app::kubernetes::{self, Kubernetes};
use crate::app::swarm::{self, Swarm};
use crate::app::{Fleet, Health, Host, Runtime, Shell};
use crate::config::{Config, RuntimeKind, Target};
use crate::db::{ConnInfo, Postgres};
use crate::exec::envfile::Resolver;
use crate::exec::ssh::{Credentials, Ssh};
use crate::exec::{Executor, Local};
use crate::migrate::Migrator;
use crate::model::check_live_db_name;
use crate::store::{self, Store};

/// The config and every adapter it names.
pub struct World {
    pub config: Config,
    /// The primary host's executor: migrations, pg_dump and psql run there.
    pub exec: Arc<dyn Executor>,
    /// The primary host's runtime and health check (`fleet.primary()`'s).
    pub runtime: Arc<dyn Runtime>,
    pub health: Arc<Health>,
    /// Every host the app runs on, the primary first.
    pub fleet: Fleet,
    pub db: Postgres,
    pub store: Arc<dyn Store>,
    /// `backup.copy_to`: the offsite copy of every verified backup.
    pub copy: Option<Arc<dyn Store>>,
    pub migrator: Migrator,
    /// `backup.provider: neon` (none in the offline modes, which call no API).
    pub neon: Option<crate::backup::Neon>,
}

impl World {
    /// Builds the adapters without running anything: `${VAR}` values stay unresolved (for
    /// `--dry-run` and `runbook`).
    pub fn offline(config: Config) -> Result<World> {
        let execs: Vec<Arc<dyn Executor>> = match &config.target.host {
            None => vec![Arc::new(Local)],
            Some(_) => config.target.app_hosts().iter().map(|t| Arc::new(Offline(ssh_name(t))) as _).collect(),
        };
        let db = postgres(&config, execs[0].clone(), |_, v| Ok(v.to_string()))?;
        Self::assemble(config, execs, db)
    }

    /// Builds the adapters and resolves `${VAR}` values on the target.
    pub async fn connect(config: Config) -> Result<World> {
        let execs = executors(&config).await?;
        Self::with_executors(config, execs).await
    }

    /// Like [`World::connect`], with a given executor (tests, simulate).
    pub async fn with_executor(config: Config, exec: Arc<dyn Executor>) -> Result<World> {
        Self::with_executors(config, vec![exec]).await
    }

    /// `execs`: one per host of the fleet, the primary first.
    async fn with_executors(config: Config, execs: Vec<Arc<dyn Executor>>) -> Result<World> {
        let exec = execs[0].clone();
        let resolver = Resolver::load(exec.as_ref(), config.app.env_file.as_deref()).await?;
        // A `${VAR}` the target does not set is a config error (exit 2), whatever the command.
        let db = postgres(&config, exec.clone(), |k, v| resolver.resolve(v).map_err(|m| config.error(k, m)))?;
        // `${VAR}` values are hostile until checked: the names derived from them must hold.
        check_live_db_name(&db.name).map_err(|e| config.error("database.name", format!("as resolved: {e:#}")))?;
        if db.maintenance_db == db.name {
            bail!("database.maintenance_db: must not be the live database {:?} (the swap renames it)", db.name);
        }
        Self::assemble(config, execs, db)?.with_neon()
    }

    /// Opens `backup.provider: neon` (its key from the environment) for a world that will call
    /// the API.
    pub fn with_neon(mut self) -> Result<World> {
        self.neon = crate::backup::Neon::open(&self.config, &self.db, &crate::config::process_env())
            .map_err(|e| self.config.error("backup.provider", format!("{e:#}")))?;
        Ok(self)
    }

    /// `execs`: one per host of the fleet, the primary first.
    fn assemble(config: Config, execs: Vec<Arc<dyn Executor>>, db: Postgres) -> Result<World> {
        let targets = config.target.app_hosts();
        let mut hosts = Vec::new();
        for (exec, t) in execs.iter().zip(&targets) {
            let timeout = config.target.command_timeout;
            let runtime: Arc<dyn Runtime> = match config.app.runtime {
                RuntimeKind::Shell => {
                    Arc::new(Shell::new(exec.clone(), config.app.commands.clone(), config.app.workdir.clone(), timeout))
                }
                RuntimeKind::Compose => Arc::new(Compose::from_config(exec.clone(), &config.app, timeout)?),
                RuntimeKind::Swarm => Arc::new(Swarm::from_config(exec.clone(), &config.app, timeout)?),
                RuntimeKind::Kubernetes => Arc::new(Kubernetes::from_config(exec.clone(), &config)?),
            };
            let address = t.host.as_deref().unwrap_or("localhost");
            hosts.push(Host {
                name: t.host_name(),
                ssh: ssh_args(t),
                runtime,
                health: Arc::new(Health::from_config(exec.clone(), &config.app).for_host(address)),
            });
        }
        let fleet = Fleet::new(hosts);
        let exec = execs[0].clone();
        Ok(World {
            runtime: fleet.primary().runtime.clone(),
            health: fleet.primary().health.clone(),
            fleet,
            store: store::open(&config, exec.clone())?,
            copy: store::open_copy(&config)?,
            migrator: Migrator::from_config(&config.migrations),
            neon: None,
            db,
            exec,
            config,
        })
    }

    /// The migration table as the catalog and pg_dump name it (`public.migrations`): its rows are
    /// the tool's bookkeeping, verified on their own, never "data" a deploy destroyed or lost.
    pub fn migration_table_key(&self) -> Option<String> {
        let t = self.migrator.table.as_deref()?;
        Some(if t.contains('.') { t.to_string() } else { format!("public.{t}") })
    }

    /// The migration table's rows in `db` (none when no table is configured).
    pub async fn migration_rows(&self, db: &str) -> Result<Vec<serde_json::Value>> {
        match &self.migrator.table {
            Some(t) => self.db.migration_rows(db, t, &self.migrator.order_by).await,
            None => Ok(Vec::new()),
        }
    }

    /// The deploy lock's key: one deploy at a time per project and database.
    pub fn lock_key(&self) -> String {
        format!("{}/{}", self.config.project, self.db.name)
    }
}

/// The database as this machine reaches it, for the PR check: the one `database.url` (or
/// `database.host` without a compose service) names, e.g. a service container of the job given
/// as `DEPLOY_GUARD_DATABASE_URL`, or any when the target is this machine; never through SSH or
/// a compose service on the target. `${VAR}` values are read from the env file on the target,
/// which the check does not reach: they must be given as `DEPLOY_GUARD_DATABASE_*` instead.
pub fn runner_db(config: &Config) -> Result<Option<Postgres>> {
    let d = &config.database;
    let here = d.url.is_some() || (d.service.is_none() && (d.host.is_some() || config.target.host.is_none()));
    if !here {
        return Ok(None);
    }
    let mut config = config.clone();
    config.database.service = None;
    let pg = postgres(&config, Arc::new(Local), |key, v| {
        if v.contains("${") {
            bail!(
                "{key} is {v:?}, read from the env file on the target, which this command does not reach: set \
                 DEPLOY_GUARD_{} to the value here",
                key.replace('.', "_").to_ascii_uppercase()
            );
        }
        Ok(v.to_string())
    })?;
    check_live_db_name(&pg.name).context("database.name")?;
    Ok(Some(pg))
}

/// One executor per host of the fleet, the primary first. Every host is reached (and its key
/// checked) before anything runs: one that is not refuses the run, named.
async fn executors(config: &Config) -> Result<Vec<Arc<dyn Executor>>> {
    if config.target.host.is_none() {
        return Ok(vec![Arc::new(Local)]);
    }
    let creds = Credentials::from_env()?;
    let targets = config.target.app_hosts();
    let mut out: Vec<Arc<dyn Executor>> = Vec::new();
    for t in &targets {
        match Ssh::connect(t, &creds).await {
            Ok(ssh) => out.push(Arc::new(ssh)),
            Err(e) if targets.len() > 1 => {
                return Err(e.context(format!(
                    "host {} of {} ({}) cannot be used: no host was changed (a host gone for good: take it out of \
                     target.hosts, docs/HOSTS.md)",
                    t.host_name(),
                    targets.len(),
                    targets.iter().map(Target::host_name).collect::<Vec<_>>().join(", ")
                )))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn ssh_name(t: &Target) -> String {
    format!("{}@{}:{}", t.user.as_deref().unwrap_or("?"), t.host.as_deref().unwrap_or("?"), t.port)
}

/// How a person reaches `t` with `ssh`.
fn ssh_args(t: &Target) -> String {
    let dest = format!("{}@{}", t.user.as_deref().unwrap_or("USER"), t.host.as_deref().unwrap_or("localhost"));
    match t.port {
        22 => dest,
        p => format!("-p {p} {dest}"),
    }
}

/// Stands for the target where nothing may run (`--dry-run`, `runbook`, `backups`).
struct Offline(String);

#[async_trait::async_trait]
impl Executor for Offline {
    async fn run(
        &self,
        cmd: &crate::exec::Cmd,
        _: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)>,
        _: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<crate::exec::Exit> {
        bail!("{}: nothing runs on {} in this mode", cmd.label, self.0)
    }

    fn describe(&self) -> String {
        self.0.clone()
    }
}

fn postgres(
    config: &Config,
    exec: Arc<dyn Executor>,
    resolve: impl Fn(&str, &str) -> Result<String>,
) -> Result<Postgres> {
    let d = &config.database;
    let mut conn = match &d.url {
        Some(u) => ConnInfo::parse_url(u)?,
        None => ConnInfo::default(),
    };
    if let Some(h) = &d.host {
        conn.host = Some(resolve("database.host", h)?);
    }
    if let Some(p) = d.port {
        conn.port = Some(p);
    }
    if let Some(u) = &d.user {
        conn.user = Some(resolve("database.user", u)?);
    }
    let name = match (&d.name, &conn.dbname) {
        (Some(n), _) => resolve("database.name", n)?,
        (None, Some(n)) => n.clone(),
        (None, None) => bail!("database.name: required"),
    };
    let pg = Postgres::new(exec, d.bin_dir.clone(), conn, name, d.maintenance_db.clone())
        .stream_timeout(d.stream_timeout)
        .jobs(config.backup.jobs);
    Ok(match (&d.service, &config.app.compose_file) {
        (Some(service), _) if config.app.runtime == RuntimeKind::Swarm => pg.inside(swarm::db_exec_prefix(service)),
        (Some(pod), _) if config.app.runtime == RuntimeKind::Kubernetes => match &config.app.kubernetes {
            Some(k) => pg.inside(kubernetes::db_exec_prefix(k, pod)),
            None => bail!("app.kubernetes: required with app.runtime: kubernetes"),
        },
        (Some(service), Some(file)) => pg.inside(format!(
            "{} exec -T {}",
            compose::base_command(file, config.app.env_file.as_deref()),
            crate::exec::quote(service)
        )),
        _ => pg,
    })
}
