//! The parts of a statement the rules and [`Schema`](super::schema::Schema) read: an ALTER
//! TABLE's actions, an added column or constraint and its default, the tables a statement
//! changes, a LOCK's mode.

use super::lex::{QName, Span, Tok};
use super::types::{self, Type};

/// `ALTER TABLE [IF EXISTS] [ONLY] name [*] action, …`: the table and its actions.
pub fn alter_table(s: Span) -> Option<(QName, Vec<Span>)> {
    if !s.starts(&["ALTER", "TABLE"]) {
        return None;
    }
    let mut i = 2;
    if s.seq(i, &["IF", "EXISTS"]) {
        i += 2;
    }
    if s.kw(i, "ONLY") {
        i += 1;
    }
    let (name, mut j) = s.name(i)?;
    if s.punct(j, '*') {
        j += 1;
    }
    Some((name, s.from(j).split_commas()))
}

pub fn any_action(s: Span, test: impl Fn(Span) -> bool) -> bool {
    alter_table(s).is_some_and(|(_, actions)| actions.into_iter().any(test))
}

/// `ALTER [COLUMN] c …`: the column and what is done to it.
pub fn column_op(a: Span) -> Option<(String, Span)> {
    if !a.starts(&["ALTER"]) || a.kw(1, "CONSTRAINT") {
        return None;
    }
    let i = if a.kw(1, "COLUMN") { 2 } else { 1 };
    Some((a.ident(i)?, a.from(i + 1)))
}

pub fn column_op_is(s: Span, op: &[&str]) -> bool {
    any_action(s, |a| column_op(a).is_some_and(|(_, o)| o.starts(op)))
}

/// `ADD [CONSTRAINT name] CHECK|UNIQUE|PRIMARY KEY|FOREIGN KEY|EXCLUDE …`: the name, and the
/// constraint from its kind on.
pub fn added_constraint(a: Span) -> Option<(Option<String>, Span)> {
    if !a.starts(&["ADD"]) {
        return None;
    }
    let (name, i) = if a.kw(1, "CONSTRAINT") { (a.ident(2), 3) } else { (None, 1) };
    ["CHECK", "UNIQUE", "PRIMARY", "FOREIGN", "EXCLUDE"].iter().any(|k| a.kw(i, k)).then(|| (name, a.from(i)))
}

/// `ADD [COLUMN] [IF NOT EXISTS] c type …`: the column, its type and the rest of its definition.
pub fn added_column(a: Span) -> Option<(String, Type, Span)> {
    if !a.starts(&["ADD"]) || added_constraint(a).is_some() {
        return None;
    }
    let mut i = if a.kw(1, "COLUMN") { 2 } else { 1 };
    if a.seq(i, &["IF", "NOT", "EXISTS"]) {
        i += 3;
    }
    let name = a.ident(i)?;
    let (ty, n) = types::parse(a.from(i + 1))?;
    Some((name, ty, a.from(i + 1 + n)))
}

/// A column definition's DEFAULT expression.
pub fn default_expr(rest: Span) -> Option<Span> {
    const ENDS: &[&str] =
        &["NOT", "NULL", "CHECK", "UNIQUE", "PRIMARY", "REFERENCES", "CONSTRAINT", "GENERATED", "COLLATE"];
    let start = rest.find(&["DEFAULT"])? + 1;
    let end = rest.top_level().find(|&i| i >= start && ENDS.iter().any(|k| rest.kw(i, k))).unwrap_or(rest.len());
    Some(Span(&rest.0[start..end]))
}

/// The expression calls a function that may be volatile: PostgreSQL then writes its value into
/// every existing row. A function not known to be stable or immutable is taken as volatile, as
/// CREATE FUNCTION's own default is.
pub fn volatile(expr: Span) -> bool {
    const STABLE: &[&str] = &[
        "now",
        "current_timestamp",
        "current_date",
        "current_time",
        "localtime",
        "localtimestamp",
        "transaction_timestamp",
        "statement_timestamp",
        "current_setting",
        "current_user",
        "current_schema",
        "session_user",
        "timezone",
        "date_trunc",
        "make_interval",
        "make_date",
        "cast",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "lower",
        "upper",
        "concat",
        "array",
        "row",
        "to_json",
        "to_jsonb",
        "json_build_object",
        "jsonb_build_object",
        "json_build_array",
        "jsonb_build_array",
        "extract",
        "date_part",
        "to_char",
        "to_timestamp",
        "format",
        "md5",
        "round",
        "abs",
    ];
    (0..expr.len()).any(|i| match (expr.tok(i), expr.punct(i + 1, '(')) {
        (Some(Tok::Word(f)), true) => {
            // `::numeric(10, 2)` and `AS varchar(10)` are types, not calls.
            let cast = i > 0 && (expr.punct(i - 1, ':') || expr.kw(i - 1, "AS"));
            !cast && !STABLE.contains(&f.to_lowercase().as_str())
        }
        _ => false,
    })
}

