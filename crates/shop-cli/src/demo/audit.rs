//! Whether a run kept the pipeline's promise: every valid event's effects exactly once, stock
//! conserved per SKU, every rejected input answered with its reason or in a DLQ with it, and
//! nothing else anywhere. The end-to-end test and the chaos suite both judge a run here, and
//! the figures (lost, duplicated, dead letters) come from the same counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;

use herald_ops::inspect::DeadLetterView;

use super::report::Effects;
use super::workload::{Product, Sent, Traffic};

/// What a run did, counted against what it was sent.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Distinct valid events sent (orders, system events and data events).
    pub events: usize,
    /// Of them, events whose every effect is there exactly once.
    pub applied: usize,
    /// Raw records put straight onto the stream (each must end in the router's DLQ).
    pub raw_records: usize,
    /// Records dead-lettered, in every DLQ and failure queue.
    pub dead_letters: usize,
    /// Copies of a dead letter beyond the first: the same record's letter twice, because a
    /// `SendMessage` was retried after SQS stored it but its answer was lost (a standard queue
    /// keeps both; a redrive sends one).
    pub letter_copies: usize,
    /// Effects missing: a charge, an email, a stock decision, an incident, a counted metric.
    pub lost: usize,
    /// Effects applied more than once.
    pub duplicated: usize,
    /// Orders whose stock reservation was refused (the SKU ran out).
    pub refused: usize,
    /// Every promise broken, readable; empty when the run was clean.
    pub problems: Vec<String>,
}

impl Audit {
    /// Whether every promise held.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "audit       sent {} events + {} raw records = {} applied + {} dead letters; lost {}, duplicated {}",
            self.events, self.raw_records, self.applied, self.dead_letters, self.lost, self.duplicated
        )?;
        if self.letter_copies > 0 {
            writeln!(
                f,
                "            {} more copies of a dead letter (a send retried after its answer was lost; a redrive sends one)",
                self.letter_copies
            )?;
        }
        for problem in &self.problems {
            writeln!(f, "  ✗ {problem}")?;
        }
        Ok(())
    }
}

/// Judge a run: `catalog` as seeded, the `traffic` sent, what the services answered (`sent`),
/// and the `effects` read back once the pipeline settled.
pub fn audit(catalog: &[Product], traffic: &Traffic, sent: &Sent, effects: &Effects) -> Audit {
    let mut audit = Audit {
        events: traffic.orders.len() + traffic.system_events + traffic.data_events,
        raw_records: traffic.raw_records.len(),
        dead_letters: effects.dead_letters.values().map(|l| distinct(l)).sum(),
        ..Audit::default()
    };
    audit.letter_copies =
        effects.dead_letters.values().map(Vec::len).sum::<usize>() - audit.dead_letters;
    producer_answers(traffic, sent, &mut audit);
    let order_problems = orders(traffic, effects, &mut audit);
    stock(catalog, traffic, effects, &mut audit);
    analytics(traffic, effects, &mut audit);
    let incidents = effects.incidents;
    let system_applied = incidents.min(traffic.system_events);
    tally(
        &mut audit,
        "incidents",
        traffic.system_events as i64,
        incidents as i64,
    );
    // A data event's one effect: analytics counted it.
    let samples = effects
        .analytics
        .get("type#metric_sampled")
        .map(|(c, _)| (*c).max(0) as usize)
        .unwrap_or(0);
    audit.applied =
        traffic.orders.len() - order_problems + system_applied + samples.min(traffic.data_events);
    dead_letters(traffic, effects, &mut audit);
    if audit.events + audit.raw_records != audit.applied + audit.dead_letters {
        audit.problems.push(format!(
            "sent ≠ effects + dead letters: {} events + {} raw records, {} applied + {} dead letters",
            audit.events, audit.raw_records, audit.applied, audit.dead_letters
        ));
    }
    audit
}

/// Every order placed (retries answered as placed before), every valid submission accepted;
/// every invalid one rejected, naming its attribute.
fn producer_answers(traffic: &Traffic, sent: &Sent, audit: &mut Audit) {
    let valid =
        traffic.orders.len() + traffic.duplicates + traffic.system_events + traffic.data_events;
    if sent.accepted != valid {
        audit.problems.push(format!(
            "the order service and the producer accepted {} of {valid} orders and valid submissions",
            sent.accepted
        ));
    }
    let mut named: Vec<&str> = sent.rejected.iter().map(|(_, f, _)| f.as_str()).collect();
    let mut expected: Vec<&str> = traffic.invalid.iter().map(|(_, f)| *f).collect();
    named.sort();
    expected.sort();
    if named != expected {
        audit
            .problems
            .push(format!("rejections named {named:?}, expected {expected:?}"));
    }
}

