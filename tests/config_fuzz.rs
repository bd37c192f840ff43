//! Nothing an installer (or an attacker with write access to the file) writes makes the loader
//! panic: arbitrary text and small corruptions of a valid file both end in `Ok` or located
//! problems.

mod config_support;

use config_support::{BASE, load};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(d) = load(&text) {
            prop_assert!(!d.0.is_empty());
        }
    }

    #[test]
    fn corrupted_configurations_never_panic(
        at in 0usize..BASE.len(),
        len in 0usize..8,
        insert in "[ -~\\n\\t{}\\[\\]:$#&*!|>-]{0,8}",
    ) {
        let end = (at + len).min(BASE.len());
        let text = format!("{}{}{}", &BASE[..at], insert, &BASE[end..]);
        match load(&text) {
            Ok(cfg) => prop_assert!(!cfg.chargers.is_empty()),
            Err(d) => {
                prop_assert!(!d.0.is_empty());
                for diag in &d.0 {
                    prop_assert!(!diag.message.is_empty());
                    prop_assert!(!diag.message.contains(config_support::SECRET));
                }
            }
        }
    }
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb.push_str("device_map_dirs: *a11\n");
    // The strict schema refuses the anchors' keys before any alias is expanded.
    let err = load(&bomb).expect_err("bomb");
    assert!(
        err.to_string()
            .starts_with("gw.yaml:1:1: unknown field `a0`"),
        "{err}"
    );

    let deep = format!(
        "device_map_dirs: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let err = load(&deep).expect_err("deep");
    assert!(err.to_string().contains("recursion limit"), "{err}");
}
