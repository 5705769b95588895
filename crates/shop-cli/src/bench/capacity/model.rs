//! The capacity model: from what one submitted event costs downstream (a [`Profile`], measured on
//! the local pipeline) and the template's settings, the most events per second each resource
//! takes (its [`Wall`]), and what a given rate needs ([`Sizing`]).

use std::collections::BTreeMap;

use super::limits::*;

/// What one submitted event costs downstream, measured on the local pipeline.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Kinesis records per submitted event: the event and the follow-ups it causes.
    pub records: f64,
    /// Average record size in bytes.
    pub record_bytes: f64,
    /// SQS messages delivered per submitted event, per subscriber (after the filter policies).
    pub deliveries: BTreeMap<String, f64>,
    /// DynamoDB write units per submitted event, every table.
    pub dynamodb_wcu: f64,
    /// Of which each table's, by logical id (measured: every write sized from its request;
    /// transactions cancelled and retried count too, as DynamoDB bills them).
    pub table_wru: BTreeMap<String, f64>,
    /// The busiest single items and their write units per submitted event.
    pub hot_items: Vec<HotItem>,
    /// Tables of counters a subscriber's batches sum into (analytics'), by logical id: every
    /// counter with the share of the subscriber's messages that change it. Such a table takes
    /// one write per counter per transaction, so its write units per event follow the batch
    /// size (modelled as for hot items, full batches), not the local run's partly filled ones.
    pub counter_tables: BTreeMap<String, Vec<HotItem>>,
    /// Requests priced per million submitted events (the cost model, Lambda duration apart).
    pub dollars_per_million: f64,
    /// AWS requests the order service makes per order (measured).
    pub order_requests: f64,
}

impl Profile {
    /// One order-service invocation: [`AWS_REQUEST_SECONDS`] per request it makes, at least one.
    pub fn order_seconds(&self) -> f64 {
        AWS_REQUEST_SECONDS * self.order_requests.max(1.0)
    }

    /// Write units per submitted event on each table with subscriber batches of `batch`: as
    /// measured, but counter tables as modelled for full batches.
    pub fn table_wru_at(&self, batch: f64) -> BTreeMap<String, f64> {
        let mut tables = self.table_wru.clone();
        for (table, counters) in &self.counter_tables {
            tables.insert(table.clone(), self.counter_wru(counters, batch));
        }
        tables
    }

    fn counter_wru(&self, counters: &[HotItem], batch: f64) -> f64 {
        counters.iter().map(|c| c.wcu_per_event(self, batch)).sum()
    }
}

/// One item that many events write: it lives in one partition, whatever the table's size. Its
/// writers are a transactional subscriber's batches: herald sums a batch's changes to one item
/// into one write, so the item takes one write per transaction that touches it.
#[derive(Clone, Debug)]
pub struct HotItem {
    /// Which item.
    pub name: String,
    /// The subscriber whose batches write it.
    pub subscriber: String,
    /// The share of that subscriber's messages that change it.
    pub share: f64,
    /// Transaction items each of those messages takes besides its summed deltas (its record and
    /// any plain write): what bounds the events per transaction.
    pub items_per_message: f64,
}

/// Transaction slots kept for a batch's summed deltas (one per item they change).
const DELTA_SLOTS: f64 = 10.0;

impl HotItem {
    /// Write units per submitted event on this item, with subscriber batches of `batch`.
    pub fn wcu_per_event(&self, profile: &Profile, batch: f64) -> f64 {
        let deliveries = profile
            .deliveries
            .get(&self.subscriber)
            .copied()
            .unwrap_or(0.0);
        let slots = (DYNAMODB_TRANSACT_ITEMS - DELTA_SLOTS) / self.items_per_message.max(1.0);
        let per_transaction = batch.min(slots.floor()).max(1.0);
        // The chance that a transaction's messages include one that changes the item.
        let touched = 1.0 - (1.0 - self.share.clamp(0.0, 1.0)).powf(per_transaction);
        DYNAMODB_TRANSACTION_ITEM_WCU * deliveries / per_transaction * touched
    }
}

