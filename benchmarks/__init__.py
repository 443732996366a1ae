"""Speed of nemotron_c beside Transformers and its peers: `python -m benchmarks.run` (README.md here)."""
