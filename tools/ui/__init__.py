"""What the person sees: the events the loop reports and the renderers that show them.

The loop imports only ``events``; ``terminal`` (rich, live region), ``render`` (plain text, JSON)
implement the Renderer protocol."""
