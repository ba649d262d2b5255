//! Resource quantities (owned by helper A, in progress).
