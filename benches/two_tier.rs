//! Framework overhead without a network: `TwoTier` over the in-memory store
//! next to the store called directly, for new tokens and duplicates.
//!
//! `cargo bench --bench two_tier`
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use outbox_redis::backends::{MemoryStore, MokaCache, NoCache};
use outbox_redis::{LocalCache, Owner, RedisTokenConfig, RemoteStore, TwoTier, WithCapacity};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BATCH: u64 = 1_000;

fn tokens(next: &AtomicU64) -> Vec<String> {
    let start = next.fetch_add(BATCH, Ordering::Relaxed);
    (start..start + BATCH)
        .map(|i| format!("bench-token-{i:012}"))
        .collect()
}

fn new_tokens_through<L1: LocalCache + WithCapacity>(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
) {
    let provider: TwoTier<L1, MemoryStore> =
        TwoTier::with_store(MemoryStore::new(), RedisTokenConfig::default()).unwrap();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("new_tokens");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            || tokens(&next),
            |batch| {
                let provider = &provider;
                async move {
                    for token in &batch {
                        assert!(provider.try_reserve(token).await.unwrap());
                    }
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The store alone: the floor the framework adds to.
    let store = MemoryStore::new();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("new_tokens");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("MemoryStore::reserve (no framework)", |b| {
        b.to_async(&runtime).iter_batched(
            || tokens(&next),
            |batch| {
                let store = &store;
                async move {
                    for token in &batch {
                        let key = format!("i_token:{token}");
                        let claim = store
                            .reserve(&key, Owner::new(1, 1), Duration::from_secs(86_400))
                            .await
                            .unwrap();
                        assert!(claim.is_reserved());
                    }
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    new_tokens_through::<NoCache>(c, &runtime, "TwoTier<NoCache, MemoryStore>");
    new_tokens_through::<MokaCache>(c, &runtime, "TwoTier<MokaCache, MemoryStore>");

    let provider: TwoTier<MokaCache, MemoryStore> =
        TwoTier::with_store(MemoryStore::new(), RedisTokenConfig::default()).unwrap();
    runtime.block_on(provider.try_reserve("hot")).unwrap();
    let mut group = c.benchmark_group("duplicate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("TwoTier<MokaCache, MemoryStore> (L1 hit)", |b| {
        b.to_async(&runtime)
            .iter(|| async { assert!(!provider.try_reserve("hot").await.unwrap()) });
    });
    group.finish();
}

criterion_group! {
    name = two_tier;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(two_tier);
