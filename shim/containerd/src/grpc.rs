//! A minimal gRPC client for the few containerd API calls the shim makes (version, container,
//! image, content read), over HTTP/2 on containerd's unix socket.
//!
//! Why hand-written: the generated client (containerd-client) needs `protoc` at build time and
//! brings tonic/prost; these four unary/server-streaming calls need only a length-prefixed frame
//! and a dozen protobuf fields, encoded and decoded below.

use std::path::Path;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("connect to containerd at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("containerd {method}: transport: {message}")]
    Transport { method: String, message: String },
    #[error("containerd {method}: status {code}: {message}")]
    Status {
        method: String,
        code: u32,
        message: String,
    },
    #[error("containerd {method}: malformed response: {message}")]
    Malformed { method: String, message: String },
}

/// gRPC status code NOT_FOUND.
pub const NOT_FOUND: u32 = 5;

/// Connection parameters for containerd's gRPC API.
#[derive(Debug, Clone)]
pub struct Containerd {
    /// Socket path (an optional `unix://` prefix is accepted).
    pub address: String,
    pub namespace: String,
}

impl Containerd {
    pub fn new(address: &str, namespace: &str) -> Self {
        Self {
            address: address.trim_start_matches("unix://").to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// Calls `method` (`/package.Service/Method`) with an encoded request; returns every
    /// response message (one for unary calls, many for server streams).
    pub async fn call(&self, method: &str, request: Vec<u8>) -> Result<Vec<Bytes>, GrpcError> {
        let transport = |message: String| GrpcError::Transport {
            method: method.to_string(),
            message,
        };
        let stream = tokio::net::UnixStream::connect(Path::new(&self.address))
            .await
            .map_err(|source| GrpcError::Connect {
                address: self.address.clone(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| transport(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let mut frame = Vec::with_capacity(request.len() + 5);
        frame.push(0);
        frame.extend_from_slice(&(request.len() as u32).to_be_bytes());
        frame.extend_from_slice(&request);
        let http_request = http::Request::builder()
            .method("POST")
            .uri(format!("http://containerd{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("containerd-namespace", &self.namespace)
            .body(Full::new(Bytes::from(frame)))
            .map_err(|e| transport(e.to_string()))?;
        let response = sender
            .send_request(http_request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| transport(e.to_string()))?;
        driver.abort();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status_of = |name: &str| {
            trailers
                .get(name)
                .or_else(|| parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let code: u32 = status_of("grpc-status")
            .and_then(|c| c.parse().ok())
            .unwrap_or(if parts.status.is_success() { 0 } else { 2 });
        if code != 0 {
            return Err(GrpcError::Status {
                method: method.to_string(),
                code,
                message: percent_decode(&status_of("grpc-message").unwrap_or_default()),
            });
        }
        let mut data = collected.to_bytes();
        let mut messages = Vec::new();
        while data.has_remaining() {
            if data.remaining() < 5 {
                return Err(GrpcError::Malformed {
                    method: method.to_string(),
                    message: "truncated frame header".into(),
                });
            }
            let _compressed = data.get_u8();
            let len = data.get_u32() as usize;
            if data.remaining() < len {
                return Err(GrpcError::Malformed {
                    method: method.to_string(),
                    message: format!("frame of {len} bytes truncated"),
                });
            }
            messages.push(data.split_to(len));
        }
        Ok(messages)
    }

    async fn unary(&self, method: &str, request: Vec<u8>) -> Result<Bytes, GrpcError> {
        self.call(method, request)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| GrpcError::Malformed {
                method: method.to_string(),
                message: "no response message".into(),
            })
    }

    /// containerd's version string, e.g. `v2.4.2` or `1.6.20~ds1`.
    pub async fn version(&self) -> Result<String, GrpcError> {
        let method = "/containerd.services.version.v1.Version/Version";
        let reply = self.unary(method, Vec::new()).await?;
        Ok(fields(&reply, method)?.string(1))
    }

    /// The image name recorded on a container (empty when created from a bare rootfs).
    pub async fn container_image(&self, id: &str) -> Result<String, GrpcError> {
        let method = "/containerd.services.containers.v1.Containers/Get";
        let reply = self.unary(method, encode_string(1, id)).await?;
        let container = fields(&reply, method)?.bytes(1).unwrap_or_default();
        Ok(fields(&container, method)?.string(3))
    }

    /// The root descriptor (index or manifest) of an image.
    pub async fn image_target(&self, name: &str) -> Result<Descriptor, GrpcError> {
        let method = "/containerd.services.images.v1.Images/Get";
        let reply = self.unary(method, encode_string(1, name)).await?;
        let image = fields(&reply, method)?.bytes(1).unwrap_or_default();
        let target = fields(&image, method)?.bytes(3).unwrap_or_default();
        let target = fields(&target, method)?;
        Ok(Descriptor {
            media_type: target.string(1),
            digest: target.string(2),
            size: target.varint(3),
        })
    }

    /// Reads a whole blob from the content store.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, GrpcError> {
        let method = "/containerd.services.content.v1.Content/Read";
        let mut blob = Vec::new();
        for message in self.call(method, encode_string(1, digest)).await? {
            let fields = fields(&message, method)?;
            blob.extend_from_slice(&fields.bytes(2).unwrap_or_default());
        }
        Ok(blob)
    }
}

/// An OCI content descriptor as containerd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

fn encode_string(field: u32, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    encode_varint(u64::from(field << 3 | 2), &mut out);
    encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value.as_bytes());
    out
}

fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The top-level fields of one protobuf message (last value wins, as protobuf specifies).
#[derive(Debug, Default)]
struct Fields {
    varints: Vec<(u32, u64)>,
    lengths: Vec<(u32, Bytes)>,
}

impl Fields {
    fn bytes(&self, field: u32) -> Option<Bytes> {
        self.lengths
            .iter()
            .rev()
            .find(|(f, _)| *f == field)
            .map(|(_, b)| b.clone())
    }
    fn string(&self, field: u32) -> String {
        self.bytes(field)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
    fn varint(&self, field: u32) -> u64 {
        self.varints
            .iter()
            .rev()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    }
}

fn fields(message: &Bytes, method: &str) -> Result<Fields, GrpcError> {
    decode_fields(message).map_err(|message| GrpcError::Malformed {
        method: method.to_string(),
        message,
    })
}

fn decode_fields(message: &Bytes) -> Result<Fields, String> {
    let mut data = message.clone();
    let mut out = Fields::default();
    while data.has_remaining() {
        let key = decode_varint(&mut data)?;
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => out.varints.push((field, decode_varint(&mut data)?)),
            1 => {
                if data.remaining() < 8 {
                    return Err("truncated fixed64".into());
                }
                data.advance(8);
            }
            2 => {
                let len = decode_varint(&mut data)? as usize;
                if data.remaining() < len {
                    return Err(format!("field {field}: {len} bytes truncated"));
                }
                out.lengths.push((field, data.split_to(len)));
            }
            5 => {
                if data.remaining() < 4 {
                    return Err("truncated fixed32".into());
                }
                data.advance(4);
            }
            wire => return Err(format!("field {field}: unsupported wire type {wire}")),
        }
    }
    Ok(out)
}

fn decode_varint(data: &mut Bytes) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !data.has_remaining() {
            return Err("truncated varint".into());
        }
        let byte = data.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_nested_messages() {
        let mut descriptor = encode_string(1, "application/vnd.oci.image.manifest.v1+json");
        descriptor.extend(encode_string(2, "sha256:abc"));
        encode_varint(3 << 3, &mut descriptor);
        encode_varint(300, &mut descriptor);
        let image = [encode_string(1, "x"), {
            let mut t = Vec::new();
            encode_varint(3 << 3 | 2, &mut t);
            encode_varint(descriptor.len() as u64, &mut t);
            t.extend(&descriptor);
            t
        }]
        .concat();
        let image = Bytes::from(image);
        let outer = decode_fields(&image).expect("decodes");
        assert_eq!(outer.string(1), "x");
        let target = decode_fields(&outer.bytes(3).expect("target")).expect("decodes");
        assert_eq!(target.string(2), "sha256:abc");
        assert_eq!(target.varint(3), 300);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let err = decode_fields(&Bytes::from_static(&[0x0a, 0x05, b'a'])).expect_err("must fail");
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("not%20found%3A x"), "not found: x");
    }
}
