//! The verbs on objects: list, get, create, update, patch (including server-side apply), delete and
//! deletecollection, plus the always-allowed SelfSubjectAccessReview.

use super::http::{json_response, wants_table, Body, Query};
use super::patch::PatchKind;
use super::routes::ResourcePath;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Store, WriteOptions};
use super::table::{table, IncludeObject};
use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};

/// One request on a resource path (other than watch, log and portforward).
pub struct ObjectRequest<'a> {
    pub store: &'a Store,
    pub method: &'a Method,
    pub path: &'a ResourcePath,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// The lab's RBAC stand-in, which SelfSubjectAccessReviews consult.
    pub hooks: &'a dyn super::LabHooks,
}

pub fn handle(request: ObjectRequest<'_>) -> Result<Response<Body>, ApiError> {
    let path = request.path;
    let rt = path.rt;
    require_json_body(&request)?;
    if rt.plural == "selfsubjectaccessreviews" {
        return access_review(&request);
    }
    match (
        request.method,
        path.name.as_deref(),
        path.subresource.as_deref(),
    ) {
        (&Method::GET, None, None) => list(&request),
        (&Method::GET, Some(name), None | Some("status")) => get(&request, name),
        (&Method::POST, None, None) => create(&request),
        (&Method::PUT, Some(name), None | Some("status")) => update(&request, name),
        (&Method::PATCH, Some(name), None | Some("status")) => patch(&request, name),
        (&Method::DELETE, Some(name), None) => delete(&request, name),
        (&Method::DELETE, None, None) => delete_collection(&request),
        (_, _, Some(sub)) if !rt.has_subresource(sub) => Err(ApiError::UnknownPath),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn namespace<'a>(request: &'a ObjectRequest<'_>) -> Option<&'a str> {
    request.path.namespace.as_deref()
}

fn not_found(request: &ObjectRequest<'_>, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: request.path.rt.qualified_plural(),
        name: name.to_string(),
    }
}

/// `fieldManager`, or what the real server derives from the User-Agent (`kubectl/v1.32…` →
/// `kubectl`).
fn field_manager(request: &ObjectRequest<'_>) -> String {
    match request.query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(manager) => manager.to_string(),
        None => {
            let agent = request
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown");
            agent.split('/').next().unwrap_or("unknown").to_string()
        }
    }
}

fn dry_run(request: &ObjectRequest<'_>) -> Result<bool, ApiError> {
    match request.query.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

/// The media types a body but a PATCH's may have: JSON, and protobuf for the built-in kinds
/// [`super::protobuf`] knows.
const BODY_MEDIA_TYPE: &str = super::http::JSON;
const PROTOBUF_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Refuses a POST, PUT or DELETE body in a media type the lab cannot decode with 415
/// `UnsupportedMediaType`, as the real server refuses one it has no decoder for (CBOR where it
/// is off); PATCH checks its own media types (`PatchKind::from_content_type`). No Content-Type
/// means JSON, the first media type the server supports, as `NegotiateInputSerializer`
/// (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/negotiation/negotiate.go`) reads it.
fn require_json_body(request: &ObjectRequest<'_>) -> Result<(), ApiError> {
    let has_body = match *request.method {
        Method::POST | Method::PUT => true,
        Method::DELETE => !request.body.is_empty(),
        _ => false,
    };
    if !has_body {
        return Ok(());
    }
    let media_type = body_media_type(request);
    if media_type == PROTOBUF_MEDIA_TYPE {
        // POST and PUT bodies are read once, by `json_body`; a DELETE's (DeleteOptions) only
        // here, so that one the lab cannot read is refused rather than ignored.
        if *request.method == Method::DELETE {
            super::protobuf::decode(&request.body).map_err(protobuf_error)?;
        }
        return Ok(());
    }
    if media_type.is_empty() || media_type == BODY_MEDIA_TYPE {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType {
        got: media_type,
        accepted: format!("{BODY_MEDIA_TYPE}, {PROTOBUF_MEDIA_TYPE}"),
    })
}

fn body_media_type(request: &ObjectRequest<'_>) -> String {
    request
        .headers
        .get(header::CONTENT_TYPE)
        .map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The body as JSON, decoded from protobuf when it came as protobuf. A kind whose protobuf the
/// lab does not know is refused with 415 naming it: client-go does not fall back to JSON on a
/// 415 (only from CBOR: `rest/client.go` `requestClientContentConfigProvider`), so the message
/// says what to do instead.
fn json_body(request: &ObjectRequest<'_>) -> Result<Value, ApiError> {
    if body_media_type(request) == PROTOBUF_MEDIA_TYPE {
        return super::protobuf::decode(&request.body).map_err(protobuf_error);
    }
    serde_json::from_slice(&request.body).map_err(|e| {
        ApiError::BadRequest(format!("the request body is not a valid JSON object: {e}"))
    })
}

fn protobuf_error(error: super::protobuf::ProtobufError) -> ApiError {
    match error {
        super::protobuf::ProtobufError::UnknownKind(kind) => ApiError::UnsupportedMediaType {
            got: format!(
                "{PROTOBUF_MEDIA_TYPE} for {kind} (the lab reads protobuf for ConfigMap, Secret, \
                 Namespace and ServiceAccount; send JSON instead, e.g. with `kubectl create -f`)"
            ),
            accepted: BODY_MEDIA_TYPE.to_owned(),
        },
        super::protobuf::ProtobufError::Malformed(why) => {
            ApiError::BadRequest(format!("the request body is not valid protobuf: {why}"))
        }
    }
}

fn list(request: &ObjectRequest<'_>) -> Result<Response<Body>, ApiError> {
    let rt = request.path.rt;
    let labels = LabelSelector::parse(request.query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(request.query.get("fieldSelector").unwrap_or(""))?;
    let page = Page::read(request, &labels, &fields)?;
    let revision = page.revision.to_string();
    let items = &page.items;
    if wants_table(request.headers) {
        let include = IncludeObject::parse(request.query.get("includeObject"));
        let mut table = table(rt, items, Some(&revision), include);
        table["metadata"] = page.metadata(&revision);
        return Ok(json_response(StatusCode::OK, &table));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": page.metadata(&revision),
            "items": items,
        }),
    ))
}

