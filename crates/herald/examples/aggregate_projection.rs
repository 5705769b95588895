//! Your own event-sourced aggregate and read model, run here on herald's in-memory ports
//! (`cargo run -p herald --example aggregate_projection`). On AWS the same types run with
//! `Herald::event_store()` + `run_http` (commands) and `run_projector` (the read model).

use std::collections::BTreeMap;
use std::sync::Mutex;

use herald::event_sourcing::projection::{rebuild, Applied, ProjectionError};
use herald::testing::InMemoryEventStore;
use herald::{Aggregate, Command, CommandService, Envelope, Projection, ValidationError};
use serde::{Deserialize, Serialize};

/// An account: its balance is the fold of its deposits.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    fn apply(&mut self, event: &Envelope) {
        if let Ok(Deposited { amount }) = event.data_as() {
            self.balance += amount;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

/// The command: refused when it would take the balance past a limit.
struct Deposit {
    account: String,
    amount: u64,
}

impl Command<Account> for Deposit {
    type Error = ValidationError;

    fn aggregate_id(&self) -> &str {
        &self.account
    }

    fn decide(&self, state: &Account) -> Result<Vec<Envelope>, ValidationError> {
        if state.balance + self.amount > 1_000 {
            return Err(ValidationError::Invalid {
                field: "data.amount",
                reason: format!("would take the balance past 1000 (it is {})", state.balance),
            });
        }
        let event = Envelope::builder("deposited", "example/accounts")
            .subject(self.account.clone())
            .data(Deposited {
                amount: self.amount,
            })
            .build()?;
        Ok(vec![event])
    }
}

/// The read model: the latest balance per account, moved only forward by version.
#[derive(Default)]
struct Balances(Mutex<BTreeMap<String, (u64, u64)>>);

impl Projection for Balances {
    fn name(&self) -> &'static str {
        "balances"
    }

    fn wants(&self, event: &Envelope) -> bool {
        event.event_type() == "deposited"
    }

    async fn apply(&self, event: &Envelope) -> Result<Applied, ProjectionError> {
        let version = event.aggregate_version().unwrap_or_default();
        let Deposited { amount } = event.data_as().map_err(|e| ProjectionError::Invalid {
            field: e.field(),
            reason: e.to_string(),
        })?;
        let mut rows = self.0.lock().unwrap();
        let row = rows
            .entry(event.subject().unwrap_or_default().into())
            .or_default();
        if row.0 >= version {
            return Ok(Applied::Stale);
        }
        *row = (version, row.1 + amount);
        Ok(Applied::Advanced)
    }

    async fn clear(&self) -> Result<u64, ProjectionError> {
        let mut rows = self.0.lock().unwrap();
        let n = rows.len() as u64;
        rows.clear();
        Ok(n)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let accounts = CommandService::<Account, _>::new(InMemoryEventStore::new());
    for (account, amount) in [
        ("acct-1", 300),
        ("acct-2", 50),
        ("acct-1", 600),
        ("acct-1", 200),
    ] {
        let deposit = Deposit {
            account: account.into(),
            amount,
        };
        match accounts.execute(&deposit).await {
            Ok(done) => println!("{account} +{amount}: version {}", done.version),
            Err(refused) => println!("{account} +{amount}: refused: {refused}"),
        }
    }
    let balances = Balances::default();
    rebuild(&balances, accounts.store(), |_, _| {})
        .await
        .unwrap();
    for (account, (version, balance)) in balances.0.lock().unwrap().iter() {
        println!("{account}: balance {balance} at version {version}");
    }
}
