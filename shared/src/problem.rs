//! RFC 9457 problem details for the local replies filters send.

use serde::Serialize;

/// The content type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem body: `{"type", "title", "status", "detail", "request_id"}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request. Never contains a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Envoy's `x-request-id`, so a user can quote it to the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem for `status` with the given title.
    pub fn new(status: u16, title: impl Into<String>) -> Self {
        Problem {
            type_uri: "about:blank".into(),
            title: title.into(),
            status,
            detail: None,
            request_id: None,
        }
    }

    /// Sets `type`.
    pub fn with_type(mut self, type_uri: impl Into<String>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// Sets `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets `request_id` when there is one.
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id.filter(|id| !id.is_empty());
        self
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and integers cannot fail; fall back to a
        // minimal body rather than panic if it ever did.
        serde_json::to_vec(self)
            .unwrap_or_else(|_| format!("{{\"status\":{}}}", self.status).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc_9457_members() {
        let p = Problem::new(429, "Too Many Requests")
            .with_detail("bucket `api` is empty")
            .with_request_id(Some("abc".into()));
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Too Many Requests");
        assert_eq!(v["status"], 429);
        assert_eq!(v["detail"], "bucket `api` is empty");
        assert_eq!(v["request_id"], "abc");
    }

    #[test]
    fn empty_request_id_is_left_out() {
        let p = Problem::new(403, "Forbidden").with_request_id(Some(String::new()));
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert!(v.get("request_id").is_none());
        assert!(v.get("detail").is_none());
    }
}
