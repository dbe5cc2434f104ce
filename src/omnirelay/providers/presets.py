"""OpenAI-compatible services as data: a new vendor is a new row.

`key_env` lists the environment variables that may hold the vendor's key (several keys may be given
comma-separated). `models` is a default list where the vendor's catalogue is stable enough to ship;
a config's own `models:` replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    key_env: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    needs_key: bool = True
    dialect: str = "openai"


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        "https://api.openai.com/v1",
        ("OPENAI_API_KEY",),
        (
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o3",
            "o4-mini",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "omni-moderation-latest",
            "gpt-image-1",
            "dall-e-3",
            "tts-1",
            "whisper-1",
        ),
    ),
    "deepseek": Preset(
        "https://api.deepseek.com/v1", ("DEEPSEEK_API_KEY",), ("deepseek-chat", "deepseek-reasoner")
    ),
    "qwen": Preset(
        "https://dashscope.aliyuncs.com/compatible-mode/v1",
        ("DASHSCOPE_API_KEY", "QWEN_API_KEY"),
        ("qwen-max", "qwen-plus", "qwen-turbo", "text-embedding-v3"),
    ),
    "groq": Preset(
        "https://api.groq.com/openai/v1",
        ("GROQ_API_KEY",),
        ("llama-3.3-70b-versatile", "llama-3.1-8b-instant", "whisper-large-v3"),
    ),
    "mistral": Preset(
        "https://api.mistral.ai/v1",
        ("MISTRAL_API_KEY",),
        ("mistral-large-latest", "mistral-small-latest", "codestral-latest", "mistral-embed"),
    ),
    "openrouter": Preset(
        "https://openrouter.ai/api/v1",
        ("OPENROUTER_API_KEY",),
        (
            "openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4",
            "google/gemini-2.5-flash",
            "meta-llama/llama-3.3-70b-instruct:free",
            "deepseek/deepseek-chat-v3-0324:free",
        ),
    ),
    "together": Preset(
        "https://api.together.xyz/v1",
        ("TOGETHER_API_KEY",),
        (
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "deepseek-ai/DeepSeek-V3",
            "Qwen/Qwen2.5-72B-Instruct-Turbo",
        ),
    ),
    "xai": Preset("https://api.x.ai/v1", ("XAI_API_KEY",), ("grok-4", "grok-3", "grok-3-mini")),
    "moonshot": Preset(
        "https://api.moonshot.cn/v1",
        ("MOONSHOT_API_KEY",),
        ("moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k", "kimi-k2-0711-preview"),
    ),
    "zhipu": Preset(
        "https://open.bigmodel.cn/api/paas/v4",
        ("ZHIPUAI_API_KEY", "ZHIPU_API_KEY"),
        ("glm-4-plus", "glm-4-flash", "glm-4.5", "embedding-3"),
    ),
    "siliconflow": Preset(
        "https://api.siliconflow.cn/v1",
        ("SILICONFLOW_API_KEY",),
        ("deepseek-ai/DeepSeek-V3", "Qwen/Qwen2.5-72B-Instruct", "BAAI/bge-m3"),
    ),
    "cerebras": Preset("https://api.cerebras.ai/v1", ("CEREBRAS_API_KEY",), ("llama3.1-8b", "llama-3.3-70b")),
    # Native dialects: the vendors' own APIs (prompt caching, thinking and citations intact).
    "anthropic": Preset(
        "https://api.anthropic.com",
        ("ANTHROPIC_API_KEY",),
        (
            "claude-opus-4-1",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-sonnet-4-0",
            "claude-3-5-haiku-latest",
        ),
        dialect="anthropic",
    ),
    "gemini": Preset(
        "https://generativelanguage.googleapis.com",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-embedding-001"),
        dialect="gemini",
    ),
    # Local servers: no key needed, and the models are whatever the operator loaded.
    "ollama": Preset("http://127.0.0.1:11434/v1", ("OLLAMA_API_KEY",), needs_key=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", ("VLLM_API_KEY",), needs_key=False),
    "llamacpp": Preset("http://127.0.0.1:8080/v1", ("LLAMACPP_API_KEY",), needs_key=False),
}
