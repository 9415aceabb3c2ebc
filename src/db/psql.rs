//! What the psql that restores can do. From 13.22, 14.19, 15.14, 16.10, 17.6 and 18.0 on, psql
//! has a restricted mode (`\restrict KEY`): every meta-command but `\unrestrict KEY` is an error.
//! deploy-guard restores with psql restricted under a key it makes on the target for that restore,
//! so a meta-command in a backup is refused by psql itself, whatever the filter in front of it
//! thinks. Before 14.24, 15.19, 16.15, 17.11 and 18.6 (13 never got the fix), psql still expands
//! a backtick in `\unrestrict`'s argument before it checks the key (CVE-2026-18408): there the
//! filter, which refuses such a line wherever it stands, is what keeps it out.

/// The awk program that takes pg_dump's own `\restrict KEY` line (before its first SQL) and
/// `\unrestrict KEY` line (its last but blank lines) out of a dump on its way to psql, which runs
/// restricted under deploy-guard's own key. Nothing else is taken out: any other such line makes
/// the restricted psql fail, and with it the restore.
pub const STRIP_RESTRICT: &str = concat!(
    r#"BEGIN { head = 1 }; head && /^\\restrict [A-Za-z0-9]+$/ { head = 0; next }; head && !/^(--.*)?$/ { head = 0 }; "#,
    r#"/^\\unrestrict [A-Za-z0-9]+$/ { if (held != "") flush(); held = $0; next }; held != "" && /^$/ { blanks++; next }; "#,
    r#"held != "" { flush() }; { print }; function flush() { print held; while (blanks > 0) { print ""; blanks-- } held = "" }"#
);

/// psql's version, as `psql --version` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Psql {
    pub major: u32,
    pub minor: u32,
}

impl Psql {
    /// From `psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    pub fn parse(version: &str) -> Option<Psql> {
        let number = version.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
        let mut parts = number.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(Psql { major, minor })
    }

    /// It has `\restrict`.
    pub fn restricts(self) -> bool {
        self.at_least(&[(13, 22), (14, 19), (15, 14), (16, 10), (17, 6), (18, 0)])
    }

    /// It has `\restrict`, but runs a backtick in `\unrestrict`'s argument before checking the key.
    pub fn expands_unrestrict(self) -> bool {
        self.restricts() && !self.at_least(&[(14, 24), (15, 19), (16, 15), (17, 11), (18, 6)])
    }

    /// At least the first release of its major version in `fixed` (majors after the last
    /// listed have it; those before the first, or missing from the list, do not).
    fn at_least(self, fixed: &[(u32, u32)]) -> bool {
        match fixed.iter().find(|(major, _)| *major == self.major) {
            Some((_, minor)) => self.minor >= *minor,
            None => fixed.last().is_some_and(|(last, _)| self.major > *last),
        }
    }

    /// Why an unsigned backup is not restored with this psql, if it is not.
    pub fn refuses_unsigned(self) -> Option<String> {
        (!self.restricts()).then(|| {
            format!(
                "psql {self} where the restore runs has no restricted mode (\\restrict: 13.22, 14.19, 15.14, 16.10, \
                 17.6, 18.0 and later), and this backup's manifest is not signed: whoever can write the store could \
                 have put a shell command in it. Upgrade psql there, or sign manifests (DEPLOY_GUARD_MANIFEST_KEY) \
                 from the next backup on"
            )
        })
    }
}

impl std::fmt::Display for Psql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Psql {
        Psql::parse(s).unwrap()
    }

    #[test]
    fn versions_with_and_without_a_safe_restricted_mode() {
        assert_eq!(v("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Psql { major: 15, minor: 18 });
        assert_eq!(v("psql (PostgreSQL) 18beta1"), Psql { major: 18, minor: 0 });
        for (s, restricts, expands) in [
            ("12.22", false, false),
            ("13.21", false, false),
            ("13.22", true, true),
            ("14.19", true, true),
            ("14.24", true, false),
            ("15.13", false, false),
            ("15.18", true, true),
            ("15.19", true, false),
            ("16.10", true, true),
            ("17.11", true, false),
            ("18.5", true, true),
            ("18.6", true, false),
            ("19.0", true, false),
        ] {
            let p = v(&format!("psql (PostgreSQL) {s}"));
            assert_eq!((p.restricts(), p.expands_unrestrict()), (restricts, expands), "{s}");
        }
        let why = v("psql (PostgreSQL) 15.13").refuses_unsigned().expect("15.13 has no restricted mode");
        assert!(why.starts_with("psql 15.13 where the restore runs has no restricted mode"), "{why}");
        assert!(
            why.contains("15.14, 16.10, 17.6, 18.0 and later") && why.contains("DEPLOY_GUARD_MANIFEST_KEY"),
            "{why}"
        );
        assert_eq!(v("psql (PostgreSQL) 15.14").refuses_unsigned(), None);
        assert!(Psql::parse("no version here").is_none());
    }
}
