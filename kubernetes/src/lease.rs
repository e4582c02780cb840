//! The Lease loop: hold a `coordination.k8s.io` Lease under a given identity, for as long as
//! the process can renew it. The operator holds one to elect its leader; the data plane will
//! hold one per partition it owns. kube 5 has no crate for it; this follows client-go's
//! leaderelection: a candidate takes the Lease when it is free, or when its record has not
//! changed for a whole lease duration *as observed locally* (no trust in the holder's clock);
//! every write carries the resourceVersion read, so two candidates cannot both win.
//!
//! Timings (client-go's defaults unless the caller sets others): lease 15 s, renew every 2 s,
//! give the Lease up when no renewal succeeded for 10 s. The loop ends when the Lease is lost;
//! what losing means (exit, stop serving a partition) is the caller's decision.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Which Lease, who holds it, and how often it is renewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Kubernetes namespace of the Lease.
    pub namespace: String,
    pub name: String,
    /// This process's identity, written as the holder.
    pub identity: String,
    /// How long the Lease stays valid without a renewal (written in the Lease).
    pub lease_duration: Duration,
    /// How long a holder keeps the Lease without a successful renewal before giving it up.
    pub renew_deadline: Duration,
    /// The pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Lease `namespace/name` held as `identity`, with client-go's default timings.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A Lease request that failed, naming the Lease.
#[derive(Debug, thiserror::Error)]
#[error("Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    pub namespace: String,
    pub name: String,
    /// Boxed: kube's error is large.
    #[source]
    pub source: Box<kube::Error>,
}

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This process holds the Lease.
    Holding,
    /// Someone else does (or won the race to write it: `holder` unknown).
    Following { holder: Option<String> },
}

/// The Lease record last read and when it was first seen in that state.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    since: Instant,
}

/// One Lease, acquired, renewed and released under one identity. [`LeaseLoop::holding`] says,
/// at any moment, whether this process holds it.
pub struct LeaseLoop {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
    holding: watch::Sender<bool>,
}

impl LeaseLoop {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            holding: watch::Sender::new(false),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Whether this process holds the Lease: true from the attempt that won it until
    /// [`LeaseLoop::run`] ends.
    pub fn holding(&self) -> watch::Receiver<bool> {
        self.holding.subscribe()
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn error(&self, source: kube::Error) -> LeaseError {
        LeaseError {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(source),
        }
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
            acquire_time: Some(acquire_time.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: create the Lease, renew it, or take it over when it expired.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaseError> {
        let Some(lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        self.observe(&spec);

        if holder.as_deref() == Some(self.config.identity.as_str()) {
            let renewed = Lease {
                metadata: lease.metadata.clone(),
                spec: Some(self.spec(spec.acquire_time, spec.lease_transitions.unwrap_or(0))),
            };
            return self.write(
                self.api
                    .replace(&self.config.name, &PostParams::default(), &renewed)
                    .await,
            );
        }
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.lease_duration, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        let since = self
            .observed
            .as_ref()
            .map_or_else(Instant::now, |o| o.since);
        if holder.is_some() && since.elapsed() < duration {
            return Ok(Attempt::Following { holder });
        }
        info!(lease = %self.lease(), previous = ?holder, "the Lease is free or expired; taking it");
        let taken = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(self.spec(None, spec.lease_transitions.unwrap_or(0) + 1)),
        };
        self.write(
            self.api
                .replace(&self.config.name, &PostParams::default(), &taken)
                .await,
        )
    }

    /// Remember the record; its clock restarts whenever it changes.
    fn observe(&mut self, spec: &LeaseSpec) {
        let same = self.observed.as_ref().is_some_and(|o| {
            o.holder == spec.holder_identity
                && o.renew_time == spec.renew_time
                && o.transitions == spec.lease_transitions
        });
        if !same {
            self.observed = Some(Observed {
                holder: spec.holder_identity.clone(),
                renew_time: spec.renew_time.clone(),
                transitions: spec.lease_transitions,
                since: Instant::now(),
            });
        }
    }

    /// A write that lost the race (409: someone else wrote first) is not an error: we follow.
    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<Attempt, LeaseError> {
        match result {
            Ok(lease) => {
                if let Some(spec) = &lease.spec {
                    self.observe(spec);
                }
                Ok(Attempt::Holding)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Attempt::Following { holder: None })
            }
            Err(source) => Err(self.error(source)),
        }
    }

    /// Give the Lease up (on shutdown) so that a successor need not wait for it to expire.
    /// A Lease held by someone else, or missing, is left alone.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let released = Lease {
            metadata: lease.metadata,
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                ..spec
            }),
        };
        self.api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Campaign, then hold: [`LeaseLoop::holding`] turns true when the Lease is won. Returns
    /// when it is lost (another holder, or no renewal within the renew deadline), with
    /// `holding` false again.
    pub async fn run(&mut self) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = self.try_acquire_or_renew().await;
            let is_holding = *self.holding.borrow();
            match attempt {
                Ok(Attempt::Holding) => {
                    last_renewal = Some(Instant::now());
                    if !is_holding {
                        info!(lease = %self.lease(), identity = %self.config.identity, "holding the Lease");
                        self.holding.send_replace(true);
                    }
                }
                Ok(Attempt::Following { holder }) if is_holding => {
                    warn!(lease = %self.lease(), ?holder, "lost the Lease");
                    break;
                }
                Ok(Attempt::Following { .. }) => {}
                Err(error) => {
                    warn!(%error, "acquiring or renewing the Lease failed");
                    let overdue =
                        last_renewal.is_some_and(|t| t.elapsed() >= self.config.renew_deadline);
                    if is_holding && overdue {
                        warn!(lease = %self.lease(), "no renewal within the renew deadline; giving the Lease up");
                        break;
                    }
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        self.holding.send_replace(false);
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
