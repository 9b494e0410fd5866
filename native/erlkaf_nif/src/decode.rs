//! Terms to produce requests. Nothing here allocates per message except header lists.
//!
//! Accepted message forms (see `erlkaf:produce_batch/3`):
//! - `Value` (binary or iolist): a value with a null key;
//! - `{Key, Value}`;
//! - `{Partition, Key, Value, Headers, Timestamp}` (what `produce/4..7` send);
//! - `{MsgRef, Partition, Key, Value, Headers, Timestamp}`: the same with the MsgRef to
//!   report it under (messages replayed from the disk spill);
//! - a map with any of `key`, `value`, `headers`, `partition`, `timestamp`.
//!
//! `undefined` is a null key or value. Headers are a list of `{Name, Value}` or a map;
//! names and values may be binaries, iolists, atoms or integers; a header value may be
//! `undefined` (null).

use crate::atoms;
use crate::keep::{Keep, Saved};
use rustler::types::map::MapIterator;
use rustler::sys::ErlNifTerm;
use rustler::{Atom, Binary, Env, Term, TermType};
use smallvec::SmallVec;
use std::num::NonZeroU64;

/// Which part of a message was wrong.
#[derive(Clone, Copy, Debug)]
pub enum Bad {
    /// The key.
    Key,
    /// The value.
    Value,
    /// The headers.
    Headers,
    /// The partition.
    Partition,
    /// The timestamp.
    Timestamp,
    /// The shape of the message.
    Message,
    /// Not an error: the message is more work than is left of the budget (see
    /// [`WORK_BUDGET`]); alone, more than a scheduler may do in one call (it is produced
    /// on a dirty scheduler).
    Heavy,
}

impl Bad {
    /// The atom naming the part.
    pub fn atom(self) -> Atom {
        match self {
            Bad::Key => atoms::key(),
            Bad::Value => atoms::value(),
            Bad::Headers => atoms::headers(),
            Bad::Partition => atoms::partition(),
            Bad::Timestamp => atoms::timestamp(),
            Bad::Message => atoms::message(),
            Bad::Heavy => atoms::message(),
        }
    }
}

/// A decoded message. `value` is the caller's term (binary or list, `None`: null) until
/// [`value_in`] puts it into a batch env.
pub struct Decoded<'a> {
    pub partition: i32,
    pub key: Option<Binary<'a>>,
    pub value: Option<Term<'a>>,
    /// The value is a binary (not an iolist).
    pub binary: bool,
    pub headers: Vec<(Binary<'a>, Option<Binary<'a>>)>,
    pub timestamp: i64,
    /// The MsgRef to use (a message replayed from the disk spill keeps the ref its
    /// producer was given); `None`: a new one.
    pub msg_ref: Option<NonZeroU64>,
}

/// A message's value put into the batch env: its bytes (valid while the env lives) and
/// what its report will find there.
pub struct Kept {
    pub bytes: Option<&'static [u8]>,
    pub saved: Saved,
}

/// Atoms are immediate terms: equal atoms are equal words (no call into the VM).
fn is_undefined(t: Term) -> bool {
    t.as_c_arg() == atoms::undefined().as_c_arg()
}

/// The work one chunk of a produce call may do on a scheduler for what is copied, in
/// units of about a nanosecond: a byte librdkafka copies (a key, a header) or the NIF
/// flattens (an iolist) is one, a list cell of an iolist CELL_COST (walked, then copied),
/// a header HEADER_COST (decoded, then allocated and added by librdkafka: ~200 ns each,
/// measured). A value that is one binary costs nothing: it is not copied. ~0.25 ms.
pub const WORK_BUDGET: usize = 256 * 1024;
const CELL_COST: usize = 16;
const HEADER_COST: usize = 256;

/// Takes `cost` from `budget`: `Bad::Heavy` when less is left.
fn take(budget: &mut usize, cost: usize) -> Result<(), Bad> {
    *budget = budget.checked_sub(cost).ok_or(Bad::Heavy)?;
    Ok(())
}

/// Charges flattening `t` to `budget` when it is an iolist (a binary is not flattened).
fn charge(t: Term, budget: &mut usize) -> Result<(), Bad> {
    if !t.is_list() {
        return Ok(());
    }
    let cost = iolist_cost(t, *budget).ok_or(Bad::Heavy)?;
    take(budget, cost)
}

/// The bytes of `t` (a binary, or an iolist flattened into the caller's env), for
/// librdkafka to copy: both charged to `budget`.
fn copied<'a>(t: Term<'a>, budget: &mut usize) -> Result<Option<Binary<'a>>, Bad> {
    charge(t, budget)?;
    let Ok(b) = t.decode_as_binary() else { return Ok(None) };
    take(budget, b.len())?;
    Ok(Some(b))
}

