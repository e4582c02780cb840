//! Clients, ClientGroups, TopicSpaces and PermissionBindings: the MQTT access model.

use super::{Compiler, ObjectProblems};
use crate::attributes::AttributeValue;
use crate::model::objects::{Kind, ObjectKey};
use crate::model::query::ClientGroupQuery;
use crate::model::snapshot::{
    ALL_CLIENTS_GROUP, CompiledClient, CompiledClientGroup, CompiledPermissionBinding,
    CompiledTopicSpace, MAX_GROUPS_PER_CLIENT,
};
use crate::model::topic::TopicTemplate;
use crate::types::State;
use crate::types::client::ValidationScheme;
use kube::ResourceExt;
use std::collections::BTreeSet;

/// Event Grid: at most 25 attributes per client.
const MAX_ATTRIBUTES: usize = 25;
/// Gridline: attribute names usable in queries and templates.
const MAX_ATTRIBUTE_NAME_LENGTH: usize = 32;
/// Gridline: longest string attribute value (a value may fill a topic level).
const MAX_ATTRIBUTE_VALUE_LENGTH: usize = 256;
/// Event Grid: authentication names are up to 128 characters.
const MAX_AUTHENTICATION_NAME_LENGTH: usize = 128;
/// Event Grid: at most 10 topic templates per topic space.
const MAX_TOPIC_TEMPLATES: usize = 10;

/// Objects of one kind that belong to this Namespace, sorted by name.
macro_rules! owned_objects {
    ($compiler:expr, $field:ident) => {{
        let mut objects: Vec<_> = $compiler
            .scope
            .objects
            .$field
            .iter()
            .filter(|o| $compiler.scope.in_k8s_namespace(*o))
            .filter(|o| o.spec.namespace_ref.name == $compiler.scope.namespace_name)
            .collect();
        objects.sort_by_key(|o| o.name_any());
        objects
    }};
}

