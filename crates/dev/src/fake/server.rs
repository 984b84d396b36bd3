//! What every fake's handle shares: the server thread with its own current-thread runtime on
//! 127.0.0.1 ([`FakeServer`]), and the counters, fault queue and clock offset beside a fake's
//! state ([`Control`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::fake::harbor::Fault;
use crate::fake::http::{Service, serve};

/// How long [`FakeServer::start`] waits for its thread to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`FakeServer::start`] failed; each fake maps it onto its public `FakeError`.
#[derive(Debug)]
pub(super) enum StartError {
    /// The listener could not be bound or set up.
    Listen(std::io::Error),
    /// The server thread or its runtime could not start.
    Thread(std::io::Error),
    /// The thread did not report ready within [`START_TIMEOUT`].
    NotReady {
        /// How long the start waited: always [`START_TIMEOUT`].
        waited: Duration,
    },
}

/// A fake's server: plain HTTP on 127.0.0.1 at a free port, on its own thread with its own
/// tokio runtime (so sync and async tests can both use it). Dropping it stops the server and
/// joins the thread.
#[derive(Debug)]
pub(super) struct FakeServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Serves `service` on a thread named `thread_name`; returns once it accepts connections.
    pub(super) fn start<S: Service>(
        thread_name: &str,
        service: Arc<S>,
    ) -> Result<Self, StartError> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(StartError::Listen)?;
        listener.set_nonblocking(true).map_err(StartError::Listen)?;
        let addr = listener.local_addr().map_err(StartError::Listen)?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), std::io::Error>>();
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    serve(listener, service, shutdown_rx).await;
                });
                // Dropping the runtime here cancels every connection task still running.
            })
            .map_err(StartError::Thread)?;
        let mut server = Self {
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => {
                server.stop();
                Err(StartError::Thread(e))
            }
            Err(_) => {
                server.stop();
                Err(StartError::NotReady {
                    waited: START_TIMEOUT,
                })
            }
        }
    }

    /// The address it listens on: 127.0.0.1 and the free port bound at start.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fake's counters (`api_calls` and its own `counts`), its fault queue and its clock offset.
#[derive(Debug, Default)]
pub(super) struct Stats<C> {
    /// Requests under the fake's API root, faulted ones included.
    pub(super) api_calls: u64,
    /// The fake's own counters (what was made and removed through the API).
    pub(super) counts: C,
    fault: Option<(Fault, u32)>,
    clock_offset: Duration,
}

/// [`Stats`] behind a lock, shared by the server thread and the fake's handle.
#[derive(Debug, Default)]
pub(super) struct Control<C> {
    stats: Mutex<Stats<C>>,
}

impl<C> Control<C> {
    /// The counters, for reading or bumping.
    pub(super) fn stats(&self) -> MutexGuard<'_, Stats<C>> {
        // Counters and a queue: nothing a panic could leave half-updated, so keep serving.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn count_api_call(&self) {
        self.stats().api_calls += 1;
    }

    /// Makes the next `count` API calls fail with `fault` (replacing any queued fault).
    pub(super) fn fail_next(&self, fault: Fault, count: u32) {
        self.stats().fault = (count > 0).then_some((fault, count));
    }

    /// Takes one fault off the queue, if any.
    pub(super) fn next_fault(&self) -> Option<Fault> {
        let mut stats = self.stats();
        let (fault, left) = stats.fault.take()?;
        if left > 1 {
            stats.fault = Some((fault, left - 1));
        }
        Some(fault)
    }

    /// Moves the fake's clock forward by `by`.
    pub(super) fn advance_clock(&self, by: Duration) {
        let mut stats = self.stats();
        stats.clock_offset = stats.clock_offset.saturating_add(by);
    }

    /// The fake's clock: the system clock plus every [`Control::advance_clock`].
    pub(super) fn now(&self) -> SystemTime {
        SystemTime::now() + self.stats().clock_offset
    }

    /// [`Control::now`] in Unix seconds.
    pub(super) fn now_unix(&self) -> i64 {
        unix_seconds(self.now())
    }
}

/// `at` in Unix seconds (0 before the epoch, `i64::MAX` past its range).
pub(super) fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A lock whose holder cannot leave the data half-updated (each fake's operations check
/// before they change anything), so a panic elsewhere does not stop the fake serving.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
