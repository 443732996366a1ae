"""The demo model shipped inside the package (nemotron_c/demo_model/): what the command line runs without --model.

A 2-million-parameter Nemotron (bf16 safetensors, 4 MB) with its SentencePiece BPE tokenizer, trained by
tools/train_demo_model.py on the docstrings of the Python standard library (PSF licence; see its NOTICE). It
writes docstring-like English, not knowledge: it is there to try the package with nothing downloaded.
"""
import os

DEMO_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_model")


def demo_model_path():
    """The folder of the demo model (config.json, model.safetensors, tokenizer.json, ...), for from_pretrained."""
    if not os.path.isfile(os.path.join(DEMO_MODEL_DIR, "config.json")):
        raise OSError(f"the demo model is missing from {DEMO_MODEL_DIR} (was nemotron_c installed without its "
                      "package data? tools/train_demo_model.py rebuilds it)")
    return DEMO_MODEL_DIR
