//! Mock cluster NIFs (`mock_*`). They talk to the cluster's own thread and wait for its
//! answer, so they run on dirty IO schedulers.

use crate::atoms;
use crate::error::error_tuple;
use crate::resource::MockRes;
use erlkaf_core::mock::MockCluster;
use erlkaf_core::ErrorCode;
use rustler::{Atom, Encoder, Env, ResourceArc, Term};
use std::sync::Mutex;

fn with<'a>(env: Env<'a>, res: &MockRes, f: impl FnOnce(&MockCluster) -> erlkaf_core::Result<()>) -> Term<'a> {
    match res.mock.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        None => (atoms::error(), atoms::client_stopped()).encode(env),
        Some(m) => match f(m) {
            Ok(()) => atoms::ok().encode(env),
            Err(e) => error_tuple(env, &e),
        },
    }
}

/// `(Brokers) -> {ok, Res, BootstrapServers} | {error, Reason}`.
#[rustler::nif(schedule = "DirtyIo")]
fn mock_new(env: Env, brokers: i32) -> Term {
    match MockCluster::new(brokers) {
        Ok(m) => {
            let bootstrap = m.bootstrap_servers().to_string();
            let res = ResourceArc::new(MockRes { mock: Mutex::new(Some(m)) });
            (atoms::ok(), res, bootstrap).encode(env)
        }
        Err(e) => error_tuple(env, &e),
    }
}

/// `(Res) -> ok`: destroys the cluster (on a reaper thread).
#[rustler::nif]
fn mock_stop(res: ResourceArc<MockRes>) -> Atom {
    drop(res.mock.lock().unwrap_or_else(|e| e.into_inner()).take());
    atoms::ok()
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_create_topic(env: Env, res: ResourceArc<MockRes>, topic: String, partitions: i32, replication: i32) -> Term {
    with(env, &res, |m| m.create_topic(&topic, partitions, replication))
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_broker_down(env: Env, res: ResourceArc<MockRes>, broker: i32) -> Term {
    with(env, &res, |m| m.broker_down(broker))
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_broker_up(env: Env, res: ResourceArc<MockRes>, broker: i32) -> Term {
    with(env, &res, |m| m.broker_up(broker))
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_set_rtt(env: Env, res: ResourceArc<MockRes>, broker: i32, rtt_ms: i32) -> Term {
    with(env, &res, |m| m.set_rtt(broker, rtt_ms))
}

/// `(Res, ApiKey, [ErrorName :: atom()])`; an unknown name is `{error, {unknown_error, Name}}`.
#[rustler::nif(schedule = "DirtyIo")]
fn mock_push_request_errors<'a>(env: Env<'a>, res: ResourceArc<MockRes>, api_key: i16, errors: Vec<Atom>) -> Term<'a> {
    let mut codes = Vec::with_capacity(errors.len());
    for a in errors {
        let name = a.to_term(env).atom_to_string().unwrap_or_default();
        match ErrorCode::from_name(&name) {
            Some(c) => codes.push(c),
            None => return (atoms::error(), (Atom::from_str(env, "unknown_error").unwrap(), a)).encode(env),
        }
    }
    with(env, &res, |m| m.push_request_errors(api_key, &codes))
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_clear_request_errors(env: Env, res: ResourceArc<MockRes>, api_key: i16) -> Term {
    with(env, &res, |m| {
        m.clear_request_errors(api_key);
        Ok(())
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_set_partition_leader(env: Env, res: ResourceArc<MockRes>, topic: String, partition: i32, broker: i32) -> Term {
    with(env, &res, |m| m.set_partition_leader(&topic, partition, broker))
}

#[rustler::nif(schedule = "DirtyIo")]
fn mock_set_group_initial_rebalance_delay(env: Env, res: ResourceArc<MockRes>, ms: i32) -> Term {
    with(env, &res, |m| {
        m.set_group_initial_rebalance_delay(ms);
        Ok(())
    })
}
