//! Prints a generated policy: `cargo run -p authflow-benches --example generate -- flows 1000`
//! or `-- guards 100`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    match args.get(1).map(String::as_str) {
        Some("guards") => print!("{}", authflow_benches::policy_with_guards(count)),
        _ => print!("{}", authflow_benches::policy_with_flows(count)),
    }
}
