//! The gRPC service: `envoy.service.ratelimit.v3.RateLimitService`, one
//! unary method, served by tonic. Written by hand instead of generated from
//! Envoy's `.proto` files (no protoc at build time): route the one path,
//! decode with prost, answer, and `UNIMPLEMENTED` for anything else.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use limitador::AsyncRateLimiter;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

use crate::decide::should_rate_limit;
use crate::proto::{RateLimitRequest, RateLimitResponse};

/// The service's full name.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// The method's path.
pub const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// The rate-limit service over a limiter.
pub struct RateLimitService {
    limiter: AsyncRateLimiter,
    /// The longest one call may take (Redis unreachable, say) before it is
    /// answered `UNAVAILABLE`.
    call_timeout: Duration,
}

impl RateLimitService {
    /// The service over `limiter`.
    pub fn new(limiter: AsyncRateLimiter, call_timeout: Duration) -> Self {
        RateLimitService {
            limiter,
            call_timeout,
        }
    }

    /// Answers one call: limitador's verdict, or `UNAVAILABLE` when its
    /// storage fails or is too slow (the caller applies its failure mode).
    pub async fn answer(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        match tokio::time::timeout(self.call_timeout, should_rate_limit(&self.limiter, request))
            .await
        {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                eprintln!("palisade-rls: storage error: {e}");
                Err(Status::unavailable("rate-limit storage unavailable"))
            }
            Err(_) => {
                eprintln!(
                    "palisade-rls: storage did not answer within {:?}",
                    self.call_timeout
                );
                Err(Status::unavailable("rate-limit storage too slow"))
            }
        }
    }
}

/// The tonic service: routes `ShouldRateLimit` to a [`RateLimitService`].
#[derive(Clone)]
pub struct RateLimitServer {
    inner: Arc<RateLimitService>,
}

impl RateLimitServer {
    /// A server for `service`.
    pub fn new(service: RateLimitService) -> Self {
        RateLimitServer {
            inner: Arc::new(service),
        }
    }
}

impl NamedService for RateLimitServer {
    const NAME: &'static str = SERVICE;
}

struct ShouldRateLimit(Arc<RateLimitService>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<tonic::Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move {
            service
                .answer(request.get_ref())
                .await
                .map(tonic::Response::new)
        })
    }
}

impl<B> Service<http::Request<B>> for RateLimitServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SHOULD_RATE_LIMIT {
            return Box::pin(async move {
                Ok(Status::new(Code::Unimplemented, "no such method").into_http())
            });
        }
        let method = ShouldRateLimit(Arc::clone(&self.inner));
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}
