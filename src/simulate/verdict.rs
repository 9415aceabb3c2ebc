//! One scenario run and judged: deployed with the real engine, then the database, the running
//! tag, the migration table and (where the scenario has them) the lost writes and their replay
//! checked against how it must end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::sandbox::Cluster;
use super::{Scenario, ScenarioResult, Stage, Staged};
use crate::commands::deploy::DeployArgs;
use crate::config::Config;
use crate::exec::Local;
use crate::guard::{DbPath, End};
use crate::model::{DbNames, Sha};
use crate::world::World;

/// What "the data" is: per table, row count and a checksum of the columns it had before.
struct Snapshot {
    tables: BTreeMap<String, (i64, String)>,
    columns: BTreeMap<String, Vec<String>>,
}

async fn snapshot(w: &World, columns: Option<&BTreeMap<String, Vec<String>>>) -> Result<Snapshot> {
    let db = &w.db;
    let columns = match columns {
        Some(c) => c.clone(),
        None => {
            let v = db
                .query_json(
                    &db.name,
                    "SELECT json_object_agg(t, cols) FROM (SELECT table_name AS t, json_agg(column_name ORDER BY ordinal_position) AS cols \
                     FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('customers','orders','activity') GROUP BY table_name) x;",
                )
                .await?;
            serde_json::from_value(v)?
        }
    };
    let mut tables = BTreeMap::new();
    for (t, cols) in &columns {
        let row = format!("ROW({})", cols.iter().map(|c| crate::db::ident(c)).collect::<Vec<_>>().join(","));
        let sql = format!(
            "SELECT json_build_array(count(*), md5(coalesce(string_agg({row}::text, E'\\n' ORDER BY {row}::text), ''))) FROM {};",
            crate::db::ident(t)
        );
        tables.insert(t.clone(), serde_json::from_value(db.query_json(&db.name, &sql).await?)?);
    }
    Ok(Snapshot { tables, columns })
}

pub(super) async fn run_one(
    cluster: &Cluster,
    root: &Path,
    s: &Scenario,
    base: Option<&Config>,
    k8s: Option<&super::control_plane::ControlPlane>,
) -> Result<ScenarioResult> {
    let db = format!("shop_{}", s.name.replace('-', "_"));
    let st = Stage::new(cluster, &root.join(s.name), &db, &[s.release], s.staged)?;
    let mut config = Config::from_yaml(&st.config_yaml(&format!("simulate-{}", s.name)), &[])?;
    if s.keep_additive {
        config.rollback.additive = crate::config::Additive::Keep;
    }
    config.deploy.rehearse = s.rehearse;
    if let Some(cp) = k8s {
        let ns = format!("simulate-{}-{}", s.name, std::process::id());
        cp.drill_app(&mut config.app, &ns)?;
    }
    let mut s3_prefix = None;
    if let Some(b) = base {
        config.backup.compression = b.backup.compression;
        // A drill with an S3 store rehearses against it, each scenario under its own prefix
        // (removed afterwards).
        if let crate::store::StoreUrl::S3 { bucket, prefix } = crate::store::StoreUrl::parse(&b.backup.store)? {
            let sub = format!("deploy-guard-simulate-{}-{}", std::process::id(), s.name);
            let prefix = if prefix.is_empty() { sub } else { format!("{prefix}/{sub}") };
            config.backup = b.backup.clone();
            config.backup.store = format!("s3://{bucket}/{prefix}");
            s3_prefix = Some(prefix);
        }
    }
    let w = World::with_executor(config, Arc::new(Local)).await?;
    let table = w.migrator.table.clone().context("no table")?;
    let before = snapshot(&w, None).await?;
    let rows_before = w.db.migration_rows(&w.db.name, &table, "version").await?;
    let fp_before = w.db.fingerprint(&w.db.name).await?;
    let sha = {
        use sha2::Digest;
        Sha::parse(&hex::encode(sha2::Sha256::digest(s.name.as_bytes()))[..40])?
    };
    let started = Instant::now();
    let args = DeployArgs {
        sha: &sha,
        tag: s.release,
        previous_tag: None,
        fallback_previous_tag: None,
        config_arg: "",
        allow_destructive: false,
    };
    let report = crate::commands::deploy::deploy(&w, &args).await;
    let duration_secs = started.elapsed().as_secs_f64();

    let mut problems = Vec::new();
    if report.outcome.end() != s.expect_end || report.outcome.path() != s.expect_path {
        problems.push(format!(
            "ended {} via {}, must end {} via {}: {}",
            report.result,
            report.path,
            s.expect_end.title(),
            s.expect_path.name(),
            report.headline
        ));
    }
    let after = snapshot(&w, Some(&before.columns)).await?;
    let data_intact = after.tables == before.tables;
    if !data_intact {
        problems.push(format!("data changed: before {:?}, after {:?}", before.tables, after.tables));
    }
    let rows_after = w.db.migration_rows(&w.db.name, &table, "version").await?;
    let fp_after = w.db.fingerprint(&w.db.name).await?;
    let tag_after = w.runtime.current_tag().await?.unwrap_or_default();
    if s.expect_end == End::Deployed {
        if tag_after != s.release || rows_after.len() != rows_before.len() + 1 {
            problems.push(format!(
                "expected {} running with one more migration; {tag_after} runs with {} rows",
                s.release,
                rows_after.len()
            ));
        }
    } else {
        if s.keep_additive {
            // The additions stay, with what the new app wrote into them; nothing else changed.
            let diff = fp_before.diff(&fp_after);
            if diff.iter().any(|l| l.starts_with("- ")) || rows_after.len() != rows_before.len() + 1 {
                problems.push(format!("expected only additions kept: {}", diff.join("; ")));
            }
            if w.db.query(&w.db.name, "SELECT nickname FROM customers WHERE id = 5;").await? != "Zo" {
                problems.push("what the new app wrote into the kept column is gone".into());
            }
        } else {
            if fp_after != fp_before {
                problems
                    .push(format!("schema differs from before the deploy: {}", fp_before.diff(&fp_after).join("; ")));
            }
            if rows_after != rows_before {
                problems.push("migration table differs from before the deploy".into());
            }
        }
        if tag_after != "v1" {
            problems.push(format!("{tag_after} runs, v1 must"));
        }
        if w.health.probe_once().await.is_err() {
            problems.push("the app is not healthy after the rollback".into());
        }
    }
    if super::stage::has_no_down(s.release) && report.steps.iter().any(|e| e.step == crate::guard::Step::Revert) {
        problems.push("a revert was tried on a release with no down".into());
    }
    if s.staged == Staged::DirtyMigration {
        // Refused before the backup, naming the tool's commands; the dirty flag left for a person.
        let f = w.migrator.failed.as_ref().context("the sample app's tool has no dirty state")?;
        let at = match &report.outcome {
            crate::guard::Outcome::Aborted { at, .. } => Some(*at),
            _ => None,
        };
        if at != Some(crate::guard::Step::Preflight) {
            problems.push(format!("must be refused at preflight, ended at {at:?}"));
        }
        for c in f.inspect.iter().chain(&f.clear) {
            if !report.headline.contains(c.as_str()) {
                problems.push(format!("the refusal does not name `{c}`: {}", report.headline));
            }
        }
        if w.migrator.failed_state(&w.db, &w.db.name).await?.is_none() {
            problems.push("the dirty flag is gone: the deploy touched the tool's state".into());
        }
    }
    if matches!(
        report.outcome,
        crate::guard::Outcome::Aborted { at: crate::guard::Step::Backup | crate::guard::Step::Preflight, .. }
    ) {
        let objects = w.store.list("").await?;
        if !objects.is_empty() {
            problems.push(format!(
                "a failed backup left objects behind: {:?}",
                objects.iter().map(|o| &o.key).collect::<Vec<_>>()
            ));
        }
    }
    if s.expect_path == DbPath::Restore && !w.db.database_exists(&DbNames::new(&st.db, &sha)?.failed).await? {
        problems.push("the broken database was not kept".into());
    }
    if s.rehearse {
        if report.steps.iter().any(|e| e.step == crate::guard::Step::Migrate) {
            problems.push("the migrations ran on production".into());
        }
        if w.db.database_exists(&DbNames::new(&st.db, &sha)?.rehearse).await? {
            problems.push("the rehearsal copy was left behind".into());
        }
    }
    if let Some(expected) = s.lost_writes {
        if let Err(e) = check_replay(&w, &report, &sha, expected, s.release).await {
            problems.push(format!("{e:#}"));
        }
    }
    if s3_prefix.is_some() {
        for o in w.store.list("").await? {
            w.store.delete(&o.key).await?;
        }
    }
    Ok(ScenarioResult {
        scenario: s.name.into(),
        result: report.result.to_string(),
        path: report.path.to_string(),
        exit_code: report.exit_code.code(),
        recovery_secs: report.recovery_secs,
        duration_secs,
        data_intact,
        as_expected: problems.is_empty(),
        problems,
    })
}

