#!/usr/bin/env bash
# Sessions: create (with an idempotency key), read, list with filters, update with
# If-Match, heartbeat, stats, time travel (?at=), close, delete.
# Flows of the session servers in the seeds (RoboCo, the A2A server, the tRPC server).
#   BASE_URL=http://127.0.0.1:8000 ./01_sessions.sh
source "$(dirname "$0")/lib.sh"

step "create a session (a repeat with the same Idempotency-Key returns the same one)"
body='{"user_id": "'"$USER_ID"'", "name": "My Work Session", "metadata": {"user": "john"},
       "tags": ["work"], "capabilities": ["python", "review"],
       "agent_name": "Cece", "agent_type": "Claude"}'
key="example-$$-$RANDOM"
created=$(curl -sS --fail-with-body -X POST "${AUTH[@]}" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: $key" -d "$body" "$BASE_URL/sessions")
echo "$created"
SID=$(field .session_id <<<"$created")
again=$(curl -sS --fail-with-body -X POST "${AUTH[@]}" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: $key" -d "$body" "$BASE_URL/sessions")
expect "idempotent create" "$(field .session_id <<<"$again")" "$SID"

step "read it"
api GET "/sessions/$SID"

step "list user123's sessions with the capability python"
listing=$(api GET "/sessions?user_id=$USER_ID&capability=python&limit=10")
echo "$listing"

step "update status and task (If-Match: the version we read)"
version=$(api GET "/sessions/$SID" | field .version)
curl -sS --fail-with-body -X PATCH "${AUTH[@]}" -H 'Content-Type: application/json' \
    -H "If-Match: $version" -d '{"status": "working", "current_task": "Code review"}' \
    "$BASE_URL/sessions/$SID"
echo
step "the same If-Match again is stale: 409 version_conflict"
stale=$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH "${AUTH[@]}" \
    -H 'Content-Type: application/json' -H "If-Match: $version" \
    -d '{"current_task": "other"}' "$BASE_URL/sessions/$SID")
expect "status of a stale update" "$stale" 409
echo "409"

step "heartbeat (keep-alive) and stats"
api POST "/sessions/$SID/heartbeat"
api GET "/sessions/$SID/stats"

step "time travel: the session as it was after its first event"
api GET "/sessions/$SID?at=1"

step "close: still readable, every further command refused"
api POST "/sessions/$SID/close"
refused=$(api_status PATCH "/sessions/$SID" '{"current_task": "more"}')
echo "$refused"
expect "status after close" "${refused%% *}" 409

step "delete"
api DELETE "/sessions/$SID"
gone=$(api_status GET "/sessions/$SID")
expect "status after delete" "${gone%% *}" 404
echo "session $SID was created, updated, closed and deleted"
echo "done"
