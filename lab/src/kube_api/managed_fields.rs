//! Field ownership as the API server tracks it in `metadata.managedFields`, and server-side
//! apply on top of it.
//!
//! A [`FieldSet`] is the tree behind the `FieldsV1` JSON format: keys are path elements (`f:name`
//! for a map field, `k:{"name":"x"}` for an item of a list keyed by its fields, `v:<json>` for an
//! item of a set, `i:N` for an index) and `.` marks a node that is itself a member while also having
//! members below it. Lists of objects that all carry a key (`name`; `containerPort` or `port` with
//! `protocol`) are merged item by item like the built-in types' associative lists; every other list
//! is atomic, as for CRDs without list-type annotations. The API server does this in
//! `staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/structuredmerge.go` (on
//! sigs.k8s.io/structured-merge-diff) and `fields.go` (the `FieldsV1` encoding).

use super::status::{ApiError, FieldConflict};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A set of field paths in `FieldsV1` tree form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn leaf() -> Self {
        Self {
            member: true,
            children: BTreeMap::new(),
        }
    }

    pub fn from_fields_v1(value: &Value) -> Self {
        let mut set = Self::default();
        if let Some(map) = value.as_object() {
            for (element, child) in map {
                if element == "." {
                    set.member = true;
                    continue;
                }
                let mut node = Self::from_fields_v1(child);
                if child.as_object().is_none_or(Map::is_empty) {
                    node.member = true;
                }
                set.children.insert(element.clone(), node);
            }
        }
        set
    }

    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (element, child) in &self.children {
            map.insert(element.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    fn prune(&mut self) {
        self.children.retain(|_, child| {
            child.prune();
            !child.is_empty()
        });
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .union_with(child);
        }
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut result = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(other_child) => child.difference(other_child),
                None => child.clone(),
            };
            if !rest.is_empty() {
                result.children.insert(element.clone(), rest);
            }
        }
        result
    }

    /// Paths of members that have no members below them (the set values themselves).
    fn leaf_paths(&self) -> Vec<Vec<String>> {
        let mut paths = Vec::new();
        self.collect_leaf_paths(&mut Vec::new(), &mut paths);
        paths
    }

    fn collect_leaf_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (element, child) in &self.children {
            prefix.push(element.clone());
            if child.children.is_empty() {
                if child.member {
                    out.push(prefix.clone());
                }
            } else {
                child.collect_leaf_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    fn remove_path(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((head, rest)) => {
                if let Some(child) = self.children.get_mut(head) {
                    child.remove_path(rest);
                }
            }
        }
        self.prune();
    }

    /// Drops members whose field no longer exists in `object`.
    fn retain_existing(&mut self, object: &Value) {
        self.children
            .retain(|element, child| match child_value(object, element) {
                Some(value) => {
                    child.retain_existing(value);
                    !child.is_empty()
                }
                None => false,
            });
    }
}

/// The key fields of an item of list `field_name`, if that list is merged by key.
pub(super) fn item_key(field_name: &str, item: &Value) -> Option<Map<String, Value>> {
    let object = item.as_object()?;
    let protocol = || object.get("protocol").cloned().unwrap_or(json!("TCP"));
    let mut key = Map::new();
    if let Some(port) = object.get("containerPort") {
        key.insert("containerPort".into(), port.clone());
        key.insert("protocol".into(), protocol());
    } else if let (Some(port), "ports") = (object.get("port"), field_name) {
        key.insert("port".into(), port.clone());
        key.insert("protocol".into(), protocol());
    } else if let Some(name) = object.get("name").filter(|n| n.is_string()) {
        key.insert("name".into(), name.clone());
    } else {
        return None;
    }
    Some(key)
}

/// The `k:{…}` elements of every item, or `None` when the list is atomic (some item has no key,
/// or two share one).
pub(super) fn list_item_elements(field_name: &str, items: &[Value]) -> Option<Vec<String>> {
    if items.is_empty() {
        return None;
    }
    let mut elements: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let element = format!("k:{}", Value::Object(item_key(field_name, item)?));
        if elements.contains(&element) {
            return None;
        }
        elements.push(element);
    }
    Some(elements)
}

fn key_matches(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(field, wanted)| match item.get(field) {
        Some(actual) => actual == wanted,
        None => field == "protocol" && wanted == "TCP",
    })
}

pub(super) fn item_index(list: &[Value], element: &str) -> Option<usize> {
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        list.iter().position(|item| key_matches(item, &key))
    } else if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        list.iter().position(|item| *item == value)
    } else if let Some(index) = element.strip_prefix("i:") {
        index.parse::<usize>().ok().filter(|i| *i < list.len())
    } else {
        None
    }
}

/// The value a path element names inside `value`.
fn child_value<'a>(value: &'a Value, element: &str) -> Option<&'a Value> {
    match element.strip_prefix("f:") {
        Some(field) => value.as_object()?.get(field),
        None => {
            let list = value.as_array()?;
            list.get(item_index(list, element)?)
        }
    }
}

