use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::config::Additive;
use crate::db::Damage;
use crate::exec::Cmd;
use crate::guard::{Assessment, Engine};
use crate::migrate::{row_name, History};

pub struct Assess;

/// `what` the migrations destroyed, attributed to the migration(s) this deploy applied.
pub fn attribute(destroyed: Vec<String>, names: &[String]) -> Vec<String> {
    destroyed
        .into_iter()
        .map(|what| match names {
            [one] => format!("`{one}` {what}"),
            [] => what,
            many => format!("{what} (by one of {})", many.join(", ")),
        })
        .collect()
}

/// What assess found, for the steps after it and the report.
#[derive(Default)]
pub struct Assessed {
    /// The migration table's rows now.
    pub rows_after: Vec<serde_json::Value>,
    /// The app's status and last log lines, as the runtime reports them.
    pub app_status: String,
    pub app_logs: Option<String>,
    /// The schema's differences from the recorded one.
    pub drift: Vec<String>,
    /// Migrations this deploy applied (what revert undoes, one by one).
    pub applied: usize,
    /// What the migrations destroyed (counted after the run when the decision did not need it).
    pub destroyed: Vec<String>,
    /// What was not counted yet: counted once the run's steps are done.
    pub uncounted: Option<Uncounted>,
    /// Pre-existing tables the deploy touched: a revert must leave their rows as the backup's, and
    /// their lost writes include the migrations' own.
    pub touched: BTreeSet<String>,
    /// What the deploy added to the schema (kept under `rollback.additive: keep`).
    pub added: Vec<String>,
    /// What the migrations renamed (nothing lost: a revert renames it back).
    pub renamed: Vec<String>,
    /// What the new release wrote into what it added (a revert drops it).
    pub discarded: Vec<String>,
}

/// What [`Damage::assess`] was given, kept to count the losses from the backup's rows once the
/// service is back, when the decision did not need them.
pub struct Uncounted {
    pub before: crate::db::Fingerprint,
    pub now: crate::db::Fingerprint,
    pub stats: BTreeMap<String, crate::db::TableStats>,
    pub stats_now: BTreeMap<String, crate::db::TableStats>,
    /// The tables whose rows the counts need.
    pub wanted: BTreeSet<String>,
    /// The migrations this deploy applied.
    pub names: Vec<String>,
    /// What the migrations renamed.
    pub renames: crate::db::Renames,
}

/// What the new release has already written into what it added: a revert would drop it.
/// Counted before any revert runs; a count that cannot be read is said so, not skipped.
async fn discarded(
    w: &crate::world::World,
    before: &crate::db::Fingerprint,
    now: &crate::db::Fingerprint,
    renames: &crate::db::Renames,
) -> Vec<String> {
    use crate::db::{ident, thousands};
    let (tables, columns) = crate::db::additions(before, now, renames);
    let mut out = Vec::new();
    let ours = w.migration_table_key();
    for t in tables.iter().filter(|t| ours.as_deref() != Some(t.as_str())) {
        match w.db.query(&w.db.name, &format!("SELECT count(*) FROM {t};")).await {
            Ok(n) if n.trim() != "0" => {
                out.push(format!("new table {t} holds {} row(s)", thousands(n.trim().parse().unwrap_or(0))))
            }
            Ok(_) => {}
            Err(e) => out.push(format!("new table {t}: rows not counted ({e:#})")),
        }
    }
    for (t, c) in &columns {
        match w.db.query(&w.db.name, &format!("SELECT count({}) FROM {t};", ident(c))).await {
            Ok(n) if n.trim() != "0" => {
                out.push(format!("new column {t}.{c} holds {} value(s)", thousands(n.trim().parse().unwrap_or(0))))
            }
            Ok(_) => {}
            Err(e) => out.push(format!("new column {t}.{c}: values not counted ({e:#})")),
        }
    }
    out
}

/// The migrations among `names` (this deploy applied them) that the release has no down for,
/// read with the code of the deploy's tag. Empty when the tool's reverts are all or nothing. A
/// check that cannot run is an error: the revert's own guard still refuses a missing down.
pub async fn without_down(run: &Run<'_>, names: &[String]) -> Result<Vec<String>> {
    let Some(cmd) = downs_cmd(run) else { return Ok(Vec::new()) };
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let out = crate::exec::run_ok(run.w.exec.as_ref(), &cmd?).await?;
    let lacking = out.lines().map(str::trim).filter(|l| !l.is_empty());
    Ok(match run.w.migrator.history {
        // Only the names asked about count: the output is the release's.
        History::Appends => {
            let lacking: BTreeSet<&str> = lacking.collect();
            names.iter().filter(|n| lacking.contains(n.as_str())).cloned().collect()
        }
        // The one row names only the new head, not the migrations the deploy passed through on
        // the way: the script lists those after the recorded head itself.
        History::HeadOnly => lacking.map(str::to_string).collect(),
    })
}

