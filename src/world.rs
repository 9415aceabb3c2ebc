//! [`World`]: the config and every adapter it names, wired once for every command.

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::app::compose::{self, Compose};
use crate::app::kubernetes::Kubernetes;
use crate::app::swarm::{self, Swarm};
use crate::app::{Health, Runtime, Shell};
use crate::config::{Config, RuntimeKind};
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
    pub exec: Arc<dyn Executor>,
    pub runtime: Box<dyn Runtime>,
    pub health: Health,
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
        let exec: Arc<dyn Executor> = match &config.target.host {
            None => Arc::new(Local),
            Some(_) => Arc::new(Offline(ssh_name(&config))),
        };
        let db = postgres(&config, exec.clone(), |_, v| Ok(v.to_string()))?;
        Self::assemble(config, exec, db)
    }

    /// Builds the adapters and resolves `${VAR}` values on the target.
    pub async fn connect(config: Config) -> Result<World> {
        let exec = executor(&config).await?;
        Self::with_executor(config, exec).await
    }

    /// Like [`World::connect`], with a given executor (tests, simulate).
    pub async fn with_executor(config: Config, exec: Arc<dyn Executor>) -> Result<World> {
        let resolver = Resolver::load(exec.as_ref(), config.app.env_file.as_deref()).await?;
        // A `${VAR}` the target does not set is a config error (exit 2), whatever the command.
        let db = postgres(&config, exec.clone(), |k, v| resolver.resolve(v).map_err(|m| config.error(k, m)))?;
        // `${VAR}` values are hostile until checked: the names derived from them must hold.
        check_live_db_name(&db.name).map_err(|e| config.error("database.name", format!("as resolved: {e:#}")))?;
        if db.maintenance_db == db.name {
            bail!("database.maintenance_db: must not be the live database {:?} (the swap renames it)", db.name);
        }
        Self::assemble(config, exec, db)?.with_neon()
    }

    /// Opens `backup.provider: neon` (its key from the environment) for a world that will call
    /// the API.
    pub fn with_neon(mut self) -> Result<World> {
        self.neon = crate::backup::Neon::open(&self.config, &self.db, &crate::config::process_env())
            .map_err(|e| self.config.error("backup.provider", format!("{e:#}")))?;
        Ok(self)
    }

    fn assemble(config: Config, exec: Arc<dyn Executor>, db: Postgres) -> Result<World> {
        let runtime: Box<dyn Runtime> = match config.app.runtime {
            RuntimeKind::Shell => Box::new(Shell::new(
                exec.clone(),
                config.app.commands.clone(),
                config.app.workdir.clone(),
                config.target.command_timeout,
            )),
            RuntimeKind::Compose => {
                Box::new(Compose::from_config(exec.clone(), &config.app, config.target.command_timeout)?)
            }
            RuntimeKind::Swarm => {
                Box::new(Swarm::from_config(exec.clone(), &config.app, config.target.command_timeout)?)
            }
            RuntimeKind::Kubernetes => Box::new(Kubernetes::from_config(exec.clone(), &config)?),
        };
        Ok(World {
            health: Health::from_config(exec.clone(), &config.app),
            store: store::open(&config, exec.clone())?,
            copy: store::open_copy(&config)?,
            migrator: Migrator::from_config(&config.migrations),
            neon: None,
            runtime,
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

async fn executor(config: &Config) -> Result<Arc<dyn Executor>> {
    match &config.target.host {
        None => Ok(Arc::new(Local)),
        Some(_) => Ok(Arc::new(Ssh::connect(&config.target, &Credentials::from_env()?).await?)),
    }
}

fn ssh_name(config: &Config) -> String {
    let t = &config.target;
    format!("{}@{}:{}", t.user.as_deref().unwrap_or("?"), t.host.as_deref().unwrap_or("?"), t.port)
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
        (Some(service), Some(file)) => pg.inside(format!(
            "{} exec -T {}",
            compose::base_command(file, config.app.env_file.as_deref()),
            crate::exec::quote(service)
        )),
        _ => pg,
    })
}
