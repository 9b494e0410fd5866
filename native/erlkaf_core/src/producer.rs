//! The producer: payloads by reference, one report per accepted message.
//!
//! [`Producer::new`] creates the `rd_kafka_t` with the event API (DR, ERROR, LOG, STATS on
//! the main queue) and starts its [`Pump`](crate::pump). [`Shared::produce`] hands messages
//! to librdkafka without `RD_KAFKA_MSG_F_COPY`: the payload memory belongs to the batch's
//! `keep` and is released by the ledger when the last report of the batch was delivered.
//!
//! `delivery.report.only.error` is forced to `false`: with it librdkafka destroys successful
//! messages without a report, and their payloads would never be released. Filtering
//! successes is the sink's job.
//!
//! Teardown ([`Producer::shutdown`]) blocks and runs on a thread of its own: stop new
//! produce calls, flush up to a timeout, purge what is left (each purged message gets an
//! error report), wait for those reports, stop the pump, then let the reaper destroy the
//! handle.

use crate::client::{Kafka, Kind};
use crate::config::Properties;
use crate::error::{Error, ErrorCode, Result};
use crate::ledger::{BatchHandle, Counters};
use crate::message::Header;
use crate::native::{NativeHeaders, NativePtr, NativeQueue, NativeTopic};
use crate::open::{OpenBatches, SlotUse};
use crate::pump::{Pump, Sink};
use parking_lot::{Mutex, RwLock};
use rdkafka_sys as rd;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ffi::CString;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One message to produce. `value` must stay valid as long as the batch's `keep` lives.
#[derive(Clone, Copy, Debug)]
pub struct OutMessage<'a> {
    /// Topic name.
    pub topic: &'a [u8],
    /// Partition, or -1 (`RD_KAFKA_PARTITION_UA`) for the partitioner.
    pub partition: i32,
    /// Key; `None` is a null key. Copied by librdkafka.
    pub key: Option<&'a [u8]>,
    /// Value; `None` is a null value (tombstone). Passed by reference.
    pub value: Option<&'a [u8]>,
    /// Headers in order; a `None` value is a null header value. Copied by librdkafka.
    pub headers: &'a [Header<'a>],
    /// Milliseconds since the epoch; 0 lets librdkafka stamp the create time.
    pub timestamp: i64,
}

/// What happened to a batch given to [`Shared::produce`].
#[derive(Debug, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// Messages `0..accepted` were accepted and will each get exactly one report.
    pub accepted: usize,
    /// When set, message `accepted` was refused with this error and later messages were
    /// not attempted. No report comes for refused or unattempted messages.
    pub error: Option<Error>,
}

/// Why [`Shared::produce_open`] did not produce.
#[derive(Debug)]
pub enum OpenError<E> {
    /// The fill function failed.
    Fill(E),
    /// librdkafka (or the client's state) refused the message.
    Kafka(Error),
}

/// What teardown did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The flush finished within its timeout (nothing had to be purged).
    pub flushed: bool,
    /// Messages still queued or in flight when the flush gave up (purged, reported as errors).
    pub purged: i64,
    /// Messages without a report when the pump stopped (0 unless librdkafka misbehaved).
    pub unreported: i64,
}

/// The part of a producer that produce calls use from any thread.
pub struct Shared<K> {
    state: RwLock<State>,
    /// Set when teardown starts, before the open batches are closed: read by
    /// [`Shared::produce_open`] under its shard's lock instead of taking `state`.
    closing: AtomicBool,
    counters: Arc<Counters>,
    open: Arc<OpenBatches<K>>,
    _keep: PhantomData<fn() -> K>,
}

/// `closed` turns true when teardown starts (produce calls hold the read lock while they
/// produce, so none runs past that point); `native` is released once teardown is done,
/// without waiting for the last reference to the producer to go.
struct State {
    closed: bool,
    native: Option<Native>,
}

