//! Where produced messages go: librdkafka's partitioners, except that erlkaf picks the
//! sticky partition of messages without a key, so that a run of them (a `produce_batch`
//! call) takes one decision instead of one per message.
//!
//! librdkafka sends a message without a key to its topic's sticky partition: one chosen at
//! random among the available ones and kept for `sticky.partitioning.linger.ms` (by
//! default twice `linger.ms`), so that messages produced together fill one batch. It
//! decides per message: is the sticky partition still available (lookups under the
//! topic's, the partition's and the broker's locks), has the interval passed (a clock
//! read), then a second lookup and a second clock read to queue the message. In a profile
//! of `rd_kafka_produce_batch` of keyless messages that is about half of the producing
//! thread's time; to one given partition the same call ran 1.5-2x as many messages per
//! second.
//!
//! So erlkaf turns librdkafka's sticky logic off (it gives librdkafka
//! `sticky.partitioning.linger.ms=0`, see [`take_over`]) and installs on every topic a
//! partitioner callback that does the same thing: the same availability test, the same
//! interval from the same setting, librdkafka's own random choice. The callback also
//! notes on the calling thread the partition it chose. [`produce_batch`] sends the first
//! keyless message of a run through the partitioner and the rest of the run straight to
//! that partition: the decision librdkafka would have taken for each of them within the
//! same microseconds, taken once. Messages with a key go to the topic's `partitioner`
//! (`consistent_random` unless configured), called as librdkafka calls it.
//!
//! (One figure of librdkafka's statistics changes: a partition's `msgs`, counted by
//! librdkafka's partitioner only, leaves out the messages of a run after its first.)

use crate::config::Properties;
use rdkafka_sys as rd;
use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

/// librdkafka's partitioner signature.
type PartitionFn = unsafe extern "C" fn(*const rd::rd_kafka_topic_t, *const c_void, usize, i32, *mut c_void, *mut c_void) -> i32;

/// `RD_KAFKA_PARTITION_UA`: the partitioner decides.
const UA: i32 = -1;
const STICKY_LINGER: &str = "sticky.partitioning.linger.ms";
/// Marks a topic opaque as a [`Partitioner`] (only erlkaf sets topic opaques; this keeps
/// [`produce_batch`] safe on a topic made otherwise).
const MAGIC: u64 = 0x6572_6c6b_6166_7074;

thread_local! {
    /// The sticky partition the callback last chose on this thread (-1: none since reset).
    static CHOSEN: Cell<i32> = const { Cell::new(-1) };
}

/// One topic's partitioner state; the topic conf's opaque points to it, so it must live
/// until the client is destroyed (see [`crate::client::Kafka::keep_until_destroyed`]).
pub struct Partitioner {
    magic: u64,
    /// The partitioner of messages with a key (and of keyless ones when not sticky).
    keyed: PartitionFn,
    /// Whether keyless messages take the sticky partition.
    sticky: bool,
    /// Whether an empty (not null) key does too (librdkafka: under `consistent_random`).
    empty_key_sticky: bool,
    linger_us: i64,
    partition: AtomicI32,
    /// Monotonic time (us) of the last choice; 0: none yet.
    chosen_at: AtomicI64,
}

/// Takes the sticky partitioning of a producer over from librdkafka: returns the interval
/// librdkafka would have used, in microseconds (0: no sticky partition), and sets its own
/// to 0 in `props`. A value librdkafka refuses is left for it to report.
pub fn take_over(props: &mut Properties) -> i64 {
    let ms = match props.get(STICKY_LINGER) {
        Some(v) => v.trim().parse::<i64>().unwrap_or(0),
        None => {
            // librdkafka: twice linger.ms (an alias of queue.buffering.max.ms; the last
            // one given wins), at most 900 s.
            let linger = props.0.iter().rev().find(|(k, _)| k == "linger.ms" || k == "queue.buffering.max.ms");
            let linger: f64 = linger.and_then(|(_, v)| v.trim().parse().ok()).unwrap_or(5.0);
            ((2.0 * linger) as i64).min(900_000)
        }
    };
    // (After the application's value: librdkafka still checks that one first.)
    props.set(STICKY_LINGER, "0");
    ms.max(0) * 1000
}

impl Partitioner {
    /// Installs erlkaf's partitioner on `conf` (a topic conf not yet given to librdkafka),
    /// with the `partitioner` it names for messages with keys. The returned state must
    /// outlive the client.
    ///
    /// # Safety
    /// `conf` must be a live topic conf.
    pub unsafe fn install(conf: *mut rd::rd_kafka_topic_conf_t, linger_us: i64) -> Box<Partitioner> {
        let name = partitioner_name(conf);
        // librdkafka's rule (rdkafka_topic.c): the hashing partitioners without `_random`
        // send keyless messages to the hash of no key, the others stick.
        let hashing = matches!(name.as_str(), "consistent" | "murmur2" | "fnv1a");
        let p = Box::new(Partitioner {
            magic: MAGIC,
            keyed: by_name(&name),
            sticky: linger_us > 0 && !hashing,
            empty_key_sticky: matches!(name.as_str(), "consistent_random" | ""),
            linger_us,
            partition: AtomicI32::new(0),
            chosen_at: AtomicI64::new(0),
        });
        // SAFETY: live conf (caller); the opaque outlives the topic (caller).
        unsafe {
            rd::rd_kafka_topic_conf_set_partitioner_cb(conf, Some(partition));
            rd::rd_kafka_topic_conf_set_opaque(conf, &*p as *const Partitioner as *mut c_void);
        }
        p
    }

