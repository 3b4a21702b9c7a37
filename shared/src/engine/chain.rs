//! Stages in sequence: [`Then`] runs one stage, then the next, and is a
//! stage itself, so a module of any number of stages is one type
//! (`Then<A, Then<B, C>>`) that the engine drives without boxes or string
//! ids. `Option<S>` is a stage that is on or off (a bundle section that is
//! absent).

use super::exchange::Exchange;
use super::host::Host;
use super::stage::{
    BodyStep, CallResponse, Needs, ResponseBodyStep, ResponseStep, Stage, Step, Wake,
};

/// `first`, then `then`.
#[derive(Debug)]
pub struct Then<A, B> {
    /// The stage that runs first.
    pub first: A,
    /// The stage that runs after it.
    pub then: B,
}

/// Where a request is in a [`Then`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum At {
    /// The first stage has not finished its header step.
    #[default]
    First,
    /// The first stage is done with the headers; the second is running.
    Second,
}

/// Per-request state of a [`Then`].
#[derive(Debug, Default)]
pub struct ThenRequest<A, B> {
    first: A,
    then: B,
    at: At,
    /// The body size each stage asked for, when it did.
    first_body: Option<usize>,
    then_body: Option<usize>,
    /// What each stage asked of the response.
    first_response: Option<ResponseStep>,
    then_response: Option<ResponseStep>,
}

impl<A, B> ThenRequest<A, B> {
    /// The combined header step once both stages have answered.
    fn combined(&self) -> Step {
        match self.first_body.max(self.then_body) {
            Some(max_bytes) => Step::ReadBody { max_bytes },
            None => Step::Continue,
        }
    }
}

impl<A: Stage, B: Stage> Then<A, B> {
    /// Carries on after the first stage answered `step`.
    fn after_first(
        &self,
        step: Step,
        request: &mut ThenRequest<A::Request, B::Request>,
        cx: &mut Exchange<'_>,
    ) -> Step {
        match step {
            Step::Refuse(r) => return Step::Refuse(r),
            Step::Respond(r) => return Step::Respond(r),
            Step::Wait { deadline_ms } => return Step::Wait { deadline_ms },
            Step::AwaitCall { token, deadline_ms } => {
                return Step::AwaitCall { token, deadline_ms }
            }
            Step::ReadBody { max_bytes } => request.first_body = Some(max_bytes),
            Step::Continue => {}
        }
        request.at = At::Second;
        let step = self.then.on_request_headers(&mut request.then, cx);
        self.after_then(step, request)
    }

    fn after_then(&self, step: Step, request: &mut ThenRequest<A::Request, B::Request>) -> Step {
        match step {
            Step::ReadBody { max_bytes } => {
                request.then_body = Some(max_bytes);
                request.combined()
            }
            Step::Continue => request.combined(),
            other => other,
        }
    }
}

impl<A: Stage, B: Stage> Stage for Then<A, B> {
    type Request = ThenRequest<A::Request, B::Request>;

    fn needs(&self) -> Needs {
        self.first.needs().merge(self.then.needs())
    }

    fn on_request_headers(&self, request: &mut Self::Request, cx: &mut Exchange<'_>) -> Step {
        let step = self.first.on_request_headers(&mut request.first, cx);
        self.after_first(step, request, cx)
    }

    fn on_resume(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        timed_out: bool,
    ) -> Step {
        match request.at {
            At::First => {
                let step = self.first.on_resume(&mut request.first, cx, timed_out);
                self.after_first(step, request, cx)
            }
            At::Second => {
                let step = self.then.on_resume(&mut request.then, cx, timed_out);
                self.after_then(step, request)
            }
        }
    }

    fn on_request_body(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        body: &[u8],
    ) -> BodyStep {
        // The second stage sees the body as the first one left it.
        let mut replaced: Option<Vec<u8>> = None;
        if let Some(max) = request.first_body {
            let seen = body.get(..max.saturating_add(1)).unwrap_or(body);
            match self.first.on_request_body(&mut request.first, cx, seen) {
                BodyStep::Refuse(r) => return BodyStep::Refuse(r),
                BodyStep::Replace(b) => replaced = Some(b),
                BodyStep::Continue => {}
            }
        }
        if let Some(max) = request.then_body {
            let current = replaced.as_deref().unwrap_or(body);
            let seen = current.get(..max.saturating_add(1)).unwrap_or(current);
            match self.then.on_request_body(&mut request.then, cx, seen) {
                BodyStep::Continue => {}
                other => return other,
            }
        }
        replaced.map_or(BodyStep::Continue, BodyStep::Replace)
    }

