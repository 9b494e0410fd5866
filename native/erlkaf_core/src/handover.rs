//! A round of items lent by one thread (the lender: the event pump) to another (the
//! taker: a BEAM process, through NIF calls), which takes them a slice at a time while the
//! lender waits.
//!
//! The NIF lends each round of delivery reports to the client's producer process, which
//! builds their terms on its own heap instead of receiving terms built on the pump (see
//! erlkaf_nif's sink.rs for why). The items are borrowed, not moved: the lender does not go
//! on until the round is out of the slot, so the taker only ever reads live items.
//!
//! The lender takes the round back, and does the rest itself, when the taker has not
//! finished within a bound (a busy or stuck taker never holds the lender longer), or when
//! the handover is closed (the taker is gone). Each round has an id: a taker that asks for
//! a round that was taken back (or replaced by the next one) gets nothing, so it never
//! takes items out of order with what the lender did meanwhile.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where the lender leaves a round and waits for the taker.
pub struct Handover<T> {
    slot: Mutex<Slot<T>>,
    taken: Condvar,
}

struct Slot<T> {
    /// The last round's id (ids start at 1).
    id: u64,
    /// The round lent; `None` when the lender waits for none.
    round: Option<Lent<T>>,
    /// No more rounds are lent (the taker is gone).
    closed: bool,
}

/// A round's items, borrowed from the lender while it waits.
struct Lent<T> {
    items: *const [T],
    /// The first item not taken.
    next: usize,
}

// SAFETY: the items are only read under the slot's lock, from `lend` until the lender
// takes the round out of the slot, and `lend` does not return before that.
unsafe impl<T: Sync> Send for Lent<T> {}

impl<T: Sync> Default for Handover<T> {
    fn default() -> Self {
        Handover { slot: Mutex::new(Slot { id: 0, round: None, closed: false }), taken: Condvar::new() }
    }
}

