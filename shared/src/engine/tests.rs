//! The engine's scenarios against the fake host: stages in order, a
//! refusal mid-chain, body holding, waiting and waking, deadlines, and
//! decisions handed on in memory.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::contract::{self, Identity};

use super::fake::FakeHost;
use super::*;

/// A stage that answers from a script and writes down what it saw.
struct Scripted {
    name: &'static str,
    headers: Step,
    resume: Step,
    body: BodyStep,
    needs: Needs,
    trace: Rc<RefCell<Vec<String>>>,
    /// What `on_tick` and call responses answer.
    wake: Wake,
}

impl Scripted {
    fn new(name: &'static str, trace: &Rc<RefCell<Vec<String>>>) -> Self {
        Scripted {
            name,
            headers: Step::Continue,
            resume: Step::Continue,
            body: BodyStep::Continue,
            needs: Needs {
                request_headers: vec![":path".into()],
                ..Needs::default()
            },
            trace: trace.clone(),
            wake: Wake::No,
        }
    }

    fn headers(mut self, step: Step) -> Self {
        self.headers = step;
        self
    }

    fn resume(mut self, step: Step) -> Self {
        self.resume = step;
        self
    }

    fn body(mut self, step: BodyStep) -> Self {
        self.body = step;
        self
    }

    fn needs(mut self, f: impl FnOnce(&mut Needs)) -> Self {
        f(&mut self.needs);
        self
    }

    fn wake(mut self, wake: Wake) -> Self {
        self.wake = wake;
        self
    }

    fn note(&self, what: String) {
        self.trace
            .borrow_mut()
            .push(format!("{}:{what}", self.name));
    }
}

impl Stage for Scripted {
    type Request = ();

    fn needs(&self) -> Needs {
        self.needs.clone()
    }

    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        self.note(format!("headers {}", cx.request.path()));
        self.headers.clone()
    }

    fn on_resume(&self, _: &mut (), _: &mut Exchange<'_>, timed_out: bool) -> Step {
        self.note(format!("resume timed_out={timed_out}"));
        self.resume.clone()
    }

    fn on_request_body(&self, _: &mut (), _: &mut Exchange<'_>, body: &[u8]) -> BodyStep {
        self.note(format!("body {}", String::from_utf8_lossy(body)));
        self.body.clone()
    }

    fn on_response_headers(&self, _: &mut (), _: &mut Exchange<'_>) -> ResponseStep {
        self.note("response".into());
        ResponseStep::Continue
    }

    fn on_log(&self, _: &mut (), cx: &mut Exchange<'_>) {
        let denial = cx.decisions.denial(cx.host).map(|d| d.filter.clone());
        self.note(format!("log denial={denial:?}"));
    }

    fn on_tick(&self, _: &dyn Host) -> Wake {
        self.note("tick".into());
        self.wake
    }

    fn on_root_call_response(&self, token: u32, _: &CallResponse, _: &dyn Host) -> Option<Wake> {
        (token == 7).then(|| {
            self.note("call".into());
            self.wake
        })
    }
}

fn refusal(filter: &'static str, status: u16) -> Refusal {
    Refusal {
        filter,
        reason: "scripted".into(),
        reply: Reply {
            status,
            headers: vec![("x-why".into(), filter.into())],
            body: b"no".to_vec(),
        },
    }
}

fn trace() -> Rc<RefCell<Vec<String>>> {
    Rc::new(RefCell::new(Vec::new()))
}

fn seen(trace: &Rc<RefCell<Vec<String>>>) -> Vec<String> {
    std::mem::take(&mut *trace.borrow_mut())
}

fn host() -> FakeHost {
    FakeHost::new()
        .with_request("POST", "/orders")
        .with_request_header("x-request-id", "req-1")
}

fn three(a: Scripted, b: Scripted, c: Scripted) -> Then<Scripted, Then<Scripted, Scripted>> {
    Then {
        first: a,
        then: Then { first: b, then: c },
    }
}

#[test]
fn stages_run_in_order_on_one_read_of_the_head() {
    let t = trace();
    let host = host();
    let stage = three(
        Scripted::new("a", &t),
        Scripted::new("b", &t).needs(|n| n.request_headers.push("x-request-id".into())),
        Scripted::new("c", &t),
    );
    let engine = Engine::new(stage, "test", 1, &host).unwrap();
    assert!(engine.needs().reads_whole_request_map());
    let mut slot = None;
    let action = engine.on_request_headers(2, &mut slot, false, &host);
    assert_eq!(action, Action::Continue);
    assert_eq!(
        host.header_reads(),
        1,
        "the head is read once for every stage"
    );
    assert_eq!(
        seen(&t),
        [
            "a:headers /orders",
            "b:headers /orders",
            "c:headers /orders"
        ]
    );
    engine.on_response_headers(2, &mut slot, &host);
    engine.on_log(2, &mut slot, &host);
    assert_eq!(
        seen(&t),
        [
            "a:response",
            "b:response",
            "c:response",
            "a:log denial=None",
            "b:log denial=None",
            "c:log denial=None"
        ]
    );
    assert!(host.replies().is_empty());
}

