//! Reading typed fields out of the located YAML tree, collecting every problem.
//!
//! Each reader reports what is wrong at the node's line and column, with a hint of what to
//! write instead, and returns `None` so the caller can carry on and find the next problem.

use std::time::Duration;

use super::tree::{Kind, Node, Pos, is_yaml11_bool};
use crate::diag::Diagnostic;

/// The problems found so far in one file.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Self {
            file,
            diags: Vec::new(),
        }
    }

    pub(crate) fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::at(self.file, pos.line, pos.column, msg));
    }

    /// Reads a mapping with a fixed set of keys; reports the node if it is not a mapping, and
    /// every key that is not a plain string or not in `allowed`.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let Some(entries) = node.as_map() else {
            self.err(
                node.pos,
                format!(
                    "{path}: expected a mapping with fields {}, found {}",
                    allowed.join(", "),
                    node.kind.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let Some(name) = self.key(key, path) else {
                continue;
            };
            if allowed.contains(&name) {
                out.push((name, key, value));
            } else {
                let hint = suggest(name, allowed.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.err(
                    key.pos,
                    format!(
                        "{path}: unknown field `{name}`; {hint}allowed here: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(Fields {
            pos: node.anchor(),
            entries: out,
        })
    }

    /// A mapping key that must be a plain string (names of registers, measurands, fields).
    pub(crate) fn key<'n>(&mut self, key: &'n Node, path: &str) -> Option<&'n str> {
        match &key.kind {
            Kind::Str(s) if is_yaml11_bool(s) => {
                self.err(key.pos, bool_key_message(path, s));
                None
            }
            Kind::Str(s) => Some(s),
            Kind::Bool(b) => {
                self.err(key.pos, bool_key_message(path, &b.to_string()));
                None
            }
            other => {
                self.err(
                    key.pos,
                    format!(
                        "{path}: key `{}` is {}; keys here are names, write it in quotes if you mean it",
                        key.key_text(),
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    /// The entries of a mapping whose keys are free names (registers, measurands, map keys).
    pub(crate) fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        expected: &str,
    ) -> Option<&'n [(Node, Node)]> {
        if let Some(m) = node.as_map() {
            Some(m)
        } else {
            self.err(
                node.pos,
                format!(
                    "{path}: expected a mapping ({expected}), found {}",
                    node.kind.describe()
                ),
            );
            None
        }
    }

    pub(crate) fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::Str(s) => Some(s),
            other => {
                self.err(
                    node.pos,
                    format!(
                        "{path}: expected text, found {}{}",
                        other.describe(),
                        quote_hint(other)
                    ),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn int(&mut self, node: &Node, path: &str, min: i128, max: i128) -> Option<i128> {
        match &node.kind {
            Kind::Int(i) if (min..=max).contains(i) => Some(*i),
            Kind::Int(i) => {
                self.err(
                    node.pos,
                    format!("{path}: {i} is out of range; use {min}..={max}"),
                );
                None
            }
            other => {
                self.err(
                    node.pos,
                    format!(
                        "{path}: expected a whole number ({min}..={max}), found {}{}",
                        other.describe(),
                        bool_hint(other)
                    ),
                );
                None
            }
        }
    }

    /// A finite number (integer or decimal).
    pub(crate) fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        match node.as_f64() {
            Some(f) if f.is_finite() => Some(f),
            Some(_) => {
                self.err(node.pos, format!("{path}: must be a finite number"));
                None
            }
            None => {
                self.err(
                    node.pos,
                    format!(
                        "{path}: expected a number, found {}{}",
                        node.kind.describe(),
                        bool_hint(&node.kind)
                    ),
                );
                None
            }
        }
    }

    /// One of a fixed list of words.
    pub(crate) fn choice(
        &mut self,
        node: &Node,
        path: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(i) => i.to_string(),
            other => {
                self.err(
                    node.pos,
                    format!(
                        "{path}: expected one of {}, found {}",
                        options.join(", "),
                        other.describe()
                    ),
                );
                return None;
            }
        };
        if let Some(o) = options.iter().find(|o| **o == text) {
            return Some(o);
        }
        let hint = suggest(&text, options.iter().copied())
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        self.err(
            node.pos,
            format!(
                "{path}: `{text}` is not allowed; {hint}use one of {}",
                options.join(", ")
            ),
        );
        None
    }

    /// A duration such as `100ms`, `1s`, `5m`.
    pub(crate) fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        match &node.kind {
            Kind::Str(s) => match crate::duration::parse(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(node.pos, format!("{path}: {e}"));
                    None
                }
            },
            Kind::Int(i) => {
                self.err(
                    node.pos,
                    format!("{path}: `{i}` needs a unit: write e.g. `{i}ms` or `{i}s`"),
                );
                None
            }
            other => {
                self.err(
                    node.pos,
                    format!(
                        "{path}: expected a duration such as 500ms, 1s or 5m, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }
}

/// The fields of one mapping that passed the key checks.
#[derive(Debug)]
pub(crate) struct Fields<'n> {
    pub(crate) pos: Pos,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of a field, if given (an explicit `~` counts as given).
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, _, v)| *v)
    }

    /// The key node of a field, for messages that point at the field rather than its value.
    pub(crate) fn key_pos(&self, name: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, k, _)| k.pos)
    }

    /// Field names given, in file order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'n str> + '_ {
        self.entries.iter().map(|(k, _, _)| *k)
    }
}

fn bool_key_message(path: &str, word: &str) -> String {
    format!(
        "{path}: the key `{word}` is a boolean to YAML 1.1 tools (on/off/yes/no/true/false), so \
         the file means different things to different readers; use the field's full name \
         (e.g. on_value / off_value) or another name"
    )
}

fn bool_hint(kind: &Kind) -> &'static str {
    match kind {
        Kind::Bool(_) => " (write 1 or 0 for a number)",
        Kind::Str(s) if is_yaml11_bool(s) => {
            " (on/off/yes/no are booleans to YAML 1.1 tools; write 1 or 0)"
        }
        _ => "",
    }
}

fn quote_hint(kind: &Kind) -> &'static str {
    match kind {
        Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => " (put it in quotes to make it text)",
        _ => "",
    }
}

/// The closest allowed word, if it is close enough to be a likely typo; a word that is the
/// start of an allowed one (`Energy.Active.Import`) suggests the first such word.
pub(crate) fn suggest<'a>(word: &str, options: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let options: Vec<&'a str> = options.collect();
    if lower.len() >= 3
        && let Some(o) = options
            .iter()
            .find(|o| o.to_ascii_lowercase().starts_with(&lower))
    {
        return Some(o);
    }
    options
        .into_iter()
        .map(|o| (edit_distance(&lower, &o.to_ascii_lowercase()), o))
        // A one-letter word is "close" to every other one-letter word: no suggestion then.
        .filter(|(d, o)| *d <= (o.len() / 3).max(1) && *d < lower.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// Optimal-string-alignment distance: edits plus swaps of neighbours (`sacle` -> `scale` is 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let opts = ["scale", "offset", "shift"];
        assert_eq!(suggest("sacle", opts.iter().copied()), Some("scale"));
        assert_eq!(suggest("Offset", opts.iter().copied()), Some("offset"));
        assert_eq!(suggest("banana", opts.iter().copied()), None);
    }
}
