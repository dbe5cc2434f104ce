"""Answers of the fake Gemini API: deterministic parts, usage, stream chunks, failure modes."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from typing import Any

from starlette.responses import Response

from .validation import GEN_KEYS, THINKING_KEYS, Invalid, check_contents, check_tools, get, known

THOUGHT_TOKENS = 5


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(obj: Any, status: int = 200) -> Response:
    body = json.dumps(obj, indent=2, ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json; charset=UTF-8")


def google_error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return json_response({"error": err}, code)


def count_words(text: str) -> int:
    return len(text.split())


def _user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if content.get("role", "user") != "user":
            continue
        texts = [p["text"] for p in content["parts"] if isinstance(p.get("text"), str)]
        media: dict[str, int] = {}
        for p in content["parts"]:
            blob = get(p, "inlineData") or get(p, "fileData")
            if blob is not None:
                kind = str(get(blob, "mimeType") or "").split("/")[0]
                label = {"image": "images", "audio": "audio"}.get(kind, "files")
                media[label] = media.get(label, 0) + 1
        if texts or media:
            return " ".join(texts) + "".join(f" [{k}: {n}]" for k, n in media.items())
    return ""


def _example(schema: Any, text: str, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 20:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return _example(variants[0], text, depth + 1)
    kind = str(schema.get("type") or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        return {k: _example(v, text, depth + 1) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_example(schema.get("items"), text, depth + 1)] if schema.get("items") else []
    return {"string": text, "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _pieces(text: str) -> list[str]:
    pieces = re.findall(r"\S+\s*|\s+", text)
    if len(pieces) >= 3 or len(text) < 3:
        return pieces or [text]
    a, b = len(text) // 3, 2 * len(text) // 3
    return [text[:a], text[a:b], text[b:]]


def answer(
    model: str, body: dict[str, Any], issued: set[str]
) -> tuple[list[list[dict[str, Any]]], str, dict[str, Any]]:
    """Per candidate the answer's parts, the finish reason and the usage metadata."""
    decls, mode, allowed = check_tools(body)
    config = known(get(body, "generationConfig") or {}, GEN_KEYS, "generation_config")
    thinking_cfg = get(config, "thinkingConfig")
    if thinking_cfg is not None:
        known(thinking_cfg, THINKING_KEYS, "generation_config.thinking_config")
    if model == "legacy-schema" and get(config, "responseJsonSchema") is not None:
        raise Invalid(
            "Invalid JSON payload received. Unknown name \"responseJsonSchema\" at 'generation_config': "
            "Cannot find field."
        )
    contents = check_contents(body, thinking_cfg is not None, issued)
    thinking = thinking_cfg is not None and get(thinking_cfg, "thinkingBudget") != 0
    text = _user_text(contents)
    responses = [get(p, "functionResponse") for p in contents[-1]["parts"] if get(p, "functionResponse")]
    parts: list[dict[str, Any]] = []
    reason = "STOP"
    if responses:
        reply = "tool said: " + " ".join(json.dumps(r["response"], separators=(",", ":")) for r in responses)
    elif decls and mode != "NONE":
        reply = ""
        for decl in decls:
            if allowed is None or decl["name"] in allowed:
                part: dict[str, Any] = {
                    "functionCall": {
                        "name": decl["name"],
                        "args": _example(decl.get("parameters") or get(decl, "parametersJsonSchema"), text)
                        or {},
                    }
                }
                if thinking_cfg is not None:
                    part["thoughtSignature"] = "sig_" + secrets.token_hex(8)
                    issued.add(part["thoughtSignature"])
                parts.append(part)
    elif get(config, "responseMimeType") == "application/json":
        schema = get(config, "responseJsonSchema") or get(config, "responseSchema")
        reply = json.dumps(_example(schema, text) if schema else {"echo": text})
    else:
        reply = "echo: " + text
    limit = get(config, "maxOutputTokens")
    if model == "max-tokens":
        limit = 2
    if reply and isinstance(limit, int) and count_words(reply) > limit:
        reply, reason = " ".join(reply.split()[:limit]), "MAX_TOKENS"
    for stop in get(config, "stopSequences") or []:
        if stop in reply:
            reply = reply[: reply.index(stop)]
    if reply:
        parts.insert(0, {"text": reply})
    if thinking and get(thinking_cfg, "includeThoughts"):
        parts.insert(0, {"text": f"Thinking about: {text}", "thought": True})
    n = get(config, "candidateCount") or 1
    system = get(body, "systemInstruction") or {}
    prompt_text = [
        p.get("text", "") for c in [system, *contents] for p in c.get("parts", []) if isinstance(p, dict)
    ]
    out_words = count_words(reply) + sum(
        count_words(json.dumps(p["functionCall"]["args"])) for p in parts if "functionCall" in p
    )
    usage: dict[str, Any] = {
        "promptTokenCount": max(1, sum(count_words(t) for t in prompt_text)),
        "candidatesTokenCount": max(1, out_words) * n,
    }
    if model == "cache-hit":
        usage.update(promptTokenCount=1000, cachedContentTokenCount=900)
    if thinking:
        usage["thoughtsTokenCount"] = THOUGHT_TOKENS * n
    usage["totalTokenCount"] = (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0)
    )
    return [[dict(p) for p in parts] for _ in range(n)], reason, usage


