#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document: Schemathesis
# (pinned below, installed into a virtualenv under target/) generates requests from
# /openapi.json and sends them to a real `tla serve` on 127.0.0.1, over a fresh data
# directory with one campaign that has decisions and events. It fails on any 5xx, any
# response whose status, content type, headers or body the document does not describe,
# a method or a missing key that is not refused as documented, and any network error.
# Two checks are left out, on purpose: `positive_data_acceptance` (the document cannot
# say which segment names or campaign specs a campaign accepts, so schema-valid
# requests are refused 400) and `negative_data_rejection` (a batch of events answers
# 200 and lists each malformed item as rejected, by design: docs/service.md).
# Needs Python 3 with venv and pip, and PyPI (first run only).
#
#   scripts/schemathesis.sh            # builds target/debug/tla if needed
#   TLA_BIN=target/release/tla scripts/schemathesis.sh
#   SCHEMATHESIS_MAX_EXAMPLES=200 scripts/schemathesis.sh   # a longer run
#   SCHEMATHESIS_SIGNED_EVENTS=0 scripts/schemathesis.sh    # no signed ids in generated events
#
# Runs in the test command of the README, after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-60}
seed=${SCHEMATHESIS_SEED:-1}
work=target/schemathesis
venv=$work/venv
python=${PYTHON:-python3}

started=$(date +%s)
mkdir -p "$work"
if ! "$venv/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION"; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

tla=${TLA_BIN:-${CARGO_TARGET_DIR:-target}/debug/tla}
if [[ -z ${TLA_BIN:-} ]]; then
    cargo build --quiet --locked --workspace --bins
fi

data=$(mktemp -d "${TMPDIR:-/tmp}/tla-schemathesis.XXXXXX")
server_pid=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
    rm -rf "$data"
}
trap stop_server EXIT

# A fresh admin key (tla_<12 hex>_<32 hex>), installed by the server at its start.
key=tla_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
TLA_ADMIN_KEY=$key TLA_LOG=${TLA_LOG:-warn} "$tla" serve --data "$data" --listen 127.0.0.1:0 \
    --seed 7 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

