//! Throwaway harness compiling `src/net` on its own (deleted when done).
#[path = "../src/net/mod.rs"]
#[allow(dead_code)]
mod net;

fn main() {}
