# Shared by the curl examples: where the server is, how to call it, how to read JSON.
#
#   BASE_URL  the server (default http://127.0.0.1:8000)
#   API_KEY   sent as "Authorization: Bearer $API_KEY" when set (servers with --api-keys)
#   USER_ID   the user the sessions are created for (default user123); with API keys it
#             must be the key's user (or leave it to the key: an operator key sees all)
#
# Every call fails the script on an HTTP error (the API's error body goes to stderr);
# `api_status` is for the calls that are meant to be refused.

set -euo pipefail
shopt -s inherit_errexit  # a failing call inside $(...) stops the script too

BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
BASE_URL="${BASE_URL%/}"
USER_ID="${USER_ID:-user123}"
AUTH=()
if [ -n "${API_KEY:-}" ]; then
    AUTH=(-H "Authorization: Bearer ${API_KEY}")
fi

# api_status METHOD PATH [JSON_BODY] -> "STATUS BODY", never fails on an HTTP error
api_status() {
    local method=$1 path=$2 out
    if [ $# -ge 3 ]; then
        out=$(curl -sS -w '\n%{http_code}' -X "$method" "${AUTH[@]}" \
            -H 'Content-Type: application/json' -d "$3" "$BASE_URL$path")
    else
        out=$(curl -sS -w '\n%{http_code}' -X "$method" "${AUTH[@]}" "$BASE_URL$path")
    fi
    echo "$(tail -n1 <<<"$out") $(sed '$d' <<<"$out")"
}

# api METHOD PATH [JSON_BODY] -> the response body; an HTTP error stops the script,
# printing the API's error body on stderr
api() {
    local answer
    answer=$(api_status "$@")
    if [ "${answer%% *}" -ge 400 ]; then
        echo "$1 $2 -> ${answer}" >&2
        return 1
    fi
    echo "${answer#* }"
}

# stream PATH JSON_BODY -> the SSE lines of a POST (run_stream), as they arrive
stream() {
    curl -sS -N --fail-with-body -X POST "${AUTH[@]}" \
        -H 'Content-Type: application/json' -d "$2" "$BASE_URL$1"
}

# field PATH < JSON -> one value (jq when installed, else python3); PATH like .a.b or .a[0].b
field() {
    if command -v jq >/dev/null 2>&1; then
        jq -r "$1"
    else
        python3 -c '
import json, re, sys
value = json.load(sys.stdin)
for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", sys.argv[1]):
    value = value[name] if name else value[int(index)]
print(value if isinstance(value, str) else json.dumps(value))
' "$1"
    fi
}

# expect WHAT ACTUAL EXPECTED: stop the script when a result is not what the flow expects
expect() {
    if [ "$2" != "$3" ]; then
        echo "unexpected $1: got '$2', expected '$3'" >&2
        exit 1
    fi
}

step() { printf '\n== %s\n' "$*"; }
