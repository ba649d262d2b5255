//! The Kubernetes object model as minik serves it: types, defaults, validation, selectors and
//! patches. Pure logic: no I/O, no clocks, no randomness (callers pass those in).

pub mod cidr;
pub mod cron;
pub mod decode;
pub mod defaults;
pub mod disruption;
pub mod error;
pub mod fields;
pub mod generated;
pub mod hostports;
pub mod kinds;
pub mod names;
pub mod network;
pub mod patch;
pub mod podview;
pub mod printers;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod references;
pub mod request;
pub mod resources;
pub mod selector;
pub mod status;
pub mod time;
pub mod validation;
pub mod wellknown;
pub mod yaml;

pub use error::{ErrorList, FieldError, FieldErrorKind, FieldPath};
pub use k8s_openapi;
pub use status::{ApiError, ObjectRef};
