//! Wire codec for the request-response protocols: a u32 big-endian length prefix followed by
//! that many opaque bytes, for requests and responses alike.
//!
//! Owns only framing and the per-protocol size limit; it must not interpret the payload.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};

/// Length-prefixed opaque bytes, refusing frames larger than `MAX` bytes in either direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct LengthPrefixed<const MAX: usize>;

impl<const MAX: usize> request_response::Codec for LengthPrefixed<MAX> {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX, protocol, false).await
    }

    async fn read_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX, protocol, true).await
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, MAX, protocol).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, MAX, protocol).await
    }
}

fn too_large(len: u64, limit: usize, protocol: &StreamProtocol) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{protocol}: frame of {len} bytes exceeds the limit of {limit} bytes ({} MiB)",
            limit / (1024 * 1024)
        ),
    )
}

/// Reads one frame. A response (`response`) answers a request of ours, so
/// its announced length is allocated at once and read in one pass; a
/// request's buffer grows only as its bytes actually arrive.
async fn read_frame<T>(
    io: &mut T,
    limit: usize,
    protocol: &StreamProtocol,
    response: bool,
) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u64::from(u32::from_be_bytes(prefix));
    if len > limit as u64 {
        return Err(too_large(len, limit, protocol));
    }
    let truncated = |got: usize| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{protocol}: frame truncated after {got} of {len} bytes"),
        )
    };
    if response {
        let mut data = vec![0u8; len as usize];
        let mut got = 0;
        while got < data.len() {
            match io.read(&mut data[got..]).await? {
                0 => return Err(truncated(got)),
                n => got += n,
            }
        }
        return Ok(data);
    }
    let mut data = Vec::with_capacity(len.min(64 * 1024) as usize);
    io.take(len).read_to_end(&mut data).await?;
    if data.len() as u64 != len {
        return Err(truncated(data.len()));
    }
    Ok(data)
}

async fn write_frame<T>(
    io: &mut T,
    data: &[u8],
    limit: usize,
    protocol: &StreamProtocol,
) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = data.len() as u64;
    if len > limit as u64 {
        return Err(too_large(len, limit, protocol));
    }
    let prefix = u32::try_from(len).map_err(|_| too_large(len, limit, protocol))?;
    io.write_all(&prefix.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;

    const PROTOCOL: StreamProtocol = StreamProtocol::new("/test/1");

    #[tokio::test]
    async fn round_trip() {
        let mut codec = LengthPrefixed::<16>;
        let mut buf = Cursor::new(Vec::new());
        codec
            .write_request(&PROTOCOL, &mut buf, b"hello".to_vec())
            .await
            .expect("write");
        assert_eq!(buf.get_ref()[..4], 5u32.to_be_bytes());
        buf.set_position(0);
        let got = codec.read_request(&PROTOCOL, &mut buf).await.expect("read");
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn refuses_oversized_frames() {
        let mut codec = LengthPrefixed::<16>;
        let mut sink = Cursor::new(Vec::new());
        let err = codec
            .write_response(&PROTOCOL, &mut sink, vec![0; 17])
            .await
            .expect_err("oversized write must fail");
        assert!(err.to_string().contains("limit of 16 bytes"), "{err}");
        assert!(sink.get_ref().is_empty(), "nothing may be written");

        let mut frame = 17u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 17]);
        let err = codec
            .read_request(&PROTOCOL, &mut Cursor::new(frame))
            .await
            .expect_err("oversized read must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("/test/1"), "{err}");
    }

    #[tokio::test]
    async fn refuses_truncated_frames() {
        let mut codec = LengthPrefixed::<16>;
        let mut frame = 10u32.to_be_bytes().to_vec();
        frame.extend_from_slice(b"short");
        let err = codec
            .read_response(&PROTOCOL, &mut Cursor::new(frame))
            .await
            .expect_err("truncated read must fail");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
