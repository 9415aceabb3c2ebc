//! The plan `--dry-run` prints: the tree's steps for the run's mode, each with what it does and
//! the exact commands it runs, from the step table.

use super::{spec, Run};
use crate::guard::plan::{Plan, PlannedStep};
use crate::guard::{tree, Step};

pub fn plan(run: &Run) -> Plan {
    let planned = |step: Step| {
        let s = spec(step);
        PlannedStep {
            step,
            what: s.what(run),
            commands: s.commands(run).iter().map(|c| run.w.fleet.shown(c)).collect(),
            sql: s.sql(run),
        }
    };
    let straight = tree::straight_path(run.mode);
    let rest = tree::steps(run.mode).into_iter().filter(|s| !straight.contains(s));
    Plan {
        sha: run.sha.to_string(),
        tag: run.tag.clone().unwrap_or_default(),
        previous_tag: run.previous_tag.clone().unwrap_or_else(|| {
            "read at run time from the runtime (app.commands.current_tag, compose, or the first Deployment's image)"
                .into()
        }),
        target: run.w.exec.describe(),
        store: run.w.store.describe(),
        steps: straight.iter().map(|s| planned(*s)).collect(),
        rollback: rest.map(planned).collect(),
    }
}
