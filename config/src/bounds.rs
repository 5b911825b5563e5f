//! Bounds on what a distribution file may be and expand to, checked on the YAML events before serde
//! builds anything: a file over `MAX_FILE_BYTES`, nesting deeper than `MAX_DEPTH`, or aliases that would
//! expand past `MAX_EXPANDED_BYTES` of scalars (a "billion laughs" file: 1 MB of anchors and aliases can
//! stand for 20 GB) is refused with its position, so a bad reload cannot exhaust the serving process.
//! The check stops at the first bound crossed: its cost is bounded too.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// A distribution file is a few KB; this leaves room for generated ones.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// Deeper than any distribution needs (a behavior's policy is five levels down).
pub const MAX_DEPTH: usize = 64;
/// Scalar bytes after every alias is expanded.
pub const MAX_EXPANDED_BYTES: usize = 16 << 20;

/// A bound crossed: where (1-based line and column) and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossed {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// Checks `text` against the bounds. YAML syntax errors are left to the parser that follows.
pub fn check(text: &str) -> Result<(), Crossed> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Crossed {
            line: 1,
            column: 1,
            reason: format!("the file is {} bytes, over the {MAX_FILE_BYTES}-byte limit", text.len()),
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut expanded = 0usize;
    // Anchor id -> expanded size of the anchored node; open anchored collections with the size at start.
    let mut anchors: HashMap<usize, usize> = HashMap::new();
    let mut open: Vec<(usize, usize, usize)> = Vec::new(); // (anchor, depth, expanded at start)
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            // The scanner's own nesting bound (flow collections): the same refusal, with its position.
            Err(e) if e.info().contains("recursion limit") => {
                let m = e.marker();
                let reason = format!("nested more than {MAX_DEPTH} levels deep");
                return Err(Crossed { line: m.line(), column: m.col() + 1, reason });
            }
            // Syntax errors are the parser's to report, with its wording.
            Err(_) => return Ok(()),
        };
        let at = |reason: String| Crossed { line: mark.line(), column: mark.col() + 1, reason };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(at(format!("nested more than {MAX_DEPTH} levels deep")));
                }
                if anchor > 0 {
                    open.push((anchor, depth, expanded));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(&(anchor, d, start)) = open.last() {
                    if d == depth {
                        anchors.insert(anchor, expanded - start);
                        open.pop();
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Scalar(value, _, anchor, _) => {
                expanded += value.len() + 1;
                if anchor > 0 {
                    anchors.insert(anchor, value.len() + 1);
                }
            }
            Event::Alias(anchor) => {
                expanded += anchors.get(&anchor).copied().unwrap_or(1);
            }
            _ => {}
        }
        if expanded > MAX_EXPANDED_BYTES {
            let at = Crossed { line: mark.line(), column: mark.col() + 1, reason: String::new() };
            return Err(Crossed {
                reason: format!("aliases expand the file past {MAX_EXPANDED_BYTES} bytes of values"),
                ..at
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_bomb_is_refused_without_expanding_it() {
        let mut text = format!("env:\n  k0: &a \"{}\"\n", "x".repeat(1 << 20));
        for i in 1..20_000 {
            text.push_str(&format!("  k{i}: *a\n"));
        }
        let started = std::time::Instant::now();
        let crossed = check(&text).unwrap_err();
        assert!(crossed.reason.contains("aliases expand the file past"), "{crossed:?}");
        assert!(crossed.line < 40, "stopped at the first bound crossed: {crossed:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deep_nesting_and_huge_files_are_refused() {
        let deep = "[".repeat(100_000);
        assert!(check(&deep).unwrap_err().reason.contains("nested more than 64"));
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        assert!(check(&big).unwrap_err().reason.contains("over the"));
    }

    #[test]
    fn ordinary_files_and_modest_aliases_pass() {
        assert_eq!(check("a: &x {b: 1}\nc: *x\nd: [*x, *x]\n"), Ok(()));
        assert_eq!(check(include_str!("../tests/ui/full.yaml")), Ok(()));
    }
}
