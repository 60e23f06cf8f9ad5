//! `tla campaigns`: campaigns of a running server, through API v1 (`docs/service.md`,
//! walked through in `docs/walkthrough.md`). Each command takes `--server URL --key
//! KEY` (or `TLA_SERVER`, `TLA_KEY`) and `--json` for the server's answer as it is.
//!
//! - `create SPEC` (TOML, or JSON by its `.json` extension): `POST /v1/campaigns` with an
//!   `Idempotency-Key` (`--idempotency-key`, or one generated), so a retried create
//!   does not make a second campaign;
//! - `list [--all | --status STATUS]`, `show ID`: read them (a `read` key);
//! - `revise ID SPEC [--reason TEXT]`: `PUT /v1/campaigns/{id}/spec`, revision n+1;
//! - `pause ID`, `resume ID`, `archive ID`;
//! - `budget --campaign ID --budget 30000 [--daily-cap 2000 | --no-daily-cap]
//!   --reason TEXT`: change a running campaign's budget or daily cap through
//!   `PATCH /v1/campaigns/{id}/budget`. The server refuses a budget below what the
//!   campaign has spent, records who, when and why, and never rewrites the spend or the
//!   events already stored.

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

/// `tla campaigns`.
#[derive(Debug, Args)]
pub struct CampaignsArgs {
    #[command(subcommand)]
    command: CampaignsCommand,
}

#[derive(Debug, Subcommand)]
enum CampaignsCommand {
    /// Create a campaign from a spec file (TOML, or JSON by its `.json` extension);
    /// retried safely with its idempotency key.
    Create(CreateArgs),
    /// List the campaigns (archived ones with --all or --status archived).
    List(ListArgs),
    /// Show one campaign: status, revision, versions, events learned.
    Show(IdArgs),
    /// Replace a running campaign's spec: revision n+1, what was learned kept.
    Revise(ReviseArgs),
    /// Stop serving decisions until resumed.
    Pause(IdArgs),
    /// Serve decisions again.
    Resume(IdArgs),
    /// Stop serving for good; history and report kept, hidden from the default list.
    Archive(IdArgs),
    /// Change a running campaign's budget or daily cap (audited).
    Budget(BudgetArgs),
}

/// The server, the key and the output of every command.
#[derive(Debug, Args)]
struct ServerArgs {
    /// The running server, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER")]
    server: String,
    /// API key: `admin` to change campaigns, `read` to list and show them.
    #[arg(long, env = "TLA_KEY", hide_env_values = true)]
    key: String,
    /// Print the server's answer as JSON instead of sentences.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The spec file (docs/spec.md).
    spec: std::path::PathBuf,
    /// The key that makes a retry answer the campaign the first request made; one is
    /// generated (and printed) when absent.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Archived campaigns too.
    #[arg(long, conflicts_with = "status")]
    all: bool,
    /// Only campaigns of this status.
    #[arg(long, value_parser = ["active", "paused", "archived"])]
    status: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct IdArgs {
    /// The campaign id (as `tla campaigns list` shows them).
    campaign: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct ReviseArgs {
    /// The campaign id.
    campaign: String,
    /// The whole new spec (TOML, or JSON by its `.json` extension).
    spec: std::path::PathBuf,
    /// Why (kept with the revision).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct BudgetArgs {
    /// The campaign id (as `GET /v1/campaigns` lists them).
    #[arg(long)]
    campaign: String,
    /// The new budget of the whole flight (at least what the campaign has spent).
    #[arg(long, allow_negative_numbers = true)]
    budget: Option<f64>,
    /// The new daily cap (at most the budget).
    #[arg(long, conflicts_with = "no_daily_cap", allow_negative_numbers = true)]
    daily_cap: Option<f64>,
    /// Remove the daily cap.
    #[arg(long)]
    no_daily_cap: bool,
    /// Why (kept for the audit).
    #[arg(long)]
    reason: String,
    /// The running server, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER")]
    server: String,
    /// API key with the `admin` scope.
    #[arg(long, env = "TLA_KEY", hide_env_values = true)]
    key: String,
    /// Print the server's answer as JSON instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// How long to wait for the server.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `tla campaigns`.
pub fn run(args: CampaignsArgs) -> anyhow::Result<()> {
    match args.command {
        CampaignsCommand::Create(args) => create(args),
        CampaignsCommand::List(args) => list(args),
        CampaignsCommand::Show(args) => {
            let path = campaign_path(&args.campaign, "")?;
            let answer = request(&args.server, Method::GET, &path, &[], Vec::new())?.1;
            show(&args.server, &answer, campaign_lines(&answer))
        }
        CampaignsCommand::Revise(args) => revise(args),
        CampaignsCommand::Pause(args) => change(args, "pause", "paused"),
        CampaignsCommand::Resume(args) => change(args, "resume", "resumed"),
        CampaignsCommand::Archive(args) => change(args, "archive", "archived"),
        CampaignsCommand::Budget(args) => budget(args),
    }
}

/// `/v1/campaigns/{id}` + `tail`, the id checked first.
fn campaign_path(id: &str, tail: &str) -> anyhow::Result<String> {
    crate::client::check_campaign_id(id)?;
    Ok(format!("/v1/campaigns/{id}{tail}"))
}

/// One request to the server, bounded by [`SERVER_TIMEOUT`]: the status and the
/// JSON answer of a 2xx, or the server's refusal.
fn request(
    server: &ServerArgs,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<(hyper::StatusCode, Value)> {
    let address = crate::report::server_address(&server.server)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = crate::client::Client::new(address, &server.key);
        crate::client::within(
            SERVER_TIMEOUT,
            &server.server,
            path,
            client.send(method, path, headers, body),
        )
        .await
    })
}

/// Prints the answer as JSON with `--json`, else `text`.
fn show(server: &ServerArgs, answer: &Value, text: String) -> anyhow::Result<()> {
    if server.json {
        crate::report::emit(&format!("{}\n", serde_json::to_string_pretty(answer)?))
    } else {
        crate::report::emit(&text)
    }
}

/// A spec file and the content type it is sent with (JSON by a `.json` extension,
/// TOML otherwise), sent as it is: its line breaks kept.
fn spec_file(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the spec {}", path.display()))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Ok((
        bytes,
        if json {
            "application/json"
        } else {
            "application/toml"
        },
    ))
}

