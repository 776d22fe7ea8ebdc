// A type that is not an L1 in the L1 position.
use outbox_redis::backends::MemoryStore;
use outbox_redis::{RedisTokenConfig, TwoTier};

fn main() {
    let _provider = TwoTier::<String, MemoryStore>::from_parts(String::new(), MemoryStore::new(), RedisTokenConfig::default());
}
