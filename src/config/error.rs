//! Config errors that point: the file, line and column (or the `DEPLOY_GUARD_*` variable), the
//! setting, what is wrong in plain words and what to write instead.

use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Serialize;

use super::env::{env_name, Kind, SETTINGS};

/// A config that cannot be used: exit 2, nothing was touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    pub message: String,
    /// The setting at fault, dotted (`app.health.timeout`).
    pub key: Option<String>,
    pub file: Option<String>,
    /// 1-based, where the setting (or the nearest section that is there) is written.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The `DEPLOY_GUARD_*` variable the value came from, instead of the file.
    pub variable: Option<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.variable, &self.file, self.line) {
            (Some(var), _, _) => write!(f, "{var}")?,
            (None, Some(file), Some(line)) => write!(f, "{file}:{line}:{}", self.column.unwrap_or(1))?,
            (None, Some(file), None) => write!(f, "{file}")?,
            (None, None, Some(line)) => write!(f, "line {line}")?,
            (None, None, None) => write!(f, "config")?,
        }
        match &self.key {
            Some(key) if self.variable.is_some() => write!(f, " ({key}): {}", self.message),
            Some(key) => write!(f, ": {key}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where a config came from: what a later error about one of its settings points at.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub file: Option<PathBuf>,
    text: String,
    /// (setting, variable) for every setting an environment variable gave.
    from_env: Vec<(String, String)>,
}

impl Origin {
    pub fn new(file: Option<&Path>, text: &str) -> Origin {
        Origin { file: file.map(Path::to_path_buf), text: text.to_string(), from_env: Vec::new() }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// A broken rule of `validate.rs`, whose messages start with the setting
    /// (`app.health.url: …`, `database.url and database.host: …`).
    pub(super) fn rule_error(&self, message: &str) -> ConfigError {
        const SECTIONS: &[&str] =
            &["project", "target", "app", "database", "migrations", "backup", "rollback", "github", "verify", "deploy"];
        let head = message.split_once(": ").map(|(h, _)| h).unwrap_or("");
        let word = head.split(' ').next().unwrap_or("");
        let is_key = word.split('.').next().is_some_and(|s| SECTIONS.contains(&s))
            && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
        match (is_key, head == word) {
            (true, true) => self.error(Some(word), &message[head.len() + 2..]),
            (true, false) => self.error(Some(word), message),
            _ => self.error(None, message),
        }
    }

    pub(super) fn set_from_env(&mut self, from_env: Vec<(String, String)>) {
        self.from_env = from_env;
    }

    /// An error about `key`, pointing at the variable that set it or at its place in the file.
    pub fn error(&self, key: Option<&str>, message: impl Into<String>) -> ConfigError {
        let variable = key.and_then(|k| {
            self.from_env
                .iter()
                .find(|(path, _)| k == path || k.starts_with(&format!("{path}.")))
                .map(|(_, var)| var.clone())
        });
        let (line, column) = match (&variable, key) {
            (None, Some(k)) => locate(&self.text, k).map_or((None, None), |(l, c)| (Some(l), Some(c))),
            _ => (None, None),
        };
        ConfigError {
            message: message.into(),
            key: key.map(str::to_string),
            file: self.file.as_ref().map(|f| f.display().to_string()),
            line,
            column,
            variable,
        }
    }

    /// A YAML syntax error, at the place the parser stopped.
    pub fn syntax(&self, e: &serde_yaml::Error) -> ConfigError {
        let text = e.to_string();
        // The location is reported apart; the parser's own words stay.
        let message = match text.find(" at line ") {
            Some(i) if e.location().is_some() => {
                let rest = &text[i + " at line ".len()..];
                let after = rest.find(", ").map(|j| &rest[j..]).unwrap_or("");
                format!("{}{after}", &text[..i])
            }
            _ => text.clone(),
        };
        ConfigError {
            message: format!("not valid YAML: {message}"),
            key: None,
            file: self.file.as_ref().map(|f| f.display().to_string()),
            line: e.location().map(|l| l.line()),
            column: e.location().map(|l| l.column()),
            variable: None,
        }
    }

    /// A serde error at `path` (`app.health.timeout`) in plain words; `value` is the tree it
    /// was read from (for the value that was given).
    pub(super) fn serde_error(&self, path: &str, inner: &str, value: &serde_yaml::Value) -> ConfigError {
        let path = if path == "." { "" } else { path };
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let known = backticked(expected);
            // serde_path_to_error's path already ends at the unknown field.
            let key = if path.ends_with(field) { path.to_string() } else { join(field) };
            let section = key.rsplit_once('.').map(|(s, _)| s).unwrap_or("the top level");
            let mut m = format!("unknown setting `{field}`");
            if let Some(s) = did_you_mean(field, known.iter().map(String::as_str)) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            m.push_str(&format!(" ({section} takes: {})", known.join(", ")));
            return self.error(Some(&key), m);
        }
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            let key = join(field);
            let m = match example(&key) {
                Some(ex) => format!("required, and not set (e.g. `{field}: {ex}`)"),
                None => format!("required, and not set (add `{field}:` here)"),
            };
            // Point at the section it belongs in.
            let mut e = self.error(Some(&key), m);
            if e.line.is_none() && e.variable.is_none() {
                let at = self.error(Some(path).filter(|p| !p.is_empty()), "");
                (e.line, e.column) = (at.line, at.column);
            }
            return e;
        }
        if let Some(rest) = inner.strip_prefix("unknown variant `") {
            let (got, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let known = backticked(expected);
            let mut m = format!("`{got}` is not one of: {}", known.join(", "));
            if let Some(s) = did_you_mean(got, known.iter().map(String::as_str)) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            return self.error(Some(path), m);
        }
        let got = lookup(value, path).map(show).unwrap_or_default();
        let expected = inner.rsplit_once(", expected ").map(|(_, e)| e).unwrap_or("");
        let what = match kind(path) {
            Some(Kind::Duration) => "a duration such as 90s, 2m or 1h30m".to_string(),
            Some(Kind::Int) | None if expected.starts_with('u') && expected[1..].parse::<u8>().is_ok() => {
                whole_number(expected, path)
            }
            _ if expected == "a boolean" => "true or false".into(),
            _ if expected == "a string" => "text (quote it: \"…\")".into(),
            _ if expected == "a sequence" => "a list (`[a, b]`, or one `- item` per line)".into(),
            _ if expected.starts_with("struct ") || expected == "a map" => {
                "a section: `key: value` lines indented under it".into()
            }
            // Our own messages (sizes, compression) are plain already.
            _ => return self.error(Some(path).filter(|p| !p.is_empty()), inner.to_string()),
        };
        let got = if got.is_empty() { String::new() } else { format!(", got {got}") };
        self.error(Some(path).filter(|p| !p.is_empty()), format!("expected {what}{got}"))
    }
}

fn whole_number(expected: &str, path: &str) -> String {
    let max = match expected {
        "u8" => u8::MAX as u64,
        "u16" => u16::MAX as u64,
        "u32" => u32::MAX as u64,
        _ => u64::MAX,
    };
    let ex = example(path).unwrap_or("4");
    format!("a whole number from 0 to {max}, e.g. {ex}")
}

/// An example value for a setting, for messages.
fn example(key: &str) -> Option<&'static str> {
    Some(match key {
        "project" => "station",
        "target.port" => "22",
        "database.port" => "5432",
        "app.runtime" => "compose",
        "app.health" => "{ url: \"https://example.org/health\" }",
        "backup.store" => "s3://bucket/prefix",
        _ => return None,
    })
}

