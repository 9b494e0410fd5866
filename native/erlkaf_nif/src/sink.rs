//! Drained client events to Erlang messages, built in one `OwnedEnv` per message and sent
//! with `send_and_clear` (the env's heap moves to the receiver, nothing is copied again).
//!
//! One round of delivery reports becomes one `{erlkaf_dr, Reports}` message to the
//! client's producer process, never one message per Kafka message.

use crate::atoms;
use crate::error::code_atom;
use crate::keep::{Keep, Reply};
use erlkaf_core::message::{MessageView, TimestampType};
use erlkaf_core::producer::ShutdownReport;
use erlkaf_core::pump::{ClientEvent, Delivery, Sink};
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};
use smallvec::SmallVec;

/// Which reports the producer process wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportMode {
    /// Every report, with the full message (a delivery-report callback is set).
    All,
    /// Only failed deliveries (`delivery_report_only_error`, or no callback: the producer
    /// process logs them).
    Errors,
}

/// The NIF's sink: sends to the producer process.
pub struct NifSink {
    pub owner: LocalPid,
    pub mode: ReportMode,
    env: OwnedEnv,
    /// In `ReportMode::All`: where a round's reports wait for the producer process to
    /// build them (see [`Handover`]).
    handover: Option<std::sync::Arc<Handover>>,
}

impl NifSink {
    /// A sink sending to `owner`.
    pub fn new(owner: LocalPid, mode: ReportMode, handover: Option<std::sync::Arc<Handover>>) -> NifSink {
        NifSink { owner, mode, env: OwnedEnv::new(), handover }
    }
}

/// Where the pump lends each round of delivery reports to the producer process, which
/// builds their terms on its own heap (`producer_take_reports`, a slice per call) while
/// the pump waits (erlkaf_core::handover).
///
/// Why: built on the pump, a round's reports were messages of heap fragments that the
/// receiver's garbage collection copied again and another thread freed later, every word
/// written on another core than the one reading it. Built by the receiver, they are made
/// where they are read: 12% less CPU per message and 10% more msg/s for produce/4 with a
/// delivery-report callback (scripts/bench-ab.sh, 12 pairs).
///
/// A report that copies more than a scheduler call may (a large iolist value, whose
/// bytes only librdkafka holds) is built on a dirty scheduler. The pump takes back what
/// is left (and sends it as `{erlkaf_dr, Reports}` messages, as before) when the process
/// is gone (its monitor closes the handover), or after [`RECLAIM_AFTER`]: a process busy in
/// a slow callback, or one waiting for room in librdkafka's queue (which only the reports
/// it has not taken yet would free), never holds the pump longer than that.
pub type Handover = erlkaf_core::handover::Handover<Delivery<'static, Keep>>;

/// Reports the pump built itself after lending their round (see [`Handover`]).
pub static REPORTS_RECLAIMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long the pump waits for the producer process to take a round.
const RECLAIM_AFTER: std::time::Duration = std::time::Duration::from_millis(50);
/// Bytes copied into terms per `producer_take_reports` call at most (about 50 us; one
/// report is taken whatever its size, unless it is over HEAVY).
const COPY_BUDGET: usize = 256 * 1024;
/// A report that copies more than this is built alone, on a dirty scheduler.
const HEAVY: usize = 1024 * 1024;

/// On the producer process: builds the next reports of round `id` in `env`, up to
/// REPORTS_PER_MESSAGE and COPY_BUDGET (`heavy`: the next one alone, on a dirty
/// scheduler). Returns them and what is left of the round for the process.
pub fn take_reports<'a>(h: &Handover, env: Env<'a>, id: u64, heavy: bool) -> (Vec<Term<'a>>, Left) {
    let taken = h.take(id, |reports, next| {
        let mut end = next;
        if heavy {
            end += 1;
        } else {
            // A heavy report first: none is taken here (Left::Heavy below).
            let mut bytes = 0;
            while let Some(d) = reports.get(end).filter(|_| end - next < REPORTS_PER_MESSAGE) {
                let n = copied_bytes(d);
                if n > HEAVY || (end > next && bytes + n > COPY_BUDGET) {
                    break;
                }
                bytes += n;
                end += 1;
            }
        }
        let terms = report_terms(env, &reports[next..end], ReportMode::All);
        let left = match reports.get(end) {
            None => Left::Nothing,
            Some(d) if copied_bytes(d) > HEAVY => Left::Heavy,
            Some(_) => Left::More,
        };
        (end - next, (terms, left))
    });
    taken.map_or((Vec::new(), Left::Nothing), |(r, _)| r)
}

