//! The group consumer: one librdkafka consumer per group client, one pump thread that
//! pushes fetched messages, partition by partition, to a [`ConsumerSink`].
//!
//! - Offsets are stored only by [`Consumer::ack`] (after the handler succeeded):
//!   `enable.auto.offset.store=false` is forced, auto-commit commits what was stored.
//!   (It also sidesteps librdkafka 2.12.1's batch-consume position bug.)
//! - Flow control by credit: every batch handed to the sink is one credit of its
//!   partition, and its bytes ([`message_bytes`]) are byte credit; at `max_inflight`
//!   unacknowledged batches or `max_inflight_bytes` the partition is paused, and it is
//!   resumed when acks bring both down to half. A batch holds at most
//!   `max_inflight_bytes / min(max_inflight, 4)` bytes (or one message), so a partition's
//!   unacknowledged messages stay near `max_inflight_bytes` however large a fetch is.
//! - Only the pump thread pauses and resumes partitions (librdkafka's pause and resume
//!   wait for its broker thread, and a pause moves the next fetch to the last message the
//!   pump took): acks and the application's `pause`/`resume` record what they want and
//!   wake the pump, which tells librdkafka between two rounds.
//! - Rebalance: on assign the pump assigns (incrementally under `cooperative-sticky`) and
//!   tells the sink. On revoke it tells the sink and waits (bounded by `revoke_timeout`)
//!   until [`Consumer::revoke_done`] says the workers of those partitions stopped and their
//!   offsets are stored, commits, then unassigns. Nothing processed is lost, nothing
//!   unprocessed is committed.

use crate::client::{Kafka, Kind};
use crate::config::Properties;
use crate::error::{Error, ErrorCode, Result};
use crate::message::MessageView;
use crate::native::{NativeEvent, NativePtr, NativeQueue};
use crate::pump::{client_event, ClientEvent};
use crate::tpl::{from_tpl, to_tpl, TopicPartition};
use parking_lot::{Condvar, Mutex, RwLock};
use rdkafka_sys as rd;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Receives what the consumer pump drains. Implemented by the NIF.
pub trait ConsumerSink: Send + 'static {
    /// Messages of one partition, in offset order (never empty).
    fn messages(&mut self, topic: &str, partition: i32, msgs: &[MessageView<'_>]);
    /// Partitions newly assigned to this member.
    fn assigned(&mut self, parts: &[TopicPartition]);
    /// Partitions being revoked; answer with [`Consumer::revoke_done`]`(generation)`.
    fn revoked(&mut self, parts: &[TopicPartition], generation: u64);
    /// A per-partition consume error (offset out of range, authorization, ...).
    fn consume_error(&mut self, topic: &str, partition: i32, code: ErrorCode, reason: &str);
    /// Errors, logs, statistics.
    fn event(&mut self, event: ClientEvent<'_>);
    /// Called on every loop of the pump (at least every 100 ms): deliver what waited.
    fn tick(&mut self);
    /// The consumer stopped; called once, last.
    fn stopped(&mut self);
}

/// Consumer settings that are not librdkafka properties.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Unacknowledged batches per partition before it is paused.
    pub max_inflight: u32,
    /// Longest wait for the application to release revoked partitions.
    pub revoke_timeout: Duration,
    /// Messages taken from the queue per round at most.
    pub max_round: usize,
    /// Unacknowledged bytes per partition (see [`message_bytes`]) before it is paused; a
    /// batch is cut at `max_inflight_bytes / min(max_inflight, 4)` bytes.
    pub max_inflight_bytes: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions { max_inflight: 4, revoke_timeout: Duration::from_secs(60), max_round: 2000, max_inflight_bytes: 4 << 20 }
    }
}

/// What a fetched message costs in memory while its batch is unacknowledged, as flow
/// control counts it: its key and value, and ~200 bytes for what holds them (the Erlang
/// record, its sub-binary and timestamp, a list cell).
pub fn message_bytes(m: &MessageView<'_>) -> usize {
    m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len) + 200
}

