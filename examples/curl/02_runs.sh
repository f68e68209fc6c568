#!/usr/bin/env bash
# Runs: one turn, a streamed turn (SSE), a follow-up that sees the history, the
# calculator agent's tool call, and the messages of the chat.
# The conversation flow of the tRPC session server seed.
#   BASE_URL=http://127.0.0.1:8000 ./02_runs.sh
source "$(dirname "$0")/lib.sh"

step "create a session with the echo agent (the default)"
SID=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "name": "chat"}' | field .session_id)
echo "$SID"

step "run one turn"
reply=$(api POST "/sessions/$SID/run" '{"message": "Hello, I need to perform some calculations."}')
echo "$reply"
expect "answer" "$(field .message.role <<<"$reply")" assistant

step "stream a turn: stream_start, stream_chunk..., stream_end"
sse=$(stream "/sessions/$SID/run_stream" '{"message": "What is 2+2?"}')
echo "$sse"
grep -q '"type":"stream_end"' <<<"$sse" || { echo "no stream_end" >&2; exit 1; }

step "a follow-up: the agent sees the whole chat"
api POST "/sessions/$SID/run" '{"message": "And what did I ask before?"}'

step "the calculator agent answers arithmetic through a recorded tool call"
CALC=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "agent": {"kind": "calculator"}}' \
    | field .session_id)
answer=$(api POST "/sessions/$CALC/run" '{"message": "What is 15 * 23?"}')
echo "$answer"
grep -q '345' <<<"$answer" || { echo "15 * 23 should be 345" >&2; exit 1; }
api GET "/sessions/$CALC/events?type=tool_called"

step "the chat's messages, oldest first"
api GET "/sessions/$SID/messages?limit=10"

api DELETE "/sessions/$SID" >/dev/null
api DELETE "/sessions/$CALC" >/dev/null
echo "done"
