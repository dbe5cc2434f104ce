"""Canonical chat request → Gemini `GenerateContentRequest` (camelCase on the wire).

Decisions, in the order a request is built:

- System messages, wherever they are, become `systemInstruction` text parts.
- `user` → role `user`, `assistant` → role `model`; a tool result is a `functionResponse` part in a
  `user` turn, whatever message carried it. Consecutive parts of the same role form one turn, so tool
  results and the user text after them share one turn (results first); empty turns are dropped.
- `functionResponse.name` is found from the earlier `ToolCallPart` with the same id; `response` is the
  result's JSON when it is an object, else `{"result": <text>}` (`{"error": …}` for an error result).
- Ids go to Gemini only when Gemini issued them (`provider_details["gemini"]["id"]`); a call's
  `thoughtSignature` goes back on the same `functionCall` part. Gemini thinking (marked by
  `provider_details["gemini"]`) is replayed as `thought` parts; other vendors' thinking is dropped.
- Media: base64 → `inlineData`; `gs://` and Files API URIs → `fileData`; other URLs are fetched by the
  adapter's `fetch_image` hook when one is set, else refused (400).
- Effort → `thinkingBudget`: the table `EFFORT_BUDGETS`; `includeThoughts` when the client wants reasoning.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Awaitable, Callable
from typing import Any

from omnirelay.canonical.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    Part,
    RefusalPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest, Tool
from omnirelay.errors import BadRequest
from omnirelay.transport import json
from omnirelay.upstream.gemini.schema import clean_schema, is_empty_object

ImageFetcher = Callable[[str], Awaitable[tuple[bytes, str]]]

# reasoning_effort → thinkingBudget (tokens). Gemini 2.5 Pro cannot switch thinking off; it answers 400.
EFFORT_BUDGETS: dict[str, int] = {
    "none": 0,
    "minimal": 1024,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 32768,
}
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
AUDIO_TYPES = {
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "pcm16": "audio/pcm",
}
FILES_API_PREFIXES = ("gs://", "https://generativelanguage.googleapis.com/")
_DATA_URL = re.compile(r"^data:(?P<mt>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,(?P<data>.*)$", re.DOTALL)


def gemini_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Gemini entry of a part's provider_details, when the part came from Gemini."""
    value = (details or {}).get("gemini")
    return value if isinstance(value, dict) else None


def _sniff_image(data: str) -> str:
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4))
    except (binascii.Error, ValueError):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"GIF8"):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _guess_type(name: str | None, default: str | None) -> str | None:
    guessed = mimetypes.guess_type(name)[0] if name else None
    return guessed or default


