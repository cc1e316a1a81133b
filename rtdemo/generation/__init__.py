"""Step 1 of Fine-tune-CoT: rationale generation, its costs and its stored samples."""
