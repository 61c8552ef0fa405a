"""Scenarios that drive `kestrel serve` with the official OpenAI Python client.

Usage: python openai_scenarios.py BASE_URL SCENARIO [ARG...]
Each scenario asserts what it checks and exits non-zero with a message on failure; some print a
JSON line for the Rust test (crates/kestrel-cli/tests/serve.rs) to compare against other output.
"""

import json
import os
import signal
import sys
import threading
import time

import httpx
import openai

BASE = sys.argv[1]
SCENARIO = sys.argv[2]
ARGS = sys.argv[3:]


def client(api_key=None, **kw):
    api_key = api_key or os.environ.get("KESTREL_TEST_API_KEY", "none")
    return openai.OpenAI(base_url=BASE + "/v1", api_key=api_key, max_retries=0, timeout=120, **kw)


def model_id(c):
    ids = [m.id for m in c.models.list().data]
    assert len(ids) == 1, ids
    return ids[0]


def expect(cond, msg):
    if not cond:
        print("FAILED: " + msg, file=sys.stderr)
        sys.exit(1)


def metric(name):
    text = httpx.get(BASE + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing from:\n{text}")


def chat(c, m, content, **kw):
    return c.chat.completions.create(
        model=m, messages=[{"role": "user", "content": content}], temperature=0, **kw
    )


def stream_text(c, m, content, max_tokens):
    s = chat(c, m, content, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True})
    parts, finish, usage, roles = [], None, None, []
    for ch in s:
        if ch.usage is not None:
            usage = ch.usage
        for choice in ch.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return "".join(parts), finish, usage, roles


def scenario_chat():
    c = client()
    m = model_id(c)
    r = chat(c, m, "What is the capital of France?", max_tokens=24)
    ch = r.choices[0]
    expect(r.object == "chat.completion", f"object {r.object}")
    expect(ch.message.role == "assistant", f"role {ch.message.role}")
    expect(len(ch.message.content) > 0, "empty answer")
    expect(ch.finish_reason in ("stop", "length"), f"finish_reason {ch.finish_reason}")
    u = r.usage
    expect(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 24, f"usage {u}")
    expect(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}")
    # A system message, and content given as a list of text parts.
    r2 = c.chat.completions.create(
        model=m,
        temperature=0,
        max_tokens=8,
        messages=[
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
        ],
    )
    expect(len(r2.choices[0].message.content) > 0, "empty answer with a system message")
    # Chat logprobs: the greedy token is the most likely one.
    r3 = chat(c, m, "Name a colour.", max_tokens=6, logprobs=True, top_logprobs=3)
    content = r3.choices[0].logprobs.content
    expect(len(content) == r3.usage.completion_tokens, "one logprob entry per token")
    for e in content:
        expect(len(e.top_logprobs) == 3, "three alternatives")
        expect(abs(e.logprob - max(t.logprob for t in e.top_logprobs)) < 1e-5, "greedy token is the top one")
    # The same request twice is deterministic at temperature 0.
    again = chat(c, m, "What is the capital of France?", max_tokens=24)
    expect(again.choices[0].message.content == ch.message.content, "greedy answers differ")
    # A seed makes sampling reproducible. (The first call warms the cache so the other two
    # evaluate the same prompt tokens: a reused prefix may change the logits' last bits.)
    story = [{"role": "user", "content": "Tell me a story."}]
    c.chat.completions.create(model=m, messages=story, max_tokens=1)
    a = c.chat.completions.create(model=m, messages=story, temperature=1.0, seed=7, max_tokens=16)
    b = c.chat.completions.create(model=m, messages=story, temperature=1.0, seed=7, max_tokens=16)
    expect(a.choices[0].message.content == b.choices[0].message.content, "same seed, different text")
    # Stop strings end the answer before the stop text.
    r4 = c.completions.create(model=m, prompt="1, 2, 3, 4, 5,", temperature=0, max_tokens=30, stop=[" 8"])
    expect(r4.choices[0].finish_reason == "stop" and " 8" not in r4.choices[0].text, f"stop: {r4.choices[0]}")


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "colors"],
    "additionalProperties": False,
}


