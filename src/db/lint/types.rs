//! A column's type, and what `ALTER COLUMN … TYPE` from one type to another does to the table:
//! only the catalog changes, the table is rewritten, or it is rewritten and values can be lost.
//! Each answer was measured on PostgreSQL 15 (the relation's file node before and after, and
//! every value cast back): docs/LINT.md has the table.

use super::lex::{Span, Tok};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    /// PostgreSQL's own name for it (`int4`, `varchar`, `timestamptz`, …), or the user type's.
    pub base: String,
    /// Length, precision, scale.
    pub mods: Vec<i64>,
    pub array: bool,
    /// `serial` and its kin: an integer filled from a sequence.
    pub serial: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Binary-coercible: the catalog alone changes.
    Catalog,
    /// The table and its indexes are rewritten; every value survives (or the statement fails).
    Rewrite,
    /// Rewritten, and values can be rounded, cut or converted away.
    Lossy,
}

/// The type that starts `s`, and the index after it.
pub fn parse(s: Span) -> Option<(Type, usize)> {
    let w = |i: usize| s.word(i).unwrap_or_default();
    let mut i = 1;
    let mut serial = false;
    let base = match w(0).as_str() {
        "" => {
            // A quoted or qualified user type.
            let (n, next) = s.name(0)?;
            i = next;
            n.name
        }
        "DOUBLE" if s.kw(1, "PRECISION") => {
            i = 2;
            "float8".into()
        }
        "CHARACTER" | "CHAR" | "NCHAR" | "NATIONAL" => {
            if w(0) == "NATIONAL" {
                i = 2;
            }
            if s.kw(i, "VARYING") {
                i += 1;
                "varchar".into()
            } else {
                "bpchar".into()
            }
        }
        "BIT" if s.kw(1, "VARYING") => {
            i = 2;
            "varbit".into()
        }
        "TIMESTAMP" | "TIME" | "INTERVAL" => w(0).to_lowercase(),
        "FLOAT" => {
            let p = mods(s, 1).0.first().copied();
            if p.is_some_and(|p| p <= 24) {
                "float4".into()
            } else {
                "float8".into()
            }
        }
        "DECIMAL" | "DEC" | "NUMERIC" => "numeric".into(),
        "INT" | "INTEGER" | "INT4" => "int4".into(),
        "SMALLINT" | "INT2" => "int2".into(),
        "BIGINT" | "INT8" => "int8".into(),
        "REAL" => "float4".into(),
        "BOOLEAN" => "bool".into(),
        "SERIAL" | "SERIAL4" | "BIGSERIAL" | "SERIAL8" | "SMALLSERIAL" | "SERIAL2" => {
            serial = true;
            match w(0).as_str() {
                "BIGSERIAL" | "SERIAL8" => "int8".into(),
                "SMALLSERIAL" | "SERIAL2" => "int2".into(),
                _ => "int4".into(),
            }
        }
        _ => {
            let (n, next) = s.name(0)?;
            i = next;
            n.name
        }
    };
    if base == "interval" {
        while ["YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "TO"].contains(&w(i).as_str()) {
            i += 1;
        }
    }
    let (mut mods, next) = if base == "float4" || base == "float8" { (Vec::new(), mods(s, i).1) } else { mods(s, i) };
    i = next;
    let mut base = base;
    if base == "timestamp" || base == "time" {
        if s.seq(i, &["WITH", "TIME", "ZONE"]) {
            base.push_str("tz");
            i += 3;
        } else if s.seq(i, &["WITHOUT", "TIME", "ZONE"]) {
            i += 3;
        }
    }
    if (base == "bpchar" || base == "bit") && mods.is_empty() {
        mods.push(1);
    }
    let mut array = false;
    while s.punct(i, '[') {
        array = true;
        i += 1;
        while i < s.len() && !s.punct(i, ']') {
            i += 1;
        }
        i += 1;
    }
    if s.kw(i, "ARRAY") {
        array = true;
        i += 1;
    }
    Some((Type { base, mods, array, serial }, i))
}

/// A type as `format_type()` prints it (the catalog's), e.g. `character varying(100)`.
pub fn parse_str(s: &str) -> Option<Type> {
    let toks = super::lex::tokens(s);
    parse(Span(&toks)).map(|(t, _)| t)
}

