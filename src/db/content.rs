//! Table contents as order-independent sums, so "the data is as before" is a comparison that
//! needs no copy of the data: each row's COPY text line is hashed, and the hashes are added up.
//! The backup's sums are read from the verified backup when they are first needed — by a rollback,
//! for the tables the deploy touched, or by a rehearsal, for every table ([`DumpTables`],
//! `backup::sums`); the live database's come from `COPY … TO STDOUT` of the same columns
//! ([`super::Postgres::table_sum`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The rows of one table (its columns as the dump lists them): how many, an order-independent
/// sum of their hashes, and how many non-null values each column holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSum {
    /// The column list as pg_dump writes it (identifiers quoted where needed).
    pub columns: Vec<String>,
    pub rows: u64,
    /// Wrapping sum of the xxh3 hashes of each row's COPY text line, as 16 hex digits.
    #[serde(with = "hex_u64")]
    pub sum: u64,
    /// Non-null values per column (same order as `columns`).
    pub non_null: Vec<u64>,
}

impl RowSum {
    pub fn new(columns: Vec<String>) -> RowSum {
        let n = columns.len();
        RowSum { columns, rows: 0, sum: 0, non_null: vec![0; n] }
    }

    /// One COPY text line, without its newline.
    pub fn add_line(&mut self, line: &[u8]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(line));
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\t', line).chain(std::iter::once(line.len()));
        for (i, end) in ends.enumerate() {
            if &line[start..end] != b"\\N" {
                if let Some(n) = self.non_null.get_mut(i) {
                    *n += 1;
                }
            }
            start = end + 1;
        }
    }

    /// Same rows (by count and sum), whatever their order.
    pub fn same_rows(&self, other: &RowSum) -> bool {
        self.rows == other.rows && self.sum == other.sum
    }

    /// The non-null values of `column` (as listed), if it is one of these columns.
    pub fn non_null_of(&self, column: &str) -> Option<u64> {
        self.columns.iter().position(|c| unquote(c) == column).and_then(|i| self.non_null.get(i).copied())
    }
}

/// `"Weird ""name"""` → `Weird "name"`; a plain name as it is.
pub fn unquote(ident: &str) -> String {
    match ident.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => ident.to_string(),
    }
}

/// Whether a table or column name read from a manifest may go into a `COPY` statement: quoted
/// or plain identifiers only, nothing that could end the statement or add an option.
pub fn safe_ident_list(s: &str) -> bool {
    let mut in_quotes = false;
    for c in s.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            _ if in_quotes => {
                if c.is_control() {
                    return false;
                }
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '$' | '.') => {}
            _ => return false,
        }
    }
    !in_quotes && !s.is_empty()
}

/// Which tables' rows [`DumpTables`] sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Sums {
    /// Every table's.
    #[default]
    All,
    /// These tables' (`schema.table`, as pg_dump quotes it).
    Of(BTreeSet<String>),
}

impl Sums {
    fn wants(&self, table: &str) -> bool {
        match self {
            Sums::All => true,
            Sums::Of(set) => set.contains(table),
        }
    }
}

/// Reads plain SQL as pg_dump writes it and sums the rows of the `COPY … FROM stdin;` blocks of
/// the tables [`Sums`] names, fed in chunks of any size.
#[derive(Default)]
pub struct DumpTables {
    line: Vec<u8>,
    /// The COPY block being read, and its sum if this table's rows are wanted.
    current: Option<(String, Option<RowSum>)>,
    wanted: Sums,
    pub tables: BTreeMap<String, RowSum>,
}

/// Calls `f` with each whole line of `bytes` (without its newline); `partial` carries a line
/// cut by the end of one chunk into the next.
fn each_line(partial: &mut Vec<u8>, mut bytes: &[u8], mut f: impl FnMut(&[u8])) {
    while let Some(nl) = memchr::memchr(b'\n', bytes) {
        if partial.is_empty() {
            f(&bytes[..nl]);
        } else {
            partial.extend_from_slice(&bytes[..nl]);
            f(partial);
            partial.clear();
        }
        bytes = &bytes[nl + 1..];
    }
    partial.extend_from_slice(bytes);
}