def scenario_structured():
    """Structured output through the official client: response_format json_schema (strict) and
    json_object, llama.cpp's json_schema field, streamed too; every answer parses and
    validates (jsonschema). A GBNF grammar and an invalid schema get 400."""
    import jsonschema
    c = client()
    m = model_id(c)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in range(6):
        r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Describe a person as JSON."}],
                                      temperature=0.9, seed=seed, max_tokens=120, response_format=fmt)
        text = r.choices[0].message.content
        jsonschema.validate(json.loads(text), PERSON)
        expect(r.choices[0].finish_reason == "stop", f"finish {r.choices[0].finish_reason}: {text!r}")
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Describe a cat."}],
                                  temperature=0.7, seed=1, max_tokens=120, response_format={"type": "json_object"})
    expect(isinstance(json.loads(r.choices[0].message.content), dict), "json_object")
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Describe a person."}],
                                  temperature=0.7, seed=2, max_tokens=120, extra_body={"json_schema": PERSON})
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
    parts = []
    for ch in c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Describe a person as JSON."}],
                                        temperature=0.9, seed=3, max_tokens=120, response_format=fmt, stream=True):
        if ch.choices and ch.choices[0].delta.content:
            parts.append(ch.choices[0].delta.content)
    jsonschema.validate(json.loads("".join(parts)), PERSON)
    st, e = status_of(lambda: c.chat.completions.create(model=m, messages=[{"role": "user", "content": "x"}],
                                                          max_tokens=4, extra_body={"grammar": "root ::= \"a\""}))
    expect(st == 400 and "GBNF" in e.text, f"grammar: {st} {e.text if e else e}")
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    st, e = status_of(lambda: c.chat.completions.create(model=m, messages=[{"role": "user", "content": "x"}],
                                                          max_tokens=4, response_format=bad))
    expect(st == 400 and "invalid JSON schema" in e.text, f"bad schema: {st} {e.text if e else e}")


WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The current weather of a city",
                                      "parameters": WEATHER, "strict": True}},
    {"type": "function", "function": {"name": "get_time", "description": "The local time of a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"], "additionalProperties": False}}},
]


def check_calls(calls, names):
    """Each call names one of `names` and its arguments are JSON valid under that tool's schema."""
    import jsonschema
    expect(calls, "no tool calls")
    for call in calls:
        expect(call.type == "function" and call.id.startswith("call_"), f"call {call}")
        tool = next((t for t in TOOLS if t["function"]["name"] == call.function.name), None)
        expect(tool is not None and call.function.name in names, f"called {call.function.name}")
        schema = tool["function"]["parameters"]
        if tool["function"].get("strict"):
            # OpenAI's strict mode: no properties beyond those listed.
            schema = {**schema, "additionalProperties": False}
        jsonschema.validate(json.loads(call.function.arguments), schema)


def streamed_calls(**kw):
    """A streamed answer's content, its calls as (name, arguments) assembled from the deltas by
    index as a client does, and its finish reason."""
    c = client()
    calls, content, finish = {}, [], None
    for ch in c.chat.completions.create(stream=True, **kw):
        for choice in ch.choices:
            d = choice.delta
            if d.content:
                content.append(d.content)
            for tc in d.tool_calls or []:
                slot = calls.setdefault(tc.index, {"name": "", "arguments": "", "id": None})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return "".join(content), [calls[k] for k in sorted(calls)], finish


