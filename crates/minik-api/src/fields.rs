//! Field selectors (owned by helper A, in progress).
