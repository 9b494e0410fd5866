//! Metadata and offset queries on producers and consumers. Each asks a broker, so it runs
//! on a thread of its own and answers with `{erlkaf_query, Tag, Result}`.

use crate::atoms;
use crate::consumer::ConsumerRes;
use crate::error::code_atom;
use crate::reply::reply_later;
use crate::resource::ProducerRes;
use erlkaf_core::client::Kafka;
use erlkaf_core::admin::{self, ItemResult};
use erlkaf_core::metadata::{self, Metadata};
use erlkaf_core::tpl::TopicPartition;
use erlkaf_core::Result;
use crate::sink::binary;
use rustler::{Encoder, Env, NifResult, ResourceArc, Term};
use std::time::Duration;

/// What to ask.
enum Query {
    Metadata(Option<String>),
    Watermarks(String, i32),
    OffsetsForTimes(Vec<TopicPartition>),
    CreateTopics(Vec<admin::NewTopic>),
    DeleteTopics(Vec<String>),
    CreatePartitions(Vec<(String, i32)>),
    ListGroups,
    DescribeGroups(Vec<String>),
    DescribeConfigs(Vec<(admin::ResourceKind, String)>),
    DeleteRecords(Vec<TopicPartition>),
}

/// A producer or a consumer resource.
enum Client {
    Producer(ResourceArc<ProducerRes>),
    Consumer(ResourceArc<ConsumerRes>),
}

impl Client {
    fn decode(res: Term) -> NifResult<Client> {
        match res.decode::<ResourceArc<ProducerRes>>() {
            Ok(p) => Ok(Client::Producer(p)),
            Err(_) => Ok(Client::Consumer(res.decode::<ResourceArc<ConsumerRes>>()?)),
        }
    }

    fn with_kafka<T>(&self, f: impl FnOnce(&Kafka) -> Result<T>) -> Result<T> {
        match self {
            Client::Producer(p) => p.producer.shared().with_kafka(f),
            Client::Consumer(c) => c.consumer.shared().with_kafka(f),
        }
    }
}

/// `{Name, Partitions, ReplicationFactor, [{ConfigKey, ConfigValue}]}` of `create_topics`.
type NewTopicTerm = (String, i32, i32, Vec<(String, String)>);

/// A blocking job on a client handle, run on a thread of its own.
type Job<T> = Box<dyn FnOnce(&Kafka) -> Result<T> + Send>;

fn decode_query(q: Term) -> NifResult<Query> {
    if let Ok((tag, topic)) = q.decode::<(rustler::Atom, Term)>() {
        if tag == atoms::metadata() {
            let topic = if topic == atoms::undefined().to_term(q.get_env()) { None } else { Some(topic.decode::<String>()?) };
            return Ok(Query::Metadata(topic));
        }
        if tag == atoms::create_topics() {
            let topics: Vec<NewTopicTerm> = topic.decode()?;
            return Ok(Query::CreateTopics(
                topics
                    .into_iter()
                    .map(|(name, partitions, replication, config)| admin::NewTopic { name, partitions, replication, config })
                    .collect(),
            ));
        }
        if tag == atoms::delete_topics() {
            return Ok(Query::DeleteTopics(topic.decode()?));
        }
        if tag == atoms::create_partitions() {
            return Ok(Query::CreatePartitions(topic.decode()?));
        }
        if tag == atoms::describe_groups() {
            return Ok(Query::DescribeGroups(topic.decode()?));
        }
        if tag == atoms::describe_configs() {
            let items: Vec<(rustler::Atom, String)> = topic.decode()?;
            let mut out = Vec::with_capacity(items.len());
            for (kind, name) in items {
                let kind = if kind == atoms::topic() {
                    admin::ResourceKind::Topic
                } else if kind == atoms::broker() {
                    admin::ResourceKind::Broker
                } else {
                    return Err(rustler::Error::BadArg);
                };
                out.push((kind, name));
            }
            return Ok(Query::DescribeConfigs(out));
        }
        if tag == atoms::delete_records() {
            let parts: Vec<(String, i32, i64)> = topic.decode()?;
            return Ok(Query::DeleteRecords(
                parts.into_iter().map(|(topic, partition, offset)| TopicPartition { topic, partition, offset }).collect(),
            ));
        }
        if tag == atoms::offsets_for_times() {
            let parts: Vec<(String, i32, i64)> = topic.decode()?;
            return Ok(Query::OffsetsForTimes(
                parts.into_iter().map(|(topic, partition, offset)| TopicPartition { topic, partition, offset }).collect(),
            ));
        }
    }
    if let Ok((tag, topic, partition)) = q.decode::<(rustler::Atom, String, i32)>() {
        if tag == atoms::watermarks() {
            return Ok(Query::Watermarks(topic, partition));
        }
    }
    if q.decode::<rustler::Atom>().is_ok_and(|a| a == atoms::list_groups()) {
        return Ok(Query::ListGroups);
    }
    Err(rustler::Error::BadArg)
}

