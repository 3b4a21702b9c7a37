//! Requests that wait: parked with the engine, woken by their stage's root
//! side ([`Step::Wait`]) or by the answer to their own call
//! ([`Step::AwaitCall`]), refused when their deadline passes. A request that
//! waits never moves: body and trailers events keep it paused.

use super::super::exchange::MapAccess;
use super::super::host::{log, HeaderMap, Host, LogLevel};
use super::super::stage::{CallResponse, Stage, Step, Wake};
use super::{Action, Applied, Engine, Flow, FlowSlot};

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Nothing: it runs.
    No,
    /// Its stage's root side ([`Wake::Waiters`]).
    ForWake,
    /// The answer to this call.
    ForCall(u32),
}

impl<S: Stage> Engine<S> {
    /// Parks a request that waits.
    pub(super) fn park(
        &self,
        context_id: u32,
        mut flow: Flow<S::Request>,
        waiting: Waiting,
        deadline_ms: i64,
    ) {
        flow.waiting = waiting;
        if let Waiting::ForCall(token) = waiting {
            self.call_owners.borrow_mut().insert(token, context_id);
        }
        self.deadlines.borrow_mut().push((context_id, deadline_ms));
        self.parked.borrow_mut().insert(context_id, flow);
    }

    /// Whether the request of `context_id` waits (its flow is parked).
    pub(super) fn is_waiting(&self, context_id: u32, slot: &FlowSlot<S::Request>) -> bool {
        slot.is_none()
            && self
                .parked
                .try_borrow()
                .is_ok_and(|p| p.get(&context_id).is_some_and(|f| f.waiting != Waiting::No))
    }

