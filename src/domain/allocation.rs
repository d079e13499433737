//! Sharing stock among a batch of orders placed together.
//!
//! Checkout combines concurrent reservations into one transaction. The stock rows
//! are locked, read once, and the orders are served in arrival order by this pure
//! function; the transaction then writes one conditional update per stock row.
//! Each line is taken whole from the first location (by priority) that still has
//! enough, as a single reservation would; an order gets all its lines or none.

use std::collections::BTreeMap;

use uuid::Uuid;

/// What one location can still give of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    pub location: Uuid,
    pub quantity: i64,
}

/// A line given to an order: `quantity` of `variant` from `location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub variant: Uuid,
    pub location: Uuid,
    pub quantity: i64,
}

/// A line that did not fit anywhere when its order's turn came, with what the
/// variant had left in all its locations together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    pub variant: Uuid,
    pub requested: i64,
    pub available: i64,
}

/// The outcome of one allocation: per order (in the given order) its grants or
/// its shortages, and what each variant has left afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub orders: Vec<Result<Vec<Grant>, Vec<Short>>>,
    pub left: BTreeMap<Uuid, Vec<Available>>,
}

impl Allocation {
    /// The total taken from each (variant, location): one conditional update each.
    pub fn totals(&self) -> BTreeMap<(Uuid, Uuid), i64> {
        let mut totals = BTreeMap::new();
        for grant in self.orders.iter().flatten().flatten() {
            *totals.entry((grant.variant, grant.location)).or_insert(0) += grant.quantity;
        }
        totals
    }

    /// Variants with nothing left anywhere.
    pub fn sold_out(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.left.iter().filter(|(_, at)| at.iter().all(|a| a.quantity <= 0)).map(|(v, _)| *v)
    }

    /// Variants with something left somewhere.
    pub fn in_stock(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.left.iter().filter(|(_, at)| at.iter().any(|a| a.quantity > 0)).map(|(v, _)| *v)
    }
}

/// Serves `orders` (each a list of (variant, quantity) lines) in the order given
/// from `stock` (per variant, its locations in priority order).
pub fn allocate(stock: BTreeMap<Uuid, Vec<Available>>, orders: &[Vec<(Uuid, i64)>]) -> Allocation {
    allocate_gated(stock, orders, |_| true)
}

