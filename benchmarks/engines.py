"""nemotron_c and Transformers behind the interface of measure.py, on the same checkpoint and thread count."""
import numpy as np

import nemotron_c

from .checkpoint import PAD_ID


def decode_bytes(named_sizes, tied):
    """Bytes of weights one decode step reads: every tensor but the embedding table, of which it reads one row
    per token (counted as nothing); with tied embeddings the table is the lm_head and is read whole."""
    return sum(size for name, size in named_sizes if tied or not name.endswith("embed_tokens.weight"))


class NemotronC:
    engine = "nemotron_c"

    def __init__(self, path, dtype, threads):
        self.dtype = dtype
        self.model = nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, num_threads=threads)
        # a quantized tensor is held as (values, scales)
        sizes = [(name, sum(a.nbytes for a in (array if isinstance(array, tuple) else (array,))))
                 for name, (array, _) in self.model._weights.items()]
        self.decode_bytes = decode_bytes(sizes, self.model.config.tie_word_embeddings)

    def prefill(self, ids):
        return self.model(np.asarray(ids), use_cache=False, logits_to_keep=1).logits

    def score(self, ids):
        ids = np.asarray(ids)
        return self.model.score(ids, batch_size=len(ids)).sum_logprob

    def generate(self, prompts, n):
        prompts = np.asarray(prompts)
        out = self.model.generate(prompts, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[:, prompts.shape[1]:]


class Transformers:
    """Transformers' NemotronForCausalLM in torch, as a script would run it: default attention (SDPA),
    torch.inference_mode, log_softmax over the full logits for scores."""
    engine = "Transformers"

    def __init__(self, path, dtype, threads):
        import torch
        import transformers

        torch.set_num_threads(threads)
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.torch, self.dtype = torch, dtype
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
        sizes = [(name, p.numel() * p.element_size()) for name, p in self.model.named_parameters()]
        self.decode_bytes = decode_bytes(sizes, self.model.config.tie_word_embeddings)

    def prefill(self, ids):
        with self.torch.inference_mode():
            return self.model(self.torch.as_tensor(ids), use_cache=False, logits_to_keep=1).logits

    def score(self, ids):
        torch = self.torch
        with torch.inference_mode():
            ids = torch.as_tensor(ids)
            logprobs = torch.log_softmax(self.model(ids).logits.float(), dim=-1)
            return logprobs[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].sum(-1)

    def generate(self, prompts, n):
        torch = self.torch
        with torch.inference_mode():
            prompts = torch.as_tensor(prompts)
            out = self.model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n,
                                      min_new_tokens=n, do_sample=False, pad_token_id=PAD_ID)
        return out[:, prompts.shape[1]:].numpy()
