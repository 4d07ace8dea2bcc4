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
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessTokenCreateResponse {
    /// The token; shown only in this response.
    pub full_token: String,
    pub token_prefix: String,
    pub description: String,
    pub create_time: String,
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
    #[serde(default)]
    pub member_type: Option<String>,
}
