//! Reading the serialized header map a proxy-wasm host hands over, without copying or trusting it.
//!
//! Format (proxy-wasm ABI 0.2): `u32 count`, then `count` pairs of `u32 key_len, u32 value_len`,
//! then each key and value followed by a NUL byte; all integers little-endian. The SDK's reader
//! allocates a `String` per name and panics on a name that is not UTF-8 or a short buffer; this
//! one borrows and returns `None` on anything malformed.

use smallvec::SmallVec;

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

/// A request's or response's headers as borrowed `(name, value)` pairs: on the stack for up to
/// [`INLINE_HEADERS`] headers (a browser's request through the activator has about a dozen), so
/// reading them allocates nothing in the VM.
pub type Pairs<'a> = SmallVec<[(&'a [u8], &'a [u8]); INLINE_HEADERS]>;

/// Headers kept without an allocation.
pub const INLINE_HEADERS: usize = 24;

/// The `(name, value)` pairs of a serialized header map, or `None` if it is malformed.
pub fn pairs(bytes: &[u8]) -> Option<Pairs<'_>> {
    if bytes.is_empty() {
        return Some(Pairs::new());
    }
    let count = u32_at(bytes, 0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    // Every pair takes at least 8 bytes of sizes and 2 NULs: a count beyond that is a lie.
    if count > bytes.len() / 10 + 1 {
        return None;
    }
    let mut out = Pairs::with_capacity(count);
    for i in 0..count {
        let key_len = u32_at(bytes, 4 + i * 8)?;
        let value_len = u32_at(bytes, 8 + i * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

/// Serializes pairs the way the host does (a local reply's headers; tests and benchmarks).
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_lies() {
        let headers: [(&[u8], &[u8]); 3] = [
            (b":authority", b"hello"),
            (b"cookie", b"a=1; b=\xff"),
            (b"x", b""),
        ];
        let bytes = serialize(&headers);
        assert_eq!(pairs(&bytes).unwrap().as_slice(), &headers[..]);
        assert!(pairs(&[]).unwrap().is_empty());
        assert_eq!(pairs(&bytes[..bytes.len() - 3]), None);
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs(&huge), None);
        assert_eq!(pairs(&[1, 0, 0]), None);
    }
}
