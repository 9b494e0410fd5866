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
use crate::keep::Keep;
use rustler::types::map::MapIterator;
use rustler::{Atom, Binary, Term, TermType};

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
        }
    }
}

/// A decoded message. `value` is the caller's term (binary or list, `None`: null) until
/// [`value_in`] puts it into a batch env.
pub struct Decoded<'a> {
    pub partition: i32,
    pub key: Option<Binary<'a>>,
    pub value: Option<Term<'a>>,
    pub headers: Vec<(Binary<'a>, Option<Binary<'a>>)>,
    pub timestamp: i64,
    /// The MsgRef to use (a message replayed from the disk spill keeps the ref its
    /// producer was given); `None`: a new one.
    pub msg_ref: Option<Term<'a>>,
}

/// A value put into the batch env: its bytes (valid while the env lives) and, for a
/// binary, its term there (reports reuse it instead of copying bytes).
pub type KeptValue = (Option<&'static [u8]>, Option<rustler::sys::ErlNifTerm>);

fn is_undefined(t: Term) -> bool {
    t.get_type() == TermType::Atom && t == atoms::undefined().to_term(t.get_env())
}

/// Key bytes (librdkafka copies the key, so the caller's env is fine).
fn bytes_opt<'a>(t: Term<'a>, what: Bad) -> Result<Option<Binary<'a>>, Bad> {
    if is_undefined(t) {
        return Ok(None);
    }
    t.decode_as_binary().map(Some).map_err(|_| what)
}

/// Header name or value: binary, iolist, atom or integer.
fn header_part<'a>(t: Term<'a>) -> Result<Binary<'a>, Bad> {
    match t.get_type() {
        TermType::Atom => {
            let s = t.atom_to_string().map_err(|_| Bad::Headers)?;
            Ok(owned(t, s.as_bytes()))
        }
        TermType::Integer => {
            let i: i64 = t.decode().map_err(|_| Bad::Headers)?;
            Ok(owned(t, i.to_string().as_bytes()))
        }
        _ => t.decode_as_binary().map_err(|_| Bad::Headers),
    }
}

fn owned<'a>(t: Term<'a>, b: &[u8]) -> Binary<'a> {
    let mut o = rustler::OwnedBinary::new(b.len());
    o.as_mut_slice().copy_from_slice(b);
    Binary::from_owned(o, t.get_env())
}

fn headers<'a>(t: Term<'a>) -> Result<Vec<(Binary<'a>, Option<Binary<'a>>)>, Bad> {
    if is_undefined(t) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut push = |k: Term<'a>, v: Term<'a>| -> Result<(), Bad> {
        let val = if is_undefined(v) { None } else { Some(header_part(v)?) };
        out.push((header_part(k)?, val));
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

/// Value: binary, iolist (checked when it is flattened) or null.
fn value(t: Term) -> Result<Option<Term>, Bad> {
    if is_undefined(t) {
        return Ok(None);
    }
    if !t.is_binary() && t.get_type() != TermType::List {
        return Err(Bad::Value);
    }
    Ok(Some(t))
}

/// Puts a decoded value into the batch env (no byte copy for refc binaries).
pub fn value_in(keep: &Keep, v: Option<Term>) -> Result<KeptValue, Bad> {
    let Some(t) = v else { return Ok((None, None)) };
    let is_bin = t.is_binary();
    let copy = keep.copy_in(t.as_c_arg());
    let bytes = keep.bytes(copy, is_bin).ok_or(Bad::Value)?;
    Ok((Some(bytes), if is_bin { Some(copy) } else { None }))
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

/// Decodes the parts of one message (`produce/7`'s arguments).
pub fn fields<'a>(p: Term<'a>, k: Term<'a>, v: Term<'a>, h: Term<'a>, ts: Term<'a>) -> Result<Decoded<'a>, Bad> {
    Ok(Decoded {
        partition: partition(p)?,
        key: bytes_opt(k, Bad::Key)?,
        value: value(v)?,
        headers: headers(h)?,
        timestamp: timestamp(ts)?,
        msg_ref: None,
    })
}

/// Decodes one message (see the module doc for the forms).
pub fn message<'a>(t: Term<'a>) -> Result<Decoded<'a>, Bad> {
    let mut d = Decoded { partition: -1, key: None, value: None, headers: Vec::new(), timestamp: 0, msg_ref: None };
    match t.get_type() {
        TermType::Binary | TermType::List => {
            d.value = value(t)?;
        }
        TermType::Tuple => {
            let elems = rustler::types::tuple::get_tuple(t).map_err(|_| Bad::Message)?;
            match elems.as_slice() {
                [k, v] => {
                    d.key = bytes_opt(*k, Bad::Key)?;
                    d.value = value(*v)?;
                }
                [p, k, v, h, ts] => d = fields(*p, *k, *v, *h, *ts)?,
                [r, p, k, v, h, ts] if r.get_type() == TermType::Ref => {
                    d = fields(*p, *k, *v, *h, *ts)?;
                    d.msg_ref = Some(*r);
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
                d.key = bytes_opt(k, Bad::Key)?;
            }
            if let Some(v) = get(atoms::value()) {
                d.value = value(v)?;
            }
            if let Some(h) = get(atoms::headers()) {
                d.headers = headers(h)?;
            }
            if let Some(ts) = get(atoms::timestamp()) {
                d.timestamp = timestamp(ts)?;
            }
        }
        _ => return Err(Bad::Message),
    }
    Ok(d)
}
