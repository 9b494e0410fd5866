//! Hot paths that run without a BEAM:
//! - building a client conf, the error-name table;
//! - the batch ledger (create a batch, hand out and release every slot) and the open
//!   batches of single-message produce calls (take a slot, release it);
//! - produce into librdkafka's mock cluster (in this process) until every delivery report
//!   was drained by the pump and handed to a sink in per-round batches, as one batch and
//!   as single-message calls through the open batches;
//! - fetched messages from the mock cluster to a consumer sink, grouped per partition
//!   and acknowledged (offsets stored), as the NIF's consumer pump does;
//! - raw `rd_kafka_produce_batch` of keyless messages into the mock cluster, partitioned
//!   by librdkafka (a sticky decision per message) and by erlkaf's partitioner (one per
//!   run, `erlkaf_core::partitioner`).
//!
//! The broker benches fail (panic) when a report is an error or does not come: a bench
//! that measured a broken path would report a meaningless speed.

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use erlkaf_core::config::Properties;
use erlkaf_core::consumer::{Consumer, ConsumerOptions, ConsumerSink, Shared as ConsumerShared};
use erlkaf_core::ledger::{BatchHandle, Counters, Releases};
use erlkaf_core::message::MessageView;
use erlkaf_core::mock::MockCluster;
use erlkaf_core::open::{OpenBatches, SlotUse, CAPACITY};
use erlkaf_core::partitioner::{self, Partitioner};
use erlkaf_core::rdkafka_sys as rd;
use erlkaf_core::producer::{OutMessage, Producer, ShutdownReport};
use erlkaf_core::pump::{ClientEvent, Delivery, Sink};
use erlkaf_core::tpl::TopicPartition;
use erlkaf_core::{Error, ErrorCode};
use parking_lot::{Condvar, Mutex};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn config(c: &mut Criterion) {
    let props = Properties::new([
        ("bootstrap.servers", "127.0.0.1:9092"),
        ("linger.ms", "5"),
        ("acks", "1"),
        ("compression.codec", "lz4"),
        ("queue.buffering.max.messages", "500000"),
    ]);
    c.bench_function("config: 5 properties to a conf object", |b| b.iter(|| black_box(props.to_conf().unwrap())));
}

fn ledger(c: &mut Criterion) {
    let counters = Arc::new(Counters::default());
    for n in [1usize, 1000] {
        c.bench_function(&format!("ledger: batch of {n}, every slot reported"), |b| {
            b.iter(|| {
                let h = BatchHandle::new(vec![0u8; 16], n, counters.clone());
                let opaques: Vec<usize> = (0..n).map(|i| h.opaque(i) as usize).collect();
                // As the pump does: the round's releases counted together.
                let mut released = Releases::default();
                for o in opaques {
                    // SAFETY: each slot released once, while its batch lives.
                    unsafe { released.release::<Vec<u8>>(o as *mut _) };
                }
            })
        });
    }
    assert_eq!(counters.double_releases.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The bookkeeping of one `produce/4` call: a slot of this thread's open batch (the topic
/// found in the shard's cache), later released by its report.
fn open_batches(c: &mut Criterion) {
    let counters = Arc::new(Counters::default());
    let open: OpenBatches<Vec<u8>> = OpenBatches::new(counters.clone());
    let mut opaques: Vec<usize> = Vec::with_capacity(CAPACITY * 16);
    let mut g = c.benchmark_group("open batches");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 single-message slots taken, then released", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                let o = open
                    .with_slot(b"bench", |cached| Ok::<usize, ()>(cached.unwrap_or(1)), || vec![0u8; 16], |_rkt, _keep, _i, opaque| {
                        SlotUse::Produced(opaque as usize, 100)
                    })
                    .unwrap();
                opaques.push(o);
            }
            let mut released = Releases::default();
            for o in opaques.drain(..) {
                // SAFETY: each slot released once, while its batch lives.
                unsafe { released.release::<Vec<u8>>(o as *mut _) };
            }
        })
    });
    g.finish();
    open.close_all();
    assert_eq!(counters.outstanding(), 0, "every slot taken was released");
    assert_eq!(counters.live_batches(), 0, "every batch freed");
}