/// `(n, m)` at `i`: the numbers, and the index after the group.
fn mods(s: Span, i: usize) -> (Vec<i64>, usize) {
    if !s.punct(i, '(') {
        return (Vec::new(), i);
    }
    let end = s.group_end(i);
    let nums = (i + 1..end).filter_map(|j| match s.tok(j) {
        Some(Tok::Word(w)) => w.parse().ok(),
        _ => None,
    });
    (nums.collect(), end)
}

/// What changing a column from `old` (None: not known) to `new` does; `using`: the statement
/// converts with a USING expression.
pub fn change(old: Option<&Type>, new: &Type, using: bool) -> Change {
    // An expression can do anything to the values; no down can be trusted to undo it.
    if using {
        return Change::Lossy;
    }
    let Some(old) = old else {
        // To a string type nothing is lost (a value too long fails the statement); to another
        // type, from one not known, values may be rounded.
        return if is_string(new) || new.base == "bpchar" { Change::Rewrite } else { Change::Lossy };
    };
    if old.array != new.array {
        return Change::Lossy;
    }
    let c = scalar(old, new);
    // An array's elements are converted one by one: even a binary-coercible change rewrites.
    if old.array && c == Change::Catalog && old != new {
        return Change::Rewrite;
    }
    c
}

fn is_string(t: &Type) -> bool {
    matches!(t.base.as_str(), "text" | "varchar" | "citext")
}

fn int_bits(t: &Type) -> Option<u32> {
    match t.base.as_str() {
        "int2" => Some(16),
        "int4" => Some(32),
        "int8" => Some(64),
        _ => None,
    }
}

fn scalar(old: &Type, new: &Type) -> Change {
    use Change::*;
    let (o, n) = (old.base.as_str(), new.base.as_str());
    if o == n && old.mods == new.mods {
        return Catalog;
    }
    if is_string(new) {
        return match (is_string(old), n, new.mods.first()) {
            // A shorter or new limit checks every value; a longer one, or none, is catalog-only.
            (true, "varchar", Some(&len)) if o == "varchar" && old.mods.first().is_some_and(|&l| l <= len) => Catalog,
            (true, "varchar", Some(_)) => Rewrite,
            (true, _, _) => Catalog,
            // Any type converts to text and back without loss.
            (false, _, _) => Rewrite,
        };
    }
    let numeric = |t: &str| matches!(t, "numeric" | "float4" | "float8");
    match (o, n) {
        (_, "bpchar") => Rewrite,
        _ if int_bits(old).is_some() && int_bits(new).is_some() => Rewrite,
        (_, "numeric") if int_bits(old).is_some() => Rewrite,
        // float8 holds every integer up to 2^53, float4 up to 2^24.
        (_, "float8") if int_bits(old).is_some_and(|b| b <= 32) => Rewrite,
        (_, "float4") if int_bits(old).is_some_and(|b| b <= 16) => Rewrite,
        ("float4", "float8") => Rewrite,
        ("numeric", "numeric") => precision(&old.mods, &new.mods, true),
        _ if numeric(o) && (numeric(n) || int_bits(new).is_some()) => Lossy,
        _ if int_bits(old).is_some() && numeric(n) => Lossy,
        ("timestamp", "timestamp") | ("timestamptz", "timestamptz") | ("time", "time") | ("timetz", "timetz") => {
            precision(&old.mods, &new.mods, false)
        }
        ("interval", "interval") => precision(&old.mods, &new.mods, false),
        // Converted at the session's time zone (PostgreSQL 12+ skips the rewrite when it is UTC).
        ("timestamp", "timestamptz")
        | ("timestamptz", "timestamp")
        | ("time", "timetz")
        | ("date", "timestamp")
        | ("date", "timestamptz") => precision(&old.mods, &new.mods, false).max(Rewrite),
        ("jsonb", "json") => Rewrite,
        // jsonb drops duplicate keys, key order and whitespace.
        ("json", "jsonb") => Lossy,
        ("varbit", "varbit") if new.mods.is_empty() || (!old.mods.is_empty() && old.mods <= new.mods) => Catalog,
        ("varbit", "varbit") | ("bit", "bit") => Rewrite,
        ("cidr", "inet") => Catalog,
        _ => Lossy,
    }
}

