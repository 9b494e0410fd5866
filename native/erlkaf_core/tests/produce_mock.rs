//! Producer behaviour against the in-process mock cluster.

use erlkaf_core::config::Properties;
use erlkaf_core::mock::MockCluster;
use erlkaf_core::producer::{OutMessage, Producer, ShutdownReport};
use erlkaf_core::pump::{ClientEvent, Delivery, Sink};
use erlkaf_core::{Error, ErrorCode};
use std::sync::mpsc;
use std::time::Duration;

/// Payload owner of a test batch: the values themselves.
type Keep = Vec<Vec<u8>>;

/// A header copied out of a report: name and value (`None`: null).
type OwnedHeader = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone, PartialEq)]
struct Report {
    index: usize,
    err: ErrorCode,
    partition: i32,
    offset: i64,
    value: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    headers: Option<Vec<OwnedHeader>>,
    ts: (i64, erlkaf_core::message::TimestampType),
}

enum Msg {
    Reports(Vec<Report>),
    Stopped(ShutdownReport),
}

struct TestSink(mpsc::Sender<Msg>);

impl Sink<Keep> for TestSink {
    fn deliveries(&mut self, reports: &[Delivery<'_, Keep>]) {
        let v = reports
            .iter()
            .map(|d| {
                // The payload librdkafka reports is our memory, not a copy.
                if let Some(p) = d.message.payload() {
                    let ours = &d.batch.keep()[d.index];
                    assert_eq!(p.as_ptr(), ours.as_ptr(), "payload was copied");
                }
                Report {
                    index: d.index,
                    err: d.error(),
                    partition: d.message.partition(),
                    offset: d.message.offset(),
                    value: d.message.payload().map(|p| p.to_vec()),
                    key: d.message.key().map(|p| p.to_vec()),
                    headers: d.message.headers().map(|h| {
                        h.into_iter().map(|(n, v)| (n.to_vec(), v.map(|v| v.to_vec()))).collect()
                    }),
                    ts: d.timestamp(),
                }
            })
            .collect();
        let _ = self.0.send(Msg::Reports(v));
    }
    fn event(&mut self, _e: ClientEvent<'_>) {}
    fn stopped(&mut self, r: &ShutdownReport) {
        let _ = self.0.send(Msg::Stopped(r.clone()));
    }
}

fn producer(mock: &MockCluster, extra: &[(&str, &str)]) -> (Producer<Keep>, mpsc::Receiver<Msg>) {
    let (tx, rx) = mpsc::channel();
    let mut props = Properties::new([("bootstrap.servers", mock.bootstrap_servers()), ("linger.ms", "1")]);
    for (k, v) in extra {
        props.set(k, v);
    }
    (Producer::new("test", &props, Box::new(TestSink(tx))).unwrap(), rx)
}

/// Slices into the heap buffers of `keep`, which do not move when `keep` itself is moved
/// into the batch.
fn borrow(keep: &Keep) -> Vec<&'static [u8]> {
    keep.iter().map(|v| unsafe { std::slice::from_raw_parts(v.as_ptr(), v.len()) }).collect()
}

fn collect(rx: &mpsc::Receiver<Msg>, n: usize) -> Vec<Report> {
    let mut out = Vec::new();
    while out.len() < n {
        match rx.recv_timeout(Duration::from_secs(20)).expect("reports in time") {
            Msg::Reports(r) => out.extend(r),
            Msg::Stopped(r) => panic!("stopped early: {r:?}"),
        }
    }
    out
}

#[test]
fn batch_is_reported_once_per_message_with_offsets() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t1", 2, 1).unwrap();
    let (p, rx) = producer(&mock, &[]);
    let keep: Keep = (0..1000).map(|i| format!("value-{i}").into_bytes()).collect();
    let values = keep.clone();
    let vals = borrow(&keep);
    let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("k{i}").into_bytes()).collect();
    let hdrs = [(&b"h1"[..], Some(&b"v1"[..])), (&b"h2"[..], None)];
    let msgs: Vec<OutMessage> = (0..1000)
        .map(|i| OutMessage {
            topic: b"t1",
            partition: (i % 2) as i32,
            key: Some(&keys[i]),
            value: Some(vals[i]),
            headers: if i == 0 { &hdrs } else { &[] },
            timestamp: if i == 1 { 1_600_000_000_000 } else { 0 },
        })
        .collect();
    let out = unsafe { p.shared().produce(keep, &msgs) };
    assert_eq!(out.accepted, 1000);
    assert!(out.error.is_none());
    let mut reports = collect(&rx, 1000);
    reports.sort_by_key(|r| r.index);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.index, i);
        assert!(r.err.is_ok(), "{:?}", r.err);
        assert_eq!(r.partition, (i % 2) as i32);
        assert_eq!(r.value.as_deref(), Some(&values[i][..]));
        assert_eq!(r.key.as_deref(), Some(&keys[i][..]));
    }
    // Offsets per partition are 0..500.
    for part in 0..2 {
        let mut offs: Vec<i64> = reports.iter().filter(|r| r.partition == part).map(|r| r.offset).collect();
        offs.sort();
        assert_eq!(offs, (0..500).collect::<Vec<_>>());
    }
    assert_eq!(reports[0].headers, Some(vec![(b"h1".to_vec(), Some(b"v1".to_vec())), (b"h2".to_vec(), None)]));
    // The mock answers every Produce with LogAppendTime 1234 (rdkafka_mock_handlers.c), and
    // librdkafka reports the broker's time then; a real broker with CreateTime echoes ours.
    use erlkaf_core::message::TimestampType::*;
    assert!(matches!(reports[1].ts, (1_600_000_000_000, CreateTime) | (1234, LogAppendTime)), "{:?}", reports[1].ts);
    let rep = p.shutdown(Duration::from_secs(5)).unwrap();
    assert!(rep.flushed);
    assert_eq!(rep.unreported, 0);
    // Slots are released after the sink returned: checked once the pump has stopped.
    assert_eq!(p.shared().counters().live_batches(), 0);
}

