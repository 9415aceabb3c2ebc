//! The corpus: tests/fixtures/lint holds one migration per case, and expected.tsv says per case
//! what it does (its category), what squawk reports and what we find. Every case is classified
//! here and held to its row, and docs/LINT.md's tables are drawn from the rows
//! (`DG_UPDATE_DOCS=1` rewrites them). tests/it/lint_squawk.rs holds squawk to its columns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Catalog, Finding, Kind, Linter, RULES};

/// What a case does, as docs/LINT.md defines the categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    DataLoss,
    TableRewrite,
    LongLock,
    RollbackHazard,
    Style,
    Review,
    None,
}

const CATEGORIES: &[(Category, &str)] = &[
    (Category::DataLoss, "data-loss"),
    (Category::TableRewrite, "table-rewrite"),
    (Category::LongLock, "long-lock"),
    (Category::RollbackHazard, "rollback-hazard"),
    (Category::Style, "style"),
    (Category::Review, "review"),
    (Category::None, "none"),
];

/// The harm a finding warns of, the unit the two linters are compared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Harm {
    /// Rows or values a revert cannot bring back.
    Loss,
    /// A rewrite or a long lock.
    Lock,
    /// The previous release, or the down, fails against what is left.
    Rollback,
}

impl Category {
    fn harm(self) -> Option<Harm> {
        match self {
            Category::DataLoss => Some(Harm::Loss),
            Category::TableRewrite | Category::LongLock => Some(Harm::Lock),
            Category::RollbackHazard => Some(Harm::Rollback),
            Category::Style | Category::Review | Category::None => None,
        }
    }
}

use Harm::{Lock, Loss, Rollback};

/// squawk's rules (2.70.0) by the harm each warns of, as docs/LINT.md reads them; a rule not
/// listed is style or review. `syntax-error` is squawk failing to read the file.
const SQUAWK_HARMS: &[(&str, &[Harm])] = &[
    ("adding-field-with-default", &[Lock]),
    ("adding-foreign-key-constraint", &[Lock]),
    ("adding-not-nullable-field", &[Lock]),
    ("adding-required-field", &[Rollback]),
    ("adding-serial-primary-key-field", &[Lock]),
    ("ban-alter-domain-with-add-constraint", &[Lock]),
    ("ban-drop-column", &[Loss]),
    ("ban-drop-database", &[Loss]),
    ("ban-drop-not-null", &[Rollback]),
    ("ban-drop-table", &[Loss]),
    ("ban-truncate-cascade", &[Loss]),
    ("ban-uncommitted-transaction", &[Rollback]),
    ("changing-column-type", &[Lock, Rollback]),
    ("constraint-missing-not-valid", &[Lock]),
    ("disallowed-unique-constraint", &[Lock]),
    ("prefer-repack", &[Lock]),
    ("renaming-column", &[Rollback]),
    ("renaming-table", &[Rollback]),
    ("renaming-object", &[Rollback]),
    ("require-concurrent-index-creation", &[Lock]),
    ("require-concurrent-index-deletion", &[Lock]),
    ("require-concurrent-partition-detach", &[Lock]),
    ("require-concurrent-reindex", &[Lock]),
    ("transaction-nesting", &[Rollback]),
    ("ban-drop-view", &[Rollback]),
    ("ban-drop-function", &[Rollback]),
    ("ban-drop-type", &[Loss, Rollback]),
    ("ban-drop-default", &[Rollback]),
    ("ban-drop-schema", &[Loss]),
    ("ban-drop-sequence", &[Loss, Rollback]),
    ("ban-drop-domain", &[Rollback]),
    ("ban-drop-constraint", &[Rollback]),
    ("ban-drop-generated-expression", &[Rollback]),
    ("ban-set-schema", &[Rollback]),
    ("ban-alter-identity", &[Rollback]),
    ("ban-drop-extension", &[Loss, Rollback]),
    // Opt-in.
    ("ban-drop-trigger", &[Rollback]),
    ("ban-alter-generated-expression", &[Rollback]),
    ("ban-disable-trigger", &[Rollback]),
    ("ban-revoke", &[Rollback]),
    ("ban-add-enum-value", &[Rollback]),
    ("ban-add-composite-attribute", &[Rollback]),
    ("ban-detach-inheritance", &[Rollback]),
    ("ban-alter-sequence-values", &[Rollback]),
    ("ban-alter-row-level-security", &[Rollback]),
    ("ban-alter-extension", &[Rollback]),
    ("ban-alter-database-options", &[Rollback]),
    ("ban-new-write-restriction", &[Rollback]),
    ("ban-replace-view-function", &[Rollback]),
];

