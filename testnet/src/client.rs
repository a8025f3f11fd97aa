//! A small blocking client for a node's local API on loopback, and for
//! its gateway listener over TLS.
//!
//! The CLI's `testnet`, `proposal` and `grant` commands and the end-to-end
//! tests talk to running nodes through it. It speaks just enough HTTP/1.1
//! for one request per connection (`Connection: close`), with a time limit
//! on every read and a size limit on every response, so a wedged or hostile
//! server can neither hang nor exhaust the caller. Over TLS (rustls) the
//! server's certificate is verified against the authority given, for the
//! host of the address; a client certificate is offered when given.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Largest response body read.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest response head (status line and headers).
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Connect and per-read time limit.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A local API endpoint and its admin token, or a gateway over TLS.
#[derive(Debug, Clone)]
pub struct ApiClient {
    address: String,
    token: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Every header field, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> std::io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(std::io::Error::other)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The problem's `detail` (or the body) for an error message.
    pub fn problem_detail(&self) -> String {
        self.json()
            .ok()
            .and_then(|json| {
                json.get("detail")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| self.text().trim().to_owned())
    }
}

impl ApiClient {
    /// A client for `address` (`host:port`) with `token`.
    pub fn new(address: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: token.into(),
            tls: None,
        }
    }

    /// The same endpoint over TLS, its certificate verified against the
    /// authorities in `ca_pem`.
    pub fn with_tls(self, ca_pem: &[u8]) -> std::io::Result<Self> {
        self.tls_config(ca_pem, None)
    }

    /// Over TLS, offering the client certificate `cert_pem` with its
    /// `key_pem` (for a gateway that requires one).
    pub fn with_tls_identity(
        self,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<Self> {
        self.tls_config(ca_pem, Some((cert_pem, key_pem)))
    }

    fn tls_config(
        mut self,
        ca_pem: &[u8],
        identity: Option<(&[u8], &[u8])>,
    ) -> std::io::Result<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| invalid(&format!("{what}: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| bad("not a PEM certificate", &e))?;
            roots
                .add(cert)
                .map_err(|e| bad("not an authority's certificate", &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", &e))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("not a PEM certificate", &e))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|e| bad("not a PEM private key", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("client certificate", &e))?
            }
        };
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    /// The endpoint's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        self.request("GET", path, None)
    }

    /// `GET path` with the token and these extra header fields.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        self.send_with("GET", path, headers)
    }

    /// `method path` with the token and these extra header fields, no
    /// body.
    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let authorization = self.authorization();
        let mut all = vec![("Authorization", authorization.as_str())];
        all.extend_from_slice(headers);
        self.request_with(method, path, &all, None)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> std::io::Result<Response> {
        self.request(
            "POST",
            path,
            Some(("application/json", body.to_string().as_bytes())),
        )
    }

    /// One request; `body` is `(content type, bytes)`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> std::io::Result<Response> {
        let authorization = format!("Bearer {}", self.token);
        self.request_with(method, path, &[("Authorization", &authorization)], body)
    }

    /// A connection to the endpoint, over TLS when the client has it, with
    /// [`TIMEOUT`] on every read and write: for a caller that writes its
    /// own requests.
    pub fn connect(&self) -> std::io::Result<Box<dyn Connection>> {
        let address =
            self.address.to_socket_addrs()?.next().ok_or_else(|| {
                std::io::Error::other(format!("{} does not resolve", self.address))
            })?;
        let tcp = TcpStream::connect_timeout(&address, TIMEOUT)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        let Some(config) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| invalid("the address has no host name for TLS"))?;
        let connection = rustls::ClientConnection::new(config.clone(), name)
            .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?;
        Ok(Box::new(rustls::StreamOwned::new(connection, tcp)))
    }

    /// One request with exactly these extra header fields (no admin token):
    /// what a peer's signed gateway request looks like.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> std::io::Result<Response> {
        let mut stream = self.connect()?;
        let (content_type, payload) = body.unwrap_or(("application/json", b""));
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        for (name, value) in headers {
            if name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
                return Err(invalid("a header contains a line break"));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        ));
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload)?;
        if method == "HEAD" {
            // The answer to HEAD has a head alone, whatever its length says.
            let head = read_head(&mut BufReader::new(stream))?;
            return Ok(Response {
                status: head.status,
                content_type: head.content_type(),
                headers: head.headers,
                body: Vec::new(),
            });
        }
        read_response(BufReader::new(stream))
    }
}