def scenario_tools():
    """Tool calling through the official client (greedy): `required` and a named function give
    calls whose arguments validate against the tool's schema, with finish_reason tool_calls; the
    streamed deltas assemble to the same calls; the call and a `tool` result go back in the
    conversation and the model answers; `none` renders no tools at all; bad tool requests get a
    400 naming the field. ARGS: "native" for a template with its own tool format; "any-answer"
    where the model is too small to be held to using the result (Gemma 3 270M)."""
    c = client()
    m = model_id(c)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    base = dict(model=m, messages=ask, tools=TOOLS, temperature=0, max_tokens=96)
    r = c.chat.completions.create(tool_choice="required", **base)
    ch = r.choices[0]
    expect(ch.finish_reason == "tool_calls", f"finish {ch.finish_reason}: {ch.message}")
    check_calls(ch.message.tool_calls, ["get_weather", "get_time"])
    expect(len(ch.message.tool_calls) == 1, "parallel_tool_calls is off by default")
    # A named function is the one called.
    named = {"type": "function", "function": {"name": "get_time"}}
    r2 = c.chat.completions.create(tool_choice=named, **base)
    check_calls(r2.choices[0].message.tool_calls, ["get_time"])
    # Streamed: the same calls, assembled from the deltas.
    text, calls, finish = streamed_calls(tool_choice="required", **base)
    want = [(t.function.name, t.function.arguments) for t in ch.message.tool_calls]
    expect([(k["name"], k["arguments"]) for k in calls] == want, f"streamed {calls} != {want}")
    expect(all(k["id"] and k["id"].startswith("call_") for k in calls), f"ids {calls}")
    expect(finish == "tool_calls" and text == (ch.message.content or ""), f"streamed {finish} {text!r}")
    # The round trip: the call and its result in the conversation; the model answers.
    call = ch.message.tool_calls[0]
    result = json.dumps({"city": "Paris", "temperature_c": 18, "sky": "sunny"})
    turn = ask + [ch.message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": result}]
    r3 = c.chat.completions.create(model=m, messages=turn, tools=TOOLS, temperature=0, max_tokens=60)
    a = r3.choices[0]
    if a.message.tool_calls:
        check_calls(a.message.tool_calls, ["get_weather", "get_time"])
    else:
        expect(a.message.content and a.finish_reason in ("stop", "length"), f"answer {a}")
    # The result reached the prompt: it is longer by at least the result's tokens.
    expect(r3.usage.prompt_tokens > r.usage.prompt_tokens + 10, f"{r3.usage} after {r.usage}")
    # Told not to call again, the model answers from the result.
    r5 = c.chat.completions.create(model=m, messages=turn, tools=TOOLS, tool_choice="none", temperature=0,
                                   max_tokens=60)
    said = r5.choices[0].message.content or ""
    expect(r5.choices[0].message.tool_calls is None, "calls under none")
    if "any-answer" not in ARGS:
        expect("18" in said or "sunny" in said.lower(), f"the answer does not use the result: {said!r}")
    # `none`: no tools in the prompt, a plain answer.
    plain = c.chat.completions.create(model=m, messages=ask, temperature=0, max_tokens=16)
    r4 = c.chat.completions.create(tool_choice="none", **{**base, "max_tokens": 16})
    expect(r4.choices[0].message.tool_calls is None, "calls under none")
    expect(r4.choices[0].message.content == plain.choices[0].message.content, "none differs from no tools")
    expect(r4.usage.prompt_tokens == plain.usage.prompt_tokens, "tools rendered under none")
    # Bad requests name their field.
    for kw, param in [
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ]:
        st, e = status_of(lambda: c.chat.completions.create(**{**base, "max_tokens": 4, **kw}))
        expect(st == 400 and e.json()["error"]["param"] == param, f"{kw}: {st} {e.text if e else e}")
    print(json.dumps({"call": [call.function.name, call.function.arguments], "auto": a.message.content,
                      "answer": said, "native": "native" in ARGS}))


def scenario_stream():
    c = client()
    m = model_id(c)
    q = "Write one sentence about the sea."
    whole = chat(c, m, q, max_tokens=40)
    text, finish, usage, roles = stream_text(c, m, q, 40)
    expect(roles == ["assistant"], f"roles {roles}")
    expect(text == whole.choices[0].message.content, f"streamed {text!r} != whole {whole.choices[0].message.content!r}")
    expect(finish == whole.choices[0].finish_reason, f"finish {finish}")
    expect(usage is not None and usage.completion_tokens == whole.usage.completion_tokens, f"usage {usage}")
    # The raw stream ends with data: [DONE].
    with httpx.stream("POST", BASE + "/v1/completions", json={"prompt": "Hello", "max_tokens": 3, "stream": True}) as r:
        lines = [l for l in r.iter_lines() if l]
    expect(lines[-1] == "data: [DONE]", f"last line {lines[-1]!r}")
    expect(all(l.startswith("data: ") for l in lines), "every line is a data line")
    # Streamed completion text equals the whole one.
    w = c.completions.create(model=m, prompt="The sea is", temperature=0, max_tokens=20)
    s = c.completions.create(model=m, prompt="The sea is", temperature=0, max_tokens=20, stream=True)
    st = "".join(ch.choices[0].text for ch in s if ch.choices)
    expect(st == w.choices[0].text, f"streamed completion {st!r} != {w.choices[0].text!r}")


def scenario_logprobs():
    c = client()
    m = model_id(c)
    r = c.completions.create(model=m, prompt="The capital of France is", temperature=0, max_tokens=6, logprobs=3)
    ch = r.choices[0]
    lp = ch.logprobs
    n = r.usage.completion_tokens
    expect(len(lp.tokens) == n and len(lp.token_logprobs) == n and len(lp.top_logprobs) == n, f"lengths {lp}")
    expect("".join(lp.tokens).startswith(ch.text) or ch.text.startswith("".join(lp.tokens)), "tokens spell the text")
    for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        expect(l <= 0, f"logprob {l}")
        expect(len(top) == 3, f"top {top}")
        expect(abs(l - max(top.values())) < 1e-5, f"greedy token {tok!r} is not the most likely: {top}")
    expect(lp.text_offset == sorted(lp.text_offset), "offsets increase")
    # echo: the prompt comes back first, with logprobs for its tokens (none for the first).
    e = c.completions.create(model=m, prompt="The capital of France is", temperature=0, max_tokens=6, logprobs=2, echo=True)
    ec = e.choices[0]
    expect(ec.text == "The capital of France is" + ch.text, f"echo text {ec.text!r}")
    elp = ec.logprobs
    expect(len(elp.tokens) == e.usage.prompt_tokens + e.usage.completion_tokens, "echo logprob count")
    expect(elp.token_logprobs[0] is None, "first prompt token has no logprob")
    expect(elp.token_logprobs[-n:] == lp.token_logprobs, "echo does not change the generated logprobs")
    # A prompt longer than one scoring chunk (64 tokens).
    long = "The history of the river valley is long and varied. " * 14
    le = c.completions.create(model=m, prompt=long, temperature=0, max_tokens=4, logprobs=1, echo=True)
    ln = c.completions.create(model=m, prompt=long, temperature=0, max_tokens=4, logprobs=1)
    expect(le.usage.prompt_tokens > 128, f"long prompt has {le.usage.prompt_tokens} tokens")
    lel = le.choices[0].logprobs
    expect(len(lel.tokens) == le.usage.prompt_tokens + le.usage.completion_tokens, "long echo count")
    expect(all(x is not None and x <= 0 for x in lel.token_logprobs[1:]), "long echo logprobs")
    expect(lel.token_logprobs[-le.usage.completion_tokens:] == ln.choices[0].logprobs.token_logprobs, "long echo changes the answer")
    # The repeated text is predictable the second time round.
    half = le.usage.prompt_tokens // 2
    first, second = lel.token_logprobs[1:half], lel.token_logprobs[half:le.usage.prompt_tokens]
    expect(sum(second) / len(second) > sum(first) / len(first), "repeated text is not more likely")
    # logit_bias (OpenAI) moves and bans tokens; ignore_eos (llama.cpp's extension) runs on.
    def toks(bias, n=4):
        r = c.completions.create(model=m, prompt="The capital of France is", temperature=0, max_tokens=n, logprobs=1, logit_bias=bias)
        return r.choices[0].logprobs.tokens
    boosted = toks({"1000": 100, "2000": 50})
    expect(len(set(boosted)) == 1, f"a +100 bias did not pick one token every time: {boosted}")
    banned = toks({"1000": -100, "2000": 50})
    expect(len(set(banned)) == 1 and banned[0] != boosted[0], f"banning token 1000 did not give token 2000: {banned}")
    short = chat(c, m, "Say hi.", max_tokens=60)
    expect(short.choices[0].finish_reason == "stop", "the short answer ran to max_tokens: pick another prompt")
    r = chat(c, m, "Say hi.", max_tokens=60, extra_body={"ignore_eos": True})
    expect(r.usage.completion_tokens == 60 and r.choices[0].finish_reason == "length", f"ignore_eos: {r.usage} {r.choices[0].finish_reason}")
    expect(r.choices[0].message.content.startswith(short.choices[0].message.content), "ignore_eos changed the answer before its end")
    print(json.dumps({"text": ch.text}))


def scenario_complete():
    """Print the greedy completion of ARGS[0] in ARGS[1] tokens (compared with `kestrel run`)."""
    c = client()
    m = model_id(c)
    r = c.completions.create(model=m, prompt=ARGS[0], temperature=0, max_tokens=int(ARGS[1]))
    print(json.dumps({"text": r.choices[0].text, "tokens": r.usage.completion_tokens}))


def scenario_concurrent():
    c = client()
    m = model_id(c)
    qs = ["Tell me about cats.", "What is 2 + 2?", "Describe the moon.", "Write a haiku about rain."]
    alone = [stream_text(c, m, q, 32)[0] for q in qs]
    results = [None] * 4
    errors = []

    def run(i):
        try:
            results[i] = stream_text(c, m, qs[i], 32)[0]
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(repr(ex))

    t0 = time.time()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    expect(not errors, f"errors: {errors}")
    for i in range(4):
        expect(results[i] == alone[i], f"client {i}: together {results[i]!r} != alone {alone[i]!r}")
    print(json.dumps({"seconds": time.time() - t0}))


def scenario_many():
    """ARGS: "complete" or "chat", a token count, then prompts (4 of them). Greedy answers to
    each alone, then all at once (one batch); fails when together differs from alone, and
    prints the answers for the Rust test to compare with `kestrel run` / `kestrel chat`."""
    c = client()
    m = model_id(c)
    kind, n, prompts = ARGS[0], int(ARGS[1]), ARGS[2:]

    def ask(p):
        if kind == "chat":
            return chat(c, m, p, max_tokens=n).choices[0].message.content
        r = c.completions.create(model=m, prompt=p, temperature=0, max_tokens=n)
        return r.choices[0].text

    alone = [ask(p) for p in prompts]
    together = [None] * len(prompts)
    errors = []

    def run(i):
        try:
            together[i] = ask(prompts[i])
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(repr(ex))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    expect(not errors, f"errors: {errors}")
    for i, p in enumerate(prompts):
        expect(together[i] == alone[i], f"{kind} {p!r}: together {together[i]!r} != alone {alone[i]!r}")
    print(json.dumps({"answers": alone}))


def scenario_prompt_batch():
    """Requests that arrive while a long prompt is being evaluated (a micro-batch per engine
    iteration) are admitted together, and their prompts share one pass: the batched-prompts
    counter grows by at least their number, and each answer equals its answer alone."""
    c = client()
    m = model_id(c)
    qs = ["Tell me about cats.", "What is 2 + 2?", "Describe the moon."]
    alone = [chat(c, m, q, max_tokens=8).choices[0].message.content for q in qs]
    long = "The quick brown fox jumps over the lazy dog. " * 140
    before = metric("kestrel_prompts_batched_total")
    results = [None] * len(qs)
    errors = []

    def ask(i):
        try:
            results[i] = chat(c, m, qs[i], max_tokens=8).choices[0].message.content
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(repr(ex))

    first = threading.Thread(target=lambda: c.completions.create(
        model=m, prompt=long, temperature=0, max_tokens=1))
    first.start()
    time.sleep(0.3)
    ts = [threading.Thread(target=ask, args=(i,)) for i in range(len(qs))]
    for t in ts:
        t.start()
    for t in ts + [first]:
        t.join()
    expect(not errors, f"errors: {errors}")
    for i in range(len(qs)):
        expect(results[i] == alone[i], f"{qs[i]!r}: together {results[i]!r} != alone {alone[i]!r}")
    batched = metric("kestrel_prompts_batched_total") - before
    expect(batched >= len(qs), f"{batched} prompts shared a pass")
    print(json.dumps({"batched": batched}))


def scenario_alias():
    """ARGS: the server's --alias. It names the model in /v1/models; any name is served."""
    c = client()
    ids = [m.id for m in c.models.list().data]
    expect(ids == [ARGS[0]], f"models {ids}")
    expect(httpx.get(BASE + "/v1/models/" + ARGS[0]).status_code == 200, "model card")
    r = chat(c, "gpt-4o", "Say hi.", max_tokens=4)
    expect(r.choices[0].message.content is not None, "no answer")
    print(json.dumps({"ids": ids}))


def scenario_conversation():
    """ARGS: a token count, then user turns. Greedy replies to the growing conversation, each
    reply kept (whitespace-trimmed, as `kestrel chat` keeps it) as the assistant's turn."""
    c = client()
    m = model_id(c)
    n, msgs, replies = int(ARGS[0]), [], []
    for turn in ARGS[1:]:
        msgs.append({"role": "user", "content": turn})
        r = c.chat.completions.create(model=m, messages=msgs, temperature=0, max_tokens=n)
        text = r.choices[0].message.content
        replies.append(text)
        msgs.append({"role": "assistant", "content": text.strip()})
    print(json.dumps({"replies": replies}))


def scenario_disconnect():
    c = client()
    m = model_id(c)
    before = metric("kestrel_generated_tokens_total")
    s = c.chat.completions.create(
        model=m,
        messages=[{"role": "user", "content": "Count from 1 to 1000, one number per line."}],
        temperature=0,
        max_tokens=3000,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    got = 0
    for _ in s:
        got += 1
        if got == 3:
            break
    s.close()
    # The server notices, cancels the sequence and frees its slot.
    deadline = time.time() + 10
    while time.time() < deadline and metric("kestrel_active_sequences") != 0:
        time.sleep(0.1)
    expect(metric("kestrel_active_sequences") == 0, "sequence still active after the client left")
    a = metric("kestrel_generated_tokens_total")
    time.sleep(0.5)
    b = metric("kestrel_generated_tokens_total")
    expect(a == b, "tokens still being generated after the client left")
    expect(a - before < 3000, f"generated {a - before} tokens: not cancelled")
    # A client that gives up on a non-streamed request is noticed too.
    before = metric("kestrel_generated_tokens_total")
    try:
        # ignore_eos: the model cannot end early on its own, so only the client leaving stops it.
        httpx.post(BASE + "/v1/completions", json={"prompt": "Count from 1 to 1000:", "max_tokens": 3000, "temperature": 0, "ignore_eos": True}, timeout=1.0)
        expect(False, "a 3000-token request finished within a second")
    except httpx.TimeoutException:
        pass
    deadline = time.time() + 10
    while time.time() < deadline and metric("kestrel_active_sequences") != 0:
        time.sleep(0.1)
    expect(metric("kestrel_active_sequences") == 0, "non-streamed sequence still active after the client left")
    expect(metric("kestrel_generated_tokens_total") - before < 3000, "non-streamed request not cancelled")
    r = chat(c, m, "Hi", max_tokens=4)
    expect(len(r.choices) == 1, "server answers after a disconnect")


def status_of(fn):
    try:
        fn()
    except openai.APIStatusError as e:
        return e.status_code, e.response
    return 200, None


def scenario_errors():
    c = client()
    m = model_id(c)
    checks = []

    def check(name, got, want):
        checks.append(name)
        expect(got == want, f"{name}: status {got}, want {want}")

    # 400: malformed JSON, wrong field types, bad values, prompt over the context.
    r = httpx.post(BASE + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    check("malformed JSON", r.status_code, 400)
    err = r.json()["error"]
    expect(set(err) == {"message", "type", "param", "code"}, f"error shape {err}")
    check("messages not a list", status_of(lambda: c.chat.completions.create(model=m, messages="hello"))[0], 400)
    check("temperature a string", status_of(lambda: c.chat.completions.create(model=m, messages=[{"role": "user", "content": "x"}], temperature="hot"))[0], 400)
    check("temperature out of range", status_of(lambda: c.chat.completions.create(model=m, messages=[{"role": "user", "content": "x"}], temperature=5))[0], 400)
    check("no messages", status_of(lambda: c.chat.completions.create(model=m, messages=[]))[0], 400)
    for bias in ({"abc": 1}, {"5": 200}, {"1000000000": 1}):
        check(f"logit_bias {bias}", status_of(lambda: c.completions.create(model=m, prompt="x", logit_bias=bias))[0], 400)
    check("prompt missing", httpx.post(BASE + "/v1/completions", json={"model": m}).status_code, 400)
    long = "hello " * 5000
    st, resp = status_of(lambda: c.completions.create(model=m, prompt=long, max_tokens=1))
    check("prompt over context", st, 400)
    expect(resp.json()["error"]["code"] == "context_length_exceeded", "context error code")
    # A value of the wrong shape: the 400 names the field (also inside a flattened group, and
    # by its path inside messages) and says what was expected in the API's words, not Rust's.
    for body, param, want in [
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, "max_tokens",
         "expected a non-negative integer"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
         "expected a string or an array of content parts"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": 7}, "stop",
         "expected a string or an array of strings"),
    ]:
        r = httpx.post(BASE + "/v1/chat/completions", json=body)
        check(f"bad {param}", r.status_code, 400)
        err = r.json()["error"]
        expect(err["param"] == param and want in err["message"], f"{param}: {err}")
        for rust in ["u64", "usize", "enum", "sequence", "line 1"]:
            expect(rust not in err["message"], f"{param}: Rust's words in {err['message']!r}")
    # One model is served: a request naming another is answered by it (llama-server's
    # behaviour); asking for another model's card, or an unknown route, is a 404.
    check("any model name", status_of(lambda: chat(c, "no-such-model", "x", max_tokens=2))[0], 200)
    check("unknown model card", httpx.get(BASE + "/v1/models/no-such-model").status_code, 404)
    check("unknown route", httpx.get(BASE + "/v1/nothing").status_code, 404)
    # 413: oversized body.
    big = httpx.post(BASE + "/v1/completions", content=b"x" * (5 << 20))
    check("oversized body", big.status_code, 413)
    expect("the limit is 4194304 bytes" in big.json()["error"]["message"], f"413 says {big.text}")
    # The server is still fine.
    check("still answering", status_of(lambda: chat(c, m, "Hi", max_tokens=2))[0], 200)
    print(json.dumps({"checked": checks}))


def scenario_auth():
    key = ARGS[0]
    check = lambda name, got, want: expect(got == want, f"{name}: status {got}, want {want}")  # noqa: E731
    good = client(api_key=key)
    m = model_id(good)
    check("right key", status_of(lambda: chat(good, m, "Hi", max_tokens=2))[0], 200)
    check("wrong key", status_of(lambda: chat(client(api_key="wrong"), m, "Hi", max_tokens=2))[0], 401)
    check("no key", httpx.post(BASE + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}).status_code, 401)
    check("health needs no key", httpx.get(BASE + "/health").status_code, 200)


def scenario_busy():
    """Server started with --parallel 1 --queue 1: of 4 long requests at once, some get 429."""
    c = client()
    m = model_id(c)
    statuses, retry_after = [], []
    lock = threading.Lock()

    def run():
        try:
            chat(c, m, "Count to 100.", max_tokens=40, extra_body={"ignore_eos": True})
            s = 200
        except openai.APIStatusError as e:
            s = e.status_code
            if s == 429:
                with lock:
                    retry_after.append(e.response.headers.get("retry-after"))
        with lock:
            statuses.append(s)

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
        time.sleep(0.05)
    for t in ts:
        t.join()
    expect(statuses.count(429) >= 1, f"statuses {statuses}")
    expect(statuses.count(200) >= 1, f"statuses {statuses}")
    expect(all(r is not None and int(r) >= 1 for r in retry_after), f"Retry-After {retry_after}")


def scenario_time_limit():
    """Server started with --time-limit 1: a long request ends after about a second."""
    c = client()
    m = model_id(c)
    t0 = time.time()
    r = chat(c, m, "Count from 1 to 1000, one number per line.", max_tokens=3000, extra_body={"ignore_eos": True})
    took = time.time() - t0
    expect(r.choices[0].finish_reason == "length", f"finish {r.choices[0].finish_reason}")
    expect(took < 10, f"took {took:.1f} s")
    expect(r.usage.completion_tokens < 3000, "limit did not apply")


def scenario_embeddings():
    c = client()
    m = model_id(c)
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue rose by 4%."]
    r = c.embeddings.create(model=m, input=texts)  # the client asks for base64
    f = c.embeddings.create(model=m, input=texts, encoding_format="float")
    vs = [d.embedding for d in f.data]
    expect(len(vs) == 3 and all(len(v) == len(vs[0]) for v in vs), "three vectors of one size")
    for a, b in zip(r.data, f.data):
        expect(max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6, "base64 and float agree")
    for v in vs:
        n = sum(x * x for x in v) ** 0.5
        expect(abs(n - 1) < 1e-4, f"norm {n}")
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    expect(dot(vs[0], vs[1]) > dot(vs[0], vs[2]), "similar sentences are closer")
    expect(f.usage.prompt_tokens > 0, "usage")


def scenario_sessions():
    """Server started with --session-dir ARGS[0]."""
    c = client()
    m = model_id(c)
    sysmsg = {"role": "system", "content": "You are a terse assistant. " * 20}
    msgs = [sysmsg, {"role": "user", "content": "My name is Ada. Say OK."}]
    r1 = c.chat.completions.create(model=m, messages=msgs, temperature=0, max_tokens=8, extra_body={"session_id": "ada"})
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content}, {"role": "user", "content": "What is my name?"}]
    # Another conversation in between; the session keeps its slot's cache.
    chat(c, m, "Unrelated question about rivers.", max_tokens=4)
    r2 = c.chat.completions.create(model=m, messages=msgs, temperature=0, max_tokens=8, extra_body={"session_id": "ada"})
    cached = r2.usage.prompt_tokens_details.cached_tokens
    expect(cached >= r1.usage.prompt_tokens, f"second turn reused {cached} of {r2.usage.prompt_tokens} tokens")
    # Save, disturb every slot, restore: the conversation's prefix comes back from the file.
    s = httpx.post(BASE + "/v1/sessions/ada/save")
    expect(s.status_code == 200, f"save: {s.status_code} {s.text}")
    info = s.json()
    expect(info["tokens"] > 0 and info["bytes"] > 0, f"save info {info}")
    for i in range(4):
        chat(c, m, f"Filler {i} about mountains.", max_tokens=2)
    rs = httpx.post(BASE + "/v1/sessions/ada/restore")
    expect(rs.status_code == 200 and rs.json()["tokens"] == info["tokens"], f"restore: {rs.status_code} {rs.text}")
    msgs3 = msgs + [{"role": "assistant", "content": r2.choices[0].message.content}, {"role": "user", "content": "Thanks."}]
    r3 = c.chat.completions.create(model=m, messages=msgs3, temperature=0, max_tokens=8, extra_body={"session_id": "ada"})
    expect(r3.usage.prompt_tokens_details.cached_tokens >= r2.usage.prompt_tokens, f"after restore reused {r3.usage.prompt_tokens_details.cached_tokens}")
    # The restored cache gives the same answer as a cold start.
    cold = c.chat.completions.create(model=m, messages=msgs3, temperature=0, max_tokens=8)
    expect(cold.choices[0].message.content == r3.choices[0].message.content, "restored answer differs from a cold one")
    # Refusals: unknown session, bad ids (no path can leave the directory).
    expect(httpx.post(BASE + "/v1/sessions/nobody/restore").status_code == 404, "unknown session")
    expect(httpx.post(BASE + "/v1/sessions/..%2F..%2Fetc%2Fpasswd/restore").status_code in (400, 404), "traversal id")
    expect(httpx.post(BASE + "/v1/sessions/a.b/save").status_code == 400, "dot in id")
    print(json.dumps({"file": info["file"]}))


