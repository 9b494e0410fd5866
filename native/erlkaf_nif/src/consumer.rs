//! Consumer NIFs (`consumer_*`) and the sink that pushes fetched messages to partition
//! workers: one `{erlkaf_batch, [#erlkaf_msg{}]}` message per partition run, built in an
//! `OwnedEnv` and moved with `send_and_clear`. A batch for a partition whose worker has not
//! registered yet waits (as a saved term) and goes out on the pump's next tick.

use crate::atoms;
use crate::error::{code_atom, error_tuple};
use crate::reply::reply_later;
use crate::sink::{binary, erlkaf_msg, event_term, payload_terms};
use erlkaf_core::config::Properties;
use erlkaf_core::consumer::{Consumer, ConsumerOptions, ConsumerSink};
use erlkaf_core::message::MessageView;
use erlkaf_core::pump::ClientEvent;
use erlkaf_core::tpl::TopicPartition;
use erlkaf_core::ErrorCode;
use rustler::env::SavedTerm;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Key = (String, i32);

/// Where a partition's batches go. `epoch` counts seeks: batches carry it, and a worker
/// drops batches older than the last `{erlkaf_epoch, Epoch}` marker it was sent.
#[derive(Default)]
struct Route {
    worker: Option<LocalPid>,
    pending: Vec<(OwnedEnv, SavedTerm)>,
    epoch: u64,
    /// A batch met a dead worker: what it had been sent may never have been handled.
    /// Batches are dropped until its successor registers and the pump rewinds.
    lost: bool,
    /// A new worker replaced one that had batches: the pump seeks back to the first
    /// offset not acknowledged before anything more goes out (fetched batches are
    /// dropped meanwhile: they come again).
    rewind: bool,
}

impl Route {
    /// The worker is gone with what it was sent.
    fn worker_lost(&mut self) {
        self.worker = None;
        self.lost = true;
        self.pending.clear();
    }
}

type Routes = Arc<Mutex<HashMap<Key, Route>>>;

/// A seek asked by the application, carried out by the pump between two rounds so that
/// it is ordered with the batches the pump sends.
struct SeekRequest {
    topic: String,
    partition: i32,
    offset: i64,
    caller: LocalPid,
    tag: (OwnedEnv, SavedTerm),
}

type Seeks = Arc<Mutex<Vec<SeekRequest>>>;
type CoreShared = Arc<std::sync::OnceLock<Arc<erlkaf_core::consumer::Shared>>>;

/// A group consumer client.
pub struct ConsumerRes {
    pub(crate) consumer: Consumer,
    routes: Routes,
    seeks: Seeks,
}

#[rustler::resource_impl]
impl rustler::Resource for ConsumerRes {}

struct GroupSink {
    owner: LocalPid,
    routes: Routes,
    seeks: Seeks,
    core: CoreShared,
    env: OwnedEnv,
}

fn parts_term<'a>(env: Env<'a>, parts: &[TopicPartition]) -> Term<'a> {
    parts
        .iter()
        .map(|p| (binary(env, p.topic.as_bytes()), p.partition, p.offset).encode(env))
        .collect::<Vec<_>>()
        .encode(env)
}

fn batch_term<'a>(env: Env<'a>, topic: &str, epoch: u64, msgs: &[MessageView<'_>]) -> Term<'a> {
    let t = binary(env, topic.as_bytes());
    let payloads: Vec<Option<&[u8]>> = msgs.iter().map(MessageView::payload).collect();
    let values = payload_terms(env, &payloads);
    let list: Vec<Term> = msgs.iter().zip(values).map(|(m, v)| erlkaf_msg(env, m, t, v)).collect();
    (atoms::erlkaf_batch(), epoch, list).encode(env)
}

impl GroupSink {
    /// Rewinds the partitions whose worker was replaced (on the pump thread, between two
    /// rounds: no batch fetched before the seek is held here, and librdkafka drops the
    /// ones it still had).
    fn rewinds(&mut self) {
        let due: Vec<Key> = {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes.iter().filter(|(_, r)| r.rewind).map(|(k, _)| k.clone()).collect()
        };
        let Some(core) = self.core.get() else { return };
        for key in due {
            // Not assigned any more (or the client stops): nothing to rewind.
            let _ = core.rewind(&key.0, key.1);
            if let Some(route) = self.routes.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
                route.rewind = false;
            }
        }
    }

    /// Carries out the queued seeks (synchronously, on the pump thread): batches sent
    /// before come from the old position, and the worker learns it through the marker.
    fn seeks(&mut self) {
        let reqs: Vec<SeekRequest> = std::mem::take(&mut *self.seeks.lock().unwrap_or_else(|e| e.into_inner()));
        for r in reqs {
            let result = match self.core.get() {
                Some(core) => core.seek(&r.topic, r.partition, r.offset, Duration::from_secs(10)),
                None => Err(erlkaf_core::Error::ClientStopped),
            };
            if result.is_ok() {
                let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(route) = routes.get_mut(&(r.topic.clone(), r.partition)) {
                    route.epoch += 1;
                    route.pending.clear();
                    let epoch = route.epoch;
                    if let Some(pid) = route.worker {
                        let _ = self.env.send_and_clear(&pid, |_| (atoms::erlkaf_epoch(), epoch));
                    }
                }
            }
            let (mut env, tag) = r.tag;
            let _ = env.send_and_clear(&r.caller, |env| {
                let res = match &result {
                    Ok(()) => atoms::ok().encode(env),
                    Err(e) => error_tuple(env, e),
                };
                (atoms::erlkaf_seek_done(), tag.load(env), res)
            });
        }
    }
}

