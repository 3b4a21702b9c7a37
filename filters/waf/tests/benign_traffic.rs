//! Benign API traffic must pass: every value of `benign.txt` is sent as a
//! query argument, inside a JSON document, in a form body and in a
//! multipart field, beside a set of ordinary API calls. At most 1% may be
//! refused at paranoia 1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_waf::config::Config;
use palisade_waf::inspect::{Action, Waf};
use palisade_waf::request::RequestHead;

const BROWSER_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

struct Sample {
    what: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        ("user-agent".to_string(), BROWSER_UA.to_string()),
        (
            "accept".to_string(),
            "application/json, text/plain, */*".to_string(),
        ),
        (
            "accept-language".to_string(),
            "en-US,en;q=0.9,de;q=0.8".to_string(),
        ),
        (
            "referer".to_string(),
            "https://app.example.com/dashboard?tab=orders&page=2".to_string(),
        ),
        (
            "cookie".to_string(),
            "session=7f3a9c2e1b; theme=dark; consent=analytics%3Dfalse%26ads%3Dfalse".to_string(),
        ),
    ];
    for (k, v) in extra {
        h.push((k.to_string(), v.to_string()));
    }
    h
}

fn samples() -> Vec<Sample> {
    let values: Vec<&str> = include_str!("benign.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let mut out = Vec::new();
    for v in &values {
        out.push(Sample {
            what: format!("query {v:?}"),
            method: "GET",
            path: format!(
                "/api/v1/search?q={}&page=2&per_page=20&sort=-created_at",
                encode(v)
            ),
            headers: headers(&[]),
            body: None,
        });
        let doc = serde_json::json!({
            "subject": "Question about my account",
            "body": v,
            "tags": ["support", "billing"],
            "customer": {"name": "Jane O'Neil", "email": "jane.oneil@example.com", "id": 4821},
            "priority": 2,
        });
        out.push(Sample {
            what: format!("json {v:?}"),
            method: "POST",
            path: "/api/v1/tickets".into(),
            headers: headers(&[
                ("content-type", "application/json"),
                ("origin", "https://api.example.com"),
            ]),
            body: Some(serde_json::to_vec(&doc).unwrap()),
        });
        out.push(Sample {
            what: format!("form {v:?}"),
            method: "POST",
            path: "/comments".into(),
            headers: headers(&[("content-type", "application/x-www-form-urlencoded")]),
            body: Some(format!("post_id=991&author=Sam+Lee&comment={}", encode(v)).into_bytes()),
        });
        out.push(Sample {
            what: format!("multipart {v:?}"),
            method: "POST",
            path: "/upload".into(),
            headers: headers(&[("content-type", "multipart/form-data; boundary=----b0undary")]),
            body: Some(
                format!(
                    "------b0undary\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n{v}\r\n------b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"holiday photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\u{ff}\u{d8}binary\r\n------b0undary--\r\n"
                )
                .into_bytes(),
            ),
        });
    }
    let calls: &[(&'static str, &str, Option<&str>)] = &[
        ("GET", "/", None),
        ("GET", "/api/v1/users/123", None),
        (
            "GET",
            "/api/v1/users/123/orders?status=shipped&from=2024-01-01&to=2024-03-31",
            None,
        ),
        (
            "GET",
            "/api/v1/products?sort=price&order=asc&limit=20&offset=40",
            None,
        ),
        (
            "GET",
            "/api/v1/products?category=shoes&size=42&color=navy%2Fwhite",
            None,
        ),
        ("GET", "/api/v1/search?q=o%27reilly+books&lang=en", None),
        ("GET", "/static/js/app.3f9c2e.js", None),
        ("GET", "/images/products/42/thumb@2x.png", None),
        ("GET", "/api/v1/reports/2024/Q1/summary.csv", None),
        (
            "GET",
            "/oauth/callback?code=4%2F0AY0e-g7&state=xyz123&scope=openid+email+profile",
            None,
        ),
        (
            "GET",
            "/api/v1/files?path=%2Fshared%2Fteam%2Fnotes.txt",
            None,
        ),
        ("GET", "/health", None),
        (
            "GET",
            "/api/v1/geo?lat=37.7749&lng=-122.4194&radius=5km",
            None,
        ),
        (
            "GET",
            "/api/v1/events?filter%5Btype%5D=click&filter%5Bdate%5D%5Bgte%5D=2024-03-01",
            None,
        ),
        ("GET", "/api/v1/items?ids=1,2,3,4&fields=name,price", None),
        (
            "GET",
            "/redirect?next=https%3A%2F%2Fapp.example.com%2Fhome",
            None,
        ),
        (
            "POST",
            "/api/v1/login",
            Some(r#"{"username":"alice","password":"P@ssw0rd!2024#","remember":true}"#),
        ),
        (
            "POST",
            "/api/v1/orders",
            Some(
                r#"{"items":[{"sku":"A-100","qty":2},{"sku":"B-7","qty":1}],"coupon":"SPRING-25","note":"Leave at the door, please."}"#,
            ),
        ),
        (
            "PUT",
            "/api/v1/users/123",
            Some(
                r#"{"name":"Conan O'Brien","bio":"Host, writer & comedian. \"Late Night\" (1993-2009).","website":"https://teamcoco.com"}"#,
            ),
        ),
        (
            "PATCH",
            "/api/v1/settings",
            Some(
                r#"{"notifications":{"email":true,"sms":false},"timezone":"America/New_York","locale":"en-US"}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/graphql",
            Some(
                r#"{"query":"query GetUser($id: ID!) { user(id: $id) { name email orders(first: 10) { total } } }","variables":{"id":"123"}}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/webhooks",
            Some(
                r#"{"url":"https://hooks.example.com/incoming/abc","events":["order.created","order.paid"],"secret":"whsec_8f2a"}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/messages",
            Some(
                r#"{"to":"+14155552671","text":"Your code is 482913. Don't share it with anyone!"}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/search",
            Some(
                r#"{"query":"select the best option from the drop-down","filters":{"price":{"min":10,"max":100}},"sort":[{"field":"rating","order":"desc"}]}"#,
            ),
        ),
        ("DELETE", "/api/v1/sessions/current", None),
        (
            "POST",
            "/api/v1/snippets",
            Some(
                r#"{"language":"python","code":"import json\n\ndef load(path):\n    with open(path) as f:\n        return json.load(f)\n"}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/snippets",
            Some(
                r#"{"language":"javascript","code":"export function sum(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n"}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/feedback",
            Some(
                r#"{"rating":5,"comment":"Great app! I'd recommend it to anyone who's tired of spreadsheets & sticky notes :)"}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/addresses",
            Some(
                r#"{"line1":"221B Baker Street","line2":"Flat #2","city":"London","postcode":"NW1 6XE","country":"GB"}"#,
            ),
        ),
    ];
    for (method, path, body) in calls {
        let mut extra = vec![];
        if body.is_some() {
            extra.push(("content-type", "application/json"));
        }
        out.push(Sample {
            what: format!("{method} {path}"),
            method,
            path: path.to_string(),
            headers: headers(&extra),
            body: body.map(|b| b.as_bytes().to_vec()),
        });
    }
    for (what, body) in [
        (
            "SOAP envelope",
            r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetOrder xmlns="https://api.example.com/orders"><OrderId>4821</OrderId><Note>Don't ship before Monday &amp; call first</Note></GetOrder></soap:Body></soap:Envelope>"#,
        ),
        (
            "XML feed",
            r#"<?xml version="1.0"?><feed><entry id="1" href="https://example.com/a" data="x"><title>O'Brien's "best" picks</title></entry></feed>"#,
        ),
    ] {
        out.push(Sample {
            what: what.into(),
            method: "POST",
            path: "/api/v1/import".into(),
            headers: headers(&[("content-type", "application/xml")]),
            body: Some(body.as_bytes().to_vec()),
        });
    }
    for ua in values.iter().filter(|v| v.contains('/')) {
        out.push(Sample {
            what: format!("user-agent {ua:?}"),
            method: "GET",
            path: "/api/v1/me".into(),
            headers: vec![("user-agent".to_string(), ua.to_string())],
            body: None,
        });
    }
    out
}

#[test]
fn benign_traffic_passes() {
    // The single-page app at app.example.com calls the API at api.example.com.
    let waf = Waf::new(
        Config::from_json(
            br#"{"paranoia_level": 1, "csrf": {"allowed_origins": ["https://app.example.com"]}}"#,
        )
        .unwrap(),
    );
    let samples = samples();
    let mut refused = Vec::new();
    for s in &samples {
        let head = RequestHead {
            method: s.method,
            path: &s.path,
            authority: "api.example.com",
            route_name: "",
            headers: &s.headers,
        };
        let verdict = waf.inspect(&head, s.body.as_deref());
        if matches!(verdict.action, Action::Refuse { .. }) {
            refused.push(format!("{} -> {:?}", s.what, verdict.decision.matches));
        }
    }
    let share = 100.0 * refused.len() as f64 / samples.len() as f64;
    println!(
        "benign: {} requests, {} refused ({share:.2}%)",
        samples.len(),
        refused.len()
    );
    for r in &refused {
        println!("REFUSED {r}");
    }
    assert!(samples.len() > 500, "{}", samples.len());
    assert!(share <= 1.0, "{share:.2}% of benign requests refused");
}
