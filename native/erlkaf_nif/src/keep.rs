//! The memory owner of one produced batch: a process-independent env.
//!
//! Each value binary is copied into this env with `enif_make_copy`: for a refc binary
//! (> 64 bytes) that bumps a refcount and copies no byte; the data pointer read back from
//! the env's copy stays valid until the env is freed, because process-independent envs are
//! never garbage collected. An iolist value is flattened once into the env (a temporary
//! object that also lives until the env is freed). The env is freed when the batch's last
//! delivery report has been turned into terms (see erlkaf_core::ledger).

use rustler::sys::{self, ErlNifBinary, ErlNifEnv, ErlNifTerm};
use std::mem::MaybeUninit;
use std::num::NonZeroU64;

/// Cleared envs kept for reuse: one is needed per produce call, and allocating and freeing
/// an env costs more than producing a small message.
struct EnvPtr(*mut ErlNifEnv);
// SAFETY: a cleared process-independent env holds nothing and may move between threads.
unsafe impl Send for EnvPtr {}

// parking_lot: the pump (push) and schedulers (pop) touch it briefly; it spins before it
// parks, so the two rarely meet in the kernel.
static POOL: parking_lot::Mutex<Vec<EnvPtr>> = parking_lot::const_mutex(Vec::new());
const POOL_MAX: usize = 4096;

/// What a message's report needs, saved by the producing call.
#[derive(Clone, Copy)]
pub struct Saved {
    /// The value binary as the batch env holds it (the report shares it). `None`: the
    /// report copies the bytes librdkafka holds (a null value, or an iolist the env
    /// flattened).
    pub value: Option<ErlNifTerm>,
    /// The MsgRef the report carries (`None`: `undefined`, none was kept).
    pub msg_ref: Option<NonZeroU64>,
}

impl Saved {
    /// Nothing saved: the report has no MsgRef and copies librdkafka's bytes.
    pub const NOTHING: Saved = Saved { value: None, msg_ref: None };
}

/// Where a batch's reports go.
#[derive(Clone, Copy)]
pub enum Reply {
    /// The client's producer process (delivery-report callback).
    Owner,
    /// A `produce_sync` caller: the report carries this alias (saved in the env).
    Sync(ErlNifTerm),
}

/// One message's saved terms. Written once, by the producing call, before the message
/// is handed to librdkafka; read by the pump after its report (librdkafka's queue locks
/// order the two).
struct SavedCell(std::cell::UnsafeCell<Saved>);

/// Where a batch's per-message saved terms are.
enum Store {
    /// One cell per message, written as each message is produced (open batches).
    Cells(smallvec::SmallVec<[SavedCell; 2]>),
    /// A produce call's batch: message `i`'s value is element `i` of a tuple in the env
    /// (a binary, or `undefined`: see `decode::kept_term`), its MsgRef `refs[i]` (none
    /// kept when `refs` is empty). Nothing is written per message beyond the tuple the
    /// call copies into the env anyway.
    Tuple { elements: *const ErlNifTerm, len: usize, refs: Vec<NonZeroU64> },
}

/// The batch env and what was saved in it.
pub struct Keep {
    env: *mut ErlNifEnv,
    store: Store,
    /// Where the reports go.
    pub reply: Reply,
}

// SAFETY: a process-independent env may be used from any thread, one thread at a time:
// it is filled by the producing NIF call, then only read by the pump thread (after the
// message was handed to librdkafka) and freed by whoever releases the last slot.
unsafe impl Send for Keep {}
// SAFETY: see above; shared access is read-only (enif_make_copy from it).
unsafe impl Sync for Keep {}

impl Keep {
    /// A new, empty batch env.
    pub fn new() -> Keep {
        let pooled = POOL.lock().pop();
        // SAFETY: plain allocation when the pool is empty.
        let env = pooled.map(|e| e.0).unwrap_or_else(|| unsafe { sys::enif_alloc_env() });
        Keep { env, store: Store::Cells(smallvec::SmallVec::new()), reply: Reply::Owner }
    }

    /// A keep for an open batch of `slots` messages (reports to the owner).
    pub fn with_slots(slots: usize) -> Keep {
        let mut k = Keep::new();
        k.store = Store::Cells((0..slots).map(|_| SavedCell(std::cell::UnsafeCell::new(Saved::NOTHING))).collect());
        k
    }

    /// Saves a produce call's messages at once: `tuple` (a tuple of this env) holds each
    /// message's [`crate::decode::kept_term`], `refs` each one's MsgRef (or is empty).
    pub fn save_tuple(&mut self, tuple_in_env: ErlNifTerm, refs: Vec<NonZeroU64>) {
        let elements = self.elements(tuple_in_env);
        self.store = Store::Tuple { elements: elements.as_ptr(), len: elements.len(), refs };
    }