fn squawk_harms(rule: &str) -> &'static [Harm] {
    SQUAWK_HARMS.iter().find(|(r, _)| *r == rule).map_or(&[], |(_, h)| h)
}

/// What our finding warns of: a change no revert undoes is a rollback hazard too.
fn our_harms(kind: Kind) -> &'static [Harm] {
    match kind {
        Kind::Destructive => &[Loss, Rollback],
        Kind::LongLock => &[Lock],
        Kind::BreaksPrevious => &[Rollback],
    }
}

/// A row of expected.tsv.
struct Case {
    file: String,
    categories: Vec<Category>,
    squawk: Vec<String>,
    squawk_opt_in: Vec<String>,
    ours: Vec<String>,
}

impl Case {
    /// squawk's rules: the default ones, with the opt-in ones when `opt_in`.
    fn squawk_rules(&self, opt_in: bool) -> impl Iterator<Item = &String> {
        self.squawk.iter().chain(self.squawk_opt_in.iter().filter(move |_| opt_in))
    }

    fn squawk_catches(&self, h: Harm, opt_in: bool) -> bool {
        // Losing data also makes a revert fail.
        self.squawk_rules(opt_in)
            .any(|r| squawk_harms(r).contains(&h) || (h == Rollback && squawk_harms(r).contains(&Loss)))
    }

    fn we_catch(&self, h: Harm, found: &[Finding]) -> bool {
        found.iter().any(|f| our_harms(f.kind).contains(&h))
    }

    /// squawk reports a harm at all (for a case that has none: a false alarm).
    fn squawk_flags(&self, opt_in: bool) -> bool {
        self.squawk_rules(opt_in).any(|r| !squawk_harms(r).is_empty())
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

fn rule_list(s: &str) -> Vec<String> {
    if s == "-" {
        return Vec::new();
    }
    s.split(',').map(str::to_string).collect()
}

fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("expected.tsv")).unwrap();
    let mut rows = text.lines().filter(|l| !l.starts_with('#'));
    assert_eq!(rows.next(), Some("file\tcategory\tsquawk\tsquawk-opt-in\tdeploy-guard"));
    rows.map(|l| {
        let c: Vec<&str> = l.split('\t').collect();
        assert_eq!(c.len(), 5, "expected.tsv: {l}");
        let category = |name: &str| {
            CATEGORIES.iter().find(|(_, n)| *n == name).unwrap_or_else(|| panic!("expected.tsv: category {name}")).0
        };
        Case {
            file: c[0].into(),
            categories: c[1].split('+').map(category).collect(),
            squawk: rule_list(c[2]),
            squawk_opt_in: rule_list(c[3]),
            ours: rule_list(c[4]),
        }
    })
    .collect()
}

/// Our findings on a case. `-- column: schema.table.column type` is what the live catalog
/// holds; `-- catalog: read`: the catalog was read (and holds only those columns).
fn classify(file: &str) -> Vec<Finding> {
    let sql = std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let header = |key: &'static str| sql.lines().filter_map(move |l| l.strip_prefix(key)).map(str::trim);
    let columns: Vec<[String; 4]> = header("-- column:")
        .map(|c| {
            let (name, ty) = c.split_once(' ').unwrap();
            let [schema, table, column]: [&str; 3] = name.split('.').collect::<Vec<_>>().try_into().unwrap();
            [schema.into(), table.into(), column.into(), ty.into()]
        })
        .collect();
    let read = !columns.is_empty() || header("-- catalog:").any(|c| c == "read");
    Linter::new(if read { Catalog::from_rows(columns) } else { Catalog::default() }).lint(&sql)
}

