"""Reading and writing checkpoints: safetensors and pytorch_model.bin files, Hub ids, saving."""
