//! Hook failures, typed by CloudFront's three classes, mapped to status and `X-Cache` in one place.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookErrorKind {
    /// The result is not valid for its trigger: bad JSON, read-only/disallowed header, oversize, bad status.
    Validation,
    /// The function trapped, panicked, exited non-zero or returned an error.
    Execution,
    /// The function ran out of time or memory, or no instance slot was free (throttled).
    LimitExceeded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookError {
    pub kind: HookErrorKind,
    pub reason: String,
}

impl HookError {
    pub fn validation(reason: impl Into<String>) -> Self {
        Self { kind: HookErrorKind::Validation, reason: reason.into() }
    }
    pub fn execution(reason: impl Into<String>) -> Self {
        Self { kind: HookErrorKind::Execution, reason: reason.into() }
    }
    pub fn limit(reason: impl Into<String>) -> Self {
        Self { kind: HookErrorKind::LimitExceeded, reason: reason.into() }
    }

    /// The viewer status: 502 for validation errors, 503 otherwise (docs/cloudfront.md, "Function errors").
    pub fn status(&self) -> u16 {
        match self.kind {
            HookErrorKind::Validation => 502,
            HookErrorKind::Execution | HookErrorKind::LimitExceeded => 503,
        }
    }

    /// CloudFront's result type, used in `X-Cache` and the access log.
    pub fn result_type(&self) -> &'static str {
        match self.kind {
            HookErrorKind::Validation => "LambdaValidationError",
            HookErrorKind::Execution => "LambdaExecutionError",
            HookErrorKind::LimitExceeded => "LambdaLimitExceeded",
        }
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.result_type(), self.reason)
    }
}

impl std::error::Error for HookError {}