/// A response whose body is read as it arrives: for objects of any size.
pub struct Streamed {
    /// Status code.
    pub status: u16,
    /// Every header field, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, if the server sent one.
    pub length: Option<u64>,
    body: Body,
}

/// A streamed body: a declared length, or chunked.
enum Body {
    /// The body, and whether its length was declared (else it ends with
    /// the connection).
    Length(std::io::Take<BufReader<Box<dyn Connection>>>, bool),
    Chunked(BufReader<Box<dyn Connection>>, Option<u64>),
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("status", &self.status)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Streamed {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The rest of the body, at most [`RESPONSE_BYTES_MAX`], as a whole
    /// response: for a refusal's problem.
    pub fn into_response(mut self) -> std::io::Result<Response> {
        let mut body = Vec::new();
        (&mut self)
            .take(RESPONSE_BYTES_MAX as u64 + 1)
            .read_to_end(&mut body)?;
        if body.len() > RESPONSE_BYTES_MAX {
            return Err(invalid("response body too large"));
        }
        let content_type = self.header("content-type").map(str::to_owned);
        Ok(Response {
            status: self.status,
            content_type,
            headers: self.headers,
            body,
        })
    }
}

impl Read for Streamed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.body {
            Body::Length(reader, declared) => {
                let n = reader.read(buf)?;
                if n == 0 && *declared && reader.limit() > 0 && !buf.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the body broke off {} bytes short", reader.limit()),
                    ));
                }
                Ok(n)
            }
            Body::Chunked(reader, left) => {
                if *left == Some(0) {
                    let mut crlf = [0u8; 2];
                    reader.read_exact(&mut crlf)?;
                    if &crlf != b"\r\n" {
                        return Err(invalid("a chunk is longer than its size says"));
                    }
                    *left = None;
                }
                if left.is_none() {
                    let mut budget = 1024;
                    if reader.fill_buf()?.is_empty() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the body broke off between chunks",
                        ));
                    }
                    let line = read_line(reader, &mut budget)?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size =
                        u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                    if size == 0 {
                        // The last chunk: the body is whole.
                        self.body = Body::Length(
                            BufReader::new(Box::new(std::io::empty()) as Box<dyn Connection>)
                                .take(0),
                            true,
                        );
                        return Ok(0);
                    }
                    *left = Some(size);
                }
                let want =
                    usize::try_from(left.unwrap_or(0)).map_or(buf.len(), |l| buf.len().min(l));
                let n = reader.read(&mut buf[..want])?;
                if n == 0 && want > 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the body broke off in a chunk",
                    ));
                }
                *left = left.map(|l| l - n as u64);
                Ok(n)
            }
        }
    }
}

/// How long a streamed request waits for its answer once its body is
/// sent (the server may sync a large object to disk first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

