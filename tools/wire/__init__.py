"""The model service: one streaming request, its SSE, the turn assembler, record/replay, and the
scripted server that speaks the same wire for the demo and the tests."""
