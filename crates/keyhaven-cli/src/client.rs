//! A small typed client of the `/v1` API.

use crate::config::Settings;
use keyhaven_api::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    /// The API answered with an error.
    #[error("{message} (status {status})")]
    Api { status: u16, message: String },
    #[error(
        "cannot reach the Keyhaven server at {url} ({reason}); is `keyhaven server` running there?"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "not logged in: no token from --auth-token, KEYHAVEN_AUTH_TOKEN, the config file or the server's admin-token file (./keyhaven-data/admin-token; set KEYHAVEN_DATA_DIR if the server uses another data directory); pass one, or run `keyhaven user login EMAIL --token`"
    )]
    NoToken,
    #[error("{0}")]
    Usage(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

pub struct Client {
    http: reqwest::Client,
    pub settings: Settings,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Ok(Client { http, settings })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::GET, path, None::<&()>).await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::DELETE, path, None::<&()>).await
    }

    /// A path under the current project: `/v1/project/P{rest}`.
    pub fn project_path(&self, rest: &str) -> String {
        format!("/v1/project/{}{rest}", self.settings.project)
    }

    async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.settings.url);
        let mut req = self.http.request(method, &url);
        if let Some(token) = &self.settings.token {
            req = req.header("authorization", format!("aivenv1 {token}"));
        } else if path != "/v1/userauth" {
            return Err(ClientError::NoToken);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.settings.url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| e.message)
                .unwrap_or(text);
            return Err(ClientError::Api { status, message });
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Api {
            status,
            message: format!("unexpected response: {e}"),
        })
    }
}
