"""Drives the pifleet gateway with the official `openai` and `ollama` Python packages,
unchanged, as a user's program would. Called by tests/tests/gateway_clients.rs:

    python gateway_clients.py CASE BASE_URL MODEL API_KEY [EXTRA]

Each case asserts what a user would see and prints one line per observation
(`FIRST`, `TASK <id>`, `RESULT <json>`), flushed at once so the Rust side can act
between chunks (kill an agent after the first one, say).
"""

import json
import sys
import urllib.request

import ollama
import openai


def say(*parts):
    print(*parts, flush=True)


def oa(base, key):
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)


def ol(base, key):
    return ollama.Client(host=base, headers={"Authorization": "Bearer " + key}, timeout=60)


def openai_all(base, model, key, _extra):
    c = oa(base, key)
    ids = [m.id for m in c.models.list().data]
    assert model in ids, ids
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    whole = c.chat.completions.create(model=model, messages=msgs, max_tokens=50, temperature=0.1, seed=1)
    text = whole.choices[0].message.content
    assert text, whole
    assert whole.choices[0].finish_reason == "stop", whole
    assert whole.usage.completion_tokens > 0 and whole.usage.total_tokens > whole.usage.completion_tokens, whole.usage
    chunks = list(c.chat.completions.create(model=model, messages=msgs, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text, (streamed, text)
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 1, "more than one chunk"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0, chunks[-1]
    assert any(ch.choices and ch.choices[0].finish_reason == "stop" for ch in chunks)
    comp = c.completions.create(model=model, prompt="Say hi", max_tokens=20)
    assert comp.choices[0].text, comp
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model=model, prompt="Say hi", stream=True))
    assert streamed == comp.choices[0].text, (streamed, comp.choices[0].text)
    emb = c.embeddings.create(model=model, input=["one", "two"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 0, emb
    assert all(isinstance(x, float) for x in emb.data[0].embedding)
    try:
        c.chat.completions.create(model="no-such-model", messages=msgs)
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as e:
        assert e.status_code == 404
    try:
        oa(base, "not-the-key-" + "x" * 16).models.list()
        raise AssertionError("a wrong key must fail")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
    say("RESULT", json.dumps({"text": text, "models": ids}))


def ollama_all(base, model, key, _extra):
    c = ol(base, key)
    names = [m.model for m in c.list().models]
    assert model in names, names
    ps = c.ps()
    assert isinstance(ps.models, list)
    shown = c.show(model)
    assert shown.details is not None and shown.modelfile, shown
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    whole = c.chat(model=model, messages=msgs, stream=False)
    assert whole.message.content and whole.done and whole.eval_count > 0, whole
    parts = list(c.chat(model=model, messages=msgs, stream=True))
    assert len(parts) > 2 and parts[-1].done and parts[-1].done_reason == "stop", parts[-1]
    assert "".join(p.message.content for p in parts) == whole.message.content
    gen = c.generate(model=model, prompt="Hi")
    assert gen.response and gen.done, gen
    gparts = list(c.generate(model=model, prompt="Hi", stream=True))
    assert "".join(p.response for p in gparts) == gen.response
    assert gparts[-1].total_duration is not None and gparts[-1].eval_count > 0, gparts[-1]
    emb = c.embed(model=model, input="hello")
    assert len(emb.embeddings) == 1 and len(emb.embeddings[0]) > 0, emb
    try:
        c.chat(model="no-such-model", messages=msgs)
        raise AssertionError("an unknown model must fail")
    except ollama.ResponseError as e:
        assert e.status_code == 404, e
    loaded = [m.model for m in c.ps().models]
    say("RESULT", json.dumps({"text": whole.message.content, "ps": loaded}))


def first_chunk(base, model, key, stats_url):
    """The first chunk is in the user's hands while the double still generates."""
    c = ol(base, key)
    seen = None
    text = ""
    for part in c.chat(model=model, messages=[{"role": "user", "content": "Go"}], stream=True):
        if seen is None:
            seen = json.load(urllib.request.urlopen(stats_url + "/test/stats", timeout=10))
            say("FIRST", json.dumps(seen))
        text += part.message.content
    say("RESULT", json.dumps({"at_first_chunk": seen, "text": text}))


def hang_up(base, model, key, _extra):
    """Reads two chunks, then drops the connection like a closed browser tab."""
    c = oa(base, key)
    stream = c.chat.completions.create(model=model, stream=True,
                                       messages=[{"role": "user", "content": "Go"}])
    say("TASK", stream.response.headers.get("x-pifleet-task"))
    got = 0
    for ch in stream:
        if ch.choices and ch.choices[0].delta.content:
            got += 1
        if got == 2:
            break
    stream.close()
    say("RESULT", json.dumps({"chunks": got}))


def follow(base, model, key, endpoint):
    """Streams one answer, saying FIRST after the first chunk; the Rust side may kill the
    node streaming it. Prints the text, or the error the client raised."""
    c = ol(base, key)
    text, first, error = "", False, None
    try:
        if endpoint == "chat":
            it = c.chat(model=model, messages=[{"role": "user", "content": "Go"}], stream=True)
            get = lambda p: p.message.content
        else:
            it = c.generate(model=model, prompt="Go", stream=True)
            get = lambda p: p.response
        last = None
        for part in it:
            if not first:
                first = True
                say("FIRST")
            text += get(part)
            last = part
        assert last is not None and last.done, "the stream must end with done"
    except ollama.ResponseError as e:
        error = str(e)
    say("RESULT", json.dumps({"text": text, "error": error}))


def generate_once(base, model, key, extra):
    client = ol(base, key)
    if extra == "on-go":
        # Python and its packages are loaded: the caller times the request by a line on stdin.
        say("READY")
        sys.stdin.readline()
    r = client.generate(model=model, prompt="interactive", stream=False)
    say("RESULT", json.dumps({"text": r.response}))


CASES = {
    "openai_all": openai_all,
    "ollama_all": ollama_all,
    "first_chunk": first_chunk,
    "hang_up": hang_up,
    "follow": follow,
    "generate_once": generate_once,
}

if __name__ == "__main__":
    case, base, model, key = sys.argv[1:5]
    CASES[case](base, model, key, sys.argv[5] if len(sys.argv) > 5 else None)
