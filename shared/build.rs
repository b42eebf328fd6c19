//! Build-time inputs of the shared crate that live outside it.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn Error>> {
    // `sqlx::migrate!` embeds migrations/ at compile time; without this a new migration file
    // would not rebuild the crate and an old build would silently miss it.
    println!("cargo:rerun-if-changed=../migrations");
    portal_rules()
}

/// Writes `$OUT_DIR/portal_rules.rs`: every `portal-rules/*.toml` as `(file name, contents)`,
/// in name order, so adding a rule file needs no code change. Cargo re-runs this when a file
/// of the folder is added, removed or changed; rustc itself tracks each `include_str!`.
fn portal_rules() -> Result<(), Box<dyn Error>> {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("../portal-rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{}: the file name is not UTF-8", path.display()))?
                .to_owned();
            let abs = path.canonicalize()?;
            let abs = abs
                .to_str()
                .ok_or_else(|| format!("{}: the path is not UTF-8", abs.display()))?
                .to_owned();
            files.push((name, abs));
        }
    }
    files.sort();
    let mut out = String::from(
        "/// Every file of `portal-rules/` as (file name, contents), in name order.\n\
         pub(crate) const FILES: &[(&str, &str)] = &[\n",
    );
    for (name, abs) in &files {
        // `{:?}` of a `str` is a valid Rust string literal, escapes included.
        writeln!(out, "    ({name:?}, include_str!({abs:?})),")?;
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR")?).join("portal_rules.rs");
    std::fs::write(target, out)?;
    Ok(())
}
