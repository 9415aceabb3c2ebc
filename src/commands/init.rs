//! `init`: looks at the repository it runs in — the migration tool's lock and config files, a
//! compose file — and writes a commented `deploy-guard.yml` (and the two example workflows when
//! there are none), asking nothing. What it could not tell is left as a marked placeholder.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_yaml::Value;

use crate::config::{Config, RuntimeKind, Tool};

/// What was found, or chosen with `--tool` / `--runtime`.
pub struct Found {
    pub tool: Tool,
    pub tool_why: String,
    /// Where the tool's migrations were found, when that tells (`migrations.dir`).
    pub dir: Option<String>,
    pub compose: Option<Compose>,
}

pub struct Compose {
    pub file: String,
    pub service: String,
    /// Other services on the app's image (a worker): they write too.
    pub others: Vec<String>,
    pub db_service: Option<String>,
    pub tag_variable: Option<String>,
    pub env_file: Option<String>,
}

/// The migration tool, from the files a project on it has, and where its migrations are when
/// that is how it was told.
fn detect_tool(dir: &Path) -> (Tool, String, Option<String>) {
    let package: Option<serde_json::Value> =
        std::fs::read(dir.join("package.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let has_dep = |name: &str| {
        package.as_ref().is_some_and(|p| {
            ["dependencies", "devDependencies"].iter().any(|k| p.get(k).and_then(|d| d.get(name)).is_some())
        })
    };
    // Most specific first: a project with Prisma or Drizzle may also list pg or knex.
    let node = [
        ("prisma", Tool::Prisma),
        ("drizzle-kit", Tool::Drizzle),
        ("typeorm", Tool::Typeorm),
        ("node-pg-migrate", Tool::NodePgMigrate),
        ("knex", Tool::Knex),
        ("dbmate", Tool::Dbmate),
    ];
    if let Some((dep, tool)) = node.iter().find(|(d, _)| has_dep(d)) {
        return (*tool, format!("package.json depends on {dep}"), None);
    }
    if dir.join("alembic.ini").exists() {
        return (Tool::Alembic, "alembic.ini".into(), None);
    }
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    if cargo.contains("sqlx") && dir.join("migrations").is_dir() {
        return (Tool::Sqlx, "Cargo.toml uses sqlx and migrations/ exists".into(), None);
    }
    if let Some((tool, why, found)) = go_sql_migrations(dir) {
        return (tool, why, Some(found));
    }
    let gomod = std::fs::read_to_string(dir.join("go.mod")).unwrap_or_default();
    for (module, tool) in
        [("github.com/pressly/goose", Tool::Goose), ("github.com/golang-migrate/migrate", Tool::GolangMigrate)]
    {
        if gomod.contains(module) {
            return (tool, format!("go.mod requires {module}"), None);
        }
    }
    if dir.join("db/migrations").is_dir() {
        return (Tool::Dbmate, "db/migrations/ exists".into(), None);
    }
    (Tool::Command, "no known tool found: give migrations.run and migrations.revert".into(), None)
}

/// goose's SQL files (a `-- +goose Up` annotation) or golang-migrate's (`*.up.sql`) in a usual
/// migrations directory: (tool, why, the directory).
fn go_sql_migrations(dir: &Path) -> Option<(Tool, String, String)> {
    for d in ["db/migrations", "migrations"] {
        let Ok(entries) = std::fs::read_dir(dir.join(d)) else { continue };
        let names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        let goose = names.iter().filter(|n| n.ends_with(".sql")).any(|n| {
            std::fs::read_to_string(dir.join(d).join(n)).is_ok_and(|t| t.to_ascii_lowercase().contains("+goose up"))
        });
        if goose {
            return Some((Tool::Goose, format!("{d}/ holds SQL files with `-- +goose Up`"), d.into()));
        }
        if names.iter().any(|n| n.ends_with(".up.sql")) {
            return Some((Tool::GolangMigrate, format!("{d}/ holds *.up.sql files"), d.into()));
        }
    }
    None
}

const COMPOSE_FILES: &[&str] = &[
    "docker-compose.prod.yml",
    "docker-compose.production.yml",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The app and database services of the first compose file found.
fn detect_compose(dir: &Path) -> Result<Option<Compose>> {
    let Some(file) = COMPOSE_FILES.iter().find(|f| dir.join(f).is_file()) else { return Ok(None) };
    let text = std::fs::read_to_string(dir.join(file))?;
    let doc: Value = serde_yaml::from_str(&text).with_context(|| format!("{file} is not YAML"))?;
    let services =
        doc.get("services").and_then(Value::as_mapping).with_context(|| format!("{file} has no services"))?;
    let image = |s: &Value| s.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    let is_db = |s: &Value| {
        let i = image(s);
        i.contains("postgres") || i.contains("postgis")
    };
    let db_service = services.iter().find(|(_, s)| is_db(s)).and_then(|(n, _)| n.as_str()).map(str::to_string);
    // The app: a service whose image follows a variable, else one that is built, else any non-database one.
    let app = services
        .iter()
        .filter(|(_, s)| !is_db(s))
        // Among services on one image, the app is the one that runs its default command (a worker overrides it).
        .max_by_key(|(_, s)| (image(s).contains("${"), s.get("build").is_some(), s.get("command").is_none()))
        .with_context(|| format!("{file}: no service other than the database"))?;
    let (name, svc) = (app.0.as_str().unwrap_or_default().to_string(), app.1);
    let tag_variable = image(svc).split("${").nth(1).and_then(|r| r.split(['}', ':', '-']).next()).map(str::to_string);
    let env_file = match svc.get("env_file") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Sequence(v)) => v.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let others = services
        .iter()
        .filter(|(n, s)| n.as_str() != Some(name.as_str()) && !image(svc).is_empty() && image(s) == image(svc))
        .filter_map(|(n, _)| n.as_str().map(str::to_string))
        .collect();
    Ok(Some(Compose { file: file.to_string(), service: name, others, db_service, tag_variable, env_file }))
}

pub fn detect(dir: &Path, tool: Option<Tool>, runtime: Option<RuntimeKind>) -> Result<Found> {
    let (detected, why, found_dir) = detect_tool(dir);
    let compose = match runtime {
        Some(RuntimeKind::Shell) => None,
        Some(RuntimeKind::Swarm) => anyhow::bail!(
            "--runtime swarm: init writes compose and shell configs; a swarm's is a few lines, in docs/SWARM.md"
        ),
        Some(RuntimeKind::Compose) => Some(
            detect_compose(dir)?
                .context("--runtime compose: no compose file here (docker-compose.yml, compose.yml, …)")?,
        ),
        Some(RuntimeKind::Kubernetes) => {
            anyhow::bail!("--runtime kubernetes: init does not write that config; docs/KUBERNETES.md has one to copy")
        }
        None => detect_compose(dir)?,
    };
    Ok(Found {
        tool: tool.unwrap_or(detected),
        tool_why: if tool.is_some() { "chosen with --tool".into() } else { why },
        dir: if tool.is_some() { None } else { found_dir },
        compose,
    })
}

/// The commented config for what was found.
pub fn render(project: &str, f: &Found) -> String {
    let tool = crate::migrate::preset(f.tool);
    let mut y = format!(
        "# deploy-guard.yml, written by `deploy-guard init`. Check each line marked CHECK, then run\n\
         # `deploy-guard check` (it reaches every part and changes nothing). Every setting can also be\n\
         # given as DEPLOY_GUARD_<SECTION>_<KEY>; secrets only ever come from the environment.\n\
         project: {project}\n\n\
         # The host that runs the app. Without `host`, everything runs on this machine.\n\
         # target:\n\
         #   host: vps.example.com          # CHECK\n\
         #   user: deploy\n\
         #   known_hosts: \"vps.example.com ssh-ed25519 AAAA…\"   # ssh-keyscan -t ed25519 HOST, checked out of band\n\n"
    );
    match &f.compose {
        Some(c) => {
            y.push_str(&format!(
                "app:\n  runtime: compose\n  compose_file: {}          # CHECK: its path on the host\n  service: {}\n",
                c.file, c.service
            ));
            if !c.others.is_empty() {
                y.push_str(&format!(
                    "  services: [{}, {}]   # every service that writes: stopped before a restore, deployed together\n",
                    c.service,
                    c.others.join(", ")
                ));
            }
            match &c.env_file {
                Some(e) => y.push_str(&format!("  env_file: {e}               # CHECK: its path on the host\n")),
                None => y.push_str("  # env_file: /opt/app/.env     # where ${VAR} values and the tag variable live\n"),
            }
            y.push_str(&format!(
                "  tag_variable: {}   # the variable the service's image tag follows\n",
                c.tag_variable
                    .as_deref()
                    .unwrap_or("APP_VERSION   # CHECK: image: …:${APP_VERSION} in the compose file")
            ));
            y.push_str("  health: { url: \"http://localhost:3000/health\", timeout: 90s }   # CHECK\n\n");
            y.push_str("database:\n");
            match &c.db_service {
                Some(d) => y.push_str(&format!("  service: {d}             # pg_dump and psql run inside it\n")),
                None => y.push_str("  host: 127.0.0.1               # CHECK\n"),
            }
            y.push_str("  name: ${POSTGRES_DB}          # CHECK: read from the env file on the host\n  user: ${POSTGRES_USER}\n\n");
        }
        None => {
            y.push_str(
                "app:\n  runtime: shell\n  commands:                     # CHECK: your own commands\n\
                 \x20   deploy: ./deploy.sh {tag}\n    current_tag: cat .running-tag\n    stop: ./stop.sh\n\
                 \x20 health: { url: \"http://localhost:3000/health\", timeout: 90s }   # CHECK\n\n\
                 database:\n  host: 127.0.0.1               # CHECK\n  name: ${DATABASE_NAME}        # CHECK\n\n",
            );
        }
    }
    y.push_str(&format!("migrations:\n  tool: {}   # {}; needs {}\n", tool.name(), f.tool_why, tool.needs()));
    if let Some(d) = &f.dir {
        y.push_str(&format!("  dir: {d}   # where its migrations were found\n"));
    }
    if f.tool == Tool::Command {
        y.push_str("  run: ./migrate up              # CHECK\n  # revert: ./migrate down\n");
    }
    y.push_str(
        "  timeout: 10m\n\n\
         backup:\n  # Keep backups where they outlive the CI runner: S3-compatible storage, or the host's disk.\n\
         \x20 store: file:///var/backups/app   # CHECK (or s3://bucket/prefix with backup.endpoint)\n\n\
         rollback:\n  strategy: auto                # revert when trusted, else restore the backup\n",
    );
    y
}

/// Writes `deploy-guard.yml` (refusing to overwrite one) and the example workflows where none
/// exist; returns the files written.
pub fn init(dir: &Path, tool: Option<Tool>, runtime: Option<RuntimeKind>) -> Result<Vec<String>> {
    let config = dir.join("deploy-guard.yml");
    let workflows = dir.join(".github/workflows");
    for d in [dir.join(".github"), workflows.clone()] {
        if d.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            bail!("{} is a symbolic link: init writes no workflow through it", d.display());
        }
    }
    if config.symlink_metadata().is_ok() {
        bail!("{} exists: init writes a new config only (move it away to start over)", config.display());
    }
    let project = dir
        .canonicalize()?
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect::<String>())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "app".into());
    let text = render(&project, &detect(dir, tool, runtime)?);
    // What init writes must load: a person only fills in the CHECK lines.
    Config::from_yaml(&text, &[]).context("the config init wrote does not load (a bug: please report it)")?;
    if !write_new(&config, &text)? {
        bail!("{} exists: init writes a new config only (move it away to start over)", config.display());
    }
    let mut written = vec!["deploy-guard.yml".to_string()];
    for (name, body) in [
        ("deploy-guard-deploy.yml", include_str!("../../examples/workflows/deploy.yml")),
        ("deploy-guard-rollback.yml", include_str!("../../examples/workflows/rollback.yml")),
    ] {
        std::fs::create_dir_all(&workflows)?;
        if write_new(&workflows.join(name), body)? {
            written.push(format!(".github/workflows/{name}"));
        }
    }
    Ok(written)
}