#[derive(Default, Debug, Clone)]
struct Flow {
    /// The bytes ([`message_bytes`]) of each unacknowledged batch, oldest first (a
    /// partition's batches are acknowledged in order, one ack each): the credit used.
    batches: std::collections::VecDeque<usize>,
    /// Out of credit: too many unacknowledged batches.
    credit_paused: bool,
    /// Paused by the application (`pause/3`, a handler that stopped).
    app_paused: bool,
    /// What librdkafka was last told (written by the pump only).
    told_paused: bool,
    /// The next offset to process: last stored, or the first handed out.
    next: Option<i64>,
}

impl Flow {
    /// The byte credit left; 0 when either credit (batches, bytes) is used up.
    fn room(&self, opts: &ConsumerOptions) -> usize {
        if self.batches.len() >= opts.max_inflight as usize {
            return 0;
        }
        opts.max_inflight_bytes.saturating_sub(self.batches.iter().sum())
    }

    /// At most half of both credits used: a partition flow control paused fetches again.
    fn half_used(&self, opts: &ConsumerOptions) -> bool {
        self.batches.len() <= (opts.max_inflight / 2) as usize && self.batches.iter().sum::<usize>() <= opts.max_inflight_bytes / 2
    }

    fn wants_pause(&self) -> bool {
        self.credit_paused || self.app_paused
    }
}

type Key = (String, i32);

struct Native {
    queue: NativeQueue,
    kafka: Kafka,
}

/// What NIF calls use from any thread.
pub struct Shared {
    native: RwLock<Option<Native>>,
    flow: Mutex<HashMap<Key, Flow>>,
    /// A flow's wanted pause state changed: the pump tells librdkafka.
    pauses_due: AtomicBool,
    revoke_done: Mutex<u64>,
    revoke_cv: Condvar,
    stop: AtomicBool,
    auto_commit: bool,
    opts: ConsumerOptions,
}

/// The owner of a group consumer.
pub struct Consumer {
    shared: Arc<Shared>,
    pump: Mutex<Option<JoinHandle<Box<dyn ConsumerSink>>>>,
}

struct QueuePtr(*mut rd::rd_kafka_queue_t);
// SAFETY: queues are thread-safe; the owner keeps it alive until the pump is joined.
unsafe impl Send for QueuePtr {}

impl Consumer {
    /// Creates the consumer, subscribes to `topics` and starts the pump.
    pub fn new(name: &str, props: &Properties, topics: &[String], opts: ConsumerOptions, sink: Box<dyn ConsumerSink>) -> Result<Consumer> {
        if props.get("group.id").is_none() {
            return Err(Error::InvalidConfig("group.id".into(), "a consumer group needs a group id".into()));
        }
        let auto_commit = props.get("enable.auto.commit").is_none_or(|v| v == "true");
        let mut props = props.clone();
        props.set("enable.auto.offset.store", "false");
        props.set("enable.partition.eof", "false");
        props.set("log.queue", "true");
        // librdkafka postpones a partition's next fetch by this much once its local queue
        // passes queued.min.messages (default 1000 ms). Flow control here is erlkaf's own
        // (a partition whose worker is behind is paused), so the wait only stalls a
        // consumer working through a backlog: measured, 500k messages took 2.3 s with the
        // default and 0.45 s with 10 ms.
        if props.get("fetch.queue.backoff.ms").is_none() {
            props.set("fetch.queue.backoff.ms", "10");
        }
        let oauth = props.oauth_refresh();
        let kafka = Kafka::new(Kind::Consumer, &props, |conf| {
            let mut events = rd::RD_KAFKA_EVENT_REBALANCE | rd::RD_KAFKA_EVENT_ERROR | rd::RD_KAFKA_EVENT_LOG
                | rd::RD_KAFKA_EVENT_STATS;
            if oauth {
                events |= rd::RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH;
            }
            // SAFETY: conf is live and not yet handed to rd_kafka_new.
            unsafe { rd::rd_kafka_conf_set_events(conf, events) };
        })?;
        // SAFETY: live handle. Logs and errors go to the main queue, which is forwarded to
        // the consumer queue: one queue, one pump.
        unsafe {
            rd::rd_kafka_set_log_queue(kafka.ptr(), std::ptr::null_mut());
            rd::rd_kafka_poll_set_consumer(kafka.ptr());
        }
        // SAFETY: live handle; the reference is ours.
        let queue = unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_get_consumer(kafka.ptr())) }
            .ok_or_else(|| Error::ClientCreation("no consumer queue".into()))?;
        let subs: Vec<TopicPartition> =
            topics.iter().map(|t| TopicPartition { topic: t.clone(), partition: -1, offset: -1001 }).collect();
        if subs.is_empty() {
            return Err(Error::InvalidTopic);
        }
        let tpl = to_tpl(&subs);
        // SAFETY: live handle and list.
        let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_subscribe(kafka.ptr(), tpl.ptr()) });
        if !err.is_ok() {
            return Err(Error::Kafka(err));
        }
        let shared = Arc::new(Shared {
            native: RwLock::new(Some(Native { queue, kafka })),
            flow: Mutex::new(HashMap::new()),
            pauses_due: AtomicBool::new(false),
            revoke_done: Mutex::new(0),
            revoke_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            auto_commit,
            opts,
        });
        let q = QueuePtr(shared.native.read().as_ref().map(|n| n.queue.ptr()).unwrap());
        let s2 = shared.clone();
        let mut sink = sink;
        let pump = std::thread::Builder::new()
            .name(format!("erlkaf-{name}"))
            .spawn(move || {
                let q = q;
                let mut pump = ConsumerPump { shared: s2, generation: 0, messages: Vec::new(), room: Vec::new(), last_room: 0 };
                while !pump.shared.stop.load(Ordering::Acquire) {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pump.round(q.0, &mut *sink)));
                    if r.is_err() {
                        eprintln!("erlkaf: consumer pump round panicked");
                    }
                }
                sink
            })
            .map_err(|e| Error::ClientCreation(format!("cannot start the pump thread: {e}")))?;
        Ok(Consumer { shared, pump: Mutex::new(Some(pump)) })
    }

    /// The handle NIF calls use.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocking teardown: stop the pump, commit what was stored, leave the group, destroy.
    /// Call it on a thread of your own, after the workers stopped. A second call is a no-op.
    pub fn shutdown(&self) {
        let Some(pump) = self.pump.lock().take() else { return };
        teardown(&self.shared, pump);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.get_mut().take() {
            let shared = self.shared.clone();
            crate::reaper::run("consumer", move || teardown(&shared, pump));
        }
    }
}

