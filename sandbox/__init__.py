"""Where tools may act: confinement, ignore rules, command policy, permission modes, isolation, undo.

- ``paths``        workspace confinement: every path resolves inside the workspace, or is refused
- ``fdio``         file access on exactly the path that was checked (no check-then-reopen race)
- ``ignore``       which files listing and searching skip (.gitignore files and defaults)
- ``shellparse``   commands read with bash's grammar (tree-sitter-bash), every simple command
- ``commandline``  one simple command as a rule sees it: program behind wrappers, options, operands
- ``policy``       the command table: read-only, ordinary or destructive, and why (a data table)
- ``targets``      what a destructive command would touch, for its countdown
- ``allowlist``    read-only mode's strict allowlist when no sandbox can bind the workspace read-only
- ``permissions``  the gate: permission modes, questions, countdowns; one Decision per call
- ``isolation``    hardened bubblewrap, as one ordered list of arguments
- ``seccomp``      the syscall filter sandboxed commands run under
- ``git``          midstream's own git calls, hardened against a hostile repository
- ``journal``      the undo journal of a request's file tools (rollback of a broken reply)
- ``overlay``      a command's copy-on-write view of the workspace, and where its layers live
- ``spare``        a sandbox over a fresh overlay set up ahead of time, waiting for the next command
- ``transaction``  one command as a transaction: run in an overlay, read its change set, apply or discard
- ``changeset``    what a command changed, read from its upper directory, and what git can give back
- ``review``       the permission modes acting on an observed change set (countdown, question, refusal)
- ``apply``        applying a change set per path, the originals kept; conflicts kept both ways
- ``record``       a session's undo record: each applied path, what it replaced, what the turn left
- ``undo``         /undo and --undo from the record (or, without overlays, from git snapshots)
- ``snapshots``    the fallback without overlays: workspace snapshots as git trees
- ``changes``      which files changed since a moment (what an interrupted command did)
- ``private``      files only the person can read: transcripts, logs, recordings, history
- ``approvals``    the person's approvals of project hooks and MCP servers, by exact definition
"""
