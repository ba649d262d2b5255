//! A minimal HTTP/1.1 GET for the two things `HttpApi` does not offer: a pod's log (a byte
//! stream, possibly followed) and `/version`. The client speaks plain `http://`, as `HttpApi`
//! does, and decodes chunked bodies as they arrive.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{fail, CliError, CliResult};

/// An answer whose body is read as it comes.
pub struct Response {
    pub code: u16,
    body: Body,
}

enum Body {
    Chunked(BufReader<TcpStream>),
    Length(BufReader<TcpStream>, u64),
    UntilClose(BufReader<TcpStream>),
}

fn unreachable(base: &str, e: &std::io::Error) -> CliError {
    let cause = e.to_string();
    let cause = cause
        .split(" (os error")
        .next()
        .unwrap_or(&cause)
        .to_lowercase();
    fail!("cannot reach the minik server at {base} ({cause}): is 'minik server' or 'minik up' running?")
}

/// Sends `GET base+path_and_query` and reads the status line and headers.
pub async fn get(base: &str, path_and_query: &str) -> CliResult<Response> {
    let rest = base.strip_prefix("http://").ok_or_else(|| {
        fail!("only http:// server addresses are supported for this command, not {base}")
    })?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(&host_port)
        .await
        .map_err(|e| unreachable(base, &e))?;
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nAccept: */*\r\nUser-Agent: minik\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| unreachable(base, &e))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| unreachable(base, &e))?;
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            fail!(
                "the server at {base} did not answer HTTP: {:?}",
                line.trim()
            )
        })?;
    let mut chunked = false;
    let mut length = None;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| unreachable(base, &e))?;
        let header = line.trim_end();
        if n == 0 || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            }
        }
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked(reader),
        (false, Some(n)) => Body::Length(reader, n),
        (false, None) => Body::UntilClose(reader),
    };
    Ok(Response { code, body })
}

async fn read_some<R: AsyncRead + Unpin>(r: &mut R, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; limit.min(64 * 1024) as usize];
    let n = r.read(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

impl Response {
    /// The next piece of the body; empty at the end.
    pub async fn chunk(&mut self) -> std::io::Result<Vec<u8>> {
        match &mut self.body {
            Body::Length(_, 0) => Ok(Vec::new()),
            Body::Length(r, left) => {
                let data = read_some(r, *left).await?;
                *left = if data.is_empty() {
                    0
                } else {
                    *left - data.len() as u64
                };
                Ok(data)
            }
            Body::UntilClose(r) => read_some(r, 64 * 1024).await,
            Body::Chunked(r) => {
                let mut size_line = String::new();
                r.read_line(&mut size_line).await?;
                let size_text = size_line.trim().split(';').next().unwrap_or_default();
                if size_text.is_empty() {
                    return Ok(Vec::new());
                }
                let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
                })?;
                if size == 0 {
                    return Ok(Vec::new());
                }
                let mut data = vec![0u8; size as usize];
                r.read_exact(&mut data).await?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf).await?;
                Ok(data)
            }
        }
    }

    /// The whole body.
    pub async fn text(&mut self) -> std::io::Result<String> {
        let mut all = Vec::new();
        loop {
            let data = self.chunk().await?;
            if data.is_empty() {
                return Ok(String::from_utf8_lossy(&all).into_owned());
            }
            all.extend_from_slice(&data);
        }
    }

    /// The error a non-2xx answer stands for: the server's `Status` when it sent one.
    pub async fn error(&mut self) -> CliError {
        let code = self.code;
        let text = self.text().await.unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) if v.get("kind").and_then(|k| k.as_str()) == Some("Status") => {
                let status = serde_json::from_value(v).unwrap_or_default();
                CliError::from(minik_api::ApiError::from_status(code, &status))
            }
            _ => fail!("the server answered {code}: {}", text.trim()),
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
