//! Location headers and geo restriction from MaxMind DB files built by the test (`testkit::mmdb`): what
//! the origin sees per viewer country, the cache split by country, a viewer's own `CloudFront-Viewer-*`
//! never passed on, blacklist / whitelist answers with custom error pages, and a reload that reads a
//! changed database.

use std::net::IpAddr;

use crate::harness::*;
use verge_testkit::mmdb::{asn_record, city_record, Writer};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// (The cache key names the ASN: an origin request policy takes at most 10 headers, as CloudFront's.)
/// GB (London), DE (München), FR (Paris) networks; `de_as` names the country of the DE network, so a
/// test can change it and reload.
fn write_databases(dir: &TempDir, de_as: &str) {
    let mut city = Writer::new("GeoIP2-City");
    city.insert(
        ip("81.2.69.0"),
        24,
        city_record("GB", "United Kingdom", "ENG", "England", "London", "EC2V", "Europe/London", (51.5142, -0.0931)),
    );
    city.insert(
        ip("2.16.0.0"),
        16,
        city_record(de_as, "Germany", "BY", "Bavaria", "München", "80331", "Europe/Berlin", (48.1374, 11.5755)),
    );
    city.insert(
        ip("90.0.0.0"),
        8,
        city_record("FR", "France", "IDF", "Île-de-France", "Paris", "75001", "Europe/Paris", (48.8566, 2.3522)),
    );
    city.insert(
        ip("2001:db8::"),
        32,
        city_record("JP", "Japan", "13", "Tokyo", "Tokyo", "100-0001", "Asia/Tokyo", (35.6895, 139.6917)),
    );
    std::fs::create_dir_all(dir.path.join("geo")).unwrap();
    std::fs::write(dir.path.join("geo/city.mmdb"), city.to_bytes()).unwrap();
    let mut asn = Writer::new("GeoLite2-ASN");
    asn.insert(ip("81.2.69.0"), 24, asn_record(20712, "Andrews & Arnold Ltd"));
    std::fs::write(dir.path.join("geo/asn.mmdb"), asn.to_bytes()).unwrap();
}

const LOCATION: &str = "[CloudFront-Viewer-Country, CloudFront-Viewer-Country-Name, CloudFront-Viewer-Country-Region, \
CloudFront-Viewer-Country-Region-Name, CloudFront-Viewer-City, CloudFront-Viewer-Postal-Code, CloudFront-Viewer-Time-Zone, \
CloudFront-Viewer-Latitude, CloudFront-Viewer-Longitude, CloudFront-Viewer-Metro-Code]";

fn yaml(origin: u16, restriction: &str) -> String {
    format!(
        "server:\n  trusted_proxies: [127.0.0.1/32]\n  geo: {{database: geo/city.mmdb, asn_database: geo/asn.mmdb}}\n  admin: {{listen: 127.0.0.1:0, unauthenticated: true}}\n\
distribution:\n  restrictions:\n    geo_restriction: {restriction}\n\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin}}}\n\
cache_policies:\n  - {{name: by-country, default_ttl: 60, headers: {{behavior: whitelist, items: [CloudFront-Viewer-Country, CloudFront-Viewer-ASN]}}}}\n\
origin_request_policies:\n  - {{name: location, headers: {{behavior: whitelist, items: {LOCATION}}}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: by-country, origin_request_policy: location}}\n\
custom_error_responses:\n  - {{error_code: 403, response_page_path: /errors/403.html, response_code: 403}}\n"
    )
}

fn location_origin() -> Origin {
    Origin::start(|req| {
        if req.path() == "/errors/403.html" {
            return verge_testkit::origin::OriginResponse::new(200, "not in your country");
        }
        let mut seen = Vec::new();
        for name in [
            "country",
            "country-name",
            "country-region",
            "country-region-name",
            "city",
            "postal-code",
            "time-zone",
            "latitude",
            "longitude",
            "metro-code",
            "asn",
        ] {
            if let Some(v) = req.header(&format!("cloudfront-viewer-{name}")) {
                seen.push(format!("{name}={v}"));
            }
        }
        verge_testkit::origin::OriginResponse::new(200, seen.join(";"))
    })
}

