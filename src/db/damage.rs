//! What the migrations destroyed, told from the catalog and the statistics recorded before them
//! and read again after, whatever the migration tool: tables and columns gone, a column's type
//! changed, a table rewritten or truncated, rows of pre-existing tables updated or deleted
//! (confirmed by comparing those tables' row sums with the backup's). Pure: the caller reads.

use std::collections::{BTreeMap, BTreeSet};

use super::{Fingerprint, Renames, RowSum, TableStats};

/// A column as the fingerprint lists it: (`schema.table`, column, type).
fn columns(fp: &Fingerprint) -> BTreeMap<(String, String), String> {
    fp.items
        .iter()
        .filter_map(|i| {
            let rest = i.strip_prefix("column ")?;
            let (path, def) = rest.split_once(' ')?;
            let (table, column) = split_last_ident(path)?;
            let ty = ["not null", "default ", "identity "]
                .iter()
                .filter_map(|m| def.find(&format!(" {m}")))
                .min()
                .map_or(def, |at| &def[..at]);
            Some(((table.to_string(), super::unquote(column)), ty.to_string()))
        })
        .collect()
}

/// Tables (kind r or p) the fingerprint lists, as `schema.table`.
fn tables(fp: &Fingerprint) -> BTreeSet<String> {
    fp.items
        .iter()
        .filter_map(|i| i.strip_prefix("relation "))
        .filter_map(|r| r.strip_suffix(" kind=r").or_else(|| r.strip_suffix(" kind=p")))
        .map(str::to_string)
        .collect()
}

/// `public."a.b".c` → (`public."a.b"`, `c`): the last identifier, outside quotes.
fn split_last_ident(path: &str) -> Option<(&str, &str)> {
    let mut in_quotes = false;
    let mut last_dot = None;
    for (i, c) in path.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '.' if !in_quotes => last_dot = Some(i),
            _ => {}
        }
    }
    last_dot.map(|d| (&path[..d], &path[d + 1..]))
}

/// What a deploy did to the data that existed before it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// Sentences, one per loss ("dropped column public.orders.note (4 500 non-null values)").
    pub destroyed: Vec<String>,
    /// Pre-existing tables whose rows may have changed and must be compared with the backup.
    pub suspects: BTreeSet<String>,
    /// Pre-existing tables the deploy touched at all (schema or rows): a revert is verified
    /// only when their rows equal the backup's.
    pub touched: BTreeSet<String>,
    /// The tables whose rows at the backup the losses are counted with: those dropped, those
    /// with a dropped column, and the suspects.
    pub to_count: BTreeSet<String>,
    /// What the deploy added to the schema (`+` lines of the fingerprint's diff).
    pub added: Vec<String>,
    /// The schema only gained, and nothing it gained stops the previous release's writes: no
    /// object removed or changed, no NOT NULL column without a default (see [`Damage::only_added`]).
    pub additive_only: bool,
    /// What was renamed (the same object under a new name: nothing lost).
    pub renamed: Vec<String>,
}

