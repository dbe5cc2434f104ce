"""The Gemini API (generativelanguage v1beta) as an upstream, split by concern:

schema    JSON Schema → the OpenAPI subset Gemini accepts
request   canonical request → GenerateContentRequest
response  finish reasons, usage, synthesized ids
stream    response chunks → canonical stream events (also folds complete answers)
errors    Google error objects → UpstreamError
adapter   HTTP: generateContent, streamGenerateContent, embedContent, batchEmbedContents
"""

from omnirelay.upstream.gemini.adapter import DEFAULT_BASE_URL, GeminiAdapter

__all__ = ["DEFAULT_BASE_URL", "GeminiAdapter"]