/// `(ProducerRes | ConsumerRes, Query, TimeoutMs, Tag) -> ok`, then
/// `{erlkaf_query, Tag, {ok, Answer} | {error, Reason}}`. Query: `{metadata, Topic |
/// undefined}`, `{watermarks, Topic, Partition}`, `{offsets_for_times, [{T, P, TsMs}]}`.
#[rustler::nif]
fn client_query<'a>(env: Env<'a>, res: Term<'a>, query: Term<'a>, timeout_ms: u32, tag: Term<'a>) -> NifResult<Term<'a>> {
    let client = Client::decode(res)?;
    let query = decode_query(query)?;
    let timeout = Duration::from_millis(timeout_ms as u64);
    // Each query: a job on the client handle (on a thread of its own) and its answer.
    let later = |name, job: Job<Answer>| {
        reply_later(env, name, atoms::erlkaf_query(), tag, move || client.with_kafka(job), Answer::encode)
    };
    Ok(match query {
        Query::Metadata(topic) => {
            later("metadata", Box::new(move |k| metadata::metadata(k, topic.as_deref(), timeout).map(Answer::Metadata)))
        }
        Query::Watermarks(topic, partition) => later(
            "watermarks",
            Box::new(move |k| metadata::watermarks(k, &topic, partition, timeout).map(Answer::Watermarks)),
        ),
        Query::CreateTopics(topics) => {
            later("create_topics", Box::new(move |k| admin::create_topics(k, &topics, timeout).map(Answer::Items)))
        }
        Query::DeleteTopics(names) => {
            later("delete_topics", Box::new(move |k| admin::delete_topics(k, &names, timeout).map(Answer::Items)))
        }
        Query::CreatePartitions(totals) => {
            later("create_partitions", Box::new(move |k| admin::create_partitions(k, &totals, timeout).map(Answer::Items)))
        }
        Query::ListGroups => later("list_groups", Box::new(move |k| admin::list_groups(k, timeout).map(Answer::Groups))),
        Query::DescribeGroups(ids) => {
            later("describe_groups", Box::new(move |k| admin::describe_groups(k, &ids, timeout).map(Answer::GroupInfos)))
        }
        Query::DescribeConfigs(rs) => {
            later("describe_configs", Box::new(move |k| admin::describe_configs(k, &rs, timeout).map(Answer::Configs)))
        }
        Query::DeleteRecords(parts) => {
            later("delete_records", Box::new(move |k| admin::delete_records(k, &parts, timeout).map(Answer::Offsets)))
        }
        Query::OffsetsForTimes(parts) => {
            later("offsets_for_times", Box::new(move |k| metadata::offsets_for_times(k, &parts, timeout).map(Answer::Offsets)))
        }
    })
}

/// What a query answers with.
enum Answer {
    Metadata(Metadata),
    Watermarks((i64, i64)),
    Items(Vec<ItemResult>),
    Offsets(Vec<(TopicPartition, erlkaf_core::ErrorCode)>),
    Groups(Vec<admin::GroupListing>),
    GroupInfos(Vec<admin::GroupInfo>),
    Configs(Vec<admin::ResourceConfig>),
}

impl Answer {
    fn encode<'b>(env: Env<'b>, a: Answer) -> Term<'b> {
        match a {
            Answer::Metadata(md) => (atoms::ok(), metadata_term(env, &md)).encode(env),
            Answer::Watermarks(w) => (atoms::ok(), w).encode(env),
            Answer::Items(items) => items_term(env, items),
            Answer::Groups(groups) => {
                let items: Vec<Term> = groups
                    .iter()
                    .map(|g| {
                        map(env, &[
                            (atoms::group_id(), binary(env, g.id.as_bytes())),
                            (atoms::simple(), g.simple.encode(env)),
                            (atoms::state(), binary(env, g.state.as_bytes())),
                        ])
                    })
                    .collect();
                (atoms::ok(), items).encode(env)
            }
            Answer::GroupInfos(groups) => {
                let items: Vec<Term> = groups.iter().map(|g| group_term(env, g)).collect();
                (atoms::ok(), items).encode(env)
            }
            Answer::Configs(rs) => {
                let items: Vec<Term> = rs
                    .iter()
                    .map(|(kind, name, error, entries)| {
                        let kind = if *kind == admin::ResourceKind::Topic { atoms::topic() } else { atoms::broker() };
                        let entries: Vec<Term> = entries
                            .iter()
                            .map(|e| {
                                map(env, &[
                                    (atoms::name(), binary(env, e.name.as_bytes())),
                                    (atoms::value(), crate::sink::opt_binary(env, e.value.as_deref().map(str::as_bytes))),
                                    (atoms::source(), binary(env, e.source.as_bytes())),
                                    (atoms::read_only(), e.read_only.encode(env)),
                                    (atoms::default(), e.default.encode(env)),
                                    (atoms::sensitive(), e.sensitive.encode(env)),
                                ])
                            })
                            .collect();
                        let result = match error {
                            None => (atoms::ok(), entries).encode(env),
                            Some((code, msg)) => (atoms::error(), code_atom(env, *code), msg.as_str()).encode(env),
                        };
                        (kind, binary(env, name.as_bytes()), result).encode(env)
                    })
                    .collect();
                (atoms::ok(), items).encode(env)
            }
            Answer::Offsets(found) => {
                let items: Vec<Term> = found
                    .iter()
                    .map(|(p, err)| {
                        let result = if err.is_ok() { p.offset.encode(env) } else { (atoms::error(), code_atom(env, *err)).encode(env) };
                        (p.topic.as_str(), p.partition, result).encode(env)
                    })
                    .collect();
                (atoms::ok(), items).encode(env)
            }
        }
    }
}

