"""The model service: one streaming request, its SSE, the turn assembler and record/replay."""
