//! The crate in one minute, with no server: a moka L1 in front of the
//! in-memory L2. Run with `cargo run --example quickstart`.

use outbox_redis::backends::{MemoryStore, MokaCache};
use outbox_redis::{Once, RedisTokenConfig, TwoTier};
use std::time::Duration;

#[tokio::main]
async fn main() -> outbox_redis::Result<()> {
    let config = RedisTokenConfig {
        ttl: Duration::from_millis(300),
        lease: Duration::from_millis(100),
        ..Default::default()
    };
    let provider: TwoTier<MokaCache, MemoryStore> =
        TwoTier::with_store(MemoryStore::new(), config)?;

    let first = provider.try_reserve("order-42").await?;
    println!("1. try_reserve(\"order-42\")            -> {first} (new token: reserved for 300 ms)");

    let second = provider.try_reserve("order-42").await?;
    println!(
        "2. try_reserve(\"order-42\") again      -> {second} (duplicate, answered from the local cache)"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    let after_ttl = provider.try_reserve("order-42").await?;
    println!(
        "3. after the 300 ms TTL                -> {after_ttl} (the reservation expired: usable again)"
    );

    let failed = provider
        .once("payment-7", async { Err::<(), _>("database write failed") })
        .await?;
    println!("4. once(\"payment-7\", failing work)     -> {failed:?} (token released, not burned)");

    let retried = provider
        .once("payment-7", async { Ok::<_, &str>("payment stored") })
        .await?;
    println!(
        "5. once(\"payment-7\", retry)            -> {retried:?} (committed for the full TTL)"
    );

    let duplicate = provider
        .once("payment-7", async { Ok::<_, &str>("stored twice?") })
        .await?;
    println!("6. once(\"payment-7\", duplicate)        -> {duplicate:?} (the work did not run)");

    assert!(first && !second && after_ttl);
    assert!(matches!(failed, Once::Failed(_)) && matches!(retried, Once::Done(_)));
    assert_eq!(duplicate, Once::Duplicate);
    Ok(())
}
