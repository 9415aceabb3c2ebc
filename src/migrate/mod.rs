//! Migration tools: presets fill in the commands and the table the tool records migrations in.

use std::time::Duration;

use crate::config::{Migrations, Tool};
use crate::exec::fill;

/// The migration commands and table for this config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrator {
    pub tool: Tool,
    /// Applies all pending migrations.
    pub run: String,
    /// Reverts the most recent migration.
    pub revert: Option<String>,
    /// Where applied migrations are recorded (None: only the fingerprint tells).
    pub table: Option<String>,
    pub order_by: String,
    pub timeout: Duration,
}

const TYPEORM_DATA_SOURCE: &str = "dist/data-source.js";

impl Migrator {
    pub fn from_config(m: &Migrations) -> Migrator {
        match m.tool {
            Tool::Typeorm => {
                let ds = m.data_source.as_deref().unwrap_or(TYPEORM_DATA_SOURCE);
                let ds = crate::exec::quote(ds);
                Migrator {
                    tool: m.tool,
                    run: m.run.clone().unwrap_or_else(|| format!("npx --no-install typeorm migration:run -d {ds}")),
                    revert: Some(
                        m.revert
                            .clone()
                            .unwrap_or_else(|| format!("npx --no-install typeorm migration:revert -d {ds}")),
                    ),
                    table: Some(m.table.clone().unwrap_or_else(|| "migrations".into())),
                    order_by: m.order_by.clone().unwrap_or_else(|| "id".into()),
                    timeout: m.timeout,
                }
            }
            Tool::Command => Migrator {
                tool: m.tool,
                run: m.run.clone().unwrap_or_default(),
                revert: m.revert.clone(),
                table: m.table.clone(),
                order_by: m.order_by.clone().unwrap_or_else(|| "id".into()),
                timeout: m.timeout,
            },
        }
    }

    pub fn run_script(&self, tag: &str, sha: &str) -> String {
        fill(&self.run, &[("tag", tag), ("sha", sha)])
    }

    pub fn revert_script(&self, tag: &str, sha: &str) -> Option<String> {
        self.revert.as_ref().map(|r| fill(r, &[("tag", tag), ("sha", sha)]))
    }
}

/// The rows a deploy added: `now` minus the recorded `before`, when `before` is still the start
/// of `now` (else `None`: history was rewritten and cannot be trusted).
pub fn applied_since<'a>(
    before: &[serde_json::Value],
    now: &'a [serde_json::Value],
) -> Option<&'a [serde_json::Value]> {
    (now.len() >= before.len() && now[..before.len()] == *before).then(|| &now[before.len()..])
}

/// A migration row's name, for people: its `name` (TypeORM, knex), else its `version`, else the
/// row as JSON.
pub fn row_name(row: &serde_json::Value) -> String {
    ["name", "migration_name", "version"]
        .iter()
        .find_map(|k| row.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .unwrap_or_else(|| row.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typeorm_preset() {
        let m: Migrations = serde_yaml::from_str("tool: typeorm").unwrap();
        let mg = Migrator::from_config(&m);
        assert_eq!(mg.table.as_deref(), Some("migrations"));
        assert_eq!(mg.order_by, "id");
        assert_eq!(mg.run_script("v2", "abc1234"), "npx --no-install typeorm migration:run -d dist/data-source.js");
        assert!(mg.revert_script("v2", "abc").unwrap().contains("migration:revert"));
    }

    #[test]
    fn command_placeholders_are_quoted() {
        let m: Migrations =
            serde_yaml::from_str("run: ./migrate up {tag} {sha}\nrevert: ./migrate down {tag}").unwrap();
        let mg = Migrator::from_config(&m);
        assert_eq!(mg.run_script("v2;rm", "abc1234"), "./migrate up 'v2;rm' abc1234");
        assert_eq!(mg.revert_script("v2", "x").unwrap(), "./migrate down v2");
    }

    #[test]
    fn applied_rows_are_the_new_suffix() {
        let a = json!({"id": 1});
        let b = json!({"id": 2});
        let (one, two) = (vec![a.clone()], vec![a.clone(), b.clone()]);
        assert_eq!(applied_since(&one, &two).unwrap(), &two[1..]);
        assert_eq!(applied_since(&one, &one).unwrap().len(), 0);
        assert!(applied_since(&one, &two[1..]).is_none());
        assert!(applied_since(&two, &two[1..]).is_none());
    }
}
