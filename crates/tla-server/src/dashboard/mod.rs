//! The dashboard: a campaign team's view of its campaigns in a browser, served by the
//! same process as the API (see `docs/dashboard.md`).
//!
//! Pages are rendered on the server ([`page`]); the scripts and styles are embedded in
//! the binary ([`ASSETS`]: the vendored uPlot and a little plain JavaScript), nothing
//! is loaded from another host, and every response carries a strict
//! Content-Security-Policy ([`CSP`]). Live figures arrive by server-sent events
//! (`/campaigns/{id}/live`); charts read the rollups the learner keeps ([`rollup`]).
//!
//! Access ([`session`]): an API key signs in at `/signin` (scope `read` views, `admin`
//! acts) and is kept server-side behind an HttpOnly, SameSite=Strict session cookie;
//! every action carries the session's CSRF token. Every page also accepts the key as
//! `Authorization: Bearer`. Without a key no campaign data is shown.
//!
//! Controls call the same functions as the API's routes ([`crate::state::AppState::set_paused_by`],
//! [`crate::budget::change`], [`crate::revise::revise`]), so each is checked, stored
//! and audited once.

pub mod cache;
pub mod page;
pub mod rollup;
pub mod session;

use crate::auth::Scope;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use session::{Access, Sessions};
use std::sync::Arc;
use std::time::Duration;

/// The Content-Security-Policy of every dashboard response: scripts, styles and data
/// from this origin only, no inline script or style, no frames, forms post here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded assets: path under `/assets/`, media type, bytes.
pub const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uPlot.min.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dashboard.css"),
    ),
];

/// The most bytes of scripts and styles the dashboard may embed (a test holds it).
pub const ASSET_BUDGET_BYTES: usize = 150 * 1024;

/// How often the live stream sends the campaign's figures.
pub const LIVE_EVERY: Duration = Duration::from_secs(1);

/// What the dashboard keeps in the service's state: sign-in sessions and the reports
/// of the campaign pages.
#[derive(Debug, Default)]
pub struct Shared {
    /// Sign-in sessions.
    pub sessions: Sessions,
    /// The campaign pages' reports.
    pub reports: cache::ReportCache,
}

/// The dashboard's handlers' state: the service's, and its sessions.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub(crate) state: AppState,
    pub(crate) shared: Arc<Shared>,
}

/// The dashboard's routes over `state` (merged into [`crate::app`]).
pub fn router<S>(state: AppState) -> Router<S> {
    let dashboard = Dashboard {
        shared: state.dashboard().clone(),
        state,
    };
    Router::new()
        .route("/", get(list))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/assets/{file}", get(asset))
        .route("/campaigns/{id}", get(campaign))
        .route("/campaigns/{id}/series.json", get(series))
        .route("/campaigns/{id}/live", get(live))
        .route("/campaigns/{id}/controls/{action}", post(control))
        .layer(tower::util::MapResponseLayer::new(secure_headers))
        .with_state(dashboard)
}

/// Adds the security headers to every dashboard response.
fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An HTML page.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A page's refusal: sign in (303 to `/signin`) when no key was given, or the error as
/// a page.
fn refusal(error: ApiError, next: &str) -> Response {
    if error.status() == StatusCode::UNAUTHORIZED {
        let to = format!("/signin?next={}", page::url_encode(next));
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, to)],
            "sign in first",
        )
            .into_response();
    }
    html(error.status(), page::error_page(&error))
}

/// `GET /assets/{file}`: an embedded script or style, cached for a day.
async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, media, bytes)) => (
            [
                (header::CONTENT_TYPE, *media),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => html(
            StatusCode::NOT_FOUND,
            page::error_page(&ApiError::not_found("no such asset")),
        ),
    }
}

/// What `/signin` takes in its query.
#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