/// The handover of one round of delivery reports (see erlkaf_core::handover): lent by
/// this thread, taken by another in slices of 256 as the producer process takes them, the
/// lender waiting meanwhile. What the pull of reports costs per round besides building
/// them: a message to the taker, its wake-up, the lock per slice, the lender's wake-up.
/// On the 2-vCPU VM here both took ~58 us a round, 1000 items or 1: the two threads'
/// wake-ups (wall time, most of it waiting), paid once per round of reports.
fn handover(c: &mut Criterion) {
    use erlkaf_core::handover::Handover;
    let h: Arc<Handover<u64>> = Arc::new(Handover::new());
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let taker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let mut sum = 0u64;
            while let Ok(id) = rx.recv() {
                while let Some(((), _)) = h.take(id, |items, next| {
                    let end = (next + 256).min(items.len());
                    sum = sum.wrapping_add(items[next..end].iter().sum::<u64>());
                    (end - next, ())
                }) {}
            }
            black_box(sum)
        })
    };
    let items: Vec<u64> = (0..1000).collect();
    let mut g = c.benchmark_group("handover");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("a round of 1000 lent, taken by another thread in slices of 256", |b| {
        b.iter(|| assert_eq!(h.lend(&items, Duration::from_secs(10), |id| tx.send(id).unwrap()), items.len()))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("a round of 1 lent (the wake-ups alone)", |b| {
        b.iter(|| assert_eq!(h.lend(&items[..1], Duration::from_secs(10), |id| tx.send(id).unwrap()), 1))
    });
    g.finish();
    drop(tx);
    taker.join().unwrap();
}

fn error_names(c: &mut Criterion) {
    c.bench_function("error code to name", |b| b.iter(|| black_box(ErrorCode(black_box(-184)).name())));
}

// ---------------------------------------------------------------------------------------
// Against the in-process mock cluster.

const PARTITIONS: i32 = 4;
const PAYLOADS: usize = 1000;

/// The payloads every produce bench sends (each message its own buffer, as applications
/// have them). The batch keeps hold of them through the Arc.
type Payloads = Arc<Vec<Vec<u8>>>;

fn payloads(size: usize) -> Payloads {
    Arc::new((0..PAYLOADS).map(|i| vec![(i % 251) as u8; size]).collect())
}

/// A slice of `p` that lives as long as the Arc does (the batch holds a clone).
fn unbound(p: &Payloads, i: usize) -> &'static [u8] {
    let v = &p[i % PAYLOADS];
    // SAFETY: the buffers never move or change while any clone of the Arc lives, and
    // the batch given this slice keeps a clone until its last report.
    unsafe { std::slice::from_raw_parts(v.as_ptr(), v.len()) }
}

/// Reports seen by a [`Counting`] sink.
#[derive(Default)]
struct Tally {
    state: Mutex<(u64, u64)>, // (reported, failed)
    cv: Condvar,
}

impl Tally {
    /// Waits until `n` reports in total were seen; panics on a failed report or after 30 s.
    fn wait(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut st = self.state.lock();
        while st.0 < n {
            assert!(!self.cv.wait_until(&mut st, deadline).timed_out(), "only {} of {n} reports in 30 s", st.0);
        }
        assert_eq!(st.1, 0, "failed delivery reports");
    }
}

/// Counts delivery reports (one lock per pump round, as the NIF sends one message).
struct Counting(Arc<Tally>);

impl<K> Sink<K> for Counting {
    fn deliveries(&mut self, reports: &[Delivery<'_, K>]) {
        let failed = reports.iter().filter(|d| !d.error().is_ok()).count() as u64;
        let mut st = self.0.state.lock();
        st.0 += reports.len() as u64;
        st.1 += failed;
        self.0.cv.notify_all();
    }
    fn event(&mut self, _e: ClientEvent<'_>) {}
    fn stopped(&mut self, _r: &ShutdownReport) {}
}

fn mock_cluster() -> MockCluster {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("bench", PARTITIONS, 1).expect("topic");
    mock
}

fn producer<K: Send + Sync + 'static>(mock: &MockCluster, tally: &Arc<Tally>) -> Producer<K> {
    // The configuration of the Erlang-side benchmark (bench/erlkaf_bench.erl).
    let props = Properties::new([
        ("bootstrap.servers", mock.bootstrap_servers()),
        ("linger.ms", "5"),
        ("acks", "1"),
        ("queue.buffering.max.messages", QUEUED_MAX.to_string().as_str()),
    ]);
    Producer::new("bench", &props, Box::new(Counting(tally.clone()))).expect("producer")
}

/// Runs `produce()` (which hands n messages to librdkafka) `iters` times, then waits
/// until every report was drained. The last reports' wait (linger, round trip) is paid once
/// per sample: criterion's slope over samples of different sizes leaves it out.
fn timed(tally: &Tally, sent: &mut u64, iters: u64, n: u64, mut produce: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        // Within librdkafka's queue limit (QUEUED_MAX messages).
        tally.wait(sent.saturating_sub(QUEUED_MAX / 2));
        produce();
        *sent += n;
    }
    tally.wait(*sent);
    start.elapsed()
}

