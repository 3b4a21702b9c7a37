//! A `ShouldRateLimit` call decided by limitador: the request's domain is
//! limitador's namespace, and each descriptor is checked on its own, with
//! its entries bound as `descriptors[0]` (the same binding as Kuadrant's
//! limitador-server), so a limit reads:
//!
//! ```json
//! {"namespace": "public-api", "name": "per_client", "max_value": 100, "seconds": 60,
//!  "conditions": ["descriptors[0].rule == 'per_client'"],
//!  "variables": ["descriptors[0].client_address"]}
//! ```
//!
//! A request passes only if every descriptor is within its limits, and then
//! counts for each; a refused request counts nowhere. Admission uses
//! limitador's reservations: one Lua script in Redis checks every counter of
//! a descriptor and holds the hits atomically, so concurrent requests from
//! any number of proxies never take more than a limit (a hold expires on
//! its own if this server stops between reserving and committing). Then the
//! holds are committed (counted) or released.

use std::collections::HashMap;
use std::time::Duration;

use limitador::counter::Counter;
use limitador::errors::LimitadorError;
use limitador::limit::{Context, Namespace};
use limitador::reservation::ReserveResult;
use limitador::AsyncRateLimiter;

use crate::proto::{
    self, Code, DescriptorStatus, RateLimit, RateLimitDescriptor, RateLimitRequest,
    RateLimitResponse, Unit,
};

/// How long a hold lasts if it is never committed or released.
pub const RESERVATION_TTL: Duration = Duration::from_secs(5);

/// The hits a descriptor counts: its own `hits_addend`, else the request's,
/// and at least one.
pub fn hits(request: &RateLimitRequest, descriptor: &RateLimitDescriptor) -> u64 {
    descriptor
        .hits_addend
        .map(|h| h.value)
        .filter(|h| *h > 0)
        .unwrap_or(u64::from(request.hits_addend))
        .max(1)
}

/// The limitador context of a descriptor: its entries as `descriptors[0]`.
pub fn context(descriptor: &RateLimitDescriptor) -> Context<'static> {
    let entries: HashMap<String, String> = descriptor
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let mut ctx = Context::default();
    ctx.list_binding("descriptors".to_string(), vec![entries]);
    ctx
}

/// The RLS unit of a window of `seconds`: the API can only name these
/// lengths; any other window is `UNKNOWN` (the limit is still enforced,
/// and its `requests_per_unit` is the limit's whole value).
pub fn unit(seconds: u64) -> Unit {
    match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86_400 => Unit::Day,
        604_800 => Unit::Week,
        _ => Unit::Unknown,
    }
}

fn duration(d: Duration) -> proto::Duration {
    proto::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The status of one descriptor: its verdict, and the most restrictive of
/// its counters (fewest hits left). `given_back` hits are added to what
/// remains when the descriptor's hold was released because another
/// descriptor refused the request.
pub fn status(limited: bool, counters: &[Counter], given_back: u64) -> DescriptorStatus {
    let code = if limited { Code::OverLimit } else { Code::Ok };
    let tightest = counters
        .iter()
        .min_by_key(|c| c.remaining().unwrap_or(c.max_value()));
    let Some(counter) = tightest else {
        // No limit applies to this descriptor.
        return DescriptorStatus {
            code: code as i32,
            ..DescriptorStatus::default()
        };
    };
    let max = counter.max_value();
    let remaining = counter
        .remaining()
        .unwrap_or(max)
        .saturating_add(given_back)
        .min(max);
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            name: counter.limit().name().unwrap_or_default().to_string(),
            requests_per_unit: u32::try_from(max).unwrap_or(u32::MAX),
            unit: unit(counter.window().as_secs()) as i32,
        }),
        limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(duration(counter.expires_in().unwrap_or(counter.window()))),
    }
}

