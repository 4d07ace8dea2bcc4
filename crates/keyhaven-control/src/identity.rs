//! Users, tokens and sign-in. Sign-up is closed: the first start creates the `admin`
//! user, the `default` project and an admin token; the admin creates further users.

use crate::secret::{new_token, token_hash};
use crate::{App, AppError};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use keyhaven_core::time::now_micros;
use keyhaven_store::{ProjectRow, TokenRow, UserRow};
use tracing::info;

pub const ADMIN_EMAIL: &str = "admin@localhost";
pub const DEFAULT_PROJECT: &str = "default";

/// Who made a request: the user behind a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRow,
}

/// A token minted for a user; the only moment its plain value exists.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub row: TokenRow,
}

impl App {
    /// First start: creates the admin user, the `default` project and the admin token.
    /// Returns the token when it was created now, `None` when the admin already existed.
    pub fn bootstrap(&self) -> Result<Option<String>, AppError> {
        let now = now_micros();
        let cloud = self.default_cloud().name.clone();
        self.store.write(|tx| {
            if tx.user_by_email(ADMIN_EMAIL)?.is_some() {
                return Ok(None);
            }
            let admin = tx.user_insert(ADMIN_EMAIL, "admin", None, true, now)?;
            if tx.project_get(DEFAULT_PROJECT)?.is_none() {
                tx.project_insert(DEFAULT_PROJECT, &cloud, now)?;
            }
            tx.membership_insert(DEFAULT_PROJECT, admin.id, "admin")?;
            let token = new_token();
            tx.token_insert(
                &token_hash(&token),
                &token[..8],
                admin.id,
                "admin token",
                now,
            )?;
            info!(
                user = ADMIN_EMAIL,
                project = DEFAULT_PROJECT,
                "created the admin user and the default project"
            );
            Ok(Some(token))
        })
    }

    /// The caller behind an `Authorization` header value (`aivenv1 T` or `bearer T`, in
    /// any case). Anything else is [`AppError::Unauthenticated`].
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, AppError> {
        let token = header
            .and_then(parse_authorization)
            .ok_or(AppError::Unauthenticated)?;
        let hash = token_hash(token);
        let user = self
            .store
            .read(|tx| tx.user_by_token_hash(&hash))?
            .ok_or(AppError::Unauthenticated)?;
        Ok(Caller { user })
    }

    /// The project, when it exists and the caller is a member; otherwise the same 404 as
    /// for a missing project, so nothing about other users' projects leaks.
    pub fn project_for(&self, caller: &Caller, project: &str) -> Result<ProjectRow, AppError> {
        self.store.read(|tx| visible_project(tx, caller, project))
    }

    /// `POST /v1/user`: the admin creates a user with a password; returns a first token.
    pub fn user_create(
        &self,
        caller: &Caller,
        email: &str,
        real_name: &str,
        password: &str,
    ) -> Result<(UserRow, NewToken), AppError> {
        if !caller.user.is_admin {
            return Err(AppError::forbidden(
                "permission_denied",
                "Only the admin user can create users (sign-up is closed)",
            ));
        }
        validate_email(email)?;
        if password.chars().count() < 8 {
            return Err(AppError::invalid(
                "invalid_password",
                "Password must be at least 8 characters long",
            ));
        }
        let hash = hash_password(password)?;
        let now = now_micros();
        self.store.write(|tx| {
            if tx.user_by_email(email)?.is_some() {
                return Err(AppError::conflict(
                    "user_exists",
                    format!("User '{email}' already exists"),
                ));
            }
            let user = tx.user_insert(email, real_name, Some(&hash), false, now)?;
            let token = new_token();
            let row = tx.token_insert(&token_hash(&token), &token[..8], user.id, "sign-up", now)?;
            Ok((user, NewToken { token, row }))
        })
    }

    /// `POST /v1/userauth`: email and password → a new token.
    pub async fn user_auth(&self, email: &str, password: &str) -> Result<NewToken, AppError> {
        let user = self.store.read(|tx| tx.user_by_email(email))?;
        let failed = || AppError::forbidden("authentication_failed", "Authentication failed");
        let user = user.ok_or_else(failed)?;
        let hash = user.password_hash.clone().ok_or_else(failed)?;
        let password = password.to_string();
        // Argon2 takes tens of milliseconds by design: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
        if !ok {
            return Err(failed());
        }
        self.mint_token(user.id, "user login")
    }

    /// `POST /v1/access_token`: a new token for the caller.
    pub fn access_token_create(
        &self,
        caller: &Caller,
        description: &str,
    ) -> Result<NewToken, AppError> {
        self.mint_token(caller.user.id, description)
    }

    /// `DELETE /v1/access_token/T`: revokes one of the caller's tokens.
    pub fn access_token_revoke(&self, caller: &Caller, token: &str) -> Result<(), AppError> {
        let hash = token_hash(token);
        if self
            .store
            .write(|tx| tx.token_delete(&hash, caller.user.id))?
        {
            Ok(())
        } else {
            Err(AppError::not_found(
                "token_not_found",
                "Access token not found",
            ))
        }
    }

    /// Projects the caller is a member of.
    pub fn my_projects(&self, caller: &Caller) -> Result<Vec<ProjectRow>, AppError> {
        Ok(self.store.read(|tx| tx.projects_of_user(caller.user.id))?)
    }

    fn mint_token(&self, user_id: i64, description: &str) -> Result<NewToken, AppError> {
        let token = new_token();
        let now = now_micros();
        let row = self.store.write(|tx| {
            tx.token_insert(&token_hash(&token), &token[..8], user_id, description, now)
        })?;
        Ok(NewToken { token, row })
    }
}

pub(crate) fn visible_project(
    tx: &keyhaven_store::Tx<'_>,
    caller: &Caller,
    project: &str,
) -> Result<ProjectRow, AppError> {
    if !tx.is_member(project, caller.user.id)? {
        return Err(AppError::project_not_found(project));
    }
    tx.project_get(project)?
        .ok_or_else(|| AppError::project_not_found(project))
}

/// `aivenv1 T` or `bearer T`, scheme in any case.
pub fn parse_authorization(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    let known = scheme.eq_ignore_ascii_case("aivenv1") || scheme.eq_ignore_ascii_case("bearer");
    (known && !token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

fn validate_email(email: &str) -> Result<(), AppError> {
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.contains(char::is_whitespace);
    ok.then_some(()).ok_or_else(|| {
        AppError::invalid(
            "invalid_email",
            format!(
                "'{}' is not a valid email address",
                email.chars().take(80).collect::<String>()
            ),
        )
    })
}

fn hash_password(password: &str) -> Result<String, AppError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| AppError::Internal(format!("no random source: {e}")))?;
    let salt = SaltString::encode_b64(&raw)
        .map_err(|e| AppError::Internal(format!("encoding a salt failed: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("hashing a password failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::parse_authorization;

    #[test]
    fn accepts_both_schemes_in_any_case() {
        assert_eq!(parse_authorization("aivenv1 abc"), Some("abc"));
        assert_eq!(parse_authorization("AIVENV1 abc"), Some("abc"));
        assert_eq!(parse_authorization("bearer abc"), Some("abc"));
        assert_eq!(parse_authorization("Bearer   abc "), Some("abc"));
        assert_eq!(parse_authorization("Basic abc"), None);
        assert_eq!(parse_authorization("abc"), None);
        assert_eq!(parse_authorization("bearer "), None);
        assert_eq!(parse_authorization("bearer a b"), None);
    }
}
