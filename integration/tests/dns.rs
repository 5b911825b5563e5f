//! Origin DNS: names resolved by verge's resolver (here a DNS server the test runs), followed when
//! their TTL runs out without a reload, every address used in order, and the last good addresses kept
//! when a name stops resolving.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use verge_testkit::dns::{Answer, DnsServer};

use crate::harness::*;

/// Polls `check` until it holds or `TIMEOUT` passes (never a fixed sleep as synchronisation).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {TIMEOUT:?}");
}

#[test]
fn a_dns_change_is_followed_without_a_reload_and_a_failing_name_keeps_its_addresses() {
    let first = Origin::fixed(200, "first address");
    let port = first.port();
    let second = Origin::start_at(&format!("127.0.0.2:{port}"), |_| {
        verge_testkit::origin::OriginResponse::new(200, "second address")
    });
    let dns = DnsServer::start();
    // 127.0.0.3 has nothing listening: the first attempt is refused, the second takes the next address.
    dns.set("origin.verge.test", Answer::A { addrs: vec![Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::LOCALHOST], ttl: 1 });
    let yaml = format!(
        "server: {{dns: {{nameservers: ['{}'], min_ttl: 0}}}}\norigins:\n  - {{id: app, domain_name: origin.verge.test, http_port: {port}, connection_attempts: 2, connection_timeout: 2}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingDisabled}}\n",
        dns.addr
    );
    let verge = Verge::start(&yaml);
    assert_eq!(verge.get("/a").text(), "first address", "the next address after a refused one");

    dns.set("origin.verge.test", Answer::A { addrs: vec![Ipv4Addr::new(127, 0, 0, 2)], ttl: 1 });
    eventually("verge following the new address", || verge.get("/b").text() == "second address");
    assert!(verge.wait_for_output("origin addresses changed"), "{}", verge.output());

    dns.set("origin.verge.test", Answer::ServFail);
    assert!(verge.wait_for_output("keeping the last good addresses"), "{}", verge.output());
    assert_eq!(verge.get("/c").text(), "second address", "a name that stops resolving keeps serving");
    assert!(second.count() >= 2);
}

#[test]
fn an_origin_name_that_does_not_resolve_refuses_the_distribution_with_its_reason() {
    let dns = DnsServer::start();
    let file = TempDir::new();
    let path = file.path.join("d.yaml");
    std::fs::write(
        &path,
        format!(
            "server: {{dns: {{nameservers: ['{}']}}}}\norigins:\n  - {{id: app, domain_name: missing.verge.test}}\ndefault_cache_behavior: {{target_origin_id: app}}\n",
            dns.addr
        ),
    )
    .unwrap();
    let (code, _, err) = run_verge(&["validate", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("origin `app`") && err.contains("missing.verge.test"), "{err}");
}