/// A new idempotency key: 128 random bits as hex.
fn new_idempotency_key() -> String {
    use rand::Rng as _;
    format!("tla-{:032x}", rand::rng().random::<u128>())
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let (body, content_type) = spec_file(&args.spec)?;
    let key = args.idempotency_key.unwrap_or_else(new_idempotency_key);
    let (status, answer) = request(
        &args.server,
        Method::POST,
        "/v1/campaigns",
        &[("content-type", content_type), ("idempotency-key", &key)],
        body,
    )?;
    let verb = if status == hyper::StatusCode::CREATED {
        "created"
    } else {
        "already created with this idempotency key (nothing new made)"
    };
    let text = format!(
        "{} {verb}\nidempotency key: {key} (a retry with it makes no second campaign)\n{}",
        answer["id"].as_str().unwrap_or("?"),
        campaign_lines(&answer)
    );
    show(&args.server, &answer, text)
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let path = match (&args.status, args.all) {
        (Some(status), _) => format!("/v1/campaigns?status={status}"),
        (None, true) => "/v1/campaigns?include_archived=true".to_owned(),
        (None, false) => "/v1/campaigns".to_owned(),
    };
    let answer = request(&args.server, Method::GET, &path, &[], Vec::new())?.1;
    let campaigns = answer["campaigns"].as_array().cloned().unwrap_or_default();
    let mut text = format!(
        "{:<16} {:<9} {:>8} {:>10} {:>10}  {}\n",
        "id", "status", "revision", "versions", "events", "name"
    );
    for campaign in &campaigns {
        text.push_str(&format!(
            "{:<16} {:<9} {:>8} {:>10} {:>10}  {}\n",
            campaign["id"].as_str().unwrap_or("?"),
            campaign["status"].as_str().unwrap_or("?"),
            campaign["revision"],
            campaign["versions"],
            campaign["events_learned"],
            campaign["name"].as_str().unwrap_or("")
        ));
    }
    if campaigns.is_empty() {
        text = "no campaigns (archived ones are listed with --all)\n".to_owned();
    }
    show(&args.server, &answer, text)
}

