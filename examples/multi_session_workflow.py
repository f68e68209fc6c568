"""Three agent sessions working together: a planner, a developer and a reviewer.

Start a server (``make serve`` or ``sessionhub serve``), then::

    python examples/multi_session_workflow.py [--url http://127.0.0.1:8000] [--api-key KEY]

It plays the planner / developer / reviewer scenario over the HTTP API and prints each
step: three sessions register as agents (name, type, capabilities), the planner shares
the project plan in shared memory and broadcasts the start, the developer reads the plan
and asks the planner a question (a request and its response form one thread), the
developer offers the code review as a task and the reviewer accepts it, the developer
hands the deployment off with its state in shared memory, and the statistics close the
run. Every message is a ``message_received`` event in the recipient's log.

Standard library only; copy :func:`api` into your own code. The sessions are closed at
the end (``--keep`` leaves them open), so later broadcasts of the same user do not reach
them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any


class ApiError(Exception):
    """An error answer of the API: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code", "unknown")
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


class Api:
    """A JSON client of the sessionhub API (blocking, standard library only)."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key

    def __call__(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        url = self.url + path
        params = {k: v for k, v in query.items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            raise ApiError(exc.code, body) from None


def step(number: int, title: str) -> None:
    print(f"\n== step {number}: {title}")


def show(label: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    print(f"   {label}: {text}")


def run(api: Api, keep: bool) -> None:
    health = api("GET", "/health")
    print(f"server {api.url}: {health['status']}, version {health['version']}")
    # One tag for the sessions of this run, so discovery finds only them.
    run_tag = f"workflow-{uuid.uuid4().hex[:8]}"

    step(1, "register three agent sessions")
    agents = {}
    for role, name, kind, capabilities in (
        ("planner", "Planner", "Claude", ["planning"]),
        ("developer", "Developer", "GPT-4", ["python", "api-design"]),
        ("reviewer", "Reviewer", "Claude", ["python", "review"]),
    ):
        session = api(
            "POST",
            "/sessions",
            {
                "name": f"{name} ({run_tag})",
                "agent_name": name,
                "agent_type": kind,
                "capabilities": capabilities,
                "tags": [run_tag],
                # The agents run elsewhere: the sessions keep their state and messages.
                "agent": {"kind": "none"},
            },
        )
        agents[role] = session["session_id"]
        user = session["user_id"]
        show(f"registered {role}", f"{name} ({kind}) as session {session['session_id']}")
    planner, developer, reviewer = agents["planner"], agents["developer"], agents["reviewer"]
    found = api("GET", "/sessions", tag=run_tag, capability="review")
    show("who can review?", [s["agent_name"] for s in found["sessions"]])

    step(2, "the planner shares the project plan in shared memory and broadcasts the start")
    plan = {"phase": "design", "tasks": ["architecture", "api-design", "database"]}
    entry = api(
        "PUT",
        "/memory/project_plan",
        {"session_id": planner, "value": plan, "type": "state", "tags": ["project", "active"]},
    )
    show("memory project_plan", f"version {entry['version']}, {json.dumps(entry['value'])}")
    sent = api(
        "POST",
        "/hub/messages",
        {
            "from_session": planner,
            "type": "broadcast",
            "subject": "Project started",
            "body": "Beginning the design phase",
        },
    )
    show("broadcast 'Project started' reached", f"{len(sent['delivered_to'])} sessions")

    step(3, "the developer reads the plan and asks the planner a question")
    api("PATCH", f"/sessions/{developer}", {"status": "working", "current_task": "API design"})
    read = api("GET", "/memory/project_plan", session_id=developer)
    show("developer read project_plan", read["value"])
    request = api(
        "POST",
        "/hub/messages",
        {
            "from_session": developer,
            "to_session": planner,
            "type": "request",
            "subject": "API design question",
            "body": "Should we use REST or GraphQL?",
        },
    )
    show("request sent", f"{request['message_id']} to the planner")
    inbox = api("GET", f"/sessions/{planner}/inbox", type="request")
    show("planner's inbox (requests)", [m["subject"] for m in inbox["messages"]])
    reply = api(
        "POST",
        "/hub/messages",
        {
            "from_session": planner,
            "type": "response",
            "reply_to": request["message_id"],
            "body": "REST, documented with OpenAPI.",
        },
    )
    thread = api("GET", f"/hub/threads/{reply['thread_id']}")
    show(
        "thread",
        " -> ".join(f"{m['type']}: {m['body']}" for m in thread["messages"]),
    )

    step(4, "the developer offers the code review; the reviewer accepts")
    api(
        "PUT",
        "/memory/api_code",
        {
            "session_id": developer,
            "value": "class API: ...",
            "type": "state",
            "tags": ["code", "ready-for-review"],
        },
    )
    offer = api(
        "POST",
        "/hub/messages",
        {
            "from_session": developer,
            "to_session": reviewer,
            "type": "task_offer",
            "subject": "Code review",
            "body": "API implementation ready",
            "data": {"files": ["api.py"], "tests": "passing"},
        },
    )
    show("task_offer sent", f"{offer['message_id']} with data {json.dumps(offer['data'])}")
    accept = api(
        "POST",
        "/hub/messages",
        {
            "from_session": reviewer,
            "type": "task_accept",
            "reply_to": offer["message_id"],
            "subject": "Starting review",
            "body": "Will review and provide feedback",
        },
    )
    api("PATCH", f"/sessions/{reviewer}", {"status": "working", "current_task": "Code review"})
    # session_id in a search filters by the session that wrote the entries.
    ready = api("GET", "/memory", tags="code,ready-for-review", session_id=developer)
    show("code the developer marked ready", [e["key"] for e in ready["entries"]])
    show("task_accept", f"{accept['message_id']} back to the developer")

    step(5, "the developer hands the deployment off to the reviewer")
    api(
        "PUT",
        "/memory/deploy_state",
        {"session_id": developer, "value": {"stage": "testing"}, "type": "task"},
    )
    api(
        "POST",
        "/hub/messages",
        {
            "from_session": developer,
            "to_session": reviewer,
            "type": "handoff",
            "subject": "Handing off deployment",
            "body": "I need to disconnect. Can you take over?",
            "data": {"task": "deploy-prod", "stage": "testing"},
        },
    )
    api("PATCH", f"/sessions/{developer}", {"status": "idle", "current_task": None})
    handoff = api("GET", f"/sessions/{reviewer}/inbox", type="handoff")["messages"][0]
    show("reviewer received handoff", handoff["data"])
    state = api("GET", "/memory/deploy_state", session_id=reviewer)
    show("reviewer read the developer's deploy_state", state["value"])
    events = api("GET", f"/sessions/{reviewer}/events", type="message_received")
    show("message_received events in the reviewer's log", len(events["events"]))

    step(6, "stats")
    listed = api("GET", "/sessions", tag=run_tag)
    for s in listed["sessions"]:
        show(s["agent_name"], f"{s['status']}, current task: {s['current_task'] or '-'}")
    stats = api("GET", "/hub/stats", user_id=user)
    show("sessions by status", stats["sessions"]["by_status"])
    show(f"user {stats['user_id']}: messages sent", stats["messages"])
    if stats.get("memory") is not None:
        show("memory", {k: stats["memory"][k] for k in ("entries", "writes", "by_type")})
    mine = api("GET", "/memory", session_id=developer)
    show("memory written by the developer", [e["key"] for e in mine["entries"]])

    if not keep:
        for sid in agents.values():
            api("POST", f"/sessions/{sid}/close")
        print("\nclosed the three sessions (--keep leaves them open)")
    print("workflow complete")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("SESSIONHUB_URL", "http://127.0.0.1:8000"),
        help="the server's base URL [env: SESSIONHUB_URL]",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SESSIONHUB_API_KEY"),
        help="API key, when the server has keys [env: SESSIONHUB_API_KEY]",
    )
    parser.add_argument("--keep", action="store_true", help="leave the sessions open")
    args = parser.parse_args()
    try:
        run(Api(args.url, args.api_key), args.keep)
    except ApiError as exc:
        print(f"the server refused a request: {exc}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach {args.url}: {exc.reason} (is the server running?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
