//! The keys that sign sessions (DESIGN.md, "Signed sessions"). They live in one place only: the
//! WasmPlugin's `pluginConfig.session_keys` (base64, the first signs, any verifies). `kasi apply`
//! reads them back from the cluster so a re-apply keeps them (a new key would turn every live
//! session's cookie into a `bad_signature` rejection), generates one when there is none, and on
//! `--rotate-key` puts a new key first while the old ones still verify.
//!
//! Retiring old keys: the WasmPlugin carries the time of the last rotation in the annotation
//! [`ROTATED_AT_ANNOTATION`]. A cookie signed with an old key was issued before that time, so it
//! has expired one cookie TTL later; the first apply after that drops every key but the newest.
//! Session cookies (no TTL) live as long as the browser keeps them, which has no bound: kasi keeps
//! old keys one day ([`RETENTION_WITHOUT_TTL`]) and accepts that a session older than that rebinds
//! once (its cookie is rejected and removed, `stateful_session` issues a fresh, signed one).

use kasi_filter::signing::{self, KEY_LEN};
use rand::RngCore as _;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// On the WasmPlugin: when the newest key was put first (RFC 3339, seconds).
pub const ROTATED_AT_ANNOTATION: &str = "kasi.dev/session-keys-rotated-at";

/// How long old keys keep verifying after a rotation when cookies have no TTL.
pub const RETENTION_WITHOUT_TTL: Duration = Duration::from_secs(86_400);

/// The keys as the WasmPlugin holds them, newest (signing) first. Its `Debug` never shows key
/// material.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<[u8; KEY_LEN]>,
    /// Unix seconds of the last rotation, if there was one.
    rotated_at: Option<u64>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyRing({} keys, rotated_at {:?})",
            self.keys.len(),
            self.rotated_at
        )
    }
}

/// What [`next`] did to the keys, for the one line `kasi apply` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// There was no key: one was generated.
    Generated,
    /// The cluster's keys, unchanged.
    Kept,
    /// A new key signs; `still_verifying` old ones are still accepted.
    Rotated { still_verifying: usize },
    /// One TTL after the last rotation: `dropped` old keys no longer verify.
    Retired { dropped: usize },
}

impl KeyChange {
    pub fn describe(self) -> String {
        match self {
            KeyChange::Generated => "session key: generated a new one (none in the cluster)".into(),
            KeyChange::Kept => "session key: kept the cluster's".into(),
            KeyChange::Rotated { still_verifying } => format!(
                "session key: rotated; a new key signs, {still_verifying} old key(s) still verify for one cookie TTL"
            ),
            KeyChange::Retired { dropped } => format!(
                "session key: kept the cluster's; dropped {dropped} old key(s) rotated out more than one cookie TTL ago"
            ),
        }
    }
}

impl KeyRing {
    /// One fresh random key.
    pub fn generate() -> KeyRing {
        KeyRing {
            keys: vec![random_key()],
            rotated_at: None,
        }
    }

    /// A key the user gave (`kasi manifests --session-key`).
    pub fn pinned(text: &str) -> Result<KeyRing, String> {
        let key = signing::parse_key(text)
            .ok_or_else(|| format!("--session-key: expected base64 of exactly {KEY_LEN} bytes"))?;
        Ok(KeyRing {
            keys: vec![key],
            rotated_at: None,
        })
    }

