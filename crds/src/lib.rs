//! Gridline's custom resources (`gridline.dev/v1alpha1`), their validation, and the compiled
//! model shared by the operator and the data plane.

pub mod attributes;
pub mod crd;
pub mod model;
pub mod types;
