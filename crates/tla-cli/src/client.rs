//! A minimal HTTP/1.1 client of one TLA server (hyper, one keep-alive connection):
//! the demo audience and `tla report --server` speak to the API through it.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// A refusal the server answered in its error shape
/// (`{"error": {"code": "...", "message": "..."}}`), kept as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The server's stable error code.
    pub code: String,
    /// The server's message.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// The error a non-200 answer carries, if its body has the API's error shape.
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Option<ServerError> {
        #[derive(serde::Deserialize)]
        struct Shape {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        let shape: Shape = serde_json::from_slice(body).ok()?;
        Some(ServerError {
            status,
            code: shape.error.code,
            message: shape.error.message,
        })
    }
}

/// A minimal HTTP/1.1 client of one server: one keep-alive connection, opened again
/// after any error.
pub struct Client {
    target: SocketAddr,
    host: String,
    authorization: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(target: SocketAddr, token: &str) -> Self {
        Self {
            target,
            host: target.to_string(),
            authorization: format!("Bearer {token}"),
            sender: None,
        }
    }

    async fn connection(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(self.target)
                .await
                .with_context(|| format!("cannot connect to {}", self.target))?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        Ok(sender)
    }

    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        self.post(path, serde_json::to_vec(body)?).await
    }

    /// POSTs a JSON body and parses a 200 answer; anything else is an error (and a
    /// transport error drops the connection).
    pub async fn post<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, body).await
    }

    /// PATCHes a JSON body and parses a 200 answer; anything else is an error.
    pub async fn patch_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        self.call(Method::PATCH, path, serde_json::to_vec(body)?)
            .await
    }

    /// GETs `path` and parses a 200 answer; anything else is an error.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
    ) -> anyhow::Result<T> {
        self.call(Method::GET, path, Vec::new()).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        self.send(method, path, &[("content-type", "application/json")], body)
            .await
            .map(|(_, answer)| answer)
    }

    /// Sends a request with `headers` (its content type among them) and parses a 2xx
    /// answer, returned with its status; anything else is an error in the server's
    /// words (and a transport error drops the connection).
    pub async fn send<T: serde::de::DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, T)> {
        let (status, bytes) = self.send_raw(method, path, headers, body).await?;
        let answer = serde_json::from_slice(&bytes)
            .with_context(|| format!("{path} answered invalid JSON"))?;
        Ok((status, answer))
    }

    /// GETs `path` and returns a 200 answer's body as text (a CSV export, say);
    /// anything else is an error.
    pub async fn get_text(&mut self, path: &str) -> anyhow::Result<String> {
        let (_, bytes) = self.send_raw(Method::GET, path, &[], Vec::new()).await?;
        String::from_utf8(bytes.to_vec()).with_context(|| format!("{path} answered invalid UTF-8"))
    }

    /// [`Client::send`] without parsing the answer.
    async fn send_raw(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let result = self.exchange(method, path, headers, body).await;
        if result.is_err() {
            self.sender = None;
        }
        let (status, bytes) = result?;
        if !status.is_success() {
            // The server's own code and message when it answered in its error shape;
            // otherwise (a proxy in between, say) the body as it came.
            return Err(match ServerError::from_answer(status, &bytes) {
                Some(error) => {
                    anyhow::Error::new(error).context(format!("{path} answered {status}"))
                }
                None => anyhow::anyhow!(
                    "{path} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            });
        }
        Ok((status, bytes))
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, &self.authorization);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let sender = self.connection().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// The answer of `request` to `server` + `path`, or an error saying the server gave no
/// answer within `timeout`. The one bound on a CLI request to a server.
pub(crate) async fn within<T>(
    timeout: std::time::Duration,
    server: &str,
    path: &str,
    request: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, request)
        .await
        .with_context(|| format!("{server}{path} gave no answer in {} s", timeout.as_secs()))?
}

/// Checks that `id` can be a campaign id (letters, digits, `_` and `-`, as the server
/// makes them) before it goes into a request path.
pub(crate) fn check_campaign_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        anyhow::bail!(
            "{id:?} is not a campaign id (letters, digits, '_' and '-' only, as `GET /v1/campaigns` lists them)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_in_the_error_shape_is_kept_as_given() {
        let body = br#"{"error": {"code": "not_found", "message": "no campaign with id \"x\""}}"#;
        let error = ServerError::from_answer(StatusCode::NOT_FOUND, body).unwrap();
        assert_eq!(error.to_string(), "not_found: no campaign with id \"x\"");
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert!(ServerError::from_answer(StatusCode::BAD_GATEWAY, b"<html>").is_none());
    }
}
