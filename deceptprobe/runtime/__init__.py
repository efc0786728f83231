"""The ground floor: "a model we can run" — our organisms and Hugging Face causal LMs."""
