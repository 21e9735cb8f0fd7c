//! Criterion benchmarks of the standard shapes, engine beside baseline.

// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../src/cli/bench/shapes.rs"]
mod shapes;

const EVENTS: u64 = 2_000_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for &shape in shapes::SHAPES {
        let mut g = c.benchmark_group(shape);
        g.throughput(Throughput::Elements(EVENTS));
        g.sample_size(10);
        g.bench_function("engine", |b| {
            b.iter(|| {
                rt.block_on(shapes::engine(shape, EVENTS))
                    .expect("engine run")
            })
        });
        g.bench_function("baseline", |b| {
            b.iter(|| {
                rt.block_on(shapes::baseline(shape, EVENTS))
                    .expect("baseline run")
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
