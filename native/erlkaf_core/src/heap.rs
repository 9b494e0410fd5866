//! The heap of everything linked into the NIF (librdkafka, zstd, our Rust code): mimalloc
//! instead of glibc's malloc, chosen at link time with `-Wl,--wrap=malloc,...` (see the
//! build scripts) and switchable at run time ([`use_mimalloc`]).
//!
//! Why: librdkafka allocates each message on the thread that produces (a BEAM scheduler)
//! and frees it on the thread that serves delivery reports. glibc then takes the
//! scheduler's arena lock for every free, and the two threads wait on each other in
//! `futex` calls (measured: ~5% of all CPU in futex wakes, a scheduler blocked inside
//! malloc). mimalloc frees a block of another thread without a lock.
//!
//! Memory that glibc allocated (`strdup` inside libc, anything allocated before the
//! switch, OpenSSL's buffers) still reaches our `free`: each block we hand out carries a
//! tag just before it, and a block without the tag goes back to glibc. At that place a
//! glibc block holds its chunk size (below 2^48), which never equals the tag.
#![allow(unsafe_code)]

use libmimalloc_sys as mi;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bytes in front of each block (keeps the 16-byte alignment malloc promises).
const HEADER: usize = 16;
/// The tag in the last word of the header: above 2^63, so never a glibc chunk size.
const TAG: usize = 0xE71C_AF5A_110C_8EED;

static MIMALLOC: AtomicBool = AtomicBool::new(true);

/// `mi_option_arena_eager_commit` in the mimalloc (v3) of the libmimalloc-sys version
/// pinned in Cargo.toml (the crate has no constant for it).
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;
/// `mi_option_purge_delay` (ms; mimalloc v3's default is 1000).
const PURGE_DELAY: mi::mi_option_t = 15;
/// The purge delay while [`start_purger`]'s thread purges: never reached by the threads
/// that allocate, as long as that thread runs.
const HELD_PURGE_DELAY: std::ffi::c_long = 3_600_000;
/// How often the purger returns freed memory to the OS (what mimalloc's own delay was).
const PURGE_PERIOD: Duration = Duration::from_millis(1000);

/// Whether purging is left to [`start_purger`]'s thread (no MIMALLOC_PURGE_DELAY given).
static PURGER: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn getenv(name: *const c_char) -> *mut c_char;
}

/// Runs when the library is loaded, before anything allocates through it.
#[used]
#[link_section = ".init_array"]
static CONFIGURE: extern "C" fn() = configure;

extern "C" fn configure() {
    // Arenas committed as they are used: committed eagerly, they showed up as 57 MiB more
    // RSS than glibc in `make soak-ci` (15-20 MiB more without; same throughput). An
    // immediate purge (purge_delay 0) would match glibc's RSS but cost a fifth of the
    // produce_batch throughput in madvise calls.
    // SAFETY: sets a plain option value.
    unsafe { mi::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    // Freed memory goes back to the OS on a thread of ours (`start_purger`), not after
    // mimalloc's purge delay on whichever thread frees or allocates next: that was often
    // a scheduler inside a produce call, and in a VM a purge's madvise calls cost 2-10 ms
    // of kernel time (TLB shootdowns wait for the other vCPUs). Never purging removed
    // those too, but RSS rose by 30-40 MiB in `make soak-ci` and kept climbing over a
    // 10M-message run. MIMALLOC_PURGE_DELAY in the environment (ms, -1: never) gives
    // purging back to mimalloc.
    // SAFETY: getenv before any thread of ours exists; the option is a plain value.
    unsafe {
        if getenv(c"MIMALLOC_PURGE_DELAY".as_ptr()).is_null() {
            mi::mi_option_set(PURGE_DELAY, HELD_PURGE_DELAY);
            PURGER.store(true, Ordering::Relaxed);
        }
    }
}

/// Starts the thread that returns freed memory to the OS every second (once per
/// process; nothing to do when MIMALLOC_PURGE_DELAY hands purging to mimalloc). Call it
/// before the heap is used in earnest (the NIF's load, the baseline's start).
pub fn start_purger() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    if !PURGER.load(Ordering::Relaxed) {
        return;
    }
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("erlkaf-heap".into()).spawn(|| {
            // SAFETY: one block made and freed: mimalloc skips collecting on a thread whose
            // heap it never set up (Rust's thread start allocates today; not relied on).
            unsafe { mi::mi_free(mi::mi_malloc(16)) };
            loop {
                std::thread::sleep(PURGE_PERIOD);
                // SAFETY: no arguments; a forced collect purges every arena's freed ranges
                // (mimalloc lets one thread purge at a time; the others skip, not wait).
                unsafe { mi::mi_collect(true) };
            }
        });
        if spawned.is_err() {
            // No thread: mimalloc purges by itself again, on its own delay.
            // SAFETY: a plain option value.
            unsafe { mi::mi_option_set(PURGE_DELAY, PURGE_PERIOD.as_millis() as std::ffi::c_long) };
        }
    });
}

/// Whether freed memory goes back to the OS on erlkaf's own thread.
pub fn purger_in_use() -> bool {
    PURGER.load(Ordering::Relaxed)
}