/// One charge per order, one email per successful charge, one stock decision per order.
/// Returns how many orders miss an effect or have one twice.
fn orders(traffic: &Traffic, effects: &Effects, audit: &mut Audit) -> usize {
    let mut broken = 0;
    for order in &traffic.orders {
        let id = order["data"]["orderId"].as_str().unwrap_or_default();
        let paid = order["data"]["paymentToken"] == "tok_visa";
        let charges = effects.payments_per_order.get(id).copied().unwrap_or(0);
        let emails = effects.emails_per_order.get(id).copied().unwrap_or(0);
        let decision = effects
            .inventory_outcomes
            .keys()
            .any(|key| key.ends_with(&event_id(order)));
        let mut ok = check(audit, &format!("order {id}: charges"), 1, charges);
        ok &= check(
            audit,
            &format!("order {id}: confirmation emails"),
            usize::from(paid),
            emails,
        );
        ok &= check(
            audit,
            &format!("order {id}: stock decisions"),
            1,
            usize::from(decision),
        );
        broken += usize::from(!ok);
    }
    let stray = effects.inventory_outcomes.len() as i64 - traffic.orders.len() as i64;
    if stray > 0 {
        audit.duplicated += stray as usize;
        audit.problems.push(format!(
            "{stray} stock decisions for events that were never sent"
        ));
    }
    // Charges and emails for orders that were never sent.
    let sent: std::collections::HashSet<&str> = traffic
        .orders
        .iter()
        .filter_map(|o| o["data"]["orderId"].as_str())
        .collect();
    for (what, per_order) in [
        ("charges", &effects.payments_per_order),
        ("emails", &effects.emails_per_order),
    ] {
        for (order, n) in per_order.iter().filter(|(o, _)| !sent.contains(o.as_str())) {
            audit.duplicated += n;
            audit.problems.push(format!(
                "{n} {what} for order {order}, which was never sent"
            ));
        }
    }
    // Every charge with the outcome its card asked for.
    let declined = traffic.declined;
    for (status, expected) in [
        ("declined", declined),
        ("succeeded", traffic.orders.len() - declined),
    ] {
        let actual = effects.payments.get(status).copied().unwrap_or(0);
        if actual != expected {
            audit
                .problems
                .push(format!("{actual} payments {status}, expected {expected}"));
        }
    }
    broken
}

/// Stock moved by exactly the reserved orders' quantities, never below zero.
fn stock(catalog: &[Product], traffic: &Traffic, effects: &Effects, audit: &mut Audit) {
    let by_id: HashMap<String, &Value> = traffic.orders.iter().map(|o| (event_id(o), o)).collect();
    let mut reserved: BTreeMap<&str, i64> = BTreeMap::new();
    for (key, outcome) in &effects.inventory_outcomes {
        let Some(order) = key.rsplit('#').next().and_then(|id| by_id.get(id)) else {
            continue;
        };
        match outcome.as_str() {
            "reserved" => {
                for item in order["data"]["items"].as_array().into_iter().flatten() {
                    *reserved
                        .entry(item["sku"].as_str().unwrap_or_default())
                        .or_default() += item["quantity"].as_i64().unwrap_or(0);
                }
            }
            "reservation_failed" => audit.refused += 1,
            other => audit
                .problems
                .push(format!("{key}: unexpected stock decision `{other}`")),
        }
    }
    for product in catalog {
        let (available, held) = effects.stock.get(&product.sku).copied().unwrap_or((0, 0));
        let expected = reserved.get(product.sku.as_str()).copied().unwrap_or(0);
        if held != expected || available != product.available as i64 - expected || available < 0 {
            audit.problems.push(format!(
                "{}: stock not conserved: available {available}, reserved {held}; the decisions reserved {expected} of {}",
                product.sku, product.available
            ));
        }
    }
}

/// Each business and data event counted once, revenue summed once.
fn analytics(traffic: &Traffic, effects: &Effects, audit: &mut Audit) {
    let orders = traffic.orders.len() as i64;
    let declined = traffic.declined as i64;
    let count = |metric: &str| effects.analytics.get(metric).map(|(c, _)| *c).unwrap_or(0);
    for (metric, expected) in [
        ("type#order_placed", orders),
        ("type#payment_succeeded", orders - declined),
        ("type#payment_failed", declined),
        ("type#stock_reservation_failed", audit.refused as i64),
        ("type#metric_sampled", traffic.data_events as i64),
    ] {
        tally(
            audit,
            &format!("analytics {metric}"),
            expected,
            count(metric),
        );
    }
    let revenue: i64 = traffic
        .orders
        .iter()
        .filter(|o| o["data"]["paymentToken"] == "tok_visa")
        .map(|o| o["data"]["total"].as_i64().unwrap_or(0))
        .sum();
    let counted = effects.analytics.get("revenue#EUR").map(|(_, a)| *a);
    if counted.unwrap_or(0) != revenue {
        audit.problems.push(format!(
            "analytics revenue#EUR: {counted:?}, expected {revenue}"
        ));
    }
}