/// Creates `path` with `text`, unless something is there already (a file, or a symbolic link,
/// even a dangling one: O_EXCL follows none); `false` then.
fn write_new(path: &Path, text: &str) -> Result<bool> {
    use std::io::Write;
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut f) => {
            f.write_all(text.as_bytes())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_of(files: &[(&str, &str)]) -> (Tool, Option<String>) {
        let tmp = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = tmp.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let (tool, _, dir) = detect_tool(tmp.path());
        (tool, dir)
    }

    #[test]
    fn go_tools_are_detected_by_their_files_or_go_mod() {
        let up = ("db/migrations/000001_init.up.sql", "CREATE TABLE t (id int);");
        assert_eq!(tool_of(&[up]), (Tool::GolangMigrate, Some("db/migrations".into())));
        let goose = ("migrations/00001_init.sql", "-- +goose Up\nCREATE TABLE t (id int);\n-- +goose Down\n");
        assert_eq!(tool_of(&[goose]), (Tool::Goose, Some("migrations".into())));
        let gomod = |m: &str| ("go.mod", format!("module x\n\nrequire {m} v3.30.1\n"));
        let (path, text) = gomod("github.com/pressly/goose/v3");
        assert_eq!(tool_of(&[(path, &text)]), (Tool::Goose, None));
        let (path, text) = gomod("github.com/golang-migrate/migrate/v4");
        assert_eq!(tool_of(&[(path, &text)]), (Tool::GolangMigrate, None));
        // sqlx's `.up.sql` files stay sqlx's; dbmate's `-- migrate:up` files stay dbmate's.
        let sqlx = ("Cargo.toml", "[dependencies]\nsqlx = \"0.9\"\n");
        assert_eq!(tool_of(&[sqlx, ("migrations/0001_a.up.sql", "SELECT 1;")]).0, Tool::Sqlx);
        assert_eq!(tool_of(&[("db/migrations/1_a.sql", "-- migrate:up\nSELECT 1;\n")]).0, Tool::Dbmate);
    }

    #[test]
    fn the_found_directory_is_written_and_loads() {
        let f = Found { tool: Tool::Goose, tool_why: "x".into(), dir: Some("db/migrations".into()), compose: None };
        let c = Config::from_yaml(&render("app", &f), &[]).unwrap();
        assert_eq!((c.migrations.tool, c.migrations.dir.as_deref()), (Tool::Goose, Some("db/migrations")));
    }
}
