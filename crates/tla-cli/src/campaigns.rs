//! `tla campaigns budget`: change a running campaign's budget or daily cap through
//! `PATCH /v1/campaigns/{id}/budget` (an `admin` key). The server refuses a budget below
//! what the campaign has spent, records who, when and why, and never rewrites the spend
//! or the events already stored.
//!
//! `tla campaigns budget --campaign ID --budget 30000 [--daily-cap 2000 | --no-daily-cap]
//! --reason TEXT --server URL --key KEY`

use clap::{Args, Subcommand};

/// `tla campaigns`.
#[derive(Debug, Args)]
pub struct CampaignsArgs {
    #[command(subcommand)]
    command: CampaignsCommand,
}

#[derive(Debug, Subcommand)]
enum CampaignsCommand {
    /// Change a running campaign's budget or daily cap (audited).
    Budget(BudgetArgs),
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
    let CampaignsCommand::Budget(args) = args.command;
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
