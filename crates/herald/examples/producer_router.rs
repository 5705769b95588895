//! Your own events through herald's producer and router: declare the catalog, and the producer
//! accepts exactly these types (and versions), the router routes them and dead-letters the rest.
//! One binary for both functions here (the template sets `HERALD_FUNCTION`); two small ones work
//! just as well.

use herald::{EventCatalog, EventKind, Herald, Upcasters};

fn catalog() -> EventCatalog {
    EventCatalog::new()
        .with("user_signed_up", EventKind::Business, 1..=2)
        .with("invoice_paid", EventKind::Business, 1..=1)
        .with("backup_failed", EventKind::System, 1..=1)
}

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let herald = Herald::from_env()
        .await?
        .catalog(catalog())
        .upcasters(Upcasters::new());
    match std::env::var("HERALD_FUNCTION").as_deref() {
        Ok("router") => herald.run_router().await,
        _ => herald.run_producer().await,
    }
}