/// Each case finds exactly the rules its row names, and at least one of the kind its category
/// needs: a data-loss case a destructive finding, a rewrite or long lock a long-lock one; a
/// safe case none. (Rollback hazards we leave out on purpose are named in docs/LINT.md.)
#[test]
fn the_corpus_classifies_as_expected() {
    let cases = manifest();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".sql"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        cases.iter().map(|c| c.file.clone()).collect::<Vec<_>>(),
        "expected.tsv lists every .sql file, sorted"
    );
    let (mut wrong, mut seen) = (Vec::new(), BTreeSet::new());
    for case in &cases {
        let found = classify(&case.file);
        let got: Vec<String> = found.iter().map(|f| f.rule.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        if got != case.ours {
            wrong.push(format!("{}: expected {:?}, found {got:?}", case.file, case.ours));
        }
        for c in &case.categories {
            let kind_needed = match c {
                Category::DataLoss => Some(Kind::Destructive),
                Category::TableRewrite | Category::LongLock => Some(Kind::LongLock),
                _ => None,
            };
            if kind_needed.is_some_and(|k| !found.iter().any(|f| f.kind == k)) {
                wrong.push(format!("{}: a {c:?} case with no {kind_needed:?} finding", case.file));
            }
            if matches!(c, Category::None | Category::Style | Category::Review) && !found.is_empty() {
                wrong.push(format!("{}: a {c:?} case with findings {got:?}", case.file));
            }
        }
        seen.extend(got);
    }
    assert!(cases.len() >= 170, "{} cases", cases.len());
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    let untested: Vec<&str> = RULES.iter().map(|r| r.name).filter(|r| !seen.contains(*r)).collect();
    assert!(untested.is_empty(), "rules no case finds: {untested:?}");
}

/// The bar: no case that loses data or rewrites a table which squawk flags and we miss.
#[test]
fn squawk_catches_no_data_loss_or_rewrite_that_we_miss() {
    let missed: Vec<String> = manifest()
        .iter()
        .filter(|c| {
            let found = classify(&c.file);
            c.categories
                .iter()
                .filter_map(|k| k.harm())
                .any(|h| matches!(h, Loss | Lock) && c.squawk_catches(h, true) && !c.we_catch(h, &found))
        })
        .map(|c| c.file.clone())
        .collect();
    assert!(missed.is_empty(), "{missed:?}");
}

/// docs/LINT.md's generated tables are the corpus's, and every case where squawk and we
/// disagree is explained in its prose.
#[test]
fn docs_lint_md_shows_the_corpus() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/LINT.md");
    let mut doc = std::fs::read_to_string(&path).unwrap();
    let cases = manifest();
    let found: Vec<Vec<Finding>> = cases.iter().map(|c| classify(&c.file)).collect();
    let tables = [
        ("summary", summary(&cases, &found)),
        ("ours", our_rules(&cases, &found)),
        ("squawk", squawk_rules(&cases, &found)),
        ("disagreements", disagreements(&cases, &found).1),
    ];
    let update = std::env::var_os("DG_UPDATE_DOCS").is_some();
    for (name, want) in tables {
        let (begin, end) = (format!("<!-- {name}:begin -->\n"), format!("<!-- {name}:end -->"));
        let start = doc.find(&begin).unwrap_or_else(|| panic!("docs/LINT.md has no {begin}")) + begin.len();
        let stop = doc.find(&end).unwrap_or_else(|| panic!("docs/LINT.md has no {end}"));
        if update {
            doc.replace_range(start..stop, &want);
        } else {
            assert_eq!(
                doc[start..stop],
                want,
                "docs/LINT.md's {name} table is stale: run DG_UPDATE_DOCS=1 cargo test --lib corpus"
            );
        }
    }
    if update {
        std::fs::write(&path, &doc).unwrap();
    }
    // The prose: the doc with its generated tables taken out.
    let mut prose = doc.clone();
    for name in ["summary", "ours", "squawk", "disagreements"] {
        let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
        let (a, b) = (prose.find(&begin).unwrap(), prose.find(&end).unwrap());
        prose.replace_range(a..b, "");
    }
    let unexplained: Vec<String> = disagreements(&cases, &found)
        .0
        .into_iter()
        .filter(|f| !prose.contains(&format!("`{}`", f.trim_end_matches(".sql"))))
        .collect();
    assert!(unexplained.is_empty(), "docs/LINT.md does not explain {unexplained:?}");
}

fn count(n: usize) -> String {
    if n == 0 {
        "–".into()
    } else {
        n.to_string()
    }
}

