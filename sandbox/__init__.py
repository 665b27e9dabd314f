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
- ``snapshots``    every turn undoable: workspace snapshots as git trees, and /undo
- ``changes``      which files changed since a moment (what an interrupted command did)
- ``private``      files only the person can read: transcripts, logs, recordings, history
- ``approvals``    the person's approvals of project hooks and MCP servers, by exact definition
"""
