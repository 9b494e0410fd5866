//! The batch ledger: who keeps produced payloads alive, and when they are released.
//!
//! Payloads are handed to librdkafka without `RD_KAFKA_MSG_F_COPY`, so their memory must
//! live until the message's delivery report. A [`Batch`] owns that memory (`keep`, e.g.
//! the NIF's process-independent env holding the binary terms) and one [`Slot`] per
//! message. A slot's address is the message's librdkafka opaque. Each slot is released
//! exactly once: by its delivery report, or at once when librdkafka refused the message.
//! When the last slot of a batch is released the batch (and `keep`) is dropped.
//!
//! Invariant checked by the property tests: whatever the order of reports, refusals and
//! purges, every slot is released once, a second release is refused, and the batch is
//! freed exactly when its last slot is released.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Counters of live ledger objects ("outstanding": messages of live batches not yet
/// released), for leak tests and statistics.
///
/// Producing threads only write `created` and the releasing thread (the event pump) only
/// writes `released`; each sits on its own cache line, so a produce call and a delivery
/// report never fight over one line. Live counts are the differences.
#[derive(Debug, Default)]
pub struct Counters {
    created: Tally,
    released: Tally,
    /// Releases refused because the slot was released already (must stay 0).
    pub double_releases: AtomicI64,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Tally {
    batches: AtomicI64,
    messages: AtomicI64,
}

impl Tally {
    fn add(&self, batches: i64, messages: i64) {
        if batches != 0 {
            self.batches.fetch_add(batches, Ordering::Relaxed);
        }
        if messages != 0 {
            self.messages.fetch_add(messages, Ordering::Relaxed);
        }
    }
}

impl Counters {
    /// Batches not yet freed.
    pub fn live_batches(&self) -> i64 {
        // Released first: a release is always preceded by its creation.
        let r = self.released.batches.load(Ordering::SeqCst);
        self.created.batches.load(Ordering::SeqCst) - r
    }

    /// Messages accepted by librdkafka (or being handed to it) and not yet released.
    pub fn outstanding(&self) -> i64 {
        let r = self.released.messages.load(Ordering::SeqCst);
        self.created.messages.load(Ordering::SeqCst) - r
    }
}

/// Process-wide counters (all clients).
pub fn global() -> &'static Counters {
    static C: std::sync::OnceLock<Counters> = std::sync::OnceLock::new();
    C.get_or_init(Counters::default)
}

/// One message's place in its batch. Its address is the librdkafka opaque.
pub struct Slot<K> {
    batch: *const Batch<K>,
    index: u32,
    released: AtomicBool,
}

/// Memory shared by the messages of one produce call.
pub struct Batch<K> {
    keep: K,
    remaining: AtomicUsize,
    /// Inline for small batches (one allocation per produce/4 call, not two). The slots
    /// never move: the batch lives in an Arc from its creation.
    slots: smallvec::SmallVec<[Slot<K>; 1]>,
    counters: Arc<Counters>,
}

// SAFETY: the raw back pointer in each slot only ever points at the batch that contains
// it; K is Send + Sync, the rest are atomics.
unsafe impl<K: Send + Sync> Send for Batch<K> {}
// SAFETY: as above; all shared mutation goes through atomics.
unsafe impl<K: Send + Sync> Sync for Batch<K> {}

/// What the owner of a freshly created batch holds until every slot is handed out.
pub struct BatchHandle<K> {
    batch: *const Batch<K>,
}

// SAFETY: the handle is a counted reference to a Send + Sync batch.
unsafe impl<K: Send + Sync> Send for BatchHandle<K> {}

impl<K> Batch<K> {
    /// The memory this batch keeps alive.
    pub fn keep(&self) -> &K {
        &self.keep
    }

    /// Number of messages in the batch.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the batch has no message.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl<K: Send + Sync> BatchHandle<K> {
    /// Creates a batch of `n` messages keeping `keep` alive. Every slot starts unreleased:
    /// the caller must release each (by report or by [`Self::refuse`]).
    pub fn new(keep: K, n: usize, counters: Arc<Counters>) -> Self {
        assert!(n > 0 && n <= u32::MAX as usize, "batch size out of range");
        let arc = Arc::new_cyclic(|weak| {
            let base = weak.as_ptr();
            Batch {
                keep,
                remaining: AtomicUsize::new(n),
                slots: (0..n)
                    .map(|i| Slot { batch: base, index: i as u32, released: AtomicBool::new(false) })
                    .collect(),
                counters,
            }
        });
        // Counted as outstanding from the start: a report may arrive (and be counted down)
        // before produce returns, and the handle must not be touched after its last slot
        // was handed to librdkafka.
        arc.counters.created.add(1, n as i64);
        global().created.add(1, n as i64);
        BatchHandle { batch: Arc::into_raw(arc) }
    }

    /// The batch.
    pub fn batch(&self) -> &Batch<K> {
        // SAFETY: the batch lives while any slot is unreleased; the handle is only used
        // before the caller hands out or refuses its last slot.
        unsafe { &*self.batch }
    }

