//! Producer NIFs: `producer_new`, `producer_create_topic`, `producer_produce`,
//! `producer_flush`, `producer_stop`, `producer_outq_len`.

use crate::atoms;
use crate::decode::{self, Bad};
use crate::error::{error_tuple, reason};
use crate::reply::reply_later;
use crate::keep::{Keep, Reply, Saved};
use crate::resource::ProducerRes;
use crate::sink::{NifSink, ReportMode};
use erlkaf_core::config::Properties;
use erlkaf_core::producer::{OpenError, OutMessage, Producer};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use smallvec::SmallVec;
use std::time::{Duration, Instant};

/// Messages handled by one `producer_produce` call at most; the call also returns early
/// after TIME_SLICE so that it never holds a scheduler for ~1 ms.
const MAX_PER_CALL: usize = 4096;
const TIME_SLICE: Duration = Duration::from_micros(600);

/// `(ClientName, [{Name, Value}], Owner, all | errors | none) -> {ok, Res} | {error, Reason}`:
/// every report, failures only, or failures only without their MsgRef (no callback).
/// Dirty IO: `rd_kafka_new` starts threads and resolves nothing, but can take milliseconds.
#[rustler::nif(schedule = "DirtyIo")]
fn producer_new<'a>(env: Env<'a>, name: String, props: Vec<(String, String)>, owner: LocalPid, mode: Atom) -> Term<'a> {
    let keep_refs = mode != atoms::none();
    let mode = if mode == atoms::all() { ReportMode::All } else { ReportMode::Errors };
    let sink = Box::new(NifSink::new(owner, mode));
    match Producer::new(&name, &Properties(props), sink) {
        Ok(p) => (atoms::ok(), ResourceArc::new(ProducerRes { producer: p, keep_refs })).encode(env),
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
#[rustler::nif]
fn producer_produce<'a>(
    env: Env<'a>,
    res: ResourceArc<ProducerRes>,
    topic: Term<'a>,
    messages: Term<'a>,
    reply: Term<'a>,
    want_refs: bool,
) -> NifResult<Term<'a>> {
    let topic = topic.decode_as_binary()?;
    let sync = reply.get_type() == rustler::TermType::Ref;
    if let (false, Ok((head, tail))) = (sync, messages.list_get_cell()) {
        if tail.is_empty_list() {
            return Ok(single_reply(env, &res, topic.as_slice(), head, messages, want_refs));
        }
    }
    let started = Instant::now();
    let mut keep = Keep::new();
    if sync {
        keep.reply = Reply::Sync(keep.copy_in(reply.as_c_arg()));
    }
    // Walk the list: decode up to MAX_PER_CALL messages, remembering each tail.
    let mut decoded: SmallVec<[(decode::Decoded, decode::KeptValue); 2]> = SmallVec::new();
    let mut tails: SmallVec<[Term<'a>; 2]> = SmallVec::new();
    let mut rest = messages;
    let mut bad: Option<Bad> = None;
    while decoded.len() < MAX_PER_CALL {
        let Ok((head, tail)) = rest.list_get_cell() else { break };
        match decode::message(head).and_then(|d| Ok((decode::value_in(&keep, d.value)?, d))) {
            Ok((kept, d)) => {
                tails.push(rest);
                decoded.push((d, kept));
                rest = tail;
            }
            Err(b) => {
                bad = Some(b);
                break;
            }
        }
        if decoded.len() % 64 == 0 && started.elapsed() > TIME_SLICE {
            break;
        }
    }
    if bad.is_none() && decoded.len() < MAX_PER_CALL && !rest.is_list() {
        return Err(rustler::Error::BadArg); // improper list
    }
    // Refs are made in the caller's env; the batch env gets a copy only when reports
    // will need it (a sync reply always does).
    let refs: SmallVec<[Term<'a>; 2]> =
        if want_refs { decoded.iter().map(|(d, _)| d.msg_ref.unwrap_or_else(|| env.make_ref().into())).collect() } else { SmallVec::new() };
    let save_refs = want_refs && (res.keep_refs || matches!(keep.reply, Reply::Sync(_)));
    let saved: SmallVec<[Saved; 2]> = decoded
        .iter()
        .enumerate()
        .map(|(i, (_, (_, term)))| Saved { msg_ref: save_refs.then(|| keep.copy_in(refs[i].as_c_arg())), value: *term })
        .collect();
    keep.set_saved(saved.into_iter());
    let headers: SmallVec<[Vec<(&[u8], Option<&[u8]>)>; 2]> =
        decoded.iter().map(|(d, _)| header_slices(d).collect()).collect();
    // One clock read for the batch: librdkafka would read the wall clock for every
    // message without a timestamp (a tenth of the NIF's time in a profile).
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let out: SmallVec<[OutMessage; 2]> = decoded
        .iter()
        .zip(&headers)
        .map(|((d, (bytes, _)), h)| {
            let m = out_message(topic.as_slice(), d, *bytes, h);
            OutMessage { timestamp: if m.timestamp == 0 { now_ms } else { m.timestamp }, ..m }
        })
        .collect();
    let n = out.len();
    // SAFETY: every value slice points into `keep`'s env (decode::value), which the batch
    // keeps alive until the last report.
    let outcome = if n == 0 { None } else { Some(unsafe { res.producer.shared().produce(keep, &out) }) };
    let percent = (started.elapsed().as_micros() / 10).clamp(1, 100) as i32;
    rustler::schedule::consume_timeslice(env, percent);
    let ref_list = |k: usize| refs[..k].encode(env);
    let refs_out = |k: usize| if want_refs { ref_list(k) } else { k.encode(env) };
    match (outcome, bad) {
        (Some(o), _) if o.error.is_some() => {
            let e = o.error.unwrap();
            let rest_at = tails[o.accepted];
            Ok((atoms::error(), reason(env, &e), refs_out(o.accepted), rest_at).encode(env))
        }
        (_, Some(b)) => {
            let accepted = n;
            Ok((atoms::error(), (atoms::badarg(), b.atom()), refs_out(accepted), rest).encode(env))
        }
        (_, None) if rest.is_empty_list() => Ok((atoms::ok(), refs_out(n)).encode(env)),
        _ => Ok((atoms::more(), refs_out(n), rest).encode(env)),
    }
}

/// `producer_produce` for a list of one message, with the same replies.
fn single_reply<'a>(env: Env<'a>, res: &ProducerRes, topic: &[u8], head: Term<'a>, messages: Term<'a>, want_refs: bool) -> Term<'a> {
    let refused = |reason: Term<'a>| {
        let none = if want_refs { Vec::<Term>::new().encode(env) } else { 0.encode(env) };
        (atoms::error(), reason, none, messages).encode(env)
    };
    let d = match decode::message(head) {
        Ok(d) => d,
        Err(b) => return refused((atoms::badarg(), b.atom()).encode(env)),
    };
    match produce_single(env, res, topic, d, want_refs) {
        (Ok(()), Some(r)) => (atoms::ok(), Term::list_new_empty(env).list_prepend(r)).encode(env),
        (Ok(()), None) => (atoms::ok(), 1).encode(env),
        (Err(OpenError::Fill(b)), _) => refused((atoms::badarg(), b.atom()).encode(env)),
        (Err(OpenError::Kafka(e)), _) => refused(reason(env, &e)),
    }
}