/// What is left of a round for the producer process after a take.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Nothing: the round was all taken, or the pump took it back.
    Nothing,
    /// More reports.
    More,
    /// The next report copies more than HEAVY: it is taken alone on a dirty scheduler.
    Heavy,
}

/// The bytes a report's terms copy: its key, and its value unless the report shares the
/// produced binary (see report_terms; headers, when there are any, are not counted).
fn copied_bytes(d: &Delivery<'_, Keep>) -> usize {
    let key = d.message.key().map_or(0, <[u8]>::len);
    let value = match d.message.payload() {
        Some(v) if shared(Some(v)).is_some() || d.batch.keep().saved(d.index).value.is_none() => v.len(),
        _ => 0,
    };
    key + value
}

pub fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut b = rustler::NewBinary::new(env, bytes.len());
    b.as_mut_slice().copy_from_slice(bytes);
    b.into()
}

pub fn opt_binary<'a>(env: Env<'a>, bytes: Option<&[u8]>) -> Term<'a> {
    match bytes {
        Some(b) => binary(env, b),
        None => atoms::undefined().encode(env),
    }
}

fn saved<'a>(env: Env<'a>, term: rustler::sys::ErlNifTerm) -> Term<'a> {
    // SAFETY: term lives in the batch env, which is alive during the sink call; the copy
    // of a refc binary only bumps its refcount.
    unsafe { Term::new(env, rustler::sys::enif_make_copy(env.as_c_arg(), term)) }
}

/// Values longer than the BEAM's heap-binary limit and at most this long share binaries.
const SHARED_MAX: usize = 1024;
/// Bytes of values per shared binary at most.
const SHARED_CHUNK: usize = 4096;

/// Whether a value goes into a shared binary.
fn shared(p: Option<&[u8]>) -> Option<usize> {
    p.map(<[u8]>::len).filter(|n| (65..=SHARED_MAX).contains(n))
}

/// Value terms for `payloads` (fetched messages, or reported ones), in order: values of
/// 65 bytes to SHARED_MAX as sub-binaries of binaries of up to SHARED_CHUNK bytes, `None`
/// for the others (the caller makes those).
///
/// Why: a refc binary per value costs a lock of the VM's allocator on this thread (a
/// quarter of the consumer pump's time), and a delivery report that shares the produced
/// binary bumps its refcount here and drops it in the receiver: two writes to a cache
/// line last written on another core, per message (over half of the report pump's copy
/// time). A run of 40 100-byte values now takes one binary. A kept sub-binary keeps its
/// chunk alive (at most SHARED_CHUNK bytes), as a sub-binary of a fetch response does in
/// other clients; copy values kept for long (`binary:copy/1`).
fn shared_values<'a>(env: Env<'a>, payloads: &[Option<&[u8]>]) -> Vec<Option<Term<'a>>> {
    let mut out = Vec::with_capacity(payloads.len());
    let mut i = 0;
    while i < payloads.len() {
        if shared(payloads[i]).is_none() {
            out.push(None);
            i += 1;
            continue;
        }
        // The run of shared values that fits one chunk.
        let start = i;
        let mut total = 0;
        while let Some(n) = payloads.get(i).and_then(|&p| shared(p)).filter(|n| total + n <= SHARED_CHUNK) {
            total += n;
            i += 1;
        }
        let run = &payloads[start..i];
        let mut chunk = rustler::NewBinary::new(env, total);
        let buf = chunk.as_mut_slice();
        let mut at = 0;
        for p in run.iter().flatten() {
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        let chunk: Term = chunk.into();
        let mut at = 0;
        for p in run.iter().flatten() {
            // SAFETY: live env; chunk is a binary of this env and [at, at + len) lies in it.
            out.push(Some(unsafe { Term::new(env, rustler::sys::enif_make_sub_binary(env.as_c_arg(), chunk.as_c_arg(), at, p.len())) }));
            at += p.len();
        }
    }
    out
}

/// The value terms of fetched messages' payloads: shared (see [`shared_values`]), else a
/// binary each (a heap binary up to 64 bytes).
pub fn payload_terms<'a>(env: Env<'a>, payloads: &[Option<&[u8]>]) -> Vec<Term<'a>> {
    shared_values(env, payloads).into_iter().zip(payloads).map(|(v, p)| v.unwrap_or_else(|| opt_binary(env, *p))).collect()
}

