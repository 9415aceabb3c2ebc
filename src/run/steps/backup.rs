use anyhow::{bail, Context, Result};
use async_trait::async_trait;

use super::{Done, Run, StepSpec};
use crate::backup::{self, Neon, NeonBranch, Packing, Taken};
use crate::db::Fingerprint;
use crate::exec::Cmd;
use crate::guard::Mode;
use crate::model::Format;
use crate::model::{human_bytes, BackupKind, BackupName, PointInTime, Sha};
use crate::record::{Manifest, MigrationState};
use crate::world::World;

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
async fn by_branch(run: &mut Run<'_>, n: &Neon) -> Result<Done> {
    let w = run.w;
    // Before the branch: every write after this shows in the counters (damage).
    let stats = w.db.table_stats(&w.db.name).await?;
    let (rows, fingerprint) = (w.migration_rows(&w.db.name).await?, w.db.fingerprint(&w.db.name).await?);
    let started = std::time::Instant::now();
    let name = Neon::pre_name(&run.sha, run.started_at);
    let (branch, fp) = take_branch(w, n, &name, None, Some((rows.as_slice(), &fingerprint))).await?;
    let took = started.elapsed().as_secs_f64();
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

/// A branch of the primary named `name` (at its head, or as it was at `at`), read through its
/// own compute: its migration rows and fingerprint, which must equal `expect` when given (the
/// primary's, read just before). One that cannot be read or does not verify is deleted: an
/// unverified branch is no backup, it only counts against the plan's branches.
async fn take_branch(
    w: &World,
    n: &Neon,
    name: &str,
    at: Option<&PointInTime>,
    expect: Option<(&[serde_json::Value], &Fingerprint)>,
) -> Result<(NeonBranch, Fingerprint)> {
    let branch = n.take(&w.db, name, at).await?;
    let verify = async {
        let on_branch = w.migration_rows(&branch.name).await?;
        let fp = w.db.fingerprint(&branch.name).await?;
        if let Some((rows, fingerprint)) = expect {
            if on_branch != rows {
                bail!("it holds {} migration row(s), the primary {}", on_branch.len(), rows.len());
            }
            if fp != *fingerprint {
                bail!("its schema differs from the primary's: {}", fingerprint.diff(&fp).join("; "));
            }
        }
        anyhow::Ok(fp)
    };
    let verified = verify.await;
    match verified {
        Ok(fp) => Ok((branch, fp)),
        Err(e) => Err(drop_branch(n, &branch, e.context(format!("the branch {} does not verify", branch.name))).await),
    }
}

/// `e`, once the branch it concerns is deleted (or with how to delete it).
async fn drop_branch(n: &Neon, branch: &NeonBranch, e: anyhow::Error) -> anyhow::Error {
    let left = match n.api.delete_branch(&branch.id).await {
        Ok(()) => "deleted".to_string(),
        Err(d) => format!("left ({d:#}): `neon branches delete {} --project-id {}`", branch.id, branch.project_id),
    };
    e.context(format!("the branch {} was {left}; nothing was changed", branch.name))
}

/// `restore --at`: a branch of the primary as it was at `at`, read through its own compute, and
/// recorded as a backup of the deploy of `sha` (kind `point-in-time`, with what a deploy records
/// of the state before it, read on the branch), so what follows is any restore of a branch.
pub async fn point_in_time(w: &World, sha: &Sha, at: &PointInTime) -> Result<Manifest> {
    let n = w.neon.as_ref().context("restore --at needs backup.provider: neon")?;
    let now = chrono::Utc::now();
    let (branch, fp) = take_branch(w, n, &Neon::at_name(sha, at), Some(at), None).await?;
    let record = async {
        let b = &branch.name;
        let taken = Taken {
            key: BackupName::new(BackupKind::PointInTime, sha, now).neon_key(),
            dump_bytes: None,
            size: 0,
            sha256: String::new(),
            columns: w.db.table_columns(b).await?,
            chunks: None,
            checked: true,
        };
        let mut m = Manifest::verified(&w.config.project, sha, &w.db.name, now, taken);
        m.migrations = MigrationState { table: w.migrator.table.clone(), rows: w.migration_rows(b).await? };
        m.fingerprint = Some(fp);
        m.identities = Some(w.db.identities(b).await?);
        m.checks = super::checks::query_results(w, b).await?;
        m.neon = Some(branch.clone());
        m.create(w.store.as_ref()).await?;
        anyhow::Ok(m)
    };
    let recorded = record.await;
    match recorded {
        Ok(m) => Ok(m),
        Err(e) => Err(drop_branch(n, &branch, e.context(format!("recording the branch {}", branch.name))).await),
    }
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
