//! Per-tenant request rates and concurrency: a tier's `requests_per_second` and
//! `request_burst`, enforced by a GCRA limiter per tenant (governor), and its
//! `max_concurrent_requests`, a count of the tenant's requests in flight. Both hold per server:
//! servers sharing a catalog each admit the full amount. A limiter is rebuilt when its tier's
//! quota changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bulkhead_core::TenantId;
use bulkhead_core::access::Held;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::TierLimits;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct RateLimits {
    tenants: Mutex<HashMap<TenantId, (Quota, DefaultDirectRateLimiter)>>,
    in_flight: Mutex<HashMap<TenantId, Arc<AtomicU32>>>,
}

/// One of a tenant's concurrent request slots, given back when dropped.
struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RateLimits {
    /// Lets one request of `tenant` through, or refuses it with `429 rate_limited` when the
    /// tenant is over its tier's rate.
    pub(crate) fn admit(&self, tenant: &TenantId, limits: &TierLimits) -> Result<(), Error> {
        let Some(rate) = limits.requests_per_second else {
            return Ok(());
        };
        let quota = Quota::per_second(rate).allow_burst(limits.request_burst.unwrap_or(rate));
        let mut tenants = self.tenants.lock();
        let entry = tenants
            .entry(tenant.clone())
            .or_insert_with(|| (quota, RateLimiter::direct(quota)));
        if entry.0 != quota {
            *entry = (quota, RateLimiter::direct(quota));
        }
        entry.1.check().map_err(|_| {
            Error::new(
                ErrorKind::TooManyRequests,
                "rate_limited",
                format!(
                    "tenant {tenant} is over its tier's rate of {rate} requests per second; \
                     retry in a second (Retry-After)"
                ),
            )
        })
    }

    /// Takes one of the tenant's concurrent request slots (none to take when its tier sets no
    /// limit), or refuses with `429 too_many_concurrent_requests`.
    pub(crate) fn enter(
        &self,
        tenant: &TenantId,
        limits: &TierLimits,
    ) -> Result<Option<Held>, Error> {
        let Some(max) = limits.max_concurrent_requests else {
            return Ok(None);
        };
        let count = Arc::clone(self.in_flight.lock().entry(tenant.clone()).or_default());
        let slot = Slot(count);
        // The slot is counted from here on; dropping it on refusal gives it back.
        if slot.0.fetch_add(1, Ordering::AcqRel) >= max.get() {
            return Err(Error::new(
                ErrorKind::TooManyRequests,
                "too_many_concurrent_requests",
                format!(
                    "tenant {tenant} already has {max} requests in flight, its tier's limit; \
                     retry in a second (Retry-After)"
                ),
            ));
        }
        Ok(Some(Held(Arc::new(slot))))
    }

    /// Forgets a deleted tenant's limiter and counter.
    pub(crate) fn forget(&self, tenant: &TenantId) {
        self.tenants.lock().remove(tenant);
        self.in_flight.lock().remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn limits(rate: Option<u32>, burst: Option<u32>) -> TierLimits {
        TierLimits {
            requests_per_second: rate.and_then(NonZeroU32::new),
            request_burst: burst.and_then(NonZeroU32::new),
            ..TierLimits::default()
        }
    }

    #[test]
    fn concurrent_slots_are_bounded_and_given_back_when_dropped() {
        let rates = RateLimits::default();
        let acme = TenantId::parse("acme").unwrap();
        let two = TierLimits {
            max_concurrent_requests: NonZeroU32::new(2),
            ..TierLimits::default()
        };
        let first = rates.enter(&acme, &two).unwrap().unwrap();
        let second = rates.enter(&acme, &two).unwrap().unwrap();
        let err = rates.enter(&acme, &two).unwrap_err();
        assert_eq!(err.code, "too_many_concurrent_requests");
        // A refusal takes nothing: still exactly two out.
        assert!(rates.enter(&acme, &two).is_err());
        let shared = second.clone();
        drop(second);
        assert!(
            rates.enter(&acme, &two).is_err(),
            "a clone still holds the slot"
        );
        drop(shared);
        let third = rates.enter(&acme, &two).unwrap();
        assert!(third.is_some());
        drop((first, third));
        assert!(
            rates
                .enter(&acme, &TierLimits::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_tenant_gets_its_burst_then_is_refused_and_others_are_not_touched() {
        let rates = RateLimits::default();
        let (acme, globex) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("globex").unwrap(),
        );
        let tight = limits(Some(1), Some(3));
        for _ in 0..3 {
            rates.admit(&acme, &tight).unwrap();
        }
        let err = rates.admit(&acme, &tight).unwrap_err();
        assert_eq!(
            (err.kind, err.code.as_ref()),
            (ErrorKind::TooManyRequests, "rate_limited")
        );
        assert!(
            err.message.contains("1 requests per second"),
            "{}",
            err.message
        );
        rates.admit(&globex, &tight).unwrap();
        // No rate on the tier: never refused.
        for _ in 0..1000 {
            rates.admit(&acme, &limits(None, None)).unwrap();
        }
    }

    #[test]
    fn a_changed_quota_takes_effect_at_once() {
        let rates = RateLimits::default();
        let acme = TenantId::parse("acme").unwrap();
        rates.admit(&acme, &limits(Some(1), None)).unwrap();
        assert!(rates.admit(&acme, &limits(Some(1), None)).is_err());
        for _ in 0..50 {
            rates.admit(&acme, &limits(Some(50), None)).unwrap();
        }
    }
}
