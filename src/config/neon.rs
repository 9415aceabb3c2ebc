//! `backup.provider: neon`: the pre-deploy backup is a Neon branch (see docs/NEON.md).

use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What takes the pre-deploy backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// A streamed `pg_dump` into `backup.store`.
    #[default]
    PgDump,
    /// A Neon branch of the primary branch; `backup.store` keeps the manifests.
    Neon,
}

/// Where the Neon project is. The API key is `NEON_API_KEY`, from the environment only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Neon {
    /// The project (`neon projects list`: e.g. `shiny-wind-028834`).
    pub project_id: String,
    /// The primary branch the app's database is on (`br-…`): what is backed up and restored.
    pub branch_id: String,
    /// The API's base URL.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// How long one branch operation (create, restore, delete) may stay unfinished.
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
}

/// Neon's API key: never in the config file, never printed, withheld from child commands.
pub const API_KEY_VAR: &str = "NEON_API_KEY";

fn default_api_url() -> String {
    "https://console.neon.tech/api/v2".into()
}

fn default_operation_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Neon's own form of its ids: `^[a-z0-9-]{1,60}$` (they go into the API's paths).
pub fn check_id(setting: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 60 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("{setting}: {id:?} is not a Neon id (lower-case letters, digits and '-', at most 60)");
    }
    Ok(())
}

impl super::Config {
    pub(super) fn validate_neon(&self) -> Result<()> {
        let b = &self.backup;
        match (b.provider, &b.neon) {
            (Provider::PgDump, None) => Ok(()),
            (Provider::PgDump, Some(_)) => bail!("backup.neon: only applies with backup.provider: neon"),
            (Provider::Neon, None) => {
                bail!("backup.neon: required with backup.provider: neon (project_id and branch_id)")
            }
            (Provider::Neon, Some(n)) => {
                check_id("backup.neon.project_id", &n.project_id)?;
                check_id("backup.neon.branch_id", &n.branch_id)?;
                if !(n.api_url.starts_with("https://") || n.api_url.starts_with("http://127.0.0.1:")) {
                    bail!("backup.neon.api_url: {:?} must be https:// (the API key travels to it)", n.api_url);
                }
                if self.database.service.is_some() {
                    bail!("database.service: a Neon database is reached by its URL, not inside a compose service");
                }
                Ok(())
            }
        }
    }
}
