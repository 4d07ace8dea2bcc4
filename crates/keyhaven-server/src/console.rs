//! The web console: hand-written HTML, CSS and ES modules (`console/` beside `src/`),
//! embedded in the binary, so `keyhaven server` serves it with no Node.js and no second
//! server. It is a client of the public `/v1` API only; this module just serves files.
//!
//! - `/` redirects to `/console`; every path under `/console` that is not an asset answers
//!   `index.html`, whose script routes on the client (`/console/project/P/services/S`).
//! - Assets are served as `/console/assets/NAME.HASH.EXT`, HASH the first 12 hex digits of
//!   the SHA-256 of what is served, with `Cache-Control: public, max-age=31536000,
//!   immutable`: a new build changes the name, so a browser never runs a stale script with
//!   a fresh page. `index.html` itself is `no-cache`.
//! - References between files are rewritten once, at first use ([`LazyLock`]): in
//!   `index.html` (`/console/assets/app.js`) and in the modules' imports (`'./api.js'`).
//!   [`ASSETS`] lists the files leaves first, so a file's hash covers the hashed names it
//!   refers to.
//! - Every response carries a strict Content-Security-Policy ([`CSP`]): scripts and styles
//!   only from these files, never inline, and no connection but to this origin. The console
//!   holds an API token; with no inline script and no third-party origin, an injected string
//!   cannot run or send it anywhere.

use crate::error::HttpError;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The policy of every console response. No `'unsafe-inline'` anywhere: the page has no
/// inline script, style or style attribute.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The console's files, leaves first: a file may refer only to files listed before it.
const ASSETS: &[(&str, &[u8])] = &[
    ("style.css", include_bytes!("../console/style.css")),
    ("icon.svg", include_bytes!("../console/icon.svg")),
    ("api.js", include_bytes!("../console/api.js")),
    ("dom.js", include_bytes!("../console/dom.js")),
    ("format.js", include_bytes!("../console/format.js")),
    ("dialogs.js", include_bytes!("../console/dialogs.js")),
    ("signin.js", include_bytes!("../console/signin.js")),
    ("services.js", include_bytes!("../console/services.js")),
    ("overview.js", include_bytes!("../console/overview.js")),
    ("app.js", include_bytes!("../console/app.js")),
];

const INDEX: &str = include_str!("../console/index.html");

/// One embedded file as served.
pub struct Asset {
    /// The name in the source tree (`app.js`).
    pub name: &'static str,
    /// The name it is served under (`app.1a2b3c4d5e6f.js`).
    pub hashed: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

pub struct Console {
    pub assets: Vec<Asset>,
    /// `index.html` with its references rewritten to hashed names.
    pub index: String,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn hashed_name(name: &str, body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hex}.{ext}"),
        None => format!("{name}.{hex}"),
    }
}

/// Rewrites references to already hashed assets: module imports (`'./api.js'`) and
/// absolute asset paths (`/console/assets/app.js`).
fn rewrite(text: &str, done: &[Asset]) -> String {
    let mut out = text.to_string();
    for a in done {
        for quote in ['\'', '"'] {
            out = out.replace(
                &format!("{quote}./{}{quote}", a.name),
                &format!("{quote}./{}{quote}", a.hashed),
            );
            out = out.replace(
                &format!("{quote}/console/assets/{}{quote}", a.name),
                &format!("{quote}/console/assets/{}{quote}", a.hashed),
            );
        }
    }
    out
}

fn build() -> Console {
    let mut assets: Vec<Asset> = Vec::new();
    for (name, raw) in ASSETS {
        let body = match std::str::from_utf8(raw) {
            Ok(text) => rewrite(text, &assets).into_bytes(),
            Err(_) => raw.to_vec(),
        };
        assets.push(Asset {
            name,
            hashed: hashed_name(name, &body),
            content_type: content_type(name),
            body,
        });
    }
    let index = rewrite(INDEX, &assets);
    Console { assets, index }
}

/// The console, built once per process.
pub static CONSOLE: LazyLock<Console> = LazyLock::new(build);

/// The console's routes; stateless, so they merge into the API's router of any state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console") }))
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/assets/{file}", get(asset))
        .route("/console/{*path}", get(index))
}

fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn index() -> Response {
    secure(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            CONSOLE.index.clone(),
        )
            .into_response(),
    )
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match CONSOLE.assets.iter().find(|a| a.hashed == file) {
        Some(a) => secure(
            (
                [
                    (header::CONTENT_TYPE, a.content_type),
                    (header::CACHE_CONTROL, IMMUTABLE),
                ],
                a.body.clone(),
            )
                .into_response(),
        ),
        // An unknown or outdated name: never the app (a script tag would get HTML).
        None => secure(
            HttpError::new(StatusCode::NOT_FOUND, "not_found", "No such console asset")
                .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    /// Every file the page or a module refers to is embedded: a reference to a file that
    /// is not in [`ASSETS`] (or listed after its user) would stay unhashed and 404.
    #[test]
    fn every_referenced_asset_is_embedded() {
        let refs = |text: &str, pattern: &str| -> Vec<String> {
            text.match_indices(pattern)
                .map(|(i, _)| {
                    text[i + pattern.len()..]
                        .chars()
                        .take_while(|c| !matches!(c, '"' | '\'' | '`'))
                        .collect()
                })
                .collect()
        };
        let c = &*CONSOLE;
        let served: Vec<&str> = c.assets.iter().map(|a| a.hashed.as_str()).collect();
        let index_refs = refs(&c.index, "/console/assets/");
        assert!(index_refs.len() >= 3, "index.html refers to {index_refs:?}");
        for r in &index_refs {
            assert!(
                served.contains(&r.as_str()),
                "index.html refers to {r}, not embedded"
            );
        }
        for a in &c.assets {
            let text = String::from_utf8_lossy(&a.body);
            for pattern in ["from './", "import('./", "/console/assets/"] {
                for r in refs(&text, pattern) {
                    let r = r.trim_start_matches("./");
                    assert!(
                        served.contains(&r),
                        "{} refers to {r}, which is not an embedded asset (or is listed after it)",
                        a.name
                    );
                }
            }
        }
        // The source's own references name files that exist.
        for r in refs(INDEX, "/console/assets/") {
            assert!(
                ASSETS.iter().any(|(n, _)| *n == r),
                "index.html refers to {r}"
            );
        }
    }

    #[test]
    fn page_and_modules_have_no_inline_script_or_style() {
        let c = &*CONSOLE;
        assert!(!c.index.contains("<style"), "inline <style>");
        assert!(!c.index.contains(" style="), "inline style attribute");
        let handler = c.index.match_indices(" on").any(|(i, _)| {
            let name: String = c.index[i + 3..]
                .chars()
                .take_while(|ch| ch.is_ascii_lowercase())
                .collect();
            !name.is_empty() && c.index[i + 3 + name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler (on...=)");
        for tag in c.index.match_indices("<script") {
            let rest = &c.index[tag.0..];
            let end = rest.find('>').unwrap();
            assert!(rest[..end].contains("src="), "inline <script>");
        }
        for a in &c.assets {
            let text = String::from_utf8_lossy(&a.body);
            assert!(!text.contains("innerHTML"), "{} sets innerHTML", a.name);
            assert!(
                !text.contains("setAttribute('style'"),
                "{} sets a style attribute",
                a.name
            );
        }
    }

    #[tokio::test]
    async fn root_redirects_and_console_paths_serve_the_app() {
        let (status, headers, _) = get("/").await;
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(headers[header::LOCATION], "/console");
        for path in [
            "/console",
            "/console/",
            "/console/project/default/services/x",
        ] {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
            assert!(body.contains("<title>Keyhaven"), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn assets_are_immutable_under_their_hash() {
        for a in &CONSOLE.assets {
            let (status, headers, body) = get(&format!("/console/assets/{}", a.hashed)).await;
            assert_eq!(status, StatusCode::OK, "{}", a.hashed);
            assert_eq!(headers[header::CACHE_CONTROL], IMMUTABLE);
            assert_eq!(headers[header::CONTENT_TYPE], a.content_type);
            assert_eq!(body.as_bytes(), a.body.as_slice());
            let hex = a.hashed.split('.').nth(1).unwrap();
            assert_eq!(hex.len(), 12);
            assert_eq!(hashed_name(a.name, &a.body), a.hashed);
        }
        // The unhashed name is not served (nor answered with the app).
        let (status, _, _) = get("/console/assets/app.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
