//! The session cookie in `cookie` request headers, read exactly as Envoy reads it.
//!
//! Envoy's `stateful_session` finds its cookie with `Http::Utility::parseCookieValue`
//! (`source/common/http/utility.cc`: `forEachCookie` + `parseCookie`):
//! - every `cookie` header, in order; each split on `;` (`StringUtil::splitToken`, empty pieces
//!   dropped);
//! - a piece without `=` is skipped;
//! - the name runs from the first byte that is not a space (`find_first_not_of(' ')`: a TAB is
//!   not skipped) up to the first `=`: a space or TAB before `=` is part of the name;
//! - the value is everything after that `=`, untrimmed; one pair of surrounding double quotes is
//!   removed when the value is at least two bytes long and starts and ends with `"`;
//! - names compare byte for byte, and the first match across all headers wins.
//!
//! Any difference between this reading and Envoy's is an escape (a space before `=` was one), so
//! this module ports that grammar and nothing else, and `tests::envoy_transcription` holds it to a
//! line-by-line transcription of Envoy's code under property tests and the fuzzer.

/// One cookie piece as Envoy splits it: its name and its value (quotes removed). `None` for a
/// piece Envoy skips (no `=`).
pub fn envoy_pair(piece: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = memchr::memchr(b'=', piece)?;
    // `=` is not a space, so the first non-space byte is at or before it.
    let start = piece.iter().position(|&b| b != b' ').unwrap_or(eq);
    let name = &piece[start..eq];
    let value = &piece[eq + 1..];
    let value = match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    };
    Some((name, value))
}

/// The pieces of one `cookie` header value, empty ones dropped (as `splitToken` does).
#[cfg(test)]
fn pieces(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b';')
        .filter(|piece| !piece.is_empty())
}

/// The value Envoy's `parseCookieValue(headers, name)` returns: the first cookie called `name`
/// across `headers` (each a `cookie` header value, in order), quotes removed.
pub fn find<'a, I>(headers: I, name: &[u8]) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    locate(headers, name).map(|found| found.value)
}

/// Where [`find`]'s cookie is: which header, the byte range of its piece in that header, and its
/// value (quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub header: usize,
    pub piece: std::ops::Range<usize>,
    pub value: &'a [u8],
}

/// [`find`], telling where the cookie is (so that a rewrite need not read the header again).
pub fn locate<'a, I>(headers: I, name: &[u8]) -> Option<Found<'a>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    headers.into_iter().enumerate().find_map(|(index, header)| {
        split_pieces(header).find_map(|piece| {
            // An empty piece has no `=`: skipped, as `splitToken` drops it.
            let (n, v) = envoy_pair(&header[piece.clone()])?;
            (n == name).then_some(Found {
                header: index,
                piece,
                value: v,
            })
        })
    })
}

/// The byte ranges of `header`'s pieces between `;`s, as `header.split(';')` yields them (empty
/// ones included), found with `memchr` (a word at a time rather than a byte).
fn split_pieces(header: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let rest = &header[from..];
        match memchr::memchr(b';', rest) {
            Some(at) => {
                start = Some(from + at + 1);
                Some(from..from + at)
            }
            None => {
                start = None;
                Some(from..header.len())
            }
        }
    })
}

/// Whether Envoy would read `piece` as a cookie called `name`.
fn is_named(piece: &[u8], name: &[u8]) -> bool {
    envoy_pair(piece).is_some_and(|(n, _)| n == name)
}

/// All `cookie` headers joined into one value (`"; "` between headers, as Envoy's HTTP/2 codec
/// joins them), every piece Envoy would read as `name` removed, and — when `restored` is given —
/// one `name="<restored>"` in place of the first such piece. Every other piece is kept byte for
/// byte. `None` when nothing is left.
pub fn rewrite<'a, I>(headers: I, name: &[u8], restored: Option<&[u8]>) -> Option<Vec<u8>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let headers: Vec<&[u8]> = headers.into_iter().collect();
    match locate(headers.iter().copied(), name) {
        Some(found) => rewrite_found(&headers, &found, name, restored),
        None => rewrite_general(headers, name, restored),
    }
}

/// [`rewrite`] once [`locate`] has found the cookie. With one header in which no later piece is
/// also read as `name` (every routed signed request), the piece is replaced in place, in one
/// allocation and reading only the rest of the header; otherwise the general rewrite.
pub fn rewrite_found(
    headers: &[&[u8]],
    found: &Found,
    name: &[u8],
    restored: Option<&[u8]>,
) -> Option<Vec<u8>> {
    if let ([header], Some(value)) = (headers, restored) {
        let rest = header.get(found.piece.end..).unwrap_or_default();
        if !split_pieces(rest).any(|piece| is_named(&rest[piece], name)) {
            return Some(splice(header, found.piece.clone(), name, value));
        }
    }
    rewrite_general(headers.iter().copied(), name, restored)
}

