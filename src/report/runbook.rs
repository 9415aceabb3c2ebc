//! `runbook`: the manual rollback runbook with this deployment's exact commands, drawn from the
//! tree (its phases and the assess decision) and the step table (each step's commands).

use std::fmt::Write;

use crate::guard::tree::{self, Branch, Mode, To};
use crate::guard::Step;
use crate::run::{spec, Run};

/// Steps from `start` along the plain way on, until the step `stop` (not included).
fn phase(start: Step, stop: Step) -> Vec<Step> {
    let mut out = vec![start];
    while let Some(To::Run(next)) = tree::follow(Mode::Rollback, *out.last().expect("non-empty"), Branch::Ok) {
        if next == stop || out.contains(&next) {
            break;
        }
        out.push(next);
    }
    out
}

fn target(branch: Branch) -> Option<Step> {
    match tree::follow(Mode::Rollback, Step::Assess, branch)? {
        To::Run(s) => Some(s),
        To::End(_) => None,
    }
}

fn steps_block(md: &mut String, run: &Run, steps: &[Step]) {
    md.push_str("```sh\n");
    for s in steps {
        let lines = spec(*s).manual(run);
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(md, "# {}: {}", s.name(), spec(*s).what(run));
        for l in lines {
            let _ = writeln!(md, "{l}");
        }
    }
    md.push_str("```\n\n");
}

/// `run` is a rollback of the deploy it names (placeholders where no deploy is known).
pub fn render(run: &Run) -> String {
    let w = run.w;
    let redeploy = target(Branch::Unchanged).unwrap_or(Step::Redeploy);
    let fast = target(Branch::FastPath).map(|s| phase(s, redeploy)).unwrap_or_default();
    let safe = target(Branch::NotTrusted).map(|s| phase(s, redeploy)).unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "# Rollback runbook — {}\n", w.config.project);
    let _ = writeln!(
        md,
        "Target: {} · database `{}` · backups: {} · rollback strategy: {:?} · deploy {} (tag {}, previous {})\n",
        w.exec.describe(),
        w.db.name,
        w.store.describe(),
        w.config.rollback.strategy,
        run.sha.short(),
        run.tag.as_deref().unwrap_or("NEW_TAG"),
        run.previous_tag.as_deref().unwrap_or("PREVIOUS_TAG"),
    );
    md.push_str(
        "deploy-guard does all of this by itself on a failed deploy. Use this page when it says a person must act \
         (exit 3), or to check its work. Commands are for this deployment as configured.\n\n",
    );
    md.push_str("## 1. Assess (2 minutes)\n\n");
    steps_block(&mut md, run, &[Step::Assess]);
    if let Some(f) = &run.w.migrator.failed {
        md.push_str(
            "If the migration tool's own state is failed or dirty (a migration crashed half way), the revert is \
             not trusted and the safe path runs; the next deploy is refused until it is cleared:\n\n```sh\n# look at it:\n",
        );
        for line in
            f.inspect.iter().chain(std::iter::once(&"# once the schema has been checked:".to_string())).chain(&f.clear)
        {
            let _ = writeln!(md, "{line}");
        }
        md.push_str("```\n\n");
    }
    md.push_str(
        "Find the failed deploy's SHA in the Actions run (or `backups`); `runbook --sha SHA` prints this page for \
         it. Compare the migration table with the backup's manifest (`migrations.rows`).\n\n## 2. Decide\n\n",
    );
    for e in tree::edges(Mode::Rollback).filter(|e| e.from == Step::Assess) {
        let to = match e.to {
            To::Run(s) => format!("**{}** (`{s}`)", s.title()),
            To::End(end) => format!("**{}**", end.title()),
        };
        let _ = writeln!(md, "- {} → {to}", e.on.label());
    }
    let _ = writeln!(
        md,
        "\nThe revert is trusted when the tool can revert, its state is not dirty, the migration table still \
         starts with the recorded rows, and `rollback.strategy` allows it. Or let deploy-guard decide: `{}` \
         (`--path revert` or `--path restore` to choose).\n",
        run.dg(&format!("rollback --sha {}", run.sha.short()))
    );
    md.push_str("## 3. Fast path: revert\n\nOnce per migration the deploy applied, with the NEW tag's code (it has the `down()`):\n\n");
    steps_block(&mut md, run, &fast);
    md.push_str("## 4. Safe path: restore the pre-deploy backup\n\n");
    steps_block(&mut md, run, &safe);
    md.push_str("## 5. Redeploy the previous tag\n\n");
    steps_block(&mut md, run, &phase(redeploy, Step::Preflight));
    md.push_str("## 6. After the rollback\n\n");
    md.push_str("- [ ] The app answers its health check and serves real requests.\n");
    md.push_str("- [ ] The migration table matches the previous release.\n");
    md.push_str(
        "- [ ] If the safe path ran: writes between the backup and the restore are lost — find them in the kept \
         `*__failed_*` database, decide what to replay, then drop it.\n",
    );
    md.push_str(
        "- [ ] Write the incident down: what failed, why the migration was unsafe, what prevents it next time.\n\n",
    );
    md.push_str("## 7. Rehearsal log\n\nRehearse both paths before you need them:\n\n```sh\n");
    md.push_str("deploy-guard simulate --record rehearsals.md\n```\n\n| date | scenario | path | duration | result |\n|---|---|---|---|---|\n");
    md
}