/// The raw records in the router's DLQ, each with its reason; nothing in any other queue.
fn dead_letters(traffic: &Traffic, effects: &Effects, audit: &mut Audit) {
    for (queue, letters) in &effects.dead_letters {
        if queue != "BusRouterDeadLetterQueue" {
            audit.problems.push(format!(
                "{} dead letters in {queue}: {:?}",
                letters.len(),
                letters.iter().map(|l| &l.reason).collect::<Vec<_>>()
            ));
        }
    }
    let router = effects
        .dead_letters
        .get("BusRouterDeadLetterQueue")
        .map(Vec::as_slice)
        .unwrap_or_default();
    if distinct(router) != traffic.raw_records.len() {
        audit.problems.push(format!(
            "{} records dead-lettered in the router's DLQ for {} raw records",
            distinct(router),
            traffic.raw_records.len()
        ));
    }
    if let Some(letter) = router
        .iter()
        .find(|l| l.stage != "router" || l.reason.is_empty())
    {
        audit.problems.push(format!(
            "a router dead letter without its stage or reason: {letter:?}"
        ));
    }
}

/// Records a queue's letters are about: copies of one letter count once.
fn distinct(letters: &[DeadLetterView]) -> usize {
    let identities: std::collections::HashSet<&str> = letters
        .iter()
        .filter_map(|l| l.identity.as_deref())
        .collect();
    identities.len() + letters.iter().filter(|l| l.identity.is_none()).count()
}

/// The id of an order's `order_placed`: the order service derives it from the order's id.
fn event_id(order: &Value) -> String {
    order["id"].as_str().unwrap_or_default().to_string()
}

/// Count an effect seen `actual` times against `expected`; false when they differ.
fn check(audit: &mut Audit, what: &str, expected: usize, actual: usize) -> bool {
    tally(audit, what, expected as i64, actual as i64)
}

