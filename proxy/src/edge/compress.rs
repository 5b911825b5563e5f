//! Compression at the edge, on CloudFront's conditions (docs/cloudfront.md, "Compression"): the origin's
//! uncompressed response is compressed as it arrives, before the cache stores it, so the cache holds the
//! compressed variant under the normalised `Accept-Encoding` key and hits cost no compression. Brotli
//! when the viewer accepts it, else gzip. The encoders are streaming: each body chunk (at most pingora's
//! read size) is compressed as it passes, so no request waits on another's whole body.

use std::io::Write;

use bytes::Bytes;
use pingora_http::ResponseHeader;

/// CloudFront's bounds on the origin's `Content-Length`.
const MIN_BYTES: u64 = 1_000;
const MAX_BYTES: u64 = 10_000_000;

/// The content types CloudFront compresses (its documented list), without parameters, lower case.
const TYPES: &[&str] = &[
    "application/dash+xml",
    "application/eot",
    "application/font",
    "application/font-sfnt",
    "application/javascript",
    "application/json",
    "application/opentype",
    "application/otf",
    "application/pkcs7-mime",
    "application/protobuf",
    "application/rss+xml",
    "application/truetype",
    "application/ttf",
    "application/vnd.apple.mpegurl",
    "application/vnd.mapbox-vector-tile",
    "application/vnd.ms-fontobject",
    "application/xhtml+xml",
    "application/xml",
    "application/x-font-opentype",
    "application/x-font-truetype",
    "application/x-font-ttf",
    "application/x-httpd-cgi",
    "application/x-javascript",
    "application/x-mpegurl",
    "application/x-opentype",
    "application/x-otf",
    "application/x-perl",
    "application/x-ttf",
    "font/eot",
    "font/opentype",
    "font/otf",
    "font/ttf",
    "image/svg+xml",
    "text/css",
    "text/csv",
    "text/html",
    "text/javascript",
    "text/js",
    "text/plain",
    "text/richtext",
    "text/tab-separated-values",
    "text/xml",
    "text/x-component",
    "text/x-java-source",
    "text/x-script",
    "vnd.apple.mpegurl",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Only with a cache policy's `enable_accept_encoding_zstd` (verge's own setting).
    Zstd,
    Brotli,
    Gzip,
}

impl Encoding {
    /// The encoding for a request whose normalised `Accept-Encoding` (the cache key's) is `normalised`.
    pub fn for_request(normalised: &str) -> Option<Self> {
        let has = |name: &str| normalised.split(',').any(|e| e.trim() == name);
        // zstd is in the key only when the policy enables it; it compresses fastest at a ratio near br.
        if has("zstd") {
            Some(Encoding::Zstd)
        } else if has("br") {
            Some(Encoding::Brotli)
        } else if has("gzip") {
            Some(Encoding::Gzip)
        } else {
            None
        }
    }

    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// Whether CloudFront would compress this origin response (the request's side was checked by the caller).
pub fn compressible(resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    if !matches!(status, 200 | 403 | 404) || resp.headers.contains_key(http::header::CONTENT_ENCODING) {
        return false;
    }
    let length = resp.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if !length.is_some_and(|l| (MIN_BYTES..=MAX_BYTES).contains(&l)) {
        return false;
    }
    let no_transform = resp
        .headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-transform"))));
    if no_transform {
        return false;
    }
    let content_type = resp.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    TYPES.iter().any(|t| t.eq_ignore_ascii_case(essence))
}

/// Makes `resp` the head of the compressed variant: `Content-Encoding`, no length (the body is sent as it
/// is compressed), `Vary: Accept-Encoding`, and a strong ETag made weak (the bytes differ).
pub fn compressed_head(resp: &mut ResponseHeader, encoding: Encoding) -> pingora_error::Result<()> {
    resp.insert_header(http::header::CONTENT_ENCODING, encoding.token())?;
    resp.remove_header(&http::header::CONTENT_LENGTH);
    let varies = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))));
    if !varies {
        resp.append_header(http::header::VARY, "Accept-Encoding")?;
    }
    if let Some(etag) = resp.headers.get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned) {
        if etag.starts_with('"') && etag.ends_with('"') && etag.len() >= 2 {
            resp.insert_header(http::header::ETAG, format!("W/{etag}"))?;
        } else if !etag.starts_with("W/\"") {
            // Not a valid entity tag: dropped, as CloudFront drops it.
            resp.remove_header(&http::header::ETAG);
        }
    }
    Ok(())
}

