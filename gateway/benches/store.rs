//! The store's cost on the query path, against references in the same run:
//! reading the current snapshot vs a bare `Arc` clone, and authenticating a
//! bearer token (SHA-256 plus a hash lookup among 1000 tokens) vs SHA-256
//! alone. And, for the record, one admin write (revision bump, row, snapshot
//! reload) on a SQLite file.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::store::{token_sha256, Store};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("gw-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("bench.db").display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    rt.block_on(async {
        for i in 0..1000 {
            let user = format!("user{i}");
            store.upsert_user(&user, false).await.unwrap();
            store
                .create_token(&user, &format!("token-{i:08}"))
                .await
                .unwrap();
        }
    });

    let mut g = c.benchmark_group("store_snapshot");
    let reference = Arc::new(0u64);
    g.bench_function("reference_arc_clone", |b| {
        b.iter(|| Arc::clone(std::hint::black_box(&reference)))
    });
    g.bench_function("snapshot", |b| b.iter(|| store.snapshot()));
    g.finish();

    let mut g = c.benchmark_group("store_authenticate");
    g.bench_function("reference_sha256", |b| {
        b.iter(|| token_sha256(std::hint::black_box("token-00000500")))
    });
    g.bench_function("authenticate_hit", |b| {
        b.iter(|| {
            store
                .authenticate_now(std::hint::black_box("token-00000500"))
                .unwrap()
        })
    });
    g.bench_function("authenticate_miss", |b| {
        b.iter(|| store.authenticate_now(std::hint::black_box("token-99999999")))
    });
    g.finish();

    let mut g = c.benchmark_group("store_write");
    g.sample_size(20);
    let mut n = 0u64;
    g.bench_function("sqlite_upsert_user_with_reload", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.upsert_user("bench", n.is_multiple_of(2)))
                .unwrap()
        })
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
