//! PostgreSQL through its own client tools (`psql`, `pg_dump`) run by the [`Executor`]: so the
//! same code works on this machine, over SSH, or inside a compose service.

mod content;
mod damage;
pub mod deploy_lock;
mod fingerprint;
mod identity;
pub mod lint;
pub mod locks;
mod lost;
pub mod psql;
mod restore;
pub mod sql;

pub use deploy_lock::{HeldBy, Holder, LockGuard};

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::exec::{self, quote, Cmd, Executor};
use crate::model::Format;

pub use crate::model::ConnInfo;
pub use content::{copy_header, safe_ident_list, unquote, DumpTables, RowSum, Sums, TableStats};
pub use damage::{additions, thousands, Damage};
pub use fingerprint::Fingerprint;
pub use identity::{Identities, Renames};
pub use lost::apart::{Apart, Differing, Held};
pub use lost::{copy_unescape, Shape, TableLoss};
pub use psql::Psql;
pub use restore::RestoreReport;
pub use sql::{ident, literal};

/// A table's rows: the planner's estimate, or an exact count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowCount {
    pub rows: i64,
    pub estimate: bool,
}

/// A PostgreSQL server reached by running its client tools through an executor.
#[derive(Clone)]
pub struct Postgres {
    exec: Arc<dyn Executor>,
    bin_dir: Option<String>,
    conn: ConnInfo,
    /// The live database the deploy changes.
    pub name: String,
    /// Database for CREATE/RENAME DATABASE and the deploy lock.
    pub maintenance_db: String,
    /// Runs the client tools inside a container (`docker compose … exec -T SERVICE`).
    inside: Option<String>,
    /// How long one `pg_dump` or `psql` may run (a dump or a restore streams for that long).
    stream_timeout: std::time::Duration,
    /// `pg_dump -j` / `pg_restore -j` for directory-format backups (`backup.jobs`).
    jobs: u32,
    /// The psql that restores, once asked.
    psql: tokio::sync::OnceCell<Psql>,
    /// Databases reached at an endpoint of their own (a Neon branch), by the name the steps
    /// know them by.
    endpoints: Arc<std::sync::RwLock<std::collections::BTreeMap<String, Endpoint>>>,
    /// The live database is itself at this endpoint ([`Postgres::at_endpoint`]).
    own: Option<Endpoint>,
}

/// A database on another server: a Neon branch's compute endpoint, as its connection URI says.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct Endpoint {
    /// Host, port, role and the database's own name there.
    pub conn: ConnInfo,
    /// The role's password: only ever in the command's environment (PGPASSWORD).
    pub password: Option<String>,
}

/// The temporary directories of this process's directory-format dumps and restores, where
/// `pg_dump` and `pg_restore` run, before `mktemp`'s suffix: named for this process, so that
/// removing what a killed command left never touches another run's.
fn work_dir() -> &'static str {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("${{TMPDIR:-/var/tmp}}/deploy-guard-{}-{t:x}", std::process::id())
    })
}

impl Postgres {
    pub fn new(
        exec: Arc<dyn Executor>,
        bin_dir: Option<String>,
        conn: ConnInfo,
        name: String,
        maintenance_db: String,
    ) -> Postgres {
        Postgres {
            exec,
            bin_dir,
            conn,
            name,
            maintenance_db,
            inside: None,
            stream_timeout: crate::config::DEFAULT_STREAM_TIMEOUT,
            jobs: 2,
            psql: tokio::sync::OnceCell::new(),
            endpoints: Default::default(),
            own: None,
        }
    }

    /// The database at `endpoint` as the live one (a Neon branch to dump), its tools run on this
    /// machine when the target is remote (see [`Postgres::executor_for`]).
    pub fn at_endpoint(&self, endpoint: &Endpoint) -> Result<Postgres> {
        let mut p = Postgres::new(
            if self.exec.remote() { Arc::new(exec::Local) } else { self.exec.clone() },
            if self.exec.remote() { None } else { self.bin_dir.clone() },
            endpoint.conn.clone(),
            endpoint.conn.dbname.clone().context("the endpoint names no database")?,
            self.maintenance_db.clone(),
        )
        .stream_timeout(self.stream_timeout)
        .jobs(self.jobs);
        p.own = Some(endpoint.clone());
        Ok(p)
    }

