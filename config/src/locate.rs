//! Maps key paths (`origins[1].http_port`) to the line and column where they stand in the YAML text.
//!
//! serde_yaml gives positions only for its own errors; semantic errors found by `validate` carry a key
//! path, and this index turns that path back into a position. It walks yaml-rust2's marked events once.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Every key path of a document with the position of its key (or, for sequence items, of the item).
#[derive(Debug, Default)]
pub struct LocationIndex {
    positions: HashMap<String, Position>,
}

impl LocationIndex {
    /// Builds the index; a document that does not parse yields an empty index (serde_yaml reports it).
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Self::default();
        }
        Self { positions: walker.positions }
    }

    /// The position of `path`, or of its nearest ancestor that exists in the file
    /// (a missing key is reported where its parent stands).
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut candidate = path;
        loop {
            if let Some(pos) = self.positions.get(candidate) {
                return Some(*pos);
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }
}

enum Frame {
    /// Inside a mapping: `expecting_key` alternates; `key` is the last key read.
    Mapping {
        path: String,
        expecting_key: bool,
        key: Option<String>,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: HashMap<String, Position>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn position(mark: Marker) -> Position {
    // yaml-rust2 lines are 1-based and columns 0-based.
    Position { line: mark.line(), column: mark.col() + 1 }
}

impl Walker {
    /// Called for every node that is a value (scalar, mapping or sequence start): returns its path.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, expecting_key, key }) => {
                if *expecting_key {
                    return None;
                }
                *expecting_key = true;
                key.take().map(|k| join(path, &k))
            }
            Some(Frame::Sequence { path, next_index }) => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                Some(item)
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Mapping { path, expecting_key, key }) = self.stack.last_mut() {
                    if *expecting_key {
                        let full = join(path, &text);
                        // a mapping is located at its first key (its start mark points past it)
                        self.positions.entry(path.clone()).or_insert(position(mark));
                        self.positions.entry(full).or_insert(position(mark));
                        *key = Some(text);
                        *expecting_key = false;
                        return;
                    }
                }
                if let Some(path) = self.value_path() {
                    self.positions.entry(path).or_insert(position(mark));
                }
            }
            Event::Alias(_) => {
                self.value_path();
            }
            Event::MappingStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.stack.push(Frame::Mapping { path, expecting_key: true, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.stack.push(Frame::Sequence { path, next_index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        let text = "listen: [a]\norigins:\n  - id: app\n    http_port: 99\n  - id: b\n";
        let index = LocationIndex::build(text);
        assert_eq!(index.find("origins[0].http_port"), Some(Position { line: 4, column: 5 }));
        assert_eq!(index.find("origins[1].id"), Some(Position { line: 5, column: 5 }));
        // a key that is absent is reported at its parent
        assert_eq!(index.find("origins[1].domain_name"), Some(Position { line: 5, column: 5 }));
        assert_eq!(index.find("listen"), Some(Position { line: 1, column: 1 }));
    }
}
