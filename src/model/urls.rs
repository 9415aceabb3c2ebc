//! The URLs a config holds, parsed: the database's and the backup store's.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Connection settings that are not secret (the password stays in PGPASSWORD or the env file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub dbname: Option<String>,
    /// The URL's `sslmode` (libpq's `PGSSLMODE`): Go's and Node's drivers default to requiring
    /// TLS, so a server without it (a job's service container) needs `?sslmode=disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,
}

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [(SslMode, &'static str); 6] = [
        (SslMode::Disable, "disable"),
        (SslMode::Allow, "allow"),
        (SslMode::Prefer, "prefer"),
        (SslMode::Require, "require"),
        (SslMode::VerifyCa, "verify-ca"),
        (SslMode::VerifyFull, "verify-full"),
    ];

    pub fn parse(s: &str) -> Option<SslMode> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(m, _)| *m)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(m, _)| *m == self).map(|(_, n)| *n).unwrap_or("prefer")
    }
}

impl ConnInfo {
    /// `postgres://user@host:port/dbname`; a password in the URL is refused (secrets come from
    /// the environment only).
    pub fn parse_url(url: &str) -> Result<ConnInfo> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| anyhow::anyhow!("must start with postgres://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        // Of the parameters, sslmode alone is kept: the others are libpq's to read from the
        // environment, as before.
        let mut sslmode = None;
        for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
            if k == "sslmode" {
                sslmode = Some(SslMode::parse(v).ok_or_else(|| {
                    anyhow::anyhow!(
                        "sslmode {v:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    )
                })?);
            }
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = userinfo {
            if u.contains(':') {
                bail!("contains a password: put it in PGPASSWORD (or the env file on the target), not in the config");
            }
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| anyhow::anyhow!("port {p:?} is not a number"))?)),
            None => (hostport, None),
        };
        Ok(ConnInfo {
            host: (!host.is_empty()).then(|| host.to_string()),
            port,
            user: userinfo.filter(|u| !u.is_empty()).map(str::to_string),
            dbname: (!path.is_empty()).then(|| path.to_string()),
            sslmode,
        })
    }
}

impl ConnInfo {
    /// `postgresql://user@host:port/dbname`, each part percent-encoded (a socket directory is a
    /// host); what is not set is left for libpq's defaults. `postgresql://`: the scheme libpq,
    /// SQLAlchemy (which dropped `postgres://`) and the Node, Go and Rust drivers all accept.
    pub fn to_url(&self) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let user = self.user.as_deref().map(|u| format!("{}@", enc(u))).unwrap_or_default();
        let host = self.host.as_deref().map(enc).unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let db = self.dbname.as_deref().map(enc).unwrap_or_default();
        let query = self.sslmode.map(|m| format!("?sslmode={}", m.as_str())).unwrap_or_default();
        format!("postgresql://{user}{host}{port}/{db}{query}")
    }
}

/// `backup.store`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Dir(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<StoreUrl> {
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                bail!("{s:?}: a file:// store needs an absolute path (file:///var/backups/app)");
            }
            return Ok(StoreUrl::Dir(path.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{s:?}: no bucket (s3://bucket/prefix)");
            }
            return Ok(StoreUrl::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        bail!("{s:?}: expected file:///absolute/dir or s3://bucket/prefix")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_written_back() {
        let c = ConnInfo::parse_url("postgres://app@db.internal:5433/station").unwrap();
        assert_eq!(c.to_url(), "postgresql://app@db.internal:5433/station");
        let c = ConnInfo { host: Some("/var/run/postgresql".into()), dbname: Some("a b".into()), ..Default::default() };
        assert_eq!(c.to_url(), "postgresql://%2Fvar%2Frun%2Fpostgresql/a%20b");
    }

    #[test]
    fn parses_urls_and_refuses_passwords() {
        let c = ConnInfo::parse_url("postgres://app@db.local:5433/shop").unwrap();
        assert_eq!(c.host.as_deref(), Some("db.local"));
        assert_eq!(c.port, Some(5433));
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.dbname.as_deref(), Some("shop"));
        let err = ConnInfo::parse_url("postgres://app:hunter2@db/shop").unwrap_err().to_string();
        assert!(err.contains("password") && !err.contains("hunter2"), "{err}");
        assert!(ConnInfo::parse_url("mysql://x").is_err());
        // sslmode is kept (written back for the tool, PGSSLMODE for libpq); a bad one refused.
        let c = ConnInfo::parse_url("postgres://app@localhost:5432/shop?connect_timeout=5&sslmode=disable").unwrap();
        assert_eq!((c.sslmode, c.dbname.as_deref()), (Some(SslMode::Disable), Some("shop")));
        assert_eq!(c.to_url(), "postgresql://app@localhost:5432/shop?sslmode=disable");
        let err = ConnInfo::parse_url("postgres://app@h/shop?sslmode=off").unwrap_err().to_string();
        assert!(err.contains("sslmode \"off\" is not one of disable"), "{err}");
    }

    #[test]
    fn parses_store_urls() {
        assert_eq!(StoreUrl::parse("file:///var/b").unwrap(), StoreUrl::Dir("/var/b".into()));
        assert_eq!(
            StoreUrl::parse("s3://bk/postgres/").unwrap(),
            StoreUrl::S3 { bucket: "bk".into(), prefix: "postgres".into() }
        );
        assert!(StoreUrl::parse("file://rel").is_err());
        assert!(StoreUrl::parse("/var/b").is_err());
        assert!(StoreUrl::parse("s3:///x").is_err());
    }
}