struct Native {
    // Field order is drop order: topics and queue must go before the rd_kafka_t.
    topics: RwLock<HashMap<Box<[u8]>, NativeTopic, BuildHasherDefault<Fnv>>>,
    /// Owned here; the pump polls it through a raw pointer until it is joined.
    #[allow(dead_code)]
    queue: NativeQueue,
    kafka: Kafka,
    /// Key plus value bytes below which librdkafka cannot refuse a message as too large
    /// (message.max.bytes less a margin over the record's overhead): such messages may go
    /// through `rd_kafka_produce_batch`.
    batch_max_bytes: usize,
    /// The sticky partition's interval (see [`crate::partitioner`]).
    sticky_linger_us: i64,
}

/// The owner of a producer: dropping it without [`Producer::shutdown`] tears it down on a
/// reaper thread (no flush, purge with error reports).
pub struct Producer<K: Send + Sync + 'static> {
    shared: Arc<Shared<K>>,
    pump: Mutex<Option<Pump<K>>>,
}

impl<K: Send + Sync + 'static> Producer<K> {
    /// Creates the client and starts its pump.
    pub fn new(name: &str, props: &Properties, sink: Box<dyn Sink<K>>) -> Result<Producer<K>> {
        let mut props = props.clone();
        props.set("log.queue", "true");
        props.set("delivery.report.only.error", "false");
        let sticky_linger_us = crate::partitioner::take_over(&mut props);
        let oauth = props.oauth_refresh();
        let kafka = Kafka::new(Kind::Producer, &props, |conf| {
            let mut events = rd::RD_KAFKA_EVENT_DR | rd::RD_KAFKA_EVENT_ERROR | rd::RD_KAFKA_EVENT_LOG
                | rd::RD_KAFKA_EVENT_STATS;
            if oauth {
                events |= rd::RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH;
            }
            // SAFETY: conf is live and not yet handed to rd_kafka_new.
            unsafe { rd::rd_kafka_conf_set_events(conf, events) };
        })?;
        // SAFETY: live handle; NULL forwards logs to the main queue.
        unsafe { rd::rd_kafka_set_log_queue(kafka.ptr(), std::ptr::null_mut()) };
        // SAFETY: live handle; the main queue reference is ours to destroy.
        let queue = unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_get_main(kafka.ptr())) }
            .ok_or_else(|| Error::ClientCreation("no main queue".into()))?;
        let counters = Arc::new(Counters::default());
        let open = Arc::new(OpenBatches::new(counters.clone()));
        let idle = open.clone();
        let tick: Box<dyn FnMut() -> bool + Send> = Box::new(move || idle.close_idle());
        let pump = Pump::start(format!("erlkaf-{name}"), &queue, sink, Some(tick))
            .map_err(|e| Error::ClientCreation(format!("cannot start the pump thread: {e}")))?;
        // librdkafka's own bound for a record's framing is under 64 bytes.
        let max_msg: usize = props.get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let batch_max_bytes = max_msg.saturating_sub(1024);
        let native = Native { topics: RwLock::new(HashMap::default()), queue, kafka, batch_max_bytes, sticky_linger_us };
        let shared = Arc::new(Shared {
            state: RwLock::new(State { closed: false, native: Some(native) }),
            closing: AtomicBool::new(false),
            counters,
            open,
            _keep: PhantomData,
        });
        Ok(Producer { shared, pump: Mutex::new(Some(pump)) })
    }

    /// The handle produce calls use.
    pub fn shared(&self) -> &Arc<Shared<K>> {
        &self.shared
    }

    /// Blocking teardown (see the module doc). Call it on a thread of your own; a second
    /// call returns `None`.
    pub fn shutdown(&self, flush_timeout: Duration) -> Option<ShutdownReport> {
        let pump = self.pump.lock().take()?;
        Some(teardown(&self.shared, pump, flush_timeout))
    }
}

