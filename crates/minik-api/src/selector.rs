//! Label selectors: parsing, matching and validation (owned by helper A, in progress).
