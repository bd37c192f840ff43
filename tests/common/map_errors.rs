//! Asserting the diagnostics a device map that fails to load gets: how many, the
//! `file:line:column` they point at and what their message says.

use chargebridge::devicemap::load_str;
use chargebridge::diag::Diagnostic;

/// The identity lines every test map starts with.
pub const HEAD: &str = "vendor: V\nmodel: M\n";

/// Loads `yaml` (as `t.yaml`) expecting failure; returns the diagnostics.
pub fn errors(yaml: &str) -> Vec<Diagnostic> {
    match load_str("t", "t.yaml", yaml) {
        Ok(map) => panic!("expected errors, the map loaded: {map:?}"),
        Err(d) => d.0,
    }
}

/// Asserts exactly one problem, on `line` at the first occurrence of `token` in that line,
/// whose message contains every needle.
#[track_caller]
pub fn one(yaml: &str, line: u64, token: &str, needles: &[&str]) {
    let text = yaml
        .lines()
        .nth(usize::try_from(line).expect("small line number") - 1)
        .unwrap_or("");
    let column = text
        .find(token)
        .unwrap_or_else(|| panic!("{token:?} not on line {line}: {text}"))
        + 1;
    one_at(
        yaml,
        line,
        u64::try_from(column).expect("small column"),
        needles,
    );
}

/// Asserts exactly one problem, at `line:column`, whose message contains every needle.
#[track_caller]
pub fn one_at(yaml: &str, line: u64, column: u64, needles: &[&str]) {
    let errs = errors(yaml);
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        errs.len(),
        1,
        "expected one problem, got:\n{}",
        shown.join("\n")
    );
    let d = &errs[0];
    assert_eq!(d.file, "t.yaml");
    assert_eq!((d.line, d.column), (line, column), "{d}");
    for n in needles {
        assert!(d.message.contains(n), "{n:?} not in: {d}");
    }
}
