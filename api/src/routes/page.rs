//! The student page: `GET /` and its assets, compiled into the binary (no CDN, no external
//! fonts). Every response carries the security headers: a Content-Security-Policy that allows
//! only this origin's own files (no inline script or style), `frame-ancestors 'none'`,
//! `nosniff` and `no-referrer` (a signed download link must not leak to another site).

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::AppState;

/// One compiled-in file and where it is served.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file of the page.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/app.css"),
    },
    Asset {
        path: "/assets/icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/icon.svg"),
    },
    Asset {
        path: "/assets/i18n/en.json",
        content_type: "application/json",
        body: include_bytes!("../../web/i18n/en.json"),
    },
    Asset {
        path: "/assets/i18n/hi.json",
        content_type: "application/json",
        body: include_bytes!("../../web/i18n/hi.json"),
    },
];

/// The page's Content-Security-Policy: its own scripts, styles, pictures (the fitted files) and
/// API only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Strong validators, one per asset, computed once: the files only change with the binary.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..16]))
        .collect()
});

/// The page's routes, to be merged into the application router.
pub fn router() -> Router<AppState> {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (i, asset)| {
            router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { serve(i, &headers) }),
            )
        })
}

/// Adds the security headers every page response carries.
pub fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // For browsers that predate `frame-ancestors`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), ETAGS.get(index)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The file names carry no version, so browsers revalidate every time (`no-cache`) and get
    // 304 with no body while the binary is the same.
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    secure(h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_page_is_under_100_kb() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 100 * 1024, "{total} bytes");
    }

    #[test]
    fn both_languages_have_the_same_messages() {
        let keys = |path: &str| -> Vec<String> {
            let asset = ASSETS.iter().find(|a| a.path == path);
            let json: serde_json::Value =
                serde_json::from_slice(asset.map_or(&[][..], |a| a.body)).unwrap_or_default();
            let mut keys: Vec<String> = json
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        };
        let en = keys("/assets/i18n/en.json");
        assert!(en.len() > 20, "{en:?}");
        assert_eq!(en, keys("/assets/i18n/hi.json"));
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_names_its_language() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        assert!(html.contains("<html lang=\"en\""));
        assert!(!html.contains("<style"));
        assert!(!html.contains("style=\""));
        // No inline event handlers (`onclick="…"`).
        assert!(
            !html
                .split_whitespace()
                .any(|w| w.starts_with("on") && w.contains('='))
        );
        for script in html.split("<script").skip(1) {
            assert!(
                script.trim_start().starts_with("src="),
                "inline script: {script}"
            );
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
