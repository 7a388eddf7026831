//! The `mcp` revision's pods: a stateful MCP server on Streamable HTTP, built with the official
//! Rust SDK (`rmcp`: `StreamableHttpService` with its in-memory `LocalSessionManager`), the kind
//! of workload whose sessions must stay on the pod that holds them.
//!
//! What a client sees, as the MCP spec (2025-11-25, "Streamable HTTP") says a server does:
//! `initialize` answers with an `Mcp-Session-Id` header; the session's state lives in this pod's
//! memory only; a request naming a session this pod does not know gets 404 (so a request that
//! lands on another pod, or on this pod after a restart, fails); POSTs answer as an SSE stream;
//! `GET` with `Accept: text/event-stream` opens the session's standalone SSE stream. It has one
//! tool, `whoami`, that answers with the pod's name, and every response carries
//! `x-kasi-pod: <pod name>` like the other lab pods'.
//!
//! rmcp 3.11 speaks MCP 2026-07-28 too, the revision that drops sessions (SEP-2567); it keeps
//! `legacy_session_mode` (on by default) for clients that `initialize` with an earlier revision,
//! and those get sessions. Clients of a stateful server on Knative today are of that kind.

use super::pods::POD_HEADER;
use crate::knative::seed::MCP_PATH;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The response body every lab pod answers with.
pub type PodBody = BoxBody<Bytes, Infallible>;

/// The tool's name.
pub const WHOAMI: &str = "whoami";

/// One MCP session's server: rmcp makes one per `initialize` (the service factory below), so its
/// fields are that session's state.
struct WhoAmI {
    pod: Arc<str>,
    /// `whoami` calls in this session: state that exists only on this pod.
    calls: AtomicU64,
}

fn whoami_tool() -> Tool {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), "object".into());
    schema.insert("properties".into(), JsonObject::new().into());
    Tool::new(
        WHOAMI,
        "The name of the pod serving this MCP session.",
        Arc::new(schema),
    )
}

impl ServerHandler for WhoAmI {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "kasi-lab-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("A kasi lab pod. Call whoami to see which pod holds the session.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![whoami_tool()]))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == WHOAMI).then(whoami_tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != WHOAMI {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {}", request.name),
                None,
            ));
        }
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let mut result = CallToolResult::success(vec![ContentBlock::text(&*self.pod)]);
        result.structured_content = Some(serde_json::json!({"pod": &*self.pod, "calls": calls}));
        Ok(result.into())
    }
}

/// One running MCP server: what a pod's container holds in memory between its start and its
/// end (a restored pod starts a new one, with no sessions).
pub struct McpServer {
    pod: Arc<str>,
    service: StreamableHttpService<WhoAmI, LocalSessionManager>,
}

impl McpServer {
    /// `allowed_hosts`: the Hosts the server accepts (rmcp checks `Host` against DNS rebinding;
    /// a deployed server lists its own names, here its Route's).
    pub fn new(pod: &str, allowed_hosts: Vec<String>) -> McpServer {
        let pod: Arc<str> = Arc::from(pod);
        let for_sessions = Arc::clone(&pod);
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(allowed_hosts)
            .with_legacy_session_mode(true);
        let service = StreamableHttpService::new(
            move || {
                Ok(WhoAmI {
                    pod: Arc::clone(&for_sessions),
                    calls: AtomicU64::new(0),
                })
            },
            Arc::new(LocalSessionManager::default()),
            config,
        );
        McpServer { pod, service }
    }

    pub async fn handle(&self, mut request: Request<Incoming>) -> Response<PodBody> {
        // queue-proxy hands the user container the Host the client sent: the activator moved it
        // to K-Original-Host (`pkg/queue/handler.go` `ProxyHandler`, knative/networking
        // `pkg/http/header/header.go` `RewriteHostOut`).
        if let Some(original) = request.headers_mut().remove("k-original-host") {
            request.headers_mut().insert(http::header::HOST, original);
        }
        let mut response = if request.uri().path() == MCP_PATH {
            self.service.handle(request).await
        } else {
            let mut response = Response::new(
                Full::new(Bytes::from(format!("{}: MCP is at {MCP_PATH}\n", self.pod))).boxed(),
            );
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        };
        if let Ok(pod) = http::HeaderValue::from_str(&self.pod) {
            response.headers_mut().insert(POD_HEADER, pod);
        }
        response
    }

    /// Ends every session and stream, as the container's end does.
    pub fn shutdown(&self) {
        self.service.config.cancellation_token.cancel();
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