impl<K: Send + Sync + 'static> Drop for Producer<K> {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.get_mut().take() {
            let shared = self.shared.clone();
            crate::reaper::run("producer", move || {
                teardown(&shared, pump, Duration::ZERO);
            });
        }
    }
}

fn teardown<K: Send + Sync + 'static>(shared: &Shared<K>, pump: Pump<K>, flush_timeout: Duration) -> ShutdownReport {
    // No produce call runs past this point (they hold the read lock while producing).
    shared.state.write().closed = true;
    // No produce_open runs past this point either: it checks `closing` under its shard's
    // lock, which close_all takes.
    shared.closing.store(true, Ordering::Release);
    shared.open.close_all();
    let mut report = ShutdownReport { flushed: shared.flush(flush_timeout).is_ok(), ..Default::default() };
    if !report.flushed {
        let st = shared.state.read();
        if let Some(n) = st.native.as_ref() {
            report.purged = n.kafka.outq_len() as i64;
            let flags = rd::RD_KAFKA_PURGE_F_QUEUE | rd::RD_KAFKA_PURGE_F_INFLIGHT;
            // SAFETY: live handle; we are not on a librdkafka thread.
            unsafe { rd::rd_kafka_purge(n.kafka.ptr(), flags) };
        }
        drop(st);
        // Purged messages get their (error) reports through the pump.
        let _ = shared.flush(Duration::from_secs(10));
    }
    let sink = pump.stop();
    report.unreported = shared.counters.outstanding();
    // The pump is gone: release topics, queue and client now (destroy on the reaper),
    // not when the last reference to this producer happens to be collected.
    let native = shared.state.write().native.take();
    drop(native);
    if let Some(mut sink) = sink {
        sink.stopped(&report);
    }
    report
}

