use anyhow::{Context, Result};
use async_trait::async_trait;

use super::{psql_line, Done, Run, StepSpec};
use crate::db::sql;
use crate::exec::Cmd;

pub struct Swap;

#[async_trait]
impl StepSpec for Swap {
    fn what(&self, run: &Run) -> String {
        match run.db_names() {
            Ok(n) => format!("{} → {} (kept), {} → {}", n.live, n.failed, n.scratch, n.live),
            Err(e) => format!("swap the restored database in ({e:#})"),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        vec![run.w.db.query_cmd(&run.w.db.maintenance_db)]
    }

    fn sql(&self, run: &Run) -> Vec<String> {
        run.db_names().map(|n| sql::swap(&n).to_vec()).unwrap_or_default()
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let db = &run.w.db;
        let Ok(n) = run.db_names() else { return Vec::new() };
        vec![
            "# the swap failed: see which databases exist and whether they accept connections".into(),
            psql_line(run, &db.maintenance_db, "SELECT datname, datallowconn FROM pg_database ORDER BY 1;"),
            format!("# if {} is missing but {} exists, finish the swap by hand:", n.live, n.scratch),
            psql_line(run, &db.maintenance_db, &sql::rename(&n.scratch, &n.live)),
            run.dg(&format!("rollback --sha {} --path restore", run.sha.short())),
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
        run.w.db.swap(&names).await?;
        Ok(Done::Ok(format!("{} is now the restored backup; the broken one is kept as {}", names.live, names.failed)))
    }
}