impl ApiClient {
    /// `GET path` with the token and `headers`, its body left to read.
    pub fn get_streamed(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Streamed> {
        let mut stream = self.connect()?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        push_headers(&mut head, &self.authorization(), headers)?;
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        read_streamed(BufReader::new(stream))
    }

    /// `method path` with the token, `headers` (the body's `Content-Type`
    /// among them) and the body read from `body` as it is sent: `length` bytes (`Content-Length`), or to its
    /// end (chunked) when `None`. `sent` is told the bytes sent so far.
    pub fn send_streamed(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &mut dyn Read,
        length: Option<u64>,
        sent: &mut dyn FnMut(u64),
    ) -> std::io::Result<Response> {
        let mut stream = self.connect()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        push_headers(&mut head, &self.authorization(), headers)?;
        match length {
            Some(length) => head.push_str(&format!("Content-Length: {length}\r\n")),
            None => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if length.is_some_and(|l| total + n as u64 > l) {
                return Err(invalid("the body is longer than its declared length"));
            }
            let written = match length {
                Some(_) => stream.write_all(&buffer[..n]),
                None => stream
                    .write_all(format!("{n:x}\r\n").as_bytes())
                    .and_then(|()| stream.write_all(&buffer[..n]))
                    .and_then(|()| stream.write_all(b"\r\n")),
            };
            if let Err(e) = written {
                // The server may have refused early (413) and closed: its
                // answer says why better than the broken pipe.
                return read_answer(stream).or(Err(e));
            }
            total += n as u64;
            sent(total);
        }
        if let Some(length) = length
            && total != length
        {
            return Err(invalid("the body is shorter than its declared length"));
        }
        if length.is_none() {
            stream.write_all(b"0\r\n\r\n")?;
        }
        read_answer(stream)
    }

    fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The answer to a request whose body was sent, waiting up to
/// [`ANSWER_TIMEOUT`] for it.
fn read_answer(stream: Box<dyn Connection>) -> std::io::Result<Response> {
    let mut reader = BufReader::new(stream);
    let started = std::time::Instant::now();
    loop {
        match reader.fill_buf() {
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && started.elapsed() < ANSWER_TIMEOUT => {}
            Err(e) => return Err(e),
        }
    }
    read_response(reader)
}

fn push_headers(
    head: &mut String,
    authorization: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    for (name, value) in [("Authorization", authorization)].iter().chain(headers) {
        if name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
            return Err(invalid("a header contains a line break"));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    Ok(())
}

fn read_streamed(mut reader: BufReader<Box<dyn Connection>>) -> std::io::Result<Streamed> {
    let Head {
        status,
        headers,
        mut length,
        chunked,
    } = read_head(&mut reader)?;
    let body = if chunked {
        length = None;
        Body::Chunked(reader, None)
    } else {
        // Without a length the body ends with the connection.
        Body::Length(reader.take(length.unwrap_or(u64::MAX)), length.is_some())
    };
    Ok(Streamed {
        status,
        headers,
        length,
        body,
    })
}

/// A connection, plain or TLS.
pub trait Connection: Read + Write + Send {}
impl<T: Read + Write + Send> Connection for T {}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> std::io::Result<String> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read > *budget {
        return Err(invalid("response head too large"));
    }
    *budget -= read;
    let line = String::from_utf8(line).map_err(|_| invalid("response head is not UTF-8"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A response's status line and header fields.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    length: Option<u64>,
    chunked: bool,
}

impl Head {
    fn content_type(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.clone())
    }
}

/// Reads a response head, at most [`HEAD_BYTES_MAX`] of it.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Head> {
    let mut budget = HEAD_BYTES_MAX;
    let status_line = read_line(reader, &mut budget)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let (mut length, mut chunked) = (None, false);
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        match name.as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| invalid("bad content-length"))?,
                )
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
        headers.push((name, value));
    }
    Ok(Head {
        status,
        headers,
        length,
        chunked,
    })
}

fn read_response(mut reader: impl BufRead) -> std::io::Result<Response> {
    let head = read_head(&mut reader)?;
    let content_type = head.content_type();
    let Head {
        status,
        headers,
        length,
        chunked,
    } = head;
    let length = length
        .map(|l| usize::try_from(l).map_err(|_| invalid("response body too large")))
        .transpose()?;
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let limit = length.unwrap_or(RESPONSE_BYTES_MAX);
        if limit > RESPONSE_BYTES_MAX {
            return Err(invalid("response body too large"));
        }
        let mut body = Vec::new();
        reader
            .by_ref()
            .take(limit as u64 + 1)
            .read_to_end(&mut body)?;
        if body.len() > RESPONSE_BYTES_MAX || length.is_some_and(|l| body.len() != l) {
            return Err(invalid("response body length does not match"));
        }
        body
    };
    Ok(Response {
        status,
        content_type,
        headers,
        body,
    })
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let line = read_line(reader, &mut budget)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > RESPONSE_BYTES_MAX {
            return Err(invalid("response body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> std::io::Result<Response> {
        read_response(BufReader::new(raw.as_bytes()))
    }

    #[test]
    fn reads_a_content_length_body() {
        let r =
            parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: a/b\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
        assert_eq!(r.content_type.as_deref(), Some("a/b"));
    }

    #[test]
    fn reads_a_chunked_body() {
        let r = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn refuses_truncated_oversized_and_garbled_responses() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi").is_err());
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            RESPONSE_BYTES_MAX + 1
        );
        assert!(parse(&huge).is_err());
        assert!(parse("garbage").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        let long_head = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(HEAD_BYTES_MAX)
        );
        assert!(parse(&long_head).is_err());
    }

    #[test]
    fn problem_detail_prefers_the_problem_json_detail() {
        let r =
            parse("HTTP/1.1 400 Bad\r\nContent-Length: 17\r\n\r\n{\"detail\":\"nope\"}").unwrap();
        assert_eq!(r.problem_detail(), "nope");
    }
}
