//! The viewer-location settings: `server.geo` (MaxMind DB files) and CloudFront's
//! `distribution.restrictions.geo_restriction`.

use super::Problems;
use crate::model::*;
use crate::raw::*;

pub(super) fn validate_geo(raw: Option<RawGeo>, p: &mut Problems) -> Option<GeoSettings> {
    let raw = raw?;
    if raw.database.is_empty() {
        p.add("server.geo.database", "is empty");
    }
    if raw.asn_database.as_deref() == Some("") {
        p.add("server.geo.asn_database", "is empty");
    }
    Some(GeoSettings { database: raw.database, asn_database: raw.asn_database })
}

/// CloudFront's rules: `none` lists nothing, `whitelist` / `blacklist` list at least one ISO 3166-1
/// alpha-2 code. A restriction needs a database to place viewers (without one it would pass everyone).
pub(super) fn validate_restrictions(
    raw: Option<RawRestrictions>,
    have_database: bool,
    p: &mut Problems,
) -> Option<GeoRestriction> {
    let raw = raw?.geo_restriction?;
    let key = "distribution.restrictions.geo_restriction";
    if let Some(quantity) = raw.quantity {
        if quantity != raw.items.len() as u64 {
            p.add(format!("{key}.quantity"), format!("is {quantity} but items lists {}", raw.items.len()));
        }
    }
    let mut codes = Vec::with_capacity(raw.items.len());
    for (i, item) in raw.items.iter().enumerate() {
        match item.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                codes.push([a.to_ascii_uppercase(), b.to_ascii_uppercase()]);
            }
            _ => p.add(format!("{key}.items[{i}]"), format!("`{item}` is not an ISO 3166-1 alpha-2 country code")),
        }
    }
    let restriction = match raw.restriction_type.as_str() {
        "none" => {
            if !raw.items.is_empty() {
                p.add(format!("{key}.items"), "must be empty when restriction_type is none");
            }
            return None;
        }
        "whitelist" => GeoRestriction::Whitelist(codes),
        "blacklist" => GeoRestriction::Blacklist(codes),
        other => {
            p.add(format!("{key}.restriction_type"), format!("`{other}` is not one of none, whitelist, blacklist"));
            return None;
        }
    };
    if raw.items.is_empty() {
        p.add(format!("{key}.items"), "lists no country: a whitelist or blacklist needs at least one");
    }
    if !have_database {
        p.add(key, "needs server.geo.database (a MaxMind DB file) to find the viewer's country");
    }
    Some(restriction)
}
