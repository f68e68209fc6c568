"""The agents that answer turns (echo, calculator, openai) and the registry that builds them."""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.agents import (
    AgentError,
    AgentRegistry,
    AgentSettings,
    AgentSpec,
    CalculationError,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnInput,
    default_registry,
    safe_eval,
)
from actors.agents import calculator as calculator_module
from tests.fake_openai import FakeOpenAI, FakeReply, FakeToolCall

# --- helpers ------------------------------------------------------------------------------


def make_turn(
    *texts: str,
    spec: AgentSpec | None = None,
    system_prompt: str | None = None,
    answers: list[str] | None = None,
) -> TurnInput:
    """A turn whose history alternates the given user texts with ``answers``."""
    answers = answers or []
    messages: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        messages.append({"role": "user", "content": text})
        if i < len(texts) - 1:
            answer = answers[i] if i < len(answers) else f"answer {i + 1}"
            messages.append({"role": "assistant", "content": answer})
    spec = spec or AgentSpec()
    return TurnInput(
        session_id="s-1",
        turn_id="t-1",
        chat_id="main",
        messages=messages,
        spec=spec,
        system_prompt=system_prompt,
    )


async def run(spec: AgentSpec, turn: TurnInput, settings: AgentSettings | None = None) -> list:
    agent = default_registry().create(spec, settings or AgentSettings())
    return [output async for output in agent.stream(turn)]


def text_of(outputs: list) -> str:
    return "".join(o.text for o in outputs if isinstance(o, TextDelta))


def settings_for(server: FakeOpenAI, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "openai_base_url": server.base_url,
        "openai_api_key": "sk-test",
        "timeout_s": 2.0,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
    }
    values.update(overrides)
    return AgentSettings(**values)


OPENAI = AgentSpec(kind="openai", model="test-model")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


# --- AgentSpec ----------------------------------------------------------------------------


def test_spec_defaults_to_echo_and_round_trips() -> None:
    """No agent object means echo; to_dict/from_dict round-trip every field."""
    assert AgentSpec.from_dict(None) == AgentSpec(kind="echo")
    spec = AgentSpec.from_dict(
        {"kind": "openai", "model": "m", "system_prompt": "be brief", "params": {"top_p": 0.5}}
    )
    assert spec.to_dict() == {
        "kind": "openai",
        "model": "m",
        "system_prompt": "be brief",
        "params": {"top_p": 0.5},
    }
    assert AgentSpec.from_dict(spec.to_dict()) == spec
    assert AgentSpec.from_dict({}).to_dict()["kind"] == "echo"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": 3}, "agent.kind"),
        ({"kind": ""}, "agent.kind"),
        ({"model": ["gpt"]}, "agent.model"),
        ({"system_prompt": 1}, "agent.system_prompt"),
        ({"params": [1, 2]}, "agent.params"),
        ({"temperature": 0.1}, "agent.temperature"),
        ("echo", "agent"),
    ],
)
def test_spec_rejects_wrong_types_naming_the_field(body: Any, field: str) -> None:
    """A wrong type or unknown field is a ValueError that names the field."""
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as info:
        AgentSpec.from_dict(body)
    assert info.value.field == field


# --- echo ---------------------------------------------------------------------------------


async def test_echo_streams_word_by_word() -> None:
    """Echo answers 'Echo: <message>' in one delta per word, spaces kept."""
    outputs = await run(AgentSpec(), make_turn("hello  big world"))
    assert all(isinstance(o, TextDelta) for o in outputs)
    assert [o.text for o in outputs] == ["Echo: ", "hello  ", "big ", "world"]
    assert text_of(outputs) == "Echo: hello  big world"


async def test_echo_is_deterministic() -> None:
    """The same history gives the same answer, chunk for chunk."""
    turn = make_turn("one", "two")
    assert await run(AgentSpec(), turn) == await run(AgentSpec(), turn)


