//! A steady load through the proxy, as a careful client sends it: Login,
//! Refresh, ListProducts and PlaceOrder with a unique request id, each retried on
//! UNAVAILABLE (a replica killed under the call, a proxy with no replica yet)
//! with the same request. Anything else is recorded as a failure.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokenmesh_proto::{
    auth::v1::{LoginRequest, RefreshRequest, auth_service_client::AuthServiceClient},
    orders::v1::{Order, orders_service_client::OrdersServiceClient},
    products::v1::{ListProductsRequest, products_service_client::ProductsServiceClient},
};
use tokenmesh_tests::{
    CHILD_DEADLINE,
    calls::with_bearer,
    cluster::{Cluster, Service},
    order,
};
use tonic::{Code, Status, transport::Channel};

/// What the load saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Acknowledged orders: request id → order id.
    pub acked: HashMap<String, String>,
    /// Calls answered UNAVAILABLE and retried, by phase and method.
    pub retried: BTreeMap<(String, &'static str), usize>,
    /// Refreshes whose first attempt was lost with its replica, so that the
    /// retry presented a spent token: reuse detection ended the session (by
    /// design), and the worker logged in again.
    pub refresh_reuse: usize,
    /// Anything else: must stay empty.
    pub failures: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    seen: Mutex<Seen>,
    phase: Mutex<String>,
    orders: tokio::sync::watch::Sender<usize>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Workers sending the load until [`Load::stop`].
#[derive(Debug)]
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` workers, logging in as `user` (a demo user entitled to
    /// `product`), through `cluster`'s proxy.
    pub fn start(cluster: &Cluster, workers: usize, user: &str, product: &str) -> Self {
        let shared = Arc::new(Shared {
            seen: Mutex::default(),
            phase: Mutex::new("start".into()),
            orders: tokio::sync::watch::channel(0).0,
            stop: tokio::sync::watch::channel(false).0,
        });
        let clients = Clients {
            auth: AuthServiceClient::new(cluster.channel(Service::Auth)),
            products: ProductsServiceClient::new(cluster.channel(Service::Products)),
            orders: OrdersServiceClient::new(cluster.channel(Service::Orders)),
        };
        let workers = (0..workers)
            .map(|_| {
                let worker = Worker {
                    clients: clients.clone(),
                    shared: shared.clone(),
                    user: user.into(),
                    product: product.into(),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        Self { shared, workers }
    }

    /// Names the phase that retries and failures are counted in from now on.
    pub fn phase(&self, phase: &str) {
        *self.shared.phase.lock().expect("phase") = phase.into();
    }

    /// Waits until `n` more orders have been acknowledged.
    pub async fn more_orders(&self, n: usize) {
        let target = *self.shared.orders.borrow() + n;
        let mut orders = self.shared.orders.subscribe();
        let waited = tokio::time::timeout(CHILD_DEADLINE, orders.wait_for(|&c| c >= target)).await;
        let seen = self.shared.seen.lock().expect("seen");
        assert!(
            waited.is_ok(),
            "the load stalled: {n} more orders not acknowledged within {CHILD_DEADLINE:?}; \
             failures: {:?}",
            seen.failures
        );
    }

    /// Stops the workers (each finishes its iteration) and returns what they saw.
    pub async fn stop(self) -> Seen {
        self.shared.stop.send_replace(true);
        for worker in self.workers {
            tokio::time::timeout(CHILD_DEADLINE, worker)
                .await
                .expect("a worker stopped")
                .expect("a worker did not panic");
        }
        std::mem::take(&mut *self.shared.seen.lock().expect("seen"))
    }
}

#[derive(Debug, Clone)]
struct Clients {
    auth: AuthServiceClient<Channel>,
    products: ProductsServiceClient<Channel>,
    orders: OrdersServiceClient<Channel>,
}

struct Worker {
    clients: Clients,
    shared: Arc<Shared>,
    user: String,
    product: String,
}

impl Worker {
    async fn run(self) {
        let mut stop = self.shared.stop.subscribe();
        let mut placed = 0usize;
        while !*stop.borrow_and_update() {
            if let Err(status) = self.iteration(&mut placed).await {
                let phase = self.shared.phase.lock().expect("phase").clone();
                let failure = format!("{phase}: {:?}: {}", status.code(), status.message());
                self.shared
                    .seen
                    .lock()
                    .expect("seen")
                    .failures
                    .push(failure);
            }
        }
    }

    async fn iteration(&self, placed: &mut usize) -> Result<(), Status> {
        let Clients {
            auth,
            products,
            orders,
        } = &self.clients;
        let shared = &self.shared;
        let login = LoginRequest {
            username: self.user.clone(),
            password: format!("{}-demo", self.user),
        };
        let tokens = retrying(shared, "Login", || {
            let (mut auth, login) = (auth.clone(), login.clone());
            async move { auth.login(login).await }
        })
        .await?;
        let refresh = RefreshRequest {
            refresh_token: tokens.refresh_token,
        };
        let refreshed = attempts(shared, "Refresh", || {
            let (mut auth, refresh) = (auth.clone(), refresh.clone());
            async move { auth.refresh(refresh).await }
        })
        .await;
        let tokens = match refreshed {
            (Ok(tokens), _) => tokens,
            // Only after a retry: the first attempt's answer was lost.
            (Err(status), true) if status.code() == Code::Unauthenticated => {
                shared.seen.lock().expect("seen").refresh_reuse += 1;
                return Ok(());
            }
            (Err(status), _) => return Err(status),
        };
        let token = tokens.access_token;
        let catalogue = retrying(shared, "ListProducts", || {
            let mut products = products.clone();
            let request = with_bearer(ListProductsRequest::default(), &token);
            async move { products.list_products(request).await }
        })
        .await?;
        let request_id = tokenmesh_server::random_token(12);
        let request = order(&self.product, 1, &request_id, &catalogue.entitlement_token);
        let place = || {
            let mut orders = orders.clone();
            let request = with_bearer(request.clone(), &token);
            async move { orders.place_order(request).await }
        };
        let placed_order: Order = retrying(shared, "PlaceOrder", place).await?;
        *placed += 1;
        if placed.is_multiple_of(5) {
            // The same request again: the same order, never a second one.
            let again: Order = retrying(shared, "PlaceOrder", place).await?;
            if again.id != placed_order.id {
                let failure = format!(
                    "request {request_id} made {} and {}",
                    placed_order.id, again.id
                );
                shared.seen.lock().expect("seen").failures.push(failure);
            }
        }
        shared
            .seen
            .lock()
            .expect("seen")
            .acked
            .insert(request_id, placed_order.id);
        shared.orders.send_modify(|count| *count += 1);
        Ok(())
    }
}

/// Calls `call` until it is answered with anything but UNAVAILABLE, within
/// [`CHILD_DEADLINE`], counting each retry under the current phase.
async fn retrying<T, F, Fut>(shared: &Shared, method: &'static str, call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    attempts(shared, method, call).await.0
}

/// [`retrying`], and whether it retried.
async fn attempts<T, F, Fut>(
    shared: &Shared,
    method: &'static str,
    mut call: F,
) -> (Result<T, Status>, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let start = tokio::time::Instant::now();
    let mut retried = false;
    loop {
        match call().await {
            Err(status)
                if status.code() == Code::Unavailable && start.elapsed() < CHILD_DEADLINE =>
            {
                let phase = shared.phase.lock().expect("phase").clone();
                *shared
                    .seen
                    .lock()
                    .expect("seen")
                    .retried
                    .entry((phase, method))
                    .or_default() += 1;
                retried = true;
                // A client's retry pacing while a replica is down (what a real
                // client does), not a wait standing in for an event.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answer => return (answer.map(tonic::Response::into_inner), retried),
        }
    }
}
