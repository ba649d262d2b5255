//! Validation of each served kind (owned by helper C, in progress).
