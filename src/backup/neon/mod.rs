//! `backup.provider: neon`: the pre-deploy backup is a branch of the primary branch, taken at
//! its head in about a second whatever the size; a restore is Neon's own branch restore of the
//! primary branch to it, in place (the endpoint and its connection string stay), the broken state
//! kept as a branch. The branches are read through computes of their own: the steps see each as a
//! database named after its branch ([`crate::db::Postgres::reach`]).

pub mod api;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use api::Api;

use crate::config::{check_neon_id, Config, Provider};
use crate::db::{ConnInfo, Endpoint, Postgres};
use crate::model::{random_hex, PointInTime, Sha};

/// Every branch deploy-guard makes is named under this prefix: retention touches no other.
pub const PREFIX: &str = "deploy-guard/";

/// A pre-deploy branch, as its manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeonBranch {
    pub project_id: String,
    pub id: String,
    pub name: String,
    /// The primary branch it was taken from.
    pub parent_id: String,
    /// The primary branch's LSN it was taken at.
    pub lsn: Option<String>,
    /// The read-only compute it is read through.
    pub endpoint_id: String,
    /// `restore --at`: the moment of the primary's history it was branched at (none: its head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

impl NeonBranch {
    /// Checks what reaches an API path or a name (a manifest is hostile until checked).
    pub fn validate(&self) -> Result<()> {
        for (what, id) in [
            ("project_id", &self.project_id),
            ("id", &self.id),
            ("parent_id", &self.parent_id),
            ("endpoint_id", &self.endpoint_id),
        ] {
            check_neon_id(&format!("neon.{what}"), id)?;
        }
        let plain = self.name.len() <= 100
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'));
        if !self.name.starts_with(PREFIX) || !plain {
            bail!("neon.name {:?} is not a branch deploy-guard names", self.name);
        }
        Ok(())
    }
}

/// The provider: the API and where the primary branch's database is.
pub struct Neon {
    pub api: Api,
    /// The primary branch (`backup.neon.branch_id`).
    pub primary: String,
    /// The database and role on every branch (the live database's own name and user).
    pub database: String,
    pub role: String,
}

impl Neon {
    /// The provider `config` names, if any (`NEON_API_KEY` is read here: its absence is refused
    /// before anything runs).
    pub fn open(config: &Config, db: &Postgres, vars: &[(String, String)]) -> Result<Option<Neon>> {
        let (Provider::Neon, Some(n)) = (config.backup.provider, &config.backup.neon) else { return Ok(None) };
        let role = db.conn_user().context("database.user: needed with backup.provider: neon (the role)")?;
        Ok(Some(Neon { api: Api::new(n, vars)?, primary: n.branch_id.clone(), database: db.name.clone(), role }))
    }

    /// The name of a pre-deploy branch: `deploy-guard/pre-SHA7-YYYYMMDD-HHMMSS`.
    pub fn pre_name(sha: &Sha, at: DateTime<Utc>) -> String {
        format!("{PREFIX}pre-{}-{}", sha.short(), at.format("%Y%m%d-%H%M%S"))
    }

    /// The name of a point-in-time branch (`restore --at`), for the deploy of `sha`:
    /// `deploy-guard/at-YYYYMMDD-HHMMSS-SHA7-NONCE`, the time the one it holds.
    pub fn at_name(sha: &Sha, at: &PointInTime) -> String {
        format!("{PREFIX}at-{}-{}-{}", at.time().format("%Y%m%d-%H%M%S"), sha.short(), random_hex(2))
    }

    /// Where the broken state is kept: `deploy-guard/failed-SHA7`, or with the time when an
    /// earlier restore of the same deploy kept one already.
    pub async fn failed_name(&self, sha: &Sha) -> Result<String> {
        let name = format!("{PREFIX}failed-{}", sha.short());
        let taken = self.api.branches(&name).await?.iter().any(|b| b.name == name);
        Ok(if taken { format!("{name}-{}", Utc::now().format("%Y%m%d-%H%M%S")) } else { name })
    }

    /// Checks the key and the primary branch, changing nothing.
    pub async fn check(&self) -> Result<String> {
        let b = self.api.branch(&self.primary).await?;
        Ok(format!("Neon project {}, primary branch {} ({}, {})", self.api.project(), b.name, b.id, b.current_state))
    }

