// A user's own L1 and L2 compose with TwoTier and serve outbox-core, with no
// change to the crate.
use async_trait::async_trait;
use outbox_core::{IdempotencyStorageProvider, IdempotencyToken};
use outbox_redis::{Claim, LocalCache, Owner, RedisTokenConfig, RemoteStore, Seen, TwoTier};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
struct MapCache(Mutex<HashMap<String, (Seen, Instant)>>);

impl LocalCache for MapCache {
    fn get(&self, token: &str, now: Instant) -> Option<Seen> {
        let map = self.0.lock().unwrap();
        map.get(token).filter(|(_, deadline)| *deadline > now).map(|(seen, _)| *seen)
    }
    fn insert(&self, token: &str, seen: Seen, deadline: Instant) {
        self.0.lock().unwrap().insert(token.to_owned(), (seen, deadline));
    }
    fn remove(&self, token: &str) {
        self.0.lock().unwrap().remove(token);
    }
    fn entry_count(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
}

#[derive(Default)]
struct MapStore(Mutex<HashMap<String, Owner>>);

#[async_trait]
impl RemoteStore for MapStore {
    async fn reserve(&self, key: &str, owner: Owner, _ttl: Duration) -> outbox_redis::Result<Claim> {
        let mut map = self.0.lock().unwrap();
        match map.get(key) {
            Some(held) if *held != owner => Ok(Claim::Taken { expires_in: None }),
            _ => {
                map.insert(key.to_owned(), owner);
                Ok(Claim::Reserved)
            }
        }
    }
    async fn release(&self, key: &str, owner: Owner) -> outbox_redis::Result<bool> {
        let mut map = self.0.lock().unwrap();
        if map.get(key) == Some(&owner) {
            map.remove(key);
            return Ok(true);
        }
        Ok(false)
    }
    async fn commit(&self, key: &str, owner: Owner, _ttl: Duration) -> outbox_redis::Result<bool> {
        Ok(self.0.lock().unwrap().get(key) == Some(&owner))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let provider = TwoTier::from_parts(MapCache::default(), MapStore::default(), RedisTokenConfig::default()).unwrap();
    let token = IdempotencyToken::new("t-1".to_owned());
    assert!(IdempotencyStorageProvider::try_reserve(&provider, &token).await.unwrap());
    assert!(!IdempotencyStorageProvider::try_reserve(&provider, &token).await.unwrap());
}