/// `#{group_id, error, simple, assignor, state, coordinator, members => [#{client_id,
/// consumer_id, group_instance_id, host, assignment => [{Topic, Partition}]}]}`.
fn group_term<'a>(env: Env<'a>, g: &admin::GroupInfo) -> Term<'a> {
    let members: Vec<Term> = g
        .members
        .iter()
        .map(|m| {
            let assignment: Vec<Term> =
                m.assignment.iter().map(|(t, p)| (binary(env, t.as_bytes()), *p).encode(env)).collect();
            map(env, &[
                (atoms::client_id(), binary(env, m.client_id.as_bytes())),
                (atoms::consumer_id(), binary(env, m.consumer_id.as_bytes())),
                (atoms::group_instance_id(), crate::sink::opt_binary(env, m.group_instance_id.as_deref().map(str::as_bytes))),
                (atoms::host(), binary(env, m.host.as_bytes())),
                (atoms::assignment(), assignment.encode(env)),
            ])
        })
        .collect();
    let error = match &g.error {
        None => atoms::ok().encode(env),
        Some((code, msg)) => (code_atom(env, *code), msg.as_str()).encode(env),
    };
    let coordinator = match &g.coordinator {
        None => atoms::undefined().encode(env),
        Some((id, host, port)) => map(env, &[
            (atoms::id(), id.encode(env)),
            (atoms::host(), binary(env, host.as_bytes())),
            (atoms::port(), port.encode(env)),
        ]),
    };
    map(env, &[
        (atoms::group_id(), binary(env, g.id.as_bytes())),
        (atoms::error(), error),
        (atoms::simple(), g.simple.encode(env)),
        (atoms::assignor(), binary(env, g.assignor.as_bytes())),
        (atoms::state(), binary(env, g.state.as_bytes())),
        (atoms::coordinator(), coordinator),
        (atoms::members(), members.encode(env)),
    ])
}

/// `{ok, [{Name, ok | {error, Code, Message}}]}`.
fn items_term<'a>(env: Env<'a>, items: Vec<ItemResult>) -> Term<'a> {
    let items: Vec<Term> = items
        .iter()
        .map(|(name, r)| {
            let result = match r {
                None => atoms::ok().encode(env),
                Some((code, msg)) => (atoms::error(), code_atom(env, *code), msg.as_str()).encode(env),
            };
            (crate::sink::binary(env, name.as_bytes()), result).encode(env)
        })
        .collect();
    (atoms::ok(), items).encode(env)
}

fn map<'a>(env: Env<'a>, pairs: &[(rustler::Atom, Term<'a>)]) -> Term<'a> {
    let pairs: Vec<(Term, Term)> = pairs.iter().map(|(k, v)| (k.encode(env), *v)).collect();
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}

fn error_or_ok<'a>(env: Env<'a>, e: erlkaf_core::ErrorCode) -> Term<'a> {
    if e.is_ok() { atoms::ok().encode(env) } else { code_atom(env, e) }
}

