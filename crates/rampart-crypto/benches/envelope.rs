//! Envelope encryption next to the raw aws-lc-rs AES-256-GCM primitive in the
//! same run: seal/open of 256 B and 4 KiB, and DEK unwrap (uncached through
//! the provider, cached as a keyring lookup). Run:
//! `cargo bench -p rampart-crypto`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart_crypto::{
    AadContext, AccountKey, KdfParams, KeyProvider, Keyring, LocalKeyProvider, Purpose,
};

const CTX: AadContext<'static> = AadContext::new("api_key", "key-0001", "secret");

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(
        LocalKeyProvider::create(&dir.path().join("data"), None, KdfParams::default()).unwrap(),
    );
    let ring = Keyring::new(Arc::clone(&provider) as Arc<dyn KeyProvider>);
    let wrapped = ring.rotate(Purpose::ApiSecrets).unwrap();

    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());

    for size in [256usize, 4096] {
        let plain = vec![0x5au8; size];
        let mut g = c.benchmark_group(format!("aes256gcm_{size}B"));
        g.throughput(Throughput::Bytes(size as u64));

        g.bench_function(BenchmarkId::new("seal", "raw-aws-lc-rs"), |b| {
            b.iter(|| {
                let mut nonce = [0u8; 12];
                aws_lc_rs::rand::fill(&mut nonce).unwrap();
                let mut buf = Vec::with_capacity(size + 16);
                buf.extend_from_slice(black_box(&plain));
                raw_key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(b"aad"),
                        &mut buf,
                    )
                    .unwrap();
                buf
            });
        });
        g.bench_function(BenchmarkId::new("seal", "rampart-envelope"), |b| {
            b.iter(|| {
                ring.encrypt(Purpose::ApiSecrets, &CTX, black_box(&plain))
                    .unwrap()
            });
        });

        let mut raw_ct = plain.clone();
        let raw_nonce = [1u8; 12];
        raw_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(raw_nonce),
                Aad::from(b"aad"),
                &mut raw_ct,
            )
            .unwrap();
        g.bench_function(BenchmarkId::new("open", "raw-aws-lc-rs"), |b| {
            b.iter(|| {
                let mut buf = black_box(&raw_ct).clone();
                let len = raw_key
                    .open_in_place(
                        Nonce::assume_unique_for_key(raw_nonce),
                        Aad::from(b"aad"),
                        &mut buf,
                    )
                    .unwrap()
                    .len();
                buf.truncate(len);
                buf
            });
        });
        // The envelope returns plaintext in a zeroizing buffer; this variant
        // separates the cost of wiping it on drop from the envelope itself.
        g.bench_function(BenchmarkId::new("open", "raw-aws-lc-rs+zeroize"), |b| {
            b.iter(|| {
                let mut buf = zeroize::Zeroizing::new(black_box(&raw_ct).clone());
                let len = raw_key
                    .open_in_place(
                        Nonce::assume_unique_for_key(raw_nonce),
                        Aad::from(b"aad"),
                        buf.as_mut_slice(),
                    )
                    .unwrap()
                    .len();
                buf.truncate(len);
                buf
            });
        });
        let env = ring.encrypt(Purpose::ApiSecrets, &CTX, &plain).unwrap();
        g.bench_function(BenchmarkId::new("open", "rampart-envelope"), |b| {
            b.iter(|| {
                ring.decrypt(Purpose::ApiSecrets, &CTX, black_box(&env))
                    .unwrap()
            });
        });
        // Account-scoped (format 2): the derived key comes from the keyring's cache.
        let account = AccountKey::generate("acct-1").unwrap();
        g.bench_function(BenchmarkId::new("seal", "rampart-envelope-account"), |b| {
            b.iter(|| {
                ring.encrypt_for(Purpose::ApiSecrets, &account, &CTX, black_box(&plain))
                    .unwrap()
            });
        });
        let env = ring
            .encrypt_for(Purpose::ApiSecrets, &account, &CTX, &plain)
            .unwrap();
        g.bench_function(BenchmarkId::new("open", "rampart-envelope-account"), |b| {
            b.iter(|| {
                ring.decrypt_for(Purpose::ApiSecrets, &account, &CTX, black_box(&env))
                    .unwrap()
            });
        });
        g.finish();
    }

    let mut g = c.benchmark_group("dek_unwrap");
    g.bench_function("uncached-provider", |b| {
        b.iter(|| {
            provider
                .unwrap_data_key(Purpose::ApiSecrets, 1, black_box(&wrapped.wrapped))
                .unwrap()
        });
    });
    // An account key not in the cache: HKDF-SHA256 + AES key schedule + seal of 32 B.
    let mut n = 0u64;
    g.bench_function("account-key-derive-uncached+seal32", |b| {
        b.iter(|| {
            n += 1;
            let account = AccountKey::from_bytes(&format!("acct-{n}"), &[9u8; 32]).unwrap();
            ring.encrypt_for(Purpose::ApiSecrets, &account, &CTX, black_box(&[1u8; 32]))
                .unwrap()
        });
    });
    g.bench_function("cached-keyring-lookup", |b| {
        b.iter(|| {
            ring.current_version(black_box(Purpose::ApiSecrets))
                .unwrap()
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
