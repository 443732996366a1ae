"""Renders chat templates with Jinja2 the way Transformers does (a sandboxed environment that trims blocks,
with `raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII text, and the `{% generation %}` tag that
marks the assistant's text for `return_assistant_tokens_mask`)."""
import contextvars
import functools
import json
from datetime import datetime

# While a template renders for return_assistant_tokens_mask: (the blocks rendered so far, the spans found)
_generation_spans = contextvars.ContextVar("generation_spans", default=None)


@functools.lru_cache(maxsize=16)
def _compile(template):
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError('apply_chat_template needs jinja2, which is not installed: pip install "nemotron_c[chat]"'
                          ) from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    class GenerationTag(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %}: renders its body, and, when spans are being tracked, records
        the body's (start, end) in the rendered text, as Transformers' AssistantTracker does."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_generation", []), [], [], body).set_lineno(lineno)

        def _generation(self, caller):
            text = caller()
            tracking = _generation_spans.get()
            if tracking is not None:
                blocks, spans = tracking
                start = sum(map(len, blocks))
                spans.append((start, start + len(text)))
            return text

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def render(template, messages, tools=None, documents=None, add_generation_prompt=False, continue_final_message=False,
           generation_spans=None, **kwargs):
    """The prompt text for one conversation, as Transformers' render_jinja_template gives it. generation_spans: a
    list that receives the (start, end) of each {% generation %} block's text."""
    for m in messages:
        if not isinstance(m, dict):
            raise TypeError(f"Chat messages should be dicts, dataclasses or pydantic models, but got {m!r}.")
    messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
    if continue_final_message:
        if add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt are not compatible. Use "
                             "continue_final_message when you want the model to continue the final message, and "
                             "add_generation_prompt when you want to add a header that will prompt it to start a new "
                             "assistant message instead.")
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = messages[-1].get(field)
        if final is None:
            raise ValueError(f'continue_final_message is set but the final message has no "{field}" to continue!')
        messages[-1] = {**messages[-1], field: final + TAG}
    compiled = _compile(template)
    variables = dict(messages=messages, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
                     **kwargs)
    if generation_spans is None:
        text = compiled.render(**variables)
    else:  # block by block, so that a generation block knows where it starts
        blocks = []
        token = _generation_spans.set((blocks, generation_spans))
        try:
            for block in compiled.generate(**variables):
                blocks.append(block)
        finally:
            _generation_spans.reset(token)
        text = "".join(blocks)
    if continue_final_message:
        if final.strip() not in text or TAG.strip() not in text:
            raise ValueError("continue_final_message is set but the final message does not appear in the chat after "
                             "applying the chat template!")
        at = text.rindex(TAG.strip())
        text = text[:at] if text[at:at + len(TAG)] == TAG else text[:at].rstrip()
    return text
