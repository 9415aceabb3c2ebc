//! `restore --at`: a past moment, as RFC 3339 writes it.

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, SecondsFormat, Utc};

/// A moment in the past a point-in-time restore goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointInTime(DateTime<Utc>);

impl PointInTime {
    /// `s` as RFC 3339 (`2026-12-07T03:00:00Z`, or with an offset), no later than `now`.
    pub fn parse(s: &str, now: DateTime<Utc>) -> Result<PointInTime> {
        // Hostile text: cut short before it is repeated.
        let shown: String = s.chars().filter(|c| !c.is_control()).take(64).collect();
        let t = DateTime::parse_from_rfc3339(s.trim())
            .map_err(|e| anyhow!("--at {shown:?} is not an RFC 3339 time ({e}); give one like 2026-12-07T03:00:00Z"))?
            .with_timezone(&Utc);
        if t > now {
            bail!(
                "--at {} is in the future (it is {} now): a restore goes back to a moment that has passed",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
        Ok(PointInTime(t))
    }

    pub fn time(&self) -> DateTime<Utc> {
        self.0
    }

    /// As the API and the report write it (UTC, `Z`).
    pub fn rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl std::fmt::Display for PointInTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_rfc3339_time_is_taken_in_utc_and_anything_else_is_refused() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T04:00:00Z").unwrap().with_timezone(&Utc);
        let t = PointInTime::parse("2026-12-07T05:30:00+02:00", now).unwrap();
        assert_eq!(t.rfc3339(), "2026-12-07T03:30:00Z");
        assert_eq!(PointInTime::parse("2026-12-07T03:00:00.250Z", now).unwrap().rfc3339(), "2026-12-07T03:00:00.250Z");
        for bad in ["yesterday", "2026-12-07", "2026-12-07 03:00:00", "2026-13-07T03:00:00Z", ""] {
            let e = format!("{:#}", PointInTime::parse(bad, now).unwrap_err());
            assert!(e.contains("not an RFC 3339 time"), "{bad}: {e}");
        }
        let e = format!("{:#}", PointInTime::parse("2026-12-07T04:00:01Z", now).unwrap_err());
        assert!(e.contains("in the future"), "{e}");
        let long = format!("x{}", "\u{1b}[31m".repeat(50));
        let e = format!("{:#}", PointInTime::parse(&long, now).unwrap_err());
        assert!(!e.contains('\u{1b}') && e.len() < 200, "{e}");
    }
}
