//! One Envoy HTTP filter, skipped for requests that carry a header: how the bundle wraps the
//! cookie `stateful_session`. The e2e harness (`tests/src/bootstrap.rs`) compiles this very file,
//! so the chain the tests and the benchmark run is the one `kasi apply` renders.

use serde_json::{json, Value};

/// `filter` (an HTTP filter's `{name, typed_config}`) wrapped so that Envoy skips it, in both
/// directions, for a request that carries any of `headers`: `ExtensionWithMatcher` with a
/// `SkipFilter` action. Envoy's `source/common/http/match_wrapper/config.cc` (core, so in every
/// build, istio-proxy's included) evaluates the matcher on the request headers once, when the
/// stream's filter chain is built, and on a skip never adds the filter in either direction. The
/// cookie `stateful_session` is wrapped so when sessions also
/// travel in headers: a request in an MCP or header-mode session carries no session cookie, and
/// the cookie `stateful_session` would otherwise issue one on every response, which kasi would
/// then have to take out again (`./dev bench`, variant (i)). The filter keeps its name, so the
/// chain reads the same in config_dump. Unchanged when `headers` is empty.
pub fn skipped_for_headers(filter: Value, headers: &[&str]) -> Value {
    if headers.is_empty() {
        return filter;
    }
    let matchers: Vec<Value> = headers
        .iter()
        .map(|header| {
            json!({
                "predicate": {"single_predicate": {
                    "input": {
                        "name": "request-headers",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                            "header_name": header,
                        },
                    },
                    // Any value, the empty one included: the header is present.
                    "value_match": {"safe_regex": {"google_re2": {}, "regex": ".*"}},
                }},
                "on_match": {"action": {
                    "name": "skip",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter",
                    },
                }},
            })
        })
        .collect();
    json!({
        "name": filter["name"],
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": filter,
            "xds_matcher": {"matcher_list": {"matchers": matchers}},
        },
    })
}
