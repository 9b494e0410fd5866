//! Admin requests (create/delete topics, add partitions) through librdkafka's Admin API.
//! Each call blocks until the broker answered or the timeout passed: callers run them on
//! a thread of their own. Results are per item, so one bad topic does not hide the others.

use crate::client::Kafka;
use crate::error::{Error, ErrorCode, Result};
use crate::native::{cstr_lossy, Destroy, NativePtr};
use crate::tpl::{from_tpl, to_tpl, TopicPartition};
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
    use rd::rd_kafka_admin_op_t as Op;
    // The broker-side operation timeout only exists for these requests.
    if matches!(op, Op::RD_KAFKA_ADMIN_OP_CREATETOPICS | Op::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS | Op::RD_KAFKA_ADMIN_OP_DELETERECORDS) {
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
fn request<T>(
    k: &Kafka,
    timeout: Duration,
    send: impl FnOnce(*mut rd::rd_kafka_queue_t),
    read: impl FnOnce(*mut rd::rd_kafka_event_t) -> T,
) -> Result<T> {
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

unsafe impl Destroy for rd::rd_kafka_ConfigResource_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_ConfigResource_destroy;
}
unsafe impl Destroy for rd::rd_kafka_DeleteRecords_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_DeleteRecords_destroy;
}

unsafe fn opt_str(p: *const std::os::raw::c_char) -> Option<String> {
    (!p.is_null()).then(|| cstr_lossy(p))
}

unsafe fn array<'a, T>(p: *mut *const T, n: usize) -> &'a [*const T] {
    if p.is_null() || n == 0 { &[] } else { std::slice::from_raw_parts(p as *const *const T, n) }
}

/// A consumer group as `list_groups` sees it.
#[derive(Debug, Clone)]
pub struct GroupListing {
    /// Group id.
    pub id: String,
    /// A group that only commits offsets (no membership).
    pub simple: bool,
    /// `Stable`, `Empty`, `PreparingRebalance`...
    pub state: String,
}

/// The consumer groups the cluster knows.
pub fn list_groups(k: &Kafka, timeout: Duration) -> Result<Vec<GroupListing>> {
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout)?;
    request(
        k,
        timeout,
        // SAFETY: live handle, options and queue.
        |q| unsafe { rd::rd_kafka_ListConsumerGroups(k.ptr(), opts.ptr(), q) },
        |ev| unsafe {
            // SAFETY: the result event and the objects it owns, read before it is freed.
            let res = rd::rd_kafka_event_ListConsumerGroups_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_ListConsumerGroups_result_valid(res, &mut n);
            array(arr, n)
                .iter()
                .map(|&g| GroupListing {
                    id: cstr_lossy(rd::rd_kafka_ConsumerGroupListing_group_id(g)),
                    simple: rd::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(g) != 0,
                    state: cstr_lossy(rd::rd_kafka_consumer_group_state_name(rd::rd_kafka_ConsumerGroupListing_state(g))),
                })
                .collect()
        },
    )
}

/// A member of a described group.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// The member's `client.id`.
    pub client_id: String,
    /// The member id the coordinator gave it.
    pub consumer_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Its host.
    pub host: String,
    /// Its partitions.
    pub assignment: Vec<(String, i32)>,
}

/// A described consumer group.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// Group id.
    pub id: String,
    /// The broker's error for this group.
    pub error: Option<(ErrorCode, String)>,
    /// A group that only commits offsets.
    pub simple: bool,
    /// `range`, `roundrobin`, `cooperative-sticky`...
    pub assignor: String,
    /// `Stable`, `Empty`...
    pub state: String,
    /// Coordinator `(id, host, port)`.
    pub coordinator: Option<(i32, String, u16)>,
    /// Members.
    pub members: Vec<MemberInfo>,
}

