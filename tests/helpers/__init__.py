"""What the tests share: references, comparisons, builders of tokenizers and checkpoints."""
