#!/usr/bin/env bash
# The event log of a session: read it, append your own events (all or none, with
# If-Match), and follow it live over SSE, resuming with Last-Event-ID.
#   BASE_URL=http://127.0.0.1:8000 ./05_events.sh
source "$(dirname "$0")/lib.sh"

SID=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "agent": {"kind": "none"}}' \
    | field .session_id)
echo "a storage-only session (agent kind none): $SID"

step "a framework appends its own events; context_delta sets context keys in the same event"
version=$(api GET "/sessions/$SID" | field .version)
curl -sS --fail-with-body -X POST "${AUTH[@]}" -H 'Content-Type: application/json' \
    -H "If-Match: $version" \
    -d '{"events": [{"type": "app.step_done", "data": {"step": 1}},
                    {"type": "app.step_done", "data": {"step": 2},
                     "context_delta": {"progress": 2}}]}' \
    "$BASE_URL/sessions/$SID/events"
echo
api GET "/sessions/$SID/context/progress"

step "runs are refused on a storage-only session: 409 no_agent"
refused=$(api_status POST "/sessions/$SID/run" '{"message": "hi"}')
expect "status of a run" "${refused%% *}" 409
echo "$refused"

step "read the log: all of it, after a seq, one type, the last one"
api GET "/sessions/$SID/events"
api GET "/sessions/$SID/events?after=1&type=app.step_done"
api GET "/sessions/$SID/events?tail=1"

step "follow it over SSE (curl stops after 1 s), then resume after the last id seen"
sse=$(curl -s -N --max-time 1 "${AUTH[@]}" "$BASE_URL/sessions/$SID/events/stream" || true)
echo "$sse"
last=$(grep '^id: ' <<<"$sse" | tail -n1 | cut -d' ' -f2)
api POST "/sessions/$SID/events" '{"events": [{"type": "app.note", "data": {"after": "resume"}}]}'
resumed=$(curl -s -N --max-time 1 "${AUTH[@]}" -H "Last-Event-ID: $last" \
    "$BASE_URL/sessions/$SID/events/stream" || true)
echo "$resumed"
grep -q '"app.note"' <<<"$resumed" || { echo "resume missed the new event" >&2; exit 1; }
if grep -q "^id: $last\$" <<<"$resumed"; then
    echo "resume repeated event $last" >&2
    exit 1
fi

api DELETE "/sessions/$SID" >/dev/null
echo "done"