/// The MsgRef (or `undefined`) of a reported message, and its value as the batch env
/// holds it when that is a binary (not copied yet).
fn saved_ref_and_value<'a>(env: Env<'a>, d: &Delivery<'_, Keep>) -> (Term<'a>, Option<rustler::sys::ErlNifTerm>) {
    let s = d.batch.keep().saved(d.index);
    let msg_ref = match s.msg_ref {
        Some(r) => r.get().encode(env),
        None => atoms::undefined().encode(env),
    };
    (msg_ref, s.value)
}

/// A tuple of `items` (rustler's `make_tuple` allocates a vector per call; this runs a few
/// times per reported or fetched message).
fn tuple<'a, const N: usize>(env: Env<'a>, items: [Term<'a>; N]) -> Term<'a> {
    // SAFETY: decode::tuple made it in this env.
    unsafe { Term::new(env, crate::decode::tuple(env, &items.map(|t| t.as_c_arg()))) }
}

/// `#erlkaf_msg{}` for a message (a delivery report or a fetched message).
pub fn erlkaf_msg<'a>(env: Env<'a>, m: &MessageView<'_>, topic: Term<'a>, value: Term<'a>) -> Term<'a> {
    let headers = match m.headers() {
        Some(h) => h
            .iter()
            .map(|(n, v)| tuple(env, [binary(env, n), opt_binary(env, *v)]))
            .collect::<Vec<_>>()
            .encode(env),
        None => atoms::undefined().encode(env),
    };
    let (ts, ty) = m.timestamp();
    let ty = match ty {
        TimestampType::CreateTime => atoms::create_time(),
        TimestampType::LogAppendTime => atoms::log_append_time(),
        TimestampType::NotAvailable => atoms::not_available(),
    };
    let fields = [
        atoms::erlkaf_msg().encode(env),
        topic,
        m.partition().encode(env),
        m.offset().encode(env),
        opt_binary(env, m.key()),
        value,
        headers,
        (ts, ty).encode(env),
    ];
    tuple(env, fields)
}

/// `{error, Code, Fatal, Reason}`, `{log, Level, Facility, Text}` or `{stats, Stats}`
/// (librdkafka's statistics as maps with binary keys; the JSON binary itself if it
/// could not be read).
pub fn event_term<'a>(env: Env<'a>, event: ClientEvent<'_>) -> Term<'a> {
    match event {
        ClientEvent::Error { code, fatal, reason } => (atoms::error(), code_atom(env, code), fatal, reason).encode(env),
        ClientEvent::Log { level, facility, message } => (atoms::log(), level, facility, message).encode(env),
        ClientEvent::OAuthRefresh(cfg) => (atoms::oauthbearer_token_refresh(), binary(env, cfg.as_bytes())).encode(env),
        ClientEvent::Stats(json) => {
            let stats = erlkaf_core::json::parse(json, &mut TermBuilder(env)).unwrap_or_else(|_| binary(env, json.as_bytes()));
            (atoms::stats(), stats).encode(env)
        }
    }
}

/// JSON to terms: objects are maps with binary keys, arrays lists, strings binaries,
/// `true`/`false`/`null` atoms (as jsone decodes them, which the original erlkaf used).
struct TermBuilder<'a>(Env<'a>);

impl<'a> erlkaf_core::json::Build for TermBuilder<'a> {
    type Value = Term<'a>;
    fn string(&mut self, s: &str) -> Term<'a> {
        binary(self.0, s.as_bytes())
    }
    fn int(&mut self, i: i64) -> Term<'a> {
        i.encode(self.0)
    }
    fn float(&mut self, f: f64) -> Term<'a> {
        f.encode(self.0)
    }
    fn bool(&mut self, b: bool) -> Term<'a> {
        b.encode(self.0)
    }
    fn null(&mut self) -> Term<'a> {
        atoms::null().encode(self.0)
    }
    fn array(&mut self, items: Vec<Term<'a>>) -> Term<'a> {
        items.encode(self.0)
    }
    fn object(&mut self, members: Vec<(Term<'a>, Term<'a>)>) -> Term<'a> {
        Term::map_from_pairs(self.0, &members).unwrap_or_else(|_| {
            // Duplicate keys: the later one wins.
            members.iter().fold(Term::map_new(self.0), |m, (k, v)| m.map_put(*k, *v).unwrap_or(m))
        })
    }
}

/// Reports per `{erlkaf_dr, Reports}` message at most.
const REPORTS_PER_MESSAGE: usize = 256;

