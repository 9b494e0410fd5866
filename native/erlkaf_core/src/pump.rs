//! The per-client event pump: the one thread that serves a client's main queue.
//!
//! It blocks in `rd_kafka_queue_poll` (woken by librdkafka as soon as an event is queued,
//! so there is no idle polling), drains what else is queued, and hands the round to a
//! [`Sink`]: all delivery reports of the round in one call (the NIF turns them into one
//! Erlang message per destination), then errors, logs and statistics. Only after the sink
//! returned are the reported slots released and the events destroyed, so the sink may
//! borrow message data.

use crate::error::ErrorCode;
use crate::ledger::{self, Batch};
use crate::message::{MessageView, TimestampType};
use crate::native::{cstr_lossy, NativeEvent, NativePtr, NativeQueue};
use rdkafka_sys as rd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One delivery report, borrowed from its event for the duration of [`Sink::deliveries`].
pub struct Delivery<'a, K> {
    /// The batch the message belongs to (its `keep` holds the payload and terms).
    pub batch: &'a Batch<K>,
    /// Index of the message in its batch.
    pub index: usize,
    /// The message as librdkafka reports it (partition, offset, error, timestamp, ...).
    pub message: MessageView<'a>,
}

impl<K> Delivery<'_, K> {
    /// `NO_ERROR` on success.
    pub fn error(&self) -> ErrorCode {
        self.message.error()
    }
    /// Timestamp and its type.
    pub fn timestamp(&self) -> (i64, TimestampType) {
        self.message.timestamp()
    }
}

/// A client event other than a delivery report.
#[derive(Debug)]
pub enum ClientEvent<'a> {
    /// An error event (`fatal` for fatal errors such as a fenced idempotent producer).
    Error {
        /// The code.
        code: ErrorCode,
        /// True for fatal errors.
        fatal: bool,
        /// librdkafka's text.
        reason: &'a str,
    },
    /// A log line (syslog level 0-7).
    Log {
        /// Syslog level.
        level: i32,
        /// Facility.
        facility: &'a str,
        /// Text.
        message: &'a str,
    },
    /// The statistics JSON.
    Stats(&'a str),
    /// An OAUTHBEARER token is needed: the `sasl.oauthbearer.config` string (may be
    /// empty). Answer with `oauth::set_token` or `oauth::set_token_failure`.
    OAuthRefresh(&'a str),
}

/// Hands an ERROR, LOG, STATS or OAUTHBEARER_TOKEN_REFRESH event to `f` (other types are ignored). Returns true when
/// the event was one of those.
///
/// # Safety
/// `ev` must be a live event.
pub unsafe fn client_event(ev: *mut rd::rd_kafka_event_t, f: impl FnOnce(ClientEvent<'_>)) -> bool {
    match rd::rd_kafka_event_type(ev) {
        rd::RD_KAFKA_EVENT_ERROR => {
            let code = ErrorCode::from_raw(rd::rd_kafka_event_error(ev));
            let fatal = rd::rd_kafka_event_error_is_fatal(ev) != 0;
            let reason = cstr_lossy(rd::rd_kafka_event_error_string(ev));
            f(ClientEvent::Error { code, fatal, reason: &reason });
            true
        }
        rd::RD_KAFKA_EVENT_LOG => {
            let mut fac = std::ptr::null();
            let mut text = std::ptr::null();
            let mut level = 0;
            if rd::rd_kafka_event_log(ev, &mut fac, &mut text, &mut level) == 0 {
                let (fac, text) = (cstr_lossy(fac), cstr_lossy(text));
                f(ClientEvent::Log { level, facility: &fac, message: &text });
            }
            true
        }
        rd::RD_KAFKA_EVENT_STATS => {
            let json = cstr_lossy(rd::rd_kafka_event_stats(ev));
            f(ClientEvent::Stats(&json));
            true
        }
        rd::RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH => {
            let cfg = rd::rd_kafka_event_config_string(ev);
            let cfg = if cfg.is_null() { String::new() } else { cstr_lossy(cfg) };
            f(ClientEvent::OAuthRefresh(&cfg));
            true
        }
        _ => false,
    }
}

/// Receives what the pump drains. Implemented by the NIF with an `OwnedEnv`.
pub trait Sink<K>: Send + 'static {
    /// All delivery reports of one round (never empty).
    fn deliveries(&mut self, reports: &[Delivery<'_, K>]);
    /// One other event.
    fn event(&mut self, event: ClientEvent<'_>);
    /// The client has stopped; called once, last.
    fn stopped(&mut self, report: &crate::producer::ShutdownReport);
}

/// Events drained in one round at most (bounds latency of the first report).
const MAX_EVENTS_PER_ROUND: usize = 256;

pub(crate) struct Pump<K> {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Box<dyn Sink<K>>>,
}

pub(crate) struct QueuePtr(pub(crate) *mut rd::rd_kafka_queue_t);
// SAFETY: queues are thread-safe; the owner keeps the queue alive until the pump joined.
unsafe impl Send for QueuePtr {}

impl<K: Send + Sync + 'static> Pump<K> {
    /// Starts the pump on `queue`. The queue must outlive the pump (the owner joins first).
    /// `tick` runs on the pump thread about every `open::IDLE_CLOSE` (between rounds) and
    /// says whether it wants to run again soon; while it does not, the pump waits for
    /// events as long as it would without a tick.
    pub(crate) fn start(
        name: String,
        queue: &NativeQueue,
        mut sink: Box<dyn Sink<K>>,
        mut tick: Option<Box<dyn FnMut() -> bool + Send>>,
    ) -> std::io::Result<Pump<K>> {
        let stop = Arc::new(AtomicBool::new(false));
        let q = QueuePtr(queue.ptr());
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let q = q;
            let mut state = Round::default();
            let mut last_tick = std::time::Instant::now();
            let mut tick_soon = false;
            loop {
                if let Some(t) = tick.as_mut() {
                    if last_tick.elapsed() >= crate::open::IDLE_CLOSE {
                        last_tick = std::time::Instant::now();
                        tick_soon = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut *t)).unwrap_or(true);
                    }
                }
                let wait_ms = if tick_soon { crate::open::IDLE_CLOSE.as_millis() as i32 } else { 100 };
                // A panic in one round must not stop the pump: later reports still have to
                // release their payloads.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    state.run(q.0, &mut *sink, wait_ms)
                }));
                let drained = matches!(r, Ok(0));
                if drained && flag.load(Ordering::Acquire) {
                    // One last non-blocking drain: stop was set after the queue emptied.
                    let last = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        state.run(q.0, &mut *sink, 0)
                    }));
                    if matches!(last, Ok(0)) {
                        break;
                    }
                }
            }
            sink
        })?;
        Ok(Pump { stop, thread })
    }

    /// Asks the pump to finish once the queue is empty and waits for it; returns the sink.
    pub(crate) fn stop(self) -> Option<Box<dyn Sink<K>>> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().ok()
    }
}

