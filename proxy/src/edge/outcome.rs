//! How a request ended, decided once: `X-Cache`, the access log's three result types
//! (`x-edge-result-type`, `x-edge-response-result-type`, `x-edge-detailed-result-type`) and the metrics
//! label are all read from one `Outcome`, so they cannot disagree. The vocabulary is CloudFront's
//! (docs/cloudfront.md, "Result types").

use verge_hooks::HookErrorKind;

/// CloudFront's `x-edge-result-type` values verge produces, in the order of the metrics label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultType {
    Hit,
    RefreshHit,
    Miss,
    Redirect,
    Error,
    LambdaGeneratedResponse,
    LambdaValidationError,
    LambdaExecutionError,
    LambdaLimitExceeded,
}

impl ResultType {
    pub const ALL: [ResultType; 9] = [
        ResultType::Hit,
        ResultType::RefreshHit,
        ResultType::Miss,
        ResultType::Redirect,
        ResultType::Error,
        ResultType::LambdaGeneratedResponse,
        ResultType::LambdaValidationError,
        ResultType::LambdaExecutionError,
        ResultType::LambdaLimitExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::Hit => "Hit",
            ResultType::RefreshHit => "RefreshHit",
            ResultType::Miss => "Miss",
            ResultType::Redirect => "Redirect",
            ResultType::Error => "Error",
            ResultType::LambdaGeneratedResponse => "LambdaGeneratedResponse",
            ResultType::LambdaValidationError => "LambdaValidationError",
            ResultType::LambdaExecutionError => "LambdaExecutionError",
            ResultType::LambdaLimitExceeded => "LambdaLimitExceeded",
        }
    }

    /// `X-Cache`, prebuilt per result type (it is set on every response).
    /// The `X-Cache` value. Each is built once, at compile time: `HeaderValue::from_static` checks its
    /// bytes when it runs, and at run time that was ~170 instructions on every response.
    pub fn x_cache(self) -> http::HeaderValue {
        const fn value(text: &'static str) -> http::HeaderValue {
            http::HeaderValue::from_static(text)
        }
        const HIT: http::HeaderValue = value("Hit from verge");
        const REFRESH_HIT: http::HeaderValue = value("RefreshHit from verge");
        const MISS: http::HeaderValue = value("Miss from verge");
        const REDIRECT: http::HeaderValue = value("Redirect from verge");
        const ERROR: http::HeaderValue = value("Error from verge");
        const GENERATED: http::HeaderValue = value("LambdaGeneratedResponse from verge");
        const VALIDATION: http::HeaderValue = value("LambdaValidationError from verge");
        const EXECUTION: http::HeaderValue = value("LambdaExecutionError from verge");
        const LIMIT: http::HeaderValue = value("LambdaLimitExceeded from verge");
        match self {
            ResultType::Hit => HIT,
            ResultType::RefreshHit => REFRESH_HIT,
            ResultType::Miss => MISS,
            ResultType::Redirect => REDIRECT,
            ResultType::Error => ERROR,
            ResultType::LambdaGeneratedResponse => GENERATED,
            ResultType::LambdaValidationError => VALIDATION,
            ResultType::LambdaExecutionError => EXECUTION,
            ResultType::LambdaLimitExceeded => LIMIT,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a response is an error: an origin's (or a cached) error status, or one verge made itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCause {
    /// The origin answered (or the cache holds) a status of 400 or more.
    OriginStatus,
    OriginConnect,
    OriginTimeout,
    /// The request was refused at the edge: method, Host, disabled distribution, HTTP on https-only.
    InvalidRequest,
    /// The distribution's geo restriction refused the viewer's country.
    GeoBlocked,
    /// A body verge had to buffer (IncludeBody) is larger than it can.
    BodyTooLarge,
    Internal,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache while fresh (collapsed requests included).
    Hit,
    /// Served from the cache after the origin confirmed it (304), or stale.
    RefreshHit,
    /// Fetched from the origin.
    Miss,
    /// The viewer protocol policy's redirect to HTTPS.
    Redirect,
    /// A function generated the response (an origin-request answer, this first time; later requests for
    /// it are hits).
    Generated,
    /// A CORS preflight answered by the edge's response headers policy (no origin, like a hit).
    Preflight,
    /// A function failed: its class picks the status and the result type.
    FunctionFailed(HookErrorKind),
    Error(ErrorCause),
}

impl Outcome {
    /// `x-edge-result-type` (and `x-edge-response-result-type`, the same when the response was sent).
    pub fn result_type(self) -> ResultType {
        match self {
            Outcome::Hit | Outcome::Preflight => ResultType::Hit,
            Outcome::RefreshHit => ResultType::RefreshHit,
            Outcome::Miss => ResultType::Miss,
            Outcome::Redirect => ResultType::Redirect,
            Outcome::Generated => ResultType::LambdaGeneratedResponse,
            Outcome::FunctionFailed(HookErrorKind::Validation) => ResultType::LambdaValidationError,
            Outcome::FunctionFailed(HookErrorKind::Execution) => ResultType::LambdaExecutionError,
            Outcome::FunctionFailed(HookErrorKind::LimitExceeded) => ResultType::LambdaLimitExceeded,
            Outcome::Error(_) => ResultType::Error,
        }
    }

    /// `x-edge-detailed-result-type`: the error's cause where CloudFront names one, else the result type.
    pub fn detailed_result_type(self) -> &'static str {
        match self {
            Outcome::Error(ErrorCause::OriginConnect) => "OriginConnectError",
            Outcome::Error(ErrorCause::OriginTimeout) => "OriginReadError",
            Outcome::Error(ErrorCause::InvalidRequest) => "InvalidRequest",
            Outcome::Error(ErrorCause::GeoBlocked) => "ClientGeoBlocked",
            Outcome::Error(ErrorCause::BodyTooLarge) => "InvalidRequest",
            other => other.result_type().as_str(),
        }
    }
}

/// The three result types of an access-log line: what the request ended as, what its response was
/// classified as when sent, and the detailed type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedResult {
    pub result: ResultType,
    pub response_result: ResultType,
    pub detailed: &'static str,
}

impl LoggedResult {
    /// `hung_up`: the viewer went away before the response was complete (CloudFront: the request is
    /// an Error, ClientHungUpRequest, whatever was being sent).
    pub fn of(outcome: Outcome, hung_up: bool) -> Self {
        let sent = outcome.result_type();
        if hung_up {
            return Self { result: ResultType::Error, response_result: sent, detailed: "ClientHungUpRequest" };
        }
        Self { result: sent, response_result: sent, detailed: outcome.detailed_result_type() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_outcome_gives_every_name() {
        let failed = Outcome::FunctionFailed(HookErrorKind::Validation);
        assert_eq!(failed.result_type().as_str(), "LambdaValidationError");
        assert_eq!(failed.result_type().x_cache(), "LambdaValidationError from verge");
        let refused = LoggedResult::of(Outcome::Error(ErrorCause::OriginConnect), false);
        assert_eq!((refused.result.as_str(), refused.detailed), ("Error", "OriginConnectError"));
        let hung_up = LoggedResult::of(Outcome::Miss, true);
        assert_eq!(
            (hung_up.result, hung_up.response_result, hung_up.detailed),
            (ResultType::Error, ResultType::Miss, "ClientHungUpRequest")
        );
        for (i, r) in ResultType::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