fn header_slices<'d, 'a>(d: &'d decode::Decoded<'a>) -> impl Iterator<Item = (&'d [u8], Option<&'d [u8]>)> + use<'d, 'a> {
    d.headers.iter().map(|(k, v)| (k.as_slice(), v.as_ref().map(|v| v.as_slice())))
}

fn out_message<'m>(
    topic: &'m [u8],
    d: &'m decode::Decoded,
    value: Option<&'static [u8]>,
    headers: &'m [(&'m [u8], Option<&'m [u8]>)],
) -> OutMessage<'m> {
    OutMessage { topic, partition: d.partition, key: d.key.as_ref().map(|k| k.as_slice()), value, headers, timestamp: d.timestamp }
}

/// `(Res, Topic, Partition, Key, Value, Headers, Timestamp) -> {ok, MsgRef} | Error`:
/// `produce/4..7` in one call with nothing to build or take apart. Any failure (bad
/// argument, queue full, stopped...) answers `retry`: the caller then takes the general
/// path, which reports it (and applies the overflow strategy).
#[rustler::nif]
#[allow(clippy::too_many_arguments)]
fn producer_send<'a>(
    env: Env<'a>,
    res: ResourceArc<ProducerRes>,
    topic: rustler::Binary<'a>,
    partition: Term<'a>,
    key: Term<'a>,
    value: Term<'a>,
    headers: Term<'a>,
    timestamp: Term<'a>,
) -> Term<'a> {
    match decode::fields(partition, key, value, headers, timestamp) {
        Ok(d) => match produce_single(env, &res, topic.as_slice(), d, true) {
            (Ok(()), Some(r)) => (atoms::ok(), r).encode(env),
            _ => atoms::retry().encode(env),
        },
        Err(_) => atoms::retry().encode(env),
    }
}

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
    let msg_ref: Option<Term<'a>> = want_ref.then(|| env.make_ref().into());
    let save_ref = want_ref && res.keep_refs;
    let headers: SmallVec<[(&[u8], Option<&[u8]>); 4]> = header_slices(&d).collect();
    let out = out_message(topic, &d, None, &headers);
    // SAFETY: the value returned by the fill closure points into the open batch's env,
    // which the ledger keeps until the message's report.
    let r = unsafe {
        res.producer.shared().produce_open(&out, || Keep::with_slots(erlkaf_core::open::CAPACITY), |keep, i| {
            let (bytes, term) = decode::value_in(keep, d.value)?;
            keep.save(i, Saved { msg_ref: msg_ref.filter(|_| save_ref).map(|r| keep.copy_in(r.as_c_arg())), value: term });
            Ok(bytes)
        })
    };
    (r, msg_ref)
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

/// `(Res) -> integer()`: messages and requests librdkafka still holds.
#[rustler::nif]
fn producer_outq_len(res: ResourceArc<ProducerRes>) -> i32 {
    res.producer.shared().outq_len()
}