#[test]
fn null_key_and_tombstone() {
    let mock = MockCluster::new(1).unwrap();
    let (p, rx) = producer(&mock, &[]);
    let msgs = [OutMessage { topic: b"t2", partition: -1, key: None, value: None, headers: &[], timestamp: 0 }];
    let out = unsafe { p.shared().produce(Vec::new(), &msgs) };
    assert_eq!(out.accepted, 1);
    let r = collect(&rx, 1);
    assert!(r[0].err.is_ok());
    assert_eq!((r[0].key.clone(), r[0].value.clone()), (None, None));
}

/// Values with no key, headers or timestamp, to `topic` and `partition`.
fn plain<'a>(topic: &'a [u8], partition: i32, vals: &[&'a [u8]]) -> Vec<OutMessage<'a>> {
    vals.iter()
        .map(|v| OutMessage { topic, partition, key: None, value: Some(v), headers: &[], timestamp: 0 })
        .collect()
}

/// A full queue stops the batch at the first refused message (to a partition or with the
/// partitioner choosing); the rest is not produced and the accepted count says where.
#[test]
fn queue_full_refuses_the_rest_and_says_where() {
    for (topic, partition) in [(&b"t3"[..], 0), (&b"t3ua"[..], -1)] {
        let mock = MockCluster::new(1).unwrap();
        mock.broker_down(-1).unwrap();
        let (p, rx) = producer(&mock, &[("queue.buffering.max.messages", "10")]);
        let keep: Keep = (0..25).map(|i| vec![i as u8; 100]).collect();
        let msgs = plain(topic, partition, &borrow(&keep));
        let out = unsafe { p.shared().produce(keep, &msgs) };
        assert_eq!((out.accepted, out.error), (10, Some(Error::Kafka(ErrorCode::QUEUE_FULL))));
        // Stop with the broker down: the 10 accepted are purged and each gets an error report.
        let rep = p.shutdown(Duration::from_millis(200)).unwrap();
        assert!(!rep.flushed);
        assert_eq!(rep.unreported, 0);
        let mut errs = 0;
        let mut stopped = false;
        while let Ok(m) = rx.recv_timeout(Duration::from_secs(5)) {
            match m {
                Msg::Reports(r) => {
                    errs += r.iter().filter(|r| !r.err.is_ok()).count();
                    assert!(r.iter().all(|r| !r.err.is_ok()));
                }
                Msg::Stopped(_) => {
                    stopped = true;
                    break;
                }
            }
        }
        assert!(stopped);
        assert_eq!(errs, 10);
        assert_eq!(p.shared().counters().live_batches(), 0);
    }
}

/// Partitioner-chosen messages mixed with headers, a timestamp, a second topic, null keys
/// and values and a large value: every message is reported once, with its own key and value.
#[test]
fn mixed_batch_to_the_partitioner_is_reported_once_per_message() {
    let mock = MockCluster::new(1).unwrap();
    let (p, rx) = producer(&mock, &[("message.max.bytes", "20000")]);
    let n = 3000;
    let keep: Keep = (0..n).map(|i| if i == 2500 { vec![7u8; 19_500] } else { format!("v{i}").into_bytes() }).collect();
    let values = keep.clone();
    let vals = borrow(&keep);
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
    let hdrs = [(&b"h"[..], Some(&b"1"[..]))];
    let msgs: Vec<OutMessage> = (0..n)
        .map(|i| OutMessage {
            topic: if i % 700 == 3 { b"runs-b" } else { b"runs-a" },
            partition: -1,
            key: if i % 3 == 0 { None } else { Some(&keys[i][..]) },
            value: if i == 10 { None } else { Some(vals[i]) },
            headers: if i % 500 == 7 { &hdrs } else { &[] },
            timestamp: if i == 11 { 1_600_000_000_000 } else { 0 },
        })
        .collect();
    let out = unsafe { p.shared().produce(keep, &msgs) };
    assert_eq!((out.accepted, out.error), (n, None));
    let mut reports = collect(&rx, n);
    reports.sort_by_key(|r| r.index);
    assert_eq!(reports.iter().map(|r| r.index).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    for (i, r) in reports.iter().enumerate() {
        assert!(r.err.is_ok(), "{i}: {:?}", r.err);
        assert_eq!(r.value.as_deref(), if i == 10 { None } else { Some(&values[i][..]) }, "{i}");
        assert_eq!(r.key.as_deref(), if i % 3 == 0 { None } else { Some(&keys[i][..]) }, "{i}");
        assert_eq!(r.headers.is_some(), i % 500 == 7, "{i}");
    }
    assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
    assert_eq!(p.shared().counters().live_batches(), 0);
}

/// A value too large for `message.max.bytes` fails at its own index; the messages before
/// it were produced.
#[test]
fn too_large_value_fails_at_its_index() {
    let mock = MockCluster::new(1).unwrap();
    let (p, rx) = producer(&mock, &[("message.max.bytes", "10000")]);
    let keep: Keep = (0..20).map(|i| if i == 12 { vec![1u8; 20_000] } else { vec![2u8; 10] }).collect();
    let msgs = plain(b"big", -1, &borrow(&keep));
    let out = unsafe { p.shared().produce(keep, &msgs) };
    assert_eq!((out.accepted, out.error), (12, Some(Error::Kafka(ErrorCode(10)))) /* MSG_SIZE_TOO_LARGE */);
    assert_eq!(collect(&rx, 12).len(), 12);
    assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
    assert_eq!(p.shared().counters().live_batches(), 0);
}

/// Runs of plain messages go to librdkafka in one call each: a run to a partition that
/// does not exist is refused as a whole, and the batch stops there as it would message by
/// message (the runs before it accepted and reported, nothing after it produced).
#[test]
fn unknown_partition_stops_the_batch_at_its_first_message() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t5", 2, 1).unwrap();
    let (p, rx) = producer(&mock, &[]);
    // Metadata first: with the topic's partitions unknown, librdkafka queues the messages
    // and fails them later, in their reports.
    let warm: Keep = vec![b"w".to_vec()];
    let msgs = plain(b"t5", 0, &borrow(&warm));
    assert_eq!(unsafe { p.shared().produce(warm, &msgs) }.accepted, 1);
    assert!(collect(&rx, 1)[0].err.is_ok());
    let keep: Keep = (0..30).map(|i| vec![i as u8; 10]).collect();
    let vals = borrow(&keep);
    let mut msgs = plain(b"t5", 0, &vals[..10]);
    msgs.extend(plain(b"t5", 5, &vals[10..20]));
    msgs.extend(plain(b"t5", 1, &vals[20..]));
    let out = unsafe { p.shared().produce(keep, &msgs) };
    assert_eq!((out.accepted, out.error), (10, Some(Error::Kafka(ErrorCode::UNKNOWN_PARTITION))));
    let reports = collect(&rx, 10);
    assert!(reports.iter().all(|r| r.err.is_ok() && r.partition == 0 && r.index < 10), "{reports:?}");
    assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(200)) {
        assert!(matches!(m, Msg::Stopped(_)), "a report for a message that was not accepted");
    }
    assert_eq!(p.shared().counters().live_batches(), 0);
    assert_eq!(p.shared().counters().outstanding(), 0);
}

