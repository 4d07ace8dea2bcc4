//! Users, tokens and sign-in. Sign-up is closed: the first start creates the `admin`
//! user, the `default` project and an admin token; the admin creates further users.
//!
//! Nothing here tells who has an account: sign-in costs one argon2 verification whether
//! or not the email exists, and emails compare case-insensitively (stored folded), so
//! `ALICE@example.com` is the same account as `alice@example.com`.

use crate::secret::{new_password, new_token, token_hash};
use crate::{App, AppError};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use keyhaven_core::time::now_micros;
use keyhaven_store::{ProjectRow, TokenRow, UserRow};
use std::sync::LazyLock;
use tracing::info;

pub const ADMIN_EMAIL: &str = "admin@localhost";
pub const DEFAULT_PROJECT: &str = "default";

/// How many leading characters of a token are kept beside its hash as `token_prefix`:
/// what `GET /v1/access_token` shows and `DELETE /v1/access_token/{token_prefix}` takes.
/// Ten hex characters are 40 bits, so two tokens of one user practically never share one,
/// and if they do the prefix is refused as ambiguous rather than guessed.
pub const TOKEN_PREFIX_LEN: usize = 10;

/// An argon2 hash of a random password nobody knows, made with the parameters of real
/// ones: sign-in with an unknown email, or as a user without a password, verifies against
/// it, so the answer takes as long as for a wrong password and does not tell who has an
/// account. Made on first use, on a blocking thread like every argon2 call.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_password(&new_password(32)).expect("argon2 hashes with its default parameters")
});