/// Members, assignments, state and coordinator of consumer groups.
pub fn describe_groups(k: &Kafka, ids: &[String], timeout: Duration) -> Result<Vec<GroupInfo>> {
    let names: Vec<CString> = ids.iter().map(|g| cstring(g)).collect::<Result<_>>()?;
    let mut ptrs: Vec<*const std::os::raw::c_char> = names.iter().map(|c| c.as_ptr()).collect();
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, timeout)?;
    request(
        k,
        timeout,
        // SAFETY: live handle, names (copied), options and queue.
        |q| unsafe { rd::rd_kafka_DescribeConsumerGroups(k.ptr(), ptrs.as_mut_ptr(), ptrs.len(), opts.ptr(), q) },
        |ev| unsafe {
            // SAFETY: as in list_groups.
            let res = rd::rd_kafka_event_DescribeConsumerGroups_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_DescribeConsumerGroups_result_groups(res, &mut n);
            array(arr, n).iter().map(|&g| group_info(g)).collect()
        },
    )
}

unsafe fn group_info(g: *const rd::rd_kafka_ConsumerGroupDescription_t) -> GroupInfo {
    let err = rd::rd_kafka_ConsumerGroupDescription_error(g);
    let error = (!err.is_null()).then(|| {
        (ErrorCode::from_raw(rd::rd_kafka_error_code(err)), cstr_lossy(rd::rd_kafka_error_string(err)))
    });
    let node = rd::rd_kafka_ConsumerGroupDescription_coordinator(g);
    let coordinator = (!node.is_null())
        .then(|| (rd::rd_kafka_Node_id(node), cstr_lossy(rd::rd_kafka_Node_host(node)), rd::rd_kafka_Node_port(node)));
    let members = (0..rd::rd_kafka_ConsumerGroupDescription_member_count(g))
        .map(|i| {
            let m = rd::rd_kafka_ConsumerGroupDescription_member(g, i);
            let a = rd::rd_kafka_MemberDescription_assignment(m);
            let parts = if a.is_null() { std::ptr::null() } else { rd::rd_kafka_MemberAssignment_partitions(a) };
            let assignment =
                if parts.is_null() { Vec::new() } else { from_tpl(parts).into_iter().map(|(p, _)| (p.topic, p.partition)).collect() };
            MemberInfo {
                client_id: cstr_lossy(rd::rd_kafka_MemberDescription_client_id(m)),
                consumer_id: cstr_lossy(rd::rd_kafka_MemberDescription_consumer_id(m)),
                group_instance_id: opt_str(rd::rd_kafka_MemberDescription_group_instance_id(m)),
                host: cstr_lossy(rd::rd_kafka_MemberDescription_host(m)),
                assignment,
            }
        })
        .collect();
    GroupInfo {
        id: cstr_lossy(rd::rd_kafka_ConsumerGroupDescription_group_id(g)),
        error,
        simple: rd::rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g) != 0,
        assignor: opt_str(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(g)).unwrap_or_default(),
        state: cstr_lossy(rd::rd_kafka_consumer_group_state_name(rd::rd_kafka_ConsumerGroupDescription_state(g))),
        coordinator,
        members,
    }
}

/// What `describe_configs` asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A topic.
    Topic,
    /// A broker (by id).
    Broker,
}

/// One configuration entry; `value` is `None` for sensitive or unset entries.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    /// Name.
    pub name: String,
    /// Value.
    pub value: Option<String>,
    /// Where it comes from (`DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`...).
    pub source: String,
    /// Cannot be changed.
    pub read_only: bool,
    /// The default.
    pub default: bool,
    /// A secret (its value is never returned).
    pub sensitive: bool,
}

/// A described resource: kind, name, the broker's error, entries.
pub type ResourceConfig = (ResourceKind, String, Option<(ErrorCode, String)>, Vec<ConfigEntry>);

