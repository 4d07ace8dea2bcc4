//! Users, their tokens and their project memberships.

use crate::sql::{Row, p};
use crate::{Result, Tx};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub real_name: String,
    /// argon2 PHC string; `None` for users who only ever use tokens.
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub create_time: i64,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    /// SHA-256 of the token, hex: how a request's token is found.
    pub token_hash: String,
    /// The token's first characters, as Aiven's API shows them; 8 for tokens minted before
    /// Keyhaven kept 10 (a prefix cannot be recovered from a hash).
    pub token_prefix: String,
    pub user_id: i64,
    pub description: String,
    pub create_time: i64,
}

const USER_COLS: &str = "id, email, real_name, password_hash, is_admin, create_time";

fn user_from_row(r: Row) -> Result<UserRow> {
    Ok(UserRow {
        id: r.int(0)?,
        email: r.text(1)?,
        real_name: r.text(2)?,
        password_hash: r.opt_text(3)?,
        is_admin: r.bool(4)?,
        create_time: r.int(5)?,
    })
}

impl Tx<'_> {
    pub fn user_insert(
        &self,
        email: &str,
        real_name: &str,
        password_hash: Option<&str>,
        is_admin: bool,
        now: i64,
    ) -> Result<UserRow> {
        let id = self
            .row(
                "INSERT INTO users (email, real_name, password_hash, is_admin, create_time)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                p![email, real_name, password_hash, is_admin, now],
            )?
            .ok_or_else(|| crate::StoreError::Corrupt("an insert returned no id".into()))?
            .int(0)?;
        Ok(UserRow {
            id,
            email: email.into(),
            real_name: real_name.into(),
            password_hash: password_hash.map(Into::into),
            is_admin,
            create_time: now,
        })
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.row(
            &format!("SELECT {USER_COLS} FROM users WHERE email = ?1"),
            p![email],
        )?
        .map(user_from_row)
        .transpose()
    }

    /// The user a token (given as its SHA-256 hex) belongs to.
    pub fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRow>> {
        self.row(
            &format!(
                "SELECT {USER_COLS} FROM users
                 WHERE id = (SELECT user_id FROM tokens WHERE token_hash = ?1)"
            ),
            p![token_hash],
        )?
        .map(user_from_row)
        .transpose()
    }

    pub fn token_insert(
        &self,
        token_hash: &str,
        token_prefix: &str,
        user_id: i64,
        description: &str,
        now: i64,
    ) -> Result<TokenRow> {
        self.exec(
            "INSERT INTO tokens (token_hash, token_prefix, user_id, description, create_time)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            p![token_hash, token_prefix, user_id, description, now],
        )?;
        Ok(TokenRow {
            token_hash: token_hash.into(),
            token_prefix: token_prefix.into(),
            user_id,
            description: description.into(),
            create_time: now,
        })
    }

    /// A user's tokens, oldest first.
    pub fn tokens_of_user(&self, user_id: i64) -> Result<Vec<TokenRow>> {
        self.rows(
            "SELECT token_hash, token_prefix, user_id, description, create_time FROM tokens
             WHERE user_id = ?1 ORDER BY create_time, token_hash",
            p![user_id],
        )?
        .into_iter()
        .map(|r| {
            Ok(TokenRow {
                token_hash: r.text(0)?,
                token_prefix: r.text(1)?,
                user_id: r.int(2)?,
                description: r.text(3)?,
                create_time: r.int(4)?,
            })
        })
        .collect()
    }

    /// Deletes a token of `user_id`; false when it was not theirs or did not exist.
    pub fn token_delete(&self, token_hash: &str, user_id: i64) -> Result<bool> {
        Ok(self.exec(
            "DELETE FROM tokens WHERE token_hash = ?1 AND user_id = ?2",
            p![token_hash, user_id],
        )? == 1)
    }

    pub fn membership_insert(&self, project: &str, user_id: i64, member_type: &str) -> Result<()> {
        self.exec(
            "INSERT INTO memberships (project, user_id, member_type) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            p![project, user_id, member_type],
        )?;
        Ok(())
    }

    pub fn is_member(&self, project: &str, user_id: i64) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 FROM memberships WHERE project = ?1 AND user_id = ?2",
                p![project, user_id],
            )?
            .is_some())
    }
}