/// A subscriber invocation's time for a batch of `batch` messages: [`SUBSCRIBER_BATCH_SECONDS`]
/// per ten (conservative: a larger batch takes fewer requests, but more items per request).
pub fn batch_seconds(batch: f64) -> f64 {
    SUBSCRIBER_BATCH_SECONDS * (batch / 10.0).max(1.0)
}

/// The template's settings that bound throughput (its parameter defaults unless sized).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `StreamShards`.
    pub shards: f64,
    /// The router mapping's `ParallelizationFactor`.
    pub parallelization: f64,
    /// The router mapping's `BatchSize`.
    pub router_batch: f64,
    /// `SubscriberBatchSize` (each subscriber mapping's `BatchSize`).
    pub subscriber_batch: f64,
    /// `SubscriberConcurrency` (each subscriber mapping's `MaximumConcurrency`).
    pub subscriber_concurrency: f64,
    /// `PublicConcurrency` (the reserved concurrency of the producer, the order service and the
    /// queries).
    pub public_concurrency: f64,
    /// `ApiRateLimit`: HTTP API requests per second per route.
    pub api_rate_limit: f64,
    /// Orders a client places in one request (one per `POST /orders`).
    pub events_per_request: f64,
    /// The publisher mapping's `BatchSize` (store stream records per `PutRecords`).
    pub publisher_batch: f64,
    /// Readers of the event stream sharing each shard's 2 MB/s out: the router's and the fraud
    /// detector's mappings, the archive's Firehose.
    pub stream_consumers: f64,
}

/// What kind of limit a wall is, and so who moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WallKind {
    /// A template setting (a parameter, or a fixed value such as a mapping's
    /// `ParallelizationFactor`): raise it.
    Setting(&'static str),
    /// An AWS quota: ask AWS (Service Quotas).
    Quota,
    /// A hard AWS limit.
    Hard,
    /// herald's or the example's design: one item that every event writes.
    Design,
}

/// The most submitted events per second one resource takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Wall {
    /// The resource and its limit, readable.
    pub name: String,
    /// Submitted events per second at which it is full.
    pub max_rate: f64,
    /// Who moves it.
    pub kind: WallKind,
}

/// Headroom kept when sizing: resources run at most at this share of their limit.
pub const TARGET_UTILISATION: f64 = 0.8;

/// How long the router takes for a full batch: `PublishBatch`es of 10, two at a time.
fn router_batch_seconds(settings: &Settings) -> f64 {
    (settings.router_batch / SNS_BATCH_ENTRIES / 2.0).ceil() * SNS_PUBLISH_BATCH_SECONDS + 0.005
}

