//! `gen-data`: write synthetic NAMO scenes to a folder.

fn main() {}
