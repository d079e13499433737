//! Usage limits, shared out like stock. Checkout locks the counters of the
//! promotions a batch of orders uses, reads them once, and this decides in
//! arrival order which orders get their promotions: an order gets all of them
//! or is refused, and no counter ever passes its limit.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::evaluate::Reason;

/// A promotion's counters as locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub uses: i64,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    /// Active, started and not ended.
    pub running: bool,
    /// The rules' version (their last change).
    pub version: String,
}

/// One promotion an order wants to redeem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub promotion_id: Uuid,
    /// A single-use code, which may be redeemed once.
    pub single_use_code: Option<String>,
    /// The customer id, or `email:` and the address for a guest.
    pub customer: String,
    /// The version of the rules the order was priced with.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub promotion_id: Uuid,
    pub reason: Reason,
}

#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub counters: BTreeMap<Uuid, Counter>,
    /// Live redemptions per (promotion, customer).
    pub by_customer: BTreeMap<(Uuid, String), i64>,
    /// Single-use codes already redeemed.
    pub used_codes: BTreeSet<String>,
}

impl Usage {
    /// Takes every claim of one order, or none and says which one failed.
    pub fn take(&mut self, claims: &[Claim]) -> Result<(), Refusal> {
        for c in claims {
            let refuse = |reason| Err(Refusal { promotion_id: c.promotion_id, reason });
            let Some(counter) = self.counters.get(&c.promotion_id) else { return refuse(Reason::Inactive) };
            if !counter.running {
                return refuse(Reason::Inactive);
            }
            if counter.version != c.version {
                return refuse(Reason::Changed);
            }
            if counter.usage_limit.is_some_and(|l| counter.uses >= l) {
                return refuse(Reason::Exhausted);
            }
            let mine = self.by_customer.get(&(c.promotion_id, c.customer.clone())).copied().unwrap_or(0);
            if counter.per_customer_limit.is_some_and(|l| mine >= l) {
                return refuse(Reason::AlreadyUsed);
            }
            if c.single_use_code.as_ref().is_some_and(|code| self.used_codes.contains(code)) {
                return refuse(Reason::AlreadyUsed);
            }
        }
        for c in claims {
            if let Some(counter) = self.counters.get_mut(&c.promotion_id) {
                counter.uses += 1;
            }
            *self.by_customer.entry((c.promotion_id, c.customer.clone())).or_insert(0) += 1;
            if let Some(code) = &c.single_use_code {
                self.used_codes.insert(code.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claim(p: u128, customer: &str, code: Option<&str>) -> Claim {
        Claim {
            promotion_id: Uuid::from_u128(p),
            single_use_code: code.map(str::to_owned),
            customer: customer.into(),
            version: "v1".into(),
        }
    }

    fn usage(limit: Option<i64>, per_customer: Option<i64>) -> Usage {
        Usage {
            counters: BTreeMap::from([
                (
                    Uuid::from_u128(1),
                    Counter {
                        uses: 0,
                        usage_limit: limit,
                        per_customer_limit: per_customer,
                        running: true,
                        version: "v1".into(),
                    },
                ),
                (
                    Uuid::from_u128(2),
                    Counter { uses: 0, usage_limit: None, per_customer_limit: None, running: true, version: "v1".into() },
                ),
            ]),
            ..Usage::default()
        }
    }

    #[test]
    fn limits_hold_per_promotion_customer_and_code() {
        let mut u = usage(Some(2), Some(1));
        assert!(u.take(&[claim(1, "a", None)]).is_ok());
        assert_eq!(u.take(&[claim(1, "a", None)]).unwrap_err().reason, Reason::AlreadyUsed);
        assert!(u.take(&[claim(1, "b", None)]).is_ok());
        assert_eq!(u.take(&[claim(1, "c", None)]).unwrap_err().reason, Reason::Exhausted);
        assert!(u.take(&[claim(2, "c", Some("ONCE"))]).is_ok());
        assert_eq!(u.take(&[claim(2, "d", Some("ONCE"))]).unwrap_err().reason, Reason::AlreadyUsed);
        u.counters.get_mut(&Uuid::from_u128(2)).unwrap().version = "v2".into();
        assert_eq!(u.take(&[claim(2, "e", None)]).unwrap_err().reason, Reason::Changed);
        u.counters.get_mut(&Uuid::from_u128(2)).unwrap().running = false;
        assert_eq!(u.take(&[claim(2, "e", None)]).unwrap_err().reason, Reason::Inactive);
    }

    #[test]
    fn an_order_takes_all_its_claims_or_none() {
        let mut u = usage(Some(1), None);
        u.take(&[claim(1, "a", None)]).unwrap();
        let before = u.counters[&Uuid::from_u128(2)].clone();
        assert!(u.take(&[claim(2, "b", None), claim(1, "b", None)]).is_err());
        assert_eq!(u.counters[&Uuid::from_u128(2)], before);
    }

    proptest! {
        #[test]
        fn no_counter_passes_its_limit(
            limit in 0i64..20,
            per_customer in 1i64..4,
            orders in proptest::collection::vec(0u8..6, 0..100),
        ) {
            let mut u = usage(Some(limit), Some(per_customer));
            let mut granted: BTreeMap<u8, i64> = BTreeMap::new();
            let mut total = 0;
            for customer in orders {
                if u.take(&[claim(1, &customer.to_string(), None)]).is_ok() {
                    total += 1;
                    *granted.entry(customer).or_insert(0) += 1;
                }
            }
            prop_assert!(total <= limit);
            prop_assert!(granted.values().all(|n| *n <= per_customer));
            prop_assert_eq!(u.counters[&Uuid::from_u128(1)].uses, total);
        }
    }
}
