use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::backup::{self, Packing, Taken};
use crate::exec::Cmd;
use crate::guard::Mode;
use crate::model::Format;
use crate::model::{human_bytes, BackupKind, BackupName};
use crate::record::Manifest;

pub struct Backup;

/// What a backup is taken for, by the mode that takes it.
fn kind(mode: Mode) -> BackupKind {
    match mode {
        Mode::Backup => BackupKind::Backup,
        Mode::Rehearse => BackupKind::Rehearse,
        _ => BackupKind::PreDeploy,
    }
}

#[async_trait]
impl StepSpec for Backup {
    fn what(&self, run: &Run) -> String {
        let b = &run.w.config.backup;
        if let Some(n) = &b.neon.as_ref().filter(|_| b.provider == crate::config::Provider::Neon) {
            return format!(
                "branch Neon project {}'s primary branch {} at its head as {}, then read its fingerprint and migration \
                 rows through a read-only compute of its own; the manifest goes to {}",
                n.project_id,
                n.branch_id,
                crate::backup::Neon::pre_name(&run.sha, run.started_at),
                run.w.store.describe()
            );
        }
        let codec = b.compression.codec;
        let at =
            if run.w.db.executor().remote() { format!(" (on the target when it has {codec})") } else { String::new() };
        let dump = match b.format {
            Format::Plain => "pg_dump".to_string(),
            Format::Directory => format!("pg_dump -j {} (directory format, tarred)", b.jobs),
        };
        let mut what = format!(
            "stream {dump} → {codec}{at} → {} (…time of the run), then read it back whole to verify",
            run.w.store.location(&BackupName::new(kind(run.mode), &run.sha, run.started_at).data_key(b.format, codec)),
        );
        if let Some(copy) = &run.w.copy {
            what.push_str(&format!("; copy it to {} and verify the copy", copy.describe()));
        }
        what
    }

    fn commands(&self, run: &Run) -> Vec<Cmd> {
        vec![run.w.db.query_cmd(&run.w.db.name), run.w.db.dump_cmd_for(run.w.config.backup.format)]
    }

    async fn perform(&self, run: &mut Run<'_>) -> Result<Done> {
        let w = run.w;
        if let Some(n) = &w.neon {
            return by_branch(run, n).await;
        }
        let b = &w.config.backup;
        let packing = Packing::choose(w.db.executor().as_ref(), b.format, b.compression).await?;
        let key = packing.key(&BackupName::new(kind(run.mode), &run.sha, run.started_at));
        // Before the dump: every write after this shows in the counters (damage, lost writes).
        let stats = w.db.table_stats(&w.db.name).await?;
        let taken = backup::take_verified(&w.db, w.store.as_ref(), &key, packing, b.verify).await?;
        let detail = format!(
            "{} ({} of SQL, {}), sha256 {}, verified",
            human_bytes(taken.size),
            human_bytes(taken.dump_bytes.unwrap_or_default()),
            packing.describe(),
            &taken.sha256[..16]
        );
        let m = manifest(run, taken, stats);
        m.create(w.store.as_ref()).await?;
        run.manifest = Some(m);
        let Some(copy) = &w.copy else { return Ok(Done::Ok(detail)) };
        // The store's backup is verified and enough for this run: a failed copy is a warning.
        let m = run.manifest.as_mut().expect("set above");
        match backup::copy_verified(w.store.as_ref(), copy.as_ref(), &m.stored().taken()).await {
            Ok(()) => {
                m.copy = Some(copy.location(&m.key));
                if let Err(e) = m.create(copy.as_ref()).await {
                    return Ok(Done::Warning(format!("{detail}; the offsite copy has no manifest: {e:#}")));
                }
                run.persist().await;
                Ok(Done::Ok(format!("{detail}; offsite copy verified in {}", copy.describe())))
            }
            Err(e) => Ok(Done::Warning(format!("{detail}; but no offsite copy: {e:#}"))),
        }
    }
}

/// `backup.provider: neon`: a branch of the primary at its head, verified by reading it.
async fn by_branch(run: &mut Run<'_>, n: &crate::backup::Neon) -> Result<Done> {
    let w = run.w;
    // Before the branch: every write after this shows in the counters (damage).
    let stats = w.db.table_stats(&w.db.name).await?;
    let (rows, fingerprint) = (w.migration_rows(&w.db.name).await?, w.db.fingerprint(&w.db.name).await?);
    let started = std::time::Instant::now();
    let branch = n.take(&w.db, &crate::backup::Neon::pre_name(&run.sha, run.started_at)).await?;
    let took = started.elapsed().as_secs_f64();
    let verify = async {
        let on_branch = w.migration_rows(&branch.name).await?;
        let fp = w.db.fingerprint(&branch.name).await?;
        if on_branch != rows {
            bail!("it holds {} migration row(s), the primary {}", on_branch.len(), rows.len());
        }
        if fp != fingerprint {
            bail!("its schema differs from the primary's: {}", fingerprint.diff(&fp).join("; "));
        }
        anyhow::Ok(fp)
    };
    let fp = match verify.await {
        Ok(fp) => fp,
        Err(e) => {
            // An unverified branch is no backup: it only counts against the plan's branches.
            let left = match n.api.delete_branch(&branch.id).await {
                Ok(()) => "deleted".to_string(),
                Err(d) => {
                    format!("left ({d:#}): `neon branches delete {} --project-id {}`", branch.id, branch.project_id)
                }
            };
            return Err(e.context(format!("the branch {} does not verify ({left}); nothing was changed", branch.name)));
        }
    };
    let taken = Taken {
        key: BackupName::new(kind(run.mode), &run.sha, run.started_at).neon_key(),
        dump_bytes: None,
        size: 0,
        sha256: String::new(),
        columns: w.db.table_columns(&branch.name).await?,
        chunks: None,
        checked: true,
    };
    let detail = format!(
        "branch {} ({}) of {} at LSN {} in {took:.1} s; read on it: fingerprint {}, {} migration row(s), verified",
        branch.name,
        branch.id,
        branch.parent_id,
        branch.lsn.as_deref().unwrap_or("?"),
        fp.short(),
        rows.len()
    );
    let mut m = manifest(run, taken, stats);
    m.neon = Some(branch);
    m.create(w.store.as_ref()).await?;
    run.manifest = Some(m);
    Ok(Done::Ok(detail))
}

/// The manifest of a verified backup taken by this run, with what the run knows so far.
fn manifest(run: &Run, taken: Taken, stats: std::collections::BTreeMap<String, crate::db::TableStats>) -> Manifest {
    let mut m = Manifest::verified(&run.w.config.project, &run.sha, &run.w.db.name, run.started_at, taken);
    m.tag = run.tag.clone();
    m.previous_tag = run.previous_tag.clone();
    m.previous_tag_source = run.previous_tag_source;
    m.server_version = run.found.server_version.clone();
    m.stats = stats;
    m.classification = run.found.classification.clone();
    m.journal = run.journal.clone();
    m
}