impl Damage {
    /// From the schema before and now, the statistics before and now (of the tables the dump
    /// holds), the backup's sums of those of [`Damage::to_count`] that are known, and what was
    /// renamed (a renamed table or column is looked for under its new name). Tables are named as
    /// they were.
    pub fn assess(
        fp_before: &Fingerprint,
        fp_now: &Fingerprint,
        stats_before: &BTreeMap<String, TableStats>,
        stats_now: &BTreeMap<String, TableStats>,
        data: &BTreeMap<String, RowSum>,
        renames: &Renames,
    ) -> Damage {
        let mut d = Damage { renamed: renames.said.clone(), ..Damage::default() };
        let (tables_now, cols_before, cols_now) = (tables(fp_now), columns(fp_before), columns(fp_now));
        let rows = |t: &str| data.get(t).map(|s| s.rows);
        let tables_before = tables(fp_before);
        let kept: Vec<&String> = tables_before.iter().filter(|t| tables_now.contains(renames.table(t))).collect();
        for t in tables_before.iter().filter(|t| !tables_now.contains(renames.table(t))) {
            d.to_count.insert(t.clone());
            d.destroyed.push(match rows(t) {
                Some(n) => format!("dropped table {t} ({} rows at the backup)", thousands(n)),
                None => format!("dropped table {t}"),
            });
        }
        for ((t, c), ty) in &cols_before {
            let now_at = renames.column(t, c);
            if !tables_now.contains(&now_at.0) {
                continue;
            }
            match cols_now.get(&now_at) {
                None => {
                    d.touched.insert(t.clone());
                    d.to_count.insert(t.clone());
                    let held = data.get(t).and_then(|s| s.non_null_of(c));
                    d.destroyed.push(match held {
                        Some(n) => format!("dropped column {t}.{c} ({} non-null values at the backup)", thousands(n)),
                        None => format!("dropped column {t}.{c}"),
                    });
                }
                Some(now) if now != ty => {
                    d.touched.insert(t.clone());
                    d.destroyed.push(format!("changed the type of {t}.{c} from {ty} to {now}"));
                }
                Some(_) => {}
            }
        }
        // Any other change to a pre-existing table's definition (a column added, an index, a
        // constraint, a rename) touches it.
        let diff = fp_before.diff(fp_now);
        d.added = diff.iter().filter_map(|l| l.strip_prefix("+ ")).map(str::to_string).collect();
        let blocks_old_writes =
            |item: &String| item.starts_with("column ") && item.contains(" not null") && !item.contains(" default ");
        d.additive_only =
            !diff.is_empty() && diff.iter().all(|l| l.starts_with("+ ")) && !d.added.iter().any(blocks_old_writes);
        let mentions = |line: &str, t: &str| line.contains(&format!(" {t}.")) || line.contains(&format!(" {t} "));
        for t in kept {
            if diff.iter().any(|line| mentions(line, t) || mentions(line, renames.table(t))) {
                d.touched.insert(t.clone());
            }
        }
        for (t, before) in stats_before {
            let Some(now) = stats_now.get(renames.table(t)) else { continue };
            if now.relfilenode != before.relfilenode || now.updated_or_deleted != before.updated_or_deleted {
                // Inserts alone leave what existed intact: not a suspect.
                d.touched.insert(t.clone());
                if !d.destroyed.iter().any(|l| l.contains(&format!(" {t}."))) {
                    d.suspects.insert(t.clone());
                    d.to_count.insert(t.clone());
                }
            }
        }
        d
    }

    /// Only additions, and nothing destroyed (ask after [`Damage::rows_changed`] for every suspect).
    pub fn only_added(&self) -> bool {
        self.additive_only && self.destroyed.is_empty()
    }

    /// A suspect table whose rows differ from the backup's.
    pub fn rows_changed(&mut self, table: &str, backup: &RowSum, now: &RowSum) {
        if !backup.same_rows(now) {
            self.destroyed.push(format!(
                "changed rows of {table}: its pre-existing columns no longer match the backup ({} rows then, {} now)",
                thousands(backup.rows),
                thousands(now.rows)
            ));
        }
    }
}

/// What a revert would drop that the new release added: its new tables, and its new columns
/// of tables that existed before (a new table's columns go with it). A renamed table or column
/// is not new.
pub fn additions(before: &Fingerprint, now: &Fingerprint, renames: &Renames) -> (Vec<String>, Vec<(String, String)>) {
    let old_tables: BTreeSet<String> = tables(before).iter().map(|t| renames.table(t).to_string()).collect();
    let added_tables: Vec<String> = tables(now).difference(&old_tables).cloned().collect();
    let old_cols: BTreeSet<(String, String)> =
        columns(before).into_keys().map(|(t, c)| renames.column(&t, &c)).collect();
    let added_cols =
        columns(now).into_keys().filter(|(t, _)| old_tables.contains(t)).filter(|k| !old_cols.contains(k)).collect();
    (added_tables, added_cols)
}

