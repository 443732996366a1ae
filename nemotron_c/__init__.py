"""nemotron_c: NVIDIA Nemotron language models on the CPU, with Transformers' interface and results.

    import nemotron_c
    model = nemotron_c.AutoModelForCausalLM.from_pretrained("path/to/checkpoint")
    logits = model(input_ids).logits            # NumPy float32, equal to Transformers' logits
"""
from ._core import FormatError
from .configuration import AutoConfig, NemotronConfig
from .generation import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, GenerationConfig
from .loading import SafetensorsFormatError
from .modeling import (
    AutoModel,
    AutoModelForCausalLM,
    NemotronCache,
    NemotronForCausalLM,
    NemotronModel,
    NemotronPreTrainedModel,
)
from .outputs import BaseModelOutputWithPast, CausalLMOutputWithPast, ModelOutput
from .streamers import BaseStreamer, TextIteratorStreamer, TextStreamer

__version__ = "0.1.0"

__all__ = [
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "BaseModelOutputWithPast",
    "CausalLMOutputWithPast",
    "BaseStreamer",
    "FormatError",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "GenerationConfig",
    "ModelOutput",
    "NemotronCache",
    "NemotronConfig",
    "NemotronForCausalLM",
    "NemotronModel",
    "NemotronPreTrainedModel",
    "SafetensorsFormatError",
    "TextIteratorStreamer",
    "TextStreamer",
]
