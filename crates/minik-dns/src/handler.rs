//! One DNS message in, one decision out: the answer's bytes, a forward upstream, or silence.
//! No I/O here, so every packet the network can bring is testable (and fuzzed) directly.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use crate::zone::{Resolution, Zone};

/// The UDP payload size the server offers in its OPT record: the DNS Flag Day 2020 value,
/// which avoids IP fragmentation on common paths.
pub(crate) const SERVER_UDP_PAYLOAD: u16 = 1232;

/// The largest message TCP's two-byte length prefix can carry.
const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// How a query came, which bounds the size of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// What to do with one received packet.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// The name is not the zone's: send the packet to the upstream and relay its answer.
    Forward(Forward),
    /// The zone answered with a CNAME to a name outside it: resolve the target upstream and
    /// append what it says (or send `response` as it is if that fails).
    Chase(Chase),
    /// Say nothing: not a query (a response, or too short to have a header).
    Drop,
}

/// A query for the upstream.
#[derive(Debug)]
pub(crate) struct Forward {
    /// The question, to check the upstream's answer against.
    pub query: Query,
    /// The client's ID, to put back into the upstream's answer.
    pub id: u16,
    /// The size the answer to the client may have.
    pub limit: usize,
}

/// A CNAME answer whose target the upstream should resolve.
#[derive(Debug)]
pub(crate) struct Chase {
    pub response: Message,
    pub target: Name,
    pub query_type: RecordType,
    pub limit: usize,
}

/// Decides what to answer to `packet`. `forwarding` says whether an upstream is configured:
/// without one, names outside the zone are REFUSED, as CoreDNS answers a name no server block
/// of it serves.
pub(crate) fn handle(
    zone: &Zone,
    packet: &[u8],
    transport: Transport,
    forwarding: bool,
) -> Outcome {
    // No header, or a response (never answer those: two servers would loop): silence.
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%error, "malformed DNS query");
            return Outcome::Reply(header_only_reply(packet, ResponseCode::FormErr));
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let limit = answer_limit(&request, transport);
    if request.metadata.op_code != OpCode::Query {
        return Outcome::Reply(encode(
            &reply(&request, ResponseCode::NotImp, forwarding),
            limit,
        ));
    }
    if request.queries.len() != 1 {
        return Outcome::Reply(encode(
            &reply(&request, ResponseCode::FormErr, forwarding),
            limit,
        ));
    }
    if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        return Outcome::Reply(encode(
            &reply(&request, ResponseCode::BADVERS, forwarding),
            limit,
        ));
    }
    let query = &request.queries[0];
    let query_type = query.query_type();
    if query.query_class() != DNSClass::IN
        || matches!(query_type, RecordType::AXFR | RecordType::IXFR)
    {
        // The zone is not for transfer (CoreDNS's kubernetes plugin refuses AXFR and IXFR too)
        // and only has class IN.
        return Outcome::Reply(encode(
            &reply(&request, ResponseCode::Refused, forwarding),
            limit,
        ));
    }
    let Some(resolution) = zone.resolve(query.name(), query_type) else {
        if forwarding {
            return Outcome::Forward(Forward {
                query: query.clone(),
                id: request.metadata.id,
                limit,
            });
        }
        return Outcome::Reply(encode(
            &reply(&request, ResponseCode::Refused, forwarding),
            limit,
        ));
    };
    let Resolution {
        rcode,
        authoritative,
        answers,
        authorities,
        additionals,
        chase,
    } = resolution;
    let mut response = reply(&request, rcode, forwarding);
    response.metadata.authoritative = authoritative;
    response.answers = answers;
    response.authorities = authorities;
    response.additionals = additionals;
    match chase {
        Some(target) if forwarding => Outcome::Chase(Chase {
            response,
            target,
            query_type,
            limit,
        }),
        _ => Outcome::Reply(encode(&response, limit)),
    }
}

/// The end of a chase: `response` with what the upstream said about the CNAME's target.
pub(crate) fn finish_chase(chase: Chase, upstream_answers: Vec<Record>) -> Vec<u8> {
    let mut response = chase.response;
    response.answers.extend(upstream_answers);
    encode(&response, chase.limit)
}

/// SERVFAIL to a query the upstream did not answer.
pub(crate) fn server_failure(forward: &Forward) -> Vec<u8> {
    let mut response = Message::response(forward.id, OpCode::Query);
    response.metadata.response_code = ResponseCode::ServFail;
    response.metadata.recursion_desired = true;
    response.metadata.recursion_available = true;
    response.add_query(forward.query.clone());
    encode(&response, forward.limit)
}

/// An upstream's answer made fit for the client: its ID back, and truncated when it is larger
/// than the client can take. None when the bytes do not parse as a message.
pub(crate) fn relay(mut answer: Vec<u8>, forward: &Forward) -> Option<Vec<u8>> {
    if answer.len() < 12 {
        return None;
    }
    answer[..2].copy_from_slice(&forward.id.to_be_bytes());
    if answer.len() <= forward.limit {
        return Some(answer);
    }
    let message = Message::from_vec(&answer).ok()?;
    Some(encode(&message, forward.limit))
}

/// The largest answer the client takes: 512 bytes over UDP, more when its OPT record says
/// so; 64 KiB over TCP.
fn answer_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => MAX_TCP_MESSAGE,
        Transport::Udp => request
            .edns
            .as_ref()
            .map_or(512, |edns| usize::from(edns.max_payload()).max(512)),
    }
}

/// An empty response to `request` with its ID, question and flags.
fn reply(request: &Message, rcode: ResponseCode, forwarding: bool) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.response_code = rcode;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = forwarding;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(SERVER_UDP_PAYLOAD);
        edns.set_version(0);
        response.set_edns(edns);
    }
    response
}

/// The bytes of `response`, truncated to `limit`: when the whole does not fit, the header
/// with TC set, the question and the OPT record, so the client asks again over TCP (RFC 2181
/// §9: a partial RRset must not be sent as if whole).
pub(crate) fn encode(response: &Message, limit: usize) -> Vec<u8> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return bytes,
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot encode a DNS answer");
            return servfail_bytes(response);
        }
    }
    let mut truncated = Message::response(response.metadata.id, response.metadata.op_code);
    truncated.metadata = response.metadata;
    truncated.metadata.truncation = true;
    truncated.queries = response.queries.clone();
    truncated.edns = response.edns.clone();
    match truncated.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        _ => servfail_bytes(response),
    }
}

fn servfail_bytes(response: &Message) -> Vec<u8> {
    let mut header = [0u8; 12];
    header[..2].copy_from_slice(&response.metadata.id.to_be_bytes());
    header[2] = 0x80 | (u8::from(response.metadata.op_code) << 3);
    header[3] = ResponseCode::ServFail.low();
    header.to_vec()
}

/// A header-only answer to a packet that does not parse: its ID, opcode and RD bit, and
/// `rcode`, with every count zero.
fn header_only_reply(packet: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut header = [0u8; 12];
    header[..2].copy_from_slice(&packet[..2]);
    // QR, the request's opcode and RD.
    header[2] = 0x80 | (packet[2] & 0x79);
    header[3] = rcode.low();
    header.to_vec()
}