impl<K: Send + Sync + 'static> Shared<K> {
    /// Produces `msgs` as one batch whose memory `keep` owns.
    ///
    /// # Safety
    /// Every `value` slice must point into memory that stays valid and unchanged as long
    /// as `keep` lives.
    pub unsafe fn produce(&self, keep: K, msgs: &[OutMessage<'_>]) -> ProduceOutcome {
        self.produce_with(keep, msgs.len(), |i| msgs[i])
    }

    /// [`Self::produce`] for `n` messages made one at a time by `msg(i)` (no vector of
    /// them in between), called for `i` in order, once each, until one is refused.
    ///
    /// # Safety
    /// As for [`Self::produce`].
    pub unsafe fn produce_with<'m>(&self, keep: K, n: usize, mut msg: impl FnMut(usize) -> OutMessage<'m>) -> ProduceOutcome {
        if n == 0 {
            return ProduceOutcome { accepted: 0, error: None };
        }
        let st = self.state.read();
        let native = match (&st.closed, &st.native) {
            (false, Some(n)) => n,
            _ => return ProduceOutcome { accepted: 0, error: Some(Error::ClientStopped) },
        };
        let handle = BatchHandle::new(keep, n, self.counters.clone());
        RUN.with(|run| {
            let mut run = run.borrow_mut();
            run.msgs.clear();
            let max = native.batch_max_bytes;
            let mut last_topic: Option<(&[u8], *mut rd::rd_kafka_topic_t)> = None;
            let mut now_ms: Option<i64> = None;
            let mut each = || -> std::result::Result<(), Refused> {
                for i in 0..n {
                    let m = msg(i);
                    let rkt = match last_topic {
                        // (The same slice for every message of a NIF call: no byte compare.)
                        Some((name, rkt)) if std::ptr::eq(name, m.topic) || name == m.topic => rkt,
                        _ => match native.topic(m.topic) {
                            Ok(rkt) => rkt,
                            Err(e) => {
                                run.produce(&handle)?;
                                return Err(Refused { accepted: i, released: i, error: e });
                            }
                        },
                    };
                    last_topic = Some((m.topic, rkt));
                    let plain = Run::plain(&m, max);
                    if !(plain && run.continues(rkt, m.partition)) {
                        // (Messages go out in order: what is collected goes first.)
                        run.produce(&handle)?;
                    }
                    if plain {
                        run.push(rkt, &m, handle.opaque(i), i);
                        if run.msgs.len() == RUN_MAX {
                            run.produce(&handle)?;
                        }
                    } else {
                        // One clock read per call: librdkafka would read the wall clock
                        // for every message without a timestamp (a tenth of the NIF's
                        // time in a profile). (A run is stamped once by librdkafka.)
                        let mut m = m;
                        if m.timestamp == 0 {
                            m.timestamp = *now_ms.get_or_insert_with(|| {
                                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
                            });
                        }
                        produce_one(native.kafka.ptr(), rkt, &m, handle.opaque(i))
                            .map_err(|error| Refused { accepted: i, released: i, error })?;
                    }
                }
                run.produce(&handle)
            };
            match each() {
                Ok(()) => ProduceOutcome { accepted: n, error: None },
                Err(r) => {
                    handle.refuse_range(r.released..n);
                    ProduceOutcome { accepted: r.accepted, error: Some(r.error) }
                }
            }
        })
    }

    /// Produces one message into this thread's open batch (see [`crate::open`]):
    /// `fill(keep, index)` saves what the report will need in the keep and returns the
    /// value, which must point into the keep; `msg.value` is ignored.
    ///
    /// # Safety
    /// The value returned by `fill` must stay valid and unchanged as long as the keep lives.
    pub unsafe fn produce_open<E>(
        &self,
        msg: &OutMessage<'_>,
        make_keep: impl FnOnce() -> K,
        fill: impl FnOnce(&K, usize) -> std::result::Result<Option<&'static [u8]>, E>,
    ) -> std::result::Result<(), OpenError<E>> {
        // No state lock: a produce call on every scheduler would make its count bounce
        // between cores. The shard's lock orders this call with teardown (see `closing`).
        // SAFETY (both derefs below): not closing, and teardown cannot pass close_all
        // (it releases the native client later) while this shard's lock is held, so the
        // data behind the state lock is not modified meanwhile.
        let native = || unsafe { (*self.state.data_ptr()).native.as_ref() }.ok_or(OpenError::Kafka(Error::ClientStopped));
        let r = self.open.with_slot(
            msg.topic,
            |cached| {
                if self.closing.load(Ordering::Acquire) {
                    return Err(OpenError::Kafka(Error::ClientStopped));
                }
                match cached {
                    Some(t) => Ok(t),
                    None => native()?.topic(msg.topic).map(|t| t as usize).map_err(OpenError::Kafka),
                }
            },
            make_keep,
            |rkt, keep, i, opaque| {
                let Ok(native) = native() else {
                    return SlotUse::Unused(Err(OpenError::Kafka(Error::ClientStopped)));
                };
                match fill(keep, i) {
                    Err(e) => SlotUse::Unused(Err(OpenError::Fill(e))),
                    Ok(value) => {
                        let m = OutMessage { value, ..*msg };
                        match produce_one(native.kafka.ptr(), rkt as *mut rd::rd_kafka_topic_t, &m, opaque) {
                            Ok(()) => SlotUse::Produced(Ok(()), value.map_or(0, |v| v.len())),
                            Err(e) => SlotUse::Unused(Err(OpenError::Kafka(e))),
                        }
                    }
                }
            },
        );
        r.and_then(|r| r)
    }

    /// Creates a topic handle with its own configuration. `Error::TopicExists` when a
    /// handle for `name` exists already (also one made implicitly by an earlier produce).
    pub fn create_topic(&self, name: &[u8], props: &Properties) -> Result<()> {
        let st = self.state.read();
        match (&st.closed, &st.native) {
            (false, Some(n)) => n.create_topic(name, Some(props), true).map(|_| ()),
            _ => Err(Error::ClientStopped),
        }
    }

    /// Waits until every message was delivered and its report drained by the pump, up
    /// to `timeout`. Blocking: never call it on a BEAM scheduler.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let st = self.state.read();
        let Some(n) = st.native.as_ref() else { return Err(Error::ClientStopped) };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: live handle; the pump serves the queue meanwhile (event DR mode).
        let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_flush(n.kafka.ptr(), ms) });
        if err.is_ok() { Ok(()) } else { Err(Error::Kafka(err)) }
    }

    /// Runs a (blocking) query on the client handle while it is alive.
    pub fn with_kafka<T>(&self, f: impl FnOnce(&Kafka) -> Result<T>) -> Result<T> {
        match self.state.read().native.as_ref() {
            Some(n) => f(&n.kafka),
            None => Err(Error::ClientStopped),
        }
    }

    /// Messages and requests still held by librdkafka (0 once stopped).
    pub fn outq_len(&self) -> i32 {
        self.state.read().native.as_ref().map_or(0, |n| n.kafka.outq_len())
    }

    /// Counters of this client's ledger.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// True once teardown started.
    pub fn is_closed(&self) -> bool {
        self.state.read().closed
    }
}

