"""Publishing a student and its rationale dataset to the Hugging Face Hub, with cards."""
