//! Errors as the API server reports them: a metav1 `Status` object with the HTTP code, reason and,
//! for field-manager conflicts, one cause per contested field — clients (kube-rs, kubectl) parse
//! these, so the shape matters as much as the code
//! (`staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`; apply conflicts:
//! `staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go`).

use serde_json::{json, Value};

/// One contested field of a server-side apply, reported as a `FieldManagerConflict` cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The manager that owns the field, e.g. `kasi-lab`.
    pub manager: String,
    /// The field in the API server's notation, e.g. `.spec.replicas`.
    pub field: String,
    /// ` using v1` when the owner applied with another apiVersion, else empty.
    pub version_note: String,
}

impl FieldConflict {
    fn message(&self) -> String {
        format!(
            "conflict with \"{}\"{}: {}",
            self.manager, self.version_note, self.field
        )
    }
}

/// Every way a request can fail, each mapping to the status code and reason the real server uses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    #[error("{}", apply_conflict_message(.0))]
    ApplyConflict(Vec<FieldConflict>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{resource} \"{name}\" is invalid: {message}")]
    Invalid {
        resource: String,
        name: String,
        message: String,
    },
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// A request body in a media type the lab does not decode: the real server's text
    /// (`errUnsupportedMediaType` in
    /// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/negotiation/errors.go`, returned by
    /// `NegotiateInputSerializer`), followed by the media type that was sent.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted} (got {got:?})"
    )]
    UnsupportedMediaType {
        /// The request's Content-Type media type, parameters dropped.
        got: String,
        /// The media types this verb accepts, comma-separated.
        accepted: String,
    },
    /// RBAC said no; the message is the real server's, naming verb, resource and namespace.
    #[error("{}", forbidden_message(.verb, .resource, .namespace.as_deref()))]
    Forbidden {
        verb: String,
        /// `plural`, `plural/subresource`, or either with `.group` after the plural.
        resource: String,
        namespace: Option<String>,
    },
    #[error("{0}")]
    Internal(String),
}

/// The lab's one user, as the kubeconfig it writes names it.
const LAB_USER: &str = "kasi-lab";

fn forbidden_message(verb: &str, resource: &str, namespace: Option<&str>) -> String {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let scope = match namespace {
        Some(namespace) => format!("in the namespace \"{namespace}\""),
        None => "at the cluster scope".to_owned(),
    };
    format!("{plural} is forbidden: User \"{LAB_USER}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}")
}

fn apply_conflict_message(conflicts: &[FieldConflict]) -> String {
    match conflicts {
        [one] => format!("Apply failed with 1 conflict: {}", one.message()),
        many => {
            let lines: Vec<String> = many.iter().map(|c| format!("- {}", c.message())).collect();
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    }
}

impl ApiError {
    /// The HTTP status code the real API server answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict(_) => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Invalid { .. } => 422,
            ApiError::Expired { .. } => 410,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::Forbidden { .. } => 403,
            ApiError::Internal(_) => 500,
        }
    }

    /// The machine-readable `reason` of the Status.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict(_) => "Conflict",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Expired { .. } => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The metav1 `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. }
            | ApiError::Invalid { resource, name, .. } => Some(details_for(resource, name)),
            ApiError::ApplyConflict(conflicts) => Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    "reason": "FieldManagerConflict",
                    "message": c.message(),
                    "field": c.field,
                })).collect::<Vec<_>>()
            })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

/// `details.group/kind/name` as the real server fills them; `resource` is `plural` or
/// `plural.group`.
fn details_for(resource: &str, name: &str) -> Value {
    let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
    let mut details = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    details
}
