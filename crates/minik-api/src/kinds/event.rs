//! Events (core v1): defaults and validation. The server stores each Event as given; merging repeats is the emitters' work, expiry the server's sweep (`--event-ttl`).

use k8s_openapi::api::core::v1::Event;

use super::{typed_rules, Common, Strategy};
use crate::{defaults, validation};

typed_rules!(
    Event,
    defaults::event,
    validation::event,
    validation::event_update
);

/// The common rules of the registry are all of the kind's.
pub(crate) const EVENTS: &dyn Strategy = &Common;