/// `header` with the piece at `piece` replaced by `name="<restored>"`, laid out as the general
/// rewrite lays it out: a space after the `;` before it, none in front of the header.
fn splice(header: &[u8], piece: std::ops::Range<usize>, name: &[u8], restored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + name.len() + restored.len() + 4);
    let before = &header[..piece.start];
    let lead = before.iter().take_while(|&&b| b == b' ').count();
    out.extend_from_slice(&before[lead..]);
    if piece.start > 0 {
        out.push(b' ');
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b"=\"");
    out.extend_from_slice(restored);
    out.push(b'"');
    out.extend_from_slice(&header[piece.end..]);
    out
}

fn rewrite_general<'a, I>(headers: I, name: &[u8], restored: Option<&[u8]>) -> Option<Vec<u8>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out: Vec<u8> = Vec::new();
    let mut restored = restored;
    for header in headers {
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut placed: Option<usize> = None;
        for piece in header.split(|&b| b == b';') {
            if is_named(piece, name) {
                if restored.is_some() && placed.is_none() {
                    placed = Some(kept.len());
                    kept.push(&[]);
                }
                continue;
            }
            kept.push(piece);
        }
        let mut header_out: Vec<u8> = Vec::new();
        for (i, piece) in kept.iter().enumerate() {
            if i > 0 {
                header_out.push(b';');
            }
            if Some(i) == placed {
                if i > 0 {
                    header_out.push(b' ');
                }
                if let Some(value) = restored.take() {
                    header_out.extend_from_slice(name);
                    header_out.extend_from_slice(b"=\"");
                    header_out.extend_from_slice(value);
                    header_out.push(b'"');
                }
            } else {
                header_out.extend_from_slice(piece);
            }
        }
        // A header left with only separators and spaces says nothing; spaces left in front by a
        // removed first piece are dropped (Envoy skips them before a name anyway).
        if header_out.iter().all(|&b| b == b';' || b == b' ') {
            continue;
        }
        let lead = header_out.iter().take_while(|&&b| b == b' ').count();
        header_out.drain(..lead);
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(&header_out);
    }
    (!out.is_empty()).then_some(out)
}

