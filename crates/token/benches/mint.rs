//! Placeholder so the workspace loads; the token helper replaces it.
fn main() {}