#[test]
fn one_named_header_is_read_by_name() {
    let t = trace();
    let host = host();
    let engine = Engine::new(Scripted::new("a", &t), "test", 1, &host).unwrap();
    assert!(!engine.needs().reads_whole_request_map());
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, true, &host);
    assert_eq!(seen(&t), ["a:headers /orders"]);
}

#[test]
fn a_refusal_mid_chain_stops_later_stages_and_is_published() {
    let t = trace();
    let host = host();
    let stage = three(
        Scripted::new("a", &t),
        Scripted::new("b", &t)
            .headers(Step::Refuse(refusal("b", 429)))
            .needs(|n| n.provides = DecisionSet::of(&[DecisionKind::Denial])),
        Scripted::new("c", &t),
    );
    let engine = Engine::new(stage, "test", 1, &host).unwrap();
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(2, &mut slot, true, &host),
        Action::Pause
    );
    let reply = host.last_reply().unwrap();
    assert_eq!((reply.status, reply.header("x-why")), (429, Some("b")));
    assert_eq!(reply.body, b"no");
    let denial = host.property_json(contract::DENIAL).unwrap();
    assert_eq!(denial["filter"], "b");
    assert_eq!(denial["status"], 429);
    assert_eq!(denial["reason"], "scripted");
    engine.on_log(2, &mut slot, &host);
    assert_eq!(
        seen(&t),
        [
            "a:headers /orders",
            "b:headers /orders",
            "a:log denial=Some(\"b\")",
            "b:log denial=Some(\"b\")",
            "c:log denial=Some(\"b\")"
        ],
        "c never saw the headers, and every stage's log sees the refusal in memory"
    );
}

#[test]
fn the_body_is_held_until_complete_and_given_to_the_stages_that_asked() {
    let t = trace();
    let host = host().with_request_body(b"hello world");
    let stage = three(
        Scripted::new("a", &t).headers(Step::ReadBody { max_bytes: 100 }),
        Scripted::new("b", &t),
        Scripted::new("c", &t).headers(Step::ReadBody { max_bytes: 4 }),
    );
    let engine = Engine::new(stage, "test", 1, &host).unwrap();
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(2, &mut slot, false, &host),
        Action::Continue,
        "headers go on; the body is what is held"
    );
    seen(&t);
    assert_eq!(
        engine.on_request_body(2, &mut slot, 5, false, &host),
        Action::Pause
    );
    assert!(seen(&t).is_empty());
    assert_eq!(
        engine.on_request_body(2, &mut slot, 11, true, &host),
        Action::Continue
    );
    assert_eq!(
        seen(&t),
        ["a:body hello world", "c:body hello"],
        "c sees one byte past its limit, b nothing"
    );
    // Later chunks pass: the body was handed over once.
    assert_eq!(
        engine.on_request_body(2, &mut slot, 11, true, &host),
        Action::Continue
    );
    assert!(seen(&t).is_empty());
}

#[test]
fn a_body_past_the_limit_is_handed_over_without_waiting_for_the_rest() {
    let t = trace();
    let host = host().with_request_body(b"0123456789abcdef");
    let engine = Engine::new(
        Scripted::new("a", &t).headers(Step::ReadBody { max_bytes: 8 }),
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, false, &host);
    seen(&t);
    assert_eq!(
        engine.on_request_body(2, &mut slot, 16, false, &host),
        Action::Continue
    );
    assert_eq!(seen(&t), ["a:body 012345678"]);
}

#[test]
fn trailers_hand_over_a_held_body() {
    let t = trace();
    let host = host().with_request_body(b"payload");
    let engine = Engine::new(
        Scripted::new("a", &t)
            .headers(Step::ReadBody { max_bytes: 100 })
            .body(BodyStep::Refuse(refusal("a", 403))),
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, false, &host);
    assert_eq!(
        engine.on_request_body(2, &mut slot, 7, false, &host),
        Action::Pause
    );
    seen(&t);
    assert_eq!(
        engine.on_request_trailers(2, &mut slot, &host),
        Action::Pause,
        "the body a stage refuses does not slip past with the trailers"
    );
    assert_eq!(seen(&t), ["a:body payload"]);
    assert_eq!(host.last_reply().unwrap().status, 403);
}

