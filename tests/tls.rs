//! `rediss://` against a real TLS-only `redis-server`, for both backends.
//!
//! The server's certificate is made here (rcgen) and trusted through
//! `SSL_CERT_FILE`, which rustls-native-certs reads; setting the variable is
//! why this test lives alone in its own binary and sets it before any thread
//! starts.
#![cfg(all(feature = "tls-rustls", any(feature = "redis", feature = "fred")))]
#![allow(unsafe_code)]

mod common;

use common::RedisServer;
use outbox_redis::RedisTokenConfig;
use std::time::Duration;

#[test]
fn rediss_urls_work_with_the_tls_feature() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let server = RedisServer::with_tls(&cert.cert.pem(), &cert.key_pair.serialize_pem());
    let ca = std::env::temp_dir().join(format!("outbox-redis-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, cert.cert.pem()).expect("write the CA file");
    // SAFETY: no other thread exists yet in this test binary's only test, and
    // the runtime that reads the variable is built after this line.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca) };

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let config = RedisTokenConfig {
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        #[cfg(feature = "redis")]
        {
            let provider = outbox_redis::RedisTokenProvider::new(&server.url(), config.clone())
                .await
                .expect("redis-rs connects over TLS");
            assert!(provider.try_reserve("over-tls").await.unwrap());
            assert!(!provider.try_reserve("over-tls").await.unwrap());
        }
        #[cfg(feature = "fred")]
        {
            let provider = outbox_redis::FredTokenProvider::new(&server.url(), config)
                .await
                .expect("fred connects over TLS");
            assert!(provider.try_reserve("over-tls-fred").await.unwrap());
            assert!(!provider.try_reserve("over-tls").await.unwrap());
        }
    });
    assert_eq!(server.cli(&["EXISTS", "i_token:over-tls"]), "1");
    let _ = std::fs::remove_file(ca);
}
