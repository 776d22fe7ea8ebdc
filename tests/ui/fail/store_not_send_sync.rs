// A store that cannot be shared between threads: RemoteStore needs Send + Sync.
use async_trait::async_trait;
use outbox_redis::{Claim, Owner, RemoteStore};
use std::rc::Rc;
use std::time::Duration;

struct LocalOnly(Rc<()>);

#[async_trait]
impl RemoteStore for LocalOnly {
    async fn reserve(&self, _key: &str, _owner: Owner, _ttl: Duration) -> outbox_redis::Result<Claim> {
        Ok(Claim::Reserved)
    }
    async fn release(&self, _key: &str, _owner: Owner) -> outbox_redis::Result<bool> {
        Ok(false)
    }
    async fn commit(&self, _key: &str, _owner: Owner, _ttl: Duration) -> outbox_redis::Result<bool> {
        Ok(false)
    }
}

fn main() {
    let _ = LocalOnly(Rc::new(()));
}
