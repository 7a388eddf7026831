//! Watches: a chunked stream of `{"type": …, "object": …}` lines. Starts with the current objects
//! (no resourceVersion, or "0") or the retained changes after the given resourceVersion; an
//! unretained one gets the real server's in-stream `ERROR` with a 410 Expired Status, which makes
//! clients relist (`staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go`
//! `watchCache.getAllEventsSinceLocked`: "too old resource version"). Bookmarks when asked;
//! `timeoutSeconds` ends the stream.

use super::http::{streaming_response, wants_table, Body, Query, JSON};
use super::resources::ResourceType;
use super::routes::ResourcePath;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, Store, StoreEvent};
use super::table::{table, IncludeObject};
use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// What one watcher wants to see and how.
struct WatchFilter {
    rt: &'static ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    as_table: Option<IncludeObject>,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        let namespace_ok = match (&self.namespace, self.rt.namespaced) {
            (Some(wanted), true) => object["metadata"]["namespace"].as_str() == Some(wanted),
            _ => true,
        };
        namespace_ok && self.labels.matches(object) && self.fields.matches(object)
    }

    /// The watch event this store change is for this watcher, if any: an object that starts or
    /// stops matching a selector is ADDED or DELETED, as with the real server.
    fn event_for(&self, event: &StoreEvent) -> Option<(&'static str, Value)> {
        if !event.resource.same_resource(self.rt) {
            return None;
        }
        let now = self.matches(&event.object);
        let event_type = match event.event_type {
            EventType::Added | EventType::Deleted if now => event.event_type.as_str(),
            EventType::Modified => {
                let before = event
                    .previous_object
                    .as_ref()
                    .is_some_and(|previous| self.matches(previous));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        let mut object = event.object.clone();
        object["apiVersion"] = json!(self.rt.api_version());
        Some((event_type, object))
    }

    fn line(&self, event_type: &str, object: Value) -> Bytes {
        let object = match self.as_table {
            Some(include) if event_type != "BOOKMARK" && event_type != "ERROR" => {
                table(self.rt, std::slice::from_ref(&object), None, include)
            }
            _ => object,
        };
        let mut line =
            serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata});
        self.line("BOOKMARK", object)
    }
}

pub fn handle(
    store: &Store,
    path: &ResourcePath,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let filter = WatchFilter {
        rt: path.rt,
        namespace: path.namespace.clone(),
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))?,
        as_table: wants_table(headers).then(|| IncludeObject::parse(query.get("includeObject"))),
    };
    let send_initial_events = query.flag("sendInitialEvents");
    let since = match query.number("resourceVersion")? {
        Some(0) | None => None,
        Some(_) if send_initial_events => None,
        Some(version) => Some(version),
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query.number("timeoutSeconds")?.map(Duration::from_secs);
    let start = store.watch_start(path.rt, since);
    let (response, sender) = streaming_response(JSON);
    tokio::spawn(async move {
        let _ = match start {
            Err(error) => sender.send(filter.line("ERROR", error.to_status())).await,
            Ok(start) => {
                let mut lines: Vec<Bytes> = start
                    .current
                    .iter()
                    .filter(|object| filter.matches(object))
                    .map(|object| filter.line("ADDED", object.clone()))
                    .collect();
                lines.extend(
                    start
                        .replay
                        .iter()
                        .filter_map(|event| filter.event_for(event))
                        .map(|(event_type, object)| filter.line(event_type, object)),
                );
                let mut last_seen = start.replay.last().map_or(start.revision, |event| {
                    event.resource_version.max(start.revision)
                });
                if bookmarks || send_initial_events {
                    lines.push(filter.bookmark(last_seen, send_initial_events));
                }
                stream_events(
                    &filter,
                    lines,
                    start.receiver,
                    &sender,
                    &mut last_seen,
                    bookmarks,
                    timeout,
                )
                .await;
                Ok(())
            }
        };
    });
    Ok(response)
}

async fn stream_events(
    filter: &WatchFilter,
    first_lines: Vec<Bytes>,
    mut receiver: broadcast::Receiver<StoreEvent>,
    sender: &mpsc::Sender<Bytes>,
    last_seen: &mut u64,
    bookmarks: bool,
    timeout: Option<Duration>,
) {
    for line in first_lines {
        if sender.send(line).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(365 * 86_400)));
    tokio::pin!(deadline);
    let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmark_timer.tick().await;
    loop {
        let line = tokio::select! {
            _ = &mut deadline => return,
            _ = sender.closed() => return,
            _ = bookmark_timer.tick(), if bookmarks => filter.bookmark(*last_seen, false),
            received = receiver.recv() => match received {
                Ok(event) => {
                    *last_seen = event.resource_version;
                    match filter.event_for(&event) {
                        Some((event_type, object)) => filter.line(event_type, object),
                        None => continue,
                    }
                }
                // Fell behind or the store is gone: end the stream; the client re-watches from
                // the last version it saw, which the history still covers.
                Err(_) => return,
            },
        };
        if sender.send(line).await.is_err() {
            return;
        }
    }
}
