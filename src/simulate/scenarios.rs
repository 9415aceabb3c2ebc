//! The drill's scenarios: what goes wrong in each, and how it must end.

use anyhow::{bail, Result};

use crate::guard::{DbPath, End};

/// One failure to rehearse and how it must end.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Release deployed over v1.
    pub release: &'static str,
    pub expect_end: End,
    pub expect_path: DbPath,
    /// Rows the app writes after the backup that the restore must find: (inserted, updated,
    /// deleted); the replay file must then bring the database to what the app had written.
    pub lost_writes: Option<(u64, u64, u64)>,
    /// Runs with `rollback.additive: keep`: the new schema and what the app wrote into it stay.
    pub keep_additive: bool,
    /// Runs with `deploy.rehearse: true`.
    pub rehearse: bool,
    /// What is already wrong on the stage when the deploy starts.
    pub staged: Staged,
}

/// What is already wrong on a stage when the deploy under test starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staged {
    /// v1 runs, its migrations applied, nothing wrong.
    Clean,
    /// `database.bin_dir` holds a `pg_dump` that loses its connection part-way.
    CrashingPgDump,
    /// An earlier run of the migrations (release [`DIRTY_RELEASE`], by hand, outside
    /// deploy-guard) stopped part-way through a migration that cannot run in a transaction: one
    /// index built, the next left invalid, the tool's `dirty` flag set on its version.
    DirtyMigration,
}

/// The release whose migration run stopped part-way before a `dirty-state` deploy.
pub const DIRTY_RELEASE: &str = "v2-indexes";

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "happy",
        about: "a nullable column and an index: deployed",
        release: "v2",
        expect_end: End::Deployed,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "migration-fails",
        about: "NOT NULL column on a table with rows: the migration's transaction rolls back, nothing to revert",
        release: "v2-notnull",
        expect_end: End::RolledBack,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "unhealthy-after-migrate",
        about: "migration applies, the new app never gets healthy: revert works",
        release: "v2-crash",
        expect_end: End::RolledBack,
        expect_path: DbPath::Revert,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "bad-down",
        about: "the down() migration errors: restore the backup",
        release: "v2-bad-down",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "lying-down",
        about: "the down() \"succeeds\" but leaves a column behind: drift detected, restore",
        release: "v2-lying-down",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "rename",
        about: "the migration renames a column, the new app never gets healthy: a rename loses nothing, revert trusted",
        release: "v2-rename",
        expect_end: End::RolledBack,
        expect_path: DbPath::Revert,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "forward-only",
        about: "the migration has no down, the new app never gets healthy: no revert is tried, restore",
        release: "v2-no-down",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "destructive-down",
        about: "the migration drops a column holding data, its down() re-adds it empty: restore, data intact",
        release: "v2-drop-note",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "data-rewrite",
        about: "the migration rewrites every email (UPDATE), its down() is a no-op: restore, data intact",
        release: "v2-rewrite-email",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "lost-writes",
        about:
            "the app writes after the backup (a table without a key among them), the migration destroys a column and \
                cascades deletes: restore, exactly the app's writes replayed",
        release: "v2-app-writes",
        expect_end: End::RolledBack,
        expect_path: DbPath::Restore,
        lost_writes: Some((5, 1, 1)),
        keep_additive: false,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "additive-keep",
        about:
            "rollback.additive: keep; the migration only adds a column the new app fills in: previous tag, column kept",
        release: "v2-additive",
        expect_end: End::RolledBack,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: true,
        rehearse: false,
        staged: Staged::Clean,
    },
    Scenario {
        name: "rehearsal-catches",
        about: "deploy.rehearse: true; a unique index the real rows break: caught on a copy, production never touched",
        release: "v2-unique-status",
        expect_end: End::Aborted,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: true,
        staged: Staged::Clean,
    },
    Scenario {
        name: "backup-fails",
        about: "pg_dump loses its connection part-way: abort, nothing changed",
        release: "v2",
        expect_end: End::Aborted,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::CrashingPgDump,
    },
    Scenario {
        name: "dirty-state",
        about: "an earlier migration run stopped part-way and left the tool's dirty flag: refused before the backup, \
                the tool's commands named, nothing changed",
        release: "v2",
        expect_end: End::Aborted,
        expect_path: DbPath::None,
        lost_writes: None,
        keep_additive: false,
        rehearse: false,
        staged: Staged::DirtyMigration,
    },
];

pub fn scenarios_named(name: &str) -> Result<Vec<Scenario>> {
    if name == "all" {
        return Ok(SCENARIOS.to_vec());
    }
    let mut out = Vec::new();
    for n in name.split(',') {
        match SCENARIOS.iter().find(|s| s.name == n.trim()) {
            Some(s) => out.push(*s),
            None => bail!(
                "--scenario {n:?}: unknown; choose from {} or all",
                SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(out)
}