/// `4812` → `4 812`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(items: &[&str]) -> Fingerprint {
        Fingerprint::from_items(items.iter().map(|s| s.to_string()).collect())
    }

    const BEFORE: &[&str] = &[
        "relation public.orders kind=r",
        "column public.orders.id bigint not null default nextval('orders_id_seq'::regclass)",
        "column public.orders.note text",
        "column public.orders.total numeric(10,2) not null",
        "relation public.gone kind=r",
        "column public.gone.id integer",
    ];

    fn data() -> BTreeMap<String, RowSum> {
        let mut s = RowSum::new(vec!["id".into(), "note".into(), "total".into()]);
        s.rows = 6000;
        s.non_null = vec![6000, 4500, 6000];
        BTreeMap::from([("public.orders".to_string(), s)])
    }

    #[test]
    fn drops_and_type_changes_are_destruction_additions_are_not() {
        let now = fp(&[
            "relation public.orders kind=r",
            "column public.orders.id bigint not null default nextval('orders_id_seq'::regclass)",
            "column public.orders.total integer not null",
            "column public.orders.tier integer",
        ]);
        let d = Damage::assess(&fp(BEFORE), &now, &BTreeMap::new(), &BTreeMap::new(), &data(), &Renames::default());
        assert_eq!(
            d.destroyed,
            vec![
                "dropped table public.gone",
                "dropped column public.orders.note (4 500 non-null values at the backup)",
                "changed the type of public.orders.total from numeric(10,2) to integer",
            ]
        );
        assert!(d.touched.contains("public.orders"));
        let added =
            fp(&[BEFORE, &["column public.orders.tier integer", "index public.orders orders_tier_idx"]].concat());
        let d = Damage::assess(&fp(BEFORE), &added, &BTreeMap::new(), &BTreeMap::new(), &data(), &Renames::default());
        assert!(d.destroyed.is_empty(), "{:?}", d.destroyed);
        assert!(d.only_added());
        let strict = fp(&[BEFORE, &["column public.orders.tier integer not null"]].concat());
        assert!(!Damage::assess(
            &fp(BEFORE),
            &strict,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &data(),
            &Renames::default()
        )
        .only_added());
        assert_eq!(d.touched, BTreeSet::from(["public.orders".to_string()]));
    }

    #[test]
    fn a_renamed_column_or_table_is_not_a_loss_nor_an_addition() {
        let now = fp(&[
            "relation public.bills kind=r",
            "column public.bills.id bigint not null default nextval('orders_id_seq'::regclass)",
            "column public.bills.remark text",
            "column public.bills.total numeric(10,2) not null",
            "relation public.gone kind=r",
            "column public.gone.id integer",
        ]);
        let renames = Renames {
            tables: BTreeMap::from([("public.orders".into(), "public.bills".into())]),
            columns: BTreeMap::from([(("public.orders".into(), "note".into()), "remark".into())]),
            said: vec!["renamed table public.orders to public.bills".into()],
        };
        let d = Damage::assess(&fp(BEFORE), &now, &BTreeMap::new(), &BTreeMap::new(), &data(), &renames);
        assert!(d.destroyed.is_empty(), "{:?}", d.destroyed);
        assert!(!d.only_added(), "a rename breaks the previous release's queries");
        assert_eq!(d.renamed, renames.said);
        assert!(d.touched.contains("public.orders"));
        assert_eq!(additions(&fp(BEFORE), &now, &renames), (vec![], vec![]));
        // Without the identities, the same change reads as a drop and an add.
        let blind = Damage::assess(&fp(BEFORE), &now, &BTreeMap::new(), &BTreeMap::new(), &data(), &Renames::default());
        assert!(blind.destroyed.iter().any(|l| l.starts_with("dropped table public.orders")), "{:?}", blind.destroyed);
        assert_eq!(additions(&fp(BEFORE), &now, &Renames::default()).0, vec!["public.bills".to_string()]);
    }

    #[test]
    fn updated_or_rewritten_tables_are_suspects_and_confirmed_by_their_sums() {
        let st = |relfilenode, n| TableStats { relfilenode, updated_or_deleted: n, inserted: 0 };
        let before = BTreeMap::from([("public.orders".to_string(), st(1, 10))]);
        for now in [st(1, 6010), st(2, 10)] {
            let mut d = Damage::assess(
                &fp(BEFORE),
                &fp(BEFORE),
                &before,
                &BTreeMap::from([("public.orders".to_string(), now)]),
                &data(),
                &Renames::default(),
            );
            assert_eq!(d.suspects, BTreeSet::from(["public.orders".to_string()]));
            let backup = &data()["public.orders"];
            d.rows_changed("public.orders", backup, backup);
            assert!(d.destroyed.is_empty());
            let mut other = backup.clone();
            other.sum ^= 1;
            d.rows_changed("public.orders", backup, &other);
            assert_eq!(d.destroyed.len(), 1, "{:?}", d.destroyed);
        }
        let d = Damage::assess(&fp(BEFORE), &fp(BEFORE), &before, &before, &data(), &Renames::default());
        assert!(d.suspects.is_empty() && d.touched.is_empty());
        assert_eq!(thousands(4812), "4 812");
    }
}
