//! The admin API as the load test uses it: staff login, JSON calls that wait out
//! rate limits, and errors that say which request failed and why.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Failure, FailureKind};

/// Why an admin call failed.
#[derive(Debug)]
pub enum AdminError {
    Unreachable(String),
    /// 401 or 403: the credentials or their permissions.
    Refused(String),
    /// Any other answer that is not a success.
    Answered {
        status: u16,
        kind: String,
        detail: String,
    },
}

impl AdminError {
    /// The failure of `what`; an answer that is neither 401 nor 403 counts as `kind`.
    pub fn during(self, kind: FailureKind, what: &str) -> Failure {
        match self {
            AdminError::Unreachable(m) => Failure::new(FailureKind::Unreachable, format!("{what}: {m}")),
            AdminError::Refused(m) => Failure::new(FailureKind::Credentials, format!("{what}: {m}")),
            AdminError::Answered { status, kind: t, detail } => {
                Failure::new(kind, format!("{what}: the shop answered {status} {t}: {detail}"))
            }
        }
    }
}

pub struct Admin {
    client: reqwest::Client,
    base: String,
    token: Mutex<String>,
    /// Kept to log in again when a long run outlives the access token.
    login: Option<(String, String)>,
}

impl Admin {
    pub async fn login(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Result<Admin, Failure> {
        let token = log_in(client, base, email, password).await?;
        Ok(Admin {
            client: client.clone(),
            base: base.to_owned(),
            token: Mutex::new(token),
            login: Some((email.to_owned(), password.to_owned())),
        })
    }

    pub fn with_token(client: &reqwest::Client, base: &str, token: &str) -> Admin {
        Admin { client: client.clone(), base: base.to_owned(), token: Mutex::new(token.to_owned()), login: None }
    }

    pub async fn get(&self, path: &str) -> Result<Value, AdminError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, AdminError> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// One call; `429` and `503` are waited out (up to a minute in all), an
    /// expired token is renewed once when the tool has the credentials.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut waited = Duration::ZERO;
        let mut renewed = false;
        loop {
            let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut req = self.client.request(method.clone(), &url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req.send().await.map_err(|e| AdminError::Unreachable(describe_transport(&e, &self.base)))?;
            let status = res.status();
            let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let bytes = res.bytes().await.map_err(|e| AdminError::Unreachable(describe_transport(&e, &self.base)))?;
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(value);
            }
            let kind = value["type"].as_str().unwrap_or("").to_owned();
            let detail = value["detail"].as_str().unwrap_or("").to_owned();
            match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE if waited < Duration::from_secs(60) => {
                    let pause = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 5));
                    tokio::time::sleep(pause).await;
                    waited += pause;
                }
                StatusCode::UNAUTHORIZED if kind == "token_expired" && !renewed && self.login.is_some() => {
                    let (email, password) = self.login.as_ref().expect("checked");
                    let fresh =
                        log_in(&self.client, &self.base, email, password).await.map_err(|e| AdminError::Refused(e.message))?;
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                    renewed = true;
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(AdminError::Refused(format!("the staff token was refused ({kind}: {detail})")));
                }
                StatusCode::FORBIDDEN => {
                    let permission = value["required_permission"].as_str().unwrap_or("?");
                    return Err(AdminError::Refused(format!(
                        "the staff account lacks the `{permission}` permission (an owner has every one)"
                    )));
                }
                _ => return Err(AdminError::Answered { status: status.as_u16(), kind, detail }),
            }
        }
    }
}

async fn log_in(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Result<String, Failure> {
    let unreachable = |e: reqwest::Error| Failure::new(FailureKind::Unreachable, describe_transport(&e, base));
    let res = client
        .post(format!("{base}/v1/admin/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(unreachable)?;
    let status = res.status();
    let value: Value = res.json().await.unwrap_or(Value::Null);
    match value["access_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ if status == StatusCode::UNAUTHORIZED => Err(Failure::new(
            FailureKind::Credentials,
            format!("staff login as {email} refused: the e-mail or the password is wrong"),
        )),
        _ => Err(Failure::new(
            FailureKind::Credentials,
            format!("staff login as {email} failed: {status} {}", value["type"].as_str().unwrap_or("")),
        )),
    }
}

/// "http://x unreachable: connection refused", without reqwest's nesting.
pub fn describe_transport(e: &reqwest::Error, base: &str) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_timeout() { format!("{base} did not answer in time") } else { format!("{base} unreachable: {cause}") }
}
