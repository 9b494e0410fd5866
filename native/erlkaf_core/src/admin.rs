//! Admin requests (create/delete topics, add partitions) through librdkafka's Admin API.
//! Each call blocks until the broker answered or the timeout passed: callers run them on
//! a thread of their own. Results are per item, so one bad topic does not hide the others.

use crate::client::Kafka;
use crate::error::{Error, ErrorCode, Result};
use crate::native::{cstr_lossy, Destroy, NativePtr};
use rdkafka_sys as rd;
use std::ffi::CString;
use std::time::Duration;

unsafe impl Destroy for rd::rd_kafka_NewTopic_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_NewTopic_destroy;
}
unsafe impl Destroy for rd::rd_kafka_DeleteTopic_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_DeleteTopic_destroy;
}
unsafe impl Destroy for rd::rd_kafka_NewPartitions_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_NewPartitions_destroy;
}
unsafe impl Destroy for rd::rd_kafka_AdminOptions_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_AdminOptions_destroy;
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication: i32,
    /// Topic configuration (`retention.ms`...).
    pub config: Vec<(String, String)>,
}

/// One item's outcome: its name, and `None` or the broker's error with its message.
pub type ItemResult = (String, Option<(ErrorCode, String)>);

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidTopic)
}

fn errbuf_error(buf: &[std::os::raw::c_char]) -> Error {
    // SAFETY: librdkafka wrote a NUL-terminated message into buf.
    Error::InvalidConfig("admin".into(), unsafe { cstr_lossy(buf.as_ptr()) })
}

fn options(k: &Kafka, op: rd::rd_kafka_admin_op_t, timeout: Duration) -> Result<NativePtr<rd::rd_kafka_AdminOptions_t>> {
    // SAFETY: live handle; the options object is ours.
    let o = unsafe { NativePtr::from_ptr(rd::rd_kafka_AdminOptions_new(k.ptr(), op)) }.ok_or(Error::Kafka(ErrorCode::INVALID_ARG))?;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut buf = [0 as std::os::raw::c_char; 256];
    // SAFETY: live options; buf is writable for its length.
    let e = unsafe { rd::rd_kafka_AdminOptions_set_request_timeout(o.ptr(), ms, buf.as_mut_ptr(), buf.len()) };
    if e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(errbuf_error(&buf));
    }
    if op != rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETETOPICS {
        // SAFETY: as above.
        let e = unsafe { rd::rd_kafka_AdminOptions_set_operation_timeout(o.ptr(), ms, buf.as_mut_ptr(), buf.len()) };
        if e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(errbuf_error(&buf));
        }
    }
    Ok(o)
}

/// Sends one admin request with `send(queue)` and waits for its result event, which
/// `read` turns into per-item results.
fn request(
    k: &Kafka,
    timeout: Duration,
    send: impl FnOnce(*mut rd::rd_kafka_queue_t),
    read: impl FnOnce(*mut rd::rd_kafka_event_t) -> Vec<ItemResult>,
) -> Result<Vec<ItemResult>> {
    // SAFETY: live handle; a private queue for this one answer.
    let q = unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_new(k.ptr())) }.ok_or(Error::Kafka(ErrorCode::INVALID_ARG))?;
    send(q.ptr());
    // The request times out on its own; wait a little longer for the event saying so.
    let wait = (timeout + Duration::from_secs(5)).as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: live queue; the event is ours.
    let ev = unsafe { NativePtr::from_ptr(rd::rd_kafka_queue_poll(q.ptr(), wait)) }.ok_or(Error::Kafka(ErrorCode(-185)))?;
    // SAFETY: live event.
    let err = ErrorCode::from_raw(unsafe { rd::rd_kafka_event_error(ev.ptr()) });
    if !err.is_ok() {
        return Err(Error::Kafka(err));
    }
    Ok(read(ev.ptr()))
}

unsafe fn topic_results(arr: *mut *const rd::rd_kafka_topic_result_t, n: usize) -> Vec<ItemResult> {
    if arr.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(arr, n)
        .iter()
        .map(|&r| {
            let name = cstr_lossy(rd::rd_kafka_topic_result_name(r));
            let code = ErrorCode::from_raw(rd::rd_kafka_topic_result_error(r));
            let msg = rd::rd_kafka_topic_result_error_string(r);
            let msg = if msg.is_null() { String::new() } else { cstr_lossy(msg) };
            (name, (!code.is_ok()).then_some((code, msg)))
        })
        .collect()
}

