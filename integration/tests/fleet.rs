//! The fleet end to end: a real `nats-server -js`, several real verge nodes (`serve --nats`), the real
//! `verge deploy`, `fleet status`, `invalidate --nats` and `invalidations list`, all on loopback.

use std::time::{Duration, Instant};

use crate::harness::*;

/// A node's own file: its settings and the distribution it serves until the first deployment.
fn node_yaml(origin: u16) -> String {
    format!(
        "server:\n  admin: {{listen: 127.0.0.1:0, unauthenticated: true}}\n\
origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin}}}\n\
default_cache_behavior: {{target_origin_id: app}}\n"
    )
}

/// A deployment: the origin gets `X-Rev: rev`; `cache_policy` as given.
fn deployment(origin: u16, rev: &str, cache_policy: &str) -> String {
    format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin}, custom_headers: {{X-Rev: '{rev}'}}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: {cache_policy}}}\n"
    )
}

fn rev_origin() -> Origin {
    Origin::start(|req| {
        OriginResponse::new(200, format!("rev={}", req.header("x-rev").unwrap_or("none")))
            .header("cache-control", "max-age=600")
    })
}

/// Polls `done` until it holds (a condition, not a fixed sleep), failing after the harness timeout.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn live_nodes(nats: &Nats) -> String {
    run_verge(&["fleet", "status", "--nats", &nats.url()]).1
}

fn wait_live(nats: &Nats, count: usize) {
    wait_until(&format!("{count} live nodes"), || live_nodes(nats).contains(&format!("\n{count} live nodes")));
}

fn deploy(nats: &Nats, dir: &TempDir, yaml: &str, extra: &[&str]) -> (i32, String, String) {
    let file = dir.path.join("distribution.yaml");
    std::fs::write(&file, yaml).unwrap();
    let url = nats.url();
    let mut args = vec!["deploy", "--nats", url.as_str()];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    run_verge(&args)
}

