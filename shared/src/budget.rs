//! A budget refilled at a steady rate up to a burst, with the time passed in (sans-IO): the
//! client's pacing of frames the relay forwards, a peer's reconciliation steps.

use crate::time::UnixMillis;

#[derive(Debug, Clone)]
pub struct Budget {
    available: f64,
    refilled_at: UnixMillis,
    per_second: f64,
    burst: f64,
}

impl Budget {
    /// A budget holding its whole `burst`, refilled by `per_second`.
    pub fn full(burst: f64, per_second: f64, now: UnixMillis) -> Self {
        Self {
            available: burst,
            refilled_at: now,
            per_second,
            burst,
        }
    }

    /// Takes `amount` if that much is available; otherwise takes nothing.
    pub fn try_spend(&mut self, now: UnixMillis, amount: f64) -> bool {
        self.try_spend_keeping(now, amount, 0.0)
    }

    /// Takes `amount` if that much is available with `reserve` left over; otherwise takes
    /// nothing. Lower-priority spending keeps a reserve for the rest.
    pub fn try_spend_keeping(&mut self, now: UnixMillis, amount: f64, reserve: f64) -> bool {
        let elapsed = now.0.saturating_sub(self.refilled_at.0) as f64 / 1000.0;
        self.available = (self.available + elapsed * self.per_second).min(self.burst);
        self.refilled_at = self.refilled_at.max(now);
        let fits = self.available - amount >= reserve;
        if fits {
            self.available -= amount;
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_budget_allows_its_burst_then_its_rate_and_never_more_than_the_burst() {
        let start = UnixMillis(10_000);
        let mut budget = Budget::full(3.0, 2.0, start);
        assert!((0..3).all(|_| budget.try_spend(start, 1.0)));
        assert!(!budget.try_spend(start, 1.0));
        let later = UnixMillis(10_500);
        assert!(budget.try_spend(later, 1.0));
        assert!(!budget.try_spend(later, 1.0));
        let much_later = UnixMillis(100_000);
        assert!(
            !budget.try_spend(much_later, 4.0),
            "refills stop at the burst"
        );
        assert!(budget.try_spend(much_later, 3.0));
        // A clock that steps back refills nothing.
        assert!(!budget.try_spend(UnixMillis(5_000), 1.0));
    }

    #[test]
    fn spending_with_a_reserve_leaves_the_reserve_for_others() {
        let start = UnixMillis(10_000);
        let mut budget = Budget::full(10.0, 1.0, start);
        assert!(budget.try_spend_keeping(start, 6.0, 4.0));
        assert!(
            !budget.try_spend_keeping(start, 1.0, 4.0),
            "the reserve is kept"
        );
        assert!(budget.try_spend(start, 4.0), "and others may spend it");
    }
}
