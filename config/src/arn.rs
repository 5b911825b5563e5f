//! Versioned Lambda function ARNs: `arn:<partition>:lambda:<region>:<account>:function:<name>:<version>`.
//!
//! Only numbered versions are accepted (docs/cloudfront.md, "Versioned functions"): a version is an immutable snapshot, while `$LATEST`
//! and aliases are mutable pointers.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
    pub version: u32,
}

/// CloudFront's own wording for unqualified ARNs, `$LATEST` and aliases.
pub const NEEDS_VERSION: &str =
    "The function ARN must reference a specific function version. (The ARN must end with the version number.)";

impl FunctionArn {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let shape_ok = parts.len() >= 7
            && parts[0] == "arn"
            && parts[2] == "lambda"
            && parts[5] == "function"
            && !parts[1].is_empty();
        if !shape_ok {
            return Err(format!(
                "`{text}` is not a Lambda function ARN (arn:<partition>:lambda:<region>:<account>:function:<name>:<version>)"
            ));
        }
        let name = parts[6];
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("`{name}` is not a function name (1-64 of A-Z a-z 0-9 - _)"));
        }
        if parts.len() != 8 {
            return Err(NEEDS_VERSION.to_string());
        }
        let version = match parts[7].parse::<u32>() {
            // Canonical digits only: `01` or `+1` would name version 1 under another spelling.
            Ok(v) if v >= 1 && parts[7] == v.to_string() => v,
            _ => return Err(format!("{NEEDS_VERSION} `{}` is not a version number", parts[7])),
        };
        Ok(Self {
            partition: parts[1].to_string(),
            region: parts[3].to_string(),
            account: parts[4].to_string(),
            name: name.to_string(),
            version,
        })
    }

    /// The ARN verge prints for a version it published.
    pub fn local(name: &str, version: u32) -> Self {
        Self {
            partition: "aws".to_string(),
            region: "us-east-1".to_string(),
            account: "000000000000".to_string(),
            name: name.to_string(),
            version,
        }
    }
}

impl fmt::Display for FunctionArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:lambda:{}:{}:function:{}:{}",
            self.partition, self.region, self.account, self.name, self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_arns_only() {
        let arn = FunctionArn::parse("arn:aws:lambda:us-east-1:123456789012:function:ab-test:3").unwrap();
        assert_eq!((arn.name.as_str(), arn.version), ("ab-test", 3));
        assert_eq!(arn.to_string(), "arn:aws:lambda:us-east-1:123456789012:function:ab-test:3");
        for bad in [
            "arn:aws:lambda:us-east-1:123456789012:function:ab-test",
            "arn:aws:lambda:us-east-1:123456789012:function:ab-test:$LATEST",
            "arn:aws:lambda:us-east-1:123456789012:function:ab-test:live",
            "arn:aws:lambda:us-east-1:123456789012:function:ab-test:0",
            "arn:aws:lambda:us-east-1:123456789012:function:ab-test:01",
            "arn:aws:lambda:us-east-1:123456789012:function:ab-test:+1",
        ] {
            assert!(FunctionArn::parse(bad).unwrap_err().starts_with(NEEDS_VERSION), "{bad}");
        }
        assert!(FunctionArn::parse("arn:aws:s3:::bucket").is_err());
    }
}