def response_body(
    model: str, rid: str, candidates: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {"candidates": candidates, "usageMetadata": usage, "modelVersion": model, "responseId": rid}


def blocked(model: str, body: dict[str, Any]) -> dict[str, Any]:
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3},
        "modelVersion": model,
        "responseId": secrets.token_urlsafe(12),
    }


def stream_chunks(
    model: str, per_candidate: list[list[dict[str, Any]]], reason: str, usage: dict[str, Any]
) -> list[dict[str, Any]]:
    rid = secrets.token_urlsafe(12)
    split: list[list[dict[str, Any]]] = []
    for parts in per_candidate:
        pieces: list[dict[str, Any]] = []
        for part in parts:
            if "text" in part and not part.get("thought"):
                pieces.extend({"text": piece} for piece in _pieces(part["text"]))
            else:
                pieces.append(part)
        split.append(pieces or [{"text": ""}])
    chunks = []
    for k in range(max(len(s) for s in split)):
        candidates = []
        for i, pieces in enumerate(split):
            if k < len(pieces):
                cand: dict[str, Any] = {"content": {"parts": [pieces[k]], "role": "model"}, "index": i}
                if k == len(pieces) - 1:
                    cand["finishReason"] = reason
                candidates.append(cand)
        partial = (
            dict(usage)
            if k == max(len(s) for s in split) - 1
            else {"promptTokenCount": usage["promptTokenCount"]}
        )
        chunks.append(response_body(model, rid, candidates, partial))
    return chunks


def vector(text: str, dims: int) -> list[float]:
    digest = b"".join(hashlib.sha256(f"{text}#{i}".encode()).digest() for i in range(dims // 32 + 1))
    raw = [(b / 255.0) * 2 - 1 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def model_info(name: str) -> dict[str, Any]:
    embed = "embed" in name
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": f"Fake {name}",
        "inputTokenLimit": 2048 if embed else 1048576,
        "outputTokenLimit": 1 if embed else 65536,
        "supportedGenerationMethods": ["embedContent", "batchEmbedContents"]
        if embed
        else ["generateContent", "countTokens"],
    }


def failure(model: str) -> Response | None:
    if model == "fail-429":
        return google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
            ],
        )
    if model == "fail-500":
        return google_error(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )
    if model == "fail-503":
        return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if model == "fail-400":
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "contents", "description": "invalid"}],
                }
            ],
        )
    if model == "not-found":
        return google_error(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version v1beta, or is not "
            "supported for generateContent. Call ListModels to see the list of available models "
            "and their supported methods.",
        )
    return None
