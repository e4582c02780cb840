//! Status of every Gridline object, computed by pure functions from the compiled model and
//! the readiness of each Namespace's pods.

pub mod conditions;
mod desired;
pub mod members;

pub use desired::{
    AcceptedEvent, CONDITION_CUSTOM_DOMAINS, CONDITION_INSECURE, Evaluation, Plan, Pods, Reported,
    StatusChange, desired_status, evaluate, plan,
};