/// What flattening the list `t` costs (see WORK_BUDGET), `None` once it is over
/// `max`: the walk stops there, so it is bounded too. A list that is not iodata costs
/// what was walked (its flattening refuses it).
fn iolist_cost(t: Term, max: usize) -> Option<usize> {
    let bytes = |b: Term| Binary::from_term(b).map_or(0, |b| b.len());
    let mut cost = 0;
    let mut lists: SmallVec<[Term; 8]> = SmallVec::new();
    lists.push(t);
    while let Some(mut list) = lists.pop() {
        loop {
            let Ok((head, tail)) = list.list_get_cell() else {
                // [] or the binary tail of an improper iolist (or not iodata).
                cost += bytes(list);
                break;
            };
            cost += CELL_COST;
            if head.is_list() {
                lists.push(head);
            } else if head.is_binary() {
                cost += bytes(head);
            } else {
                cost += 1;
            }
            if cost > max {
                return None;
            }
            list = tail;
        }
        if cost > max {
            return None;
        }
    }
    Some(cost)
}

/// Key bytes (librdkafka copies the key, so the caller's env is fine).
fn bytes_opt<'a>(t: Term<'a>, what: Bad, budget: &mut usize) -> Result<Option<Binary<'a>>, Bad> {
    if is_undefined(t) {
        return Ok(None);
    }
    copied(t, budget)?.map(Some).ok_or(what)
}

/// Header name or value: binary, iolist, atom or integer.
fn header_part<'a>(t: Term<'a>, budget: &mut usize) -> Result<Binary<'a>, Bad> {
    match t.get_type() {
        TermType::Atom => {
            let s = t.atom_to_string().map_err(|_| Bad::Headers)?;
            Ok(owned(t, s.as_bytes()))
        }
        TermType::Integer => {
            let i: i64 = t.decode().map_err(|_| Bad::Headers)?;
            Ok(owned(t, i.to_string().as_bytes()))
        }
        _ => copied(t, budget)?.ok_or(Bad::Headers),
    }
}

fn owned<'a>(t: Term<'a>, b: &[u8]) -> Binary<'a> {
    let mut o = rustler::OwnedBinary::new(b.len());
    o.as_mut_slice().copy_from_slice(b);
    Binary::from_owned(o, t.get_env())
}

fn headers<'a>(t: Term<'a>, budget: &mut usize) -> Result<Vec<(Binary<'a>, Option<Binary<'a>>)>, Bad> {
    if is_undefined(t) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut push = |k: Term<'a>, v: Term<'a>| -> Result<(), Bad> {
        take(budget, HEADER_COST)?;
        let val = if is_undefined(v) { None } else { Some(header_part(v, budget)?) };
        out.push((header_part(k, budget)?, val));
        Ok(())
    };
    match t.get_type() {
        TermType::List => {
            for item in t.into_list_iterator().map_err(|_| Bad::Headers)? {
                let (k, v): (Term, Term) = item.decode().map_err(|_| Bad::Headers)?;
                push(k, v)?;
            }
        }
        TermType::Map => {
            for (k, v) in MapIterator::new(t).ok_or(Bad::Headers)? {
                push(k, v)?;
            }
        }
        _ => return Err(Bad::Headers),
    }
    Ok(out)
}

/// Value: binary, iolist (checked when it is flattened) or null; and whether it is a
/// binary.
fn value<'a>(t: Term<'a>, budget: &mut usize) -> Result<(Option<Term<'a>>, bool), Bad> {
    if is_undefined(t) {
        Ok((None, false))
    } else if t.is_binary() {
        Ok((Some(t), true))
    } else if t.is_list() {
        charge(t, budget)?;
        Ok((Some(t), false))
    } else {
        Err(Bad::Value)
    }
}

/// What a message's report needs from the batch env, as a term of the caller's env: the
/// value when it is a binary (the report shares it), else `undefined` (the report copies
/// librdkafka's bytes). `value` and `binary` are what [`message`] decoded.
pub fn kept_term(value: Option<ErlNifTerm>, binary: bool) -> ErlNifTerm {
    match value {
        Some(v) if binary => v,
        _ => atoms::undefined().as_c_arg(),
    }
}

/// The value's bytes in the batch env, from `kept`: the env's copy of [`kept_term`]'s
/// term (made with the same arguments). An iolist value is copied into the env and
/// flattened there; not iodata: `Bad::Value`.
pub fn kept_in_env(keep: &Keep, kept: ErlNifTerm, value: Option<ErlNifTerm>, binary: bool) -> Result<Option<&'static [u8]>, Bad> {
    match (value, binary) {
        (Some(_), true) => keep.bytes(kept, true).map(Some).ok_or(Bad::Value),
        (Some(v), false) => keep.bytes(keep.copy_in(v), false).map(Some).ok_or(Bad::Value),
        (None, _) => Ok(None),
    }
}

