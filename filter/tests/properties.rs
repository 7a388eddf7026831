//! Properties of the codec and the request policy over generated inputs: round trips hold, and
//! nothing a client can send makes the filter panic.

use kasi_filter::codec::{self, DecodeError, Format};
use kasi_filter::config::Config;
use kasi_filter::json::Json;
use kasi_filter::policy::{self, Verdict};
use kasi_filter::{cookies, dead_hosts};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    ];
    (ip, 1u16..).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Header names a request may carry, weighted towards the ones the filter reads.
fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"cookie".to_vec()),
        Just(b"Cookie".to_vec()),
        Just(b"x-envoy-original-dst-host".to_vec()),
        Just(b":authority".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

/// Cookie header values mixing valid cookies, near-valid ones and noise.
fn cookie_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (socket_addr(), any::<Option<u64>>()).prop_map(|(a, e)| format!(
            "a=1; kasi-session=\"{}\"",
            codec::encode_proto(a, e)
        )
        .into_bytes()),
        socket_addr()
            .prop_map(|a| format!("kasi-session={}", codec::encode_legacy(a)).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..300),
        "[a-z=; \"A-Za-z0-9+/_-]{0,120}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn proto_cookies_round_trip(addr in socket_addr(), expires in any::<Option<u64>>()) {
        let cookie = codec::decode(codec::encode_proto(addr, expires).as_bytes()).unwrap();
        prop_assert_eq!(cookie.format, Format::Proto);
        prop_assert_eq!(cookie.address, addr);
        prop_assert_eq!(cookie.expires, expires.filter(|&e| e != 0));
    }

    #[test]
    fn legacy_cookies_round_trip_unless_envoy_would_read_them_as_protobuf(addr in socket_addr()) {
        // Envoy tries protobuf first; the rare "ip:port" text that parses as protobuf has no
        // address field, which Envoy treats as no cookie. kasi must agree, not "fix" it.
        match codec::decode(codec::encode_legacy(addr).as_bytes()) {
            Ok(cookie) => {
                prop_assert_eq!(cookie.format, Format::Legacy);
                prop_assert_eq!(cookie.address, addr);
            }
            Err(e) => prop_assert_eq!(e, DecodeError::EmptyAddress),
        }
    }

    #[test]
    fn base64_variants_decode_alike(addr in socket_addr(), expires in any::<Option<u64>>()) {
        let padded = codec::encode_proto(addr, expires);
        let bare = padded.trim_end_matches('=').to_owned();
        let url_safe = bare.replace('+', "-").replace('/', "_");
        let quoted = format!("\"{url_safe}\"");
        let expected = codec::decode(padded.as_bytes()).unwrap();
        for variant in [bare, url_safe, quoted] {
            prop_assert_eq!(codec::decode(variant.as_bytes()).unwrap(), expected);
        }
    }

    #[test]
    fn the_fast_decoder_agrees_with_the_general_one(value in cookie_value()) {
        // The cookie values the generator writes, and the value after `kasi-session=`.
        let value = match cookies::find([value.as_slice()], b"kasi-session") {
            Some(v) => v.to_vec(),
            None => value,
        };
        let mut buf = [0u8; codec::MAX_ENCODED_LEN];
        if let Some(fast) = codec::decode_ipv4(&value, &mut buf) {
            let general = codec::decode(&value);
            prop_assert_eq!(Ok(fast.session_cookie()), general);
            prop_assert_eq!(fast.text, policy::canonical_address(&SocketAddr::V4(fast.address)));
        }
    }

    #[test]
    fn the_fast_decoder_is_what_judge_routes_by(
        addr in prop_oneof![
            any::<u32>().prop_map(|n| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(n)), 8012)),
            (0u32..256, 8011u16..8014).prop_map(|(n, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8)), p)),
        ],
        expires in prop_oneof![Just(None), any::<Option<u64>>(), (1_700_000_000u64..1_900_000_000).prop_map(Some)],
        now in 1_700_000_000u64..1_900_000_000,
        dead in any::<bool>(),
        legacy in any::<bool>(),
    ) {
        let config = Config::default();
        let value = if legacy { codec::encode_legacy(addr) } else { codec::encode_proto(addr, expires) };
        let verdict = policy::judge(&config, value.as_bytes(), || now, |_| dead);
        let general = codec::decode(value.as_bytes());
        match &verdict {
            Verdict::Routed { cookie, address } => {
                prop_assert_eq!(Ok(*cookie), general);
                prop_assert_eq!(address, &policy::canonical_address(&cookie.address));
                prop_assert!(config.allows(&cookie.address) && !dead);
            }
            Verdict::Rejected { .. } => {}
            Verdict::NoCookie => prop_assert!(false, "judge never says no cookie"),
        }
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = codec::decode(&bytes);
        let _ = codec::decode_bytes(&bytes);
    }

    #[test]
    fn the_request_policy_never_panics_and_never_routes_outside_the_config(
        headers in proptest::collection::vec((header_name(), cookie_value()), 0..6),
        now in any::<u64>(),
        dead in any::<bool>(),
    ) {
        let config = Config::default();
        let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
        let plan = policy::plan_request(&config, &pairs, || now, |_| dead);
        if let Verdict::Routed { address, .. } = &plan.verdict {
            let addr: SocketAddr = address.parse().unwrap();
            prop_assert!(config.allows(&addr), "routed to {address}");
            prop_assert!(!dead);
        }
        if let Some(Some(rewritten)) = &plan.cookie_rewrite {
            prop_assert_eq!(cookies::find([rewritten.as_slice()], b"kasi-session"), None);
        }
        // Envoy hands header names over lower-case; the generator's mixed case is not a header
        // Envoy would present as the routing header.
        let sent_header = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"x-envoy-original-dst-host"));
        prop_assert_eq!(plan.strip_header, sent_header);
    }

    #[test]
    fn config_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Config::parse(&bytes);
    }

    #[test]
    fn json_agrees_with_serde_json(text in r#"[\[\]{}":,0-9.eE+\- a-z\\u]{0,40}"#) {
        let ours = Json::parse(text.as_bytes()).ok();
        let theirs = serde_json::from_str::<serde_json::Value>(&text);
        // The one intended difference: numbers beyond f64 (1e999) are text to us; the config
        // refuses anything but small integers anyway.
        let out_of_range = matches!(&theirs, Err(e) if e.to_string().contains("out of range"));
        if !out_of_range {
            prop_assert_eq!(ours.is_some(), theirs.is_ok(), "{}", text);
        }
        if let (Some(ours), Ok(theirs)) = (ours, theirs) {
            // serde_json re-reads our rendering as the same value.
            let back: serde_json::Value = serde_json::from_str(&ours.to_string()).unwrap();
            prop_assert_eq!(back, theirs);
        }
    }

    #[test]
    fn json_strings_agree_with_serde_json(s in any::<String>()) {
        let mut literal = String::new();
        kasi_filter::json::write_string(&mut literal, &s);
        prop_assert_eq!(serde_json::from_str::<String>(&literal).unwrap(), s.clone());
        prop_assert_eq!(Json::parse(literal.as_bytes()).unwrap(), Json::String(s));
    }

    #[test]
    fn dead_host_lists_survive_any_bytes(list in proptest::collection::vec(any::<u8>(), 0..300), now in 0u64..u64::MAX / 2) {
        let updated = dead_hosts::with(&list, b"10.0.0.1:8012", now + 30, now);
        prop_assert!(dead_hosts::contains(&updated, b"10.0.0.1:8012", now));
        prop_assert!(!dead_hosts::contains(&updated, b"10.0.0.1:8012", now + 30));
    }
}

