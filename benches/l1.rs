//! The L1 backends alone: a hit (the duplicate path), a miss (every new
//! token checks L1 first) and an insert (every new token is remembered).
//!
//! `cargo bench --bench l1 --all-features`
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{Criterion, criterion_group, criterion_main};
use outbox_redis::backends::NoCache;
use outbox_redis::{LocalCache, Owner, Seen, WithCapacity};
use std::hint::black_box;
use std::time::Duration;
use tokio::time::Instant;

fn one<L1: LocalCache + WithCapacity>(c: &mut Criterion, name: &str) {
    let cache = L1::with_capacity(10_000);
    let far = Instant::now() + Duration::from_secs(3600);
    // A full cache, as in production.
    for i in 0..20_000 {
        cache.insert(
            &format!("fill-token-{i:012}-abcdefghijkl"),
            Seen::Theirs,
            far,
        );
    }
    cache.insert(
        "hot-token-000000000000-abcdefghijkl",
        Seen::Ours(Owner::new(1, 1)),
        far,
    );
    cache.run_pending_tasks();
    let now = Instant::now();
    let mut group = c.benchmark_group(name);
    group.bench_function("hit", |b| {
        b.iter(|| black_box(cache.get(black_box("hot-token-000000000000-abcdefghijkl"), now)));
    });
    group.bench_function("miss", |b| {
        b.iter(|| black_box(cache.get(black_box("new-token-000000000000-abcdefghijkl"), now)));
    });
    let mut i = 0u64;
    let tokens: Vec<String> = (0..1_000_000)
        .map(|i| format!("new-token-{i:012}-abcdefghijkl"))
        .collect();
    group.bench_function("insert new token", |b| {
        b.iter(|| {
            i = (i + 1) % 1_000_000;
            cache.insert(
                &tokens[usize::try_from(i).unwrap_or(0)],
                Seen::Ours(Owner::new(1, i)),
                far,
            );
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    one::<NoCache>(c, "NoCache");
    #[cfg(feature = "moka")]
    one::<outbox_redis::backends::MokaCache>(c, "MokaCache");
    #[cfg(feature = "mini-moka")]
    one::<outbox_redis::backends::MiniMokaCache>(c, "MiniMokaCache");
}

criterion_group! {
    name = l1;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = benches
}
criterion_main!(l1);
