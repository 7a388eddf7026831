//! The filter's decision lines, as they appear in an activator sidecar's log:
//! `… wasm log <plugin> …: kasi_affinity {"decision":…,"address":…,"authority":…,"reason":…}`.

use kasi_filter::decision_log::PREFIX;
use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DecisionLine {
    pub decision: String,
    pub address: Option<String>,
    pub authority: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub expires: Option<u64>,
    #[serde(default)]
    pub previous: Option<String>,
    /// `cookie`, `envelope` or `header` (DESIGN.md); lines from filters older than issue 14
    /// have none: they are cookies.
    #[serde(default)]
    pub carrier: Option<String>,
    /// The session's identity when the line names one (an MCP server's session id, which the
    /// UI only ever shows hashed: [`crate::affinity::decode::shown_session`]).
    #[serde(default)]
    pub session: Option<String>,
    /// A `dead` line: how long the address stays quarantined.
    #[serde(default)]
    pub quarantine_s: Option<u64>,
    /// The status kasi answered in place of the upstream (MCP's 404 "Session not found").
    #[serde(default)]
    pub answer: Option<u16>,
}

impl DecisionLine {
    /// The decision in one log line, if the line has one (other lines give `None`).
    pub fn parse(line: &str) -> Option<DecisionLine> {
        let start = line.find(PREFIX)? + PREFIX.len();
        let json = &line[start..];
        let mut stream = serde_json::Deserializer::from_str(json).into_iter::<DecisionLine>();
        stream.next()?.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lines_envoy_writes() {
        let line = r#"[2026-11-26 01:37:00.788][24500][info][wasm] [source/extensions/common/wasm/context.cc:1151] wasm log knative-serving.kasi-affinity kasi-affinity knative-serving.kasi-affinity: kasi_affinity {"decision":"rebind","address":"127.64.1.10:8012","authority":"hello.default.example.com","reason":"dead","format":"proto","expires":null,"previous":"127.64.1.12:8012"}"#;
        let d = DecisionLine::parse(line).unwrap();
        assert_eq!(d.decision, "rebind");
        assert_eq!(d.address.as_deref(), Some("127.64.1.10:8012"));
        assert_eq!(d.previous.as_deref(), Some("127.64.1.12:8012"));
        assert_eq!(d.reason, "dead");
        assert_eq!(d.carrier, None);
        assert!(DecisionLine::parse("[info][main] starting").is_none());
        assert!(DecisionLine::parse("kasi_affinity {not json").is_none());
    }

    #[test]
    fn reads_the_carrier_of_an_mcp_session() {
        let line = r#"wasm log kasi-affinity: kasi_affinity {"decision":"pin","address":"127.64.1.10:8012","authority":"mcp.default.example.com","reason":"new_session","carrier":"envelope","format":"legacy","expires":null}"#;
        let d = DecisionLine::parse(line).unwrap();
        assert_eq!(d.carrier.as_deref(), Some("envelope"));
        assert_eq!(d.session, None);
    }

    #[test]
    fn reads_a_dead_line_and_an_mcp_404() {
        let dead = r#"kasi_affinity {"decision":"dead","address":"127.64.1.12:8012","authority":null,"reason":"connect_failure","carrier":"cookie","quarantine_s":30}"#;
        let d = DecisionLine::parse(dead).unwrap();
        assert_eq!((d.decision.as_str(), d.quarantine_s), ("dead", Some(30)));
        assert_eq!(d.authority, None);
        let answered = r#"kasi_affinity {"decision":"rejected","address":"127.64.1.12:8012","authority":"mcp.default.example.com","reason":"dead","carrier":"envelope","answer":404}"#;
        assert_eq!(DecisionLine::parse(answered).unwrap().answer, Some(404));
    }
}