    /// Branches the primary at its head (or as it was at `at`) as `name` and reaches it as the
    /// database `name` in `db`.
    pub async fn take(&self, db: &Postgres, name: &str, at: Option<&PointInTime>) -> Result<NeonBranch> {
        let stamp = at.map(PointInTime::rfc3339);
        let (b, endpoint) = self.api.create_branch(&self.primary, name, "read_only", stamp.as_deref()).await?;
        let taken = NeonBranch {
            project_id: self.api.project().to_string(),
            id: b.id,
            name: b.name,
            parent_id: self.primary.clone(),
            lsn: b.parent_lsn,
            endpoint_id: endpoint.id,
            at: at.map(PointInTime::time),
        };
        taken.validate().context("Neon answered with a branch that is not as asked")?;
        self.reach(db, &taken.name, &taken.id, &taken.endpoint_id).await?;
        Ok(taken)
    }

    /// A writable branch of the pre-deploy branch `from` for a rehearsal, reached as the
    /// database `alias` in `db`; returns its id (the caller deletes it).
    pub async fn rehearsal_copy(&self, db: &Postgres, alias: &str, from: &str, sha: &Sha) -> Result<String> {
        let name = format!("{PREFIX}rehearse-{}-{}", sha.short(), Utc::now().format("%Y%m%d-%H%M%S"));
        let (b, endpoint) = self.api.create_branch(from, &name, "read_write", None).await?;
        self.reach(db, alias, &b.id, &endpoint.id).await?;
        Ok(b.id)
    }

    /// Makes `alias` name `database` on `branch`'s compute `endpoint` in `db`.
    pub async fn reach(&self, db: &Postgres, alias: &str, branch: &str, endpoint: &str) -> Result<()> {
        let uri = self.api.connection_uri(branch, endpoint, &self.database, &self.role).await?;
        db.reach(alias, parse_uri(&uri).with_context(|| format!("the connection URI Neon gave for {alias}"))?);
        Ok(())
    }

    /// Restores the primary branch in place to `from` (at `at`, if given), keeping what it held
    /// as `keep`, which is then reached as the database `keep` in `db`.
    pub async fn restore(&self, db: &Postgres, from: &str, at: Option<&str>, keep: &str) -> Result<()> {
        self.api.restore(&self.primary, from, at, keep).await?;
        let kept = self.api.branches(keep).await?.into_iter().find(|b| b.name == keep).with_context(|| {
            format!("Neon restored {} but lists no branch {keep} with its state before", self.primary)
        })?;
        let endpoint = self.api.create_endpoint(&kept.id).await?;
        self.reach(db, keep, &kept.id, &endpoint.id).await
    }
}

/// A connection URI (`postgresql://role:password@host/db?sslmode=require`) as an endpoint; the
/// password goes only to PGPASSWORD, and no error repeats the URI.
pub fn parse_uri(uri: &str) -> Result<Endpoint> {
    let url = reqwest::Url::parse(uri).map_err(|e| anyhow::anyhow!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!("not a postgres:// URI");
    }
    let decode = |s: &str| -> Result<String> {
        let bytes: Vec<u8> = percent_decode(s);
        String::from_utf8(bytes).context("not UTF-8")
    };
    let dbname = decode(url.path().trim_start_matches('/'))?;
    crate::model::check_live_db_name(&dbname)?;
    let sslmode = match url.query_pairs().find(|(k, _)| k == "sslmode") {
        Some((_, v)) => Some(crate::model::SslMode::parse(&v).context("its sslmode is not one")?),
        None => None,
    };
    // The host goes into the rehearsal's shell prelude and its sed expression: a hostname only.
    let host = url.host_str().context("no host")?;
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')) {
        bail!("its host is not a plain hostname");
    }
    Ok(Endpoint {
        conn: ConnInfo {
            host: Some(host.to_string()),
            port: url.port(),
            user: Some(decode(url.username())?).filter(|u| !u.is_empty()),
            dbname: Some(dbname),
            sslmode,
        },
        password: url.password().map(decode).transpose()?,
    })
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_uri_becomes_an_endpoint_with_its_password_apart() {
        let e = parse_uri("postgresql://alex:p%40ss@ep-cool-1.us-east-2.aws.neon.tech/neondb?sslmode=require").unwrap();
        assert_eq!(e.conn.host.as_deref(), Some("ep-cool-1.us-east-2.aws.neon.tech"));
        assert_eq!((e.conn.user.as_deref(), e.conn.dbname.as_deref()), (Some("alex"), Some("neondb")));
        assert_eq!((e.password.as_deref(), e.conn.sslmode), (Some("p@ss"), Some(crate::model::SslMode::Require)));
        let err = format!("{:#}", parse_uri("mysql://a:secret@h/db").unwrap_err());
        assert!(!err.contains("secret"), "{err}");
        // Hostile answers: a host that would be sed or shell syntax, an sslmode that is not one.
        for bad in [
            "postgresql://a:secret@h%23e/db",
            "postgresql://a:secret@h%60id%60/db",
            "postgresql://a@h/db?sslmode=$(id)",
        ] {
            let err = format!("{:#}", parse_uri(bad).unwrap_err());
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
