//! CloudFront's standard access log, written by the real binary and read by a real consumer (GoAccess,
//! `--log-format=CLOUDFRONT`).

use std::process::Command;
use std::time::{Duration, Instant};

use verge_testkit::origin::OriginResponse;

use crate::harness::*;

/// The log's request lines (not the `#` header lines), once `count` are there.
fn wait_for_lines(path: &std::path::Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_cloudfront_access_log_has_33_fields_and_goaccess_reads_it() {
    let app = Origin::start(|req| match req.path() {
        "/missing" => OriginResponse::new(404, "no"),
        _ => OriginResponse::new(200, "hello world")
            .header("cache-control", "max-age=60")
            .header("content-type", "text/plain"),
    });
    let yaml = format!(
        "server: {{access_log: {{file: access.log, edge_location: TST1-C1}}}}\n\
distribution: {{domain_name: d111111abcdef8.verge.local}}\n\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\ndefault_cache_behavior: {{target_origin_id: app}}\n",
        app.port()
    );
    let verge = Verge::start(&yaml);
    let ua = [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("Referer", "https://ref.example/")];
    for _ in 0..5 {
        assert_eq!(verge.request("GET", "/a.txt?x=1", &ua, b"").status, 200);
    }
    assert_eq!(verge.get("/missing").status, 404);
    assert_eq!(verge.request("GET", "/a.txt", &[("Range", "bytes=0-4")], b"").status, 206);
    assert_eq!(verge.request("POST", "/a.txt", &[], b"x").status, 403);

    let path = verge.dir().path.join("access.log");
    let lines = wait_for_lines(&path, 8);
    assert_eq!(lines.len(), 8, "{lines:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip"), "{text}");
    for line in &lines {
        assert_eq!(line.split('\t').count(), 33, "{line}");
    }
    let first: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(first[2], "TST1-C1");
    assert_eq!((first[4], first[5], first[6], first[7]), ("127.0.0.1", "GET", "d111111abcdef8.verge.local", "/a.txt"));
    assert_eq!(
        (first[8], first[9], first[10], first[11]),
        ("200", "https://ref.example/", "Mozilla/5.0%20(X11;%20Linux%20x86_64)", "x=1")
    );
    assert_eq!((first[13], first[22], first[28]), ("Miss", "Miss", "Miss"));
    assert_eq!(first[16], "http");
    assert_eq!(first[23], "HTTP/1.1");
    assert!(first[3].parse::<u64>().unwrap() > 11, "sc-bytes counts the head and the body");
    let hit: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(hit[13], "Hit");
    assert_eq!((hit[29], hit[30]), ("text/plain", "11"));
    let range: Vec<&str> = lines[6].split('\t').collect();
    assert_eq!((range[8], range[31], range[32]), ("206", "0", "4"));
    let refused: Vec<&str> = lines[7].split('\t').collect();
    assert_eq!((refused[8], refused[13]), ("403", "Error"));

    // A real consumer: GoAccess's CloudFront format.
    let report = verge.dir().path.join("report.json");
    let out = Command::new("goaccess")
        .arg(&path)
        .args(["--log-format=CLOUDFRONT", "--no-global-config", "-o"])
        .arg(&report)
        .output()
        .expect("goaccess is installed by scripts/setup (apt-get install goaccess)");
    assert!(out.status.success(), "goaccess: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["general"]["total_requests"], 8, "{}", json["general"]);
    assert_eq!(json["general"]["failed_requests"], 0, "every line parsed: {}", json["general"]);
    let hosts = json["hosts"]["data"].as_array().unwrap();
    assert!(hosts.iter().any(|h| h["data"] == "127.0.0.1" && h["hits"]["count"] == 8), "{hosts:?}");
    let statuses = json["status_codes"]["data"].as_array().unwrap();
    let count = |class: &str| {
        statuses
            .iter()
            .find(|s| s["data"].as_str().is_some_and(|d| d.starts_with(class)))
            .map_or(0, |s| s["hits"]["count"].as_u64().unwrap_or(0))
    };
    assert_eq!((count("2xx"), count("4xx")), (6, 2), "{statuses:?}");
}

#[test]
fn sigusr1_reopens_the_log_after_logrotate_moved_it() {
    let app = Origin::fixed(200, "ok");
    let yaml = format!(
        "server: {{access_log: {{file: access.log}}}}\norigins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\ndefault_cache_behavior: {{target_origin_id: app}}\n",
        app.port()
    );
    let verge = Verge::start(&yaml);
    let path = verge.dir().path.join("access.log");
    assert_eq!(verge.get("/one").status, 200);
    assert_eq!(wait_for_lines(&path, 1).len(), 1);
    let moved = verge.dir().path.join("access.log.1");
    std::fs::rename(&path, &moved).unwrap();
    let _ = Command::new("kill").args(["-USR1", &verge.pid().to_string()]).status();
    // The reopen makes a new file with the header lines; the next request goes there.
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(verge.get("/two").status, 200);
    let lines = wait_for_lines(&path, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("/two"));
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("#Version: 1.0"));
    assert!(std::fs::read_to_string(&moved).unwrap().contains("/one"));
}

#[test]
fn realtime_records_go_to_a_unix_socket_as_json_with_the_chosen_fields() {
    use std::io::{BufRead, BufReader};
    let app = Origin::fixed(200, "ok");
    let dir = TempDir::new();
    let listener = std::os::unix::net::UnixListener::bind(dir.path.join("rt.sock")).unwrap();
    let yaml = format!(
        "server: {{realtime_log: {{unix_socket: rt.sock, sampling_rate: 100, fields: [timestamp, c-ip, sc-status, cs-uri-stem, x-edge-result-type, cs-user-agent, time-taken]}}}}\n\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {}}}\ndefault_cache_behavior: {{target_origin_id: app}}\n",
        app.port()
    );
    let verge = Verge::start_in(dir, &yaml);
    for path in ["/one", "/one", "/two"] {
        assert_eq!(verge.request("GET", path, &[("User-Agent", "tester \"quoted\"")], b"").status, 200);
    }
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut lines = BufReader::new(stream).lines();
    let records: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).expect("one JSON object per line"))
        .collect();
    let keys: Vec<&String> = records[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "only the chosen fields: {keys:?}");
    assert_eq!(records[0]["cs-uri-stem"], "/one");
    assert_eq!(
        (records[0]["x-edge-result-type"].as_str(), records[1]["x-edge-result-type"].as_str()),
        (Some("Miss"), Some("Hit"))
    );
    assert_eq!(records[2]["sc-status"], "200");
    assert_eq!(records[0]["c-ip"], "127.0.0.1");
    assert_eq!(records[0]["cs-user-agent"], "tester \"quoted\"");
    assert!(records[0]["timestamp"].as_str().unwrap().contains('.'), "seconds.millis");
}