#[test]
fn an_unreadable_body_is_refused() {
    let t = trace();
    let host = host();
    host.fail_body_reads();
    let engine = Engine::new(
        Scripted::new("a", &t).headers(Step::ReadBody { max_bytes: 100 }),
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, false, &host);
    assert_eq!(
        engine.on_request_body(2, &mut slot, 3, true, &host),
        Action::Pause
    );
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["request_id"], "req-1");
    assert_eq!(
        host.property_json(contract::DENIAL).unwrap()["reason"],
        "body_unreadable"
    );
}

fn waiting_chain(t: &Rc<RefCell<Vec<String>>>, wake: Wake) -> Then<Scripted, Scripted> {
    Then {
        first: Scripted::new("w", t)
            .headers(Step::Wait {
                deadline_ms: 1_700_000_001_000,
            })
            .needs(|n| n.tick = Some(Duration::from_millis(250)))
            .wake(wake),
        then: Scripted::new("later", t).headers(Step::ReadBody { max_bytes: 10 }),
    }
}

#[test]
fn a_waiting_request_is_parked_then_resumed_when_its_stage_wakes_it() {
    let t = trace();
    let host = host();
    let engine = Engine::new(waiting_chain(&t, Wake::Waiters), "test", 1, &host).unwrap();
    assert_eq!(host.tick_period(), Some(Duration::from_millis(250)));
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(5, &mut slot, false, &host),
        Action::Pause
    );
    assert!(slot.is_none(), "the flow is parked with the engine");
    assert_eq!(engine.waiting(), 1);
    assert_eq!(seen(&t), ["w:headers /orders"]);
    // A call response for another stage's token changes nothing.
    engine.on_http_call_response(99, 1, 0, &host);
    assert_eq!(engine.waiting(), 1);
    // Its own call's response wakes it.
    engine.on_http_call_response(7, 1, 0, &host);
    assert_eq!(
        seen(&t),
        [
            "w:call",
            "w:resume timed_out=false",
            "later:headers /orders"
        ],
        "after the resume, the stages after it run their header step"
    );
    assert_eq!(host.resumed(), [5]);
    assert_eq!(engine.waiting(), 0);
    // The request's context takes its flow back; the body step asked for
    // by the later stage still applies.
    assert_eq!(
        engine.on_request_body(5, &mut slot, 3, false, &host),
        Action::Pause
    );
    assert!(slot.is_some());
}

