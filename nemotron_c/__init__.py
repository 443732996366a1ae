"""nemotron_c: NVIDIA Nemotron language models on the CPU, with Transformers' interface and results.

    import nemotron_c
    model = nemotron_c.AutoModelForCausalLM.from_pretrained("path/to/checkpoint")
    logits = model(input_ids).logits            # NumPy float32, equal to Transformers' logits
"""
from ._core import FormatError
from .configuration import AutoConfig, NemotronConfig
from .heads import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    NemotronForQuestionAnswering,
    NemotronForSequenceClassification,
    NemotronForTokenClassification,
)
from .generation import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, GenerationConfig
from .loading import SafetensorsFormatError, TorchCheckpointFormatError
from .modeling import (
    AutoModel,
    AutoModelForCausalLM,
    NemotronCache,
    NemotronForCausalLM,
    NemotronModel,
    NemotronPreTrainedModel,
)
from .outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    ModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    SequenceScoreOutput,
    TokenClassifierOutput,
)
from .streamers import BaseStreamer, TextIteratorStreamer, TextStreamer
from .tokenization import AutoTokenizer, BatchEncoding, LlamaTokenizer, NemotronTokenizer

__version__ = "0.1.0"

__all__ = [
    "QuestionAnsweringModelOutput",
    "SequenceClassifierOutputWithPast",
    "SequenceScoreOutput",
    "TokenClassifierOutput",
    "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
    "BatchEncoding",
    "NemotronForQuestionAnswering",
    "NemotronForSequenceClassification",
    "NemotronForTokenClassification",
    "LlamaTokenizer",
    "NemotronTokenizer",
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
    "TorchCheckpointFormatError",
]
