"""Renders chat templates with Jinja2 the way Transformers does (a sandboxed environment that trims blocks,
with `raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII text, and the `{% generation %}` tag that
marks the assistant's text for `return_assistant_tokens_mask`)."""
import contextvars
import dataclasses
import functools
import inspect
import json
import re
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

    class TemplateNamespace(jinja2.utils.Namespace):
        """namespace() refusing underscore-prefixed names, as Transformers' (they lead to CPython internals)."""

        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]  # Jinja's signature: namespace(self=...) still works
            attributes = dict(*args, **kwargs)
            for name in attributes:
                TemplateNamespace.check(name)
            jinja2.utils.Namespace.__init__(self, attributes)

        def __setitem__(self, name, value):
            TemplateNamespace.check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}. "
                    "Please rename the attribute.")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["namespace"] = TemplateNamespace
    return env.from_string(template)


TAG = "CONTINUE_FINAL_MESSAGE_TAG "
# the names a message's reasoning goes by; templates read the first
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _as_dicts(value):
    """Message objects (dataclasses, pydantic models such as the OpenAI SDK's) as dicts, at any depth."""
    if isinstance(value, dict):
        return {key: _as_dicts(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_dicts(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_dicts(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _as_dicts(value.model_dump())
    return value


def normalized_messages(conversation):
    """A conversation (a list of messages, or an object with .messages) as a list of dicts without None values."""
    messages = _as_dicts(getattr(conversation, "messages", conversation))
    for m in messages:
        if not isinstance(m, dict):
            raise TypeError(f"Chat messages should be dicts, dataclasses or pydantic models, but got {m!r}.")
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def plain_data(value):
    """What a template may see, rebuilt from plain JSON types as Transformers rebuilds it (other objects carry
    methods the sandbox does not know to be dangerous): anything else becomes "<TypeName>"."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    for base in (str, int, float):  # subclasses (enums, numpy scalars) back to the base type
        if isinstance(value, base):
            return base(value) if base is not str else str.__str__(value)
    if isinstance(value, dict):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_data(v) for v in value)
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return plain_data(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type) or callable(getattr(value, "model_dump", None)):
        return plain_data(_as_dicts(value))
    return f"<{type(value).__name__}>"


def tool_schemas(tools):
    """Tools as JSON schemas: dicts as given; Python functions through Transformers' get_json_schema."""
    if tools is None:
        return None
    schemas = []
    for tool in tools:
        if isinstance(tool, dict):
            schemas.append(tool)
        elif inspect.isfunction(tool) or inspect.ismethod(tool):
            try:
                from transformers.utils import get_json_schema
            except ImportError:
                raise ImportError("tools given as Python functions are turned into JSON schemas by Transformers' "
                                  "get_json_schema: install transformers, or pass the schemas") from None
            schemas.append(get_json_schema(tool))
        else:
            raise ValueError("Tools should either be a JSON schema, or a callable function with type hints and a "
                             "docstring suitable for auto-conversion to a schema.")
    return schemas


def render(template, messages, tools=None, documents=None, add_generation_prompt=False, continue_final_message=False,
           generation_spans=None, **kwargs):
    """The prompt text for one conversation, as Transformers' render_jinja_template gives it (messages as
    normalized_messages gives them). generation_spans: a list that receives the (start, end) of each
    {% generation %} block's text."""
    if documents is not None and not all(isinstance(d, dict) for d in documents):
        raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
    tools, documents, kwargs = plain_data(tool_schemas(tools)), plain_data(documents), plain_data(kwargs)
    messages = plain_data(messages)
    # reasoning under an older name is passed as reasoning_content too (and as thinking, which gpt-oss reads)
    for i, m in enumerate(messages):
        reasoning = next((m[key] for key in REASONING_FIELDS if m.get(key) is not None), None)
        if reasoning is not None:
            messages[i] = {"thinking": reasoning, **m, "reasoning_content": reasoning}
    if continue_final_message:
        if add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt are not compatible. Use "
                             "continue_final_message when you want the model to continue the final message, and "
                             "add_generation_prompt when you want to add a header that will prompt it to start a new "
                             "assistant message instead.")
        if not messages:
            raise ValueError("continue_final_message is set but the conversation is empty!")
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = messages[-1].get(field)
        if final is None:
            raise ValueError(f'continue_final_message is set but the final message has no "{field}" to continue!')
        fields = [field]
        if field in REASONING_FIELDS:  # tag every copy of the reasoning: the template reads one of them
            fields = [f for f in REASONING_FIELDS if messages[-1].get(f) == final]
        if not any(f in template for f in fields):
            raise ValueError(f'continue_final_message is set to "{field}" but this is not an accepted field in the '
                             "chat_template")
        if isinstance(final, (list, tuple)):  # content blocks: the last one with text is continued
            for block in reversed(final):
                if "text" in block:
                    final = block["text"]
                    block["text"] = block["text"] + TAG
                    break
            else:
                raise ValueError("continue_final_message is set but we could not find any text to continue in the "
                                 "final message!")
        else:
            messages[-1] = {**messages[-1], **{f: messages[-1][f] + TAG for f in fields}}
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
                             "applying the chat template! This can happen if the chat template deletes portions of "
                             "the final message. Please verify the chat template and final message in your chat to "
                             f"ensure they are compatible.Final message to continue: {final.strip()}\nRendered "
                             f"chat:\n{text}")
        at = text.rindex(TAG.strip())
        text = text[:at] if text[at:at + len(TAG)] == TAG else text[:at].rstrip()
    return text


# Private-use characters wrapped around the control tokens found in the user's strings (sanitize_control_tokens), as
# Transformers marks them, so that the encoding can tell them from those the template writes
MARK_START, MARK_END = "\U000f0000", "\U000f0001"


def template_literal_text(template):
    """The template's text and string constants joined by NUL (no search matches across two): added tokens found in
    it are the template's control tokens."""
    import jinja2.nodes

    tree = _compile(template).environment.parse(template)
    literals = {node.data for node in tree.find_all(jinja2.nodes.TemplateData)}
    literals |= {node.value for node in tree.find_all(jinja2.nodes.Const) if isinstance(node.value, str)}
    return "\0".join(literals)


def control_pattern(tokens):
    """A regex matching any of the tokens, the longest first (a token before those it contains)."""
    return re.compile("|".join(map(re.escape, sorted(tokens, key=len, reverse=True))) or "(?!)")


def mark_control_tokens(value, pattern):
    """The strings in value (nested lists and dict values; not keys) with each control token wrapped in the marks,
    after removing any marks already there (they could forge a marked token)."""
    if isinstance(value, str):
        value = value.replace(MARK_START, "").replace(MARK_END, "")
        return pattern.sub(lambda m: MARK_START + m.group(0) + MARK_END, value)
    if isinstance(value, dict):
        return {key: mark_control_tokens(item, pattern) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mark_control_tokens(item, pattern) for item in value]
    return value


def split_marked(text, added_tokens):
    """[text, marked token or None, text, ...]: the rendered chat cut at the marked tokens and at lone marks (a
    template's split() can part them), which still break the text."""
    pattern = control_pattern(added_tokens).pattern
    return re.split(f"{MARK_START}({pattern}){MARK_END}|[{MARK_START}{MARK_END}]", text)