/// Configuration entries of topics and brokers.
pub fn describe_configs(k: &Kafka, resources: &[(ResourceKind, String)], timeout: Duration) -> Result<Vec<ResourceConfig>> {
    let mut owned = Vec::with_capacity(resources.len());
    for (kind, name) in resources {
        let ty = match kind {
            ResourceKind::Topic => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            ResourceKind::Broker => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER,
        };
        let name = cstring(name)?;
        // SAFETY: valid name (copied); the new object is ours.
        owned.push(unsafe { NativePtr::from_ptr(rd::rd_kafka_ConfigResource_new(ty, name.as_ptr())) }.ok_or(Error::InvalidTopic)?);
    }
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout)?;
    let mut ptrs: Vec<*mut rd::rd_kafka_ConfigResource_t> = owned.iter().map(|r| r.ptr()).collect();
    request(
        k,
        timeout,
        // SAFETY: as in create_topics.
        |q| unsafe { rd::rd_kafka_DescribeConfigs(k.ptr(), ptrs.as_mut_ptr(), ptrs.len(), opts.ptr(), q) },
        |ev| unsafe {
            // SAFETY: as in list_groups.
            let res = rd::rd_kafka_event_DescribeConfigs_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let mut n = 0usize;
            let arr = rd::rd_kafka_DescribeConfigs_result_resources(res, &mut n);
            array(arr, n)
                .iter()
                .map(|&r| {
                    let kind = if rd::rd_kafka_ConfigResource_type(r) == rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER {
                        ResourceKind::Broker
                    } else {
                        ResourceKind::Topic
                    };
                    let code = ErrorCode::from_raw(rd::rd_kafka_ConfigResource_error(r));
                    let error = (!code.is_ok())
                        .then(|| (code, opt_str(rd::rd_kafka_ConfigResource_error_string(r)).unwrap_or_default()));
                    let mut m = 0usize;
                    let entries = rd::rd_kafka_ConfigResource_configs(r, &mut m);
                    let entries = array(entries, m)
                        .iter()
                        .map(|&e| ConfigEntry {
                            name: cstr_lossy(rd::rd_kafka_ConfigEntry_name(e)),
                            value: opt_str(rd::rd_kafka_ConfigEntry_value(e)),
                            source: cstr_lossy(rd::rd_kafka_ConfigSource_name(rd::rd_kafka_ConfigEntry_source(e))),
                            read_only: rd::rd_kafka_ConfigEntry_is_read_only(e) != 0,
                            default: rd::rd_kafka_ConfigEntry_is_default(e) != 0,
                            sensitive: rd::rd_kafka_ConfigEntry_is_sensitive(e) != 0,
                        })
                        .collect();
                    (kind, cstr_lossy(rd::rd_kafka_ConfigResource_name(r)), error, entries)
                })
                .collect()
        },
    )
}

/// Deletes records before the given offsets (`offset`: delete everything before it; -1:
/// up to the high watermark). Per partition: the new low watermark, or the error.
pub fn delete_records(k: &Kafka, before: &[TopicPartition], timeout: Duration) -> Result<Vec<(TopicPartition, ErrorCode)>> {
    let tpl = to_tpl(before);
    // SAFETY: live list (copied); the new object is ours.
    let del = unsafe { NativePtr::from_ptr(rd::rd_kafka_DeleteRecords_new(tpl.ptr())) }.ok_or(Error::Kafka(ErrorCode::INVALID_ARG))?;
    let opts = options(k, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETERECORDS, timeout)?;
    let mut ptrs = [del.ptr()];
    request(
        k,
        timeout,
        // SAFETY: as in create_topics.
        |q| unsafe { rd::rd_kafka_DeleteRecords(k.ptr(), ptrs.as_mut_ptr(), 1, opts.ptr(), q) },
        |ev| unsafe {
            // SAFETY: as in list_groups.
            let res = rd::rd_kafka_event_DeleteRecords_result(ev);
            if res.is_null() {
                return Vec::new();
            }
            let offsets = rd::rd_kafka_DeleteRecords_result_offsets(res);
            if offsets.is_null() { Vec::new() } else { from_tpl(offsets) }
        },
    )
}
