//! The store's one error type.

/// What a store operation can fail with. Messages never carry field values
/// (secret-bearing or not), only which record kind and what went wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The record does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken (duplicate id, or a change the store
    /// refuses, such as lowering a minimum decryption version).
    #[error("{0} already exists or conflicts")]
    Conflict(&'static str),
    /// A referenced record does not exist (for example an unknown account).
    #[error("{0} refers to a missing record")]
    MissingReference(&'static str),
    /// The backend failed; the message describes the failure without values.
    #[error("store backend error: {0}")]
    Backend(String),
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;
