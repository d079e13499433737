//! The promotion evaluator on a realistic cart: `cargo bench --bench promotions`.
//! 50 promotions on offer (a mix of every action, half restricted to products or
//! categories, a few exclusive) against carts of 5 and 20 lines.

use mercato::domain::money::Currency;
use mercato::domain::promotions::evaluate::{Buyer, Cart, Line, Offer, evaluate};
use mercato::domain::promotions::rules::{Action, Conditions, Promotion, PromotionRules, Stacking, Tier};
use uuid::Uuid;

fn main() {
    divan::main();
}

fn promotions(n: usize) -> Vec<Promotion> {
    (0..n)
        .map(|i| {
            let action = match i % 7 {
                0 => Action::OrderPercent { percent_bp: 500 + (i as u32 * 37) % 2000 },
                1 => Action::LinesPercent { percent_bp: 1000 },
                2 => Action::OrderFixed { amount: 500 },
                3 => Action::LinesFixed { amount: 100 },
                4 => Action::FreeShipping,
                5 => Action::BuyXGetY { buy: 2, get: 1, percent_bp: 10_000 },
                _ => Action::Tiered {
                    tiers: vec![Tier { min_subtotal: 5_000, amount_off: 500 }, Tier { min_subtotal: 10_000, amount_off: 1_500 }],
                },
            };
            let mut conditions = Conditions::default();
            if i % 2 == 0 {
                conditions.products = (0..10).map(|p| Uuid::from_u128((i * 3 + p) as u128 % 40)).collect();
                conditions.categories = vec![Uuid::from_u128(1_000 + (i % 8) as u128)];
                conditions.exclude_products = vec![Uuid::from_u128(99)];
            }
            if i % 5 == 0 {
                conditions.min_subtotal = Some(2_000);
            }
            let rules = PromotionRules {
                conditions,
                stacking: if i % 11 == 0 { Stacking::Exclusive } else { Stacking::Combinable },
                priority: (i % 13) as i32 - 6,
                max_discount: (i % 3 == 0).then_some(2_500),
                currency: Some("EUR".into()),
                ..PromotionRules::automatic(format!("promotion {i}"), action)
            };
            Promotion { id: Uuid::from_u128(10_000 + i as u128), rules }
        })
        .collect()
}

fn lines(n: usize) -> Vec<Line> {
    (0..n)
        .map(|i| Line {
            product_id: Uuid::from_u128(i as u128 * 7 % 40),
            categories: vec![Uuid::from_u128(1_000 + (i % 8) as u128), Uuid::from_u128(900)],
            collections: vec![Uuid::from_u128(3_000 + (i % 4) as u128)],
            unit_price: 499 + (i as i64 * 1_337) % 9_000,
            quantity: 1 + (i as i64 % 3),
        })
        .collect()
}

#[divan::bench(args = [5, 20])]
fn fifty_promotions(bencher: divan::Bencher, cart_lines: usize) {
    let promotions = promotions(50);
    let lines = lines(cart_lines);
    let buyer = Buyer { customer_id: Some(Uuid::from_u128(5)), previous_orders: 2, segments: vec!["vip".into()] };
    let offers: Vec<Offer<'_>> = promotions.iter().map(|p| Offer { promotion: p, code: None, blocked: None }).collect();
    let now = time::OffsetDateTime::now_utc();
    let currency = Currency::parse("EUR").expect("a valid currency code");
    bencher.bench(|| {
        let cart = Cart { currency, lines: &lines, shipping: 495, buyer: &buyer, now };
        divan::black_box(evaluate(&cart, divan::black_box(&offers)))
    });
}

#[divan::bench]
fn no_promotions(bencher: divan::Bencher) {
    let lines = lines(5);
    let buyer = Buyer::default();
    let now = time::OffsetDateTime::now_utc();
    let currency = Currency::parse("EUR").expect("a valid currency code");
    bencher.bench(|| {
        let cart = Cart { currency, lines: &lines, shipping: 495, buyer: &buyer, now };
        divan::black_box(evaluate(&cart, &[]))
    });
}
