//! Fuzz target `devicemap`: the device-map loader and everything downstream of a map that
//! loads (read plan, description), fed with the corpus (the built-in maps and hostile
//! documents), byte-level mutations of it, and arbitrary text. The loader answers with located
//! diagnostics, never a panic. See `fuzz_support` for the corpus and `FUZZ_CASES`.

mod fuzz_support;

use chargebridge::devicemap::{PollClass, builtin_names, builtin_source, describe, load_str, plan};
use proptest::prelude::*;

/// Loads and, when it loads, exercises the read plan and the description; a refusal names a
/// location.
fn exercise(yaml: &str) {
    fuzz_support::note(yaml.as_bytes());
    match load_str("fuzz", "fuzz.yaml", yaml) {
        Ok(map) => {
            let _ = plan(&map, &[PollClass::Always, PollClass::Slow, PollClass::Once]);
            let _ = describe(&map);
        }
        Err(d) => assert!(d.to_string().contains("fuzz.yaml"), "{d}"),
    }
}

/// The corpus plus every built-in map.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = fuzz_support::corpus("devicemap");
    for name in builtin_names() {
        if let Some(src) = builtin_source(name) {
            seeds.push((format!("builtin:{name}"), src.as_bytes().to_vec()));
        }
    }
    seeds
}

#[test]
fn the_corpus_replays_cleanly() {
    for (name, bytes) in seeds() {
        exercise(&String::from_utf8_lossy(&bytes));
        eprintln!("replayed {name}");
    }
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn mutated_maps_never_panic(
        seed in prop::sample::select(seeds()),
        edits in fuzz_support::edits(),
    ) {
        exercise(&String::from_utf8_lossy(&fuzz_support::mutate(&seed.1, &edits)));
    }

    #[test]
    fn arbitrary_text_never_panics(yaml in "\\PC{0,300}") {
        exercise(&yaml);
    }
}

/// The fuzz finding kept as a named test: nesting refused with a message, on a 2 MiB stack.
#[test]
fn deep_flow_nesting_is_refused_not_a_stack_overflow() {
    for (open, close) in [("[{a: ", "}]"), ("[", "]"), ("{a: ", "}")] {
        let yaml = format!(
            "vendor: x\nmodel: {}1{}\n",
            open.repeat(60),
            close.repeat(60)
        );
        let e = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || load_str("x", "x.yaml", &yaml).err().map(|d| d.to_string()))
            .expect("thread")
            .join()
            .expect("no stack overflow")
            .expect("refused");
        assert!(
            e.contains("x.yaml:2:") && e.contains("nested more than"),
            "{e}"
        );
    }
}