    /// A topic `name` of `rk` with the client's default topic configuration and this
    /// partitioner installed (for raw producers: the baseline, the benches). The returned
    /// state must outlive the client; the topic is null when librdkafka refuses it.
    ///
    /// # Safety
    /// `rk` must be a live producer handle.
    pub unsafe fn default_topic(rk: *mut rd::rd_kafka_t, name: &std::ffi::CStr, linger_us: i64) -> (*mut rd::rd_kafka_topic_t, Box<Partitioner>) {
        // SAFETY: live handle (caller); the conf copy is ours until rd_kafka_topic_new takes
        // it (also on failure); librdkafka's dup never returns null.
        unsafe {
            let conf = rd::rd_kafka_default_topic_conf_dup(rk);
            let p = Partitioner::install(conf, linger_us);
            (rd::rd_kafka_topic_new(rk, name.as_ptr(), conf), p)
        }
    }

    /// Whether a message with this key takes the sticky partition.
    fn takes_sticky(&self, key: *const c_void, key_len: usize) -> bool {
        self.sticky && (key.is_null() || (key_len == 0 && self.empty_key_sticky))
    }

    /// librdkafka's `rd_kafka_msg_sticky_partition`: a new random partition when the
    /// current one is unavailable or older than the interval.
    ///
    /// # Safety
    /// Only from the partitioner callback (librdkafka holds the topic's lock).
    unsafe fn sticky_partition(&self, rkt: *const rd::rd_kafka_topic_t, partition_cnt: i32) -> i32 {
        let now = monotonic_us();
        let current = self.partition.load(Ordering::Relaxed);
        let at = self.chosen_at.load(Ordering::Relaxed);
        // SAFETY: called from a partitioner, as the function requires.
        let available = unsafe { rd::rd_kafka_topic_partition_available(rkt, current) } != 0;
        if available && at != 0 && now - at <= self.linger_us {
            return current;
        }
        // (Racing threads may both choose: librdkafka's own state races the same way
        // under its topic read lock; either choice is a valid sticky partition.)
        self.chosen_at.store(now, Ordering::Relaxed);
        // SAFETY: as above; the random partitioner ignores key and opaques.
        let p = unsafe { rd::rd_kafka_msg_partitioner_random(rkt, std::ptr::null(), 0, partition_cnt, std::ptr::null_mut(), std::ptr::null_mut()) };
        self.partition.store(p, Ordering::Relaxed);
        p
    }
}

/// The callback librdkafka calls for every message produced to the partitioner.
unsafe extern "C" fn partition(
    rkt: *const rd::rd_kafka_topic_t,
    key: *const c_void,
    key_len: usize,
    partition_cnt: i32,
    opaque: *mut c_void,
    msg_opaque: *mut c_void,
) -> i32 {
    // SAFETY: the opaque installed with this callback, alive until the client is gone.
    let p = unsafe { &*(opaque as *const Partitioner) };
    if p.takes_sticky(key, key_len) {
        // SAFETY: we are the partitioner.
        let chosen = unsafe { p.sticky_partition(rkt, partition_cnt) };
        CHOSEN.set(chosen);
        chosen
    } else {
        // SAFETY: librdkafka's arguments, passed on.
        unsafe { (p.keyed)(rkt, key, key_len, partition_cnt, opaque, msg_opaque) }
    }
}

