"""nemotron_c: NVIDIA Nemotron language models on the CPU, with Transformers' interface and results.

    import nemotron_c
    model = nemotron_c.AutoModelForCausalLM.from_pretrained("path/to/checkpoint")
    logits = model(input_ids).logits            # NumPy float32, equal to Transformers' logits
"""
from ._core import FormatError
from .demo import demo_model_path
from .pipelines import pipeline
from .model.configuration import AutoConfig, NemotronConfig
from .model.heads import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    NemotronForQuestionAnswering,
    NemotronForSequenceClassification,
    NemotronForTokenClassification,
)
from .generation.utils import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, GenerationConfig
from .checkpoint.safetensors import SafetensorsFormatError
from .checkpoint.torch_bin import TorchCheckpointFormatError
from .model.modeling import (
    AutoModel,
    AutoModelForCausalLM,
    NemotronCache,
    NemotronForCausalLM,
    NemotronModel,
    NemotronPreTrainedModel,
)
from .model.outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    ModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    SequenceScoreOutput,
    TokenClassifierOutput,
)
from .generation.streamers import AsyncTextIteratorStreamer, BaseStreamer, TextIteratorStreamer, TextStreamer
from .tokenizer.tokenization import AutoTokenizer, BatchEncoding, LlamaTokenizer, NemotronTokenizer

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
    "AsyncTextIteratorStreamer",
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
    "demo_model_path",
    "pipeline",
]
