//! TypeORM: `migration:run` / `migration:revert` with a data source file; table `migrations`.

use super::{q, MigrationTool};
use crate::config::Migrations;

pub struct Typeorm;

const DATA_SOURCE: &str = "dist/data-source.js";

fn data_source(m: &Migrations) -> &str {
    m.data_source.as_deref().unwrap_or(DATA_SOURCE)
}

impl MigrationTool for Typeorm {
    fn name(&self) -> &'static str {
        "typeorm"
    }
    fn run(&self, m: &Migrations) -> String {
        format!("npx --no-install typeorm migration:run -d {}", q(data_source(m)))
    }
    fn revert(&self, m: &Migrations) -> Option<String> {
        Some(format!("npx --no-install typeorm migration:revert -d {}", q(data_source(m))))
    }
    fn table(&self) -> Option<&'static str> {
        Some("migrations")
    }
    fn files(&self, m: &Migrations) -> Vec<(&'static str, String)> {
        // The data source is only ours to look for when our commands name it: with your own
        // `migrations.run`, it is wherever that command says (give data_source to have it checked).
        if m.run.is_some() && m.data_source.is_none() {
            return Vec::new();
        }
        vec![("migrations.data_source", data_source(m).to_string())]
    }
    fn needs(&self) -> &'static str {
        "node, the `typeorm` package and the compiled data source"
    }
}