    /// The opaque pointer for message `i` (to give to librdkafka).
    pub fn opaque(&self, i: usize) -> *mut std::ffi::c_void {
        &self.batch().slots[i] as *const Slot<K> as *mut std::ffi::c_void
    }

    /// Releases message `i` that librdkafka refused (no report will come for it).
    pub fn refuse(&self, i: usize) {
        self.refuse_range(i..i + 1);
    }

    /// Releases messages `range` (refused, or slots never used), counted once. The handle
    /// must not be used after its last slot was released.
    pub fn refuse_range(&self, range: std::ops::Range<usize>) {
        let mut released = Releases::default();
        for i in range {
            // SAFETY: the slot belongs to a live batch (it is unreleased until this call).
            unsafe { released.release::<K>(self.opaque(i)) };
        }
    }
}

/// Releases the slot behind `opaque` after its delivery report was turned into terms.
/// Returns false (and counts it) when the slot was released already. (The pump releases
/// a round's slots through one [`Releases`].)
///
/// # Safety
/// `opaque` must come from [`BatchHandle::opaque`] of a batch whose this slot has not been
/// released, or been released at most once before (double releases are detected while the
/// batch is still alive).
pub unsafe fn release_reported<K>(opaque: *mut std::ffi::c_void) -> bool {
    Releases::default().release::<K>(opaque)
}

/// Marks the slot behind `opaque` released; `None` (counted as a double release) when it
/// was released already.
unsafe fn claim<'a, K>(opaque: *mut std::ffi::c_void) -> Option<&'a Slot<K>> {
    let slot = &*(opaque as *const Slot<K>);
    if slot.released.swap(true, Ordering::AcqRel) {
        let batch = &*slot.batch;
        batch.counters.double_releases.fetch_add(1, Ordering::Relaxed);
        global().double_releases.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(slot)
}

/// Counts `n` claimed slots off the batch at `batch` (a `Batch<K>`) and frees it when they
/// were its last (returns true then). The batch must not be touched after this call.
unsafe fn settle<K>(batch: *const (), n: usize) -> bool {
    let batch = batch as *const Batch<K>;
    if (*batch).remaining.fetch_sub(n, Ordering::AcqRel) == n {
        drop(Arc::from_raw(batch));
        return true;
    }
    false
}

/// Releases of reported slots counted together: the pump releases every message of a
/// round through one of these, and the counters are updated once per round (dropped or
/// [`Self::count`]) instead of twice per message. Consecutive releases of one batch (a
/// batch's reports mostly come in a row) take one countdown of the batch, not one each:
/// the batch is freed when the run ends (another batch's slot, `count` or drop).
#[derive(Default)]
pub struct Releases {
    counters: Option<Arc<Counters>>,
    batches: i64,
    messages: i64,
    run: Option<Run>,
}

/// The batch of a run of releases, its slots claimed and not yet counted off it, and the
/// countdown for its type ([`settle`]).
type Run = (*const (), usize, unsafe fn(*const (), usize) -> bool);

impl Releases {
    /// [`release_reported`], counted later.
    ///
    /// # Safety
    /// As for [`release_reported`].
    pub unsafe fn release<K>(&mut self, opaque: *mut std::ffi::c_void) -> bool {
        let Some(slot) = claim::<K>(opaque) else { return false };
        let batch = slot.batch as *const ();
        match &mut self.run {
            Some((b, n, _)) if *b == batch => *n += 1,
            _ => {
                self.settle_run();
                // The batch is alive: its claimed slot is not counted off yet.
                let counters = &(*slot.batch).counters;
                if !self.counters.as_ref().is_some_and(|c| Arc::ptr_eq(c, counters)) {
                    self.count();
                    self.counters = Some(counters.clone());
                }
                self.run = Some((batch, 1, settle::<K>));
            }
        }
        self.messages += 1;
        true
    }

    fn settle_run(&mut self) {
        if let Some((batch, n, settle)) = self.run.take() {
            // SAFETY: the run's slots were claimed by this Releases and not counted off.
            if unsafe { settle(batch, n) } {
                self.batches += 1;
            }
        }
    }

    /// Counts off the current run (freeing its batch if they were its last) and adds what
    /// was released so far to the counters.
    pub fn count(&mut self) {
        self.settle_run();
        if let Some(c) = &self.counters {
            c.released.add(self.batches, self.messages);
            global().released.add(self.batches, self.messages);
        }
        self.batches = 0;
        self.messages = 0;
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        self.count();
    }
}

/// A view of the message behind an opaque: its batch and index.
///
/// # Safety
/// The slot must be unreleased (its batch alive) for the lifetime `'a`.
pub unsafe fn lookup<'a, K>(opaque: *mut std::ffi::c_void) -> (&'a Batch<K>, usize) {
    let slot = &*(opaque as *const Slot<K>);
    (&*slot.batch, slot.index as usize)
}

