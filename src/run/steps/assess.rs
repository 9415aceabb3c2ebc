use anyhow::Result;
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::app::Action;
use crate::exec::Cmd;
use crate::guard::{Assessment, Engine};

pub struct Assess;

#[async_trait]
impl StepSpec for Assess {
    fn what(&self, _run: &Run) -> String {
        "app status and logs, migration table and fingerprint vs the recorded ones".into()
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let w = run.w;
        let mut out: Vec<Cmd> = [Action::Status, Action::Logs(30)].iter().filter_map(|a| w.runtime.cmd(*a)).collect();
        out.push(w.db.query_cmd(&w.db.name));
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
        let w = run.w;
        run.app_status = Some(w.runtime.status().await.unwrap_or_else(|e| format!("(status failed: {e:#})")));
        run.app_logs = w.runtime.logs(30).await.ok().filter(|l| !l.trim().is_empty());
        let m = run.manifest()?.clone();
        let rows_now = w.migration_rows(&w.db.name).await?;
        let fp_now = w.db.fingerprint(&w.db.name).await?;
        let applied = w.migrator.applied(&m.migrations.rows, &rows_now);
        let fp_same = m.fingerprint.as_ref() == Some(&fp_now);
        if let Some(before) = &m.fingerprint {
            run.drift = before.diff(&fp_now);
        }
        let a = Assessment {
            db_unchanged: fp_same && rows_now == m.migrations.rows,
            applied: applied.unwrap_or(0),
            history_consistent: applied.is_some() && m.fingerprint.is_some(),
            dirty: w.migrator.failed_state(&w.db, &w.db.name).await.map_or(true, |f| f.is_some()),
            revert_configured: w.migrator.can_revert(),
            backup_verified: m.verified,
        };
        run.applied = a.applied;
        run.rows_after = Some(rows_now);
        let mut detail = if a.db_unchanged {
            "database unchanged since the backup (the migration rolled back as a whole)".to_string()
        } else {
            format!("{} migration(s) applied by this deploy; schema changed in {} place(s)", a.applied, run.drift.len())
        };
        let blockers = Engine::new(run.mode, w.config.rollback.strategy).fast_path_blockers(&a);
        if !a.db_unchanged && !blockers.is_empty() {
            detail.push_str(&format!("; fast path not trusted: {}", blockers.join("; ")));
        }
        Ok(Done::Assessed(a, detail))
    }
}