/// Every resource's wall with `settings`, lowest first.
pub fn walls(profile: &Profile, settings: &Settings) -> Vec<Wall> {
    let records = profile.records.max(1e-9);
    let mut walls = vec![
        Wall {
            name: format!(
                "Kinesis writes: {} shards × 1 000 records/s, 1 MB/s",
                settings.shards
            ),
            max_rate: settings.shards
                * (KINESIS_SHARD_RECORDS_IN / records)
                    .min(KINESIS_SHARD_BYTES_IN / (records * profile.record_bytes.max(1.0))),
            kind: WallKind::Setting("StreamShards"),
        },
        Wall {
            name: format!(
                "Kinesis reads: 2 MB/s per shard, shared by {} consumers",
                settings.stream_consumers
            ),
            max_rate: settings.shards * KINESIS_SHARD_BYTES_OUT
                / (records * profile.record_bytes.max(1.0) * settings.stream_consumers.max(1.0)),
            kind: WallKind::Setting("StreamShards"),
        },
        Wall {
            name: format!(
                "router: {} shards × {} invocations, {} records in {:.0} ms",
                settings.shards,
                settings.parallelization,
                settings.router_batch,
                router_batch_seconds(settings) * 1e3
            ),
            max_rate: settings.shards * settings.parallelization * settings.router_batch
                / router_batch_seconds(settings)
                / records,
            kind: WallKind::Setting("ParallelizationFactor"),
        },
        Wall {
            name: "SNS publishes: 30 000 messages/s".into(),
            max_rate: SNS_PUBLISH_PER_SECOND / records,
            kind: WallKind::Quota,
        },
        Wall {
            name: format!(
                "order service: {} concurrent × {} orders per request / {:.0} ms",
                settings.public_concurrency,
                settings.events_per_request,
                profile.order_seconds() * 1e3
            ),
            max_rate: settings.public_concurrency * settings.events_per_request
                / profile.order_seconds(),
            kind: WallKind::Setting("PublicConcurrency"),
        },
        Wall {
            name: format!(
                "HTTP API: {} requests/s × {} orders per request",
                settings.api_rate_limit, settings.events_per_request
            ),
            max_rate: settings.api_rate_limit * settings.events_per_request,
            kind: WallKind::Setting("ApiRateLimit"),
        },
        Wall {
            name: "Lambda: 1 000 concurrent executions in the account".into(),
            max_rate: LAMBDA_ACCOUNT_CONCURRENCY / concurrency_per_event(profile, settings),
            kind: WallKind::Quota,
        },
    ];
    for (table, wru) in profile.table_wru_at(settings.subscriber_batch) {
        // A counter table's writes are per batch: larger batches move its wall, up to the
        // largest batch; only then is it the quota's.
        let counters = profile.counter_tables.contains_key(&table);
        let (name, kind) = if counters && settings.subscriber_batch < MAX_SUBSCRIBER_BATCH {
            (
                format!(
                    "DynamoDB {table}: 40 000 write units/s (counters, batches of {})",
                    settings.subscriber_batch
                ),
                WallKind::Setting("SubscriberBatchSize"),
            )
        } else {
            (
                format!("DynamoDB {table}: 40 000 write units/s"),
                WallKind::Quota,
            )
        };
        walls.push(Wall {
            name,
            max_rate: DYNAMODB_TABLE_WRU / wru.max(1e-9),
            kind,
        });
    }
    let per_poller = settings.subscriber_batch / batch_seconds(settings.subscriber_batch);
    for (subscriber, deliveries) in &profile.deliveries {
        let deliveries = deliveries.max(1e-9);
        walls.push(Wall {
            name: format!(
                "{subscriber}: {} concurrent × {} messages / {:.0} ms",
                settings.subscriber_concurrency,
                settings.subscriber_batch,
                batch_seconds(settings.subscriber_batch) * 1e3
            ),
            max_rate: settings.subscriber_concurrency * per_poller / deliveries,
            kind: WallKind::Setting("SubscriberConcurrency"),
        });
        walls.push(Wall {
            name: format!("{subscriber}: SQS pollers scale to 1 000 concurrent at most"),
            max_rate: SQS_MAPPING_MAX_CONCURRENCY * per_poller / deliveries,
            kind: WallKind::Hard,
        });
    }
    for item in &profile.hot_items {
        // Larger batches sum more changes into each write, up to a transaction's 100 items.
        let kind = if settings.subscriber_batch < MAX_SUBSCRIBER_BATCH {
            WallKind::Setting("SubscriberBatchSize")
        } else {
            WallKind::Design
        };
        walls.push(Wall {
            name: format!(
                "one item, {} (batches of {}): 1 000 write units/s",
                item.name, settings.subscriber_batch
            ),
            max_rate: DYNAMODB_PARTITION_WCU
                / item
                    .wcu_per_event(profile, settings.subscriber_batch)
                    .max(1e-9),
            kind,
        });
    }
    walls.sort_by(|a, b| a.max_rate.total_cmp(&b.max_rate));
    walls
}

/// Concurrent executions per order per second (the order service and subscribers; the router
/// and publisher run a fixed number per shard).
fn concurrency_per_event(profile: &Profile, settings: &Settings) -> f64 {
    let orders = profile.order_seconds() / settings.events_per_request.max(1.0);
    let subscribers: f64 = profile
        .deliveries
        .values()
        .map(|d| d / settings.subscriber_batch * batch_seconds(settings.subscriber_batch))
        .sum();
    orders + subscribers
}