/// A change of precision (numeric: and scale): `None` is unlimited. Temporal types hold 6
/// digits at most, so an unlimited one and 6 are the same.
fn precision(old: &[i64], new: &[i64], numeric: bool) -> Change {
    use Change::*;
    match (old.first(), new.first()) {
        (_, None) => Catalog,
        (None, Some(&6)) if !numeric => Catalog,
        (None, Some(_)) => Lossy,
        (Some(&p), Some(&q)) if !numeric => {
            if q >= p {
                Catalog
            } else {
                Lossy
            }
        }
        (Some(&p), Some(&q)) => {
            let (s, t) = (old.get(1).copied().unwrap_or(0), new.get(1).copied().unwrap_or(0));
            if t < s {
                Lossy
            } else if t == s && q >= p {
                Catalog
            } else {
                Rewrite
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Change::*;

    fn t(s: &str) -> Type {
        parse_str(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn sql_and_catalog_spellings_parse_alike() {
        for (a, b) in [
            ("varchar(100)", "character varying(100)"),
            ("timestamptz(3)", "timestamp(3) with time zone"),
            ("timestamp", "timestamp without time zone"),
            ("int", "integer"),
            ("float", "double precision"),
            ("float(10)", "real"),
            ("decimal(12,2)", "numeric(12,2)"),
            ("char", "character(1)"),
            ("int[]", "integer[]"),
            ("interval day to second(3)", "interval(3)"),
        ] {
            assert_eq!(t(a), t(b), "{a} / {b}");
        }
        assert!(t("bigserial").serial);
        assert_eq!(t("public.mood").base, "mood");
        assert_eq!(t("\"Mood\"").base, "Mood");
    }

    /// Each pair as measured on PostgreSQL 15 (docs/LINT.md).
    #[test]
    fn type_changes_as_postgres_does_them() {
        for (old, new, want) in [
            ("varchar(100)", "varchar(200)", Catalog),
            ("varchar(100)", "varchar", Catalog),
            ("varchar(100)", "text", Catalog),
            ("text", "varchar", Catalog),
            ("varchar(10)", "citext", Catalog),
            ("numeric(12,2)", "numeric(14,2)", Catalog),
            ("numeric(12,2)", "numeric", Catalog),
            ("timestamp(3)", "timestamp(6)", Catalog),
            ("timestamp", "timestamp(6)", Catalog),
            ("bit varying(5)", "bit varying(10)", Catalog),
            ("cidr", "inet", Catalog),
            ("varchar(100)", "varchar(20)", Rewrite),
            ("text", "varchar(50)", Rewrite),
            ("char(5)", "char(10)", Rewrite),
            ("char(5)", "text", Rewrite),
            ("int", "bigint", Rewrite),
            ("bigint", "int", Rewrite),
            ("int", "numeric(12,2)", Rewrite),
            ("numeric(12,2)", "numeric(12,4)", Rewrite),
            ("numeric(12,2)", "numeric(10,2)", Rewrite),
            ("real", "double precision", Rewrite),
            ("int", "double precision", Rewrite),
            ("timestamp", "timestamptz", Rewrite),
            ("timestamptz", "timestamp", Rewrite),
            ("date", "timestamp", Rewrite),
            ("time", "timetz", Rewrite),
            ("jsonb", "json", Rewrite),
            ("uuid", "text", Rewrite),
            ("varchar(10)[]", "varchar(20)[]", Rewrite),
            ("numeric(12,4)", "numeric(12,2)", Lossy),
            ("numeric", "numeric(12,2)", Lossy),
            ("numeric(12,2)", "integer", Lossy),
            ("double precision", "real", Lossy),
            ("double precision", "numeric", Lossy),
            ("bigint", "double precision", Lossy),
            ("int", "real", Lossy),
            ("timestamp(6)", "timestamp(3)", Lossy),
            ("timestamp", "timestamp(0)", Lossy),
            ("timestamptz", "timestamptz(3)", Lossy),
            ("timestamp", "date", Lossy),
            ("timetz", "time", Lossy),
            ("interval", "interval(0)", Lossy),
            ("json", "jsonb", Lossy),
        ] {
            assert_eq!(change(Some(&t(old)), &t(new), false), want, "{old} -> {new}");
        }
        // Not knowing the old type: a string target may rewrite, anything else may round.
        assert_eq!(change(None, &t("varchar(200)"), false), Rewrite);
        assert_eq!(change(None, &t("bigint"), false), Lossy);
        assert_eq!(change(Some(&t("text")), &t("jsonb"), true), Lossy);
    }
}
