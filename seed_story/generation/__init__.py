"""Story generation: the MLLM writer (KV cache, attention sink, batches), drawing, and the pipeline."""
