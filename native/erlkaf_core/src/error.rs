//! Errors as data: every failure carries librdkafka's code or says what was wrong.

use rdkafka_sys as rd;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// A librdkafka error code (`rd_kafka_resp_err_t`), kept as its integer so that codes a
/// newer librdkafka adds never make us panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i32);

impl ErrorCode {
    /// `RD_KAFKA_RESP_ERR_NO_ERROR`.
    pub const NO_ERROR: ErrorCode = ErrorCode(0);
    /// Local queue full (`__QUEUE_FULL`).
    pub const QUEUE_FULL: ErrorCode = ErrorCode(-184);
    /// Operation timed out (`__TIMED_OUT`).
    pub const TIMED_OUT: ErrorCode = ErrorCode(-185);
    /// Invalid argument (`__INVALID_ARG`).
    pub const INVALID_ARG: ErrorCode = ErrorCode(-186);
    /// Unknown topic (`__UNKNOWN_TOPIC`).
    pub const UNKNOWN_TOPIC: ErrorCode = ErrorCode(-188);
    /// Unknown partition (`__UNKNOWN_PARTITION`).
    pub const UNKNOWN_PARTITION: ErrorCode = ErrorCode(-190);
    /// Fatal error (`__FATAL`).
    pub const FATAL: ErrorCode = ErrorCode(-150);

    /// From librdkafka's enum.
    pub fn from_raw(err: rd::rd_kafka_resp_err_t) -> Self {
        ErrorCode(err as i32)
    }

    /// True for `NO_ERROR`.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The error's name as librdkafka spells it, without the leading underscores and in
    /// lower case: `_QUEUE_FULL` becomes `queue_full`, `MSG_SIZE_TOO_LARGE`
    /// `msg_size_too_large`. Unknown codes become `unknown_error_<code>`.
    pub fn name(self) -> &'static str {
        names().by_code.get(&self.0).copied().unwrap_or("unknown_error")
    }

    /// librdkafka's human readable text for this code.
    pub fn description(self) -> String {
        match self.raw() {
            // SAFETY: rd_kafka_err2str returns a static string for every code.
            Some(e) => unsafe { crate::native::cstr_lossy(rd::rd_kafka_err2str(e)) },
            None => format!("unknown error {}", self.0),
        }
    }

    /// The code for a `name()`, if librdkafka knows it.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        names().by_name.get(name).copied().map(ErrorCode)
    }

    /// The librdkafka enum value, when this build knows the code.
    pub fn raw(self) -> Option<rd::rd_kafka_resp_err_t> {
        rd::rd_kafka_resp_err_t::try_from(self.0).ok()
    }
}

struct Names {
    by_code: HashMap<i32, &'static str>,
    by_name: HashMap<&'static str, i32>,
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut by_code = HashMap::new();
        let mut by_name = HashMap::new();
        // The enum covers -200..=-100 (local errors) and 0..~200 (broker errors).
        for code in -200..=400 {
            let Ok(raw) = rd::rd_kafka_resp_err_t::try_from(code) else { continue };
            // SAFETY: err2name returns a static string for every enum value.
            let name = unsafe { crate::native::cstr_lossy(rd::rd_kafka_err2name(raw)) };
            if name.is_empty() || name.starts_with("ERR_") {
                continue;
            }
            let name: &'static str =
                Box::leak(name.trim_start_matches('_').to_ascii_lowercase().into_boxed_str());
            by_code.insert(code, name);
            by_name.entry(name).or_insert(code);
        }
        Names { by_code, by_name }
    })
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.description())
    }
}

/// Everything that can go wrong in erlkaf_core.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// librdkafka rejected a configuration property: `(property, librdkafka's message)`.
    InvalidConfig(String, String),
    /// `rd_kafka_new` refused the configuration as a whole.
    ClientCreation(String),
    /// A topic handle with this name exists already.
    TopicExists,
    /// A topic name that librdkafka cannot take (empty, NUL byte, too long).
    InvalidTopic,
    /// The client is stopping or stopped.
    ClientStopped,
    /// librdkafka returned an error code for an operation.
    Kafka(ErrorCode),
    /// The mock cluster could not be created.
    MockCluster(String),
    /// A transaction call failed; the flags say what the caller may do next.
    Txn(TxnError),
}

/// A failed transaction call (librdkafka's `rd_kafka_error_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnError {
    /// The error code.
    pub code: ErrorCode,
    /// librdkafka's message.
    pub message: String,
    /// The producer cannot be used any more (e.g. fenced by a newer instance).
    pub fatal: bool,
    /// The same call may be retried.
    pub retriable: bool,
    /// The transaction must be aborted (`abort_transaction`) before going on.
    pub abortable: bool,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(k, m) => write!(f, "invalid config {k}: {m}"),
            Error::ClientCreation(m) => write!(f, "client creation failed: {m}"),
            Error::TopicExists => write!(f, "topic handle exists already"),
            Error::InvalidTopic => write!(f, "invalid topic name"),
            Error::ClientStopped => write!(f, "client stopped"),
            Error::Kafka(c) => write!(f, "{c}"),
            Error::MockCluster(m) => write!(f, "mock cluster: {m}"),
            Error::Txn(t) => write!(f, "transaction: {} ({})", t.code, t.message),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_without_underscores() {
        assert_eq!(ErrorCode::QUEUE_FULL.name(), "queue_full");
        assert_eq!(ErrorCode(10).name(), "msg_size_too_large");
        assert_eq!(ErrorCode::from_name("queue_full"), Some(ErrorCode::QUEUE_FULL));
        assert_eq!(ErrorCode::from_name("not_leader_for_partition"), Some(ErrorCode(6)));
        assert_eq!(ErrorCode(-12345).name(), "unknown_error");
    }
}