#[test]
fn create_topic_twice_and_bad_config() {
    let mock = MockCluster::new(1).unwrap();
    let (p, _rx) = producer(&mock, &[]);
    let acks = Properties::new([("request.required.acks", "1")]);
    p.shared().create_topic(b"t4", &acks).unwrap();
    assert_eq!(p.shared().create_topic(b"t4", &acks), Err(Error::TopicExists));
    let bad = Properties::new([("request.required.acks", "lots")]);
    assert!(matches!(p.shared().create_topic(b"t5", &bad), Err(Error::InvalidConfig(..))));
    assert_eq!(p.shared().create_topic(b"", &acks), Err(Error::InvalidTopic));
    let (tx, _rx2) = mpsc::channel();
    let badp = Producer::<Keep>::new("x", &Properties::new([("linger.ms", "x")]), Box::new(TestSink(tx)));
    assert!(matches!(badp, Err(Error::InvalidConfig(k, _)) if k == "linger.ms"));
}

#[test]
fn produce_after_shutdown_is_refused() {
    let mock = MockCluster::new(1).unwrap();
    let (p, _rx) = producer(&mock, &[]);
    p.shutdown(Duration::from_secs(1)).unwrap();
    let msgs = [OutMessage { topic: b"t6", partition: -1, key: None, value: Some(b"x"), headers: &[], timestamp: 0 }];
    let out = unsafe { p.shared().produce(Vec::new(), &msgs) };
    assert_eq!(out, erlkaf_core::producer::ProduceOutcome { accepted: 0, error: Some(Error::ClientStopped) });
}