    /// From now on, `alias` names the database at `endpoint` in every query (a Neon branch).
    pub fn reach(&self, alias: &str, endpoint: Endpoint) {
        self.endpoints.write().expect("endpoints").insert(alias.to_string(), endpoint);
    }

    /// The role the tools connect as, when the config names one.
    pub fn conn_user(&self) -> Option<String> {
        self.conn.user.clone()
    }

    /// The endpoint `alias` names, if it names one.
    pub fn endpoint_of(&self, alias: &str) -> Option<Endpoint> {
        self.endpoints.read().expect("endpoints").get(alias).cloned()
    }

    /// Whether `alias` names a database at an endpoint of its own.
    pub fn is_elsewhere(&self, alias: &str) -> bool {
        self.endpoints.read().expect("endpoints").contains_key(alias)
    }

    /// The version of the psql that restores (on the target, or in its container); asked once.
    pub async fn psql(&self) -> Result<Psql> {
        let asked = self.psql.get_or_try_init(|| async {
            let out =
                exec::run_ok(self.exec.as_ref(), &self.version_cmd("psql").timeout(std::time::Duration::from_secs(60)))
                    .await?;
            Psql::parse(&out).with_context(|| format!("psql --version printed {:?}, not a version", out.trim()))
        });
        Ok(*asked.await?)
    }

    /// How long one dump or restore may take.
    pub fn stream_deadline(&self) -> std::time::Duration {
        self.stream_timeout
    }

    /// Bounds every `pg_dump` and `psql` run (`database.stream_timeout`): generous, as a dump or
    /// a restore of a large database streams for hours, but finite.
    pub fn stream_timeout(mut self, t: std::time::Duration) -> Postgres {
        self.stream_timeout = t;
        self
    }

    /// Parallel jobs of `pg_dump` and `pg_restore` for directory-format backups.
    pub fn jobs(mut self, jobs: u32) -> Postgres {
        self.jobs = jobs.max(1);
        self
    }