async def test_echo_shows_it_sees_the_history() -> None:
    """A follow-up's answer says which turn of the chat it is."""
    assert text_of(await run(AgentSpec(), make_turn("first"))) == "Echo: first"
    answer = text_of(await run(AgentSpec(), make_turn("first", "second", "third")))
    assert answer == "Echo: third (turn 3)"


async def test_echo_delay_lets_a_turn_be_cancelled() -> None:
    """With delay_s the turn is observably running, and cancelling it stops it at once."""
    agent = default_registry().create(AgentSpec(params={"delay_s": 30}), AgentSettings())
    got: list[TextDelta] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for output in agent.stream(make_turn("a b c d")):
            got.append(output)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    assert [o.text for o in got] == ["Echo: "]


@pytest.mark.parametrize("delay", ["slow", -1, 1000, True])
def test_echo_rejects_a_bad_delay(delay: Any) -> None:
    """delay_s must be a number of seconds from 0 to 60."""
    with pytest.raises(ValueError, match="delay_s"):
        default_registry().validate(AgentSpec(params={"delay_s": delay}), AgentSettings())


# --- calculator ---------------------------------------------------------------------------


async def test_calculator_answers_through_a_tool_call() -> None:
    """'What is 2+2?' is a calculate call, its result, then '2+2 equals 4.' word by word."""
    outputs = await run(AgentSpec(kind="calculator"), make_turn("What is 2+2?"))
    call, result, *deltas = outputs
    assert isinstance(call, ToolCall)
    assert (call.name, call.arguments) == ("calculate", {"expression": "2+2"})
    assert result == ToolResult(call.call_id, "calculate", "4")
    assert [d.text for d in deltas] == ["2+2 ", "equals ", "4."]


@pytest.mark.parametrize(
    ("message", "expression", "value"),
    [
        ("compute (3 + 4) * 2", "(3 + 4) * 2", "14"),
        ("What is 2 + 3 * 4?", "2 + 3 * 4", "14"),
        ("what is 2 ** 3 ** 2", "2 ** 3 ** 2", "512"),
        ("-2 ** 2", "-2 ** 2", "-4"),
        ("What is 7 // 2 and 7 % 3?", "7 // 2", "3"),
        ("what is 10 / 4?", "10 / 4", "2.5"),
        ("What is 0.1 + 0.2?", "0.1 + 0.2", "0.3"),
        ("What is 1 / 3?", "1 / 3", "0.333333333333"),
        ("What is 6 times 7?", "6 * 7", "42"),
        ("What is 2^10?", "2**10", "1024"),
    ],
)
async def test_calculator_follows_arithmetic_rules(
    message: str, expression: str, value: str
) -> None:
    """Precedence, associativity, integer and true division come out as in arithmetic."""
    outputs = await run(AgentSpec(kind="calculator"), make_turn(message))
    assert outputs[0].arguments == {"expression": expression}
    assert outputs[1].content == value and not outputs[1].is_error
    assert text_of(outputs) == f"{expression} equals {value}."


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("What is 1/0?", "division by zero"),
        ("What is 5 % 0?", "division by zero"),
        ("compute 9 ** 9 ** 9", "too large"),
        ("compute 2 ** 100000", "too large"),
        ("What is 2 +* 3?", "not valid arithmetic"),
        ("What is 3 + + * 4?", "not valid arithmetic"),
        ("What is 4 / (2 - 2)?", "division by zero"),
    ],
)
async def test_calculator_explains_what_it_cannot_compute(message: str, reason: str) -> None:
    """A bad expression is an error tool result and a sentence, not an exception."""
    started = time.monotonic()
    outputs = await run(AgentSpec(kind="calculator"), make_turn(message))
    assert time.monotonic() - started < 1
    call, result = outputs[0], outputs[1]
    assert isinstance(call, ToolCall) and isinstance(result, ToolResult)
    assert result.is_error and reason in result.content
    assert text_of(outputs).startswith("I cannot compute ")
    assert reason in text_of(outputs)


