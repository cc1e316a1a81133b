"""Step 3 of Fine-tune-CoT: fine-tuning a student (settings, data, trainer, processes, runs)."""
