//! Users, sign-in and tokens.

use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath, Auth};
use axum::Json;
use axum::extract::State;
use keyhaven_api::error::{ErrorBody, MessageBody};
use keyhaven_api::identity::{
    AccessToken, AccessTokenCreateRequest, AccessTokenCreateResponse, AccessTokenListResponse,
    MeResponse, User, UserAuthRequest, UserAuthResponse, UserCreateRequest, UserCreateResponse,
};
use keyhaven_control::App;
use keyhaven_core::time::iso8601;
use keyhaven_store::UserRow;
use std::sync::Arc;

fn user_view(row: &UserRow, projects: Vec<String>) -> User {
    User {
        user: row.email.clone(),
        real_name: row.real_name.clone(),
        state: "active".into(),
        token_validity_begin: iso8601(row.create_time),
        projects,
        auth: vec![
            if row.password_hash.is_some() {
                "password"
            } else {
                "token"
            }
            .into(),
        ],
        create_time: iso8601(row.create_time),
    }
}

/// Creates a user (admin only; sign-up is closed). Emails compare case-insensitively and
/// are stored in lower case: an email taken in any case answers 409 `user_exists`.
#[utoipa::path(post, path = "/v1/user", tag = "identity", request_body = UserCreateRequest,
    responses((status = 200, body = UserCreateResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn user_create(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<UserCreateRequest>,
) -> Result<Json<UserCreateResponse>, HttpError> {
    let real_name = req.real_name.clone().unwrap_or_default();
    let (user, token) = app
        .user_create(&caller, &req.email, &real_name, &req.password)
        .await?;
    Ok(Json(UserCreateResponse {
        user_email: user.email.clone(),
        user: user_view(&user, Vec::new()),
        token: token.token,
        state: "active".into(),
    }))
}

/// Signs in with email (in any case) and password; answers a new token (no token needed).
/// An unknown email and a wrong password get the same 403, after the same time.
#[utoipa::path(post, path = "/v1/userauth", tag = "identity", security(()), request_body = UserAuthRequest,
    responses((status = 200, body = UserAuthResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn user_auth(
    State(app): State<Arc<App>>,
    ApiJson(req): ApiJson<UserAuthRequest>,
) -> Result<Json<UserAuthResponse>, HttpError> {
    let (user, token) = app.user_auth(&req.email, &req.password).await?;
    Ok(Json(UserAuthResponse {
        token: token.token,
        state: "active".into(),
        user_email: user.email,
    }))
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    responses((status = 200, body = MeResponse), (status = 403, body = ErrorBody)))]
pub async fn me(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
) -> Result<Json<MeResponse>, HttpError> {
    let projects = app
        .my_projects(&caller)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    Ok(Json(MeResponse {
        user: user_view(&caller.user, projects),
    }))
}

/// Mints a token for the caller. Tokens do not expire: a `max_age_seconds` is refused (400).
#[utoipa::path(post, path = "/v1/access_token", tag = "identity", request_body = AccessTokenCreateRequest,
    responses((status = 200, body = AccessTokenCreateResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn access_token_create(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<AccessTokenCreateRequest>,
) -> Result<Json<AccessTokenCreateResponse>, HttpError> {
    let description = req.description.unwrap_or_default();
    let t = app
        .access_token_create(&caller, &description, req.max_age_seconds)
        .await?;
    Ok(Json(AccessTokenCreateResponse {
        full_token: t.token,
        token_prefix: t.row.token_prefix,
        description: t.row.description,
        create_time: iso8601(t.row.create_time),
        expiry_time: None,
        max_age_seconds: None,
        extend_when_used: false,
    }))
}

/// The caller's tokens, by prefix (`avn user access-token list`).
#[utoipa::path(get, path = "/v1/access_token", tag = "identity",
    responses((status = 200, body = AccessTokenListResponse), (status = 403, body = ErrorBody)))]
pub async fn access_token_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
) -> Result<Json<AccessTokenListResponse>, HttpError> {
    let tokens = app
        .access_token_list(&caller)
        .await?
        .into_iter()
        .map(|t| AccessToken {
            currently_active: t.token_hash == caller.token_hash,
            token_prefix: t.token_prefix,
            description: t.description,
            create_time: iso8601(t.create_time),
            expiry_time: None,
            max_age_seconds: None,
            extend_when_used: false,
            last_used_time: None,
            last_ip: None,
            last_user_agent: None,
        })
        .collect();
    Ok(Json(AccessTokenListResponse { tokens }))
}

/// Revokes one of the caller's tokens, given by its `token_prefix` as listed or in full
/// (`avn user logout` sends the full token). Another user's token answers 404 like a
/// missing one; a prefix shared by two of the caller's tokens answers 409.
#[utoipa::path(delete, path = "/v1/access_token/{token_prefix}", tag = "identity",
    params(("token_prefix" = String, Path, description = "A token's `token_prefix`, or the full token")),
    responses((status = 200, body = MessageBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn access_token_revoke(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<MessageBody>, HttpError> {
    app.access_token_revoke(&caller, &token).await?;
    Ok(Json(MessageBody {
        message: "Access token revoked".into(),
    }))
}