/// Who made a request: the user behind a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRow,
    /// SHA-256 of the token the request came with (`currently_active` in token lists).
    pub token_hash: String,
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
    pub async fn bootstrap(&self) -> Result<Option<String>, AppError> {
        let now = now_micros();
        let cloud = self.default_cloud().name.clone();
        self.store
            .write(|tx| {
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
                    token_prefix(&token),
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
            .await
    }

    /// The caller behind an `Authorization` header value (`aivenv1 T` or `bearer T`, in
    /// any case). Anything else is [`AppError::Unauthenticated`].
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Caller, AppError> {
        let token = header
            .and_then(parse_authorization)
            .ok_or(AppError::Unauthenticated)?;
        let hash = token_hash(token);
        let user = self
            .store
            .read(|tx| tx.user_by_token_hash(&hash))
            .await?
            .ok_or(AppError::Unauthenticated)?;
        Ok(Caller {
            user,
            token_hash: hash,
        })
    }

    /// The project, when it exists and the caller is a member; otherwise the same 404 as
    /// for a missing project, so nothing about other users' projects leaks.
    pub async fn project_for(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<ProjectRow, AppError> {
        self.store
            .read(|tx| visible_project(tx, caller, project))
            .await
    }

    /// `POST /v1/user`: the admin creates a user with a password; returns a first token.
    /// The email is stored folded: a second account for `ALICE@example.com` next to
    /// `alice@example.com` is refused (409 `user_exists`).
    pub async fn user_create(
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
        let email = fold_email(email);
        let password = password.to_string();
        let hash = blocking(move || hash_password(&password)).await??;
        let now = now_micros();
        self.store
            .write(|tx| {
                if tx.user_by_email(&email)?.is_some() {
                    return Err(AppError::conflict(
                        "user_exists",
                        format!("User '{email}' already exists"),
                    ));
                }
                let user = tx.user_insert(&email, real_name, Some(&hash), false, now)?;
                let token = new_token();
                let row = tx.token_insert(
                    &token_hash(&token),
                    token_prefix(&token),
                    user.id,
                    "sign-up",
                    now,
                )?;
                Ok((user, NewToken { token, row }))
            })
            .await
    }

    /// `POST /v1/userauth`: email (in any case) and password → the user and a new token.
    pub async fn user_auth(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(UserRow, NewToken), AppError> {
        let user = self
            .store
            .read(|tx| tx.user_by_email(&fold_email(email)))
            .await?;
        // One verification whatever the email: against the user's hash, or against the
        // dummy for an unknown email or a user without a password (then it fails anyway).
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let password = password.to_string();
        let ok = blocking(move || {
            let has_password = hash.is_some();
            let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
            let verified = PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            });
            has_password && verified
        })
        .await?;
        match user {
            Some(user) if ok => {
                let token = self.mint_token(user.id, "user login").await?;
                Ok((user, token))
            }
            _ => Err(AppError::forbidden(
                "authentication_failed",
                "Authentication failed",
            )),
        }
    }

    /// `POST /v1/access_token`: a new token for the caller. Tokens do not expire, so a
    /// maximum age is refused rather than silently dropped.
    pub async fn access_token_create(
        &self,
        caller: &Caller,
        description: &str,
        max_age_seconds: Option<u64>,
    ) -> Result<NewToken, AppError> {
        if max_age_seconds.is_some() {
            return Err(AppError::invalid(
                "token_expiry_unsupported",
                "Keyhaven's access tokens do not expire: leave max_age_seconds out (or null) \
                 and revoke the token with DELETE /v1/access_token/{token_prefix} when done",
            ));
        }
        self.mint_token(caller.user.id, description).await
    }

    /// `GET /v1/access_token`: the caller's tokens (prefixes only; tokens are not stored).
    pub async fn access_token_list(&self, caller: &Caller) -> Result<Vec<TokenRow>, AppError> {
        Ok(self
            .store
            .read(|tx| tx.tokens_of_user(caller.user.id))
            .await?)
    }

    /// `DELETE /v1/access_token/{token_prefix}`: revokes one of the caller's tokens, given
    /// in full (what `avn user logout` sends) or by its `token_prefix` as listed. Only the
    /// caller's own tokens are ever matched: another user's token, full or prefix, answers
    /// 404 like a missing one. A prefix must equal a stored one (tokens minted before
    /// Keyhaven kept 10 characters are listed, and revoked, by their 8); one that two of
    /// the caller's tokens share is refused (409) rather than guessed.
    pub async fn access_token_revoke(&self, caller: &Caller, token: &str) -> Result<(), AppError> {
        let hash = token_hash(token);
        let user_id = caller.user.id;
        self.store.write(|tx| {
            if tx.token_delete(&hash, user_id)? {
                return Ok(());
            }
            let matching: Vec<TokenRow> = tx
                .tokens_of_user(user_id)?
                .into_iter()
                .filter(|t| t.token_prefix == token)
                .collect();
            match matching.as_slice() {
                [one] => {
                    tx.token_delete(&one.token_hash, user_id)?;
                    Ok(())
                }
                [] => Err(AppError::not_found(
                    "token_not_found",
                    "Access token not found",
                )),
                many => Err(AppError::conflict(
                    "token_prefix_ambiguous",
                    format!(
                        "Token prefix '{token}' matches {} of your tokens; revoke the one you mean by its full token",
                        many.len()
                    ),
                )),
            }
        }).await
    }

    /// Projects the caller is a member of.
    pub async fn my_projects(&self, caller: &Caller) -> Result<Vec<ProjectRow>, AppError> {
        Ok(self
            .store
            .read(|tx| tx.projects_of_user(caller.user.id))
            .await?)
    }

    async fn mint_token(&self, user_id: i64, description: &str) -> Result<NewToken, AppError> {
        let token = new_token();
        let now = now_micros();
        let row = self
            .store
            .write(|tx| {
                tx.token_insert(
                    &token_hash(&token),
                    token_prefix(&token),
                    user_id,
                    description,
                    now,
                )
            })
            .await?;
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

/// The token's `token_prefix`: its first [`TOKEN_PREFIX_LEN`] characters.
fn token_prefix(token: &str) -> &str {
    &token[..TOKEN_PREFIX_LEN]
}

/// An email as stored and looked up: folded to lower case. ASCII only, as SQLite's
/// `lower()` folded the emails stored before (store migration `FOLD_EMAILS`); a fold that
/// differed from it would make those accounts unreachable. Non-ASCII letters therefore
/// compare exactly.
pub fn fold_email(email: &str) -> String {
    email.to_ascii_lowercase()
}

/// Runs CPU-bound work (argon2 takes tens of milliseconds by design) on tokio's blocking
/// threads, so it never stalls the async workers that serve other requests.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::Internal(format!("a blocking task failed: {e}")))
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
    use super::{fold_email, parse_authorization};

    #[test]
    fn emails_fold_ascii_letters_only() {
        assert_eq!(fold_email("ALICE@Example.COM"), "alice@example.com");
        assert_eq!(fold_email("ÄRGER@X.DE"), "Ärger@x.de");
    }

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
