//! Transactions (a producer with `transactional.id`): init, begin, send a consumer
//! group's offsets, commit, abort. All but `begin` block up to their timeout on broker
//! round trips: callers run them on a thread of their own.

use crate::client::Kafka;
use crate::error::{Error, ErrorCode, Result, TxnError};
use crate::native::{cstr_lossy, NativePtr};
use crate::tpl::{to_tpl, TopicPartition};
use rdkafka_sys as rd;
use std::time::Duration;

fn ms(timeout: Duration) -> i32 {
    timeout.as_millis().min(i32::MAX as u128) as i32
}

/// Turns librdkafka's error object (owned, may be null) into a result.
fn check(err: *mut rd::rd_kafka_error_t) -> Result<()> {
    // SAFETY: err is null or an error object we own (freed by NativePtr).
    let Some(e) = (unsafe { NativePtr::from_ptr(err) }) else { return Ok(()) };
    // SAFETY: live error object; the string is owned by it and copied here.
    let (code, message, fatal, retriable, abortable) = unsafe {
        (
            ErrorCode::from_raw(rd::rd_kafka_error_code(e.ptr())),
            cstr_lossy(rd::rd_kafka_error_string(e.ptr())),
            rd::rd_kafka_error_is_fatal(e.ptr()) != 0,
            rd::rd_kafka_error_is_retriable(e.ptr()) != 0,
            rd::rd_kafka_error_txn_requires_abort(e.ptr()) != 0,
        )
    };
    Err(Error::Txn(TxnError { code, message, fatal, retriable, abortable }))
}

/// `rd_kafka_init_transactions`: fences older producers with the same id.
pub fn init(k: &Kafka, timeout: Duration) -> Result<()> {
    // SAFETY: live handle.
    check(unsafe { rd::rd_kafka_init_transactions(k.ptr(), ms(timeout)) })
}

/// `rd_kafka_begin_transaction` (local, does not block).
pub fn begin(k: &Kafka) -> Result<()> {
    // SAFETY: live handle.
    check(unsafe { rd::rd_kafka_begin_transaction(k.ptr()) })
}

/// `rd_kafka_commit_transaction`: flushes, then commits.
pub fn commit(k: &Kafka, timeout: Duration) -> Result<()> {
    // SAFETY: live handle.
    check(unsafe { rd::rd_kafka_commit_transaction(k.ptr(), ms(timeout)) })
}

/// `rd_kafka_abort_transaction`: purges what is queued, then aborts.
pub fn abort(k: &Kafka, timeout: Duration) -> Result<()> {
    // SAFETY: live handle.
    check(unsafe { rd::rd_kafka_abort_transaction(k.ptr(), ms(timeout)) })
}

/// Adds a consumer's offsets (the next offsets to read) to the current transaction, for
/// consume-transform-produce: they are committed with it, for the consumer's group.
pub fn send_offsets(producer: &Kafka, consumer: &Kafka, offsets: &[TopicPartition], timeout: Duration) -> Result<()> {
    // SAFETY: live consumer handle; the metadata object is ours.
    let meta = unsafe { rd::rd_kafka_consumer_group_metadata(consumer.ptr()) };
    if meta.is_null() {
        return Err(Error::Kafka(ErrorCode::INVALID_ARG));
    }
    let tpl = to_tpl(offsets);
    // SAFETY: live handles, list and metadata (librdkafka copies what it keeps).
    let r = check(unsafe { rd::rd_kafka_send_offsets_to_transaction(producer.ptr(), tpl.ptr(), meta, ms(timeout)) });
    // SAFETY: ours, freed once.
    unsafe { rd::rd_kafka_consumer_group_metadata_destroy(meta) };
    r
}