    /// Runs `psql` and `pg_dump` through `prefix` (e.g. `docker compose -f F exec -T db`), with
    /// the connection settings passed inside it.
    pub fn inside(mut self, prefix: String) -> Postgres {
        self.inside = Some(prefix);
        self
    }

    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.exec
    }

    /// Where a query of `db` runs: a database at an endpoint of its own (a Neon branch) is read
    /// from this machine, so its password travels only in a local process's environment, never
    /// in a script sent to the target.
    pub fn executor_for(&self, db: &str) -> Arc<dyn Executor> {
        match self.exec.remote() && self.is_elsewhere(db) {
            true => Arc::new(exec::Local),
            false => self.exec.clone(),
        }
    }

    /// The path of a client tool (`pg_dump`, `psql`), quoted for the shell.
    pub fn tool(&self, name: &str) -> String {
        if self.inside.is_some() {
            return name.to_string();
        }
        match &self.bin_dir {
            Some(dir) => quote(&format!("{}/{name}", dir.trim_end_matches('/'))),
            None => name.to_string(),
        }
    }

    /// `tool_line` with the connection settings: as the command's environment, or inside the
    /// container's command line when the tools run in one.
    fn with_conn(&self, label: &str, tool_line: String) -> Cmd {
        self.with_conn_at(label, tool_line, None)
    }

    /// [`Self::with_conn`] to `endpoint` when given (its password in PGPASSWORD).
    fn with_conn_at(&self, label: &str, tool_line: String, endpoint: Option<&Endpoint>) -> Cmd {
        let endpoint = endpoint.or(self.own.as_ref());
        let conn = endpoint.map_or(&self.conn, |e| &e.conn);
        let mut env = vec![("PGCONNECT_TIMEOUT".to_string(), "10".to_string())];
        if let Some(h) = &conn.host {
            env.push(("PGHOST".into(), h.clone()));
        }
        if let Some(p) = conn.port {
            env.push(("PGPORT".into(), p.to_string()));
        }
        if let Some(u) = &conn.user {
            env.push(("PGUSER".into(), u.clone()));
        }
        if let Some(m) = conn.sslmode {
            env.push(("PGSSLMODE".into(), m.as_str().into()));
        }
        if let Some(e) = endpoint {
            env.extend(e.password.clone().map(|p| ("PGPASSWORD".to_string(), p)));
        }
        let cmd = match &self.inside {
            Some(prefix) => {
                let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
                Cmd::new(label, format!("exec {prefix} env {} {tool_line}", vars.join(" ")))
            }
            None => Cmd { env, ..Cmd::new(label, format!("exec {tool_line}")) },
        };
        cmd.timeout(self.stream_timeout)
    }

    /// libpq variables naming the live database, and `DATABASE_URL` (the same, as most tools read
    /// it). No password: libpq reads PGPASSWORD from the environment.
    fn conn_vars(&self) -> Vec<(&'static str, String)> {
        let url = crate::model::ConnInfo { dbname: Some(self.name.clone()), ..self.conn.clone() }.to_url();
        let env = [
            ("PGDATABASE", Some(self.name.clone())),
            ("PGHOST", self.conn.host.clone()),
            ("PGPORT", self.conn.port.map(|p| p.to_string())),
            ("PGUSER", self.conn.user.clone()),
            ("PGSSLMODE", self.conn.sslmode.map(|m| m.as_str().to_string())),
            ("DATABASE_URL", Some(url)),
        ];
        env.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    }

    /// [`Self::conn_vars`] for the app's migration tool on a local target; those the environment
    /// already sets are left alone.
    pub fn conn_env(&self) -> Vec<(String, String)> {
        self.conn_vars()
            .into_iter()
            .filter(|(k, _)| std::env::var_os(k).is_none())
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// [`Self::conn_vars`] as a shell prelude for the tool on the target: each set only where the
    /// target's environment lacks it.
    pub fn conn_defaults_sh(&self) -> String {
        self.conn_vars()
            .into_iter()
            .map(|(k, v)| format!("[ -n \"${{{k}:-}}\" ] || {k}={}; export {k}; ", quote(&v)))
            .collect()
    }

    /// `psql` on `db` reading SQL from stdin; stops at the first error.
    pub fn psql_cmd(&self, label: &str, db: &str, extra: &str) -> Cmd {
        let endpoint = self.endpoints.read().expect("endpoints").get(db).cloned();
        let db = endpoint.as_ref().and_then(|e| e.conn.dbname.as_deref()).unwrap_or(db);
        // Read from this machine when the target is remote (see `executor_for`): its own psql.
        let psql = if endpoint.is_some() && self.exec.remote() { "psql".to_string() } else { self.tool("psql") };
        let line = format!("{psql} -X -q --no-password -v ON_ERROR_STOP=1 {extra} -d {}", quote(db));
        self.with_conn_at(label, line, endpoint.as_ref())
    }

    /// `TOOL --version`, run where the tool runs (on the target, or inside the container).
    pub fn version_cmd(&self, tool: &str) -> Cmd {
        self.with_conn(tool, format!("{} --version", self.tool(tool)))
    }

    /// `pg_dump` of the live database as plain SQL on stdout.
    pub fn dump_cmd(&self) -> Cmd {
        let line = format!("{} --no-password --format=plain -d {}", self.tool("pg_dump"), quote(&self.name));
        self.with_conn("pg_dump", line)
    }

    /// The live database dumped in `format` on stdout: plain SQL, or a tar of the directory
    /// format (`toc.dat` first, as the backup's `PlainView` reads it), dumped by
    /// `pg_dump -j` into a temporary directory beside pg_dump (it needs the dump's size free
    /// there) that is removed when the tar is written.
    pub fn dump_cmd_for(&self, format: Format) -> Cmd {
        if format == Format::Plain {
            return self.dump_cmd();
        }
        let script = format!(
            "{} --no-password --format=directory --compress=0 --jobs={} -f \"$d/dump\" -d {}; cd \"$d/dump\"; \
             {{ echo toc.dat; ls | grep -v -x toc.dat || true; }} | tar -c -f - -T -",
            self.tool("pg_dump"),
            self.jobs,
            quote(&self.name),
        );
        self.in_work_dir("pg_dump", &script)
    }

    /// [`Self::dump_cmd_for`] compressed on the target by the shell filter `compress` (labelled
    /// `label`): the link carries compressed bytes. Fails when either fails.
    pub fn dump_cmd_packed(&self, format: Format, label: &str, compress: &str) -> Cmd {
        let dump = self.dump_cmd_for(format);
        let script = exec::pipeline(("pg_dump", &dump.script), (label, compress));
        Cmd { label: format!("pg_dump | {label}"), script, ..dump }
    }

    /// What restores a dump in `format` from stdin into `db`: `psql` in one transaction for
    /// plain SQL ([`Self::restore_cmd`]); for the directory format's tar, unpacked into a
    /// temporary directory (removed after), `pg_restore -j` stopping at the first error.
    pub fn restore_cmd_for(&self, format: Format, db: &str, restricted: bool) -> Cmd {
        if format == Format::Plain {
            return self.restore_cmd(db, restricted);
        }
        // What tar unpacked is looked at before pg_restore opens a file of it: only regular
        // files with the names pg_dump writes, lists of large objects naming only those (the
        // stream was checked on its way here too, but not when restored in place on the target).
        let script = format!(
            "tar -x -f - -C \"$d\"; bad=$(find \"$d\" -mindepth 1 ! \\( -type f \\( -name toc.dat -o -name '[0-9]*.dat' \
             -o -name 'blob_[0-9]*.dat' -o -name 'blobs*.toc' \\) \\) -print | head -n 1); \
             if [ -n \"$bad\" ]; then echo \"refusing to restore: ${{bad#$d/}} is not a file pg_dump writes\" >&2; exit 1; fi; \
             if grep -q -v -E '^[0-9]+ blob_[0-9]+\\.dat$' \"$d\"/blobs*.toc 2>/dev/null; then \
             echo 'refusing to restore: a list of large objects names a file pg_dump does not write' >&2; exit 1; fi; \
             {} --no-password --exit-on-error --jobs={} -d {} \"$d\"",
            self.tool("pg_restore"),
            self.jobs,
            quote(db),
        );
        self.in_work_dir("pg_restore", &script)
    }

    /// `script` run by `sh` where the client tools run (on the target, or in their container).
    fn sh_cmd(&self, label: &str, script: &str) -> Cmd {
        self.with_conn(label, format!("sh -c {}", quote(script)))
    }

    /// [`Self::sh_cmd`] of `script` with `$d` a fresh temporary directory of this process's,
    /// removed when the script ends; it stops at the first command that fails.
    fn in_work_dir(&self, label: &str, script: &str) -> Cmd {
        let dir = work_dir();
        self.sh_cmd(label, &format!("set -e; d=$(mktemp -d \"{dir}.XXXXXX\"); trap 'rm -rf \"$d\"' EXIT; {script}"))
    }

    /// Removes what a directory-format dump or restore of this run left in its temporary
    /// directory: its own `trap` removes it, but not when the command was killed (a timeout, a
    /// restore whose input was refused half way). Only this process's directories are named.
    pub async fn remove_work_dirs(&self) {
        let _shield = exec::cancel::shield();
        let cmd = self
            .sh_cmd("remove temporary dump directories", &format!("rm -rf \"{}\".*", work_dir()))
            .timeout(std::time::Duration::from_secs(60));
        if let Err(e) = exec::run_ok(self.exec.as_ref(), &cmd).await {
            tracing::warn!("could not remove the temporary dump directory {}.*: {e:#}", work_dir());
        }
    }

    /// Bytes free where directory-format dumps and restores unpack (`$TMPDIR`, else
    /// `/var/tmp`), as `pg_dump` and `pg_restore` see it (on the target, or in their container).
    pub async fn work_dir_free(&self) -> Result<u64> {
        let script = "df -P -k \"${TMPDIR:-/var/tmp}\" | awk 'NR == 2 { print $4 }'";
        let cmd = self.sh_cmd("df", script).timeout(std::time::Duration::from_secs(60));
        let out = exec::run_ok(self.exec.as_ref(), &cmd).await?;
        let kib: u64 = out.trim().parse().with_context(|| format!("df printed {:?}, not a size", out.trim()))?;
        Ok(kib * 1024)
    }

    /// The live database's tables' bytes on disk (rows and TOAST, no indexes): about what a
    /// dump of it takes.
    pub async fn table_bytes(&self) -> Result<u64> {
        let sql = "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema');";
        let out = self.query(&self.name, sql).await?;
        out.trim().parse().with_context(|| format!("unexpected psql output: {out:.200}"))
    }

    /// [`Self::restore_cmd_for`] fed by `source`, a shell command on the target that writes the
    /// dump (a decompressor reading stdin or a file).
    pub fn restore_file_cmd(&self, db: &str, format: Format, label: &str, source: &str, restricted: bool) -> Cmd {
        let restore = self.restore_cmd_for(format, db, restricted);
        let script = exec::pipeline((label, source), (&restore.label, &restore.script));
        Cmd { label: format!("{label} | {} restore", restore.label), script, ..restore }
    }

    /// `psql` on `db` that runs the SQL on its stdin and prints tuples only, unaligned: every
    /// query deploy-guard makes.
    pub fn query_cmd(&self, db: &str) -> Cmd {
        self.psql_cmd("psql", db, "-A -t")
    }

    /// `psql` that restores plain SQL from stdin into `db` in one transaction, stopping at the
    /// first error. `restricted` (a psql that has it, [`Psql::restricts`]): psql runs restricted
    /// under a key made where it runs, for this restore alone, after pg_dump's own `\restrict`
    /// lines were taken out ([`psql::STRIP_RESTRICT`]): a meta-command in the stream is an error.
    pub fn restore_cmd(&self, db: &str, restricted: bool) -> Cmd {
        const ARGS: &str = "--single-transaction -o /dev/null";
        if !restricted {
            return self.psql_cmd("psql restore", db, ARGS);
        }
        let psql = format!(
            "{} -X -q --no-password -v ON_ERROR_STOP=1 {ARGS} -c \"\\\\restrict $k\" -f - -d {}",
            self.tool("psql"),
            quote(db)
        );
        let strip = format!("awk {}", quote(psql::STRIP_RESTRICT));
        let script = format!(
            "k=$(od -An -N16 -tx1 /dev/urandom | tr -dc 0-9a-f); {}",
            exec::pipeline(("strip the dump restrict lines", &strip), ("psql restore", &psql))
        );
        self.sh_cmd("psql restore", &script)
    }

    /// Runs `sql` on `db`; returns what it printed (unaligned, tuples only).
    pub async fn query(&self, db: &str, sql: &str) -> Result<String> {
        let cmd = self.query_cmd(db);
        let out = exec::capture_with_input(self.executor_for(db).as_ref(), &cmd, sql.as_bytes()).await?;
        out.exit.check(&format!("psql on database {db}"))?;
        Ok(out.stdout.trim_end_matches('\n').to_string())
    }

    /// Runs `sql` that returns one JSON value.
    pub async fn query_json(&self, db: &str, sql: &str) -> Result<Value> {
        let text = self.query(db, sql).await?;
        serde_json::from_str(text.trim()).with_context(|| format!("unexpected psql output: {:.200}", text))
    }

    /// The server's version, e.g. "15.4"; fails when the database cannot be reached.
    pub async fn server_version(&self, db: &str) -> Result<String> {
        self.query(db, "SHOW server_version;").await.map(|s| s.trim().to_string())
    }

    pub async fn database_exists(&self, db: &str) -> Result<bool> {
        let sql = format!("SELECT count(*) FROM pg_database WHERE datname = {};", literal(db));
        Ok(self.query(&self.maintenance_db, &sql).await?.trim() == "1")
    }

    /// The rows of the migration table ordered by `order_by`, as JSON objects (empty when the
    /// table does not exist yet).
    pub async fn migration_rows(&self, db: &str, table: &str, order_by: &str) -> Result<Vec<Value>> {
        let exists = self
            .query(db, &format!("SELECT to_regclass({}) IS NOT NULL;", literal(table)))
            .await
            .with_context(|| format!("cannot read the migration table {table}"))?;
        if exists.trim() != "t" {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT coalesce(json_agg(row_to_json(t) ORDER BY t.{}), '[]'::json) FROM {} t;",
            ident(order_by),
            table.split('.').map(ident).collect::<Vec<_>>().join(".")
        );
        match self.query_json(db, &sql).await.with_context(|| format!("cannot read the migration table {table}"))? {
            Value::Array(rows) => Ok(rows),
            other => bail!("migration table {table}: unexpected result {other}"),
        }
    }

    /// The schema fingerprint of `db` (see [`Fingerprint`]).
    pub async fn fingerprint(&self, db: &str) -> Result<Fingerprint> {
        let v =
            self.query_json(db, fingerprint::SQL).await.with_context(|| format!("cannot fingerprint database {db}"))?;
        Fingerprint::from_json(v)
    }

    /// The catalog identities of `db`'s tables, columns, indexes and constraints (see [`Identities`]).
    pub async fn identities(&self, db: &str) -> Result<Identities> {
        let v =
            self.query_json(db, identity::SQL).await.with_context(|| format!("cannot read the identities in {db}"))?;
        serde_json::from_value(v).context("the identities query returned an unexpected shape")
    }

    /// Row count and md5 of every user table's rows (sorted), for "the data is intact" checks.
    pub async fn content_checksums(&self, db: &str) -> Result<std::collections::BTreeMap<String, (i64, String)>> {
        let tables = self
            .query_json(
                db,
                "SELECT coalesce(json_agg(format('%I.%I', n.nspname, c.relname) ORDER BY 1), '[]') \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') \
                 AND n.nspname NOT LIKE 'pg_toast%';",
            )
            .await?;
        let names: Vec<String> = serde_json::from_value(tables)?;
        let mut out = std::collections::BTreeMap::new();
        for name in names {
            let sql = format!(
                "SELECT json_build_array(count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))) FROM {name} t;"
            );
            let v: (i64, String) = serde_json::from_value(self.query_json(db, &sql).await?)?;
            out.insert(name, v);
        }
        Ok(out)
    }

    /// How many rows each of `tables` holds in `db` (None: no such table there), see
    /// [`sql::row_counts`].
    pub async fn row_counts(
        &self,
        db: &str,
        tables: &[String],
    ) -> Result<std::collections::BTreeMap<String, Option<RowCount>>> {
        if tables.is_empty() {
            return Ok(Default::default());
        }
        let v = self.query_json(db, &sql::row_counts(tables)).await.context("counting the rows at stake")?;
        serde_json::from_value(v).context("counting the rows at stake: unexpected result")
    }
}