fn teardown(shared: &Arc<Shared>, pump: JoinHandle<Box<dyn ConsumerSink>>) {
    shared.stop.store(true, Ordering::Release);
    // Unblock a pump waiting for a revoke answer that will not come.
    shared.revoke_cv.notify_all();
    shared.wake();
    let mut sink = pump.join().ok();
    let native = shared.native.write().take();
    if let Some(n) = native.as_ref() {
        if shared.auto_commit {
            // SAFETY: live handle. Asynchronous: close waits for outstanding commits, and
            // its own wait is bounded (a synchronous commit is not, with the broker down).
            unsafe { rd::rd_kafka_commit(n.kafka.ptr(), std::ptr::null(), 1) };
        }
        close(n, shared.opts.revoke_timeout.min(Duration::from_secs(30)), sink.as_deref_mut());
    }
    drop(native);
    if let Some(mut sink) = sink {
        sink.stopped();
    }
}

/// Leaves the group: `rd_kafka_consumer_close_queue` with our own queue, serving its
/// rebalance events (the workers are gone: unassign at once) and handing its logs and
/// errors to the sink, until librdkafka says closed or `limit` passed (broker down).
fn close(n: &Native, limit: Duration, mut sink: Option<&mut dyn ConsumerSink>) {
    let rk = n.kafka.ptr();
    // SAFETY: live handle; the queue is ours.
    let Some(q) = (unsafe { NativePtr::<rd::rd_kafka_queue_t>::from_ptr(rd::rd_kafka_queue_new(rk)) }) else { return };
    // SAFETY: live handle and queue.
    let err = unsafe { rd::rd_kafka_consumer_close_queue(rk, q.ptr()) };
    // SAFETY: null or an error we own.
    if unsafe { NativePtr::<rd::rd_kafka_error_t>::from_ptr(err) }.is_some() {
        return;
    }
    let deadline = Instant::now() + limit;
    // SAFETY: live handle.
    while unsafe { rd::rd_kafka_consumer_closed(rk) } == 0 && Instant::now() < deadline {
        // SAFETY: live queue.
        let Some(ev) = (unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_poll(q.ptr(), 100)) }) else { continue };
        // SAFETY: live event.
        match unsafe { rd::rd_kafka_event_type(ev.ptr()) } {
            rd::RD_KAFKA_EVENT_REBALANCE => unassign(rk, &ev),
            _ => {
                if let Some(s) = sink.as_deref_mut() {
                    // SAFETY: live event.
                    unsafe { client_event(ev.ptr(), |e| s.event(e)) };
                }
            }
        }
    }
}