impl Native {
    /// The cached topic handle for `name`, created with the client's default topic
    /// configuration on first use.
    fn topic(&self, name: &[u8]) -> Result<*mut rd::rd_kafka_topic_t> {
        if let Some(t) = self.topics.read().get(name) {
            return Ok(t.ptr());
        }
        self.create_topic(name, None, false)
    }

    fn create_topic(&self, name: &[u8], props: Option<&Properties>, exclusive: bool) -> Result<*mut rd::rd_kafka_topic_t> {
        if name.is_empty() || name.len() > 249 {
            return Err(Error::InvalidTopic);
        }
        let cname = CString::new(name).map_err(|_| Error::InvalidTopic)?;
        let conf = props.map(|p| p.to_topic_conf()).transpose()?;
        let mut topics = self.topics.write();
        if let Some(t) = topics.get(name) {
            return if exclusive { Err(Error::TopicExists) } else { Ok(t.ptr()) };
        }
        let conf = match conf {
            Some(c) => c,
            // SAFETY: live handle; the copy is ours.
            None => unsafe { NativePtr::from_ptr(rd::rd_kafka_default_topic_conf_dup(self.kafka.ptr())) }
                .ok_or_else(|| Error::ClientCreation("rd_kafka_default_topic_conf_dup failed".into()))?,
        };
        // SAFETY: live conf, not yet given to librdkafka.
        let partitioner = unsafe { crate::partitioner::Partitioner::install(conf.ptr(), self.sticky_linger_us) };
        // SAFETY: live handle; conf ownership passes to librdkafka (also on failure, per
        // rdkafka.h: "the conf object is freed by this function").
        let rkt = unsafe { rd::rd_kafka_topic_new(self.kafka.ptr(), cname.as_ptr(), conf.into_raw()) };
        self.kafka.keep_until_destroyed(partitioner);
        // SAFETY: rkt is a new handle owned by us, or null.
        let topic = unsafe { NativePtr::from_ptr(rkt) }.ok_or_else(|| {
            // SAFETY: reads the thread-local last error.
            Error::Kafka(ErrorCode::from_raw(unsafe { rd::rd_kafka_last_error() }))
        })?;
        let ptr = topic.ptr();
        topics.insert(name.into(), topic);
        Ok(ptr)
    }
}

/// FNV-1a: topic names are short and chosen by the application, so the lookup on every
/// produce call needs speed, not SipHash's flooding resistance.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Messages given to `rd_kafka_produce_batch` at most per call.
const RUN_MAX: usize = 1024;

thread_local! {
    static RUN: std::cell::RefCell<Run> = const { std::cell::RefCell::new(Run { rkt: std::ptr::null_mut(), partition: 0, first: 0, msgs: Vec::new() }) };
}

