//! Signed sessions (DESIGN.md, "Signed sessions"): a session is honoured only if kasi issued it
//! for this host.
//!
//! MAC = the first 16 bytes of HMAC-SHA256(key, value ‖ 0x00 ‖ authority), written as base64url
//! without padding (22 characters). `value` is Envoy's session value (a cookie value without its
//! quotes, or Envoy's envelope); `authority` is the request's `:authority`, lowercased. A signed
//! cookie value is `value + "." + MAC`: `.` is in neither base64 alphabet, so the split is
//! unambiguous. Verification is constant-time (`hmac`'s `verify_truncated_left`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A key's length in bytes.
pub const KEY_LEN: usize = 32;
/// The MAC's length in bytes, and as text (base64url, no padding).
pub const MAC_LEN: usize = 16;
pub const MAC_TEXT_LEN: usize = 22;
/// Between Envoy's cookie value (or a header-mode value) and its MAC.
pub const COOKIE_SEPARATOR: &[u8] = b".";
/// Between Envoy's envelope and its MAC.
pub const ENVELOPE_SEPARATOR: &[u8] = b";K:";

type HmacSha256 = Hmac<Sha256>;

/// The keys a filter signs and verifies with: the first signs, any verifies. Each is kept keyed
/// (its inner and outer pads hashed once), so a MAC costs two SHA-256 blocks or so.
#[derive(Clone, Default)]
pub struct SessionKeys {
    keyed: Vec<HmacSha256>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "SessionKeys({} keys)", self.keyed.len())
    }
}

impl PartialEq for SessionKeys {
    /// Configurations compare by how many keys they hold: key material is not compared (or kept
    /// in a comparable form) on purpose.
    fn eq(&self, other: &Self) -> bool {
        self.keyed.len() == other.keyed.len()
    }
}

impl SessionKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a [u8; KEY_LEN]>) -> SessionKeys {
        SessionKeys {
            keyed: keys
                .into_iter()
                .map(|key| HmacSha256::new_from_slice(key).expect("HMAC takes any key length"))
                .collect(),
        }
    }

    /// No keys: sessions are neither signed nor verified.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keyed.len()
    }

    /// The MAC text for `value` on `authority` under the signing (first) key.
    pub fn mac(&self, value: &[u8], authority: &[u8]) -> Option<[u8; MAC_TEXT_LEN]> {
        let tag = tag(self.keyed.first()?.clone(), value, authority);
        let mut text = [0u8; MAC_TEXT_LEN];
        URL_SAFE_NO_PAD
            .encode_slice(&tag[..MAC_LEN], &mut text)
            .ok()?;
        Some(text)
    }

    /// Whether `mac_text` is `value`'s MAC on `authority` under any key (constant-time per key).
    pub fn verify(&self, value: &[u8], authority: &[u8], mac_text: &[u8]) -> bool {
        if mac_text.len() != MAC_TEXT_LEN {
            return false;
        }
        let mut expected = [0u8; MAC_LEN + 2];
        match URL_SAFE_NO_PAD.decode_slice(mac_text, &mut expected) {
            Ok(MAC_LEN) => {}
            _ => return false,
        }
        let mut any = false;
        for keyed in &self.keyed {
            // Every key is tried, so the time does not say which one matched.
            any |= absorb(keyed.clone(), value, authority)
                .verify_truncated_left(&expected[..MAC_LEN])
                .is_ok();
        }
        any
    }

    /// `value + separator + MAC`, or `None` without keys.
    pub fn sign(&self, value: &[u8], authority: &[u8], separator: &[u8]) -> Option<Vec<u8>> {
        let mac = self.mac(value, authority)?;
        let mut signed = Vec::with_capacity(value.len() + separator.len() + MAC_TEXT_LEN);
        signed.extend_from_slice(value);
        signed.extend_from_slice(separator);
        signed.extend_from_slice(&mac);
        Some(signed)
    }
}

fn absorb(mut mac: HmacSha256, value: &[u8], authority: &[u8]) -> HmacSha256 {
    mac.update(value);
    mac.update(&[0]);
    // Lowercased in chunks: no allocation for any authority length.
    let mut chunk = [0u8; 64];
    for part in authority.chunks(chunk.len()) {
        let lower = &mut chunk[..part.len()];
        lower.copy_from_slice(part);
        lower.make_ascii_lowercase();
        mac.update(lower);
    }
    mac
}

fn tag(mac: HmacSha256, value: &[u8], authority: &[u8]) -> [u8; 32] {
    absorb(mac, value, authority).finalize().into_bytes().into()
}

