//! `command`: any tool, its commands and table given in the config.

use super::MigrationTool;
use crate::config::Migrations;

pub struct Command;

impl MigrationTool for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn run(&self, m: &Migrations) -> String {
        m.run.clone().unwrap_or_default()
    }
    fn revert(&self, _m: &Migrations) -> Option<String> {
        None
    }
    fn table(&self) -> Option<&'static str> {
        None
    }
    fn needs(&self) -> &'static str {
        "whatever `migrations.run` and `migrations.revert` call"
    }
}