/// What one rate needs with the template sized for it.
#[derive(Clone, Debug)]
pub struct Sizing {
    /// Submitted events per second.
    pub rate: f64,
    /// The settings sized for it (shards, concurrency, API rate) at [`TARGET_UTILISATION`].
    pub settings: Settings,
    /// Lambda concurrency in use, all functions.
    pub concurrency: f64,
    /// The table taking the most write units, and its write units per second.
    pub busiest_table: Option<(String, f64)>,
    /// The busiest item and its write units per second.
    pub hottest: Option<(String, f64)>,
    /// Dollars per month: requests, shard-hours and Lambda duration.
    pub dollars_per_month: f64,
    /// The first wall below the rate, sizing notwithstanding; `None` when every wall is above.
    pub blocked_by: Option<Wall>,
    /// The lowest wall above the rate.
    pub next_wall: Option<Wall>,
    /// The other walls below the rate (their names and rates).
    pub also_below: Vec<String>,
}

/// Size the template for `rate` submitted events per second, starting from `defaults`; settings
/// only ever grow, and stop at their hard ceilings.
pub fn size(profile: &Profile, defaults: &Settings, rate: f64) -> Sizing {
    let records = rate * profile.records;
    let need = |used: f64| (used / TARGET_UTILISATION).ceil();
    let shards = need(
        (records / KINESIS_SHARD_RECORDS_IN)
            .max(records * profile.record_bytes / KINESIS_SHARD_BYTES_IN)
            .max(
                records * profile.record_bytes * defaults.stream_consumers.max(1.0)
                    / KINESIS_SHARD_BYTES_OUT,
            ),
    );
    // Batches grow until every hot item runs at the target utilisation of its partition, and
    // every counter table at that of its table.
    let hottest_at = |batch: f64| {
        profile
            .hot_items
            .iter()
            .map(|i| i.wcu_per_event(profile, batch) * rate)
            .fold(0.0, f64::max)
    };
    let counters_at = |batch: f64| {
        profile
            .counter_tables
            .values()
            .map(|c| profile.counter_wru(c, batch) * rate)
            .fold(0.0, f64::max)
    };
    let subscriber_batch = BATCH_STEPS
        .iter()
        .copied()
        .filter(|b| *b >= defaults.subscriber_batch)
        .find(|b| {
            hottest_at(*b) <= DYNAMODB_PARTITION_WCU * TARGET_UTILISATION
                && counters_at(*b) <= DYNAMODB_TABLE_WRU * TARGET_UTILISATION
        })
        .unwrap_or(MAX_SUBSCRIBER_BATCH)
        .max(defaults.subscriber_batch);
    let busiest = profile.deliveries.values().copied().fold(0.0, f64::max) * rate;
    let pollers = need(busiest / (subscriber_batch / batch_seconds(subscriber_batch)));
    let requests_per_second = rate / defaults.events_per_request.max(1.0);
    let order_services = need(requests_per_second * profile.order_seconds());
    let settings = Settings {
        shards: defaults.shards.max(shards),
        subscriber_concurrency: defaults
            .subscriber_concurrency
            .max(pollers)
            .min(SQS_MAPPING_MAX_CONCURRENCY),
        public_concurrency: defaults.public_concurrency.max(order_services),
        api_rate_limit: defaults.api_rate_limit.max(need(requests_per_second)),
        subscriber_batch,
        ..defaults.clone()
    };
    let walls = walls(profile, &settings);
    let router = settings.shards * settings.parallelization;
    let concurrency = rate * concurrency_per_event(profile, &settings) + router;
    let hottest = profile
        .hot_items
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                i.wcu_per_event(profile, subscriber_batch) * rate,
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    // Lambda duration: every function at 128 MB, busy `concurrency` on average.
    let lambda = concurrency * 0.125 * LAMBDA_ARM_GB_SECOND * SECONDS_PER_MONTH;
    let shard_hours = settings.shards * KINESIS_SHARD_HOUR * SECONDS_PER_MONTH / 3600.0;
    let requests = rate * SECONDS_PER_MONTH * profile.dollars_per_million / 1e6;
    Sizing {
        rate,
        concurrency,
        busiest_table: profile
            .table_wru_at(subscriber_batch)
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(table, wru)| (table, wru * rate)),
        hottest,
        dollars_per_month: requests + shard_hours + lambda,
        blocked_by: walls.iter().find(|w| w.max_rate < rate).cloned(),
        also_below: walls
            .iter()
            .filter(|w| w.max_rate < rate)
            .skip(1)
            .map(|w| format!("{} at {:.0}/s", w.name, w.max_rate))
            .collect(),
        next_wall: walls.iter().find(|w| w.max_rate >= rate).cloned(),
        settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            records: 2.4,
            record_bytes: 700.0,
            deliveries: [("analytics".to_string(), 2.4), ("payment".to_string(), 1.0)]
                .into_iter()
                .collect(),
            dynamodb_wcu: 26.8,
            table_wru: [
                ("BusIdempotencyTable".to_string(), 12.0),
                ("StockTable".to_string(), 4.0),
            ]
            .into_iter()
            .collect(),
            hot_items: vec![HotItem {
                name: "type#order_placed".into(),
                subscriber: "analytics".into(),
                share: 1.0 / 2.4,
                items_per_message: 1.0,
            }],
            counter_tables: BTreeMap::new(),
            dollars_per_million: 17.7,
            order_requests: 3.0,
        }
    }

    fn defaults() -> Settings {
        Settings {
            shards: 2.0,
            parallelization: 1.0,
            router_batch: 100.0,
            subscriber_batch: 10.0,
            subscriber_concurrency: 10.0,
            public_concurrency: 20.0,
            api_rate_limit: 200.0,
            events_per_request: 1.0,
            publisher_batch: 100.0,
            stream_consumers: 3.0,
        }
    }

    #[test]
    fn the_walls_follow_from_the_limits_and_the_settings() {
        let walls = walls(&profile(), &defaults());
        let wall = |name: &str| {
            walls
                .iter()
                .find(|w| w.name.contains(name))
                .unwrap_or_else(|| panic!("{name} in {walls:?}"))
                .max_rate
        };
        // Two shards take 2 000 records/s: 2.4 records per event → 833 events/s.
        assert!((wall("Kinesis writes") - 2000.0 / 2.4).abs() < 1e-6);
        // One item takes 1 000 WCU/s. Batches of 10 of analytics' 2.4 messages per event, 1 in
        // 2.4 an order: 2 units per transaction that has one → 0.24 batches per event, 99.5 %
        // of which hold an order: 0.48 units per event → ~2 090 events/s.
        let touched = 1.0 - (1.0 - 1.0 / 2.4_f64).powf(10.0);
        assert!((wall("type#order_placed") - 1000.0 / (2.0 * 0.24 * touched)).abs() < 1e-6);
        // Ten pollers × 10 messages / 40 ms = 2 500 messages/s; 2.4 per event.
        assert!((wall("analytics: 10 concurrent") - 2500.0 / 2.4).abs() < 1e-6);
        assert!(walls.windows(2).all(|w| w[0].max_rate <= w[1].max_rate));
        // One order per `POST /orders`: the API's 200 requests/s come first, then the order
        // service's 20 concurrent executions of 30 ms (667 orders/s), then the shards.
        // Every table has its own 40 000 write units/s: 12 per event → 3 333 events/s.
        assert!((wall("DynamoDB BusIdempotencyTable") - 40_000.0 / 12.0).abs() < 1e-6);
        assert!((wall("DynamoDB StockTable") - 10_000.0).abs() < 1e-6);
        assert_eq!(wall("HTTP API"), 200.0);
        assert!((wall("order service") - 20.0 / 0.030).abs() < 1e-6);
        let kinds: Vec<WallKind> = walls.iter().take(3).map(|w| w.kind).collect();
        assert_eq!(
            kinds,
            [
                WallKind::Setting("ApiRateLimit"),
                WallKind::Setting("PublicConcurrency"),
                WallKind::Setting("StreamShards")
            ],
            "{walls:?}"
        );
    }

    #[test]
    fn a_counter_table_is_a_wall_larger_batches_move() {
        // Analytics' 2.4 messages per event: an order counter in 1 of 2.4, a payment counter
        // and its revenue counter in 1 of 3, and a rare one in 1 of 100.
        let mut profile = profile();
        let counter = |name: &str, share: f64| HotItem {
            name: name.into(),
            subscriber: "analytics".into(),
            share,
            items_per_message: 1.0,
        };
        profile.table_wru.insert("AnalyticsTable".into(), 9.0);
        profile.counter_tables.insert(
            "AnalyticsTable".into(),
            vec![
                counter("type#order_placed", 1.0 / 2.4),
                counter("type#payment_succeeded", 1.0 / 3.0),
                counter("revenue#EUR", 1.0 / 3.0),
                counter("type#rare", 0.01),
            ],
        );
        // Batches of 10: 0.24 transactions per event, each writing the counters it touches.
        let touched = |share: f64, batch: f64| 1.0 - (1.0 - share).powf(batch);
        let expected = |batch: f64| {
            2.0 * 2.4 / batch
                * (touched(1.0 / 2.4, batch)
                    + 2.0 * touched(1.0 / 3.0, batch)
                    + touched(0.01, batch))
        };
        let at_ten = profile.table_wru_at(10.0)["AnalyticsTable"];
        assert!((at_ten - expected(10.0)).abs() < 1e-9, "{at_ten}");
        // The measured figure stands for the other tables.
        assert_eq!(profile.table_wru_at(10.0)["StockTable"], 4.0);
        let walls = walls(&profile, &defaults());
        let wall = walls
            .iter()
            .find(|w| w.name.contains("AnalyticsTable"))
            .unwrap();
        assert_eq!(wall.kind, WallKind::Setting("SubscriberBatchSize"));
        assert!((wall.max_rate - 40_000.0 / expected(10.0)).abs() < 1e-6);
        // Larger batches sum more: the wall moves up.
        let mut bigger = defaults();
        bigger.subscriber_batch = 50.0;
        let moved = super::walls(&profile, &bigger)
            .into_iter()
            .find(|w| w.name.contains("AnalyticsTable"))
            .unwrap();
        assert!(moved.max_rate > 2.0 * wall.max_rate, "{moved:?} {wall:?}");
        // Sizing for a rate past the wall grows the batches until the table runs at 80 %.
        let rate = 1.2 * wall.max_rate;
        let sized = size(&profile, &defaults(), rate);
        assert!(sized.settings.subscriber_batch > 10.0);
        let analytics = profile.table_wru_at(sized.settings.subscriber_batch)["AnalyticsTable"];
        assert!(analytics * rate <= 32_000.0, "{analytics}");
    }

    #[test]
    fn sizing_grows_the_settings_until_a_wall_it_cannot_move() {
        let small = size(&profile(), &defaults(), 10.0);
        assert_eq!(small.settings, defaults(), "10 events/s fit the defaults");
        assert!(small.blocked_by.is_none());
        let big = size(&profile(), &defaults(), 10_000.0);
        // 24 000 records/s of 700 B read by three consumers: 50.4 MB/s out at 80 % of 2 MB/s
        // per shard (the 1 000 records/s in would need only 30).
        assert_eq!(big.settings.shards, 32.0);
        assert!(big.settings.subscriber_concurrency > 10.0);
        // The hot counter is moved by larger batches (more increments summed per write).
        assert!(big.settings.subscriber_batch > 10.0);
        let (_, hottest) = big.hottest.clone().unwrap();
        assert!(hottest <= 800.0, "{hottest}");
        // What is left is the account's quotas, not the design.
        let blocked = big.blocked_by.unwrap();
        assert_eq!(blocked.kind, WallKind::Quota);
        assert!(blocked.name.contains("BusIdempotencyTable"), "{blocked:?}");
        assert_eq!(
            big.busiest_table,
            Some(("BusIdempotencyTable".to_string(), 120_000.0))
        );
        assert!(big.dollars_per_month > small.dollars_per_month * 100.0);
    }
}
