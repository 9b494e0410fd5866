//! OAUTHBEARER tokens supplied by the application (answers to
//! [`ClientEvent::OAuthRefresh`](crate::pump::ClientEvent::OAuthRefresh)).

use crate::client::Kafka;
use crate::error::{Error, ErrorCode, Result};
use crate::native::cstr_lossy;
use rdkafka_sys as rd;
use std::ffi::CString;

/// A token, its absolute expiry (ms since the epoch), the principal, and SASL extensions.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token value.
    pub value: String,
    /// When it expires, in ms since the epoch.
    pub lifetime_ms: i64,
    /// The principal it authenticates.
    pub principal: String,
    /// SASL extensions as key/value pairs.
    pub extensions: Vec<(String, String)>,
}

fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidConfig(what.into(), "contains a NUL byte".into()))
}

/// Hands librdkafka a token; its complaint (an expired lifetime, a bad extension...) is
/// the error.
pub fn set_token(k: &Kafka, t: &Token) -> Result<()> {
    let value = cstring("token", &t.value)?;
    let principal = cstring("principal", &t.principal)?;
    let ext: Vec<CString> = t
        .extensions
        .iter()
        .flat_map(|(a, b)| [cstring("extension", a), cstring("extension", b)])
        .collect::<Result<_>>()?;
    let ext_ptrs: Vec<*const std::os::raw::c_char> = ext.iter().map(|c| c.as_ptr()).collect();
    let mut err = [0 as std::os::raw::c_char; 512];
    // SAFETY: live handle; all strings NUL-terminated and alive for the call (copied).
    let code = ErrorCode::from_raw(unsafe {
        rd::rd_kafka_oauthbearer_set_token(
            k.ptr(),
            value.as_ptr(),
            t.lifetime_ms,
            principal.as_ptr(),
            if ext_ptrs.is_empty() { std::ptr::null_mut() } else { ext_ptrs.as_ptr() as *mut _ },
            ext_ptrs.len(),
            err.as_mut_ptr(),
            err.len(),
        )
    });
    if code.is_ok() {
        Ok(())
    } else {
        // SAFETY: librdkafka wrote a NUL-terminated message (the token is not in it).
        Err(Error::InvalidConfig("oauthbearer_token".into(), unsafe { cstr_lossy(err.as_ptr()) }))
    }
}

/// Tells librdkafka that no token could be had (it retries the refresh later and reports
/// the reason as an authentication error).
pub fn set_token_failure(k: &Kafka, reason: &str) -> Result<()> {
    let reason = cstring("reason", reason)?;
    // SAFETY: live handle, NUL-terminated string (copied).
    let code = ErrorCode::from_raw(unsafe { rd::rd_kafka_oauthbearer_set_token_failure(k.ptr(), reason.as_ptr()) });
    if code.is_ok() { Ok(()) } else { Err(Error::Kafka(code)) }
}