fn from(verge: &Verge, client: &str, path: &str) -> Response {
    verge.request("GET", path, &[("X-Forwarded-For", client), ("CloudFront-Viewer-Country", "XX")], b"")
}

#[test]
fn location_headers_come_from_the_database_and_split_the_cache_by_country() {
    let app = location_origin();
    let dir = TempDir::new();
    write_databases(&dir, "DE");
    let verge = Verge::start_in(dir, &yaml(app.port(), "{restriction_type: none}"));

    let london = from(&verge, "81.2.69.142", "/p");
    assert_eq!(
        london.text(),
        "country=GB;country-name=United Kingdom;country-region=ENG;country-region-name=England;city=London;\
postal-code=EC2V;time-zone=Europe/London;latitude=51.5142;longitude=-0.0931;metro-code=807;asn=20712",
        "{}",
        verge.output()
    );
    let munich = from(&verge, "2.16.4.4", "/p");
    assert!(munich.text().starts_with("country=DE;"), "{}", munich.text());
    assert!(munich.text().contains("city=M%C3%BCnchen;"), "non-ASCII is percent-encoded: {}", munich.text());
    assert!(!munich.text().contains("asn="), "no ASN for a network the ASN database lacks");
    let tokyo = from(&verge, "2001:db8::7", "/p");
    assert!(tokyo.text().starts_with("country=JP;"), "IPv6 viewers are placed too: {}", tokyo.text());
    // A viewer the database does not know gets no location header, and its own value never passes.
    assert_eq!(verge.request("GET", "/p", &[("CloudFront-Viewer-Country", "XX")], b"").text(), "");

    assert_eq!(from(&verge, "81.2.69.1", "/p").x_cache(), "Hit from verge", "same country, same object");
    assert_eq!(app.count(), 4, "one object per country (GB, DE, JP, unknown)");
}

#[test]
fn geo_restriction_refuses_countries_with_the_custom_error_page_and_a_reload_reads_a_new_database() {
    let app = location_origin();
    let dir = TempDir::new();
    write_databases(&dir, "DE");
    let verge = Verge::start_in(dir, &yaml(app.port(), "{restriction_type: blacklist, items: [FR, AT]}"));
    let admin = verge.admin.expect("admin API");

    let blocked = from(&verge, "90.1.2.3", "/p");
    assert_eq!((blocked.status, blocked.text().as_str()), (403, "not in your country"), "{}", verge.output());
    assert!(verge.wait_for_output("detailed_result=\"ClientGeoBlocked\""), "{}", verge.output());
    assert_eq!(from(&verge, "2.16.4.4", "/p").status, 200);
    assert_eq!(verge.get("/p").status, 200, "a viewer the database cannot place is served");

    // The DE network now belongs to AT (blacklisted): a reload reads the changed database.
    write_databases(verge.dir(), "AT");
    let reloaded = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(from(&verge, "2.16.4.4", "/q").status, 403, "{}", verge.output());

    // A whitelist: only GB.
    let text = std::fs::read_to_string(verge.config_path()).unwrap();
    let whitelist =
        text.replace("{restriction_type: blacklist, items: [FR, AT]}", "{restriction_type: whitelist, items: [gb]}");
    std::fs::write(verge.config_path(), whitelist).unwrap();
    assert_eq!(http_request(admin, "POST", "/reload", &[], b"").status, 200);
    assert_eq!(from(&verge, "81.2.69.142", "/r").status, 200);
    assert_eq!(from(&verge, "90.1.2.3", "/r").status, 403);
    assert_eq!(from(&verge, "2001:db8::7", "/r").status, 403);

    // A database that is not one refuses the reload; the whitelist keeps serving.
    std::fs::write(verge.dir().path.join("geo/city.mmdb"), b"not a database").unwrap();
    let refused = http_request(admin, "POST", "/reload", &[], b"");
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("not a MaxMind DB file"), "{}", refused.text());
    assert_eq!(from(&verge, "90.1.2.3", "/r").status, 403);
    assert_eq!(from(&verge, "81.2.69.142", "/r").status, 200);
}