/// The type a setting's value is read as.
pub fn kind(path: &str) -> Option<Kind> {
    SETTINGS.iter().find(|(p, _)| *p == path).map(|(_, k)| *k)
}

/// The closest of `known` to `got`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(got: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let got = got.to_ascii_lowercase();
    known
        .map(|k| (strsim::damerau_levenshtein(&got, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The nearest `DEPLOY_GUARD_*` setting variable to `name`.
pub fn did_you_mean_var(name: &str) -> Option<String> {
    let names: Vec<String> = SETTINGS.iter().map(|(p, _)| env_name(p)).collect();
    did_you_mean(name, names.iter().map(String::as_str)).map(str::to_string)
}

/// `` `a`, `b` or `c` `` → [a, b, c].
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn lookup<'a>(v: &'a serde_yaml::Value, path: &str) -> Option<&'a serde_yaml::Value> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(v, |v, k| v.get(k))
}

fn show(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => format!("{s:?}"),
        serde_yaml::Value::Mapping(_) => "a section".into(),
        serde_yaml::Value::Sequence(_) => "a list".into(),
        serde_yaml::Value::Null => "nothing".into(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

const HERE: &str = "deploy-guard: found here";

/// Line and column (1-based) of `key`'s name in the YAML `text`, or of the nearest enclosing
/// section that is there. A second pass over the text: serde_yaml marks an error with the place of
/// the event being read, so the walk stops with an error at the key it looks for.
pub fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let path: Vec<&str> = key.split('.').collect();
    (1..=path.len()).rev().find_map(|n| {
        let de = serde_yaml::Deserializer::from_str(text);
        match (Find { path: &path[..n] }).deserialize(de) {
            Err(e) if e.to_string().contains(HERE) => e.location().map(|l| (l.line(), l.column())),
            _ => None,
        }
    })
}

/// Walks the document down `path`; errors (marked) on the last name.
struct Find<'a> {
    path: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("anything")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else { return Ok(()) };
        while let Some(found) = map.next_key_seed(Key { want: first, last: rest.is_empty() })? {
            if found {
                return map.next_value_seed(Find { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A mapping's key: whether it is the name looked for; the last name of the path errors, marked.
struct Key<'a> {
    want: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<bool, E> {
        match s == self.want {
            true if self.last => Err(E::custom(HERE)),
            found => Ok(found),
        }
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_block_and_flow_style() {
        let text = "project: x\napp:\n  runtime: shell\n  health: { url: \"h\", timeout: soon }\n";
        assert_eq!(locate(text, "project"), Some((1, 1)));
        assert_eq!(locate(text, "app.runtime"), Some((3, 3)));
        assert_eq!(locate(text, "app.health.timeout"), Some((4, 23)));
        // Not there: the nearest section that is.
        assert_eq!(locate(text, "app.health.interval"), Some((4, 3)));
        assert_eq!(locate(text, "database.name"), None);
    }

    #[test]
    fn typos_get_a_suggestion() {
        let keys = ["runtime", "commands", "health", "workdir"];
        assert_eq!(did_you_mean("helth", keys.into_iter()), Some("health"));
        assert_eq!(did_you_mean("zzz", keys.into_iter()), None);
        assert_eq!(
            did_you_mean_var("DEPLOY_GUARD_APP_HELTH_TIMEOUT").as_deref(),
            Some("DEPLOY_GUARD_APP_HEALTH_TIMEOUT")
        );
    }
}