async def test_calculator_without_arithmetic_says_so() -> None:
    """A message with no numbers gets a sentence and no tool call."""
    outputs = await run(AgentSpec(kind="calculator"), make_turn("tell me a joke"))
    assert all(isinstance(o, TextDelta) for o in outputs)
    assert "could not find any arithmetic" in text_of(outputs)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "(1).__class__",
        "abs(-1)",
        "x + 1",
        "[1, 2]",
        "1 if 1 else 2",
        "2 << 3",
        "1 == 1",
        "True + 1",
        "'a' * 3",
        "1j * 1j",
        "1" + "+1" * 200,
    ],
)
def test_safe_eval_refuses_everything_but_arithmetic(expression: str) -> None:
    """Names, calls, attributes, other operators, strings and long input are refused."""
    with pytest.raises(CalculationError):
        safe_eval(expression)


def test_safe_eval_refuses_results_that_are_not_real_or_finite() -> None:
    """A complex root or a float overflow is an error, not a strange answer."""
    for expression in ["(-8) ** 0.5", "1e308 * 10", "2.0 ** 5000"]:
        with pytest.raises(CalculationError):
            safe_eval(expression)


def test_calculator_never_uses_eval_or_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator walks the AST: no eval, exec or compile in its source or at run time."""
    tree = ast.parse(inspect.getsource(calculator_module))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert safe_eval("(3 + 4) * 2") == 14


# --- openai -------------------------------------------------------------------------------


async def test_openai_streams_text(fake: FakeOpenAI) -> None:
    """Content deltas arrive as TextDelta in order, and join to the model's answer."""
    fake.enqueue(FakeReply(text="The sky is blue."))
    outputs = await run(OPENAI, make_turn("Why?"), settings_for(fake))
    assert [o.text for o in outputs] == ["The ", "sky ", "is ", "blue."]
    request = fake.last_request
    assert request.json["stream"] is True
    assert request.json["model"] == "test-model"
    assert request.headers["Authorization"] == "Bearer sk-test"


async def test_openai_sends_system_prompt_and_history(fake: FakeOpenAI) -> None:
    """The system prompt comes first, then the whole chat, the new message last."""
    turn = make_turn(
        "My name is Ada.", "What is my name?", system_prompt="Be brief.", answers=["Hi Ada."]
    )
    await run(OPENAI, turn, settings_for(fake))
    assert fake.last_request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hi Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


async def test_openai_forwards_sampling_params(fake: FakeOpenAI) -> None:
    """temperature, top_p, max_tokens, stop... reach the server as given."""
    params = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": ["\n\n"], "seed": 7}
    spec = AgentSpec(kind="openai", params={**params, "model": "from-params"})
    await run(spec, make_turn("hi"), settings_for(fake))
    body = fake.last_request.json
    assert {k: body[k] for k in params} == params
    assert body["model"] == "from-params"
    assert "max_tool_rounds" not in body


async def test_openai_defaults_model_and_omits_missing_key(fake: FakeOpenAI) -> None:
    """Without a model it asks for gpt-4o-mini; without a key it sends no Authorization."""
    await run(AgentSpec(kind="openai"), make_turn("hi"), settings_for(fake, openai_api_key=None))
    assert fake.last_request.json["model"] == "gpt-4o-mini"
    assert "Authorization" not in fake.last_request.headers


async def test_openai_tool_call_round_trip(fake: FakeOpenAI) -> None:
    """A streamed tool call is run, reported, sent back, and the model then answers."""
    fake.enqueue(
        FakeReply.tool_call("calculate", {"expression": "6 * 7"}, id="call_abc"),
        FakeReply(text="It is 42."),
    )
    outputs = await run(OPENAI, make_turn("What is 6 times 7?"), settings_for(fake))
    assert outputs[:2] == [
        ToolCall("call_abc", "calculate", {"expression": "6 * 7"}),
        ToolResult("call_abc", "calculate", "42"),
    ]
    assert text_of(outputs) == "It is 42."
    first, second = fake.chat_requests
    assert first.json["tools"][0]["function"]["name"] == "calculate"
    assert second.messages[-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "calculate", "arguments": '{"expression": "6 * 7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "42"},
    ]