    /// Saves message `i`'s terms in an open batch.
    ///
    /// # Safety
    /// Only the thread filling slot `i`, before message `i` is handed to librdkafka.
    pub unsafe fn save(&self, i: usize, s: Saved) {
        match &self.store {
            Store::Cells(cells) => *cells[i].0.get() = s,
            Store::Tuple { .. } => debug_assert!(false, "save on a produce call's keep"),
        }
    }

    /// Message `i`'s saved terms.
    pub fn saved(&self, i: usize) -> Saved {
        match &self.store {
            // SAFETY: written before the message was produced (see SavedCell).
            Store::Cells(cells) => cells.get(i).map_or(Saved::NOTHING, |c| unsafe { *c.0.get() }),
            Store::Tuple { elements, len, refs } if i < *len => {
                // SAFETY: the tuple lives in this env, alive as long as self.
                let t = unsafe { *elements.add(i) };
                // SAFETY: live env, a term of it.
                let binary = unsafe { sys::enif_is_binary(self.env, t) } != 0;
                Saved { value: binary.then_some(t), msg_ref: refs.get(i).copied() }
            }
            Store::Tuple { .. } => Saved::NOTHING,
        }
    }

    /// Copies `term` into the batch env (refcount bump for refc binaries).
    pub fn copy_in(&self, term: ErlNifTerm) -> ErlNifTerm {
        // SAFETY: env is live; term is valid in the caller's env for this call.
        unsafe { sys::enif_make_copy(self.env, term) }
    }

    /// The elements of a tuple that lives in this env (valid while the env lives, which
    /// the caller sees to: not tied to this borrow).
    pub fn elements<'t>(&self, tuple_in_env: ErlNifTerm) -> &'t [ErlNifTerm] {
        tuple_elements(self.env, tuple_in_env)
    }

    /// The bytes of a binary or iolist term that lives in this env. The slice stays valid
    /// until the env is freed. `None` when the term is not iodata.
    pub fn bytes(&self, term_in_env: ErlNifTerm, is_binary: bool) -> Option<&'static [u8]> {
        self.reader().bytes(term_in_env, is_binary)
    }

    /// [`Self::bytes`] without a borrow of the keep (for a call that has handed the keep
    /// to its batch and still reads the terms it copied in).
    pub fn reader(&self) -> EnvReader {
        EnvReader(self.env)
    }
}

/// Reads terms of a batch env (see [`Keep::reader`]): valid while the batch lives.
#[derive(Clone, Copy)]
pub struct EnvReader(*mut ErlNifEnv);

impl EnvReader {
    /// See [`Keep::bytes`].
    pub fn bytes(self, term_in_env: ErlNifTerm, is_binary: bool) -> Option<&'static [u8]> {
        let mut bin = MaybeUninit::<ErlNifBinary>::zeroed();
        // SAFETY: env live (the caller's batch holds it), term belongs to it, bin is a
        // valid out pointer.
        let ok = unsafe {
            if is_binary {
                sys::enif_inspect_binary(self.0, term_in_env, bin.as_mut_ptr())
            } else {
                sys::enif_inspect_iolist_as_binary(self.0, term_in_env, bin.as_mut_ptr())
            }
        };
        if ok == 0 {
            return None;
        }
        // SAFETY: inspected successfully.
        let bin = unsafe { bin.assume_init() };
        if bin.size == 0 {
            return Some(&[]);
        }
        // SAFETY: data/size describe memory kept alive by this env (see module doc); the
        // 'static is a promise the ledger keeps by freeing the env only after the report.
        Some(unsafe { std::slice::from_raw_parts(bin.data, bin.size) })
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        // SAFETY: we own the env; nothing refers to its terms any more. Clearing releases
        // the binaries it kept (the refcounts go back) before it is reused.
        unsafe { sys::enif_clear_env(self.env) };
        let mut pool = POOL.lock();
        if pool.len() < POOL_MAX {
            pool.push(EnvPtr(self.env));
        } else {
            drop(pool);
            // SAFETY: as above; the env is not pooled.
            unsafe { sys::enif_free_env(self.env) }
        }
    }
}

/// The elements of `tuple` (a tuple term of `env`); empty when it is not a tuple.
fn tuple_elements<'t>(env: *mut ErlNifEnv, tuple: ErlNifTerm) -> &'t [ErlNifTerm] {
    let mut arity = 0;
    let mut array: *const ErlNifTerm = std::ptr::null();
    // SAFETY: valid env and out pointers; the array lives in the env's heap.
    if unsafe { sys::enif_get_tuple(env, tuple, &mut arity, &mut array) } == 0 || arity == 0 {
        return &[];
    }
    // SAFETY: enif_get_tuple gave `arity` elements at `array`.
    unsafe { std::slice::from_raw_parts(array, arity as usize) }
}