/// The migrations this deploy applied that have no down (a manual `--path revert` asks before
/// anything runs).
pub async fn release_without_down(run: &Run<'_>) -> Result<Vec<String>> {
    if run.w.migrator.missing_downs.is_none() {
        return Ok(Vec::new());
    }
    let recorded = &run.manifest()?.migrations.rows;
    let names: Vec<String> =
        run.w.migration_rows(&run.w.db.name).await?.iter().filter(|r| !recorded.contains(r)).map(row_name).collect();
    without_down(run, &names).await
}

/// The command that lists the release's migrations without a down, when the tool has one.
fn downs_cmd(run: &Run) -> Option<Result<Cmd>> {
    run.w.migrator.missing_downs.as_ref()?;
    Some(run.code_tag().map(|tag| {
        let recorded = run.manifest.as_ref().map(|m| &m.migrations.rows[..]);
        let script = run.w.migrator.missing_downs_script(tag, run.sha.as_str(), recorded).unwrap_or_default();
        super::tool_cmd(run, "downs", tag, &script)
    }))
}

#[async_trait]
impl StepSpec for Assess {
    fn what(&self, run: &Run) -> String {
        let mut what = "app status and logs; migration table, fingerprint and table statistics vs the recorded ones; \
                        row sums of pre-existing tables the migrations updated or rewrote vs the backup's, when they \
                        can change the decision"
            .to_string();
        if !run.w.migrator.can_revert() {
            what.push_str("; forward-only: a changed database goes straight to restore");
        } else if run.w.migrator.missing_downs.is_some() {
            what.push_str("; the release's migrations without a down: if this deploy applied one, straight to restore");
        }
        what
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let w = run.w;
        let mut out: Vec<Cmd> = [Action::Status, Action::Logs(30)].iter().filter_map(|a| w.runtime.cmd(*a)).collect();
        out.push(w.db.query_cmd(&w.db.name));
        out.extend(downs_cmd(run).and_then(Result::ok));
        out
    }

