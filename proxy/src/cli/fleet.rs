//! The fleet's commands: `verge deploy`, `verge fleet status`, `verge invalidate --nats` and
//! `verge invalidations list` (the fleet itself: `fleet/`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::EXIT_CONFIG;
use crate::fleet::{self, invalidations, Buckets};

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(future)
}

async fn buckets(url: &str) -> Result<Buckets, String> {
    Buckets::open(fleet::connect(url, Duration::from_secs(5)).await?).await
}

/// Milliseconds since the epoch as `2026-11-27T18:33:45Z`.
fn timestamp(ms: u64) -> String {
    let c = crate::observe::access_log::Civil::of(std::time::UNIX_EPOCH + Duration::from_millis(ms));
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

pub fn deploy(url: &str, file: &Path, config_only: bool, wait: Duration) -> ExitCode {
    let config = match super::check_file(file, config_only) {
        Ok((config, summary)) => {
            println!("{}: ok ({summary})", file.display());
            config
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("verge: deployment refused: nothing was published");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match block_on(fleet::deploy::deploy(url, file, &config, wait)) {
        Err(e) => {
            eprintln!("verge: {e}");
            ExitCode::FAILURE
        }
        Ok(outcome) => {
            let total = outcome.served.len() + outcome.refused.len() + outcome.waiting.len();
            for (node, reason) in &outcome.refused {
                eprintln!("verge: node {node} refused revision {}: {reason}", outcome.revision);
            }
            if !outcome.waiting.is_empty() {
                eprintln!("verge: not serving revision {} yet: {}", outcome.revision, outcome.waiting.join(", "));
            }
            println!(
                "verge: revision {} served by {}/{} live nodes in {} ms{}",
                outcome.revision,
                outcome.served.len(),
                total,
                outcome.millis,
                if outcome.served.is_empty() { String::new() } else { format!(": {}", outcome.served.join(", ")) }
            );
            if outcome.refused.is_empty() && outcome.waiting.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

pub fn status(url: &str) -> ExitCode {
    let result = block_on(async {
        let buckets = buckets(url).await?;
        let nodes = buckets.live_nodes().await?;
        let now = fleet::now_ms();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:<16} {:>8}  {:<8} {:<28} refused",
            "NODE", "ROLE", "DISTRIBUTION", "REVISION", "SEEN", "LISTEN"
        );
        for n in &nodes {
            let latest = buckets.deployments.entry(&n.distribution).await.ok().flatten().map_or(0, |e| e.revision);
            let behind = if n.revision < latest { format!(" (latest {latest})") } else { String::new() };
            let refused =
                n.refused.as_ref().map_or("-".to_string(), |r| format!("revision {}: {}", r.revision, r.reason));
            let _ = writeln!(
                out,
                "{:<16} {:<6} {:<16} {:>8}  {:<8} {:<28} {refused}{behind}",
                n.node,
                n.role,
                n.distribution,
                n.revision,
                format!("{}s ago", now.saturating_sub(n.updated_ms) / 1000),
                n.listen.join(","),
            );
        }
        let _ = writeln!(out, "{} live nodes", nodes.len());
        print_all(&out);
        Ok::<(), String>(())
    });
    exit(result)
}

pub fn invalidate(url: &str, distribution: &str, paths: &[String], wait: Duration) -> ExitCode {
    let result = block_on(async {
        let buckets = buckets(url).await?;
        let started = Instant::now();
        let mut record = invalidations::publish(&buckets, distribution, paths).await?;
        println!("verge: invalidation {} InProgress ({} paths)", record.id, record.paths.len());
        while record.completed_ms.is_none() && started.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(10)).await;
            record = invalidations::refresh(&buckets, record).await?;
        }
        match record.completed_ms {
            Some(done) => {
                println!(
                    "verge: invalidation {} Completed in {} ms",
                    record.id,
                    done.saturating_sub(record.created_ms)
                );
                Ok(())
            }
            None => Err(format!("invalidation {} is still InProgress after {} s", record.id, wait.as_secs())),
        }
    });
    exit(result)
}

pub fn list_invalidations(url: &str) -> ExitCode {
    let result = block_on(async {
        let buckets = buckets(url).await?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<15} {:<11} {:<21} {:>8}  {:<12} paths",
            "ID", "STATUS", "CREATED", "MILLIS", "DISTRIBUTION"
        );
        for r in invalidations::list(&buckets).await? {
            let millis = r.completed_ms.map_or("-".to_string(), |c| c.saturating_sub(r.created_ms).to_string());
            let _ = writeln!(
                out,
                "{:<15} {:<11} {:<21} {:>8}  {:<12} {}",
                r.id,
                r.status(),
                timestamp(r.created_ms),
                millis,
                r.distribution,
                r.paths.join(" ")
            );
        }
        print_all(&out);
        Ok::<(), String>(())
    });
    exit(result)
}

/// Writes a listing to stdout; a reader that went away (`| head`, `| grep -q`) is not an error.
fn print_all(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verge: {e}");
            ExitCode::FAILURE
        }
    }
}
