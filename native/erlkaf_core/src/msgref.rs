//! MsgRefs: the positive integers `produce` returns and delivery reports carry.
//!
//! An integer is an immediate term: it takes no heap in the caller, and the batch keeps
//! it as a `u64` beside the message instead of a term copied into the batch env and out
//! again for the report (an Erlang reference cost both copies, ~7% of the CPU per
//! message of `produce/4` with a delivery-report callback).
//!
//! Unique within the VM, across producers: each thread takes blocks of [`BLOCK`] from one
//! counter (no shared write per message), so refs grow per thread, not globally. The
//! counter starts at the wall clock in microseconds, so a VM started later hands out
//! larger refs than an earlier one did (unless that one made over a million refs a
//! second over its whole life): a message replayed from the disk spill after a restart
//! keeps its old ref without meeting a new one. The values stay below 2^59, the BEAM's
//! largest immediate integer, for centuries.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Refs a thread takes from the counter at a time.
pub const BLOCK: u64 = 4096;

/// Refs handed out in blocks so far, counted from [`start`].
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// The first ref of this VM: the wall clock (µs since the epoch) when the first was made.
fn start() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64).max(1))
}

thread_local! {
    /// This thread's block: the next ref and the end of the block (exclusive).
    static LOCAL: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// `n` consecutive fresh refs; returns the first (the others follow it).
pub fn take(n: u64) -> u64 {
    LOCAL.with(|l| {
        let (next, end) = l.get();
        if end - next >= n {
            l.set((next + n, end));
            return next;
        }
        // A fresh block (larger for a call that wants more); what was left of the old one
        // is never used.
        let size = n.max(BLOCK);
        let first = start() + TAKEN.fetch_add(size, Ordering::Relaxed);
        l.set((first + n, first + size));
        first
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn refs_are_positive_consecutive_within_a_call_and_never_repeat() {
        let mut seen = HashSet::new();
        for n in [1, 1, 7, BLOCK, 1, BLOCK * 3 + 5, 2, 1] {
            let first = take(n);
            assert!(first > 0);
            for r in first..first + n {
                assert!(seen.insert(r), "ref {r} handed out twice");
            }
        }
    }

    #[test]
    fn threads_get_disjoint_refs() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..3 * BLOCK as usize).map(|_| take(1)).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for r in h.join().unwrap() {
                assert!(all.insert(r), "ref {r} handed out to two threads");
            }
        }
        assert_eq!(all.len(), 4 * 3 * BLOCK as usize);
    }

    #[test]
    fn refs_start_at_the_wall_clock_and_stay_immediate_integers() {
        let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        let before = now();
        let r = take(1);
        let after = now();
        // The counter started when this test binary first took a ref: not after `after`,
        // and not an hour before `before`.
        assert!(r <= after + TAKEN.load(Ordering::Relaxed));
        assert!(r + 3_600_000_000 > before, "ref {r} does not start near the clock ({before})");
        assert!(r < 1 << 59);
    }
}
