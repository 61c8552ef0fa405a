"""A routed request through the official OpenAI Python client (crates/kestrel-cli/tests/route.rs).

Usage: python openai_route.py BASE_URL EXPECTED_REMOTE_TEXT
Checks that a rule-routed chat completion (plain and streamed) comes back from the remote with
the kestrel routing field, and that a local one says it stayed local.
"""

import sys

import openai

BASE, REMOTE_TEXT = sys.argv[1], sys.argv[2]


def expect(cond, msg):
    if not cond:
        print("FAILED: " + msg, file=sys.stderr)
        sys.exit(1)


c = openai.OpenAI(base_url=BASE + "/v1", api_key="none", max_retries=0, timeout=120)
m = c.models.list().data[0].id
msgs = [{"role": "user", "content": "ROUTEME: what is the capital of France?"}]
r = c.chat.completions.create(model=m, messages=msgs, temperature=0, max_tokens=8)
k = (r.model_extra or {}).get("kestrel")
expect(k == {"routed": "remote", "reason": "rule_keyword"}, f"kestrel field {k!r}")
expect(r.choices[0].message.content == REMOTE_TEXT, f"content {r.choices[0].message.content!r}")

raw = c.chat.completions.with_raw_response.create(
    model=m, messages=msgs, temperature=0, max_tokens=8
)
expect(raw.headers.get("x-kestrel-routed") == "remote", f"headers {dict(raw.headers)!r}")

text, tags = "", []
for ch in c.chat.completions.create(
    model=m, messages=msgs, temperature=0, max_tokens=8, stream=True
):
    if ch.choices and ch.choices[0].delta.content:
        text += ch.choices[0].delta.content
    if (ch.model_extra or {}).get("kestrel"):
        tags.append(ch.model_extra["kestrel"]["routed"])
expect(text == REMOTE_TEXT, f"streamed {text!r}")
expect(tags and set(tags) == {"remote"}, f"stream tags {tags!r}")

r = c.chat.completions.create(
    model=m, messages=[{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=8
)
k = r.model_extra["kestrel"]
expect(k["routed"] == "local" and k["reason"] == "confident", f"local kestrel field {k!r}")
print("ok")
