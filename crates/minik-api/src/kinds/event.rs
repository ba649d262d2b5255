//! Events (core v1): defaults and validation. The server stores each Event as given; merging repeats is the emitters' work, expiry the server's sweep (`--event-ttl`).

use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use super::{typed_rules, Common, Strategy};
use crate::printers::{col, event_cells, int, wide, Column, Table};
use crate::{defaults, validation};

typed_rules!(
    Event,
    defaults::event,
    validation::event,
    validation::event_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const EVENTS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "Type of this event (Normal, Warning), new types could be added in the future."),
    col("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "The object that this event is about."),
    wide(col("Subobject", "The subobject that this event is about.")),
    wide(col("Source", "The component reporting this event.")),
    col("Message", "A human-readable description of the status of this operation."),
    wide(col("First Seen", "The time at which the event was first recorded.")),
    wide(int("Count", "The number of times this event has occurred.")),
    wide(Column {
        format: "name",
        ..col("Name", "Name must be unique within a namespace.")
    }),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    event_cells(obj, now)
}

const TABLE: Table = Table::new(COLUMNS, cells);
