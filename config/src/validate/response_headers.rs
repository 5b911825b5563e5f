//! Checks custom response headers policies (CloudFront's rules) and builds what the proxy applies.

use std::collections::HashMap;
use std::sync::Arc;

use super::Problems;
use crate::raw::{RawCorsConfig, RawResponseHeadersPolicy, RawSecurityHeadersConfig};
use crate::response_headers::*;

const CORS_METHODS: &[&str] = &["GET", "DELETE", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "ALL"];

fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

pub(super) fn validate_response_headers_policies(
    raw: &[RawResponseHeadersPolicy],
    p: &mut Problems,
) -> HashMap<String, Arc<ResponseHeadersPolicy>> {
    let mut out = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("response_headers_policies[{i}]");
        if r.name.is_empty() {
            p.add(format!("{key}.name"), "must not be empty");
        } else if managed(&r.name).is_some() {
            p.add(format!("{key}.name"), format!("`{}` is a managed policy name", r.name));
        } else if out.contains_key(&r.name) {
            p.add(format!("{key}.name"), format!("duplicate response headers policy `{}`", r.name));
        }
        if r.comment.as_ref().is_some_and(|c| c.len() > 128) {
            p.add(format!("{key}.comment"), "at most 128 characters");
        }
        let cors = r.cors_config.as_ref().map(|c| cors(&format!("{key}.cors_config"), c, p));
        let mut set = match &r.security_headers_config {
            Some(s) => security(&format!("{key}.security_headers_config"), s, p),
            None => Vec::new(),
        };
        if r.custom_headers_config.len() > 10 {
            p.add(format!("{key}.custom_headers_config"), "at most 10 custom headers");
        }
        for (j, h) in r.custom_headers_config.iter().enumerate() {
            let hkey = format!("{key}.custom_headers_config[{j}]");
            let name = h.header.to_ascii_lowercase();
            if !is_token(&h.header) {
                p.add(format!("{hkey}.header"), format!("`{}` is not a header name", h.header));
                continue;
            } else if set.iter().any(|s| s.name.as_str() == name) {
                p.add(format!("{hkey}.header"), format!("`{}` is set twice in this policy", h.header));
            }
            if !is_value(&h.value) || h.value.len() > 1_783 {
                p.add(format!("{hkey}.value"), "must be printable text (no line breaks), at most 1,783 characters");
                continue;
            }
            set.extend(PolicyHeader::new(&name, &h.value, h.r#override));
        }
        let mut remove = Vec::new();
        for (j, name) in r.remove_headers_config.iter().enumerate() {
            let rkey = format!("{key}.remove_headers_config[{j}]");
            if !is_token(name) {
                p.add(rkey, format!("`{name}` is not a header name"));
            } else if unremovable(name) {
                p.add(rkey, format!("`{name}` cannot be removed by a response headers policy"));
            } else {
                remove.extend(http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok());
            }
        }
        let server_timing = match &r.server_timing_headers_config {
            Some(st) if st.enabled => {
                let rate = st.sampling_rate.unwrap_or(0.0);
                if !(0.0..=100.0).contains(&rate) {
                    p.add(format!("{key}.server_timing_headers_config.sampling_rate"), "must be 0–100 (percent)");
                }
                Some(rate.clamp(0.0, 100.0) / 100.0)
            }
            _ => None,
        };
        out.insert(
            r.name.clone(),
            Arc::new(ResponseHeadersPolicy { name: r.name.clone(), cors, set, remove, server_timing }),
        );
    }
    out
}

fn cors(key: &str, c: &RawCorsConfig, p: &mut Problems) -> Cors {
    if c.access_control_allow_origins.is_empty() {
        p.add(format!("{key}.access_control_allow_origins"), "needs at least one origin (or `*`)");
    }
    let mut origins = Vec::new();
    for (i, origin) in c.access_control_allow_origins.iter().enumerate() {
        let okey = format!("{key}.access_control_allow_origins[{i}]");
        if origin == "*" {
            origins.push(origin.clone());
            continue;
        }
        let Some((scheme, host)) = origin.split_once("://") else {
            p.add(okey, format!("`{origin}` is not `*` or scheme://host (e.g. https://example.com)"));
            continue;
        };
        let wildcard_ok = match host.find('*') {
            None => true,
            Some(0) => host.starts_with("*.") && !host[2..].contains('*') && host.len() > 2,
            Some(_) => false,
        };
        if scheme.is_empty() || host.is_empty() || !wildcard_ok {
            p.add(
                okey,
                format!("`{origin}`: a wildcard is allowed only as the whole leftmost label (https://*.example.com)"),
            );
            continue;
        }
        origins.push(origin.to_ascii_lowercase());
    }
    let mut methods = Vec::new();
    for (i, m) in c.access_control_allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            p.add(
                format!("{key}.access_control_allow_methods[{i}]"),
                format!("`{m}` is not one of {}", CORS_METHODS.join(", ")),
            );
        } else if m == "ALL" {
            methods.extend(CORS_METHODS[..7].iter().map(|m| m.to_string()));
        } else {
            methods.push(m.clone());
        }
    }
    for (list, name) in [
        (&c.access_control_allow_headers, "access_control_allow_headers"),
        (&c.access_control_expose_headers, "access_control_expose_headers"),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" && !is_token(h) {
                p.add(format!("{key}.{name}[{i}]"), format!("`{h}` is not a header name or `*`"));
            }
        }
    }
    if c.access_control_allow_credentials && origins.iter().any(|o| o == "*") {
        p.add(
            format!("{key}.access_control_allow_credentials"),
            "cannot be true with the origin `*` (browsers refuse credentials for any origin)",
        );
    }
    Cors {
        allow_origins: origins,
        allow_headers: c.access_control_allow_headers.join(", "),
        allow_methods: methods.join(", "),
        allow_credentials: c.access_control_allow_credentials,
        expose_headers: c.access_control_expose_headers.join(", "),
        max_age_sec: c.access_control_max_age_sec,
        origin_override: c.origin_override,
    }
}

