//! Open batches: single-message produce calls from one thread share a batch.
//!
//! A batch per produce call costs an allocation, a fresh keep (for the NIF: an env and its
//! heap) and counter updates, which is more than librdkafka spends on a small message.
//! So `produce/4` takes the next slot of its thread's *open batch* instead: a batch of
//! [`CAPACITY`] slots created on first use. Every message still goes to librdkafka at
//! once, in call order; only the ledger bookkeeping is shared.
//!
//! A batch is closed (its unused slots refused, so the ledger frees it after the last
//! report) when it is full, when its payloads reach [`MAX_BYTES`] (large values are never
//! held back by small ones), when [`OpenBatches::close_idle`] finds it untouched since the
//! previous call (the pump calls it every [`IDLE_CLOSE`] while a batch is open, and within
//! ~100 ms of a batch opening), and at teardown.
//!
//! Shards are picked by a per-thread index: a BEAM scheduler is one OS thread, so a
//! shard's mutex is almost never contended. A shard also remembers the last few topics
//! its thread produced to (names and handles), so that a produce call touches no lock
//! or counter that another thread writes.

use crate::ledger::{BatchHandle, Counters};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Slots per open batch.
pub const CAPACITY: usize = 64;
/// Payload bytes after which an open batch is closed.
pub const MAX_BYTES: usize = 64 * 1024;
/// How often the pump looks for idle open batches.
pub const IDLE_CLOSE: Duration = Duration::from_millis(20);
const SHARDS: usize = 32;

struct Open<K> {
    handle: BatchHandle<K>,
    used: usize,
    bytes: usize,
    touched: bool,
}

impl<K: Send + Sync> Open<K> {
    /// Refuses the unused slots: the batch is freed once its used slots were reported.
    fn close(self) {
        self.handle.refuse_range(self.used..CAPACITY);
    }
}

/// Topics a shard remembers (a thread that alternates between a few topics finds each).
const TOPICS: usize = 4;

/// A shard's state: its open batch and its topic cache.
struct ShardState<K> {
    open: Option<Open<K>>,
    /// The last topics produced to from this shard and their handles (addresses the
    /// owner keeps valid until [`OpenBatches::close_all`]), most recent first.
    topics: smallvec::SmallVec<[(Box<[u8]>, usize); TOPICS]>,
}

#[repr(align(64))]
struct Shard<K>(Mutex<ShardState<K>>);

/// The open batches of one producer.
pub struct OpenBatches<K> {
    shards: Box<[Shard<K>]>,
    counters: Arc<Counters>,
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    INDEX.with(|i| *i)
}

/// What [`OpenBatches::with_slot`]'s closure did with its slot.
pub enum SlotUse<R> {
    /// Handed to librdkafka with a payload of this many bytes: its report releases it.
    Produced(R, usize),
    /// Not handed to librdkafka: the slot is released now.
    Unused(R),
}

impl<K: Send + Sync> OpenBatches<K> {
    /// No open batch yet; batches count in `counters`.
    pub fn new(counters: Arc<Counters>) -> Self {
        OpenBatches { shards: (0..SHARDS).map(|_| Shard(Mutex::new(ShardState { open: None, topics: smallvec::SmallVec::new() }))).collect(), counters }
    }

    /// Runs `f` with the keep, index and librdkafka opaque of the next slot of this
    /// thread's open batch (opened with `make_keep` when there is none), and the topic
    /// handle returned by `topic(cached)`, where `cached` is the shard's handle for
    /// `name` if it has one. Everything runs under the shard's lock, which
    /// [`Self::close_all`] takes too: what the caller checks in `topic` (first) holds
    /// until `f` returns.
    pub fn with_slot<R, E>(
        &self,
        name: &[u8],
        topic: impl FnOnce(Option<usize>) -> Result<usize, E>,
        make_keep: impl FnOnce() -> K,
        f: impl FnOnce(usize, &K, usize, *mut std::ffi::c_void) -> SlotUse<R>,
    ) -> Result<R, E> {
        let mut guard = self.shards[shard_index()].0.lock();
        let shard = &mut *guard;
        let found = shard.topics.iter().position(|(n, _)| &**n == name);
        let rkt = topic(found.map(|i| shard.topics[i].1))?;
        match found {
            Some(0) => {}
            Some(i) => shard.topics[..=i].rotate_right(1),
            None => {
                shard.topics.truncate(TOPICS - 1);
                shard.topics.insert(0, (name.into(), rkt));
            }
        }
        let open = shard.open.get_or_insert_with(|| Open {
            handle: BatchHandle::new(make_keep(), CAPACITY, self.counters.clone()),
            used: 0,
            bytes: 0,
            touched: true,
        });
        let i = open.used;
        open.used += 1;
        open.touched = true;
        let r = match f(rkt, open.handle.batch().keep(), i, open.handle.opaque(i)) {
            SlotUse::Produced(r, bytes) => {
                open.bytes += bytes;
                r
            }
            SlotUse::Unused(r) => {
                open.handle.refuse(i);
                r
            }
        };
        if open.used == CAPACITY || open.bytes >= MAX_BYTES {
            shard.open.take().expect("open batch").close();
        }
        Ok(r)
    }