/// One page of a list, as `limit` and `continue` ask (kube-rs watchers list 500 at a time,
/// kubectl too): clients that page must never get 5,000 objects in one body from the lab when a
/// cluster would not give them that.
struct Page {
    items: Vec<Value>,
    /// The first page's resourceVersion, which every later page reports (as the real server
    /// does for its snapshot), so a watch started from it misses nothing.
    revision: u64,
    /// The token for the next page, and how many items are left after this one.
    next: Option<(String, usize)>,
}

impl Page {
    fn read(
        request: &ObjectRequest<'_>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Result<Page, ApiError> {
        let query = request.query;
        let (first_revision, after) = match query.get("continue").filter(|t| !t.is_empty()) {
            Some(token) => {
                let (revision, after) = decode_continue(token)?;
                (Some(revision), Some(after))
            }
            None => (None, None),
        };
        let limit = match query.get("limit") {
            Some(text) => text.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "limit must be a non-negative integer, not {text:?}"
                ))
            })?,
            None => 0,
        };
        let (items, remaining, current) = request.store.list_page(
            request.path.rt,
            namespace(request),
            labels,
            fields,
            after.as_ref(),
            limit,
        );
        let revision = first_revision.unwrap_or(current);
        let next = match items.last() {
            Some(last) if remaining > 0 => {
                let meta = &last["metadata"];
                let text = |k: &str| meta[k].as_str().unwrap_or_default().to_owned();
                let key = (text("namespace"), text("name"));
                Some((encode_continue(revision, &key), remaining))
            }
            _ => None,
        };
        Ok(Page {
            items,
            revision,
            next,
        })
    }

    fn metadata(&self, revision: &str) -> Value {
        match &self.next {
            Some((token, remaining)) => json!({
                "resourceVersion": revision, "continue": token, "remainingItemCount": remaining,
            }),
            None => json!({"resourceVersion": revision}),
        }
    }
}

