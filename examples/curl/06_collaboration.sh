#!/usr/bin/env bash
# Sessions that work together (the BlackRoad registry / hub / shared-memory seed):
# register agents as sessions, find them by capability, mark one working, send a
# request and a reply in one thread, broadcast, and share memory between them.
#   BASE_URL=http://127.0.0.1:8000 ./06_collaboration.sh
source "$(dirname "$0")/lib.sh"

step "register three agent sessions of one user"
PLANNER=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "agent_name": "Planner",
    "agent_type": "Claude", "capabilities": ["planning"]}' | field .session_id)
DEV=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "agent_name": "Developer",
    "agent_type": "GPT-4", "capabilities": ["python"]}' | field .session_id)
REVIEWER=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "agent_name": "Reviewer",
    "agent_type": "Claude", "capabilities": ["python", "review"]}' | field .session_id)
echo "planner=$PLANNER dev=$DEV reviewer=$REVIEWER"

step "discover: who can review python?"
found=$(api GET "/sessions?user_id=$USER_ID&capability=review")
echo "$found"
expect "reviewers found" "$(field '.sessions[0].session_id' <<<"$found")" "$REVIEWER"

step "the developer is working on a task; a heartbeat keeps it alive"
api PATCH "/sessions/$DEV" '{"status": "working", "current_task": "API implementation"}'
api POST "/sessions/$DEV/heartbeat" >/dev/null

step "shared memory: the planner stores the plan, the developer reads it"
api PUT /memory/project_plan "{\"session_id\": \"$PLANNER\", \"type\": \"state\",
    \"value\": {\"phase\": \"design\", \"tasks\": [\"architecture\", \"api-design\"]},
    \"tags\": [\"project\", \"active\"]}"
plan=$(api GET "/memory/project_plan?session_id=$DEV")
echo "$plan"
expect "phase read back" "$(field .value.phase <<<"$plan")" design
api PUT /memory/project_plan "{\"session_id\": \"$PLANNER\", \"type\": \"state\",
    \"value\": {\"phase\": \"build\"}, \"tags\": [\"project\", \"active\"]}"
api GET "/memory/project_plan/history?session_id=$DEV"
step "search: the planner's entries whose key matches project_* and are tagged active"
entries=$(api GET "/memory?pattern=project_*&tags=active&session_id=$PLANNER")
echo "$entries"
expect "entry found" "$(field '.entries[0].key' <<<"$entries")" project_plan

step "a request from the developer, a reply from the planner: one thread"
sent=$(api POST /hub/messages "{\"from_session\": \"$DEV\", \"to_session\": \"$PLANNER\",
    \"type\": \"request\", \"subject\": \"API design question\",
    \"body\": \"Should we use REST or GraphQL?\"}")
echo "$sent"
MSG=$(field .message_id <<<"$sent")
THREAD=$(field .thread_id <<<"$sent")
api GET "/sessions/$PLANNER/inbox?type=request"
api POST /hub/messages "{\"from_session\": \"$PLANNER\", \"to_session\": \"$DEV\",
    \"type\": \"response\", \"reply_to\": \"$MSG\", \"body\": \"REST, with OpenAPI.\"}"
thread=$(api GET "/hub/threads/$THREAD")
echo "$thread"
expect "second message of the thread" "$(field '.messages[1].type' <<<"$thread")" response

step "hand the code to the reviewer, and broadcast to everyone"
api POST /hub/messages "{\"from_session\": \"$DEV\", \"to_session\": \"$REVIEWER\",
    \"type\": \"task_offer\", \"subject\": \"Code review\", \"body\": \"API ready\",
    \"data\": {\"files\": [\"api.py\"], \"tests\": \"passing\"}}"
api POST /hub/messages "{\"from_session\": \"$PLANNER\", \"type\": \"broadcast\",
    \"subject\": \"Project started\", \"body\": \"Beginning the design phase\"}"
api GET "/sessions/$REVIEWER/inbox"

step "each delivery is an event of the recipient's log"
api GET "/sessions/$REVIEWER/events?type=message_received"

for sid in "$PLANNER" "$DEV" "$REVIEWER"; do api DELETE "/sessions/$sid" >/dev/null; done
echo "done"