    /// Closes open batches not used since the previous call (called by the pump).
    /// Returns true while some batch is still open (to be looked at again soon).
    pub fn close_idle(&self) -> bool {
        let mut left = false;
        for shard in self.shards.iter() {
            // A busy shard is in use: not idle.
            let Some(mut guard) = shard.0.try_lock() else {
                left = true;
                continue;
            };
            match guard.open.as_mut() {
                Some(open) if open.touched => {
                    open.touched = false;
                    left = true;
                }
                Some(_) => guard.open.take().expect("open batch").close(),
                None => {}
            }
        }
        left
    }

    /// Closes every open batch and forgets the cached topics (teardown). Each shard's
    /// lock is taken once: a [`Self::with_slot`] running meanwhile finishes first, and one
    /// starting later sees whatever the caller changed before this call.
    pub fn close_all(&self) {
        for shard in self.shards.iter() {
            let mut guard = shard.0.lock();
            guard.topics.clear();
            if let Some(open) = guard.open.take() {
                open.close();
            }
        }
    }
}

impl<K> Drop for OpenBatches<K> {
    fn drop(&mut self) {
        // Teardown closes them; a batch still open here would never be freed.
        debug_assert!(self.shards.iter().all(|s| s.0.lock().open.is_none()), "open batch left at drop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::CountingKeep as Keep;

    fn slot(ob: &OpenBatches<Keep>, freed: &Arc<AtomicUsize>, produced: bool, bytes: usize) -> (usize, usize) {
        ob.with_slot(
            b"t",
            |_| Ok::<usize, ()>(1),
            || Keep(freed.clone()),
            |_, _, i, opaque| if produced { SlotUse::Produced((i, opaque as usize), bytes) } else { SlotUse::Unused((i, 0)) },
        )
        .unwrap()
    }

    #[test]
    fn full_batch_is_freed_after_its_reports() {
        let counters = Arc::new(Counters::default());
        let ob = OpenBatches::new(counters.clone());
        let freed = Arc::new(AtomicUsize::new(0));
        let opaques: Vec<usize> = (0..CAPACITY).map(|_| slot(&ob, &freed, true, 10).1).collect();
        assert_eq!(counters.live_batches(), 1);
        for o in opaques {
            assert_eq!(freed.load(Ordering::SeqCst), 0);
            assert!(unsafe { crate::ledger::release_reported::<Keep>(o as *mut _) });
        }
        assert_eq!(freed.load(Ordering::SeqCst), 1);
        assert_eq!((counters.live_batches(), counters.outstanding()), (0, 0));
    }

    #[test]
    fn idle_batch_closes_on_second_look_and_big_payload_closes_at_once() {
        let counters = Arc::new(Counters::default());
        let ob = OpenBatches::new(counters.clone());
        let freed = Arc::new(AtomicUsize::new(0));
        let (i0, o0) = slot(&ob, &freed, true, 10);
        let (i1, _) = slot(&ob, &freed, false, 0);
        assert_eq!((i0, i1), (0, 1));
        assert!(ob.close_idle()); // touched: kept
        assert_eq!(slot(&ob, &freed, true, MAX_BYTES).0, 2); // closes: too many bytes
        assert_eq!(counters.live_batches(), 1);
        assert_eq!(slot(&ob, &freed, true, 1).0, 0); // a new batch
        assert!(ob.close_idle());
        assert!(!ob.close_idle()); // untouched since the previous look: closed, none left
        assert_eq!(counters.live_batches(), 2);
        assert!(unsafe { crate::ledger::release_reported::<Keep>(o0 as *mut _) });
        assert_eq!(freed.load(Ordering::SeqCst), 0); // slot 2 of the first batch unreported
        ob.close_all();
        assert_eq!(counters.outstanding(), 2);
    }

    #[test]
    fn topic_handles_are_looked_up_once_per_topic_while_cached() {
        let counters = Arc::new(Counters::default());
        let ob = OpenBatches::new(counters.clone());
        let freed = Arc::new(AtomicUsize::new(0));
        let lookups = std::cell::Cell::new(0);
        let produce = |name: &[u8]| {
            ob.with_slot(
                name,
                |cached| Ok::<usize, ()>(cached.unwrap_or_else(|| { lookups.set(lookups.get() + 1); name.len() })),
                || Keep(freed.clone()),
                |rkt, _, _, _| SlotUse::Unused(rkt),
            )
            .unwrap()
        };
        for _ in 0..3 {
            for t in [&b"a"[..], b"bb", b"ccc", b"dddd"] {
                assert_eq!(produce(t), t.len());
            }
        }
        assert_eq!(lookups.get(), 4); // four topics fit
        produce(b"eeeee"); // a fifth evicts the least recent ("a")
        produce(b"dddd");
        assert_eq!(lookups.get(), 5);
        produce(b"a");
        assert_eq!(lookups.get(), 6);
        ob.close_all();
        produce(b"a"); // forgotten at close_all
        assert_eq!(lookups.get(), 7);
        ob.close_all();
    }
}
