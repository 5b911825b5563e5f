//! Every response verge makes itself, built and sent in one place: its own error pages (403, 502, 504,
//! ...), function errors, viewer-request answers, the HTTPS redirect and custom error pages. The edge
//! headers (`X-Cache`, `Via`, `X-Amz-Cf-Id`) are set by `edge_headers`, the one function that sets
//! them on every response, proxied or made here.

use bytes::Bytes;
use http::HeaderName;
use pingora_error::Result;
use pingora_http::{CaseHeaderName, ResponseHeader};
use pingora_proxy::Session;
use verge_hooks::{HookError, HookErrorKind};

use crate::edge::context::{Ending, RequestContext};
use crate::edge::outcome::{ErrorCause, Outcome};

/// Why verge refused or failed a request; picks the status, the page's text and the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeError {
    /// A path that could mean another path at the origin (docs/cloudfront.md, "Request paths").
    AmbiguousPath,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// A request pingora could not take: a bad chunk size, a `Connection` header naming a header that
    /// frames or routes the request, a malformed header.
    MalformedRequest,
    /// Request line and headers over CloudFront's 20,480 bytes.
    HeadersTooLarge,
    /// A GET or HEAD with a body: CloudFront refuses it (a body the cache key never sees could poison it).
    BodyOnGet,
    MethodNotAllowed,
    HostNotServed,
    DistributionDisabled,
    HttpsRequired,
    /// The viewer's country is refused by the distribution's geo restriction.
    GeoBlocked,
    OriginUnreachable,
    OriginTimeout,
    /// A body verge had to buffer (IncludeBody) is larger than it can.
    BodyTooLarge,
    Internal,
}

impl EdgeError {
    pub fn status(self) -> u16 {
        match self {
            Self::AmbiguousPath | Self::MissingHost | Self::MalformedRequest => 400,
            Self::HeadersTooLarge => 431,
            Self::BodyOnGet | Self::GeoBlocked => 403,
            Self::MethodNotAllowed | Self::HostNotServed | Self::DistributionDisabled | Self::HttpsRequired => 403,
            Self::OriginUnreachable => 502,
            Self::OriginTimeout => 504,
            Self::BodyTooLarge => 413,
            Self::Internal => 500,
        }
    }

    pub fn outcome(self) -> Outcome {
        Outcome::Error(match self {
            Self::AmbiguousPath
            | Self::MissingHost
            | Self::MalformedRequest
            | Self::HeadersTooLarge
            | Self::BodyOnGet
            | Self::MethodNotAllowed
            | Self::HostNotServed
            | Self::DistributionDisabled
            | Self::HttpsRequired => ErrorCause::InvalidRequest,
            Self::GeoBlocked => ErrorCause::GeoBlocked,
            Self::OriginUnreachable => ErrorCause::OriginConnect,
            Self::OriginTimeout => ErrorCause::OriginTimeout,
            Self::BodyTooLarge => ErrorCause::BodyTooLarge,
            Self::Internal => ErrorCause::Internal,
        })
    }

    fn reason(self) -> &'static str {
        match self {
            Self::AmbiguousPath => {
                "The request path contains an encoded separator, a control character or a bad escape."
            }
            Self::MissingHost => "An HTTP/1.1 request needs a Host header.",
            Self::MalformedRequest => {
                "The request is malformed: a bad chunk, a malformed header, or a Connection header naming a protected header."
            }
            Self::HeadersTooLarge => "The request line and headers are larger than 20,480 bytes.",
            Self::BodyOnGet => "A GET or HEAD request cannot have a body.",
            Self::MethodNotAllowed => {
                "This distribution is not configured to allow the HTTP request method that was used for this request."
            }
            Self::HostNotServed => {
                "The request could not be satisfied: this distribution does not serve the requested Host."
            }
            Self::DistributionDisabled => "This distribution is disabled.",
            Self::HttpsRequired => "This distribution only accepts HTTPS requests.",
            Self::GeoBlocked => "This distribution is configured to block access from your country.",
            Self::OriginUnreachable => "verge was unable to connect to the origin for this request.",
            Self::OriginTimeout => "verge could not get a response from the origin in time.",
            Self::BodyTooLarge => "The request body is larger than this distribution's functions can be given.",
            Self::Internal => "verge hit an internal error while serving this request.",
        }
    }
}

/// A response verge makes itself.
pub enum EdgeResponse<'a> {
    /// verge's own error page.
    Error(EdgeError),
    /// The error page of a failed function: 502 for invalid results, 503 for crashes and limits. Only
    /// validation reasons are shown to the viewer; every reason is in the log line.
    FunctionError(&'a HookError),
    /// `redirect-to-https`: 301 for GET/HEAD, 307 otherwise.
    Redirect { status: u16, location: String },
    /// A viewer-request function's answer: never cached, no other trigger runs.
    Generated { header: ResponseHeader, body: Bytes },
    /// A custom error response's page (sent with its configured status), replacing an error.
    /// `cause` is the error the page replaces (the logs keep it).
    ErrorPage { header: ResponseHeader, body: Bytes, cause: ErrorCause },
    /// A CORS preflight answered by the response headers policy (its headers are added by `edge_headers`).
    Preflight,
}