impl ConsumerSink for GroupSink {
    fn messages(&mut self, topic: &str, partition: i32, msgs: &[MessageView<'_>]) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        // Not (or no longer) ours: nothing was stored for these, the owner re-reads them.
        let Some(route) = routes.get_mut(&(topic.to_string(), partition)) else { return };
        // Fetched again after the rewind.
        if route.lost || route.rewind {
            return;
        }
        let epoch = route.epoch;
        if let (Some(pid), true) = (route.worker, route.pending.is_empty()) {
            if self.env.send_and_clear(&pid, |env| batch_term(env, topic, epoch, msgs)).is_err() {
                route.worker_lost();
            }
            return;
        }
        // No worker registered yet (a new assignment): kept for it.
        let env = OwnedEnv::new();
        let saved = env.run(|e| env.save(batch_term(e, topic, epoch, msgs)));
        route.pending.push((env, saved));
    }

    fn tick(&mut self) {
        self.seeks();
        self.rewinds();
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        for route in routes.values_mut() {
            let Some(pid) = route.worker else { continue };
            for (mut env, saved) in std::mem::take(&mut route.pending) {
                if env.send_and_clear(&pid, |e| saved.load(e)).is_err() {
                    route.worker_lost();
                    break;
                }
            }
        }
    }

    fn assigned(&mut self, parts: &[TopicPartition]) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            for p in parts {
                routes.entry((p.topic.clone(), p.partition)).or_default();
            }
        }
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| (atoms::erlkaf_assigned(), parts_term(env, parts)));
    }

    fn revoked(&mut self, parts: &[TopicPartition], generation: u64) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            for p in parts {
                routes.remove(&(p.topic.clone(), p.partition));
            }
        }
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| (atoms::erlkaf_revoked(), generation, parts_term(env, parts)));
    }

    fn consume_error(&mut self, topic: &str, partition: i32, code: ErrorCode, reason: &str) {
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| {
            let e = (atoms::consume_error(), binary(env, topic.as_bytes()), partition, code_atom(env, code), reason);
            (atoms::erlkaf_event(), e.encode(env))
        });
    }

    fn event(&mut self, event: ClientEvent<'_>) {
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| (atoms::erlkaf_event(), event_term(env, event)));
    }

    fn stopped(&mut self) {
        let owner = self.owner;
        let _ = self.env.send_and_clear(&owner, |env| (atoms::erlkaf_stopped(), Term::map_new(env)));
    }
}

/// `(Name, Props, Topics, Owner, {MaxInflight, MaxInflightBytes}, RevokeTimeoutMs) ->
/// {ok, Res} | {error, R}`.
#[rustler::nif(schedule = "DirtyIo")]
fn consumer_new<'a>(
    env: Env<'a>,
    name: String,
    props: Vec<(String, String)>,
    topics: Vec<String>,
    owner: LocalPid,
    (max_inflight, max_inflight_bytes): (u32, u64),
    revoke_timeout_ms: u64,
) -> Term<'a> {
    let routes: Routes = Arc::default();
    let seeks: Seeks = Arc::default();
    let core: CoreShared = Arc::default();
    let sink = Box::new(GroupSink { owner, routes: routes.clone(), seeks: seeks.clone(), core: core.clone(), env: OwnedEnv::new() });
    let opts = ConsumerOptions {
        max_inflight: max_inflight.max(1),
        max_inflight_bytes: usize::try_from(max_inflight_bytes).unwrap_or(usize::MAX).max(1),
        revoke_timeout: Duration::from_millis(revoke_timeout_ms),
        ..ConsumerOptions::default()
    };
    match Consumer::new(&name, &Properties(props), &topics, opts, sink) {
        Ok(c) => {
            let _ = core.set(c.shared().clone());
            (atoms::ok(), ResourceArc::new(ConsumerRes { consumer: c, routes, seeks })).encode(env)
        }
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res, Topic, Partition, Pid) -> ok | {error, unknown_partition}`: `Pid` is the
/// partition's worker from now on. A replaced worker's unfinished messages are fetched
/// again: the pump rewinds to the next unprocessed offset before it sends `Pid` anything.
/// `unknown_partition`: not assigned here (any more: revoked while the worker's `init/4`
/// ran), and no route is made for it.
#[rustler::nif]
fn consumer_register<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, topic: String, partition: i32, pid: LocalPid) -> Term<'a> {
    {
        let mut routes = res.routes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(route) = routes.get_mut(&(topic, partition)) else {
            return error_tuple(env, &erlkaf_core::Error::Kafka(erlkaf_core::ErrorCode::UNKNOWN_PARTITION));
        };
        if route.lost || route.worker.is_some_and(|old| old != pid) {
            route.pending.clear();
            route.lost = false;
            route.rewind = true;
        }
        route.worker = Some(pid);
    }
    res.consumer.shared().wake();
    atoms::ok().encode(env)
}

fn ok_or<'a>(env: Env<'a>, r: erlkaf_core::Result<()>) -> Term<'a> {
    match r {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res, Topic, Partition, NextOffset) -> ok | {error, R}`: the batch is processed.