/// Splits a signed value at the last `separator`: Envoy's value and the MAC text. `None` for the
/// MAC when there is no separator, or when what follows it cannot be a MAC.
pub fn split<'a>(value: &'a [u8], separator: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    if value.len() >= separator.len() + MAC_TEXT_LEN {
        let at = value.len() - MAC_TEXT_LEN - separator.len();
        if &value[at..at + separator.len()] == separator {
            return (&value[..at], Some(&value[at + separator.len()..]));
        }
    }
    (value, None)
}

/// A key as `pluginConfig`'s `session_keys` and `kasi apply` write it: base64 (standard or
/// URL-safe, padded or not) of exactly 32 bytes.
pub fn parse_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

/// A key as text, the way `kasi apply` writes it into `session_keys`.
pub fn key_text(key: &[u8; KEY_LEN]) -> String {
    STANDARD.encode(key)
}

/// Sessions whose MAC has been verified under the current keys, so that a session's later
/// requests cost a hash and two compares instead of an HMAC (the HMAC is most of what a signed
/// session costs a request in the VM).
///
/// A hit needs the very value and authority that were verified, and the very MAC, compared in
/// constant time: the same decision the HMAC would make. The table is direct-mapped with a fixed
/// number of slots, and only sessions of a plausible size are kept (a value of at most
/// [`CACHED_VALUE_MAX`] bytes, an authority of at most [`CACHED_AUTHORITY_MAX`]), so its memory
/// is bounded whatever clients send; a client that makes slots collide only evicts, and pays
/// the HMAC. Cleared whenever the keys change.
pub struct VerifiedSessions {
    slots: Vec<Option<Verified>>,
}

/// Longest session value kept (Envoy's are about 50 bytes).
pub const CACHED_VALUE_MAX: usize = 128;
/// Longest authority kept: a DNS name is at most 253 bytes.
pub const CACHED_AUTHORITY_MAX: usize = 253;

struct Verified {
    /// `value ‖ 0x00 ‖ lowercased authority`, as MACed.
    message: Vec<u8>,
    mac: [u8; MAC_TEXT_LEN],
}

impl VerifiedSessions {
    pub fn new(slots: usize) -> VerifiedSessions {
        VerifiedSessions {
            slots: (0..slots.max(1)).map(|_| None).collect(),
        }
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
    }

    /// Whether `mac_text` is `value`'s MAC on `authority`: from the table when this very session
    /// was verified before, else by [`SessionKeys::verify`] (and then remembered).
    pub fn verify(
        &mut self,
        keys: &SessionKeys,
        value: &[u8],
        authority: &[u8],
        mac_text: &[u8],
    ) -> bool {
        let cacheable = value.len() <= CACHED_VALUE_MAX
            && authority.len() <= CACHED_AUTHORITY_MAX
            && mac_text.len() == MAC_TEXT_LEN;
        if !cacheable {
            return keys.verify(value, authority, mac_text);
        }
        let slot = slot_of(mac_text, self.slots.len());
        if let Some(verified) = &self.slots[slot] {
            if verified.is(value, authority) {
                return constant_time_eq(&verified.mac, mac_text);
            }
        }
        if !keys.verify(value, authority, mac_text) {
            return false;
        }
        let mut message = Vec::with_capacity(value.len() + 1 + authority.len());
        message.extend_from_slice(value);
        message.push(0);
        message.extend(authority.iter().map(u8::to_ascii_lowercase));
        let mut mac = [0u8; MAC_TEXT_LEN];
        mac.copy_from_slice(mac_text);
        self.slots[slot] = Some(Verified { message, mac });
        true
    }
}

impl Verified {
    /// Whether this entry was verified for exactly `value` on `authority` (any case).
    fn is(&self, value: &[u8], authority: &[u8]) -> bool {
        self.message.len() == value.len() + 1 + authority.len()
            && self.message[..value.len()] == *value
            && self.message[value.len()] == 0
            && self.message[value.len() + 1..].eq_ignore_ascii_case(authority)
    }
}

