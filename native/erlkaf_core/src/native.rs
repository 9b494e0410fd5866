//! One owner type per librdkafka object.
//!
//! `NativePtr<T>` owns a non-null pointer and frees it with the function `T` names through
//! [`Destroy`]. Null never becomes an owner. `rd_kafka_t` is the exception on purpose: its
//! destroy blocks, so [`crate::client::Kafka`] hands it to the reaper instead.

use rdkafka_sys as rd;
use std::ptr::NonNull;

/// A librdkafka type and the C function that frees it.
///
/// # Safety
/// `DESTROY` must be the function that frees exactly one object of this type.
pub unsafe trait Destroy {
    /// Frees one object.
    const DESTROY: unsafe extern "C" fn(*mut Self);
}

/// Owner of one librdkafka object; `Drop` frees it.
pub struct NativePtr<T: Destroy>(NonNull<T>);

impl<T: Destroy> NativePtr<T> {
    /// Takes ownership of `ptr`; `None` when it is null.
    ///
    /// # Safety
    /// `ptr` must be a live object that nobody else frees.
    pub unsafe fn from_ptr(ptr: *mut T) -> Option<Self> {
        NonNull::new(ptr).map(NativePtr)
    }

    /// The raw pointer, still owned by `self`.
    pub fn ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    /// Gives up ownership without freeing (librdkafka took it).
    pub fn into_raw(self) -> *mut T {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl<T: Destroy> std::fmt::Debug for NativePtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NativePtr({:p})", self.0)
    }
}

impl<T: Destroy> Drop for NativePtr<T> {
    fn drop(&mut self) {
        // SAFETY: we own the object (from_ptr contract) and free it once.
        unsafe { T::DESTROY(self.0.as_ptr()) }
    }
}

// SAFETY: librdkafka documents these objects as usable from any thread (topics, queues,
// headers and confs are never used concurrently by us without a lock).
unsafe impl<T: Destroy> Send for NativePtr<T> {}
// SAFETY: topic and queue handles are thread-safe in librdkafka; the others are only
// shared behind our own locks.
unsafe impl<T: Destroy> Sync for NativePtr<T> {}

unsafe impl Destroy for rd::rd_kafka_conf_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_conf_destroy;
}
unsafe impl Destroy for rd::rd_kafka_topic_conf_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_topic_conf_destroy;
}
unsafe impl Destroy for rd::rd_kafka_topic_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_topic_destroy;
}
unsafe impl Destroy for rd::rd_kafka_queue_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_queue_destroy;
}
unsafe impl Destroy for rd::rd_kafka_event_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_event_destroy;
}
unsafe impl Destroy for rd::rd_kafka_headers_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_headers_destroy;
}
unsafe impl Destroy for rd::rd_kafka_error_t {
    const DESTROY: unsafe extern "C" fn(*mut Self) = rd::rd_kafka_error_destroy;
}

/// Conf object (client level).
pub type NativeConf = NativePtr<rd::rd_kafka_conf_t>;
/// Conf object (topic level).
pub type NativeTopicConf = NativePtr<rd::rd_kafka_topic_conf_t>;
/// Topic handle.
pub type NativeTopic = NativePtr<rd::rd_kafka_topic_t>;
/// Queue handle.
pub type NativeQueue = NativePtr<rd::rd_kafka_queue_t>;
/// Event (owns the messages it carries).
pub type NativeEvent = NativePtr<rd::rd_kafka_event_t>;
/// Header list (until librdkafka takes it with a message).
pub type NativeHeaders = NativePtr<rd::rd_kafka_headers_t>;
/// An `rd_kafka_error_t`.
pub type NativeError = NativePtr<rd::rd_kafka_error_t>;

/// Copies a C string owned by librdkafka into a `String` (lossy); empty for null.
///
/// # Safety
/// `p` must be null or a valid NUL-terminated string.
pub(crate) unsafe fn cstr_lossy(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