#[rustler::nif]
fn consumer_ack<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, topic: String, partition: i32, next: i64) -> Term<'a> {
    ok_or(env, res.consumer.shared().ack(&topic, partition, next))
}

/// `(Res, Generation) -> ok`: the revoked partitions of that generation are released.
#[rustler::nif]
fn consumer_revoke_done(res: ResourceArc<ConsumerRes>, generation: u64) -> rustler::Atom {
    res.consumer.shared().revoke_done(generation);
    atoms::ok()
}

/// `(Res, Topic, Partition, Paused :: boolean()) -> ok | {error, R}`.
#[rustler::nif]
fn consumer_pause<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, topic: String, partition: i32, paused: bool) -> Term<'a> {
    ok_or(env, res.consumer.shared().set_paused(&topic, partition, paused))
}

/// `(Res) -> {ok, [{Topic, Partition}]} | {error, R}`.
#[rustler::nif]
fn consumer_assignment<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>) -> Term<'a> {
    match res.consumer.shared().assignment() {
        Ok(parts) => {
            let l: Vec<Term> = parts.iter().map(|p| (binary(env, p.topic.as_bytes()), p.partition).encode(env)).collect();
            (atoms::ok(), l).encode(env)
        }
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res, Tag) -> ok`; `{erlkaf_commit, Tag, ok | {error, R}}` follows: a synchronous
/// commit of the stored offsets, on a thread of its own.
#[rustler::nif]
fn consumer_commit<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, tag: Term<'a>) -> Term<'a> {
    reply_later(env, "commit", atoms::erlkaf_commit(), tag, move || res.consumer.shared().commit_sync(), |env, ()| {
        atoms::ok().encode(env)
    })
}

/// `(Res) -> ok`: commit, leave the group and destroy, on a reaper thread; the owner gets
/// `{erlkaf_stopped, #{}}`.
#[rustler::nif]
fn consumer_stop(res: ResourceArc<ConsumerRes>) -> rustler::Atom {
    erlkaf_core::reaper::run("consumer-stop", move || res.consumer.shutdown());
    atoms::ok()
}

/// `(Res, Topic, Partition, Offset, Tag) -> ok`; `{erlkaf_seek_done, Tag, ok | {error, R}}`
/// follows once the pump moved the position (`Offset` may be -2 beginning or -1 end).
#[rustler::nif]
fn consumer_seek<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, topic: String, partition: i32, offset: i64, tag: Term<'a>) -> Term<'a> {
    let msg_env = OwnedEnv::new();
    let saved = msg_env.save(tag);
    res.seeks.lock().unwrap_or_else(|e| e.into_inner()).push(SeekRequest {
        topic,
        partition,
        offset,
        caller: env.pid(),
        tag: (msg_env, saved),
    });
    res.consumer.shared().wake();
    atoms::ok().encode(env)
}

fn decode_parts(parts: Vec<(String, i32)>) -> Vec<TopicPartition> {
    parts.into_iter().map(|(topic, partition)| TopicPartition { topic, partition, offset: -1001 }).collect()
}

fn offsets_term<'a>(env: Env<'a>, r: erlkaf_core::Result<Vec<TopicPartition>>) -> Term<'a> {
    match r {
        Ok(parts) => (atoms::ok(), parts_term(env, &parts)).encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res, [{Topic, Partition}], TimeoutMs, Tag) -> ok`; `{erlkaf_committed, Tag,
/// {ok, [{Topic, Partition, Offset}]} | {error, R}}` follows (a broker round trip, on a
/// thread of its own).
#[rustler::nif]
fn consumer_committed<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, parts: Vec<(String, i32)>, timeout_ms: u32, tag: Term<'a>) -> Term<'a> {
    let parts = decode_parts(parts);
    let timeout = Duration::from_millis(timeout_ms as u64);
    reply_later(env, "committed", atoms::erlkaf_committed(), tag, move || res.consumer.shared().committed(&parts, timeout), |env, p| {
        (atoms::ok(), parts_term(env, &p)).encode(env)
    })
}

/// `(Res, [{Topic, Partition}]) -> {ok, [{Topic, Partition, Offset}]} | {error, R}`: local
/// fetch positions (-1001 when unknown).
#[rustler::nif]
fn consumer_position<'a>(env: Env<'a>, res: ResourceArc<ConsumerRes>, parts: Vec<(String, i32)>) -> Term<'a> {
    offsets_term(env, res.consumer.shared().position(&decode_parts(parts)))
}