fn child_value_mut<'a>(value: &'a mut Value, element: &str) -> Option<&'a mut Value> {
    match element.strip_prefix("f:") {
        Some(field) => value.as_object_mut()?.get_mut(field),
        None => {
            let index = item_index(value.as_array()?, element)?;
            value.as_array_mut()?.get_mut(index)
        }
    }
}

fn remove_child(value: &mut Value, element: &str) {
    match element.strip_prefix("f:") {
        Some(field) => {
            if let Some(map) = value.as_object_mut() {
                map.remove(field);
            }
        }
        None => {
            if let Some(index) = value.as_array().and_then(|list| item_index(list, element)) {
                if let Some(list) = value.as_array_mut() {
                    list.remove(index);
                }
            }
        }
    }
}

fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |current, element| child_value(current, element))
}

/// A path in the notation conflict messages use: `.spec.containers[name="app"].image`.
fn display_path(path: &[String]) -> String {
    let mut text = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            text.push('.');
            text.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            text.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            text.push_str(&format!("[{index}]"));
        }
    }
    text
}

/// Metadata the server owns: never part of anyone's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// The object without the fields no manager can own (apiVersion, kind, identity metadata).
fn ownable_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_METADATA {
                metadata.remove(*field);
            }
            if metadata.is_empty() {
                map.remove("metadata");
            }
        }
    }
    view
}

/// The fields a configuration sets, in Apply form: leaves and list items are members, maps are not.
fn applied_fields(value: &Value, field_name: &str) -> FieldSet {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut set = FieldSet::default();
            for (field, child) in map.iter().filter(|(_, child)| !child.is_null()) {
                set.children
                    .insert(format!("f:{field}"), applied_fields(child, field));
            }
            set
        }
        Value::Array(items) => match list_item_elements(field_name, items) {
            Some(elements) => {
                let mut set = FieldSet::default();
                for (element, item) in elements.into_iter().zip(items) {
                    let mut node = applied_fields(item, "");
                    node.member = true;
                    set.children.insert(element, node);
                }
                set
            }
            None => FieldSet::leaf(),
        },
        _ => FieldSet::leaf(),
    }
}

/// The fields an update changed or added, in Update form (new maps and items are members too).
fn changed_fields(old: Option<&Value>, new: &Value, field_name: &str) -> Option<FieldSet> {
    if old == Some(new) {
        return None;
    }
    let mut set = FieldSet::default();
    match new {
        Value::Object(map) if !map.is_empty() => {
            let old_map = old.and_then(Value::as_object);
            set.member = old_map.is_none();
            for (field, child) in map.iter().filter(|(_, child)| !child.is_null()) {
                let old_child = old_map.and_then(|m| m.get(field));
                if let Some(node) = changed_fields(old_child, child, field) {
                    set.children.insert(format!("f:{field}"), node);
                }
            }
        }
        Value::Array(items) => match list_item_elements(field_name, items) {
            Some(elements) => {
                let old_items = old.and_then(Value::as_array);
                for (element, item) in elements.into_iter().zip(items) {
                    let old_item = old_items
                        .and_then(|list| item_index(list, &element).map(|index| &list[index]));
                    if let Some(mut node) = changed_fields(old_item, item, "") {
                        node.member |= old_item.is_none();
                        set.children.insert(element, node);
                    }
                }
            }
            None => return Some(FieldSet::leaf()),
        },
        _ => return Some(FieldSet::leaf()),
    }
    (!set.is_empty()).then_some(set)
}

/// Removes `removed` from `value`, but keeps whatever `kept` (other managers' fields) still needs.
fn remove_fields(value: &mut Value, removed: &FieldSet, kept: Option<&FieldSet>) {
    for (element, removed_child) in &removed.children {
        let kept_child = kept.and_then(|k| k.children.get(element));
        if removed_child.member && kept_child.is_none_or(FieldSet::is_empty) {
            remove_child(value, element);
        } else if let Some(child) = child_value_mut(value, element) {
            remove_fields(child, removed_child, kept_child);
        }
    }
}

/// Merges an applied configuration into the live object: maps field by field, keyed lists item by
/// item, everything else replaced.
fn merge_applied(live: &mut Value, applied: &Value, field_name: &str) {
    match (live, applied) {
        (Value::Object(live_map), Value::Object(applied_map)) => {
            for (field, child) in applied_map.iter().filter(|(_, child)| !child.is_null()) {
                match live_map.get_mut(field) {
                    Some(live_child) => merge_applied(live_child, child, field),
                    None => {
                        live_map.insert(field.clone(), without_nulls(child));
                    }
                }
            }
        }
        (Value::Array(live_items), Value::Array(applied_items))
            if list_item_elements(field_name, live_items).is_some() =>
        {
            let Some(elements) = list_item_elements(field_name, applied_items) else {
                *live_items = applied_items.clone();
                return;
            };
            for (element, item) in elements.iter().zip(applied_items) {
                match item_index(live_items, element) {
                    Some(index) => merge_applied(&mut live_items[index], item, ""),
                    None => live_items.push(without_nulls(item)),
                }
            }
        }
        (live, applied) => *live = without_nulls(applied),
    }
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct ManagerEntry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl ManagerEntry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(subresource) = &self.subresource {
            entry["subresource"] = json!(subresource);
        }
        entry
    }
}

