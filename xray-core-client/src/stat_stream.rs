//! `QueryStats` read as a stream: the answer's HTTP/2 body is parsed as it
//! arrives and each counter handed to a [`StatSink`], so neither the
//! answer's bytes (about 15 MiB for 100,000 users' two counters: tonic's
//! unary decoder holds a message whole) nor a `String` per counter are ever
//! held; memory holds one HTTP/2 frame and one counter.

use std::time::Duration;

use http_body_util::BodyExt as _;
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tonic::Status;
use tonic::client::GrpcService;
use tonic::codegen::http::{self, HeaderValue, header, uri::PathAndQuery};
use tonic::transport::Channel;

use crate::proto;
use crate::stats::Stat;

/// Takes the counters of a `QueryStats` answer as they are decoded.
pub trait StatSink: Send {
    /// One counter: its name (e.g. `user>>>EMAIL>>>traffic>>>uplink`) and
    /// value, valid for this call only.
    fn stat(&mut self, name: &str, value: i64);
}

/// Every counter, as [`crate::CoreClient::query_stats`] answers them.
impl StatSink for Vec<Stat> {
    fn stat(&mut self, name: &str, value: i64) {
        self.push(Stat {
            name: name.to_owned(),
            value,
        });
    }
}

/// Why a streamed call failed: the transport (the core is not reachable)
/// or the gRPC status the core (or the answer's shape) gave.
pub(crate) enum CallError {
    Transport(String),
    Status(Status),
}

/// Sends `request` to `path` over `channel` and feeds the answer's counters
/// to `sink` as they arrive. What reached `sink` before an error stays there.
pub(crate) async fn query_stats(
    channel: Channel,
    path: PathAndQuery,
    request: &proto::QueryStatsRequest,
    timeout: Duration,
    max_message_bytes: usize,
    sink: &mut (impl StatSink + ?Sized),
) -> Result<(), CallError> {
    let mut body = BytesMut::with_capacity(5 + request.encoded_len());
    body.put_u8(0);
    body.put_u32(u32::try_from(request.encoded_len()).unwrap_or(u32::MAX));
    request
        .encode(&mut body)
        .map_err(|e| CallError::Status(Status::internal(e.to_string())))?;
    let body = tonic::body::Body::new(http_body_util::Full::new(body.freeze()));
    let mut http_request = http::Request::new(body);
    *http_request.method_mut() = http::Method::POST;
    *http_request.version_mut() = http::Version::HTTP_2;
    *http_request.uri_mut() = http::Uri::from(path);
    let headers = http_request.headers_mut();
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("{}m", timeout.as_millis().min(99_999_999))) {
        headers.insert("grpc-timeout", value);
    }

    let mut channel = channel;
    std::future::poll_fn(|cx| GrpcService::poll_ready(&mut channel, cx))
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let response = GrpcService::call(&mut channel, http_request)
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(CallError::Status(status));
    }
    if response.status() != http::StatusCode::OK {
        return Err(CallError::Status(Status::unknown(format!(
            "HTTP status {} from the core",
            response.status()
        ))));
    }
    let mut body = response.into_body();
    let mut answer = AnswerParser::new(max_message_bytes);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CallError::Transport(e.to_string()))?;
        match frame.into_data() {
            Ok(data) => answer.feed(data, sink).map_err(CallError::Status)?,
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let status = Status::from_header_map(trailers).unwrap_or_else(|| {
                        Status::internal("the core's answer has no grpc-status")
                    });
                    if status.code() != tonic::Code::Ok {
                        return Err(CallError::Status(status));
                    }
                    return answer.finish().map_err(CallError::Status);
                }
            }
        }
    }
    Err(CallError::Status(Status::internal(
        "the core's answer ended without its status",
    )))
}

/// Where the parser is in the answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before the gRPC frame's head (flag byte, length).
    #[default]
    Head,
    /// Inside the message, with this many of its bytes still to come.
    Message(u64),
    /// After the message.
    Done,
}

/// Parses a unary `QueryStatsResponse` answer (one gRPC frame, not
/// compressed) from chunks of any size, one field at a time; holds the
/// bytes of one unfinished field at most.
#[derive(Debug)]
pub(crate) struct AnswerParser {
    /// Bytes received and not yet parsed.
    held: BytesMut,
    part: Part,
    /// The largest message accepted.
    max: usize,
}