fn security(key: &str, s: &RawSecurityHeadersConfig, p: &mut Problems) -> Vec<PolicyHeader> {
    let mut out = Vec::new();
    // Values that are not header values were reported; they are left out.
    let mut add = |name: &str, value: String, r#override: bool| {
        out.extend(PolicyHeader::new(name, &value, r#override));
    };
    if let Some(x) = &s.xss_protection {
        if x.mode_block && x.report_uri.is_some() {
            p.add(format!("{key}.xss_protection"), "mode_block and report_uri exclude each other");
        }
        let value = match (x.protection, x.mode_block, &x.report_uri) {
            (false, _, _) => "0".to_string(),
            (true, true, _) => "1; mode=block".to_string(),
            (true, false, Some(uri)) => format!("1; report={uri}"),
            (true, false, None) => "1".to_string(),
        };
        add("x-xss-protection", value, x.r#override);
    }
    if let Some(f) = &s.frame_options {
        if f.frame_option != "DENY" && f.frame_option != "SAMEORIGIN" {
            p.add(
                format!("{key}.frame_options.frame_option"),
                format!("`{}` is not DENY or SAMEORIGIN", f.frame_option),
            );
        }
        add("x-frame-options", f.frame_option.clone(), f.r#override);
    }
    if let Some(r) = &s.referrer_policy {
        if !REFERRER_POLICIES.contains(&r.referrer_policy.as_str()) {
            p.add(
                format!("{key}.referrer_policy.referrer_policy"),
                format!("`{}` is not one of {}", r.referrer_policy, REFERRER_POLICIES.join(", ")),
            );
        }
        add("referrer-policy", r.referrer_policy.clone(), r.r#override);
    }
    if let Some(c) = &s.content_security_policy {
        if c.content_security_policy.len() > MAX_CSP || !is_value(&c.content_security_policy) {
            p.add(
                format!("{key}.content_security_policy.content_security_policy"),
                format!("at most {MAX_CSP} printable characters ({} given)", c.content_security_policy.len()),
            );
        }
        add("content-security-policy", c.content_security_policy.clone(), c.r#override);
    }
    if let Some(c) = &s.content_type_options {
        add("x-content-type-options", "nosniff".to_string(), c.r#override);
    }
    if let Some(h) = &s.strict_transport_security {
        let mut value = format!("max-age={}", h.access_control_max_age_sec);
        if h.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if h.preload {
            value.push_str("; preload");
        }
        add("strict-transport-security", value, h.r#override);
    }
    out
}