/// `TYPE t` / `SET DATA TYPE t`: the new type.
pub fn new_type(op: Span) -> Option<(Type, usize)> {
    let at = if op.starts(&["TYPE"]) {
        1
    } else if op.starts(&["SET", "DATA", "TYPE"]) {
        3
    } else {
        return None;
    };
    types::parse(op.from(at))
}

/// The verbs a statement runs: its own, and those of its `WITH` queries (which may change data).
pub fn dml_verbs(s: Span) -> Vec<String> {
    let mut verbs = Vec::new();
    let mut i = 0;
    if s.kw(0, "WITH") {
        i = if s.kw(1, "RECURSIVE") { 2 } else { 1 };
        // name [(columns)] AS [NOT] [MATERIALIZED] (query), …
        loop {
            i = s.group_end(i + 1);
            if !s.kw(i, "AS") {
                break;
            }
            i += 1;
            while s.kw(i, "NOT") || s.kw(i, "MATERIALIZED") {
                i += 1;
            }
            if !s.punct(i, '(') {
                break;
            }
            verbs.extend(s.word(i + 1));
            i = s.group_end(i);
            if !s.punct(i, ',') {
                break;
            }
            i += 1;
        }
    }
    verbs.extend(s.word(i));
    verbs
}

/// The tables a statement changes, where it names them: when the same SQL created every one,
/// no rows anyone depends on are at stake, and it is not a finding.
pub fn targets(s: Span) -> Vec<QName> {
    if let Some((t, _)) = alter_table(s) {
        return vec![t];
    }
    let after = |ks: &[&str]| s.seq(0, ks).then_some(ks.len());
    let list_at = if let Some(i) = after(&["DROP", "TABLE"]) {
        Some(if s.seq(i, &["IF", "EXISTS"]) { i + 2 } else { i })
    } else if let Some(i) = after(&["TRUNCATE"]) {
        Some(if s.kw(i, "TABLE") { i + 1 } else { i })
    } else if let Some(i) = after(&["LOCK"]) {
        Some(if s.kw(i, "TABLE") { i + 1 } else { i })
    } else if s.starts(&["CREATE", "INDEX"]) || s.starts(&["CREATE", "UNIQUE", "INDEX"]) {
        s.find(&["ON"]).map(|i| i + 1)
    } else {
        after(&["UPDATE"]).or(after(&["DELETE", "FROM"])).or(after(&["INSERT", "INTO"]))
    };
    let Some(mut i) = list_at else { return Vec::new() };
    let mut out = Vec::new();
    loop {
        if s.kw(i, "ONLY") {
            i += 1;
        }
        let Some((n, next)) = s.name(i) else { break };
        out.push(n);
        i = next;
        if s.punct(i, '*') {
            i += 1;
        }
        if !s.punct(i, ',') {
            break;
        }
        i += 1;
    }
    out
}

/// `CREATE [TEMP|UNLOGGED] TABLE [IF NOT EXISTS] name`: the table, and whether IF NOT EXISTS.
pub fn created_table(s: Span) -> Option<(QName, bool)> {
    if !s.starts(&["CREATE"]) {
        return None;
    }
    let mut i = 1;
    while ["GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED"].iter().any(|k| s.kw(i, k)) {
        i += 1;
    }
    if !s.kw(i, "TABLE") {
        return None;
    }
    let if_not_exists = s.seq(i + 1, &["IF", "NOT", "EXISTS"]);
    let (name, _) = s.name(if if_not_exists { i + 4 } else { i + 1 })?;
    Some((name, if_not_exists))
}

/// `LOCK [TABLE] t [IN mode MODE]` in a mode that blocks writes.
pub fn lock_blocks_writes(s: Span) -> bool {
    let Some(i) = s.find(&["IN"]) else { return true };
    let mode: Vec<String> = (i + 1..s.len()).map_while(|j| s.word(j).filter(|w| w != "MODE")).collect();
    !matches!(mode.join(" ").as_str(), "ACCESS SHARE" | "ROW SHARE" | "ROW EXCLUSIVE" | "SHARE UPDATE EXCLUSIVE")
}