/// Answers a rebalance event during close: give everything back.
fn unassign(rk: *mut rd::rd_kafka_t, ev: &NativeEvent) {
    // SAFETY: live handle, live rebalance event and its list.
    unsafe {
        let tpl = rd::rd_kafka_event_topic_partition_list(ev.ptr());
        if crate::native::cstr_lossy(rd::rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE" {
            if rd::rd_kafka_event_error(ev.ptr()) == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                drop(NativePtr::<rd::rd_kafka_error_t>::from_ptr(rd::rd_kafka_incremental_unassign(rk, tpl)));
            }
        } else {
            rd::rd_kafka_assign(rk, std::ptr::null());
        }
    }
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&Native) -> Result<T>) -> Result<T> {
        match self.native.read().as_ref() {
            Some(n) if !self.stop.load(Ordering::Acquire) => f(n),
            _ => Err(Error::ClientStopped),
        }
    }

    /// Runs a (blocking) query on the client handle while it is alive.
    pub fn with_kafka<T>(&self, f: impl FnOnce(&crate::client::Kafka) -> Result<T>) -> Result<T> {
        self.with(|n| f(&n.kafka))
    }

    /// The handler finished a batch of `topic`/`partition`: store `next_offset` (the last
    /// processed offset + 1) for the next commit and give the partition its credit back.
    pub fn ack(&self, topic: &str, partition: i32, next_offset: i64) -> Result<()> {
        self.with(|n| {
            let tpl = to_tpl(&[TopicPartition { topic: topic.into(), partition, offset: next_offset }]);
            // SAFETY: live handle and list.
            let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_offsets_store(n.kafka.ptr(), tpl.ptr()) });
            // SAFETY: live list; per-partition errors (e.g. no longer assigned).
            let per = unsafe { from_tpl(tpl.ptr()) };
            let perr = per.first().map(|(_, e)| *e).unwrap_or(ErrorCode::NO_ERROR);
            let resume = {
                let mut flow = self.flow.lock();
                match flow.get_mut(&(topic.to_string(), partition)) {
                    Some(f) => {
                        f.batches.pop_front();
                        f.next = Some(next_offset);
                        let resume = f.credit_paused && f.half_used(&self.opts);
                        if resume {
                            f.credit_paused = false;
                        }
                        resume
                    }
                    None => false,
                }
            };
            if resume {
                self.pauses_due(n);
            }
            if !err.is_ok() { Err(Error::Kafka(err)) } else if !perr.is_ok() { Err(Error::Kafka(perr)) } else { Ok(()) }
        })
    }

    /// The worker of a partition was replaced: rewind to the next unprocessed offset (the
    /// messages the old worker had not finished are fetched again) and reset its credit.
    /// Call it from the pump (the sink's tick), between two rounds: a message the pump
    /// took before the seek would be handed out after it otherwise.
    pub fn rewind(&self, topic: &str, partition: i32) -> Result<()> {
        self.with(|n| {
            let mut flow = self.flow.lock();
            let Some(f) = flow.get_mut(&(topic.to_string(), partition)) else { return Ok(()) };
            if let Some(next) = f.next {
                let tpl = to_tpl(&[TopicPartition { topic: topic.into(), partition, offset: next }]);
                // SAFETY: live handle and list; timeout 0 = asynchronous (the version
                // barrier that drops messages fetched before is raised at once).
                let e = unsafe { rd::rd_kafka_seek_partitions(n.kafka.ptr(), tpl.ptr(), 0) };
                // SAFETY: e is null or ours.
                drop(unsafe { NativePtr::<rd::rd_kafka_error_t>::from_ptr(e) });
            }
            reset_credit(f);
            // Applied by the pump after the tick that called this (no wake-up needed).
            self.pauses_due.store(true, Ordering::Release);
            Ok(())
        })
    }

    /// Moves a partition's fetch position to `offset` (logical offsets allowed: -2
    /// beginning, -1 end) and waits up to `timeout` for it; messages fetched before are
    /// purged by librdkafka. Resets the partition's credit. Blocking: call it from the pump
    /// (the sink's tick) or a thread of its own.
    pub fn seek(&self, topic: &str, partition: i32, offset: i64, timeout: Duration) -> Result<()> {
        self.with(|n| {
            let tpl = to_tpl(&[TopicPartition { topic: topic.into(), partition, offset }]);
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: live handle and list.
            let e = unsafe { rd::rd_kafka_seek_partitions(n.kafka.ptr(), tpl.ptr(), ms) };
            // SAFETY: null or an error object we own.
            if let Some(e) = unsafe { NativePtr::<rd::rd_kafka_error_t>::from_ptr(e) } {
                // SAFETY: live error object.
                return Err(Error::Kafka(ErrorCode::from_raw(unsafe { rd::rd_kafka_error_code(e.ptr()) })));
            }
            // SAFETY: live list.
            if let Some((_, err)) = unsafe { from_tpl(tpl.ptr()) }.into_iter().find(|(_, e)| !e.is_ok()) {
                return Err(Error::Kafka(err));
            }
            let mut flow = self.flow.lock();
            let f = flow.entry((topic.to_string(), partition)).or_default();
            f.next = (offset >= 0).then_some(offset);
            reset_credit(f);
            drop(flow);
            self.pauses_due(n);
            Ok(())
        })
    }

    /// Committed offsets of `parts` (the broker's answer; blocking up to `timeout`).
    pub fn committed(&self, parts: &[TopicPartition], timeout: Duration) -> Result<Vec<TopicPartition>> {
        self.with(|n| {
            let tpl = to_tpl(parts);
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: live handle and list.
            let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_committed(n.kafka.ptr(), tpl.ptr(), ms) });
            if !err.is_ok() {
                return Err(Error::Kafka(err));
            }
            // SAFETY: live list.
            Ok(unsafe { from_tpl(tpl.ptr()) }.into_iter().map(|(p, _)| p).collect())
        })
    }

    /// Fetch positions of `parts` (the offset after the last message handed out; local).
    pub fn position(&self, parts: &[TopicPartition]) -> Result<Vec<TopicPartition>> {
        self.with(|n| {
            let tpl = to_tpl(parts);
            // SAFETY: live handle and list.
            let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_position(n.kafka.ptr(), tpl.ptr()) });
            if !err.is_ok() {
                return Err(Error::Kafka(err));
            }
            // SAFETY: live list.
            Ok(unsafe { from_tpl(tpl.ptr()) }.into_iter().map(|(p, _)| p).collect())
        })
    }

    /// Pauses or resumes fetching an assigned partition on the application's request
    /// (carried out by the pump: batches it already took still arrive). Flow control
    /// does not resume what the application paused; a rebalance that assigns the
    /// partition again starts it unpaused.
    pub fn set_paused(&self, topic: &str, partition: i32, paused: bool) -> Result<()> {
        self.with(|n| {
            match self.flow.lock().get_mut(&(topic.to_string(), partition)) {
                Some(f) => f.app_paused = paused,
                None => return Err(Error::Kafka(ErrorCode::UNKNOWN_PARTITION)),
            }
            self.pauses_due(n);
            Ok(())
        })
    }

    /// Some flow's pause state changed: the pump applies it before its next poll.
    fn pauses_due(&self, n: &Native) {
        self.pauses_due.store(true, Ordering::Release);
        wake(n);
    }

    /// Tells librdkafka the pause state every flow wants (pump thread only). The calls
    /// wait for librdkafka's broker thread: the flow lock is not held meanwhile (acks
    /// take it on schedulers).
    fn apply_pauses(&self) {
        if !self.pauses_due.swap(false, Ordering::AcqRel) {
            return;
        }
        let native = self.native.read();
        let Some(n) = native.as_ref() else { return };
        let changes: Vec<(Key, bool)> = {
            let mut flow = self.flow.lock();
            flow.iter_mut()
                .filter(|(_, f)| f.wants_pause() != f.told_paused)
                .map(|(k, f)| {
                    f.told_paused = f.wants_pause();
                    (k.clone(), f.told_paused)
                })
                .collect()
        };
        for ((topic, partition), paused) in changes {
            pause(n, &topic, partition, paused);
        }
    }

    /// Wakes the pump (so that its sink delivers what waited for a worker).
    pub fn wake(&self) {
        if let Some(n) = self.native.read().as_ref() {
            wake(n);
        }
    }

    /// The application released the partitions of revoke `generation`.
    pub fn revoke_done(&self, generation: u64) {
        let mut g = self.revoke_done.lock();
        if generation > *g {
            *g = generation;
        }
        self.revoke_cv.notify_all();
    }

    /// The current assignment.
    pub fn assignment(&self) -> Result<Vec<TopicPartition>> {
        self.with(|n| {
            let mut tpl: *mut rd::rd_kafka_topic_partition_list_t = std::ptr::null_mut();
            // SAFETY: live handle; the list is ours.
            let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_assignment(n.kafka.ptr(), &mut tpl) });
            // SAFETY: null or ours.
            let tpl = unsafe { NativePtr::from_ptr(tpl) };
            if !err.is_ok() {
                return Err(Error::Kafka(err));
            }
            // SAFETY: live list.
            Ok(tpl.map(|t| unsafe { from_tpl(t.ptr()) }.into_iter().map(|(p, _)| p).collect()).unwrap_or_default())
        })
    }

    /// Commits the stored offsets now and waits for the broker (blocking).
    pub fn commit_sync(&self) -> Result<()> {
        self.with(|n| {
            // SAFETY: live handle.
            let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_commit(n.kafka.ptr(), std::ptr::null(), 0) });
            // Nothing stored since the last commit is not a failure.
            if err.is_ok() || err.name() == "no_offset" { Ok(()) } else { Err(Error::Kafka(err)) }
        })
    }
}