class RequestBuilder:
    """Builds one request body."""

    def __init__(self, req: ChatRequest, fetch_image: ImageFetcher | None) -> None:
        self.req = req
        self.fetch_image = fetch_image
        self.calls: dict[str, ToolCallPart] = {}
        for message in req.messages:
            for part in message.parts:
                if isinstance(part, ToolCallPart):
                    self.calls[part.id] = part

    async def build(self) -> dict[str, Any]:
        req = self.req
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for i, message in enumerate(req.messages):
            if message.role == "system":
                system.extend({"text": p.text} for p in message.parts if isinstance(p, TextPart) and p.text)
                continue
            for role, parts in await self._message(message, i):
                if not parts:
                    continue
                if contents and contents[-1]["role"] == role:
                    contents[-1]["parts"].extend(parts)
                else:
                    contents.append({"role": role, "parts": parts})
        if not contents:
            raise BadRequest("The request has no user or assistant content for Gemini.", param="messages")
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        if req.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(t) for t in req.tools]}]
            if req.tool_choice is not None:
                calling: dict[str, Any] = {"mode": TOOL_MODES[req.tool_choice.mode]}
                if req.tool_choice.mode == "tool" and req.tool_choice.name:
                    calling["allowedFunctionNames"] = [req.tool_choice.name]
                body["toolConfig"] = {"functionCallingConfig": calling}
        config = self._generation_config()
        if config:
            body["generationConfig"] = config
        return body

    # --- messages -------------------------------------------------------------------------------

    async def _message(self, message: Message, i: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """(role, parts) runs of one message: tool results (and media from them) go in user turns."""
        own_role = "model" if message.role == "assistant" else "user"
        where = f"messages[{i}]"
        runs: list[tuple[str, list[dict[str, Any]]]] = []
        extra: list[dict[str, Any]] = []  # media returned inside tool results, placed after the results
        for part in message.parts:
            if isinstance(part, ToolResultPart):
                response, media = await self._tool_result(part, where)
                self._append(runs, "user", response)
                extra.extend(media)
                continue
            converted = await self._part(part, message.role, where)
            if converted is not None:
                self._append(runs, own_role, converted)
        for item in extra:
            self._append(runs, "user", item)
        return runs

    @staticmethod
    def _append(runs: list[tuple[str, list[dict[str, Any]]]], role: str, part: dict[str, Any]) -> None:
        if runs and runs[-1][0] == role:
            runs[-1][1].append(part)
        else:
            runs.append((role, [part]))

    async def _part(self, part: Part, role: str, where: str) -> dict[str, Any] | None:
        if isinstance(part, TextPart | RefusalPart):
            return {"text": part.text} if part.text else None
        if isinstance(part, ToolCallPart):
            return self._call(part, where) if role == "assistant" else None
        if isinstance(part, ThinkingPart):
            details = gemini_details(part.provider_details)
            if details is None or role != "assistant":
                return None  # another vendor's thinking: Gemini cannot use it
            signature = details.get("thoughtSignature")
            if not part.text and not signature:
                return None
            out: dict[str, Any] = {"text": part.text, "thought": True}
            if isinstance(signature, str) and signature:
                out["thoughtSignature"] = signature
            return out
        if isinstance(part, ImagePart):
            return await self._image(part, where)
        if isinstance(part, AudioPart):
            mime = AUDIO_TYPES.get(part.format.lower(), f"audio/{part.format.lower()}")
            return {"inlineData": {"mimeType": mime, "data": part.data}}
        if isinstance(part, FilePart):
            return self._file(part, where)
        return None

    def _call(self, part: ToolCallPart, where: str) -> dict[str, Any]:
        call: dict[str, Any] = {"name": part.name, "args": _arguments(part.arguments)}
        details = gemini_details(part.provider_details) or {}
        if isinstance(details.get("id"), str):
            call["id"] = details["id"]
        out: dict[str, Any] = {"functionCall": call}
        signature = details.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            out["thoughtSignature"] = signature
        return out

    async def _tool_result(
        self, part: ToolResultPart, where: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        call = self.calls.get(part.tool_call_id)
        # A legacy OpenAI `function` message names the function where the call id would be.
        name = call.name if call is not None else part.tool_call_id
        if not name:
            raise BadRequest(f"{where}: a tool result without a tool call id or name.", param=where)
        text = "".join(p.text for p in part.content if isinstance(p, TextPart))
        value: Any = None
        if text.strip().startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = None
        payload: Any = value if isinstance(value, dict) else text
        response: dict[str, Any]
        if part.is_error:
            response = {"error": payload}
        else:
            response = payload if isinstance(payload, dict) else {"result": payload}
        function_response: dict[str, Any] = {"name": name, "response": response}
        details = gemini_details(call.provider_details) if call is not None else None
        if details and isinstance(details.get("id"), str):
            function_response["id"] = details["id"]
        media: list[dict[str, Any]] = []
        for item in part.content:
            if not isinstance(item, TextPart):
                converted = await self._part(item, "user", where)
                if converted is not None:
                    media.append(converted)
        return {"functionResponse": function_response}, media

    async def _image(self, part: ImagePart, where: str) -> dict[str, Any]:
        if part.data:
            return {"inlineData": {"mimeType": part.media_type or _sniff_image(part.data), "data": part.data}}
        url = part.url or ""
        match = _DATA_URL.match(url)
        if match:
            data = match.group("data")
            return {"inlineData": {"mimeType": match.group("mt") or _sniff_image(data), "data": data}}
        if url.startswith(FILES_API_PREFIXES):
            file_data: dict[str, Any] = {"fileUri": url}
            mime = part.media_type or _guess_type(url.split("?", 1)[0], None)
            if mime:
                file_data["mimeType"] = mime
            return {"fileData": file_data}
        if url.startswith(("http://", "https://")) and self.fetch_image is not None:
            raw, mime = await self.fetch_image(url)
            return {"inlineData": {"mimeType": mime or "image/png", "data": base64.b64encode(raw).decode()}}
        raise BadRequest(
            f"{where}: Gemini cannot read images from http(s) URLs; send the image inline as a base64 "
            "data URL (data:image/png;base64,...) or as a gs:// or Gemini Files API URI.",
            param=where,
            code="unsupported_image_url",
        )

    def _file(self, part: FilePart, where: str) -> dict[str, Any]:
        if part.data:
            mime = part.media_type or _guess_type(part.filename, "application/pdf")
            return {"inlineData": {"mimeType": mime, "data": part.data}}
        file_id = part.file_id or ""
        if file_id.startswith("files/"):
            file_id = "https://generativelanguage.googleapis.com/v1beta/" + file_id
        if file_id.startswith(FILES_API_PREFIXES):
            file_data: dict[str, Any] = {"fileUri": file_id}
            mime = part.media_type or _guess_type(part.filename, None)
            if mime:
                file_data["mimeType"] = mime
            return {"fileData": file_data}
        raise BadRequest(
            f"{where}: Gemini cannot use file id {part.file_id!r}; send the file's content inline.",
            param=where,
        )

    # --- generation config ------------------------------------------------------------------------

    def _generation_config(self) -> dict[str, Any]:
        req = self.req
        config: dict[str, Any] = {}
        for key, value in (
            ("maxOutputTokens", req.max_tokens),
            ("temperature", req.temperature),
            ("topP", req.top_p),
            ("topK", req.top_k),
            ("seed", req.seed),
            ("presencePenalty", req.presence_penalty),
            ("frequencyPenalty", req.frequency_penalty),
        ):
            if value is not None:
                config[key] = value
        if req.stop:
            config["stopSequences"] = list(req.stop)
        if req.n > 1:
            config["candidateCount"] = req.n
        fmt = req.response_format
        if fmt is not None and fmt.type in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
            if fmt.type == "json_schema" and fmt.schema:
                config["responseJsonSchema"] = fmt.schema
        thinking = thinking_config(req)
        if thinking is not None:
            config["thinkingConfig"] = thinking
        return config


def thinking_config(req: ChatRequest) -> dict[str, Any] | None:
    budget = req.reasoning_budget
    if budget is None and req.reasoning_effort:
        budget = EFFORT_BUDGETS.get(req.reasoning_effort.lower())
    if budget is None:
        return None
    config: dict[str, Any] = {"thinkingBudget": budget}
    if budget != 0 and req.include_reasoning:
        config["includeThoughts"] = True
    return config


def _declaration(tool: Tool) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    if tool.parameters:
        params = clean_schema(tool.parameters)
        if not is_empty_object(params):
            decl["parameters"] = params
    return decl


def _arguments(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"_raw": text}  # Gemini wants an object; keep what the client sent
    return value if isinstance(value, dict) else {"value": value}


def use_response_schema(body: dict[str, Any]) -> bool:
    """Swap `responseJsonSchema` for a cleaned `responseSchema` (models that predate the former);
    False when there was nothing to swap."""
    config = body.get("generationConfig") or {}
    schema = config.pop("responseJsonSchema", None)
    if schema is None:
        return False
    config["responseSchema"] = clean_schema(schema)
    return True


async def build_request(req: ChatRequest, fetch_image: ImageFetcher | None = None) -> dict[str, Any]:
    return await RequestBuilder(req, fetch_image).build()
