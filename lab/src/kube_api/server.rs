//! The HTTP/1.1 server: accepts connections on the given listener, routes each request to
//! discovery, the object verbs, watch, logs or port-forward, and answers every failure with a
//! metav1 Status. Also writes the kubeconfig clients use to reach it.

use super::discovery;
use super::http::{error_response, full_body, json_response, Body, Query, MAX_BODY_BYTES};
use super::objects::{self, ObjectRequest};
use super::routes::{route, ResourcePath, Route};
use super::status::ApiError;
use super::store::Store;
use super::{logs, openapi, portforward, watch, LabHooks};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

struct Context {
    store: Store,
    hooks: Arc<dyn LabHooks>,
    /// `host:port` as clients reach this server.
    address: String,
}

/// Serves the lab API on `listener` until the task is dropped or accepting fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    hooks: Arc<dyn LabHooks>,
) -> std::io::Result<()> {
    let context = Arc::new(Context {
        store,
        hooks,
        address: listener.local_addr()?.to_string(),
    });
    loop {
        let (connection, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a moment rather than spin or die.
            Err(error) if is_transient(&error) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let _ = connection.set_nodelay(true);
        let context = context.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let context = context.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&context, request).await) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(connection), service)
                .with_upgrades()
                .await;
            if let Err(error) = result {
                tracing::trace!(%error, "lab API connection ended");
            }
        });
    }
}

fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || error
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24)
}

async fn handle(context: &Context, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = match dispatch(context, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "lab API");
    response
}

async fn dispatch(
    context: &Context,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(request.uri().query());
    let is_get = request.method() == Method::GET;
    match route(request.uri().path()) {
        Route::Version if is_get => Ok(json_response(StatusCode::OK, &discovery::version())),
        Route::Health if is_get => {
            let mut response = Response::new(full_body("ok"));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            Ok(response)
        }
        Route::CoreVersions if is_get => Ok(json_response(
            StatusCode::OK,
            &discovery::core_versions(&context.address),
        )),
        Route::Groups if is_get => Ok(json_response(
            StatusCode::OK,
            &discovery::group_list(&context.store),
        )),
        Route::Group(group) if is_get => Ok(json_response(
            StatusCode::OK,
            &discovery::group(&context.store, &group)?,
        )),
        Route::GroupVersion(group, version) if is_get => Ok(json_response(
            StatusCode::OK,
            &discovery::resource_list(&context.store, &group, &version)?,
        )),
        Route::OpenApiV2 if is_get => {
            let accept = request
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains(openapi::V2_PROTOBUF) {
                let mut response = Response::new(full_body(bytes::Bytes::new()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(openapi::V2_PROTOBUF_RESPONSE),
                );
                Ok(response)
            } else {
                Ok(json_response(StatusCode::OK, &openapi::v2_empty_json()))
            }
        }
        Route::OpenApiRoot if is_get => Ok(json_response(
            StatusCode::OK,
            &openapi::root(&context.store),
        )),
        Route::OpenApiGroupVersion(group, version) if is_get => Ok(json_response(
            StatusCode::OK,
            &openapi::group_version(&context.store, &group, &version)?,
        )),
        Route::Resource(path) if context.store.is_served(path.rt) => {
            resource(context, path, query, &mut request).await
        }
        Route::Unknown | Route::Resource(_) => Err(ApiError::UnknownPath),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

async fn resource(
    context: &Context,
    path: ResourcePath,
    query: Query,
    request: &mut Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = request.method().clone();
    let subresource = path.subresource.as_deref();
    if subresource.is_some_and(|sub| !path.rt.has_subresource(sub)) {
        return Err(ApiError::UnknownPath);
    }
    authorize(context, &path, &query, &method)?;
    match (subresource, &method) {
        (Some("log"), &Method::GET) => {
            return logs::handle(&context.store, context.hooks.as_ref(), &path, &query)
        }
        (Some("portforward"), &Method::GET | &Method::POST) => {
            return portforward::handle(&context.store, &context.hooks, &path, &query, request)
        }
        (Some("log" | "portforward"), _) => return Err(ApiError::MethodNotAllowed),
        _ => {}
    }
    let is_watch = path.watch_path || query.flag("watch");
    if is_watch {
        if method != Method::GET || path.name.is_some() && !path.watch_path {
            return Err(ApiError::MethodNotAllowed);
        }
        return watch_request(context, path, &query, request);
    }
    let body = Limited::new(request.body_mut(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?
        .to_bytes();
    objects::handle(ObjectRequest {
        store: &context.store,
        method: &method,
        path: &path,
        query: &query,
        headers: request.headers(),
        body,
        hooks: context.hooks.as_ref(),
    })
}

/// Asks the hooks whether the request's verb on its resource is allowed, as RBAC would.
fn authorize(
    context: &Context,
    path: &ResourcePath,
    query: &Query,
    method: &Method,
) -> Result<(), ApiError> {
    let is_watch = path.watch_path || query.flag("watch");
    let verb = match (method, path.subresource.as_deref()) {
        // Port-forward and exec are `create` on their subresource whatever the HTTP method.
        (_, Some("portforward")) => "create",
        (&Method::GET, _) if is_watch => "watch",
        (&Method::GET, _) if path.name.is_none() => "list",
        (&Method::GET, _) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) if path.name.is_none() => "deletecollection",
        (&Method::DELETE, _) => "delete",
        _ => return Ok(()),
    };
    // `plural[/subresource][.group]`, as RBAC rules and the server's messages spell it.
    let mut resource = path.rt.plural.to_owned();
    if let Some(sub) = &path.subresource {
        resource = format!("{resource}/{sub}");
    }
    if !path.rt.group.is_empty() {
        resource = format!("{resource}.{}", path.rt.group);
    }
    let namespace = path.namespace.as_deref();
    if context.hooks.authorize(verb, &resource, namespace) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            verb: verb.to_owned(),
            resource,
            namespace: namespace.map(str::to_owned),
        })
    }
}

/// A watch; the legacy `/watch/…/{name}` form watches one object (a `metadata.name` selector).
fn watch_request(
    context: &Context,
    mut path: ResourcePath,
    query: &Query,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut query = query.clone();
    if let Some(name) = path.name.take() {
        let existing = query.get("fieldSelector").unwrap_or("").to_string();
        let selector = if existing.is_empty() {
            format!("metadata.name={name}")
        } else {
            format!("{existing},metadata.name={name}")
        };
        query = Query::parse(Some(&format!(
            "{}&fieldSelector={}",
            request.uri().query().unwrap_or(""),
            form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
        )));
    }
    watch::handle(&context.store, &path, &query, request.headers())
}

/// A kubeconfig for the lab API at `server_url` (e.g. `http://127.0.0.1:8080`): one cluster, a
/// user without credentials (the lab has no auth), and context `context_name` in namespace
/// `default`, made current.
pub fn kubeconfig_yaml(server_url: &str, context_name: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context_name, "cluster": {"server": server_url}}],
        "users": [{"name": context_name, "user": {}}],
        "contexts": [{"name": context_name, "context": {
            "cluster": context_name, "user": context_name, "namespace": "default"}}],
        "current-context": context_name,
        "preferences": {},
    });
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}