/// Where a produce call stopped: messages `..accepted` were accepted, those in
/// `accepted..released` that were refused are released already, the caller releases
/// `released..`.
struct Refused {
    accepted: usize,
    released: usize,
    error: Error,
}

/// Consecutive messages of one topic and one destination (the partitioner, or one
/// partition) without headers or timestamp, produced with one `rd_kafka_produce_batch`
/// call: one topic lock, one clock reading and one timestamp for all of them, where
/// `rd_kafka_produceva` takes the lock and reads the clock three times per message
/// (produce_batch from Erlang: +5-10% measured). Such a run is refused by librdkafka as a
/// whole (unknown topic or partition: one lookup under one lock) or from a message on
/// (a full queue: the rest get the same error), so the accepted messages stay a prefix;
/// a message librdkafka could refuse alone (too large) is not batched.
struct Run {
    rkt: *mut rd::rd_kafka_topic_t,
    partition: i32,
    /// Index in the batch of `msgs[0]`.
    first: usize,
    msgs: Vec<rd::rd_kafka_message_t>,
}

impl Run {
    /// Whether `m` can go in a run at all.
    fn plain(m: &OutMessage<'_>, max_bytes: usize) -> bool {
        m.headers.is_empty() && m.timestamp == 0 && m.key.map_or(0, <[u8]>::len) + m.value.map_or(0, <[u8]>::len) <= max_bytes
    }

    /// Whether a plain message for `rkt` and `partition` can join this run.
    fn continues(&self, rkt: *mut rd::rd_kafka_topic_t, partition: i32) -> bool {
        self.msgs.is_empty() || (self.rkt == rkt && self.partition == partition)
    }

    fn push(&mut self, rkt: *mut rd::rd_kafka_topic_t, m: &OutMessage<'_>, opaque: *mut std::ffi::c_void, index: usize) {
        if self.msgs.is_empty() {
            self.rkt = rkt;
            self.partition = m.partition;
            self.first = index;
        }
        let (payload, len) = bytes_ptr(m.value);
        let (key, key_len) = bytes_ptr(m.key);
        // SAFETY: all-zero is a valid rd_kafka_message_t (null pointers, no error).
        let mut r: rd::rd_kafka_message_t = unsafe { std::mem::zeroed() };
        r.payload = payload;
        r.len = len;
        r.key = key;
        r.key_len = key_len;
        r._private = opaque;
        self.msgs.push(r);
    }

    /// Produces the run (and empties it). On a refusal, the run's refused messages are
    /// released here.
    fn produce<K: Send + Sync + 'static>(&mut self, handle: &BatchHandle<K>) -> std::result::Result<(), Refused> {
        if self.msgs.is_empty() {
            return Ok(());
        }
        let k = self.msgs.len();
        // SAFETY: live topic (the caller holds the state lock); the payloads outlive their
        // reports (produce_with's contract); keys are copied.
        let good = unsafe { crate::partitioner::produce_batch(self.rkt, self.partition, &mut self.msgs) };
        let (msgs, first) = (&self.msgs, self.first);
        let ok = |r: &rd::rd_kafka_message_t| r.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
        // (librdkafka sets each message's err; `good` only says whether to look.)
        let refused = if good == k { None } else { msgs.iter().position(|r| !ok(r)) };
        let result = match refused {
            None => Ok(()),
            Some(f) => {
                // The refused messages of the run are released here. After a refusal
                // librdkafka accepts nothing more of a run (see above); if it ever did,
                // that message gets its report and the caller may send it again: a
                // duplicate, never a message lost.
                if msgs[f..].iter().all(|r| !ok(r)) {
                    handle.refuse_range(first + f..first + k);
                } else {
                    (f..k).filter(|&j| !ok(&msgs[j])).for_each(|j| handle.refuse(first + j));
                }
                Err(Refused {
                    accepted: first + f,
                    released: first + k,
                    error: Error::Kafka(ErrorCode::from_raw(msgs[f].err)),
                })
            }
        };
        self.msgs.clear();
        result
    }
}

