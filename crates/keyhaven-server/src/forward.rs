//! Requests that must run where a node runs. Any instance answers any request, but a
//! promotion (it stages the replica's role on its host) and a credentials reset (it sets
//! the password on the running node) need the runtime of the node's cloud: an instance
//! that does not own the node passes the request on to the instance that does, with the
//! caller's own token, and gives back its answer unchanged. A request that arrives
//! forwarded is never passed on again: if this instance does not run the node either (the
//! registration moved, or a client sent the header itself), it is refused with 503 and
//! nothing is done here, so a node is never staged or changed by an instance that does not
//! run it.

use crate::error::HttpError;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use std::time::Duration;

/// Marks a request one instance passed on to another.
pub const FORWARDED: &str = "x-keyhaven-forwarded";
/// Longer than every bound of a promotion together (snapshot, catch-up, AOF, node
/// timeouts): the owner answers before this, whatever happens.
const TIMEOUT: Duration = Duration::from_secs(300);

fn was_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// Sends `method uri` to the instance at `api_url` with the caller's Authorization header
/// and returns its answer.
pub async fn to(
    api_url: &str,
    cloud: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let unavailable = |why: String| {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cloud_unavailable",
            format!(
                "The Keyhaven instance of cloud '{cloud}' ({api_url}), which runs this node, did not answer ({why}); nothing was changed here"
            ),
        )
    };
    if was_forwarded(headers) {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cloud_unavailable",
            format!(
                "This Keyhaven instance does not run this node: the instance of cloud '{cloud}' ({api_url}) does; nothing was changed"
            ),
        ));
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unavailable(e.to_string()))?;
    let mut request = client
        .request(method, format!("{}{path}", api_url.trim_end_matches('/')))
        .header(FORWARDED, "1");
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    // Only a request that never reached the owner surely changed nothing; one that was
    // sent and then lost its answer may have been carried out.
    let answer = request.send().await.map_err(|e| {
        if e.is_connect() {
            unavailable(e.to_string())
        } else {
            HttpError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "cloud_outcome_unknown",
                format!(
                    "The Keyhaven instance of cloud '{cloud}' ({api_url}) got the request but its answer was lost ({e}); it may have been carried out: look at the service before retrying"
                ),
            )
        }
    })?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = answer
        .bytes()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut response = Response::builder().status(status.as_u16());
    if let Some(ct) = content_type {
        response = response.header(header::CONTENT_TYPE, ct);
    }
    response
        .body(Body::from(body))
        .map_err(|e| unavailable(e.to_string()))
}