/// The restore found exactly the app's writes, and the replay file brings the live database to
/// what the app would have had without the migrations: the backup with the app's writes applied
/// (restored into a scratch database and compared table by table). Then the app's next insert
/// into every replayed table succeeds (its sequences are past the replayed ids).
async fn check_replay(
    w: &World,
    report: &crate::report::Report,
    sha: &Sha,
    expected: (u64, u64, u64),
    release: &str,
) -> Result<()> {
    let lost = report.lost_writes.as_ref().context("the restore did not look for lost writes")?;
    let found = lost.tables.iter().fold((0, 0, 0), |a, t| (a.0 + t.inserted, a.1 + t.updated, a.2 + t.deleted));
    if found != expected {
        bail!(
            "the restore found {found:?} lost (inserted, updated, deleted) rows, the app wrote {expected:?}: {:?}",
            lost.tables
        );
    }
    if !lost.not_compared.is_empty() || !lost.held.is_empty() {
        bail!("tables left out of the replay: {:?} {:?}", lost.not_compared, lost.held);
    }
    let prefix = crate::model::ShaPrefix::parse(sha.short())?;
    crate::commands::replay::replay(w, &prefix, false).await?;
    let m = crate::record::find_for(w.store.as_ref(), &w.config.project, &w.db.name, sha.as_str()).await?;
    let want = format!("{}_expected", w.db.name);
    w.db.create_scratch(&want).await?;
    let compared = async {
        crate::backup::restore_stream(&w.db, w.store.as_ref(), &m.stored(), &want).await?;
        if let Some(sql) = super::stage::app_writes(release) {
            w.db.query(&want, sql).await?;
        }
        let (now, should) = (w.db.content_checksums(&w.db.name).await?, w.db.content_checksums(&want).await?);
        for (t, rows) in &should {
            if now.get(t) != Some(rows) {
                bail!("after the replay, {t} is not what the app would have had without the migrations");
            }
        }
        anyhow::Ok(())
    }
    .await;
    w.db.drop_database(&want).await?;
    compared?;
    for t in &lost.tables {
        let insert = super::stage::next_insert(&t.table).with_context(|| format!("no next insert for {}", t.table))?;
        w.db.query(&w.db.name, &format!("BEGIN; {insert}; ROLLBACK;"))
            .await
            .with_context(|| format!("after the replay, the app's next insert into {} fails", t.table))?;
    }
    Ok(())
}
