//! `check`: reach every part of the deployment and report each, changing nothing.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::exec::{self, Cmd};
use crate::world::World;

#[derive(Debug, Serialize)]
pub struct CheckLine {
    pub part: String,
    pub ok: bool,
    pub detail: String,
    /// It failed for the config's fault (a file it names is not there): exit 2, not 3.
    #[serde(skip)]
    pub bad_config: bool,
    /// Not looked at: what it needs (the database) could not be reached.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

pub async fn check(w: &World) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let mut add = |part: &str, r: Result<String>| {
        lines.push(match r {
            Ok(detail) => CheckLine { part: part.into(), ok: true, detail, bad_config: false, unknown: false },
            Err(e) => CheckLine {
                part: part.into(),
                ok: false,
                detail: format!("{e:#}"),
                bad_config: e.downcast_ref::<crate::model::Usage>().is_some(),
                unknown: e.downcast_ref::<Unknown>().is_some(),
            },
        })
    };
    add("target", exec::run_ok(w.exec.as_ref(), &Cmd::new("probe", "echo ok")).await.map(|_| w.exec.describe()));
    let server =
        w.db.server_version(&w.db.name).await.with_context(|| format!("database {} is not reachable", w.db.name));
    let server_major = server.as_ref().ok().and_then(|v| major(v));
    // What only the database can tell is unknown, not fine, when it cannot be reached.
    let reached = server.is_ok();
    let unknown = || Err(Unknown.into());
    add("database", server.map(|v| format!("PostgreSQL {v}, database {}", w.db.name)));
    add("pg_dump", tool_version(w, "pg_dump", server_major).await);
    add("psql", tool_version(w, "psql", server_major).await);
    add("restricted", psql_restricted(w).await);
    if w.config.backup.format == crate::model::Format::Directory {
        add("pg_restore", tool_version(w, "pg_restore", server_major).await);
        let room = async {
            let need = w.db.table_bytes().await?;
            let free = crate::backup::room_for(&w.db, need, "a directory-format backup").await?;
            Ok(format!(
                "{} free in $TMPDIR (else /var/tmp) for a directory-format dump of about {}",
                crate::model::human_bytes(free),
                crate::model::human_bytes(need)
            ))
        };
        add("temp space", room.await);
    }
    add(
        "migrations",
        match &w.migrator.table {
            _ if !reached => unknown(),
            Some(t) => w.db.migration_rows(&w.db.name, t, &w.migrator.order_by).await.map(|r| {
                format!(
                    "table {t}: {} rows; revert {}",
                    r.len(),
                    if w.migrator.revert.is_some() {
                        "configured"
                    } else {
                        "NOT configured (rollbacks restore the backup)"
                    }
                )
            }),
            None => Ok("no migration table configured: rollbacks compare fingerprints only".into()),
        },
    );
    if !w.config.verify.queries.is_empty() && !reached {
        add("verify", unknown());
    } else if !w.config.verify.queries.is_empty() {
        add(
            "verify",
            crate::run::steps::checks::query_results(w, &w.db.name)
                .await
                .map(|r| format!("{} verify.queries run read-only", r.len())),
        );
    }
    let tag = w.runtime.current_tag().await.ok().flatten();
    add(
        "tool files",
        match &tag {
            Some(t) => migration_files(w, t).await.map(|_| files_detail(w, t)),
            None => Ok("(no running tag to look in)".into()),
        },
    );
    add(
        "tool state",
        match w.migrator.failed_state(&w.db, &w.db.name).await {
            _ if !reached => unknown(),
            Ok(None) => Ok(format!("{}: no failed or dirty migration", w.migrator.tool().name())),
            Ok(Some(_)) => w.migrator.refuse_failed_state(&w.db, &w.db.name).await.map(|_| String::new()),
            Err(e) => Err(e),
        },
    );
    add("compression", compression_line(w).await);
    add("store", store_line(w, w.store.as_ref()).await);
    if let Some(n) = &w.neon {
        add("neon", n.check().await);
    }
    if let Some(copy) = &w.copy {
        add("offsite copy", store_line(w, copy.as_ref()).await);
    }
    add(
        "lock",
        async {
            let l = w.db.lock(&w.lock_key(), &crate::db::Holder::here("check", None)).await?;
            l.release().await;
            Ok(format!("deploy lock {} free", w.lock_key()))
        }
        .await,
    );
    if let (Some(file), Some(service)) = (&w.config.app.compose_file, &w.config.app.service) {
        add("compose", compose_services(w, file, service).await);
    }
    add("services", w.runtime.check().await);
    add(
        "app",
        w.runtime
            .current_tag()
            .await
            .map(|t| format!("running tag {}", t.unwrap_or_else(|| "(unknown: pass --previous-tag to deploy)".into()))),
    );
    add("health", w.health.probe_once().await.map(|_| format!("healthy now ({})", w.health.describe())));
    // With several hosts, a line per host: reached with its pinned key (as the command started),
    // its runtime's settings and services, the tag it runs and its health.
    for host in w.fleet.hosts().iter().filter(|_| w.fleet.several()) {
        add(&format!("host {}", host.name), host_line(host).await);
    }
    lines
}