/// The slot of a session: from its MAC text, which already spreads sessions uniformly (it is
/// an HMAC), so that a lookup reads 8 bytes instead of hashing the value and the authority.
/// A client chooses its MAC text, and so its slot, but gains nothing by it: an entry is stored
/// only once the HMAC proved it, a hit needs the very value, authority and MAC, and a collision
/// only evicts (that session pays one HMAC), as any hash a client can compute would allow.
fn slot_of(mac_text: &[u8], slots: usize) -> usize {
    let mut head = [0u8; 8];
    let n = mac_text.len().min(8);
    head[..n].copy_from_slice(&mac_text[..n]);
    // Fibonacci hashing: the high bits mix every byte of the head.
    let mixed = u64::from_le_bytes(head).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (mixed % slots as u64) as usize
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];
    const OTHER: [u8; 32] = [9u8; 32];

    /// The contract, computed independently of [`SessionKeys`].
    fn reference_mac(key: &[u8], value: &[u8], authority: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        let mut message = value.to_vec();
        message.push(0);
        message.extend_from_slice(authority.to_ascii_lowercase().as_bytes());
        mac.update(&message);
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    #[test]
    fn the_mac_is_the_contracts() {
        let keys = SessionKeys::new([&KEY]);
        let mac = keys
            .mac(b"CgwxMC4wLjAuNzo4MDEy", b"Hello.Example.com")
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&mac).unwrap(),
            reference_mac(&KEY, b"CgwxMC4wLjAuNzo4MDEy", "hello.example.com")
        );
        let long = "A".repeat(1000);
        assert_eq!(
            std::str::from_utf8(&keys.mac(b"v", long.as_bytes()).unwrap()).unwrap(),
            reference_mac(&KEY, b"v", &long)
        );
    }

    #[test]
    fn verifies_with_any_key_and_only_for_its_value_and_host() {
        let signer = SessionKeys::new([&KEY]);
        let mac = signer.mac(b"value", b"a.example.com").unwrap();
        let both = SessionKeys::new([&OTHER, &KEY]);
        assert!(both.verify(b"value", b"A.example.com", &mac));
        assert!(!both.verify(b"value", b"b.example.com", &mac));
        assert!(!both.verify(b"valuf", b"a.example.com", &mac));
        assert!(!SessionKeys::new([&OTHER]).verify(b"value", b"a.example.com", &mac));
        assert!(!both.verify(b"value", b"a.example.com", &mac[..21]));
        assert!(!both.verify(b"value", b"a.example.com", b"!!!!!!!!!!!!!!!!!!!!!!"));
        assert!(!SessionKeys::default().verify(b"value", b"a.example.com", &mac));
    }

    #[test]
    fn splits_at_the_mac() {
        let keys = SessionKeys::new([&KEY]);
        let signed = keys.sign(b"Zm9v", b"h", COOKIE_SEPARATOR).unwrap();
        let (value, mac) = split(&signed, COOKIE_SEPARATOR);
        assert_eq!(value, b"Zm9v");
        assert!(keys.verify(value, b"h", mac.unwrap()));
        assert_eq!(split(b"Zm9v", COOKIE_SEPARATOR), (&b"Zm9v"[..], None));
        let envelope = keys
            .sign(b"YQ==;UV:Yg==", b"h", ENVELOPE_SEPARATOR)
            .unwrap();
        assert_eq!(split(&envelope, ENVELOPE_SEPARATOR).0, b"YQ==;UV:Yg==");
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes() {
        let text = key_text(&KEY);
        assert_eq!(parse_key(&text), Some(KEY));
        assert_eq!(parse_key(&URL_SAFE_NO_PAD.encode(KEY)), Some(KEY));
        assert_eq!(parse_key(&STANDARD.encode([1u8; 31])), None);
        assert_eq!(parse_key("not base64!"), None);
        assert_eq!(
            format!("{:?}", SessionKeys::new([&KEY])),
            "SessionKeys(1 keys)"
        );
    }

    #[test]
    fn the_verified_table_decides_as_the_hmac_does() {
        let keys = SessionKeys::new([&KEY]);
        let mut table = VerifiedSessions::new(4);
        let mac = keys.mac(b"value", b"a.example.com").unwrap();
        for _ in 0..2 {
            assert!(table.verify(&keys, b"value", b"A.example.com", &mac));
            assert!(!table.verify(&keys, b"value", b"b.example.com", &mac));
            assert!(!table.verify(&keys, b"valuf", b"a.example.com", &mac));
            let mut wrong = mac;
            wrong[21] = if wrong[21] == b'A' { b'B' } else { b'A' };
            assert!(!table.verify(&keys, b"value", b"a.example.com", &wrong));
        }
        // A hit never outlives the keys it was verified with.
        table.clear();
        assert!(!table.verify(
            &SessionKeys::new([&OTHER]),
            b"value",
            b"a.example.com",
            &mac
        ));
        // Too long to keep: still verified, just not remembered.
        let long = "h".repeat(300);
        let long_mac = keys.mac(b"value", long.as_bytes()).unwrap();
        assert!(table.verify(&keys, b"value", long.as_bytes(), &long_mac));
        assert!(table
            .slots
            .iter()
            .flatten()
            .all(|v| v.message.len() <= 1 + 5 + 253));
    }
}