    /// The flow of `context_id`: in its slot, or parked. A request taken
    /// back while it waits (its stream ended) stops waiting.
    pub(super) fn reclaim<'s>(
        &self,
        context_id: u32,
        slot: &'s mut FlowSlot<S::Request>,
    ) -> Option<&'s mut Flow<S::Request>> {
        if slot.is_none() {
            *slot = self.parked.borrow_mut().remove(&context_id);
            if let Some(flow) = slot.as_mut() {
                if flow.waiting != Waiting::No {
                    self.stop_waiting(context_id, flow);
                }
            }
        }
        slot.as_mut()
    }

    fn stop_waiting(&self, context_id: u32, flow: &mut Flow<S::Request>) {
        if let Waiting::ForCall(token) = flow.waiting {
            self.call_owners.borrow_mut().remove(&token);
        }
        flow.waiting = Waiting::No;
        self.deadlines
            .borrow_mut()
            .retain(|(id, _)| *id != context_id);
    }

    /// The request's HTTP context is gone: drop what was kept for it.
    pub fn forget(&self, context_id: u32) {
        let flow = self
            .parked
            .try_borrow_mut()
            .ok()
            .and_then(|mut p| p.remove(&context_id));
        if let Some(mut flow) = flow {
            self.stop_waiting(context_id, &mut flow);
        }
    }

    /// How many requests wait.
    pub fn waiting(&self) -> usize {
        self.deadlines.try_borrow().map_or(0, |d| d.len())
    }

    /// The root context's timer: the stages' ticks, then the waiting
    /// requests that were woken or whose time is up.
    pub fn on_tick(&self, host: &dyn Host) {
        let wake = self.stage.on_tick(host);
        self.serve_waiters(host, wake);
    }

    /// The response to an HTTP call made from the root context (or for a
    /// request resumed there).
    pub fn on_http_call_response(
        &self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        host: &dyn Host,
    ) {
        let response = CallResponse {
            status: call_status(host, num_headers),
            grpc_status: None,
            body_size,
        };
        self.on_root_call_response(token, &response, host);
    }

    /// The response to a gRPC call made from the root context.
    pub fn on_grpc_call_response(
        &self,
        token: u32,
        status_code: u32,
        body_size: usize,
        host: &dyn Host,
    ) {
        let response = CallResponse {
            status: None,
            grpc_status: Some(status_code),
            body_size,
        };
        self.on_root_call_response(token, &response, host);
    }

    fn on_root_call_response(&self, token: u32, response: &CallResponse, host: &dyn Host) {
        // A call a request waits for, made while it was resumed here.
        let owner = self.call_owners.borrow_mut().remove(&token);
        if let Some(context_id) = owner {
            let flow = self.parked.borrow_mut().remove(&context_id);
            if let Some(mut flow) = flow {
                if host.set_effective_context(context_id).is_ok() {
                    self.answer_waiting_call(context_id, &mut flow, token, response, host);
                    // Waiting again, or resumed until its context takes it back.
                    self.parked.borrow_mut().insert(context_id, flow);
                }
                let _ = host.set_effective_context(self.root_context_id);
            }
            return;
        }
        match self.stage.on_root_call_response(token, response, host) {
            Some(wake) => self.serve_waiters(host, wake),
            None => log(
                host,
                self.name,
                LogLevel::Warn,
                &format!("response to an unknown call (token {token})"),
            ),
        }
    }

    /// The response to a call a stage made while deciding this request,
    /// delivered to the request's own context.
    pub fn on_request_call_response(
        &self,
        context_id: u32,
        slot: &mut FlowSlot<S::Request>,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) {
        self.call_owners.borrow_mut().remove(&token);
        if slot.is_none() {
            let flow = self.parked.borrow_mut().remove(&context_id);
            let Some(mut flow) = flow else {
                return;
            };
            self.answer_waiting_call(context_id, &mut flow, token, response, host);
            if flow.waiting == Waiting::No {
                *slot = Some(flow);
            } else {
                self.parked.borrow_mut().insert(context_id, flow);
            }
            return;
        }
        if let Some(flow) = slot.as_mut() {
            // A call the request did not wait for: only news for its stage.
            let (request, mut cx) = flow.split(host, MapAccess::None, MapAccess::None);
            if self
                .stage
                .on_call_response(request, &mut cx, token, response)
                .is_none()
            {
                unknown_call(host, self.name, token);
            }
        }
    }

    /// A parked request gets the answer to a call. When it waits for that
    /// call, the stage's answer decides it; otherwise the answer is only
    /// news and the request keeps waiting. The caller puts the flow back
    /// where `flow.waiting` says.
    fn answer_waiting_call(
        &self,
        context_id: u32,
        flow: &mut Flow<S::Request>,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) {
        let awaited = flow.waiting == Waiting::ForCall(token);
        let step = {
            let (request, mut cx) = flow.split(host, MapAccess::Edit, MapAccess::None);
            self.stage
                .on_call_response(request, &mut cx, token, response)
        };
        match step {
            None => unknown_call(host, self.name, token),
            Some(step) if awaited => {
                self.stop_waiting(context_id, flow);
                self.resume(context_id, flow, step, false, host);
            }
            Some(_) => {}
        }
    }

    /// Applies the step a resumed request got: it goes on, is answered, or
    /// waits again (re-parked by the caller, which sees `flow.waiting`).
    fn resume(
        &self,
        context_id: u32,
        flow: &mut Flow<S::Request>,
        step: Step,
        timed_out: bool,
        host: &dyn Host,
    ) {
        match self.apply(step, flow, host, timed_out) {
            Applied::Go(Action::Continue) => {
                if let Err(status) = host.resume_request() {
                    log(
                        host,
                        self.name,
                        LogLevel::Warn,
                        &format!("cannot resume a request: {status:?}"),
                    );
                }
            }
            Applied::Go(Action::Pause) => {}
            Applied::Park(waiting, deadline_ms) => {
                flow.waiting = waiting;
                if let Waiting::ForCall(token) = waiting {
                    self.call_owners.borrow_mut().insert(token, context_id);
                }
                self.deadlines.borrow_mut().push((context_id, deadline_ms));
            }
        }
    }

    /// Resumes the waiting requests that `wake` concerns (those waiting for
    /// their stage's root side) or whose deadline has passed.
    fn serve_waiters(&self, host: &dyn Host, wake: Wake) {
        let now_ms = host.now_unix_ms();
        let due: Vec<(u32, bool)> = {
            let (Ok(mut deadlines), Ok(parked)) =
                (self.deadlines.try_borrow_mut(), self.parked.try_borrow())
            else {
                return;
            };
            let mut due = Vec::new();
            deadlines.retain(|(id, deadline_ms)| {
                let timed_out = now_ms >= *deadline_ms;
                let woken = wake == Wake::Waiters
                    && parked
                        .get(id)
                        .is_some_and(|f| f.waiting == Waiting::ForWake);
                if timed_out || woken {
                    due.push((*id, timed_out));
                }
                !(timed_out || woken)
            });
            due
        };
        for (context_id, timed_out) in due {
            let flow = self.parked.borrow_mut().remove(&context_id);
            let Some(mut flow) = flow else {
                continue; // taken back by its context, or gone
            };
            let waiting = std::mem::replace(&mut flow.waiting, Waiting::No);
            if let Waiting::ForCall(token) = waiting {
                self.call_owners.borrow_mut().remove(&token);
            }
            if host.set_effective_context(context_id).is_err() {
                continue; // the request has ended
            }
            match waiting {
                Waiting::ForWake => {
                    let step = {
                        let (request, mut cx) = flow.split(host, MapAccess::Edit, MapAccess::None);
                        self.stage.on_resume(request, &mut cx, timed_out)
                    };
                    self.resume(context_id, &mut flow, step, timed_out, host);
                }
                // Its call did not answer in time: closed.
                Waiting::ForCall(_) => self.refuse_unavailable(&mut flow, host, "call_timed_out"),
                Waiting::No => {}
            }
            self.parked.borrow_mut().insert(context_id, flow);
        }
        let _ = host.set_effective_context(self.root_context_id);
    }
}

/// `:status` of a call's response; a call that failed (reset, timed out)
/// has no headers, and reading one by name would be an error.
pub(in crate::engine) fn call_status(host: &dyn Host, num_headers: usize) -> Option<String> {
    if num_headers == 0 {
        return None;
    }
    host.header(HeaderMap::CallResponse, ":status")
}

fn unknown_call(host: &dyn Host, name: &str, token: u32) {
    log(
        host,
        name,
        LogLevel::Warn,
        &format!("response to an unknown call (token {token})"),
    );
}