impl Compiler<'_> {
    pub(super) fn compile_client_groups(&mut self) {
        let mut seen = BTreeSet::new();
        for group in owned_objects!(self, client_groups) {
            let mut problems = ObjectProblems::new(ObjectKey::of(Kind::ClientGroup, group));
            problems.check_name();
            if !seen.insert(group.name_any()) {
                problems.add(
                    "metadata.name",
                    "this ClientGroup is defined more than once",
                );
            }
            let query = match ClientGroupQuery::parse(&group.spec.query) {
                Ok(query) => Some(query),
                Err(error) => {
                    problems.add("spec.query", error.to_string());
                    None
                }
            };
            if let (true, Some(query)) = (problems.finish(&mut self.errors), query) {
                let name = group.name_any();
                self.snapshot
                    .client_groups
                    .insert(name.clone(), CompiledClientGroup { name, query });
            }
        }
    }

    pub(super) fn compile_topic_spaces(&mut self) {
        let mut seen = BTreeSet::new();
        for space in owned_objects!(self, topic_spaces) {
            let mut problems = ObjectProblems::new(ObjectKey::of(Kind::TopicSpace, space));
            problems.check_name();
            if !seen.insert(space.name_any()) {
                problems.add("metadata.name", "this TopicSpace is defined more than once");
            }
            let templates = &space.spec.topic_templates;
            if templates.is_empty() || templates.len() > MAX_TOPIC_TEMPLATES {
                problems.add(
                    "spec.topicTemplates",
                    format!(
                        "{} topic templates; a topic space has 1-{MAX_TOPIC_TEMPLATES}",
                        templates.len()
                    ),
                );
            }
            let mut compiled = Vec::new();
            let mut texts = BTreeSet::new();
            for (index, text) in templates.iter().enumerate() {
                let field = format!("spec.topicTemplates[{index}]");
                if !texts.insert(text.as_str()) {
                    problems.add(&field, format!("template '{text}' is listed twice"));
                    continue;
                }
                match TopicTemplate::parse(text) {
                    Ok(template) => compiled.push(template),
                    Err(error) => problems.add(field, format!("'{text}': {error}")),
                }
            }
            if problems.finish(&mut self.errors) {
                let name = space.name_any();
                self.snapshot.topic_spaces.insert(
                    name.clone(),
                    CompiledTopicSpace {
                        name,
                        templates: compiled,
                    },
                );
            }
        }
    }

    pub(super) fn compile_clients(&mut self) {
        let mut seen = BTreeSet::new();
        for client in owned_objects!(self, clients) {
            let mut problems = ObjectProblems::new(ObjectKey::of(Kind::Client, client));
            problems.check_name();
            if !seen.insert(client.name_any()) {
                problems.add("metadata.name", "this Client is defined more than once");
            }
            let spec = &client.spec;
            let authentication_name = spec
                .authentication_name
                .clone()
                .unwrap_or_else(|| client.name_any());
            let length = authentication_name.chars().count();
            if length == 0 || length > MAX_AUTHENTICATION_NAME_LENGTH {
                problems.add(
                    "spec.authenticationName",
                    format!("{length} characters; an authentication name has 1-{MAX_AUTHENTICATION_NAME_LENGTH}"),
                );
            } else if authentication_name.chars().any(char::is_control) {
                problems.add(
                    "spec.authenticationName",
                    "an authentication name cannot contain control characters",
                );
            } else if let Some(owner) = self
                .snapshot
                .clients_by_authentication_name
                .get(&authentication_name)
            {
                problems.add(
                    "spec.authenticationName",
                    format!("authentication name '{authentication_name}' is already used by Client '{owner}'"),
                );
            }

            if spec.attributes.len() > MAX_ATTRIBUTES {
                problems.add(
                    "spec.attributes",
                    format!(
                        "{} attributes; a client has at most {MAX_ATTRIBUTES}",
                        spec.attributes.len()
                    ),
                );
            }
            for (name, value) in &spec.attributes {
                let field = format!("spec.attributes.{name}");
                let valid_name = (1..=MAX_ATTRIBUTE_NAME_LENGTH).contains(&name.len())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid_name {
                    problems.add(
                        &field,
                        format!("'{name}' is not an attribute name: use 1-{MAX_ATTRIBUTE_NAME_LENGTH} letters, digits and '_'"),
                    );
                }
                let too_long = match value {
                    AttributeValue::String(text) => {
                        text.chars().count() > MAX_ATTRIBUTE_VALUE_LENGTH
                    }
                    AttributeValue::StringArray(items) => items
                        .iter()
                        .any(|text| text.chars().count() > MAX_ATTRIBUTE_VALUE_LENGTH),
                    AttributeValue::Integer(_) => false,
                };
                if too_long {
                    problems.add(
                        &field,
                        format!(
                            "attribute values are at most {MAX_ATTRIBUTE_VALUE_LENGTH} characters"
                        ),
                    );
                }
            }

            let certificate = spec
                .client_certificate_authentication
                .clone()
                .unwrap_or_default();
            let mut allowed_thumbprints = Vec::new();
            for (index, thumbprint) in certificate.allowed_thumbprints.iter().enumerate() {
                let normalized: String = thumbprint
                    .chars()
                    .filter(|c| *c != ':')
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                if normalized.len() == 64 && normalized.chars().all(|c| c.is_ascii_hexdigit()) {
                    allowed_thumbprints.push(normalized);
                } else {
                    problems.add(
                        format!("spec.clientCertificateAuthentication.allowedThumbprints[{index}]"),
                        format!(
                            "'{thumbprint}' is not a SHA-256 thumbprint (64 hexadecimal digits)"
                        ),
                    );
                }
            }
            if certificate.allowed_thumbprints.len() > 2 {
                problems.add(
                    "spec.clientCertificateAuthentication.allowedThumbprints",
                    "at most 2 thumbprints (a current and a next certificate)",
                );
            }
            if certificate.validation_scheme == ValidationScheme::ThumbprintMatch
                && certificate.allowed_thumbprints.is_empty()
            {
                problems.add(
                    "spec.clientCertificateAuthentication.allowedThumbprints",
                    "validationScheme ThumbprintMatch needs at least one thumbprint",
                );
            }

            if problems.finish(&mut self.errors) {
                let mut groups: Vec<String> = self
                    .snapshot
                    .client_groups
                    .values()
                    .filter(|group| {
                        group
                            .query
                            .matches_client(&authentication_name, &spec.attributes)
                    })
                    .map(|group| group.name.clone())
                    .take(MAX_GROUPS_PER_CLIENT)
                    .collect();
                groups.push(ALL_CLIENTS_GROUP.to_string());
                let name = client.name_any();
                self.snapshot
                    .clients_by_authentication_name
                    .insert(authentication_name.clone(), name.clone());
                self.snapshot.clients.insert(
                    name.clone(),
                    CompiledClient {
                        name,
                        authentication_name,
                        enabled: spec.state == State::Enabled,
                        attributes: spec.attributes.clone(),
                        validation_scheme: certificate.validation_scheme,
                        allowed_thumbprints,
                        groups,
                    },
                );
            }
        }
    }

    pub(super) fn compile_permission_bindings(&mut self) {
        let mut seen = BTreeSet::new();
        for binding in owned_objects!(self, permission_bindings) {
            let mut problems = ObjectProblems::new(ObjectKey::of(Kind::PermissionBinding, binding));
            problems.check_name();
            if !seen.insert(binding.name_any()) {
                problems.add(
                    "metadata.name",
                    "this PermissionBinding is defined more than once",
                );
            }
            let spec = &binding.spec;
            if spec.client_group_name != ALL_CLIENTS_GROUP
                && !self
                    .snapshot
                    .client_groups
                    .contains_key(&spec.client_group_name)
            {
                let message = self.missing_reference(
                    "ClientGroup",
                    &spec.client_group_name,
                    self.scope
                        .objects
                        .client_groups
                        .iter()
                        .find(|g| {
                            self.scope.in_k8s_namespace(*g)
                                && g.name_any() == spec.client_group_name
                        })
                        .map(|g| g.spec.namespace_ref.name.as_str()),
                );
                problems.add("spec.clientGroupName", message);
            }
            if !self
                .snapshot
                .topic_spaces
                .contains_key(&spec.topic_space_name)
            {
                let message = self.missing_reference(
                    "TopicSpace",
                    &spec.topic_space_name,
                    self.scope
                        .objects
                        .topic_spaces
                        .iter()
                        .find(|s| {
                            self.scope.in_k8s_namespace(*s) && s.name_any() == spec.topic_space_name
                        })
                        .map(|s| s.spec.namespace_ref.name.as_str()),
                );
                problems.add("spec.topicSpaceName", message);
            }
            if problems.finish(&mut self.errors) {
                let name = binding.name_any();
                self.snapshot.permission_bindings.insert(
                    name.clone(),
                    CompiledPermissionBinding {
                        name,
                        client_group: spec.client_group_name.clone(),
                        topic_space: spec.topic_space_name.clone(),
                        permission: spec.permission,
                    },
                );
            }
        }
    }

    /// Why a reference did not resolve: absent, in another Namespace, or itself in error.
    fn missing_reference(
        &self,
        kind: &str,
        name: &str,
        found_in_namespace: Option<&str>,
    ) -> String {
        match found_in_namespace {
            None => format!("{kind} '{name}' not found"),
            Some(namespace) if namespace != self.scope.namespace_name => format!(
                "{kind} '{name}' belongs to Namespace '{namespace}', not '{}'",
                self.scope.namespace_name
            ),
            Some(_) => {
                format!("{kind} '{name}' is not accepted: fix the errors reported on it first")
            }
        }
    }
}
