//! The object store behind the lab API: every object as JSON (like `unstructured`), one global
//! resourceVersion counter, a bounded history of changes for watches to resume from, and a
//! broadcast of every change for watchers and the lab's in-process controllers.

use super::crds::crd_object;
use super::managed_fields;
use super::patch::{apply_patch, PatchKind};
use super::resources::{find_by_kind, ResourceType, ISTIO_CRD_NAMES};
use super::selector::{FieldSelector, LabelSelector};
pub use super::status::ApiError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// The field manager of writes the lab itself makes through [`Store::put`].
pub const LAB_FIELD_MANAGER: &str = "kasi-lab";
/// How many past changes a watch can resume from, unless configured otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;
const BROADCAST_CAPACITY: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The watch event `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub event_type: EventType,
    /// The type (at the version it was written with) of the changed object.
    pub resource: &'static ResourceType,
    /// The object after the change (for `Deleted`: its last state, with the deletion's version).
    pub object: Value,
    pub resource_version: u64,
    /// The object before a `Modified` change, so label-filtered watches see objects enter and leave.
    pub previous_object: Option<Value>,
}

/// (group, plural): one storage for all served versions of a resource.
type ResourceKey = (&'static str, &'static str);
/// (namespace or "", name)
type ObjectKey = (String, String);

struct State {
    objects: BTreeMap<ResourceKey, BTreeMap<ObjectKey, Value>>,
    revision: u64,
    history: VecDeque<StoreEvent>,
    history_limit: usize,
    /// The newest revision no longer in `history`: watches from before it get 410 Expired.
    compacted_through: u64,
}

struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
}

/// The lab's object store; cheap to clone, safe to use from sync and async code.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// Where a watch starts: the objects or changes it must send first, and the live feed after them.
pub(crate) struct WatchStart {
    /// Current objects of the resource (when the watch starts "now").
    pub current: Vec<Value>,
    /// Changes after the requested resourceVersion (when resuming).
    pub replay: Vec<StoreEvent>,
    pub receiver: broadcast::Receiver<StoreEvent>,
    pub revision: u64,
}

/// What a write request asks for, besides the object itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOptions<'a> {
    pub field_manager: &'a str,
    pub subresource: Option<&'a str>,
    pub dry_run: bool,
}

fn resource_key(rt: &ResourceType) -> ResourceKey {
    (rt.group, rt.plural)
}

fn object_key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectKey {
    let namespace = if rt.namespaced {
        namespace.unwrap_or("")
    } else {
        ""
    };
    (namespace.to_string(), name.to_string())
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn new_uid() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    // Shaped like a v4 UUID, which is what clients expect to see.
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// The object as served at `rt`'s version (storage is shared across versions).
fn present(rt: &ResourceType, object: &Value) -> Value {
    let mut object = object.clone();
    object["apiVersion"] = json!(rt.api_version());
    object
}

/// Everything but metadata and status: what bumps `metadata.generation` when it changes.
fn spec_part(object: &Value) -> Value {
    let mut part = object.clone();
    if let Some(map) = part.as_object_mut() {
        for field in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(field);
        }
    }
    part
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store with the namespaces every cluster has, without Istio's CRDs.
    pub fn new() -> Self {
        Self::with_history_limit(DEFAULT_HISTORY_LIMIT)
    }

    /// Like [`Store::new`], keeping only `limit` past changes for watches to resume from.
    pub fn with_history_limit(limit: usize) -> Self {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let store = Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    objects: BTreeMap::new(),
                    revision: 0,
                    history: VecDeque::new(),
                    history_limit: limit.max(1),
                    compacted_through: 0,
                }),
                events,
            }),
        };
        for namespace in ["default", "kube-system", "kube-public"] {
            let object = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace}, "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}});
            // Cannot fail: a well-formed built-in object into an empty store.
            let _ = store.put(object);
        }
        store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written (writes are single
        // inserts), so a poisoned lock is still consistent.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `rt` is served: built-in types always, CRD types while their CRD exists.
    pub fn is_served(&self, rt: &ResourceType) -> bool {
        match rt.crd_name {
            None => true,
            Some(crd) => self
                .state()
                .objects
                .get(&("apiextensions.k8s.io", "customresourcedefinitions"))
                .is_some_and(|crds| crds.contains_key(&(String::new(), crd.to_string()))),
        }
    }

    /// Creates the named CRDs (e.g. `sidecars.networking.istio.io`), making their kinds served.
    pub fn register_crds(&self, crd_names: &[&str]) -> Result<(), ApiError> {
        for name in crd_names {
            let crd = crd_object(name)
                .ok_or_else(|| ApiError::BadRequest(format!("the lab knows no CRD {name:?}")))?;
            self.put(crd)?;
        }
        Ok(())
    }

    /// Creates Istio's Sidecar, EnvoyFilter and WasmPlugin CRDs, as installing Istio does.
    pub fn register_istio_crds(&self) -> Result<(), ApiError> {
        self.register_crds(ISTIO_CRD_NAMES)
    }

    /// A receiver of every later change.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.shared.events.subscribe()
    }

    /// The current resourceVersion of the whole store.
    pub fn revision(&self) -> u64 {
        self.state().revision
    }

    /// Creates or replaces an object as the lab itself (manager `kasi-lab`, operation Update),
    /// status included.
    pub fn put(&self, object: Value) -> Result<Value, ApiError> {
        let api_version = text(&object, "/apiVersion").unwrap_or_default();
        let kind = text(&object, "/kind").unwrap_or_default();
        let rt = find_by_kind(api_version, kind).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no kind {kind:?} is registered for version {api_version:?}"
            ))
        })?;
        let name = text(&object, "/metadata/name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::BadRequest("metadata.name is required".into()))?
            .to_string();
        let namespace = text(&object, "/metadata/namespace").map(str::to_string);
        if rt.namespaced && namespace.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::BadRequest(format!(
                "{} {name:?}: metadata.namespace is required for a namespaced kind",
                rt.kind
            )));
        }
        self.write(rt, namespace.as_deref(), &name, false, false, |old| {
            let mut new = object;
            managed_fields::record_update(
                old,
                &mut new,
                LAB_FIELD_MANAGER,
                &rt.api_version(),
                None,
                &now_rfc3339(),
            );
            Ok(new)
        })
    }

    /// Changes an existing object under the store's lock, as a controller's update does when it
    /// holds the latest resourceVersion: nobody's write can fall between the read and the write
    /// (a controller writing Deployment status must never put back a spec it read before an apply).
    pub fn edit(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        change: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.write(rt, namespace, name, false, false, |old| {
            let old = old.ok_or_else(|| ApiError::NotFound {
                resource: rt.plural.into(),
                name: name.to_owned(),
            })?;
            let mut new = old.clone();
            change(&mut new);
            managed_fields::record_update(
                Some(old),
                &mut new,
                LAB_FIELD_MANAGER,
                &rt.api_version(),
                subresource,
                &now_rfc3339(),
            );
            Ok(new)
        })
    }

    pub fn get(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Option<Value> {
        let state = self.state();
        let object = state
            .objects
            .get(&resource_key(rt))?
            .get(&object_key(rt, namespace, name))?;
        Some(present(rt, object))
    }

    /// Objects of `rt` in `namespace` (all namespaces when `None`) matching `label_selector`,
    /// sorted by namespace and name, with the store's resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let labels = LabelSelector::parse(label_selector.unwrap_or(""))?;
        self.list_matching(rt, namespace, &labels, &FieldSelector::default())
    }

    /// Like [`Store::list_matching`], one page: up to `limit` objects (0: all) after the
    /// `(namespace, name)` key `after`, and how many more match after them. Only the page is
    /// copied out, so paging through a big list costs what the list costs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn list_page(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<Value>, usize, u64) {
        use std::ops::Bound;
        let state = self.state();
        let start = match after {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Unbounded,
        };
        let mut matching = state
            .objects
            .get(&resource_key(rt))
            .into_iter()
            .flat_map(|objects| objects.range((start.clone(), Bound::Unbounded)))
            .filter(|((ns, _), _)| !rt.namespaced || namespace.is_none_or(|want| want == ns))
            .map(|(_, object)| object)
            .filter(|object| labels.matches(object) && fields.matches(object));
        let take = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<Value> = matching
            .by_ref()
            .take(take)
            .map(|object| present(rt, object))
            .collect();
        (items, matching.count(), state.revision)
    }

    pub(crate) fn list_matching(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let state = self.state();
        let items = state
            .objects
            .get(&resource_key(rt))
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(|((ns, _), _)| !rt.namespaced || namespace.is_none_or(|want| want == ns))
            .map(|(_, object)| object)
            .filter(|object| labels.matches(object) && fields.matches(object))
            .map(|object| present(rt, object))
            .collect();
        Ok((items, state.revision))
    }

    pub fn delete(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.state();
        let deleted = self.delete_locked(&mut state, rt, namespace, name)?;
        // Deleting a namespace deletes what is in it (without the real server's grace period).
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let contained: Vec<(ResourceKey, ObjectKey)> = state
                .objects
                .iter()
                .flat_map(|(rk, objects)| objects.keys().map(move |ok| (*rk, ok.clone())))
                .filter(|(_, (ns, _))| ns == name)
                .collect();
            for ((group, plural), (ns, object_name)) in contained {
                if let Some(inner) = super::resources::find_by_plural(group, plural) {
                    let _ = self.delete_locked(&mut state, inner, Some(&ns), &object_name);
                }
            }
        }
        Ok(present(rt, &deleted))
    }

    fn delete_locked(
        &self,
        state: &mut State,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let not_found = || ApiError::NotFound {
            resource: rt.qualified_plural(),
            name: name.to_string(),
        };
        let mut object = state
            .objects
            .get_mut(&resource_key(rt))
            .and_then(|objects| objects.remove(&object_key(rt, namespace, name)))
            .ok_or_else(not_found)?;
        state.revision += 1;
        let revision = state.revision;
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        let stored_rt = stored_type(rt, &object);
        self.record(
            state,
            StoreEvent {
                event_type: EventType::Deleted,
                resource: stored_rt,
                object: object.clone(),
                resource_version: revision,
                previous_object: None,
            },
        );
        Ok(object)
    }

    /// Server-side apply of `patch` (a full or partial configuration) by `field_manager`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
        field_manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut applied = patch;
        check_body(rt, namespace, name, &mut applied)?;
        let wanted_version = text(&applied, "/metadata/resourceVersion").map(str::to_string);
        strip_server_set_metadata(&mut applied);
        // The main resource of a type with a status subresource ignores status.
        let keeps_status = rt.has_subresource("status");
        if keeps_status {
            if let Some(map) = applied.as_object_mut() {
                map.remove("status");
            }
        }
        self.write(rt, namespace, name, dry_run, true, |old| {
            check_resource_version(rt, name, old, wanted_version.as_deref())?;
            let mut new = managed_fields::apply(
                old,
                &applied,
                field_manager,
                &rt.api_version(),
                force,
                &now_rfc3339(),
            )?;
            if keeps_status {
                restore_status(old, &mut new);
            }
            Ok(new)
        })
    }

    /// POST: creates an object; 409 AlreadyExists when the name is taken.
    pub(crate) fn create(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        let name = match text(&object, "/metadata/name").filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => match text(&object, "/metadata/generateName") {
                Some(prefix) => format!("{prefix}{}", random_suffix()),
                None => {
                    return Err(ApiError::Invalid {
                        resource: rt.qualified_plural(),
                        name: String::new(),
                        message: "metadata.name: Required value: name or generateName is required"
                            .into(),
                    })
                }
            },
        };
        check_body(rt, namespace, &name, &mut object)?;
        strip_server_set_metadata(&mut object);
        self.write(rt, namespace, &name, options.dry_run, true, |old| {
            if old.is_some() {
                return Err(ApiError::AlreadyExists {
                    resource: rt.qualified_plural(),
                    name: name.clone(),
                });
            }
            let mut new = object;
            managed_fields::record_update(
                None,
                &mut new,
                options.field_manager,
                &rt.api_version(),
                None,
                &now_rfc3339(),
            );
            Ok(new)
        })
    }

    /// PUT: replaces an existing object (or its status), checking the resourceVersion it names.
    pub(crate) fn update(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_body(rt, namespace, name, &mut object)?;
        let wanted_version = text(&object, "/metadata/resourceVersion").map(str::to_string);
        self.write(rt, namespace, name, options.dry_run, false, |old| {
            let old = old.ok_or_else(|| ApiError::NotFound {
                resource: rt.qualified_plural(),
                name: name.to_string(),
            })?;
            check_resource_version(rt, name, Some(old), wanted_version.as_deref())?;
            let new = merge_subresource(rt, old, object, options.subresource);
            Ok(finish_update(rt, old, new, options))
        })
    }

    /// PATCH with a merge, strategic-merge or JSON patch body.
    pub(crate) fn patch(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.write(rt, namespace, name, options.dry_run, false, |old| {
            let old = old.ok_or_else(|| ApiError::NotFound {
                resource: rt.qualified_plural(),
                name: name.to_string(),
            })?;
            let mut patched = present(rt, old);
            apply_patch(kind, &mut patched, body)?;
            if text(&patched, "/metadata/name") != Some(name) {
                return Err(ApiError::BadRequest(
                    "the patch must not change metadata.name".into(),
                ));
            }
            let wanted = text(&patched, "/metadata/resourceVersion").map(str::to_string);
            check_resource_version(rt, name, Some(old), wanted.as_deref())?;
            let new = merge_subresource(rt, old, patched, options.subresource);
            Ok(finish_update(rt, old, new, options))
        })
    }

    /// The objects of `rt` now (or the changes after `since`) and a receiver of later changes.
    pub(crate) fn watch_start(
        &self,
        rt: &ResourceType,
        since: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let state = self.state();
        // Subscribing under the lock: every change after this snapshot reaches the receiver.
        let receiver = self.shared.events.subscribe();
        let mut start = WatchStart {
            current: Vec::new(),
            replay: Vec::new(),
            receiver,
            revision: state.revision,
        };
        match since {
            None => {
                start.current = state
                    .objects
                    .get(&resource_key(rt))
                    .into_iter()
                    .flat_map(|objects| objects.values())
                    .map(|object| present(rt, object))
                    .collect();
            }
            Some(since) if since < state.compacted_through => {
                return Err(ApiError::Expired {
                    requested: since,
                    oldest: state.compacted_through,
                })
            }
            Some(since) => {
                start.replay = state
                    .history
                    .iter()
                    .filter(|event| {
                        event.resource_version > since && event.resource.same_resource(rt)
                    })
                    .cloned()
                    .collect();
            }
        }
        Ok(start)
    }

    /// The one place objects change: computes the new object from the old under the lock, fills
    /// the server-owned metadata, and (unless a dry run or a no-op) stores it and records the event.
    fn write(
        &self,
        rt: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
        require_namespace: bool,
        compute: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut state = self.state();
        let key = object_key(rt, namespace, name);
        let old = state
            .objects
            .get(&resource_key(rt))
            .and_then(|objects| objects.get(&key))
            .cloned();
        if old.is_none() && require_namespace && rt.namespaced {
            let namespace = namespace.unwrap_or_default();
            let exists = state
                .objects
                .get(&("", "namespaces"))
                .is_some_and(|ns| ns.contains_key(&(String::new(), namespace.to_string())));
            if !exists {
                return Err(ApiError::NotFound {
                    resource: "namespaces".into(),
                    name: namespace.to_string(),
                });
            }
        }
        let mut new = compute(old.as_ref())?;
        fill_server_metadata(rt, old.as_ref(), &mut new, namespace, name);
        if old.as_ref() == Some(&new) {
            return Ok(present(rt, &new));
        }
        let revision = state.revision + 1;
        new["metadata"]["resourceVersion"] = json!(revision.to_string());
        if dry_run {
            return Ok(new);
        }
        state.revision = revision;
        state
            .objects
            .entry(resource_key(rt))
            .or_default()
            .insert(key, new.clone());
        let event_type = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(
            &mut state,
            StoreEvent {
                event_type,
                resource: rt,
                object: new.clone(),
                resource_version: revision,
                previous_object: old,
            },
        );
        Ok(new)
    }

    fn record(&self, state: &mut State, event: StoreEvent) {
        state.history.push_back(event.clone());
        while state.history.len() > state.history_limit {
            if let Some(dropped) = state.history.pop_front() {
                state.compacted_through = dropped.resource_version;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.shared.events.send(event);
    }
}

/// The type at the version an object was stored with (for events), falling back to `rt`.
fn stored_type(rt: &'static ResourceType, object: &Value) -> &'static ResourceType {
    let api_version = text(object, "/apiVersion").unwrap_or_default();
    find_by_kind(api_version, rt.kind).unwrap_or(rt)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Checks a request body against the URL (kind, apiVersion, name, namespace), as the real server.
fn check_body(
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    body: &mut Value,
) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    let api_version = text(body, "/apiVersion").unwrap_or_default();
    let kind = text(body, "/kind").unwrap_or_default();
    if (!api_version.is_empty()
        && api_version != rt.api_version()
        && find_by_kind(api_version, rt.kind).is_none_or(|other| !other.same_resource(rt)))
        || (!kind.is_empty() && kind != rt.kind)
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    match text(body, "/metadata/name") {
        Some(body_name) if body_name != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    if rt.namespaced {
        match (text(body, "/metadata/namespace"), namespace) {
            (Some(body_ns), Some(url_ns)) if !body_ns.is_empty() && body_ns != url_ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                ))
            }
            (_, None) => {
                return Err(ApiError::BadRequest(format!(
                    "{} is namespaced: the request must name a namespace",
                    rt.kind
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_resource_version(
    rt: &ResourceType,
    name: &str,
    old: Option<&Value>,
    wanted: Option<&str>,
) -> Result<(), ApiError> {
    let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
        return Ok(());
    };
    let current = old.and_then(|o| text(o, "/metadata/resourceVersion"));
    if current != Some(wanted) {
        return Err(ApiError::Conflict {
            resource: rt.qualified_plural(),
            name: name.to_string(),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        });
    }
    Ok(())
}

fn restore_status(old: Option<&Value>, new: &mut Value) {
    let Some(map) = new.as_object_mut() else {
        return;
    };
    match old.and_then(|o| o.get("status")) {
        Some(status) => {
            map.insert("status".into(), status.clone());
        }
        None => {
            map.remove("status");
        }
    }
}

/// A write to `status` changes only status; a write to the main resource of a type with a status
/// subresource changes everything but status.
fn merge_subresource(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    subresource: Option<&str>,
) -> Value {
    match subresource {
        Some("status") => {
            let mut merged = old.clone();
            match new.get("status") {
                Some(status) => merged["status"] = status.clone(),
                None => {
                    if let Some(map) = merged.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            merged
        }
        _ => {
            if rt.has_subresource("status") {
                restore_status(Some(old), &mut new);
            }
            new
        }
    }
}

fn finish_update(rt: &ResourceType, old: &Value, mut new: Value, options: &WriteOptions) -> Value {
    managed_fields::record_update(
        Some(old),
        &mut new,
        options.field_manager,
        &rt.api_version(),
        options.subresource,
        &now_rfc3339(),
    );
    new
}

/// Sets what the server owns: identity, uid, creation time, generation (the resourceVersion is
/// set once the write is known to change something).
fn fill_server_metadata(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    namespace: Option<&str>,
    name: &str,
) {
    new["apiVersion"] = json!(rt.api_version());
    new["kind"] = json!(rt.kind);
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = json!({});
    }
    let old_meta = |field: &str| {
        old.and_then(|o| o.pointer(&format!("/metadata/{field}")))
            .cloned()
    };
    let generation = match old {
        None => 1,
        Some(old) => {
            let previous = old_meta("generation").and_then(|g| g.as_i64()).unwrap_or(1);
            if spec_part(old) == spec_part(new) {
                previous
            } else {
                previous + 1
            }
        }
    };
    let metadata = &mut new["metadata"];
    metadata["name"] = json!(name);
    match (rt.namespaced, metadata.as_object_mut()) {
        (true, Some(_)) => metadata["namespace"] = json!(namespace.unwrap_or_default()),
        (false, Some(map)) => {
            map.remove("namespace");
        }
        _ => {}
    }
    metadata["uid"] = old_meta("uid").unwrap_or_else(|| json!(new_uid()));
    metadata["creationTimestamp"] =
        old_meta("creationTimestamp").unwrap_or_else(|| json!(now_rfc3339()));
    metadata["generation"] = json!(generation);
    metadata["resourceVersion"] = old_meta("resourceVersion").unwrap_or(json!(""));
}

/// Drops the metadata the server sets itself (a client's value for them is ignored).
fn strip_server_set_metadata(object: &mut Value) {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            metadata.remove(field);
        }
    }
}