# The server prints its address once it listens.
address=
for _ in $(seq 1 300); do
    address=$(sed -n 's|^tla serving on \(http://[0-9.:]*\).*|\1|p' "$work/server.out")
    [[ -n $address ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$work/server.err" >&2
        echo "schemathesis: tla serve exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z $address ]]; then
    echo "schemathesis: tla serve did not listen within 30 s" >&2
    exit 1
fi

# One campaign with decisions, impressions and a conversion, so the report, version and
# decision paths have data; its id is pinned for every {id} in the document. The
# document is fetched with the key (its endpoint needs the read scope).
campaign=$("$python" - "$address" "$key" "$work/openapi.json" <<'EOF'
import json, sys, urllib.request

address, key, document = sys.argv[1:4]

def call(method, path, body=None, content_type="application/json"):
    request = urllib.request.Request(address + path, method=method, data=body)
    request.add_header("Authorization", "Bearer " + key)
    if body is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()

# With a flight around today, so decisions are paced (versions and skips), budget
# changes reach their rules and the report its plan.
import datetime
today = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
flight = (f'\n[flight]\nbudget = 100000\ndaily_cap = 5000\nstart = "{stamp(today - datetime.timedelta(days=30))}"\n'
          f'end = "{stamp(today + datetime.timedelta(days=300))}"\n').encode()
with open("examples/small.toml", "rb") as spec:
    created = json.loads(call("POST", "/v1/campaigns", spec.read() + flight, "application/toml"))
campaign = created["id"]
events = []
for segment in ["new-visitors", "past-donors", "volunteers"]:
    body = json.dumps({"segment": segment, "count": 5}).encode()
    decided = json.loads(call("POST", f"/v1/campaigns/{campaign}/decisions", body))
    for n, decision in enumerate(decided["decisions"]):
        events.append({"event_id": f"imp-{segment}-{n}", "decision_id": decision["decision_id"],
                       "type": "impression"})
        if n == 0:
            events.append({"event_id": f"conv-{segment}", "decision_id": decision["decision_id"],
                           "type": "conversion", "value": 25})
outcome = json.loads(call("POST", "/v1/events", json.dumps({"events": events}).encode()))
assert outcome["accepted"] == len(events), outcome
# Signed decision ids and segment names for the generator (SCHEMATHESIS_SIGNED_EVENTS).
import os
work = os.path.dirname(document)
fresh = []
for segment in ["new-visitors", "past-donors", "volunteers"]:
    body = json.dumps({"segment": segment, "count": 10}).encode()
    fresh += [d["decision_id"] for d in json.loads(
        call("POST", f"/v1/campaigns/{campaign}/decisions", body))["decisions"]]
with open(os.path.join(work, "decision_ids.dict"), "w") as out:
    out.writelines(f'"{decision_id}"\n' for decision_id in fresh)
with open(os.path.join(work, "event_ids.dict"), "w") as out:
    out.writelines(f'"{event["event_id"]}"\n' for event in events)
with open(os.path.join(work, "segments.dict"), "w") as out:
    out.writelines(f'"{segment}"\n' for segment in ["new-visitors", "past-donors", "volunteers"])
with open(document, "wb") as out:
    out.write(call("GET", "/openapi.json"))
print(campaign)
EOF
)

# The configuration: every {id} in the document is the campaign above, so the campaign
# paths answer with data rather than 404. Unless SCHEMATHESIS_SIGNED_EVENTS=0, most
# generated events carry a decision id the server signed, most decisions ask for a
# segment of the campaign (and so do most spend reports) and most corrections name a
# stored event, so generated amounts, times and counts reach the rules behind those
# checks (and the report then shows what they did to the models).
# No cache: each run stands alone (a cache would replay earlier failures, and it is kept
# in the working directory).
cat >"$work/config.toml" <<'EOF'
[cache]
enabled = false

[parameters]
"path.id" = "${TLA_CAMPAIGN}"
EOF
if [[ ${SCHEMATHESIS_SIGNED_EVENTS:-1} == 1 ]]; then
    cat >>"$work/config.toml" <<'EOF'
"body.events[*].decision_id" = { dictionary = "decision_ids", probability = 0.8 }
"body.segment" = { dictionary = "segments", probability = 0.8 }
"body.event_id" = { dictionary = "event_ids", probability = 0.8 }
"body.reports[*].segment" = { dictionary = "segments", probability = 0.8 }

[dictionaries.decision_ids]
from-file = "decision_ids.dict"

[dictionaries.segments]
from-file = "segments.dict"

[dictionaries.event_ids]
from-file = "event_ids.dict"
EOF
fi

# One worker: with several threads, CPython 3.11's ast module can raise a spurious
# "AST constructor recursion depth mismatch" inside Hypothesis (CPython gh-106905).
set +e
TLA_CAMPAIGN=$campaign "$venv/bin/st" --config-file "$work/config.toml" run "$work/openapi.json" \
    --url "$address" \
    --header "Authorization: Bearer $key" \
    --checks all \
    --exclude-checks positive_data_acceptance,negative_data_rejection \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 30 \
    --report junit --report-dir "$work/report" | tee "$work/run.log"
status=${PIPESTATUS[0]}
set -e
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis: tla serve died during the run" >&2
    cat "$work/server.err" >&2
    status=1
else
    # How far the generated requests went, from the server's own counters.
    "$python" - "$address" "$key" <<'EOF' || status=1
import sys, urllib.request
address, key = sys.argv[1:3]
request = urllib.request.Request(address + "/metrics", headers={"Authorization": "Bearer " + key})
text = urllib.request.urlopen(request, timeout=30).read().decode()
counts = dict(line.split() for line in text.splitlines() if line and not line.startswith("#"))
names = ["tla_decisions_total", "tla_events_accepted_total", "tla_events_rejected_total",
         "tla_events_duplicate_total", "tla_client_errors_total"]
print("schemathesis: the server counted " + ", ".join(f"{n.removeprefix('tla_')} {counts.get(n, '?')}" for n in names))
EOF
fi
cases=$(grep -A1 '^Test cases:' "$work/run.log" | tail -1 | sed 's/^ *//')
echo "schemathesis: ${cases:-no test case count}; $(( $(date +%s) - started )) s in all, exit status $status"
exit $status