/// New blocks come from mimalloc (`true`, the default) or glibc (`false`). Blocks already
/// handed out are freed by whichever allocator made them, so this can change at any time.
pub fn use_mimalloc(on: bool) {
    MIMALLOC.store(on, Ordering::Relaxed);
}

/// Whether new blocks come from mimalloc.
pub fn mimalloc_in_use() -> bool {
    MIMALLOC.load(Ordering::Relaxed)
}

extern "C" {
    fn __real_malloc(size: usize) -> *mut c_void;
    fn __real_calloc(count: usize, size: usize) -> *mut c_void;
    fn __real_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __real_free(p: *mut c_void);
}

/// The user pointer of a fresh mimalloc block (or null), tagged.
unsafe fn tagged(base: *mut c_void) -> *mut c_void {
    if base.is_null() {
        return base;
    }
    let user = (base as *mut u8).add(HEADER);
    (user as *mut usize).sub(1).write(TAG);
    user as *mut c_void
}

/// Whether `p` (not null) is one of our blocks.
unsafe fn ours(p: *mut c_void) -> bool {
    (p as *const usize).sub(1).read() == TAG
}

unsafe fn base(p: *mut c_void) -> *mut c_void {
    (p as *mut u8).sub(HEADER) as *mut c_void
}

/// `malloc` for the objects linked with `--wrap=malloc`.
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_malloc(size: usize) -> *mut c_void {
    if !MIMALLOC.load(Ordering::Relaxed) {
        return __real_malloc(size);
    }
    match size.checked_add(HEADER) {
        Some(n) => tagged(mi::mi_malloc(n)),
        None => std::ptr::null_mut(),
    }
}

/// `calloc` for the objects linked with `--wrap=calloc`.
///
/// # Safety
/// As `calloc`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_calloc(count: usize, size: usize) -> *mut c_void {
    if !MIMALLOC.load(Ordering::Relaxed) {
        return __real_calloc(count, size);
    }
    match count.checked_mul(size).and_then(|n| n.checked_add(HEADER)) {
        Some(n) => tagged(mi::mi_zalloc(n)),
        None => std::ptr::null_mut(),
    }
}

/// `realloc` for the objects linked with `--wrap=realloc`: a block stays with the
/// allocator that made it.
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return __wrap_malloc(size);
    }
    if !ours(p) {
        return __real_realloc(p, size);
    }
    match size.checked_add(HEADER) {
        // mimalloc copies the header with the data: the tag stays.
        Some(n) => {
            let b = mi::mi_realloc(base(p), n);
            if b.is_null() {
                b
            } else {
                (b as *mut u8).add(HEADER) as *mut c_void
            }
        }
        None => std::ptr::null_mut(),
    }
}

/// `free` for the objects linked with `--wrap=free`.
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    if ours(p) {
        // A stale tag must not make a later glibc block at this address look like ours.
        (p as *mut usize).sub(1).write(0);
        mi::mi_free(base(p));
    } else {
        __real_free(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn malloc(size: usize) -> *mut c_void;
        fn calloc(count: usize, size: usize) -> *mut c_void;
        fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
        fn free(p: *mut c_void);
        fn strdup(s: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }

    // One test: the switch is process-wide and tests run in parallel.
    /// A block's address as the wrappers' C callers give it: to an optimiser that knows
    /// `malloc`, `ours` reading the word before a block is out of bounds (a release build
    /// turned this whole test into a trap) and a failed allocation may be assumed away.
    fn opaque<T>(p: *mut T) -> *mut T {
        std::hint::black_box(p)
    }

    #[test]
    fn blocks_go_back_to_the_allocator_that_made_them() {
        unsafe {
            use_mimalloc(true);
            let a = opaque(malloc(100)) as *mut u8;
            assert!(ours(a as *mut c_void));
            assert_eq!(a as usize % 16, 0);
            std::ptr::write_bytes(a, 7, 100);
            let a = opaque(realloc(a as *mut c_void, 100_000)) as *mut u8;
            assert!(ours(a as *mut c_void));
            assert_eq!(*a.add(99), 7);
            let z = opaque(calloc(10, 10)) as *mut u8;
            assert!((0..100).all(|i| *z.add(i) == 0));
            assert!(opaque(calloc(usize::MAX, 2)).is_null());
            assert!(opaque(malloc(usize::MAX)).is_null());
            // glibc's own allocation (strdup inside libc) freed through the wrapper.
            let s = opaque(strdup(c"glibc".as_ptr()));
            assert!(!ours(s as *mut c_void));
            let s = opaque(realloc(s as *mut c_void, 4096));
            assert!(!ours(s));
            free(s);

            use_mimalloc(false);
            let g = opaque(malloc(100));
            assert!(!ours(g));
            // Blocks made before the switch still go back to mimalloc.
            free(a as *mut c_void);
            free(z as *mut c_void);
            free(g);
            use_mimalloc(true);

            // Freed and reused from many threads (librdkafka's pattern: made here, freed there).
            let blocks: Vec<usize> = (0..10_000).map(|i| malloc(32 + i % 500) as usize).collect();
            std::thread::spawn(move || blocks.into_iter().for_each(|b| free(b as *mut c_void))).join().unwrap();
        }
    }
}