mod header_carriers {
    use super::*;
    use kasi_filter::envelope::{encode_envelope, encode_header_value};
    use kasi_filter::fuzzing::assert_envoy_reads_only_approved;
    use kasi_filter::policy::Carrier;
    use kasi_filter::signing::{self, SessionKeys};

    const KEY: [u8; 32] = [7u8; 32];
    const AUTHORITY: &str = "h.example.com";

    fn config(signed: bool) -> Config {
        Config {
            session_header: "x-session".to_owned(),
            session_keys: if signed {
                SessionKeys::new([&KEY])
            } else {
                SessionKeys::default()
            },
            ..Config::default()
        }
    }

    /// Addresses inside and outside the default allowed CIDRs and ports.
    fn address() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (0u8..4, prop_oneof![Just(8012u16), Just(8013), Just(15000)])
                .prop_map(|(n, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), p)),
            Just("127.0.0.1:15000".parse().unwrap()),
            Just("[::ffff:10.0.0.1]:8012".parse().unwrap()),
            socket_addr(),
        ]
    }

    /// A value for a carrier: Envoy-shaped, signed (right or wrong key, right or wrong host),
    /// tampered with, or noise.
    fn value(carrier: Carrier) -> impl Strategy<Value = Vec<u8>> {
        let plain = move || {
            address().prop_map(move |a| match carrier {
                Carrier::Envelope => encode_envelope(&a.to_string(), b"sid"),
                _ => encode_header_value(&a.to_string()),
            })
        };
        prop_oneof![
            plain().prop_map(String::into_bytes),
            (plain(), any::<bool>(), any::<bool>()).prop_map(move |(p, right_key, right_host)| {
                let key = if right_key { KEY } else { [8u8; 32] };
                let host = if right_host {
                    AUTHORITY
                } else {
                    "x.example.com"
                };
                SessionKeys::new([&key])
                    .sign(p.as_bytes(), host.as_bytes(), carrier.mac_separator())
                    .unwrap()
            }),
            "[A-Za-z0-9+/=;:UVK. -]{0,40}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..60),
        ]
    }

    fn headers() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::vec(
            prop_oneof![
                value(Carrier::Envelope).prop_map(|v| (b"mcp-session-id".to_vec(), v)),
                value(Carrier::Header).prop_map(|v| (b"x-session".to_vec(), v)),
                cookie_value().prop_map(|v| (b"cookie".to_vec(), v)),
            ],
            0..4,
        )
        .prop_map(|mut h| {
            h.push((b":authority".to_vec(), AUTHORITY.as_bytes().to_vec()));
            h
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever a client sends in any carrier, after the filter's rewrites Envoy's own
        /// readings (the transcriptions of its C++) follow no address kasi does not allow, a
        /// rejected envelope is answered instead of passed on, and signed sessions route only
        /// with kasi's MAC for this host.
        #[test]
        fn envoy_follows_only_what_kasi_approved(
            headers in headers(),
            signed in any::<bool>(),
            dead in any::<bool>(),
        ) {
            let config = config(signed);
            let pairs: Vec<(&[u8], &[u8])> =
                headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
            let plan = policy::plan_request(&config, &pairs, || 1_800_000_000, |_| dead);
            assert_envoy_reads_only_approved(&config, &pairs, &plan, |_| dead);
            if let Some(address) = plan.steer_to() {
                let address: SocketAddr = address.parse().unwrap();
                prop_assert!(config.allows(&address) && !dead);
            }
            let first_envelope = pairs.iter().find(|(n, _)| *n == b"mcp-session-id");
            if let Some((_, value)) = first_envelope {
                let honoured = plan.carrier == Carrier::Envelope
                    && matches!(plan.verdict, Verdict::Routed { .. });
                prop_assert_eq!(plan.not_found, !honoured, "{:?}", plan);
                if signed && honoured {
                    let (plain, mac) = signing::split(value, signing::ENVELOPE_SEPARATOR);
                    prop_assert!(SessionKeys::new([&KEY]).verify(plain, AUTHORITY.as_bytes(), mac.unwrap()));
                    prop_assert_eq!(plan.envelope_rewrite.as_deref(), Some(plain));
                }
            } else {
                prop_assert!(!plan.not_found);
            }
        }
    }
}
