//! The loader never panics, whatever it is given: it answers with located diagnostics.

use chargebridge::devicemap::{PollClass, builtin_source, describe, load_str, plan};
use proptest::prelude::*;

fn heidelberg_source() -> &'static str {
    builtin_source("heidelberg-energy-control").expect("built-in map")
}

/// Loads and, when it loads, exercises everything downstream of the loader too.
fn exercise(yaml: &str) {
    if let Ok(map) = load_str("x", "x.yaml", yaml) {
        let _ = plan(&map, &[PollClass::Always, PollClass::Slow, PollClass::Once]);
        let _ = describe(&map);
    }
}

#[test]
fn hostile_documents_are_rejected_not_panicked_on() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_map = format!("{}1{}", "{a: ".repeat(3000), "}".repeat(3000));
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n";
    let cases: Vec<String> = vec![
        String::new(),
        "\0\u{1}\u{2}".into(),
        "---\n---\n".into(),
        "- 1\n- 2\n".into(),
        "42".into(),
        "vendor: [1, 2]\nmodel: {a: b}\nregisters: 5\nstatus: []\n".into(),
        "registers:\n  r: { input: 99999999999999999999999999999999999999 }\n".into(),
        "registers:\n  r: { input: -1, type: string, length: 70000 }\n".into(),
        "registers:\n  r: { input: 65535, type: u64, mask: 0xFFFFFFFFFFFFFFFFF, shift: 99 }\n".into(),
        "registers:\n  r: { input: 1, unavailable: [1e300, -99999999999, x] }\n".into(),
        "registers:\n  ? [a, b]\n  : { input: 1 }\n".into(),
        "vendor: \"bell\\a\"\nmodel: M\nregisters:\n  s: { input: 0 }\nstatus: { register: s, map: { 0: A } }\n".into(),
        "\tvendor: x\n".into(),
        deep,
        deep_map,
        bomb.into(),
    ];
    for yaml in &cases {
        let result = load_str("x", "x.yaml", yaml);
        let diags = result.expect_err(yaml).0;
        assert!(!diags.is_empty());
        for d in diags {
            assert_eq!(d.file, "x.yaml");
            assert!(!d.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random edits of a real map: cut a piece out and paste random text in.
    #[test]
    fn mutated_maps_never_panic(
        at in 0usize..4000,
        cut in 0usize..40,
        insert in "[ -~\n\t{}\\[\\]:,&*!|>'\"#%@`-]{0,12}",
    ) {
        let src = heidelberg_source();
        let mut chars: Vec<char> = src.chars().collect();
        let at = at.min(chars.len());
        let end = (at + cut).min(chars.len());
        chars.splice(at..end, insert.chars());
        let yaml: String = chars.into_iter().collect();
        exercise(&yaml);
    }

    #[test]
    fn arbitrary_text_never_panics(yaml in "\\PC{0,200}") {
        exercise(&yaml);
    }
}
