//! Group consumer behaviour against the in-process mock cluster.

use erlkaf_core::config::Properties;
use erlkaf_core::consumer::{Consumer, ConsumerOptions, ConsumerSink, Shared};
use erlkaf_core::message::MessageView;
use erlkaf_core::mock::MockCluster;
use erlkaf_core::producer::{OutMessage, Producer, ShutdownReport};
use erlkaf_core::pump::{ClientEvent, Delivery, Sink};
use erlkaf_core::tpl::TopicPartition;
use erlkaf_core::ErrorCode;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

/// What a member's sink saw, in order.
enum Seen {
    Assigned(Vec<i32>),
    Revoked,
    /// A batch of this partition: its first offset and the offset after its last.
    Batch(i32, i64, i64),
}

/// Never acknowledges a batch (a handler that is stuck), so flow control pauses each
/// partition after `max_inflight` batches; answers revokes at once.
struct Stuck {
    tx: mpsc::Sender<Seen>,
    shared: Arc<OnceLock<Arc<Shared>>>,
}

impl ConsumerSink for Stuck {
    fn messages(&mut self, _topic: &str, partition: i32, msgs: &[MessageView<'_>]) {
        let _ = self.tx.send(Seen::Batch(partition, msgs[0].offset(), msgs[msgs.len() - 1].offset() + 1));
    }
    fn assigned(&mut self, parts: &[TopicPartition]) {
        let _ = self.tx.send(Seen::Assigned(parts.iter().map(|p| p.partition).collect()));
    }
    fn revoked(&mut self, _parts: &[TopicPartition], generation: u64) {
        let _ = self.tx.send(Seen::Revoked);
        if let Some(s) = self.shared.get() {
            s.revoke_done(generation);
        }
    }
    fn consume_error(&mut self, _t: &str, _p: i32, _c: ErrorCode, _r: &str) {}
    fn event(&mut self, _e: ClientEvent<'_>) {}
    fn tick(&mut self) {}
    fn stopped(&mut self) {}
}

struct NoReports;
impl Sink<Vec<Vec<u8>>> for NoReports {
    fn deliveries(&mut self, _r: &[Delivery<'_, Vec<Vec<u8>>>]) {}
    fn event(&mut self, _e: ClientEvent<'_>) {}
    fn stopped(&mut self, _r: &ShutdownReport) {}
}

fn member(mock: &MockCluster, group: &str) -> (Consumer, mpsc::Receiver<Seen>) {
    member_with(mock, group, 1)
}

fn member_with(mock: &MockCluster, group: &str, max_inflight: u32) -> (Consumer, mpsc::Receiver<Seen>) {
    member_opts(mock, group, ConsumerOptions { max_inflight, ..ConsumerOptions::default() })
}

fn member_opts(mock: &MockCluster, group: &str, opts: ConsumerOptions) -> (Consumer, mpsc::Receiver<Seen>) {
    let props = Properties::new([
        ("bootstrap.servers", mock.bootstrap_servers()),
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("fetch.wait.max.ms", "10"),
        ("heartbeat.interval.ms", "100"),
        ("session.timeout.ms", "6000"),
    ]);
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(OnceLock::new());
    let c = Consumer::new("member", &props, &["t".to_string()], opts, Box::new(Stuck { tx, shared: shared.clone() })).unwrap();
    let _ = shared.set(c.shared().clone());
    (c, rx)
}

/// Waits for what `want` picks out of the member's events (30 s at most).
fn wait_for(rx: &mpsc::Receiver<Seen>, what: &str, mut want: impl FnMut(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) if want(&s) => return,
            Ok(_) => {}
            Err(_) => panic!("no {what} in 30 s"),
        }
    }
}

/// The first offset of the next batch of partition 0 (30 s at most).
fn next_batch_start(rx: &mpsc::Receiver<Seen>, what: &str) -> i64 {
    let mut first = None;
    wait_for(rx, what, |s| match s {
        Seen::Batch(0, f, _) => {
            first = Some(*f);
            true
        }
        _ => false,
    });
    first.unwrap()
}

/// A mock cluster with topic "t" (one partition) holding `n` messages.
fn mock_with_messages(n: usize) -> MockCluster {
    mock_with_values(n, 0)
}

/// A mock cluster with topic "t" (one partition) holding `n` messages of `size` bytes
/// (at least their number's digits).
fn mock_with_values(n: usize, size: usize) -> MockCluster {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t", 1, 1).unwrap();
    mock.set_group_initial_rebalance_delay(0);
    let props = Properties::new([("bootstrap.servers", mock.bootstrap_servers()), ("linger.ms", "1")]);
    let p: Producer<Vec<Vec<u8>>> = Producer::new("p", &props, Box::new(NoReports)).unwrap();
    let keep: Vec<Vec<u8>> = (0..n).map(|i| format!("v{i:0size$}").into_bytes()).collect();
    let vals: Vec<&'static [u8]> = keep.iter().map(|v| unsafe { std::slice::from_raw_parts(v.as_ptr(), v.len()) }).collect();
    let msgs: Vec<OutMessage> =
        vals.iter().map(|v| OutMessage { topic: b"t", partition: 0, key: None, value: Some(v), headers: &[], timestamp: 0 }).collect();
    // SAFETY: the values point into `keep`, which the batch owns.
    assert_eq!(unsafe { p.shared().produce(keep, &msgs) }.accepted, n);
    p.shared().flush(Duration::from_secs(10)).unwrap();
    mock
}

/// The application's pause outlasts flow control: acknowledging the batches that used
/// up the credit does not resume a partition the application paused; its resume does,
/// from the first offset not handed out (nothing skipped, nothing twice).
#[test]
fn application_pause_outlasts_credit() {
    let mock = mock_with_messages(5000);
    let (a, rx) = member_with(&mock, "g2", 2);
    let mut batches = Vec::new();
    wait_for(&rx, "two batches", |s| {
        if let Seen::Batch(0, first, next) = s {
            batches.push((*first, *next));
        }
        batches.len() == 2
    });
    let shared = a.shared().clone();
    shared.set_paused("t", 0, true).unwrap();
    for (_, next) in &batches {
        shared.ack("t", 0, *next).unwrap();
    }
    let quiet = rx.recv_timeout(Duration::from_millis(1500));
    assert!(!matches!(quiet, Ok(Seen::Batch(..))), "a batch arrived while the application had the partition paused");
    shared.set_paused("t", 0, false).unwrap();
    assert_eq!(next_batch_start(&rx, "a batch after resume"), batches[1].1, "resumed where the last batch ended");
    assert!(shared.set_paused("t", 7, true).is_err(), "an unassigned partition is refused");
    a.shutdown();
}

/// A partition that flow control paused, revoked by a rebalance and assigned to the same
/// member again is fetched again (librdkafka keeps an application pause across
/// assignments of the same consumer), from its committed offset: nothing was
/// acknowledged, so from the start (resuming on assignment seeked to where the member had
/// fetched before, skipping what it never handled).
#[test]
fn paused_partition_assigned_again_is_fetched() {
    let mock = mock_with_messages(2000);

    // A gets the partition and a batch, then is paused (it never acknowledges).
    let (a, rx_a) = member(&mock, "g1");
    wait_for(&rx_a, "first batch", |s| matches!(s, Seen::Batch(0, ..)));
    // B joins: A's partition is revoked (eager protocol); whoever gets it, B then leaves
    // and it ends with A again.
    let (b, _rx_b) = member(&mock, "g1");
    wait_for(&rx_a, "revoke", |s| matches!(s, Seen::Revoked));
    b.shutdown();
    let mut assigned = false;
    let mut first = None;
    wait_for(&rx_a, "batch after the partition came back", |s| match s {
        Seen::Assigned(ps) if ps.contains(&0) => {
            assigned = true;
            false
        }
        Seen::Revoked => {
            assigned = false;
            false
        }
        Seen::Batch(0, offset, _) if assigned => {
            first = Some(*offset);
            true
        }
        _ => false,
    });
    assert_eq!(first, Some(0), "fetched again from the committed offset (none: the start)");
    a.shutdown();
}

/// Byte credit: a partition whose handler acknowledges nothing gets at most
/// `max_inflight_bytes` (and one message) of a fetch that holds far more, in batches of a
/// share of it each; acknowledging them brings the rest, from where they ended.
#[test]
fn byte_credit_bounds_what_a_stuck_partition_holds() {
    // 3000 messages of ~1 KiB in one fetch; 64 KiB of credit in 4 batches.
    let mock = mock_with_values(3000, 1000);
    let opts = ConsumerOptions { max_inflight: 4, max_inflight_bytes: 64 * 1024, ..ConsumerOptions::default() };
    let (a, rx) = member_opts(&mock, "g3", opts);
    let per_message = 1001 + 200;
    let mut batches = Vec::new();
    wait_for(&rx, "a first batch", |s| {
        if let Seen::Batch(0, first, next) = s {
            batches.push((*first, *next));
        }
        !batches.is_empty()
    });
    // Everything that arrives before the partition is paused.
    while let Ok(s) = rx.recv_timeout(Duration::from_millis(1500)) {
        if let Seen::Batch(0, first, next) = s {
            batches.push((first, next));
        }
    }
    let held: i64 = batches.iter().map(|(f, n)| n - f).sum();
    assert!(held as usize * per_message <= 64 * 1024 + per_message, "{held} messages held: over the byte credit");
    // Paused by whichever credit ran out first: the bytes, or the batches (under load the
    // pump can meet the fetched messages as librdkafka queues them, one a round: four
    // batches of one message, measured in 1 run of 5 with two test binaries at once).
    assert!(
        held as usize * per_message >= 32 * 1024 || batches.len() == 4,
        "{held} messages held in {} batches: credit left unused ({batches:?})",
        batches.len()
    );
    for (f, n) in &batches {
        assert!(((n - f) as usize - 1) * per_message <= 16 * 1024, "a batch of {} messages is over its share", n - f);
    }
    for w in batches.windows(2) {
        assert_eq!(w[0].1, w[1].0, "batches follow each other");
    }
    let shared = a.shared().clone();
    for (_, next) in &batches {
        shared.ack("t", 0, *next).unwrap();
    }
    let end = batches.last().unwrap().1;
    assert_eq!(next_batch_start(&rx, "a batch after the acks"), end, "resumed where the last batch ended");
    a.shutdown();
}
