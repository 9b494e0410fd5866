//! Producer NIFs: `producer_new`, `producer_create_topic`, `producer_produce`,
//! `producer_flush`, `producer_stop`, `producer_outq_len`, `producer_msg_refs`.

use crate::atoms;
use crate::decode::{self, Bad};
use crate::error::{error_tuple, reason};
use crate::reply::reply_later;
use crate::keep::{Keep, Reply};
use rustler::sys::{ErlNifEnv, ErlNifTerm};
use crate::resource::{check_fast_decode, ProducerRef, ProducerRes};
use crate::sink::{take_reports, Handover, Left, NifSink, ReportMode};
use erlkaf_core::config::Properties;
use erlkaf_core::message::Header;
use erlkaf_core::producer::{OpenError, OutMessage, Producer};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use smallvec::SmallVec;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Messages handled by one `producer_produce` call at most.
const MAX_PER_CALL: usize = 4096;
/// What a call plans to spend (wall time, librdkafka's included): a chunk after the
/// first is cut to what is left of it at the pace of the call's chunks so far, and the
/// call returns (`more`) when fewer than MIN_CHUNK messages would fit. So a call that the
/// machine slows down (a cold cache, another process's turn on the CPU) takes smaller
/// chunks or returns, instead of adding a full chunk at the slow pace: the longest call
/// stays well under 1 ms on a scheduler. Wall time, not the thread's CPU time: it is
/// never less, and it is what the scheduler is held for.
const TIME_SLICE: Duration = Duration::from_micros(400);
/// Messages decoded, copied into one batch env and handed to librdkafka together (one
/// env, one ledger batch and one `rd_kafka_produce_batch` call each: 512 rather than 128
/// took ~6% less scheduler CPU per 100-byte message). A chunk of small messages takes
/// ~0.2 ms.
const CHUNK: usize = 512;
/// Fewer messages than this are not worth a chunk's fixed costs at the end of a call.
const MIN_CHUNK: usize = 64;

/// Messages the next chunk of a call may take: CHUNK for the first, else what fits in
/// what is left of TIME_SLICE at the pace of the `done` messages that took `spent`.
fn chunk_size(done: usize, spent: Duration) -> usize {
    if done == 0 {
        return CHUNK;
    }
    let left = TIME_SLICE.saturating_sub(spent).as_nanos();
    let per = (spent.as_nanos() / done as u128).max(1);
    (left / per).min(CHUNK as u128) as usize
}

/// The longest `producer_produce` call of a list so far (the NIF that does the most per
/// call), timed where it runs: the VM's `long_schedule` monitor only reports a process
/// scheduled in over 1 ms, whatever it did meanwhile. Wall time (what the scheduler was
/// held for, the OS taking the thread away included) and the thread's CPU time (the
/// call's own work). The benchmarks gate on them. Also the calls' CPU time and messages
/// in total: the scheduler's cost per message of a batch, less noisy on a shared machine
/// than a throughput (the benchmarks report it). Of the calls over 1 ms of wall time,
/// those in which the thread waited (a voluntary context switch: a lock another thread
/// held, a page fault that waited for the memory map) apart from those the OS only
/// preempted. Kept while calls are timed (see [`TIMING`]).
struct CallFigures {
    wall_us: AtomicU64,
    cpu_us: AtomicU64,
    over_1ms: AtomicU64,
    waited_over_1ms: AtomicU64,
    waits: AtomicU64,
    total_cpu_ns: AtomicU64,
    messages: AtomicU64,
}

static PRODUCE_CALLS: CallFigures = CallFigures {
    wall_us: AtomicU64::new(0),
    cpu_us: AtomicU64::new(0),
    over_1ms: AtomicU64::new(0),
    waited_over_1ms: AtomicU64::new(0),
    waits: AtomicU64::new(0),
    total_cpu_ns: AtomicU64::new(0),
    messages: AtomicU64::new(0),
};

/// Whether `producer_produce` calls time themselves: off until `nif_call_times_reset/0`
/// (a benchmark's or a test's). Timing a call costs two readings of the thread's CPU clock
/// and two `getrusage` calls (~2 µs here: system calls in a VM): a produce_batch of ten
/// messages took 0.74-0.78 µs a message timed, 0.40-0.54 untimed.
static TIMING: AtomicBool = AtomicBool::new(false);