/// Creates topics; one result per topic.
pub fn create_topics(k: &Kafka, topics: &[NewTopic], timeout: Duration) -> Result<Vec<ItemResult>> {
    let mut owned = Vec::with_capacity(topics.len());
    let mut buf = [0 as std::os::raw::c_char; 256];
    for t in topics {
        let name = cstring(&t.name)?;
        // SAFETY: valid name and buffer; the new object is ours.
        let nt = unsafe {
            NativePtr::from_ptr(rd::rd_kafka_NewTopic_new(name.as_ptr(), t.partitions, t.replication, buf.as_mut_ptr(), buf.len()))
        }
        .ok_or_else(|| errbuf_error(&buf))?;
        for (key, value) in &t.config {
            let (key, value) = (cstring(key)?, cstring(value)?);
            // SAFETY: live object; librdkafka copies both strings.
            let e = unsafe { rd::rd_kafka_NewTopic_set_config(nt.ptr(), key.as_ptr(), value.as_ptr()) };
            if e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(Error::Kafka(ErrorCode::from_raw(e)));
            }
        }
        owned.push(nt);
    }
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout)?;
    let mut ptrs: Vec<*mut rd::rd_kafka_NewTopic_t> = owned.iter().map(|t| t.ptr()).collect();
    request(
        k,
        timeout,
        // SAFETY: live handle, objects, options and queue (librdkafka copies what it keeps).
        |q| unsafe { rd::rd_kafka_CreateTopics(k.ptr(), ptrs.as_mut_ptr(), ptrs.len(), opts.ptr(), q) },
        |ev| unsafe {
            // SAFETY: a CreateTopics result event (or null when it is another kind).
            let res = rd::rd_kafka_event_CreateTopics_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_CreateTopics_result_topics(res, &mut n);
            topic_results(arr as *mut _, n)
        },
    )
}

/// Deletes topics; one result per topic.
pub fn delete_topics(k: &Kafka, names: &[String], timeout: Duration) -> Result<Vec<ItemResult>> {
    let mut owned = Vec::with_capacity(names.len());
    for n in names {
        let name = cstring(n)?;
        // SAFETY: valid name; the new object is ours.
        owned.push(unsafe { NativePtr::from_ptr(rd::rd_kafka_DeleteTopic_new(name.as_ptr())) }.ok_or(Error::InvalidTopic)?);
    }
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout)?;
    let mut ptrs: Vec<*mut rd::rd_kafka_DeleteTopic_t> = owned.iter().map(|t| t.ptr()).collect();
    request(
        k,
        timeout,
        // SAFETY: as in create_topics.
        |q| unsafe { rd::rd_kafka_DeleteTopics(k.ptr(), ptrs.as_mut_ptr(), ptrs.len(), opts.ptr(), q) },
        |ev| unsafe {
            let res = rd::rd_kafka_event_DeleteTopics_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_DeleteTopics_result_topics(res, &mut n);
            topic_results(arr as *mut _, n)
        },
    )
}

/// Raises topics' partition counts to the given totals; one result per topic.
pub fn create_partitions(k: &Kafka, totals: &[(String, i32)], timeout: Duration) -> Result<Vec<ItemResult>> {
    let mut owned = Vec::with_capacity(totals.len());
    let mut buf = [0 as std::os::raw::c_char; 256];
    for (n, total) in totals {
        let name = cstring(n)?;
        // SAFETY: valid name and buffer; the new object is ours.
        owned.push(
            unsafe { NativePtr::from_ptr(rd::rd_kafka_NewPartitions_new(name.as_ptr(), *total as usize, buf.as_mut_ptr(), buf.len())) }
                .ok_or_else(|| errbuf_error(&buf))?,
        );
    }
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS, timeout)?;
    let mut ptrs: Vec<*mut rd::rd_kafka_NewPartitions_t> = owned.iter().map(|t| t.ptr()).collect();
    request(
        k,
        timeout,
        // SAFETY: as in create_topics.
        |q| unsafe { rd::rd_kafka_CreatePartitions(k.ptr(), ptrs.as_mut_ptr(), ptrs.len(), opts.ptr(), q) },
        |ev| unsafe {
            let res = rd::rd_kafka_event_CreatePartitions_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_CreatePartitions_result_topics(res, &mut n);
            topic_results(arr as *mut _, n)
        },
    )
}
