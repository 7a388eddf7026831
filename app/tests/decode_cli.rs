//! `kasi decode` as a user runs it: the real binary, its stdout, stderr and exit code.

use kasi_filter::codec::encode_proto;
use std::process::{Command, Output};

fn kasi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kasi"))
        .args(args)
        .output()
        .expect("run kasi")
}

#[test]
fn decodes_a_set_cookie_line_to_json() {
    let value = encode_proto("10.4.0.17:8012".parse().unwrap(), Some(1_000_000_000_000));
    let line = format!("Set-Cookie: kasi-session=\"{value}\"; Max-Age=120; Path=/; HttpOnly");
    let out = kasi(&["decode", &line, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["format"], "proto");
    assert_eq!(json["address"], "10.4.0.17:8012");
    assert_eq!(json["expires"], 1_000_000_000_000u64);
    assert_eq!(json["expired"], false);
}

#[test]
fn an_expired_cookie_says_so() {
    let value = encode_proto("10.4.0.17:8012".parse().unwrap(), Some(1_700_000_000));
    let out = kasi(&["decode", "--json", &value]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["expired"], true);
    let text = kasi(&["decode", &value]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("EXPIRED"));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for bad in ["%%%", "", "Cookie: a=1; b=2", "kasi-session=Zm9vYmFy"] {
        let out = kasi(&["decode", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("kasi decode: "), "{err}");
    }
}

#[test]
fn a_signed_cookie_decodes_and_says_it_is_signed() {
    let value = encode_proto("10.4.0.17:8012".parse().unwrap(), None);
    let keys = kasi_filter::signing::SessionKeys::new([&[3u8; 32]]);
    let signed = keys
        .sign(
            value.as_bytes(),
            b"hello.example.com",
            kasi_filter::signing::COOKIE_SEPARATOR,
        )
        .unwrap();
    let line = format!(
        "Cookie: kasi-session=\"{}\"",
        String::from_utf8(signed).unwrap()
    );
    let out = kasi(&["decode", "--json", &line]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["carrier"], "cookie");
    assert_eq!(json["address"], "10.4.0.17:8012");
    assert_eq!(json["signed"], true);
    let unsigned = kasi(&["decode", "--json", &value]);
    let json: serde_json::Value = serde_json::from_slice(&unsigned.stdout).unwrap();
    assert_eq!(json["signed"], false);
    let text = kasi(&["decode", &line]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("signed   yes"));
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// What the MCP server chose; Envoy's envelope wraps it for the pod that answered.
const MCP_ID: &str = "7f9c2ba4-e88f-4f2b-9c1d-0a3b5c7d9e11";

#[test]
fn decodes_an_envelope_and_an_mcp_session_id_line() {
    let value = kasi_filter::envelope::encode_envelope("10.4.0.17:8012", MCP_ID.as_bytes());
    let keys = kasi_filter::signing::SessionKeys::new([&[3u8; 32]]);
    let signed = String::from_utf8(
        keys.sign(
            value.as_bytes(),
            b"mcp.example.com",
            kasi_filter::signing::ENVELOPE_SEPARATOR,
        )
        .unwrap(),
    )
    .unwrap();
    for (input, signed) in [
        (value.clone(), false),
        (format!("Mcp-Session-Id: {value}"), false),
        (signed.clone(), true),
        (format!("mcp-session-id: {signed}"), true),
    ] {
        let out = kasi(&["decode", "--json", &input]);
        let json = json_of(&out);
        assert_eq!(json["carrier"], "envelope", "{input}");
        assert_eq!(json["format"], "legacy", "{input}");
        assert_eq!(json["address"], "10.4.0.17:8012", "{input}");
        assert_eq!(json["expires"], serde_json::Value::Null, "{input}");
        assert_eq!(json["expired"], false, "{input}");
        assert_eq!(json["signed"], signed, "{input}");
        let session = json["session"].as_str().unwrap();
        assert_eq!(session.len(), 8, "{input}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(MCP_ID));
        let text = String::from_utf8_lossy(&kasi(&["decode", &input]).stdout).into_owned();
        assert!(text.contains("carrier  envelope"), "{text}");
        assert!(text.contains(&format!("session  {session}")), "{text}");
        assert!(!text.contains(MCP_ID), "{text}");
    }
}

#[test]
fn decodes_a_header_mode_value_by_its_header_or_the_flag() {
    let value = kasi_filter::envelope::encode_header_value("10.4.0.17:8012");
    for args in [
        vec!["decode", "--json", "--carrier", "header", value.as_str()],
        vec!["decode", "--json", &format!("X-Kasi-Session: {value}")],
    ] {
        let json = json_of(&kasi(&args));
        assert_eq!(json["carrier"], "header", "{args:?}");
        assert_eq!(json["format"], "legacy");
        assert_eq!(json["address"], "10.4.0.17:8012");
        assert_eq!(json["expires"], serde_json::Value::Null);
        assert_eq!(json["expired"], false);
        assert!(json.get("session").is_none());
    }
    // Bare, the same bytes are Envoy's legacy cookie: that is the documented rule.
    let json = json_of(&kasi(&["decode", "--json", &value]));
    assert_eq!(json["carrier"], "cookie");
    assert_eq!(json["format"], "legacy");
    let text = String::from_utf8_lossy(&kasi(&["decode", "--carrier", "header", &value]).stdout)
        .into_owned();
    assert!(text.contains("carrier  header"), "{text}");
}

#[test]
fn cookies_say_their_carrier() {
    let value = encode_proto("10.4.0.17:8012".parse().unwrap(), None);
    let json = json_of(&kasi(&[
        "decode",
        "--json",
        &format!("Cookie: kasi-session={value}"),
    ]));
    assert_eq!(json["carrier"], "cookie");
    assert!(json.get("session").is_none());
    let text = String::from_utf8_lossy(&kasi(&["decode", &value]).stdout).into_owned();
    assert!(text.contains("carrier  cookie"), "{text}");
}

#[test]
fn bad_envelopes_and_header_values_exit_2_with_one_line() {
    let address = kasi_filter::envelope::encode_header_value("10.4.0.17:8012");
    for args in [
        vec!["decode".to_owned(), format!("Mcp-Session-Id: {address}")],
        vec!["decode".to_owned(), format!("{address};UV:%%%")],
        vec!["decode".to_owned(), "Zm9vYmFy;UV:YWJj".to_owned()],
        vec!["decode".to_owned(), "X-Kasi-Session: Zm9vYmFy".to_owned()],
        vec!["decode".to_owned(), "X-Kasi-Session:".to_owned()],
        vec![
            "decode".to_owned(),
            "--carrier".to_owned(),
            "header".to_owned(),
            "MTAuNC4wLjE3OjgwMTI".to_owned(),
        ],
        vec![
            "decode".to_owned(),
            "--json".to_owned(),
            "--carrier".to_owned(),
            "envelope".to_owned(),
            address.clone(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kasi(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("kasi decode: "), "{err}");
    }
}
