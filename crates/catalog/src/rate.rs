//! Per-tenant request rates: a tier's `requests_per_second` and `request_burst`, enforced by
//! a GCRA limiter per tenant (governor) on each server. A limiter is rebuilt when its tier's
//! quota changes. Servers sharing a catalog each admit the full rate.

use std::collections::HashMap;

use bulkhead_core::TenantId;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::TierLimits;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct RateLimits {
    tenants: Mutex<HashMap<TenantId, (Quota, DefaultDirectRateLimiter)>>,
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

    /// Forgets a deleted tenant's limiter.
    pub(crate) fn forget(&self, tenant: &TenantId) {
        self.tenants.lock().remove(tenant);
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
