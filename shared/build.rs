// `sqlx::migrate!` embeds migrations/ at compile time; without this a new migration file would
// not rebuild the crate and an old build would silently miss it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