#[doc(hidden)]
/// Envoy's `forEachCookie` + `parseCookie`, transcribed statement by statement with the C++
/// beside it (envoyproxy/envoy `source/common/http/utility.cc`). Deliberately naive: it is the
/// oracle the port above is compared with, not code the filter runs.
pub fn envoy_transcription(headers: &[&[u8]], key: &[u8]) -> Option<Vec<u8>> {
    // for (size_t index = 0; index < cookie_headers.size(); index++) {
    for header in headers {
        // for (const auto& s : StringUtil::splitToken(cookie_header_value, ";")) {
        //   (absl::StrSplit(source, absl::ByAnyChar(delimiters), absl::SkipEmpty()))
        for s in header.split(|&b| b == b';').filter(|s| !s.is_empty()) {
            // size_t first_non_space = s.find_first_not_of(' ');
            let first_non_space = s.iter().position(|&b| b != b' ');
            // size_t equals_index = s.find('=');
            // if (equals_index == absl::string_view::npos) { continue; }
            let Some(equals_index) = s.iter().position(|&b| b == b'=') else {
                continue;
            };
            let first_non_space = first_non_space.unwrap_or(s.len());
            // absl::string_view k = s.substr(first_non_space, equals_index - first_non_space);
            let k = &s[first_non_space..equals_index];
            // absl::string_view v = s.substr(equals_index + 1, s.size() - 1);
            let mut v = &s[equals_index + 1..];
            // if (v.size() >= 2 && v.back() == '"' && v[0] == '"') {
            //   v = v.substr(1, v.size() - 2); }
            if v.len() >= 2 && v[v.len() - 1] == b'"' && v[0] == b'"' {
                v = &v[1..v.len() - 1];
            }
            // parseCookie's consumer: if (key == k) { value = std::string{v}; return false; }
            if k == key {
                return Some(v.to_vec());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that decide the grammar, and a few that do not.
    fn cookie_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b';'),
                Just(b'='),
                Just(b' '),
                Just(b'\t'),
                Just(b'"'),
                Just(b'k'),
                Just(b'x'),
                any::<u8>(),
            ],
            0..24,
        )
        .prop_map(|mut bytes| {
            // Splice the name in often, so that matches are common.
            if bytes.len() > 4 && bytes[0] % 2 == 0 {
                let at = usize::from(bytes[1]) % bytes.len();
                bytes.splice(at..at, b"k=".iter().copied());
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn the_port_reads_every_request_as_envoy_does(
            headers in proptest::collection::vec(cookie_bytes(), 0..4),
            name in prop_oneof![Just(b"k".to_vec()), Just(b"k ".to_vec()), Just(b"\tk".to_vec())],
        ) {
            let slices: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(
                find(slices.iter().copied(), &name).map(<[u8]>::to_vec),
                envoy_transcription(&slices, &name)
            );
        }

        #[test]
        fn after_a_rewrite_envoy_reads_only_the_restored_value(
            headers in proptest::collection::vec(cookie_bytes(), 0..4),
            restored in prop_oneof![Just(None), Just(Some(b"Zm9v".to_vec()))],
        ) {
            let slices: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
            let had = envoy_transcription(&slices, b"k").is_some();
            let rewritten = rewrite(slices.iter().copied(), b"k", restored.as_deref());
            let after: Vec<&[u8]> = rewritten.iter().map(Vec::as_slice).collect();
            let read = envoy_transcription(&after, b"k");
            match (&restored, had) {
                (Some(value), true) => prop_assert_eq!(read, Some(value.clone())),
                _ => prop_assert_eq!(read, None),
            }
            // Only the session cookie is gone: every other piece Envoy reads is still there.
            let others = |hs: &[&[u8]]| -> Vec<(Vec<u8>, Vec<u8>)> {
                hs.iter()
                    .flat_map(|h| pieces(h).filter_map(envoy_pair).collect::<Vec<_>>())
                    .filter(|(n, _)| *n != b"k")
                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                    .collect()
            };
            prop_assert_eq!(others(&after), others(&slices));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn the_in_place_rewrite_is_the_general_one(
            headers in proptest::collection::vec(cookie_bytes(), 1..3),
            name in prop_oneof![Just(b"k".to_vec()), Just(b"k ".to_vec()), Just(b" k".to_vec())],
        ) {
            let slices: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
            if let Some(found) = locate(slices.iter().copied(), &name) {
                prop_assert_eq!(
                    rewrite_found(&slices, &found, &name, Some(b"Zm9v")),
                    rewrite_general(slices.iter().copied(), &name, Some(b"Zm9v"))
                );
            }
        }
    }

    #[test]
    fn the_grammar_edges_envoy_has() {
        let cases: [(&[u8], Option<&[u8]>); 14] = [
            (b"kasi-session=v", Some(b"v")),
            (b"kasi-session=\"v\"", Some(b"v")),
            (b"  kasi-session=v", Some(b"v")),
            // A space or TAB before `=` is part of the name: not the session cookie.
            (b"kasi-session =v", None),
            (b"kasi-session\t=v", None),
            // A TAB before the name is not skipped.
            (b"\tkasi-session=v", None),
            (b"a=1;\tkasi-session=v", None),
            // The value is not trimmed; quotes are removed only when both ends have one.
            (b"kasi-session= v ", Some(b" v ")),
            (b"kasi-session=\"v\" ", Some(b"\"v\" ")),
            (b"kasi-session=\"", Some(b"\"")),
            (b"kasi-session", None),
            (b"kasi-session=1; kasi-session=2", Some(b"1")),
            (b"x=kasi-session=1", None),
            (b";;kasi-session=a=b", Some(b"a=b")),
        ];
        for (header, expected) in cases {
            assert_eq!(
                find([header], b"kasi-session"),
                expected,
                "{:?}",
                String::from_utf8_lossy(header)
            );
            assert_eq!(
                envoy_transcription(&[header], b"kasi-session").as_deref(),
                expected
            );
        }
    }

    #[test]
    fn the_first_match_across_headers_wins() {
        let headers: [&[u8]; 3] = [
            b"a=1; b=2",
            b"c=3;kasi-session=\"Zm9v\" ; d=4",
            b"kasi-session=bar",
        ];
        // The value runs to the `;`, space included, so its quotes are not removed.
        assert_eq!(find(headers, b"kasi-session"), Some(&b"\"Zm9v\" "[..]));
        let headers: [&[u8]; 2] = [b"a=1", b"kasi-session=bar"];
        assert_eq!(find(headers, b"kasi-session"), Some(&b"bar"[..]));
        assert_eq!(find(headers, b"kasi"), None);
    }

    #[test]
    fn rewrites_keep_every_other_cookie_byte_for_byte() {
        let headers: [&[u8]; 2] = [
            b"a=1; kasi-session=\"x.sig\";b=2 ; kasi-session=y",
            b"c=3;kasi-session=z",
        ];
        assert_eq!(
            rewrite(headers, b"kasi-session", Some(b"x")).as_deref(),
            Some(&b"a=1; kasi-session=\"x\";b=2 ; c=3"[..])
        );
        assert_eq!(
            rewrite(headers, b"kasi-session", None).as_deref(),
            Some(&b"a=1;b=2 ; c=3"[..])
        );
        let only: [&[u8]; 1] = [b"kasi-session=x"];
        assert_eq!(rewrite(only, b"kasi-session", None), None);
        assert_eq!(
            rewrite(only, b"kasi-session", Some(b"v")).as_deref(),
            Some(&b"kasi-session=\"v\""[..])
        );
        // Pieces Envoy does not read as the session cookie stay, as Envoy would leave them.
        let spaced: [&[u8]; 1] = [b"kasi-session =evil; kasi-session=good"];
        assert_eq!(
            rewrite(spaced, b"kasi-session", Some(b"good")).as_deref(),
            Some(&b"kasi-session =evil; kasi-session=\"good\""[..])
        );
    }
}
