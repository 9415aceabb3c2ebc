use anyhow::Result;
use async_trait::async_trait;

use super::{psql_line, Done, Run, StepSpec};
use crate::backup;
use crate::db::sql;
use crate::exec::{self, Cmd};
use crate::model::human_bytes;
use crate::model::{Codec, Format};

/// The safe path's first half: the verified backup into a fresh scratch database.
pub struct Restore;

#[async_trait]
impl StepSpec for Restore {
    fn what(&self, run: &Run) -> String {
        if run.w.config.backup.provider == crate::config::Provider::Neon {
            return "nothing to restore into a scratch database: the pre-deploy branch is read where it is".into();
        }
        match run.db_names() {
            Ok(n) => format!("restore the backup into scratch database {}", n.scratch),
            Err(e) => format!("restore the backup into a scratch database ({e:#})"),
        }
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        let db = &run.w.db;
        let mut out = vec![db.query_cmd(&db.maintenance_db), db.version_cmd("psql")];
        if let Ok(n) = run.db_names() {
            out.push(db.restore_cmd_for(backup_kind(run).0, &n.scratch, true));
        }
        out
    }

    fn sql(&self, run: &Run) -> Vec<String> {
        let Ok(n) = run.db_names() else { return Vec::new() };
        vec![
            sql::drop_if_exists(&n.scratch),
            sql::settings_of(&n.live),
            sql::create_empty(&n.scratch, "<the settings printed above>"),
        ]
    }

    fn by_hand(&self, run: &Run) -> Vec<String> {
        let sha7 = run.sha.short();
        vec![
            format!(
                "# the live database {} was NOT touched; the backup could not be restored or did not validate",
                run.w.db.name
            ),
            run.dg(&format!("backups --sha {sha7}")),
            "# after fixing the cause (disk space, permissions, psql version):".into(),
            run.restore_again(&format!("rollback --sha {sha7} --path restore")),
        ]
    }

    fn manual(&self, run: &Run) -> Vec<String> {
        let mut out = vec![format!(
            "{}   # scratch restore → validate → swap; keeps the broken db",
            run.restore_again(&format!("restore --sha {}", run.sha.short()))
        )];
        out.push("# by hand, if deploy-guard itself cannot run:".into());
        out.extend(manual(run));
        out
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        if let Some(branch) = run.neon_branch().await? {
            // Nothing to restore into a scratch database: the branch is the pre-deploy state.
            let n = w.neon.as_ref().expect("neon_branch checked it");
            let failed = n.failed_name(&run.sha).await?;
            let live = w.db.name.clone();
            let (rehearse, apart) = (String::new(), String::new());
            run.found.restored = Some(crate::model::DbNames { live, scratch: branch.clone(), failed, rehearse, apart });
            let state = match run.manifest()?.neon.as_ref().and_then(|b| b.at) {
                Some(at) => {
                    format!("the primary as it was at {}", at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                }
                None => "the pre-deploy state".into(),
            };
            return Ok(Done::Ok(format!("the branch {branch} is {state}, read through its own compute")));
        }
        let m = run.manifest()?.clone();
        let names = w.db.swap_names(&run.sha).await?;
        w.db.create_scratch(&names.scratch).await?;
        match backup::restore_stream(&w.db, w.store.as_ref(), &m.stored(), &names.scratch).await {
            Ok(sql_bytes) => {
                let detail = format!("{} restored into {} ({} of SQL)", m.key, names.scratch, human_bytes(sql_bytes));
                run.found.restored = Some(names);
                Ok(Done::Ok(detail))
            }
            Err(e) => {
                let e = e.context(format!("{} is untouched", names.live));
                match w.db.drop_database(&names.scratch).await {
                    Ok(()) => Err(e),
                    Err(d) => {
                        Err(e.context(format!("and dropping the scratch database {} failed: {d:#}", names.scratch)))
                    }
                }
            }
        }
    }
}

/// The backup's own layout and codec when it is known, else those a backup would be taken with now.
pub fn backup_kind(run: &Run) -> (Format, Codec) {
    let b = &run.w.config.backup;
    run.manifest.as_ref().and_then(|m| Format::of_key(&m.key)).unwrap_or((b.format, b.compression.codec))
}

/// How to restore by hand, when deploy-guard itself cannot run (the runbook).
pub fn manual(run: &Run) -> Vec<String> {
    if let Some(line) = neon_by_hand(run) {
        return vec![
            "# Neon: restore the primary branch in place to the pre-deploy branch, keeping what it holds:".into(),
            line,
        ];
    }
    let db = &run.w.db;
    let Ok(n) = run.db_names() else { return Vec::new() };
    let (format, codec) = backup_kind(run);
    let file = match run.manifest.as_ref().map(|m| m.key.as_str()) {
        Some(k) => exec::quote(k.rsplit('/').next().unwrap_or(k)),
        None => format!("BACKUP{}{}", format.ext(), codec.ext()),
    };
    let mut out = vec![
        psql_line(run, &db.maintenance_db, &sql::drop_if_exists(&n.scratch)),
        psql_line(run, &db.maintenance_db, &sql::create_empty(&n.scratch, "")),
        format!("{} < {file} | {}", codec.decompress_sh(), db.restore_cmd_for(format, &n.scratch, true).shell_text()),
        "# check the restored database, then swap it in (the broken one is kept):".into(),
    ];
    out.extend(sql::swap(&n).iter().map(|s| psql_line(run, &db.maintenance_db, s)));
    out
}

/// Neon's own restore of the primary branch to the pre-deploy branch, with `neonctl`.
pub fn neon_by_hand(run: &Run) -> Option<String> {
    let b = &run.w.config.backup;
    let n = b.neon.as_ref().filter(|_| b.provider == crate::config::Provider::Neon)?;
    let pre = match run.manifest.as_ref().and_then(|m| m.neon.as_ref()) {
        Some(branch) => branch.id.clone(),
        None => format!("'deploy-guard/pre-{}-…'", run.sha.short()),
    };
    Some(format!(
        "neon branches restore {} {pre} --preserve-under-name deploy-guard/failed-{} --project-id {}",
        n.branch_id,
        run.sha.short(),
        n.project_id
    ))
}