/// `queue.buffering.max.messages` of the bench producers.
const QUEUED_MAX: u64 = 1_000_000;

/// Messages a produce bench hands to librdkafka per iteration.
const N: usize = 10_000;

fn produce_mock(c: &mut Criterion) {
    let mock = mock_cluster();
    let mut g = c.benchmark_group("produce into the mock cluster, until reported");
    g.throughput(Throughput::Elements(N as u64));
    g.measurement_time(Duration::from_secs(3));
    for size in [100usize, 1024] {
        let values = payloads(size);
        bench_producer(&mut g, &mock, BenchmarkId::new("one batch of 10k", size), |p| {
            let msgs = |i: usize| OutMessage { topic: b"bench", partition: -1, key: None, value: Some(unbound(&values, i)), headers: &[], timestamp: 0 };
            // SAFETY: every value points into `values`, which the batch keeps.
            let out = unsafe { p.shared().produce_with(values.clone(), N, msgs) };
            assert_eq!((out.accepted, out.error), (N, None));
        });
        bench_producer(&mut g, &mock, BenchmarkId::new("10k single-message calls (open batches)", size), |p| {
            for i in 0..N {
                let m = OutMessage { topic: b"bench", partition: -1, key: None, value: None, headers: &[], timestamp: 0 };
                // SAFETY: the value points into `values`, which the batch keeps.
                let r = unsafe { p.shared().produce_open(&m, || values.clone(), |_k, _i| Ok::<_, ()>(Some(unbound(&values, i)))) };
                assert!(r.is_ok());
            }
        });
    }
    g.finish();
}

/// Benchmarks `produce` (N messages a call, every report awaited) on a fresh producer,
/// then stops it: nothing may be left unreported.
fn bench_producer(g: &mut BenchmarkGroup<'_, WallTime>, mock: &MockCluster, id: BenchmarkId, produce: impl Fn(&Producer<Payloads>)) {
    let tally = Arc::new(Tally::default());
    let p: Producer<Payloads> = producer(mock, &tally);
    let mut sent = 0;
    g.bench_function(id, |b| b.iter_custom(|iters| timed(&tally, &mut sent, iters, N as u64, || produce(&p))));
    assert_eq!(p.shutdown(Duration::from_secs(10)).map(|r| r.unreported), Some(0));
}

/// What a [`Fetching`] sink saw.
#[derive(Default)]
struct Fetched {
    state: Mutex<FetchState>,
    cv: Condvar,
}

#[derive(Default)]
struct FetchState {
    messages: u64,
    batches: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    out_of_order: u64,
    next: std::collections::HashMap<i32, i64>,
}

/// Acknowledges every batch at once (offsets stored, credit back), as a handler that
/// finished would; checks offsets come in order per partition.
struct Fetching {
    seen: Arc<Fetched>,
    consumer: Arc<OnceLock<Arc<ConsumerShared>>>,
}

