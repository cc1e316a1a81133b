"""Step 2 of Fine-tune-CoT: answer filtering, review decisions, training formats."""
