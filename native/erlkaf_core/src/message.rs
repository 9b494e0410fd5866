//! Read-only views of librdkafka messages (delivery reports, later fetched messages).

use rdkafka_sys as rd;
use std::ffi::CStr;

/// A header: its name and its value (`None`: a null value).
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// Kind of a message timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// No timestamp.
    NotAvailable,
    /// Set by the producer.
    CreateTime,
    /// Set by the broker.
    LogAppendTime,
}

/// A message owned by an event that outlives `'a`.
#[derive(Clone, Copy)]
pub struct MessageView<'a> {
    msg: &'a rd::rd_kafka_message_t,
}

// SAFETY: a view only reads its message, and librdkafka no longer changes a message once
// it is in an event handed to the application (a delivery report, a fetched message);
// another thread may read it while the event lives (see crate::handover).
unsafe impl Send for MessageView<'_> {}
// SAFETY: as above.
unsafe impl Sync for MessageView<'_> {}

impl<'a> MessageView<'a> {
    /// Wraps a message pointer.
    ///
    /// # Safety
    /// `msg` must be valid for `'a` (owned by a live event or by the caller).
    pub unsafe fn from_ptr(msg: *const rd::rd_kafka_message_t) -> MessageView<'a> {
        MessageView { msg: &*msg }
    }

    /// The raw message.
    pub fn raw(&self) -> &'a rd::rd_kafka_message_t {
        self.msg
    }

    /// The per-message error code (0 = ok).
    pub fn error(&self) -> crate::ErrorCode {
        crate::ErrorCode::from_raw(self.msg.err)
    }

    /// Partition (-1 when never assigned).
    pub fn partition(&self) -> i32 {
        self.msg.partition
    }

    /// Offset (-1001 when unknown).
    pub fn offset(&self) -> i64 {
        self.msg.offset
    }

    /// The opaque given at produce time.
    pub fn opaque(&self) -> *mut std::ffi::c_void {
        self.msg._private
    }

    /// Key bytes, `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        slice(self.msg.key as *const u8, self.msg.key_len)
    }

    /// Payload bytes, `None` for a null value.
    pub fn payload(&self) -> Option<&'a [u8]> {
        slice(self.msg.payload as *const u8, self.msg.len)
    }

    /// Topic name bytes.
    pub fn topic(&self) -> &'a [u8] {
        if self.msg.rkt.is_null() {
            return b"";
        }
        // SAFETY: the message holds a reference on its topic; the name lives as long.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.msg.rkt)).to_bytes() }
    }

    /// Timestamp in ms since the epoch and its type.
    pub fn timestamp(&self) -> (i64, TimestampType) {
        let mut t = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: valid message, t is a valid out pointer.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.msg, &mut t) };
        let ty = match t {
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => TimestampType::CreateTime,
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                TimestampType::LogAppendTime
            }
            _ => TimestampType::NotAvailable,
        };
        (ts, ty)
    }

    /// Headers in order (duplicates kept); `None` when the message has none.
    pub fn headers(&self) -> Option<Vec<Header<'a>>> {
        let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: valid message; the headers stay owned by the message.
        let err = unsafe { rd::rd_kafka_message_headers(self.msg, &mut hdrs) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return None;
        }
        let mut out = Vec::new();
        let mut idx = 0;
        loop {
            let mut name = std::ptr::null();
            let mut val = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: hdrs is live; out pointers are valid.
            let e = unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut val, &mut size) };
            if e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: header names are NUL-terminated and live with the message.
            let n = unsafe { CStr::from_ptr(name).to_bytes() };
            out.push((n, slice(val as *const u8, size)));
            idx += 1;
        }
        Some(out)
    }
}

fn slice<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        // SAFETY: librdkafka guarantees len bytes at p for the message's lifetime.
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }
}
