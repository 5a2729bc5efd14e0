//! Leased workers run on exactly one replica, and move when the lease does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use countersign_server::{LeaseSource, Workers};
use countersign_store::{Lease, StoreError};

const TICK: Duration = Duration::from_millis(500);

/// One lock shared by several replicas; `owner` is who holds it (0: nobody).
#[derive(Default)]
struct Lock {
    owner: Mutex<usize>,
    /// Set to make every lease report itself lost (its session died).
    broken: AtomicBool,
}

struct Replica {
    id: usize,
    lock: Arc<Lock>,
}

struct Held {
    id: usize,
    lock: Arc<Lock>,
}

#[async_trait]
impl Lease for Held {
    async fn alive(&self) -> bool {
        !self.lock.broken.load(Ordering::SeqCst) && *self.lock.owner.lock().unwrap() == self.id
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut owner = self.lock.owner.lock().unwrap();
        if *owner == self.id {
            *owner = 0;
        }
    }
}

#[async_trait]
impl LeaseSource for Replica {
    async fn try_lead(&self) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let mut owner = self.lock.owner.lock().unwrap();
        if *owner != 0 || self.lock.broken.load(Ordering::SeqCst) {
            return Ok(None);
        }
        *owner = self.id;
        Ok(Some(Box::new(Held {
            id: self.id,
            lock: self.lock.clone(),
        })))
    }
}

/// Counts how many copies of a worker run now, and how many times one started.
#[derive(Default)]
struct Probe {
    running: AtomicUsize,
    started: AtomicUsize,
}

struct Running(Arc<Probe>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

fn registry(probe: &Arc<Probe>) -> Workers {
    let mut workers = Workers::new();
    let p = probe.clone();
    workers.register("probe", move || {
        let p = p.clone();
        async move {
            p.started.fetch_add(1, Ordering::SeqCst);
            p.running.fetch_add(1, Ordering::SeqCst);
            let _guard = Running(p);
            std::future::pending::<()>().await;
        }
    });
    workers
}

#[test]
fn a_registry_lists_its_workers() {
    let probe = Arc::new(Probe::default());
    let mut workers = registry(&probe);
    workers.register("outbox", || async {});
    assert_eq!(workers.names(), ["probe", "outbox"]);
}

#[tokio::test(start_paused = true)]
async fn a_leased_worker_runs_on_one_replica_and_moves_with_the_lease() {
    let lock = Arc::new(Lock::default());
    let probe = Arc::new(Probe::default());
    let a = tokio::spawn(registry(&probe).run(Arc::new(Replica {
        id: 1,
        lock: lock.clone(),
    })));
    let b = tokio::spawn(registry(&probe).run(Arc::new(Replica {
        id: 2,
        lock: lock.clone(),
    })));
    tokio::time::sleep(TICK * 4).await;
    assert_eq!(
        probe.running.load(Ordering::SeqCst),
        1,
        "one replica runs it"
    );
    let first = *lock.owner.lock().unwrap();
    assert!(first == 1 || first == 2);

    // The leader dies: its worker stops with it and the other replica takes over.
    if first == 1 {
        a.abort()
    } else {
        b.abort()
    }
    tokio::time::sleep(TICK * 4).await;
    assert_eq!(
        probe.running.load(Ordering::SeqCst),
        1,
        "the other replica runs it"
    );
    assert_eq!(probe.started.load(Ordering::SeqCst), 2);
    let second = *lock.owner.lock().unwrap();
    assert!(second != first && second != 0);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_the_workers_until_it_is_won_again() {
    let lock = Arc::new(Lock::default());
    let probe = Arc::new(Probe::default());
    let _a = tokio::spawn(registry(&probe).run(Arc::new(Replica {
        id: 1,
        lock: lock.clone(),
    })));
    tokio::time::sleep(TICK * 2).await;
    assert_eq!(probe.running.load(Ordering::SeqCst), 1);

    lock.broken.store(true, Ordering::SeqCst);
    tokio::time::sleep(TICK * 3).await;
    assert_eq!(
        probe.running.load(Ordering::SeqCst),
        0,
        "stopped with the lease"
    );

    lock.broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(TICK * 3).await;
    assert_eq!(
        probe.running.load(Ordering::SeqCst),
        1,
        "runs again once re-won"
    );
    assert_eq!(probe.started.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn no_replica_runs_a_worker_without_the_lease() {
    let lock = Arc::new(Lock::default());
    *lock.owner.lock().unwrap() = 99; // a replica elsewhere holds it
    let probe = Arc::new(Probe::default());
    let _a = tokio::spawn(registry(&probe).run(Arc::new(Replica {
        id: 1,
        lock: lock.clone(),
    })));
    tokio::time::sleep(TICK * 10).await;
    assert_eq!(probe.started.load(Ordering::SeqCst), 0);
}