/// Where a timed call started: its thread's CPU time and voluntary context switches.
#[derive(Clone, Copy)]
struct CallStart {
    cpu_ns: u64,
    waits: u64,
}

impl CallStart {
    /// `None` while calls are not timed.
    fn now() -> Option<CallStart> {
        TIMING.load(Ordering::Relaxed).then(|| CallStart {
            cpu_ns: erlkaf_core::cputime::thread_ns(),
            waits: erlkaf_core::cputime::thread_waits(),
        })
    }
}

impl CallFigures {
    fn record(&self, wall_us: u64, start: CallStart, messages: usize) {
        let cpu_ns = erlkaf_core::cputime::thread_ns().saturating_sub(start.cpu_ns);
        let waits = erlkaf_core::cputime::thread_waits().saturating_sub(start.waits);
        self.waits.fetch_add(waits, Ordering::Relaxed);
        let cpu = cpu_ns / 1000;
        self.wall_us.fetch_max(wall_us, Ordering::Relaxed);
        self.cpu_us.fetch_max(cpu, Ordering::Relaxed);
        if wall_us > 1000 {
            self.over_1ms.fetch_add(1, Ordering::Relaxed);
            if waits > 0 {
                self.waited_over_1ms.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.total_cpu_ns.fetch_add(cpu_ns, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
    }
}

/// Figures of `producer_produce` calls since the library was loaded or
/// [`reset_produce_calls`].
pub struct ProduceCalls {
    /// Longest call, wall time (µs).
    pub longest_wall_us: u64,
    /// Longest call, the thread's CPU time (µs).
    pub longest_cpu_us: u64,
    /// Calls over 1 ms of wall time.
    pub over_1ms: u64,
    /// Of those, calls in which the thread waited (a voluntary context switch).
    pub waited_over_1ms: u64,
    /// Voluntary context switches in all calls.
    pub waits: u64,
    /// CPU time of all calls (ns).
    pub total_cpu_ns: u64,
    /// Messages they accepted.
    pub messages: u64,
}

/// See [`ProduceCalls`].
pub fn produce_calls() -> ProduceCalls {
    let l = &PRODUCE_CALLS;
    ProduceCalls {
        longest_wall_us: l.wall_us.load(Ordering::Relaxed),
        longest_cpu_us: l.cpu_us.load(Ordering::Relaxed),
        over_1ms: l.over_1ms.load(Ordering::Relaxed),
        waited_over_1ms: l.waited_over_1ms.load(Ordering::Relaxed),
        waits: l.waits.load(Ordering::Relaxed),
        total_cpu_ns: l.total_cpu_ns.load(Ordering::Relaxed),
        messages: l.messages.load(Ordering::Relaxed),
    }
}

/// Starts [`produce_calls`] over (a benchmark scenario's own figures), and the timing of
/// calls if it was off.
pub fn reset_produce_calls() {
    TIMING.store(true, Ordering::Relaxed);
    let l = &PRODUCE_CALLS;
    for a in [&l.wall_us, &l.cpu_us, &l.over_1ms, &l.waited_over_1ms, &l.waits, &l.total_cpu_ns, &l.messages] {
        a.store(0, Ordering::Relaxed);
    }
}

/// `(ClientName, [{Name, Value}], Owner, all | values | errors | none) -> {ok, Res} |
/// {error, Reason}`: every report, every report without its MsgRef (a callback of arity
/// 2), failures only, or failures only without their MsgRef (no callback).
/// Dirty IO: `rd_kafka_new` starts threads and resolves nothing, but can take milliseconds.
#[rustler::nif(schedule = "DirtyIo")]
fn producer_new<'a>(env: Env<'a>, name: String, props: Vec<(String, String)>, owner: LocalPid, mode: Atom) -> Term<'a> {
    let keep_refs = mode == atoms::all() || mode == atoms::errors();
    let mode = if mode == atoms::all() || mode == atoms::values() { ReportMode::All } else { ReportMode::Errors };
    let handover = (mode == ReportMode::All).then(|| std::sync::Arc::new(Handover::new()));
    let sink = Box::new(NifSink::new(owner, mode, handover.clone()));
    match Producer::new(&name, &Properties(props), sink) {
        Ok(p) => {
            let arc = ResourceArc::new(ProducerRes { producer: p, keep_refs, handover });
            // The pump hands reports to the owner only while it lives.
            if let Some(h) = &arc.handover {
                if arc.monitor(Some(env), &owner).is_none() {
                    h.close();
                }
            }
            let res = arc.encode(env);
            check_fast_decode(res);
            (atoms::ok(), res).encode(env)
        }
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res, Topic, [{Name, Value}]) -> ok | {error, Reason}`.
#[rustler::nif]
fn producer_create_topic<'a>(env: Env<'a>, res: ResourceArc<ProducerRes>, topic: rustler::Binary, props: Vec<(String, String)>) -> Term<'a> {
    match res.producer.shared().create_topic(topic.as_slice(), &Properties(props)) {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res, Topic, Messages, Reply, WantRefs)` where Reply is `owner` or a sync alias.
/// Returns `{ok, Refs}` (all consumed), `{more, Refs, Rest}` (time slice used up: call
/// again with Rest), or `{error, Reason, Refs, Rest}` (Refs accepted; Rest starts with
/// the message that was refused, with Reason).
///
/// A message that is more work than a scheduler may do in one call (see
/// `decode::WORK_BUDGET`: a long iolist to flatten, a large key or many headers for
/// librdkafka to copy) is produced on a dirty CPU scheduler: alone, by the same code
/// without the budget, in a call that continues there (`enif_schedule_nif`).
#[rustler::nif]
fn producer_produce<'a>(
    env: Env<'a>,
    res: Term<'a>,
    topic: Term<'a>,
    messages: Term<'a>,
    reply: Term<'a>,
    want_refs: Term<'a>,
) -> NifResult<Term<'a>> {
    produce_call(env, [res, topic, messages, reply, want_refs], Run::Scheduler)
}

