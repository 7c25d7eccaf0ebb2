//! Does nothing: exists so that the `[build-dependencies]` in Cargo.toml take
//! part in feature unification (see the comment there). Must never do work.
fn main() {}
