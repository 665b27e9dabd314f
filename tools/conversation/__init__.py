"""The conversation: what the API accepts as history, session transcripts, prompt caching and usage."""
