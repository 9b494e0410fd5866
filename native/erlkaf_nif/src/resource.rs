//! Resources: a producer client and a mock cluster. Their destructors never block: the
//! owners hand teardown to erlkaf_core's reaper.

use crate::keep::Keep;
use erlkaf_core::mock::MockCluster;
use erlkaf_core::producer::Producer;
use rustler::sys::{c_char, c_void, enif_get_resource, ErlNifEnv, ErlNifResourceFlags, ErlNifResourceType, ErlNifResourceTypeInit};
use rustler::{Decoder, NifResult, Term};
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// A producer client.
pub struct ProducerRes {
    pub producer: Producer<Keep>,
    /// Reports need each message's MsgRef (a delivery-report callback exists).
    pub keep_refs: bool,
    /// Where reports wait for the producer process to build them (a callback exists).
    pub handover: Option<std::sync::Arc<crate::sink::Handover>>,
}

#[rustler::resource_impl]
impl rustler::Resource for ProducerRes {
    /// The producer process is gone (monitored when the client is made): the pump stops
    /// handing it reports to build (see `sink::Handover`).
    fn down<'a>(&'a self, _env: rustler::Env<'a>, _pid: rustler::LocalPid, _monitor: rustler::Monitor) {
        if let Some(h) = &self.handover {
            h.close();
        }
    }
}

/// A mock cluster; `None` once stopped.
pub struct MockRes {
    pub mock: Mutex<Option<MockCluster>>,
}

#[rustler::resource_impl]
impl rustler::Resource for MockRes {}

/// A `&ProducerRes` decoded without rustler's per-call lookup of the resource type.
///
/// Why: rustler finds a type's VM handle in a map keyed by `TypeId` with SipHash on
/// every decode, 3-4% of the producing scheduler's time in `produce/4`. The handle is
/// taken once, when rustler registers the type at load (`__wrap_enif_init_resource_type`,
/// the NIF is linked with `--wrap=enif_init_resource_type`, see build.rs). Each client
/// creation checks that this decode finds what rustler's finds ([`check_fast_decode`]);
/// if not (a rustler with another layout), or when the handle was never seen, decoding
/// falls back to rustler's.
pub struct ProducerRef<'a>(pub &'a ProducerRes);

static PRODUCER_TYPE: AtomicPtr<ErlNifResourceType> = AtomicPtr::new(std::ptr::null_mut());

impl<'a> Decoder<'a> for ProducerRef<'a> {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        match fast_decode(term) {
            Some(r) => Ok(ProducerRef(r)),
            None => term.decode::<&'a ProducerRes>().map(ProducerRef),
        }
    }
}

/// `Some` when the handle is known and `term` is a ProducerRes; `None` otherwise (the
/// caller asks rustler, which also answers badarg for another term).
fn fast_decode<'a>(term: Term<'a>) -> Option<&'a ProducerRes> {
    let typ = PRODUCER_TYPE.load(Ordering::Acquire);
    if typ.is_null() {
        return None;
    }
    let mut obj: *const c_void = std::ptr::null();
    // SAFETY: a term of the calling env and a handle the VM gave at load.
    if unsafe { enif_get_resource(term.get_env().as_c_arg(), term.as_c_arg(), typ, &mut obj) } == 0 {
        return None;
    }
    // rustler stores the value at the first aligned address past the start of the
    // allocation (rustler 0.39, resource/util.rs: always at least one byte in).
    let align = std::mem::align_of::<ProducerRes>();
    let value = (obj as usize + (align - obj as usize % align)) as *const ProducerRes;
    // SAFETY: rustler wrote a ProducerRes there (checked at each client's creation); the
    // term keeps the resource alive for the NIF call, which bounds 'a.
    Some(unsafe { &*value })
}

/// Whether [`ProducerRef`] decodes with the handle taken at load.
pub fn fast_decode_in_use() -> bool {
    !PRODUCER_TYPE.load(Ordering::Acquire).is_null()
}

/// Compares the fast decode of a new client's term with rustler's: on any difference,
/// decoding goes through rustler from then on (logged once).
pub fn check_fast_decode(term: Term<'_>) {
    if !fast_decode_in_use() {
        return;
    }
    let same = match (fast_decode(term), term.decode::<&ProducerRes>()) {
        (Some(fast), Ok(slow)) => std::ptr::eq(fast, slow),
        _ => false,
    };
    if !same {
        PRODUCER_TYPE.store(std::ptr::null_mut(), Ordering::Release);
        eprintln!("erlkaf: the producer resource layout is not rustler 0.39's; decoding it through rustler");
    }
}

/// The VM's resource-type registration, seen on its way: rustler calls it at load for
/// each resource type (through the link-time wrap), and the producer's handle is kept.
///
/// # Safety
/// Called by rustler's registration with the VM's arguments, passed on unchanged.
#[no_mangle]
pub unsafe extern "C" fn __wrap_enif_init_resource_type(
    env: *mut ErlNifEnv,
    name: *const c_char,
    init: *const ErlNifResourceTypeInit,
    flags: ErlNifResourceFlags,
    tried: *mut ErlNifResourceFlags,
) -> *const ErlNifResourceType {
    extern "C" {
        fn __real_enif_init_resource_type(
            env: *mut ErlNifEnv,
            name: *const c_char,
            init: *const ErlNifResourceTypeInit,
            flags: ErlNifResourceFlags,
            tried: *mut ErlNifResourceFlags,
        ) -> *const ErlNifResourceType;
    }
    let typ = __real_enif_init_resource_type(env, name, init, flags, tried);
    if !typ.is_null() && !name.is_null() && CStr::from_ptr(name).to_bytes() == std::any::type_name::<ProducerRes>().as_bytes() {
        PRODUCER_TYPE.store(typ as *mut _, Ordering::Release);
    }
    typ
}
