//! Sign-in sessions of the dashboard.
//!
//! A session is kept on the server: a random id (the cookie's value, 32 bytes as hex)
//! maps to the API key that signed in, a CSRF token (16 random bytes as hex) and an
//! expiry ([`SESSION_TTL_MS`] after sign-in). Each request checks the key again
//! ([`crate::state::AppState::authorize_key`]), so a revoked key ends its sessions at
//! the next key reload. The cookie is `HttpOnly; SameSite=Strict; Path=/`; sessions
//! live in memory and end with the process (sign in again after a restart).

use super::Dashboard;
use crate::auth::Scope;
use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "tla_session";

/// How long a session lasts after sign-in, ms (8 hours).
pub const SESSION_TTL_MS: i64 = 8 * 3_600_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    token: String,
    csrf: String,
    expires_ms: i64,
}

/// Every open session.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Opens a session for `token` at `now_ms`; returns its id. Drops expired ones.
    pub fn open(&self, token: String, now_ms: i64) -> String {
        let mut rng = rand::rng();
        let id = hex(&rng.random::<[u8; 32]>());
        let csrf = hex(&rng.random::<[u8; 16]>());
        let mut open = self.lock();
        open.retain(|_, s| s.expires_ms > now_ms);
        open.insert(
            id.clone(),
            Session {
                token,
                csrf,
                expires_ms: now_ms.saturating_add(SESSION_TTL_MS),
            },
        );
        id
    }

    /// Closes a session.
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn find(&self, id: &str, now_ms: i64) -> Option<Session> {
        self.lock()
            .get(id)
            .filter(|s| s.expires_ms > now_ms)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `Set-Cookie` value of a new session.
pub fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL_MS / 1000
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clearing_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Where to go after sign-in: a path on this site, else `/`.
pub fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok { next.to_owned() } else { "/".to_owned() }
}

/// How a request was let in.
#[derive(Debug, Clone)]
pub struct Access {
    key_id: String,
    /// The session and its CSRF token; `None` for a Bearer key.
    session: Option<(String, String)>,
}

impl Access {
    /// The public id of the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The session id, for a session.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|(id, _)| id.as_str())
    }

    /// The CSRF token forms carry (empty for a Bearer key, which needs none).
    pub fn csrf_token(&self) -> String {
        self.session
            .as_ref()
            .map(|(_, csrf)| csrf.clone())
            .unwrap_or_default()
    }

    /// Checks an action's CSRF token: a session's must match (constant time); a Bearer
    /// key is not sent by a browser on its own, so it needs none.
    pub fn check_csrf(&self, presented: &str) -> Result<(), ApiError> {
        match &self.session {
            None => Ok(()),
            Some((_, csrf)) if bool::from(csrf.as_bytes().ct_eq(presented.as_bytes())) => Ok(()),
            Some(_) => Err(ApiError::forbidden(
                "missing or wrong CSRF token: send the form of the page (field `csrf`), reloaded if the session changed",
            )),
        }
    }
}

/// The session id in a request's cookies.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Who asks, for `scope`: the `Authorization` header when sent, else the session.
pub(crate) fn access(
    dash: &Dashboard,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Access, ApiError> {
    if let Some(header) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let key_id = dash.state.authorize_key(Some(header), scope)?;
        return Ok(Access {
            key_id,
            session: None,
        });
    }
    let now = dash.state.clock().now_ms();
    let Some((id, session)) =
        session_cookie(headers).and_then(|id| Some((id, dash.shared.sessions.find(id, now)?)))
    else {
        return Err(ApiError::unauthorized(
            "not signed in: sign in at /signin with an API key, or send it as `Authorization: Bearer tla_<id>_<secret>`",
        ));
    };
    let key_id = dash
        .state
        .authorize_key(Some(&format!("Bearer {}", session.token)), scope)?;
    Ok(Access {
        key_id,
        session: Some((id.to_owned(), session.csrf)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/campaigns/c_1"), "/campaigns/c_1");
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "x",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }

    #[test]
    fn sessions_expire_and_close() {
        let sessions = Sessions::default();
        let id = sessions.open("tok".into(), 0);
        assert!(sessions.find(&id, SESSION_TTL_MS - 1).is_some());
        assert!(sessions.find(&id, SESSION_TTL_MS).is_none());
        sessions.close(&id);
        assert!(sessions.find(&id, 1).is_none());
        assert!(cookie(&id).contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn a_session_needs_its_csrf_token_and_a_bearer_key_none() {
        let session = Access {
            key_id: "k".into(),
            session: Some(("s".into(), "abc".into())),
        };
        assert!(session.check_csrf("abc").is_ok());
        assert!(session.check_csrf("abd").is_err());
        assert!(session.check_csrf("").is_err());
        let bearer = Access {
            key_id: "k".into(),
            session: None,
        };
        assert!(bearer.check_csrf("").is_ok());
    }
}
