//! Label and field selectors in the API server's string syntax (`app=x,tier!=db,env in (a,b),
//! !legacy`; `metadata.name=x`), as `staging/src/k8s.io/apimachinery/pkg/labels/selector.go`
//! `Parse` and `staging/src/k8s.io/apimachinery/pkg/fields/selector.go` `ParseSelector` read them.

use super::status::ApiError;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

/// Splits on commas that are not inside a `( … )` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (index, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn invalid(selector: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "unable to parse requirement: invalid label selector {selector:?}: {why}"
    ))
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_top_level(selector) {
            requirements.push(Self::parse_requirement(selector, part.trim())?);
        }
        Ok(Self { requirements })
    }

    fn parse_requirement(selector: &str, part: &str) -> Result<LabelRequirement, ApiError> {
        let key_of = |key: &str| -> Result<String, ApiError> {
            let key = key.trim();
            if valid_key(key) {
                Ok(key.to_string())
            } else {
                Err(invalid(selector, &format!("invalid key {key:?}")))
            }
        };
        if let Some(key) = part.strip_prefix('!') {
            return Ok(LabelRequirement::DoesNotExist(key_of(key)?));
        }
        if let Some(open) = part.find('(') {
            let close = part
                .rfind(')')
                .filter(|close| *close > open)
                .ok_or_else(|| invalid(selector, "unclosed value set"))?;
            let head: Vec<&str> = part[..open].split_whitespace().collect();
            let values: Vec<String> = part[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_string())
                .collect();
            return match head.as_slice() {
                [key, "in"] => Ok(LabelRequirement::In(key_of(key)?, values)),
                [key, "notin"] => Ok(LabelRequirement::NotIn(key_of(key)?, values)),
                _ => Err(invalid(
                    selector,
                    "expected `key in (…)` or `key notin (…)`",
                )),
            };
        }
        if let Some((key, value)) = part.split_once("!=") {
            return Ok(LabelRequirement::NotEquals(
                key_of(key)?,
                value.trim().to_string(),
            ));
        }
        if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            return Ok(LabelRequirement::Equals(
                key_of(key)?,
                value.trim().to_string(),
            ));
        }
        Ok(LabelRequirement::Exists(key_of(part)?))
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
                LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
                LabelRequirement::In(key, values) => {
                    label(key).is_some_and(|v| values.iter().any(|x| x == v))
                }
                LabelRequirement::NotIn(key, values) => {
                    label(key).is_none_or(|v| !values.iter().any(|x| x == v))
                }
                LabelRequirement::Exists(key) => label(key).is_some(),
                LabelRequirement::DoesNotExist(key) => label(key).is_none(),
            })
    }
}

/// A parsed field selector. Any dotted path is accepted (`metadata.name`, `status.phase`,
/// `involvedObject.uid`); a missing field compares as the empty string, as in the real server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((path, value)) = part.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                (path, true, value)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector {selector:?}: {part:?} is not of the form field=value"
                )));
            };
            requirements.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(path, equal, value)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let pod = json!({"metadata": {"labels": {"app": "x", "tier": "web"}}});
        let yes = [
            "app=x",
            "app==x",
            "app!=y",
            "app in (x, y)",
            "app notin (y)",
            "tier",
            "!legacy",
            "app=x,tier in (web),!legacy",
            "",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&pod), "{s}");
        }
        for s in [
            "app=y",
            "app!=x",
            "app in (y)",
            "legacy",
            "!app",
            "app notin (x,z)",
        ] {
            assert!(!LabelSelector::parse(s).unwrap().matches(&pod), "{s}");
        }
        assert!(LabelSelector::parse("app in (x").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selector_paths() {
        let pod =
            json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("metadata.name=p,metadata.namespace!=x,status.phase==Running")
            .unwrap();
        assert!(s.matches(&pod));
        assert!(!FieldSelector::parse("spec.nodeName=n")
            .unwrap()
            .matches(&pod));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