/// A keep that counts its drops (tests of the ledger and of open batches).
#[cfg(test)]
pub(crate) struct CountingKeep(pub(crate) Arc<std::sync::atomic::AtomicUsize>);

#[cfg(test)]
impl Drop for CountingKeep {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicUsize;

    use super::CountingKeep as Keep;

    proptest! {
        #[test]
        fn every_slot_released_once_batch_freed_at_last(
            n in 1usize..200,
            refused in proptest::collection::vec(any::<bool>(), 200),
            order in Just(()).prop_perturb(|_, mut rng| {
                let mut v: Vec<usize> = (0..200).collect();
                for i in (1..v.len()).rev() { let j = (rng.next_u32() as usize) % (i + 1); v.swap(i, j); }
                v
            }),
            dup in proptest::collection::vec(0usize..200, 0..5),
        ) {
            let freed = Arc::new(AtomicUsize::new(0));
            let counters = Arc::new(Counters::default());
            let h = BatchHandle::new(Keep(freed.clone()), n, counters.clone());
            let opaques: Vec<_> = (0..n).map(|i| h.opaque(i) as usize).collect();
            (0..n).filter(|&i| refused[i]).for_each(|i| h.refuse(i));
            let mut reported = 0;
            let accepted: Vec<usize> = order.iter().copied().filter(|&i| i < n && !refused[i]).collect();
            for (k, &i) in accepted.iter().enumerate() {
                prop_assert_eq!(freed.load(Ordering::SeqCst), 0);
                // A duplicate report while the batch is alive is refused, never a double free.
                if k + 1 < accepted.len() {
                    for &d in &dup {
                        if d < n && refused[d] {
                            let again = unsafe { release_reported::<Keep>(opaques[d] as *mut _) };
                            prop_assert!(!again, "double release accepted");
                        }
                    }
                }
                let first = unsafe { release_reported::<Keep>(opaques[i] as *mut _) };
                prop_assert!(first, "first release refused");
                reported += 1;
            }
            prop_assert_eq!(freed.load(Ordering::SeqCst), 1);
            prop_assert_eq!(counters.live_batches(), 0);
            prop_assert_eq!(counters.outstanding(), 0);
            prop_assert_eq!(reported, accepted.len());
        }
    }

    #[test]
    fn lookup_finds_batch_and_index() {
        let freed = Arc::new(AtomicUsize::new(0));
        let h = BatchHandle::new(Keep(freed.clone()), 3, Arc::new(Counters::default()));
        let (b, i) = unsafe { lookup::<Keep>(h.opaque(2)) };
        assert_eq!((b.len(), i), (3, 2));
        for i in 0..3 { h.refuse(i) }
        assert_eq!(freed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn interleaved_batches_through_one_releases_are_each_freed_once() {
        let freed = Arc::new(AtomicUsize::new(0));
        let c = Arc::new(Counters::default());
        let ha = BatchHandle::new(Keep(freed.clone()), 3, c.clone());
        let hb = BatchHandle::new(Keep(freed.clone()), 2, c.clone());
        let order = [ha.opaque(0), ha.opaque(1), hb.opaque(0), ha.opaque(2), hb.opaque(1)];
        let mut r = Releases::default();
        for o in order {
            assert!(unsafe { r.release::<Keep>(o) });
        }
        // a's last slot ended its run when b's came: a is freed, b (the open run) is not.
        assert_eq!(freed.load(Ordering::SeqCst), 1);
        drop(r);
        assert_eq!(freed.load(Ordering::SeqCst), 2);
        assert_eq!((c.outstanding(), c.live_batches(), c.double_releases.load(Ordering::SeqCst)), (0, 0, 0));
    }

    #[test]
    fn releases_count_once_dropped_and_refuse_doubles() {
        let freed = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
        let ha = BatchHandle::new(Keep(freed.clone()), 2, a.clone());
        let hb = BatchHandle::new(Keep(freed.clone()), 1, b.clone());
        let (a0, a1, b0) = (ha.opaque(0), ha.opaque(1), hb.opaque(0));
        let mut r = Releases::default();
        unsafe {
            assert!(r.release::<Keep>(a0));
            assert!(!r.release::<Keep>(a0));
            assert!(r.release::<Keep>(b0)); // another client's counters: a's are counted
        }
        assert_eq!((a.outstanding(), a.double_releases.load(Ordering::SeqCst)), (1, 1));
        assert_eq!((b.outstanding(), b.live_batches()), (1, 1)); // not counted yet
        // b's batch is the open run: counted off (and freed) when the run ends.
        assert_eq!(freed.load(Ordering::SeqCst), 0);
        unsafe { assert!(r.release::<Keep>(a1)) };
        assert_eq!(freed.load(Ordering::SeqCst), 1);
        drop(r);
        assert_eq!((a.outstanding(), a.live_batches(), b.outstanding(), b.live_batches()), (0, 0, 0, 0));
        assert_eq!(freed.load(Ordering::SeqCst), 2);
    }
}