impl DumpTables {
    pub fn new(wanted: Sums) -> DumpTables {
        DumpTables { wanted, ..DumpTables::default() }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let mut partial = std::mem::take(&mut self.line);
        each_line(&mut partial, bytes, |line| self.take_line(line));
        self.line = partial;
    }

    /// Every wanted table's block was read (never, for [`Sums::All`]): the rest of the dump
    /// adds nothing.
    pub fn has_all(&self) -> bool {
        match &self.wanted {
            Sums::All => false,
            Sums::Of(set) => set.iter().all(|t| self.tables.contains_key(t)),
        }
    }

    fn take_line(&mut self, line: &[u8]) {
        match &mut self.current {
            Some(_) if line == b"\\." => {
                let (table, sum) = self.current.take().expect("in a COPY block");
                if let Some(sum) = sum {
                    self.tables.insert(table, sum);
                }
            }
            Some((_, Some(sum))) => sum.add_line(line),
            Some((_, None)) => {}
            None => {
                if let Some((table, columns)) = copy_header(line) {
                    let sum = self.wanted.wants(&table).then(|| RowSum::new(columns));
                    self.current = Some((table, sum));
                }
            }
        }
    }
}

/// `COPY public.orders (id, note) FROM stdin;` → (`public.orders`, [`id`, `note`]); none for
/// anything else, or names that are not plain or quoted identifiers.
pub fn copy_header(line: &[u8]) -> Option<(String, Vec<String>)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("COPY ")?.strip_suffix(" FROM stdin;")?;
    let (table, cols) = match rest.split_once(" (") {
        Some((t, c)) => (t, c.strip_suffix(')')?),
        None => (rest, ""),
    };
    let columns = split_idents(cols);
    (safe_ident_list(table) && columns.iter().all(|c| safe_ident_list(c))).then(|| (table.to_string(), columns))
}

/// Splits `a, "b, c", d` at the commas outside quotes.
fn split_idents(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                cur.push(c);
            }
            ',' if !in_quotes => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "SET x = 1;\nCOPY public.orders (id, \"Note, odd\", total) FROM stdin;\n1\thello\t2.50\n\
                        2\t\\N\t3.00\n\\.\n\nCOPY public.empty (id) FROM stdin;\n\\.\n-- done\n";

    #[test]
    fn sums_copy_blocks_in_any_chunking_and_any_row_order() {
        let mut whole = DumpTables::default();
        whole.feed(DUMP.as_bytes());
        let o = &whole.tables["public.orders"];
        assert_eq!(o.columns, vec!["id", "\"Note, odd\"", "total"]);
        assert_eq!((o.rows, o.non_null.clone()), (2, vec![2, 1, 2]));
        assert_eq!(o.non_null_of("Note, odd"), Some(1));
        assert_eq!(whole.tables["public.empty"].rows, 0);
        for chunk in [1, 3, 7] {
            let mut t = DumpTables::default();
            for c in DUMP.as_bytes().chunks(chunk) {
                t.feed(c);
            }
            assert_eq!(t.tables, whole.tables, "chunks of {chunk}");
        }
        let swapped = DUMP.replace("1\thello\t2.50\n2\t\\N\t3.00\n", "2\t\\N\t3.00\n1\thello\t2.50\n");
        let mut t = DumpTables::default();
        t.feed(swapped.as_bytes());
        assert!(t.tables["public.orders"].same_rows(o));
        let changed = DUMP.replace("hello", "HELLO");
        let mut t = DumpTables::default();
        t.feed(changed.as_bytes());
        assert!(!t.tables["public.orders"].same_rows(o));
    }

    #[test]
    fn only_the_wanted_tables_are_summed() {
        let mut whole = DumpTables::default();
        whole.feed(DUMP.as_bytes());
        let mut one = DumpTables::new(Sums::Of(["public.orders".to_string()].into()));
        let (head, tail) = DUMP.split_at(DUMP.find("\\.\n").unwrap() + 3);
        one.feed(head.as_bytes());
        assert!(one.has_all(), "stops once the wanted block ended");
        one.feed(tail.as_bytes());
        assert_eq!(one.tables.keys().collect::<Vec<_>>(), ["public.orders"]);
        assert_eq!(one.tables["public.orders"], whole.tables["public.orders"]);
        let mut missing = DumpTables::new(Sums::Of(["public.gone".to_string()].into()));
        missing.feed(DUMP.as_bytes());
        assert!(!missing.has_all() && missing.tables.is_empty());
    }

    #[test]
    fn only_plain_or_quoted_identifiers_are_taken() {
        for ok in ["public.orders", "\"Weird; name\".\"x\"", "café.t"] {
            assert!(safe_ident_list(ok), "{ok}");
        }
        for bad in ["t) TO PROGRAM 'x'", "t; DROP TABLE x", "\"open", "", "a b"] {
            assert!(!safe_ident_list(bad), "{bad}");
        }
    }
}