fn encode_continue(revision: u64, (namespace, name): &(String, String)) -> String {
    use base64::Engine;
    let token = json!({"rv": revision, "namespace": namespace, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    use base64::Engine;
    let invalid = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let text = |k: &str| value[k].as_str().map(str::to_owned).ok_or_else(invalid);
    let revision = value["rv"].as_u64().ok_or_else(invalid)?;
    Ok((revision, (text("namespace")?, text("name")?)))
}

fn get(request: &ObjectRequest<'_>, name: &str) -> Result<Response<Body>, ApiError> {
    let rt = request.path.rt;
    let object = request
        .store
        .get(rt, namespace(request), name)
        .ok_or_else(|| not_found(request, name))?;
    if wants_table(request.headers) {
        let include = IncludeObject::parse(request.query.get("includeObject"));
        return Ok(json_response(
            StatusCode::OK,
            &table(rt, std::slice::from_ref(&object), None, include),
        ));
    }
    Ok(json_response(StatusCode::OK, &object))
}

fn create(request: &ObjectRequest<'_>) -> Result<Response<Body>, ApiError> {
    let manager = field_manager(request);
    let options = WriteOptions {
        field_manager: &manager,
        subresource: None,
        dry_run: dry_run(request)?,
    };
    let created = request.store.create(
        request.path.rt,
        namespace(request),
        json_body(request)?,
        &options,
    )?;
    Ok(json_response(StatusCode::CREATED, &created))
}

fn update(request: &ObjectRequest<'_>, name: &str) -> Result<Response<Body>, ApiError> {
    let manager = field_manager(request);
    let options = WriteOptions {
        field_manager: &manager,
        subresource: request.path.subresource.as_deref(),
        dry_run: dry_run(request)?,
    };
    let updated = request.store.update(
        request.path.rt,
        namespace(request),
        name,
        json_body(request)?,
        &options,
    )?;
    Ok(json_response(StatusCode::OK, &updated))
}

fn patch(request: &ObjectRequest<'_>, name: &str) -> Result<Response<Body>, ApiError> {
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = PatchKind::from_content_type(content_type)?;
    let dry_run = dry_run(request)?;
    if kind == PatchKind::Apply {
        return apply(request, name, dry_run);
    }
    let manager = field_manager(request);
    let options = WriteOptions {
        field_manager: &manager,
        subresource: request.path.subresource.as_deref(),
        dry_run,
    };
    let patched = request.store.patch(
        request.path.rt,
        namespace(request),
        name,
        kind,
        &request.body,
        &options,
    )?;
    Ok(json_response(StatusCode::OK, &patched))
}

fn apply(
    request: &ObjectRequest<'_>,
    name: &str,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let manager = request
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                    .into(),
            )
        })?;
    if request.path.subresource.is_some() {
        return Err(ApiError::BadRequest(
            "the lab supports server-side apply on the main resource only".into(),
        ));
    }
    let config: Value = serde_yaml_ng::from_slice(&request.body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    let rt = request.path.rt;
    let existed = request.store.get(rt, namespace(request), name).is_some();
    let applied = request.store.apply(
        rt,
        namespace(request),
        name,
        config,
        manager,
        request.query.flag("force"),
        dry_run,
    )?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(status, &applied))
}

fn delete(request: &ObjectRequest<'_>, name: &str) -> Result<Response<Body>, ApiError> {
    let rt = request.path.rt;
    if dry_run(request)? {
        let object = request
            .store
            .get(rt, namespace(request), name)
            .ok_or_else(|| not_found(request, name))?;
        return Ok(json_response(StatusCode::OK, &object));
    }
    let deleted = request.store.delete(rt, namespace(request), name)?;
    Ok(json_response(StatusCode::OK, &deleted))
}

fn delete_collection(request: &ObjectRequest<'_>) -> Result<Response<Body>, ApiError> {
    let rt = request.path.rt;
    let labels = LabelSelector::parse(request.query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(request.query.get("fieldSelector").unwrap_or(""))?;
    let (items, _) = request
        .store
        .list_matching(rt, namespace(request), &labels, &fields)?;
    let dry_run = dry_run(request)?;
    let mut deleted = Vec::new();
    for item in items {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let item_namespace = item["metadata"]["namespace"].as_str().map(str::to_string);
        if dry_run {
            deleted.push(item);
        } else if let Ok(object) = request.store.delete(rt, item_namespace.as_deref(), &name) {
            deleted.push(object);
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": request.store.revision().to_string()},
            "items": deleted,
        }),
    ))
}

/// A SelfSubjectAccessReview answered by the same hook that guards requests (kasi apply checks
/// its permissions this way), so what the review says is what the request then meets.
fn access_review(request: &ObjectRequest<'_>) -> Result<Response<Body>, ApiError> {
    if request.method != Method::POST || request.path.name.is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    let mut review = json_body(request)?;
    if !review.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    if !review.get("metadata").is_some_and(Value::is_object) {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    let attributes = &review["spec"]["resourceAttributes"];
    let text = |key: &str| attributes[key].as_str().unwrap_or_default();
    let mut resource = text("resource").to_owned();
    if !text("subresource").is_empty() {
        resource = format!("{resource}/{}", text("subresource"));
    }
    if !text("group").is_empty() {
        resource = format!("{resource}.{}", text("group"));
    }
    let namespace = Some(text("namespace")).filter(|n| !n.is_empty());
    let allowed = request.hooks.authorize(text("verb"), &resource, namespace);
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "the kasi lab allows it"})
    } else {
        json!({"allowed": false, "denied": true, "reason": "the kasi lab was told to refuse it"})
    };
    Ok(json_response(StatusCode::CREATED, &review))
}