impl ConsumerSink for Fetching {
    fn messages(&mut self, topic: &str, partition: i32, msgs: &[MessageView<'_>]) {
        let now = Instant::now();
        let last = msgs[msgs.len() - 1].offset();
        {
            let mut st = self.seen.state.lock();
            let expected = st.next.get(&partition).copied().unwrap_or(0);
            if msgs[0].offset() != expected || last - msgs[0].offset() + 1 != msgs.len() as i64 {
                st.out_of_order += 1;
            }
            st.next.insert(partition, last + 1);
            st.messages += msgs.len() as u64;
            st.batches += 1;
            st.first.get_or_insert(now);
            st.last = Some(now);
            self.seen.cv.notify_all();
        }
        if let Some(c) = self.consumer.get() {
            match c.ack(topic, partition, last + 1) {
                // The bench stops the consumer once it has seen every message.
                Ok(()) | Err(Error::ClientStopped) => {}
                Err(e) => panic!("ack: {e:?}"),
            }
        }
    }
    fn assigned(&mut self, _parts: &[TopicPartition]) {}
    fn revoked(&mut self, _parts: &[TopicPartition], generation: u64) {
        if let Some(c) = self.consumer.get() {
            c.revoke_done(generation);
        }
    }
    fn consume_error(&mut self, topic: &str, partition: i32, code: ErrorCode, reason: &str) {
        panic!("consume error on {topic}/{partition}: {code:?} {reason}");
    }
    fn event(&mut self, _e: ClientEvent<'_>) {}
    fn tick(&mut self) {}
    fn stopped(&mut self) {}
}

fn consume_mock(c: &mut Criterion) {
    const MESSAGES: u64 = 50_000;
    let mock = mock_cluster();
    mock.set_group_initial_rebalance_delay(0);
    // The backlog every consumer reads from the start.
    let tally = Arc::new(Tally::default());
    let p: Producer<Payloads> = producer(&mock, &tally);
    let values = payloads(100);
    // A quarter of the backlog per partition, in blocks: the sticky partitioner put most of
    // a fast run into one partition, whose log passed the mock's ~5 MB and lost its start.
    let per = MESSAGES as usize / PARTITIONS as usize;
    let msgs = |i: usize| OutMessage {
        topic: b"bench",
        partition: (i / per) as i32,
        key: None,
        value: Some(unbound(&values, i)),
        headers: &[],
        timestamp: 0,
    };
    // SAFETY: every value points into `values`, which the batch keeps.
    let out = unsafe { p.shared().produce_with(values.clone(), MESSAGES as usize, msgs) };
    assert_eq!((out.accepted, out.error), (MESSAGES as usize, None));
    tally.wait(MESSAGES);
    drop(p);

    let mut g = c.benchmark_group("consume from the mock cluster");
    g.throughput(Throughput::Elements(MESSAGES));
    g.measurement_time(Duration::from_secs(3));
    let mut group = 0;
    g.bench_function("50k x 100 B fetched, batched per partition and acknowledged", |b| {
        b.iter_custom(|iters| {
            // Timed from the first fetched message to the last: joining the group is not
            // what this measures.
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                group += 1;
                let props = Properties::new([
                    ("bootstrap.servers", mock.bootstrap_servers().to_string()),
                    ("group.id", format!("bench-{group}")),
                    ("auto.offset.reset", "earliest".to_string()),
                    // As the Erlang-side benchmark: the mock answers a fetch with nothing
                    // new only after this wait.
                    ("fetch.wait.max.ms", "10".to_string()),
                ]);
                let seen = Arc::new(Fetched::default());
                let handle = Arc::new(OnceLock::new());
                let sink = Fetching { seen: seen.clone(), consumer: handle.clone() };
                let consumer =
                    Consumer::new("bench", &props, &["bench".to_string()], ConsumerOptions::default(), Box::new(sink)).expect("consumer");
                let _ = handle.set(consumer.shared().clone());
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut st = seen.state.lock();
                while st.messages < MESSAGES {
                    assert!(!seen.cv.wait_until(&mut st, deadline).timed_out(), "only {} of {MESSAGES} messages in 30 s", st.messages);
                }
                assert_eq!((st.messages, st.out_of_order), (MESSAGES, 0), "every message once, in order");
                total += st.last.unwrap() - st.first.unwrap();
                drop(st);
                consumer.shutdown();
            }
            total
        })
    });
    g.finish();
}

/// A raw producer (no delivery reports: librdkafka frees each message once the broker
/// acknowledged it) and its topic, partitioned by erlkaf's partitioner or librdkafka's.
struct RawProducer {
    rk: *mut rd::rd_kafka_t,
    rkt: *mut rd::rd_kafka_topic_t,
    /// Set when the topic has erlkaf's partitioner (its state, alive until the destroy).
    partitioner: Option<Box<Partitioner>>,
}

impl RawProducer {
    fn new(mock: &MockCluster, erlkaf_partitioner: bool) -> RawProducer {
        let mut props = Properties::new([
            ("bootstrap.servers", mock.bootstrap_servers()),
            ("linger.ms", "5"),
            ("acks", "1"),
            ("queue.buffering.max.messages", QUEUED_MAX.to_string().as_str()),
        ]);
        let linger_us = erlkaf_partitioner.then(|| partitioner::take_over(&mut props));
        let conf = props.to_conf().expect("conf").into_raw();
        let mut err = [0 as std::os::raw::c_char; 256];
        // SAFETY: conf is ours until rd_kafka_new takes it (it succeeds here).
        let rk = unsafe { rd::rd_kafka_new(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf, err.as_mut_ptr(), err.len()) };
        assert!(!rk.is_null(), "rd_kafka_new failed");
        let (rkt, partitioner) = match linger_us {
            Some(us) => {
                // SAFETY: live producer handle.
                let (rkt, p) = unsafe { Partitioner::default_topic(rk, c"bench", us) };
                (rkt, Some(p))
            }
            // SAFETY: live handle; a null conf is the client's default.
            None => (unsafe { rd::rd_kafka_topic_new(rk, c"bench".as_ptr(), std::ptr::null_mut()) }, None),
        };
        assert!(!rkt.is_null());
        RawProducer { rk, rkt, partitioner }
    }