/// `GET /signin`.
async fn signin_form(query: Result<Query<Next>, QueryRejection>) -> Response {
    let next = query.ok().and_then(|q| q.0.next).unwrap_or_default();
    html(
        StatusCode::OK,
        page::signin(&session::safe_next(&next), None),
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
struct SignIn {
    key: String,
    #[serde(default)]
    next: String,
}

/// `POST /signin`: checks the key (scope `read` at least), opens a session.
async fn signin(State(dash): State<Dashboard>, body: Bytes) -> Response {
    let form: SignIn = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(error) => {
            return html(
                StatusCode::BAD_REQUEST,
                page::signin("/", Some(&format!("cannot read the form: {error}"))),
            );
        }
    };
    let next = session::safe_next(&form.next);
    let key = form.key.trim();
    match dash
        .state
        .authorize_key(Some(&format!("Bearer {key}")), Scope::Read)
    {
        Ok(_) => {
            let now = dash.state.clock().now_ms();
            let id = dash.shared.sessions.open(key.to_owned(), now);
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, next),
                    (header::SET_COOKIE, session::cookie(&id)),
                ],
                "signed in",
            )
                .into_response()
        }
        Err(error) => html(error.status(), page::signin(&next, Some(error.message()))),
    }
}

/// The form of an action: its CSRF token, and what the action takes.
#[derive(Debug, Deserialize, Default)]
pub struct ActionForm {
    /// The session's CSRF token (not needed with a Bearer key).
    #[serde(default)]
    pub csrf: String,
    /// Why (budget changes and revisions keep it).
    #[serde(default)]
    pub reason: String,
    /// A new budget.
    #[serde(default)]
    pub budget: String,
    /// A new daily cap (empty: unchanged; `none`: no cap).
    #[serde(default)]
    pub daily_cap: String,
    /// An option, as `component.option` (retire, pin).
    #[serde(default)]
    pub option: String,
    /// A new end of the flight (RFC 3339).
    #[serde(default)]
    pub end: String,
    /// What to do with `option`: `retire`, `pin` or `unpin`.
    #[serde(default)]
    pub what: String,
}

fn read_form(body: &[u8]) -> Result<ActionForm, ApiError> {
    serde_urlencoded::from_bytes(body).map_err(|error| {
        ApiError::bad_request(format!(
            "cannot read the form: {error}; accepted fields: csrf, reason, budget, daily_cap, option, what, end"
        ))
    })
}

/// `POST /signout`: closes the session (CSRF checked).
async fn signout(State(dash): State<Dashboard>, headers: HeaderMap, body: Bytes) -> Response {
    let form = read_form(&body).unwrap_or_default();
    if let Ok(access) = dash.access(&headers, Scope::Read) {
        if access.check_csrf(&form.csrf).is_ok() {
            if let Some(id) = access.session_id() {
                dash.shared.sessions.close(id);
            }
        }
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/signin".to_owned()),
            (header::SET_COOKIE, session::clearing_cookie()),
        ],
        "signed out",
    )
        .into_response()
}

impl Dashboard {
    /// Who asks, for `scope`: a Bearer key, or a session's key.
    pub(crate) fn access(&self, headers: &HeaderMap, scope: Scope) -> Result<Access, ApiError> {
        session::access(self, headers, scope)
    }
}

/// `GET /`: the campaign list.
async fn list(State(dash): State<Dashboard>, headers: HeaderMap) -> Response {
    let access = match dash.access(&headers, Scope::Read) {
        Ok(access) => access,
        Err(error) => return refusal(error, "/"),
    };
    let state = dash.state.clone();
    let rendered =
        tokio::task::spawn_blocking(move || page::list(&state, &access.csrf_token())).await;
    match rendered {
        Ok(Ok(body)) => html(StatusCode::OK, body),
        Ok(Err(error)) => refusal(error, "/"),
        Err(error) => refusal(ApiError::internal(error), "/"),
    }
}

/// `GET /campaigns/{id}`: one campaign.
async fn campaign(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/campaigns/{}", page::url_encode(&id));
    let access = match dash.access(&headers, Scope::Read) {
        Ok(access) => access,
        Err(error) => return refusal(error, &here),
    };
    let state = dash.state.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let slot = state.campaign(&id)?;
        page::campaign(&state, &slot, &access)
    })
    .await;
    match rendered {
        Ok(Ok(body)) => html(StatusCode::OK, body),
        Ok(Err(error)) => refusal(error, &here),
        Err(error) => refusal(ApiError::internal(error), &here),
    }
}

