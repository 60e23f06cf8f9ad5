//! # tla-server: the TLA HTTP service
//!
//! The service a campaign's ad server, landing page or email sender calls for every
//! impression: `POST /v1/campaigns/{id}/decisions` answers versions with their exact
//! propensities and signed decision ids; `POST /v1/events` takes impressions, clicks,
//! conversions and costs, acknowledges each only once it is committed to the event log,
//! and reports exact repeats as duplicates (an event id reused for another content is
//! refused for that item); `POST /v1/campaigns/{id}/spend` takes spend reports per
//! segment and period ([`spend`]); `PATCH /v1/campaigns/{id}/budget` changes a running
//! campaign's budget, audited ([`budget`]); a campaign with a `[flight]` is paced
//! ([`pacing`]): each decision is a version or a skip (do not bid), both with exact
//! propensities and logged; [`correction`] retracts or corrects a stored event and
//! rebuilds its campaign's model as a replay of the corrected log; `PUT
//! /v1/campaigns/{id}/spec` revises a running campaign ([`revise`]: new options join,
//! retired ones stop, pins hold, what was learned stays, and every stored event reaches
//! an engine through one path that maps an older revision's decision by name);
//! campaigns are created idempotently (`Idempotency-Key`) and archived, never deleted.
//! Decisions carry their revision and what renders each option. The rules of an event live in
//! [`event`]; the [`learner`] applies the log to each campaign's engine in order,
//! rebuilds decision distributions off the request path, and snapshots the models;
//! [`replay`] rebuilds the campaigns of a data directory without writing (the server
//! opens with it, and so does `tla report --data`). Errors carry a code, mapped to a
//! status in one place ([`error::ErrorCode::status`]); every endpoint but `/healthz`
//! needs an API key with the right scope ([`auth`]). Time comes from a [`Clock`]
//! passed in.
//!
//! [`app`] builds the router from a state, so most of the API is tested without a
//! socket; [`run`] serves it on a listener until a shutdown signal, with timeouts for
//! slow clients and a cap on open connections ([`connections`]), then stops the
//! learner, writes the pending decisions and a snapshot of every campaign. Decisions
//! are written by their own task ([`decision_log`]); a decision the log cannot take
//! is refused, not served.

#![warn(missing_docs)]

pub mod auth;
pub mod budget;
pub mod campaign;
pub mod change;
pub mod clock;
pub mod connections;
pub mod correction;
pub mod csv_text;
pub mod dashboard;
pub mod decision_id;
pub mod decision_log;
pub mod error;
pub mod event;
pub mod learner;
pub mod lease;
pub mod metrics;
pub mod openapi;
pub mod pacing;
pub mod platform;
pub mod replay;
pub mod report;
pub mod revise;
pub mod routes;
pub mod spend;
pub mod state;
pub mod stream_log;
pub mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post, put};
pub use clock::{Clock, ManualClock, SystemClock};
pub use state::{AppState, ServerConfig};

/// The router of API v1 over a state.
pub fn app(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .route(
            "/v1/campaigns",
            post(routes::create_campaign).get(routes::list_campaigns),
        )
        .route("/v1/campaigns/{id}", get(routes::get_campaign))
        .route("/v1/campaigns/{id}/pause", post(routes::pause))
        .route("/v1/campaigns/{id}/resume", post(routes::resume))
        .route("/v1/campaigns/{id}/archive", post(routes::archive))
        .route("/v1/campaigns/{id}/spec", put(routes::revise))
        .route("/v1/campaigns/{id}/revisions", get(routes::list_revisions))
        .route("/v1/campaigns/{id}/budget", patch(routes::change_budget))
        .route(
            "/v1/campaigns/{id}/versions/{index}",
            get(routes::get_version),
        )
        .route("/v1/campaigns/{id}/decisions", post(routes::decide))
        .route("/v1/campaigns/{id}/report", get(routes::report))
        .route("/v1/campaigns/{id}/model", get(routes::model_hash))
        .route(
            "/v1/campaigns/{id}/events/{event_id}",
            get(routes::get_event),
        )
        .route("/v1/campaigns/{id}/corrections", post(routes::correct))
        .route("/v1/campaigns/{id}/spend", post(routes::report_spend))
        .route(
            "/v1/campaigns/{id}/plans",
            post(routes::make_plan).get(routes::list_plans),
        )
        .route("/v1/campaigns/{id}/plans/{plan}", get(routes::get_plan))
        .route("/v1/campaigns/{id}/results", post(routes::import_results))
        .route("/v1/events", post(routes::ingest))
        .merge(dashboard::router(state.clone()))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, with the learner running
/// beside it, under the connection limits and timeouts of its config
/// ([`connections::serve`]); then lets requests in progress finish (for at most
/// `shutdown_grace`), applies every committed event, writes pending decisions and
/// snapshots every campaign.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let learner = tokio::spawn(learner::run(state.clone()));
    let decision_writer = tokio::spawn(decision_log::run(state.clone()));
    let served = connections::serve(
        listener,
        app(state.clone()),
        state.config(),
        state.metrics(),
        shutdown,
    )
    .await;
    state.begin_close();
    if let Err(error) = learner.await {
        tracing::error!(%error, "learner task failed");
    }
    if let Err(error) = decision_writer.await {
        tracing::error!(%error, "decision writer task failed");
    }
    let unlogged = state.decision_backlog();
    if unlogged > 0 {
        tracing::error!(
            unlogged,
            "decisions served could not be written to the decision log before exit; \
             those that stored events refer to are restored at the next start"
        );
    }
    served
}
