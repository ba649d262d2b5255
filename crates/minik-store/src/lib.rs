//! minik-store
