//! Accepting a connection on an HTTPS port: a TLS handshake, or, for a client that speaks plain
//! HTTP there, the answer Go's servers give it (kube-apiserver's, the kubelet's), so that curl
//! with `http://` learns what is wrong instead of seeing the connection drop.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What Go's `net/http` writes to a plain-HTTP request on a TLS port.
pub const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The first byte of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;

/// How a connection on an HTTPS port went.
pub enum Accepted {
    /// The handshake completed.
    Tls(Box<TlsStream<TcpStream>>),
    /// The client spoke plain HTTP; it got [`PLAIN_HTTP_ANSWER`] and the connection is closed.
    Plain,
}

/// Completes the TLS handshake of `stream` within `timeout`, or answers a plain-HTTP client.
pub async fn accept(
    mut stream: TcpStream,
    acceptor: &TlsAcceptor,
    timeout: Duration,
) -> std::io::Result<Accepted> {
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the TLS handshake did not complete in time",
        )
    };
    let mut first = [0u8; 1];
    let n = tokio::time::timeout_at(deadline, stream.peek(&mut first))
        .await
        .map_err(|_| timed_out())??;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the client closed the connection before the handshake",
        ));
    }
    if first[0] != HANDSHAKE {
        // A request line starts with a method in capitals; anything else is not worth an answer.
        if first[0].is_ascii_uppercase() {
            let _ = tokio::time::timeout_at(deadline, async {
                stream.write_all(PLAIN_HTTP_ANSWER).await?;
                stream.shutdown().await
            })
            .await;
            return Ok(Accepted::Plain);
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "neither TLS nor HTTP",
        ));
    }
    let tls = tokio::time::timeout_at(deadline, acceptor.accept(stream))
        .await
        .map_err(|_| timed_out())??;
    Ok(Accepted::Tls(Box::new(tls)))
}