    fn on_response_headers(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
    ) -> ResponseStep {
        let first = self.first.on_response_headers(&mut request.first, cx);
        let then = self.then.on_response_headers(&mut request.then, cx);
        request.first_response = (first != ResponseStep::Continue).then_some(first);
        request.then_response = (then != ResponseStep::Continue).then_some(then);
        first.and(then)
    }

    fn on_response_body(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        body: &[u8],
        complete: bool,
    ) -> ResponseBodyStep {
        let mut replaced: Option<Vec<u8>> = None;
        if request.first_response.is_some() {
            if let ResponseBodyStep::Replace(b) =
                self.first
                    .on_response_body(&mut request.first, cx, body, complete)
            {
                replaced = Some(b);
            }
        }
        if request.then_response.is_some() {
            let current = replaced.as_deref().unwrap_or(body);
            if let ResponseBodyStep::Replace(b) =
                self.then
                    .on_response_body(&mut request.then, cx, current, complete)
            {
                replaced = Some(b);
            }
        }
        replaced.map_or(ResponseBodyStep::Continue, ResponseBodyStep::Replace)
    }

    fn on_call_response(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        token: u32,
        response: &CallResponse,
    ) -> Option<Step> {
        if let Some(step) = self
            .first
            .on_call_response(&mut request.first, cx, token, response)
        {
            return Some(match request.at {
                At::First => self.after_first(step, request, cx),
                At::Second => step,
            });
        }
        let step = self
            .then
            .on_call_response(&mut request.then, cx, token, response)?;
        Some(match request.at {
            At::Second => self.after_then(step, request),
            At::First => step,
        })
    }

    fn on_log(&self, request: &mut Self::Request, cx: &mut Exchange<'_>) {
        self.first.on_log(&mut request.first, cx);
        self.then.on_log(&mut request.then, cx);
    }

    fn on_tick(&self, host: &dyn Host) -> Wake {
        let first = self.first.on_tick(host);
        first.or(self.then.on_tick(host))
    }

    fn on_root_call_response(
        &self,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) -> Option<Wake> {
        self.first
            .on_root_call_response(token, response, host)
            .or_else(|| self.then.on_root_call_response(token, response, host))
    }
}

/// A stage that may be off: `None` does nothing at every event.
impl<S: Stage> Stage for Option<S> {
    type Request = S::Request;

    fn needs(&self) -> Needs {
        self.as_ref().map(Stage::needs).unwrap_or_default()
    }

    fn on_request_headers(&self, request: &mut Self::Request, cx: &mut Exchange<'_>) -> Step {
        match self {
            Some(s) => s.on_request_headers(request, cx),
            None => Step::Continue,
        }
    }

    fn on_resume(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        timed_out: bool,
    ) -> Step {
        match self {
            Some(s) => s.on_resume(request, cx, timed_out),
            None => Step::Continue,
        }
    }

    fn on_request_body(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        body: &[u8],
    ) -> BodyStep {
        match self {
            Some(s) => s.on_request_body(request, cx, body),
            None => BodyStep::Continue,
        }
    }

    fn on_response_headers(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
    ) -> ResponseStep {
        match self {
            Some(s) => s.on_response_headers(request, cx),
            None => ResponseStep::Continue,
        }
    }

    fn on_response_body(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        body: &[u8],
        complete: bool,
    ) -> ResponseBodyStep {
        match self {
            Some(s) => s.on_response_body(request, cx, body, complete),
            None => ResponseBodyStep::Continue,
        }
    }

    fn on_call_response(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        token: u32,
        response: &CallResponse,
    ) -> Option<Step> {
        self.as_ref()
            .and_then(|s| s.on_call_response(request, cx, token, response))
    }

    fn on_log(&self, request: &mut Self::Request, cx: &mut Exchange<'_>) {
        if let Some(s) = self {
            s.on_log(request, cx);
        }
    }

    fn on_tick(&self, host: &dyn Host) -> Wake {
        self.as_ref().map_or(Wake::No, |s| s.on_tick(host))
    }

    fn on_root_call_response(
        &self,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) -> Option<Wake> {
        self.as_ref()
            .and_then(|s| s.on_root_call_response(token, response, host))
    }
}
