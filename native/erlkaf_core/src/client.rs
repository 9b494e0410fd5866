//! The `rd_kafka_t` owner.

use crate::config::Properties;
use crate::error::{Error, Result};
use rdkafka_sys as rd;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicI64, Ordering};

static LIVE: AtomicI64 = AtomicI64::new(0);

/// Owner of one `rd_kafka_t`. Dropping it hands `rd_kafka_destroy` to the reaper, because
/// destroy blocks. Every topic, queue, event and message of this client must be gone
/// before it drops (field order in the owners takes care of it).
pub struct Kafka {
    ptr: *mut rd::rd_kafka_t,
    kind: Kind,
    /// State librdkafka points to (a topic's partitioner): freed after the destroy.
    keep: parking_lot::Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
}

// SAFETY: rd_kafka_t is documented thread-safe.
unsafe impl Send for Kafka {}
// SAFETY: as above.
unsafe impl Sync for Kafka {}

/// Client type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `RD_KAFKA_PRODUCER`.
    Producer,
    /// `RD_KAFKA_CONSUMER`.
    Consumer,
}

impl Kafka {
    /// Creates a client from properties; `prepare` may adjust the conf object (event mask,
    /// callbacks) before librdkafka takes it.
    pub fn new(
        kind: Kind,
        props: &Properties,
        prepare: impl FnOnce(*mut rd::rd_kafka_conf_t),
    ) -> Result<Kafka> {
        let conf = props.to_conf()?;
        prepare(conf.ptr());
        let mut err = [0 as c_char; 512];
        let ty = match kind {
            Kind::Producer => rd::rd_kafka_type_t::RD_KAFKA_PRODUCER,
            Kind::Consumer => rd::rd_kafka_type_t::RD_KAFKA_CONSUMER,
        };
        // SAFETY: conf is a live conf; on success librdkafka owns it (we forget it below),
        // on failure it stays ours and NativePtr frees it.
        let ptr = unsafe { rd::rd_kafka_new(ty, conf.ptr(), err.as_mut_ptr(), err.len()) };
        if ptr.is_null() {
            // SAFETY: librdkafka wrote a NUL-terminated message.
            let msg = unsafe { crate::native::cstr_lossy(err.as_ptr()) };
            return Err(Error::ClientCreation(msg));
        }
        conf.into_raw();
        LIVE.fetch_add(1, Ordering::SeqCst);
        Ok(Kafka { ptr, kind, keep: parking_lot::Mutex::new(Vec::new()) })
    }

    /// Keeps `state` alive until librdkafka is done with this client (its destroy has
    /// returned): for what a callback of librdkafka's threads reads.
    pub fn keep_until_destroyed(&self, state: Box<dyn std::any::Any + Send + Sync>) {
        self.keep.lock().push(state);
    }

    /// The raw handle, valid while `self` lives.
    pub fn ptr(&self) -> *mut rd::rd_kafka_t {
        self.ptr
    }

    /// Messages and requests librdkafka still holds (`rd_kafka_outq_len`).
    pub fn outq_len(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { rd::rd_kafka_outq_len(self.ptr) }
    }
}

struct SendPtr(*mut rd::rd_kafka_t, Kind);
// SAFETY: only moved to the reaper thread, which destroys it.
unsafe impl Send for SendPtr {}

impl Drop for Kafka {
    fn drop(&mut self) {
        let p = SendPtr(self.ptr, self.kind);
        let keep = std::mem::take(self.keep.get_mut());
        crate::reaper::run("destroy", move || {
            let p = p;
            // A consumer was closed by its owner already (bounded in time): destroy must not
            // run consumer_close again, which blocks while the broker is unreachable.
            let flags = if p.1 == Kind::Consumer { rd::RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE } else { 0 };
            // SAFETY: we owned the only reference; every child object is gone.
            unsafe { rd::rd_kafka_destroy_flags(p.0, flags) };
            drop(keep);
            LIVE.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Live `rd_kafka_t` handles (created and not yet destroyed), for leak tests.
pub fn live_clients() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

/// librdkafka's version string.
pub fn librdkafka_version() -> String {
    // SAFETY: static string.
    unsafe { crate::native::cstr_lossy(rd::rd_kafka_version_str()) }
}