/// Where a `producer_produce` call runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// On a scheduler: within TIME_SLICE and a work budget per chunk.
    Scheduler,
    /// On a dirty CPU scheduler: the first message alone, without a budget.
    Dirty,
}

impl Run {
    /// The work budget of a chunk (see `decode::WORK_BUDGET`).
    fn budget(self) -> usize {
        match self {
            Run::Scheduler => decode::WORK_BUDGET,
            Run::Dirty => usize::MAX,
        }
    }
}

fn produce_call<'a>(env: Env<'a>, args: [Term<'a>; 5], run: Run) -> NifResult<Term<'a>> {
    let [res, topic, messages, reply, want_refs] = args;
    let res = res.decode::<ProducerRef>()?.0;
    let topic = topic.decode_as_binary()?;
    let want_refs: bool = want_refs.decode()?;
    let sync = reply.get_type() == rustler::TermType::Ref;
    if let (false, Ok((head, tail))) = (sync, messages.list_get_cell()) {
        if tail.is_empty_list() {
            return Ok(single_reply(env, res, topic.as_slice(), head, messages, want_refs, run.budget())
                .unwrap_or_else(|| on_dirty_scheduler(env, args)));
        }
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        // Cleared before (a panic may have left entries) and after (nothing outlives the
        // call's terms).
        s.clear();
        let r = produce_list(env, res, topic.as_slice(), messages, (sync, reply), want_refs, run, &mut s);
        s.clear();
        Ok(r?.unwrap_or_else(|| on_dirty_scheduler(env, args)))
    })
}

