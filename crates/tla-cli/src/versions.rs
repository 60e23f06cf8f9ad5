//! `tla versions`: count, show, sample and list the versions of a campaign spec.
//!
//! The spec file is read here (the core does no I/O); its extension picks the format.
//! Every subcommand prints text for people or, with `--json`, one JSON document.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::SeedableRng;
use serde_json::{Value, json};
use tla_core::spec::{Campaign, CampaignSpec};

/// Most versions `sample` draws or `list` prints in one call.
const MAX_VERSIONS_PER_CALL: u64 = 100_000;

/// Most draws, on average, that rejection sampling may need per version
/// (`total / allowed`) before `sample` refuses.
const MAX_REJECTION_RATIO: u64 = 1_000_000;

/// Arguments of `tla versions`.
#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    #[command(subcommand)]
    pub command: VersionsCommand,
}

/// The spec file and the output format, shared by every subcommand.
#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// The campaign spec (.toml or .json).
    pub spec: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What to do with the versions of a spec.
#[derive(Debug, clap::Subcommand)]
pub enum VersionsCommand {
    /// Count versions: total, allowed after exclusions, asking to act, times segments.
    Count {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show one version by index: its options, rendered text and whether it asks to act.
    Show {
        #[command(flatten)]
        spec: SpecArgs,
        /// Version index (mixed radix over the components, first component most significant).
        index: u64,
    },
    /// Draw versions uniformly from the allowed space.
    Sample {
        #[command(flatten)]
        spec: SpecArgs,
        /// How many versions to draw (at most 100000).
        #[arg(long, default_value_t = 10)]
        n: u64,
        /// Random seed; the same seed gives the same versions. Default: from the clock
        /// (printed, so the draw can be repeated).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// List allowed versions in index order, starting at an index.
    List {
        #[command(flatten)]
        spec: SpecArgs,
        /// First index to consider; versions with a smaller index are skipped.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Most versions to print (at most 100000).
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
}

pub fn run(args: VersionsArgs) -> anyhow::Result<()> {
    let output = match args.command {
        VersionsCommand::Count { spec } => {
            let campaign = load(&spec.spec)?;
            let report = count_json(&spec.spec, &campaign);
            if spec.json {
                report
            } else {
                print!("{}", count_text(&campaign, &report));
                return Ok(());
            }
        }
        VersionsCommand::Show { spec, index } => {
            let campaign = load(&spec.spec)?;
            let total = campaign.total_versions();
            if index >= total {
                bail!(
                    "version index {index} is out of range for {}; accepted: 0 to {} ({} versions before exclusions)",
                    spec.spec.display(),
                    total - 1,
                    thousands(u128::from(total))
                );
            }
            let report = show_json(&campaign, index);
            if spec.json {
                report
            } else {
                print!("{}", show_text(&campaign, index));
                return Ok(());
            }
        }
        VersionsCommand::Sample { spec, n, seed } => {
            if n > MAX_VERSIONS_PER_CALL {
                bail!("--n {n} is too many; accepted: 0 to {MAX_VERSIONS_PER_CALL}");
            }
            let campaign = load(&spec.spec)?;
            let space = &campaign.design().space;
            let ratio = space.total() / space.allowed_count();
            if ratio > MAX_REJECTION_RATIO {
                bail!(
                    "{}: only 1 in {ratio} versions is allowed, too few for uniform sampling by rejection (at most 1 in {MAX_REJECTION_RATIO}); remove exclusions",
                    spec.spec.display()
                );
            }
            let seed = seed.unwrap_or_else(clock_seed);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let indices: Vec<u64> = (0..n).map(|_| space.sample_uniform(&mut rng)).collect();
            if spec.json {
                json!({
                    "spec": spec.spec.display().to_string(),
                    "seed": seed,
                    "versions": indices.iter().map(|&i| version_json(&campaign, i)).collect::<Vec<_>>(),
                })
            } else {
                println!("# seed {seed}: {n} versions drawn uniformly from the allowed versions");
                print_version_lines(&campaign, &indices);
                return Ok(());
            }
        }
        VersionsCommand::List {
            spec,
            offset,
            limit,
        } => {
            if limit > MAX_VERSIONS_PER_CALL {
                bail!("--limit {limit} is too many; accepted: 0 to {MAX_VERSIONS_PER_CALL}");
            }
            let campaign = load(&spec.spec)?;
            let (indices, next_offset) = list_allowed(&campaign, offset, limit);
            if spec.json {
                json!({
                    "spec": spec.spec.display().to_string(),
                    "offset": offset,
                    "limit": limit,
                    "versions": indices.iter().map(|&i| version_json(&campaign, i)).collect::<Vec<_>>(),
                    "next_offset": next_offset,
                })
            } else {
                print_version_lines(&campaign, &indices);
                match next_offset {
                    Some(next) => println!("# more from --offset {next}"),
                    None => println!("# end of the allowed versions"),
                }
                return Ok(());
            }
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Reads and validates a spec, choosing the format by extension.
pub(crate) fn load(path: &Path) -> anyhow::Result<Campaign> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str) -> Result<CampaignSpec, tla_core::spec::SpecError> =
        match extension.as_deref() {
            Some("toml") => CampaignSpec::from_toml_str,
            Some("json") => CampaignSpec::from_json_str,
            _ => bail!(
                "cannot tell the format of {}: accepted extensions are .toml and .json",
                path.display()
            ),
        };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read campaign spec {}", path.display()))?;
    let spec = parse(&text).with_context(|| format!("invalid campaign spec {}", path.display()))?;
    spec.validate()
        .with_context(|| format!("invalid campaign spec {}", path.display()))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// Up to `limit` allowed versions with index `>= offset`, in index order, and the index
/// to continue from (`None` at the end of the space).
///
/// An excluded index is skipped together with every index that shares its options up to
/// the later of the two components of the exclusion it breaks (they break it too), so a
/// long run of excluded versions costs one step, not one per version.
fn list_allowed(campaign: &Campaign, offset: u64, limit: u64) -> (Vec<u64>, Option<u64>) {
    let space = &campaign.design().space;
    let total = space.total();
    let strides: Vec<u64> = (0..space.components())
        .map(|k| {
            space.option_counts()[k + 1..]
                .iter()
                .map(|&n| u64::from(n))
                .product()
        })
        .collect();
    let mut indices = Vec::new();
    let mut index = offset;
    while index < total && (indices.len() as u64) < limit {
        let broken = space.exclusions().iter().find(|e| {
            space.option_of(index, e.first.component) == e.first.option
                && space.option_of(index, e.second.component) == e.second.option
        });
        match broken {
            None => {
                indices.push(index);
                index += 1;
            }
            Some(e) => {
                let stride = strides[e.first.component.max(e.second.component)];
                index = (index / stride + 1).saturating_mul(stride);
            }
        }
    }
    let next = (index < total).then_some(index);
    (indices, next)
}

/// `1234567` as `1,234,567`.
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn count_json(path: &Path, campaign: &Campaign) -> Value {
    let design = campaign.design();
    let segments = design.segments() as u128;
    json!({
        "spec": path.display().to_string(),
        "name": campaign.spec().name,
        "objective": design.objective.as_str(),
        "components": design.component_names.iter().zip(design.space.option_counts())
            .map(|(name, count)| json!({ "name": name, "options": count }))
            .collect::<Vec<_>>(),
        "total_versions": campaign.total_versions(),
        "exclusions": design.space.exclusions().len(),
        "allowed_versions": campaign.allowed_versions(),
        "acting_versions": campaign.acting_versions(),
        "acting_share": campaign.acting_share(),
        "segments": design.segments(),
        "version_segment_pairs": u128::from(campaign.allowed_versions()) * segments,
    })
}

fn count_text(campaign: &Campaign, report: &Value) -> String {
    let design = campaign.design();
    let components = design
        .component_names
        .iter()
        .zip(design.space.option_counts())
        .map(|(name, count)| format!("{count} {name}"))
        .collect::<Vec<_>>()
        .join(" x ");
    let allowed = campaign.allowed_versions();
    let pairs = u128::from(allowed) * design.segments() as u128;
    let mut out = String::new();
    out.push_str(&format!(
        "campaign:            {} ({})\n",
        campaign.spec().name,
        report["spec"].as_str().unwrap_or_default()
    ));
    out.push_str(&format!(
        "objective:           {}\n",
        design.objective.as_str()
    ));
    out.push_str(&format!("components:          {components}\n"));
    out.push_str(&format!(
        "total versions:      {}\n",
        thousands(u128::from(campaign.total_versions()))
    ));
    out.push_str(&format!(
        "allowed versions:    {} (after {} exclusion{})\n",
        thousands(u128::from(allowed)),
        design.space.exclusions().len(),
        if design.space.exclusions().len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    out.push_str(&format!(
        "ask to act:          {} ({:.1}% of allowed)\n",
        thousands(u128::from(campaign.acting_versions())),
        100.0 * campaign.acting_share()
    ));
    out.push_str(&format!("segments:            {}\n", design.segments()));
    out.push_str(&format!(
        "versions x segments: {} ({} allowed x {})\n",
        thousands(pairs),
        thousands(u128::from(allowed)),
        design.segments()
    ));
    out
}

fn version_json(campaign: &Campaign, index: u64) -> Value {
    json!({
        "index": index,
        "options": campaign.options_of(index).iter()
            .map(|(component, option)| json!({ "component": component, "option": option }))
            .collect::<Vec<_>>(),
        "rendered": campaign.render(index),
        "asks_to_act": campaign.asks_to_act(index),
        "ask": campaign.ask_amount(index),
    })
}

fn show_json(campaign: &Campaign, index: u64) -> Value {
    let exclusions = &campaign.spec().exclusions;
    json!({
        "index": index,
        "allowed": campaign.is_allowed(index),
        "excluded_by": campaign.violated_exclusions(index).iter()
            .map(|&e| json!({ "exclusion": e, "a": exclusions[e].a, "b": exclusions[e].b }))
            .collect::<Vec<_>>(),
        "options": campaign.chosen(index).iter().map(|chosen| json!({
            "component": chosen.component_name,
            "option": chosen.spec.name,
            "option_index": chosen.option,
            "text": chosen.spec.text,
            "asset": chosen.spec.asset,
            "tags": chosen.spec.tags,
            "ask": chosen.spec.ask,
            "asks_to_act": chosen.asks_to_act,
        })).collect::<Vec<_>>(),
        "rendered": campaign.render(index),
        "asks_to_act": campaign.asks_to_act(index),
        "ask": campaign.ask_amount(index),
    })
}

fn show_text(campaign: &Campaign, index: u64) -> String {
    let exclusions = &campaign.spec().exclusions;
    let violated = campaign.violated_exclusions(index);
    let mut out = format!(
        "version {index} of {}: {}\n",
        thousands(u128::from(campaign.total_versions())),
        if violated.is_empty() {
            "allowed".to_string()
        } else {
            let which = violated
                .iter()
                .map(|&e| {
                    format!(
                        "exclusions[{e}] ({} with {})",
                        exclusions[e].a, exclusions[e].b
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("not allowed, removed by {which}")
        }
    );
    let chosen = campaign.chosen(index);
    let width = chosen
        .iter()
        .map(|c| c.component_name.len())
        .max()
        .unwrap_or(0);
    for c in &chosen {
        let mut line = format!(
            "  {:width$}  {} [{}] {:?}",
            c.component_name,
            c.spec.name,
            c.option,
            c.spec.display_text()
        );
        if let Some(ask) = c.spec.ask {
            line.push_str(&format!("  ask ${ask}"));
        }
        if c.asks_to_act {
            line.push_str("  (asks to act)");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("rendered:    {}\n", campaign.render(index)));
    out.push_str(&format!(
        "asks to act: {}\n",
        if campaign.asks_to_act(index) {
            "yes"
        } else {
            "no"
        }
    ));
    out
}

/// One line per version: index, whether it asks to act, rendered text.
fn print_version_lines(campaign: &Campaign, indices: &[u64]) {
    let width = (campaign.total_versions() - 1).to_string().len();
    for &index in indices {
        let acts = if campaign.asks_to_act(index) {
            "acts"
        } else {
            "    "
        };
        println!("{index:>width$}  {acts}  {}", campaign.render(index));
    }
}

#[cfg(test)]
mod tests {
    use super::{list_allowed, thousands};
    use tla_core::spec::CampaignSpec;

    #[test]
    fn listing_skips_excluded_runs_and_matches_enumeration() {
        let campaign = CampaignSpec::from_toml_str(
            r#"
            version = 1
            name = "t"
            segments = [{ name = "s" }]
            components = [
              { name = "a", options = [{ name = "a0" }, { name = "a1" }, { name = "a2" }] },
              { name = "b", options = [{ name = "b0" }, { name = "b1" }] },
              { name = "c", options = [{ name = "c0" }, { name = "c1" }, { name = "c2" }, { name = "c3" }] },
            ]
            exclusions = [{ a = "a.a1", b = "b.b0" }, { a = "b.b1", b = "c.c2" }, { a = "a.a2", b = "c.c0" }]
            "#,
        )
        .unwrap()
        .validate()
        .unwrap();
        let expected: Vec<u64> = (0..campaign.total_versions())
            .filter(|&i| campaign.is_allowed(i))
            .collect();
        let (all, next) = list_allowed(&campaign, 0, 1000);
        assert_eq!(all, expected);
        assert_eq!(next, None);
        // Paging with next_offset visits the same versions.
        let mut paged = Vec::new();
        let mut offset = Some(0);
        while let Some(start) = offset {
            let (page, next) = list_allowed(&campaign, start, 3);
            paged.extend(page);
            offset = next;
        }
        assert_eq!(paged, expected);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(7_347_200), "7,347,200");
    }
}
