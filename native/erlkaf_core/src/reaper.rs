//! Where blocking teardown runs: never on a BEAM scheduler, never in a destructor inline.
//!
//! `rd_kafka_destroy` blocks until librdkafka's threads end (seconds for a consumer that
//! leaves its group, forever when an object leaked). Each job gets its own short-lived
//! thread, so one slow destroy cannot hold up the others.

use std::sync::atomic::{AtomicI64, Ordering};

static RUNNING: AtomicI64 = AtomicI64::new(0);

/// Runs `job` on a reaper thread. Panics in the job are caught and logged to stderr.
pub fn run<F: FnOnce() + Send + 'static>(name: &str, job: F) {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new().name(format!("erlkaf-reaper-{name}")).spawn(move || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            eprintln!("erlkaf: a reaper job panicked");
        }
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        // No thread could be made: leaking the object beats blocking a scheduler.
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        eprintln!("erlkaf: could not spawn a reaper thread; a native object is leaked");
    }
}

/// Jobs started and not finished yet.
pub fn running() -> i64 {
    RUNNING.load(Ordering::SeqCst)
}