async fn host_line(host: &crate::app::Host) -> Result<String> {
    let rt = &host.runtime;
    exec::run_ok(rt.executor(), &Cmd::new("probe", "echo ok")).await?;
    rt.validate().await.context("app")?;
    // The host's own services (compose: each container's state and tag), not only the primary's.
    let services = rt.check().await.context("app")?;
    let tag = rt.current_tag().await?.unwrap_or_else(|| "(unknown)".into());
    let said = format!("reached, key pinned; {services}; running tag {tag}");
    match host.health.probe_once().await {
        Ok(()) => Ok(format!("{}: {said}; healthy", rt.executor().describe())),
        Err(e) => bail!("{said}; NOT healthy: {e:#}"),
    }
}

/// Where the store is, that it is writable, and the room left against the last backup's size.
async fn store_line(w: &World, store: &dyn crate::store::Store) -> Result<String> {
    use crate::model::human_bytes;
    let state = store.check().await?;
    let mut line = format!("{} {state}", store.describe());
    let Some(free) = store.free_space().await? else { return Ok(line) };
    let last = crate::record::list(store)
        .await?
        .checked()
        .into_iter()
        .find(|m| m.project == w.config.project && m.database == w.db.name)
        .map(|m| m.size);
    line.push_str(&format!(", {} free", human_bytes(free)));
    match last {
        Some(size) if free < size => bail!(
            "{line}: the last backup took {}, the next one may not fit; free space there or prune (deploy-guard prune)",
            human_bytes(size)
        ),
        Some(size) => {
            line.push_str(&format!(" (room for about {} backups of {})", free / size.max(1), human_bytes(size)))
        }
        None => {}
    }
    Ok(line)
}

/// The files the migration tool needs are in the code of `tag` (a missing one is a config error
/// naming its setting: exit 2, before anything runs).
pub async fn migration_files(w: &World, tag: &str) -> Result<()> {
    let Some(script) = w.migrator.files_script() else { return Ok(()) };
    let cmd = w
        .runtime
        .tool_cmd("migration files", "deploy-guard-check", tag, &script)
        .timeout(w.config.target.command_timeout);
    let out = exec::capture(w.exec.as_ref(), &cmd).await?;
    let said = out.exit.stderr_tail.trim();
    if out.exit.success() {
        return Ok(());
    }
    if let Some(missing) = said.lines().find(|l| l.ends_with(crate::migrate::MISSING)) {
        return Err(
            crate::model::Usage(anyhow::anyhow!("{missing} (migrations.tool: {})", w.migrator.tool().name())).into()
        );
    }
    // Not a missing file: the check itself could not run (the image, the target).
    out.exit.check("looking for the migration tool's files")
}

fn files_detail(w: &World, tag: &str) -> String {
    let files: Vec<&str> = w.migrator.files.iter().map(|(_, p)| p.as_str()).collect();
    if files.is_empty() {
        format!("{}: nothing to look for", w.migrator.tool().name())
    } else {
        format!("{} in the code of {tag}", files.join(", "))
    }
}

