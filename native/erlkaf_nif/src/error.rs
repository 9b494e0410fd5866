//! The one place where core errors become terms: snake_case atoms named after
//! librdkafka's error names, or `{Tag, Detail}` tuples.

use crate::atoms;
use erlkaf_core::{Error, ErrorCode};
use rustler::{Atom, Encoder, Env, Term};

/// An error code as an atom (`queue_full`, `msg_size_too_large`, ...).
pub fn code_atom<'a>(env: Env<'a>, code: ErrorCode) -> Term<'a> {
    match Atom::from_str(env, code.name()) {
        Ok(a) => a.encode(env),
        Err(_) => code.0.encode(env),
    }
}

/// A core error as the reason of an `{error, Reason}`.
pub fn reason<'a>(env: Env<'a>, e: &Error) -> Term<'a> {
    match e {
        Error::InvalidConfig(k, m) => (atoms::invalid_config(), k.as_str(), m.as_str()).encode(env),
        Error::ClientCreation(m) => (atoms::client_creation(), m.as_str()).encode(env),
        Error::TopicExists => atoms::already_exists().encode(env),
        Error::InvalidTopic => atoms::invalid_topic().encode(env),
        Error::ClientStopped => atoms::client_stopped().encode(env),
        Error::Kafka(code) => code_atom(env, *code),
        Error::MockCluster(m) => (atoms::mock_cluster(), m.as_str()).encode(env),
        // {Code, #{message, fatal, retriable, abortable}}: what to do next is in the flags.
        Error::Txn(t) => {
            let flags = [
                (atoms::message().encode(env), t.message.as_str().encode(env)),
                (atoms::fatal().encode(env), t.fatal.encode(env)),
                (atoms::retriable().encode(env), t.retriable.encode(env)),
                (atoms::abortable().encode(env), t.abortable.encode(env)),
            ];
            (code_atom(env, t.code), Term::map_from_pairs(env, &flags).expect("distinct keys")).encode(env)
        }
        _ => format!("{e}").encode(env),
    }
}

/// `{error, Reason}`.
pub fn error_tuple<'a>(env: Env<'a>, e: &Error) -> Term<'a> {
    (atoms::error(), reason(env, e)).encode(env)
}
