//! The web page at `/` and the interactive API docs at `/docs` (docs/service.md#web-page):
//! plain HTML, CSS and JavaScript compiled into the binary, so both work with no network and
//! no build step; and `GET /users/random`, the user the page's "random user" button shows.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, AppState};

/// Every file the pages load: path, content type, contents.
const ASSETS: [(&str, &str, &str); 6] = [
    ("/", "text/html; charset=utf-8", include_str!("../web/index.html")),
    ("/docs", "text/html; charset=utf-8", include_str!("../web/docs.html")),
    ("/web/style.css", "text/css; charset=utf-8", include_str!("../web/style.css")),
    ("/web/common.js", "text/javascript; charset=utf-8", include_str!("../web/common.js")),
    ("/web/page.js", "text/javascript; charset=utf-8", include_str!("../web/page.js")),
    ("/web/docs.js", "text/javascript; charset=utf-8", include_str!("../web/docs.js")),
];

/// Only this server's own files and API: a page that tried to load anything from elsewhere
/// (a CDN, say) would fail here as it would on a machine with no network.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The pages' routes (`GET /users/random` is with the API, in `http::api_routes`).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The files change with the binary: a browser asks again rather than keeping an
            // older version across an upgrade.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The answer of `GET /users/random`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RandomUser {
    user_id: i64,
    /// Whether the run has an offline list for them.
    offline: bool,
}

#[utoipa::path(get, path = "/users/random", operation_id = "getRandomUser", tag = "recommendations",
    description = "A random user of the served run, one with an offline list when the run has any (the web page's \"random user\")",
    responses(
        (status = 200, description = "A user", body = RandomUser),
        (status = 400, description = "A query parameter was given", body = crate::http::ErrorBody),
        (status = 404, description = "The served run has no users", body = crate::http::ErrorBody),
    ))]
pub(crate) async fn random_user(State(s): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "GET /users/random takes no parameters"));
    }
    let loaded = s.loaded.load_full();
    let model = &loaded.model;
    let has_list = |user: usize| !model.offline.get(user as u32).is_empty();
    let user = pick_user(model.users.len(), has_list, RandomState::new().hash_one(0u8))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "the served run has no users"))?;
    let answer = RandomUser { user_id: model.users.decode(user as u32), offline: has_list(user) };
    Ok(axum::Json(answer).into_response())
}

/// A user index from `random`: the first user at or after `random % users` (wrapping) that
/// has an offline list, so the page shows a blend with every part; any user when none has
/// one; `None` when there are no users.
fn pick_user(users: usize, has_list: impl Fn(usize) -> bool, random: u64) -> Option<usize> {
    if users == 0 {
        return None;
    }
    let start = (random % users as u64) as usize;
    (0..users).map(|i| (start + i) % users).find(|&u| has_list(u)).or(Some(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_user_has_an_offline_list_when_any_user_has_one() {
        let with_list = [false, false, true, false, true];
        for random in 0..20 {
            let user = pick_user(with_list.len(), |u| with_list[u], random).unwrap();
            assert!(with_list[user], "random {random} picked user {user}");
        }
        // From 0, 1 and 2 the next user with a list is 2; from 3 and 4, user 4.
        let picks: Vec<usize> = (0..5).map(|r| pick_user(5, |u| with_list[u], r).unwrap()).collect();
        assert_eq!(picks, [2, 2, 2, 4, 4]);
    }

    #[test]
    fn without_lists_any_user_and_without_users_none() {
        assert_eq!(pick_user(3, |_| false, 7), Some(1));
        assert_eq!(pick_user(0, |_| true, 7), None);
    }

    #[test]
    fn the_pages_load_nothing_from_elsewhere() {
        for (path, _, body) in ASSETS {
            assert!(!body.contains("://"), "{path} names an absolute URL: the pages must work offline");
            assert!(!body.contains("<script>") && !body.contains("style="), "{path}: inline code breaks the CSP");
        }
    }

    #[test]
    fn every_file_a_page_references_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(path, _, _)| *path).collect();
        for (path, _, body) in ASSETS.iter().filter(|(_, t, _)| t.starts_with("text/html")) {
            for reference in body.split(['"', '\'']).filter(|s| s.starts_with("/web/")) {
                assert!(served.contains(&reference), "{path} loads {reference}, which is not served");
            }
        }
    }
}
