//! Rebuilds this crate when a migration file is added or changed: refinery embeds them at
//! compile time, and cargo alone does not notice a new file in a folder it never read.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations-public");
}