#[test]
fn a_wait_ends_at_its_deadline() {
    let t = trace();
    let host = host();
    let engine = Engine::new(
        Then {
            first: waiting_chain(&t, Wake::No)
                .first
                .resume(Step::Refuse(refusal("w", 503))),
            then: Scripted::new("later", &t),
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(5, &mut slot, true, &host);
    seen(&t);
    engine.on_tick(&host);
    assert_eq!(
        seen(&t),
        ["w:tick", "later:tick"],
        "before the deadline, nothing happens"
    );
    host.advance_ms(1_000);
    engine.on_tick(&host);
    assert_eq!(
        seen(&t),
        ["w:tick", "later:tick", "w:resume timed_out=true"]
    );
    assert_eq!(host.last_reply().unwrap().status, 503);
    assert!(host.resumed().is_empty());
}

#[test]
fn a_stage_that_waits_again_after_its_deadline_is_refused() {
    let t = trace();
    let host = host();
    let engine = Engine::new(
        Then {
            first: waiting_chain(&t, Wake::No).first.resume(Step::Wait {
                deadline_ms: i64::MAX,
            }),
            then: Scripted::new("later", &t),
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(5, &mut slot, true, &host);
    host.advance_ms(5_000);
    engine.on_tick(&host);
    assert_eq!(host.last_reply().unwrap().status, 503);
    assert_eq!(engine.waiting(), 0);
}

#[test]
fn waiting_without_a_timer_is_refused_at_once() {
    let t = trace();
    let host = host();
    let engine = Engine::new(
        Scripted::new("w", &t).headers(Step::Wait { deadline_ms: 0 }),
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(5, &mut slot, true, &host),
        Action::Pause
    );
    assert_eq!(host.last_reply().unwrap().status, 503);
    assert_eq!(engine.waiting(), 0);
}

#[test]
fn a_request_gone_while_waiting_is_dropped() {
    let t = trace();
    let host = host();
    let engine = Engine::new(waiting_chain(&t, Wake::Waiters), "test", 1, &host).unwrap();
    let (mut a, mut b) = (None, None);
    engine.on_request_headers(5, &mut a, true, &host);
    engine.on_request_headers(6, &mut b, true, &host);
    host.end_request(5);
    engine.forget(6);
    seen(&t);
    engine.on_tick(&host);
    assert_eq!(
        seen(&t),
        ["w:tick", "later:tick"],
        "neither request is resumed"
    );
    assert!(host.resumed().is_empty());
}

/// A stage that verifies nothing and hands on a fixed identity.
struct Identifies;

impl Stage for Identifies {
    type Request = ();
    fn needs(&self) -> Needs {
        Needs {
            provides: DecisionSet::of(&[DecisionKind::Identity]),
            ..Needs::default()
        }
    }
    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        cx.decisions.set_identity(Rc::new(Identity {
            sub: Some("alice".into()),
            ..Identity::default()
        }));
        Step::Continue
    }
}

/// A stage that reads the identity and writes down whose it is.
struct ReadsIdentity(Rc<RefCell<Vec<String>>>);

impl Stage for ReadsIdentity {
    type Request = ();
    fn needs(&self) -> Needs {
        Needs::default()
    }
    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        let sub = cx.decisions.identity(cx.host).and_then(|i| i.sub.clone());
        self.0.borrow_mut().push(format!("{sub:?}"));
        Step::Continue
    }
}

#[test]
fn decisions_pass_in_memory_inside_one_vm_and_through_filter_state_across_vms() {
    let t = trace();
    // In one VM: no filter state is read (there is none to read).
    let host = host();
    let engine = Engine::new(
        Then {
            first: Identifies,
            then: ReadsIdentity(t.clone()),
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    engine.on_request_headers(2, &mut None, true, &host);
    assert_eq!(seen(&t), ["Some(\"alice\")"]);

    // Alone, the reader finds the identity another module published.
    let host = FakeHost::new().with_property(
        &[contract::IDENTITY],
        br#"{"provider":"p","iss":"i","sub":"bob","aud":[],"scope":[],"amr":[]}"#,
    );
    let engine = Engine::new(ReadsIdentity(t.clone()), "test", 1, &host).unwrap();
    engine.on_request_headers(2, &mut None, true, &host);
    assert_eq!(seen(&t), ["Some(\"bob\")"]);

    // In one VM, filter state someone else wrote is not consulted: the
    // identity comes only from this VM's verification.
    let host = FakeHost::new().with_property(&[contract::IDENTITY], br#"{"sub":"mallory"}"#);
    let engine = Engine::new(
        Then {
            first: Scripted::new("no-identity", &trace())
                .needs(|n| n.provides = DecisionSet::of(&[DecisionKind::Identity])),
            then: ReadsIdentity(t.clone()),
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    engine.on_request_headers(2, &mut None, true, &host);
    assert_eq!(seen(&t), ["None"]);
}

#[test]
fn unreadable_filter_state_is_counted_not_guessed() {
    let t = trace();
    let host = FakeHost::new().with_property(&[contract::IDENTITY], b"{not json");
    let engine = Engine::new(ReadsIdentity(t.clone()), "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, true, &host);
    assert_eq!(seen(&t), ["None"]);
    assert!(slot
        .unwrap()
        .decisions()
        .unreadable()
        .contains(DecisionKind::Identity));
    assert!(host.logged("unreadable filter state palisade.identity"));
}

#[test]
fn header_edits_reach_the_host_and_the_head_other_stages_see() {
    struct Edits;
    impl Stage for Edits {
        type Request = ();
        fn needs(&self) -> Needs {
            Needs {
                whole_request_map: true,
                ..Needs::default()
            }
        }
        fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
            cx.request.remove(cx.host, "x-request-id");
            cx.request.set(cx.host, "x-user", "alice");
            Step::Continue
        }
    }
    let host = host();
    let t = trace();
    let engine = Engine::new(
        Then {
            first: Edits,
            then: ReadsHeader(t.clone()),
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    engine.on_request_headers(2, &mut None, true, &host);
    assert_eq!(seen(&t), ["Some(\"alice\") None"]);
    let upstream = host.request_headers();
    assert!(upstream.contains(&("x-user".into(), "alice".into())));
    assert!(!upstream.iter().any(|(n, _)| n == "x-request-id"));
}

struct ReadsHeader(Rc<RefCell<Vec<String>>>);

impl Stage for ReadsHeader {
    type Request = ();
    fn needs(&self) -> Needs {
        Needs::default()
    }
    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        let line = format!(
            "{:?} {:?}",
            cx.request.header("x-user"),
            cx.request.header("x-request-id")
        );
        self.0.borrow_mut().push(line);
        Step::Continue
    }
}

#[test]
fn attributes_are_read_once() {
    struct RouteTwice;
    impl Stage for RouteTwice {
        type Request = ();
        fn needs(&self) -> Needs {
            Needs::default()
        }
        fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
            assert_eq!(cx.attributes.route_name(cx.host), "orders");
            assert_eq!(cx.view(true).route_name, "orders");
            assert_eq!(cx.view(false).route_name, "");
            Step::Continue
        }
    }
    let host = host().with_property(&["xds", "route_name"], b"orders");
    let engine = Engine::new(RouteTwice, "test", 1, &host).unwrap();
    engine.on_request_headers(2, &mut None, true, &host);
    assert_eq!(host.property_reads(), 1);
}

/// A stage that answers some requests itself, rewrites bodies, and reads or
/// watches the response body.
struct Rewrites {
    trace: Rc<RefCell<Vec<String>>>,
    response: ResponseStep,
}

impl Stage for Rewrites {
    type Request = ();
    fn needs(&self) -> Needs {
        Needs {
            whole_request_map: true,
            request_body: true,
            ..Needs::default()
        }
    }
    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        if cx.request.path() == "/.well-known/thing" {
            return Step::Respond(Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"thing":true}"#.to_vec(),
            });
        }
        cx.request.remove(cx.host, "content-length");
        Step::ReadBody { max_bytes: 100 }
    }
    fn on_request_body(&self, _: &mut (), _: &mut Exchange<'_>, body: &[u8]) -> BodyStep {
        BodyStep::Replace(String::from_utf8_lossy(body).to_uppercase().into_bytes())
    }
    fn on_response_headers(&self, _: &mut (), _: &mut Exchange<'_>) -> ResponseStep {
        self.response
    }
    fn on_response_body(
        &self,
        _: &mut (),
        _: &mut Exchange<'_>,
        body: &[u8],
        complete: bool,
    ) -> ResponseBodyStep {
        self.trace.borrow_mut().push(format!(
            "response body {} complete={complete}",
            String::from_utf8_lossy(body)
        ));
        ResponseBodyStep::Replace(b"[filtered]".to_vec())
    }
}

fn rewrites(t: &Rc<RefCell<Vec<String>>>, response: ResponseStep) -> Then<Rewrites, Scripted> {
    Then {
        first: Rewrites {
            trace: t.clone(),
            response,
        },
        then: Scripted::new("later", t).headers(Step::ReadBody { max_bytes: 100 }),
    }
}

#[test]
fn a_stage_may_answer_a_request_itself_without_a_refusal() {
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/.well-known/thing");
    let engine = Engine::new(rewrites(&t, ResponseStep::Continue), "test", 1, &host).unwrap();
    assert_eq!(
        engine.on_request_headers(2, &mut None, true, &host),
        Action::Pause
    );
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.json()["thing"].clone()),
        (200, json_true())
    );
    assert!(
        host.property_text(contract::DENIAL).is_none(),
        "not a refusal"
    );
    assert!(seen(&t).is_empty(), "no later stage ran");
}

fn json_true() -> serde_json::Value {
    serde_json::Value::Bool(true)
}

#[test]
fn a_stage_may_rewrite_the_request_body_and_later_stages_see_the_new_one() {
    let t = trace();
    let host = FakeHost::new()
        .with_request("POST", "/api")
        .with_request_header("content-length", "5")
        .with_request_body(b"hello");
    let engine = Engine::new(rewrites(&t, ResponseStep::Continue), "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, false, &host);
    assert!(!host
        .request_headers()
        .iter()
        .any(|(n, _)| n == "content-length"));
    assert_eq!(
        engine.on_request_body(2, &mut slot, 5, true, &host),
        Action::Continue
    );
    assert_eq!(host.request_body(), b"HELLO");
    assert_eq!(seen(&t), ["later:headers /api", "later:body HELLO"]);
}

#[test]
fn a_held_response_body_is_handed_over_whole_and_may_be_replaced() {
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/list");
    let engine = Engine::new(
        rewrites(&t, ResponseStep::ReadBody { max_bytes: 100 }),
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, true, &host);
    engine.on_response_headers(2, &mut slot, &host);
    host.set_response_body(b"{\"tools\":");
    assert_eq!(
        engine.on_response_body(2, &mut slot, 9, false, &host),
        Action::Pause
    );
    host.set_response_body(b"{\"tools\":[1,2]}");
    assert_eq!(
        engine.on_response_body(2, &mut slot, 15, true, &host),
        Action::Continue
    );
    assert_eq!(host.response_body(), b"[filtered]");
    let lines = seen(&t);
    assert!(
        lines.contains(&"response body {\"tools\":[1,2]} complete=true".to_string()),
        "{lines:?}"
    );
}

#[test]
fn an_observed_response_body_passes_chunk_by_chunk_unchanged() {
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/stream");
    let engine = Engine::new(rewrites(&t, ResponseStep::ObserveBody), "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, true, &host);
    engine.on_response_headers(2, &mut slot, &host);
    seen(&t);
    for (chunk, last) in [(&b"data: 1\n\n"[..], false), (b"data: 2\n\n", true)] {
        host.set_response_body(chunk);
        assert_eq!(
            engine.on_response_body(2, &mut slot, chunk.len(), last, &host),
            Action::Continue,
            "never held"
        );
        assert_eq!(
            host.response_body(),
            chunk,
            "an observer does not change the stream"
        );
    }
    assert_eq!(
        seen(&t),
        [
            "response body data: 1\n\n complete=false",
            "response body data: 2\n\n complete=true"
        ]
    );
}

/// A stage that asks a service before it decides: a gRPC call per request.
struct AsksService;

impl Stage for AsksService {
    type Request = Option<u32>;
    fn needs(&self) -> Needs {
        Needs {
            tick: Some(Duration::from_millis(250)),
            ..Needs::default()
        }
    }
    fn on_request_headers(&self, call: &mut Option<u32>, cx: &mut Exchange<'_>) -> Step {
        match cx.host.dispatch_grpc_call(
            "rls",
            "pkg.Service",
            "Check",
            &[],
            b"question",
            Duration::from_millis(100),
        ) {
            Ok(token) => {
                *call = Some(token);
                Step::AwaitCall {
                    token,
                    deadline_ms: cx.now_ms() + 1_000,
                }
            }
            Err(_) => Step::Continue,
        }
    }
    fn on_call_response(
        &self,
        call: &mut Option<u32>,
        cx: &mut Exchange<'_>,
        token: u32,
        response: &CallResponse,
    ) -> Option<Step> {
        if *call != Some(token) {
            return None;
        }
        let answer = cx.host.body(Body::GrpcResponse, response.body_size).ok()?;
        Some(match (response.grpc_status, answer.as_slice()) {
            (Some(0), b"yes") => Step::Continue,
            _ => Step::Refuse(Refusal {
                filter: "asks",
                reason: "said_no".into(),
                reply: Reply {
                    status: 429,
                    ..Reply::default()
                },
            }),
        })
    }
}

#[test]
fn a_request_waits_for_its_own_call_and_goes_on_by_its_answer() {
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/");
    let engine = Engine::new(
        Then {
            first: AsksService,
            then: Scripted::new("later", &t),
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(2, &mut slot, true, &host),
        Action::Pause
    );
    let call = host.grpc_calls().pop().unwrap();
    assert_eq!(
        (call.service.as_str(), call.message.as_slice()),
        ("pkg.Service", &b"question"[..])
    );
    assert!(seen(&t).is_empty(), "the later stage waits too");
    // The answer comes to the request's own context (the SDK makes it the
    // effective one before the callback).
    host.set_call_response("200", b"yes");
    host.set_effective_context(2).unwrap();
    let response = CallResponse {
        grpc_status: Some(0),
        body_size: 3,
        ..CallResponse::default()
    };
    engine.on_request_call_response(2, &mut slot, call.token, &response, &host);
    assert_eq!(seen(&t), ["later:headers /"]);
    assert_eq!(host.resumed(), [2]);
    assert_eq!(engine.waiting(), 0);

    // Another request, refused by the answer.
    let mut slot = None;
    engine.on_request_headers(3, &mut slot, true, &host);
    let call = host.grpc_calls().pop().unwrap();
    host.set_call_response("200", b"no");
    host.set_effective_context(3).unwrap();
    engine.on_request_call_response(3, &mut slot, call.token, &response, &host);
    assert_eq!(host.last_reply().unwrap().status, 429);
    assert_eq!(host.resumed(), [2]);
}

#[test]
fn a_failed_call_has_no_status_and_reads_no_header() {
    let t = trace();
    let host = host();
    let engine = Engine::new(waiting_chain(&t, Wake::No), "test", 1, &host).unwrap();
    let reads = host.header_reads();
    // Envoy reports a reset or a timed-out call with no headers: reading one
    // by name then would be an error the SDK panics on.
    engine.on_http_call_response(7, 0, 0, &host);
    assert_eq!(host.header_reads(), reads);
    assert_eq!(seen(&t), ["w:call"]);
}

#[test]
fn a_waiting_request_stays_paused_whatever_body_events_arrive() {
    let t = trace();
    let host = host().with_request_body(b"payload");
    let engine = Engine::new(waiting_chain(&t, Wake::Waiters), "test", 1, &host).unwrap();
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(5, &mut slot, false, &host),
        Action::Pause
    );
    // With Envoy's allow_on_headers_stop_iteration, body and trailers
    // events reach a paused filter: they must not let the request go.
    assert_eq!(
        engine.on_request_body(5, &mut slot, 7, true, &host),
        Action::Pause
    );
    assert_eq!(
        engine.on_request_trailers(5, &mut slot, &host),
        Action::Pause
    );
    assert!(slot.is_none(), "still parked");
    assert_eq!(engine.waiting(), 1);
    seen(&t);
    engine.on_http_call_response(7, 1, 0, &host);
    assert_eq!(
        seen(&t),
        [
            "w:call",
            "w:resume timed_out=false",
            "later:headers /orders"
        ]
    );
    // The body then goes to the stage that asked for it.
    assert_eq!(
        engine.on_request_body(5, &mut slot, 7, true, &host),
        Action::Continue
    );
    assert_eq!(seen(&t), ["later:body payload"]);
}

#[test]
fn a_request_waiting_for_its_call_is_refused_when_the_call_never_answers() {
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/");
    let engine = Engine::new(
        Then {
            first: Scripted::new("ticks", &t)
                .needs(|n| n.tick = Some(Duration::from_millis(250)))
                .wake(Wake::Waiters),
            then: AsksService,
        },
        "test",
        1,
        &host,
    )
    .unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, true, &host);
    // Another stage waking its waiters does not wake a request that waits
    // for its own call.
    engine.on_tick(&host);
    assert!(host.resumed().is_empty());
    assert!(host.replies().is_empty());
    assert_eq!(engine.waiting(), 1);
    // Past the deadline: 503, never on without the answer.
    host.advance_ms(2_000);
    engine.on_tick(&host);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (503, Some("5"))
    );
    assert!(host.resumed().is_empty());
    assert_eq!(
        host.property_json(contract::DENIAL).unwrap()["reason"],
        "call_timed_out"
    );
    // The late answer changes nothing.
    let response = CallResponse {
        grpc_status: Some(0),
        ..CallResponse::default()
    };
    let call = host.grpc_calls().pop().unwrap();
    engine.on_request_call_response(2, &mut slot, call.token, &response, &host);
    assert!(host.resumed().is_empty());
}

#[test]
fn an_answer_to_a_call_the_request_does_not_wait_for_leaves_it_waiting() {
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/");
    let engine = Engine::new(AsksService, "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, true, &host);
    let call = host.grpc_calls().pop().unwrap();
    // An unknown token and another call's answer: the request keeps waiting.
    let response = CallResponse {
        grpc_status: Some(0),
        body_size: 3,
        ..CallResponse::default()
    };
    host.set_call_response("200", b"yes");
    engine.on_request_call_response(2, &mut slot, call.token + 100, &response, &host);
    assert!(slot.is_none() && engine.waiting() == 1, "still parked");
    assert!(host.logged("response to an unknown call"));
    // Its own answer lets it go.
    engine.on_request_call_response(2, &mut slot, call.token, &response, &host);
    assert_eq!(engine.waiting(), 0);
    assert!(slot.is_some());
    let _ = t;
}

/// A stage whose root side wakes its waiters, and which then asks a service
/// (from the root context) before it decides.
struct ResumesWithACall;

impl Stage for ResumesWithACall {
    type Request = Option<u32>;
    fn needs(&self) -> Needs {
        Needs {
            tick: Some(Duration::from_millis(250)),
            ..Needs::default()
        }
    }
    fn on_request_headers(&self, _: &mut Option<u32>, _: &mut Exchange<'_>) -> Step {
        Step::Wait {
            deadline_ms: i64::MAX,
        }
    }
    fn on_resume(&self, call: &mut Option<u32>, cx: &mut Exchange<'_>, _: bool) -> Step {
        match cx
            .host
            .dispatch_http_call("svc", &[], None, Duration::from_millis(100))
        {
            Ok(token) => {
                *call = Some(token);
                Step::AwaitCall {
                    token,
                    deadline_ms: i64::MAX,
                }
            }
            Err(_) => Step::Continue,
        }
    }
    fn on_call_response(
        &self,
        call: &mut Option<u32>,
        _: &mut Exchange<'_>,
        token: u32,
        _: &CallResponse,
    ) -> Option<Step> {
        (*call == Some(token)).then_some(Step::Continue)
    }
    fn on_tick(&self, _: &dyn Host) -> Wake {
        Wake::Waiters
    }
}

#[test]
fn a_call_made_while_resuming_in_the_root_context_still_reaches_its_request() {
    let host = FakeHost::new().with_request("GET", "/");
    let engine = Engine::new(ResumesWithACall, "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(4, &mut slot, true, &host);
    engine.on_tick(&host);
    let call = host.calls().pop().expect("the call made while resuming");
    assert!(host.resumed().is_empty(), "waits for the call now");
    // The SDK delivers a call made in the root context to the root context.
    engine.on_http_call_response(call.token, 1, 0, &host);
    assert_eq!(host.resumed(), [4]);
}

#[test]
fn a_stage_that_waits_without_answering_its_resume_is_refused() {
    struct WaitsForever;
    impl Stage for WaitsForever {
        type Request = ();
        fn needs(&self) -> Needs {
            Needs {
                tick: Some(Duration::from_millis(250)),
                ..Needs::default()
            }
        }
        fn on_request_headers(&self, _: &mut (), _: &mut Exchange<'_>) -> Step {
            Step::Wait {
                deadline_ms: i64::MAX,
            }
        }
        fn on_tick(&self, _: &dyn Host) -> Wake {
            Wake::Waiters
        }
    }
    let host = FakeHost::new().with_request("GET", "/");
    let engine = Engine::new(WaitsForever, "test", 1, &host).unwrap();
    engine.on_request_headers(4, &mut None, true, &host);
    engine.on_tick(&host);
    assert_eq!(host.last_reply().unwrap().status, 503);
    assert!(
        host.resumed().is_empty(),
        "the default resume never lets it go"
    );
}

#[test]
fn headers_are_edited_only_while_the_host_holds_them() {
    struct EditsLate;
    impl Stage for EditsLate {
        type Request = ();
        fn needs(&self) -> Needs {
            Needs {
                request_headers: vec![":path".into()],
                ..Needs::default()
            }
        }
        fn on_request_headers(&self, _: &mut (), _: &mut Exchange<'_>) -> Step {
            Step::ReadBody { max_bytes: 10 }
        }
        fn on_request_body(&self, _: &mut (), cx: &mut Exchange<'_>, _: &[u8]) -> BodyStep {
            cx.set_request_header("x-late", "1");
            assert_eq!(cx.request.lookup(cx.host, "x-request-id"), None);
            BodyStep::Continue
        }
    }
    let host = host().with_request_body(b"abc");
    let engine = Engine::new(EditsLate, "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, false, &host);
    let reads = host.header_reads();
    engine.on_request_body(2, &mut slot, 3, true, &host);
    assert_eq!(
        host.header_reads(),
        reads,
        "no lookup by name after the headers went on"
    );
    assert!(!host.request_headers().iter().any(|(n, _)| n == "x-late"));
    assert!(host.logged("request header `x-late` not edited"));
}

#[test]
fn a_refusal_by_a_module_beside_the_bundle_still_reaches_the_audit() {
    struct ReadsDenial(Rc<RefCell<Vec<String>>>);
    impl Stage for ReadsDenial {
        type Request = ();
        fn needs(&self) -> Needs {
            Needs {
                provides: DecisionSet::of(&[DecisionKind::Denial]),
                ..Needs::default()
            }
        }
        fn on_log(&self, _: &mut (), cx: &mut Exchange<'_>) {
            let filter = cx.decisions.denial(cx.host).map(|d| d.filter.clone());
            self.0.borrow_mut().push(format!("{filter:?}"));
        }
    }
    let t = trace();
    let host = FakeHost::new().with_request("GET", "/").with_property(
        &[contract::DENIAL],
        br#"{"filter":"jwt","status":401,"reason":"token_missing"}"#,
    );
    let engine = Engine::new(ReadsDenial(t.clone()), "test", 1, &host).unwrap();
    engine.on_log(2, &mut None, &host);
    assert_eq!(seen(&t), ["Some(\"jwt\")"]);
}

#[test]
fn a_body_over_the_limit_cannot_be_rewritten_and_is_refused() {
    let t = trace();
    let host = FakeHost::new()
        .with_request("POST", "/api")
        .with_request_body(&[b'x'; 300]);
    let engine = Engine::new(rewrites(&t, ResponseStep::Continue), "test", 1, &host).unwrap();
    let mut slot = None;
    engine.on_request_headers(2, &mut slot, false, &host);
    assert_eq!(
        engine.on_request_body(2, &mut slot, 300, false, &host),
        Action::Pause
    );
    assert_eq!(host.last_reply().unwrap().status, 500);
    assert_eq!(host.request_body().len(), 300, "left as it was");
}

#[test]
fn an_edit_makes_the_route_read_again() {
    struct EditsThenReads;
    impl Stage for EditsThenReads {
        type Request = ();
        fn needs(&self) -> Needs {
            Needs::default()
        }
        fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
            assert_eq!(cx.attributes.route_name(cx.host), "before");
            cx.set_request_header(":path", "/elsewhere");
            assert_eq!(cx.attributes.route_name(cx.host), "after");
            Step::Continue
        }
    }
    let host = FakeHost::new()
        .with_request("GET", "/")
        .with_property(&["xds", "route_name"], b"before");
    // Envoy picks the route again after an edit of the request headers.
    host.route_after_path_edit("after");
    let engine = Engine::new(EditsThenReads, "test", 1, &host).unwrap();
    engine.on_request_headers(2, &mut None, true, &host);
}
