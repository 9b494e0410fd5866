//! Blocking calls (flush, commit, committed offsets) run on a thread of their own and
//! answer the calling process with one message, so that no scheduler waits on Kafka.

use crate::atoms;
use crate::error::reason;
use rustler::{Atom, Encoder, Env, OwnedEnv, Term};

/// Runs `job` on a new thread; the caller then gets `{Tag, CallerTag, Result}` where Result
/// is `ok(env, value)` or `{error, Reason}`. Returns `ok`, or `{error, Why}` when no thread
/// could be started.
pub fn reply_later<'a, T: Send + 'static>(
    env: Env<'a>,
    name: &str,
    tag: Atom,
    caller_tag: Term<'a>,
    job: impl FnOnce() -> erlkaf_core::Result<T> + Send + 'static,
    ok: impl for<'b> FnOnce(Env<'b>, T) -> Term<'b> + Send + 'static,
) -> Term<'a> {
    let caller = env.pid();
    let mut msg_env = OwnedEnv::new();
    let saved = msg_env.save(caller_tag);
    let spawned = std::thread::Builder::new().name(format!("erlkaf-{name}")).spawn(move || {
        let r = job();
        let _ = msg_env.send_and_clear(&caller, |env| {
            let result = match r {
                Ok(v) => ok(env, v),
                Err(e) => (atoms::error(), reason(env, &e)).encode(env),
            };
            (tag, saved.load(env), result)
        });
    });
    match spawned {
        Ok(_) => atoms::ok().encode(env),
        Err(e) => (atoms::error(), e.to_string()).encode(env),
    }
}