/// `#{brokers => [#{id, host, port}], topics => [#{name, error, partitions => [#{id,
/// error, leader, replicas, isrs}]}], orig_broker_id, orig_broker_name}`; `error` is `ok`
/// or the broker's error name.
fn metadata_term<'a>(env: Env<'a>, md: &Metadata) -> Term<'a> {
    let brokers: Vec<Term> = md
        .brokers
        .iter()
        .map(|b| map(env, &[(atoms::id(), b.id.encode(env)), (atoms::host(), binary(env, b.host.as_bytes())), (atoms::port(), b.port.encode(env))]))
        .collect();
    let topics: Vec<Term> = md
        .topics
        .iter()
        .map(|t| {
            let parts: Vec<Term> = t
                .partitions
                .iter()
                .map(|p| {
                    map(env, &[
                        (atoms::id(), p.id.encode(env)),
                        (atoms::error(), error_or_ok(env, p.error)),
                        (atoms::leader(), p.leader.encode(env)),
                        (atoms::replicas(), p.replicas.encode(env)),
                        (atoms::isrs(), p.isrs.encode(env)),
                    ])
                })
                .collect();
            map(env, &[
                (atoms::name(), binary(env, t.name.as_bytes())),
                (atoms::error(), error_or_ok(env, t.error)),
                (atoms::partitions(), parts.encode(env)),
            ])
        })
        .collect();
    map(env, &[
        (atoms::brokers(), brokers.encode(env)),
        (atoms::topics(), topics.encode(env)),
        (atoms::orig_broker_id(), md.orig_broker_id.encode(env)),
        (atoms::orig_broker_name(), binary(env, md.orig_broker_name.as_bytes())),
    ])
}

/// `(ProducerRes, init | begin | commit | abort, TimeoutMs, Tag) -> ok`, then
/// `{erlkaf_query, Tag, ok | {error, {Code, #{message, fatal, retriable, abortable}}}}`.
#[rustler::nif]
fn producer_txn<'a>(env: Env<'a>, res: ResourceArc<ProducerRes>, op: rustler::Atom, timeout_ms: u32, tag: Term<'a>) -> NifResult<Term<'a>> {
    use erlkaf_core::txn;
    let timeout = Duration::from_millis(timeout_ms as u64);
    let job: Job<()> = if op == atoms::init() {
        Box::new(move |k| txn::init(k, timeout))
    } else if op == atoms::begin() {
        Box::new(txn::begin)
    } else if op == atoms::commit() {
        Box::new(move |k| txn::commit(k, timeout))
    } else if op == atoms::abort() {
        Box::new(move |k| txn::abort(k, timeout))
    } else {
        return Err(rustler::Error::BadArg);
    };
    Ok(reply_later(env, "txn", atoms::erlkaf_query(), tag, move || res.producer.shared().with_kafka(job), |env, ()| {
        atoms::ok().encode(env)
    }))
}

/// `(ProducerRes, ConsumerRes, [{Topic, Partition, NextOffset}], TimeoutMs, Tag) -> ok`,
/// then `{erlkaf_query, Tag, ok | {error, Reason}}`.
#[rustler::nif]
fn producer_send_offsets<'a>(
    env: Env<'a>,
    res: ResourceArc<ProducerRes>,
    consumer: ResourceArc<ConsumerRes>,
    offsets: Vec<(String, i32, i64)>,
    timeout_ms: u32,
    tag: Term<'a>,
) -> Term<'a> {
    let timeout = Duration::from_millis(timeout_ms as u64);
    let offsets: Vec<TopicPartition> =
        offsets.into_iter().map(|(topic, partition, offset)| TopicPartition { topic, partition, offset }).collect();
    reply_later(
        env,
        "send_offsets",
        atoms::erlkaf_query(),
        tag,
        move || {
            res.producer.shared().with_kafka(|p| {
                consumer.consumer.shared().with_kafka(|c| erlkaf_core::txn::send_offsets(p, c, &offsets, timeout))
            })
        },
        |env, ()| atoms::ok().encode(env),
    )
}

/// `(ProducerRes | ConsumerRes, {Token, LifetimeMs, Principal, [{K, V}]} | {error, Reason})
/// -> ok | {error, Reason}`: the answer to an `{oauthbearer_token_refresh, Config}` event.
/// Local (librdkafka stores the token): no broker round trip.
#[rustler::nif]
fn client_oauth_token<'a>(env: Env<'a>, res: Term<'a>, answer: Term<'a>) -> NifResult<Term<'a>> {
    use erlkaf_core::oauth;
    let client = Client::decode(res)?;
    let r = if let Ok((tag, reason)) = answer.decode::<(rustler::Atom, String)>() {
        if tag != atoms::error() {
            return Err(rustler::Error::BadArg);
        }
        client.with_kafka(|k| oauth::set_token_failure(k, &reason))
    } else {
        let (value, lifetime_ms, principal, extensions): (String, i64, String, Vec<(String, String)>) = answer.decode()?;
        client.with_kafka(|k| oauth::set_token(k, &oauth::Token { value, lifetime_ms, principal, extensions }))
    };
    Ok(match r {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => crate::error::error_tuple(env, &e),
    })
}
