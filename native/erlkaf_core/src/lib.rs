//! erlkaf_core: the safe engine of erlkaf over librdkafka (rdkafka-sys).
//!
//! It knows nothing of Erlang terms. The NIF crate supplies the memory owner of each
//! produced batch (`K`, a process-independent env) and a [`pump::Sink`] that turns drained
//! events into messages. Owner types free every native object ([`native`]); the one
//! blocking destroy runs on the [`reaper`].
#![deny(missing_docs)]

pub mod admin;
pub mod client;
pub mod config;
pub mod consumer;
pub mod cputime;
pub mod error;
pub mod handover;
#[cfg(feature = "mimalloc")]
pub mod heap;
pub mod json;
pub mod ledger;
pub mod message;
pub mod metadata;
pub mod mock;
pub mod msgref;
pub mod native;
pub mod oauth;
pub mod open;
pub mod partitioner;
pub mod producer;
pub mod pump;
pub mod reaper;
pub mod tpl;
pub mod txn;

pub use error::{Error, ErrorCode, Result, TxnError};
pub use rdkafka_sys;
