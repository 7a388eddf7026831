//! Finding and removing one cookie in `cookie` request headers (RFC 6265 `name=value; name=value`).
//!
//! A request may carry several `cookie` headers (HTTP/2 splits them; some HTTP/1 clients send
//! several). Envoy's `stateful_session` takes the first cookie of its name across all of them, so
//! kasi looks at the same one, and when it does not honour it removes every cookie of that name
//! (removing only the first would promote the next one to "first").

use crate::codec::trim_ascii;

/// The pairs of one `cookie` header value; the value is `None` for a bare `name` without `=`.
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let pair = trim_ascii(pair);
        if pair.is_empty() {
            return None;
        }
        match pair.iter().position(|&b| b == b'=') {
            Some(eq) => Some((trim_ascii(&pair[..eq]), Some(trim_ascii(&pair[eq + 1..])))),
            None => Some((pair, None)),
        }
    })
}

/// The value of the first cookie called `name` across `headers`, as it appears on the wire.
pub fn find<'a, I>(headers: I, name: &[u8]) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    headers.into_iter().find_map(|h| find_in(h, name))
}

/// [`find`] in one header: the filter's hot path, so one pass without splitting each pair.
/// Same result as looking `name` up in [`pairs`] (a property test checks it).
fn find_in<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut rest = header;
    loop {
        let (pair, next) = match rest.iter().position(|&b| b == b';') {
            Some(end) => (&rest[..end], Some(&rest[end + 1..])),
            None => (rest, None),
        };
        let pair = trim_start(pair);
        if let Some(after) = pair.strip_prefix(name) {
            let after = trim_start(after);
            match after.split_first() {
                // A bare `name`: its value is empty.
                None => return Some(&[]),
                Some((b'=', value)) => return Some(trim_ascii(value)),
                // A longer name that starts with `name`.
                Some(_) => {}
            }
        }
        rest = next?;
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// One `cookie` header value without any cookie called `name`; `None` when nothing is left.
pub fn without(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for (n, v) in pairs(header).filter(|(n, _)| *n != name) {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(n);
        if let Some(v) = v {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// All `cookie` headers rewritten without `name`, joined into one header value as Envoy's own
/// HTTP/2 codec joins them; `None` when no cookie is left.
pub fn without_all<'a, I>(headers: I, name: &[u8]) -> Option<Vec<u8>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut joined: Vec<u8> = Vec::new();
    for rest in headers.into_iter().filter_map(|h| without(h, name)) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(&rest);
    }
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain definition [`find_in`] must agree with.
    fn find_by_pairs<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        pairs(header)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or_default())
    }

    proptest! {
        #[test]
        fn the_fast_lookup_agrees_with_the_pairs(
            header in proptest::collection::vec(
                prop_oneof![Just(b';'), Just(b'='), Just(b' '), Just(b'\t'), Just(b'"'),
                            Just(b'k'), Just(b'a'), Just(b'x'), any::<u8>()],
                0..40,
            ),
            name in prop_oneof![Just(b"k".to_vec()), Just(b"ka".to_vec()), Just(b"kasi-session".to_vec())],
        ) {
            prop_assert_eq!(find_in(&header, &name), find_by_pairs(&header, &name));
        }
    }

    #[test]
    fn the_fast_lookup_handles_the_edges() {
        for (header, expected) in [
            (&b"kasi-session=v"[..], Some(&b"v"[..])),
            (b" kasi-session = v ;x=1", Some(b"v")),
            (b"kasi-session", Some(b"")),
            (b"kasi-session ; a=1", Some(b"")),
            (b"kasi-sessionx=1; kasi-session=2", Some(b"2")),
            (b"kasi-session x=1", None),
            (b"a=kasi-session=1", None),
            (b"", None),
            (b";;", None),
        ] {
            assert_eq!(
                find_in(header, b"kasi-session"),
                expected,
                "{:?}",
                String::from_utf8_lossy(header)
            );
            assert_eq!(find_by_pairs(header, b"kasi-session"), expected);
        }
    }

    #[test]
    fn finds_the_first_cookie_across_headers() {
        let headers: [&[u8]; 3] = [
            b"a=1; b=2",
            b"c=3;kasi-session=\"Zm9v\" ; d=4",
            b"kasi-session=bar",
        ];
        assert_eq!(find(headers, b"kasi-session"), Some(&b"\"Zm9v\""[..]));
        assert_eq!(find(headers, b"kasi"), None);
        assert_eq!(find(headers, b"missing"), None);
        let prefix: [&[u8]; 1] = [b"xkasi-session=1; kasi-sessionx=2"];
        assert_eq!(find(prefix, b"kasi-session"), None);
    }

    #[test]
    fn removes_every_cookie_of_the_name_and_keeps_the_rest() {
        assert_eq!(
            without(b"a=1; kasi-session=x;b=2 ; kasi-session=y", b"kasi-session").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(without(b" kasi-session=x ", b"kasi-session"), None);
        assert_eq!(
            without(b"flag; e=; k=v", b"kasi-session").as_deref(),
            Some(&b"flag; e=; k=v"[..])
        );
        let headers: [&[u8]; 3] = [b"kasi-session=x", b"a=1; kasi-session=z", b"b=2"];
        assert_eq!(
            without_all(headers, b"kasi-session").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        let only: [&[u8]; 1] = [b"kasi-session=x"];
        assert_eq!(without_all(only, b"kasi-session"), None);
    }
}