/// Continues this call on a dirty CPU scheduler (its result is the call's).
fn on_dirty_scheduler<'a>(env: Env<'a>, args: [Term<'a>; 5]) -> Term<'a> {
    let argv = args.map(|t| t.as_c_arg());
    // SAFETY: live env; argv are this call's terms; produce_dirty has a NIF's signature.
    unsafe {
        Term::new(
            env,
            rustler::sys::enif_schedule_nif(
                env.as_c_arg(),
                c"producer_produce".as_ptr(),
                rustler::sys::ERL_NIF_DIRTY_JOB_CPU_BOUND as i32,
                produce_dirty,
                argv.len() as i32,
                argv.as_ptr(),
            ),
        )
    }
}

/// `producer_produce` on a dirty CPU scheduler (see [`on_dirty_scheduler`]).
unsafe extern "C" fn produce_dirty(env: *mut ErlNifEnv, argc: std::ffi::c_int, argv: *const ErlNifTerm) -> ErlNifTerm {
    // SAFETY: the VM's call of a NIF.
    unsafe { raw_nif::<5>(env, argc, argv, |env, args| produce_call(env, args, Run::Dirty)) }
}

/// The body of a NIF entered without rustler's wrapper: `body` gets the env and the `N`
/// arguments, read in place. Another arity, an error or a panic is `badarg` (as rustler's
/// wrapper answers a bad argument; nothing was produced by a panic).
///
/// # Safety
/// `env`, `argc` and `argv` as the VM passes them to a NIF.
unsafe fn raw_nif<const N: usize>(
    env: *mut ErlNifEnv,
    argc: std::ffi::c_int,
    argv: *const ErlNifTerm,
    body: impl for<'a> FnOnce(Env<'a>, [Term<'a>; N]) -> NifResult<Term<'a>>,
) -> ErlNifTerm {
    let lifetime = ();
    // SAFETY: a live env (the caller's contract).
    let env = unsafe { Env::new(&lifetime, env) };
    if argc as usize != N {
        // SAFETY: live env.
        return unsafe { rustler::sys::enif_make_badarg(env.as_c_arg()) };
    }
    // SAFETY: argc terms at argv (the caller's contract).
    let argv = unsafe { std::slice::from_raw_parts(argv, N) };
    // SAFETY: terms of this env.
    let args: [Term; N] = std::array::from_fn(|i| unsafe { Term::new(env, argv[i]) });
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(env, args))) {
        Ok(Ok(t)) => t.as_c_arg(),
        // SAFETY: live env.
        _ => unsafe { rustler::sys::enif_make_badarg(env.as_c_arg()) },
    }
}

/// Per-thread buffers of `producer_produce` (a BEAM scheduler is one thread): a call
/// reuses the memory of the previous one instead of allocating and growing vectors of
/// up to CHUNK entries (MAX_PER_CALL MsgRefs). They hold raw terms and pointers into the caller's terms,
/// valid during one call only: cleared before the call returns.
///
/// A message that is a bare binary (the commonest form) leaves nothing here but its
/// term in `kept` (and its MsgRef): it is read back from the batch env as it is produced.
#[derive(Default)]
struct Scratch {
    /// The chunk's other messages, with their index in the chunk, in order.
    decoded: Vec<(usize, Pending)>,
    /// Headers of all messages, in order (`Pending::headers` indexes here).
    headers: Vec<Header<'static>>,
    /// Per message: what its report needs from the batch env (see `decode::kept_term`);
    /// all go into the env in one tuple.
    kept: Vec<ErlNifTerm>,
    /// Per message: its MsgRef term (when refs are wanted).
    refs: Vec<ErlNifTerm>,
    /// Per message: the MsgRef its report carries (when they are kept for reports).
    saved_refs: Vec<NonZeroU64>,
}

struct Pending {
    partition: i32,
    key: Option<&'static [u8]>,
    /// Start and length in `Scratch::headers`.
    headers: (usize, usize),
    timestamp: i64,
    /// The value (binary or iolist); `None` is a null value.
    value: Option<ErlNifTerm>,
    is_binary: bool,
    /// The value's bytes in the batch env, once it was copied there.
    bytes: Option<&'static [u8]>,
}

impl Scratch {
    fn clear(&mut self) {
        self.clear_chunk();
        self.refs.clear();
    }

    /// Everything but the call's MsgRefs.
    fn clear_chunk(&mut self) {
        self.decoded.clear();
        self.headers.clear();
        self.kept.clear();
        self.saved_refs.clear();
    }
}

thread_local!(static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default()));

/// Erases the lifetime of a borrow of the caller's terms, for the scratch (cleared
/// before the call returns, while the terms are still alive).
fn unbound(b: &[u8]) -> &'static [u8] {
    // SAFETY: see above.
    unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }
}