def scenario_restore_fails():
    """Restore of ARGS[0] (a session id whose file the Rust test damaged) fails with 400."""
    r = httpx.post(BASE + f"/v1/sessions/{ARGS[0]}/restore")
    expect(r.status_code == 400, f"status {r.status_code}")
    print(json.dumps({"message": r.json()["error"]["message"]}))


def scenario_metrics():
    text = httpx.get(BASE + "/metrics").text
    for name in [
        "kestrel_requests_total",
        "kestrel_prompt_tokens_total",
        "kestrel_generated_tokens_total",
        "kestrel_queue_depth",
        "kestrel_time_to_first_token_seconds_bucket",
        "kestrel_token_latency_seconds_bucket",
    ]:
        expect(name in text, f"{name} missing")
    expect(metric("kestrel_generated_tokens_total") > 0, "tokens counted")


def kestrel_field(obj):
    """The response's `kestrel` field (not part of OpenAI's schema, so an extra)."""
    return (getattr(obj, "model_extra", None) or {}).get("kestrel") or {}


def split_stream(c, m, prompt, n, on_chunk=None):
    """Stream a greedy completion; return its text and the last chunk's split report."""
    s = c.completions.create(
        model=m, prompt=prompt, temperature=0, max_tokens=n, stream=True, extra_body={"ignore_eos": True}
    )
    parts, split, chunks = [], None, 0
    for ch in s:
        for choice in ch.choices:
            if choice.text:
                parts.append(choice.text)
                chunks += 1
                if on_chunk:
                    on_chunk(chunks)
            if choice.finish_reason:
                split = kestrel_field(ch).get("split")
    return "".join(parts), split


