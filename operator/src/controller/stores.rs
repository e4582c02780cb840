//! stores
pub struct Stores;