/// Keys and values of `n` messages to `topic` through the partitioner: keyless where
/// `keyless(i)`, else key `k{i}`.
fn keyed_or_not(n: usize, keyless: impl Fn(usize) -> bool) -> (Keep, Vec<Vec<u8>>, Vec<bool>) {
    let keep: Keep = (0..n).map(|i| format!("v{i}").into_bytes()).collect();
    let keys = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
    (keep, keys, (0..n).map(keyless).collect())
}

/// Produces the messages of keyed_or_not (after one message whose report says the
/// topic's partitions are known) and returns each one's partition, by index.
fn partitions_of(p: &Producer<Keep>, rx: &mpsc::Receiver<Msg>, topic: &[u8], batch: (Keep, Vec<Vec<u8>>, Vec<bool>)) -> Vec<i32> {
    let warm = [OutMessage { topic, partition: -1, key: None, value: None, headers: &[], timestamp: 0 }];
    assert_eq!(unsafe { p.shared().produce(Vec::new(), &warm) }.accepted, 1);
    collect(rx, 1);
    let (keep, keys, keyless) = batch;
    let vals = borrow(&keep);
    let msgs: Vec<OutMessage> = (0..keep.len())
        .map(|i| OutMessage {
            topic,
            partition: -1,
            key: if keyless[i] { None } else { Some(&keys[i][..]) },
            value: Some(vals[i]),
            headers: &[],
            timestamp: 0,
        })
        .collect();
    let n = msgs.len();
    assert_eq!(unsafe { p.shared().produce(keep, &msgs) }.accepted, n);
    let mut reports = collect(rx, n);
    reports.sort_by_key(|r| r.index);
    assert!(reports.iter().all(|r| r.err.is_ok()));
    reports.iter().map(|r| r.partition).collect()
}