/// How a chunk of a `producer_produce` call ended.
enum ChunkEnd<'a> {
    /// The list is consumed.
    Done,
    /// More messages follow, from this list cell on.
    More(Term<'a>),
    /// librdkafka refused the message at this list cell.
    Refused(erlkaf_core::Error, Term<'a>),
    /// The message at this list cell is malformed.
    Bad(Bad, Term<'a>),
    /// The message at this list cell is too heavy for what is left of the chunk's work
    /// budget, and the chunk is empty: alone, too heavy for a scheduler ([`Bad::Heavy`]).
    Heavy(Term<'a>),
}

/// `producer_produce` for a list; `None` when its first message is to be produced on a
/// dirty scheduler (nothing was produced).
#[allow(clippy::too_many_arguments)]
fn produce_list<'a>(
    env: Env<'a>,
    res: &ProducerRes,
    topic: &[u8],
    messages: Term<'a>,
    (sync, reply): (bool, Term<'a>),
    want_refs: bool,
    run: Run,
    s: &mut Scratch,
) -> NifResult<Option<Term<'a>>> {
    let started = Instant::now();
    // (Only calls on a scheduler are recorded.)
    let call_start = if run == Run::Scheduler { CallStart::now() } else { None };
    // An improper list within this call's reach is refused before anything is produced.
    if !proper_for(messages, MAX_PER_CALL) {
        return Err(rustler::Error::BadArg);
    }
    // Reports need the MsgRefs only with a callback (or a sync waiter).
    let save_refs = want_refs && (res.keep_refs || sync);
    // Chunk after chunk until the list, MAX_PER_CALL messages or the time slice is used
    // up (see TIME_SLICE). On a dirty scheduler: the first message, without a budget.
    let (mut size, most) = match run {
        Run::Scheduler => (CHUNK, MAX_PER_CALL),
        Run::Dirty => (1, 1),
    };
    let budget = run.budget();
    let mut accepted = 0;
    let mut rest = messages;
    let end = loop {
        let (n, end) = produce_chunk(env, res, topic, (rest, size, budget), (sync, reply), (want_refs, save_refs), s);
        accepted += n;
        size = chunk_size(accepted, started.elapsed()).min(most - accepted);
        match end {
            ChunkEnd::More(r) if size >= MIN_CHUNK => rest = r,
            end => break end,
        }
    };
    if run == Run::Scheduler {
        let took = started.elapsed().as_micros() as u64;
        if let Some(start) = call_start {
            PRODUCE_CALLS.record(took, start, accepted);
        }
        let percent = (took / 10).clamp(1, 100) as i32;
        rustler::schedule::consume_timeslice(env, percent);
    }
    let refs = if want_refs {
        // SAFETY: live env; the refs are terms of this env (the first `accepted` are the
        // accepted messages').
        unsafe { Term::new(env, rustler::sys::enif_make_list_from_array(env.as_c_arg(), s.refs.as_ptr(), accepted as u32)) }
    } else {
        accepted.encode(env)
    };
    Ok(Some(match end {
        ChunkEnd::Done => (atoms::ok(), refs).encode(env),
        ChunkEnd::More(rest) => (atoms::more(), refs, rest).encode(env),
        ChunkEnd::Refused(e, rest) => (atoms::error(), reason(env, &e), refs, rest).encode(env),
        ChunkEnd::Bad(b, rest) => (atoms::error(), (atoms::badarg(), b.atom()), refs, rest).encode(env),
        // Produced so far returned first; the next call starts with the heavy message.
        ChunkEnd::Heavy(_) if accepted == 0 => return Ok(None),
        ChunkEnd::Heavy(rest) => (atoms::more(), refs, rest).encode(env),
    }))
}

/// Whether `list` is a proper list or longer than `n` cells.
fn proper_for(mut list: Term, n: usize) -> bool {
    for _ in 0..n {
        match list.list_get_cell() {
            Ok((_, tail)) => list = tail,
            Err(_) => return list.is_empty_list(),
        }
    }
    true
}

/// Decodes up to `size` messages from `messages`, puts what their reports need into one
/// batch env (one copy: its fixed cost is larger than what each message adds) and hands
/// them to librdkafka. Returns how many were accepted and how the chunk ended. MsgRefs
/// are appended to `s.refs` (the accepted ones first); the rest of the scratch is this
/// chunk's.
fn produce_chunk<'a>(
    env: Env<'a>,
    res: &ProducerRes,
    topic: &[u8],
    (messages, size, budget): (Term<'a>, usize, usize),
    (sync, reply): (bool, Term<'a>),
    (want_refs, save_refs): (bool, bool),
    s: &mut Scratch,
) -> (usize, ChunkEnd<'a>) {
    s.clear_chunk();
    let mut keep = Keep::new();
    if sync {
        keep.reply = Reply::Sync(keep.copy_in(reply.as_c_arg()));
    }
    let mut rest = messages;
    let mut bad: Option<Bad> = None;
    let mut budget = budget;
    while s.kept.len() < size {
        let Ok((head, tail)) = rest.list_get_cell() else { break };
        let i = s.kept.len();
        // A binary alone (a value with a null key) is the commonest form: no decoding.
        let given_ref = if head.is_binary() {
            s.kept.push(head.as_c_arg());
            None
        } else {
            let d = match decode::message(head, &mut budget) {
                Ok(d) => d,
                Err(b) => {
                    bad = Some(b);
                    break;
                }
            };
            let start = s.headers.len();
            s.headers.extend(d.headers.iter().map(|(k, v)| (unbound(k.as_slice()), v.as_ref().map(|v| unbound(v.as_slice())))));
            let value = d.value.map(|v| v.as_c_arg());
            s.kept.push(decode::kept_term(value, d.binary));
            s.decoded.push((i, Pending {
                partition: d.partition,
                key: d.key.as_ref().map(|k| unbound(k.as_slice())),
                headers: (start, s.headers.len() - start),
                timestamp: d.timestamp,
                value,
                is_binary: d.binary,
                bytes: None,
            }));
            d.msg_ref
        };
        if want_refs {
            let r = given_ref.unwrap_or_else(new_ref);
            s.refs.push(r.get().encode(env).as_c_arg());
            if save_refs {
                s.saved_refs.push(r);
            }
        }
        rest = tail;
    }
    let mut n = s.kept.len();
    let mut elements: &[ErlNifTerm] = &[];
    if n > 0 {
        let all = keep.copy_in(decode::tuple(env, &s.kept));
        elements = keep.elements(all);
        // An iolist value is flattened in the env now: one that is not iodata after all
        // is refused like any bad message, with what came before it produced.
        for (i, m) in &mut s.decoded {
            match decode::kept_in_env(&keep, elements[*i], m.value, m.is_binary) {
                Ok(bytes) => m.bytes = bytes,
                Err(b) => {
                    bad = Some(b);
                    n = *i;
                    rest = nth_cell(messages, n);
                    break;
                }
            }
        }
        keep.save_tuple(all, std::mem::take(&mut s.saved_refs));
    }
    let reader = keep.reader();
    // (A message without a timestamp is stamped once per call by the core.)
    let (decoded, headers) = (&s.decoded, &s.headers);
    let mut next = 0;
    // SAFETY: every value slice points into `keep`'s env, which the batch keeps alive
    // until the last report; `reader` reads that env while the batch is alive (the
    // messages not produced yet hold it).
    let outcome = unsafe {
        res.producer.shared().produce_with(keep, n, |i| {
            // (Called once per message, in order: `next` is the next decoded one.)
            match decoded.get(next) {
                Some((j, m)) if *j == i => {
                    next += 1;
                    OutMessage {
                        topic,
                        partition: m.partition,
                        key: m.key,
                        value: m.bytes,
                        headers: &headers[m.headers.0..m.headers.0 + m.headers.1],
                        timestamp: m.timestamp,
                    }
                }
                // A bare binary: the env's copy of it is element i.
                _ => OutMessage { topic, partition: -1, key: None, value: reader.bytes(elements[i], true), headers: &[], timestamp: 0 },
            }
        })
    };
    let end = match (outcome.error, bad) {
        (Some(e), _) => ChunkEnd::Refused(e, nth_cell(messages, outcome.accepted)),
        // Over what is left of the chunk's budget: in the next chunk, or alone too heavy.
        (None, Some(Bad::Heavy)) if n == 0 => ChunkEnd::Heavy(rest),
        (None, Some(Bad::Heavy)) => ChunkEnd::More(rest),
        (None, Some(b)) => ChunkEnd::Bad(b, rest),
        (None, None) if rest.is_empty_list() => ChunkEnd::Done,
        _ => ChunkEnd::More(rest),
    };
    (outcome.accepted, end)
}

/// The list cell `n` cells after `list` (a chunk's message `n`; the cells were walked
/// already).
fn nth_cell(list: Term, n: usize) -> Term {
    let mut cell = list;
    for _ in 0..n {
        match cell.list_get_cell() {
            Ok((_, tail)) => cell = tail,
            Err(_) => break,
        }
    }
    cell
}

/// `producer_produce` for a list of one message, with the same replies; `None` when it
/// is more work than `budget` (nothing was produced).
fn single_reply<'a>(env: Env<'a>, res: &ProducerRes, topic: &[u8], head: Term<'a>, messages: Term<'a>, want_refs: bool, budget: usize) -> Option<Term<'a>> {
    let refused = |reason: Term<'a>| {
        let none = if want_refs { Vec::<Term>::new().encode(env) } else { 0.encode(env) };
        (atoms::error(), reason, none, messages).encode(env)
    };
    let d = match decode::message(head, &mut budget.clone()) {
        Ok(d) => d,
        Err(Bad::Heavy) => return None,
        Err(b) => return Some(refused((atoms::badarg(), b.atom()).encode(env))),
    };
    Some(match produce_single(env, res, topic, d, want_refs) {
        (Ok(()), Some(r)) => (atoms::ok(), Term::list_new_empty(env).list_prepend(r)).encode(env),
        (Ok(()), None) => (atoms::ok(), 1).encode(env),
        (Err(OpenError::Fill(b)), _) => refused((atoms::badarg(), b.atom()).encode(env)),
        (Err(OpenError::Kafka(e)), _) => refused(reason(env, &e)),
    })
}

