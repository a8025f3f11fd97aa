//! Request-response framing: one length-prefixed byte string each way.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

use super::{REQUEST_BYTES_MAX, RESPONSE_BYTES_MAX};

/// Frames requests and responses as `u32-BE length ‖ bytes`, refusing
/// frames over its limits before reading them. What the bytes mean is the
/// driver's business.
#[derive(Debug, Clone, Copy)]
pub struct FramedBytes {
    request_max: u32,
    response_max: u32,
}

impl Default for FramedBytes {
    /// [`REQUEST_BYTES_MAX`] and [`RESPONSE_BYTES_MAX`].
    fn default() -> Self {
        Self::with_request_max(REQUEST_BYTES_MAX)
    }
}

impl FramedBytes {
    /// Requests of at most `request_max` bytes, responses of at most
    /// [`RESPONSE_BYTES_MAX`].
    pub fn with_request_max(request_max: u32) -> Self {
        Self {
            request_max,
            response_max: RESPONSE_BYTES_MAX,
        }
    }
}

/// Memory is taken as bytes arrive, this much at a time: a length prefix
/// alone, sent by anyone, reserves nothing.
const READ_STEP_BYTES: usize = 64 * 1024;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: u32) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let len = len as usize;
    let mut bytes = Vec::with_capacity(len.min(READ_STEP_BYTES));
    while bytes.len() < len {
        let start = bytes.len();
        let step = (len - start).min(READ_STEP_BYTES);
        bytes.resize(start + step, 0);
        io.read_exact(&mut bytes[start..]).await?;
    }
    Ok(bytes)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    max: u32,
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= max)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for FramedBytes {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, self.request_max).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, self.response_max).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &req, self.request_max).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &res, self.response_max).await
    }
}