/// librdkafka's partitioner of that name, for a key (it does not read the topic).
fn librdkafka_partition(f: unsafe extern "C" fn(*const rdkafka_sys::rd_kafka_topic_t, *const std::ffi::c_void, usize, i32, *mut std::ffi::c_void, *mut std::ffi::c_void) -> i32, key: &[u8], cnt: i32) -> i32 {
    unsafe { f(std::ptr::null(), key.as_ptr() as *const _, key.len(), cnt, std::ptr::null_mut(), std::ptr::null_mut()) }
}

/// erlkaf's partitioner keeps librdkafka's rules: keyless messages of a batch share one
/// sticky partition (and a run of them takes one decision), keys hash as librdkafka's
/// partitioner of the topic's `partitioner` setting hashes them.
#[test]
fn keyless_batch_sticks_to_one_partition_and_keys_hash_as_librdkafka() {
    use rdkafka_sys as rd;
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("sticky", 8, 1).unwrap();
    for (setting, hash) in [
        (None, rd::rd_kafka_msg_partitioner_consistent as _),
        (Some("murmur2_random"), rd::rd_kafka_msg_partitioner_murmur2 as _),
        (Some("fnv1a_random"), rd::rd_kafka_msg_partitioner_fnv1a as _),
    ] {
        // (A long interval: the batch's runs must not see the sticky partition expire.)
        let mut extra = vec![("sticky.partitioning.linger.ms", "60000")];
        extra.extend(setting.map(|s| ("partitioner", s)));
        let (p, rx) = producer(&mock, &extra);
        let got = partitions_of(&p, &rx, b"sticky", keyed_or_not(3000, |i| i % 10 != 3));
        let keyless: std::collections::BTreeSet<i32> = (0..3000).filter(|i| i % 10 != 3).map(|i| got[i]).collect();
        assert_eq!(keyless.len(), 1, "{setting:?}: keyless messages went to {keyless:?}");
        for i in (0..3000).filter(|i| i % 10 == 3) {
            assert_eq!(got[i], librdkafka_partition(hash, format!("k{i}").as_bytes(), 8), "{setting:?}: k{i}");
        }
        assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
    }
}

/// The sticky partition changes after `sticky.partitioning.linger.ms` (a run's choice is
/// not kept beyond it), and is off with 0: keyless messages then go anywhere.
#[test]
fn sticky_partition_moves_on_after_its_interval_and_is_off_with_zero() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("sticky2", 8, 1).unwrap();
    let (p, rx) = producer(&mock, &[("sticky.partitioning.linger.ms", "1")]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let got = partitions_of(&p, &rx, b"sticky2", keyed_or_not(100, |_| true));
        assert!(got.iter().all(|&x| x == got[0]), "one batch, one partition: {got:?}");
        seen.insert(got[0]);
        std::thread::sleep(Duration::from_millis(3));
    }
    // 40 random choices of 8 all in one partition: chance 8^-39.
    assert!(seen.len() > 1, "{seen:?}");
    assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
    // Off: librdkafka's random partitioner per message.
    let (p, rx) = producer(&mock, &[("sticky.partitioning.linger.ms", "0")]);
    let got = partitions_of(&p, &rx, b"sticky2", keyed_or_not(1000, |_| true));
    assert!(got.iter().collect::<std::collections::BTreeSet<_>>().len() > 1);
    assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
    // A hashing partitioner without `_random`: keyless messages go to the hash of no key.
    let (p, rx) = producer(&mock, &[("partitioner", "consistent")]);
    let got = partitions_of(&p, &rx, b"sticky2", keyed_or_not(1000, |_| true));
    assert!(got.iter().all(|&x| x == 0), "crc32 of no key is 0");
    assert!(p.shutdown(Duration::from_secs(5)).unwrap().flushed);
}
