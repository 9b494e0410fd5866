//! librdkafka's mock cluster: real Kafka listeners on 127.0.0.1 inside this process.
//!
//! The cluster needs an `rd_kafka_t` for its bookkeeping and must be destroyed before it.
//! [`MockCluster`] owns both; dropping it hands both destroys, in that order, to the reaper.

use crate::client::{Kafka, Kind};
use crate::config::Properties;
use crate::error::{Error, ErrorCode, Result};
use rdkafka_sys as rd;
use std::ffi::CString;
use std::sync::atomic::{AtomicI64, Ordering};

static LIVE: AtomicI64 = AtomicI64::new(0);

/// Default group initial rebalance delay: librdkafka's is 3000 ms, too slow for tests.
pub const DEFAULT_REBALANCE_DELAY_MS: i32 = 100;

/// A mock cluster and the client that keeps its books.
pub struct MockCluster {
    cluster: *mut rd::rd_kafka_mock_cluster_t,
    kafka: Option<Kafka>,
    bootstrap: String,
}

// SAFETY: mock cluster operations post ops to the cluster's own thread and are documented
// usable from any application thread.
unsafe impl Send for MockCluster {}
// SAFETY: as above.
unsafe impl Sync for MockCluster {}

struct SendPtr(*mut rd::rd_kafka_mock_cluster_t);
// SAFETY: moved once to the reaper, which destroys it.
unsafe impl Send for SendPtr {}

impl MockCluster {
    /// Starts a cluster of `brokers` brokers (ids 1..=brokers).
    pub fn new(brokers: i32) -> Result<MockCluster> {
        if !(1..=64).contains(&brokers) {
            return Err(Error::MockCluster(format!("brokers must be 1..64, got {brokers}")));
        }
        // The bookkeeping client never connects anywhere; quiet logs.
        let props = Properties::new([("log_level", "3"), ("client.id", "erlkaf-mock")]);
        let kafka = Kafka::new(Kind::Producer, &props, |_| {})?;
        // SAFETY: live handle; the cluster uses it until we destroy the cluster first.
        let cluster = unsafe { rd::rd_kafka_mock_cluster_new(kafka.ptr(), brokers) };
        if cluster.is_null() {
            return Err(Error::MockCluster("rd_kafka_mock_cluster_new failed".into()));
        }
        // SAFETY: live cluster; the string is owned by it.
        let bootstrap = unsafe { crate::native::cstr_lossy(rd::rd_kafka_mock_cluster_bootstraps(cluster)) };
        LIVE.fetch_add(1, Ordering::SeqCst);
        let m = MockCluster { cluster, kafka: Some(kafka), bootstrap };
        m.set_group_initial_rebalance_delay(DEFAULT_REBALANCE_DELAY_MS);
        Ok(m)
    }

    /// `127.0.0.1:port,...`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic (the mock has no CreateTopics API).
    pub fn create_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<()> {
        let t = cstring(topic)?;
        // SAFETY: live cluster, NUL-terminated name.
        check(unsafe { rd::rd_kafka_mock_topic_create(self.cluster, t.as_ptr(), partitions, replication) })
    }

    /// Disconnects a broker and refuses new connections (-1: all brokers).
    pub fn broker_down(&self, broker: i32) -> Result<()> {
        // SAFETY: live cluster.
        check(unsafe { rd::rd_kafka_mock_broker_set_down(self.cluster, broker) })
    }

    /// Accepts connections again.
    pub fn broker_up(&self, broker: i32) -> Result<()> {
        // SAFETY: live cluster.
        check(unsafe { rd::rd_kafka_mock_broker_set_up(self.cluster, broker) })
    }

    /// Round-trip time added to every response of a broker (-1: all).
    pub fn set_rtt(&self, broker: i32, rtt_ms: i32) -> Result<()> {
        // SAFETY: live cluster.
        check(unsafe { rd::rd_kafka_mock_broker_set_rtt(self.cluster, broker, rtt_ms) })
    }

    /// The next `errors.len()` requests with `api_key` fail with these codes, in order.
    pub fn push_request_errors(&self, api_key: i16, errors: &[ErrorCode]) -> Result<()> {
        let raw: Vec<rd::rd_kafka_resp_err_t> = errors
            .iter()
            .map(|e| e.raw().ok_or(Error::Kafka(ErrorCode::INVALID_ARG)))
            .collect::<Result<_>>()?;
        // SAFETY: live cluster; raw has errors.len() codes.
        unsafe { rd::rd_kafka_mock_push_request_errors_array(self.cluster, api_key, raw.len(), raw.as_ptr()) };
        Ok(())
    }

    /// Clears request errors pushed for `api_key`.
    pub fn clear_request_errors(&self, api_key: i16) {
        // SAFETY: live cluster.
        unsafe { rd::rd_kafka_mock_clear_request_errors(self.cluster, api_key) }
    }

    /// Moves a partition's leadership (-1: no leader).
    pub fn set_partition_leader(&self, topic: &str, partition: i32, broker: i32) -> Result<()> {
        let t = cstring(topic)?;
        // SAFETY: live cluster, NUL-terminated name.
        check(unsafe { rd::rd_kafka_mock_partition_set_leader(self.cluster, t.as_ptr(), partition, broker) })
    }

    /// Delay before the first rebalance of a new group.
    pub fn set_group_initial_rebalance_delay(&self, ms: i32) {
        // SAFETY: live cluster.
        unsafe { rd::rd_kafka_mock_group_initial_rebalance_delay_ms(self.cluster, ms) }
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        let cluster = SendPtr(self.cluster);
        let kafka = self.kafka.take();
        crate::reaper::run("mock", move || {
            let cluster = cluster;
            // SAFETY: we own the cluster; it goes before its bookkeeping client.
            unsafe { rd::rd_kafka_mock_cluster_destroy(cluster.0) };
            drop(kafka);
            LIVE.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Live mock clusters.
pub fn live_clusters() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidTopic)
}

fn check(err: rd::rd_kafka_resp_err_t) -> Result<()> {
    let code = ErrorCode::from_raw(err);
    if code.is_ok() { Ok(()) } else { Err(Error::Kafka(code)) }
}
