//! `DEPLOY_GUARD_<SECTION>_<KEY>` overrides. Keys contain underscores (`compose_file`), so the
//! variable names are derived from the table of known settings rather than split apart.

use serde_yaml::{Mapping, Value};

use super::ConfigError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// `90s`, `2m`, `1h30m`.
    Duration,
    /// A list, one item per line.
    Lines,
}

/// Every setting, as a dotted path, with the type an environment value is read as.
pub const SETTINGS: &[(&str, Kind)] = &[
    ("project", Kind::Str),
    ("target.host", Kind::Str),
    ("target.port", Kind::Int),
    ("target.user", Kind::Str),
    ("target.known_hosts", Kind::Str),
    ("target.fingerprint", Kind::Str),
    ("target.insecure_accept_any_host_key", Kind::Bool),
    ("target.jump", Kind::Str),
    ("target.jump_known_hosts", Kind::Str),
    ("target.jump_fingerprint", Kind::Str),
    ("target.connect_timeout", Kind::Duration),
    ("target.command_timeout", Kind::Duration),
    ("app.runtime", Kind::Str),
    ("app.workdir", Kind::Str),
    ("app.compose_file", Kind::Str),
    ("app.service", Kind::Str),
    ("app.services", Kind::Lines),
    ("app.env_file", Kind::Str),
    ("app.tag_variable", Kind::Str),
    ("app.rollout", Kind::Str),
    ("app.kubernetes.namespace", Kind::Str),
    ("app.kubernetes.deployments", Kind::Lines),
    ("app.kubernetes.container", Kind::Str),
    ("app.kubernetes.image", Kind::Str),
    ("app.kubernetes.kubeconfig", Kind::Str),
    ("app.kubernetes.context", Kind::Str),
    ("app.kubernetes.pause_env", Kind::Str),
    ("app.commands.deploy", Kind::Str),
    ("app.commands.stop", Kind::Str),
    ("app.commands.current_tag", Kind::Str),
    ("app.commands.status", Kind::Str),
    ("app.commands.logs", Kind::Str),
    ("app.commands.pause_writes", Kind::Str),
    ("app.commands.resume_writes", Kind::Str),
    ("app.health.url", Kind::Str),
    ("app.health.command", Kind::Str),
    ("app.health.timeout", Kind::Duration),
    ("app.health.interval", Kind::Duration),
    ("database.engine", Kind::Str),
    ("database.service", Kind::Str),
    ("database.url", Kind::Str),
    ("database.host", Kind::Str),
    ("database.port", Kind::Int),
    ("database.name", Kind::Str),
    ("database.user", Kind::Str),
    ("database.maintenance_db", Kind::Str),
    ("database.bin_dir", Kind::Str),
    ("database.stream_timeout", Kind::Duration),
    ("migrations.tool", Kind::Str),
    ("migrations.run", Kind::Str),
    ("migrations.revert", Kind::Str),
    ("migrations.table", Kind::Str),
    ("migrations.order_by", Kind::Str),
    ("migrations.data_source", Kind::Str),
    ("migrations.config", Kind::Str),
    ("migrations.dir", Kind::Str),
    ("migrations.timeout", Kind::Duration),
    ("migrations.where", Kind::Str),
    ("migrations.lock_timeout", Kind::Duration),
    ("migrations.statement_timeout", Kind::Duration),
    ("migrations.lock_warn", Kind::Duration),
    ("migrations.pending_sql", Kind::Str),
    ("migrations.dirty_sql", Kind::Str),
    ("migrations.dirty_clear", Kind::Str),
    ("backup.store", Kind::Str),
    ("backup.store_on", Kind::Str),
    ("backup.copy_to", Kind::Str),
    ("backup.endpoint", Kind::Str),
    ("backup.region", Kind::Str),
    ("backup.path_style", Kind::Bool),
    ("backup.part_size", Kind::Str),
    ("backup.parts_in_flight", Kind::Int),
    ("backup.checksums", Kind::Bool),
    ("backup.sse", Kind::Str),
    ("backup.sse_kms_key_id", Kind::Str),
    ("backup.keep", Kind::Int),
    ("backup.max_age", Kind::Duration),
    ("backup.compression", Kind::Str),
    ("backup.format", Kind::Str),
    ("backup.jobs", Kind::Int),
    ("backup.provider", Kind::Str),
    ("backup.neon.project_id", Kind::Str),
    ("backup.neon.branch_id", Kind::Str),
    ("backup.neon.api_url", Kind::Str),
    ("backup.neon.operation_timeout", Kind::Duration),
    ("rollback.strategy", Kind::Str),
    ("rollback.additive", Kind::Str),
    ("rollback.destructive", Kind::Str),
    ("github.environment", Kind::Str),
    ("github.deployments", Kind::Bool),
    ("github.comment", Kind::Bool),
    ("github.incident", Kind::Bool),
    ("github.incident_logs", Kind::Bool),
    ("deploy.rehearse", Kind::Bool),
    ("verify.queries", Kind::Lines),
    ("verify.commands", Kind::Lines),
];

