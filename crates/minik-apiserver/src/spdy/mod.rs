//! SPDY/3.1, the multiplexing protocol kubectl speaks for `port-forward` (and `exec`, `attach`)
//! after `Upgrade: SPDY/3.1`: frames ([`frame`]), zlib-compressed header blocks ([`headers`]),
//! and the server side of a session with flow control ([`session`]). Only what a server of
//! client-opened streams needs: the server opens no streams and pushes nothing.

pub mod frame;
pub mod headers;
pub mod session;

pub use headers::HeaderBlock;
pub use session::{serve, Config, StreamReader, StreamWriter};
