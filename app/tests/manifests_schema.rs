//! Every rendered Istio object validates against Istio's own CRD schema, the way `kubectl apply`
//! (strict field validation) would judge it; the ConfigMap keys are the ones Knative documents,
//! with values Knative permits. Fixtures: `tests/fixtures/README.md`.

use kasi::install::render::{render, FilterSource, Piece, RenderOptions};
use kasi::install::session_keys::{self, KeyRing};
use serde_json::{json, Value};
use std::time::Duration;

fn crd_schema(api_version: &str, kind: &str) -> Value {
    let text = match (api_version, kind) {
        ("networking.istio.io/v1", "Sidecar") => include_str!("fixtures/istio/sidecars.v1.json"),
        ("networking.istio.io/v1alpha3", "EnvoyFilter") => {
            include_str!("fixtures/istio/envoyfilters.v1alpha3.json")
        }
        ("extensions.istio.io/v1alpha1", "WasmPlugin") => {
            include_str!("fixtures/istio/wasmplugins.v1alpha1.json")
        }
        other => panic!("no schema fixture for {other:?}"),
    };
    let mut schema = strict(serde_json::from_str(text).expect("fixture is JSON"));
    // The CRD schema describes spec and status; the API server adds these for every kind.
    for implicit in ["apiVersion", "kind", "metadata"] {
        schema["properties"][implicit] = json!({});
    }
    schema
}

/// Kubernetes structural-schema semantics as JSON Schema: objects reject fields they do not
/// declare (unless `x-kubernetes-preserve-unknown-fields`), `nullable` admits null, and
/// int-or-string admits both.
fn strict(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        if map.contains_key("properties") && !preserve && !map.contains_key("additionalProperties")
        {
            map.insert("additionalProperties".into(), json!(false));
        }
        if map.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
            map.remove("type");
        }
        if map.remove("nullable") == Some(json!(true)) {
            if let Some(Value::String(t)) = map.get("type").cloned() {
                map.insert("type".into(), json!([t, "null"]));
            }
        }
        for value in map.values_mut() {
            *value = strict(value.take());
        }
    } else if let Value::Array(items) = &mut schema {
        for item in items.iter_mut() {
            *item = strict(item.take());
        }
    }
    schema
}

fn validate(piece: &Piece) {
    let object = &piece.object;
    let schema = crd_schema(object["apiVersion"].as_str().unwrap(), piece.kind());
    let validator = jsonschema::validator_for(&schema).expect("the CRD schema compiles");
    // metadata is validated by the API server itself, not by the CRD schema.
    let mut body = object.clone();
    body["metadata"] = json!({});
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} {} does not match Istio's schema:\n{}",
        piece.kind(),
        piece.name(),
        errors.join("\n")
    );
}

fn variants() -> Vec<RenderOptions> {
    let mut configmap = RenderOptions::new(FilterSource::ConfigMap {
        wasm: b"\0asm".to_vec(),
    });
    configmap.allowed_cidrs = Some(vec!["10.244.0.0/16".into()]);
    let mut with_ttl = configmap.clone();
    with_ttl.cookie_ttl = Some(Duration::from_secs(1800));
    with_ttl.cookie_name = "sticky".into();
    with_ttl.cookie_path = "/app".into();
    // Keys after a rotation: a list and the rotation annotation.
    let (rotated, _) = session_keys::next(
        Some(KeyRing::generate()),
        true,
        Duration::from_secs(1800),
        std::time::SystemTime::now(),
    );
    with_ttl.session_keys = Some(rotated);
    let hosted = RenderOptions::new(FilterSource::Url {
        url: "oci://ghcr.io/example/kasi:1.0".into(),
        sha256: "ab".repeat(32),
    });
    vec![configmap, with_ttl, hosted]
}

#[test]
fn istio_objects_match_istios_crd_schemas() {
    for options in variants() {
        let pieces = render(&options).unwrap();
        let istio: Vec<&Piece> = pieces
            .iter()
            .filter(|p| {
                p.object["apiVersion"]
                    .as_str()
                    .unwrap()
                    .contains("istio.io")
            })
            .collect();
        assert_eq!(istio.len(), 4, "Sidecar, 2 EnvoyFilters, WasmPlugin");
        for piece in istio {
            validate(piece);
        }
    }
}

#[test]
fn the_validation_catches_mistakes() {
    let pieces = render(&variants().remove(0)).unwrap();
    let wasm = pieces
        .iter()
        .find(|p| p.kind() == "WasmPlugin")
        .unwrap()
        .clone();
    for (path, bad) in [
        ("phase", json!("BEFORE_AUTHN")),
        ("failStrategy", json!("OPEN")),
        ("selectr", json!({})),
    ] {
        let mut broken = wasm.clone();
        broken.object["spec"][path] = bad;
        let result = std::panic::catch_unwind(|| validate(&broken));
        assert!(result.is_err(), "spec.{path} should have been rejected");
    }
}

/// The keys kasi sets exist in Knative's ConfigMaps, and the values are ones Knative documents.
#[test]
fn configmap_keys_are_knatives() {
    let documented = [
        (
            include_str!("../../lab/src/knative/seed/config-network.yaml"),
            "mesh-compatibility-mode",
            "\"disabled\"",
        ),
        (
            include_str!("../../lab/src/knative/seed/config-autoscaler.yaml"),
            "target-burst-capacity",
            "-1 denotes unlimited target-burst-capacity",
        ),
    ];
    let pieces = render(&variants().remove(0)).unwrap();
    for (text, key, permitted) in documented {
        let example: Value = serde_yaml_ng::from_str(text).unwrap();
        let example = example["data"]["_example"].as_str().unwrap();
        assert!(
            example.contains(&format!("\n{key}: ")),
            "Knative's _example documents {key}"
        );
        assert!(
            example.contains(permitted),
            "Knative documents {permitted} for {key}"
        );
        let piece = pieces
            .iter()
            .find(|p| p.object["data"].get(key).is_some())
            .unwrap_or_else(|| panic!("a piece sets {key}"));
        let data = piece.object["data"].as_object().unwrap();
        assert_eq!(data.len(), 1, "kasi sets only {key} in {}", piece.name());
    }
}