/// Like [`allocate`], but an order whose stock fits must also pass `gate` (given
/// its index), which takes what else it needs (promotion uses) in the same
/// arrival order. Refused there, the order takes no stock and its outcome is an
/// empty list of shortages.
pub fn allocate_gated(
    mut stock: BTreeMap<Uuid, Vec<Available>>,
    orders: &[Vec<(Uuid, i64)>],
    mut gate: impl FnMut(usize) -> bool,
) -> Allocation {
    let mut outcome = Vec::with_capacity(orders.len());
    for (index, lines) in orders.iter().enumerate() {
        let mut grants = Vec::with_capacity(lines.len());
        let mut shorts = Vec::new();
        for &(variant, requested) in lines {
            let at = stock.get(&variant).map(Vec::as_slice).unwrap_or_default();
            // Lines of one order are different variants, so taking from `stock`
            // only after the whole order fits is exact.
            match at.iter().find(|a| a.quantity >= requested) {
                Some(a) => grants.push(Grant { variant, location: a.location, quantity: requested }),
                None => shorts.push(Short { variant, requested, available: at.iter().map(|a| a.quantity.max(0)).sum() }),
            }
        }
        if shorts.is_empty() && !gate(index) {
            outcome.push(Err(Vec::new()));
        } else if shorts.is_empty() {
            for g in &grants {
                if let Some(a) = stock.get_mut(&g.variant).and_then(|at| at.iter_mut().find(|a| a.location == g.location)) {
                    a.quantity -= g.quantity;
                }
            }
            outcome.push(Ok(grants));
        } else {
            outcome.push(Err(shorts));
        }
    }
    Allocation { orders: outcome, left: stock }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn one_location(quantity: i64) -> BTreeMap<Uuid, Vec<Available>> {
        BTreeMap::from([(id(1), vec![Available { location: id(100), quantity }])])
    }

    #[test]
    fn an_order_refused_by_the_gate_leaves_its_stock_to_the_next() {
        let orders = vec![vec![(id(1), 2)], vec![(id(1), 2)], vec![(id(1), 2)]];
        let a = allocate_gated(one_location(4), &orders, |i| i != 0);
        assert_eq!(a.orders[0], Err(vec![]));
        assert!(a.orders[1].is_ok() && a.orders[2].is_ok());
        assert_eq!(a.totals(), BTreeMap::from([((id(1), id(100)), 4)]));
    }

    #[test]
    fn first_come_first_served_on_one_hot_variant() {
        let orders = vec![vec![(id(1), 2)], vec![(id(1), 2)], vec![(id(1), 1)], vec![(id(1), 1)]];
        let a = allocate(one_location(5), &orders);
        assert!(a.orders[0].is_ok() && a.orders[1].is_ok() && a.orders[2].is_ok());
        assert_eq!(a.orders[3], Err(vec![Short { variant: id(1), requested: 1, available: 0 }]));
        assert_eq!(a.totals(), BTreeMap::from([((id(1), id(100)), 5)]));
        assert_eq!(a.sold_out().collect::<Vec<_>>(), vec![id(1)]);
        assert_eq!(a.in_stock().count(), 0);
    }

    #[test]
    fn a_smaller_later_order_may_fit_where_a_bigger_one_did_not() {
        let a = allocate(one_location(2), &[vec![(id(1), 3)], vec![(id(1), 2)]]);
        assert_eq!(a.orders[0], Err(vec![Short { variant: id(1), requested: 3, available: 2 }]));
        assert_eq!(a.orders[1], Ok(vec![Grant { variant: id(1), location: id(100), quantity: 2 }]));
    }

    #[test]
    fn an_order_takes_all_its_lines_or_none() {
        let mut stock = one_location(1);
        stock.insert(id(2), vec![Available { location: id(100), quantity: 0 }]);
        let a = allocate(stock, &[vec![(id(1), 1), (id(2), 1)], vec![(id(1), 1)]]);
        assert_eq!(a.orders[0], Err(vec![Short { variant: id(2), requested: 1, available: 0 }]));
        assert!(a.orders[1].is_ok(), "the refused order took nothing");
    }

    #[test]
    fn lines_go_to_the_first_location_with_enough() {
        let stock = BTreeMap::from([(
            id(1),
            vec![Available { location: id(100), quantity: 1 }, Available { location: id(200), quantity: 5 }],
        )]);
        let a = allocate(stock, &[vec![(id(1), 2)], vec![(id(1), 1)]]);
        assert_eq!(a.orders[0], Ok(vec![Grant { variant: id(1), location: id(200), quantity: 2 }]));
        assert_eq!(a.orders[1], Ok(vec![Grant { variant: id(1), location: id(100), quantity: 1 }]));
    }

    /// Stock per variant per location, and orders as (variant index, quantity) lines.
    type Batch = (Vec<Vec<i64>>, Vec<Vec<(u8, i64)>>);

    fn batch() -> impl Strategy<Value = Batch> {
        // Up to 3 variants at up to 3 locations; orders of up to 3 distinct variants.
        let stock = prop::collection::vec(prop::collection::vec(0i64..8, 1..4), 3);
        let order = prop::collection::btree_map(0u8..3, 1i64..4, 1..4).prop_map(|m| m.into_iter().collect::<Vec<_>>());
        (stock, prop::collection::vec(order, 0..40))
    }

    proptest! {
        #[test]
        fn never_gives_more_than_there_is_and_serves_in_arrival_order((levels, orders) in batch()) {
            let stock: BTreeMap<Uuid, Vec<Available>> = levels.iter().enumerate().map(|(v, at)| {
                (id(v as u128), at.iter().enumerate().map(|(l, q)| Available { location: id(100 + l as u128), quantity: *q }).collect())
            }).collect();
            let orders: Vec<Vec<(Uuid, i64)>> =
                orders.iter().map(|o| o.iter().map(|(v, q)| (id(u128::from(*v)), *q)).collect()).collect();
            let a = allocate(stock.clone(), &orders);
            // Nothing taken beyond a location's stock, and `left` is what remains.
            for ((variant, location), taken) in a.totals() {
                let before = stock[&variant].iter().find(|x| x.location == location).unwrap().quantity;
                let after = a.left[&variant].iter().find(|x| x.location == location).unwrap().quantity;
                prop_assert!(taken <= before);
                prop_assert_eq!(after, before - taken);
            }
            // Replaying in arrival order: a granted order fitted at its turn, a refused
            // one had a line that fitted nowhere at its turn.
            let mut replay = stock.clone();
            for (lines, result) in orders.iter().zip(&a.orders) {
                match result {
                    Ok(grants) => {
                        prop_assert_eq!(grants.len(), lines.len());
                        for g in grants {
                            let at = replay.get_mut(&g.variant).unwrap().iter_mut().find(|x| x.location == g.location).unwrap();
                            prop_assert!(at.quantity >= g.quantity);
                            at.quantity -= g.quantity;
                        }
                    }
                    Err(shorts) => {
                        prop_assert!(!shorts.is_empty());
                        for s in shorts {
                            prop_assert!(replay[&s.variant].iter().all(|x| x.quantity < s.requested));
                        }
                    }
                }
            }
        }
    }
}
