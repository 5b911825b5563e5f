//! The viewer's location from MaxMind-format databases (`server.geo`): the country for CloudFront's geo
//! restriction and the `CloudFront-Viewer-{Country,…,ASN}` headers. Databases are read into memory at
//! start and by every reload, and looked up only for requests that need them: a behavior asking for a geo header, or a geo
//! restriction.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use maxminddb::{geoip2, Reader};
use verge_config::model::GeoSettings;

/// The loaded databases.
pub struct GeoDatabases {
    city: LoadedDb,
    asn: Option<LoadedDb>,
}

struct LoadedDb {
    reader: Reader<Vec<u8>>,
}

/// The name of location header `i` (bit i of a `wanted` mask).
fn geo_header(i: usize) -> &'static str {
    super::connection::CLOUDFRONT_HEADERS[super::connection::GEO_FIRST + i]
}

fn open(path: &Path) -> Result<LoadedDb, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = Reader::from_source(bytes).map_err(|e| format!("{}: not a MaxMind DB file: {e}", path.display()))?;
    Ok(LoadedDb { reader })
}

impl GeoDatabases {
    /// Reads the configured databases (relative to `base_dir`). Always read whole: a 70 MB City database
    /// reads from the page cache in tens of milliseconds, off the request path, and a file replaced in
    /// place is never missed.
    pub fn load(settings: Option<&GeoSettings>, base_dir: &Path) -> Result<Option<Arc<GeoDatabases>>, String> {
        let Some(settings) = settings else { return Ok(None) };
        let city = open(&base_dir.join(&settings.database))?;
        let asn = match &settings.asn_database {
            Some(file) => Some(open(&base_dir.join(file))?),
            None => None,
        };
        Ok(Some(Arc::new(GeoDatabases { city, asn })))
    }

    /// The viewer's country (ISO 3166-1 alpha-2, upper case), when the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let found = self.city.reader.lookup(ip).ok()?;
        let record: geoip2::Country<'_> = found.decode().ok()??;
        country_code(record.country.iso_code)
    }

    /// The location header values wanted (`wanted` bit i = `geo_header(i)`), as header values.
    pub fn headers(&self, ip: IpAddr, wanted: u16) -> Vec<(&'static str, http::HeaderValue)> {
        let mut out = Vec::new();
        const ASN_BIT: u16 = 1 << 10;
        if wanted & !ASN_BIT != 0 {
            if let Some(city) =
                self.city.reader.lookup(ip).ok().and_then(|r| r.decode::<geoip2::City<'_>>().ok().flatten())
            {
                let region = city.subdivisions.first();
                let location = &city.location;
                let values: [Option<String>; 10] = [
                    city.country.iso_code.map(str::to_string),
                    city.country.names.english.map(str::to_string),
                    region.and_then(|r| r.iso_code).map(str::to_string),
                    region.and_then(|r| r.names.english).map(str::to_string),
                    city.city.names.english.map(str::to_string),
                    city.postal.code.map(str::to_string),
                    location.time_zone.map(str::to_string),
                    location.latitude.map(coordinate),
                    location.longitude.map(coordinate),
                    location.metro_code.map(|m| m.to_string()),
                ];
                for (i, value) in values.into_iter().enumerate() {
                    if wanted & (1 << i) == 0 {
                        continue;
                    }
                    if let Some(value) = value.and_then(|v| header_value(&v)) {
                        out.push((geo_header(i), value));
                    }
                }
            }
        }
        if wanted & ASN_BIT != 0 {
            let asn = self.asn.as_ref().unwrap_or(&self.city);
            let number = asn.reader.lookup(ip).ok().and_then(|r| r.decode::<geoip2::Asn<'_>>().ok().flatten());
            if let Some(n) = number.and_then(|a| a.autonomous_system_number) {
                out.push((geo_header(10), http::HeaderValue::from(n)));
            }
        }
        out
    }
}

fn country_code(iso: Option<&str>) -> Option<[u8; 2]> {
    match iso?.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// Degrees with four decimals (about 11 m), as CloudFront writes them.
fn coordinate(degrees: f64) -> String {
    format!("{degrees:.4}")
}

/// A header value from a database string: ASCII as it is, anything else percent-encoded as UTF-8 (city
/// names such as `Zürich`; header values are ASCII for every HTTP library an origin runs). Control
/// characters are encoded too, so a database can never split a header.
fn header_value(text: &str) -> Option<http::HeaderValue> {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%') {
        return http::HeaderValue::from_str(text).ok();
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    http::HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_and_control_characters_are_percent_encoded() {
        assert_eq!(header_value("Zürich").unwrap(), "Z%C3%BCrich");
        assert_eq!(header_value("a\r\nb").unwrap(), "a%0D%0Ab");
        assert_eq!(header_value("100%").unwrap(), "100%25");
        assert_eq!(header_value("Europe/Berlin").unwrap(), "Europe/Berlin");
    }

    #[test]
    fn coordinates_have_four_decimals() {
        assert_eq!(coordinate(47.3769), "47.3769");
        assert_eq!(coordinate(-122.33), "-122.3300");
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert_eq!(country_code(Some("de")), Some(*b"DE"));
        assert_eq!(country_code(Some("DEU")), None);
        assert_eq!(country_code(None), None);
    }
}
