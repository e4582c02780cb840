//! The seven custom resource kinds of `gridline.dev/v1alpha1`.

pub mod client;
pub mod client_group;
pub mod common;
pub mod event_subscription;
pub mod filters;
pub mod namespace;
mod namespace_cluster;
pub mod permission_binding;
pub mod topic;
pub mod topic_space;

pub use common::*;

pub use topic::{Topic, TopicSpec};

pub use client::{Client, ClientSpec};
pub use client_group::{ClientGroup, ClientGroupSpec};
pub use event_subscription::{EventSubscription, EventSubscriptionSpec};
pub use namespace::{
    ClusterMember, ClusterSettings, MAX_CLUSTER_MEMBERS, Namespace, NamespaceSpec, NamespaceStatus,
};
pub use permission_binding::{PermissionBinding, PermissionBindingSpec};
pub use topic_space::{TopicSpace, TopicSpaceSpec};
