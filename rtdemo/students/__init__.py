"""The students: loading a causal or seq2seq model, and the tiny offline student."""
