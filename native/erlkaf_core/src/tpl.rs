//! Topic+partition lists (`rd_kafka_topic_partition_list_t`) to and from Rust.

use crate::native::{cstr_lossy, Destroy, NativePtr};
use rdkafka_sys as rd;
use std::ffi::CString;

unsafe impl Destroy for rd::rd_kafka_topic_partition_list_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_topic_partition_list_destroy;
}

/// A topic, a partition and an offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (or a logical offset such as -1001 "invalid/committed").
    pub offset: i64,
}

/// An owned partition list.
pub type Tpl = NativePtr<rd::rd_kafka_topic_partition_list_t>;

/// Builds a list; topics with a NUL byte are skipped.
pub fn to_tpl(parts: &[TopicPartition]) -> Tpl {
    // SAFETY: a fresh list we own.
    let tpl = unsafe { NativePtr::from_ptr(rd::rd_kafka_topic_partition_list_new(parts.len().max(1) as i32)) }
        .expect("rd_kafka_topic_partition_list_new");
    for p in parts {
        let Ok(t) = CString::new(p.topic.as_str()) else { continue };
        // SAFETY: live list; the element pointer is valid until the list changes.
        unsafe {
            let e = rd::rd_kafka_topic_partition_list_add(tpl.ptr(), t.as_ptr(), p.partition);
            (*e).offset = p.offset;
        }
    }
    tpl
}

/// Reads a list (offsets and per-element errors).
///
/// # Safety
/// `tpl` must be a live list.
pub unsafe fn from_tpl(tpl: *const rd::rd_kafka_topic_partition_list_t) -> Vec<(TopicPartition, crate::ErrorCode)> {
    if tpl.is_null() {
        return Vec::new();
    }
    let l = &*tpl;
    (0..l.cnt as usize)
        .map(|i| {
            let e = &*l.elems.add(i);
            (
                TopicPartition { topic: cstr_lossy(e.topic), partition: e.partition, offset: e.offset },
                crate::ErrorCode::from_raw(e.err),
            )
        })
        .collect()
}
