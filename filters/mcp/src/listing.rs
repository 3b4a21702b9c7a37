//! Filtered listings: the answers to `tools/list`, `resources/list` and
//! `prompts/list` are rewritten so a caller sees only what it may use.
//! The answer comes as one JSON message (or a batch of them) or as
//! server-sent events, the listing in one event's data among others
//! (progress notifications, server requests) that pass as they are.

use serde_json::Value;

use crate::json;
use crate::sse::{Event, Splitter};

/// What a listing lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
}

impl ListKind {
    /// The listing a method asks for.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "resources/list" => Some(ListKind::Resources),
            "prompts/list" => Some(ListKind::Prompts),
            _ => None,
        }
    }

    fn field(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Tools => ("tools", "name"),
            ListKind::Resources => ("resources", "uri"),
            ListKind::Prompts => ("prompts", "name"),
        }
    }
}

/// The listing requests of one POST, by id.
pub type Pending = [(Value, ListKind)];

/// Whether an item may be shown: its kind and its name or URI.
pub type Keep<'a> = &'a dyn Fn(ListKind, &str) -> bool;

/// Filters the listing in one message, if it answers a pending request.
/// Returns whether anything was removed.
fn filter_message(message: &mut Value, pending: &Pending, keep: Keep<'_>) -> bool {
    let Some(object) = message.as_object_mut() else {
        return false;
    };
    let Some(kind) = object
        .get("id")
        .and_then(|id| pending.iter().find(|(p, _)| p == id))
        .map(|(_, k)| *k)
    else {
        return false;
    };
    let (field, key) = kind.field();
    let Some(Value::Array(items)) = object
        .get_mut("result")
        .and_then(|r| r.as_object_mut())
        .and_then(|r| r.get_mut(field))
    else {
        return false;
    };
    let before = items.len();
    // An item without a name cannot be checked: it is not shown.
    items.retain(|item| {
        item.get(key)
            .and_then(Value::as_str)
            .is_some_and(|n| keep(kind, n))
    });
    items.len() != before
}

fn filter_value(value: &mut Value, pending: &Pending, keep: Keep<'_>) -> bool {
    match value {
        Value::Array(messages) => messages.iter_mut().fold(false, |changed, m| {
            filter_message(m, pending, keep) | changed
        }),
        message => filter_message(message, pending, keep),
    }
}

/// Rewrites a JSON answer; `None` when it stays as it is (nothing removed,
/// or not JSON: the client will make of it what it can).
pub fn rewrite_json(body: &[u8], pending: &Pending, keep: Keep<'_>) -> Option<Vec<u8>> {
    let mut value = json::parse_strict(body).ok()?;
    filter_value(&mut value, pending, keep)
        .then(|| serde_json::to_vec(&value).ok())
        .flatten()
}

fn rewrite_event(event: &Event, pending: &Pending, keep: Keep<'_>) -> Option<Vec<u8>> {
    let data = event.data()?;
    let mut value = json::parse_strict(data.as_bytes()).ok()?;
    if !filter_value(&mut value, pending, keep) {
        return None;
    }
    let json = serde_json::to_string(&value).ok()?;
    Some(event.with_data(&json))
}

/// Rewrites a server-sent-events answer; `None` when no event changed.
/// Events that do not carry a pending listing are kept byte for byte.
pub fn rewrite_sse(body: &[u8], pending: &Pending, keep: Keep<'_>) -> Option<Vec<u8>> {
    let mut splitter = Splitter::default();
    let mut events = splitter.push(body);
    events.extend(splitter.finish());
    let mut out = Vec::with_capacity(body.len());
    let mut changed = false;
    for event in &events {
        match rewrite_event(event, pending, keep) {
            Some(bytes) => {
                out.extend_from_slice(&bytes);
                changed = true;
            }
            None => out.extend_from_slice(&event.raw),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keep(kind: ListKind, name: &str) -> bool {
        match kind {
            ListKind::Tools => !name.starts_with("admin_"),
            ListKind::Resources => name.starts_with("file:///docs/"),
            ListKind::Prompts => name == "summarize",
        }
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"search","inputSchema":{}},{"name":"admin_drop"},{"title":"nameless"}],"nextCursor":"c"}}"#;

    #[test]
    fn json_listings_are_filtered() {
        let pending = [(json!(3), ListKind::Tools)];
        let out = rewrite_json(TOOLS.as_bytes(), &pending, &keep).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["result"]["tools"],
            json!([{"name":"search","inputSchema":{}}])
        );
        assert_eq!(
            v["result"]["nextCursor"], "c",
            "the rest of the answer is kept"
        );
        assert_eq!(v["id"], 3);
        // Another id, or a string id "3": not the listing asked for.
        assert_eq!(
            rewrite_json(TOOLS.as_bytes(), &[(json!("3"), ListKind::Tools)], &keep),
            None
        );
        assert_eq!(
            rewrite_json(TOOLS.as_bytes(), &[(json!(4), ListKind::Tools)], &keep),
            None
        );
        // Nothing to remove: unchanged.
        let fine = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"search"}]}}"#;
        assert_eq!(rewrite_json(fine.as_bytes(), &pending, &keep), None);
        // An error answer has no listing.
        let err = r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}"#;
        assert_eq!(rewrite_json(err.as_bytes(), &pending, &keep), None);
    }

    #[test]
    fn every_listing_kind_and_batches() {
        let body = json!([
            {"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///docs/a"},{"uri":"file:///etc/passwd"}]}},
            {"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"summarize"},{"name":"leak"}]}},
            {"jsonrpc":"2.0","id":9,"result":{"prompts":[{"name":"leak"}]}}
        ]);
        let pending = [
            (json!(1), ListKind::Resources),
            (json!(2), ListKind::Prompts),
        ];
        let out = rewrite_json(body.to_string().as_bytes(), &pending, &keep).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v[0]["result"]["resources"],
            json!([{"uri":"file:///docs/a"}])
        );
        assert_eq!(v[1]["result"]["prompts"], json!([{"name":"summarize"}]));
        assert_eq!(
            v[2]["result"]["prompts"],
            json!([{"name":"leak"}]),
            "not asked for"
        );
    }

    #[test]
    fn sse_listings_are_filtered_and_other_events_kept() {
        let body = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\r\n\r\nevent: message\r\nid: e1\r\ndata: {TOOLS}\r\n\r\n"
        );
        let pending = [(json!(3), ListKind::Tools)];
        let out = rewrite_sse(body.as_bytes(), &pending, &keep).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (first, second) = text.split_at(text.find("event: message\nid: e1").unwrap());
        assert!(
            body.starts_with(first),
            "the notification passes byte for byte"
        );
        let data = second
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            v["result"]["tools"],
            json!([{"name":"search","inputSchema":{}}])
        );
        assert!(second.ends_with("\n\n"));
        // The same body cut anywhere by the network reads the same.
        let mut s = Splitter::default();
        let mut n = 0;
        for b in body.as_bytes().chunks(1) {
            n += s.push(b).len();
        }
        assert_eq!(n, 2);
        assert_eq!(rewrite_sse(b"data: not json\n\n", &pending, &keep), None);
    }
}
