//! Cluster metadata and offset queries. Every call here blocks (up to its timeout) on a
//! broker round trip: callers run them on a thread of their own, never on a scheduler.

use crate::client::Kafka;
use crate::error::{Error, ErrorCode, Result};
use crate::native::{cstr_lossy, NativePtr};
use crate::tpl::{from_tpl, to_tpl, TopicPartition};
use rdkafka_sys as rd;
use std::ffi::CString;
use std::time::Duration;

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// A partition: its leader (-1: none), replicas and in-sync replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition id.
    pub id: i32,
    /// The broker's error for this partition (e.g. leader not available).
    pub error: ErrorCode,
    /// Leader broker id.
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isrs: Vec<i32>,
}

/// A topic and its partitions (sorted by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// The broker's error for this topic (e.g. unknown topic).
    pub error: ErrorCode,
    /// Partitions by id.
    pub partitions: Vec<PartitionInfo>,
}

/// What `rd_kafka_metadata` answered, copied out of librdkafka's struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Brokers of the cluster.
    pub brokers: Vec<BrokerInfo>,
    /// Topics asked for (all, or one).
    pub topics: Vec<TopicInfo>,
    /// Id of the broker that answered.
    pub orig_broker_id: i32,
    /// Name of the broker that answered.
    pub orig_broker_name: String,
}

fn ms(timeout: Duration) -> i32 {
    timeout.as_millis().min(i32::MAX as u128) as i32
}

fn topic_name(topic: &str) -> Result<CString> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(Error::InvalidTopic);
    }
    CString::new(topic).map_err(|_| Error::InvalidTopic)
}

/// Metadata of every topic, or of `topic` only (which a broker with auto-creation on may
/// create).
pub fn metadata(k: &Kafka, topic: Option<&str>, timeout: Duration) -> Result<Metadata> {
    let rkt = match topic {
        // SAFETY: live handle; the topic handle is ours and dropped after the call.
        Some(t) => Some(
            unsafe { NativePtr::from_ptr(rd::rd_kafka_topic_new(k.ptr(), topic_name(t)?.as_ptr(), std::ptr::null_mut())) }
                // SAFETY: thread-local last error.
                .ok_or_else(|| Error::Kafka(ErrorCode::from_raw(unsafe { rd::rd_kafka_last_error() })))?,
        ),
        None => None,
    };
    let mut md: *const rd::rd_kafka_metadata = std::ptr::null();
    let only = rkt.as_ref().map_or(std::ptr::null_mut(), |t| t.ptr());
    // SAFETY: live handle and topic; md is an out pointer freed below.
    let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_metadata(k.ptr(), i32::from(only.is_null()), only, &mut md, ms(timeout)) });
    if !err.is_ok() {
        return Err(Error::Kafka(err));
    }
    // SAFETY: md is a valid metadata struct until rd_kafka_metadata_destroy.
    let out = unsafe { copy_metadata(&*md) };
    // SAFETY: md came from rd_kafka_metadata, freed once.
    unsafe { rd::rd_kafka_metadata_destroy(md) };
    Ok(out)
}

unsafe fn slice<'a, T>(ptr: *const T, n: i32) -> &'a [T] {
    if ptr.is_null() || n <= 0 { &[] } else { std::slice::from_raw_parts(ptr, n as usize) }
}

unsafe fn copy_metadata(md: &rd::rd_kafka_metadata) -> Metadata {
    let brokers = slice(md.brokers, md.broker_cnt)
        .iter()
        .map(|b| BrokerInfo { id: b.id, host: cstr_lossy(b.host), port: b.port })
        .collect();
    let topics = slice(md.topics, md.topic_cnt)
        .iter()
        .map(|t| {
            let mut partitions: Vec<PartitionInfo> = slice(t.partitions, t.partition_cnt)
                .iter()
                .map(|p| PartitionInfo {
                    id: p.id,
                    error: ErrorCode::from_raw(p.err),
                    leader: p.leader,
                    replicas: slice(p.replicas, p.replica_cnt).to_vec(),
                    isrs: slice(p.isrs, p.isr_cnt).to_vec(),
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            TopicInfo { name: cstr_lossy(t.topic), error: ErrorCode::from_raw(t.err), partitions }
        })
        .collect();
    Metadata { brokers, topics, orig_broker_id: md.orig_broker_id, orig_broker_name: cstr_lossy(md.orig_broker_name) }
}

/// Low and high watermark offsets of a partition, asked of its leader.
pub fn watermarks(k: &Kafka, topic: &str, partition: i32, timeout: Duration) -> Result<(i64, i64)> {
    let name = topic_name(topic)?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: live handle, NUL-terminated name, valid out pointers.
    let err = ErrorCode::from_raw(unsafe {
        rd::rd_kafka_query_watermark_offsets(k.ptr(), name.as_ptr(), partition, &mut low, &mut high, ms(timeout))
    });
    if err.is_ok() { Ok((low, high)) } else { Err(Error::Kafka(err)) }
}

/// For each `(topic, partition, timestamp ms)` (in `offset`): the earliest offset whose
/// timestamp is at or after it (-1: none, the end of the partition), with a per-partition
/// error.
pub fn offsets_for_times(k: &Kafka, parts: &[TopicPartition], timeout: Duration) -> Result<Vec<(TopicPartition, ErrorCode)>> {
    for p in parts {
        topic_name(&p.topic)?;
    }
    let tpl = to_tpl(parts);
    // SAFETY: live handle and list.
    let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_offsets_for_times(k.ptr(), tpl.ptr(), ms(timeout)) });
    if !err.is_ok() {
        return Err(Error::Kafka(err));
    }
    // SAFETY: live list.
    Ok(unsafe { from_tpl(tpl.ptr()) })
}