/// What `series.json` takes.
#[derive(Debug, Deserialize)]
struct SeriesQuery {
    /// `minute` (default) or `hour`.
    resolution: Option<String>,
}

/// `GET /campaigns/{id}/series.json`: the campaign's rollups as columns, with the
/// markers (revisions, controls, budget changes) to draw on the charts.
async fn series(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    dash.access(&headers, Scope::Read)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "{}; accepted: resolution=minute|hour",
            rejection.body_text()
        ))
    })?;
    let resolution_ms = match query.resolution.as_deref() {
        None | Some("minute") => 60_000,
        Some("hour") => 3_600_000,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resolution {} is not kept; accepted: minute, hour",
                crate::error::quoted(other)
            )));
        }
    };
    let state = dash.state.clone();
    let body = tokio::task::spawn_blocking(move || {
        let slot = state.campaign(&id)?;
        page::series(&state, &slot, resolution_ms)
    })
    .await??;
    Ok(axum::Json(body).into_response())
}

/// One message of the live stream.
#[derive(Debug, Serialize, PartialEq)]
pub struct Live {
    /// Highest event sequence the engines applied.
    pub applied_seq: u64,
    /// Events committed and not yet applied.
    pub event_lag: u64,
    /// Decisions waiting for the decision log.
    pub decision_backlog: u64,
    /// `active`, `paused` or `archived`.
    pub status: String,
    /// The campaign's totals (holdout included) as rolled up.
    pub impressions: u64,
    /// Conversions (donors).
    pub donors: u64,
    /// Value of the conversions (raised).
    pub raised: f64,
    /// Cost.
    pub spend: f64,
}

/// The figures the live stream sends for `slot` now.
pub fn live_figures(state: &AppState, id: &str) -> Result<Live, ApiError> {
    let slot = state.campaign(id)?;
    let totals = page::totals(state, &slot)?;
    let applied = state.applied_seq();
    let last = state.log().last_seq().unwrap_or(applied);
    Ok(Live {
        applied_seq: applied,
        event_lag: last.saturating_sub(applied),
        decision_backlog: state.decision_backlog() as u64,
        status: page::status_of(&slot).to_owned(),
        impressions: totals.impressions,
        donors: totals.conversions,
        raised: totals.value,
        spend: totals.cost,
    })
}

/// `GET /campaigns/{id}/live`: server-sent events, one `figures` event every
/// [`LIVE_EVERY`] with [`Live`] as JSON.
async fn live(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    dash.access(&headers, Scope::Read)?;
    dash.state.campaign(&id)?;
    let state = dash.state.clone();
    let stream = futures_util::stream::unfold((state, id, true), |(state, id, first)| async move {
        if !first {
            tokio::time::sleep(LIVE_EVERY).await;
        }
        if state.closing() {
            return None;
        }
        let state2 = state.clone();
        let id2 = id.clone();
        let figures = tokio::task::spawn_blocking(move || live_figures(&state2, &id2))
            .await
            .ok()?
            .ok()?;
        let event = Event::default().event("figures").json_data(&figures).ok()?;
        Some((Ok::<_, std::convert::Infallible>(event), (state, id, false)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `POST /campaigns/{id}/controls/{action}`: pause, resume, retire, pin, unpin, budget,
/// end; scope `admin`, CSRF checked for a session. Answers 303 back to the campaign.
async fn control(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let access = dash.access(&headers, Scope::Admin)?;
    let form = read_form(&body)?;
    access.check_csrf(&form.csrf)?;
    let key_id = access.key_id().to_owned();
    let state = dash.state.clone();
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || {
        page::apply_control(&state, &id2, &action, &form, &key_id)?;
        state.dashboard().reports.forget(&id2);
        Ok::<_, ApiError>(())
    })
    .await??;
    Ok((
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("/campaigns/{}", page::url_encode(&id)),
        )],
        "done",
    )
        .into_response())
}
