"""Renders chat templates with Jinja2 the way Transformers does (a sandboxed environment that trims blocks,
with `raise_exception`, `strftime_now` and a `tojson` that keeps non-ASCII text)."""
import functools
import json
from datetime import datetime


@functools.lru_cache(maxsize=16)
def _compile(template):
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("apply_chat_template needs jinja2, which is not installed") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


def render(template, messages, tools=None, documents=None, add_generation_prompt=False, continue_final_message=False,
           **kwargs):
    messages = [dict(m) for m in messages]
    for m in messages:
        if not isinstance(m, dict):
            raise TypeError(f"Chat messages should be dicts, got {m!r}.")
    if continue_final_message:
        if add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt are not compatible.")
        final = messages[-1]["content"]
        tag = "CONTINUE_FINAL_MESSAGE_TAG "
        messages[-1] = {**messages[-1], "content": final + tag}
    text = _compile(template).render(messages=messages, tools=tools, documents=documents,
                                     add_generation_prompt=add_generation_prompt, **kwargs)
    if continue_final_message:
        tag = "CONTINUE_FINAL_MESSAGE_TAG "
        text = text[: text.rindex(tag)] + (final if final.strip() == final else "") if False else \
            text[: text.rindex(tag)].rstrip() if final.strip() != final else text[: text.rindex(tag)]
    return text