/// docker compose answers and the compose file defines the app's and the database's services.
async fn compose_services(w: &World, file: &str, service: &str) -> Result<String> {
    let base = crate::app::compose::base_command(file, w.config.app.env_file.as_deref());
    let out = exec::run_ok(w.exec.as_ref(), &Cmd::new("compose services", format!("{base} config --services"))).await?;
    let services: Vec<&str> = out.lines().map(str::trim).collect();
    for s in std::iter::once(service).chain(w.config.database.service.as_deref()) {
        if !services.contains(&s) {
            bail!("service {s:?} is not in {file} (it defines: {})", services.join(", "));
        }
    }
    Ok(format!("{file} defines {}", services.join(", ")))
}

async fn tool_version(w: &World, tool: &str, server_major: Option<u32>) -> Result<String> {
    let bin = w.db.tool(tool);
    let out = exec::run_ok(w.exec.as_ref(), &w.db.version_cmd(tool)).await?;
    let version = version_of(&out);
    if let (Some(client), Some(server)) = (major(&version), server_major) {
        if client < server {
            bail!("{bin} is version {version}, older than the server ({server}): install the client of version {server} or newer (database.bin_dir)");
        }
    }
    Ok(format!("{bin} {version}"))
}

/// Whether restores run psql restricted (`db::psql`), and what that means for this setup.
async fn psql_restricted(w: &World) -> Result<String> {
    let p = w.db.psql().await?;
    let signed = crate::record::signing_key_set();
    if !p.restricts() {
        if !signed {
            bail!(
                "psql {p} has no restricted mode (\\restrict): an unsigned backup is not restored with it. Upgrade \
                 psql where restores run (13.22, 14.19, 15.14, 16.10, 17.6 or later), or set DEPLOY_GUARD_MANIFEST_KEY"
            );
        }
        return Ok(format!("psql {p} has no restricted mode: only signed backups are restored"));
    }
    if p.expands_unrestrict() {
        return Ok(format!(
            "psql {p} restores restricted, but expands \\unrestrict's argument (CVE-2026-18408; fixed in 14.24, \
             15.19, 16.15, 17.11, 18.6): the backup filter refuses such lines; upgrading is better"
        ));
    }
    Ok(format!("psql {p} restores restricted"))
}

/// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → `15.18`.
fn version_of(out: &str) -> String {
    out.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit())).unwrap_or("").to_string()
}

/// A part that could not be looked at.
#[derive(Debug)]
struct Unknown;

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown: the database could not be reached (see the database line)")
    }
}

impl std::error::Error for Unknown {}

fn major(v: &str) -> Option<u32> {
    v.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty())?.parse().ok()
}

pub fn render(lines: &[CheckLine]) -> String {
    let mut out = String::new();
    for l in lines {
        let state = match (l.ok, l.unknown) {
            (true, _) => "ok",
            (false, true) => "?",
            (false, false) => "FAIL",
        };
        out.push_str(&format!("{state:<4} {:<11} {}\n", l.part, l.detail));
    }
    let failed = lines.iter().filter(|l| !l.ok && !l.unknown).count();
    out.push_str(&if failed == 0 {
        "all parts reachable; nothing was changed\n".to_string()
    } else {
        format!("{failed} part(s) need attention; nothing was changed\n")
    });
    out
}

/// Where a backup will be compressed, and with what (the target's `zstd` / `gzip`).
async fn compression_line(w: &World) -> Result<String> {
    let wanted = w.config.backup.compression;
    let p = crate::backup::Packing::choose(w.exec.as_ref(), w.config.backup.format, wanted).await?;
    let mut line = format!("backups compressed with {}", p.describe());
    if p.codec != wanted.codec {
        line.push_str(&format!(" (the target has no {}: install it for faster backups)", wanted.codec));
    } else if w.exec.remote() && !p.on_target {
        line.push_str(" (the target has no compressor: the dump crosses the link uncompressed)");
    }
    Ok(line)
}
