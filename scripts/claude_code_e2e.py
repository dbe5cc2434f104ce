#!/usr/bin/env python3
"""Claude Code, a real coding agent, as an OmniRelay client, served by an OpenAI-protocol upstream.

    python scripts/claude_code_e2e.py [--claude PATH]

What it does (all on 127.0.0.1):
1. starts a scripted fake OpenAI Chat Completions upstream: when the request offers a `Bash` tool
   it answers with a tool call running `echo omnirelay-tool-ok`; after a tool result it answers
   with text quoting that result; anything else gets a short text answer;
2. starts `omnirelay serve` with that upstream as an `openai` provider serving `gpt-4o-mini`;
3. runs Claude Code non-interactively (`claude -p … --output-format json`) with
   ANTHROPIC_BASE_URL pointing at the gateway and every model alias mapped to `gpt-4o-mini`;
4. checks that the agent ran the tool (the upstream received a tool result containing the marker)
   and that its final answer quotes it.

Claude Code comes from npm (`npm install @anthropic-ai/claude-code`): without --claude the script
installs it into a temporary directory. That download is why this is a script and not part of the
test suite (tests stay on loopback). Exit code 0 means the turn completed through the gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MARKER = "omnirelay-tool-ok"
SEEN: list[dict[str, Any]] = []


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    tools = {t.get("function", {}).get("name") for t in body.get("tools") or []}
    if last.get("role") == "tool":
        content = last.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        return {"content": f"The command printed: {text.strip()}"}
    if "Bash" in tools:
        args = json.dumps({"command": f"echo {MARKER}", "description": "Print the marker"})
        return {
            "tool_calls": [
                {"id": "call_cc1", "type": "function", "function": {"name": "Bash", "arguments": args}}
            ]
        }
    return {"content": "ok"}


async def chat(request: Request) -> Response:
    body = await request.json()
    SEEN.append(body)
    answer = _answer(body)
    finish = "tool_calls" if "tool_calls" in answer else "stop"
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    base = {"id": "chatcmpl-cc", "created": int(time.time()), "model": body.get("model")}
    if not body.get("stream"):
        message = {
            "role": "assistant",
            "content": answer.get("content"),
            **({"tool_calls": answer["tool_calls"]} if "tool_calls" in answer else {}),
        }
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
        )

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        data = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n"

    def events() -> Any:
        yield chunk({"role": "assistant", "content": ""})
        if "tool_calls" in answer:
            call = answer["tool_calls"][0]
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": "Bash", "arguments": ""},
                        }
                    ]
                }
            )
            args = call["function"]["arguments"]
            for i in range(0, len(args), 12):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 12]}}]})
        else:
            for word in answer["content"].split(" "):
                yield chunk({"content": word + " "})
        yield chunk({}, finish)
        tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        yield f"data: {json.dumps(tail)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_claude(explicit: str | None, workdir: Path) -> list[str]:
    if explicit:
        return [explicit]
    if shutil.which("npm") is None:
        sys.exit("npm is needed to install Claude Code (or pass --claude PATH)")
    print("installing @anthropic-ai/claude-code from npm …", flush=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(workdir), "@anthropic-ai/claude-code"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wrapper = workdir / "node_modules/@anthropic-ai/claude-code/cli-wrapper.cjs"
    return ["node", str(wrapper)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claude", help="path of an installed `claude` executable")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omnirelay-cc-"))
    fake_port, gw_port = free_port(), free_port()
    fake = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
            host="127.0.0.1",
            port=fake_port,
            log_level="warning",
        )
    )
    import threading

    threading.Thread(target=fake.run, daemon=True).start()
    config = work / "omnirelay.yaml"
    config.write_text(
        "master_key: sk-claude-code-e2e-master\n"
        "providers:\n"
        f"  - {{name: fake-openai, type: openai, base_url: 'http://127.0.0.1:{fake_port}/v1',"
        " api_keys: [sk-fake], models: [gpt-4o-mini]}\n"
    )
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omnirelay",
            "serve",
            "--config",
            str(config),
            "--port",
            str(gw_port),
            "--data-dir",
            str(work / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{gw_port}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        claude = find_claude(args.claude, work)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(work / "home"),
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{gw_port}",
            "ANTHROPIC_API_KEY": "sk-claude-code-e2e-master",
            "ANTHROPIC_MODEL": "gpt-4o-mini",
            "ANTHROPIC_SMALL_FAST_MODEL": "gpt-4o-mini",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gpt-4o-mini",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "gpt-4o-mini",
            "ANTHROPIC_DEFAULT_OPUS_MODEL": "gpt-4o-mini",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        (work / "home").mkdir()
        result = subprocess.run(
            [
                *claude,
                "-p",
                f"Run the shell command `echo {MARKER}` and tell me what it printed.",
                "--allowedTools",
                "Bash(echo:*)",
                "--output-format",
                "json",
                "--max-turns",
                "4",
            ],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=180,
        )
        print("claude exit code:", result.returncode)
        print(result.stdout[-2000:] or result.stderr[-2000:])
        tool_results = [m for body in SEEN for m in body.get("messages", []) if m.get("role") == "tool"]
        ran_tool = any(MARKER in json.dumps(m.get("content")) for m in tool_results)
        answered = MARKER in result.stdout
        print(
            f"upstream requests: {len(SEEN)}; tool result reached the upstream: {ran_tool}; "
            f"final answer quotes it: {answered}"
        )
        return 0 if result.returncode == 0 and ran_tool and answered else 1
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
        fake.should_exit = True
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