async def test_openai_reports_failing_and_unknown_tools_to_the_model(fake: FakeOpenAI) -> None:
    """A tool error or an unknown tool is an error result the model gets to read."""
    fake.enqueue(
        FakeReply(
            tool_calls=[
                FakeToolCall("calculate", {"expression": "1/0"}, id="a"),
                FakeToolCall("rm_rf", {}, id="b"),
                FakeToolCall("calculate", "{not json", id="c"),
            ]
        ),
        FakeReply(text="Sorry."),
    )
    outputs = await run(OPENAI, make_turn("go"), settings_for(fake))
    results = [o for o in outputs if isinstance(o, ToolResult)]
    assert [(r.call_id, r.is_error) for r in results] == [("a", True), ("b", True), ("c", True)]
    assert "division by zero" in results[0].content
    tool_messages = [m for m in fake.last_request.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["a", "b", "c"]
    assert text_of(outputs) == "Sorry."


async def test_openai_bounds_tool_rounds(fake: FakeOpenAI) -> None:
    """After max_tool_rounds the model is told to answer without tools."""
    fake.responder = lambda body: (
        FakeReply(text="Enough.")
        if body.get("tool_choice") == "none"
        else FakeReply.tool_call("calculate", {"expression": "1+1"})
    )
    spec = AgentSpec(kind="openai", params={"max_tool_rounds": 2})
    outputs = await run(spec, make_turn("loop"), settings_for(fake))
    assert len(fake.chat_requests) == 3
    assert len([o for o in outputs if isinstance(o, ToolCall)]) == 2
    assert text_of(outputs) == "Enough."


async def test_openai_retries_429_then_succeeds(fake: FakeOpenAI) -> None:
    """Rate-limited requests are retried, and the user only sees the final answer."""
    fake.enqueue(
        FakeReply.failure(429, retry_after=0),
        FakeReply.failure(429, retry_after=0),
        FakeReply(text="Finally."),
    )
    outputs = await run(OPENAI, make_turn("hi"), settings_for(fake))
    assert text_of(outputs) == "Finally."
    assert len(fake.chat_requests) == 3


async def test_openai_honours_retry_after(fake: FakeOpenAI) -> None:
    """A Retry-After header sets the wait before the next attempt."""
    fake.enqueue(FakeReply.failure(503, retry_after=0.3), FakeReply(text="ok"))
    await run(OPENAI, make_turn("hi"), settings_for(fake, retry_backoff_s=0.0))
    first, second = fake.chat_requests
    assert second.received_at - first.received_at >= 0.25


async def test_openai_gives_up_after_retries_on_500(fake: FakeOpenAI) -> None:
    """Persistent 5xx becomes upstream_error carrying the status and upstream message."""
    fake.enqueue(*[FakeReply.failure(500, "model overloaded")] * 5)
    with pytest.raises(AgentError) as info:
        await run(OPENAI, make_turn("hi"), settings_for(fake, max_retries=2))
    assert info.value.code == "upstream_error"
    assert "500" in info.value.message and "model overloaded" in info.value.message
    assert len(fake.chat_requests) == 3


async def test_openai_persistent_429_is_rate_limited(fake: FakeOpenAI) -> None:
    """Still rate-limited after the retries: the code says so."""
    fake.enqueue(*[FakeReply.failure(429, retry_after=0)] * 3)
    with pytest.raises(AgentError) as info:
        await run(OPENAI, make_turn("hi"), settings_for(fake, max_retries=1))
    assert info.value.code == "rate_limited"
    assert len(fake.chat_requests) == 2


async def test_openai_does_not_retry_a_client_error(fake: FakeOpenAI) -> None:
    """A 400 from the server is reported at once: retrying cannot fix the request."""
    fake.enqueue(FakeReply.failure(400, "bad model"))
    with pytest.raises(AgentError, match="400: bad model") as info:
        await run(OPENAI, make_turn("hi"), settings_for(fake))
    assert info.value.code == "upstream_error"
    assert len(fake.chat_requests) == 1


async def test_openai_wrong_key_is_reported_without_retry() -> None:
    """A 401 from the server is an upstream_error naming the status, tried once."""
    async with FakeOpenAI(api_key="sk-right") as server:
        with pytest.raises(AgentError, match="401") as info:
            await run(OPENAI, make_turn("hi"), settings_for(server, openai_api_key="sk-wrong"))
        assert info.value.code == "upstream_error"
        assert len(server.chat_requests) == 1


async def test_openai_timeout(fake: FakeOpenAI) -> None:
    """A server that does not answer in timeout_s gives upstream_timeout, without waiting on."""
    fake.enqueue(FakeReply(text="too late", delay_s=5))
    started = time.monotonic()
    with pytest.raises(AgentError) as info:
        await run(OPENAI, make_turn("hi"), settings_for(fake, timeout_s=0.3))
    assert info.value.code == "upstream_timeout"
    assert time.monotonic() - started < 2


async def test_openai_mid_stream_disconnect_is_an_error_not_a_retry(fake: FakeOpenAI) -> None:
    """Once text was shown, a broken stream is an error; it is not replayed."""
    fake.enqueue(FakeReply(text="one two three four", disconnect_after=3))
    got: list = []
    with pytest.raises(AgentError) as info:
        agent = default_registry().create(OPENAI, settings_for(fake))
        async for output in agent.stream(make_turn("hi")):
            got.append(output)
    assert info.value.code == "upstream_error"
    assert text_of(got) == "one two "
    assert len(fake.chat_requests) == 1


async def test_openai_disconnect_before_any_text_is_retried(fake: FakeOpenAI) -> None:
    """A connection dropped before anything was shown is retried like a 5xx."""
    fake.enqueue(FakeReply(text="lost", disconnect_after=0), FakeReply(text="found"))
    outputs = await run(OPENAI, make_turn("hi"), settings_for(fake))
    assert text_of(outputs) == "found"
    assert len(fake.chat_requests) == 2


async def test_openai_unreachable_server_is_unavailable() -> None:
    """Nothing listening on the configured port: upstream_unavailable after the retries."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = AgentSettings(
        openai_base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, retry_backoff_s=0.01
    )
    with pytest.raises(AgentError) as info:
        await run(OPENAI, make_turn("hi"), settings)
    assert info.value.code == "upstream_unavailable"


async def test_openai_accepts_a_non_streaming_answer(fake: FakeOpenAI) -> None:
    """A server that ignores stream=true and answers JSON still works."""
    fake.enqueue(FakeReply(text="whole answer", stream=False))
    outputs = await run(OPENAI, make_turn("hi"), settings_for(fake))
    assert text_of(outputs) == "whole answer"


async def test_openai_cancellation_stops_promptly(fake: FakeOpenAI) -> None:
    """Cancelling mid-stream ends the turn at once and hangs up on the server."""
    fake.enqueue(FakeReply(text="one two three four five", chunk_delay_s=0.5))
    agent = default_registry().create(OPENAI, settings_for(fake, timeout_s=30))
    first = asyncio.Event()

    async def consume() -> None:
        async for output in agent.stream(make_turn("hi")):
            if isinstance(output, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 2
    while fake.disconnects == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert fake.disconnects == 1


async def test_fake_openai_speaks_the_non_streaming_protocol(fake: FakeOpenAI) -> None:
    """The fake's JSON answer has the chat.completion shape the transports will rely on."""
    import aiohttp

    fake.enqueue(FakeReply.tool_call("calculate", {"expression": "1+1"}, id="c1", text="Sure."))
    async with (
        aiohttp.ClientSession() as http,
        http.post(fake.base_url + "/chat/completions", json={"messages": []}) as resp,
    ):
        body = await resp.json()
    message = body["choices"][0]["message"]
    assert body["object"] == "chat.completion"
    assert message["content"] == "Sure."
    assert message["tool_calls"][0]["function"] == {
        "name": "calculate",
        "arguments": '{"expression": "1+1"}',
    }
    assert body["choices"][0]["finish_reason"] == "tool_calls"


# --- registry -----------------------------------------------------------------------------


def test_default_registry_kinds() -> None:
    """echo, calculator and openai are built in; none is not an agent."""
    assert default_registry().kinds() == ["calculator", "echo", "openai"]


def test_validate_unknown_kind_lists_the_known_ones() -> None:
    """An unknown kind is refused with the kinds the server knows."""
    with pytest.raises(ValueError, match=r"unknown agent kind 'gpt'.*calculator, echo, openai"):
        default_registry().validate(AgentSpec(kind="gpt"), AgentSettings())


def test_validate_openai_needs_a_configured_server() -> None:
    """openai without a configured base URL is refused at creation, with the fix."""
    with pytest.raises(ValueError, match="--openai-base-url"):
        default_registry().validate(AgentSpec(kind="openai"), AgentSettings())
    default_registry().validate(
        AgentSpec(kind="openai"), AgentSettings(openai_base_url="http://127.0.0.1:1/v1")
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"temprature": 0.2}, "temprature"),
        ({"tools": ["shell"]}, "tools"),
        ({"max_tool_rounds": 0}, "max_tool_rounds"),
        ({"extra_body": {"model": "x"}}, "extra_body"),
    ],
)
def test_validate_openai_params(params: dict, field: str) -> None:
    """Bad openai params are refused at creation, naming the param."""
    settings = AgentSettings(openai_base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match=field) as info:
        default_registry().validate(AgentSpec(kind="openai", params=params), settings)
    assert info.value.field.startswith("agent.params")


