// A type that is not an L2 in the L2 position.
use outbox_redis::backends::NoCache;
use outbox_redis::{RedisTokenConfig, TwoTier};

fn main() {
    let _provider = TwoTier::<NoCache, u32>::from_parts(NoCache, 7, RedisTokenConfig::default());
}