    fn manual(&self, run: &Run) -> Vec<String> {
        let w = run.w;
        let mut out: Vec<String> =
            [Action::Status, Action::Logs(30)].iter().filter_map(|a| Some(w.runtime.cmd(*a)?.shell_text())).collect();
        if let Some(table) = &w.migrator.table {
            let sql = format!("SELECT * FROM {table} ORDER BY {} DESC LIMIT 5;", w.migrator.order_by);
            out.push(super::psql_line(run, &w.db.name, &sql));
        }
        out.push(format!("{}        # the pre-deploy backup of each deploy, by SHA", run.dg("backups")));
        if let Some(Ok(c)) = downs_cmd(run) {
            out.push(
                "# the release's migrations without a down: if this deploy applied one, restore is the only way back"
                    .into(),
            );
            out.push(c.shell_text());
        }
        out
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        vec![
            "# the fast path is not possible or did not hold, and restore is not allowed by rollback.strategy".into(),
            "# restore the verified pre-deploy backup (the broken database is kept):".into(),
            run.dg(&format!("rollback --sha {} --path restore", run.sha.short())),
        ]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        if let Some(why) = &run.found.migration_left_running {
            anyhow::bail!(
                "the failed migration may still be running ({why}): what assess would read cannot be trusted"
            );
        }
        let w = run.w;
        let mut found = Assessed {
            app_status: w.runtime.status().await.unwrap_or_else(|e| format!("(status failed: {e:#})")),
            ..Assessed::default()
        };
        found.app_logs =
            w.runtime.logs(30).await.ok().map(|l| crate::migrate::strip_control(&l)).filter(|l| !l.trim().is_empty());
        let m = run.manifest()?.clone();
        let rows_now = w.migration_rows(&w.db.name).await?;
        let fp_now = w.db.fingerprint(&w.db.name).await?;
        let applied = w.migrator.applied(&m.migrations.rows, &rows_now);
        let fp_same = m.fingerprint.as_ref() == Some(&fp_now);
        // The rows this deploy added (for a head-only table, the new head).
        let names: Vec<String> = rows_now.iter().filter(|r| !m.migrations.rows.contains(r)).map(row_name).collect();
        let mut a = Assessment {
            db_unchanged: fp_same && rows_now == m.migrations.rows,
            applied: applied.unwrap_or(0),
            history_consistent: applied.is_some() && m.fingerprint.is_some(),
            dirty: w.migrator.failed_state(&w.db, &w.db.name).await.map_or(true, |f| f.is_some()),
            revert_configured: w.migrator.can_revert(),
            no_down: Vec::new(),
            backup_verified: m.verified,
            destroyed: Vec::new(),
            additive_only: false,
            rehearsed_revert_fails: m.rehearsal.as_ref().is_some_and(|r| !r.differences.is_empty()),
            classified_destructive: m.classification.iter().any(|f| f.kind == crate::db::lint::Kind::Destructive)
                && w.config.rollback.destructive == crate::config::Destructive::Restore,
        };
        // Not knowing is not a down: the revert's own guard still refuses a missing one.
        let downs_unread = match without_down(run, &names).await {
            Ok(v) => {
                a.no_down = v;
                None
            }
            Err(e) => Some(e),
        };
        let strategy = run.strategy;
        if let Some(before) = &m.fingerprint {
            found.drift = before.diff(&fp_now);
            let stats_now = w.db.table_stats(&w.db.name).await?;
            let ours = w.migration_table_key();
            let mut stats = m.stats.clone();
            stats.retain(|t, _| m.dumped(t) && ours.as_deref() != Some(t.as_str()));
            // The rows at the backup are read only where they can change the decision: tables
            // whose counters moved, when nothing else already rules the fast path out. Otherwise
            // the counts for the report are read once the service is back (`Run::count_losses`).
            // Renames are told by the catalog's identities, read in this same database.
            let renames = match &m.identities {
                Some(then) => crate::db::Renames::between(then, &w.db.identities(&w.db.name).await?),
                None => crate::db::Renames::default(),
            };
            let mut damage = Damage::assess(before, &fp_now, &stats, &stats_now, &BTreeMap::new(), &renames);
            a.destroyed = attribute(damage.destroyed.clone(), &names);
            a.additive_only = damage.only_added() && damage.suspects.is_empty();
            let keep_possible = w.config.rollback.additive == Additive::Keep
                && damage.only_added()
                && strategy != crate::config::Strategy::Restore;
            let fast_possible = Engine::new(run.mode, strategy).fast_path_blockers(&a).is_empty() || keep_possible;
            if !damage.suspects.is_empty() && !a.db_unchanged && fast_possible {
                let data = run.backup_sums(&damage.suspects).await?;
                damage = Damage::assess(before, &fp_now, &stats, &stats_now, &data, &renames);
                for t in damage.suspects.clone() {
                    let Some(backup) = data.get(&t) else {
                        // Not compared is not unchanged: the revert is not trusted with it.
                        damage.destroyed.push(format!(
                            "rows of {t} were updated or deleted and cannot be compared: the backup holds no rows of it"
                        ));
                        continue;
                    };
                    let (at, columns) = renames.now_at(&t, &backup.columns);
                    let now = w.db.table_sum(&w.db.name, &at, &columns).await?;
                    damage.rows_changed(&t, backup, &now);
                }
                a.destroyed = attribute(damage.destroyed.clone(), &names);
                a.additive_only = damage.only_added();
            } else {
                let wanted = damage.to_count.clone();
                if !wanted.is_empty() && !a.db_unchanged {
                    found.uncounted = Some(Uncounted {
                        before: before.clone(),
                        now: fp_now.clone(),
                        stats: stats.clone(),
                        stats_now: stats_now.clone(),
                        wanted,
                        names: names.clone(),
                        renames: renames.clone(),
                    });
                }
            }
            found.destroyed = a.destroyed.clone();
            found.touched = damage.touched;
            found.discarded = discarded(w, before, &fp_now, &renames).await;
            found.added = damage.added;
            found.renamed = damage.renamed;
        }
        found.applied = a.applied;
        found.rows_after = rows_now;
        let mut detail = if a.db_unchanged {
            "database unchanged since the backup (the migration rolled back as a whole)".to_string()
        } else {
            format!(
                "{} migration(s) applied by this deploy; schema changed in {} place(s)",
                a.applied,
                found.drift.len()
            )
        };
        if !found.renamed.is_empty() {
            detail.push_str(&format!("; renamed, nothing lost: {}", found.renamed.join("; ")));
        }
        if !found.discarded.is_empty() {
            detail.push_str(&format!(
                "; a revert would discard what the new release wrote: {}",
                found.discarded.join("; ")
            ));
        }
        if let Some(e) = downs_unread {
            detail.push_str(&format!("; which migrations have a down could not be read: {e:#}"));
        }
        if a.additive_only && w.config.rollback.additive == Additive::Keep {
            detail.push_str("; the migrations only added: kept (rollback.additive: keep)");
        }
        let blockers = Engine::new(run.mode, strategy).fast_path_blockers(&a);
        if !a.db_unchanged && !blockers.is_empty() {
            detail.push_str(&format!("; fast path not trusted: {}", blockers.join("; ")));
        }
        run.found.assessed = Some(found);
        Ok(Done::Assessed(a, detail))
    }
}
