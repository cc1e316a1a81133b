"""Chat: teacher and student side by side, streamed, with votes."""