/// `(Res, Topic, Partition, Key, Value, Headers, Timestamp) -> {ok, MsgRef} | Error`:
/// `produce/4..7` in one call with nothing to build or take apart. Any failure (bad
/// argument, queue full, stopped...) answers `retry`: the caller then takes the general
/// path, which reports it (and applies the overflow strategy).
///
/// Registered by hand ([`producer_send_nif`]), not with `#[rustler::nif]`: rustler's
/// generated wrapper collects a call's arguments into a `Vec` (an allocation and a free
/// per message on this, the hottest NIF).
#[allow(clippy::too_many_arguments)]
fn producer_send<'a>(
    env: Env<'a>,
    res: ProducerRef<'a>,
    topic: rustler::Binary<'a>,
    partition: Term<'a>,
    key: Term<'a>,
    value: Term<'a>,
    headers: Term<'a>,
    timestamp: Term<'a>,
) -> Term<'a> {
    let res = res.0;
    // (A message too heavy for a scheduler takes the general path: `retry`.)
    match decode::fields(partition, key, value, headers, timestamp, &mut decode::WORK_BUDGET.clone()) {
        Ok(d) => match produce_single(env, res, topic.as_slice(), d, true) {
            (Ok(()), Some(r)) => (atoms::ok(), r).encode(env),
            _ => atoms::retry().encode(env),
        },
        Err(_) => atoms::retry().encode(env),
    }
}

