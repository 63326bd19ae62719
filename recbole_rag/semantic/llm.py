"""The paper's LLM step behind one small interface: item descriptions and user preference summaries.

``TemplateWriter`` (the default) works offline: an item's description is its field text, a user's
summary the template of ``texts.user_text``. ``ChatWriter`` asks an OpenAI-compatible endpoint
(``/chat/completions``; a local server such as vLLM or llama.cpp works too) through urllib, so it
needs no extra package. It is used only when the config has an ``llm`` mapping, e.g.

    llm: {base_url: "http://localhost:8000/v1", model: "qwen2.5-7b-instruct", api_key_env: OPENAI_API_KEY}

A failing endpoint stops the run with LLMError: there is no silent fallback to the templates.
"""

import json
import os
import urllib.error
import urllib.request

from recbole_rag.errors import ConfigError, RecBoleRagError

ITEM_PROMPT = "Describe this item in two sentences for a recommender system: {text}"
USER_PROMPT = (
    "Summarize this user's preferences in two sentences, from their items (most recent "
    "first) and frequent attributes: {text}"
)


class LLMError(RecBoleRagError, RuntimeError):
    """The configured LLM endpoint failed or answered in a form we cannot read."""


class TemplateWriter:
    """Offline default: the texts built from the item fields and user histories, unchanged."""

    name = "template"

    def describe_items(self, item_texts):
        return list(item_texts)

    def summarize_users(self, user_texts):
        return list(user_texts)


class ChatWriter:
    """Item descriptions and user summaries from an OpenAI-compatible chat endpoint."""

    def __init__(self, base_url, model, api_key_env=None, timeout=30.0, max_tokens=128):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.max_tokens = model, float(timeout), int(max_tokens)
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.name = f"llm:{model}"

    def complete(self, prompt):
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.max_tokens,
                "temperature": 0.0,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise LLMError(
                f"LLM endpoint {self.url} failed: {err}. Start the server, fix llm.base_url, or remove "
                "the llm setting to use the offline template texts."
            ) from err
        try:
            return answer["choices"][0]["message"]["content"].strip()
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise LLMError(
                f"LLM endpoint {self.url} answered without choices[0].message.content: {answer!r:.200}"
            ) from err

    def describe_items(self, item_texts):
        return [self.complete(ITEM_PROMPT.format(text=t)) if t else "" for t in item_texts]

    def summarize_users(self, user_texts):
        return [self.complete(USER_PROMPT.format(text=t)) for t in user_texts]


def text_writer(llm_config):
    """The writer a config's ``llm`` setting asks for (None: the offline templates)."""
    if not llm_config:
        return TemplateWriter()
    if not isinstance(llm_config, dict) or not llm_config.get("base_url") or not llm_config.get("model"):
        raise ConfigError(
            f"llm must be a mapping with base_url and model, e.g. {{base_url: 'http://localhost:8000/v1', "
            f"model: 'my-model'}}, got {llm_config!r}."
        )
    unknown = set(llm_config) - {"base_url", "model", "api_key_env", "timeout", "max_tokens"}
    if unknown:
        raise ConfigError(f"llm has unknown keys {', '.join(sorted(unknown))}.")
    return ChatWriter(**llm_config)
