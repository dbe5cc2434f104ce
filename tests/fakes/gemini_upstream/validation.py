"""Request validation of the fake Gemini API: what the real API answers 400 INVALID_ARGUMENT to."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any


class Invalid(Exception):
    pass


TOP_KEYS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "safetySettings",
    "cachedContent",
    "generationConfig",
    "labels",
    "model",
}
GEN_KEYS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
}
THINKING_KEYS = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
_DATA = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "toolCall",
    "toolResponse",
}
_PART = _DATA | {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
_SCHEMA = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "items",
    "minimum",
    "maximum",
}
_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_TOOL = {
    "functionDeclarations",
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "fileSearch",
    "computerUse",
    "googleMaps",
}
_DECL = {
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def get(obj: Any, key: str) -> Any:
    """A field by its camelCase name, also accepted in snake_case (as the real API does)."""
    if not isinstance(obj, dict):
        return None
    return obj[key] if key in obj else obj.get(_snake(key))


def known(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Invalid(f"Invalid JSON payload received. Expected an object at '{where}'.")
    for key in obj:
        if _camel(key) not in allowed:
            raise Invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
            )
    return obj


def _check_schema(schema: Any, where: str, top: bool = False) -> None:
    known(schema, _SCHEMA, where)
    kind = schema.get("type")
    if isinstance(kind, list):
        raise Invalid(
            "Invalid JSON payload received. Proto field is not repeating, cannot start list "
            f"at '{where}.type'."
        )
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _TYPES):
        raise Invalid(
            f"Invalid value at '{where}.type' "
            f'(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "{kind}"'
        )
    enum = schema.get("enum")
    if enum is not None and not (isinstance(enum, list) and all(isinstance(v, str) for v in enum)):
        raise Invalid(f"Invalid value at '{where}.enum': enum values must be strings.")
    props = schema.get("properties")
    if top and str(kind).upper() == "OBJECT" and not props:
        raise Invalid(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type")
    for name, sub in (props or {}).items():
        _check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or []):
        _check_schema(sub, f"{where}.any_of[{i}]")


def check_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, list[str] | None]:
    """Declared functions, the calling mode and the allowed names."""
    decls: list[dict[str, Any]] = []
    for t, tool in enumerate(get(body, "tools") or []):
        known(tool, _TOOL, f"tools[{t}]")
        for d, decl in enumerate(get(tool, "functionDeclarations") or []):
            where = f"tools[{t}].function_declarations[{d}]"
            known(decl, _DECL, where)
            if not isinstance(decl.get("name"), str) or not _NAME.match(decl["name"]):
                raise Invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with a "
                    "letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                    "dots (.), colons (:), or dashes (-), with a maximum length of 128."
                )
            if "parameters" in decl and get(decl, "parametersJsonSchema") is not None:
                raise Invalid(f"* {where}: parameters and parameters_json_schema are mutually exclusive.")
            if "parameters" in decl:
                _check_schema(decl["parameters"], f"{where}.parameters", top=True)
            decls.append(decl)
    calling = get(get(body, "toolConfig"), "functionCallingConfig") or {}
    mode = str(calling.get("mode") or "AUTO").upper()
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
        raise Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', \"{mode}\"")
    allowed = get(calling, "allowedFunctionNames")
    if allowed is not None and mode not in ("ANY", "VALIDATED"):
        raise Invalid(
            "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
            "allowed_function_names can only be set when mode is ANY or VALIDATED."
        )
    names = {d["name"] for d in decls}
    for name in allowed or []:
        if name not in names:
            raise Invalid(f"allowed_function_names contains {name!r}, which is not a declared function.")
    return decls, mode, allowed


def _check_part(part: Any, where: str) -> None:
    known(part, _PART, where)
    present = [k for k in part if _camel(k) in _DATA]
    if len(present) != 1:
        raise Invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
            "initialized field"
        )
    blob = get(part, "inlineData")
    if blob is not None:
        if not get(blob, "mimeType") or not isinstance(blob.get("data"), str):
            raise Invalid(f"* GenerateContentRequest.{where}.inline_data: mime_type and data are required.")
        try:
            base64.b64decode(blob["data"], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed."
            ) from None
    call = get(part, "functionCall")
    if call is not None and (("args" in call and not isinstance(call["args"], dict)) or not call.get("name")):
        raise Invalid(f"Invalid JSON payload received. '{where}.function_call' needs a name and object args.")
    resp = get(part, "functionResponse")
    if resp is not None and (not isinstance(resp.get("response"), dict) or not resp.get("name")):
        raise Invalid(
            f"* GenerateContentRequest.{where}.function_response: name and an object response are required."
        )


def check_contents(body: dict[str, Any], thinking: bool, issued: set[str]) -> list[dict[str, Any]]:
    contents = get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    called: set[str] = set()
    previous_calls = 0
    current_start = 0  # the current turn starts after the last user content with fresh input
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        responses = 0
        for j, part in enumerate(parts):
            _check_part(part, f"contents[{i}].parts[{j}]")
            call, resp = get(part, "functionCall"), get(part, "functionResponse")
            if call is not None:
                if role != "model":
                    raise Invalid("Please ensure that function call turns come from the model role.")
                called.add(call["name"])
            if resp is not None:
                responses += 1
                if resp["name"] not in called:
                    raise Invalid(
                        f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response.name: "
                        f"{resp['name']!r} does not match any earlier function call."
                    )
        if responses and responses != previous_calls:
            raise Invalid(
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn."
            )
        if role == "user" and responses < len(parts):
            current_start = i + 1
        previous_calls = sum(1 for p in parts if get(p, "functionCall") is not None) if role == "model" else 0
    if thinking:
        for i in range(current_start, len(contents)):
            for j, part in enumerate(contents[i]["parts"]):
                call = get(part, "functionCall")
                if call is not None and get(part, "thoughtSignature") not in issued:
                    raise Invalid(
                        "Function call is missing a thought_signature in functionCall parts. This is "
                        "required for tools to work correctly, and missing thought_signature may lead "
                        f"to degraded model performance. Additional data, function call "
                        f"`default_api:{call['name']}` , position {j + 1}. Please refer to "
                        "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
                    )
    return contents
