//! Request bodies in Kubernetes' protobuf encoding, read into the JSON the rest of the lab API
//! speaks.
//!
//! kubectl (client-go) sends built-in kinds as `application/vnd.kubernetes.protobuf` on the
//! typed paths (`kubectl create configmap|secret|namespace|serviceaccount`, …), and the real API
//! server decodes them (`k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`
//! `Serializer.Decode`): the body is the magic `k8s\0`, then a `runtime.Unknown` whose `typeMeta`
//! names the kind and whose `raw` is the object. The lab knows the messages of the kinds those
//! commands create, field numbers from `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`; another kind gets 415 with a message
//! that says to send JSON. The wire format (varints, length-delimited fields) is read here rather
//! than through a protobuf crate: these few messages need nothing else, and generated bindings of
//! the whole Kubernetes API would add minutes to every build.

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// `k8s.io/apimachinery/pkg/runtime/serializer/protobuf` `protoEncodingPrefix`.
const MAGIC: &[u8] = b"k8s\x00";

/// How a field's value turns into JSON.
#[derive(Clone, Copy)]
enum Kind {
    String,
    Int,
    Bool,
    /// `meta.v1.Time`: RFC 3339 in JSON.
    Time,
    Message(&'static [Field]),
    RepeatedString,
    RepeatedMessage(&'static [Field]),
    MapStringString,
    MapStringBytes,
}

/// One field of a message: its number, its JSON name, its kind.
type Field = (u32, &'static str, Kind);

const OWNER_REFERENCE: &[Field] = &[
    (5, "apiVersion", Kind::String),
    (1, "kind", Kind::String),
    (3, "name", Kind::String),
    (4, "uid", Kind::String),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];

const MANAGED_FIELDS_ENTRY: &[Field] = &[
    (1, "manager", Kind::String),
    (2, "operation", Kind::String),
    (3, "apiVersion", Kind::String),
    (4, "time", Kind::Time),
    (6, "fieldsType", Kind::String),
    (8, "subresource", Kind::String),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Kind::String),
    (2, "generateName", Kind::String),
    (3, "namespace", Kind::String),
    (5, "uid", Kind::String),
    (6, "resourceVersion", Kind::String),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Time),
    (9, "deletionTimestamp", Kind::Time),
    (10, "deletionGracePeriodSeconds", Kind::Int),
    (11, "labels", Kind::MapStringString),
    (12, "annotations", Kind::MapStringString),
    (
        13,
        "ownerReferences",
        Kind::RepeatedMessage(OWNER_REFERENCE),
    ),
    (14, "finalizers", Kind::RepeatedString),
    (
        17,
        "managedFields",
        Kind::RepeatedMessage(MANAGED_FIELDS_ENTRY),
    ),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "data", Kind::MapStringString),
    (3, "binaryData", Kind::MapStringBytes),
    (4, "immutable", Kind::Bool),
];

const SECRET: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "data", Kind::MapStringBytes),
    (3, "type", Kind::String),
    (4, "stringData", Kind::MapStringString),
    (5, "immutable", Kind::Bool),
];

const NAMESPACE_SPEC: &[Field] = &[(1, "finalizers", Kind::RepeatedString)];
const NAMESPACE_STATUS: &[Field] = &[(1, "phase", Kind::String)];
const NAMESPACE: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "spec", Kind::Message(NAMESPACE_SPEC)),
    (3, "status", Kind::Message(NAMESPACE_STATUS)),
];

const LOCAL_OBJECT_REFERENCE: &[Field] = &[(1, "name", Kind::String)];
const OBJECT_REFERENCE: &[Field] = &[
    (1, "kind", Kind::String),
    (2, "namespace", Kind::String),
    (3, "name", Kind::String),
    (4, "uid", Kind::String),
    (5, "apiVersion", Kind::String),
];
const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "secrets", Kind::RepeatedMessage(OBJECT_REFERENCE)),
    (
        3,
        "imagePullSecrets",
        Kind::RepeatedMessage(LOCAL_OBJECT_REFERENCE),
    ),
    (4, "automountServiceAccountToken", Kind::Bool),
];

/// `meta.v1.DeleteOptions` (`kubectl delete` may send one).
const DELETE_OPTIONS: &[Field] = &[
    (1, "gracePeriodSeconds", Kind::Int),
    (3, "orphanDependents", Kind::Bool),
    (4, "propagationPolicy", Kind::String),
    (5, "dryRun", Kind::RepeatedString),
];

/// The kinds whose protobuf the lab reads, by `apiVersion` and `kind`.
fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    match (api_version, kind) {
        ("v1", "ConfigMap") => Some(CONFIG_MAP),
        ("v1", "Secret") => Some(SECRET),
        ("v1", "Namespace") => Some(NAMESPACE),
        ("v1", "ServiceAccount") => Some(SERVICE_ACCOUNT),
        (_, "DeleteOptions") => Some(DELETE_OPTIONS),
        _ => None,
    }
}

