//! Validation of `cache_policies` and `origin_request_policies` (docs/cloudfront.md, "Cache keys and policies").

use std::collections::HashMap;
use std::sync::Arc;

use super::{Problems, MAX_TTL_LIMIT};
use crate::managed;
use crate::model::{CachePolicy, HeaderForwarding, OriginRequestPolicy, Selection};
use crate::raw::{RawCachePolicy, RawItems, RawOriginRequestPolicy};

fn selection(key: &str, raw: &Option<RawItems>, allowed: &[&str], lowercase: bool, p: &mut Problems) -> Selection {
    let Some(raw) = raw else { return Selection::None };
    if raw.items.len() > 10 {
        p.add(format!("{key}.items"), "at most 10 items");
    }
    let items: Vec<String> =
        raw.items.iter().map(|i| if lowercase { i.to_ascii_lowercase() } else { i.clone() }).collect();
    let needs_items = matches!(raw.behavior.as_str(), "whitelist" | "allExcept");
    if needs_items && items.is_empty() {
        p.add(format!("{key}.items"), format!("`{}` needs at least one item", raw.behavior));
    } else if !needs_items && !items.is_empty() {
        p.add(format!("{key}.items"), format!("`{}` takes no items", raw.behavior));
    }
    if !allowed.contains(&raw.behavior.as_str()) {
        p.add(format!("{key}.behavior"), format!("`{}` is not one of {}", raw.behavior, allowed.join(", ")));
        return Selection::None;
    }
    match raw.behavior.as_str() {
        "whitelist" => Selection::Whitelist(items),
        "allExcept" => Selection::AllExcept(items),
        "all" => Selection::All,
        _ => Selection::None,
    }
}

pub(super) fn validate_cache_policies(raw: &[RawCachePolicy], p: &mut Problems) -> HashMap<String, Arc<CachePolicy>> {
    let mut out = HashMap::new();
    for (i, c) in raw.iter().enumerate() {
        let key = format!("cache_policies[{i}]");
        if managed::cache_policy(&c.name).is_some() {
            p.add(format!("{key}.name"), format!("`{}` is a managed policy name", c.name));
        }
        let min_ttl = c.min_ttl.unwrap_or(0);
        let default_ttl = c.default_ttl.unwrap_or(86_400.max(min_ttl));
        let max_ttl = c.max_ttl.unwrap_or(31_536_000.max(default_ttl));
        if max_ttl > MAX_TTL_LIMIT {
            p.add(format!("{key}.max_ttl"), format!("at most {MAX_TTL_LIMIT} s (100 years)"));
        }
        if min_ttl > default_ttl {
            p.add(format!("{key}.default_ttl"), format!("{default_ttl} is below min_ttl {min_ttl}"));
        }
        if default_ttl > max_ttl {
            p.add(format!("{key}.max_ttl"), format!("{max_ttl} is below default_ttl {default_ttl}"));
        }
        let headers = selection(&format!("{key}.headers"), &c.headers, &["none", "whitelist"], true, p);
        let all4 = ["none", "whitelist", "allExcept", "all"];
        let cookies = selection(&format!("{key}.cookies"), &c.cookies, &all4, false, p);
        let query_strings = selection(&format!("{key}.query_strings"), &c.query_strings, &all4, false, p);
        let policy = CachePolicy {
            name: c.name.clone(),
            min_ttl,
            default_ttl,
            max_ttl,
            headers,
            cookies,
            query_strings,
            accept_encoding_gzip: c.enable_accept_encoding_gzip.unwrap_or(false),
            accept_encoding_brotli: c.enable_accept_encoding_brotli.unwrap_or(false),
            accept_encoding_zstd: c.enable_accept_encoding_zstd.unwrap_or(false),
        };
        if out.insert(c.name.clone(), Arc::new(policy)).is_some() {
            p.add(format!("{key}.name"), format!("duplicate cache policy `{}`", c.name));
        }
    }
    out
}

pub(super) fn validate_request_policies(
    raw: &[RawOriginRequestPolicy],
    p: &mut Problems,
) -> HashMap<String, Arc<OriginRequestPolicy>> {
    let mut out = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("origin_request_policies[{i}]");
        if managed::origin_request_policy(&r.name).is_some() {
            p.add(format!("{key}.name"), format!("`{}` is a managed policy name", r.name));
        }
        let headers = match r.headers.as_ref().map(|h| h.behavior.as_str()) {
            Some("allViewer") => HeaderForwarding::AllViewer,
            Some("allViewerAndWhitelistCloudFront") => HeaderForwarding::AllViewerAndWhitelistCloudFront(
                r.headers.as_ref().map(|h| h.items.clone()).unwrap_or_default(),
            ),
            _ => HeaderForwarding::Select(selection(
                &format!("{key}.headers"),
                &r.headers,
                &["none", "whitelist", "allExcept", "allViewer", "allViewerAndWhitelistCloudFront"],
                true,
                p,
            )),
        };
        let all4 = ["none", "whitelist", "allExcept", "all"];
        let policy = OriginRequestPolicy {
            name: r.name.clone(),
            headers,
            cookies: selection(&format!("{key}.cookies"), &r.cookies, &all4, false, p),
            query_strings: selection(&format!("{key}.query_strings"), &r.query_strings, &all4, false, p),
        };
        if out.insert(r.name.clone(), Arc::new(policy)).is_some() {
            p.add(format!("{key}.name"), format!("duplicate origin request policy `{}`", r.name));
        }
    }
    out
}
