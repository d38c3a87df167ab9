"""Basic types: errors, samples, tokenizers, the image pixel map, files (cache, atomic write), the pinned environment."""