/// `rd_kafka_produce_batch` of `msgs` to `partition` of `rkt` (`-1`: the partitioner),
/// keyless messages that take the sticky partition sent as the module doc says. Returns
/// how many were accepted. Each message's `err` tells whether it was; after a refusal
/// nothing more is offered to librdkafka, and the messages not offered get the refusal's
/// error (as librdkafka gives a full queue's to the rest of a call).
///
/// # Safety
/// As `rd_kafka_produce_batch`: a live topic; payloads valid until their reports.
pub unsafe fn produce_batch(rkt: *mut rd::rd_kafka_topic_t, partition: i32, msgs: &mut [rd::rd_kafka_message_t]) -> usize {
    let offer = |part: i32, ms: &mut [rd::rd_kafka_message_t]| -> usize {
        // SAFETY: the caller's contract; ms is a valid array of ms.len() messages.
        unsafe { rd::rd_kafka_produce_batch(rkt, part, 0, ms.as_mut_ptr(), ms.len() as i32) }.max(0) as usize
    };
    let p = if partition == UA && msgs.len() > 1 {
        // SAFETY: live topic; its opaque is null or set by us (MAGIC checked before use).
        let o = unsafe { rd::rd_kafka_topic_opaque(rkt) } as *const Partitioner;
        // SAFETY: a non-null opaque of a topic is a Partitioner alive as long as the client.
        unsafe { o.as_ref() }.filter(|p| p.magic == MAGIC && p.sticky)
    } else {
        None
    };
    let Some(p) = p else { return offer(partition, msgs) };
    let takes = |m: &rd::rd_kafka_message_t| p.takes_sticky(m.key, m.key_len);
    let (mut good, mut i) = (0, 0);
    while i < msgs.len() {
        // The stretch of messages that all take the sticky partition, or all do not.
        let sticky = takes(&msgs[i]);
        let end = msgs[i..].iter().position(|m| takes(m) != sticky).map_or(msgs.len(), |n| i + n);
        let (accepted, offered) = if sticky && end - i > 1 {
            CHOSEN.set(-1);
            if offer(UA, &mut msgs[i..i + 1]) == 1 {
                // None chosen: the topic's partitions are not known yet (librdkafka holds
                // the message for its partitioner); the others go the same way.
                let to = CHOSEN.get();
                (1 + offer(if to >= 0 { to } else { UA }, &mut msgs[i + 1..end]), end - i)
            } else {
                (0, 1)
            }
        } else {
            (offer(partition, &mut msgs[i..end]), end - i)
        };
        good += accepted;
        if accepted < offered {
            let ok = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
            let err = msgs[i..i + offered].iter().map(|m| m.err).find(|&e| e != ok).unwrap_or(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FAIL);
            msgs[i + offered..].iter_mut().for_each(|m| m.err = err);
            return good;
        }
        i = end;
    }
    good
}

/// The `partitioner` property of `conf` (empty when unset: librdkafka's default).
///
/// # Safety
/// `conf` must be a live topic conf.
unsafe fn partitioner_name(conf: *mut rd::rd_kafka_topic_conf_t) -> String {
    let name = CString::new("partitioner").expect("no NUL");
    let mut buf = [0 as c_char; 64];
    let mut size = buf.len();
    // SAFETY: live conf (caller); buf holds size bytes.
    let r = unsafe { rd::rd_kafka_topic_conf_get(conf, name.as_ptr(), buf.as_mut_ptr(), &mut size) };
    if r == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
        // SAFETY: librdkafka wrote a NUL-terminated string into buf.
        unsafe { crate::native::cstr_lossy(buf.as_ptr()) }
    } else {
        String::new()
    }
}

/// librdkafka's partitioner of that name (its validator accepts no other names; unset is
/// `consistent_random`).
fn by_name(name: &str) -> PartitionFn {
    match name {
        "random" => rd::rd_kafka_msg_partitioner_random,
        "consistent" => rd::rd_kafka_msg_partitioner_consistent,
        "murmur2" => rd::rd_kafka_msg_partitioner_murmur2,
        "murmur2_random" => rd::rd_kafka_msg_partitioner_murmur2_random,
        "fnv1a" => rd::rd_kafka_msg_partitioner_fnv1a,
        "fnv1a_random" => rd::rd_kafka_msg_partitioner_fnv1a_random,
        _ => rd::rd_kafka_msg_partitioner_consistent_random,
    }
}

/// CLOCK_MONOTONIC in microseconds, librdkafka's clock.
fn monotonic_us() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(pairs: &[(&str, &str)]) -> (i64, Option<String>) {
        let mut p = Properties::new(pairs.iter().copied());
        let us = take_over(&mut p);
        (us, p.get(STICKY_LINGER).map(str::to_string))
    }

    #[test]
    fn the_interval_is_librdkafkas_and_librdkafka_gets_zero() {
        let zero = Some("0".to_string());
        assert_eq!(interval(&[]), (10_000, zero.clone()), "twice the default linger of 5 ms");
        assert_eq!(interval(&[("linger.ms", "1")]), (2_000, zero.clone()));
        assert_eq!(interval(&[("linger.ms", "0.6")]), (1_000, zero.clone()), "truncated as librdkafka does");
        assert_eq!(interval(&[("linger.ms", "1"), ("queue.buffering.max.ms", "7")]), (14_000, zero.clone()), "the last alias wins");
        assert_eq!(interval(&[("linger.ms", "600000")]), (900_000_000, zero.clone()), "at most 900 s");
        assert_eq!(interval(&[("sticky.partitioning.linger.ms", "25"), ("linger.ms", "1")]), (25_000, zero.clone()));
        assert_eq!(interval(&[("sticky.partitioning.linger.ms", "0")]), (0, zero.clone()), "off");
        // A value librdkafka refuses stays in the properties, before ours, for it to report.
        let mut p = Properties::new([("sticky.partitioning.linger.ms", "soon")]);
        take_over(&mut p);
        assert!(matches!(p.to_conf(), Err(crate::Error::InvalidConfig(k, _)) if k == STICKY_LINGER));
    }
}
