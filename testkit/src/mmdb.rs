//! A small writer of MaxMind DB files (format 2.0, the format of GeoIP2 / GeoLite2 databases), so tests
//! can build the location database they need: networks mapped to records of maps, strings, unsigned
//! integers and doubles. An IPv6 tree with 32-bit records; IPv4 networks live at `::a.b.c.d/96+n` as in
//! MaxMind's own databases. No pointers or deduplication: test databases are tiny.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A value in a record.
#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    U32(u32),
    U16(u16),
    U64(u64),
    Double(f64),
    Map(BTreeMap<String, Value>),
    Array(Vec<Value>),
}

impl Value {
    /// A map from `(key, value)` pairs.
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn str(s: &str) -> Value {
        Value::Str(s.to_string())
    }

    /// `{"en": name}`, as the `names` of GeoIP2 records.
    pub fn names(english: &str) -> Value {
        Value::map([("en", Value::str(english))])
    }
}

/// A GeoIP2-City-shaped record.
#[allow(clippy::too_many_arguments)]
pub fn city_record(
    country: &str,
    country_name: &str,
    region: &str,
    region_name: &str,
    city: &str,
    postal: &str,
    time_zone: &str,
    (latitude, longitude): (f64, f64),
) -> Value {
    Value::map([
        ("city", Value::map([("names", Value::names(city))])),
        ("country", Value::map([("iso_code", Value::str(country)), ("names", Value::names(country_name))])),
        (
            "location",
            Value::map([
                ("latitude", Value::Double(latitude)),
                ("longitude", Value::Double(longitude)),
                ("time_zone", Value::str(time_zone)),
                ("metro_code", Value::U16(807)),
            ]),
        ),
        ("postal", Value::map([("code", Value::str(postal))])),
        (
            "subdivisions",
            Value::Array(vec![Value::map([("iso_code", Value::str(region)), ("names", Value::names(region_name))])]),
        ),
    ])
}

/// A GeoLite2-ASN-shaped record.
pub fn asn_record(number: u32, organization: &str) -> Value {
    Value::map([
        ("autonomous_system_number", Value::U32(number)),
        ("autonomous_system_organization", Value::str(organization)),
    ])
}

#[derive(Default)]
struct Node {
    children: [Option<Box<Node>>; 2],
    data: Option<usize>,
}

/// Builds a database: `insert` networks, then `to_bytes`.
pub struct Writer {
    database_type: String,
    root: Node,
    records: Vec<Value>,
}

impl Writer {
    pub fn new(database_type: &str) -> Self {
        Self { database_type: database_type.to_string(), root: Node::default(), records: Vec::new() }
    }

    /// Maps `network/prefix` (IPv4 or IPv6) to `record`.
    pub fn insert(&mut self, network: IpAddr, prefix: u8, record: Value) -> &mut Self {
        let (bits, prefix) = match network {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), prefix + 96),
            IpAddr::V6(v6) => (u128::from(v6), prefix),
        };
        let index = self.records.len();
        self.records.push(record);
        let mut node = &mut self.root;
        for depth in 0..prefix {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            node = node.children[bit].get_or_insert_with(Box::default);
        }
        node.data = Some(index);
        node.children = [None, None];
        self
    }

    /// The database file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Number the inner nodes breadth-first; a leaf (data) is a record pointing into the data section.
        let mut data = Vec::new();
        let mut offsets = Vec::with_capacity(self.records.len());
        for record in &self.records {
            offsets.push(data.len());
            encode(record, &mut data);
        }
        let mut order: Vec<&Node> = vec![&self.root];
        let mut i = 0;
        while i < order.len() {
            let node = order[i];
            for child in node.children.iter().flatten() {
                if child.data.is_none() {
                    order.push(child);
                }
            }
            i += 1;
        }
        let node_count = order.len() as u32;
        let mut index_of = std::collections::HashMap::new();
        for (i, node) in order.iter().enumerate() {
            index_of.insert(*node as *const Node, i as u32);
        }
        let mut tree = Vec::with_capacity(order.len() * 8);
        for node in &order {
            for child in &node.children {
                let record = match child {
                    None => node_count,
                    Some(c) => match c.data {
                        Some(d) => node_count + 16 + offsets[d] as u32,
                        None => index_of[&(&**c as *const Node)],
                    },
                };
                tree.extend_from_slice(&record.to_be_bytes());
            }
        }
        let mut out = tree;
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = Value::map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_700_000_000)),
            ("database_type", Value::str(&self.database_type)),
            ("description", Value::map([("en", Value::str("verge test database"))])),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(node_count)),
            ("record_size", Value::U16(32)),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

/// Control byte(s): the type (extended types after the control byte) and the size.
fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    let (low, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push((kind << 5) | low);
    } else {
        out.push(low);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(s) => {
            control(2, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(d) => {
            control(3, 8, out);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::U16(n) => {
            control(5, 2, out);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::U32(n) => {
            control(6, 4, out);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::U64(n) => {
            control(9, 8, out);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Map(map) => {
            control(7, map.len(), out);
            for (k, v) in map {
                encode(&Value::Str(k.clone()), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            control(11, items.len(), out);
            for v in items {
                encode(v, out);
            }
        }
    }
}