/// What the statistics collector and the catalog say about a table, cheaply: its storage file
/// (a rewrite or TRUNCATE gives it a new one) and how many rows were updated or deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    pub relfilenode: u64,
    pub updated_or_deleted: u64,
    #[serde(default)]
    pub inserted: u64,
}

/// One JSON object: `schema.table` (quoted as pg_dump quotes it) → [relfilenode, upd + del, ins].
const STATS_SQL: &str = "SELECT coalesce(json_object_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
     json_build_array(c.relfilenode::bigint, coalesce(s.n_tup_upd, 0) + coalesce(s.n_tup_del, 0), \
     coalesce(s.n_tup_ins, 0))), '{}') \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%';";

/// Every user table's columns as pg_dump's COPY lines name them (a Neon branch's tables, read
/// where a dump's would be listed).
const COLUMNS_SQL: &str =
    "SELECT coalesce(json_object_agg(t, cols), '{}') FROM (SELECT quote_ident(n.nspname) || '.' || \
     quote_ident(c.relname) AS t, json_agg(quote_ident(a.attname) ORDER BY a.attnum) AS cols \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%' GROUP BY 1) x;";

impl super::Postgres {
    /// Each user table of `db` with its columns, as a dump of it would list them.
    pub async fn table_columns(&self, db: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        Ok(serde_json::from_value(self.query_json(db, COLUMNS_SQL).await?)?)
    }

    /// [`TableStats`] of every user table of `db`: catalog reads, whatever the data's size.
    pub async fn table_stats(&self, db: &str) -> anyhow::Result<BTreeMap<String, TableStats>> {
        let v: BTreeMap<String, (u64, u64, u64)> = serde_json::from_value(self.query_json(db, STATS_SQL).await?)?;
        Ok(v.into_iter()
            .map(|(t, (relfilenode, updated_or_deleted, inserted))| {
                (t, TableStats { relfilenode, updated_or_deleted, inserted })
            })
            .collect())
    }

    /// The [`RowSum`] of `columns` of `table` in `db` now, formatted as pg_dump formats them.
    pub async fn table_sum(&self, db: &str, table: &str, columns: &[String]) -> anyhow::Result<RowSum> {
        let list = columns.join(", ");
        if !safe_ident_list(table) || !columns.iter().all(|c| safe_ident_list(c)) {
            anyhow::bail!("{table} ({list}): not plain or quoted identifiers; not compared");
        }
        let encoding = self.query(db, "SHOW server_encoding;").await?;
        let sql = format!(
            "SET client_encoding TO {}; SET datestyle TO ISO; SET intervalstyle TO postgres; \
             SET extra_float_digits TO 3; COPY {table} ({list}) TO STDOUT;\n",
            super::literal(encoding.trim())
        );
        let mut sink = LineSum { sum: RowSum::new(columns.to_vec()), line: Vec::new() };
        let cmd = self.query_cmd(db);
        let mut input = sql.as_bytes();
        let exit = self.executor_for(db).run(&cmd, Some(&mut input), &mut sink).await?;
        exit.check(&format!("COPY {table} on database {db}"))?;
        Ok(sink.sum)
    }
}

/// Sums COPY text lines as they are written to it.
struct LineSum {
    sum: RowSum,
    line: Vec<u8>,
}

impl tokio::io::AsyncWrite for LineSum {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        each_line(&mut this.line, buf, |line| this.sum.add_line(line));
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
