//! `runbook`: the manual rollback runbook, with this deployment's exact commands, for when a
//! person has to do by hand what deploy-guard does (or check what it did).

use std::fmt::Write;

use super::World;
use crate::exec::quote;

pub fn render(w: &World, config_arg: &str) -> String {
    let c = &w.config;
    let db = &w.db;
    let psql_live = db.shell_text(&db.psql_cmd("psql", &db.name, ""));
    let psql_m = db.shell_text(&db.psql_cmd("psql", &db.maintenance_db, ""));
    let sql = |psql: &str, q: &str| format!("echo {} | {psql}", quote(q));
    let table = w.migrator.table.as_deref().unwrap_or("<your migration table>");
    let revert = w.migrator.revert_script("NEW_TAG", "SHA").map(|s| w.runtime.tool_cmd("revert", "NEW_TAG", &s).script);
    let mut md = String::new();
    let _ = writeln!(md, "# Rollback runbook — {}\n", c.project);
    let _ = writeln!(
        md,
        "Target: {} · database `{}` · backups: {} · rollback strategy: {:?}\n",
        w.exec.describe(),
        db.name,
        w.store.describe(),
        c.rollback.strategy
    );
    md.push_str("deploy-guard does all of this by itself on a failed deploy. Use this page when it says a person must act (exit 3), or to check its work. Commands are for this deployment as configured.\n\n");
    md.push_str("## 1. Assess (2 minutes)\n\n```sh\n");
    let _ = writeln!(md, "{}            # app state", w.runtime_status_text());
    let _ = writeln!(
        md,
        "{}",
        sql(&psql_live, &format!("SELECT * FROM {table} ORDER BY {} DESC LIMIT 5;", w.migrator.order_by))
    );
    let _ = writeln!(md, "deploy-guard backups{config_arg}        # the pre-deploy backup of each deploy, by SHA");
    md.push_str("```\n\nFind the failed deploy's SHA in the Actions run (or `backups`). Compare the migration table with the backup's manifest (`migrations.rows`).\n\n");
    md.push_str("## 2. Decide\n\n");
    md.push_str("- The migration failed inside its transaction and the table/schema are unchanged → nothing to do to the database: **redeploy** (5).\n");
    md.push_str("- The migrations applied, the tool can revert them, the state is not dirty, and nothing destructive ran → **fast path** (3).\n");
    md.push_str("- Anything else, or the fast path left drift → **safe path** (4).\n\n");
    let _ = writeln!(md, "Or let deploy-guard do it: `deploy-guard rollback --sha SHA{config_arg}` (`--path revert` or `--path restore` to choose).\n");
    md.push_str("## 3. Fast path: revert\n\nRun once per migration the deploy applied, with the NEW tag's code (it has the `down()`):\n\n```sh\n");
    match &revert {
        Some(r) => {
            let _ = writeln!(md, "{r}");
        }
        None => md.push_str("# no revert command configured (migrations.revert): use the safe path\n"),
    }
    md.push_str("```\n\nThen verify the schema equals the pre-deploy fingerprint:\n\n```sh\n");
    let _ =
        writeln!(md, "deploy-guard rollback --sha SHA --path revert{config_arg}   # reverts and verifies, or stops");
    md.push_str("```\n\n## 4. Safe path: restore the pre-deploy backup\n\n```sh\n");
    let _ = writeln!(md, "{}", w.runtime.describe_stop());
    let _ = writeln!(
        md,
        "deploy-guard restore --sha SHA{config_arg}   # scratch restore → validate → swap; keeps the broken db"
    );
    md.push_str("```\n\nBy hand, if deploy-guard itself cannot run:\n\n```sh\n");
    let _ = writeln!(md, "{}", sql(&psql_m, &format!("CREATE DATABASE \"{}__restore\" TEMPLATE template0;", db.name)));
    let _ = writeln!(
        md,
        "gunzip -c BACKUP.sql.gz | {}",
        db.shell_text(&db.psql_cmd("psql", &format!("{}__restore", db.name), "--single-transaction"))
    );
    let _ = writeln!(md, "# check the restored database, then swap it in:");
    let _ = writeln!(
        md,
        "{}",
        sql(
            &psql_m,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'; ALTER DATABASE \"{0}\" RENAME TO \"{0}__failed\"; ALTER DATABASE \"{0}__restore\" RENAME TO \"{0}\";",
                db.name
            )
        )
    );
    md.push_str("```\n\n## 5. Redeploy the previous tag\n\n```sh\n");
    let _ = writeln!(md, "{}", w.runtime.describe_deploy("PREVIOUS_TAG"));
    let _ = writeln!(md, "{}", w.health.describe());
    md.push_str("```\n\n## 6. After the rollback\n\n");
    md.push_str("- [ ] The app answers its health check and serves real requests.\n");
    md.push_str("- [ ] The migration table matches the previous release.\n");
    md.push_str("- [ ] If the safe path ran: writes between the backup and the restore are lost — find them in the kept `*__failed_*` database, decide what to replay, then drop it.\n");
    md.push_str(
        "- [ ] Write the incident down: what failed, why the migration was unsafe, what prevents it next time.\n\n",
    );
    md.push_str("## 7. Rehearsal log\n\nRehearse both paths before you need them:\n\n```sh\n");
    md.push_str("deploy-guard simulate --record rehearsals.md\n```\n\n| date | scenario | path | duration | result |\n|---|---|---|---|---|\n");
    md
}

impl World {
    fn runtime_status_text(&self) -> String {
        self.config.app.commands.status.clone().unwrap_or_else(|| "# (app.commands.status not set)".into())
    }
}
