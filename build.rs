//! Compiles every `device-maps/*.yaml` into the binary: generates the list the built-in map
//! registry (`src/devicemap/builtin.rs`) includes, so adding a map needs no code change.

use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=device-maps");
    let dir = Path::new("device-maps");
    let mut names = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                println!("cargo:rerun-if-changed={}", path.display());
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    names.push(stem.to_owned());
                }
            }
        }
    }
    names.sort();
    let mut out = String::from("&[\n");
    for name in &names {
        let file = format!("/device-maps/{name}.yaml");
        writeln!(
            out,
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {file:?}))),"
        )?;
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR")?).join("builtin_maps.rs");
    std::fs::write(dest, out)?;
    Ok(())
}
