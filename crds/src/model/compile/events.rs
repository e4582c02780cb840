//! Topics and EventSubscriptions: the CloudEvents side of a Namespace.

use super::{Compiler, ObjectProblems};
use crate::model::duration::parse_iso8601_duration;
use crate::model::filter::CompiledFilter;
use crate::model::objects::{Kind, ObjectKey, SecretLookup};
use crate::model::snapshot::{
    CompiledSubscription, CompiledTopic, Delivery, DeliveryHeader, HeaderValueSource, PushDelivery,
    QueueDelivery,
};
use crate::types::event_subscription::{
    DeadLetterWithResourceIdentity, DeliveryAttributeMappingType, DeliveryMode, PushInfo, QueueInfo,
};
use crate::types::{EventSubscription, Topic};
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
/// Event Grid: a push subscription's time to live is at most seven days.
const MAX_PUSH_TIME_TO_LIVE: Duration = Duration::from_secs(7 * 86_400);

impl Compiler<'_> {
    pub(super) fn compile_topics(&mut self) {
        let mut topics: Vec<&Topic> = self
            .scope
            .objects
            .topics
            .iter()
            .filter(|t| self.scope.in_k8s_namespace(*t))
            .filter(|t| t.spec.namespace_ref.name == self.scope.namespace_name)
            .collect();
        topics.sort_by_key(|t| t.name_any());
        let mut seen = BTreeSet::new();
        for topic in topics {
            let mut problems = ObjectProblems::new(ObjectKey::of(Kind::Topic, topic));
            problems.check_name();
            if !seen.insert(topic.name_any()) {
                problems.add("metadata.name", "this Topic is defined more than once");
            }
            problems.check_range(
                "spec.eventRetentionInDays",
                topic.spec.event_retention_in_days,
                1,
                7,
            );
            if problems.finish(&mut self.errors) {
                let name = topic.name_any();
                let days = u64::try_from(topic.spec.event_retention_in_days).unwrap_or(1);
                self.snapshot.topics.insert(
                    name.clone(),
                    CompiledTopic {
                        name,
                        event_retention: DAY * days as u32,
                    },
                );
            }
        }
    }

    /// Whether `name` is an accepted Topic of this Namespace; otherwise why not.
    pub(super) fn topic_reference(&self, name: &str) -> Result<(), String> {
        if self.snapshot.topics.contains_key(name) {
            return Ok(());
        }
        let existing = self
            .scope
            .objects
            .topics
            .iter()
            .find(|t| self.scope.in_k8s_namespace(*t) && t.name_any() == name);
        Err(match existing {
            Some(topic) if topic.spec.namespace_ref.name != self.scope.namespace_name => format!(
                "Topic '{name}' belongs to Namespace '{}', not '{}'",
                topic.spec.namespace_ref.name, self.scope.namespace_name
            ),
            Some(_) => {
                format!("Topic '{name}' is not accepted: fix the errors reported on it first")
            }
            None => format!("Topic '{name}' not found"),
        })
    }

    pub(super) fn compile_subscriptions(&mut self) {
        let topic_names: BTreeSet<String> = self
            .scope
            .objects
            .topics
            .iter()
            .filter(|t| self.scope.in_k8s_namespace(*t))
            .filter(|t| t.spec.namespace_ref.name == self.scope.namespace_name)
            .map(|t| t.name_any())
            .collect();
        // A subscription belongs to the Namespace of its Topic; one whose Topic exists nowhere
        // is reported by `compile_all`.
        let mut subscriptions: Vec<&EventSubscription> = self
            .scope
            .objects
            .event_subscriptions
            .iter()
            .filter(|s| self.scope.in_k8s_namespace(*s))
            .filter(|s| topic_names.contains(&s.spec.topic_ref.name))
            .collect();
        subscriptions.sort_by_key(|s| s.name_any());
        let mut seen = BTreeSet::new();
        for subscription in subscriptions {
            let mut problems =
                ObjectProblems::new(ObjectKey::of(Kind::EventSubscription, subscription));
            problems.check_name();
            if !seen.insert(subscription.name_any()) {
                problems.add(
                    "metadata.name",
                    "this EventSubscription is defined more than once",
                );
            }
            if let Some(compiled) = self.compile_subscription(&mut problems, subscription) {
                if problems.finish(&mut self.errors) {
                    self.snapshot
                        .subscriptions
                        .insert((compiled.topic.clone(), compiled.name.clone()), compiled);
                }
            } else {
                problems.finish(&mut self.errors);
            }
        }
    }

    fn compile_subscription(
        &self,
        problems: &mut ObjectProblems,
        subscription: &EventSubscription,
    ) -> Option<CompiledSubscription> {
        let spec = &subscription.spec;
        let topic_name = &spec.topic_ref.name;
        if let Err(message) = self.topic_reference(topic_name) {
            problems.add("spec.topicRef.name", message);
        }
        let retention = self
            .snapshot
            .topics
            .get(topic_name)
            .map(|t| t.event_retention)
            .unwrap_or(7 * DAY);

        let config = &spec.delivery_configuration;
        let field = "spec.deliveryConfiguration";
        let delivery = match (config.delivery_mode, &config.queue, &config.push) {
            (DeliveryMode::Queue, Some(queue), None) => self
                .queue_delivery(problems, queue, retention, topic_name)
                .map(Delivery::Queue),
            (DeliveryMode::Push, None, Some(push)) => self
                .push_delivery(problems, push, retention, topic_name)
                .map(Delivery::Push),
            (DeliveryMode::Queue, _, _) => {
                problems.add(
                    field,
                    "deliveryMode Queue needs 'queue' settings and no 'push' settings",
                );
                None
            }
            (DeliveryMode::Push, _, _) => {
                problems.add(
                    field,
                    "deliveryMode Push needs 'push' settings (with a destination) and no 'queue' settings",
                );
                None
            }
        };

        let filter = match &spec.filters_configuration {
            Some(config) => match CompiledFilter::compile(config) {
                Ok(filter) => Some(filter),
                Err(filter_problems) => {
                    for problem in filter_problems {
                        let problem = problem.under("spec.filtersConfiguration");
                        problems.add(problem.field, problem.message);
                    }
                    None
                }
            },
            None => Some(CompiledFilter::accept_all()),
        };

        let expiration_time = match &spec.expiration_time_utc {
            Some(text) => {
                match chrono::DateTime::parse_from_rfc3339(text) {
                    Ok(time) => Some(time.with_timezone(&chrono::Utc)),
                    Err(error) => {
                        problems.add(
                        "spec.expirationTimeUtc",
                        format!("'{text}' is not an RFC 3339 time (e.g. 2030-01-31T00:00:00Z): {error}"),
                    );
                        None
                    }
                }
            }
            None => None,
        };

        Some(CompiledSubscription {
            name: subscription.name_any(),
            topic: topic_name.clone(),
            delivery: delivery?,
            filter: filter?,
            expiration_time,
        })
    }

    fn queue_delivery(
        &self,
        problems: &mut ObjectProblems,
        queue: &QueueInfo,
        retention: Duration,
        topic: &str,
    ) -> Option<QueueDelivery> {
        let field = "spec.deliveryConfiguration.queue";
        problems.check_range(
            &format!("{field}.receiveLockDurationInSeconds"),
            queue.receive_lock_duration_in_seconds,
            60,
            300,
        );
        problems.check_range(
            &format!("{field}.maxDeliveryCount"),
            queue.max_delivery_count,
            1,
            10,
        );
        let event_time_to_live = time_to_live(
            problems,
            &format!("{field}.eventTimeToLive"),
            queue.event_time_to_live.as_deref(),
            retention,
        );
        let dead_letter_topic = self.dead_letter_topic(
            problems,
            &format!("{field}.deadLetterDestinationWithResourceIdentity"),
            queue
                .dead_letter_destination_with_resource_identity
                .as_ref(),
            topic,
        );
        Some(QueueDelivery {
            receive_lock_duration: Duration::from_secs(
                u64::try_from(queue.receive_lock_duration_in_seconds).ok()?,
            ),
            max_delivery_count: u32::try_from(queue.max_delivery_count).ok()?,
            event_time_to_live: event_time_to_live?,
            dead_letter_topic,
        })
    }

    fn push_delivery(
        &self,
        problems: &mut ObjectProblems,
        push: &PushInfo,
        retention: Duration,
        topic: &str,
    ) -> Option<PushDelivery> {
        let field = "spec.deliveryConfiguration.push";
        problems.check_range(
            &format!("{field}.maxDeliveryCount"),
            push.max_delivery_count,
            1,
            10,
        );
        let event_time_to_live = time_to_live(
            problems,
            &format!("{field}.eventTimeToLive"),
            push.event_time_to_live.as_deref(),
            retention.min(MAX_PUSH_TIME_TO_LIVE),
        );
        let dead_letter_topic = self.dead_letter_topic(
            problems,
            &format!("{field}.deadLetterDestinationWithResourceIdentity"),
            push.dead_letter_destination_with_resource_identity.as_ref(),
            topic,
        );

        let webhook = &push.destination.properties;
        let field = "spec.deliveryConfiguration.push.destination.properties";
        match url::Url::parse(&webhook.endpoint_url) {
            Ok(url) if url.scheme() == "https" && url.host().is_some() => {}
            Ok(url) if url.scheme() == "http" && url.host().is_some() => {
                let allowed = self
                    .scope
                    .objects
                    .namespaces
                    .iter()
                    .find(|ns| {
                        self.scope.in_k8s_namespace(*ns)
                            && ns.name_any() == self.scope.namespace_name
                    })
                    .is_some_and(|ns| ns.spec.listeners.allow_insecure_webhooks);
                if !allowed {
                    problems.add(
                        format!("{field}.endpointUrl"),
                        "http:// endpoints need the Namespace's listeners.allowInsecureWebhooks; use https://",
                    );
                }
            }
            Ok(_) => problems.add(
                format!("{field}.endpointUrl"),
                format!(
                    "'{}' must be an http:// or https:// URL with a host",
                    webhook.endpoint_url
                ),
            ),
            Err(error) => problems.add(
                format!("{field}.endpointUrl"),
                format!("'{}' is not a URL: {error}", webhook.endpoint_url),
            ),
        }
        problems.check_range(
            &format!("{field}.maxEventsPerBatch"),
            webhook.max_events_per_batch,
            1,
            5000,
        );
        problems.check_range(
            &format!("{field}.preferredBatchSizeInKilobytes"),
            webhook.preferred_batch_size_in_kilobytes,
            1,
            1024,
        );

        let mut headers = Vec::new();
        let mut header_names = BTreeSet::new();
        for (index, mapping) in webhook.delivery_attribute_mappings.iter().enumerate() {
            let field = format!("{field}.deliveryAttributeMappings[{index}]");
            let valid_name = (1..=128).contains(&mapping.name.len())
                && mapping
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid_name {
                problems.add(
                    format!("{field}.name"),
                    format!(
                        "'{}' is not a header name: use 1-128 letters, digits and '-'",
                        mapping.name
                    ),
                );
            }
            if !header_names.insert(mapping.name.to_ascii_lowercase()) {
                problems.add(
                    format!("{field}.name"),
                    format!("header '{}' is mapped twice", mapping.name),
                );
            }
            let properties = &mapping.properties;
            let value = match mapping.mapping_type {
                DeliveryAttributeMappingType::Static => {
                    match (&properties.value, &properties.secret_key_ref) {
                        (Some(value), None) if properties.is_secret => {
                            Some(HeaderValueSource::Secret(value.clone()))
                        }
                        (Some(value), None) => Some(HeaderValueSource::Static(value.clone())),
                        (None, Some(secret)) => {
                            match self.scope.secret(&secret.name, &secret.key) {
                                SecretLookup::Found(bytes) => match String::from_utf8(bytes) {
                                    Ok(value) => Some(HeaderValueSource::Secret(value)),
                                    Err(_) => {
                                        problems.add(
                                            format!("{field}.properties.secretKeyRef"),
                                            format!(
                                                "key '{}' of Secret '{}' is not UTF-8 text",
                                                secret.key, secret.name
                                            ),
                                        );
                                        None
                                    }
                                },
                                SecretLookup::NoSecret => {
                                    problems.add(
                                        format!("{field}.properties.secretKeyRef.name"),
                                        format!("Secret '{}' not found", secret.name),
                                    );
                                    None
                                }
                                SecretLookup::NoKey => {
                                    problems.add(
                                        format!("{field}.properties.secretKeyRef.key"),
                                        format!(
                                            "Secret '{}' has no key '{}'",
                                            secret.name, secret.key
                                        ),
                                    );
                                    None
                                }
                            }
                        }
                        _ => {
                            problems.add(
                                format!("{field}.properties"),
                                "a Static mapping takes exactly one of 'value' and 'secretKeyRef'",
                            );
                            None
                        }
                    }
                }
                DeliveryAttributeMappingType::Dynamic => match &properties.source_field {
                    Some(source) if !source.is_empty() && properties.value.is_none() => {
                        Some(HeaderValueSource::EventAttribute(source.clone()))
                    }
                    _ => {
                        problems.add(
                            format!("{field}.properties"),
                            "a Dynamic mapping takes 'sourceField' (an event attribute such as 'subject' or 'data.a') and no 'value'",
                        );
                        None
                    }
                },
            };
            if let Some(value) = value {
                headers.push(DeliveryHeader {
                    name: mapping.name.clone(),
                    value,
                });
            }
        }

        let ca_certificate_pem = webhook
            .ca_certificate_secret_name
            .as_ref()
            .and_then(|secret| {
                self.pem_from_secret(
                    problems,
                    &format!("{field}.caCertificateSecretName"),
                    secret,
                    "ca.crt",
                    "CERTIFICATE",
                )
            });

        Some(PushDelivery {
            endpoint_url: webhook.endpoint_url.clone(),
            max_events_per_batch: u32::try_from(webhook.max_events_per_batch).ok()?,
            preferred_batch_size_bytes: u32::try_from(webhook.preferred_batch_size_in_kilobytes)
                .ok()?
                .saturating_mul(1024),
            max_delivery_count: u32::try_from(push.max_delivery_count).ok()?,
            event_time_to_live: event_time_to_live?,
            dead_letter_topic,
            headers,
            ca_certificate_pem,
        })
    }

    fn dead_letter_topic(
        &self,
        problems: &mut ObjectProblems,
        field: &str,
        destination: Option<&DeadLetterWithResourceIdentity>,
        subscription_topic: &str,
    ) -> Option<String> {
        let topic = &destination?.dead_letter_destination.topic_ref.name;
        let field = format!("{field}.deadLetterDestination.topicRef.name");
        if topic == subscription_topic {
            problems.add(
                field,
                format!("a subscription cannot dead-letter into the Topic it reads ('{topic}')"),
            );
            return None;
        }
        match self.topic_reference(topic) {
            Ok(()) => Some(topic.clone()),
            Err(message) => {
                problems.add(field, message);
                None
            }
        }
    }
}

/// An `eventTimeToLive`: at least one minute and at most `limit`; defaults to `limit`.
fn time_to_live(
    problems: &mut ObjectProblems,
    field: &str,
    text: Option<&str>,
    limit: Duration,
) -> Option<Duration> {
    let Some(text) = text else {
        return Some(limit);
    };
    match parse_iso8601_duration(text) {
        Ok(duration) if duration < MINUTE => {
            problems.add(
                field,
                format!("{text} is shorter than the minimum of one minute (PT1M)"),
            );
            None
        }
        Ok(duration) if duration > limit => {
            problems.add(
                field,
                format!(
                    "{text} is longer than the limit of {} days (the topic's retention, and at most 7 days for push)",
                    limit.as_secs() / 86_400
                ),
            );
            None
        }
        Ok(duration) => Some(duration),
        Err(message) => {
            problems.add(field, message);
            None
        }
    }
}