/// A partition whose unacknowledged batches will never be acknowledged (rewound or
/// sought): full credit again, and fetching if flow control had paused it (the caller
/// makes the pump apply it).
fn reset_credit(f: &mut Flow) {
    f.batches.clear();
    f.credit_paused = false;
}

/// Wakes the pump out of its poll.
fn wake(n: &Native) {
    // SAFETY: live queue.
    unsafe { rd::rd_kafka_queue_yield(n.queue.ptr()) };
}

/// Pauses or resumes one partition; false when librdkafka refused.
fn pause(n: &Native, topic: &str, partition: i32, paused: bool) -> bool {
    let tpl = to_tpl(&[TopicPartition { topic: topic.into(), partition, offset: -1001 }]);
    // SAFETY: live handle and list.
    let err = unsafe {
        if paused {
            rd::rd_kafka_pause_partitions(n.kafka.ptr(), tpl.ptr())
        } else {
            rd::rd_kafka_resume_partitions(n.kafka.ptr(), tpl.ptr())
        }
    };
    // SAFETY: live list.
    err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        && unsafe { from_tpl(tpl.ptr()) }.iter().all(|(_, e)| e.is_ok())
}

struct ConsumerPump {
    shared: Arc<Shared>,
    generation: u64,
    /// The round's FETCH events and their messages (taken from the events as they come).
    messages: Vec<(NativeEvent, *const rd::rd_kafka_message_t)>,
    /// Per partition (topic handle, partition) of the round: the byte credit it had left
    /// at its first message, less what the round took since. (Found by a scan from the
    /// last one used: a fetch's messages come in a row, so a round switches partitions
    /// rarely; no hashing per message.)
    room: Vec<((usize, i32), usize)>,
    last_room: usize,
}

