//! Counter names, exactly as DESIGN.md publishes them (Envoy may prefix them, e.g. `wasmcustom.`).

pub const REQUESTS: &str = "kasi_affinity.requests";
pub const COOKIE_ROUTED: &str = "kasi_affinity.cookie_routed";
pub const STICKY_HITS: &str = "kasi_affinity.sticky_hits";
pub const REBINDS: &str = "kasi_affinity.rebinds";
pub const HEADER_STRIPPED: &str = "kasi_affinity.header_stripped";
pub const REJECTED_MALFORMED: &str = "kasi_affinity.rejected_malformed";
pub const REJECTED_EXPIRED: &str = "kasi_affinity.rejected_expired";
pub const REJECTED_DISALLOWED: &str = "kasi_affinity.rejected_disallowed";
pub const REJECTED_DEAD: &str = "kasi_affinity.rejected_dead";
/// Envoy's `set_envoy_filter_state` did not succeed: the session could not be steered.
pub const STEER_FAILED: &str = "kasi_affinity.steer_failed";
/// MCP sessions answered 404 "Session not found" (MCP sessions).
pub const MCP_NOT_FOUND: &str = "kasi_affinity.mcp_not_found";

/// A gauge, not a counter: the VM's linear memory in bytes, recorded when it grows (wasm memory
/// never shrinks, so this is the high-water mark; with several workers, the last VM to grow).
/// What the benchmark reads to show that memory does not follow what clients send.
pub const VM_MEMORY_BYTES: &str = "kasi_affinity.vm_memory_bytes";

/// Every counter, in the order they are defined in the VM.
pub const ALL: [&str; 11] = [
    REQUESTS,
    COOKIE_ROUTED,
    STICKY_HITS,
    REBINDS,
    HEADER_STRIPPED,
    REJECTED_MALFORMED,
    REJECTED_EXPIRED,
    REJECTED_DISALLOWED,
    REJECTED_DEAD,
    STEER_FAILED,
    MCP_NOT_FOUND,
];

/// Index into [`ALL`] of each counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Requests,
    CookieRouted,
    StickyHits,
    Rebinds,
    HeaderStripped,
    RejectedMalformed,
    RejectedExpired,
    RejectedDisallowed,
    RejectedDead,
    SteerFailed,
    McpNotFound,
}

impl Counter {
    pub fn name(self) -> &'static str {
        ALL[self as usize]
    }

    pub fn rejected(reason: &crate::policy::Rejection) -> Counter {
        use crate::policy::Rejection::*;
        match reason {
            Malformed(_) | MalformedHeader(_) | BadSignature => Counter::RejectedMalformed,
            Expired(_) => Counter::RejectedExpired,
            Disallowed => Counter::RejectedDisallowed,
            Dead => Counter::RejectedDead,
        }
    }
}

/// The hit rate kasi shows everywhere: sticky hits over requests that carried a session (any
/// carrier).
/// `None` when no request carried one.
pub fn hit_rate(sticky_hits: u64, cookie_routed: u64, rejected_total: u64) -> Option<f64> {
    let with_cookie = cookie_routed + rejected_total;
    (with_cookie > 0).then(|| sticky_hits as f64 / with_cookie as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_contract() {
        assert_eq!(Counter::RejectedDead.name(), "kasi_affinity.rejected_dead");
        assert_eq!(Counter::Requests.name(), "kasi_affinity.requests");
        assert_eq!(Counter::SteerFailed.name(), "kasi_affinity.steer_failed");
        assert_eq!(Counter::McpNotFound.name(), "kasi_affinity.mcp_not_found");
        assert!(ALL.iter().all(|n| n.starts_with("kasi_affinity.")));
        assert_eq!(hit_rate(9, 9, 1), Some(0.9));
        assert_eq!(hit_rate(0, 0, 0), None);
    }
}
