//! The L1 hit path allocates nothing: a duplicate answered from the local
//! cache costs no heap traffic, whichever L1 answers it.
#![cfg(any(feature = "moka", feature = "mini-moka"))]

use outbox_redis::backends::MemoryStore;
use outbox_redis::{LocalCache, RedisTokenConfig, TwoTier, WithCapacity};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn hit_path_allocates_nothing<L1: LocalCache + WithCapacity>() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let provider: TwoTier<L1, MemoryStore> =
        TwoTier::with_store(MemoryStore::new(), RedisTokenConfig::default()).unwrap();
    runtime.block_on(async {
        assert!(provider.try_reserve("hot-token").await.unwrap());
        assert!(!provider.try_reserve("hot-token").await.unwrap());
        let before = allocations();
        for _ in 0..10_000 {
            assert!(!provider.try_reserve("hot-token").await.unwrap());
        }
        assert_eq!(allocations() - before, 0, "{}", std::any::type_name::<L1>());
    });
}

#[cfg(feature = "moka")]
#[test]
fn moka_hit_path_allocates_nothing() {
    hit_path_allocates_nothing::<outbox_redis::backends::MokaCache>();
}

#[cfg(feature = "mini-moka")]
#[test]
fn mini_moka_hit_path_allocates_nothing() {
    hit_path_allocates_nothing::<outbox_redis::backends::MiniMokaCache>();
}
