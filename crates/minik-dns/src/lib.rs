//! minik's cluster DNS: the names of the Kubernetes DNS specification
//! (`web.default.svc.cluster.local`, SRV for named ports, headless endpoints, pod names),
//! answered from memory, and every other name forwarded to an upstream.
//!
//! # Design
//!
//! - [`Zone`] is the whole cluster zone as an immutable value, built by one pure function of
//!   the cluster domain, the Services and the Endpoints ([`Zone::build`]). Answering needs no
//!   I/O: a hash look-up of the question's name (case-insensitive) and a filter by type.
//!   Building is cheap (6 to 12 ms for 1,000 Services with 3 endpoints each, `dnsbench`), so
//!   the zone is rebuilt whole when Services or Endpoints change (coalesce bursts of changes
//!   into one rebuild) and swapped in through [`SharedZone::store`]; queries in flight keep the
//!   zone they started with. There is no incremental state to get wrong.
//! - The records and answers follow CoreDNS's `kubernetes` plugin, the reference
//!   implementation of the specification (its `pods insecure` mode and the kubeadm Corefile's
//!   reverse zones with fall-through): TTL 5 s; NXDOMAIN with the zone's SOA in the authority
//!   section for a name that does not exist, NOERROR without answers (NODATA, SOA too) for a
//!   name that exists without the asked type; empty non-terminals exist; a headless Service
//!   without ready endpoints does not exist (NXDOMAIN, as CoreDNS and kube-dns answer);
//!   ExternalName Services are CNAMEs, followed inside the zone and, with an upstream, outside
//!   it; AXFR/IXFR are REFUSED; until the first build ([`Zone::unsynced`]) names in the domain
//!   get SERVFAIL. [`Zone`] lists every name.
//! - Names outside the cluster domain (and reverse names the zone does not know) go to the
//!   [`Upstream`] servers over UDP (TCP when the answer is truncated and the client came over
//!   TCP), each with a timeout; SERVFAIL when none answers. Without an upstream they are
//!   REFUSED: what CoreDNS answers for a name outside every zone its server blocks serve
//!   (a cluster-DNS-only server), rather than SERVFAIL, which clients retry and which would
//!   hide a configuration problem as a transient failure.
//! - [`serve`] runs the sockets: UDP (one receive loop per core on the one socket, answers
//!   truncated with TC to 512 bytes or the client's EDNS size) and TCP (length-prefixed, one
//!   task per connection, idle connections closed after 10 s). The packet handler is a pure
//!   function too: a packet that does not parse gets FORMERR, a response or a packet shorter
//!   than a header is dropped, and nothing panics (property-tested with arbitrary and mutated
//!   packets).
//!
//! Messages are parsed and encoded by `hickory-proto`.

mod error;
mod handler;
mod server;
mod upstream;
mod zone;

pub use error::DnsError;
pub use server::{serve, SharedZone};
pub use upstream::{Upstream, DEFAULT_UPSTREAM_TIMEOUT};
pub use zone::{ClusterDomain, Zone, TTL};

#[cfg(test)]
mod tests;