def test_none_kind_validates_but_has_no_agent() -> None:
    """A storage-only session is valid, and asking for its agent is an error."""
    registry = default_registry()
    registry.validate(AgentSpec(kind="none"), AgentSettings())
    with pytest.raises(ValueError, match="storage-only"):
        registry.create(AgentSpec(kind="none"), AgentSettings())
    with pytest.raises(ValueError, match="reserved"):
        registry.register("none", lambda spec, settings: None)


class ShoutAgent:
    """A user's agent, registered from configuration in the test below."""

    def __init__(self, spec: AgentSpec, settings: AgentSettings) -> None:
        if spec.params.get("volume") == "quiet":
            raise ValueError("a shout cannot be quiet")

    async def stream(self, turn: TurnInput) -> AsyncIterator[TextDelta]:
        yield TextDelta(turn.messages[-1]["content"].upper())


def make_shout_agent(spec: AgentSpec, settings: AgentSettings) -> ShoutAgent:
    return ShoutAgent(spec, settings)


async def test_user_agent_registered_by_entry_point() -> None:
    """A factory named 'module:function' in config becomes a kind like the built-ins."""
    registry = default_registry()
    registry.load_entry_point("shout", "tests.test_agents:make_shout_agent")
    assert "shout" in registry.kinds()
    spec = AgentSpec(kind="shout")
    registry.validate(spec, AgentSettings())
    agent = registry.create(spec, AgentSettings())
    assert [o async for o in agent.stream(make_turn("hey"))] == [TextDelta("HEY")]
    with pytest.raises(ValueError, match="cannot be quiet"):
        registry.validate(AgentSpec(kind="shout", params={"volume": "quiet"}), AgentSettings())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.test_agents", "package.module:factory"),
        ("tests.no_such_module:make", "cannot import module"),
        ("tests.test_agents:no_such_factory", "has no attribute"),
        ("tests.test_agents:OPENAI", "not callable"),
    ],
)
def test_bad_entry_points_are_clear_errors(target: str, message: str) -> None:
    """A broken entry point string says what is wrong with it."""
    registry = AgentRegistry()
    with pytest.raises(ValueError, match=message):
        registry.load_entry_point("mine", target)
    assert registry.kinds() == []