    /// Produces N keyless messages in calls of 1000, through erlkaf's run partitioning
    /// when the topic has erlkaf's partitioner, else straight to librdkafka.
    fn produce(&self, values: &Payloads) {
        let mut msgs: Vec<rd::rd_kafka_message_t> = Vec::with_capacity(1000);
        for chunk in 0..N / 1000 {
            msgs.clear();
            msgs.extend((0..1000).map(|j| {
                let v = unbound(values, chunk * 1000 + j);
                // SAFETY: all-zero is a valid message (no key, no opaque).
                let mut m: rd::rd_kafka_message_t = unsafe { std::mem::zeroed() };
                m.payload = v.as_ptr() as *mut _;
                m.len = v.len();
                m
            }));
            // SAFETY: live topic; the values live as long as the bench (static payloads).
            let good = unsafe {
                if self.partitioner.is_some() {
                    partitioner::produce_batch(self.rkt, -1, &mut msgs)
                } else {
                    rd::rd_kafka_produce_batch(self.rkt, -1, 0, msgs.as_mut_ptr(), 1000) as usize
                }
            };
            assert_eq!(good, 1000, "{:?}", msgs.iter().find(|m| m.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).map(|m| m.err));
        }
    }

    /// Waits until librdkafka holds no message.
    fn flush(&self) {
        // SAFETY: live handle.
        let err = unsafe { rd::rd_kafka_flush(self.rk, 30_000) };
        assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR, "flush");
    }
}

impl Drop for RawProducer {
    fn drop(&mut self) {
        // SAFETY: ours, destroyed once; the partitioner's state (a field) is dropped
        // after this returns, when librdkafka no longer calls it.
        unsafe {
            rd::rd_kafka_topic_destroy(self.rkt);
            rd::rd_kafka_destroy(self.rk);
        }
    }
}

fn partition_mock(c: &mut Criterion) {
    let mock = mock_cluster();
    let values = payloads(100);
    let mut g = c.benchmark_group("raw rd_kafka_produce_batch of keyless 100 B messages into the mock cluster");
    g.throughput(Throughput::Elements(N as u64));
    g.measurement_time(Duration::from_secs(3));
    for (label, ours) in [("librdkafka's partitioner, a decision per message", false), ("erlkaf's partitioner, a decision per run", true)] {
        let p = RawProducer::new(&mock, ours);
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    p.produce(&values);
                    // Within librdkafka's queue limit.
                    if (i + 1) % (QUEUED_MAX / 2 / N as u64) == 0 {
                        p.flush();
                    }
                }
                p.flush();
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, config, ledger, open_batches, handover, error_names, produce_mock, consume_mock, partition_mock);
criterion_main!(benches);
