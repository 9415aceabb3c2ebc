use anyhow::{Context, Result};
use async_trait::async_trait;

use super::{psql_line, Done, Run, StepSpec};
use crate::db::sql;
use crate::exec::Cmd;

pub struct Swap;

#[async_trait]
impl StepSpec for Swap {
    fn what(&self, run: &Run) -> String {
        if let Some(n) =
            run.w.config.backup.neon.as_ref().filter(|_| run.w.config.backup.provider == crate::config::Provider::Neon)
        {
            return format!(
                "Neon branch restore of {} to the pre-deploy branch, the broken state kept as deploy-guard/failed-{}",
                n.branch_id,
                run.sha.short()
            );
        }
        match run.db_names() {
            Ok(n) => format!("{} → {} (kept), {} → {}", n.live, n.failed, n.scratch, n.live),
            Err(e) => format!("swap the restored database in ({e:#})"),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        vec![run.w.db.query_cmd(&run.w.db.maintenance_db)]
    }

    fn sql(&self, run: &Run) -> Vec<String> {
        if run.w.config.backup.provider == crate::config::Provider::Neon {
            return Vec::new();
        }
        run.db_names().map(|n| sql::swap(&n).to_vec()).unwrap_or_default()
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        if let Some(line) = super::restore::neon_by_hand(run) {
            return vec![
                "# Neon's restore failed or did not finish: see the branches, then restore by hand or rerun".into(),
                format!(
                    "neon branches list --project-id {}",
                    run.w.config.backup.neon.as_ref().map_or("…", |n| n.project_id.as_str())
                ),
                line,
                run.restore_again(&format!("rollback --sha {} --path restore", run.sha.short())),
            ];
        }
        let db = &run.w.db;
        let Ok(n) = run.db_names() else { return Vec::new() };
        vec![
            "# the swap failed: see which databases exist and whether they accept connections".into(),
            psql_line(run, &db.maintenance_db, "SELECT datname, datallowconn FROM pg_database ORDER BY 1;"),
            format!("# if {} is missing but {} exists, finish the swap by hand:", n.live, n.scratch),
            psql_line(run, &db.maintenance_db, &sql::rename(&n.scratch, &n.live)),
            run.restore_again(&format!("rollback --sha {} --path restore", run.sha.short())),
        ]
    }

    fn interruptible(&self) -> bool {
        false
    }

    fn manual(&self, _run: &Run) -> Vec<String> {
        Vec::new() // part of the restore's manual steps
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let names = run.found.restored.clone().context("no scratch database")?;
        if let (Some(n), Some(b)) = (&run.w.neon, run.manifest()?.neon.clone()) {
            run.found.kept_stats = Some(run.w.db.table_stats(&run.w.db.name).await?);
            let started = std::time::Instant::now();
            n.restore(&run.w.db, &b.id, None, &names.failed).await?;
            return Ok(Done::Ok(format!(
                "Neon restored {} in place to the branch {} in {:.1} s (same endpoint, same connection string); the \
                 broken state is kept as the branch {}",
                n.primary,
                b.name,
                started.elapsed().as_secs_f64(),
                names.failed
            )));
        }
        run.w.db.swap(&names).await?;
        Ok(Done::Ok(format!("{} is now the restored backup; the broken one is kept as {}", names.live, names.failed)))
    }
}
