//! Addresses that recently failed to connect, kept in one proxy-wasm shared-data value so every
//! Envoy worker thread (each has its own VM) sees a failure the moment any of them saw it.
//!
//! Encoding: lines of `<address> <unix seconds until>`. One small value read per routed request
//! is cheaper than a key per address, and proxy-wasm shared data has no delete, so a single value
//! that prunes itself on every write cannot grow without bound.

/// Enough for a revision's worth of dead pods; the oldest entries go first beyond it.
pub const MAX_ENTRIES: usize = 256;

fn entries(list: &[u8]) -> impl Iterator<Item = (&[u8], u64)> {
    list.split(|&b| b == b'\n').filter_map(|line| {
        let space = line.iter().rposition(|&b| b == b' ')?;
        let until = std::str::from_utf8(&line[space + 1..]).ok()?.parse().ok()?;
        Some((&line[..space], until))
    })
}

/// Whether `address` failed to connect and its quarantine has not run out at `now`.
pub fn contains(list: &[u8], address: &[u8], now: u64) -> bool {
    entries(list).any(|(a, until)| a == address && until > now)
}

/// Whether no entry's quarantine lasts beyond `now` (the list may as well be empty).
pub fn is_expired(list: &[u8], now: u64) -> bool {
    entries(list).all(|(_, until)| until <= now)
}

/// The list with `address` quarantined until `until`, expired entries dropped.
pub fn with(list: &[u8], address: &[u8], until: u64, now: u64) -> Vec<u8> {
    let kept: Vec<(&[u8], u64)> = entries(list)
        .filter(|&(a, u)| u > now && a != address)
        .collect();
    let skip = (kept.len() + 1).saturating_sub(MAX_ENTRIES);
    let mut out = Vec::with_capacity(list.len() + address.len() + 12);
    for (a, u) in kept.into_iter().skip(skip).chain([(address, until)]) {
        out.extend_from_slice(a);
        out.push(b' ');
        out.extend_from_slice(u.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_runs_out_and_prunes_itself() {
        let list = with(b"", b"10.0.0.1:8012", 130, 100);
        let list = with(&list, b"[fd00::1]:8012", 140, 110);
        assert!(contains(&list, b"10.0.0.1:8012", 129));
        assert!(!contains(&list, b"10.0.0.1:8012", 130));
        assert!(contains(&list, b"[fd00::1]:8012", 139));
        assert!(!contains(&list, b"10.0.0.2:8012", 100));
        assert!(!is_expired(&list, 139));
        assert!(is_expired(&list, 140));
        assert!(is_expired(b"", 0));
        let later = with(&list, b"10.0.0.3:8012", 200, 135);
        assert_eq!(later, b"[fd00::1]:8012 140\n10.0.0.3:8012 200\n");
        let again = with(&later, b"10.0.0.3:8012", 300, 135);
        assert_eq!(again, b"[fd00::1]:8012 140\n10.0.0.3:8012 300\n");
    }

    #[test]
    fn stays_bounded_and_ignores_garbage() {
        let mut list = b"garbage\n\xff\xfe 12\nx y\n".to_vec();
        for i in 0..(MAX_ENTRIES + 50) {
            list = with(
                &list,
                format!("10.0.{}.{}:8012", i / 256, i % 256).as_bytes(),
                1_000,
                0,
            );
        }
        assert_eq!(entries(&list).count(), MAX_ENTRIES);
        assert!(contains(&list, b"10.0.1.49:8012", 0));
        assert!(!contains(&list, b"10.0.0.0:8012", 0));
    }
}