/// Why a protobuf body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtobufError {
    /// Well-formed, but a kind the lab has no message for.
    UnknownKind(String),
    /// Not the Kubernetes protobuf encoding.
    Malformed(String),
}

/// The JSON object a protobuf request body holds (with `apiVersion` and `kind` from its
/// envelope).
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let malformed = |why: &str| ProtobufError::Malformed(why.to_owned());
    let unknown = body.strip_prefix(MAGIC).ok_or_else(|| {
        malformed("the body does not start with the protobuf envelope's magic k8s\\0")
    })?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (number, value) in fields(unknown).map_err(|e| malformed(&e))? {
        match (number, value) {
            (1, Wire::Bytes(type_meta)) => {
                for (n, v) in fields(type_meta).map_err(|e| malformed(&e))? {
                    match (n, v) {
                        (1, Wire::Bytes(b)) => api_version = text(b).map_err(|e| malformed(&e))?,
                        (2, Wire::Bytes(b)) => kind = text(b).map_err(|e| malformed(&e))?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(bytes)) => raw = bytes,
            (3, Wire::Bytes(encoding)) if !encoding.is_empty() => {
                return Err(malformed("a compressed (contentEncoding) body"));
            }
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnknownKind(format!("{api_version}, Kind={kind}")))?;
    let mut object = message(raw, schema).map_err(|e| malformed(&e))?;
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!(kind));
    }
    Ok(object)
}

/// One field's value on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A 32- or 64-bit field: no message the lab reads has one.
    Fixed,
}

/// The fields of one message, in wire order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let number = u32::try_from(key >> 3).map_err(|_| "a field number out of range")?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            1 => {
                take(&mut buf, 8)?;
                Wire::Fixed
            }
            2 => {
                let len =
                    usize::try_from(varint(&mut buf)?).map_err(|_| "a length out of range")?;
                Wire::Bytes(take(&mut buf, len)?)
            }
            5 => {
                take(&mut buf, 4)?;
                Wire::Fixed
            }
            other => {
                return Err(format!(
                    "wire type {other} (groups are not used by Kubernetes)"
                ))
            }
        };
        out.push((number, value));
    }
    Ok(out)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("a truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if buf.len() < len {
        return Err("a truncated field".into());
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string that is not UTF-8".into())
}