/// `… served by 3/3 live nodes in 41 ms: …` → 41.
fn deploy_millis(out: &str) -> u64 {
    let after = out.split(" live nodes in ").nth(1).expect("a deploy summary");
    after.split(" ms").next().unwrap().parse().unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn a_deploy_reaches_every_node_and_one_that_does_not_load_is_refused_everywhere() {
    let nats = Nats::start();
    let origin = rev_origin();
    let nodes: Vec<Verge> = ["edge-1", "edge-2", "edge-3"]
        .iter()
        .map(|id| Verge::start_node(TempDir::new(), &node_yaml(origin.port()), &nats.url(), id))
        .collect();
    wait_live(&nats, 3);
    assert_eq!(nodes[0].get("/x").text(), "rev=none", "the node's own file serves before any deployment");

    let dir = TempDir::new();
    let mut millis = Vec::new();
    for rev in 1..=20 {
        let (code, out, err) =
            deploy(&nats, &dir, &deployment(origin.port(), &rev.to_string(), "CachingDisabled"), &[]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("served by 3/3 live nodes"), "{out}{err}");
        millis.push(deploy_millis(&out));
    }
    millis.sort_unstable();
    println!(
        "deploy to 3 nodes over 20 deploys: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&millis, 0.5),
        percentile(&millis, 0.99),
        millis[millis.len() - 1]
    );
    for node in &nodes {
        assert_eq!(node.get("/x").text(), "rev=20", "{}", node.output());
    }

    // Valid here, but no node can load it (its origin does not resolve): every node refuses, says why,
    // and keeps serving revision 20.
    let bad =
        deployment(origin.port(), "21", "CachingDisabled").replace("domain_name: 127.0.0.1", "domain_name: nx.invalid");
    let (code, out, err) = deploy(&nats, &dir, &bad, &["--config-only", "--wait", "20"]);
    assert_eq!(code, 1, "{out}{err}");
    for id in ["edge-1", "edge-2", "edge-3"] {
        assert!(err.contains(&format!("node {id} refused revision")), "{err}");
    }
    assert!(err.contains("nx.invalid"), "the reason is given: {err}");
    for node in &nodes {
        assert_eq!(node.get("/x").text(), "rev=20");
    }
    let status = live_nodes(&nats);
    assert!(status.contains("refused") && status.contains("nx.invalid"), "{status}");

    // A file that does not validate is never published.
    let (code, _, err) = deploy(&nats, &dir, "origins: [", &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("nothing was published"), "{err}");
}

#[test]
fn an_invalidation_reaches_every_node_and_a_node_that_was_down_applies_it_when_it_returns() {
    let nats = Nats::start();
    let origin = rev_origin();
    let mut nodes: Vec<Option<Verge>> = ["a", "b", "c"]
        .iter()
        .map(|id| Some(Verge::start_node(TempDir::new(), &node_yaml(origin.port()), &nats.url(), id)))
        .collect();
    wait_live(&nats, 3);
    for node in nodes.iter().flatten() {
        node.get("/x");
        assert_eq!(node.get("/x").x_cache(), "Hit from verge");
    }
    assert_eq!(origin.count(), 3);

    // Node c dies: the invalidation completes once c's status has expired and a and b acked.
    let c_dir = nodes[2].take().unwrap().kill();
    let (code, out, err) = run_verge(&["invalidate", "--nats", &nats.url(), "/x"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Completed in"), "{out}");
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    for node in nodes.iter().flatten() {
        assert_eq!(node.get("/x").x_cache(), "Miss from verge", "{}", node.output());
    }
    let listed = run_verge(&["invalidations", "list", "--nats", &nats.url()]).1;
    assert!(listed.contains(&id) && listed.contains("Completed"), "{listed}");

    // c comes back as the same node: its durable consumer hands it what it missed.
    let c = Verge::start_node(c_dir, &node_yaml(origin.port()), &nats.url(), "c");
    assert!(c.wait_for_output(&format!("invalidation applied id={id}")), "{}", c.output());

    // A fleet node's admin API publishes to the fleet: every node applies it.
    let a = nodes[0].as_ref().unwrap();
    let answer = http_request(a.admin.unwrap(), "POST", "/invalidations", &[], b"/y\n");
    assert_eq!(answer.status, 202, "{}", answer.text());
    let text = answer.text();
    let id = text.split("\"id\":\"").nth(1).and_then(|t| t.split('"').next()).expect("an id").to_string();
    for node in [a, nodes[1].as_ref().unwrap(), &c] {
        assert!(node.wait_for_output(&format!("invalidation applied id={id}")), "{}", node.output());
    }
}

#[test]
fn with_nats_down_nodes_keep_serving_reload_and_restart_from_disk_then_catch_up() {
    let mut nats = Nats::start();
    let origin = rev_origin();
    let node_a = Verge::start_node(TempDir::new(), &node_yaml(origin.port()), &nats.url(), "a");
    let node_b = Verge::start_node(TempDir::new(), &node_yaml(origin.port()), &nats.url(), "b");
    wait_live(&nats, 2);
    let dir = TempDir::new();
    let (code, out, err) = deploy(&nats, &dir, &deployment(origin.port(), "one", "CachingDisabled"), &[]);
    assert_eq!(code, 0, "{out}{err}");

    nats.stop();
    assert_eq!(node_a.get("/x").text(), "rev=one");
    let reloaded = http_request(node_b.admin.unwrap(), "POST", "/reload", &[], b"");
    assert_eq!(reloaded.status, 200, "a local reload works without NATS: {}", reloaded.text());
    assert_eq!(node_b.get("/x").text(), "rev=one", "the reload re-read the deployment, not the node's file");
    // A node that restarts while NATS is down starts from its last deployment on disk.
    let a_dir = node_a.kill();
    let node_a = Verge::start_node(a_dir, &node_yaml(origin.port()), &nats.url(), "a");
    assert_eq!(node_a.get("/x").text(), "rev=one", "{}", node_a.output());

    nats.restart();
    wait_live(&nats, 2);
    let (code, out, err) = deploy(&nats, &dir, &deployment(origin.port(), "two", "CachingDisabled"), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(node_a.get("/x").text(), "rev=two");
    assert_eq!(node_b.get("/x").text(), "rev=two");
}

/// A deployment whose origin is shielded; objects cached for 10 minutes.
fn shielded(origin: u16) -> String {
    format!(
        "origins:\n  - {{id: app, domain_name: 127.0.0.1, http_port: {origin}, origin_shield: {{enabled: true, origin_shield_region: us-east-1}}}}\n\
default_cache_behavior: {{target_origin_id: app, cache_policy: CachingOptimized}}\n"
    )
}

#[test]
fn the_shield_tier_fetches_each_object_once_for_the_fleet_and_a_dead_shield_fails_no_request() {
    let nats = Nats::start();
    let origin = Origin::start(|req| {
        OriginResponse::new(200, format!("object {}", req.path())).header("cache-control", "max-age=600")
    });
    let yaml = node_yaml(origin.port());
    let shields: Vec<Verge> = ["shield-1", "shield-2"]
        .iter()
        .map(|id| Verge::start_node_as(TempDir::new(), &yaml, &nats.url(), id, "shield"))
        .collect();
    let edges: Vec<Verge> = ["edge-1", "edge-2", "edge-3"]
        .iter()
        .map(|id| Verge::start_node(TempDir::new(), &yaml, &nats.url(), id))
        .collect();
    wait_live(&nats, 5);
    let dir = TempDir::new();
    let (code, out, err) = deploy(&nats, &dir, &shielded(origin.port()), &[]);
    assert_eq!(code, 0, "{out}{err}");
    for edge in &edges {
        assert!(edge.wait_for_output("shields=2"), "{}", edge.output());
    }

    // 100 concurrent requests for one cold object over three edges: one origin fetch for the fleet.
    std::thread::scope(|scope| {
        for i in 0..100 {
            let edge = &edges[i % 3];
            scope.spawn(move || {
                let response = edge.get("/cold");
                assert_eq!((response.status, response.text()), (200, "object /cold".to_string()));
            });
        }
    });
    assert_eq!(origin.count(), 1, "the origin saw one request for the whole fleet");

    // Fetched through edge-1, then missed at edge-2: the shield had it.
    edges[0].get("/warm");
    assert_eq!(edges[1].get("/warm").x_cache(), "Miss from verge");
    assert!(edges[1].wait_for_output("detailed_result=\"OriginShieldHit\""), "{}", edges[1].output());
    assert_eq!(origin.count(), 2);

    // A shield dies: no request fails (its keys go to the origin until the ring drops it, then to the
    // other shield), and once the ring has one shield, each new object is fetched once.
    let mut shields = shields.into_iter();
    let _dead = shields.next().unwrap().kill();
    for i in 0..30 {
        let response = edges[i % 3].get(&format!("/after-{i}"));
        assert_eq!(response.status, 200, "{}", edges[i % 3].output());
    }
    for edge in &edges {
        assert!(edge.wait_for_output("shields=1"), "{}", edge.output());
    }
    let before = origin.count();
    for i in 0..30 {
        assert_eq!(edges[i % 3].get(&format!("/settled-{}", i / 3)).status, 200);
    }
    assert_eq!(origin.count(), before + 10, "ten objects, each fetched once through the one shield");
}

/// A fast-ABI viewer-response hook that sets `x-version: <version>`.
fn versioned_hook(version: char) -> String {
    format!(
        r#"(module
      (import "verge" "header_set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-version{version}")
      (func (export "verge_fast_handle") (param $event i32) (result i32)
        (drop (call $set (i32.const 1) (i32.const 0) (i32.const 9) (i32.const 9) (i32.const 1)))
        (i32.const 0)))"#
    )
}

#[test]
fn a_deploy_carries_its_function_versions_to_every_node_checked_by_sha256() {
    let nats = Nats::start();
    let origin = rev_origin();
    let nodes: Vec<Verge> = ["f-1", "f-2"]
        .iter()
        .map(|id| Verge::start_node(TempDir::new(), &node_yaml(origin.port()), &nats.url(), id))
        .collect();
    wait_live(&nats, 2);
    // The deployer's store has two versions; the nodes have none.
    let dir = TempDir::new();
    let one = versioned_hook('1');
    let two = versioned_hook('2');
    publish(&dir, &[("stamp", Module::Wat(&one)), ("stamp", Module::Wat(&two))]);
    for version in [1, 2] {
        let yaml = format!(
            "functions: {{store: ./functions}}\n{}  lambda_function_associations:\n    - {{event_type: viewer-response, lambda_function_arn: '{}'}}\n",
            deployment(origin.port(), "f", "CachingDisabled").replace("default_cache_behavior: {target_origin_id: app, cache_policy: CachingDisabled}\n", "default_cache_behavior:\n  target_origin_id: app\n  cache_policy: CachingDisabled\n"),
            arn("stamp", version)
        );
        let (code, out, err) = deploy(&nats, &dir, &yaml, &[]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("(1 function versions)"), "{out}");
        for node in &nodes {
            let response = node.get("/x");
            assert_eq!(response.header("x-version"), Some(&*version.to_string()), "{}", node.output());
        }
    }
}
