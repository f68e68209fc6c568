#!/usr/bin/env bash
# Several chats in one session, each with its own agent and system prompt; switching;
# pause and resume; stats; close. The session-manager flow of the Robota seed.
#   BASE_URL=http://127.0.0.1:8000 ./04_chats.sh
source "$(dirname "$0")/lib.sh"

step "a session starts with one chat, main"
SID=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "name": "AI Assistant Session",
                           "metadata": {"language": "en"}, "tags": ["support"]}' \
    | field .session_id)
api GET "/sessions/$SID/chats"

step "create a second chat with its own system prompt"
chat=$(api POST "/sessions/$SID/chats" '{"name": "Technical Support",
        "system_prompt": "You are a technical support specialist.", "max_messages": 100}')
echo "$chat"
CHAT=$(field .chat_id <<<"$chat")

step "talk in each chat: histories stay apart"
api POST "/sessions/$SID/run" '{"message": "Hello from main"}'
api POST "/sessions/$SID/run" "{\"message\": \"My printer is broken\", \"chat_id\": \"$CHAT\"}"
api POST "/sessions/$SID/run" "{\"message\": \"It still is\", \"chat_id\": \"$CHAT\"}"
api GET "/sessions/$SID/messages?chat_id=$CHAT"

step "switch the current chat"
api POST "/sessions/$SID/chats/$CHAT/switch"
current=$(api GET "/sessions/$SID/chats" | field .current_chat_id)
expect "current chat" "$current" "$CHAT"

step "pause: runs are refused with 409 session_paused; resume"
api POST "/sessions/$SID/pause"
paused=$(api_status POST "/sessions/$SID/run" '{"message": "anyone?"}')
echo "$paused"
expect "status while paused" "${paused%% *}" 409
api POST "/sessions/$SID/resume"

step "stats, then delete the extra chat and close the session"
api GET "/sessions/$SID/stats"
api DELETE "/sessions/$SID/chats/$CHAT"
api POST "/sessions/$SID/close"
api DELETE "/sessions/$SID" >/dev/null
echo "done"
