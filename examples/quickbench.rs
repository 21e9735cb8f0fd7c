//! Quick throughput check of the standard shapes (the full command is
//! `demandflow bench`).

#[path = "../benches/shapes/mod.rs"]
mod shapes;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for &shape in shapes::SHAPES {
        let e = rt.block_on(shapes::engine(shape, n)).expect("engine");
        let b = rt.block_on(shapes::baseline(shape, n)).expect("baseline");
        println!(
            "{shape:18} engine {:8.1} M/s  baseline {:8.1} M/s  ratio {:.2}",
            e.per_sec() / 1e6,
            b.per_sec() / 1e6,
            e.per_sec() / b.per_sec()
        );
    }
}
