//! Building librdkafka configuration objects from `(property, value)` pairs.
//!
//! Name translation (erlkaf atoms to dotted names) lives in Erlang (`erlkaf_config`), the
//! one option table; this module only hands pairs to librdkafka and turns its refusals
//! into [`Error::InvalidConfig`] naming the property.

use crate::error::{Error, Result};
use crate::native::{NativeConf, NativePtr, NativeTopicConf};
use rdkafka_sys as rd;
use std::ffi::CString;
use std::os::raw::c_char;

/// librdkafka properties that hold secrets: never echoed back in errors or logs.
pub const SENSITIVE_KEYS: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.config",
];

/// An ordered list of librdkafka properties. Later pairs override earlier ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties(pub Vec<(String, String)>);

/// erlkaf's own key (never given to librdkafka): `true` when the application refreshes
/// OAUTHBEARER tokens itself. The client then asks for token-refresh events; without it
/// librdkafka's own OIDC or unsecured-JWT handling stays in charge.
pub const OAUTH_REFRESH: &str = "erlkaf.oauthbearer.token.refresh";

impl Properties {
    /// True when the application handles OAUTHBEARER token refreshes ([`OAUTH_REFRESH`]).
    pub fn oauth_refresh(&self) -> bool {
        self.get(OAUTH_REFRESH) == Some("true")
    }
}

impl Properties {
    /// From pairs.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Properties(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// Sets (appends) one property.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.push((key.to_string(), value.to_string()));
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Builds a client conf object; the first refused property is reported.
    pub fn to_conf(&self) -> Result<NativeConf> {
        // SAFETY: rd_kafka_conf_new returns a fresh object that we own.
        let conf = unsafe { NativePtr::from_ptr(rd::rd_kafka_conf_new()) }
            .ok_or_else(|| Error::ClientCreation("rd_kafka_conf_new failed".into()))?;
        for (k, v) in self.0.iter().filter(|(k, _)| k != OAUTH_REFRESH) {
            set_property(k, v, |name, value, err, len| {
                // SAFETY: conf is live, name/value are NUL-terminated, err has len bytes.
                unsafe { rd::rd_kafka_conf_set(conf.ptr(), name, value, err, len) }
            })?;
        }
        Ok(conf)
    }

    /// Builds a topic conf object; the first refused property is reported.
    pub fn to_topic_conf(&self) -> Result<NativeTopicConf> {
        // SAFETY: rd_kafka_topic_conf_new returns a fresh object that we own.
        let conf = unsafe { NativePtr::from_ptr(rd::rd_kafka_topic_conf_new()) }
            .ok_or_else(|| Error::ClientCreation("rd_kafka_topic_conf_new failed".into()))?;
        for (k, v) in &self.0 {
            set_property(k, v, |name, value, err, len| {
                // SAFETY: conf is live, name/value are NUL-terminated, err has len bytes.
                unsafe { rd::rd_kafka_topic_conf_set(conf.ptr(), name, value, err, len) }
            })?;
        }
        Ok(conf)
    }
}

fn set_property(
    key: &str,
    value: &str,
    set: impl FnOnce(*const c_char, *const c_char, *mut c_char, usize) -> rd::rd_kafka_conf_res_t,
) -> Result<()> {
    let invalid = |m: &str| Error::InvalidConfig(key.to_string(), m.to_string());
    let name = CString::new(key).map_err(|_| invalid("property name contains a NUL byte"))?;
    let val = CString::new(value).map_err(|_| invalid("value contains a NUL byte"))?;
    let mut err = [0 as c_char; 512];
    let res = set(name.as_ptr(), val.as_ptr(), err.as_mut_ptr(), err.len());
    if res == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
        Ok(())
    } else {
        // SAFETY: librdkafka wrote a NUL-terminated message into err.
        let msg = unsafe { crate::native::cstr_lossy(err.as_ptr()) };
        Err(invalid(&redact(key, &msg, value)))
    }
}

/// Removes a secret value from a message about `key`.
pub fn redact(key: &str, msg: &str, value: &str) -> String {
    if SENSITIVE_KEYS.contains(&key) && !value.is_empty() {
        msg.replace(value, "[redacted]")
    } else {
        msg.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_properties_build_a_conf() {
        let p = Properties::new([("bootstrap.servers", "127.0.0.1:9092"), ("linger.ms", "5")]);
        assert!(p.to_conf().is_ok());
    }

    #[test]
    fn unknown_property_is_named_in_the_error() {
        let p = Properties::new([("no.such.property", "1")]);
        match p.to_conf() {
            Err(Error::InvalidConfig(k, m)) => {
                assert_eq!(k, "no.such.property");
                assert!(m.contains("No such configuration property"), "{m}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_value_is_refused() {
        let p = Properties::new([("linger.ms", "banana")]);
        assert!(matches!(p.to_conf(), Err(Error::InvalidConfig(k, _)) if k == "linger.ms"));
        let t = Properties::new([("request.required.acks", "many")]);
        assert!(matches!(t.to_topic_conf(), Err(Error::InvalidConfig(..))));
    }

    #[test]
    fn nul_bytes_are_refused_not_truncated() {
        let p = Properties::new([("client.id", "a\0b")]);
        assert!(matches!(p.to_conf(), Err(Error::InvalidConfig(..))));
    }

    proptest::proptest! {
        /// Whatever the pairs, building a conf returns Ok or names the first refused key;
        /// it never panics and never reports another key.
        #[test]
        fn any_properties_give_ok_or_the_refused_key(
            pairs in proptest::collection::vec(("[a-z._]{0,24}|linger.ms|acks|client.id", "\\PC{0,16}"), 0..6)
        ) {
            let p = Properties::new(pairs.clone());
            for res in [p.to_conf().map(drop), p.to_topic_conf().map(drop)] {
                match res {
                    Ok(()) => {}
                    Err(Error::InvalidConfig(k, _)) => proptest::prop_assert!(pairs.iter().any(|(pk, _)| *pk == k)),
                    Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("sasl.password", "bad hunter2 here", "hunter2"), "bad [redacted] here");
        assert_eq!(redact("client.id", "bad x", "x"), "bad x");
    }
}