/// `BEGIN READ ONLY; query; ROLLBACK;`: the query of a setting (named in the error), one
/// statement, which cannot change anything.
pub fn read_only(setting: &str, query: &str) -> Result<String> {
    let q = query.trim().trim_end_matches(';').trim();
    if q.is_empty() || q.contains(';') {
        bail!("{setting}: {query:?} must be exactly one SQL statement");
    }
    Ok(format!("BEGIN TRANSACTION READ ONLY;\n{q};\nROLLBACK;\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn one_statement_read_only() {
        assert!(read_only("verify.queries", "SELECT count(*) FROM users;")
            .unwrap()
            .starts_with("BEGIN TRANSACTION READ ONLY"));
        let e = read_only("verify.queries", "COMMIT; DELETE FROM users").unwrap_err().to_string();
        assert!(e.starts_with("verify.queries: "), "{e}");
        assert!(read_only("migrations.dirty_sql", "  ").is_err());
    }

    #[test]
    fn the_tools_connection_defaults_leave_what_the_target_sets_alone() {
        let conn = ConnInfo {
            host: Some("db.internal".into()),
            port: Some(5433),
            user: Some("app".into()),
            ..Default::default()
        };
        let pg = Postgres::new(Arc::new(crate::exec::Local), None, conn, "shop's".into(), "postgres".into());
        let script = format!(
            "PGUSER=mine; export PGUSER; {}printf '%s|%s|%s' \"$DATABASE_URL\" \"$PGUSER\" \"$PGDATABASE\"",
            pg.conn_defaults_sh()
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).env_clear().output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "postgresql://app@db.internal:5433/shop%27s|mine|shop's");
    }
}
