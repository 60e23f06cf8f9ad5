//! `tla events`: retract or correct a stored event of a running server, by its
//! `event_id`, through `POST /v1/campaigns/{id}/corrections` (a key with the `correct`
//! scope, or `admin`). The server records who (the key's id), when and why, and
//! rebuilds the campaign's model as a replay of the corrected log.
//!
//! `tla events retract CAMPAIGN EVENT_ID --reason TEXT --server URL --key KEY`
//! `tla events correct CAMPAIGN EVENT_ID --value AMOUNT --reason TEXT --server URL --key KEY`

use clap::{Args, Subcommand};

/// `tla events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Withdraw an event: the campaign learns as if it had never been sent.
    Retract(Target),
    /// Give a conversion (donation) or a cost (spend) a new amount.
    Correct {
        #[command(flatten)]
        target: Target,
        /// The new amount, a number >= 0.
        #[arg(long)]
        value: f64,
    },
}

/// Which event, why, and which server.
#[derive(Debug, Args)]
struct Target {
    /// The campaign id (as `GET /v1/campaigns` lists them).
    campaign: String,
    /// The `event_id` the event was sent with.
    event_id: String,
    /// Why (kept for the audit and listed by the report).
    #[arg(long)]
    reason: String,
    /// The running server, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER")]
    server: String,
    /// API key with the `correct` scope (or `admin`).
    #[arg(long, env = "TLA_KEY", hide_env_values = true)]
    key: String,
    /// Print the server's answer as JSON instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// How long to wait for the server (a correction may rebuild a large campaign).
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs `tla events`.
pub fn run(args: EventsArgs) -> anyhow::Result<()> {
    let (target, body) = match &args.command {
        EventsCommand::Retract(target) => (
            target,
            serde_json::json!({
                "event_id": target.event_id, "action": "retract", "reason": target.reason,
            }),
        ),
        EventsCommand::Correct { target, value } => {
            // JSON has no infinity or NaN: such a number would reach the server as null.
            if !value.is_finite() || *value < 0.0 {
                anyhow::bail!(
                    "--value {value} is not accepted: a finite number >= 0 (the server also \
                     holds a conversion to its campaign's max_value)"
                );
            }
            (
                target,
                serde_json::json!({
                    "event_id": target.event_id, "action": "correct", "value": value,
                    "reason": target.reason,
                }),
            )
        }
    };
    let campaign = &target.campaign;
    crate::client::check_campaign_id(campaign)?;
    let address = crate::report::server_address(&target.server)?;
    let path = format!("/v1/campaigns/{campaign}/corrections");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer: serde_json::Value = runtime.block_on(async {
        let mut client = crate::client::Client::new(address, &target.key);
        crate::client::within(
            SERVER_TIMEOUT,
            &target.server,
            &path,
            client.post_json(&path, &body),
        )
        .await
    })?;
    let text = if target.json {
        format!("{}\n", serde_json::to_string_pretty(&answer)?)
    } else {
        sentence(&answer)
    };
    crate::report::emit(&text)
}

/// The answer in one or two lines.
fn sentence(answer: &serde_json::Value) -> String {
    let correction = &answer["correction"];
    // A null old value is a conversion's unknown amount; a null new value, a retraction.
    let number = |value: &serde_json::Value, null: &str| match value.as_f64() {
        Some(x) => format!("{x}"),
        None => null.to_owned(),
    };
    let event = format!(
        "event {} ({}, seq {})",
        correction["event_id"].as_str().unwrap_or("?"),
        correction["event_type"].as_str().unwrap_or("?"),
        correction["event_seq"]
    );
    let mut text = if answer["repeated"] == serde_json::Value::Bool(true) {
        format!(
            "{event} was already retracted (by key {}, at {} ms); nothing changed\n",
            correction["key_id"].as_str().unwrap_or("?"),
            correction["at"]
        )
    } else {
        format!(
            "{} {event}: value {} -> {}\n",
            if correction["action"] == "retract" {
                "retracted"
            } else {
                "corrected"
            },
            number(&correction["old_value"], "unknown"),
            number(&correction["new_value"], "none")
        )
    };
    let rebuild = &answer["rebuild"];
    if rebuild.is_object() {
        text.push_str(&format!(
            "model rebuilt from seq {} to {} ({} events replayed)\n",
            rebuild["from_seq"], rebuild["to_seq"], rebuild["events_replayed"]
        ));
    } else if answer["repeated"] != serde_json::Value::Bool(true) {
        text.push_str("the learner had not applied the event yet; it applies it as corrected\n");
    }
    text
}
