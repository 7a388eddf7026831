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
