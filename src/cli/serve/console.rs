//! The operators' console: one page, its script and its style sheet, compiled
//! into the binary (no Node toolchain, nothing fetched at run time). The page
//! talks only to the API and the live feed, with the session cookie.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const COMMON: &str = include_str!("console/common.js");
const STYLE: &str = include_str!("console/console.css");
const PORTAL: &str = include_str!("console/portal.html");
const PORTAL_SCRIPT: &str = include_str!("console/portal.js");

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `GET /`
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /console.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /common.js`: what the console and the portal share.
pub async fn common() -> Response {
    asset("text/javascript; charset=utf-8", COMMON)
}

/// `GET /console.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /portal`: the client portal.
pub async fn portal() -> Response {
    asset("text/html; charset=utf-8", PORTAL)
}

/// `GET /portal.js`
pub async fn portal_script() -> Response {
    asset("text/javascript; charset=utf-8", PORTAL_SCRIPT)
}
