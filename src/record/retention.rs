//! Retention: `backup.keep` (count) and `backup.max_age`. Works the same on every store.
//!
//! A backup is due for deletion when it is beyond the newest `keep` of its project, or older than
//! `max_age`. Never deleted, whatever the settings: the newest verified backup, and any backup
//! of a deploy that has not finished (its manifest has no outcome: a rollback may still need it),
//! and any backup of a `rollback-failed` run until `deploy-guard resolve` records it (the "what
//! to run next" block tells the operator to restore it).

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::{list, Manifest};
use crate::store::Store;

/// What retention asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep: Option<u32>,
    pub max_age: Option<Duration>,
}

impl Policy {
    pub fn is_set(&self) -> bool {
        self.keep.is_some() || self.max_age.is_some()
    }
}

/// Why a backup is kept or deleted.
#[derive(Clone, Debug)]
pub struct Decision {
    pub manifest: Manifest,
    pub delete: bool,
    pub why: String,
}

/// Decides, for the backups of `project` (newest first, as [`list`] returns them), which to
/// delete. Pure: tested without a store.
pub fn plan(manifests: &[Manifest], project: &str, policy: Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mine: Vec<&Manifest> = manifests.iter().filter(|m| m.project == project).collect();
    let newest_verified = mine.iter().find(|m| m.verified).map(|m| m.key.clone());
    mine.iter()
        .enumerate()
        .map(|(i, m)| {
            let age = now.signed_duration_since(m.created_at).to_std().unwrap_or_default();
            let beyond_count = policy.keep.is_some_and(|k| i >= k as usize);
            let too_old = policy.max_age.is_some_and(|a| age > a);
            let (delete, why) = if Some(&m.key) == newest_verified.as_ref() {
                (false, "the newest verified backup".to_string())
            } else if m.outcome.is_none() {
                (false, "its deploy has not finished".to_string())
            } else if m.unresolved_failure() {
                (false, "its rollback failed and no one has resolved it (deploy-guard resolve)".to_string())
            } else if beyond_count {
                (true, format!("beyond the newest {}", policy.keep.unwrap_or_default()))
            } else if too_old {
                (true, format!("older than {}", humantime::format_duration(policy.max_age.unwrap_or_default())))
            } else {
                (false, "within retention".to_string())
            };
            Decision { manifest: (*m).clone(), delete, why }
        })
        .collect()
}

