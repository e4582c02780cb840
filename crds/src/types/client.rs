//! `Client`: an MQTT client identity (Event Grid `namespaces/clients`).

use super::common::{ObjectRef, ResourceStatus, State};
use crate::attributes::Attributes;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An MQTT client identity: who may connect, how it proves it, and the attributes that
/// place it in client groups.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gridline.dev",
    version = "v1alpha1",
    kind = "Client",
    namespaced,
    status = "ResourceStatus",
    shortname = "gclient",
    category = "gridline",
    validation = Rule::new(super::common::NAME_RULE).message(super::common::NAME_RULE_MESSAGE),
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespaceRef.name"}"#,
    printcolumn = r#"{"name":"Authentication Name","type":"string","jsonPath":".spec.authenticationName"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClientSpec {
    /// The Gridline Namespace this client belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespaceRef is immutable"))]
    pub namespace_ref: ObjectRef,
    /// The name the client authenticates as (the MQTT CONNECT username, or the certificate
    /// field the validation scheme names). Defaults to the object's name. 1-128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub authentication_name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// How a client certificate proves this identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_authentication: Option<ClientCertificateAuthentication>,
    /// `Disabled` clients cannot connect; connected ones are disconnected.
    #[serde(default)]
    pub state: State,
    /// Attributes matched by client group queries: string, integer or array-of-string values.
    /// At most 25 attributes.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    #[schemars(extend("maxProperties" = 25))]
    pub attributes: Attributes,
}

/// Event Grid `clientCertificateAuthentication`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateAuthentication {
    /// Which certificate field must equal the authentication name, or `ThumbprintMatch`.
    #[serde(default)]
    pub validation_scheme: ValidationScheme,
    /// Certificate thumbprints (SHA-256 hex) accepted under `ThumbprintMatch`: at most 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub allowed_thumbprints: Vec<String>,
}

/// Event Grid's client certificate validation schemes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValidationScheme {
    #[default]
    SubjectMatchesAuthenticationName,
    DnsMatchesAuthenticationName,
    UriMatchesAuthenticationName,
    IpMatchesAuthenticationName,
    EmailMatchesAuthenticationName,
    ThumbprintMatch,
}
