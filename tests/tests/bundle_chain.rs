//! The harness's chain is the bundle's: the e2e tests and the benchmark wrap the cookie
//! `stateful_session` with the app's own `skip_filter.rs`, and this checks that `kasi manifests` /
//! `kasi apply` wrap every cookie patch with it, for the MCP header, around the cookie the
//! filter reads — so what the tests assert and the benchmark measures is what a cluster runs.

use kasi::install::render::{render, session_state_of, FilterSource, RenderOptions};
use serde_json::json;

#[test]
fn the_harness_skips_the_cookie_session_as_the_bundle_does() {
    let options = RenderOptions::new(FilterSource::ConfigMap {
        wasm: b"\0asm".to_vec(),
    });
    let pieces = render(&options).unwrap();
    let session = pieces
        .iter()
        .find(|p| p.id == "stateful-session")
        .expect("the stateful-session piece");
    for patch in session.object["spec"]["configPatches"].as_array().unwrap() {
        let value = &patch["patch"]["value"];
        if session_state_of(value)["name"] != "envoy.http.stateful_session.cookie" {
            continue;
        }
        let inner = &value["typed_config"]["extension_config"];
        assert_eq!(
            value,
            &kasi_e2e::skipped_for_headers(inner.clone(), &[kasi_e2e::MCP_HEADER]),
            "port {}",
            patch["match"]["listener"]["portNumber"]
        );
        assert_eq!(
            inner["typed_config"]["session_state"]["typed_config"]["cookie"],
            json!({"name": kasi_e2e::COOKIE_NAME, "path": "/"})
        );
    }
}