/// A message as JSON: fields the schema does not name are dropped (the JSON decoder drops
/// unknown fields too); empty strings and zero numbers are left out, as Kubernetes' `omitempty`
/// JSON does.
fn message(buf: &[u8], schema: &[Field]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, wire) in fields(buf)? {
        let Some(&(_, name, kind)) = schema.iter().find(|f| f.0 == number) else {
            continue;
        };
        match (kind, wire) {
            (Kind::String, Wire::Bytes(b)) => {
                if !b.is_empty() {
                    out.insert(name.into(), json!(text(b)?));
                }
            }
            (Kind::Int, Wire::Varint(v)) => {
                if v != 0 {
                    out.insert(name.into(), json!(v as i64));
                }
            }
            (Kind::Bool, Wire::Varint(v)) => {
                out.insert(name.into(), json!(v != 0));
            }
            (Kind::Time, Wire::Bytes(b)) => {
                out.insert(name.into(), json!(time(b)?));
            }
            (Kind::Message(inner), Wire::Bytes(b)) => {
                out.insert(name.into(), message(b, inner)?);
            }
            (Kind::RepeatedString, Wire::Bytes(b)) => {
                push(&mut out, name, json!(text(b)?));
            }
            (Kind::RepeatedMessage(inner), Wire::Bytes(b)) => {
                push(&mut out, name, message(b, inner)?);
            }
            (Kind::MapStringString | Kind::MapStringBytes, Wire::Bytes(b)) => {
                // A map entry is a message { key = 1; value = 2 }.
                let (mut key, mut value) = (String::new(), Value::String(String::new()));
                for (n, v) in fields(b)? {
                    match (n, v) {
                        (1, Wire::Bytes(k)) => key = text(k)?,
                        (2, Wire::Bytes(v)) if matches!(kind, Kind::MapStringBytes) => {
                            value = json!(base64_text(v))
                        }
                        (2, Wire::Bytes(v)) => value = json!(text(v)?),
                        _ => {}
                    }
                }
                let map = out.entry(name).or_insert_with(|| json!({}));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
            _ => {
                return Err(format!(
                    "field {name} ({number}) has an unexpected wire type"
                ))
            }
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, name: &str, value: Value) {
    if let Value::Array(list) = out.entry(name).or_insert_with(|| json!([])) {
        list.push(value);
    }
}

fn base64_text(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `meta.v1.Time { int64 seconds = 1; int32 nanos = 2; }` as RFC 3339 (seconds, as Kubernetes
/// writes it).
fn time(buf: &[u8]) -> Result<String, String> {
    let mut seconds = 0u64;
    for (n, v) in fields(buf)? {
        if let (1, Wire::Varint(s)) = (n, v) {
            seconds = s;
        }
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    Ok(humantime::format_rfc3339_seconds(at).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A tiny encoder for the tests: the same wire rules, written out.
    fn key(number: u32, wire: u8) -> Vec<u8> {
        encode_varint(u64::from(number) << 3 | u64::from(wire))
    }

    fn encode_varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u32, value: &[u8]) -> Vec<u8> {
        let mut out = key(number, 2);
        out.extend(encode_varint(value.len() as u64));
        out.extend_from_slice(value);
        out
    }

    fn varint_field(number: u32, value: u64) -> Vec<u8> {
        let mut out = key(number, 0);
        out.extend(encode_varint(value));
        out
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        [bytes_field(1, k.as_bytes()), bytes_field(2, v)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [
            bytes_field(1, api_version.as_bytes()),
            bytes_field(2, kind.as_bytes()),
        ]
        .concat();
        [
            MAGIC.to_vec(),
            bytes_field(1, &type_meta),
            bytes_field(2, raw),
            bytes_field(3, b""),
            bytes_field(4, b""),
        ]
        .concat()
    }

    fn meta(name: &str) -> Vec<u8> {
        [
            bytes_field(1, name.as_bytes()),
            bytes_field(2, b""),
            bytes_field(3, b"default"),
            varint_field(7, 0),
            bytes_field(8, &varint_field(1, 1_764_597_600)),
            bytes_field(11, &entry("app", b"demo")),
            bytes_field(11, &entry("tier", b"web")),
        ]
        .concat()
    }

    #[test]
    fn a_config_map_as_kubectl_create_sends_it() {
        let raw = [
            bytes_field(1, &meta("settings")),
            bytes_field(2, &entry("mode", b"fast")),
            bytes_field(2, &entry("level", b"3")),
            bytes_field(3, &entry("blob", &[0, 1, 2])),
        ]
        .concat();
        let object = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "settings",
                    "namespace": "default",
                    "creationTimestamp": "2025-12-01T14:00:00Z",
                    "labels": {"app": "demo", "tier": "web"},
                },
                "data": {"mode": "fast", "level": "3"},
                "binaryData": {"blob": "AAEC"},
            })
        );
    }

    #[test]
    fn secret_data_is_base64_and_namespace_finalizers_repeat() {
        let secret = [
            bytes_field(1, &meta("token")),
            bytes_field(2, &entry("password", b"hunter2")),
            bytes_field(3, b"Opaque"),
        ]
        .concat();
        let object = decode(&envelope("v1", "Secret", &secret)).unwrap();
        assert_eq!(object["data"], json!({"password": "aHVudGVyMg=="}));
        assert_eq!(object["type"], "Opaque");

        let namespace = [
            bytes_field(1, &bytes_field(1, b"shop")),
            bytes_field(
                2,
                &[bytes_field(1, b"kubernetes"), bytes_field(1, b"x")].concat(),
            ),
        ]
        .concat();
        let object = decode(&envelope("v1", "Namespace", &namespace)).unwrap();
        assert_eq!(object["spec"]["finalizers"], json!(["kubernetes", "x"]));
        assert_eq!(object["metadata"], json!({"name": "shop"}));
    }

    /// Any bytes after the magic (a client's) give an answer, never a panic.
    #[test]
    fn arbitrary_bodies_never_panic() {
        let valid = envelope("v1", "ConfigMap", &bytes_field(1, &meta("x")));
        for _ in 0..20_000 {
            let mut body = valid.clone();
            for _ in 0..rand::random_range(1..8) {
                let at = rand::random_range(MAGIC.len()..body.len());
                body[at] = rand::random();
            }
            body.truncate(rand::random_range(MAGIC.len()..=body.len()));
            let _ = decode(&body);
        }
    }

    #[test]
    fn other_kinds_and_broken_bodies_are_named() {
        assert_eq!(
            decode(&envelope("apps/v1", "Deployment", b"")),
            Err(ProtobufError::UnknownKind(
                "apps/v1, Kind=Deployment".into()
            ))
        );
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Malformed(_))));
        let mut truncated = envelope("v1", "ConfigMap", &bytes_field(1, &meta("x")));
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            decode(&truncated),
            Err(ProtobufError::Malformed(_))
        ));
    }
}