/// [`kept_term`] and [`kept_in_env`] for one message (`undefined` is not copied).
pub fn keep_one(keep: &Keep, value: Option<Term>, binary: bool, msg_ref: Option<NonZeroU64>) -> Result<Kept, Bad> {
    let value = value.map(|v| v.as_c_arg());
    let term = kept_term(value, binary);
    let kept = if term == atoms::undefined().as_c_arg() { term } else { keep.copy_in(term) };
    let bytes = kept_in_env(keep, kept, value, binary)?;
    Ok(Kept { bytes, saved: Saved { value: (value.is_some() && binary).then_some(kept), msg_ref } })
}

/// A MsgRef given in a message (a positive integer that fits 64 bits).
fn msg_ref(t: Term) -> Result<NonZeroU64, Bad> {
    t.decode::<u64>().ok().and_then(NonZeroU64::new).ok_or(Bad::Message)
}

/// A tuple of `elems` (terms of `env`) in `env`.
pub fn tuple(env: Env, elems: &[ErlNifTerm]) -> ErlNifTerm {
    // SAFETY: live env; the elements are terms of this env.
    unsafe { rustler::sys::enif_make_tuple_from_array(env.as_c_arg(), elems.as_ptr(), elems.len() as u32) }
}

fn partition(t: Term) -> Result<i32, Bad> {
    match t.decode::<i64>() {
        Ok(p) if (-1..=i32::MAX as i64).contains(&p) => Ok(p as i32),
        _ => Err(Bad::Partition),
    }
}

fn timestamp(t: Term) -> Result<i64, Bad> {
    if is_undefined(t) {
        return Ok(0);
    }
    match t.decode::<i64>() {
        Ok(ts) if ts >= 0 => Ok(ts),
        _ => Err(Bad::Timestamp),
    }
}

/// Decodes the parts of one message (`produce/7`'s arguments); what is copied is charged
/// to `budget` (see [`WORK_BUDGET`]).
pub fn fields<'a>(p: Term<'a>, k: Term<'a>, v: Term<'a>, h: Term<'a>, ts: Term<'a>, budget: &mut usize) -> Result<Decoded<'a>, Bad> {
    let (value, binary) = value(v, budget)?;
    Ok(Decoded {
        partition: partition(p)?,
        key: bytes_opt(k, Bad::Key, budget)?,
        value,
        binary,
        headers: headers(h, budget)?,
        timestamp: timestamp(ts)?,
        msg_ref: None,
    })
}

/// Decodes one message (see the module doc for the forms); what is copied is charged
/// to `budget` (see [`WORK_BUDGET`]).
pub fn message<'a>(t: Term<'a>, budget: &mut usize) -> Result<Decoded<'a>, Bad> {
    let mut d = Decoded { partition: -1, key: None, value: None, binary: false, headers: Vec::new(), timestamp: 0, msg_ref: None };
    if t.is_binary() {
        d.value = Some(t);
        d.binary = true;
        return Ok(d);
    }
    match t.get_type() {
        TermType::Binary | TermType::List => {
            (d.value, d.binary) = value(t, budget)?;
        }
        TermType::Tuple => {
            let elems = rustler::types::tuple::get_tuple(t).map_err(|_| Bad::Message)?;
            match elems.as_slice() {
                [k, v] => {
                    d.key = bytes_opt(*k, Bad::Key, budget)?;
                    (d.value, d.binary) = value(*v, budget)?;
                }
                [p, k, v, h, ts] => d = fields(*p, *k, *v, *h, *ts, budget)?,
                [r, p, k, v, h, ts] => {
                    d = fields(*p, *k, *v, *h, *ts, budget)?;
                    d.msg_ref = Some(msg_ref(*r)?);
                }
                _ => return Err(Bad::Message),
            }
        }
        TermType::Map => {
            let env = t.get_env();
            let get = |a: Atom| t.map_get(a.to_term(env)).ok();
            if let Some(p) = get(atoms::partition()) {
                d.partition = partition(p)?;
            }
            if let Some(k) = get(atoms::key()) {
                d.key = bytes_opt(k, Bad::Key, budget)?;
            }
            if let Some(v) = get(atoms::value()) {
                (d.value, d.binary) = value(v, budget)?;
            }
            if let Some(h) = get(atoms::headers()) {
                d.headers = headers(h, budget)?;
            }
            if let Some(ts) = get(atoms::timestamp()) {
                d.timestamp = timestamp(ts)?;
            }
        }
        _ => return Err(Bad::Message),
    }
    Ok(d)
}