/// The report terms of `reports` (successes left out in errors-only mode).
fn report_terms<'a>(env: Env<'a>, reports: &[Delivery<'_, Keep>], mode: ReportMode) -> Vec<Term<'a>> {
    let mut items: Vec<Term> = Vec::with_capacity(reports.len());
    // Consecutive reports usually share a topic: build its binary once (compared by
    // handle: reading the name costs a call and a strlen per report).
    let mut topic: Option<(*const (), Term)> = None;
    // Values of 65 B-1 KiB as copies in shared binaries (see shared_values); the others
    // come from the batch env (a binary) or librdkafka's bytes (an iolist).
    let payloads: SmallVec<[Option<&[u8]>; REPORTS_PER_MESSAGE]> = reports
        .iter()
        .map(|d| match d.batch.keep().reply {
            Reply::Owner if !(d.error().is_ok() && mode == ReportMode::Errors) => d.message.payload(),
            _ => None,
        })
        .collect();
    let copies = shared_values(env, &payloads);
    for (d, copy) in reports.iter().zip(copies) {
        let err = d.error();
        let keep = d.batch.keep();
        match keep.reply {
            Reply::Sync(alias) => {
                let result = if err.is_ok() {
                    (atoms::ok(), d.message.partition(), d.message.offset()).encode(env)
                } else {
                    (atoms::error(), code_atom(env, err)).encode(env)
                };
                let alias = saved(env, alias);
                items.push((atoms::erlkaf_sync(), alias, result).encode(env));
            }
            Reply::Owner => {
                if err.is_ok() && mode == ReportMode::Errors {
                    continue;
                }
                let rkt = d.message.raw().rkt as *const ();
                let t = match topic {
                    Some((k, t)) if k == rkt => t,
                    _ => {
                        let t = binary(env, d.message.topic());
                        topic = Some((rkt, t));
                        t
                    }
                };
                let status = if err.is_ok() { atoms::ok().encode(env) } else { (atoms::error(), code_atom(env, err)).encode(env) };
                let (msg_ref, kept) = saved_ref_and_value(env, d);
                let value = match (copy, kept) {
                    (Some(v), _) => v,
                    (None, Some(v)) => saved(env, v),
                    (None, None) => opt_binary(env, d.message.payload()),
                };
                let msg = erlkaf_msg(env, &d.message, t, value);
                items.push(tuple(env, [msg_ref, status, msg]));
            }
        }
    }
    items
}

impl Sink<Keep> for NifSink {
    fn deliveries(&mut self, reports: &[Delivery<'_, Keep>]) {
        let mode = self.mode;
        // What the producer process wants (not successes in errors-only mode).
        let wanted = |d: &Delivery<'_, Keep>| {
            mode == ReportMode::All || !d.error().is_ok() || matches!(d.batch.keep().reply, Reply::Sync(_))
        };
        let owner = self.owner;
        let env = &mut self.env;
        let from = match self.handover.as_ref() {
            Some(h) => {
                // SAFETY: `lend` returns once the round is out of the handover, so nothing
                // reads the reports after this call.
                let lent: &[Delivery<'static, Keep>] = unsafe { std::mem::transmute(reports) };
                let from = h.lend(lent, RECLAIM_AFTER, |id| {
                    let _ = env.send_and_clear(&owner, |_| (atoms::erlkaf_dr_ready(), id));
                });
                if from < reports.len() {
                    REPORTS_RECLAIMED.fetch_add((reports.len() - from) as u64, std::sync::atomic::Ordering::Relaxed);
                }
                from
            }
            None => 0,
        };
        let reports = &reports[from..];
        // Messages of bounded size: a round can hold thousands of reports, and one huge
        // message costs more than a few large ones (its heap is many fragments, and a
        // receiver whose heap passes ~1 MB is garbage collected on a dirty scheduler). A
        // chunk with nothing wanted sends nothing.
        for chunk in reports.chunks(REPORTS_PER_MESSAGE) {
            if !chunk.iter().any(wanted) {
                continue;
            }
            let _ = self.env.send_and_clear(&owner, |env| (atoms::erlkaf_dr(), report_terms(env, chunk, mode)));
        }
    }

    fn event(&mut self, event: ClientEvent<'_>) {
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| (atoms::erlkaf_event(), event_term(env, event)));
    }

    fn stopped(&mut self, r: &ShutdownReport) {
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| {
            let report = Term::map_from_pairs(
                env,
                &[
                    (atoms::flushed().encode(env), r.flushed.encode(env)),
                    (atoms::purged().encode(env), r.purged.encode(env)),
                    (atoms::unreported().encode(env), r.unreported.encode(env)),
                ],
            )
            .expect("distinct keys");
            (atoms::erlkaf_stopped(), report)
        });
    }
}
