//! Runs one shape on the engine (for profiling).
#[path = "../benches/shapes/mod.rs"]
mod shapes;

fn main() {
    let shape = std::env::args().nth(1).unwrap_or_else(|| "chain3".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let e = rt.block_on(shapes::engine(&shape, n)).expect("engine");
    println!("{shape} {:.1} M/s", e.per_sec() / 1e6);
}