    /// The keys a live WasmPlugin carries; `None` when it has none. A key that does not parse is
    /// an error: the filter would refuse that pluginConfig, and guessing could drop a key that
    /// live sessions were signed with.
    pub fn from_wasm_plugin(object: &Value) -> Result<Option<KeyRing>, String> {
        let Some(texts) = object.pointer("/spec/pluginConfig/session_keys") else {
            return Ok(None);
        };
        let name = object.pointer("/metadata/name").and_then(Value::as_str);
        let where_ = format!(
            "WasmPlugin {}'s pluginConfig.session_keys",
            name.unwrap_or("?")
        );
        let texts = texts
            .as_array()
            .ok_or_else(|| format!("{where_} is not a list"))?;
        let mut keys = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let key = text.as_str().and_then(signing::parse_key).ok_or_else(|| {
                format!("{where_}[{index}] is not base64 of {KEY_LEN} bytes; fix or remove it")
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let rotated_at = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ROTATED_AT_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Ok(Some(KeyRing { keys, rotated_at }))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys as `pluginConfig.session_keys` holds them.
    pub fn texts(&self) -> Vec<String> {
        self.keys.iter().map(signing::key_text).collect()
    }

    /// The value of [`ROTATED_AT_ANNOTATION`], when a rotation happened.
    pub fn rotated_at_text(&self) -> Option<String> {
        self.rotated_at.map(|s| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        })
    }

    /// The filter's view of these keys (for signing in tests and tools).
    pub fn session_keys(&self) -> signing::SessionKeys {
        signing::SessionKeys::new(self.keys.iter())
    }
}

/// The keys an apply writes: the cluster's (`live`), with old ones retired once `retention` has
/// passed since the last rotation, and a new first key when `rotate` is asked; a fresh key when
/// the cluster has none.
pub fn next(
    live: Option<KeyRing>,
    rotate: bool,
    retention: Duration,
    now: SystemTime,
) -> (KeyRing, KeyChange) {
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let Some(mut ring) = live else {
        return (KeyRing::generate(), KeyChange::Generated);
    };
    let mut dropped = 0;
    if let Some(rotated_at) = ring.rotated_at {
        if ring.keys.len() > 1 && now_s >= rotated_at.saturating_add(retention.as_secs()) {
            dropped = ring.keys.len() - 1;
            ring.keys.truncate(1);
        }
    }
    if rotate {
        ring.keys.insert(0, random_key());
        ring.rotated_at = Some(now_s);
        let still_verifying = ring.keys.len() - 1;
        return (ring, KeyChange::Rotated { still_verifying });
    }
    let change = if dropped > 0 {
        KeyChange::Retired { dropped }
    } else {
        KeyChange::Kept
    };
    (ring, change)
}

/// How long old keys verify after a rotation: one cookie TTL, or [`RETENTION_WITHOUT_TTL`].
pub fn retention(cookie_ttl: Option<Duration>) -> Duration {
    cookie_ttl.unwrap_or(RETENTION_WITHOUT_TTL)
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn plugin(keys: Value, rotated_at: Option<&str>) -> Value {
        let mut object = json!({"metadata": {"name": "kasi-affinity"},
            "spec": {"pluginConfig": {"cookie_name": "kasi-session", "session_keys": keys}}});
        if let Some(t) = rotated_at {
            object["metadata"]["annotations"] = json!({ROTATED_AT_ANNOTATION: t});
        }
        object
    }

    #[test]
    fn generated_keys_are_random_32_bytes_and_debug_hides_them() {
        let (a, b) = (KeyRing::generate(), KeyRing::generate());
        assert_ne!(a, b);
        let text = &a.texts()[0];
        assert_eq!(signing::parse_key(text).map(|k| k.len()), Some(KEY_LEN));
        assert!(!format!("{a:?}").contains(text.as_str()));
        assert!(!format!("{a:?}").contains(&text[..8]));
    }

    #[test]
    fn keys_round_trip_through_the_wasm_plugin() {
        let ring = KeyRing::generate();
        let (rotated, _) = next(
            Some(ring.clone()),
            true,
            Duration::from_secs(60),
            at(1_700_000_000),
        );
        let object = plugin(json!(rotated.texts()), rotated.rotated_at_text().as_deref());
        assert_eq!(
            rotated.rotated_at_text().as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(KeyRing::from_wasm_plugin(&object).unwrap(), Some(rotated));
        assert_eq!(
            KeyRing::from_wasm_plugin(&json!({"spec": {"pluginConfig": {}}})).unwrap(),
            None
        );
        assert_eq!(
            KeyRing::from_wasm_plugin(&plugin(json!([]), None)).unwrap(),
            None
        );
    }

    #[test]
    fn a_bad_live_key_is_a_one_line_error_without_the_key() {
        let error = KeyRing::from_wasm_plugin(&plugin(
            json!([KeyRing::generate().texts()[0], "c2hvcnQ="]),
            None,
        ))
        .unwrap_err();
        assert!(error.contains("session_keys[1]"), "{error}");
        assert!(
            !error.contains('\n') && !error.contains("c2hvcnQ"),
            "{error}"
        );
        assert!(KeyRing::from_wasm_plugin(&plugin(json!("x"), None)).is_err());
        assert!(KeyRing::pinned("not a key").is_err());
        let pinned = KeyRing::pinned(&signing::key_text(&[7; 32])).unwrap();
        assert_eq!(pinned.texts(), [signing::key_text(&[7; 32])]);
    }

    #[test]
    fn apply_generates_keeps_rotates_and_retires() {
        let ttl = Duration::from_secs(3600);
        let (first, change) = next(None, false, ttl, at(1_000));
        assert_eq!((first.len(), change), (1, KeyChange::Generated));

        let (kept, change) = next(Some(first.clone()), false, ttl, at(2_000));
        assert_eq!((&kept, change), (&first, KeyChange::Kept));

        let (rotated, change) = next(Some(kept), true, ttl, at(10_000));
        assert_eq!(change, KeyChange::Rotated { still_verifying: 1 });
        assert_eq!(rotated.keys[1], first.keys[0], "the old key still verifies");
        assert_ne!(rotated.keys[0], first.keys[0], "a new key signs");
        assert!(rotated.session_keys().len() == 2);

        // Within one TTL of the rotation the old key stays; after it, it goes.
        let (within, change) = next(Some(rotated.clone()), false, ttl, at(10_000 + 3_599));
        assert_eq!((within.len(), change), (2, KeyChange::Kept));
        let (after, change) = next(Some(rotated.clone()), false, ttl, at(10_000 + 3_600));
        assert_eq!(change, KeyChange::Retired { dropped: 1 });
        assert_eq!(after.keys, [rotated.keys[0]]);
        assert_eq!(after.rotated_at, Some(10_000), "the rotation time is kept");

        // Rotating twice within a TTL keeps both old keys until one TTL after the latest.
        let (twice, _) = next(Some(rotated.clone()), true, ttl, at(11_000));
        assert_eq!(twice.len(), 3);
        let (still, _) = next(Some(twice.clone()), false, ttl, at(10_000 + 3_600));
        assert_eq!(still.len(), 3);
    }

    #[test]
    fn retention_is_the_cookie_ttl_or_a_day() {
        assert_eq!(
            retention(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(retention(None), RETENTION_WITHOUT_TTL);
    }
}
