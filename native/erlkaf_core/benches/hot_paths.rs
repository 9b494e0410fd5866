//! Hot paths that run without a BEAM: building a client conf, the batch ledger (create a
//! batch, hand out and release every slot), and the error-name table.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use erlkaf_core::config::Properties;
use erlkaf_core::ledger::{BatchHandle, Counters, Releases};
use erlkaf_core::ErrorCode;
use std::sync::Arc;

fn config(c: &mut Criterion) {
    let props = Properties::new([
        ("bootstrap.servers", "127.0.0.1:9092"),
        ("linger.ms", "5"),
        ("acks", "1"),
        ("compression.codec", "lz4"),
        ("queue.buffering.max.messages", "500000"),
    ]);
    c.bench_function("config: 5 properties to a conf object", |b| b.iter(|| black_box(props.to_conf().unwrap())));
}

fn ledger(c: &mut Criterion) {
    let counters = Arc::new(Counters::default());
    for n in [1usize, 1000] {
        c.bench_function(&format!("ledger: batch of {n}, every slot reported"), |b| {
            b.iter(|| {
                let h = BatchHandle::new(vec![0u8; 16], n, counters.clone());
                let opaques: Vec<usize> = (0..n).map(|i| h.opaque(i) as usize).collect();
                // As the pump does: the round's releases counted together.
                let mut released = Releases::default();
                for o in opaques {
                    // SAFETY: each slot released once, while its batch lives.
                    unsafe { released.release::<Vec<u8>>(o as *mut _) };
                }
            })
        });
    }
}

fn error_names(c: &mut Criterion) {
    c.bench_function("error code to name", |b| b.iter(|| black_box(ErrorCode(black_box(-184)).name())));
}

criterion_group!(benches, config, ledger, error_names);
criterion_main!(benches);
