//! Users, sign-in and tokens.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserCreateRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub real_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserCreateResponse {
    pub user: User,
    /// A first token for the new user.
    pub token: String,
    pub user_email: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserAuthRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub otp: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserAuthResponse {
    pub token: String,
    pub state: String,
    pub user_email: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AccessTokenCreateRequest {
    #[serde(default)]
    pub description: Option<String>,
    /// Keyhaven's tokens do not expire: a value other than null is refused (400), never
    /// ignored, so nobody believes a token expires that does not.
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
    /// Accepted for Aiven's clients; without an expiry there is nothing to extend.
    #[serde(default)]
    pub extend_when_used: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessTokenCreateResponse {
    /// The token; shown only in this response.
    pub full_token: String,
    pub token_prefix: String,
    pub description: String,
    pub create_time: String,
    /// Keyhaven's tokens do not expire: always null.
    pub expiry_time: Option<String>,
    /// Always null: no expiry.
    pub max_age_seconds: Option<u64>,
    /// Always false: no expiry.
    pub extend_when_used: bool,
}

/// A token as Aiven lists it: never the token itself, which is not stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessToken {
    /// The token's first characters: what `DELETE /v1/access_token/{token_prefix}` takes.
    pub token_prefix: String,
    pub description: String,
    pub create_time: String,
    /// True for the token this request was made with.
    pub currently_active: bool,
    /// Keyhaven's tokens do not expire: always null.
    pub expiry_time: Option<String>,
    /// Always null: no expiry.
    pub max_age_seconds: Option<u64>,
    /// Always false: no expiry.
    pub extend_when_used: bool,
    /// Keyhaven does not record when, from where or by what a token was used: always null.
    pub last_used_time: Option<String>,
    pub last_ip: Option<String>,
    pub last_user_agent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessTokenListResponse {
    pub tokens: Vec<AccessToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// The user's email (Aiven calls the field `user`).
    pub user: String,
    pub real_name: String,
    pub state: String,
    pub token_validity_begin: String,
    pub projects: Vec<String>,
    pub auth: Vec<String>,
    pub create_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeResponse {
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteRequest {
    pub user_email: String,
    /// One of Aiven's member types; default `developer`.
    #[serde(default)]
    #[schema(pattern = "^(admin|developer|operator|read_only)$")]
    pub member_type: Option<String>,
}