/// Per category: how many cases, caught by squawk (default rules; with the opt-in ones) and by
/// us. For the categories with no harm: how many each flags a harm on anyway.
fn summary(cases: &[Case], found: &[Vec<Finding>]) -> String {
    let mut out = String::from(
        "| category | cases | squawk | squawk with opt-in | deploy-guard | both | only squawk | only deploy-guard |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for &(cat, name) in CATEGORIES {
        let (mut n, mut sq, mut opt, mut us, mut both, mut only_sq, mut only_us) = (0, 0, 0, 0, 0, 0, 0);
        for (c, f) in cases.iter().zip(found) {
            if !c.categories.contains(&cat) {
                continue;
            }
            n += 1;
            let (s, o, u) = match cat.harm() {
                Some(h) => (c.squawk_catches(h, false), c.squawk_catches(h, true), c.we_catch(h, f)),
                None => (c.squawk_flags(false), c.squawk_flags(true), !f.is_empty()),
            };
            sq += s as usize;
            opt += o as usize;
            us += u as usize;
            both += (s && u) as usize;
            only_sq += (s && !u) as usize;
            only_us += (u && !s) as usize;
        }
        let name = if cat.harm().is_some() { name.to_string() } else { format!("{name} (flagged anyway)") };
        out.push_str(&format!(
            "| {name} | {n} | {} | {} | {} | {} | {} | {} |\n",
            count(sq),
            count(opt),
            count(us),
            count(both),
            count(only_sq),
            count(only_us)
        ));
    }
    out
}

/// Per rule of ours: its kind, what it flags, the cases it fires on and on how many of them
/// squawk (default or opt-in rules) warns of the same harm.
fn our_rules(cases: &[Case], found: &[Vec<Finding>]) -> String {
    let mut out = String::from("| rule | kind | what it flags | cases | squawk agrees |\n|---|---|---|--:|--:|\n");
    for r in RULES {
        let on: Vec<&Case> =
            cases.iter().zip(found).filter(|(_, f)| f.iter().any(|f| f.rule == r.name)).map(|(c, _)| c).collect();
        let agree = on.iter().filter(|c| our_harms(r.kind).iter().any(|&h| c.squawk_catches(h, true))).count();
        let kind = serde_json::to_value(r.kind).unwrap();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.name,
            kind.as_str().unwrap(),
            r.why,
            on.len(),
            count(agree)
        ));
    }
    out
}

/// Per squawk rule seen on the corpus: on by default or opt-in, the harm we read it as, the
/// cases it fires on, on how many of them we warn of the same harm, and which of our rules.
fn squawk_rules(cases: &[Case], found: &[Vec<Finding>]) -> String {
    let mut rules: BTreeMap<(bool, &str), Vec<usize>> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        for r in &c.squawk {
            rules.entry((false, r)).or_default().push(i);
        }
        for r in &c.squawk_opt_in {
            rules.entry((true, r)).or_default().push(i);
        }
    }
    let mut out = String::from(
        "| squawk rule | default | harm | cases | deploy-guard agrees | our rules there |\n|---|---|---|--:|--:|---|\n",
    );
    for ((opt_in, rule), on) in rules {
        let harms = squawk_harms(rule);
        let agree = on.iter().filter(|&&i| harms.iter().any(|&h| cases[i].we_catch(h, &found[i]))).count();
        let ours: BTreeSet<&str> = on.iter().flat_map(|&i| found[i].iter().map(|f| f.rule.as_str())).collect();
        let harm = if harms.is_empty() {
            "style / review".to_string()
        } else {
            harms.iter().map(|h| format!("{h:?}").to_lowercase()).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!(
            "| `{rule}` | {} | {harm} | {} | {} | {} |\n",
            if opt_in { "opt-in" } else { "on" },
            on.len(),
            if harms.is_empty() { "".into() } else { count(agree) },
            ours.into_iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

/// The cases where one warns of a harm (the case's, or any on a case that has none) and the
/// other does not, by squawk's default rules: their files, and the table.
fn disagreements(cases: &[Case], found: &[Vec<Finding>]) -> (Vec<String>, String) {
    let mut files = Vec::new();
    let mut out = String::from("| case | category | squawk | deploy-guard |\n|---|---|---|---|\n");
    for (c, f) in cases.iter().zip(found) {
        let differs = c.categories.iter().any(|k| match k.harm() {
            Some(h) => c.squawk_catches(h, false) != c.we_catch(h, f),
            // No harm: one flags something, the other nothing.
            None => c.squawk_flags(false) == f.is_empty(),
        });
        if !differs {
            continue;
        }
        let list = |rules: &[String]| if rules.is_empty() { "–".to_string() } else { rules.join(", ") };
        let category: Vec<&str> =
            c.categories.iter().map(|k| CATEGORIES.iter().find(|(x, _)| x == k).unwrap().1).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.file.trim_end_matches(".sql"),
            category.join(" + "),
            list(&c.squawk),
            list(&c.ours)
        ));
        files.push(c.file.clone());
    }
    (files, out)
}
