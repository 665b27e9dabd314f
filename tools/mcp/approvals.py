"""Project servers the person approved: the one approvals store project hooks use too (sandbox/approvals.py).

A repository's ``.mcp.json`` runs code on the person's machine, so nothing in it starts until they
said yes to that definition (``ServerSpec.digest``); change one character (or its expanded
environment) and it asks again. The record lives in midstream's private state directory, never in
the repository.
"""

from __future__ import annotations

from midstream.sandbox.approvals import ApprovalStore as Approvals

__all__ = ["Approvals"]
