//! Fleet benchmark (see BENCHMARKS.md).

fn main() {}