const PREFIX: &str = "DEPLOY_GUARD_";

/// `DEPLOY_GUARD_*` names that are not settings: secrets and the binary's own switches.
const NOT_SETTINGS: &[&str] = &[
    "DEPLOY_GUARD_SSH_KEY",
    "DEPLOY_GUARD_SSH_KEY_PASSPHRASE",
    "DEPLOY_GUARD_MANIFEST_KEY",
    "DEPLOY_GUARD_LOG",
    "DEPLOY_GUARD_CONFIG",
    "DEPLOY_GUARD_VERSION",
];

pub fn env_name(path: &str) -> String {
    format!("{PREFIX}{}", path.replace('.', "_").to_uppercase())
}

fn is_setting_var(name: &str) -> bool {
    name.starts_with(PREFIX) && !NOT_SETTINGS.contains(&name)
}

pub fn has_overrides(vars: &[(String, String)]) -> bool {
    vars.iter().any(|(k, _)| is_setting_var(k))
}

/// Writes each override into the YAML tree; returns (setting, variable) for each one written. An
/// unknown `DEPLOY_GUARD_*` name is an error (a typo would otherwise be silently ignored); an
/// empty value leaves the file's setting alone, as the Action passes every input, set or not.
pub fn apply_overrides(root: &mut Value, vars: &[(String, String)]) -> Result<Vec<(String, String)>, Box<ConfigError>> {
    let mut written = Vec::new();
    for (name, raw) in vars {
        if !is_setting_var(name) {
            continue;
        }
        let bad = |key: Option<&str>, message: String| {
            Box::new(ConfigError {
                message,
                key: key.map(str::to_string),
                file: None,
                line: None,
                column: None,
                variable: Some(name.clone()),
            })
        };
        let Some((path, kind)) = SETTINGS.iter().find(|(p, _)| env_name(p) == *name) else {
            let hint = match super::error::did_you_mean_var(name) {
                Some(s) => format!("did you mean {s}?"),
                None => "settings are DEPLOY_GUARD_<SECTION>_<KEY>, e.g. DEPLOY_GUARD_TARGET_HOST".into(),
            };
            return Err(bad(None, format!("not a deploy-guard setting; {hint} (docs/CONFIG.md lists them)")));
        };
        if raw.is_empty() {
            continue;
        }
        let value = match kind {
            Kind::Str => Value::String(raw.clone()),
            Kind::Duration => match humantime::parse_duration(raw.trim()) {
                Ok(_) => Value::String(raw.trim().to_string()),
                Err(_) => {
                    return Err(bad(Some(path), format!("expected a duration such as 90s, 2m or 1h30m, got {raw:?}")))
                }
            },
            Kind::Int => match raw.trim().parse::<u64>() {
                Ok(n) => Value::Number(n.into()),
                Err(_) => return Err(bad(Some(path), format!("expected a whole number, e.g. 22, got {raw:?}"))),
            },
            Kind::Lines => Value::Sequence(
                raw.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| Value::String(l.into())).collect(),
            ),
            Kind::Bool => match raw.trim() {
                "true" | "1" | "yes" => Value::Bool(true),
                "false" | "0" | "no" => Value::Bool(false),
                _ => return Err(bad(Some(path), format!("expected true or false, got {raw:?}"))),
            },
        };
        set_path(root, path, value).map_err(|m| bad(Some(path), m))?;
        written.push((path.to_string(), name.clone()));
    }
    Ok(written)
}

fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map: &mut Mapping = match node {
            Value::Mapping(m) => m,
            Value::Null => {
                *node = Value::Mapping(Mapping::new());
                node.as_mapping_mut().expect("just set")
            }
            _ => return Err(format!("cannot be set: {} in the config file is not a section", parts[..i].join("."))),
        };
        let key = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(key, value);
            return Ok(());
        }
        node = map.entry(key).or_insert(Value::Null);
    }
    Ok(())
}
