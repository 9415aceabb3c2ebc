//! The `alembic` preset against real Alembic (PyPI, in scripts/setup's tools venv) on real
//! PostgreSQL, through the drill scenarios. `alembic_version` holds only the head: a deploy is
//! "from the recorded head to the new one", and the revert is `downgrade <recorded head>`.

use crate::common;

use std::path::Path;

use common::tool::{self, Migration, ToolSpec};

const INI: &str = "[alembic]
script_location = %(here)s/migrations

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
";

const ENV: &str = r#"# The connection comes from DATABASE_URL, so the same project works for any database.
import os
import re
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

if context.config.config_file_name:
    fileConfig(context.config.config_file_name)
# SQLAlchemy 2.1 defaults to psycopg 3 for postgresql://: name the installed driver.
url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", os.environ["DATABASE_URL"])

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with create_engine(url).connect() as connection:
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
"#;

fn write(app: &Path, migrations: &[Migration]) {
    let dir = app.join("migrations/versions");
    std::fs::create_dir_all(&dir).unwrap();
    for m in migrations {
        let down = if m.n == 1 { "None".to_string() } else { format!("\"000{}\"", m.n - 1) };
        let text = format!(
            "from alembic import op\n\nrevision = \"000{n}\"\ndown_revision = {down}\nbranch_labels = None\ndepends_on = None\n\n\n\
             def upgrade():\n    op.execute(\"\"\"{up}\"\"\")\n\n\ndef downgrade():\n    op.execute(\"\"\"{down_sql}\"\"\")\n",
            n = m.n,
            up = m.up,
            down_sql = m.down,
        );
        std::fs::write(dir.join(format!("000{}_{}.py", m.n, m.slug)), text).unwrap();
    }
}

fn spec() -> ToolSpec {
    let bin = tool::tools_venv_bin();
    tool::require(
        &bin.join("alembic"),
        "pip install alembic==1.20.1 SQLAlchemy==2.1.9 psycopg2-binary==2.9.13 (scripts/setup)",
    );
    ToolSpec {
        tool: "alembic",
        fixture: None,
        files: vec![("alembic.ini", INI.into()), ("migrations/env.py", ENV.into())],
        yaml: "",
        write,
        setup: "alembic upgrade head",
        state_sql: "SELECT string_agg(version_num, ',') FROM alembic_version",
        state_v1: "0001",
        state_v2: "0002",
        path: vec![bin],
    }
}

reverting_tool_scenarios!(spec());

#[test]
fn a_missing_alembic_ini_is_bad_config() {
    let w = tool::World::new(spec(), "alembic_missing", &[]);
    tool::missing_file_is_bad_config(
        &w,
        ("  timeout: 120s\n", "  timeout: 120s\n  config: deploy/alembic.ini\n"),
        "migrations.config",
    );
}

/// The fixture's env.py reads `DATABASE_URL` only: with the environment lacking it, the tool gets
/// the one the config's database settings make, and the classification (`alembic upgrade --sql`)
/// and the migration run (issue 27: `KeyError: 'DATABASE_URL'`).
#[test]
fn the_tool_gets_database_url_from_the_config() {
    let w = tool::World::new(spec(), "alembic_url", &[]);
    w.write(&[Migration { n: 2, slug: "add_nickname", up: tool::ADD_NICKNAME, down: tool::DROP_NICKNAME }]);
    let mut c = std::process::Command::new(common::bin());
    c.args(["deploy", "--sha", common::SHA, "--tag", "v2", "--json", "--config"]).arg(w.config());
    w.env(&mut c);
    c.env_remove("DATABASE_URL");
    let out = c.output().unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("KeyError"), "{err}");
    let r = common::json(&out);
    let classify = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == "classify").expect("a classify step");
    let said = classify["detail"].as_str().unwrap_or_default();
    assert!(said.contains("create-index-not-concurrently") && !said.contains("KeyError"), "{classify}");
    assert!(w.has_column("nickname"));
}
