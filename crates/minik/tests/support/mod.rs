//! What the end-to-end tests of the binary share beyond `minik_testkit`: this crate's `minik`
//! binary (only its tests know where cargo built it), and the client's side in [`client`].

#![allow(dead_code)]

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use minik_testkit::{get_json, get_text, process_with, wait_for, Running, Up, DEADLINE};

/// The `minik` binary these tests run, and this crate's directory for the client's relative
/// paths.
pub const MINIK: minik_testkit::Minik =
    minik_testkit::Minik::new(env!("CARGO_BIN_EXE_minik"), env!("CARGO_MANIFEST_DIR"));

/// The client's side: a cluster to run `minik` verbs against.
pub mod client;

/// The pod-network tests' host-side helpers.
pub mod podnet;