/// Applies retention to `store`: deletes the data object, then the manifest, of each backup due.
/// Returns what was deleted (or, with `dry_run`, what would be).
/// A Neon backup's branch is deleted first (with `neon`, the provider; without it such a backup
/// is kept and said so).
pub async fn prune(
    store: &dyn Store,
    neon: Option<&crate::backup::Neon>,
    project: &str,
    policy: Policy,
    dry_run: bool,
) -> Result<Vec<Decision>> {
    if !policy.is_set() {
        return Ok(Vec::new());
    }
    let all = list(store).await?.checked();
    let mut deleted = Vec::new();
    for d in plan(&all, project, policy, Utc::now()).into_iter().filter(|d| d.delete) {
        let m = &d.manifest;
        if let (Some(b), false) = (&m.neon, dry_run) {
            let Some(n) = neon else {
                tracing::warn!(
                    "retention: {} is the Neon branch {}: kept (backup.provider is not neon)",
                    m.key,
                    b.name
                );
                continue;
            };
            n.api
                .delete_branch(&b.id)
                .await
                .with_context(|| format!("retention: cannot delete the branch {}", b.name))?;
        } else if !dry_run {
            store.delete(&m.key).await.with_context(|| format!("retention: cannot delete {}", m.key))?;
        }
        if !dry_run {
            if let Some(l) = m.lost_writes.as_ref().filter(|l| !l.key.is_empty()) {
                store.delete(&l.key).await.with_context(|| format!("retention: cannot delete {}", l.key))?;
            }
            store
                .delete(&m.manifest_key())
                .await
                .with_context(|| format!("retention: cannot delete {}", m.manifest_key()))?;
        }
        tracing::info!(
            "retention: {} {} ({} {}, {}): {}",
            if dry_run { "would delete" } else { "deleted" },
            m.key,
            m.created_at.format("%Y-%m-%d %H:%M:%S"),
            m.sha.short(),
            crate::model::human_bytes(m.size),
            d.why
        );
        deleted.push(d);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Journal;

    fn m(project: &str, days_ago: i64, verified: bool, deployed: Option<&str>) -> Manifest {
        let now = DateTime::parse_from_rfc3339("2026-06-30T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = now - chrono::Duration::days(days_ago);
        let sha = crate::model::Sha::parse(&format!("{:07x}aaaaaaaa", days_ago)).unwrap();
        let name = crate::model::BackupName::new(crate::model::BackupKind::PreDeploy, &sha, at);
        Manifest {
            format: 1,
            project: project.into(),
            sha,
            tag: Some("v".into()),
            previous_tag: None,
            previous_tag_source: None,
            services: Vec::new(),
            created_at: at,
            database: "db".into(),
            server_version: None,
            key: name.data_key(crate::model::Format::Plain, crate::model::Codec::Gzip),
            dump_bytes: 1,
            size: 1,
            sha256: String::new(),
            chunks: None,
            verified,
            migrations: Default::default(),
            fingerprint: None,
            identities: None,
            migrated: None,
            tables: Default::default(),
            data: Default::default(),
            stats: Default::default(),
            checks: Vec::new(),
            lost_writes: None,
            classification: Vec::new(),
            rehearsal: None,
            journal: Journal::default(),
            outcome: deployed.map(|_| crate::guard::Outcome::Deployed),
            resolved: None,
            copy: None,
            neon: None,
            signed: false,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-30T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn deleted(d: &[Decision]) -> Vec<String> {
        d.iter().filter(|d| d.delete).map(|d| d.manifest.sha.short().to_string()).collect()
    }

    #[test]
    fn keep_counts_newest_first_and_spares_unfinished_deploys() {
        let all = vec![
            m("p", 1, true, Some("deployed")),
            m("p", 2, true, Some("rolled-back")),
            m("p", 3, true, None), // a deploy still under way (or interrupted): kept
            m("p", 4, true, Some("deployed")),
            m("other", 5, true, Some("deployed")), // another project's: not ours to judge
            m("p", 6, true, Some("backup")),
        ];
        let d = plan(&all, "p", Policy { keep: Some(2), max_age: None }, now());
        assert_eq!(deleted(&d), vec!["0000004", "0000006"]);
        assert_eq!(d.len(), 5);
    }

    #[test]
    fn max_age_never_takes_the_newest_verified_backup() {
        let all = vec![
            m("p", 40, false, Some("aborted")),
            m("p", 50, true, Some("deployed")),
            m("p", 60, true, Some("deployed")),
        ];
        let d = plan(&all, "p", Policy { keep: None, max_age: Some(Duration::from_secs(30 * 86400)) }, now());
        assert_eq!(deleted(&d), vec!["0000028", "000003c"]);
        assert_eq!(d[1].why, "the newest verified backup");
    }

    #[test]
    fn keep_and_max_age_together_delete_what_either_says() {
        let all = vec![
            m("p", 1, true, Some("deployed")),
            m("p", 2, true, Some("deployed")),
            m("p", 90, true, Some("deployed")),
        ];
        let p = Policy { keep: Some(5), max_age: Some(Duration::from_secs(30 * 86400)) };
        assert_eq!(deleted(&plan(&all, "p", p, now())), vec!["000005a"]);
        let p = Policy { keep: Some(1), max_age: Some(Duration::from_secs(30 * 86400)) };
        assert_eq!(deleted(&plan(&all, "p", p, now())), vec!["0000002", "000005a"]);
        assert!(deleted(&plan(&all, "p", Policy::default(), now())).is_empty());
    }

    #[test]
    fn an_unresolved_rollback_failed_backup_is_kept_until_resolved() {
        use crate::guard::{DbPath, Outcome, Step};
        let stuck = || {
            let mut s = m("p", 3, true, Some("x"));
            s.outcome = Some(Outcome::RollbackFailed {
                failed_step: Some(Step::Health),
                stuck_at: Step::Restore,
                path: DbPath::Restore,
                reason: "swap failed".into(),
            });
            s
        };
        let all = vec![m("p", 1, true, Some("deployed")), stuck(), m("p", 90, true, Some("deployed"))];
        let p = Policy { keep: Some(1), max_age: Some(Duration::from_secs(86400)) };
        let d = plan(&all, "p", p, now());
        assert_eq!(deleted(&d), vec!["000005a"]);
        assert!(d[1].why.contains("deploy-guard resolve"), "{}", d[1].why);
        let mut resolved = all.clone();
        resolved[1].resolved = Some(crate::record::Resolution { at: now(), note: "restored by hand".into() });
        assert_eq!(deleted(&plan(&resolved, "p", p, now())), vec!["0000003", "000005a"]);
    }
}