/// A value or key as librdkafka takes it: null for none, non-null for empty.
fn bytes_ptr(b: Option<&[u8]>) -> (*mut std::ffi::c_void, usize) {
    match b {
        None => (std::ptr::null_mut(), 0),
        Some([]) => (EMPTY.as_ptr() as *mut _, 0),
        Some(v) => (v.as_ptr() as *mut _, v.len()),
    }
}

/// Non-null pointer for empty values: librdkafka treats a NULL payload as a null value.
static EMPTY: [u8; 1] = [0];

fn produce_one(
    rk: *mut rd::rd_kafka_t,
    rkt: *mut rd::rd_kafka_topic_t,
    m: &OutMessage<'_>,
    opaque: *mut std::ffi::c_void,
) -> Result<()> {
    use rd::rd_kafka_vtype_t as V;
    use rd::rd_kafka_vu_s__bindgen_ty_1 as U;
    // Only the entries used are written (a zeroed array of seven 72-byte unions cost more
    // than librdkafka's reading of them).
    let mut vus = [const { std::mem::MaybeUninit::<rd::rd_kafka_vu_t>::uninit() }; 7];
    let mut n = 0;
    let mut push = |vtype, u: U| {
        vus[n].write(rd::rd_kafka_vu_t { vtype, u });
        n += 1;
    };
    push(V::RD_KAFKA_VTYPE_RKT, U { rkt });
    push(V::RD_KAFKA_VTYPE_PARTITION, U { i32_: m.partition });
    for (vtype, bytes) in [(V::RD_KAFKA_VTYPE_VALUE, m.value), (V::RD_KAFKA_VTYPE_KEY, m.key)] {
        if bytes.is_some() {
            let (ptr, size) = bytes_ptr(bytes);
            push(vtype, U { mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr, size } });
        }
    }
    push(V::RD_KAFKA_VTYPE_OPAQUE, U { ptr: opaque });
    if m.timestamp != 0 {
        push(V::RD_KAFKA_VTYPE_TIMESTAMP, U { i64_: m.timestamp });
    }
    let mut headers: Option<NativeHeaders> = None;
    if !m.headers.is_empty() {
        // SAFETY: fresh headers object, ours until librdkafka takes it.
        let h = unsafe { NativePtr::from_ptr(rd::rd_kafka_headers_new(m.headers.len())) }
            .ok_or(Error::Kafka(ErrorCode::INVALID_ARG))?;
        for (name, value) in m.headers {
            let (vp, vl) = match value {
                Some(v) => (v.as_ptr() as *const std::ffi::c_void, v.len() as isize),
                None => (std::ptr::null(), 0),
            };
            // SAFETY: h is live; name and value are valid for their lengths (copied).
            let e = unsafe {
                rd::rd_kafka_header_add(h.ptr(), name.as_ptr() as *const _, name.len() as isize, vp, vl)
            };
            if e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(Error::Kafka(ErrorCode::from_raw(e)));
            }
        }
        push(V::RD_KAFKA_VTYPE_HEADERS, U { headers: h.ptr() });
        headers = Some(h);
    }
    // SAFETY: the first n entries of vus are written; value memory outlives the report
    // (caller's contract); everything else is copied by librdkafka.
    let err = unsafe { rd::rd_kafka_produceva(rk, vus.as_ptr() as *const rd::rd_kafka_vu_t, n) };
    // SAFETY: err is null or an error object we own.
    match unsafe { NativePtr::<rd::rd_kafka_error_t>::from_ptr(err) } {
        None => {
            // librdkafka owns the headers now.
            if let Some(h) = headers {
                h.into_raw();
            }
            Ok(())
        }
        Some(e) => {
            // SAFETY: live error object.
            let code = ErrorCode::from_raw(unsafe { rd::rd_kafka_error_code(e.ptr()) });
            Err(Error::Kafka(code))
        }
    }
}
