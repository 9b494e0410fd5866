//! Freed memory goes back to the OS on erlkaf's purge thread (its own process: RSS is
//! process-wide). Needs the `mimalloc` feature (`make test` sets it).
#![cfg(feature = "mimalloc")]

use std::ffi::c_void;
use std::time::{Duration, Instant};

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / 1048576.0
}

#[test]
fn freed_memory_goes_back_to_the_os() {
    assert!(erlkaf_core::heap::purger_in_use(), "run without MIMALLOC_PURGE_DELAY");
    erlkaf_core::heap::start_purger();
    // Made and freed on another thread, as librdkafka does with messages.
    // Small blocks, as librdkafka's messages (a large one is its own OS mapping).
    let size = 4096;
    let blocks: Vec<usize> = (0..(256 << 20) / size)
        .map(|_| unsafe {
            let p = malloc(size) as *mut u8;
            std::ptr::write_bytes(p, 1, size);
            p as usize
        })
        .collect();
    let full = rss_mib();
    std::thread::spawn(move || blocks.into_iter().for_each(|b| unsafe { free(b as *mut c_void) })).join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rss_mib() > full - 200.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = rss_mib();
    assert!(after <= full - 200.0, "RSS {full:.0} MiB with 256 MiB in use, {after:.0} MiB 10 s after freeing it");
}