impl<T: Sync> Handover<T> {
    /// An open handover with no round.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The taker is gone: a waiting lender wakes up and takes its round back, and no
    /// round is lent from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.taken.notify_all();
    }

    /// Lends `items` (the lender's thread): `notify` gets the round's id (tell the taker),
    /// then waits until the taker took them all, the handover was closed, or `within`
    /// passed. Returns the index of the first item not taken (`items.len()`: all taken),
    /// which the lender handles itself. When closed, returns 0 at once.
    pub fn lend(&self, items: &[T], within: Duration, notify: impl FnOnce(u64)) -> usize {
        let mut slot = self.lock();
        if slot.closed || items.is_empty() {
            return 0;
        }
        slot.id += 1;
        slot.round = Some(Lent { items, next: 0 });
        notify(slot.id);
        let deadline = Instant::now() + within;
        loop {
            let now = Instant::now();
            let all_taken = slot.round.as_ref().is_none_or(|r| r.next == items.len());
            if all_taken || slot.closed || now >= deadline {
                break;
            }
            slot = self.taken.wait_timeout(slot, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        slot.round.take().map_or(items.len(), |r| r.next)
    }

    /// Takes from round `id` (the taker's thread): `f` gets the items and the index of the
    /// first not taken, and returns how many it took from there (at most the rest) with
    /// its result. Returns that result and the number of items left, or `None` when round
    /// `id` is not lent any more (all taken, taken back, or a later round is lent).
    pub fn take<R>(&self, id: u64, f: impl FnOnce(&[T], usize) -> (usize, R)) -> Option<(R, usize)> {
        let mut slot = self.lock();
        if slot.id != id {
            return None;
        }
        let round = slot.round.as_mut()?;
        // SAFETY: see Lent: the lender waits while the round is in the slot.
        let items = unsafe { &*round.items };
        if round.next == items.len() {
            return None;
        }
        let (n, r) = f(items, round.next);
        round.next += n.min(items.len() - round.next);
        let left = items.len() - round.next;
        if left == 0 {
            self.taken.notify_all();
        }
        Some((r, left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(30);

    /// A taker thread that takes `slice` items per call from each round it is told of,
    /// recording them, until told 0.
    fn taker(h: Arc<Handover<u32>>, slice: usize) -> (std::sync::mpsc::Sender<u64>, std::thread::JoinHandle<Vec<u32>>) {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while let Ok(id) = rx.recv() {
                if id == 0 {
                    break;
                }
                while let Some((_, _left)) = h.take(id, |items, next| {
                    let end = (next + slice).min(items.len());
                    seen.extend_from_slice(&items[next..end]);
                    (end - next, ())
                }) {}
            }
            seen
        });
        (tx, t)
    }

    #[test]
    fn the_taker_takes_every_item_once_in_order_in_slices() {
        let h = Arc::new(Handover::new());
        let (tx, t) = taker(h.clone(), 3);
        let mut all = Vec::new();
        for round in 0..50u32 {
            let items: Vec<u32> = (round * 100..round * 100 + 1 + round % 7).collect();
            let from = h.lend(&items, LONG, |id| tx.send(id).unwrap());
            assert_eq!(from, items.len());
            all.extend(items);
        }
        tx.send(0).unwrap();
        assert_eq!(t.join().unwrap(), all);
    }

    #[test]
    fn a_slow_taker_leaves_the_rest_to_the_lender_and_gets_nothing_more() {
        let h: Handover<u32> = Handover::new();
        let items: Vec<u32> = (0..10).collect();
        let ids = AtomicU64::new(0);
        // Nobody takes: the lender gets everything back after the bound.
        let t0 = Instant::now();
        assert_eq!(h.lend(&items, Duration::from_millis(20), |id| ids.store(id, Ordering::Relaxed)), 0);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        // The round is gone for a taker that comes late.
        let id = ids.load(Ordering::Relaxed);
        assert!(h.take(id, |_, _| (1, ())).is_none());
        // A taker that took part of a round: the lender goes on from there.
        let h = Arc::new(Handover::new());
        let h2 = h.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let id = rx.recv().unwrap();
            let got = h2.take(id, |items, next| (4, items[next..next + 4].to_vec()));
            // The round outlives a slow taker's bound: later takes get nothing.
            std::thread::sleep(Duration::from_millis(100));
            (got, h2.take(id, |_, _| (1, ())))
        });
        assert_eq!(h.lend(&items, Duration::from_millis(50), |id| tx.send(id).unwrap()), 4);
        let (got, late) = t.join().unwrap();
        assert_eq!(got, Some((vec![0, 1, 2, 3], 6)));
        assert!(late.is_none());
    }

    #[test]
    fn closing_wakes_the_lender_and_stops_lending() {
        let h = Arc::new(Handover::new());
        let items: Vec<u32> = (0..5).collect();
        let h2 = h.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let id = rx.recv().unwrap();
            h2.take(id, |_, _| (2, ())).unwrap();
            h2.close();
        });
        let t0 = Instant::now();
        assert_eq!(h.lend(&items, LONG, |id| tx.send(id).unwrap()), 2);
        assert!(t0.elapsed() < LONG);
        t.join().unwrap();
        // Closed: nothing is lent, the taker is not told.
        assert_eq!(h.lend(&items, LONG, |_| panic!("told a gone taker")), 0);
    }

    #[test]
    fn only_the_lent_round_can_be_taken() {
        let h = Arc::new(Handover::new());
        let (tx, t) = taker(h.clone(), 100);
        let items: Vec<u32> = vec![7];
        let mut first = 0;
        assert_eq!(h.lend(&items, LONG, |id| { first = id; tx.send(id).unwrap() }), 1);
        assert_eq!(h.lend(&items, LONG, |id| tx.send(id).unwrap()), 1);
        tx.send(0).unwrap();
        assert_eq!(t.join().unwrap(), vec![7, 7]);
        // Neither an old nor an unknown id finds anything.
        assert!(h.take(first, |_, _| (1, ())).is_none());
        assert!(h.take(99, |_, _| (1, ())).is_none());
        // An empty round is not lent.
        assert_eq!(h.lend(&[], LONG, |_| panic!("an empty round")), 0);
    }

    #[test]
    fn a_take_of_more_than_is_left_takes_the_rest() {
        let h = Arc::new(Handover::new());
        let h2 = h.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let id = rx.recv().unwrap();
            h2.take(id, |items, _| (items.len() + 10, ()))
        });
        assert_eq!(h.lend(&[1u32, 2, 3], LONG, |id| tx.send(id).unwrap()), 3);
        assert_eq!(t.join().unwrap(), Some(((), 0)));
    }
}