/// The C entry of `producer_send/7` (see [`producer_send`]): a bad resource or topic is
/// `badarg`, as rustler's wrapper answers.
unsafe extern "C" fn producer_send_nif(env: *mut ErlNifEnv, argc: std::ffi::c_int, argv: *const ErlNifTerm) -> ErlNifTerm {
    // SAFETY: the VM's call of a NIF.
    unsafe {
        raw_nif::<7>(env, argc, argv, |env, [res, topic, partition, key, value, headers, timestamp]| {
            Ok(producer_send(env, res.decode()?, topic.decode()?, partition, key, value, headers, timestamp))
        })
    }
}

rustler::codegen_runtime::inventory::submit!(rustler::Nif {
    name: c"producer_send".as_ptr(),
    arity: 7,
    flags: 0,
    raw_func: producer_send_nif,
});

/// One message reported to the owner: it takes a slot of this thread's open batch
/// instead of a batch of its own (see erlkaf_core::open). Returns the MsgRef (when asked
/// for) with the outcome.
fn produce_single<'a>(
    env: Env<'a>,
    res: &ProducerRes,
    topic: &[u8],
    d: decode::Decoded<'a>,
    want_ref: bool,
) -> (Result<(), OpenError<Bad>>, Option<Term<'a>>) {
    // A message replayed from the disk spill keeps the ref it was given.
    let msg_ref = want_ref.then(|| d.msg_ref.unwrap_or_else(new_ref));
    let kept_ref = msg_ref.filter(|_| res.keep_refs);
    let headers: SmallVec<[Header; 4]> =
        d.headers.iter().map(|(k, v)| (k.as_slice(), v.as_ref().map(|v| v.as_slice()))).collect();
    let key = d.key.as_ref().map(|k| k.as_slice());
    let out = OutMessage { topic, partition: d.partition, key, value: None, headers: &headers, timestamp: d.timestamp };
    // SAFETY: the value returned by the fill closure points into the open batch's env,
    // which the ledger keeps until the message's report.
    let r = unsafe {
        res.producer.shared().produce_open(&out, || Keep::with_slots(erlkaf_core::open::CAPACITY), |keep, i| {
            let kept = decode::keep_one(keep, d.value, d.binary, kept_ref)?;
            keep.save(i, kept.saved);
            Ok(kept.bytes)
        })
    };
    (r, msg_ref.map(|r| r.get().encode(env)))
}

