//! Leader election on a `coordination.k8s.io` Lease, so that several operator replicas can run
//! and only one reconciles and writes. kube 5 has no crate for it; this follows client-go's
//! leaderelection: a candidate takes the Lease when it is free, or when its record has not
//! changed for a whole lease duration *as observed locally* (no trust in the holder's clock);
//! every write carries the resourceVersion read, so two candidates cannot both win.
//!
//! Timings (client-go's defaults): lease 15 s, renew every 2 s, give up leading when no renewal
//! succeeded for 10 s. A leader that loses the Lease stops: the process exits and restarts
//! as a candidate, so no half-stopped controller keeps writing.

use crate::error::Error;
use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity, written as the holder.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
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

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Leading,
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

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn error(&self, source: kube::Error) -> Error {
        Error::Lease {
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
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Error> {
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
        info!(previous = ?holder, "the leader Lease is free or expired; taking it");
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
    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<Attempt, Error> {
        match result {
            Ok(lease) => {
                if let Some(spec) = &lease.spec {
                    self.observe(spec);
                }
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Attempt::Following { holder: None })
            }
            Err(source) => Err(self.error(source)),
        }
    }

    /// Give the Lease up (on shutdown) so that a successor need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), Error> {
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

    /// Campaign, then lead: `leading` turns true when the Lease is won. Returns when
    /// leadership is lost (another holder, or no renewal within the renew deadline).
    pub async fn run(&mut self, leading: watch::Sender<bool>, metrics: Arc<Metrics>) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = self.try_acquire_or_renew().await;
            let is_leading = *leading.borrow();
            match attempt {
                Ok(Attempt::Leading) => {
                    last_renewal = Some(Instant::now());
                    if !is_leading {
                        info!(identity = %self.config.identity, "became the leader");
                        metrics.leader.set(1);
                        let _ = leading.send(true);
                    }
                }
                Ok(Attempt::Following { holder }) if is_leading => {
                    warn!(?holder, "lost the leader Lease");
                    break;
                }
                Ok(Attempt::Following { .. }) => {}
                Err(error) => {
                    warn!(%error, "leader election attempt failed");
                    let overdue =
                        last_renewal.is_some_and(|t| t.elapsed() >= self.config.renew_deadline);
                    if is_leading && overdue {
                        warn!("no renewal within the renew deadline; stepping down");
                        break;
                    }
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        metrics.leader.set(0);
        let _ = leading.send(false);
    }
}

/// `<pod name>_<random>`: unique per process, so a restarted pod is a new candidate.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "gridline-operator".to_string());
    let mut bytes = [0u8; 4];
    // Without randomness two processes on one host could share an identity; the host name
    // alone still distinguishes pods.
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}_{suffix}")
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
