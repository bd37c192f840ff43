//! A YAML document as a tree of located nodes.
//!
//! The loader first turns the whole file into this tree (only YAML syntax errors stop it) and
//! then checks every field by hand. Deserializing straight into `deny_unknown_fields` structs
//! would stop at the first problem; installers should see all of them in one `check` run.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::Diagnostic;

/// A position in the file (1-based; 0 when unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: u64,
    /// Column.
    pub column: u64,
}

/// One YAML node with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts (for block mappings: their first key; flow mappings: the `{`).
    pub pos: Pos,
    /// For a value in a mapping: where its key is written. Problems with a whole section
    /// ("missing field") point here, at the section's name.
    pub key: Option<Pos>,
    /// The value.
    pub kind: Kind,
}

/// What a node holds, after YAML's implicit typing (`0x10` is an integer, `on` a boolean).
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// `true`/`false` (YAML 1.2: `on`/`off`/`yes`/`no` stay strings, see [`is_yaml11_bool`]).
    Bool(bool),
    /// An integer (decimal, `0x`, `0o`, `0b`).
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A string (quoted, or plain text that is not a number or boolean).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Node, Node)>),
}

impl Kind {
    /// A short description for messages ("a string", "a mapping", ...).
    #[must_use]
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "empty",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// Where to report a problem with the node as a whole: its key if it has one.
    #[must_use]
    pub fn anchor(&self) -> Pos {
        self.key.unwrap_or(self.pos)
    }

    /// The entries, if this node is a mapping.
    #[must_use]
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A number (integer or float).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The key as text for messages (`on` keys show as `true`, which the hint explains).
    #[must_use]
    pub fn key_text(&self) -> String {
        match &self.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Bool(b) => b.to_string(),
            Kind::Null => "~".to_owned(),
            Kind::Seq(_) | Kind::Map(_) => "<complex key>".to_owned(),
        }
    }
}

/// Whether a plain word is a boolean to YAML 1.1 tools (PyYAML, many editors, older Go and
/// Ruby libraries): such keys mean different things to different readers of the same file.
#[must_use]
pub fn is_yaml11_bool(word: &str) -> bool {
    ["on", "off", "yes", "no"]
        .iter()
        .any(|b| b.eq_ignore_ascii_case(word))
}

/// The deepest nesting of sequences and mappings a device map may use.
pub const MAX_DEPTH: usize = 16;

/// The document root as parsed: either the tree or the syntax error.
///
/// # Errors
/// A YAML syntax error (or an input serde-saphyr refuses, e.g. duplicate keys or an alias
/// bomb) as one located diagnostic.
pub fn parse(file_label: &str, yaml: &str) -> Result<Node, Diagnostic> {
    // YAML 1.2 booleans only: with YAML 1.1 rules `N` (a valid OCPP phase) and `y` would be
    // booleans. The loader rejects keys spelled on/off/yes/no itself, with a hint.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    // The generic tree recurses once per nesting level with large frames: a 150-byte map
    // nested 60 deep (serde-saphyr's default limit is 64) overflowed a 2 MiB thread stack in
    // a debug build (found by tests/fuzz_devicemap.rs). Device maps nest five levels at most.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    options.budget = Some(budget);
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(yaml, options) {
        Ok(root) => Ok(root.into()),
        Err(e) => {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            Err(Diagnostic::at(
                file_label,
                line,
                column,
                format!("YAML: {}", explain(&first_line(&e.to_string()))),
            ))
        }
    }
}

/// serde-saphyr renders errors with a source excerpt; the diagnostic carries the place itself.
fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or(msg);
    // "error: line 3 column 5: <what>" -> "<what>"
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_owned(),
        _ => line.to_owned(),
    }
}

/// Rewords parser messages that speak to programmers rather than installers.
fn explain(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("`{key}` is given twice in the same mapping; keep one");
    }
    if msg.starts_with("budget breached: Depth") {
        return format!(
            "nested more than {MAX_DEPTH} levels deep; a device map needs only a few levels"
        );
    }
    msg.to_owned()
}

/// The shape serde-saphyr fills; converted into [`Node`] right after parsing.
#[derive(Debug)]
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl From<Spanned<RawNode>> for Node {
    fn from(s: Spanned<RawNode>) -> Self {
        let pos = Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        };
        let kind = match s.value {
            RawNode::Null => Kind::Null,
            RawNode::Bool(b) => Kind::Bool(b),
            RawNode::Int(i) => Kind::Int(i),
            RawNode::Float(f) => Kind::Float(f),
            RawNode::Str(t) => Kind::Str(t),
            RawNode::Seq(v) => Kind::Seq(v.into_iter().map(Node::from).collect()),
            RawNode::Map(m) => Kind::Map(
                m.into_iter()
                    .map(|(k, v)| {
                        let key = Node::from(k);
                        let mut value = Node::from(v);
                        value.key = Some(key.pos);
                        (key, value)
                    })
                    .collect(),
            ),
        };
        Node {
            pos,
            key: None,
            kind,
        }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        i128::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = a.next_entry()? {
            entries.push(entry);
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_their_yaml_types_and_places() {
        let root = parse("t.yaml", "a: 0x10\nb: \"2\"\nc: { true: 1.5, N: 1 }\n").unwrap();
        let m = root.as_map().unwrap();
        assert_eq!(m[0].1.kind, Kind::Int(16));
        assert_eq!(m[0].1.pos, Pos { line: 1, column: 4 });
        assert_eq!(m[1].1.kind, Kind::Str("2".into()));
        let inner = m[2].1.as_map().unwrap();
        assert_eq!(inner[0].0.kind, Kind::Bool(true));
        assert_eq!(inner[0].0.pos, Pos { line: 3, column: 6 });
        // YAML 1.2 booleans only: `N` stays text (it is an OCPP phase).
        assert_eq!(inner[1].0.kind, Kind::Str("N".into()));
    }

    #[test]
    fn syntax_errors_are_located() {
        let d = parse("t.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(d.file, "t.yaml");
        assert!(d.line >= 1, "{d}");
        assert!(d.message.starts_with("YAML: "), "{d}");
    }
}