impl AnswerParser {
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self {
            held: BytesMut::new(),
            part: Part::Head,
            max: max_message_bytes,
        }
    }

    /// Parses what `chunk` completes; counters go to `sink`.
    pub(crate) fn feed(
        &mut self,
        chunk: Bytes,
        sink: &mut (impl StatSink + ?Sized),
    ) -> Result<(), Status> {
        self.held.extend_from_slice(&chunk);
        loop {
            match self.part {
                Part::Head => {
                    if self.held.len() < 5 {
                        return Ok(());
                    }
                    if self.held[0] != 0 {
                        return Err(Status::internal("the core's answer is compressed"));
                    }
                    self.held.advance(1);
                    let len = u64::from(self.held.get_u32());
                    if len > self.max as u64 {
                        return Err(Status::out_of_range(format!(
                            "the core's answer of {len} bytes is over {}",
                            self.max
                        )));
                    }
                    self.part = if len == 0 {
                        Part::Done
                    } else {
                        Part::Message(len)
                    };
                }
                Part::Message(left) => match self.field(left, sink)? {
                    Some(used) if used == left => self.part = Part::Done,
                    Some(used) => self.part = Part::Message(left - used),
                    None => return Ok(()),
                },
                Part::Done => {
                    return if self.held.is_empty() {
                        Ok(())
                    } else {
                        Err(Status::internal("the core answered more than one message"))
                    };
                }
            }
        }
    }

    /// Parses the next field of the message if it is whole (`left` bytes of
    /// the message remain); `Some(bytes used)`, or `None` until more comes.
    fn field(
        &mut self,
        left: u64,
        sink: &mut (impl StatSink + ?Sized),
    ) -> Result<Option<u64>, Status> {
        let invalid = |what: &str| Status::internal(format!("invalid QueryStats answer: {what}"));
        let Some((key, key_len)) = varint(&self.held)? else {
            return Ok(None);
        };
        let (tag, wire_type) = (key >> 3, key & 7);
        let (value_len, head_len) = match wire_type {
            // varint
            0 => match varint(&self.held[key_len..])? {
                Some((_, n)) => (0, key_len + n),
                None => return Ok(None),
            },
            // 64-bit, 32-bit
            1 => (8, key_len),
            5 => (4, key_len),
            // length-delimited
            2 => match varint(&self.held[key_len..])? {
                Some((len, n)) => (
                    usize::try_from(len).map_err(|_| invalid("field length"))?,
                    key_len + n,
                ),
                None => return Ok(None),
            },
            _ => return Err(invalid("wire type")),
        };
        let whole = head_len
            .checked_add(value_len)
            .filter(|w| *w as u64 <= left)
            .ok_or_else(|| invalid("a field runs past the message"))?;
        if self.held.len() < whole {
            return Ok(None);
        }
        let field = self.held.split_to(whole);
        if tag == 1 && wire_type == 2 {
            let (name, value) = stat_fields(&field[head_len..])?;
            sink.stat(name, value);
        }
        Ok(Some(whole as u64))
    }

    /// The answer ended: it must have been whole.
    pub(crate) fn finish(&self) -> Result<(), Status> {
        match self.part {
            Part::Done => Ok(()),
            Part::Head if self.held.is_empty() => {
                Err(Status::internal("the core's answer has no message"))
            }
            _ => Err(Status::internal("the core's answer was cut short")),
        }
    }
}

/// The name and value of an encoded `Stat { string name = 1; int64 value =
/// 2; }`, read in place (no `String` per counter): as prost decodes it, a
/// field given twice keeps its last value, unknown fields are skipped, a
/// name that is not UTF-8 is an error.
fn stat_fields(mut bytes: &[u8]) -> Result<(&str, i64), Status> {
    let invalid = |what: &str| Status::internal(format!("invalid QueryStats answer: stat {what}"));
    let (mut name, mut value): (&[u8], i64) = (&[], 0);
    while !bytes.is_empty() {
        let (key, n) = varint(bytes)?.ok_or_else(|| invalid("field key"))?;
        bytes = &bytes[n..];
        if matches!((key >> 3, key & 7), (1, 0 | 1 | 5) | (2, 1 | 2 | 5)) {
            return Err(invalid("field of the wrong type"));
        }
        let len = match key & 7 {
            0 => {
                let (v, n) = varint(bytes)?.ok_or_else(|| invalid("varint"))?;
                if key >> 3 == 2 {
                    // int64 on the wire: the two's complement as a varint.
                    value = v as i64;
                }
                bytes = &bytes[n..];
                continue;
            }
            1 => 8,
            5 => 4,
            2 => {
                let (len, n) = varint(bytes)?.ok_or_else(|| invalid("length"))?;
                bytes = &bytes[n..];
                usize::try_from(len).map_err(|_| invalid("length"))?
            }
            _ => return Err(invalid("wire type")),
        };
        let field = bytes
            .get(..len)
            .ok_or_else(|| invalid("field past its end"))?;
        if key == (1 << 3 | 2) {
            name = field;
        }
        bytes = &bytes[len..];
    }
    let name = std::str::from_utf8(name).map_err(|_| invalid("name is not UTF-8"))?;
    Ok((name, value))
}

/// A protobuf varint at the start of `bytes` and its length; `None` when
/// `bytes` ends inside it.
fn varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, Status> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 10 {
        return Err(Status::internal("invalid QueryStats answer: varint"));
    }
    Ok(None)
}

#[cfg(test)]
#[path = "stat_stream_tests.rs"]
mod tests;