#[derive(Default)]
struct Round {
    events: Vec<NativeEvent>,
    messages: Vec<*const rd::rd_kafka_message_t>,
    arena: bumpalo::Bump,
}

impl Round {
    /// Drains up to MAX_EVENTS_PER_ROUND events (waiting up to `timeout_ms` for the first)
    /// and hands them to the sink. Returns the number of events handled.
    fn run<K: Send + Sync + 'static>(&mut self, q: *mut rd::rd_kafka_queue_t, sink: &mut dyn Sink<K>, timeout_ms: i32) -> usize {
        self.events.clear();
        let mut timeout = timeout_ms;
        while self.events.len() < MAX_EVENTS_PER_ROUND {
            // SAFETY: q is live until the pump is joined.
            let ev = unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_poll(q, timeout)) };
            match ev {
                Some(ev) => self.events.push(ev),
                None => break,
            }
            timeout = 0;
        }
        if self.events.is_empty() {
            return 0;
        }
        self.arena.reset();
        let mut reports = bumpalo::collections::Vec::new_in(&self.arena);
        self.messages.clear();
        for ev in &self.events {
            // SAFETY: live event.
            let ty = unsafe { rd::rd_kafka_event_type(ev.ptr()) };
            match ty {
                rd::RD_KAFKA_EVENT_DR => {
                    // SAFETY: live DR event; the array is owned by the event.
                    let n = unsafe { rd::rd_kafka_event_message_count(ev.ptr()) };
                    let start = self.messages.len();
                    self.messages.resize(start + n, std::ptr::null());
                    // SAFETY: the buffer has room for n pointers.
                    let got = unsafe {
                        rd::rd_kafka_event_message_array(ev.ptr(), self.messages[start..].as_mut_ptr(), n)
                    };
                    self.messages.truncate(start + got);
                }
                _ => {
                    // SAFETY: live event.
                    unsafe { client_event(ev.ptr(), |e| sink.event(e)) };
                }
            }
        }
        for &m in &self.messages {
            // SAFETY: the message belongs to an event in self.events, alive until the end.
            let view = unsafe { MessageView::from_ptr(m) };
            let opaque = view.opaque();
            if opaque.is_null() {
                continue; // not produced by us
            }
            // SAFETY: our opaque; its slot is unreleased until after the sink call below.
            let (batch, index) = unsafe { ledger::lookup::<K>(opaque) };
            reports.push(Delivery { batch, index, message: view });
        }
        if !reports.is_empty() {
            sink.deliveries(&reports);
        }
        let mut released = ledger::Releases::default();
        for r in reports.iter() {
            // SAFETY: each reported message is released once, after its terms were built.
            unsafe { released.release::<K>(r.message.opaque()) };
        }
        drop(released);
        drop(reports);
        let n = self.events.len();
        self.messages.clear();
        self.events.clear();
        n
    }
}