/// A streaming encoder for one response body, counting bytes in and out (for the metrics).
pub struct Compressor {
    encoder: Encoder,
    encoding: Encoding,
    bytes_in: u64,
    bytes_out: u64,
}

enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
}

impl Compressor {
    /// `None` when the encoder cannot be made (zstd's context allocation failed): the response then goes
    /// uncompressed, as CloudFront's compression is best-effort too.
    pub fn new(encoding: Encoding) -> Option<Self> {
        let encoder = match encoding {
            Encoding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3).ok()?),
            // Quality 5, window 22: close to gzip -6 in speed, smaller output (what CDNs use on the fly).
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(Vec::new(), 16 << 10, 5, 22))),
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6))),
        };
        Some(Self { encoder, encoding, bytes_in: 0, bytes_out: 0 })
    }

    /// Compresses `chunk` and returns what the encoder has produced so far (maybe nothing yet).
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let out = match &mut self.encoder {
            Encoder::Zstd(w) => {
                let _ = w.write_all(chunk);
                std::mem::take(w.get_mut())
            }
            Encoder::Brotli(w) => {
                let _ = w.write_all(chunk);
                std::mem::take(w.get_mut())
            }
            Encoder::Gzip(w) => {
                let _ = w.write_all(chunk);
                std::mem::take(w.get_mut())
            }
        };
        self.bytes_in += chunk.len() as u64;
        self.bytes_out += out.len() as u64;
        Bytes::from(out)
    }

    /// Ends the stream: the rest of the compressed bytes (and the response is counted in the metrics).
    pub fn finish(self) -> Bytes {
        let out = match self.encoder {
            Encoder::Zstd(w) => w.finish().unwrap_or_default(),
            Encoder::Brotli(mut w) => {
                let _ = w.flush();
                w.into_inner()
            }
            Encoder::Gzip(w) => w.finish().unwrap_or_default(),
        };
        crate::observe::metrics::compressed(self.encoding.token(), self.bytes_in, self.bytes_out + out.len() as u64);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn head(status: u16, content_type: &str, length: usize) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        resp.insert_header("content-type", content_type).unwrap();
        resp.insert_header("content-length", length.to_string()).unwrap();
        resp
    }

    #[test]
    fn cloudfronts_conditions() {
        assert!(compressible(&head(200, "text/html; charset=utf-8", 12_000)));
        assert!(compressible(&head(404, "application/json", 1_000)));
        assert!(!compressible(&head(200, "image/png", 12_000)), "not in the list");
        assert!(!compressible(&head(200, "text/html", 999)), "too small");
        assert!(!compressible(&head(200, "text/html", 10_000_001)), "too large");
        assert!(!compressible(&head(206, "text/html", 12_000)), "status");
        let mut encoded = head(200, "text/html", 12_000);
        encoded.insert_header("content-encoding", "gzip").unwrap();
        assert!(!compressible(&encoded));
        let mut no_transform = head(200, "text/html", 12_000);
        no_transform.insert_header("cache-control", "max-age=60, no-transform").unwrap();
        assert!(!compressible(&no_transform));
        assert_eq!(Encoding::for_request("br,gzip"), Some(Encoding::Brotli));
        assert_eq!(Encoding::for_request("gzip"), Some(Encoding::Gzip));
        assert_eq!(Encoding::for_request("identity"), None);
    }

    #[test]
    fn streams_round_trip_and_etags_turn_weak() {
        let text = "verge compresses this line once. ".repeat(400);
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            let mut c = Compressor::new(encoding).unwrap();
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(1000) {
                out.extend_from_slice(&c.feed(chunk));
            }
            out.extend_from_slice(&c.finish());
            assert!(out.len() < text.len() / 10, "{encoding:?}: {}", out.len());
            let mut back = String::new();
            match encoding {
                Encoding::Gzip => flate2::read::GzDecoder::new(&out[..]).read_to_string(&mut back).unwrap(),
                Encoding::Brotli => brotli::Decompressor::new(&out[..], 4096).read_to_string(&mut back).unwrap(),
                Encoding::Zstd => {
                    zstd::stream::read::Decoder::new(&out[..]).unwrap().read_to_string(&mut back).unwrap()
                }
            };
            assert_eq!(back, text);
        }
        let mut resp = head(200, "text/html", 12_000);
        resp.insert_header("etag", "\"abc\"").unwrap();
        compressed_head(&mut resp, Encoding::Gzip).unwrap();
        assert_eq!(resp.headers.get("etag").unwrap(), "W/\"abc\"");
        assert!(resp.headers.get("content-length").is_none());
        assert_eq!(resp.headers.get("vary").unwrap(), "Accept-Encoding");
    }
}