fn tally(audit: &mut Audit, what: &str, expected: i64, actual: i64) -> bool {
    if actual == expected {
        return true;
    }
    if actual > expected {
        audit.duplicated += (actual - expected) as usize;
    } else {
        audit.lost += (expected - actual) as usize;
    }
    audit
        .problems
        .push(format!("{what}: {actual}, expected {expected}"));
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::workload::Workload;

    fn products() -> Vec<Product> {
        vec![
            Product {
                sku: "A".into(),
                unit_price: 100,
                available: 10,
            },
            Product {
                sku: "B".into(),
                unit_price: 200,
                available: 1,
            },
        ]
    }

    /// The effects of a perfect run of `traffic`: every order reserved while stock lasts.
    fn perfect(traffic: &Traffic, catalog: &[Product]) -> Effects {
        let mut effects = Effects::default();
        let mut stock: BTreeMap<String, (i64, i64)> = catalog
            .iter()
            .map(|p| (p.sku.clone(), (p.available as i64, 0)))
            .collect();
        let mut refused = 0;
        for order in &traffic.orders {
            let id = order["data"]["orderId"].as_str().unwrap().to_string();
            let paid = order["data"]["paymentToken"] == "tok_visa";
            effects.payments_per_order.insert(id.clone(), 1);
            if paid {
                effects.emails_per_order.insert(id.clone(), 1);
            }
            let items = order["data"]["items"].as_array().unwrap();
            let fits = items
                .iter()
                .all(|i| stock[i["sku"].as_str().unwrap()].0 >= i["quantity"].as_i64().unwrap());
            if fits {
                for i in items {
                    let s = stock.get_mut(i["sku"].as_str().unwrap()).unwrap();
                    s.0 -= i["quantity"].as_i64().unwrap();
                    s.1 += i["quantity"].as_i64().unwrap();
                }
            } else {
                refused += 1;
            }
            let outcome = if fits {
                "reserved"
            } else {
                "reservation_failed"
            };
            effects.inventory_outcomes.insert(
                format!("inventory#{}", event_id(order)),
                outcome.to_string(),
            );
        }
        effects.stock = stock;
        effects.payments = [
            ("declined".to_string(), traffic.declined),
            (
                "succeeded".to_string(),
                traffic.orders.len() - traffic.declined,
            ),
        ]
        .into_iter()
        .collect();
        let orders = traffic.orders.len() as i64;
        let declined = traffic.declined as i64;
        let revenue = traffic
            .orders
            .iter()
            .filter(|o| o["data"]["paymentToken"] == "tok_visa")
            .map(|o| o["data"]["total"].as_i64().unwrap())
            .sum();
        effects.analytics = [
            ("type#order_placed", (orders, 0)),
            ("type#payment_succeeded", (orders - declined, 0)),
            ("type#payment_failed", (declined, 0)),
            ("type#stock_reservation_failed", (refused, 0)),
            ("type#metric_sampled", (traffic.data_events as i64, 0)),
            ("revenue#EUR", (orders - declined, revenue)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        effects.incidents = traffic.system_events;
        effects.dead_letters.insert(
            "BusRouterDeadLetterQueue".into(),
            traffic
                .raw_records
                .iter()
                .enumerate()
                .map(|(i, _)| DeadLetterView {
                    body: "x".into(),
                    reason: "not an envelope".into(),
                    stage: "router".into(),
                    identity: Some(format!("router\nstream\n{i}")),
                })
                .collect(),
        );
        effects
    }

    fn sent(traffic: &Traffic) -> Sent {
        Sent {
            accepted: traffic.orders.len()
                + traffic.duplicates
                + traffic.system_events
                + traffic.data_events,
            rejected: traffic
                .invalid
                .iter()
                .map(|(_, f)| (None, f.to_string(), String::new()))
                .collect(),
            ..Sent::default()
        }
    }

    #[test]
    fn a_perfect_run_is_clean_and_every_broken_promise_is_named() {
        let catalog = products();
        let traffic = Workload {
            orders: 20,
            ..Workload::default()
        }
        .generate(&catalog);
        let effects = perfect(&traffic, &catalog);
        let clean = audit(&catalog, &traffic, &sent(&traffic), &effects);
        assert!(clean.is_clean(), "{clean}");
        assert_eq!(
            clean.applied,
            20 + traffic.system_events + traffic.data_events
        );
        assert_eq!(clean.dead_letters, traffic.raw_records.len());
        assert!(clean.refused > 0, "B runs out");

        // A second copy of one dead letter is one record dead-lettered, counted apart.
        let mut copied = effects.clone();
        let letters = copied
            .dead_letters
            .get_mut("BusRouterDeadLetterQueue")
            .unwrap();
        letters.push(letters[0].clone());
        let judged = audit(&catalog, &traffic, &sent(&traffic), &copied);
        assert!(judged.is_clean(), "{judged}");
        assert_eq!(
            (judged.dead_letters, judged.letter_copies),
            (traffic.raw_records.len(), 1)
        );

        // A charge twice, an email lost, an incident lost, a subscriber's dead letter.
        let mut broken = effects.clone();
        let first = traffic.orders[0]["data"]["orderId"].as_str().unwrap();
        broken.payments_per_order.insert(first.into(), 2);
        let emailed = broken.emails_per_order.keys().next().unwrap().clone();
        broken.emails_per_order.remove(&emailed);
        broken.incidents -= 1;
        broken.dead_letters.insert(
            "PaymentDeadLetterQueue".into(),
            vec![DeadLetterView {
                body: "{}".into(),
                reason: "conditions kept failing".into(),
                stage: "payment".into(),
                identity: None,
            }],
        );
        let judged = audit(&catalog, &traffic, &sent(&traffic), &broken);
        assert_eq!((judged.lost, judged.duplicated), (2, 1), "{judged}");
        let text = judged.to_string();
        for says in [
            "charges: 2, expected 1",
            "confirmation emails: 0, expected 1",
            "incidents",
            "PaymentDeadLetterQueue",
            "sent ≠ effects + dead letters",
        ] {
            assert!(text.contains(says), "{says} in {text}");
        }

        // A charge for an order nobody placed, and a declined card charged.
        let mut stray = effects.clone();
        stray.payments_per_order.insert("order-nobody".into(), 1);
        *stray.payments.get_mut("declined").unwrap() -= 1;
        *stray.payments.get_mut("succeeded").unwrap() += 1;
        let judged = audit(&catalog, &traffic, &sent(&traffic), &stray);
        let text = judged.to_string();
        assert!(
            text.contains("order-nobody, which was never sent"),
            "{text}"
        );
        assert!(text.contains("payments declined, expected"), "{text}");

        // Stock moved without a decision.
        let mut leaked = effects.clone();
        leaked.stock.get_mut("A").unwrap().0 -= 1;
        let judged = audit(&catalog, &traffic, &sent(&traffic), &leaked);
        assert!(
            judged.to_string().contains("A: stock not conserved"),
            "{judged}"
        );
    }
}