impl EdgeResponse<'_> {
    /// The head and body to send, and the outcome they record.
    fn build(self, request_id: &str) -> Result<(ResponseHeader, Bytes, Outcome)> {
        Ok(match self {
            EdgeResponse::Error(error) => {
                let status = error.status();
                let body = page_body(status, error.reason(), request_id);
                (html_page(status, &body)?, Bytes::from(body), error.outcome())
            }
            EdgeResponse::FunctionError(error) => {
                let status = error.status();
                let reason = match error.kind {
                    HookErrorKind::Validation => {
                        format!("The Lambda function result failed validation: {}.", html_escape(&error.reason))
                    }
                    HookErrorKind::Execution => {
                        "The Lambda function associated with this distribution failed while running.".to_string()
                    }
                    HookErrorKind::LimitExceeded => {
                        "The Lambda function associated with this distribution exceeded its time or memory limit."
                            .to_string()
                    }
                };
                let body = page_body(status, &reason, request_id);
                (html_page(status, &body)?, Bytes::from(body), Outcome::FunctionFailed(error.kind))
            }
            EdgeResponse::Redirect { status, location } => {
                let mut resp = ResponseHeader::build(status, Some(6))?;
                resp.insert_header(http::header::LOCATION, location)?;
                resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
                resp.insert_header(http::header::SERVER, "verge")?;
                (resp, Bytes::new(), Outcome::Redirect)
            }
            EdgeResponse::Generated { header, body } => (header, body, Outcome::Generated),
            EdgeResponse::ErrorPage { header, body, cause } => (header, body, Outcome::Error(cause)),
            EdgeResponse::Preflight => {
                let mut resp = ResponseHeader::build(204, Some(8))?;
                resp.insert_header(http::header::SERVER, "verge")?;
                (resp, Bytes::new(), Outcome::Preflight)
            }
        })
    }
}

/// The edge headers' names with CloudFront's wire case, parsed once: an insert is then two map
/// operations, with no name parsed or copied per response.
static X_CACHE: (HeaderName, CaseHeaderName) =
    (HeaderName::from_static("x-cache"), CaseHeaderName::from_static("X-Cache"));
static VIA: (HeaderName, CaseHeaderName) = (http::header::VIA, CaseHeaderName::from_static("Via"));
static X_AMZ_CF_ID: (HeaderName, CaseHeaderName) =
    (HeaderName::from_static("x-amz-cf-id"), CaseHeaderName::from_static("X-Amz-Cf-Id"));

/// Sets the edge headers: `X-Cache` from the outcome, `Via`, and the request id. Every response to a
/// viewer gets them here and nowhere else. Static names and prebuilt values: this runs per response.
pub fn edge_headers(resp: &mut ResponseHeader, outcome: Outcome, ctx: &RequestContext) -> Result<()> {
    resp.insert_header(X_CACHE.clone(), outcome.result_type().x_cache())?;
    resp.insert_header(VIA.clone(), ctx.snapshot.via_value.clone())?;
    // Unique per response: marked sensitive, HTTP/2's HPACK sends it as a literal instead of adding
    // it to the connection's table, where a new entry per response evicted the useful ones and every
    // encode walked the list of older ids (HTTP/1 ignores the flag).
    let mut request_id = http::HeaderValue::from_str(ctx.request_id.as_str())
        .map_err(|e| pingora_error::Error::because(pingora_error::ErrorType::InternalError, "request id header", e))?;
    request_id.set_sensitive(true);
    resp.insert_header(X_AMZ_CF_ID.clone(), request_id)?;
    if let Some(policy) = &ctx.response_policy {
        super::response_policy::apply(resp, policy, outcome, &ctx.request_id, ctx.origin_millis, ctx.shield_hit)?;
    }
    Ok(())
}

/// Builds and sends `response` (the head alone for HEAD), records its outcome, and returns its status.
pub async fn send(session: &mut Session, ctx: &mut RequestContext, response: EdgeResponse<'_>) -> Result<u16> {
    let (mut resp, body, outcome) = response.build(&ctx.request_id)?;
    edge_headers(&mut resp, outcome, ctx)?;
    ctx.outcome = Some(outcome);
    ctx.mark_response_started();
    if matches!(ctx.ending, Ending::Proxied) {
        ctx.ending = Ending::Answered;
    }
    let status = resp.status.as_u16();
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session.write_response_header(Box::new(resp), head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(status)
}

/// The head of one of verge's HTML pages; never cached.
fn html_page(status: u16, body: &str) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(8))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/html")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::SERVER, "verge")?;
    Ok(resp)
}

fn page_body(status: u16, reason: &str, request_id: &str) -> String {
    format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\" \"http://www.w3.org/TR/html4/loose.dtd\">\n\
<HTML><HEAD><META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=iso-8859-1\">\n\
<TITLE>ERROR: The request could not be satisfied</TITLE>\n</HEAD><BODY>\n\
<H1>{status} ERROR</H1>\n<H2>The request could not be satisfied.</H2>\n<HR noshade size=\"1px\">\n{reason}\n\
<BR clear=\"all\">\n<HR noshade size=\"1px\">\n<PRE>\nGenerated by verge\nRequest ID: {request_id}\n</PRE>\n</BODY></HTML>\n"
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