/// Decides a `ShouldRateLimit` call.
pub async fn should_rate_limit(
    limiter: &AsyncRateLimiter,
    request: &RateLimitRequest,
) -> Result<RateLimitResponse, LimitadorError> {
    let namespace = Namespace::from(request.domain.as_str());
    let mut reserved: Vec<(Context<'static>, u64, ReserveResult)> = Vec::new();
    for descriptor in &request.descriptors {
        let ctx = context(descriptor);
        let hits = hits(request, descriptor);
        let result = limiter
            .reserve(&namespace, &ctx, hits, Some(RESERVATION_TTL))
            .await?;
        reserved.push((ctx, hits, result));
    }
    let limited = reserved.iter().any(|(_, _, r)| r.limited);
    let mut statuses = Vec::with_capacity(reserved.len());
    for (ctx, hits, result) in &reserved {
        let counted = if limited { 0 } else { *hits };
        if let Some(id) = &result.reservation_id {
            limiter
                .commit_reservation(&namespace, ctx, Some(id), counted)
                .await?;
        }
        let given_back = if limited && !result.limited { *hits } else { 0 };
        statuses.push(status(result.limited, &result.counters, given_back));
    }
    Ok(RateLimitResponse {
        overall_code: if limited { Code::OverLimit } else { Code::Ok } as i32,
        statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Entry, UInt64Value};
    use limitador::limit::Limit;
    use std::sync::Arc;

    fn descriptor(entries: &[(&str, &str)], hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            hits_addend: hits.map(|value| UInt64Value { value }),
        }
    }

    fn limit() -> Limit {
        let mut limit = Limit::new(
            "api",
            10,
            60,
            vec!["descriptors[0].rule == 'per_client'".try_into().unwrap()],
            vec!["descriptors[0].client_address".try_into().unwrap()],
        );
        limit.set_name("per_client".into());
        limit
    }

    #[test]
    fn hits_default_to_one_and_a_descriptor_overrides_the_request() {
        let mut request = RateLimitRequest::default();
        assert_eq!(hits(&request, &descriptor(&[], None)), 1);
        request.hits_addend = 7;
        assert_eq!(hits(&request, &descriptor(&[], None)), 7);
        assert_eq!(hits(&request, &descriptor(&[], Some(500))), 500);
        assert_eq!(hits(&request, &descriptor(&[], Some(0))), 7);
    }

    #[test]
    fn a_descriptor_is_bound_as_descriptors_0() {
        let limit = limit();
        let matching = context(&descriptor(
            &[("rule", "per_client"), ("client_address", "10.0.0.1")],
            None,
        ));
        assert!(limit.applies(&matching));
        let counter = Counter::new(Arc::new(limit.clone()), &matching)
            .unwrap()
            .unwrap();
        assert_eq!(
            counter.set_variables().get("descriptors[0].client_address"),
            Some(&"10.0.0.1".to_string())
        );
        let other_rule = context(&descriptor(&[("rule", "login")], None));
        assert!(!limit.applies(&other_rule));
        // A descriptor without the variable's entry gets no counter: the
        // limit does not apply to it.
        let no_client = context(&descriptor(&[("rule", "per_client")], None));
        assert!(Counter::new(Arc::new(limit), &no_client).unwrap().is_none());
    }

    #[test]
    fn units_name_only_their_own_lengths() {
        for (seconds, want) in [
            (1, Unit::Second),
            (60, Unit::Minute),
            (3600, Unit::Hour),
            (86_400, Unit::Day),
            (604_800, Unit::Week),
            (2, Unit::Unknown),
            (90, Unit::Unknown),
        ] {
            assert_eq!(unit(seconds), want, "{seconds}");
        }
    }

    #[test]
    fn the_status_is_the_tightest_counter() {
        let ctx = context(&descriptor(
            &[("rule", "per_client"), ("client_address", "10.0.0.1")],
            None,
        ));
        let mut wide = Counter::new(
            Arc::new(Limit::new("api", 1000, 3600, Vec::new(), Vec::new())),
            &ctx,
        )
        .unwrap()
        .unwrap();
        wide.set_remaining(900);
        wide.set_expires_in(Duration::from_secs(3000));
        let mut tight = Counter::new(Arc::new(limit()), &ctx).unwrap().unwrap();
        tight.set_remaining(3);
        tight.set_expires_in(Duration::from_millis(12_500));
        let s = status(false, &[wide.clone(), tight.clone()], 0);
        assert_eq!(s.code, Code::Ok as i32);
        assert_eq!(
            s.current_limit,
            Some(RateLimit {
                name: "per_client".into(),
                requests_per_unit: 10,
                unit: Unit::Minute as i32,
            })
        );
        assert_eq!(s.limit_remaining, 3);
        assert_eq!(
            s.duration_until_reset,
            Some(proto::Duration {
                seconds: 12,
                nanos: 500_000_000
            })
        );
        // Released because another descriptor refused: the hits come back,
        // never above the limit.
        assert_eq!(status(false, &[tight.clone()], 2).limit_remaining, 5);
        assert_eq!(status(false, &[tight], 50).limit_remaining, 10);
        let over = status(true, &[wide], 0);
        assert_eq!(over.code, Code::OverLimit as i32);
        // No limit for the descriptor: OK, nothing else.
        let none = status(false, &[], 0);
        assert_eq!((none.code, none.current_limit), (Code::Ok as i32, None));
    }
}