def scenario_split():
    """Server started with --split-remote. ARGS: where layers k.. should run ('remote' or
    'local': the split server is gone), a prompt, a token count. A completion and its streamed
    twin agree and carry the split report; what a split cannot serve is refused with 400."""
    c = client()
    m = model_id(c)
    local = ARGS[0] == "local"
    n = int(ARGS[2])
    r = c.completions.create(model=m, prompt=ARGS[1], temperature=0, max_tokens=n, extra_body={"ignore_eos": True})
    split = kestrel_field(r).get("split")
    expect(split is not None, f"no kestrel.split in {r}")
    expect(split["fell_back"] == local, f"fell_back {split}")
    expect((split["remote_steps"] > 0) != local, f"remote steps {split}")
    text, streamed = split_stream(c, m, ARGS[1], n)
    expect(text == r.choices[0].text, f"streamed {text!r} != {r.choices[0].text!r}")
    expect(streamed is not None and streamed["fell_back"] == local, f"streamed split {streamed}")
    st, resp = status_of(lambda: c.completions.create(model=m, prompt="x", max_tokens=2, echo=True, logprobs=1))
    expect(st == 400 and "split" in resp.json()["error"]["message"], f"echo with logprobs: {st}")
    st, _ = status_of(lambda: chat(c, m, "Hi", max_tokens=2, extra_body={"session_id": "s1"}))
    expect(st == 400, f"session_id: {st}")
    expect(status_of(lambda: chat(c, m, "Hi", max_tokens=2))[0] == 200, "chat after the refusals")
    print(json.dumps({
        "text": r.choices[0].text,
        "tokens": r.usage.completion_tokens,
        "split": split,
        "sequences": metric("kestrel_split_sequences_total"),
        "fallbacks": metric("kestrel_split_fallbacks_total"),
    }))


def scenario_split_cut():
    """Server started with --split-remote. ARGS: a prompt, a token count, the split server's
    pid, a chunk count: stream a completion and kill the split server after that many chunks.
    Prints the whole streamed text and the split report."""
    c = client()
    m = model_id(c)
    pid, after = int(ARGS[2]), int(ARGS[3])

    def cut(chunks):
        if chunks == after:
            os.kill(pid, signal.SIGKILL)

    text, split = split_stream(c, m, ARGS[0], int(ARGS[1]), cut)
    expect(split is not None, "no split report on the last chunk")
    print(json.dumps({"text": text, "split": split}))


globals()["scenario_" + SCENARIO]()
