#!/usr/bin/env bash
# The context store: each session's isolated key/value memory, through its REST routes
# and through RoboCo's single POST /context endpoint (save / load / list / delete).
#   BASE_URL=http://127.0.0.1:8000 ./03_context.sh
source "$(dirname "$0")/lib.sh"

step "two sessions of one user"
A=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "name": "A"}' | field .session_id)
B=$(api POST /sessions '{"user_id": "'"$USER_ID"'", "name": "B"}' | field .session_id)
echo "A=$A B=$B"

step "PUT any JSON value under a key"
api PUT "/sessions/$A/context/plan" '{"steps": ["design", "build", "ship"]}'
api PUT "/sessions/$A/context/count" '3'

step "POST /context: save, load, list (the RoboCo flow)"
api POST /context "{\"session_id\": \"$A\", \"operation\": \"save\", \"key\": \"project_info\",
                    \"data\": {\"name\": \"My Project\", \"version\": \"1.0\"}}"
loaded=$(api POST /context "{\"session_id\": \"$A\", \"operation\": \"load\", \"key\": \"project_info\"}")
echo "$loaded"
expect "loaded name" "$(field .value.name <<<"$loaded")" "My Project"
api POST /context "{\"session_id\": \"$A\", \"operation\": \"list\"}"

step "isolation: session B sees none of A's keys"
missing=$(api_status GET "/sessions/$B/context/plan")
echo "$missing"
expect "status of another session's key" "${missing%% *}" 404
api GET "/sessions/$B/context"

step "delete a key, both ways"
api DELETE "/sessions/$A/context/count"
api POST /context "{\"session_id\": \"$A\", \"operation\": \"delete\", \"key\": \"plan\"}"
entries=$(api GET "/sessions/$A/context")
echo "$entries"
expect "keys left" "$(field '.entries.project_info.version' <<<"$entries")" "1.0"

api DELETE "/sessions/$A" >/dev/null
api DELETE "/sessions/$B" >/dev/null
echo "done"
