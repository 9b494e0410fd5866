//! erlkaf_nif: the thin rustler layer of erlkaf. Each NIF decodes terms, makes one call
//! into erlkaf_core and encodes the result; drained events become messages in `sink`.
//! NIF names are `<domain>_<verb>` and match the stubs in `src/erlkaf_nif.erl`.

mod atoms;
mod consumer;
mod decode;
mod error;
mod keep;
mod mock;
mod producer;
mod query;
mod reply;
mod resource;
mod sink;

use rustler::{Encoder, Env, Term};

/// `() -> #{live_batches, outstanding, double_releases, live_clients, live_mocks, reapers,
/// librdkafka_version, allocator, longest_produce_call_us, longest_produce_cpu_us,
/// produce_calls_over_1ms, produce_calls_waited_over_1ms, produce_call_waits,
/// produce_cpu_ns, produce_messages, fast_producer_decode, process_cpu_ns,
/// reports_reclaimed}`:
/// counters for leak tests, diagnostics and the benchmarks (`longest_produce_call_us` to
/// `produce_messages`: `producer_produce` calls, i.e. produce of a list, since
/// `nif_call_times_reset/0`, which also starts their timing: off until then, it costs a
/// call ~2 µs of system calls; `fast_producer_decode`: whether the produce NIFs find the
/// producer without rustler's lookup, see resource.rs; `reports_reclaimed`: delivery
/// reports the client built itself after its producer process left them, see sink.rs).
#[rustler::nif]
fn nif_counters(env: Env) -> Term {
    use std::sync::atomic::Ordering::SeqCst;
    let g = erlkaf_core::ledger::global();
    let longest = producer::produce_calls();
    let pairs = [
        (atoms::live_batches().encode(env), g.live_batches().encode(env)),
        (atoms::outstanding().encode(env), g.outstanding().encode(env)),
        (atoms::double_releases().encode(env), g.double_releases.load(SeqCst).encode(env)),
        (atoms::live_clients().encode(env), erlkaf_core::client::live_clients().encode(env)),
        (atoms::live_mocks().encode(env), erlkaf_core::mock::live_clusters().encode(env)),
        (atoms::reapers().encode(env), erlkaf_core::reaper::running().encode(env)),
        (atoms::librdkafka_version().encode(env), erlkaf_core::client::librdkafka_version().encode(env)),
        (atoms::allocator().encode(env), allocator().encode(env)),
        (atoms::longest_produce_call_us().encode(env), longest.longest_wall_us.encode(env)),
        (atoms::longest_produce_cpu_us().encode(env), longest.longest_cpu_us.encode(env)),
        (atoms::produce_calls_over_1ms().encode(env), longest.over_1ms.encode(env)),
        (atoms::produce_calls_waited_over_1ms().encode(env), longest.waited_over_1ms.encode(env)),
        (atoms::produce_call_waits().encode(env), longest.waits.encode(env)),
        (atoms::produce_cpu_ns().encode(env), longest.total_cpu_ns.encode(env)),
        (atoms::produce_messages().encode(env), longest.messages.encode(env)),
        (atoms::fast_producer_decode().encode(env), resource::fast_decode_in_use().encode(env)),
        (atoms::process_cpu_ns().encode(env), erlkaf_core::cputime::process_ns().encode(env)),
        (atoms::reports_reclaimed().encode(env), sink::REPORTS_RECLAIMED.load(SeqCst).encode(env)),
    ];
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}

/// `() -> ok`: the `producer_produce` call figures start over, and the calls are timed
/// from now on (see `nif_counters/0`).
#[rustler::nif]
fn nif_call_times_reset() -> rustler::Atom {
    producer::reset_produce_calls();
    atoms::ok()
}

/// `(client | topic, [{Name, Value}]) -> ok | {error, {invalid_config, Name, Message}}`:
/// checks properties with librdkafka without creating a client (microseconds).
#[rustler::nif]
fn config_check<'a>(env: Env<'a>, scope: rustler::Atom, props: Vec<(String, String)>) -> Term<'a> {
    let props = erlkaf_core::config::Properties(props);
    let res = if scope == atoms::topic() { props.to_topic_conf().map(drop) } else { props.to_conf().map(drop) };
    match res {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => error::error_tuple(env, &e),
    }
}

fn allocator() -> rustler::Atom {
    if erlkaf_core::heap::mimalloc_in_use() {
        atoms::mimalloc()
    } else {
        atoms::system()
    }
}

/// Load info `#{allocator => mimalloc | system}` (see `erlkaf_nif:load/0`): the heap of
/// librdkafka and of this library (native/erlkaf_core/src/heap.rs).
fn load(env: Env, info: Term) -> bool {
    let system = info
        .map_get(atoms::allocator().encode(env))
        .ok()
        .and_then(|a| a.decode::<rustler::Atom>().ok())
        == Some(atoms::system());
    erlkaf_core::heap::use_mimalloc(!system);
    if !system {
        erlkaf_core::heap::start_purger();
    }
    pin_library();
    true
}

/// Keeps this library mapped until the VM exits, even if the BEAM unloads the NIF:
/// mimalloc's thread-exit hook lives in it, and every thread that allocated runs it.
fn pin_library() {
    // SAFETY: dladdr and dlopen with RTLD_NOLOAD only look up the already loaded library;
    // the handle is kept on purpose (that reference is the pin).
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(pin_library as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
        }
    }
}

rustler::init!("erlkaf_nif", load = load);