impl ConsumerPump {
    fn round(&mut self, q: *mut rd::rd_kafka_queue_t, sink: &mut dyn ConsumerSink) {
        sink.tick();
        self.shared.apply_pauses();
        let mut timeout = 100;
        let mut taken = 0;
        self.room.clear();
        while taken < self.shared.opts.max_round && !self.shared.stop.load(Ordering::Acquire) {
            // SAFETY: q lives until the pump is joined.
            let Some(ev) = (unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_poll(q, timeout)) }) else { break };
            timeout = 0;
            taken += 1;
            // SAFETY: live event.
            match unsafe { rd::rd_kafka_event_type(ev.ptr()) } {
                rd::RD_KAFKA_EVENT_FETCH => {
                    // SAFETY: a FETCH event carries one message, owned by the event.
                    let m = unsafe { rd::rd_kafka_event_message_next(ev.ptr()) };
                    let full = !m.is_null() && self.fills(m);
                    self.messages.push((ev, m));
                    // A partition out of credit: what the round took goes out now and the
                    // pause follows (librdkafka drops what it fetched beyond, and fetches
                    // it again on resume); taking on would hand out a whole fetch more.
                    if full {
                        break;
                    }
                }
                rd::RD_KAFKA_EVENT_REBALANCE => {
                    // Messages before the rebalance go out first, in order.
                    self.flush(sink);
                    self.rebalance(ev, sink);
                }
                _ => {
                    // SAFETY: live event.
                    unsafe { client_event(ev.ptr(), |e| sink.event(e)) };
                }
            }
        }
        self.flush(sink);
    }

    /// Takes message `m` from its partition's room in this round; true when that used it
    /// up (the message is handed out all the same: it was taken from librdkafka).
    fn fills(&mut self, m: *const rd::rd_kafka_message_t) -> bool {
        // SAFETY: a live message of a live event.
        let view = unsafe { MessageView::from_ptr(m) };
        if !view.error().is_ok() {
            return false;
        }
        let key = (view.raw().rkt as usize, view.partition());
        if self.room.get(self.last_room).is_none_or(|(k, _)| *k != key) {
            self.last_room = match self.room.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let topic = String::from_utf8_lossy(view.topic()).into_owned();
                    let flow = self.shared.flow.lock();
                    let opts = &self.shared.opts;
                    let left = flow.get(&(topic, view.partition())).map_or(opts.max_inflight_bytes, |f| f.room(opts));
                    self.room.push((key, left));
                    self.room.len() - 1
                }
            };
        }
        let room = &mut self.room[self.last_room].1;
        *room = room.saturating_sub(message_bytes(&view));
        *room == 0
    }

    /// Hands the collected messages to the sink, one call per run of one partition.
    fn flush(&mut self, sink: &mut dyn ConsumerSink) {
        if self.messages.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.messages);
        // Grouped by topic handle and partition: a message's topic name is only read
        // once per group (a name per message meant an allocation per message).
        let mut groups: Vec<((String, i32), Vec<MessageView<'_>>)> = Vec::new();
        let mut index: HashMap<(usize, i32), usize> = HashMap::new();
        for &(_, m) in &events {
            if m.is_null() {
                continue;
            }
            // SAFETY: valid while `events` lives.
            let view = unsafe { MessageView::from_ptr(m) };
            if !view.error().is_ok() {
                let topic = String::from_utf8_lossy(view.topic()).into_owned();
                let reason = view.payload().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
                sink.consume_error(&topic, view.partition(), view.error(), &reason);
                continue;
            }
            let i = *index.entry((view.raw().rkt as usize, view.partition())).or_insert_with(|| {
                groups.push(((String::from_utf8_lossy(view.topic()).into_owned(), view.partition()), Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(view);
        }
        // Batches of at most a share of the partition's byte credit (a fetch response can
        // hold thousands of messages: one batch of them was one credit, 2 MiB of 1 KiB
        // messages per credit).
        // (A quarter at most: more batches in flight, e.g. max_inflight 1000 to pause on
        // bytes alone, would only make them small.)
        let cap = (self.shared.opts.max_inflight_bytes / self.shared.opts.max_inflight.clamp(1, 4) as usize).max(1);
        for ((topic, partition), msgs) in &groups {
            let mut start = 0;
            let mut bytes = 0;
            for (i, m) in msgs.iter().enumerate() {
                let b = message_bytes(m);
                if i > start && bytes + b > cap {
                    self.charge(topic, *partition, msgs[start].offset(), bytes);
                    sink.messages(topic, *partition, &msgs[start..i]);
                    (start, bytes) = (i, 0);
                }
                bytes += b;
            }
            self.charge(topic, *partition, msgs[start].offset(), bytes);
            sink.messages(topic, *partition, &msgs[start..]);
        }
        drop(groups);
        drop(events);
        // After every message of the round was handed out: a pause moves the next fetch
        // to the last one.
        self.shared.apply_pauses();
    }

    /// One credit and `bytes` of byte credit for a batch; the partition is paused when
    /// either runs out.
    fn charge(&self, topic: &str, partition: i32, first_offset: i64, bytes: usize) {
        let mut flow = self.shared.flow.lock();
        let f = flow.entry((topic.to_string(), partition)).or_default();
        f.batches.push_back(bytes);
        if f.next.is_none() {
            f.next = Some(first_offset);
        }
        if !f.credit_paused && f.room(&self.shared.opts) == 0 {
            f.credit_paused = true;
            self.shared.pauses_due.store(true, Ordering::Release);
        }
    }

    fn rebalance(&mut self, ev: NativeEvent, sink: &mut dyn ConsumerSink) {
        let guard = self.shared.native.read();
        let Some(n) = guard.as_ref() else { return };
        let rk = n.kafka.ptr();
        // SAFETY: live rebalance event; the list belongs to it.
        let (err, tpl) = unsafe { (rd::rd_kafka_event_error(ev.ptr()), rd::rd_kafka_event_topic_partition_list(ev.ptr())) };
        // SAFETY: live list.
        let parts: Vec<TopicPartition> = unsafe { from_tpl(tpl) }.into_iter().map(|(p, _)| p).collect();
        // SAFETY: live handle; static string.
        let cooperative = unsafe { crate::native::cstr_lossy(rd::rd_kafka_rebalance_protocol(rk)) } == "COOPERATIVE";
        use rd::rd_kafka_resp_err_t::*;
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // SAFETY: live handle and list (errors are owned by us).
                unsafe {
                    // A partition flow control paused, then revoked, keeps librdkafka's
                    // pause flag when it comes back to this member (only librdkafka's
                    // own pauses are reset on assignment): it would never be fetched
                    // again. New assignments start with full credit, so unpaused.
                    rd::rd_kafka_resume_partitions(rk, tpl);
                    if cooperative {
                        drop(NativePtr::<rd::rd_kafka_error_t>::from_ptr(rd::rd_kafka_incremental_assign(rk, tpl)));
                    } else {
                        rd::rd_kafka_assign(rk, tpl);
                    }
                }
                {
                    let mut flow = self.shared.flow.lock();
                    for p in &parts {
                        flow.insert((p.topic.clone(), p.partition), Flow::default());
                    }
                }
                drop(guard);
                sink.assigned(&parts);
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                drop(guard);
                self.generation += 1;
                let generation = self.generation;
                sink.revoked(&parts, generation);
                self.wait_revoke_done(generation, sink);
                let guard = self.shared.native.read();
                let Some(n) = guard.as_ref() else { return };
                // SAFETY: live handle.
                let lost = unsafe { rd::rd_kafka_assignment_lost(rk) } != 0;
                if self.shared.auto_commit && !lost {
                    // SAFETY: live handle: commit what the stopped workers stored (sync).
                    unsafe { rd::rd_kafka_commit(n.kafka.ptr(), std::ptr::null(), 0) };
                }
                // SAFETY: live handle and list.
                unsafe {
                    if cooperative {
                        drop(NativePtr::<rd::rd_kafka_error_t>::from_ptr(rd::rd_kafka_incremental_unassign(rk, tpl)));
                    } else {
                        rd::rd_kafka_assign(rk, std::ptr::null());
                    }
                }
                let mut flow = self.shared.flow.lock();
                for p in &parts {
                    flow.remove(&(p.topic.clone(), p.partition));
                }
            }
            _ => {
                // SAFETY: live handle: librdkafka asks for an unassign on other errors.
                unsafe { rd::rd_kafka_assign(rk, std::ptr::null()) };
                drop(guard);
                sink.event(ClientEvent::Error { code: ErrorCode::from_raw(err), fatal: false, reason: "rebalance error" });
            }
        }
    }

    /// Waits for the application to release revoked partitions, serving the sink's ticks
    /// (pending deliveries) meanwhile; bounded by `revoke_timeout`.
    fn wait_revoke_done(&self, generation: u64, sink: &mut dyn ConsumerSink) {
        let deadline = Instant::now() + self.shared.opts.revoke_timeout;
        let mut done = self.shared.revoke_done.lock();
        while *done < generation && !self.shared.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= deadline {
                drop(done);
                sink.event(ClientEvent::Error {
                    code: ErrorCode::TIMED_OUT,
                    fatal: false,
                    reason: "revoked partitions were not released in time; unassigning anyway",
                });
                return;
            }
            self.shared.revoke_cv.wait_for(&mut done, (deadline - now).min(Duration::from_millis(100)));
        }
    }
}