fn read_entries(object: Option<&Value>) -> Vec<ManagerEntry> {
    let Some(entries) = object
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let text = |entry: &Value, field: &str| {
        entry
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    entries
        .iter()
        .map(|entry| ManagerEntry {
            manager: text(entry, "manager"),
            operation: text(entry, "operation"),
            api_version: text(entry, "apiVersion"),
            time: text(entry, "time"),
            subresource: entry
                .get("subresource")
                .and_then(Value::as_str)
                .map(str::to_string),
            fields: FieldSet::from_fields_v1(entry.get("fieldsV1").unwrap_or(&Value::Null)),
        })
        .collect()
}

fn write_entries(object: &mut Value, mut entries: Vec<ManagerEntry>) {
    let view = ownable_view(object);
    for entry in &mut entries {
        entry.fields.retain_existing(&view);
    }
    entries.retain(|entry| !entry.fields.is_empty());
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            let list = entries.iter().map(ManagerEntry::to_json).collect();
            metadata.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records an Update-operation write by `manager`: it takes ownership of every field it changed.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let mut entries = read_entries(old);
    let changed = changed_fields(old.map(ownable_view).as_ref(), &ownable_view(new), "");
    if let Some(changed) = changed {
        for entry in &mut entries {
            entry.fields = entry.fields.difference(&changed);
        }
        match entries
            .iter_mut()
            .find(|e| e.is(manager, "Update", subresource))
        {
            Some(entry) => {
                entry.fields.union_with(&changed);
                entry.time = now.to_string();
                entry.api_version = api_version.to_string();
            }
            None => entries.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    write_entries(new, entries);
}

/// Server-side apply of `applied` by `manager` onto `live` (absent: create). Returns the new
/// object with its managedFields; equal to `live` when the apply changes nothing.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    let mut entries = read_entries(live);
    let applied_view = ownable_view(applied);
    let live_view = live.map(ownable_view).unwrap_or_else(|| json!({}));
    let new_set = applied_fields(&applied_view, "");
    let mine = |e: &ManagerEntry| e.is(manager, "Apply", None);

    // Fields another manager owns with a different value are conflicts; forcing takes them over.
    let mut conflicts = Vec::new();
    for entry in entries
        .iter_mut()
        .filter(|e| !mine(e) && e.subresource.is_none())
    {
        for path in new_set.leaf_paths() {
            if !entry.fields.contains(&path) {
                continue;
            }
            let (wanted, current) = (value_at(&applied_view, &path), value_at(&live_view, &path));
            if current.is_some() && wanted != current {
                if force {
                    entry.fields.remove_path(&path);
                } else {
                    conflicts.push(FieldConflict {
                        manager: entry.manager.clone(),
                        field: display_path(&path),
                        version_note: if entry.api_version == api_version {
                            String::new()
                        } else {
                            format!(" using {}", entry.api_version)
                        },
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::ApplyConflict(conflicts));
    }

    let mut others = FieldSet::default();
    for entry in entries.iter().filter(|e| !mine(e)) {
        others.union_with(&entry.fields);
    }
    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    // What this manager set last time but no longer sets goes away, unless someone else owns it.
    let dropped = previous.difference(&new_set).difference(&others);

    let mut object = match live {
        Some(live) => live.clone(),
        None => json!({"metadata": {}}),
    };
    remove_fields(&mut object, &dropped, Some(&others));
    merge_applied(&mut object, applied, "");

    let changed = live != Some(&object) || previous != new_set;
    match entries.iter_mut().find(|e| mine(e)) {
        Some(entry) => {
            entry.fields = new_set;
            if changed {
                entry.time = now.to_string();
                entry.api_version = api_version.to_string();
            }
        }
        None => entries.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: None,
            fields: new_set,
        }),
    }
    write_entries(&mut object, entries);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip_and_keys() {
        let pod = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [
            {"name": "app", "image": "i", "ports": [{"containerPort": 80}]}]}});
        let set = applied_fields(&pod, "");
        let v1 = set.to_fields_v1();
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {
                "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}})
        );
        assert_eq!(FieldSet::from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let base = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1", "b": "2"}});
        let first = apply(None, &base, "one", "v1", false, "t").unwrap();
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"a": "9"}});
        let err = apply(Some(&first), &other, "two", "v1", false, "t").unwrap_err();
        assert_eq!(err.code(), 409);
        assert!(
            err.to_string().contains("conflict with \"one\": .data.a"),
            "{err}"
        );
        let forced = apply(Some(&first), &other, "two", "v1", true, "t").unwrap();
        assert_eq!(forced["data"], json!({"a": "9", "b": "2"}));
        // "one" drops b: it goes; a now belongs to "two" and stays.
        let smaller = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {}});
        let after = apply(Some(&forced), &smaller, "one", "v1", false, "t2").unwrap();
        assert_eq!(after["data"], json!({"a": "9"}));
        // Same config twice: nothing changes.
        let again = apply(Some(&after), &smaller, "one", "v1", false, "t3").unwrap();
        assert_eq!(again, after);
    }
}