fn revise(args: ReviseArgs) -> anyhow::Result<()> {
    let mut path = campaign_path(&args.campaign, "/spec")?;
    if let Some(reason) = &args.reason {
        path.push_str(&format!("?reason={}", percent_encoded(reason)));
    }
    let (body, content_type) = spec_file(&args.spec)?;
    let answer = request(
        &args.server,
        Method::PUT,
        &path,
        &[("content-type", content_type)],
        body,
    )?
    .1;
    let summary = &answer["summary"];
    let names = |field: &str| {
        let list: Vec<&str> = summary[field]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    let text = format!(
        "{} is now at revision {}\n  added:    {}\n  retired:  {}\n  restored: {}\n  removed:  {}\n  segments added: {}, removed: {}\n  pins in force: {}\n",
        args.campaign,
        answer["revision"]["revision"],
        names("added_options"),
        names("retired_options"),
        names("restored_options"),
        names("removed_options"),
        names("added_segments"),
        names("removed_segments"),
        summary["pins"]
    );
    show(&args.server, &answer, text)
}

/// Pause, resume or archive.
fn change(args: IdArgs, action: &str, done: &str) -> anyhow::Result<()> {
    let path = campaign_path(&args.campaign, &format!("/{action}"))?;
    let answer = request(
        &args.server,
        Method::POST,
        &path,
        &[("content-type", "application/json")],
        b"{}".to_vec(),
    )?
    .1;
    let text = format!(
        "{} {done}; status {}\n",
        args.campaign,
        answer["status"].as_str().unwrap_or("?")
    );
    show(&args.server, &answer, text)
}

/// A campaign's lines for people.
fn campaign_lines(campaign: &Value) -> String {
    let components: Vec<String> = campaign["components"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| format!("{} ({})", c["name"].as_str().unwrap_or("?"), c["options"]))
                .collect()
        })
        .unwrap_or_default();
    let segments: Vec<&str> = campaign["segments"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "  name:       {}\n  status:     {}\n  revision:   {}\n  versions:   {} allowed of {}\n  components: {}\n  segments:   {}\n  events learned: {}\n",
        campaign["name"].as_str().unwrap_or("?"),
        campaign["status"].as_str().unwrap_or("?"),
        campaign["revision"],
        campaign["versions"],
        campaign["total_versions"],
        components.join(", "),
        segments.join(", "),
        campaign["events_learned"],
    )
}

/// `text` for a URL query: unreserved characters as they are, every other byte as
/// `%XX`.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn budget(args: BudgetArgs) -> anyhow::Result<()> {
    crate::client::check_campaign_id(&args.campaign)?;
    let mut body = serde_json::json!({ "reason": args.reason });
    if let Some(budget) = args.budget {
        body["budget"] = finite("--budget", budget)?;
    }
    if let Some(cap) = args.daily_cap {
        body["daily_cap"] = finite("--daily-cap", cap)?;
    }
    if args.no_daily_cap {
        body["daily_cap"] = serde_json::Value::Null;
    }
    if args.budget.is_none() && args.daily_cap.is_none() && !args.no_daily_cap {
        anyhow::bail!("nothing to change: give --budget, --daily-cap or --no-daily-cap");
    }
    let address = crate::report::server_address(&args.server)?;
    let path = format!("/v1/campaigns/{}/budget", args.campaign);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer: serde_json::Value = runtime.block_on(async {
        let mut client = crate::client::Client::new(address, &args.key);
        crate::client::within(
            SERVER_TIMEOUT,
            &args.server,
            &path,
            client.patch_json(&path, &body),
        )
        .await
    })?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&answer)?)
    } else {
        sentence(&args.campaign, &answer["change"])
    };
    crate::report::emit(&text)
}

/// A number as JSON, refused when JSON cannot carry it (it would reach the server as
/// null, which means "no daily cap").
fn finite(flag: &str, value: f64) -> anyhow::Result<serde_json::Value> {
    if !value.is_finite() {
        anyhow::bail!("{flag} {value} is not accepted: a finite, positive amount");
    }
    Ok(serde_json::Value::from(value))
}

/// The change in one line.
fn sentence(campaign: &str, change: &serde_json::Value) -> String {
    // A null daily cap is no cap.
    let amount = |value: &serde_json::Value| match value.as_f64() {
        Some(amount) => format!("{amount}"),
        None => "none".to_owned(),
    };
    format!(
        "campaign {campaign}: budget {} -> {}, daily cap {} -> {} (spent so far {})\n",
        amount(&change["old_budget"]),
        amount(&change["new_budget"]),
        amount(&change["old_daily_cap"]),
        amount(&change["new_daily_cap"]),
        amount(&change["spent"])
    )
}
