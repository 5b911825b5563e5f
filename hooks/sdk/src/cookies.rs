//! Cookie helpers: read a request's cookies, build a `Set-Cookie` value.

use crate::Headers;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: `name=value; Path=/; Max-Age=..; Secure; HttpOnly`.
pub struct SetCookie {
    value: String,
}

impl SetCookie {
    pub fn new(name: &str, value: &str) -> Self {
        Self { value: format!("{name}={value}") }
    }
    pub fn path(mut self, path: &str) -> Self {
        self.value.push_str(&format!("; Path={path}"));
        self
    }
    pub fn max_age(mut self, seconds: u64) -> Self {
        self.value.push_str(&format!("; Max-Age={seconds}"));
        self
    }
    pub fn secure(mut self) -> Self {
        self.value.push_str("; Secure");
        self
    }
    pub fn http_only(mut self) -> Self {
        self.value.push_str("; HttpOnly");
        self
    }
    pub fn build(self) -> String {
        self.value
    }
}