/// A fresh MsgRef (see erlkaf_core::msgref).
fn new_ref() -> NonZeroU64 {
    NonZeroU64::new(erlkaf_core::msgref::take(1)).expect("MsgRefs start above 0")
}

/// `(Res, TimeoutMs, Tag) -> ok`; later `{erlkaf_flush, Tag, ok | {error, timed_out}}` is
/// sent to the caller. The flush runs on a thread of its own.
#[rustler::nif]
fn producer_flush<'a>(env: Env<'a>, res: ResourceArc<ProducerRes>, timeout_ms: u32, tag: Term<'a>) -> Term<'a> {
    let timeout = Duration::from_millis(timeout_ms as u64);
    reply_later(env, "flush", atoms::erlkaf_flush(), tag, move || res.producer.shared().flush(timeout), |env, ()| {
        atoms::ok().encode(env)
    })
}

/// `(Res, FlushTimeoutMs) -> ok | {error, already_stopped}`: flush, purge what is left
/// (error reports), stop; the owner gets `{erlkaf_stopped, Report}` when done.
#[rustler::nif]
fn producer_stop<'a>(env: Env<'a>, res: ResourceArc<ProducerRes>, timeout_ms: u32) -> Term<'a> {
    if res.producer.shared().is_closed() {
        return (atoms::error(), atoms::client_stopped()).encode(env);
    }
    let res2 = res.clone();
    erlkaf_core::reaper::run("stop", move || {
        res2.producer.shutdown(Duration::from_millis(timeout_ms as u64));
    });
    atoms::ok().encode(env)
}

/// `(Res, Id) -> {Reports, more | heavy | done}`: builds the next reports of the round
/// that `{erlkaf_dr_ready, Id}` announced (see `sink::Handover`); `heavy`: call
/// `producer_take_heavy_report/2` for the next one; `done`: none is left.
#[rustler::nif]
fn producer_take_reports<'a>(env: Env<'a>, res: ResourceArc<ProducerRes>, id: u64) -> Term<'a> {
    take(env, &res, id, false)
}

/// `(Res, Id) -> {Reports, more | heavy | done}`: the next report alone, too much copying
/// for a scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn producer_take_heavy_report<'a>(env: Env<'a>, res: ResourceArc<ProducerRes>, id: u64) -> Term<'a> {
    take(env, &res, id, true)
}

fn take<'a>(env: Env<'a>, res: &ProducerRes, id: u64, heavy: bool) -> Term<'a> {
    let (reports, left) = match res.handover.as_ref() {
        Some(h) => take_reports(h, env, id, heavy),
        None => (Vec::new(), Left::Nothing),
    };
    let left = match left {
        Left::Nothing => atoms::done(),
        Left::More => atoms::more(),
        Left::Heavy => atoms::heavy(),
    };
    (reports, left).encode(env)
}

/// `(Res) -> integer()`: messages and requests librdkafka still holds.
#[rustler::nif]
fn producer_outq_len(res: ResourceArc<ProducerRes>) -> i32 {
    res.producer.shared().outq_len()
}

/// `(N) -> First`: N fresh MsgRefs, First to First + N - 1 (for messages the Erlang side
/// takes in before any reaches the NIF: the disk spill).
#[rustler::nif]
fn producer_msg_refs(n: u32) -> NifResult<u64> {
    if n == 0 {
        return Err(rustler::Error::BadArg);
    }
    Ok(erlkaf_core::msgref::take(n as u64))
}
