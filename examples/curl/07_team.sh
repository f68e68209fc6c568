#!/usr/bin/env bash
# A team of agents on one task (the RoboCo seed): start a collaboration, follow its
# status until it ends, read the transcript; then the same as an SSE stream.
#   BASE_URL=http://127.0.0.1:8000 ./07_team.sh
source "$(dirname "$0")/lib.sh"

SID=$(api POST /sessions '{"user_id": "'"$USER_ID"'"}' | field .session_id)
api POST /context "{\"session_id\": \"$SID\", \"operation\": \"save\", \"key\": \"style\",
    \"data\": {\"tone\": \"professional\"}}" >/dev/null

team='{"agents": [
         {"name": "writer", "role": "Write the first draft", "agent": {"kind": "echo"}},
         {"name": "editor", "role": "Tighten the draft", "agent": {"kind": "echo"}}],
       "strategy": "pipeline", "max_rounds": 1}'

step "start a collaboration: 202 with its id"
started=$(api POST /collaborations "{\"session_id\": \"$SID\", \"team\": $team,
    \"task\": \"Write a blog post about AI collaboration\",
    \"context\": {\"style\": \"professional\", \"length\": \"medium\"}}")
echo "$started"
CID=$(field .collaboration_id <<<"$started")

step "poll its status until it is no longer running"
status=running
for _ in $(seq 1 100); do
    result=$(api GET "/collaborations/$CID?session_id=$SID")
    status=$(field .status <<<"$result")
    [ "$status" != running ] && break
    sleep 0.1
done
echo "$result"
expect "collaboration status" "$status" completed

step "the same task as a stream of each agent's turn"
sse=$(stream /collaborations/stream "{\"session_id\": \"$SID\", \"team\": $team,
    \"task\": \"Write a haiku about coding\"}")
echo "$(grep -c '"stream_chunk"' <<<"$sse") stream_chunk messages, and:"
grep -v -e '"stream_chunk"' -e '^$' <<<"$sse"
grep -q '"type":"collaboration_end"' <<<"$sse" || { echo "no collaboration_end" >&2; exit 1; }

api GET "/sessions/$SID/stats"
api DELETE "/sessions/$SID" >/dev/null
echo "done"
